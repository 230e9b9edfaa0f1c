//! Fixtures shared by the verification stages' tests: an OCI image layout in a temp dir, a
//! transparency log with a real Ed25519 key and a loopback tile server, rcgen certificates for
//! a trust domain and a timestamp authority, RFC 3161 timestamps made here, and a whole signed
//! release (documents, DSSE bundle, log entry) with the policy that trusts it. Each test breaks
//! one thing of a valid release.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jiff::Timestamp;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rcgen::{Issuer, SerialNumber, SigningKey as _};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::Digest as _;
use sigstore_merkle::{hash_children, hash_leaf};
use sigstore_types::Sha256Hash;

use crate::discover::{Candidate, Encoding};
use crate::policy::Policy;
use crate::trust::files::tests::{TestCa, ca};
use crate::trust::tlog::{FreshnessMode, LogKeyAlgorithm, TransparencyLog};
use tcdist_core::digest::Digest;
use tcdist_core::platform::Platform;
use tcdist_oci::attachments::{
    ANNOTATION_COSIGN_CERTIFICATE, ANNOTATION_COSIGN_SIGNATURE, ANNOTATION_COSIGN_TIMESTAMP,
    ArtifactManifest, IN_TOTO_PAYLOAD_TYPE, MEDIA_TYPE_BUNDLE, MEDIA_TYPE_SIMPLE_SIGNING,
    ReleaseStatement, SimpleSigning, cosign_signature_tag, empty_config_descriptor,
    referrers_index, referrers_tag,
};
use tcdist_oci::bundle::{
    Bundle, Envelope, EnvelopeSignature, InclusionProof, KindVersion, LogId, RawBytes,
    Rfc3161Timestamp, TimestampVerificationData, TransparencyLogEntry, VerificationMaterial, pae,
};
use tcdist_oci::reference::LayoutRef;
use tcdist_oci::release::{
    ANNOTATION_REF_NAME, ContainerConfig, Descriptor, ImageConfig, ImageIndex, ImageManifest,
    MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST, RootFs,
};
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_oci::source::ReleaseSource;

pub(crate) const LOG_ORIGIN: &str = "rekor.tcdist.test";
pub(crate) const REPOSITORY: &str = "toolchains/go";
pub(crate) const TAG: &str = "go1.24.1";
pub(crate) const SIGNER: &str = "spiffe://tcdist.test/distd/signer";
/// The tag of the release in the layout's `index.json`: the one its statement names.
pub(crate) const RELEASE_TAG: &str = TAG;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `text` as a time; panics on a typo in a test.
pub(crate) fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// When the fixture's signature is timestamped: inside the SVID's 15 minutes.
pub(crate) fn signing_time() -> Timestamp {
    at("2026-01-01T00:05:00Z")
}

// ---------------------------------------------------------------------------------------------
// Transparency log

/// A log key, the log as the policy would declare it, and what it has signed.
pub(crate) struct TestLog {
    pub(crate) key: Ed25519KeyPair,
    pub(crate) log: TransparencyLog,
}

impl TestLog {
    pub(crate) fn new(freshness: FreshnessMode) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let raw = key.public_key().as_ref().to_vec();
        let mut spki = hex::decode("302a300506032b6570032100").unwrap();
        spki.extend_from_slice(&raw);
        let log = TransparencyLog {
            freshness,
            ..TransparencyLog::with_key((spki, raw, LogKeyAlgorithm::Ed25519), LOG_ORIGIN)
        };
        TestLog { key, log }
    }

    /// A checkpoint of the tree of `leaves`, signed by the log's key.
    pub(crate) fn checkpoint(&self, leaves: &[Vec<u8>]) -> String {
        self.checkpoint_of(leaves.len() as u64, tree_hash(&leaf_hashes(leaves)))
    }

    /// A checkpoint of a tree of `size` with `root`, signed by the log's key.
    pub(crate) fn checkpoint_of(&self, size: u64, root: [u8; 32]) -> String {
        let body = format!("{LOG_ORIGIN}\n{size}\n{}\n", b64(&root));
        let mut signature = self.log.key_id()[..4].to_vec();
        signature.extend_from_slice(self.key.sign(body.as_bytes()).as_ref());
        format!("{body}\n— {LOG_ORIGIN} {}\n", b64(&signature))
    }

    /// The public key, as a policy's `public_key` file holds it.
    pub(crate) fn public_key_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.log.public_key.clone()))
    }
}

