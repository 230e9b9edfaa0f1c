//! Job outcomes as build hosts send them to the daemon (`POST /v1/outcomes`): a batch of
//! records, each checked by its types (job IDs, pipelines, digests, times).
#![no_main]

use distd_api::outcome::OutcomeRecord;
use distd_api::wire::OutcomeBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = serde_json::from_slice::<OutcomeBatch>(data) {
        let _ = serde_json::to_vec(&batch);
    }
    if let Ok(record) = serde_json::from_slice::<OutcomeRecord>(data) {
        let _ = (record.arm.to_string(), record.result.to_string());
    }
});
