use axum::http::StatusCode;

use super::*;

/// The refusal `result` must be, as a 400's reason.
fn bad_request<T>(result: Result<T, Failure>) -> String {
    match result {
        Ok(_) => panic!("accepted"),
        Err(Failure(status, reason)) => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}");
            reason
        }
    }
}

fn start_request(share: Option<&str>, stages: &[&str]) -> RolloutStartRequest {
    RolloutStartRequest {
        release: format!("sha256:{}", "ab".repeat(32)),
        channel: "stable".to_owned(),
        share: share.map(str::to_owned),
        stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        expires: None,
    }
}

#[test]
fn start_takes_a_share_or_stages_and_expires_in_15m_by_default() {
    let Ok((stages, expires_in)) = start_of(&start_request(Some("5%"), &[])) else {
        panic!("refused");
    };
    let shares: Vec<String> = stages.iter().map(|s| s.share.to_string()).collect();
    assert_eq!(shares, ["5%", "100%"]);
    assert_eq!(expires_in, SignedDuration::from_mins(15));
    let mut request = start_request(None, &["5%:30m:400:20", " 25%", "100%"]);
    request.expires = Some("1h".to_owned());
    let Ok((stages, expires_in)) = start_of(&request) else {
        panic!("refused");
    };
    assert_eq!(stages[0].to_string(), "5%:30m:400:20");
    assert_eq!(stages.len(), 3);
    assert_eq!(expires_in, SignedDuration::from_hours(1));
}

#[test]
fn start_rejected_if_share_is_bad() {
    let reason = bad_request(start_of(&start_request(Some("5"), &[])));
    assert!(
        reason.starts_with("share: \"5\" is not a share"),
        "{reason}"
    );
    let reason = bad_request(start_of(&start_request(Some("0%"), &[])));
    assert!(reason.contains("from 0.01% to 100%"), "{reason}");
}

#[test]
fn start_rejected_if_stages_are_bad_missing_or_do_not_grow() {
    let reason = bad_request(start_of(&start_request(None, &["5%:1x", "100%"])));
    assert!(reason.starts_with("stages: stage \"5%:1x\""), "{reason}");
    let reason = bad_request(start_of(&start_request(None, &[])));
    assert!(reason.contains("give a first share"), "{reason}");
    let reason = bad_request(start_of(&start_request(None, &["25%", "5%"])));
    assert!(reason.contains("must grow: 25% then 5%"), "{reason}");
    let reason = bad_request(start_of(&start_request(Some("10%"), &["5%", "100%"])));
    assert!(reason.contains("10% is not the first"), "{reason}");
}

#[test]
fn start_rejected_if_expiry_is_not_a_positive_duration() {
    for expires in ["soon", "-5m", "0s"] {
        let mut request = start_request(Some("5%"), &[]);
        request.expires = Some(expires.to_owned());
        let reason = bad_request(start_of(&request));
        assert!(reason.starts_with("expires: "), "{reason}");
    }
}

fn move_request(share: Option<&str>, reason: Option<&str>) -> RolloutMoveRequest {
    RolloutMoveRequest {
        share: share.map(str::to_owned),
        reason: reason.map(str::to_owned),
    }
}

#[test]
fn moves_take_what_they_need() {
    let Ok(Move::Advance { share: None }) = move_of(Verb::Advance, move_request(None, None)) else {
        panic!("an advance to the next stage was refused");
    };
    let Ok(Move::Advance { share: Some(share) }) =
        move_of(Verb::Advance, move_request(Some("50%"), None))
    else {
        panic!("an advance to 50% was refused");
    };
    assert_eq!(share.to_string(), "50%");
    let Ok(Move::Abort { reason }) = move_of(Verb::Abort, move_request(None, Some("bad"))) else {
        panic!("an abort with a reason was refused");
    };
    assert_eq!(reason, "bad");
}

#[test]
fn halt_and_abort_rejected_without_a_reason_or_with_a_share() {
    for verb in [Verb::Halt, Verb::Abort] {
        for reason in [None, Some(""), Some(" \t")] {
            let reason = bad_request(move_of(verb, move_request(None, reason)));
            assert!(reason.contains("needs a reason"), "{reason}");
        }
        let reason = bad_request(move_of(verb, move_request(Some("5%"), Some("why"))));
        assert!(reason.contains("takes no share"), "{reason}");
    }
}

#[test]
fn advance_rejected_with_a_bad_share_or_a_reason() {
    let reason = bad_request(move_of(Verb::Advance, move_request(Some("half"), None)));
    assert!(reason.starts_with("share: \"half\""), "{reason}");
    let reason = bad_request(move_of(Verb::Advance, move_request(None, Some("why"))));
    assert!(reason.contains("takes no reason"), "{reason}");
}

#[test]
fn channel_rejected_if_the_line_does_not_feed_it() {
    let channels = ["stable".to_owned(), "beta".to_owned()];
    assert!(check_channel("go1.26", &channels, "beta").is_ok());
    let reason = bad_request(check_channel("go1.26", &channels, "edge"));
    assert_eq!(
        reason,
        r#"line "go1.26" feeds the channels ["stable", "beta"], not "edge""#
    );
}
