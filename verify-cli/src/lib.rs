//! tcverify's core: resolve a toolchain release, verify it, fetch and extract it into a local
//! content-addressed store. `distd` uses the same core to check what it publishes.

pub mod agent;
pub mod attachments;
pub mod audit;
pub mod bundle;
pub mod checked;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod fetch;
pub mod jobenv;
pub mod output;
pub mod platform;
pub mod program;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod release;
pub mod report;
pub mod resolve;
pub mod source;
pub mod spiffe_id;
pub mod store;
pub mod text;
pub mod trust;
pub mod verify;

pub use digest::Digest;
pub use error::{Error, Rejection, Result};
pub use platform::Platform;
