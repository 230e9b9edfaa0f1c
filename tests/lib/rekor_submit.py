#!/usr/bin/env python3
"""Adds entries to a Rekor v2 log (rekor-tiles) and checks what it answers, independently of
tcdist's own client: the request is built from a freshly generated ECDSA P-256 key and a
self-signed certificate, and the checks follow the public formats (C2SP signed note,
checkpoint and tlog-tiles; RFC 6962 Merkle trees). See deploy/local/rekor-notes.md.

usage:
  rekor_submit.py submit URL [--kind hashedrekord|dsse] [--verifier cert|key] [--data FILE]
                  [--request-out FILE] [--expect STATUS]
      POST a new entry to URL/api/v2/log/entries; print the response body on stdout.
      Exit 1 unless the status is STATUS (default 201).
  rekor_submit.py verify RESPONSE --public-key PEM --origin ORIGIN
      Check a 201 response (file, "-" for stdin): log ID, checkpoint signature and origin,
      inclusion proof, kind and version. Print {"logIndex", "treeSize", "kind"} as JSON.
  rekor_submit.py checkpoint URL_OR_FILE --public-key PEM --origin ORIGIN
      Check a checkpoint (e.g. $TCDIST_REKOR_TILES_URL/checkpoint): signed by the key, for
      ORIGIN. Print its tree size.
  rekor_submit.py fetch-entry TILES_URL INDEX --public-key PEM --origin ORIGIN
      Read entry INDEX from the log's tiles as a client would (C2SP tlog-tiles): the checkpoint
      (checked as above), the entry bundle, and the level-0 tile, whose hash for INDEX must be
      the entry's leaf hash. Print {"treeSize", "bundle", "tile", "entry" (base64)} as JSON.
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

IN_TOTO = "application/vnd.in-toto+json"
KEY_DETAILS = "PKIX_ECDSA_P256_SHA_256"


def b64(data):
    return base64.b64encode(data).decode()


def fail(msg):
    print("rekor_submit: " + msg, file=sys.stderr)
    sys.exit(1)


# --- requests -----------------------------------------------------------------------------

def new_signer():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rekor test signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def verifier_json(key, cert, kind):
    if kind == "key":
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        v = {"publicKey": {"rawBytes": b64(spki)}}
    else:
        v = {"x509Certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}}
    v["keyDetails"] = KEY_DETAILS
    return v


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def build_request(kind, verifier, data):
    key, cert = new_signer()
    v = verifier_json(key, cert, verifier)
    if kind == "hashedrekord":
        # The signature is over the data (SHA-256 prehashed); the log gets only the digest.
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
        return {"hashedRekordRequestV002": {
            "digest": b64(hashlib.sha256(data).digest()),
            "signature": {"content": b64(sig), "verifier": v},
        }}
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "artifact", "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
        "predicateType": "https://tcdist.test/test/v1",
        "predicate": {},
    }, separators=(",", ":")).encode()
    sig = key.sign(pae(IN_TOTO, statement), ec.ECDSA(hashes.SHA256()))
    return {"dsseRequestV002": {
        "envelope": {"payload": b64(statement), "payloadType": IN_TOTO,
                     "signatures": [{"sig": b64(sig), "keyid": ""}]},
        "verifiers": [v],
    }}


def cmd_submit(args):
    if args.data:
        with open(args.data, "rb") as f:
            data = f.read()
    else:
        data = os.urandom(32)
    req = build_request(args.kind, args.verifier, data)
    body = json.dumps(req).encode()
    if args.request_out:
        with open(args.request_out, "wb") as f:
            f.write(body)
    url = args.url.rstrip("/") + "/api/v2/log/entries"
    r = urllib.request.Request(url, data=body, method="POST",
                               headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            status, out = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, out = e.code, e.read()
    sys.stdout.write(out.decode(errors="replace"))
    if status != args.expect:
        fail("POST %s: HTTP %d (want %d)" % (url, status, args.expect))


# --- checks -------------------------------------------------------------------------------

def load_public_key(path):
    with open(path, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    if not isinstance(pub, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        fail("unsupported log key type %s" % type(pub).__name__)
    return pub


def log_id(pub, origin):
    """The log ID (32 bytes); its first 4 bytes are the signed note's key hint."""
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def verify_note_sig(pub, msg, sig):
    try:
        if isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(sig, msg)
        else:
            pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def check_checkpoint(text, pub, origin):
    """Verify a signed checkpoint; return (size, root hash)."""
    if "\n\n" not in text:
        fail("checkpoint: no blank line before the signatures")
    body, sigs = text.split("\n\n", 1)
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4:
        fail("checkpoint: body has fewer than 3 lines")
    if lines[0] != origin:
        fail("checkpoint: origin %r, want %r" % (lines[0], origin))
    size, root = int(lines[1]), base64.b64decode(lines[2], validate=True)
    if len(root) != 32:
        fail("checkpoint: root hash is not 32 bytes")
    hint = log_id(pub, origin)[:4]
    ok = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            fail("checkpoint: bad signature line %r" % line)
        name, sig = line[2:].rsplit(" ", 1)
        sig = base64.b64decode(sig, validate=True)
        if name == origin and sig[:4] == hint and verify_note_sig(pub, body.encode(), sig[4:]):
            ok = True
    if not ok:
        fail("checkpoint: no valid signature by the log key for %s" % origin)
    return size, root


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index, size, leaf, proof):
    """RFC 9162, section 2.1.3.2."""
    if index >= size:
        fail("inclusion proof: index %d not below tree size %d" % (index, size))
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            fail("inclusion proof: too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        fail("inclusion proof: too short")
    return r


def cmd_verify(args):
    f = sys.stdin if args.response == "-" else open(args.response)
    tle = json.load(f)
    pub = load_public_key(args.public_key)
    want_id = log_id(pub, args.origin)
    if base64.b64decode(tle["logId"]["keyId"]) != want_id:
        fail("logId.keyId %s, want %s" % (tle["logId"]["keyId"], b64(want_id)))
    index = int(tle["logIndex"])
    proof = tle["inclusionProof"]
    if int(proof["logIndex"]) != index:
        fail("inclusionProof.logIndex differs from logIndex")
    size, root = check_checkpoint(proof["checkpoint"]["envelope"], pub, args.origin)
    if int(proof["treeSize"]) != size or base64.b64decode(proof["rootHash"]) != root:
        fail("inclusionProof treeSize/rootHash differ from its checkpoint")
    body = base64.b64decode(tle["canonicalizedBody"])
    hashes_ = [base64.b64decode(h) for h in proof["hashes"]]
    if root_from_inclusion(index, size, leaf_hash(body), hashes_) != root:
        fail("inclusion proof does not lead to the checkpoint's root hash")
    entry = json.loads(body)
    kv = tle["kindVersion"]
    if (entry["kind"], entry["apiVersion"]) != (kv["kind"], kv["version"]) or kv["version"] != "0.0.2":
        fail("kindVersion %r does not match the body (%s %s)" % (kv, entry["kind"], entry["apiVersion"]))
    # The body is canonical JSON (RFC 8785): sorted keys, no spaces.
    if json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() != body:
        fail("canonicalizedBody is not in canonical form")
    print(json.dumps({"logIndex": index, "treeSize": size, "kind": kv["kind"]}))


def cmd_checkpoint(args):
    src = args.source
    if src.startswith(("http://", "https://")):
        with urllib.request.urlopen(src, timeout=10) as resp:
            text = resp.read().decode()
    else:
        with open(src) as f:
            text = f.read()
    size, _ = check_checkpoint(text, load_public_key(args.public_key), args.origin)
    print(size)


TILE_WIDTH = 256


def tile_index_path(n):
    """C2SP tlog-tiles: N as 3-digit groups, all but the last prefixed with "x"."""
    parts = []
    while True:
        parts.append("%03d" % (n % 1000))
        n //= 1000
        if n == 0:
            break
    parts.reverse()
    return "/".join(["x" + p for p in parts[:-1]] + [parts[-1]])


def tile_path(prefix, n, size):
    """The path of tile n (of entries or of level-0 hashes) in a tree of size leaves."""
    width = min(size - n * TILE_WIDTH, TILE_WIDTH)
    p = "tile/%s/%s" % (prefix, tile_index_path(n))
    return p if width == TILE_WIDTH else "%s.p/%d" % (p, width)


def http_get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def cmd_fetch_entry(args):
    base = args.tiles_url.rstrip("/")
    pub = load_public_key(args.public_key)
    size, _ = check_checkpoint(http_get(base + "/checkpoint").decode(), pub, args.origin)
    i = args.index
    if i >= size:
        fail("entry %d is not in the log (size %d)" % (i, size))
    n, k = divmod(i, TILE_WIDTH)
    bundle_path = tile_path("entries", n, size)
    bundle = http_get(base + "/" + bundle_path)
    entries, off = [], 0
    while off < len(bundle):
        length = int.from_bytes(bundle[off:off + 2], "big")
        entries.append(bundle[off + 2:off + 2 + length])
        off += 2 + length
    if off != len(bundle) or len(entries) != min(size - n * TILE_WIDTH, TILE_WIDTH):
        fail("entry bundle %s is malformed" % bundle_path)
    entry = entries[k]
    tp = tile_path("0", n, size)
    tile = http_get(base + "/" + tp)
    if len(tile) != 32 * len(entries):
        fail("tile %s has %d bytes for %d entries" % (tp, len(tile), len(entries)))
    if tile[32 * k:32 * k + 32] != leaf_hash(entry):
        fail("the level-0 tile does not hold the entry's leaf hash")
    print(json.dumps({"treeSize": size, "bundle": bundle_path, "tile": tp, "entry": b64(entry)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit")
    s.add_argument("url")
    s.add_argument("--kind", choices=["hashedrekord", "dsse"], default="hashedrekord")
    s.add_argument("--verifier", choices=["cert", "key"], default="cert")
    s.add_argument("--data")
    s.add_argument("--request-out")
    s.add_argument("--expect", type=int, default=201)
    v = sub.add_parser("verify")
    v.add_argument("response")
    v.add_argument("--public-key", required=True)
    v.add_argument("--origin", required=True)
    c = sub.add_parser("checkpoint")
    c.add_argument("source")
    c.add_argument("--public-key", required=True)
    c.add_argument("--origin", required=True)
    e = sub.add_parser("fetch-entry")
    e.add_argument("tiles_url")
    e.add_argument("index", type=int)
    e.add_argument("--public-key", required=True)
    e.add_argument("--origin", required=True)
    args = p.parse_args()
    {"submit": cmd_submit, "verify": cmd_verify, "checkpoint": cmd_checkpoint,
     "fetch-entry": cmd_fetch_entry}[args.cmd](args)


if __name__ == "__main__":
    main()
