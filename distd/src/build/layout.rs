//! The release tree: the files of a built Go root that upstream's binary distribution carries
//! (the selection of `cmd/distpack`), with its modes and times, plus `go.env` and
//! `TOOLCHAIN.json`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use tcdist_oci::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata};

/// Tools kept in `pkg/tool/<goos>_<goarch>` (cmd/distpack; `toolsIncludedInDistpack` in
/// cmd/dist). cmd/go builds any other tool on demand.
const DISTPACK_TOOLS: &[&str] = &[
    "asm",
    "cgo",
    "compile",
    "cover",
    "fix",
    "link",
    "preprofile",
    "vet",
];

/// Commands kept in `bin/` (`binExesIncludedInDistpack`).
const DISTPACK_BIN: &[&str] = &["go", "gofmt"];

/// Whether the file `rel` of a built Go root belongs in the binary distribution for
/// `goos_goarch` (e.g. `linux_amd64`), following cmd/distpack: no version-control files, no
/// `VERSION.cache`, no cmd/dist binary, no build cache or package archives (`pkg/obj`, ...),
/// only the distributed tools and commands.
pub fn distpack_keeps(rel: &str, goos_goarch: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let removed = rel.starts_with(".git/")
        || rel.starts_with(".github/")
        || matches!(
            rel,
            ".gitattributes"
                | ".gitignore"
                | "VERSION.cache"
                | "src/cmd/dist/dist"
                | "src/cmd/dist/dist.exe"
        )
        || name == ".DS_Store"
        || name.ends_with(".exe~")
        || rel
            .strip_prefix("misc/cgo/")
            .is_some_and(|rest| rest.split('/').nth(1) == Some("_obj"));
    if removed {
        return false;
    }
    if let Some(bin) = rel.strip_prefix("bin/") {
        return DISTPACK_BIN.contains(&bin);
    }
    if let Some(pkg) = rel.strip_prefix("pkg/") {
        if pkg.starts_with("include/") {
            return true;
        }
        return pkg
            .strip_prefix("tool/")
            .and_then(|t| t.strip_prefix(goos_goarch))
            .and_then(|t| t.strip_prefix('/'))
            .is_some_and(|tool| DISTPACK_TOOLS.contains(&tool));
    }
    true
}

/// The mode cmd/distpack gives a file.
pub fn distpack_mode(rel: &str) -> u32 {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    // `**/go_?*_?*_exec`: a `_` with at least one character on each side in the middle.
    let exec_helper = name
        .strip_prefix("go_")
        .and_then(|n| n.strip_suffix("_exec"))
        .is_some_and(|mid| {
            mid.char_indices()
                .any(|(i, c)| c == '_' && i > 0 && i + 1 < mid.len())
        });
    if rel.starts_with("bin/")
        || rel.starts_with("pkg/tool/")
        || [".bash", ".sh", ".pl", ".rc"]
            .iter()
            .any(|s| name.ends_with(s))
        || exec_helper
    {
        0o755
    } else {
        0o644
    }
}

/// Which files of a built root make the release tree, and where they go.
pub struct Selection {
    /// The platform the tree is for, e.g. `linux_arm64`.
    pub goos_goarch: String,
    /// A cross build: the target's commands are in `bin/<goos_goarch>/` and go to `bin/`; the
    /// host's `bin/` commands are left out (as cmd/distpack does).
    pub cross: bool,
}

impl Selection {
    /// Where the built root's file `rel` goes in the release tree, or `None` when it is left
    /// out.
    pub fn place(&self, rel: &str) -> Option<String> {
        if self.cross
            && let Some(bin) = rel.strip_prefix("bin/")
        {
            return bin
                .strip_prefix(&self.goos_goarch)
                .and_then(|name| name.strip_prefix('/'))
                .filter(|name| DISTPACK_BIN.contains(name))
                .map(|name| format!("bin/{name}"));
        }
        distpack_keeps(rel, &self.goos_goarch).then(|| rel.to_owned())
    }
}

