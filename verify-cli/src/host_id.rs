//! The host ID: what decides this host's arm in a channel's rollout (the cohort rule hashes it
//! with the plan's salt, `tcdist_verify::rollout`). Direct mode takes it from `--host-id` /
//! `TCVERIFY_HOST_ID`; the agent from its config's `host_id`, else from the SPIFFE ID of its
//! own SVID. A job that talks to the agent never chooses it.

use std::fmt;
use std::str::FromStr;

/// The longest host ID accepted, in bytes.
pub const MAX_HOST_ID: usize = 255;

/// A host ID that is not empty, at most [`MAX_HOST_ID`] bytes of printable ASCII, and neither
/// begins nor ends with a space (a pasted space would silently move the host to another bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostId(String);

impl HostId {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("a host ID must not be empty".to_owned());
        }
        if value.len() > MAX_HOST_ID {
            return Err(format!(
                "a host ID is at most {MAX_HOST_ID} bytes; this one has {}",
                value.len()
            ));
        }
        if let Some((at, c)) = value
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_graphic() || *c == ' '))
        {
            return Err(format!(
                "a host ID is printable ASCII (letters, digits, punctuation, spaces); \
                 {c:?} at byte {at} is not"
            ));
        }
        if value.starts_with(' ') || value.ends_with(' ') {
            return Err(format!(
                "a host ID must not begin or end with a space: {value:?}"
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for HostId {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_id_accepts_spiffe_ids_host_names_and_machine_ids() {
        for value in [
            "spiffe://tcdist.test/buildkite/agent/build-017",
            "build-017.ci.example.com",
            "4c4c4544004b4a10805230b04f4d3832",
            "rack 3 / host 7",
            &"h".repeat(MAX_HOST_ID),
        ] {
            assert_eq!(HostId::parse(value).unwrap().as_str(), value);
        }
    }

    #[test]
    fn host_id_rejected_if_empty() {
        assert!(HostId::parse("").unwrap_err().contains("must not be empty"));
    }

    #[test]
    fn host_id_rejected_if_over_255_bytes() {
        let err = HostId::parse(&"h".repeat(MAX_HOST_ID + 1)).unwrap_err();
        assert!(err.contains("at most 255 bytes; this one has 256"), "{err}");
    }

    #[test]
    fn host_id_rejected_if_not_printable_ascii() {
        for (value, at) in [
            ("host\n7", "'\\n' at byte 4"),
            ("host\t7", "'\\t' at byte 4"),
            ("host\u{7f}", "'\\u{7f}' at byte 4"),
            ("hôst", "'ô' at byte 1"),
            ("host\u{200b}7", "'\\u{200b}' at byte 4"),
        ] {
            let err = HostId::parse(value).unwrap_err();
            assert!(
                err.contains("printable ASCII") && err.contains(at),
                "{value:?}: {err}"
            );
        }
    }

    #[test]
    fn host_id_rejected_if_it_begins_or_ends_with_a_space() {
        for value in [" host", "host "] {
            let err = HostId::parse(value).unwrap_err();
            assert!(err.contains("begin or end with a space"), "{err}");
        }
    }
}