/// `n` leaves; `fork` makes another tree of the same size.
pub(crate) fn leaves(n: u8, fork: bool) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i, u8::from(fork)]).collect()
}

pub(crate) fn leaf_hashes(leaves: &[Vec<u8>]) -> Vec<[u8; 32]> {
    leaves.iter().map(|l| *hash_leaf(l).as_bytes()).collect()
}

fn node(left: [u8; 32], right: [u8; 32]) -> [u8; 32] {
    *hash_children(&Sha256Hash::new(left), &Sha256Hash::new(right)).as_bytes()
}

/// RFC 6962 MTH.
pub(crate) fn tree_hash(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes {
        [] => sha2::Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let (left, right) = hashes.split_at(split(hashes.len()));
            node(tree_hash(left), tree_hash(right))
        }
    }
}

/// The largest power of two below `n`, for n >= 2.
fn split(n: usize) -> usize {
    1 << (n - 1).ilog2()
}

/// RFC 6962 PATH(m, D[n]): the inclusion proof of leaf `m`.
pub(crate) fn inclusion_proof(hashes: &[[u8; 32]], m: usize) -> Vec<[u8; 32]> {
    if hashes.len() <= 1 {
        return Vec::new();
    }
    let k = split(hashes.len());
    let (left, right) = hashes.split_at(k);
    if m < k {
        let mut proof = inclusion_proof(left, m);
        proof.push(tree_hash(right));
        proof
    } else {
        let mut proof = inclusion_proof(right, m - k);
        proof.push(tree_hash(left));
        proof
    }
}

/// A loopback HTTP server that answers GETs from `routes` (404 otherwise).
pub(crate) struct TileServer {
    pub(crate) url: String,
    routes: Routes,
}

