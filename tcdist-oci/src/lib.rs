//! OCI client and formats: references, registry access (manifests, referrers, tags, blob
//! streams), a release's index, manifests and attachments, and resolving a reference to the
//! manifest of one platform. Nothing here is trusted yet; `tcdist-verify` decides that.

pub mod attachments;
pub mod bundle;
pub mod checked;
pub mod credentials;
pub mod mirrors;
pub mod reference;
pub mod registry;
pub mod release;
pub mod resolve;
pub mod source;
