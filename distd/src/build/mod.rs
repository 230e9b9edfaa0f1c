//! `distd build`: from an upstream Go source tree to a customized toolchain tree.
//!
//! 1. copy the source (without build output) into a work root;
//! 2. apply the patch series with patch(1), recording each patch's digest;
//! 3. give the version a suffix (`go1.26.8-tc.1`);
//! 4. run make.bash;
//! 5. lay out the release tree the way cmd/distpack selects files, with the baked `go.env`
//!    and `TOOLCHAIN.json`.
//!
//! The finished tree is cached under the digest of what make.bash compiles (source digest,
//! patch digests, version suffix, GOEXPERIMENT, name, bootstrap toolchain), so building the
//! same inputs again copies it instead of rebuilding. `go.env` defaults are not compiled in:
//! a build that differs only in them copies the cached tree and bakes its own `go.env` and
//! `TOOLCHAIN.json` into the copy, giving the tree a fresh build would.
//! Nothing in the tree depends on the work dir or the wall clock: the release build uses
//! `-trimpath` and every mtime is the VERSION time.

pub mod config;
pub mod layout;
pub mod make;
pub mod patches;
pub mod source;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use tcdist_core::{Digest, Platform};
use tcdist_oci::release::{TOOLCHAIN_METADATA_FILE, ToolchainMetadata};

pub use config::BuildConfig;

/// Bump when the same inputs would give a different tree, so cached trees are not reused.
const BUILD_FORMAT: &str = "tcdist-build-v1";
/// Bump when a cross build's tree changes while the host's does not (v2: make.bash runs
/// without CGO_ENABLED=0, so the target's go command decides cgo as upstream's does).
const CROSS_FORMAT: &str = "tcdist-cross-v2";
const STEPS: usize = 6;

#[derive(Clone)]
pub struct BuildRequest {
    /// The upstream Go root to build from (has VERSION and src/).
    pub go_root: PathBuf,
    pub out: PathBuf,
    pub config: BuildConfig,
    pub patches_dir: PathBuf,
    /// Where to copy and build the source; kept afterwards. Default: a temporary directory
    /// in the cache, removed after a successful build.
    pub work_dir: Option<PathBuf>,
    /// The Go root make.bash builds with (GOROOT_BOOTSTRAP).
    pub bootstrap: PathBuf,
    /// The platform to build for, when it is not this host's (a cross build: make.bash builds
    /// the host's toolchain, then the target's with it).
    pub target: Option<Target>,
    /// distd's cache directory; `None` neither reads nor writes cached trees.
    pub cache_dir: Option<PathBuf>,
    /// The cache directory for work dirs when `cache_dir` is `None`.
    pub scratch_dir: PathBuf,
    /// A cross build only: also write the host's tree its make.bash built here (make.bash
    /// runs even when the target's tree is cached).
    pub host_out: Option<PathBuf>,
}

/// A platform Go can build a toolchain for, other than the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub goos: String,
    pub goarch: String,
}

impl Target {
    /// The cross-build target for `platform`; `None` for the host's own.
    pub fn for_platform(platform: &Platform) -> Result<Option<Self>> {
        if platform.variant.is_some() {
            bail!("{platform}: platform variants are not built (GOARM and the like are not set)");
        }
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid(&platform.os) || !valid(&platform.architecture) {
            bail!("{platform}: not a GOOS/GOARCH pair");
        }
        if *platform == Platform::host() {
            return Ok(None);
        }
        Ok(Some(Target {
            goos: platform.os.clone(),
            goarch: platform.architecture.clone(),
        }))
    }

    /// `goos_goarch`, as Go names the target's directories under `bin/` and `pkg/tool/`.
    pub fn dir_name(&self) -> String {
        format!("{}_{}", self.goos, self.goarch)
    }
}

pub struct BuildOutcome {
    pub input_digest: Digest,
    /// What `bin/go version` prints.
    pub go_version_line: String,
    /// The tree came from the cache.
    pub cached: bool,
}

fn step(n: usize, what: &str) {
    eprintln!("distd: build [{n}/{STEPS}] {what}");
}

/// [`build`] on a blocking thread, for async callers (make.bash runs for minutes).
pub async fn build_in_background(request: BuildRequest) -> Result<BuildOutcome> {
    tokio::task::spawn_blocking(move || build(&request))
        .await
        .context("build thread failed")?
}

