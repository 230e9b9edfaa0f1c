//! The agent's wire protocol on its unix socket: the client sends one request as a JSON line,
//! the agent answers with progress lines and then one final line. A request names only what
//! to pull and for which platform (plus, for `env`, the job's GOEXPERIMENT and PATH, which
//! shape the answer but not what is trusted); everything else is the agent's own.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

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
}

impl Request {
    /// The command's name, as metrics label it.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Pull { .. } => "pull",
            Request::Verify { .. } => "verify",
            Request::Env { .. } => "env",
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
