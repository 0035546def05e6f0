//! The durable journal: what the device has started and what came of it.
//!
//! Every change replaces the whole file atomically (temporary file in the same directory,
//! fsync, rename over the old one, fsync the directory), so after a power cut the journal is
//! either the old or the new version, never a torn mix. `Started` is written before the card
//! is touched and `Completed` before the result is sent: that ordering is what lets the device
//! reverse an interrupted payment instead of forgetting it, and resend a result it may not have
//! delivered instead of running the payment twice.

use crate::error::TerminalError;
use protocol::device::{DeviceResult, TransactionOffer};
use protocol::TransactionId;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How many finished (completed or acknowledged) entries are kept for history.
pub const HISTORY_LEN: usize = 100;

/// The file format version this code reads and writes.
const FORMAT_VERSION: u32 = 1;

/// One transaction the device started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The offer as the cloud sent it.
    pub offer: TransactionOffer,
    /// How far it got.
    pub state: EntryState,
}

impl JournalEntry {
    /// The transaction's id.
    pub fn transaction_id(&self) -> TransactionId {
        self.offer.transaction_id
    }

    /// The result, once there is one.
    pub fn result(&self) -> Option<&DeviceResult> {
        match &self.state {
            EntryState::Started => None,
            EntryState::Completed { result } | EntryState::Acknowledged { result } => Some(result),
        }
    }
}

/// The life of a journaled transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Written before the card is touched; still present at startup means the power failed.
    Started,
    /// Written before the result is sent; resent until the cloud acknowledges it.
    Completed { result: DeviceResult },
    /// The cloud stored the result; kept only as history (reprint, last result, settlement).
    Acknowledged { result: DeviceResult },
}

/// The on-disk shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct JournalFile {
    version: u32,
    /// Oldest first.
    entries: Vec<JournalEntry>,
}

/// The journal, loaded in memory and written through to disk on every change.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: JournalFile,
}

