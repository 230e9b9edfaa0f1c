#!/usr/bin/env python3
"""Makes what an attacker could make, for the signature attack tests: certificates (any SAN,
CA flag, validity, issuer), signatures attached to a release in the stack registry, and
copies of a release's real signatures with one part tampered. It shares no code with distd,
so the tests do not trust the code they test to build their inputs.

usage:
  forge.py ca    --out DIR --name NAME [--trust-domain TD]
  forge.py cert  --out DIR --name NAME --issuer DIR/CA [--uri URI ...] [--ca]
                 [--not-before SECONDS] [--not-after SECONDS] [--no-digital-signature]
  forge.py sign  --repo REPO --digest DIGEST --cert PEM --key PEM [--tsa URL]
                 [--subject-digest DIGEST] [--subject-repo NAME]
  forge.py copy  --from REPO --to REPO --digest DIGEST [--only bundle|cosign]
                 [--tamper MODE] [--onto DIGEST] [--tlog-from REPO@DIGEST]
      MODE: payload, signature, drop-timestamp (both encodings); drop-tlog, tlog-body,
      tlog-proof, tlog-checkpoint-key, tlog-origin, swap-tlog (bundle only)
  forge.py detach --repo REPO --digest DIGEST --encoding bundle|cosign
  forge.py bundle --repo REPO --digest DIGEST      (prints the release's first bundle)

Times are seconds relative to now. The registry is $TCDIST_REGISTRY (TLS with
$TCDIST_REGISTRY_CA, basic auth $TCDIST_REGISTRY_USERNAME/_PASSWORD).
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
SIMPLE_SIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


def b64(data):
    return base64.b64encode(data).decode()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- certificates -------------------------------------------------------------------------

def write_key_and_cert(out, name, key, cert):
    with open(os.path.join(out, name + ".key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(out, name + ".pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def load(prefix):
    with open(prefix + ".key", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(prefix + ".pem", "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return key, cert


def cmd_ca(args):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, args.name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                            False), critical=True))
    if args.trust_domain:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                "spiffe://" + args.trust_domain)]), critical=False)
    write_key_and_cert(args.out, args.name, key, builder.sign(key, hashes.SHA256()))


def cmd_cert(args):
    issuer_key, issuer = load(args.issuer)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "forged")]))
               .issuer_name(issuer.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(seconds=args.not_before))
               .not_valid_after(now + datetime.timedelta(seconds=args.not_after))
               .add_extension(x509.BasicConstraints(ca=args.ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(not args.no_digital_signature, False, False, False,
                                            False, args.ca, args.ca, False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    if args.uri:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in args.uri]), critical=False)
    write_key_and_cert(args.out, args.name, key, builder.sign(issuer_key, hashes.SHA256()))


# --- registry -----------------------------------------------------------------------------

class Registry:
    def __init__(self):
        self.base = "https://" + os.environ["TCDIST_REGISTRY"]
        self.context = ssl.create_default_context(cafile=os.environ["TCDIST_REGISTRY_CA"])
        creds = "%s:%s" % (os.environ["TCDIST_REGISTRY_USERNAME"],
                           os.environ["TCDIST_REGISTRY_PASSWORD"])
        self.auth = "Basic " + b64(creds.encode())

    def request(self, method, path, body=None, headers=None, absolute=False):
        url = path if absolute else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        req.add_header("Authorization", self.auth)
        return urllib.request.urlopen(req, context=self.context)

    def get_manifest(self, repo, ref):
        try:
            with self.request("GET", "/v2/%s/manifests/%s" % (repo, ref),
                              headers={"Accept": MANIFEST_TYPE + "," + INDEX_TYPE}) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def get_blob(self, repo, digest):
        with self.request("GET", "/v2/%s/blobs/%s" % (repo, digest)) as r:
            return r.read()

    def put_blob(self, repo, data, media_type):
        digest = sha256_digest(data)
        with self.request("POST", "/v2/%s/blobs/uploads/" % repo) as r:
            location = r.headers["Location"]
        if not location.startswith("http"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        self.request("PUT", location + sep + "digest=" + digest, body=data,
                     headers={"Content-Type": "application/octet-stream"}, absolute=True).close()
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def put_manifest(self, repo, ref, data, media_type):
        self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), body=data,
                     headers={"Content-Type": media_type}).close()
        return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def referrers_tag(digest):
    return digest.replace(":", "-")


WITNESSED = "dev.tcdist.witnessed-checkpoint"


def attach_bundle(registry, repo, subject_digest, bundle, annotations=None):
    """Lists `bundle`, with `annotations` on its manifest, as the only referrer of
    `subject_digest` (tag schema)."""
    index = registry.get_manifest(repo, subject_digest)
    subject = {"mediaType": INDEX_TYPE, "digest": subject_digest, "size": len(index)}
    layer = registry.put_blob(repo, json.dumps(bundle).encode(), BUNDLE_TYPE)
    config = registry.put_blob(repo, b"{}", EMPTY_TYPE)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": BUNDLE_TYPE,
                "config": config, "layers": [layer], "subject": subject}
    if annotations:
        manifest["annotations"] = annotations
    data = json.dumps(manifest).encode()
    listed = registry.put_manifest(repo, sha256_digest(data), data, MANIFEST_TYPE)
    listed["artifactType"] = BUNDLE_TYPE
    if annotations:
        listed["annotations"] = annotations
    referrers = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [listed]}
    registry.put_manifest(repo, referrers_tag(subject_digest), json.dumps(referrers).encode(),
                          INDEX_TYPE)


# --- signing ------------------------------------------------------------------------------

def timestamp_request(signature):
    """A DER TimeStampReq for SHA-256 over `signature`, asking for the TSA certificate."""
    imprint_hash = hashlib.sha256(signature).digest()
    algorithm = bytes.fromhex("300d06096086480165030402010500")
    imprint = b"\x30\x31" + algorithm + b"\x04\x20" + imprint_hash
    return b"\x30\x39\x02\x01\x01" + imprint + b"\x01\x01\xff"


def timestamp(tsa_url, signature):
    url = tsa_url.rstrip("/")
    if url.count("/") == 2:
        url += "/api/v1/timestamp"
    req = urllib.request.Request(url, data=timestamp_request(signature), method="POST",
                                 headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(req) as r:
        return r.read()


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def cmd_sign(args):
    registry = Registry()
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(args.cert, "rb") as f:
        leaf = x509.load_pem_x509_certificates(f.read())[0]
    subject_digest = args.subject_digest or args.digest
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": args.subject_repo or args.repo,
                     "digest": {"sha256": subject_digest.split(":", 1)[1]}}],
        "predicateType": "https://tcdist.dev/attestation/release/v1",
        "predicate": {"repository": args.subject_repo or args.repo},
    }
    payload = json.dumps(statement).encode()
    signature = key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
    material = {"certificate": {"rawBytes": b64(leaf.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": []}
    if args.tsa:
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": b64(timestamp(args.tsa, signature))}]}
    bundle = {"mediaType": BUNDLE_TYPE, "verificationMaterial": material,
              "dsseEnvelope": {"payload": b64(payload), "payloadType": IN_TOTO,
                               "signatures": [{"sig": b64(signature)}]}}
    attach_bundle(registry, args.repo, args.digest, bundle)


# --- copying real signatures, with tampering ----------------------------------------------

def flip(data):
    return data[:-1] + bytes([data[-1] ^ 1])


def resign_checkpoint(envelope, origin):
    """The checkpoint's body under `origin`, signed by a fresh Ed25519 key (C2SP signed note)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    body = envelope.split("\n\n", 1)[0] + "\n"
    lines = body.split("\n")
    lines[0] = origin
    body = "\n".join(lines)
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    hint = hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()[:4]
    return body + "\n\u2014 %s %s\n" % (origin, b64(hint + key.sign(body.encode())))


