//! What a job sends the build-host agent on its socket: request lines, framed and parsed as
//! the agent reads them (at most 64 KiB a line, one JSON request each), until the stream ends
//! or a line is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcverify::agent::protocol::{Request, receive};

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    futures::executor::block_on(async {
        while let Ok(Some(request)) = receive::<Request>(&mut stream).await {
            let _ = request.command();
        }
    });
});
