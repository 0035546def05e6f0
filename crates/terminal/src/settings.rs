//! The settings the cloud configures (`config` frames), as this terminal applies them: the
//! version it runs, a newer one waiting for the transaction in progress to end, and the file
//! that keeps the applied one across restarts.
//!
//! The protocol's rules, which [`AppliedSettings::receive`] decides without any I/O:
//!
//! * a configuration is applied between transactions, never during one: a frame that arrives
//!   while a transaction is accepted or running is kept (the newest only) and applied as soon
//!   as that transaction's result is journaled, then acknowledged;
//! * a frame whose version is not newer than the applied one is acknowledged again but not
//!   re-applied (the cloud re-sends after a reconnect; acknowledgements are idempotent).
//!
//! [`AppliedSettings::apply`] writes the file before the settings take effect, atomically like
//! the journal (temporary file, fsync, rename), so after a power cut the terminal runs the
//! last settings it acknowledged, before the cloud says anything.

use crate::error::TerminalError;
use crate::journal::write_atomic;
use protocol::config::{BadProfile, DeviceConfig, Settings};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file format version this code reads and writes.
const FORMAT_VERSION: u32 = 1;

/// The on-disk shape: the applied `config` frame with a format version.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SettingsFile {
    format: u32,
    version: u64,
    settings: Settings,
}

/// What to do with a `config` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Newer than what runs, and nothing is in progress: apply it now, then acknowledge it.
    Apply(DeviceConfig),
    /// Newer, but a transaction is accepted or running: kept until it ends.
    Deferred { version: u64 },
    /// Not newer than what runs (a re-send): acknowledge it again, apply nothing.
    AckAgain { version: u64 },
    /// Not newer than the one already waiting (a re-send, or frames out of order across cloud
    /// nodes): dropped; the waiting one's acknowledgement covers it.
    Superseded { version: u64 },
    /// Settings that break the protocol's limits: never applied nor acknowledged. The cloud
    /// checks every profile, so this is a cloud bug; running on such settings could only go
    /// wrong (a receipt the cloud refuses, a surcharge above the legal rate).
    Refused { version: u64, reason: BadProfile },
}

/// The settings this terminal runs with, and where they are kept.
#[derive(Debug)]
pub struct AppliedSettings {
    path: PathBuf,
    /// `None` until the first `config` frame is applied: the defaults run.
    version: Option<u64>,
    settings: Settings,
    /// A newer frame that arrived during a transaction.
    pending: Option<DeviceConfig>,
}

impl AppliedSettings {
    /// Loads the applied settings; a missing file means none were ever applied (the defaults
    /// run), a corrupt one is an error rather than a silent return to the defaults: the cloud
    /// re-sends a configuration only while it is unacknowledged, so a terminal that forgot an
    /// acknowledged one would run without its surcharges and receipt text until an operator
    /// changed something.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TerminalError> {
        let path = path.into();
        let (version, settings) = match fs::read(&path) {
            Ok(bytes) => {
                let file = parse(&path, &bytes)?;
                (Some(file.version), file.settings)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (None, Settings::default()),
            Err(source) => return Err(TerminalError::SettingsIo { path, source }),
        };
        Ok(Self {
            path,
            version,
            settings,
            pending: None,
        })
    }

