//! Cosignatures by test witnesses with real Ed25519 keys, on a checkpoint the test log signed.

use ring::signature::{Ed25519KeyPair, KeyPair as _};

use super::*;
use crate::test_support::{TestLog, leaves};
use crate::trust::tlog::FreshnessMode;

struct TestWitness {
    name: String,
    key: Ed25519KeyPair,
}

impl TestWitness {
    fn new(name: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        TestWitness {
            name: name.to_owned(),
            key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    fn typed_key(&self) -> Vec<u8> {
        let mut key = vec![COSIGNATURE_V1];
        key.extend_from_slice(self.key.public_key().as_ref());
        key
    }

    fn vkey(&self) -> String {
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_hint(&self.name, &self.typed_key())),
            base64::engine::general_purpose::STANDARD.encode(self.typed_key())
        )
    }

    /// The cosignature line for the checkpoint `note` (its body, up to the blank line).
    fn cosign(&self, note: &str, time: u64) -> String {
        let body = &note[..note.find("\n\n").unwrap() + 1];
        let message = format!("cosignature/v1\ntime {time}\n{body}");
        let mut signature = key_hint(&self.name, &self.typed_key()).to_vec();
        signature.extend_from_slice(&time.to_be_bytes());
        signature.extend_from_slice(self.key.sign(message.as_bytes()).as_ref());
        format!(
            "— {} {}\n",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(signature)
        )
    }
}

fn setup() -> (String, Vec<TestWitness>, Vec<WitnessKey>) {
    let log = TestLog::new(FreshnessMode::BestEffort);
    let note = log.checkpoint(&leaves(5, false));
    let witnesses: Vec<_> = (1..=3)
        .map(|n| TestWitness::new(&format!("w{n}.test")))
        .collect();
    let keys = witnesses
        .iter()
        .map(|w| WitnessKey::parse(&w.vkey()).unwrap())
        .collect();
    (note, witnesses, keys)
}

fn parse(note: &str) -> Checkpoint {
    Checkpoint::from_text(note).unwrap()
}

#[test]
fn quorum_met_by_distinct_valid_cosignatures() {
    let (note, w, keys) = setup();
    let cosigned = format!("{note}{}{}", w[0].cosign(&note, 10), w[2].cosign(&note, 11));
    let names = check_quorum(&parse(&cosigned), &keys, 2).unwrap();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["w1.test", "w3.test"]
    );
}

#[test]
fn quorum_rejected_if_one_witness_signs_twice() {
    let (note, w, keys) = setup();
    let cosigned = format!("{note}{}{}", w[0].cosign(&note, 10), w[0].cosign(&note, 12));
    let err = check_quorum(&parse(&cosigned), &keys, 2).unwrap_err();
    assert!(err.starts_with("1 of the required 2 witnesses"), "{err}");
}

#[test]
fn unknown_witnesses_are_ignored() {
    let (note, w, keys) = setup();
    let stranger = TestWitness::new("stranger.test");
    let cosigned = format!(
        "{note}{}{}",
        stranger.cosign(&note, 1),
        w[1].cosign(&note, 2)
    );
    assert_eq!(cosigners(&parse(&cosigned), &keys).unwrap().len(), 1);
    // A stranger under a known name, with its own key, is not that witness either.
    let impostor = TestWitness::new("w1.test");
    let cosigned = format!("{note}{}", impostor.cosign(&note, 3));
    assert!(cosigners(&parse(&cosigned), &keys).unwrap().is_empty());
}

#[test]
fn checkpoint_rejected_if_a_known_witness_cosignature_is_bad() {
    let (note, w, keys) = setup();
    let other = TestLog::new(FreshnessMode::BestEffort).checkpoint(&leaves(6, false));
    // w2's cosignature of another checkpoint, carried on this one.
    let stolen = w[1].cosign(&other, 5);
    let cosigned = format!("{note}{}{stolen}", w[0].cosign(&note, 4));
    let err = check_quorum(&parse(&cosigned), &keys, 1).unwrap_err();
    assert_eq!(err, "the cosignature of witness w2.test does not verify");
}