/// Path → status line and body.
type Routes = Arc<Mutex<HashMap<String, (&'static str, Vec<u8>)>>>;

impl TileServer {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes = Routes::default();
        let served = routes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // The rest of the head is not needed.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let route = served.lock().unwrap().get(&path).cloned();
                let (status, body) = route.unwrap_or(("404 Not Found", Vec::new()));
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        TileServer { url, routes }
    }

    pub(crate) fn serve(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.answer(path, "200 OK", body.into());
    }

    pub(crate) fn answer(&self, path: &str, status: &'static str, body: Vec<u8>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body));
    }

    /// The log of `leaves` (fewer than 256): its checkpoint and its one partial tile.
    pub(crate) fn serve_log(&self, log: &TestLog, leaves: &[Vec<u8>]) {
        self.serve("/checkpoint", log.checkpoint(leaves));
        self.serve(
            &format!("/tile/0/000.p/{}", leaves.len()),
            leaf_hashes(leaves).concat(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// OCI image layout

/// An OCI image layout in a temp dir: blobs, and the tagged entries of `index.json`.
pub(crate) struct OciLayout {
    pub(crate) dir: tempfile::TempDir,
    entries: Vec<Descriptor>,
}

impl OciLayout {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        OciLayout {
            dir,
            entries: Vec::new(),
        }
    }

    pub(crate) fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let descriptor = Descriptor::of_document(media_type, bytes);
        std::fs::write(self.blob_path(&descriptor), bytes).unwrap();
        descriptor
    }

    pub(crate) fn blob_path(&self, descriptor: &Descriptor) -> PathBuf {
        self.dir
            .path()
            .join("blobs/sha256")
            .join(descriptor.digest.hex())
    }

    /// Lists `descriptor` in `index.json` under `tag` (replacing an entry of that tag).
    pub(crate) fn tag(&mut self, tag: &str, mut descriptor: Descriptor) {
        descriptor.annotations = BTreeMap::from([(ANNOTATION_REF_NAME.to_owned(), tag.to_owned())]);
        self.entries
            .retain(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(tag));
        self.entries.push(descriptor);
    }

    /// Writes `index.json` and returns the layout as a source naming `tag` (or its only entry).
    pub(crate) fn source(&self, tag: Option<&str>) -> ReleaseSource {
        let top = ImageIndex {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX.to_owned(),
            manifests: self.entries.clone(),
            annotations: BTreeMap::new(),
        };
        std::fs::write(
            self.dir.path().join("index.json"),
            serde_json::to_vec(&top).unwrap(),
        )
        .unwrap();
        ReleaseSource::Layout(LayoutRef {
            path: self.dir.path().to_path_buf(),
            tag: tag.map(str::to_owned),
            digest: None,
        })
    }

    /// The layout as a source pinned to `digest`.
    pub(crate) fn source_pinned(&self, digest: &Digest) -> ReleaseSource {
        let ReleaseSource::Layout(layout) = self.source(None) else {
            unreachable!("a layout source")
        };
        ReleaseSource::Layout(LayoutRef {
            digest: Some(digest.clone()),
            ..layout
        })
    }

    /// The entry `index.json` lists for `digest`.
    pub(crate) fn descriptor_of(&self, digest: &Digest) -> Descriptor {
        self.entries
            .iter()
            .find(|d| d.digest == *digest)
            .expect("the digest is listed")
            .clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates and RFC 3161 timestamps

/// DER, written by hand: just enough for a TimeStampResp.
mod der {
    pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        match len {
            0..=0x7f => out.push(len as u8),
            0x80..=0xff => out.extend([0x81, len as u8]),
            _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    pub(super) fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    pub(super) fn set(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x31, &parts.concat())
    }

    pub(super) fn oid(hex: &str) -> Vec<u8> {
        tlv(0x06, &hex::decode(hex).unwrap())
    }

    pub(super) fn int(value: &[u8]) -> Vec<u8> {
        tlv(0x02, value)
    }

    pub(super) fn octets(value: &[u8]) -> Vec<u8> {
        tlv(0x04, value)
    }

    pub(super) const SHA256: &str = "608648016503040201";
    pub(super) const SIGNED_DATA: &str = "2a864886f70d010702";
    pub(super) const TST_INFO: &str = "2a864886f70d0109100104";
    pub(super) const CONTENT_TYPE: &str = "2a864886f70d010903";
    pub(super) const MESSAGE_DIGEST: &str = "2a864886f70d010904";
    pub(super) const ECDSA_SHA256: &str = "2a8648ce3d040302";
    pub(super) const POLICY: &str = "2a0304";
}

/// A timestamp authority: a root, and a leaf for time stamping that signs the tokens.
pub(crate) struct TestTsa {
    pub(crate) root: TestCa,
    key: KeyPair,
    pub(crate) leaf: Vec<u8>,
    leaf_pem: String,
}

/// The TSA leaf's serial number, which the tokens name as their signer.
const TSA_SERIAL: [u8; 2] = [0x10, 0x01];

impl TestTsa {
    pub(crate) fn new(name: &str) -> Self {
        let root = ca(&format!("{name} root"));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from_slice(&TSA_SERIAL));
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&root.params, &root.key))
            .unwrap();
        TestTsa {
            root,
            key,
            leaf: cert.der().to_vec(),
            leaf_pem: cert.pem(),
        }
    }

    /// The chain as a policy's `chain` file holds it: leaf, then root.
    pub(crate) fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.root.pem)
    }

    /// A granted TimeStampResp over `signature` at `time`, signed by this TSA.
    pub(crate) fn timestamp(&self, signature: &[u8], time: Timestamp) -> Vec<u8> {
        use der::*;
        let sha256 = seq(&[&oid(SHA256)]);
        let gen_time = tlv(0x18, time.strftime("%Y%m%d%H%M%SZ").to_string().as_bytes());
        let imprint = seq(&[&sha256, &octets(&sha2::Sha256::digest(signature))]);
        let tst_info = seq(&[&int(&[1]), &oid(POLICY), &imprint, &int(&[7]), &gen_time]);
        // Attributes in DER order: contentType's encoding is the shorter.
        let content_type = seq(&[&oid(CONTENT_TYPE), &set(&[&oid(TST_INFO)])]);
        let message_digest = seq(&[
            &oid(MESSAGE_DIGEST),
            &set(&[&octets(&sha2::Sha256::digest(&tst_info))]),
        ]);
        let attributes = [content_type, message_digest].concat();
        let cms_signature = self.key.sign(&set(&[&attributes])).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&self.leaf).unwrap();
        let signer_info = seq(&[
            &int(&[1]),
            &seq(&[leaf.tbs_certificate.issuer.as_raw(), &int(&TSA_SERIAL)]),
            &sha256,
            &tlv(0xa0, &attributes),
            &seq(&[&oid(ECDSA_SHA256)]),
            &octets(&cms_signature),
        ]);
        let signed_data = seq(&[
            &int(&[3]),
            &set(&[&sha256]),
            &seq(&[&oid(TST_INFO), &tlv(0xa0, &octets(&tst_info))]),
            &set(&[&signer_info]),
        ]);
        let token = seq(&[&oid(SIGNED_DATA), &tlv(0xa0, &signed_data)]);
        seq(&[&seq(&[&int(&[0])]), &token])
    }
}

