//! Tests that break things on purpose: a TCP proxy between terminal and cloud that cuts,
//! stalls and blackholes the link, clouds and terminals killed and restarted at chosen and at
//! random moments, and an audit that nothing was lost or charged twice.

pub mod cloud;
pub mod proxy;
mod scenarios;
mod soak;
pub mod support;
