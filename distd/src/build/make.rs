//! Runs Go's own build (`src/make.bash`) in a work root, with a Go environment of our making.

use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Variables that change what make.bash builds or where it reads from, removed from the
/// environment it inherits: every `GO*` (GOROOT, GOPATH, GOFLAGS, GOEXPERIMENT, GOOS/GOARCH,
/// GOAMD64, GOCACHE, GOENV, GOTOOLCHAIN, GO_LDFLAGS, ...), every `CGO_*`, the C compilers
/// (their names are baked in as defaults), and the tcdist root override.
pub fn is_build_sensitive(name: &str) -> bool {
    name.starts_with("GO")
        || name.starts_with("CGO_")
        || matches!(name, "CC" | "CXX" | "FC" | "X_GO_RUNTIME_ROOT")
}

/// Runs make.bash in `root`/src with `bootstrap` as GOROOT_BOOTSTRAP (for `target`, when
/// given), streaming its output, line by line with a prefix, to `output`.
pub fn run_make(
    root: &Path,
    bootstrap: &Path,
    goexperiment: &str,
    target: Option<&super::Target>,
    output: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let mut command = Command::new("./make.bash");
    command.current_dir(root.join("src"));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_none_or(is_build_sensitive) {
            command.env_remove(&name);
        }
    }
    command
        .env("GOROOT_BOOTSTRAP", bootstrap)
        .env("GOTOOLCHAIN", "local")
        // The bootstrap go must not read the user's `go env -w` settings.
        .env("GOENV", "off");
    if !goexperiment.is_empty() {
        command.env("GOEXPERIMENT", goexperiment);
    }
    // A cross build: the target's toolchain lands in bin/<goos>_<goarch>/ and
    // pkg/tool/<goos>_<goarch>/, beside the host's, which make.bash builds first exactly as a
    // build for the host does (the caller caches it). CGO_ENABLED is left unset, as for the
    // host: make.bash bakes it into the go commands as their default, and without it the go
    // command disables cgo by itself when cross-compiling (no C cross compiler is assumed),
    // while the target's go command decides on its own machine, as upstream's does.
    if let Some(target) = target {
        command
            .env("GOOS", &target.goos)
            .env("GOARCH", &target.goarch);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}/src/make.bash", root.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    std::thread::scope(|scope| {
        scope.spawn(|| forward(stdout, output));
        scope.spawn(|| forward(stderr, output));
    });
    let status = child.wait().context("waiting for make.bash")?;
    if !status.success() {
        bail!("make.bash failed ({status}); its output is above");
    }
    Ok(())
}

fn forward(stream: impl Read, output: &(dyn Fn(&str) + Sync)) {
    for line in BufReader::new(stream).split(b'\n') {
        match line {
            Ok(line) => output(&String::from_utf8_lossy(&line)),
            Err(_) => break,
        }
    }
}

/// `go version` of the Go root `root`, run with the same clean environment.
pub fn go_version(root: &Path) -> Result<String> {
    let go = root.join("bin/go");
    let mut command = Command::new(&go);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_none_or(is_build_sensitive) {
            command.env_remove(&name);
        }
    }
    let output = command
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} version", go.display()))?;
    if !output.status.success() {
        bail!(
            "{} version failed ({}): {}",
            go.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_sensitive_variables_are_go_cgo_and_compilers() {
        for name in [
            "GOROOT",
            "GOPATH",
            "GOFLAGS",
            "GOEXPERIMENT",
            "GOAMD64",
            "GO_LDFLAGS",
            "CGO_CFLAGS",
            "CC",
            "X_GO_RUNTIME_ROOT",
        ] {
            assert!(is_build_sensitive(name), "{name}");
        }
        for name in ["PATH", "HOME", "TMPDIR", "LANG", "XGO"] {
            assert!(!is_build_sensitive(name), "{name}");
        }
    }
}
