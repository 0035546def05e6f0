//! What the business is, with no I/O: the records (device, register, transaction), the
//! accounts (merchants, sites, keys, principals), the transaction lifecycle as a pure state
//! machine, its timeline, and the clock time comes in through. Everything else depends on this
//! module and it depends on nothing of the cloud's: store, metrics, engine, bus and the edges import it,
//! never the other way round.

pub mod accounts;
pub mod actions;
pub mod campaigns;
pub mod clock;
pub mod config;
pub mod events;
pub mod lifecycle;
pub mod orders;
pub mod payments;
pub mod people;
pub mod receipts;
pub mod reconciliation;
pub mod records;
pub mod timeline;
pub mod webhooks;

pub use clock::{Clock, ManualClock, SystemClock};
pub use records::{DeviceRecord, RegisterRecord, TransactionRecord};
