//! The shared vocabulary of eftcloud, with no I/O.
//!
//! The cloud, the terminal agent, the POS client and the benchmarks all speak through these
//! types: domain values are parsed here once, at the edge, and never handled raw afterwards.

pub mod action;
pub mod amount;
pub mod config;
pub mod currency;
pub mod device;
pub mod function;
pub mod health;
pub mod ids;
pub mod outcome;
pub mod pairing;
pub mod pos_api;
pub mod register;
pub mod request;
pub mod settlement;
pub mod timestamp;
pub mod update;

pub use amount::Cents;
pub use currency::Currency;
pub use function::Function;
pub use ids::{DeviceId, TransactionId};
pub use outcome::{ResultCode, TerminalStatus, TransactionResult};
pub use pairing::PairingCode;
pub use register::{RegisterInfo, RegisterKey};
pub use request::{OriginalPayment, TransactionRequest};
