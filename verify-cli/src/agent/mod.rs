//! The build-host agent service (`tcverify agent`): it owns the store, takes its policy, trust
//! and credentials only from its own config, and answers `pull`, `verify` and `env` for the
//! build jobs on a unix socket. Jobs choose which release and platform, nothing else.

pub mod cache;
pub mod client;
pub mod config;
pub mod metrics;
pub mod protocol;
pub mod server;
