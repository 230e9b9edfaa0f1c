//! The build-host agent service (`tcverify agent`): it owns the store, takes its policy, trust
//! and credentials only from its own config, and answers `pull`, `verify` and `env` for the
//! build jobs on a unix socket. Jobs choose which release and platform, nothing else: not
//! the host ID that decides this host's arm in a channel's rollout (`host.rs`). Jobs report how
//! they ended (`report`); the agent records the outcome with what it served them
//! (`served.rs`, records in `outcome.rs`) in a spool (`spool.rs`), and with `report_to` sends
//! them to the daemon's rollout judge (`sender.rs`, `outbox.rs`). Each user holds a bounded
//! number of connections, each of which must send its request soon (`admission.rs`). It keeps
//! the releases its channels name installed ahead of jobs (`prefetch.rs`), and its store within
//! a budget (`store_budget.rs`).

pub mod admission;
pub mod cache;
pub mod client;
pub mod config;
pub mod host;
pub mod metrics;
pub mod outbox;
pub mod outcome;
pub mod prefetch;
pub mod protocol;
pub mod sender;
pub mod served;
pub mod server;
pub mod spool;
pub mod store_budget;
