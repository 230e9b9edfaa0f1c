#!/usr/bin/env python3
"""Writes a static C2SP tlog-tiles log: entry bundles, hash tiles and a checkpoint signed with
an Ed25519 key (generated, or --key). Used where a real log cannot be made to hold what a test
needs (an entry no log would accept) and to benchmark the monitor on a large log.

  tlog_gen.py DIR --origin NAME --entries FILE [--count N] [--then FILE…] [--key PEM]

FILE holds one entry per line, base64; with --count the entries are repeated in order up to N;
the entries of each --then FILE follow, once each.
DIR gets checkpoint, tile/…, key.pem (the log's private key) and log.pub (its public key).
"""

import argparse
import base64
import hashlib
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

WIDTH = 256


def tile_path(kind, index, width=WIDTH):
    digits = str(index)
    digits = "0" * ((3 - len(digits) % 3) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    path = "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])
    path = f"tile/{kind}/{path}"
    return path if width == WIDTH else f"{path}.p/{width}"


def write(root, path, data):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)


def tree_root(level0):
    """RFC 6962 MTH from the leaf hashes, folding the right edge."""
    if not level0:
        return hashlib.sha256(b"").digest()
    stack = []  # (height, hash) of complete subtrees, left to right
    for leaf in level0:
        node, height = leaf, 0
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            node = hashlib.sha256(b"\x01" + left + node).digest()
            height += 1
        stack.append((height, node))
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = hashlib.sha256(b"\x01" + left + root).digest()
    return root


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--origin", required=True)
    parser.add_argument("--entries", required=True)
    parser.add_argument("--count", type=int)
    parser.add_argument("--then", nargs="*", default=[])
    parser.add_argument("--key")
    args = parser.parse_args()

    def read(path):
        with open(path) as f:
            return [base64.b64decode(line.strip()) for line in f if line.strip()]

    pool = read(args.entries)
    count = args.count if args.count is not None else len(pool)
    entries = [pool[i % len(pool)] for i in range(count)]
    for path in args.then:
        entries += read(path)
    count = len(entries)

    if args.key:
        with open(args.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    else:
        key = Ed25519PrivateKey.generate()
    write(args.dir, "key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write(args.dir, "log.pub", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    for start in range(0, count, WIDTH):
        chunk = entries[start : start + WIDTH]
        data = b"".join(struct.pack(">H", len(e)) + e for e in chunk)
        write(args.dir, tile_path("entries", start // WIDTH, len(chunk)), data)

    level = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    root = tree_root(level)
    tile_level = 0
    while level:
        for start in range(0, len(level), WIDTH):
            chunk = level[start : start + WIDTH]
            write(args.dir, tile_path(str(tile_level), start // WIDTH, len(chunk)), b"".join(chunk))
        # The next tile level stores the roots of complete 256-wide subtrees.
        level = [tree_root(level[i : i + WIDTH]) for i in range(0, len(level) - WIDTH + 1, WIDTH)]
        tile_level += 1

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hint = hashlib.sha256(args.origin.encode() + b"\n\x01" + raw).digest()[:4]
    body = f"{args.origin}\n{count}\n{base64.b64encode(root).decode()}\n"
    signature = base64.b64encode(hint + key.sign(body.encode())).decode()
    write(args.dir, "checkpoint", f"{body}\n\u2014 {args.origin} {signature}\n".encode())


if __name__ == "__main__":
    main()
