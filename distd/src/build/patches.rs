//! The patch series: `*.patch` files of one directory, applied in file-name order.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use tcdist_core::Digest;
use tcdist_oci::release::PatchRecord;

/// The series shipped with distd for the Go release line it builds.
pub fn default_series_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("patches/go1.26")
}

#[derive(Clone, Debug)]
pub struct Patch {
    pub path: PathBuf,
    pub record: PatchRecord,
}

/// Reads the series: every `*.patch` file in `dir`, sorted bytewise by file name, with its
/// digest. Other files (a README) are ignored; an empty series is refused.
pub fn read_series(dir: &Path) -> Result<Vec<Patch>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading patch series {}", dir.display()))?;
    let mut patches = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading patch series {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            bail!("{}: file name is not UTF-8", entry.path().display());
        };
        if !name.ends_with(".patch") || !entry.file_type()?.is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        patches.push(Patch {
            path: entry.path(),
            record: PatchRecord {
                name,
                digest: Digest::of(&bytes),
            },
        });
    }
    if patches.is_empty() {
        bail!("no *.patch files in {}", dir.display());
    }
    patches.sort_by(|a, b| a.record.name.as_bytes().cmp(b.record.name.as_bytes()));
    Ok(patches)
}

/// Applies each patch to the Go root at `root` (its top: VERSION, src/, ...), in order, and
/// stops at the first that does not apply cleanly.
///
/// This runs patch(1) as a subprocess: it is the reference implementation of unified diffs
/// (fuzz, offsets, `git format-patch` headers, file creation), and the series is written and
/// checked with it; reimplementing it would only add ways to disagree with it.
pub fn apply_series(root: &Path, patches: &[Patch]) -> Result<()> {
    for patch in patches {
        let input = std::fs::File::open(&patch.path)
            .with_context(|| format!("opening {}", patch.path.display()))?;
        let rejects = tempfile::NamedTempFile::new().context("creating a reject file")?;
        let output = Command::new("patch")
            // No fuzz: a hunk whose context lines do not all match is a failure, not a
            // guess (line offsets are still fine), as with `git apply`.
            .args([
                "-p1",
                "--batch",
                "--forward",
                "--fuzz=0",
                "--no-backup-if-mismatch",
            ])
            .arg("--reject-file")
            .arg(rejects.path())
            .current_dir(root)
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("running patch(1): is it installed?")?;
        if !output.status.success() {
            let rejected = std::fs::read_to_string(rejects.path()).unwrap_or_default();
            bail!(
                "patch {} does not apply to {} ({}):\n{}{}{}",
                patch.record.name,
                root.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                if rejected.is_empty() {
                    String::new()
                } else {
                    format!("rejected hunks:\n{rejected}")
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const ADD_LINE: &str =
        "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,3 @@\n one\n+one and a half\n two\n";
    const SECOND: &str =
        "--- a/f.txt\n+++ b/f.txt\n@@ -2,2 +2,3 @@\n one and a half\n two\n+three\n";

    #[test]
    fn series_is_sorted_by_file_name_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0010-b.patch", SECOND);
        write(dir.path(), "0002-a.patch", ADD_LINE);
        write(dir.path(), "README.md", "not a patch");
        std::fs::create_dir(dir.path().join("0001-dir.patch")).unwrap();
        let series = read_series(dir.path()).unwrap();
        let names: Vec<_> = series.iter().map(|p| p.record.name.as_str()).collect();
        assert_eq!(names, ["0002-a.patch", "0010-b.patch"]);
    }

    #[test]
    fn series_records_sha256_of_each_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001-a.patch", ADD_LINE);
        let series = read_series(dir.path()).unwrap();
        assert_eq!(series[0].record.digest, Digest::of(ADD_LINE.as_bytes()));
    }

    #[test]
    fn series_empty_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_series(dir.path()).is_err());
    }

    #[test]
    fn shipped_series_is_found_and_ordered() {
        let series = read_series(&default_series_dir()).unwrap();
        assert!(series.len() >= 4);
        assert!(series[0].record.name.starts_with("0001-"));
        assert!(
            series
                .windows(2)
                .all(|w| w[0].record.name < w[1].record.name)
        );
    }

    #[test]
    fn apply_runs_patches_in_order() {
        let series_dir = tempfile::tempdir().unwrap();
        write(series_dir.path(), "0001-a.patch", ADD_LINE);
        write(series_dir.path(), "0002-b.patch", SECOND);
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "f.txt", "one\ntwo\n");
        apply_series(root.path(), &read_series(series_dir.path()).unwrap()).unwrap();
        let text = std::fs::read_to_string(root.path().join("f.txt")).unwrap();
        assert_eq!(text, "one\none and a half\ntwo\nthree\n");
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no .orig or .rej files");
    }

    #[test]
    fn apply_failure_names_the_patch_and_shows_the_hunk() {
        let series_dir = tempfile::tempdir().unwrap();
        write(series_dir.path(), "0001-a.patch", ADD_LINE);
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "f.txt", "something\nelse\n");
        let err = apply_series(root.path(), &read_series(series_dir.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("patch 0001-a.patch does not apply"), "{err}");
        assert!(err.contains("Hunk #1 FAILED"), "{err}");
        assert!(err.contains("+one and a half"), "{err}");
    }
}
