//! The per-job log cap: past `max_job_log_bytes` (default 16 MiB) of text in one attempt of a
//! job (a retried attempt starts afresh, its lines are numbered from its own base), one visible marker
//! line replaces the first line that does not fit and later lines are dropped (counted in
//! `cove_job_log_lines_dropped_total`). The running total lives in memory and is re-read from
//! the store after a restart (or when the table of tracked jobs is full), so the cap holds
//! across restarts; a resent line (sequence number already seen) passes through unchanged and
//! uncounted, because the store ignores it.

use std::collections::HashMap;
use std::sync::Mutex;

use cove_api::{JobLogLine, LogStreamKind};

use crate::store::StoreError;
use crate::AppState;

/// Jobs tracked at once; when full the table is emptied and re-read from the store as needed.
const MAX_TRACKED_JOBS: usize = 4096;

/// The text of the marker line.
pub fn marker(cap: u64) -> String {
    format!(
        "[cove] log truncated: this job's log reached the server's limit of {} bytes \
         (max_job_log_bytes); later output is dropped",
        cap
    )
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    bytes: u64,
    max_seq: i64,
    /// Sequence number of the marker: lines from it on are dropped.
    truncated_at: Option<i64>,
}

/// Per-job log usage.
#[derive(Default)]
pub struct LogCaps {
    jobs: Mutex<HashMap<(i64, u32), Usage>>,
}

impl LogCaps {
    fn get(&self, key: (i64, u32)) -> Option<Usage> {
        lock(&self.jobs).get(&key).copied()
    }

    fn put(&self, key: (i64, u32), usage: Usage) {
        let mut jobs = lock(&self.jobs);
        if jobs.len() >= MAX_TRACKED_JOBS && !jobs.contains_key(&key) {
            jobs.clear();
        }
        jobs.insert(key, usage);
    }
}

/// The lines of `lines` (attempt `attempt`) to store for `job_id` under the cap (see the
/// module doc).
pub async fn admit(
    state: &AppState,
    job_id: i64,
    attempt: u32,
    lines: &[JobLogLine],
) -> Result<Vec<JobLogLine>, StoreError> {
    let cap = state.limits().max_job_log_bytes;
    let caps = state.log_caps();
    let key = (job_id, attempt);
    let mut usage = match caps.get(key) {
        Some(usage) => usage,
        None => {
            let base =
                |a: u32| i64::try_from(cove_agent::job_worker::seq_base(a)).unwrap_or(i64::MAX);
            let seqs = base(attempt)..base(attempt.saturating_add(1)).max(base(attempt) + 1);
            let (bytes, max_seq) = state.store().job_log_usage(job_id, seqs).await?;
            Usage {
                bytes,
                max_seq,
                truncated_at: (bytes >= cap).then_some(max_seq),
            }
        }
    };
    let mut kept = Vec::with_capacity(lines.len());
    let mut dropped = 0u64;
    for line in lines {
        let seq = i64::try_from(line.seq).unwrap_or(i64::MAX);
        if usage.truncated_at.is_some_and(|at| seq >= at) {
            // Past the marker (or a resend of a line dropped there): dropped again.
            if seq > usage.max_seq {
                usage.max_seq = seq;
                dropped += 1;
            }
            continue;
        }
        if seq <= usage.max_seq {
            // A resend (or a late line): the store keeps the first copy; not counted again.
            kept.push(line.clone());
            continue;
        }
        usage.max_seq = seq;
        let len = line.text.len() as u64;
        if usage.bytes.saturating_add(len) > cap {
            usage.truncated_at = Some(seq);
            dropped += 1;
            kept.push(JobLogLine {
                seq: line.seq,
                stream: LogStreamKind::System,
                ts: line.ts,
                text: marker(cap),
            });
        } else {
            usage.bytes += len;
            kept.push(line.clone());
        }
    }
    caps.put(key, usage);
    if dropped > 0 {
        state.metrics().log_lines_dropped(dropped);
    }
    Ok(kept)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
