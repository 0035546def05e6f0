//! End-to-end tests: the real cloud over real HTTP and WebSocket sockets, a temporary SQLite
//! file per test, real terminal agents and the POS client. One test binary for the crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod actions;
mod admin_cli;
mod bench;
mod browser;
mod callbacks;
mod cli;
mod cluster;
mod config;
mod connections;
mod device_protocol;
mod durability;
mod events;
mod extensions;
mod faults;
mod harness;
mod health;
mod metrics;
mod openapi;
mod pairing;
mod payments;
mod polling;
mod postgres;
mod profiles;
mod receipts;
mod reconciliation;
mod release_key;
mod restart;
mod sdk;
mod security;
mod security_access;
mod self_update;
mod storage;
mod tls;
mod transactions;
mod updates;
