//! The card-acceptance backend: what actually runs a transaction once the cloud says `start`.
//!
//! The agent owns the connection and the journal; a backend only talks to the card reader (or
//! pretends to, like the simulator). It is object-safe so the agent can hold an
//! `Arc<dyn CardBackend>` chosen at startup.

use crate::journal::JournalHistory;
use protocol::config::Settings;
use protocol::device::{DeviceResult, Hardware, TransactionOffer};
use protocol::TransactionId;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The future a backend returns: owned (`'static`) so the agent can run it in its own task.
pub type BackendFuture = Pin<Box<dyn Future<Output = BackendOutcome> + Send + 'static>>;

/// Runs transactions on the card hardware (or a simulation of it).
pub trait CardBackend: Send + Sync + 'static {
    /// Runs one started transaction to its end. Called once per transaction id: the agent's
    /// journal guarantees a transaction is never run twice.
    fn run(&self, transaction: BackendTransaction) -> BackendFuture;
}

/// What a backend gets for one transaction.
#[derive(Debug)]
pub struct BackendTransaction {
    /// The request as offered by the cloud.
    pub offer: TransactionOffer,
    /// Where to report prompts shown on screen.
    pub progress: ProgressSink,
    /// Cancelled when the POS asks to cancel: stop if the card has not been charged yet.
    pub cancel: CancellationToken,
    /// Finished transactions, oldest first (reprint, last result, settlement totals).
    pub history: JournalHistory,
    /// The screen and printer the device declared (no `printer_columns`: no printer).
    pub hardware: Hardware,
    /// The settings the cloud configured, as applied when the transaction started: a
    /// configuration that arrives meanwhile waits for it to end, so they never change under a
    /// running transaction.
    pub settings: Settings,
}

/// How a backend run ended.
// One outcome per transaction, moved once from the backend's task to the agent: boxing the
// result would cost an allocation to save stack that is never held in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BackendOutcome {
    /// The transaction ended (approved, declined, cancelled, failed): journal and report it.
    Completed(DeviceResult),
    /// The device lost power mid-transaction: the agent stops at once, as if unplugged.
    PowerFailure,
}

/// A prompt shown on the device's screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// One of `protocol::device::prompt::*`.
    pub prompt: String,
    /// Free text shown with it.
    pub text: String,
}

/// What a running transaction tells the agent before its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A prompt on screen: forwarded to the cloud as `progress`.
    Prompt(Progress),
    /// A slip came out of the printer, rendered as text: shown to the operator, not sent.
    Printed(String),
}

/// Sends a running transaction's prompts (and printed slips) to the agent, which forwards
/// prompts as `progress`.
#[derive(Debug, Clone)]
pub struct ProgressSink {
    transaction_id: TransactionId,
    tx: mpsc::Sender<(TransactionId, Note)>,
}

impl ProgressSink {
    /// A sink tagging every note with `transaction_id`.
    pub fn new(transaction_id: TransactionId, tx: mpsc::Sender<(TransactionId, Note)>) -> Self {
        Self { transaction_id, tx }
    }

    /// Reports a prompt. Waits if the agent is momentarily behind (the channel is bounded);
    /// a stopped agent is ignored, since the screen matters less than finishing the payment.
    pub async fn show(&self, prompt: &str, text: impl Into<String>) {
        let p = Progress {
            prompt: prompt.to_string(),
            text: text.into(),
        };
        let _ = self.tx.send((self.transaction_id, Note::Prompt(p))).await;
    }

    /// Reports a printed slip, as text.
    pub async fn printed(&self, slip: impl Into<String>) {
        let _ = self
            .tx
            .send((self.transaction_id, Note::Printed(slip.into())))
            .await;
    }
}
