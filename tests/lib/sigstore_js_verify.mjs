// Verifies a Sigstore bundle with sigstore-js (@sigstore/verify), as a third-party
// client would: tcdist's bundles must pass a verifier that is not ours.
//
//   node sigstore_js_verify.mjs BUNDLE.json TRUSTED_ROOT.json ARTIFACT_DIGEST_HEX SAN
//
// BUNDLE.json: a Sigstore bundle v0.3 whose content is a DSSE envelope with an in-toto
// statement. TRUSTED_ROOT.json: the trusted root (CAs, transparency logs, timestamp
// authorities) to verify it against. It requires one transparency log entry, no
// certificate transparency (SCTs), and one RFC 3161 timestamp; the signing certificate's
// subject alternative name must equal SAN exactly (any issuer); and a subject of the
// statement must have the sha256 digest ARTIFACT_DIGEST_HEX.
//
// The packages come from $TCDIST_SIGSTORE_JS_DIR (deploy/local/lib/install.sh,
// ensure_sigstore_js): a directory with node_modules/@sigstore/{verify,bundle,...}.
//
// Prints "verified" and exits 0; prints the error and exits 1 when verification fails
// (including unreadable input); exits 2 on a usage error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json";
const IN_TOTO = "application/vnd.in-toto+json";
const STATEMENT_V1 = "https://in-toto.io/Statement/v1";

function usage(message) {
  console.error(`sigstore_js_verify: ${message}`);
  console.error("usage: node sigstore_js_verify.mjs BUNDLE.json TRUSTED_ROOT.json ARTIFACT_DIGEST_HEX SAN");
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length !== 4) usage(`want 4 arguments, got ${args.length}`);
const [bundlePath, rootPath, digestArg, san] = args;
const wantDigest = digestArg.toLowerCase();
if (!/^[0-9a-f]{64}$/.test(wantDigest)) usage(`ARTIFACT_DIGEST_HEX is not a sha256 in hex: ${digestArg}`);
if (san === "") usage("SAN is empty");
const dir = process.env.TCDIST_SIGSTORE_JS_DIR;
if (!dir) usage("TCDIST_SIGSTORE_JS_DIR is not set (see ensure_sigstore_js)");

let sigstore;
try {
  const require = createRequire(path.join(path.resolve(dir), "package.json"));
  sigstore = {
    verify: require("@sigstore/verify"),
    bundle: require("@sigstore/bundle"),
    specs: require("@sigstore/protobuf-specs"),
    version: require("@sigstore/verify/package.json").version,
  };
} catch (err) {
  usage(`cannot load @sigstore/verify from ${dir}: ${err.message}`);
}

// A regular expression that matches exactly s (sigstore-js matches identities by
// unanchored regex).
function exactly(s) {
  return "^" + s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "$";
}

function fail(message) {
  throw new Error(message);
}

function readJSON(file, what) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    fail(`cannot read ${what} ${file}: ${err.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    fail(`${what} ${file} is not JSON: ${err.message}`);
  }
}

function verify() {
  const bundleJSON = readJSON(bundlePath, "bundle");
  const rootJSON = readJSON(rootPath, "trusted root");
  if (bundleJSON === null || typeof bundleJSON !== "object" || bundleJSON.mediaType !== BUNDLE_V03) {
    fail(`bundle media type is ${JSON.stringify(bundleJSON?.mediaType)}, want ${BUNDLE_V03}`);
  }
  const bundle = sigstore.bundle.bundleFromJSON(bundleJSON);
  if (bundle.content?.$case !== "dsseEnvelope") {
    fail(`bundle content is ${bundle.content?.$case}, want a DSSE envelope`);
  }
  if (rootJSON === null || typeof rootJSON !== "object" || Array.isArray(rootJSON)) {
    fail("trusted root is not a JSON object");
  }
  const trustMaterial = sigstore.verify.toTrustMaterial(sigstore.specs.TrustedRoot.fromJSON(rootJSON));
  const verifier = new sigstore.verify.Verifier(trustMaterial, {
    tlogThreshold: 1,
    ctlogThreshold: 0,
    timestampThreshold: 1,
  });
  const entity = sigstore.verify.toSignedEntity(bundle);
  // Signature (over the DSSE PAE), certificate chain at the timestamps' times, log
  // inclusion and entry body, and the identity.
  verifier.verify(entity, { subjectAlternativeName: exactly(san) });

  // What was signed: an in-toto statement about the artifact.
  const envelope = bundle.content.dsseEnvelope;
  if (envelope.payloadType !== IN_TOTO) {
    fail(`DSSE payload type is ${JSON.stringify(envelope.payloadType)}, want ${IN_TOTO}`);
  }
  let statement;
  try {
    statement = JSON.parse(Buffer.from(envelope.payload).toString("utf8"));
  } catch (err) {
    fail(`DSSE payload is not JSON: ${err.message}`);
  }
  if (statement?._type !== STATEMENT_V1) {
    fail(`in-toto statement type is ${JSON.stringify(statement?._type)}, want ${STATEMENT_V1}`);
  }
  const subjects = Array.isArray(statement.subject) ? statement.subject : [];
  const digests = subjects.map((s) => String(s?.digest?.sha256 ?? "").toLowerCase());
  if (!digests.includes(wantDigest)) {
    fail(`no in-toto subject has sha256 ${wantDigest} (subjects: ${digests.join(", ") || "none"})`);
  }
}

try {
  verify();
} catch (err) {
  const code = err?.code ? `${err.code}: ` : "";
  console.error(`not verified (@sigstore/verify ${sigstore.version}): ${code}${err?.message ?? err}`);
  process.exit(1);
}
console.log("verified");
