//! The eftcloud service: the POS API, the device gateway, the engine, the store and the bus.
//!
//! [`app::Application::build`] assembles them from a [`config::Config`]; the `eftcloud serve`
//! command and the tests both start the cloud through it.

pub mod app;
pub mod bus;
pub mod config;
pub mod device_gateway;
pub mod domain;
pub mod engine;
pub mod health;
pub mod metrics;
pub mod pos_api;
pub mod receipts;
pub mod server;
pub mod store;
pub mod tls;
pub mod web;

pub use app::Application;
pub use config::Config;
