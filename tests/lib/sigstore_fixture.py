#!/usr/bin/env python3
"""Makes a self-contained Sigstore bundle v0.3 (a DSSE envelope with an in-toto statement) and
the trusted_root.json it verifies against, to check third-party Sigstore clients (cosign,
sigstore-js) and the scripts that drive them on their own, without tcdist's signing code.

The certificate and key are given (e.g. an SVID from `spire-server x509 mint`); the RFC 3161
timestamp comes from a real TSA; the transparency log is simulated: a Rekor v2 entry with an
inclusion proof in a small RFC 6962 tree and a checkpoint (C2SP signed note) signed with a log
key made here, whose public key the trusted root lists.

usage:
  sigstore_fixture.py --cert PEM --key PEM --ca PEM --tsa-url URL --tsa-chain PEM
                      --digest HEX --out DIR [--entry dsse|hashedrekord]
                      [--log-url URL] [--tamper payload|signature]

  --cert/--key   the signing certificate (leaf first; further certificates ignored) and its key
  --ca           the CA certificate(s) the leaf chains to; each becomes a certificate authority
  --tsa-chain    the TSA's chain, leaf first, root last (one timestamp authority)
  --digest       the sha256 (hex) of the in-toto statement's one subject
  --entry        how the log entry records the signature (Rekor v2 types):
                   dsse          dsse v0.0.2: sha256 of the payload, and the signature
                   hashedrekord  hashedrekord v0.0.2: digest of the DSSE PAE, and the signature
  --log-url      the simulated log's base URL (its host is the checkpoint origin)
  --tamper       change the bundle after signing: a payload byte, or a signature byte

Writes DIR/bundle.json and DIR/trusted_root.json.
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
IN_TOTO = "application/vnd.in-toto+json"
EC_P256 = "PKIX_ECDSA_P256_SHA_256"


def b64(data):
    return base64.b64encode(data).decode()


def canonical(obj):
    """RFC 8785 JSON for what this file builds (ASCII strings, no numbers but integers)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def rfc3339(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_certs(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


# --- RFC 3161 -----------------------------------------------------------------------------

def timestamp_request(data):
    """A DER TimeStampReq for SHA-256 over `data`, asking for the TSA certificate."""
    algorithm = bytes.fromhex("300d06096086480165030402010500")
    imprint = b"\x30\x31" + algorithm + b"\x04\x20" + hashlib.sha256(data).digest()
    return b"\x30\x39\x02\x01\x01" + imprint + b"\x01\x01\xff"


def timestamp(tsa_url, data):
    """The whole DER TimeStampResp of the TSA for `data`."""
    url = tsa_url.rstrip("/")
    if url.count("/") == 2:
        url += "/api/v1/timestamp"
    req = urllib.request.Request(url, data=timestamp_request(data), method="POST",
                                 headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


# --- RFC 6962 tree ------------------------------------------------------------------------

def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_hash(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def inclusion_path(index, leaves):
    """RFC 6962 PATH(m, D[n]), lowest level first."""
    if len(leaves) == 1:
        return []
    k = split_point(len(leaves))
    if index < k:
        return inclusion_path(index, leaves[:k]) + [tree_hash(leaves[k:])]
    return inclusion_path(index - k, leaves[k:]) + [tree_hash(leaves[:k])]


# --- the bundle ---------------------------------------------------------------------------

def log_entry(kind, payload, signature, leaf_der):
    verifier = {"x509Certificate": {"rawBytes": b64(leaf_der)}, "keyDetails": EC_P256}
    sig = {"content": b64(signature), "verifier": verifier}
    if kind == "dsse":
        spec = {"dsseV002": {
            "payloadHash": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(payload).digest())},
            "signatures": [sig]}}
    else:
        spec = {"hashedRekordV002": {
            "data": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(pae(IN_TOTO, payload)).digest())},
            "signature": sig}}
    return canonical({"kind": kind, "apiVersion": "0.0.2", "spec": spec})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--tsa-url", required=True)
    p.add_argument("--tsa-chain", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--entry", choices=["dsse", "hashedrekord"], default="dsse")
    p.add_argument("--log-url", default="https://log.tcdist.test")
    p.add_argument("--tamper", choices=["payload", "signature"])
    args = p.parse_args()

    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    leaf = load_certs(args.cert)[0]
    cas = load_certs(args.ca)
    tsa_chain = load_certs(args.tsa_chain)

    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "toolchains/fixture", "digest": {"sha256": args.digest.lower()}}],
        "predicateType": "https://tcdist.test/fixture/v1",
        "predicate": {},
    }
    payload = json.dumps(statement).encode()
    signature = key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
    tsr = timestamp(args.tsa_url, signature)

    # The log: our entry at index 1 of 3, the others made-up leaves.
    log_key = ec.generate_private_key(ec.SECP256R1())
    log_pub = log_key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    log_id = hashlib.sha256(log_pub).digest()
    origin = urllib.parse.urlparse(args.log_url).hostname
    body = log_entry(args.entry, payload, signature, der(leaf))
    leaves = [hashlib.sha256(b"other-0").digest(), leaf_hash(body), hashlib.sha256(b"other-2").digest()]
    index, root = 1, tree_hash(leaves)
    note = "%s\n%d\n%s\n" % (origin, len(leaves), b64(root))
    # ECDSA note signatures: key hint = the first 4 bytes of the log ID (SHA-256 of the key).
    note_sig = log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
    checkpoint = note + "\n\u2014 %s %s\n" % (origin, b64(log_id[:4] + note_sig))
    entry = {
        "logIndex": str(index),
        "logId": {"keyId": b64(log_id)},
        "kindVersion": {"kind": args.entry, "version": "0.0.2"},
        "integratedTime": "0",
        "inclusionProof": {
            "logIndex": str(index),
            "rootHash": b64(root),
            "treeSize": str(len(leaves)),
            "hashes": [b64(h) for h in inclusion_path(index, leaves)],
            "checkpoint": {"envelope": checkpoint},
        },
        "canonicalizedBody": b64(body),
    }

    if args.tamper == "payload":
        payload = payload.replace(b"toolchains/fixture", b"toolchains/fixturE")
    elif args.tamper == "signature":
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    bundle = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "certificate": {"rawBytes": b64(der(leaf))},
            "tlogEntries": [entry],
            "timestampVerificationData": {"rfc3161Timestamps": [{"signedTimestamp": b64(tsr)}]},
        },
        "dsseEnvelope": {"payload": b64(payload), "payloadType": IN_TOTO,
                         "signatures": [{"sig": b64(signature), "keyid": ""}]},
    }

    def authority(chain, uri):
        subject = chain[0].subject
        org = [a.value for a in subject if a.oid == x509.NameOID.ORGANIZATION_NAME]
        cn = [a.value for a in subject if a.oid == x509.NameOID.COMMON_NAME]
        return {
            "subject": {"organization": (org or [""])[0], "commonName": (cn or [""])[0]},
            "uri": uri,
            "certChain": {"certificates": [{"rawBytes": b64(der(c))} for c in chain]},
            "validFor": {"start": rfc3339(chain[-1].not_valid_before_utc)},
        }

    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    trusted_root = {
        "mediaType": TRUSTED_ROOT,
        "tlogs": [{
            "baseUrl": args.log_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": b64(log_pub), "keyDetails": EC_P256,
                          "validFor": {"start": rfc3339(start)}},
            "logId": {"keyId": b64(log_id)},
        }],
        "certificateAuthorities": [authority([ca], "spiffe://" + (leaf_trust_domain(leaf) or "unknown"))
                                   for ca in cas],
        "ctlogs": [],
        "timestampAuthorities": [authority(tsa_chain, args.tsa_url)],
    }

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bundle.json"), "w") as f:
        json.dump(bundle, f, indent=2)
    with open(os.path.join(args.out, "trusted_root.json"), "w") as f:
        json.dump(trusted_root, f, indent=2)


def leaf_trust_domain(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return urllib.parse.urlparse(uri).hostname
    return None


if __name__ == "__main__":
    main()
