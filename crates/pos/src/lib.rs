//! A small client for the eftcloud POS API (SmartConnect-compatible), for POS developers, the
//! CLI and the benchmarks.
//!
//! A POS pairs a register once ([`PosClient::pair`]), then starts transactions
//! ([`PosClient::start`]) and polls the returned `PollingUrl` until the device has finished
//! ([`PosClient::wait_for_completion`]), backing off when the cloud says so and riding out
//! transient failures as real SmartConnect clients do.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eftcloud_pos::{outcome_is_success, PosClient, RegisterKey, TransactionSpec, WaitOptions};
//! use protocol::{Cents, Function};
//!
//! let client = PosClient::new("http://127.0.0.1:8080")?;
//! let register = RegisterKey {
//!     register_id: "7444ae07-dc63-e49c-33e3-59a7c108cc80".into(),
//!     business_name: "Toys Shop".into(),
//!     vendor_name: "Till2Go".into(),
//! };
//! let spec = TransactionSpec::new(Function::CardPurchase).with_amount(Cents::new(500)?);
//! let started = client.start(&register, &spec).await?;
//! let done = client.wait_for_completion(&started, WaitOptions::default(), |_| {}).await?;
//! println!("accepted: {}", outcome_is_success(&done));
//! # Ok(()) }
//! ```

pub mod actions;
pub mod cli;
pub mod client;
mod endpoint;
pub mod error;
pub mod extensions;
pub mod outcome;
pub mod payments;
pub mod polling;
pub mod register;
pub mod transaction;

pub use actions::{Action, DisplayState};
pub use client::PosClient;
pub use error::PosError;
pub use extensions::{Lookup, RegisterStatus, TimelineEntry};
pub use outcome::outcome_is_success;
pub use payments::{FollowUp, Order, Payment};
pub use polling::{parse_retry_after, PollOutcome, WaitOptions};
pub use protocol::pos_api::TransactionEnvelope;
pub use protocol::RegisterKey;
pub use register::PairingDetails;
pub use transaction::{TransactionMode, TransactionSpec};
