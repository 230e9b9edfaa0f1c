use super::*;

fn intent(n: u8) -> LedgerEvent {
    LedgerEvent::Intent(Intent {
        subject: sha256_id(&[n]),
        predicate_type: "https://tcdist.dev/release/v1".into(),
        spiffe_id: "spiffe://tcdist.test/distd/signer".into(),
        certificate: sha256_id(b"leaf"),
        payload: sha256_id(&[n, 1]),
        signature: sha256_id(&[n, 2]),
    })
}

fn logged(intent: u64) -> LedgerEvent {
    LedgerEvent::Logged(Logged {
        intent,
        log: "rekor.tcdist.test".into(),
        log_index: 7,
        leaf_hash: "00".repeat(32),
    })
}

/// A ledger of `events`, as its writer appends them.
fn ledger_of(events: Vec<LedgerEvent>) -> Vec<u8> {
    let mut head = LedgerHead::empty();
    let mut text = Vec::new();
    for event in events {
        let (record, line) = next_line(&head, jiff::Timestamp::UNIX_EPOCH, None, event);
        head = LedgerHead {
            records: record.seq + 1,
            head: sha256_id(&line),
        };
        text.extend_from_slice(&line);
        text.push(b'\n');
    }
    text
}

fn lines(text: &[u8]) -> Vec<String> {
    String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn ledger_as_appended_checks_and_its_head_is_the_last_line() {
    let text = ledger_of(vec![intent(1), logged(0), intent(2)]);
    let checked = check(&text).unwrap();
    assert_eq!(checked.records.len(), 3);
    let last = lines(&text).pop().unwrap();
    assert_eq!(checked.head().head, sha256_id(last.as_bytes()));
    assert!(check(b"").unwrap().records.is_empty());
}

#[test]
fn ledger_rejected_if_a_record_was_edited() {
    let mut l = lines(&ledger_of(vec![intent(1), logged(0), intent(2)]));
    l[1] = l[1].replace("\"log_index\":7", "\"log_index\":8");
    let err = check(&joined(&l)).err().unwrap();
    assert!(err.starts_with("line 3:"), "{err}");
}

#[test]
fn ledger_rejected_if_a_record_was_dropped() {
    let mut l = lines(&ledger_of(vec![intent(1), intent(2), intent(3)]));
    l.remove(1);
    let err = check(&joined(&l)).err().unwrap();
    assert!(err.starts_with("line 2: sequence 2"), "{err}");
}

#[test]
fn ledger_rejected_if_the_last_line_is_cut_short() {
    let mut text = ledger_of(vec![intent(1)]);
    text.pop();
    assert!(check(&text).err().unwrap().contains("cut short"));
}

#[test]
fn ledger_rejected_if_logged_names_no_earlier_intent() {
    let text = ledger_of(vec![intent(1), logged(1)]);
    assert!(
        check(&text)
            .err()
            .unwrap()
            .contains("not an earlier intent")
    );
    let text = ledger_of(vec![intent(1), logged(0), logged(1)]);
    assert!(check(&text).err().unwrap().starts_with("line 3:"));
}

#[test]
fn ledger_extends_only_a_head_it_holds() {
    let short = check(&ledger_of(vec![intent(1), intent(2)])).unwrap();
    let long = check(&ledger_of(vec![intent(1), intent(2), intent(3)])).unwrap();
    let other = check(&ledger_of(vec![intent(1), intent(9), intent(3)])).unwrap();
    assert!(long.extends(&short.head()));
    assert!(long.extends(&LedgerHead::empty()));
    assert!(!other.extends(&short.head()));
    assert!(!short.extends(&long.head()));
}