/// Writes the release tree into `dest` (a new directory): the selected files of the built
/// root `built`, then `go.env` and `TOOLCHAIN.json`. Every file and directory gets the mtime
/// `time` (the VERSION time), so nothing of the build's wall-clock time is left.
pub fn write_tree(
    built: &Path,
    dest: &Path,
    selection: &Selection,
    go_env: &str,
    metadata: &ToolchainMetadata,
    time: SystemTime,
) -> Result<usize> {
    std::fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut files = 0;
    for item in crate::package::tree::sorted_walk(built) {
        let item = item.with_context(|| format!("reading {}", built.display()))?;
        let rel_path = item.path().strip_prefix(built).expect("walk stays in root");
        let Some(rel) = rel_path.to_str() else {
            bail!("{}: file name is not UTF-8", item.path().display());
        };
        let file_type = item.file_type();
        if file_type.is_dir() || rel == "go.env" || rel == TOOLCHAIN_METADATA_FILE {
            continue;
        }
        let Some(placed) = selection.place(rel) else {
            continue;
        };
        let to = dest.join(&placed);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if file_type.is_symlink() {
            let target = std::fs::read_link(item.path())?;
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("creating {}", to.display()))?;
        } else if file_type.is_file() {
            std::fs::copy(item.path(), &to).with_context(|| {
                format!("copying {} to {}", item.path().display(), to.display())
            })?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(distpack_mode(&placed)))?;
        } else {
            bail!("{}: not a file or symlink", item.path().display());
        }
        files += 1;
    }
    write_settings(dest, go_env, metadata, time)?;
    Ok(files + 2)
}

/// Writes the tree's `go.env` and `TOOLCHAIN.json`, then gives the whole tree the mtime
/// `time`: the last step of laying out a tree, and all of baking other `go.env` defaults into
/// a finished one.
pub fn write_settings(
    dest: &Path,
    go_env: &str,
    metadata: &ToolchainMetadata,
    time: SystemTime,
) -> Result<()> {
    std::fs::write(dest.join("go.env"), go_env)?;
    let mut json = serde_json::to_vec_pretty(metadata)?;
    json.push(b'\n');
    std::fs::write(dest.join(TOOLCHAIN_METADATA_FILE), json)?;
    set_times(dest, time)
}

/// Gives every file and directory under `root` (and `root`) the mtime `time`. Symlinks keep
/// theirs: std cannot set it, and layers normalise it anyway.
pub fn set_times(root: &Path, time: SystemTime) -> Result<()> {
    let times = std::fs::FileTimes::new()
        .set_modified(time)
        .set_accessed(time);
    // Children first, so setting a file's time does not disturb its directory's again.
    for item in walkdir::WalkDir::new(root).contents_first(true) {
        let item = item?;
        if item.file_type().is_symlink() {
            continue;
        }
        let file = std::fs::File::open(item.path())
            .with_context(|| format!("opening {}", item.path().display()))?;
        file.set_times(times)
            .with_context(|| format!("setting the time of {}", item.path().display()))?;
    }
    Ok(())
}