def tamper_bundle(bundle, how, registry=None, tlog_from=None):
    material = bundle["verificationMaterial"]
    entries = material.get("tlogEntries", [])
    if how == "drop-tlog":
        material["tlogEntries"] = []
        return bundle
    if how == "swap-tlog":
        repo, digest = tlog_from.split("@")
        material["tlogEntries"] = fetch_bundle(registry, repo, digest)["verificationMaterial"]["tlogEntries"]
        return bundle
    if how and how.startswith("tlog-"):
        if not entries:
            raise SystemExit("forge: the bundle has no log entry to tamper with")
        entry = entries[0]
        proof = entry["inclusionProof"]
        if how == "tlog-body":
            body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
            body["spec"]["dsseV002"]["payloadHash"]["digest"] = b64(hashlib.sha256(b"other").digest())
            entry["canonicalizedBody"] = b64(json.dumps(body, separators=(",", ":")).encode())
        elif how == "tlog-proof":
            if not proof.get("hashes"):
                raise SystemExit("forge: the inclusion proof is empty (a log of one entry)")
            proof["hashes"][0] = b64(flip(base64.b64decode(proof["hashes"][0])))
        elif how == "tlog-checkpoint-key":
            origin = proof["checkpoint"]["envelope"].split("\n", 1)[0]
            proof["checkpoint"]["envelope"] = resign_checkpoint(proof["checkpoint"]["envelope"], origin)
        elif how == "tlog-origin":
            proof["checkpoint"]["envelope"] = resign_checkpoint(proof["checkpoint"]["envelope"],
                                                                "rekor.evil.test")
        return bundle
    envelope = bundle["dsseEnvelope"]
    if how == "payload":
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["tag"] = "tampered"
        envelope["payload"] = b64(json.dumps(statement).encode())
    elif how == "signature":
        sig = envelope["signatures"][0]
        sig["sig"] = b64(flip(base64.b64decode(sig["sig"])))
    elif how == "drop-timestamp":
        bundle["verificationMaterial"].pop("timestampVerificationData", None)
    return bundle


