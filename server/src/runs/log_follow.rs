//! Followed job logs: lines are pushed to followers as they are stored, with no polling
//! interval on the path.
//!
//! [`LogHub`] keeps one broadcast channel per followed job. [`super::append_logs`] stores a
//! batch first (a line is stored before it is acknowledged) and then publishes the stored lines
//! to that job's channel. A follower ([`follow`]) subscribes before it reads the store, so
//! every line is either in its first read or on its channel (both: skipped by `seq`). The
//! store stays the truth: a follower re-reads it whenever the channel cannot prove it has
//! every line —
//! - it fell behind by more than [`CHANNEL_BATCHES`] batches (a slow reader: the channel
//!   says it lagged, and the follower catches up from the store, never dropping lines),
//! - a batch does not continue right after the last line it sent (another attempt, lines
//!   dropped by the log cap, or batches published out of order by concurrent requests),
//! - the engine reports progress (a job changed state, or another replica stored lines),
//! - nothing arrived for [`RECHECK`] (a safety net, not the path of lines).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cove_api::{JobLogLine, JobState};
use futures_util::Stream;
use tokio::sync::broadcast;

use crate::AppState;

/// Batches a follower may fall behind before it catches up from the store.
pub const CHANNEL_BATCHES: usize = 64;

/// Longest wait between two store checks when neither lines nor progress arrived.
pub const RECHECK: Duration = Duration::from_secs(30);

type Batch = Arc<[JobLogLine]>;

/// One broadcast channel per job that has followers.
#[derive(Default)]
pub struct LogHub {
    jobs: Mutex<HashMap<i64, broadcast::Sender<Batch>>>,
}

impl LogHub {
    /// Hands stored `lines` of `job` to its followers (none: nothing to do).
    pub fn publish(&self, job: i64, lines: &[JobLogLine]) {
        if lines.is_empty() {
            return;
        }
        let mut jobs = lock(&self.jobs);
        if let Some(tx) = jobs.get(&job) {
            if tx.receiver_count() == 0 {
                jobs.remove(&job);
            } else {
                let _ = tx.send(Arc::from(lines));
            }
        }
    }

    fn subscribe(&self, job: i64) -> broadcast::Receiver<Batch> {
        lock(&self.jobs)
            .entry(job)
            .or_insert_with(|| broadcast::channel(CHANNEL_BATCHES).0)
            .subscribe()
    }

    fn unsubscribe(&self, job: i64) {
        let mut jobs = lock(&self.jobs);
        if jobs.get(&job).is_some_and(|tx| tx.receiver_count() == 0) {
            jobs.remove(&job);
        }
    }

    /// Jobs with a channel (for tests: a follower that ended leaves none behind).
    pub fn channels(&self) -> usize {
        lock(&self.jobs).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A subscription that removes its job's channel when it was the last one.
struct Subscription {
    state: AppState,
    job: i64,
    rx: Option<broadcast::Receiver<Batch>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.state.log_hub().unsubscribe(self.job);
    }
}

/// What a follower receives.
#[derive(Debug)]
pub enum Followed {
    /// Lines in `seq` order, each once, none skipped.
    Lines(Vec<JobLogLine>),
    /// The job has ended (its state; `None` when it no longer exists) and every line was sent.
    End(Option<JobState>),
    /// The store failed; the stream ends.
    Error(String),
}

/// The lines of `job` after `after` (all when `None`), then those stored later as they are
/// stored, in batches of at most `page` lines read from the store; ends with
/// [`Followed::End`] once the job has ended and every line was sent.
pub fn follow(
    state: AppState,
    job: i64,
    after: Option<u64>,
    page: i64,
) -> impl Stream<Item = Followed> + Send + 'static {
    struct F {
        sub: Subscription,
        after: Option<u64>,
        /// Read the store before waiting: it may hold lines the channel did not bring.
        reread: bool,
        done: bool,
    }
    let rx = state.log_hub().subscribe(job);
    let start = F {
        sub: Subscription {
            state,
            job,
            rx: Some(rx),
        },
        after,
        reread: true,
        done: false,
    };
    futures_util::stream::unfold(start, move |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            let st = f.sub.state.clone();
            let progress = st.runs().progress().notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if f.reread {
                // The state before the lines: lines stored before the end are then seen.
                let ended = match st.store().job(job).await {
                    Ok(None) => Some(None),
                    Ok(Some(j)) => j.state.is_terminal().then_some(Some(j.state)),
                    Err(e) => {
                        f.done = true;
                        return Some((Followed::Error(e.to_string()), f));
                    }
                };
                let lines = match st.store().job_logs(job, f.after, page).await {
                    Ok(lines) => lines,
                    Err(e) => {
                        f.done = true;
                        return Some((Followed::Error(e.to_string()), f));
                    }
                };
                if let Some(last) = lines.last() {
                    f.after = Some(last.seq);
                    return Some((Followed::Lines(lines), f));
                }
                if let Some(s) = ended {
                    f.done = true;
                    return Some((Followed::End(s), f));
                }
                f.reread = false;
            }
            let rx = f.sub.rx.as_mut()?;
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(batch) => {
                        let fresh: Vec<JobLogLine> = batch
                            .iter()
                            .filter(|l| f.after.is_none_or(|a| l.seq > a))
                            .cloned()
                            .collect();
                        let Some(first) = fresh.first() else { continue };
                        let next = f.after.and_then(|a| a.checked_add(1));
                        if next == Some(first.seq) && contiguous(&fresh) {
                            f.after = fresh.last().map(|l| l.seq);
                            return Some((Followed::Lines(fresh), f));
                        }
                        f.reread = true;
                    }
                    // fell behind, or the channel went away: the store has every line
                    Err(_) => f.reread = true,
                },
                () = &mut progress => f.reread = true,
                () = tokio::time::sleep(RECHECK) => f.reread = true,
            }
        }
    })
}

fn contiguous(lines: &[JobLogLine]) -> bool {
    lines
        .windows(2)
        .all(|w| w[0].seq.checked_add(1) == Some(w[1].seq))
}
