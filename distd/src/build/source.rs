//! The Go source tree that goes into a build: which of its files count as source, a copy of
//! them into the work dir, and the source digest over them.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use tcdist_core::Digest;

/// Files that make.bash writes, that the source distribution leaves out (see cmd/distpack's
/// `srcArch.Remove` and cmd/dist's `gentab`/`deptab`): a binary distribution such as
/// `$(go env GOROOT)` has them, a source archive does not, and the build regenerates them.
const GENERATED: &[&str] = &[
    "VERSION.cache",
    "src/cmd/dist/dist",
    "src/cmd/dist/dist.exe",
    "src/cmd/go/internal/cfg/zdefaultcc.go",
    "src/go/build/zcgo.go",
    "src/internal/runtime/sys/zversion.go",
    "src/time/tzdata/zzipdata.go",
    "src/cmd/cgo/zdefaultcc.go",
    "src/cmd/internal/objabi/zbootstrap.go",
    "src/internal/buildcfg/zbootstrap.go",
    "src/cmd/go/internal/cfg/zosarch.go",
];

/// Whether `rel` (a `/`-separated path in a Go root) is left out of the build's input:
/// version-control files, build output (`bin/`, `pkg/` except the `pkg/include` headers) and
/// generated files.
pub fn excluded(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if matches!(
        rel,
        ".git" | ".github" | ".gitattributes" | ".gitignore" | "bin"
    ) || GENERATED.contains(&rel)
        || name == ".DS_Store"
        || name.ends_with(".exe~")
    {
        return true;
    }
    if let Some(rest) = rel.strip_prefix("pkg/") {
        return !(rest == "include" || rest.starts_with("include/"));
    }
    if let Some(rest) = rel.strip_prefix("misc/cgo/") {
        return rest.split('/').nth(1) == Some("_obj");
    }
    false
}

/// The source digest of the Go root `src`: SHA-256 over one line per source entry, in sorted
/// walk order, naming its kind, path and content (`d path`, `l path target`,
/// `f path x|- sha256`).
pub fn source_digest(src: &Path) -> Result<Digest> {
    walk_source(src, None)
}

/// Copies the source files of the Go root `src` into `dest` (which must not exist), and
/// returns their source digest.
pub fn copy_source(src: &Path, dest: &Path) -> Result<Digest> {
    walk_source(src, Some(dest))
}

fn walk_source(src: &Path, dest: Option<&Path>) -> Result<Digest> {
    if !src.join("src").is_dir() || !src.join("VERSION").is_file() {
        bail!(
            "{} is not a Go source tree (it needs VERSION and src/)",
            src.display()
        );
    }
    if let Some(dest) = dest {
        std::fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
    }
    let mut listing = String::new();
    let walker = crate::package::tree::sorted_walk(src)
        .into_iter()
        .filter_entry(|e| {
            e.path()
                .strip_prefix(src)
                .ok()
                .and_then(Path::to_str)
                .is_none_or(|rel| !excluded(rel))
        });
    for item in walker {
        let item = item.with_context(|| format!("reading {}", src.display()))?;
        let rel_path = item.path().strip_prefix(src).expect("walk stays in src");
        let Some(rel) = rel_path.to_str() else {
            bail!("{}: file name is not UTF-8", item.path().display());
        };
        if rel.contains('\n') {
            bail!("{}: file name has a newline", item.path().display());
        }
        let to = dest.map(|d| d.join(rel_path));
        let file_type = item.file_type();
        if file_type.is_dir() {
            if let Some(to) = &to {
                std::fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
            }
            writeln!(listing, "d {rel}")?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(item.path())
                .with_context(|| format!("reading {}", item.path().display()))?;
            if let Some(to) = &to {
                std::os::unix::fs::symlink(&target, to)
                    .with_context(|| format!("creating {}", to.display()))?;
            }
            writeln!(listing, "l {rel} {}", target.display())?;
        } else if file_type.is_file() {
            let bytes = std::fs::read(item.path())
                .with_context(|| format!("reading {}", item.path().display()))?;
            let executable = item.metadata()?.permissions().mode() & 0o111 != 0;
            if let Some(to) = &to {
                std::fs::write(to, &bytes).with_context(|| format!("writing {}", to.display()))?;
                let mode = if executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
            }
            writeln!(
                listing,
                "f {rel} {} {}",
                if executable { "x" } else { "-" },
                Digest::of(&bytes).hex()
            )?;
        } else {
            bail!(
                "{}: not a file, directory or symlink",
                item.path().display()
            );
        }
    }
    Ok(Digest::of(listing.as_bytes()))
}

