//! The publisher's ledger as the monitor and `distd ledger verify` read it (a file, or the
//! daemon's answer to `GET /v1/ledger`): JSON lines chained by hash; whatever checks is then
//! asked for its head, whether it extends itself, and each record's intent.
#![no_main]

use distd_api::ledger::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ledger) = check(data) {
        let head = ledger.head();
        assert!(ledger.extends(&head));
        for record in &ledger.records {
            let _ = ledger.intent(record.seq);
        }
    }
});