/// Parses the `time` line of `VERSION` (RFC 3339 in UTC, `2026-08-28T16:20:06Z`).
pub fn parse_version_time(text: &str) -> Result<SystemTime> {
    let bad = || anyhow::anyhow!("VERSION time {text:?} is not of the form YYYY-MM-DDTHH:MM:SSZ");
    let (date, clock) = text
        .strip_suffix('Z')
        .and_then(|t| t.split_once('T'))
        .ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<_> = date.split('-').map(num).collect::<Result<_>>()?;
    let c: Vec<_> = clock.split(':').map(num).collect::<Result<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), c.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distpack_keeps_sources_docs_and_distributed_tools() {
        for rel in [
            "VERSION",
            "src/fmt/print.go",
            "src/make.bash",
            "api/go1.26.txt",
            "doc/go_spec.html",
            "misc/wasm/wasm_exec.js",
            "test/bench/x.go",
            "lib/time/zoneinfo.zip",
            "pkg/include/funcdata.h",
            "pkg/tool/linux_amd64/compile",
            "pkg/tool/linux_amd64/vet",
            "bin/go",
            "bin/gofmt",
            "src/internal/buildcfg/zbootstrap.go",
        ] {
            assert!(distpack_keeps(rel, "linux_amd64"), "{rel}");
        }
    }

    #[test]
    fn distpack_drops_build_cache_other_tools_and_vcs_files() {
        for rel in [
            "pkg/obj/go-build/00/abc-d",
            "pkg/linux_amd64/fmt.a",
            "pkg/distpack/go1.26.8.src.tar.gz",
            "pkg/tool/linux_amd64/dist",
            "pkg/tool/linux_amd64/pprof",
            "pkg/tool/linux_amd64/api",
            "pkg/tool/linux_amd64/compile.test",
            "pkg/tool/darwin_arm64/compile",
            "bin/go_bootstrap",
            "bin/linux_arm64/go",
            ".git/HEAD",
            ".gitignore",
            "VERSION.cache",
            "src/cmd/dist/dist",
            "misc/cgo/test/_obj/x.o",
            "src/.DS_Store",
            "src/x.exe~",
        ] {
            assert!(!distpack_keeps(rel, "linux_amd64"), "{rel}");
        }
    }

    #[test]
    fn distpack_modes_follow_upstream() {
        assert_eq!(distpack_mode("bin/go"), 0o755);
        assert_eq!(distpack_mode("pkg/tool/linux_amd64/link"), 0o755);
        assert_eq!(distpack_mode("src/make.bash"), 0o755);
        assert_eq!(distpack_mode("src/run.rc"), 0o755);
        assert_eq!(distpack_mode("misc/wasm/go_js_wasm_exec"), 0o755);
        assert_eq!(distpack_mode("lib/wasm/go_wasip1_wasm_exec"), 0o755);
        assert_eq!(distpack_mode("src/fmt/print.go"), 0o644);
        assert_eq!(distpack_mode("VERSION"), 0o644);
        assert_eq!(distpack_mode("src/go_exec"), 0o644);
        assert_eq!(distpack_mode("src/go_x_exec"), 0o644);
    }

    #[test]
    fn version_time_parses_to_unix_seconds() {
        let t = parse_version_time("2026-08-28T16:20:06Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_787_934_006);
        assert_eq!(
            parse_version_time("1970-01-01T00:00:00Z").unwrap(),
            SystemTime::UNIX_EPOCH
        );
        assert!(parse_version_time("2026-08-28 16:20:06").is_err());
        assert!(parse_version_time("2026-13-28T16:20:06Z").is_err());
    }

    #[test]
    fn a_cross_build_takes_the_targets_commands_and_tools_only() {
        let cross = Selection {
            goos_goarch: "linux_arm64".into(),
            cross: true,
        };
        assert_eq!(cross.place("bin/linux_arm64/go").as_deref(), Some("bin/go"));
        assert_eq!(
            cross.place("bin/linux_arm64/gofmt").as_deref(),
            Some("bin/gofmt")
        );
        assert_eq!(cross.place("bin/go"), None);
        assert_eq!(cross.place("bin/linux_arm64/other"), None);
        assert_eq!(
            cross.place("pkg/tool/linux_arm64/compile").as_deref(),
            Some("pkg/tool/linux_arm64/compile")
        );
        assert_eq!(cross.place("pkg/tool/linux_amd64/compile"), None);
        assert_eq!(
            cross.place("src/fmt/print.go").as_deref(),
            Some("src/fmt/print.go")
        );
        let host = Selection {
            goos_goarch: "linux_amd64".into(),
            cross: false,
        };
        assert_eq!(host.place("bin/go").as_deref(), Some("bin/go"));
    }

    #[test]
    fn write_tree_selects_files_and_adds_metadata() {
        let built = tempfile::tempdir().unwrap();
        let b = built.path();
        for (rel, text) in [
            ("VERSION", "go1.26.8-tc.1\n"),
            ("go.env", "GOTOOLCHAIN=auto\n"),
            ("src/fmt/print.go", "package fmt\n"),
            ("bin/go", "go"),
            ("pkg/tool/linux_amd64/compile", "compile"),
            ("pkg/tool/linux_amd64/dist", "dist"),
            ("pkg/obj/go-build/aa/x", "cache"),
        ] {
            let p = b.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("tree");
        let metadata = ToolchainMetadata {
            name: "go".into(),
            version: "1.26.8-tc.1".into(),
            go_version: "go1.26.8".into(),
            goos: "linux".into(),
            goarch: "amd64".into(),
            patches: Vec::new(),
            source_digest: None,
            goexperiment: String::new(),
            go_env: Default::default(),
        };
        let time = parse_version_time("2026-08-28T16:20:06Z").unwrap();
        let host = Selection {
            goos_goarch: "linux_amd64".into(),
            cross: false,
        };
        let n = write_tree(b, &dest, &host, "GOTOOLCHAIN=local\n", &metadata, time).unwrap();
        assert_eq!(n, 6);
        assert!(dest.join("pkg/tool/linux_amd64/compile").is_file());
        assert!(!dest.join("pkg/tool/linux_amd64/dist").exists());
        assert!(!dest.join("pkg/obj").exists());
        assert_eq!(
            std::fs::read_to_string(dest.join("go.env")).unwrap(),
            "GOTOOLCHAIN=local\n"
        );
        let meta = std::fs::metadata(dest.join("bin/go")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(meta.modified().unwrap(), time);
        assert_eq!(
            std::fs::metadata(dest.join("src"))
                .unwrap()
                .modified()
                .unwrap(),
            time
        );
        let json: ToolchainMetadata =
            serde_json::from_slice(&std::fs::read(dest.join("TOOLCHAIN.json")).unwrap()).unwrap();
        assert_eq!(json, metadata);
    }
}
