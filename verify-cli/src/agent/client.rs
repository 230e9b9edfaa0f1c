//! The client's side: send one request, show its progress, and return what to print, so a
//! command through the agent prints exactly what it prints in direct mode.

use std::path::Path;

use tokio::io::BufReader;
use tokio::net::UnixStream;

use super::protocol::{Reply, Request, receive, send};
use tcdist_core::error::{Error, Result};
use tcdist_store::report::Reporter;

/// The agent's answer to `request`: stdout and warnings, or its error (exit code and hint
/// included).
pub async fn ask(
    socket: &Path,
    request: &Request,
    reporter: &dyn Reporter,
) -> Result<(String, Vec<String>)> {
    let unavailable = |what: String| Error::Agent {
        exit: 3,
        message: format!("the agent at {}: {what}", socket.display()),
        hint: Some(
            "is the agent running, and may this user connect to its socket? (systemctl status \
             tcverify-agent; the socket's group)"
                .into(),
        ),
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
    let (read, mut write) = stream.into_split();
    send(&mut write, request)
        .await
        .map_err(|e| unavailable(format!("sending the request failed: {e}")))?;
    let mut read = BufReader::new(read);
    loop {
        let reply = receive::<Reply>(&mut read)
            .await
            .map_err(|e| unavailable(format!("unreadable answer: {e}")))?;
        match reply {
            Some(Reply::Progress(step)) => reporter.step(&step),
            Some(Reply::Done { stdout, warnings }) => return Ok((stdout, warnings)),
            Some(Reply::Failed {
                exit,
                message,
                hint,
            }) => {
                return Err(Error::Agent {
                    exit,
                    message,
                    hint,
                });
            }
            None => {
                return Err(unavailable(
                    "it closed the connection without an answer".into(),
                ));
            }
        }
    }
}