    /// Where the settings are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version applied, if any.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The settings in effect (the defaults until a configuration is applied).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The version waiting for the transaction in progress to end, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.version)
    }

    /// Decides what `frame` calls for; `busy` says whether a transaction is accepted or
    /// running. Keeps a deferred frame (the newest) for [`take_pending`](Self::take_pending).
    pub fn receive(&mut self, frame: DeviceConfig, busy: bool) -> Received {
        let version = frame.version;
        if self.version.is_some_and(|v| version <= v) {
            return Received::AckAgain { version };
        }
        if let Err(reason) = frame.settings.as_profile().check() {
            return Received::Refused { version, reason };
        }
        if self.pending.as_ref().is_some_and(|p| version <= p.version) {
            if busy {
                return Received::Superseded { version };
            }
            // Idle with one waiting cannot happen (it is applied when the transaction ends),
            // but if it did the newest of the two is the one to run.
            if let Some(waiting) = self.pending.take() {
                return Received::Apply(waiting);
            }
        }
        if busy {
            self.pending = Some(frame);
            return Received::Deferred { version };
        }
        self.pending = None;
        Received::Apply(frame)
    }

    /// The deferred frame, to apply now that the transaction is over.
    pub fn take_pending(&mut self) -> Option<DeviceConfig> {
        self.pending.take()
    }

    /// Keeps `config` on disk, then runs it. A failed write changes nothing: the caller must
    /// not acknowledge it, so the cloud sends it again on the next connection.
    pub async fn apply(&mut self, config: DeviceConfig) -> Result<(), TerminalError> {
        let file = SettingsFile {
            format: FORMAT_VERSION,
            version: config.version,
            settings: config.settings,
        };
        let path = self.path.clone();
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| TerminalError::SettingsIo {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let target = path.clone();
        // fsync may take a while: off the async threads, as the journal does.
        tokio::task::spawn_blocking(move || write_atomic(&target, &bytes))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map_err(|source| TerminalError::SettingsIo { path, source })?;
        self.version = Some(file.version);
        self.settings = file.settings;
        Ok(())
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<SettingsFile, TerminalError> {
    let corrupt = |detail: String| TerminalError::SettingsCorrupt {
        path: path.to_path_buf(),
        detail,
    };
    let file: SettingsFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported format version {} (this agent reads {FORMAT_VERSION})",
            file.format
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::config::SurchargeRule;

    fn frame(version: u64, header: &str) -> DeviceConfig {
        DeviceConfig {
            version,
            settings: Settings {
                receipt_header: header.into(),
                ..Settings::default()
            },
        }
    }

    fn settings_at(dir: &tempfile::TempDir) -> AppliedSettings {
        match AppliedSettings::open(dir.path().join("dev.config.json")) {
            Ok(s) => s,
            Err(e) => panic!("open: {e}"),
        }
    }

    #[test]
    fn idle_applies_busy_defers_the_newest_and_old_versions_are_acknowledged_again() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let mut s = settings_at(&dir);
        assert_eq!(s.version(), None);
        assert_eq!(s.settings(), &Settings::default());
        // Nothing applied yet: any version is newer, even 0.
        assert_eq!(
            s.receive(frame(0, "a"), false),
            Received::Apply(frame(0, "a"))
        );

        // Pretend version 5 runs.
        s.version = Some(5);
        assert_eq!(
            s.receive(frame(5, "again"), false),
            Received::AckAgain { version: 5 }
        );
        assert_eq!(
            s.receive(frame(3, "older"), true),
            Received::AckAgain { version: 3 },
            "acknowledged even mid-transaction: nothing is applied"
        );
        // Busy: the newest waits; an older or equal one is dropped.
        assert_eq!(
            s.receive(frame(7, "seven"), true),
            Received::Deferred { version: 7 }
        );
        assert_eq!(
            s.receive(frame(6, "six"), true),
            Received::Superseded { version: 6 }
        );
        assert_eq!(
            s.receive(frame(7, "seven again"), true),
            Received::Superseded { version: 7 }
        );
        assert_eq!(
            s.receive(frame(8, "eight"), true),
            Received::Deferred { version: 8 }
        );
        assert_eq!(s.pending(), Some(8));
        assert_eq!(s.take_pending(), Some(frame(8, "eight")));
        assert_eq!(s.take_pending(), None);
        // Idle: applied at once.
        assert_eq!(
            s.receive(frame(9, "nine"), false),
            Received::Apply(frame(9, "nine"))
        );
        assert_eq!(s.pending(), None);
    }

    #[test]
    fn settings_beyond_the_limits_are_refused() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let mut s = settings_at(&dir);
        let mut bad = frame(1, "");
        bad.settings.surcharges = vec![SurchargeRule {
            card: "VISA".into(),
            bps: 5_000,
            cap: None,
        }];
        assert!(matches!(
            s.receive(bad.clone(), false),
            Received::Refused { version: 1, .. }
        ));
        assert!(matches!(
            s.receive(bad, true),
            Received::Refused { version: 1, .. }
        ));
        assert_eq!(s.pending(), None);
    }

    #[tokio::test]
    async fn applied_settings_survive_a_reopen_and_leave_no_temporary_file() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let mut s = settings_at(&dir);
        assert!(!s.path().exists(), "opening must not create the file");
        assert!(s.apply(frame(4, "Joe's Coffee")).await.is_ok());
        assert_eq!(s.version(), Some(4));
        let reopened = settings_at(&dir);
        assert_eq!(reopened.version(), Some(4));
        assert_eq!(reopened.settings().receipt_header, "Joe's Coffee");
        let names: Vec<_> = fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        // A directory cannot be replaced by a file, so the write fails.
        let path = dir.path().join("sub");
        assert!(fs::create_dir(&path).is_ok());
        let mut s = AppliedSettings {
            path,
            version: None,
            settings: Settings::default(),
            pending: None,
        };
        assert!(matches!(
            s.apply(frame(1, "x")).await,
            Err(TerminalError::SettingsIo { .. })
        ));
        assert_eq!(s.version(), None);
        assert_eq!(s.settings(), &Settings::default());
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_left_alone() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("dev.config.json");
        for bad in [
            &b"{\"format\":1,\"version\":"[..],
            b"",
            b"{\"format\":2,\"version\":1,\"settings\":{}}",
        ] {
            assert!(fs::write(&path, bad).is_ok());
            match AppliedSettings::open(&path) {
                Err(TerminalError::SettingsCorrupt { detail, .. }) => assert!(!detail.is_empty()),
                other => panic!("expected corrupt, got {other:?}"),
            }
            assert_eq!(fs::read(&path).ok().as_deref(), Some(bad));
        }
    }
}
