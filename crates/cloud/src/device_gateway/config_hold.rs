//! Settings never change under a payment: a connection holds a `config` frame while its device
//! runs a transaction, and sends it once that transaction is over.
//!
//! The connection is the one place that knows this exactly and at once, on whichever node the
//! change was made: every frame to the device passes through it, so it sees each offer
//! (`transaction`) and each end of one (`result_ack`, or `abort` of an offer not run). Only
//! the newest held frame is kept: a device applies its latest settings, not every step.

use protocol::config::DeviceConfig;
use protocol::device::CloudMessage;
use protocol::TransactionId;

/// The transactions a connection's device runs, and the `config` frame held until they end.
#[derive(Debug, Default)]
pub struct ConfigHold {
    /// Offered or running and not ended, as this connection saw them (at most a few: a device
    /// runs one job at a time, an old offer may linger until its abort).
    running: Vec<TransactionId>,
    held: Option<DeviceConfig>,
}

impl ConfigHold {
    /// A connection whose device said in `hello` that it is running `in_progress`.
    pub fn new(in_progress: Option<TransactionId>) -> Self {
        Self {
            running: in_progress.into_iter().collect(),
            held: None,
        }
    }

    /// What to send in place of `msg`: the frame itself unless it is a `config` frame held
    /// back, then a held `config` frame that `msg` released.
    pub fn outbound(&mut self, msg: CloudMessage) -> (Option<CloudMessage>, Option<CloudMessage>) {
        match msg {
            CloudMessage::Transaction(ref offer) => {
                if !self.running.contains(&offer.transaction_id) {
                    self.running.push(offer.transaction_id);
                }
                (Some(msg), None)
            }
            CloudMessage::ResultAck { transaction_id }
            | CloudMessage::Abort { transaction_id, .. } => {
                self.running.retain(|id| *id != transaction_id);
                let released = if self.running.is_empty() {
                    self.held.take().map(CloudMessage::Config)
                } else {
                    None
                };
                (Some(msg), released)
            }
            CloudMessage::Config(config) if !self.running.is_empty() => {
                if self
                    .held
                    .as_ref()
                    .is_none_or(|h| h.version < config.version)
                {
                    self.held = Some(config);
                }
                (None, None)
            }
            other => (Some(other), None),
        }
    }

    /// Whether a `config` frame waits for the device's transaction to end.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::config::Settings;
    use protocol::device::TransactionOffer;
    use protocol::{Function, RegisterInfo, RegisterKey, TransactionRequest};

    fn offer(id: TransactionId) -> CloudMessage {
        CloudMessage::Transaction(TransactionOffer {
            transaction_id: id,
            register: RegisterInfo {
                key: RegisterKey {
                    register_id: "r".into(),
                    business_name: "b".into(),
                    vendor_name: "v".into(),
                },
                register_name: "Main".into(),
            },
            request: TransactionRequest::of(Function::CardPurchase),
            request_timestamp: "20240101000000".into(),
        })
    }

    fn config(version: u64) -> CloudMessage {
        CloudMessage::Config(DeviceConfig {
            version,
            settings: Settings::default(),
        })
    }

    fn version(m: &Option<CloudMessage>) -> Option<u64> {
        match m {
            Some(CloudMessage::Config(c)) => Some(c.version),
            _ => None,
        }
    }

    #[test]
    fn an_idle_device_gets_its_settings_at_once() {
        let mut hold = ConfigHold::default();
        let (now, after) = hold.outbound(config(1));
        assert_eq!(version(&now), Some(1));
        assert!(after.is_none());
        assert!(!hold.holding());
    }

    #[test]
    fn settings_wait_for_the_result_and_only_the_newest_is_sent() {
        let id = TransactionId::new();
        let mut hold = ConfigHold::default();
        assert!(hold.outbound(offer(id)).0.is_some());
        for v in [2, 4, 3] {
            assert_eq!(hold.outbound(config(v)), (None, None));
        }
        assert!(hold.holding());
        // Other frames pass while it waits.
        let ping = CloudMessage::Ping { nonce: 1 };
        assert_eq!(hold.outbound(ping.clone()), (Some(ping), None));
        let (ack, released) = hold.outbound(CloudMessage::ResultAck { transaction_id: id });
        assert!(matches!(ack, Some(CloudMessage::ResultAck { .. })));
        assert_eq!(version(&released), Some(4));
        assert!(!hold.holding());
        // Acknowledging again releases nothing more.
        assert_eq!(
            hold.outbound(CloudMessage::ResultAck { transaction_id: id })
                .1,
            None
        );
    }

    #[test]
    fn an_abort_ends_an_offer_and_the_transaction_said_in_hello_counts() {
        let (old, new) = (TransactionId::new(), TransactionId::new());
        let mut hold = ConfigHold::new(Some(old));
        assert_eq!(hold.outbound(config(1)).0, None);
        hold.outbound(offer(new));
        // One of two ended: still held.
        let abort = CloudMessage::Abort {
            transaction_id: new,
            reason: "not accepted in time".into(),
        };
        assert_eq!(hold.outbound(abort).1, None);
        let (_, released) = hold.outbound(CloudMessage::ResultAck {
            transaction_id: old,
        });
        assert_eq!(version(&released), Some(1));
        // An ack of something never offered here passes and releases nothing.
        let stray = TransactionId::new();
        let (ack, none) = hold.outbound(CloudMessage::ResultAck {
            transaction_id: stray,
        });
        assert!(ack.is_some());
        assert!(none.is_none());
    }
}
