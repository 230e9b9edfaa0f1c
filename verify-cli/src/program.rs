//! What both binaries do before their command runs: read the command line and start the async
//! runtime, failing with the exit codes DESIGN.md gives rather than a panic.

use std::process::ExitCode;

/// The parsed command line, or the exit code after clap printed help, a version or a usage
/// error (clap's own codes: 0 for help, 2 for usage errors).
pub fn parse_args<C: clap::Parser>() -> Result<C, ExitCode> {
    C::try_parse().map_err(|err| {
        let _ = err.print();
        ExitCode::from(err.exit_code() as u8)
    })
}

/// The multi-threaded runtime; when it cannot start (no threads, no file descriptors), a message
/// naming `program` and exit 4, the code for a local resource failure.
pub fn start_runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: error: cannot start the async runtime: {e}");
            ExitCode::from(4)
        })
}
