//! The audit log's hash chain. Record n (counting from 1) carries `"seq": n` and `"prev"`: the
//! SHA-256 of line n-1 exactly as written, without its newline; record 1's `prev` is
//! [`GENESIS`]. `verify` walks a log and names the first line where the chain breaks. Removing
//! the newest records leaves a shorter chain that is still whole: it is found only against a
//! head seen earlier (`--head`).

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use tcdist_core::digest::Digest;

/// The `prev` of the first record.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// No record tcverify writes comes near this; a longer line is not one of ours.
const MAX_LINE: usize = 1 << 20;

/// Appends `record` with its link to the chain. The file's exclusive lock is held from reading
/// the last record to writing this one, so concurrent writers extend one chain.
pub fn append(path: &Path, record: &impl Serialize) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.lock()?;
    let (seq, prev) = last_link(&mut file)?;
    let mut value = serde_json::to_value(record)?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| std::io::Error::other("an audit record is not a JSON object"))?;
    object.insert("seq".into(), (seq + 1).into());
    object.insert("prev".into(), prev.into());
    let mut line = serde_json::to_vec(&value)?;
    line.push(b'\n');
    // One write on an O_APPEND file: a reader never sees half a record from a live writer.
    file.write_all(&line)
}

/// The last record's sequence number and the digest of its line.
fn last_link(file: &mut File) -> std::io::Result<(u64, String)> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, GENESIS.to_owned()));
    }
    let tail_len = len.min(MAX_LINE as u64 + 1);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0; tail_len as usize];
    file.read_exact(&mut tail)?;
    let restart = "; move the file aside to start a new chain";
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Err(std::io::Error::other(format!(
            "it ends with an incomplete record (a write was cut short){restart}"
        )));
    };
    let start = match body.iter().rposition(|&b| b == b'\n') {
        Some(newline) => newline + 1,
        None if tail_len == len => 0,
        None => {
            return Err(std::io::Error::other(format!(
                "its last line is over {MAX_LINE} bytes{restart}"
            )));
        }
    };
    let last = &body[start..];
    let seq = serde_json::from_slice::<serde_json::Value>(last)
        .ok()
        .and_then(|record| record.get("seq").and_then(serde_json::Value::as_u64))
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "its last record has no sequence number (not a chained audit log){restart}"
            ))
        })?;
    Ok((seq, Digest::of(last).to_string()))
}

/// A whole chain: how many records, and the digest of the last line (the head to keep for a
/// later `--head` check).
#[derive(Debug, Serialize)]
pub struct ChainSummary {
    pub records: u64,
    pub head: String,
}

/// Where and why a chain breaks.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug)]
pub enum VerifyError {
    Broken(ChainBreak),
    Read(std::io::Error),
}

/// Walks a log from its first line. With `head`, that digest (a head seen earlier) must be one
/// of the log's lines: a log cut back to before it has lost records.
pub fn verify(mut reader: impl BufRead, head: Option<&str>) -> Result<ChainSummary, VerifyError> {
    let broken = |line: u64, reason: String| VerifyError::Broken(ChainBreak { line, reason });
    let mut prev = GENESIS.to_owned();
    let mut records = 0u64;
    let mut head_seen = head.is_none();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(VerifyError::Read)?;
        if n == 0 {
            break;
        }
        let number = records + 1;
        let Some(body) = line.strip_suffix(b"\n") else {
            return Err(broken(
                number,
                if n > MAX_LINE {
                    format!("the line is over {MAX_LINE} bytes")
                } else {
                    "the last record is incomplete (no newline)".into()
                },
            ));
        };
        let record: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| broken(number, format!("not a JSON record: {e}")))?;
        match record.get("seq").and_then(serde_json::Value::as_u64) {
            Some(seq) if seq == number => {}
            Some(seq) => {
                return Err(broken(
                    number,
                    format!("seq is {seq}, expected {number}: a record was removed or inserted"),
                ));
            }
            None => return Err(broken(number, "no seq".into())),
        }
        match record.get("prev").and_then(serde_json::Value::as_str) {
            Some(link) if link == prev => {}
            Some(link) => {
                return Err(broken(
                    number,
                    format!(
                        "prev is {link}, but the line before hashes to {prev}: the record \
                         before it was edited, or this one was put in its place"
                    ),
                ));
            }
            None => return Err(broken(number, "no prev".into())),
        }
        prev = Digest::of(body).to_string();
        head_seen |= head == Some(prev.as_str());
        records = number;
    }
    if !head_seen {
        return Err(broken(
            records + 1,
            format!(
                "the head {} seen earlier is not in the log: records were removed from its \
                 end, or the log was replaced",
                head.unwrap_or_default()
            ),
        ));
    }
    Ok(ChainSummary {
        records,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(records: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for n in 0..records {
            append(&path, &serde_json::json!({"decision": "accept", "n": n})).unwrap();
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn check(text: &str, head: Option<&str>) -> Result<ChainSummary, ChainBreak> {
        verify(text.as_bytes(), head).map_err(|e| match e {
            VerifyError::Broken(b) => b,
            VerifyError::Read(e) => panic!("{e}"),
        })
    }

    #[test]
    fn appended_records_form_a_chain_from_genesis() {
        let (_dir, path) = log_of(3);
        let lines = lines(&path);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev"], GENESIS);
        let summary = check(&(lines.join("\n") + "\n"), None).unwrap();
        assert_eq!(summary.records, 3);
        assert_eq!(summary.head, Digest::of(lines[2].as_bytes()).to_string());
    }

    #[test]
    fn edited_record_breaks_the_chain_at_the_next_line() {
        let (_dir, path) = log_of(3);
        let mut lines = lines(&path);
        lines[1] = lines[1].replace("accept", "reject");
        let err = check(&(lines.join("\n") + "\n"), None).unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.reason.contains("was edited"), "{err:?}");
    }

    #[test]
    fn removed_or_inserted_record_is_found() {
        let (_dir, path) = log_of(3);
        let lines = lines(&path);
        let removed = format!("{}\n{}\n", lines[0], lines[2]);
        assert_eq!(check(&removed, None).unwrap_err().line, 2);
        let inserted = format!("{}\n{}\n{}\n", lines[0], lines[0], lines[1]);
        assert_eq!(check(&inserted, None).unwrap_err().line, 2);
    }

    #[test]
    fn removed_tail_is_found_only_against_an_earlier_head() {
        let (_dir, path) = log_of(3);
        let lines = lines(&path);
        let head = Digest::of(lines[2].as_bytes()).to_string();
        let cut = format!("{}\n{}\n", lines[0], lines[1]);
        assert!(check(&cut, None).is_ok());
        let err = check(&cut, Some(&head)).unwrap_err();
        assert!(err.reason.contains("not in the log"), "{err:?}");
        assert!(check(&(lines.join("\n") + "\n"), Some(&head)).is_ok());
    }

    #[test]
    fn append_refuses_to_extend_a_log_it_cannot_link_to() {
        let (_dir, path) = log_of(1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"cut\": ")
            .unwrap();
        let err = append(&path, &serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("incomplete record"), "{err}");
        std::fs::write(&path, "{\"old\": true}\n").unwrap();
        let err = append(&path, &serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("no sequence number"), "{err}");
    }

    #[test]
    fn concurrent_appends_extend_one_chain() {
        let (_dir, path) = log_of(0);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let path = &path;
                scope.spawn(move || {
                    for n in 0..25 {
                        append(path, &serde_json::json!({"t": t, "n": n})).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(check(&text, None).unwrap().records, 100);
    }
}