/// The trust material of the stack: a trust domain CA, a TSA, a log, and a signer's SVID.
pub(crate) struct Pki {
    pub(crate) trust_domain: TestCa,
    pub(crate) tsa: TestTsa,
    pub(crate) log: TestLog,
    pub(crate) signer: Svid,
}

/// An X.509-SVID and its key.
pub(crate) struct Svid {
    pub(crate) key: KeyPair,
    pub(crate) leaf: Vec<u8>,
}

impl Svid {
    /// An SVID for `id` issued by `ca`, valid 2026-01-01 00:00 to 00:15 (as SPIRE issues them).
    pub(crate) fn issue(id: &str, ca: &TestCa) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = params.not_before + std::time::Duration::from_secs(15 * 60);
        let key = KeyPair::generate().unwrap();
        let leaf = params
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .unwrap()
            .der()
            .to_vec();
        Svid { key, leaf }
    }
}

/// A policy trusting the fixture's trust domain, TSA and log for [`REPOSITORY`].
pub(crate) const POLICY: &str = r#"version = 1

[trust_domains."tcdist.test"]
bundle = "td.pem"

[timestamp_authorities.stack]
chain = "tsa.pem"

[transparency_logs.rekor]
origin = "rekor.tcdist.test"
public_key = "log.pem"

[[repository]]
name = "toolchains/go"
signers = { spiffe_id = "spiffe://tcdist.test/distd/signer" }
"#;

impl Pki {
    pub(crate) fn new() -> Self {
        let trust_domain = ca("tcdist.test");
        let signer = Svid::issue(SIGNER, &trust_domain);
        Pki {
            trust_domain,
            tsa: TestTsa::new("tsa"),
            log: TestLog::new(FreshnessMode::BestEffort),
            signer,
        }
    }

