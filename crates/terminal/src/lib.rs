//! The device-side client of eftcloud (the "terminal agent").
//!
//! A payment terminal runs [`agent::run`]: it connects out to the cloud's `/device/v1`
//! WebSocket, authenticates with `hello`, shows pairing codes, runs each transaction through a
//! pluggable [`CardBackend`] (the [`Simulator`] ships with it), and keeps a durable
//! [`Journal`] so that a power cut never loses or repeats a payment. It applies the settings the
//! cloud pushes between transactions and keeps them ([`AppliedSettings`]), and installs the
//! software updates the operator signed ([`update`]). [`cli`] wraps it all
//! as the `eftcloud terminal` command.

pub mod agent;
pub mod backend;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod console;
pub mod display;
pub mod error;
pub mod health;
pub mod journal;
pub mod settings;
pub mod simulator;
pub mod slip;
pub mod tls;
pub mod update;

/// The version this agent reports (`hello.agent_version`, health): the crate's, unless the
/// build sets `EFTCLOUD_AGENT_VERSION` (a second build for the self-update tests, or a
/// packager's own version string).
pub const AGENT_VERSION: &str = match option_env!("EFTCLOUD_AGENT_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

pub use agent::{run, Exit, TerminalCommand, TerminalEvent};
pub use backend::{BackendOutcome, BackendTransaction, CardBackend, Note, Progress, ProgressSink};
pub use cli::TerminalArgs;
pub use config::TerminalConfig;
pub use error::TerminalError;
pub use journal::{Journal, JournalHistory};
pub use settings::AppliedSettings;
pub use simulator::{Simulator, SimulatorConfig};
pub use update::{Install, Installer, VerifiedUpdate};
