//! The agent's wire protocol on its unix socket: the client sends one request as a JSON line,
//! the agent answers with progress lines and then one final line. A request names only what
//! to pull and for which platform (plus, for `env`, the job's GOEXPERIMENT and PATH, which
//! shape the answer but not what is trusted; for `pull`, optionally the job it is for); a
//! `report` names a job and how it ended. Everything else is the agent's own: what a job was
//! served is the agent's record of its pull, never the job's word.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::outcome::JobAttempt;
use distd_api::outcome::PipelineName;
use tcdist_core::error::Error;

/// Requests and answers are small; a longer line is not one of ours.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Pull {
        reference: String,
        platform: String,
        json: bool,
        /// The job the pull is for: the agent records what it serves it, for the job's report.
        /// Absent from older clients' requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<JobAttempt>,
    },
    Verify {
        reference: String,
        platform: String,
        json: bool,
    },
    Env {
        reference: String,
        platform: String,
        /// `sh` or `json`.
        format: String,
        goexperiment: String,
        path: String,
    },
    /// How a job the agent served ended.
    Report {
        job: JobAttempt,
        pipeline: PipelineName,
        /// The job's exit status (negative: its command was killed by a signal).
        exit_status: i32,
        cancelled: bool,
        /// Leave a job the agent is not waiting on alone (exit 0) instead of refusing it.
        if_served: bool,
        json: bool,
    },
}

impl Request {
    /// The command's name, as metrics label it.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Pull { .. } => "pull",
            Request::Verify { .. } => "verify",
            Request::Env { .. } => "env",
            Request::Report { .. } => "report",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Reply {
    /// A step began (what direct mode prints as progress).
    Progress(String),
    /// Success: what to print on stdout, and warnings for stderr.
    Done {
        stdout: String,
        warnings: Vec<String>,
    },
    /// Failure, as direct mode reports it: exit code, message, hint.
    Failed {
        exit: u8,
        message: String,
        hint: Option<String>,
    },
}

impl Reply {
    pub fn failed(error: &Error) -> Self {
        Reply::Failed {
            exit: error.exit_code(),
            message: error.to_string(),
            hint: error.hint(),
        }
    }
}

/// Writes one message as a line. The message is serialised before the returned future, so
/// the future borrows only the writer.
pub fn send<'w>(
    writer: &'w mut (impl AsyncWrite + Unpin),
    message: &impl Serialize,
) -> impl Future<Output = std::io::Result<()>> + 'w {
    let line = serde_json::to_vec(message).map(|mut line| {
        line.push(b'\n');
        line
    });
    async move {
        writer.write_all(&line?).await?;
        writer.flush().await
    }
}

/// Reads one message line (at most [`MAX_MESSAGE`] bytes); `None` at the end of the stream.
pub async fn receive<T: serde::de::DeserializeOwned>(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    let n = tokio::io::AsyncReadExt::take(&mut *reader, MAX_MESSAGE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            if n > MAX_MESSAGE {
                format!("a message over {MAX_MESSAGE} bytes")
            } else {
                "a message cut short".to_owned()
            },
        ));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_line(line: &[u8]) -> std::io::Result<Option<Request>> {
        receive(&mut tokio::io::BufReader::new(line)).await
    }

    #[tokio::test]
    async fn pull_carries_an_optional_job_and_older_lines_still_parse() {
        let old =
            br#"{"command":"pull","reference":"r/t:stable","platform":"linux/amd64","json":false}
"#;
        let Some(Request::Pull { job, .. }) = read_line(old).await.unwrap() else {
            panic!("not a pull");
        };
        assert_eq!(job, None);
        let new = br#"{"command":"pull","reference":"r/t:stable","platform":"linux/amd64","json":false,"job":{"id":"0190b3a4-7c1e","retry":2}}
"#;
        let Some(Request::Pull { job: Some(job), .. }) = read_line(new).await.unwrap() else {
            panic!("no job");
        };
        assert_eq!((job.id.as_str(), job.retry), ("0190b3a4-7c1e", 2));
        // A request without a job is written without the field, so older agents take it.
        let request = Request::Pull {
            reference: "r/t:stable".into(),
            platform: "linux/amd64".into(),
            json: false,
            job: None,
        };
        assert!(!serde_json::to_string(&request).unwrap().contains("job"));
    }

    #[tokio::test]
    async fn report_refused_if_a_name_is_hostile_or_a_field_is_extra() {
        let line = |job_id: &str, pipeline: &str, extra: &str| {
            format!(
                "{{\"command\":\"report\",\"job\":{{\"id\":{}}},\"pipeline\":{},\"exit_status\":-1,\"cancelled\":true,\"if_served\":false,\"json\":false{extra}}}\n",
                serde_json::to_string(job_id).unwrap(),
                serde_json::to_string(pipeline).unwrap()
            )
        };
        let Some(Request::Report {
            job,
            pipeline,
            exit_status,
            cancelled,
            ..
        }) = read_line(line("j-1", "app", "").as_bytes()).await.unwrap()
        else {
            panic!("not a report");
        };
        assert_eq!((job.id.as_str(), job.retry), ("j-1", 0));
        assert_eq!(
            (pipeline.as_str(), exit_status, cancelled),
            ("app", -1, true)
        );
        for (job_id, pipeline, extra, want) in [
            ("j\n2", "app", "", "printable ASCII"),
            ("j-1", "app\u{1b}[31m", "", "printable ASCII"),
            ("j-1", "\u{0}", "", "printable ASCII"),
            (&*"j".repeat(256), "app", "", "at most 255 bytes"),
            ("j-1", &*"p".repeat(256), "", "at most 255 bytes"),
            ("", "app", "", "must not be empty"),
            (
                "j-1",
                "app",
                ",\"arm\":\"candidate\"",
                "unknown field `arm`",
            ),
            (
                "j-1",
                "app",
                ",\"release\":\"sha256:00\"",
                "unknown field `release`",
            ),
        ] {
            let err = read_line(line(job_id, pipeline, extra).as_bytes())
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{job_id:?} {pipeline:?} {extra}: {err}"
            );
        }
        // A line longer than a message is refused before it is parsed.
        let long = line(&"j".repeat(MAX_MESSAGE), "app", "");
        let err = read_line(long.as_bytes()).await.unwrap_err();
        assert!(err.to_string().contains("over 65536 bytes"), "{err}");
    }

    #[test]
    fn request_refused_if_it_names_a_host_id() {
        // A job cannot choose its arm in a rollout: no request field carries a host ID.
        for line in [
            r#"{"command":"pull","reference":"r/t:stable","platform":"linux/amd64","json":false,"host_id":"h"}"#,
            r#"{"command":"verify","reference":"r/t:stable","platform":"linux/amd64","json":false,"host_id":"h"}"#,
        ] {
            let err = serde_json::from_str::<Request>(line).unwrap_err();
            assert!(err.to_string().contains("unknown field `host_id`"), "{err}");
        }
        let line =
            r#"{"command":"pull","reference":"r/t:stable","platform":"linux/amd64","json":false}"#;
        assert_eq!(
            serde_json::from_str::<Request>(line).unwrap().command(),
            "pull"
        );
    }
}
