//! `--config <file.toml>` (or `EFTCLOUD_CONFIG`): a TOML file of `serve` settings, keys named
//! like the flags (`listen = "0.0.0.0:8080"`, `accept-timeout = "10s"`).
//!
//! clap stays the single source of truth for names, parsing and precedence: the file's values
//! become the defaults of the matching arguments, and the command line is parsed again. clap
//! then applies its own order — a flag beats its environment variable, which beats a default —
//! so the result is flags > environment > file > built-in defaults, with no second list of
//! settings to keep in step.

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The subcommands that take serve's settings and so `--config`.
const SERVE_LIKE: [&[&str]; 2] = [&["serve"], &["config", "check"]];
/// The argument naming the file.
const CONFIG_ARG: &str = "config";

/// A configuration file as read, its values as clap will see them.
#[derive(Debug, Default)]
pub struct Loaded {
    pub path: Option<PathBuf>,
    /// Key (the flag's long name) → value as text.
    pub values: BTreeMap<String, String>,
}

/// Parses the command line, with the configuration file's values as defaults when a
/// serve-like subcommand names one. Usage errors and `--help` exit as clap does; a bad file is
/// an error naming the file and what is wrong in it.
pub fn parse(cmd: Command, args: Vec<OsString>) -> anyhow::Result<(ArgMatches, Loaded)> {
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let Some((path, file)) = SERVE_LIKE.iter().find_map(|p| {
        let sub = subcommand_matches(&matches, p)?;
        let file = sub.get_one::<PathBuf>(CONFIG_ARG)?;
        Some((*p, file.clone()))
    }) else {
        return Ok((matches, Loaded::default()));
    };
    let values = read(&file, &cmd, path)?;
    let mut cmd = cmd;
    for (key, value) in &values {
        cmd = with_default(cmd, path, key, value);
    }
    let matches = cmd.try_get_matches_from(&args).unwrap_or_else(|e| e.exit());
    Ok((
        matches,
        Loaded {
            path: Some(file),
            values,
        },
    ))
}

/// The matches of the subcommand at `path`, if that is the one given.
pub fn subcommand_matches<'m>(matches: &'m ArgMatches, path: &[&str]) -> Option<&'m ArgMatches> {
    path.iter()
        .try_fold(matches, |m, name| m.subcommand_matches(name))
}

/// The arguments a file may set: the subcommand's own, and the global ones (`log`, ...).
fn settable<'c>(root: &'c Command, path: &[&str]) -> Vec<&'c clap::Arg> {
    let mut sub = Some(root);
    for name in path {
        sub = sub.and_then(|c| c.find_subcommand(name));
    }
    let globals = root.get_arguments().filter(|a| a.is_global_set());
    sub.into_iter()
        .flat_map(|c| c.get_arguments())
        .chain(globals)
        .filter(|a| a.get_long().is_some_and(|l| l != CONFIG_ARG))
        .collect()
}

/// Reads and checks the file: every key must name a flag, every value must parse as that
/// flag's value would.
fn read(file: &Path, root: &Command, path: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read configuration file {shown}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("configuration file {shown} is not valid TOML"))?;
    let args = settable(root, path);
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            let mut valid: Vec<&str> = args.iter().filter_map(|a| a.get_long()).collect();
            valid.sort_unstable();
            bail!(
                "configuration file {shown}: unknown key '{key}'; valid keys: {}",
                valid.join(", ")
            );
        };
        let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let text = match (&value, switch) {
            (toml::Value::Boolean(b), true) => b.to_string(),
            (_, true) => bail!("configuration file {shown}: {key} must be true or false"),
            (toml::Value::String(s), false) => s.clone(),
            (toml::Value::Integer(i), false) => i.to_string(),
            (toml::Value::Float(f), false) => f.to_string(),
            (toml::Value::Boolean(b), false) => b.to_string(),
            (_, false) => bail!(
                "configuration file {shown}: {key} must be a string or a number (durations are \
                 strings such as \"10s\")"
            ),
        };
        if !switch {
            check_value(arg, &key, &text)
                .map_err(|e| anyhow::anyhow!("configuration file {shown}: {key} = {value}: {e}"))?;
        }
        values.insert(key, text);
    }
    Ok(values)
}

/// Parses one value with the flag's own parser, so a bad value is reported against the file
/// (clap would otherwise name the flag, which the operator never typed).
fn check_value(arg: &clap::Arg, key: &str, value: &str) -> Result<(), String> {
    let alone = arg
        .clone()
        .env(None::<&str>)
        .default_value(None::<&str>)
        .required(false)
        .global(false);
    Command::new("file")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(alone)
        .try_get_matches_from([format!("--{key}"), value.to_string()])
        .map(|_| ())
        .map_err(|e| {
            // clap's message is "error: invalid value 'x' for '--key <KEY>': why\n\n...".
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            match first.split_once("': ") {
                Some((_, why)) if first.starts_with("invalid value") => why.to_string(),
                _ => first.to_string(),
            }
        })
}

/// Makes `value` the default of the argument `key` (a global one on the root, else the
/// subcommand's at `path`).
fn with_default(root: Command, path: &[&str], key: &str, value: &str) -> Command {
    let id = root
        .get_arguments()
        .find(|a| a.is_global_set() && a.get_long() == Some(key))
        .map(|a| a.get_id().to_string());
    if let Some(id) = id {
        let value = value.to_string();
        return root.mut_arg(id, move |a| a.default_value(value));
    }
    mut_nested(root, path, key, value)
}

fn mut_nested(cmd: Command, path: &[&str], key: &str, value: &str) -> Command {
    let Some((first, rest)) = path.split_first() else {
        let id = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key))
            .map(|a| a.get_id().to_string());
        return match id {
            Some(id) => {
                let value = value.to_string();
                cmd.mut_arg(id, move |a| a.default_value(value))
            }
            None => cmd,
        };
    };
    cmd.mut_subcommand(first, |c| mut_nested(c, rest, key, value))
}

/// Where a setting's effective value came from, for `config check`.
pub fn source(matches: &ArgMatches, id: &str, key: &str, loaded: &Loaded) -> &'static str {
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::EnvVariable) => "environment",
        Some(ValueSource::DefaultValue) if loaded.values.contains_key(key) => "file",
        Some(ValueSource::DefaultValue) => "default",
        _ => "unset",
    }
}

/// The settings `config check` reports: each settable argument of the subcommand, in the
/// order `--help` lists them.
pub fn settings<'c>(root: &'c Command, path: &[&str]) -> Vec<&'c clap::Arg> {
    settable(root, path)
}