/// The upstream version in `VERSION` (`go1.26.8`) and its `time` line, if any.
pub fn read_version(root: &Path) -> Result<(String, Option<String>)> {
    let path = root.join("VERSION");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default().trim().to_owned();
    if !version.starts_with("go1.") || version.contains(['-', ' ', '+', '/']) {
        bail!(
            "{}: {version:?} is not an upstream release version (goX.Y.Z); build from a release tree",
            path.display()
        );
    }
    let time = lines
        .filter_map(|l| l.trim().strip_prefix("time "))
        .map(|t| t.trim().to_owned())
        .next();
    Ok((version, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_drops_build_output_and_generated_files() {
        for rel in [
            "bin",
            "pkg/tool",
            "pkg/obj",
            "pkg/linux_amd64",
            "pkg/distpack",
            ".git",
            "VERSION.cache",
            "src/internal/buildcfg/zbootstrap.go",
            "src/cmd/go/internal/cfg/zdefaultcc.go",
            "src/cmd/dist/dist",
            "misc/cgo/test/_obj",
            "src/x/.DS_Store",
        ] {
            assert!(excluded(rel), "{rel}");
        }
    }

    #[test]
    fn excluded_keeps_sources_and_headers() {
        for rel in [
            "src",
            "src/fmt/print.go",
            "pkg",
            "pkg/include",
            "pkg/include/funcdata.h",
            "VERSION",
            "go.env",
            "misc/cgo/test/x.go",
            "src/cmd/go/internal/bin",
            "test/bin",
        ] {
            assert!(!excluded(rel), "{rel}");
        }
    }

    fn small_root(dir: &Path) {
        std::fs::create_dir_all(dir.join("src/fmt")).unwrap();
        std::fs::create_dir_all(dir.join("pkg/tool/linux_amd64")).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("VERSION"), "go1.26.8\ntime 2026-08-28T16:20:06Z\n").unwrap();
        std::fs::write(dir.join("src/fmt/print.go"), "package fmt\n").unwrap();
        std::fs::write(dir.join("src/make.bash"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.join("src/make.bash"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(dir.join("bin/go"), "binary").unwrap();
        std::fs::write(dir.join("pkg/tool/linux_amd64/compile"), "binary").unwrap();
    }

    #[test]
    fn copy_leaves_out_build_output_and_digest_ignores_it() {
        let a = tempfile::tempdir().unwrap();
        small_root(a.path());
        let out = tempfile::tempdir().unwrap();
        let first = copy_source(a.path(), &out.path().join("1")).unwrap();
        assert_eq!(first, source_digest(a.path()).unwrap());
        assert!(out.path().join("1/src/fmt/print.go").is_file());
        assert!(!out.path().join("1/bin").exists());
        assert!(!out.path().join("1/pkg/tool").exists());
        let mode = std::fs::metadata(out.path().join("1/src/make.bash"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        std::fs::write(a.path().join("bin/go"), "other binary").unwrap();
        let second = copy_source(a.path(), &out.path().join("2")).unwrap();
        assert_eq!(first, second);

        std::fs::write(a.path().join("src/fmt/print.go"), "package fmt // x\n").unwrap();
        let third = copy_source(a.path(), &out.path().join("3")).unwrap();
        assert_ne!(first, third);
    }

    #[test]
    fn read_version_takes_first_line_and_time() {
        let dir = tempfile::tempdir().unwrap();
        small_root(dir.path());
        let (version, time) = read_version(dir.path()).unwrap();
        assert_eq!(version, "go1.26.8");
        assert_eq!(time.as_deref(), Some("2026-08-28T16:20:06Z"));
        std::fs::write(dir.path().join("VERSION"), "go1.26.8-tc.1\n").unwrap();
        assert!(read_version(dir.path()).is_err());
    }
}
