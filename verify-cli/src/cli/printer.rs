//! Progress on stderr: bars on a terminal, nothing otherwise (errors are printed by `exit_with`).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tcdist_core::Digest;
use tcdist_store::report::Reporter;

pub struct Progress {
    multi: MultiProgress,
    bars: Mutex<Vec<ProgressBar>>,
}

impl Progress {
    /// A reporter that draws only when stderr is a terminal.
    pub fn for_stderr() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(Vec::new()),
        }
    }
}

impl Reporter for Progress {
    fn step(&self, message: &str) {
        let _ = self.multi.println(message);
    }

    fn layer_started(&self, digest: &Digest, size: u64) -> usize {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(digest.hex()[..12].to_owned());
        let mut bars = self.bars.lock().expect("progress lock");
        bars.push(bar);
        bars.len() - 1
    }

    fn layer_progress(&self, id: usize, bytes: u64) {
        if let Some(bar) = self.bars.lock().expect("progress lock").get(id) {
            bar.inc(bytes);
        }
    }

    fn layer_finished(&self, id: usize) {
        if let Some(bar) = self.bars.lock().expect("progress lock").get(id) {
            bar.finish();
        }
    }
}