pub fn build(request: &BuildRequest) -> Result<BuildOutcome> {
    let BuildRequest {
        go_root,
        out,
        config,
        ..
    } = request;
    step(1, &format!("reading inputs from {}", go_root.display()));
    let (upstream_version, version_time) = source::read_version(go_root)?;
    let series = patches::read_series(&request.patches_dir)?;
    let bootstrap_version = make::go_version(&request.bootstrap).with_context(|| {
        format!(
            "checking the bootstrap toolchain {}",
            request.bootstrap.display()
        )
    })?;
    let source_digest = source::source_digest(go_root)?;
    let compiled = input_digest(
        &source_digest,
        &series,
        &config.without_go_env(),
        &bootstrap_version,
        request.target.as_ref(),
    );
    let host_compiled = input_digest(
        &source_digest,
        &series,
        &config.without_go_env(),
        &bootstrap_version,
        None,
    );
    let input_digest = input_digest(
        &source_digest,
        &series,
        config,
        &bootstrap_version,
        request.target.as_ref(),
    );
    eprintln!("distd: source {source_digest}, build input {input_digest}");
    check_out(out)?;
    if let Some(host_out) = &request.host_out {
        check_out(host_out)?;
    }

    let cached_tree = request
        .cache_dir
        .as_ref()
        .map(|c| c.join("build/trees").join(compiled.file_name()));
    // Where the host's tree of the same inputs is cached, which a cross build also writes.
    let host_cached_tree = request
        .target
        .as_ref()
        .and(request.cache_dir.as_ref())
        .map(|c| c.join("build/trees").join(host_compiled.file_name()));
    let cached_upstream_env = cached_tree
        .as_ref()
        .filter(|p| p.is_dir())
        .and_then(|p| std::fs::read_to_string(upstream_env_file(p)).ok());
    if let (Some(cached), Some(upstream_env), None) =
        (&cached_tree, cached_upstream_env, &request.host_out)
    {
        step(
            6,
            &format!("reusing the tree built before ({})", cached.display()),
        );
        let time = tree_time(version_time.as_deref())?;
        install_tree(out, |staging| {
            copy_tree(cached, staging)?;
            bake_go_env(staging, &upstream_env, config, time)
        })?;
        let go_version_line = tree_version_line(out)?;
        return Ok(BuildOutcome {
            input_digest,
            go_version_line,
            cached: true,
        });
    }

    let scratch = request
        .cache_dir
        .as_ref()
        .map_or(request.scratch_dir.clone(), |c| c.join("build/work"));
    let (work, temp_work) = match &request.work_dir {
        Some(dir) => {
            prepare_work_dir(dir)?;
            (dir.clone(), None)
        }
        None => {
            std::fs::create_dir_all(&scratch)
                .with_context(|| format!("creating {}", scratch.display()))?;
            let temp = tempfile::Builder::new()
                .prefix("build.")
                .tempdir_in(&scratch)
                .with_context(|| format!("creating a work dir in {}", scratch.display()))?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let root = work.join("go");
    let result = build_in(
        request,
        &root,
        &series,
        &source_digest,
        &upstream_version,
        version_time.as_deref(),
        CachedTrees {
            tree: cached_tree.as_deref(),
            host_tree: host_cached_tree.as_deref(),
        },
    );
    match (&result, temp_work) {
        (Ok(_), Some(temp)) => {
            temp.close()
                .with_context(|| format!("removing the work dir {}", work.display()))?;
        }
        (Err(_), Some(temp)) => {
            eprintln!(
                "distd: build failed; the work dir is kept for a look: {}",
                temp.keep().display()
            );
        }
        (_, None) => {}
    }
    let go_version_line = result?;
    Ok(BuildOutcome {
        input_digest,
        go_version_line,
        cached: false,
    })
}

/// Where a build's trees go in the build cache (none without one): the tree built, and for a
/// cross build the host's, which its make.bash builds too.
struct CachedTrees<'a> {
    tree: Option<&'a Path>,
    host_tree: Option<&'a Path>,
}

/// Steps 2 to 6 in the work root `root`; returns the tree's `go version` line.
fn build_in(
    request: &BuildRequest,
    root: &Path,
    series: &[patches::Patch],
    source_digest: &Digest,
    upstream_version: &str,
    version_time: Option<&str>,
    cache: CachedTrees<'_>,
) -> Result<String> {
    let CachedTrees {
        tree: cached_tree,
        host_tree: host_cached_tree,
    } = cache;
    let config = &request.config;
    step(2, &format!("copying the source to {}", root.display()));
    let copied = source::copy_source(&request.go_root, root)?;
    if &copied != source_digest {
        bail!(
            "{} changed while it was being read; build again",
            request.go_root.display()
        );
    }

    step(
        3,
        &format!(
            "applying {} patches from {}",
            series.len(),
            request.patches_dir.display()
        ),
    );
    patches::apply_series(root, series)?;
    for patch in series {
        eprintln!("distd:   {} {}", patch.record.digest, patch.record.name);
    }
    let toolchain_version = format!("{upstream_version}-{}", config.version_suffix);
    let mut version_file = format!("{toolchain_version}\n");
    if let Some(time) = version_time {
        version_file.push_str(&format!("time {time}\n"));
    }
    std::fs::write(root.join("VERSION"), version_file)?;

    step(4, "running make.bash");
    make::run_make(
        root,
        &request.bootstrap,
        &config.goexperiment,
        request.target.as_ref(),
        &|line: &str| eprintln!("[make.bash] {line}"),
    )?;
    // In a cross build, bin/go is the host's toolchain built from the same tree: it says the
    // version; the target's binaries cannot run here.
    let host_line = make::go_version(root)?;
    let host = parse_go_version_line(&host_line, &toolchain_version)?;
    let (goos, goarch) = match &request.target {
        Some(target) => (target.goos.clone(), target.goarch.clone()),
        None => host.clone(),
    };
    let go_version_line = format!("go version {toolchain_version} {goos}/{goarch}");

    step(5, "checking the built toolchain");
    eprintln!("distd:   {go_version_line}");

    step(
        6,
        &format!("writing the release tree to {}", request.out.display()),
    );
    let upstream_env = match std::fs::read_to_string(root.join("go.env")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("reading go.env"),
    };
    let go_env = &config::render_go_env(&upstream_env, config);
    let time = tree_time(version_time)?;
    // The tree of one platform of this work root: the target's, or (cross) the host's.
    let tree_writer = |(goos, goarch): (String, String), cross: bool| {
        let metadata = ToolchainMetadata {
            name: config.name.clone(),
            version: toolchain_version.trim_start_matches("go").to_owned(),
            go_version: upstream_version.to_owned(),
            goos: goos.clone(),
            goarch: goarch.clone(),
            patches: series.iter().map(|p| p.record.clone()).collect(),
            source_digest: Some(source_digest.clone()),
            goexperiment: config.goexperiment.clone(),
            go_env: config::parse_go_env(go_env),
        };
        let selection = layout::Selection {
            goos_goarch: format!("{goos}_{goarch}"),
            cross,
        };
        move |dest: &Path| -> Result<()> {
            layout::write_tree(root, dest, &selection, go_env, &metadata, time).map(|_| ())
        }
    };
    let write = tree_writer((goos, goarch), request.target.is_some());
    match cached_tree {
        Some(cached) => {
            store_in_cache(cached, &upstream_env, &write)?;
            install_tree(&request.out, |dest| copy_tree(cached, dest))?;
        }
        None => install_tree(&request.out, |dest| write(dest))?,
    }
    // A cross build's make.bash built the host's toolchain from the same tree, as a build for
    // the host would: cached, it spares the host's build of this line its own make.bash.
    if request.target.is_some() {
        let write_host = tree_writer(host.clone(), false);
        if let Some(host_out) = &request.host_out {
            eprintln!(
                "distd:   writing the {}/{} tree it built to {}",
                host.0,
                host.1,
                host_out.display()
            );
            install_tree(host_out, |dest| write_host(dest))?;
        }
        if let Some(host_cached) = host_cached_tree.filter(|tree| !tree.is_dir()) {
            eprintln!(
                "distd:   also caching the {}/{} tree it built ({})",
                host.0,
                host.1,
                host_cached.display()
            );
            store_in_cache(host_cached, &upstream_env, &write_host)?;
        }
    }
    Ok(go_version_line)
}

/// Writes a tree into the build cache at `cached` (through a staging directory, so a tree is
/// there whole or not at all), with the patched source's `go.env` it is rendered from beside
/// it, written first: a cached tree is reused only with it.
fn store_in_cache(
    cached: &Path,
    upstream_env: &str,
    write: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    let parent = cached.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent)?;
    std::fs::write(upstream_env_file(cached), upstream_env)
        .with_context(|| format!("storing {}", upstream_env_file(cached).display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging.")
        .tempdir_in(parent)?;
    let tree = staging.path().join("tree");
    write(&tree)?;
    match std::fs::rename(&tree, cached) {
        Ok(()) => Ok(()),
        // Another build of the same inputs finished first: same tree.
        Err(_) if cached.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("storing {}", cached.display())),
    }
}

/// Every file's mtime in a tree: the source's VERSION time, or the epoch without one.
fn tree_time(version_time: Option<&str>) -> Result<SystemTime> {
    match version_time {
        Some(t) => layout::parse_version_time(t),
        None => Ok(SystemTime::UNIX_EPOCH),
    }
}

/// The patched source's `go.env` a cached tree was laid out from, kept beside it.
fn upstream_env_file(cached_tree: &Path) -> PathBuf {
    let mut name = cached_tree.as_os_str().to_owned();
    name.push(".upstream-go.env");
    PathBuf::from(name)
}

/// Bakes `config`'s `go.env` defaults into a copy of a cached tree: its `go.env` rendered from
/// `upstream_env`, and `TOOLCHAIN.json` naming them, as a fresh build writes them.
fn bake_go_env(
    tree: &Path,
    upstream_env: &str,
    config: &BuildConfig,
    time: SystemTime,
) -> Result<()> {
    let go_env = config::render_go_env(upstream_env, config);
    let path = tree.join(TOOLCHAIN_METADATA_FILE);
    let mut metadata: ToolchainMetadata = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not valid", path.display()))?;
    metadata.go_env = config::parse_go_env(&go_env);
    layout::write_settings(tree, &go_env, &metadata, time)
}

/// The digest that names a build's inputs.
fn input_digest(
    source: &Digest,
    series: &[patches::Patch],
    config: &BuildConfig,
    bootstrap_version: &str,
    target: Option<&Target>,
) -> Digest {
    let mut text = String::new();
    let _ = writeln!(text, "{BUILD_FORMAT}");
    // Only for cross builds: the host's trees keep the names they were cached under.
    if let Some(target) = target {
        let _ = writeln!(text, "{CROSS_FORMAT}");
        let _ = writeln!(text, "target {}", target.dir_name());
    }
    let _ = writeln!(text, "source {source}");
    for patch in series {
        let _ = writeln!(text, "patch {} {}", patch.record.digest, patch.record.name);
    }
    let _ = writeln!(text, "bootstrap {bootstrap_version}");
    text.push_str(&config.canonical());
    Digest::of(text.as_bytes())
}

/// The `go version` line of a finished tree: its own `bin/go` says it when it is for this
/// host; a cross-built tree's is made from its `TOOLCHAIN.json`.
fn tree_version_line(tree: &Path) -> Result<String> {
    let path = tree.join(TOOLCHAIN_METADATA_FILE);
    let metadata: ToolchainMetadata = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not valid", path.display()))?;
    if Platform::new(&metadata.goos, &metadata.goarch) == Platform::host() {
        return make::go_version(tree);
    }
    Ok(format!(
        "go version go{} {}/{}",
        metadata.version, metadata.goos, metadata.goarch
    ))
}

/// `go version go1.26.8-tc.1 linux/amd64` → (linux, amd64), checking the version.
fn parse_go_version_line(line: &str, expected: &str) -> Result<(String, String)> {
    let fields: Vec<_> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["go", "version", version, platform] if *version == expected => {
            match platform.split_once('/') {
                Some((os, arch)) => Ok((os.to_owned(), arch.to_owned())),
                None => bail!("unexpected platform in {line:?}"),
            }
        }
        _ => bail!("the built toolchain says {line:?}, expected go version {expected} OS/ARCH"),
    }
}

