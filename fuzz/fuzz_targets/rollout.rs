//! Rollout statements (the in-toto statement a rollout's bundle carries) and the stage lists
//! operators write: the statement's parser, then the checks a verifier runs on its plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_oci::attachments::rollout::{RolloutStatement, Share, Stage, parse_stages};

fuzz_target!(|data: &[u8]| {
    if let Ok((statement, _)) = RolloutStatement::parse_statement(data) {
        let predicate = &statement.predicate;
        if predicate.check().is_ok() {
            let _ = predicate.current_stage().to_string();
            let _ = predicate.plan.digest();
            let _ = predicate.plan.judged_stages();
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(stages) = parse_stages(text) {
        let _ = stages.iter().map(Stage::soak).count();
    }
    let _ = text.parse::<Share>();
});
