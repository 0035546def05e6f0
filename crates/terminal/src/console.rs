//! The operator at a simulated terminal (`eftcloud terminal --interactive`): the lines typed
//! on stdin answer what the simulator asks the customer (an input, a QR code to dismiss), and
//! are commands (`pair`, `unpair`, `quit`) while nothing is asked.
//!
//! One reader owns stdin and hands each line to [`Operator::answer`]; a question takes lines
//! through a [`Listening`] for as long as it is held, so a question that ends (answered,
//! timed out, cancelled by the POS) stops taking lines at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Lines typed while a question waits, before it reads them.
const PENDING_LINES: usize = 8;

/// The operator's console, shared by the stdin reader and the simulator.
#[derive(Debug, Clone, Default)]
pub struct Operator {
    /// The question waiting for a line, if any. A plain mutex: it is never held across an
    /// `.await`, only to hand over or take a sender.
    waiting: Arc<Mutex<Option<Waiting>>>,
    next_id: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    lines: mpsc::Sender<String>,
}

impl Operator {
    /// A console with no question waiting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives a typed line to the waiting question; gives it back when nothing is asked (it
    /// is then a command).
    pub fn answer(&self, line: String) -> Option<String> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match waiting.as_ref() {
            Some(w) => {
                if w.lines.try_send(line).is_err() {
                    tracing::debug!(
                        "the operator typed faster than the question reads; line dropped"
                    );
                }
                None
            }
            None => Some(line),
        }
    }

    /// Whether a question is waiting for a line.
    pub fn is_asking(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Takes the operator's lines until the returned [`Listening`] is dropped (a newer
    /// question takes them over).
    pub fn listen(&self) -> Listening {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PENDING_LINES);
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(Waiting { id, lines: tx });
        Listening {
            operator: self.clone(),
            id,
            lines: rx,
        }
    }

    /// Shows the operator what is asked.
    pub fn say(&self, text: &str) {
        println!("{text}");
    }
}

/// A question taking the operator's lines.
#[derive(Debug)]
pub struct Listening {
    operator: Operator,
    id: u64,
    lines: mpsc::Receiver<String>,
}

impl Listening {
    /// The next line typed; never returns while nothing is typed (a question ends by its
    /// timeout or a cancel, not by the console going quiet).
    pub async fn line(&mut self) -> String {
        match self.lines.recv().await {
            Some(line) => line,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut waiting = self
            .operator
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if waiting.as_ref().is_some_and(|w| w.id == self.id) {
            *waiting = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_go_to_the_question_while_it_listens() {
        let op = Operator::new();
        assert_eq!(op.answer("pair".into()), Some("pair".into()));
        let mut first = op.listen();
        assert!(op.is_asking());
        assert_eq!(op.answer("a@b.co".into()), None);
        assert_eq!(first.line().await, "a@b.co");
        // A newer question takes over; the older one's end does not stop it.
        let mut second = op.listen();
        drop(first);
        assert!(op.is_asking());
        assert_eq!(op.answer("2".into()), None);
        assert_eq!(second.line().await, "2");
        drop(second);
        assert!(!op.is_asking());
        assert_eq!(op.answer("unpair".into()), Some("unpair".into()));
    }
}
