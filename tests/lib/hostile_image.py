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


def raw_header(name, size, typeflag):
    """One ustar header block, written by hand so it may announce any size."""
    block = bytearray(512)
    block[0:len(name)] = name.encode()
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    if size < 8**11:
        block[124:136] = b"%011o\0" % size
    else:  # GNU base-256 for sizes past 8 GiB
        block[124:136] = b"\x80" + size.to_bytes(11, "big")
    block[136:148] = b"00000000000\0"
    block[156:157] = typeflag
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def huge_pax_header():
    """A PAX header announcing 6 GiB, followed by ~100 KB of records: the whole layer is tiny,
    a parser that buffers the announced record is not."""
    records = b"".join(b"%d comment=%s\n" % (len(b"comment=x\n") + 4 + 90, b"x" * 90) for _ in range(1000))
    return raw_header("././@PaxHeader", 6 << 30, b"x") + records


RAW_CASES = {
    "pax-huge": huge_pax_header,
    "longname-huge": lambda: raw_header("././@LongLink", 1 << 20, b"L") + b"a" * (1 << 20),
}


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
    "deep-path": lambda: [dir_entry(ROOT), file_entry(ROOT + "/d" * 200)],
    "pax-size-mismatch": lambda: [dir_entry(ROOT), pax_sized_file(f"{ROOT}/a", b"12345678", 4)],
}


def pax_sized_file(name, data, pax_size):
    """A file whose PAX header gives another size than its ustar header."""
    info, body = file_entry(name, data)
    info.pax_headers = {"size": str(pax_size)}
    return info, body


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
    if case in RAW_CASES:
        tar_bytes = RAW_CASES[case]()
    else:
        raw = io.BytesIO()
        fmt = tarfile.PAX_FORMAT if case.startswith("pax-") else tarfile.GNU_FORMAT
        with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
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