    /// `text` loaded as a policy, next to trust files for this PKI (`td.pem`, `tsa.pem`,
    /// `log.pem`).
    pub(crate) fn policy(&self, text: &str) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("td.pem", &self.trust_domain.pem);
        write("tsa.pem", &self.tsa.chain_pem());
        write("log.pem", &self.log.public_key_pem());
        let path = dir.path().join("policy.toml");
        Policy::parse(text, &path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A bundle candidate: `statement` signed by the signer, timestamped at [`signing_time`],
    /// and logged.
    pub(crate) fn sign(&self, statement: Vec<u8>) -> Candidate {
        self.sign_as(&self.signer, statement, signing_time())
    }

    /// Like [`Pki::sign`], by `signer`, timestamped at `time`.
    pub(crate) fn sign_as(&self, signer: &Svid, statement: Vec<u8>, time: Timestamp) -> Candidate {
        let signed_bytes = pae(IN_TOTO_PAYLOAD_TYPE, &statement);
        let signature = signer.key.sign(&signed_bytes).unwrap();
        let mut candidate = Candidate {
            origin: "bundle under test".to_owned(),
            encoding: Encoding::Bundle,
            timestamps: vec![self.tsa.timestamp(&signature, time)],
            payload: statement,
            signed_bytes,
            signature,
            leaf: signer.leaf.clone(),
            intermediates: Vec::new(),
            tlog_entries: Vec::new(),
            witnessed: None,
        };
        candidate.tlog_entries = vec![self.log_entry(&candidate)];
        candidate
    }

    /// The statement a release of [`REPOSITORY`] with `index` is signed over, signed.
    pub(crate) fn sign_release(&self, index: &Digest) -> Candidate {
        self.sign(ReleaseStatement::new(REPOSITORY, Some(TAG), index).to_json())
    }

    /// cosign's simple-signing payload for [`REPOSITORY`] and `index`, signed by the signer and
    /// timestamped at [`signing_time`] (cosign signatures are not logged).
    pub(crate) fn sign_cosign(&self, index: &Digest) -> Candidate {
        let payload = SimpleSigning::new(REPOSITORY, Some(TAG), index).to_json();
        let signature = self.signer.key.sign(&payload).unwrap();
        Candidate {
            origin: "cosign signature under test".to_owned(),
            encoding: Encoding::CosignTag,
            timestamps: vec![self.tsa.timestamp(&signature, signing_time())],
            signed_bytes: payload.clone(),
            payload,
            signature,
            leaf: self.signer.leaf.clone(),
            intermediates: Vec::new(),
            tlog_entries: Vec::new(),
            witnessed: None,
        }
    }

    /// The Rekor v2 entry that records `candidate`, as entry 1 of a log of three, with its
    /// inclusion proof and a checkpoint signed by the log.
    pub(crate) fn log_entry(&self, candidate: &Candidate) -> TransparencyLogEntry {
        let body = entry_body(&candidate.payload, &candidate.signature, &candidate.leaf);
        let leaves = vec![b"entry 0".to_vec(), body.clone(), b"entry 2".to_vec()];
        let hashes = leaf_hashes(&leaves);
        TransparencyLogEntry {
            log_index: 1,
            log_id: LogId {
                key_id: self.log.log.key_id().to_vec(),
            },
            kind_version: KindVersion {
                kind: "dsse".to_owned(),
                version: "0.0.2".to_owned(),
            },
            inclusion_proof: Some(InclusionProof {
                log_index: 1,
                root_hash: tree_hash(&hashes).to_vec(),
                tree_size: 3,
                hashes: inclusion_proof(&hashes, 1)
                    .iter()
                    .map(|h| h.to_vec())
                    .collect(),
                checkpoint: tcdist_oci::bundle::Checkpoint {
                    envelope: self.log.checkpoint(&leaves),
                },
            }),
            canonicalized_body: body,
        }
    }
}

/// A Rekor `dsse` 0.0.2 entry body recording `signature` by `leaf` over `payload`.
pub(crate) fn entry_body(payload: &[u8], signature: &[u8], leaf: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "0.0.2",
        "kind": "dsse",
        "spec": { "dsseV002": {
            "payloadHash": { "algorithm": "SHA2_256", "digest": b64(&sha2::Sha256::digest(payload)) },
            "signatures": [{
                "content": b64(signature),
                "verifier": { "x509Certificate": { "rawBytes": b64(leaf) } },
            }],
        }},
    }))
    .unwrap()
}