impl Journal {
    /// Loads the journal; a missing file is an empty journal, a corrupt one is an error (payment
    /// data is never silently discarded).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TerminalError> {
        let path = path.into();
        let file = match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => JournalFile {
                version: FORMAT_VERSION,
                entries: Vec::new(),
            },
            Err(source) => return Err(TerminalError::JournalIo { path, source }),
        };
        Ok(Self { path, file })
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.file.entries
    }

    /// The entry for one transaction.
    pub fn get(&self, id: TransactionId) -> Option<&JournalEntry> {
        self.file.entries.iter().find(|e| e.transaction_id() == id)
    }

    /// Results the cloud has not acknowledged, oldest first (sent in `hello`).
    pub fn unacknowledged(&self) -> Vec<DeviceResult> {
        self.file
            .entries
            .iter()
            .filter_map(|e| match &e.state {
                EntryState::Completed { result } => Some(result.clone()),
                _ => None,
            })
            .collect()
    }

    /// The transaction started but without a result, if any.
    pub fn in_progress(&self) -> Option<TransactionId> {
        self.interrupted().first().map(|o| o.transaction_id)
    }

    /// Offers of every entry started without a result. At startup these were cut short by a
    /// power failure.
    pub fn interrupted(&self) -> Vec<TransactionOffer> {
        self.file
            .entries
            .iter()
            .filter(|e| e.state == EntryState::Started)
            .map(|e| e.offer.clone())
            .collect()
    }

    /// A snapshot of the finished transactions, for the card backend.
    pub fn history(&self) -> JournalHistory {
        JournalHistory {
            entries: self
                .file
                .entries
                .iter()
                .filter_map(|e| {
                    e.result().map(|r| HistoryEntry {
                        offer: e.offer.clone(),
                        result: r.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Journals that the transaction is about to touch the card. A second call for the same id
    /// changes nothing. If the write fails, the entry is not kept: the card must not be touched.
    pub async fn record_started(&mut self, offer: &TransactionOffer) -> Result<(), TerminalError> {
        if self.get(offer.transaction_id).is_some() {
            return Ok(());
        }
        self.file.entries.push(JournalEntry {
            offer: offer.clone(),
            state: EntryState::Started,
        });
        if let Err(e) = self.save().await {
            self.file
                .entries
                .retain(|x| x.transaction_id() != offer.transaction_id);
            return Err(e);
        }
        Ok(())
    }

    /// Journals the result of a started transaction. The first result wins: a result is never
    /// rewritten. Returns whether the entry changed. A failed write keeps the result in memory
    /// (it is still sent), and the next change retries the write.
    pub async fn record_completed(&mut self, result: DeviceResult) -> Result<bool, TerminalError> {
        let Some(entry) = self
            .file
            .entries
            .iter_mut()
            .find(|e| e.transaction_id() == result.transaction_id)
        else {
            return Ok(false);
        };
        if entry.state != EntryState::Started {
            return Ok(false);
        }
        entry.state = EntryState::Completed { result };
        self.prune();
        self.save().await?;
        Ok(true)
    }

    /// Journals that the cloud stored the result. Returns whether the entry changed.
    pub async fn record_acknowledged(&mut self, id: TransactionId) -> Result<bool, TerminalError> {
        let Some(entry) = self
            .file
            .entries
            .iter_mut()
            .find(|e| e.transaction_id() == id)
        else {
            return Ok(false);
        };
        let EntryState::Completed { result } = &entry.state else {
            return Ok(false);
        };
        entry.state = EntryState::Acknowledged {
            result: result.clone(),
        };
        self.prune();
        self.save().await?;
        Ok(true)
    }

    /// Drops the oldest acknowledged entries beyond the history length. Started and
    /// unacknowledged entries are never dropped: they are payments the cloud may not know.
    fn prune(&mut self) {
        let finished = self
            .file
            .entries
            .iter()
            .filter(|e| e.result().is_some())
            .count();
        let mut excess = finished.saturating_sub(HISTORY_LEN);
        if excess == 0 {
            return;
        }
        self.file.entries.retain(|e| {
            if excess > 0 && matches!(e.state, EntryState::Acknowledged { .. }) {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Writes the whole journal atomically, off the async threads (fsync may take a while).
    async fn save(&self) -> Result<(), TerminalError> {
        let path = self.path.clone();
        let bytes =
            serde_json::to_vec_pretty(&self.file).map_err(|e| TerminalError::JournalIo {
                path: path.clone(),
                source: io::Error::other(e),
            })?;
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomic(&target, &bytes))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        written.map_err(|source| TerminalError::JournalIo { path, source })
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<JournalFile, TerminalError> {
    let corrupt = |detail: String| TerminalError::JournalCorrupt {
        path: path.to_path_buf(),
        detail,
    };
    let file: JournalFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported format version {} (this agent reads {FORMAT_VERSION})",
            file.version
        )));
    }
    Ok(file)
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content (the
/// applied settings are kept the same way).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename itself lives in the directory; without this a power cut may forget it.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// A finished transaction, as the card backend sees the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// What was asked.
    pub offer: TransactionOffer,
    /// What came of it.
    pub result: DeviceResult,
}

/// Read-only history of finished transactions, oldest first (reprint, last result,
/// settlement totals).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalHistory {
    entries: Vec<HistoryEntry>,
}

impl JournalHistory {
    /// Builds a history from entries, oldest first (for custom backends and tests).
    pub fn from_entries(entries: Vec<HistoryEntry>) -> Self {
        Self { entries }
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// The newest entry matching `pred`.
    pub fn last_where(&self, pred: impl Fn(&HistoryEntry) -> bool) -> Option<&HistoryEntry> {
        self.entries.iter().rev().find(|e| pred(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{
        Cents, Function, RegisterInfo, RegisterKey, ResultCode, TransactionRequest,
        TransactionResult,
    };

    fn offer() -> TransactionOffer {
        TransactionOffer {
            transaction_id: TransactionId::new(),
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r1".into(),
                    business_name: "Shop".into(),
                    vendor_name: "V".into(),
                },
                register_name: "Front".into(),
            },
            request: TransactionRequest {
                amount_total: Cents::new(1000).ok(),
                ..TransactionRequest::of(Function::CardPurchase)
            },
            request_timestamp: "20240101000000".into(),
        }
    }

    fn result(id: TransactionId) -> DeviceResult {
        DeviceResult {
            transaction_id: id,
            transaction_result: Some(TransactionResult::Accepted),
            result: ResultCode::Ok,
            result_text: "APPROVED".into(),
            fields: [("AuthId".to_string(), "123456".to_string())].into(),
            receipts: None,
            settlement: None,
        }
    }

    #[tokio::test]
    async fn missing_file_is_empty_and_round_trips() -> Result<(), TerminalError> {
        let dir = tempfile::tempdir().map_err(|e| TerminalError::InvalidArgument(e.to_string()))?;
        let path = dir.path().join("t.journal");
        let mut j = Journal::open(&path)?;
        assert!(j.entries().is_empty());
        assert!(!path.exists(), "opening must not create the file");

        let o = offer();
        let id = o.transaction_id;
        j.record_started(&o).await?;
        let reopened = Journal::open(&path)?;
        assert_eq!(reopened.in_progress(), Some(id));
        assert_eq!(reopened.interrupted(), vec![o.clone()]);
        assert!(reopened.unacknowledged().is_empty());

        assert!(j.record_completed(result(id)).await?);
        // The first result wins.
        let mut other = result(id);
        other.result_text = "CHANGED".into();
        assert!(!j.record_completed(other).await?);
        let reopened = Journal::open(&path)?;
        assert_eq!(reopened.in_progress(), None);
        assert_eq!(reopened.unacknowledged(), vec![result(id)]);
        assert_eq!(reopened.history().entries().len(), 1);

        assert!(j.record_acknowledged(id).await?);
        assert!(!j.record_acknowledged(id).await?);
        let reopened = Journal::open(&path)?;
        assert!(reopened.unacknowledged().is_empty());
        assert_eq!(
            reopened.get(id).map(|e| e.state.clone()),
            Some(EntryState::Acknowledged { result: result(id) })
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .map_err(|e| TerminalError::InvalidArgument(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_and_left_alone() -> Result<(), TerminalError> {
        let dir = tempfile::tempdir().map_err(|e| TerminalError::InvalidArgument(e.to_string()))?;
        let path = dir.path().join("t.journal");
        for bad in [
            &b"{\"version\":1,\"entries\":[{"[..],
            b"",
            b"{\"version\":99,\"entries\":[]}",
        ] {
            fs::write(&path, bad).map_err(|e| TerminalError::InvalidArgument(e.to_string()))?;
            match Journal::open(&path) {
                Err(TerminalError::JournalCorrupt { detail, .. }) => assert!(!detail.is_empty()),
                other => panic!("expected corrupt, got {other:?}"),
            }
            assert_eq!(fs::read(&path).ok().as_deref(), Some(bad));
        }
        Ok(())
    }

    #[tokio::test]
    async fn keeps_unacknowledged_and_prunes_old_history() -> Result<(), TerminalError> {
        let dir = tempfile::tempdir().map_err(|e| TerminalError::InvalidArgument(e.to_string()))?;
        let path = dir.path().join("t.journal");
        let mut j = Journal::open(&path)?;
        let first = offer();
        j.record_started(&first).await?;
        j.record_completed(result(first.transaction_id)).await?;
        // The first one stays unacknowledged: it must survive any amount of later history.
        for _ in 0..HISTORY_LEN + 10 {
            let o = offer();
            j.record_started(&o).await?;
            j.record_completed(result(o.transaction_id)).await?;
            j.record_acknowledged(o.transaction_id).await?;
        }
        let reopened = Journal::open(&path)?;
        assert_eq!(reopened.entries().len(), HISTORY_LEN);
        assert_eq!(
            reopened.unacknowledged(),
            vec![result(first.transaction_id)]
        );
        Ok(())
    }

    #[tokio::test]
    async fn failed_start_write_is_not_kept() {
        // A directory cannot be replaced by a file, so the write fails.
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("sub");
        assert!(fs::create_dir(&path).is_ok());
        let mut j = Journal {
            path,
            file: JournalFile {
                version: FORMAT_VERSION,
                entries: Vec::new(),
            },
        };
        assert!(j.record_started(&offer()).await.is_err());
        assert!(j.entries().is_empty());
    }
}
