#!/usr/bin/env python3
"""Builds an OCI image layout holding one release whose single layer is hand-made and
hostile, for the attack tests. The index, manifest and config are valid and bound by digest,
so only the layer's content can be refused.

usage: hostile_image.py CASE OUT_DIR TAG
"""
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

ROOT = "toolchain"


def file_entry(name, data=b"x", mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, io.BytesIO(data)


def link_entry(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def dir_entry(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


class Zeros(io.RawIOBase):
    """A stream of zeros, so a size bomb needs no memory to build."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def bomb():
    size = 96 << 20
    info = tarfile.TarInfo(f"{ROOT}/zeros")
    info.size = size
    return [dir_entry(ROOT), (info, Zeros(size))]


CASES = {
    "dotdot": lambda: [dir_entry(ROOT), file_entry(f"{ROOT}/../escaped")],
    "absolute": lambda: [dir_entry(ROOT), file_entry("/tmp/tcdist-escaped")],
    "outside-root": lambda: [file_entry("etc/passwd")],
    "symlink-escape": lambda: [dir_entry(ROOT), link_entry(f"{ROOT}/etc", "../../../../etc")],
    "symlink-absolute": lambda: [dir_entry(ROOT), link_entry(f"{ROOT}/etc", "/etc")],
    "hardlink-escape": lambda: [
        dir_entry(ROOT),
        link_entry(f"{ROOT}/passwd", "/etc/passwd", tarfile.LNKTYPE),
    ],
    "hardlink-parent": lambda: [
        dir_entry(ROOT),
        link_entry(f"{ROOT}/passwd", f"{ROOT}/../../etc/passwd", tarfile.LNKTYPE),
    ],
    "write-through-symlink": lambda: [
        dir_entry(ROOT),
        dir_entry(f"{ROOT}/bin"),
        link_entry(f"{ROOT}/link", "bin"),
        file_entry(f"{ROOT}/link/evil"),
    ],
    "device": lambda: [dir_entry(ROOT), dev_entry(f"{ROOT}/null", tarfile.CHRTYPE)],
    "fifo": lambda: [dir_entry(ROOT), dev_entry(f"{ROOT}/pipe", tarfile.FIFOTYPE)],
    "setuid": lambda: [dir_entry(ROOT), file_entry(f"{ROOT}/su", b"#!/bin/sh\n", 0o4755)],
    "duplicate": lambda: [dir_entry(ROOT), file_entry(f"{ROOT}/a", b"1"), file_entry(f"{ROOT}/a", b"2")],
    "bomb": bomb,
}


def dev_entry(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def write_blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def host_arch():
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def main():
    case, out, tag = sys.argv[1:4]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in CASES[case]():
            tar.addfile(info, data)
    tar_bytes = raw.getvalue()
    layer = write_blob(out, gzip.compress(tar_bytes, compresslevel=6, mtime=0))
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    arch = host_arch()
    config = write_blob(out, json.dumps({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["GOROOT=/toolchain"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
    }).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = write_blob(out, json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    }).encode())
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["platform"] = {"architecture": arch, "os": "linux"}
    index = write_blob(out, json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest],
    }).encode())
    index["mediaType"] = "application/vnd.oci.image.index.v1+json"
    index["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [index]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


if __name__ == "__main__":
    main()
