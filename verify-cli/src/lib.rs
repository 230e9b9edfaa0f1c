//! What the `tcverify` binary runs beside the shared crates: the agent service that owns a
//! shared host's store, its audit log, the host ID that decides its arm in rollouts, and the
//! job environment and output of a pull.

pub mod agent;
pub mod audit;
pub mod host_id;
pub mod jobenv;
pub mod output;
