//! The store budget as the agent keeps it (`store_max_bytes`): after every install and every
//! prefetch round, the least recently used entries go until the store fits, except
//!
//! - the releases the prefetched references name (the newest round's, both arms of a rollout,
//!   and what the newest pull under each reference installed, which survives a restart);
//! - the releases of jobs served a pull that have not reported yet (`served.rs`): in use;
//! - for one outcome window after the agent started, the entries used before it started (their
//!   jobs may still be running, and the agent no longer knows them);
//! - the `store_keep_last_used` most recently used, and any entry a pull holds (the store).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;

use super::server::Agent;
use tcdist_core::digest::Digest;
use tcdist_core::platform::Platform;
use tcdist_store::EntryRecord;
use tcdist_store::budget::{BudgetReport, StoreBudget};

pub struct BudgetKeeper {
    budget: StoreBudget,
    due: Notify,
    started: SystemTime,
}

impl BudgetKeeper {
    pub fn new(budget: StoreBudget) -> Self {
        Self {
            budget,
            due: Notify::new(),
            started: SystemTime::now(),
        }
    }

    /// Asks for a collection; requests made while one runs make one more, not one each.
    pub fn due(&self) {
        self.due.notify_one();
    }

    /// Collects once at the start, then whenever due, until the agent stops.
    pub async fn run(agent: Arc<Agent>) {
        let Some(keeper) = agent.budget_keeper() else {
            return;
        };
        keeper.due();
        loop {
            keeper.due.notified().await;
            let collecting = Arc::clone(&agent);
            // Removing a tree of thousands of files is blocking work.
            let _ = tokio::task::spawn_blocking(move || collect(&collecting)).await;
        }
    }
}

/// What must stay, whatever the budget.
struct Kept {
    in_use: HashSet<Digest>,
    remembered: HashSet<(Digest, Platform)>,
    /// Entries last used in `[from, started)` are kept: used before this agent started,
    /// within one outcome window of now.
    used_before_start: Option<(SystemTime, SystemTime)>,
}

fn collect(agent: &Agent) {
    let Some(keeper) = agent.budget_keeper() else {
        return;
    };
    let store = agent.store();
    let now = SystemTime::now();
    let window_start = now.checked_sub(agent.served().window());
    let kept = Kept {
        in_use: agent.served().in_use(),
        remembered: agent.prefetch_remembered(),
        used_before_start: window_start
            .filter(|start| *start < keeper.started)
            .map(|start| (start, keeper.started)),
    };
    let keep = |record: &EntryRecord| {
        let used_before_start = kept.used_before_start.is_some_and(|(from, to)| {
            let used = store.last_used(record);
            used >= from && used < to
        });
        kept.in_use.contains(&record.index_digest)
            || agent
                .prefetched()
                .names(&record.index_digest, &record.platform)
            || kept
                .remembered
                .contains(&(record.index_digest.clone(), record.platform.clone()))
            || used_before_start
    };
    match store.collect(&keeper.budget, &keep) {
        Ok(report) => count(agent, &keeper.budget, &report),
        Err(e) => eprintln!("tcverify agent: store budget: collecting failed: {e}"),
    }
}

/// The budget's metrics, then its log lines (so a line seen means its figures are out).
fn count(agent: &Agent, budget: &StoreBudget, report: &BudgetReport) {
    let metrics = agent.metrics();
    let over = report.over(budget);
    for removed in &report.removed {
        metrics.add("tcdist_agent_store_collected_total", &[], 1.0);
        metrics.add(
            "tcdist_agent_store_collected_bytes_total",
            &[],
            removed.bytes as f64,
        );
    }
    metrics.set("tcdist_agent_store_bytes", &[], report.kept_bytes as f64);
    metrics.set(
        "tcdist_agent_store_budget_bytes",
        &[],
        budget.max_bytes as f64,
    );
    metrics.set(
        "tcdist_agent_store_over_budget",
        &[],
        if over { 1.0 } else { 0.0 },
    );
    for removed in &report.removed {
        eprintln!(
            "tcverify agent: store budget: removed {} ({} bytes)",
            removed.entry.display(),
            removed.bytes
        );
    }
    if over {
        eprintln!(
            "tcverify agent: store budget: the entries kept take {} bytes, over the budget of \
             {} (in use, named by prefetch, the last used{})",
            report.kept_bytes,
            budget.max_bytes,
            if report.busy.is_empty() {
                ""
            } else {
                ", or being pulled"
            }
        );
    }
}
