//! `eftcloud release-key generate|public|sign`: the operator's release key, kept offline.
//!
//! A release key signs the software terminals install (`protocol::update`): terminals trust its
//! public half (`eftcloud terminal --release-key <hex>`), the cloud is told it too (`POST
//! /admin/release-keys`), and only the holder of the private half can make an artifact either
//! accepts. So these commands touch nothing but files: no cloud, no database, no network; the
//! key can live on a machine that never connects to anything.
//!
//! The private key file is PEM (RFC 7468): its PKCS#8 bytes in base64 between `-----BEGIN
//! PRIVATE KEY-----` and `-----END PRIVATE KEY-----`, 64 characters a line. The PKCS#8 inside is
//! version 2 (RFC 5958: the private key with its public key), which is what ring writes and
//! reads; OpenSSL 3 does not read that version, and ring does not take OpenSSL's version 1, so
//! a key is made here, not imported. The workspace has no base64 crate, and the few lines here
//! are all this needs (standard alphabet, padded).

use anyhow::Context;
use protocol::update::{BadArtifact, SigningKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Release keys: create one, show its public half, sign an artifact.
#[derive(clap::Subcommand, Debug)]
pub enum ReleaseKeyCommand {
    /// Create a release key: writes the private key (PEM, mode 0600; never overwrites a file)
    /// and prints the public key and its id.
    Generate {
        /// The private key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a private key's public key (what terminals trust: `terminal --release-key`) and
    /// its id.
    Public {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign a software artifact: prints the JSON the cloud's `POST /admin/artifacts` takes
    /// (`version`, `size`, `sha256`, `signature`, `keyId`; add a `url` to serve it elsewhere).
    // `--version` is the artifact's here, not eftcloud's own (`eftcloud --version` still is).
    #[command(disable_version_flag = true)]
    Sign {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// The version the artifact installs (what the terminal reports once it runs it).
        #[arg(long)]
        version: String,
        /// The artifact: the file terminals download and install.
        artifact: PathBuf,
    },
}

/// Runs a release-key command.
pub fn run(cmd: ReleaseKeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReleaseKeyCommand::Generate { out } => generate(&out),
        ReleaseKeyCommand::Public { key } => {
            let key = read_key(&key)?;
            print_public(&key);
            Ok(ExitCode::SUCCESS)
        }
        ReleaseKeyCommand::Sign {
            key,
            version,
            artifact,
        } => sign(&key, &version, &artifact),
    }
}

fn generate(out: &Path) -> anyhow::Result<ExitCode> {
    let (pkcs8, key) = SigningKey::generate().context("cannot generate a key")?;
    write_new_private(out, pem(&pkcs8).as_bytes())?;
    println!(
        "private key written to {} (mode 0600): keep it offline, it signs what terminals install",
        out.display()
    );
    print_public(&key);
    Ok(ExitCode::SUCCESS)
}

fn print_public(key: &SigningKey) {
    let public = key.public();
    println!("public key: {}", public.to_hex());
    println!("key id: {}", public.id());
}

fn sign(key: &Path, version: &str, artifact: &Path) -> anyhow::Result<ExitCode> {
    let key = read_key(key)?;
    protocol::update::check_version(version).map_err(|e| anyhow::anyhow!("--version: {e}"))?;
    let file = std::fs::read(artifact)
        .with_context(|| format!("cannot read the artifact {}", artifact.display()))?;
    let signed = key.sign(version, &file).map_err(anyhow::Error::from)?;
    let body = serde_json::json!({
        "version": version,
        "size": file.len() as u64,
        "sha256": signed.sha256,
        "signature": signed.signature,
        "keyId": signed.key_id,
    });
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` readable by its owner only, failing if it exists: a release key is never
/// replaced by accident, since terminals trust only the one they were given.
fn write_new_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: a release key is never overwritten (terminals trust the \
                 one they have); choose another file",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        anyhow::bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}

/// Reads a private key file written by `generate`.
fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    let not_a_key = |why: &str| {
        anyhow::anyhow!(
            "{} is not a release key ({why}); `eftcloud release-key generate` makes one",
            path.display()
        )
    };
    let der = unpem(&text).ok_or_else(|| not_a_key("no PEM PRIVATE KEY block"))?;
    SigningKey::from_pkcs8(&der).map_err(|e: BadArtifact| not_a_key(&e.to_string()))
}

fn pem(der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = String::from(PEM_BEGIN);
    out.push('\n');
    // Whole 64-character lines; the chunks of an ASCII string are ASCII.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

fn unpem(text: &str) -> Option<Vec<u8>> {
    let start = text.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = start + text[start..].find(PEM_END)?;
    base64_decode(&text[start..end])
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Decodes padded standard base64, ignoring whitespace (PEM's line breaks); `None` on anything
/// else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let chars: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !chars.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    let quads = chars.len() / 4;
    for (i, quad) in chars.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        // Padding only at the very end, and at most two.
        if padding > 2 || (padding > 0 && i + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - padding] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * padding as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        for (raw, b64) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0x00, 0x3e, 0x3f][..], "//4APj8="),
        ] {
            assert_eq!(base64_encode(raw), b64);
            assert_eq!(base64_decode(b64).as_deref(), Some(raw));
        }
        assert_eq!(
            base64_decode("Zm9v\nYmFy\n").as_deref(),
            Some(&b"foobar"[..])
        );
        for bad in ["Zm9", "Zm=v", "Z===", "Zg==Zg==", "Zm9v!A==", "é123"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pem_key_reads_back_as_the_same_key() {
        let (pkcs8, key) = SigningKey::generate().unwrap_or_else(|_| unreachable!());
        let text = pem(&pkcs8);
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        assert!(text.lines().all(|l| l.len() <= 64), "{text}");
        let der = unpem(&text).unwrap_or_default();
        let again = SigningKey::from_pkcs8(&der).unwrap_or_else(|_| unreachable!());
        assert_eq!(again.public(), key.public());
        assert_eq!(unpem("no key here"), None);
    }
}