def tamper_cosign_layer(registry, repo, layer, how):
    payload = registry.get_blob(repo, layer["digest"])
    annotations = layer["annotations"]
    if how == "payload":
        doc = json.loads(payload)
        doc["optional"] = {"tampered": True}
        payload = json.dumps(doc).encode()
    elif how == "signature":
        key = "dev.cosignproject.cosign/signature"
        annotations[key] = b64(flip(base64.b64decode(annotations[key])))
    elif how == "drop-timestamp":
        annotations.pop("dev.sigstore.cosign/rfc3161timestamp", None)
    new = registry.put_blob(repo, payload, layer["mediaType"])
    new["annotations"] = annotations
    return new


RELEASE_PREDICATE = "https://tcdist.dev/attestation/release/v1"


def fetch_bundle(registry, repo, digest, predicate=RELEASE_PREDICATE):
    """The first bundle among the referrers of digest whose predicate type is predicate."""
    return fetch_bundle_manifest(registry, repo, digest, predicate)[0]


def fetch_bundle_manifest(registry, repo, digest, predicate=RELEASE_PREDICATE):
    """fetch_bundle's bundle, and its referrer manifest's annotations."""
    referrers = json.loads(registry.get_manifest(repo, referrers_tag(digest)))
    # Unannotated referrers are taken for release signatures, as tcverify takes them.
    listed = [m for m in referrers["manifests"]
              if m.get("annotations", {}).get("dev.sigstore.bundle.predicateType",
                                              RELEASE_PREDICATE) == predicate]
    if not listed:
        sys.exit("no bundle of predicate type %s among the referrers of %s" % (predicate, digest))
    manifest = json.loads(registry.get_manifest(repo, listed[0]["digest"]))
    return (json.loads(registry.get_blob(repo, manifest["layers"][0]["digest"])),
            manifest.get("annotations", {}))