/// `out` may be missing, an empty directory, or an earlier build's tree (it is replaced).
fn check_out(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", out.display())),
        Ok(mut entries) => {
            if entries.next().is_none() || out.join(TOOLCHAIN_METADATA_FILE).is_file() {
                Ok(())
            } else {
                bail!(
                    "{} exists and is not a toolchain tree; give a new or empty directory",
                    out.display()
                )
            }
        }
    }
}

/// `--work-dir` must be new or empty: a build never reuses what another left there.
fn prepare_work_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!("the work dir {} is not empty", dir.display());
    }
    Ok(())
}

/// Fills a staging directory next to `out` and renames it into place, replacing an earlier
/// tree.
fn install_tree(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_out(out)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".distd-build.")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging dir in {}", parent.display()))?;
    let tree = staging.path().join("tree");
    fill(&tree)?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tree, out).with_context(|| format!("moving the tree to {}", out.display()))
}

/// Copies a finished tree (files with their modes, symlinks, mtimes).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let time = std::fs::metadata(from)?.modified()?;
    for item in walkdir::WalkDir::new(from).sort_by_file_name() {
        let item = item?;
        let rel = item.path().strip_prefix(from).expect("walk stays in tree");
        let dest = to.join(rel);
        let file_type = item.file_type();
        if file_type.is_dir() {
            std::fs::create_dir(&dest)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(item.path())?, &dest)?;
        } else {
            std::fs::copy(item.path(), &dest)
                .with_context(|| format!("copying {}", item.path().display()))?;
        }
    }
    layout::set_times(to, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_version_line_gives_platform_and_checks_version() {
        let (os, arch) =
            parse_go_version_line("go version go1.26.8-tc.1 linux/amd64", "go1.26.8-tc.1").unwrap();
        assert_eq!((os.as_str(), arch.as_str()), ("linux", "amd64"));
        assert!(parse_go_version_line("go version go1.26.8 linux/amd64", "go1.26.8-tc.1").is_err());
    }

    #[test]
    fn input_digest_changes_with_each_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001-a.patch"), "a").unwrap();
        let series = patches::read_series(dir.path()).unwrap();
        let source = Digest::of(b"source");
        let config = BuildConfig::default();
        let base = input_digest(
            &source,
            &series,
            &config,
            "go version go1.26.8 linux/amd64",
            None,
        );
        assert_eq!(
            base,
            input_digest(
                &source,
                &series,
                &config,
                "go version go1.26.8 linux/amd64",
                None
            )
        );
        assert_ne!(
            base,
            input_digest(
                &Digest::of(b"other"),
                &series,
                &config,
                "go version go1.26.8 linux/amd64",
                None
            )
        );
        assert_ne!(
            base,
            input_digest(
                &source,
                &[],
                &config,
                "go version go1.26.8 linux/amd64",
                None
            )
        );
        let other = BuildConfig::parse("GOSUMDB=off\n", "c").unwrap();
        assert_ne!(
            base,
            input_digest(
                &source,
                &series,
                &other,
                "go version go1.26.8 linux/amd64",
                None
            )
        );
        assert_ne!(
            base,
            input_digest(
                &source,
                &series,
                &config,
                "go version go1.26.7 linux/amd64",
                None
            )
        );
        let arm64 = Target {
            goos: "linux".into(),
            goarch: "arm64".into(),
        };
        assert_ne!(
            base,
            input_digest(
                &source,
                &series,
                &config,
                "go version go1.26.8 linux/amd64",
                Some(&arm64)
            )
        );
    }

    #[test]
    fn target_is_none_for_the_host_and_refuses_what_is_no_goos_goarch() {
        assert_eq!(Target::for_platform(&Platform::host()).unwrap(), None);
        let other = if Platform::host().architecture == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let target = Target::for_platform(&format!("linux/{other}").parse().unwrap()).unwrap();
        assert_eq!(target.unwrap().dir_name(), format!("linux_{other}"));
        assert!(Target::for_platform(&"linux/arm/v7".parse().unwrap()).is_err());
    }

    #[test]
    fn out_must_be_new_empty_or_a_toolchain_tree() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_out(&dir.path().join("new")).is_ok());
        assert!(check_out(dir.path()).is_ok());
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert!(check_out(dir.path()).is_err());
        std::fs::write(dir.path().join(TOOLCHAIN_METADATA_FILE), "{}").unwrap();
        assert!(check_out(dir.path()).is_ok());
    }

    #[test]
    fn install_replaces_an_earlier_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        install_tree(&out, |t| {
            std::fs::create_dir(t)?;
            std::fs::write(t.join(TOOLCHAIN_METADATA_FILE), "1")?;
            Ok(std::fs::write(t.join("old"), "x")?)
        })
        .unwrap();
        install_tree(&out, |t| {
            std::fs::create_dir(t)?;
            Ok(std::fs::write(t.join(TOOLCHAIN_METADATA_FILE), "2")?)
        })
        .unwrap();
        assert!(!out.join("old").exists());
        assert_eq!(
            std::fs::read_to_string(out.join(TOOLCHAIN_METADATA_FILE)).unwrap(),
            "2"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staging dir left");
    }
}
