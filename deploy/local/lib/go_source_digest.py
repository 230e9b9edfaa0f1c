#!/usr/bin/env python3
"""The source digest of a Go root, as distd computes it (distd/src/build/source.rs).

    go_source_digest.py GOROOT    prints sha256:<hex>

SHA-256 over one line per source entry, in sorted walk order (siblings by the bytes of
their names, a directory's entries right after it), naming its kind, path and content:
`d path`, `l path target`, `f path x|- sha256`. Version-control files, build output and
the files make.bash generates are left out (source.rs `excluded`). The stack pins its
release line with it without building Go; a line whose digest differs from distd's is
refused by distd before anything is built, and tests/integration/stack_daemon.bats checks
that both agree.
"""
import hashlib
import os
import stat
import sys

# source.rs GENERATED: files make.bash writes.
GENERATED = {
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
}


def excluded(rel):
    name = rel.rsplit("/", 1)[-1]
    if (
        rel in (".git", ".github", ".gitattributes", ".gitignore", "bin")
        or rel in GENERATED
        or name == ".DS_Store"
        or name.endswith(".exe~")
    ):
        return True
    if rel.startswith("pkg/"):
        rest = rel[len("pkg/"):]
        return not (rest == "include" or rest.startswith("include/"))
    if rel.startswith("misc/cgo/"):
        parts = rel[len("misc/cgo/"):].split("/")
        return len(parts) > 1 and parts[1] == "_obj"
    return False


def walk(root, prefix, out):
    for name in sorted(os.listdir(os.path.join(root, prefix) if prefix else root)):
        rel_b = os.path.join(prefix, name) if prefix else name
        try:
            rel = rel_b.decode("utf-8")
        except UnicodeDecodeError:
            sys.exit(f"{os.fsdecode(os.path.join(root, rel_b))}: file name is not UTF-8")
        if excluded(rel):
            continue
        if "\n" in rel:
            sys.exit(f"{os.fsdecode(os.path.join(root, rel_b))}: file name has a newline")
        path = os.path.join(root, rel_b)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            out.append(b"d " + rel_b + b"\n")
            walk(root, rel_b, out)
        elif stat.S_ISLNK(st.st_mode):
            out.append(b"l " + rel_b + b" " + os.readlink(path) + b"\n")
        elif stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            x = b"x" if st.st_mode & 0o111 else b"-"
            out.append(b"f " + rel_b + b" " + x + b" " + h.hexdigest().encode() + b"\n")
        else:
            sys.exit(f"{os.fsdecode(path)}: not a file, directory or symlink")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: go_source_digest.py GOROOT")
    root = os.fsencode(sys.argv[1])
    if not os.path.isdir(os.path.join(root, b"src")) or not os.path.isfile(os.path.join(root, b"VERSION")):
        sys.exit(f"{sys.argv[1]} is not a Go source tree (it needs VERSION and src/)")
    out = []
    walk(root, b"", out)
    print("sha256:" + hashlib.sha256(b"".join(out)).hexdigest())


if __name__ == "__main__":
    main()