#[test]
fn witness_keys_rejected_unless_well_formed() {
    let (_, w, _) = setup();
    let good = w[0].vkey();
    assert!(WitnessKey::parse(&good).is_ok());
    let (name, rest) = good.split_once('+').unwrap();
    let (_, key) = rest.split_once('+').unwrap();
    for (vkey, why) in [
        (format!("{name}+00000000+{key}"), "key hash"),
        (name.to_owned(), "NAME+HASH+KEY"),
        (format!("other.test+{rest}"), "key hash"),
    ] {
        let err = WitnessKey::parse(&vkey).unwrap_err();
        assert!(err.contains(why), "{vkey}: {err}");
    }
    // An Ed25519 note key (type 0x01) is a log's, not a witness's.
    let mut typed = w[0].typed_key();
    typed[0] = 0x01;
    let vkey = format!(
        "{name}+{}+{}",
        hex::encode(key_hint(name, &typed)),
        base64::engine::general_purpose::STANDARD.encode(&typed)
    );
    assert!(
        WitnessKey::parse(&vkey)
            .unwrap_err()
            .contains("cosignature/v1")
    );
}

/// A witness at a loopback address that answers every request with `status` and `body`, then
/// (when `endless`) with more of it for as long as the client reads.
fn serve_witness(status: &'static str, body: String, endless: bool) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.read(&mut [0; 65536]);
            let length = if endless {
                "transfer-encoding: chunked".to_owned()
            } else {
                format!("content-length: {}", body.len())
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\n{length}\r\n\r\n");
            if !endless {
                let _ = stream.write_all(body.as_bytes());
                continue;
            }
            let chunk = format!("{:x}\r\n{body}\r\n", body.len());
            while stream.write_all(chunk.as_bytes()).is_ok() {}
        }
    });
    url
}

fn client_of(witness: &TestWitness, url: String) -> client::WitnessClient {
    let key = WitnessKey::parse(&witness.vkey()).unwrap();
    // The tiles are never read: the witness is asked from size 0, with no proof.
    client::WitnessClient::new(vec![client::Witness { key, url }], 1, "http://127.0.0.1:1").unwrap()
}

fn short_detail(cosigning: client::Cosigning) -> (Vec<String>, String) {
    match cosigning {
        client::Cosigning::Short { refused, detail } => (refused, detail),
        _ => panic!("expected too few cosignatures"),
    }
}

#[tokio::test]
async fn a_witness_answering_without_end_is_cut_off() {
    let (note, w, _) = setup();
    let url = serve_witness("200 OK", "— w1.test AAAA\n".repeat(64), true);
    let (refused, detail) = short_detail(client_of(&w[0], url).cosign(&note).await.unwrap());
    assert!(refused.is_empty());
    assert!(
        detail.contains("answered more than 16384 bytes"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_witness_answering_with_another_keys_cosignature_is_refused() {
    let (note, w, _) = setup();
    let url = serve_witness("200 OK", w[1].cosign(&note, 7), false);
    let (refused, detail) = short_detail(client_of(&w[0], url).cosign(&note).await.unwrap());
    assert_eq!(refused, ["w1.test"]);
    assert!(detail.contains("not its valid cosignature"), "{detail}");
}

#[tokio::test]
async fn a_witness_answering_with_its_cosignature_counts() {
    let (note, w, _) = setup();
    let url = serve_witness("200 OK", w[0].cosign(&note, 8), false);
    match client_of(&w[0], url).cosign(&note).await.unwrap() {
        client::Cosigning::Quorum {
            note: cosigned,
            cosigners,
            ..
        } => {
            assert_eq!(cosigners, ["w1.test"]);
            assert_eq!(cosigned, format!("{note}{}", w[0].cosign(&note, 8)));
        }
        _ => panic!("expected the quorum"),
    }
}

#[tokio::test]
async fn a_witness_past_the_checkpoint_says_so() {
    let (note, w, _) = setup();
    let url = serve_witness("409 Conflict", "9\n".into(), false);
    assert!(matches!(
        client_of(&w[0], url).cosign(&note).await.unwrap(),
        client::Cosigning::Ahead(9)
    ));
}

#[test]
fn a_bundle_keeps_only_the_logs_own_signature_line() {
    let (note, w, keys) = setup();
    let cosigned = format!("{note}{}{}", w[0].cosign(&note, 1), w[1].cosign(&note, 2));
    let origin = parse(&note).origin().to_owned();
    let stripped = log_signatures_only(&cosigned, &origin);
    assert_eq!(stripped, note);
    assert!(cosigners(&parse(&stripped), &keys).unwrap().is_empty());
    // A note that carries none is kept as it is.
    assert_eq!(log_signatures_only(&note, &origin), note);
}