/// `candidate` as the Sigstore bundle `distd` attaches.
pub(crate) fn bundle_of(candidate: &Candidate) -> Bundle {
    Bundle {
        media_type: MEDIA_TYPE_BUNDLE.to_owned(),
        verification_material: VerificationMaterial {
            certificate: Some(RawBytes {
                raw_bytes: candidate.leaf.clone(),
            }),
            tlog_entries: candidate.tlog_entries.clone(),
            timestamp_verification_data: Some(TimestampVerificationData {
                rfc3161_timestamps: candidate
                    .timestamps
                    .iter()
                    .map(|t| Rfc3161Timestamp {
                        signed_timestamp: t.clone(),
                    })
                    .collect(),
            }),
            ..Default::default()
        },
        dsse_envelope: Some(Envelope {
            payload: candidate.payload.clone(),
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
            signatures: vec![EnvelopeSignature {
                sig: candidate.signature.clone(),
                keyid: String::new(),
            }],
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// A release

/// The documents of a one-platform release: index, manifest, config and one tiny layer.
#[derive(Clone)]
pub(crate) struct ReleaseDocs {
    /// The platform the index lists the manifest for.
    pub(crate) platform: Platform,
    pub(crate) manifest: ImageManifest,
    pub(crate) config: ImageConfig,
    pub(crate) layer: Vec<u8>,
}

impl ReleaseDocs {
    pub(crate) fn new() -> Self {
        let layer = b"a tiny layer".to_vec();
        let config = ImageConfig {
            created: None,
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            variant: None,
            config: ContainerConfig::default(),
            rootfs: RootFs {
                kind: "layers".to_owned(),
                diff_ids: vec![Digest::of(b"the layer, uncompressed")],
            },
        };
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST.to_owned(),
            config: Descriptor::of_document(
                MEDIA_TYPE_CONFIG,
                &serde_json::to_vec(&config).unwrap(),
            ),
            layers: vec![Descriptor::of_document(MEDIA_TYPE_LAYER_GZIP, &layer)],
            annotations: BTreeMap::new(),
        };
        ReleaseDocs {
            platform: Platform::new("linux", "amd64"),
            manifest,
            config,
            layer,
        }
    }

    /// Sets the config, and the manifest's descriptor of it.
    pub(crate) fn set_config(&mut self, config: ImageConfig) {
        self.manifest.config =
            Descriptor::of_document(MEDIA_TYPE_CONFIG, &serde_json::to_vec(&config).unwrap());
        self.config = config;
    }

    fn manifest_descriptor(&self) -> Descriptor {
        let mut descriptor = Descriptor::of_document(
            MEDIA_TYPE_MANIFEST,
            &serde_json::to_vec(&self.manifest).unwrap(),
        );
        descriptor.platform = Some(self.platform.clone());
        descriptor
    }

    fn index(&self) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX.to_owned(),
            manifests: vec![self.manifest_descriptor()],
            annotations: BTreeMap::new(),
        }
    }

    pub(crate) fn index_digest(&self) -> Digest {
        Digest::of(&serde_json::to_vec(&self.index()).unwrap())
    }

    /// The release as `resolve` would hand it to the stages, without a source.
    pub(crate) fn resolved(&self) -> ResolvedRelease {
        ResolvedRelease {
            reference: "release under test".to_owned(),
            index_digest: self.index_digest(),
            index: self.index(),
            platform: self.platform.clone(),
            manifest_descriptor: self.manifest_descriptor(),
            manifest: self.manifest.clone(),
            config: self.config.clone(),
        }
    }

    /// Writes every document into `layout` and tags the index [`RELEASE_TAG`].
    pub(crate) fn write(&self, layout: &mut OciLayout) -> Digest {
        layout.blob(MEDIA_TYPE_LAYER_GZIP, &self.layer);
        layout.blob(
            MEDIA_TYPE_CONFIG,
            &serde_json::to_vec(&self.config).unwrap(),
        );
        layout.blob(
            MEDIA_TYPE_MANIFEST,
            &serde_json::to_vec(&self.manifest).unwrap(),
        );
        let index = layout.blob(
            MEDIA_TYPE_INDEX,
            &serde_json::to_vec(&self.index()).unwrap(),
        );
        layout.tag(RELEASE_TAG, index.clone());
        index.digest
    }
}

/// Attaches `candidate` to `subject` in `layout` as a bundle referrer, listed under the
/// referrers tag.
pub(crate) fn attach(layout: &mut OciLayout, subject: &Digest, candidate: &Candidate) {
    let bundle = layout.blob(MEDIA_TYPE_BUNDLE, &bundle_of(candidate).to_json());
    let mut manifest = ArtifactManifest::new(empty_config_descriptor(), vec![bundle]);
    manifest.artifact_type = Some(MEDIA_TYPE_BUNDLE.to_owned());
    let mut referrer = layout.blob(MEDIA_TYPE_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
    referrer.artifact_type = Some(MEDIA_TYPE_BUNDLE.to_owned());
    let index = serde_json::to_vec(&referrers_index(vec![referrer])).unwrap();
    let listed = layout.blob(MEDIA_TYPE_INDEX, &index);
    layout.tag(&referrers_tag(subject), listed);
}

/// Attaches `candidate` (a cosign signature) to `subject` in `layout` under cosign's `.sig`
/// tag, with everything but the payload in the layer's annotations.
pub(crate) fn attach_cosign(layout: &mut OciLayout, subject: &Digest, candidate: &Candidate) {
    let mut layer = layout.blob(MEDIA_TYPE_SIMPLE_SIGNING, &candidate.payload);
    layer.annotations = BTreeMap::from([
        (
            ANNOTATION_COSIGN_SIGNATURE.to_owned(),
            b64(&candidate.signature),
        ),
        (
            ANNOTATION_COSIGN_CERTIFICATE.to_owned(),
            pem::encode(&pem::Pem::new("CERTIFICATE", candidate.leaf.clone())),
        ),
    ]);
    if let Some(token) = candidate.timestamps.first() {
        layer.annotations.insert(
            ANNOTATION_COSIGN_TIMESTAMP.to_owned(),
            serde_json::json!({ "SignedRFC3161Timestamp": b64(token) }).to_string(),
        );
    }
    let manifest = ArtifactManifest::new(empty_config_descriptor(), vec![layer]);
    let signature = layout.blob(MEDIA_TYPE_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
    layout.tag(&cosign_signature_tag(subject), signature);
}

/// A valid signed release in an OCI layout, and the PKI and policy that accept it.
pub(crate) struct SignedRelease {
    pub(crate) pki: Pki,
    pub(crate) docs: ReleaseDocs,
    pub(crate) layout: OciLayout,
}

impl SignedRelease {
    pub(crate) fn new() -> Self {
        SignedRelease {
            pki: Pki::new(),
            docs: ReleaseDocs::new(),
            layout: OciLayout::new(),
        }
    }

    /// The policy [`POLICY`], trusting this release's PKI.
    pub(crate) fn policy(&self) -> Policy {
        self.pki.policy(POLICY)
    }

    /// Writes the documents, signs the index, lets `tamper` change the signature, attaches it,
    /// and returns the index digest and the layout as a source.
    pub(crate) fn publish(
        &mut self,
        tamper: impl FnOnce(&Pki, &mut Candidate),
    ) -> (Digest, ReleaseSource) {
        self.publish_with(|pki, index| {
            let mut candidate = pki.sign_release(index);
            tamper(pki, &mut candidate);
            candidate
        })
    }

    /// Writes the documents and attaches the signature `sign` makes for the index digest.
    pub(crate) fn publish_with(
        &mut self,
        sign: impl FnOnce(&Pki, &Digest) -> Candidate,
    ) -> (Digest, ReleaseSource) {
        let index = self.docs.write(&mut self.layout);
        let candidate = sign(&self.pki, &index);
        attach(&mut self.layout, &index, &candidate);
        (index, self.layout.source(Some(RELEASE_TAG)))
    }
}
