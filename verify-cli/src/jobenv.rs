//! The environment a build job needs to use an installed toolchain, and the GOEXPERIMENT
//! consistency check: the job must build with the experiments the toolchain was built for.

use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::process::Command;

use serde::Serialize;

use tcdist_core::error::{Error, Rejection, Result};
use tcdist_core::platform::Platform;
use tcdist_oci::reference::ReleaseRef;
use tcdist_oci::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata, parse_json};
use tcdist_store::{Entry, Store};

#[derive(Debug, Serialize)]
pub struct JobEnvironment {
    /// Variables to set, in order.
    pub vars: Vec<(String, String)>,
}

/// The job environment for the installed entry `reference` names (by digest when it has one,
/// else the newest pull under exactly that reference).
pub fn environment_for(
    store: &Store,
    reference: &ReleaseRef,
    platform: &Platform,
    job_goexperiment: &str,
    current_path: &str,
) -> Result<JobEnvironment> {
    let entry = store
        .find(&reference.to_string(), reference.digest(), platform)?
        .ok_or_else(|| {
            Error::usage_with_hint(
                format!(
                    "{reference} ({platform}) is not in the store {}",
                    store.root().display()
                ),
                format!("run `tcverify pull {reference}` first"),
            )
        })?;
    check_entry_repository(store, reference, &entry)?;
    job_environment(&entry, job_goexperiment, current_path)
}

/// An entry found by digest was verified for the repository its signature names; the same
/// bytes asked for under another repository were not (the policy's signers differ per
/// repository), so they are refused rather than handed out.
fn check_entry_repository(store: &Store, reference: &ReleaseRef, entry: &Entry) -> Result<()> {
    let ReleaseRef::Registry(wanted) = reference else {
        return Ok(());
    };
    if wanted.digest.is_none()
        || entry.record.repository.as_deref() == Some(&wanted.repository)
        || store.verified_for(
            &wanted.repository,
            &entry.record.index_digest,
            &entry.record.platform,
        )
    {
        return Ok(());
    }
    Err(Rejection::malformed(
        format!("store entry {}", entry.path.display()),
        format!(
            "it was verified for repository {}, not {}; run `tcverify pull {reference}` to verify \
             it for that repository",
            entry
                .record
                .repository
                .as_deref()
                .unwrap_or("(not recorded)"),
            wanted.repository
        ),
    )
    .into())
}

/// Builds the job environment for `entry`. `job_goexperiment` is the job's GOEXPERIMENT
/// (unset counts as empty, the baseline of a toolchain built without experiments).
pub fn job_environment(
    entry: &Entry,
    job_goexperiment: &str,
    current_path: &str,
) -> Result<JobEnvironment> {
    let root = &entry.root;
    let metadata = read_metadata(entry)?;
    let object = format!("toolchain {}", entry.record.index_digest);
    if job_goexperiment != metadata.goexperiment {
        return Err(Rejection::GoexperimentMismatch {
            object,
            job: job_goexperiment.to_owned(),
            baseline: metadata.goexperiment,
        }
        .into());
    }
    let reported = reported_goexperiment(entry, job_goexperiment)?;
    if reported != metadata.goexperiment {
        return Err(Rejection::GoexperimentReported {
            object,
            reported,
            baseline: metadata.goexperiment,
        }
        .into());
    }
    let root_text = root.display().to_string();
    let path = if current_path.is_empty() {
        format!("{root_text}/bin")
    } else {
        format!("{root_text}/bin:{current_path}")
    };
    Ok(JobEnvironment {
        vars: vec![
            ("X_GO_RUNTIME_ROOT".into(), root_text.clone()),
            ("GOROOT".into(), root_text),
            ("PATH".into(), path),
            ("GOTOOLCHAIN".into(), "local".into()),
        ],
    })
}

/// `TOOLCHAIN.json` as installed (checked against the entry's manifest).
fn read_metadata(entry: &Entry) -> Result<ToolchainMetadata> {
    let path = entry.root.join(TOOLCHAIN_METADATA_FILE);
    let mut bytes = Vec::new();
    entry
        .open_checked(TOOLCHAIN_METADATA_FILE)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::store("reading", &path, e))?;
    parse_json(TOOLCHAIN_METADATA_FILE, &bytes)
        .map_err(|reason| Rejection::malformed(path.display().to_string(), reason).into())
}

/// What the toolchain itself says the job's GOEXPERIMENT resolves to. `bin/go` is run through
/// the descriptor its bytes were checked on, so a file swapped in after the check never runs.
fn reported_goexperiment(entry: &Entry, job_goexperiment: &str) -> Result<String> {
    let root = &entry.root;
    let go = root.join("bin/go");
    let checked = entry.open_checked("bin/go")?;
    let fd = checked.as_raw_fd();
    // The child must inherit the descriptor to exec it (and a script's interpreter, to read
    // it): clear close-on-exec on this one descriptor only.
    // SAFETY: `fd` is open for as long as `checked` lives, past the spawn below.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(Error::store(
            "preparing",
            &go,
            std::io::Error::last_os_error(),
        ));
    }
    let output = Command::new(format!("/proc/self/fd/{fd}"))
        .args(["env", "GOEXPERIMENT"])
        .env("GOROOT", root)
        .env("X_GO_RUNTIME_ROOT", root)
        .env("GOTOOLCHAIN", "local")
        .env("GOEXPERIMENT", job_goexperiment)
        .output()
        .map_err(|e| Error::store("running", &go, e))?;
    drop(checked);
    if !output.status.success() {
        return Err(Rejection::malformed(
            format!("{} env GOEXPERIMENT", go.display()),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl JobEnvironment {
    /// `export NAME='value'` lines for `eval` in a POSIX shell.
    pub fn to_shell(&self) -> String {
        self.vars
            .iter()
            .map(|(name, value)| format!("export {name}='{}'\n", value.replace('\'', r"'\''")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_output_quotes_values() {
        let env = JobEnvironment {
            vars: vec![("PATH".into(), "/a b/it's:$HOME".into())],
        };
        assert_eq!(env.to_shell(), "export PATH='/a b/it'\\''s:$HOME'\n");
    }
}
