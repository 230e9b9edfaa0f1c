//! The API of `distd serve`: what goes over the wire ([`wire`]), and how both ends
//! authenticate each other with their X.509-SVIDs ([`tls`]). The daemon (`distd serve`) and
//! its client (`distd ctl`, [`client`]) share these, so they cannot disagree on a field or on
//! who may connect.

pub mod client;
pub mod ledger;
pub mod outcome;
pub mod tls;
pub mod wire;
