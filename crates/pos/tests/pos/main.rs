//! The POS client and CLI against tiny in-test HTTP servers (one test binary for the crate).

mod cli;
mod client;
