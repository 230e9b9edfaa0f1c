//! What every tcdist crate shares: digests, platforms, text from elsewhere made printable, the
//! one error type (with the rules a refusal names), and the start-up both binaries run.

pub mod digest;
pub mod error;
pub mod platform;
pub mod program;
pub mod rules;
pub mod text;

pub use digest::Digest;
pub use error::{Error, Rejection, Result};
pub use platform::Platform;

/// The one directory every layer entry lives under; in a container it is `/toolchain`.
pub const TOOLCHAIN_ROOT: &str = "toolchain";