def tamper_witnessed(annotations, how):
    """The witnessed checkpoint kept (a copy keeps it), dropped, or with its cosignatures
    altered: one flipped byte in the last, or all but the first removed."""
    kept = {k: v for k, v in annotations.items() if k == WITNESSED}
    if how == "drop-witnessed" or WITNESSED not in kept:
        return {}
    witnessed = json.loads(kept[WITNESSED])
    body, sigs = witnessed["checkpoint"].split("\n\n", 1)
    lines = sigs.strip("\n").split("\n")
    log_line, cosignatures = lines[0], lines[1:]
    if how == "witness-cosignature":
        dash, name, sig = cosignatures[-1].split(" ")
        cosignatures[-1] = " ".join([dash, name, b64(flip(base64.b64decode(sig)))])
    elif how == "witness-quorum":
        cosignatures = cosignatures[:1]
    witnessed["checkpoint"] = body + "\n\n" + "\n".join([log_line] + cosignatures) + "\n"
    kept[WITNESSED] = json.dumps(witnessed)
    return kept


def cmd_copy(args):
    registry = Registry()
    onto = args.onto or args.digest
    if args.only in (None, "bundle"):
        bundle, annotations = fetch_bundle_manifest(registry, args.src, args.digest)
        attach_bundle(registry, args.dst, onto,
                      tamper_bundle(bundle, args.tamper, registry, args.tlog_from),
                      tamper_witnessed(annotations, args.tamper))
    if args.only in (None, "cosign"):
        manifest = json.loads(registry.get_manifest(args.src, referrers_tag(args.digest) + ".sig"))
        layers = []
        for layer in manifest["layers"]:
            payload = registry.get_blob(args.src, layer["digest"])
            registry.put_blob(args.dst, payload, layer["mediaType"])
            layers.append(tamper_cosign_layer(registry, args.dst, layer, args.tamper))
        config = registry.put_blob(args.dst, registry.get_blob(args.src, manifest["config"]["digest"]),
                                   manifest["config"]["mediaType"])
        new = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": layers}
        registry.put_manifest(args.dst, referrers_tag(onto) + ".sig", json.dumps(new).encode(),
                              MANIFEST_TYPE)


def cmd_detach(args):
    """Empties the referrers tag (bundle) or the .sig manifest (cosign) of a release."""
    registry = Registry()
    if args.encoding == "bundle":
        empty = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
        registry.put_manifest(args.repo, referrers_tag(args.digest), json.dumps(empty).encode(),
                              INDEX_TYPE)
    else:
        config = registry.put_blob(args.repo, b"{}", "application/vnd.oci.image.config.v1+json")
        empty = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": []}
        registry.put_manifest(args.repo, referrers_tag(args.digest) + ".sig",
                              json.dumps(empty).encode(), MANIFEST_TYPE)


def cmd_bundle(args):
    sys.stdout.write(json.dumps(fetch_bundle(Registry(), args.repo, args.digest, args.predicate)))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ca")
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--trust-domain")
    p = sub.add_parser("cert")
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--uri", action="append", default=[])
    p.add_argument("--ca", action="store_true")
    p.add_argument("--not-before", type=int, default=-60)
    p.add_argument("--not-after", type=int, default=900)
    p.add_argument("--no-digital-signature", action="store_true")
    p = sub.add_parser("sign")
    p.add_argument("--repo", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--tsa")
    p.add_argument("--subject-digest")
    p.add_argument("--subject-repo")
    p = sub.add_parser("copy")
    p.add_argument("--from", dest="src", required=True)
    p.add_argument("--to", dest="dst", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--onto")
    p.add_argument("--only", choices=["bundle", "cosign"])
    p.add_argument("--tamper", choices=["payload", "signature", "drop-timestamp", "drop-tlog",
                                        "tlog-body", "tlog-proof", "tlog-checkpoint-key",
                                        "tlog-origin", "swap-tlog", "drop-witnessed",
                                        "witness-cosignature", "witness-quorum"])
    p.add_argument("--tlog-from")
    p = sub.add_parser("detach")
    p.add_argument("--repo", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--encoding", choices=["bundle", "cosign"], required=True)
    p = sub.add_parser("bundle")
    p.add_argument("--repo", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--predicate", default=RELEASE_PREDICATE)
    args = parser.parse_args()
    {"bundle": cmd_bundle, "ca": cmd_ca, "cert": cmd_cert, "sign": cmd_sign, "copy": cmd_copy,
     "detach": cmd_detach}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
