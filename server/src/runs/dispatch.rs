//! Batched dispatch (issue 19 "Dispatch", issue 20 placement; docs/runs.md "Dispatch"):
//!
//! - **Placement rounds.** Lease polls that arrive while a round runs wait for the next one,
//!   which serves all of them together: the active set is read once, every poll's agent is
//!   placed by one pass ([`schedule::assign`]), and all the leases are one transaction. So
//!   placing N jobs costs O(rounds × active jobs), not O(N × active jobs), and one fsync per
//!   round instead of two per job.
//! - **Finish group commit.** Finish reports that arrive together are written in one
//!   transaction, and their runs' states in a second; each report is acknowledged only after
//!   the transaction holding it committed, so an acknowledged finish survives a SIGKILL.
//!
//! - **The active set between rounds.** A round does not read every pending and running job
//!   from the store: the set read by an earlier round is kept ([`ActiveCache`]) with that
//!   round's leases applied, and each finish batch takes its ended jobs out. Anything else
//!   that may make a job ready (a new run, a retry, a cancel, an approval, an expired lease,
//!   another replica's wake-up) wakes the pollers through `Runs::wake`, which drops the kept
//!   set, and the set is never older than [`ACTIVE_MAX_AGE`]. A kept set can only be behind
//!   the store: a job it shows pending that is not is refused by the conditional lease (the
//!   round then reads the set again), and one it does not show yet waits for the next read.
//!
//! A round runs in a task of its own: a poll or report whose request is dropped (the agent
//! hung up) cannot cut a round short and strand the others' work.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{schedule, supersede_run, RunsError};
use crate::agents::placement::{Candidate, JobNeeds};
use crate::store::{ActiveJob, FinishWrite, JobRow, LeaseWrite, Store, StoreError};
use crate::AppState;

/// How long a kept active set serves placement rounds before it is read again whatever
/// happened (a bound on a change that woke nobody).
pub const ACTIVE_MAX_AGE: Duration = Duration::from_secs(1);

/// The active set kept between placement rounds (see the module's documentation).
#[derive(Default)]
pub(crate) struct ActiveCache {
    kept: Mutex<Kept>,
    /// Bumped by every wake-up that may have made a job ready.
    generation: AtomicU64,
}

#[derive(Default)]
struct Kept {
    /// `None`: read the store at the next round.
    jobs: Option<Vec<ActiveJob>>,
    read_at: Option<Instant>,
    generation: u64,
    /// A round holds the set (rounds are serialized by the lease batcher).
    out: bool,
    /// Jobs that ended while a round held the set.
    ended: HashSet<i64>,
}

impl ActiveCache {
    /// The next round reads the store.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// `jobs` left the active set (a finish batch committed them).
    pub(crate) fn ended(&self, jobs: &[i64]) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = kept.jobs.as_mut() {
            // a finish batch can end many jobs of a large active set: look them up in a set
            let ended: std::collections::HashSet<i64> = jobs.iter().copied().collect();
            set.retain(|j| !ended.contains(&j.job.id));
        } else if kept.out {
            kept.ended.extend(jobs);
        }
    }

    /// The active set for a round: the kept one while it is current, else read from `store`.
    /// Give it back with [`ActiveCache::put_back`].
    async fn take(&self, store: &Store) -> Result<Vec<ActiveJob>, StoreError> {
        let generation = self.generation.load(Ordering::SeqCst);
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.out = true;
            let fresh = kept.generation == generation
                && kept.read_at.is_some_and(|t| t.elapsed() < ACTIVE_MAX_AGE);
            match kept.jobs.take() {
                Some(set) if fresh => return Ok(set),
                _ => kept.ended.clear(),
            }
        }
        let read = store.active_jobs().await;
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if read.is_err() {
            kept.out = false;
        }
        // A wake-up during the read makes the next round read again.
        kept.generation = generation;
        kept.read_at = Some(Instant::now());
        read
    }

    /// Keeps `set` (the round's leases applied) for the next round; `None`: the next round
    /// reads the store.
    fn put_back(&self, set: Option<Vec<ActiveJob>>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.out = false;
        let ended = std::mem::take(&mut kept.ended);
        kept.jobs = set.map(|mut set| {
            if !ended.is_empty() {
                set.retain(|j| !ended.contains(&j.job.id));
            }
            set
        });
    }
}

/// Most leases one poll may ask for (an agent's free slots).
pub const MAX_LEASES_PER_POLL: usize = 64;

/// A queued request and where its result goes.
type Queued<T, R> = (T, oneshot::Sender<Result<R, String>>);

/// An eligibility check of one poll.
type Check<'a> = Box<dyn Fn(&ActiveJob) -> bool + 'a>;

/// Requests that arrive while a batch is served wait for the next batch, which takes all of
/// them: one caller at a time (the turn) serves everything queued.
pub(crate) struct Batcher<T, R> {
    queue: Mutex<Vec<Queued<T, R>>>,
    turn: tokio::sync::Mutex<()>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    pub(crate) fn new() -> Self {
        Batcher {
            queue: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Queues `item` and waits for its result; whoever gets the turn serves the whole queue
    /// with `serve` (one result per item, in order) in a task of its own.
    pub(crate) async fn run<F, Fut>(&self, item: T, serve: F) -> Result<R, RunsError>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<R>, RunsError>> + Send + 'static,
    {
        let (tx, mut rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((item, tx));
        let turn = self.turn.lock().await;
        // Served by the previous turn?
        match rx.try_recv() {
            Ok(result) => return result.map_err(batch_err),
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(batch_err("the batch was interrupted".into()))
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let queued = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let (items, senders): (Vec<T>, Vec<_>) = queued.into_iter().unzip();
        let count = items.len();
        let task = tokio::spawn(serve(items));
        let results: Vec<Result<R, String>> = match task.await {
            Ok(Ok(results)) if results.len() == count => results.into_iter().map(Ok).collect(),
            Ok(Ok(_)) => failed(count, "a batch answered the wrong number of items"),
            Ok(Err(e)) => failed(count, &e.to_string()),
            Err(e) => failed(count, &format!("a batch failed: {e}")),
        };
        for (sender, result) in senders.into_iter().zip(results) {
            let _ = sender.send(result);
        }
        drop(turn);
        match rx.await {
            Ok(result) => result.map_err(batch_err),
            Err(_) => Err(batch_err("the batch was interrupted".into())),
        }
    }
}

fn failed<R>(count: usize, message: &str) -> Vec<Result<R, String>> {
    (0..count).map(|_| Err(message.to_string())).collect()
}

fn batch_err(message: String) -> RunsError {
    RunsError::Store(StoreError::Query(sqlx::Error::Protocol(message)))
}

/// One agent's poll in a placement round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// `None`: the embedded agent.
    pub agent: Option<i64>,
    /// How many jobs it takes at most (its free slots), 1..=[`MAX_LEASES_PER_POLL`].
    pub slots: usize,
}

/// One placement round for `polls` (store level, without building the jobs' descriptions):
/// the polling agents as candidates, the active set read once, one assignment, the leases in
/// one transaction. Per poll, the `(job id, attempt)` it leased. Callers serialize rounds
/// (the lease batcher; the placement benchmark calls it directly).
pub async fn place_round(
    state: &AppState,
    polls: &[Poll],
) -> Result<Vec<Vec<(i64, u32)>>, RunsError> {
    Ok(place(state, polls)
        .await?
        .into_iter()
        .map(|jobs| jobs.into_iter().map(|j| (j.id, j.attempt)).collect())
        .collect())
}

/// [`place_round`] with the leased jobs' rows as the active set holds them, now running with
/// their new attempt (their fixed fields — run, action, dependencies, labels, timeout — are
/// what a lease description needs; nothing else of them is current).
async fn place(state: &AppState, polls: &[Poll]) -> Result<Vec<Vec<JobRow>>, RunsError> {
    let mut out: Vec<Vec<JobRow>> = vec![Vec::new(); polls.len()];
    // The polling agents' labels and pools (docs/agents.md "Placement"); an unknown agent
    // gets nothing.
    let mut candidates: Vec<Option<Candidate>> = Vec::with_capacity(polls.len());
    for p in polls {
        let known = candidates
            .iter()
            .zip(polls)
            .find(|(_, q)| q.agent == p.agent)
            .map(|(c, _)| c.clone());
        candidates.push(match known {
            Some(c) => c,
            None => crate::agents::eligibility::candidate(state, p.agent).await?,
        });
    }
    let mut free: Vec<usize> = polls
        .iter()
        .zip(&candidates)
        .map(|(p, c)| {
            if c.is_some() {
                p.slots.min(MAX_LEASES_PER_POLL)
            } else {
                0
            }
        })
        .collect();
    let runs = state.runs();
    // A lease that finds its job taken (another replica, a cancel) re-reads the active set;
    // bounded so a round always ends.
    for _ in 0..8 {
        if free.iter().all(|f| *f == 0) {
            break;
        }
        let mut active = runs.active.take(state.store()).await?;
        let assignment = assign(&active, &candidates, &free);
        if !assignment.supersede.is_empty() {
            runs.active.put_back(None);
            for run_id in &assignment.supersede {
                supersede_run(state, *run_id).await?;
            }
            continue;
        }
        if assignment.leases.is_empty() {
            runs.active.put_back(Some(active));
            break;
        }
        let leased: std::collections::HashSet<i64> =
            assignment.leases.iter().map(|(_, job)| *job).collect();
        // where each leased job is in the set
        let at: std::collections::HashMap<i64, usize> = active
            .iter()
            .enumerate()
            .filter(|(_, j)| leased.contains(&j.job.id))
            .map(|(i, j)| (j.job.id, i))
            .collect();
        let run_of = |job: i64| at.get(&job).map_or(0, |i| active[*i].job.run_id);
        let batch: Vec<LeaseWrite> = assignment
            .leases
            .iter()
            .map(|(w, job)| LeaseWrite {
                job_id: *job,
                run_id: run_of(*job),
                agent: polls[*w].agent,
            })
            .collect();
        let now = runs.clock.now_ms();
        let expires = now + i64::try_from(runs.config.lease.as_millis()).unwrap_or(i64::MAX);
        let attempts = match state.store().lease_jobs(&batch, now, expires).await {
            Ok(a) => a,
            Err(e) => {
                runs.active.put_back(None);
                return Err(e.into());
            }
        };
        let mut taken = false;
        for ((w, job), attempt) in assignment.leases.iter().zip(attempts) {
            match (attempt, at.get(job)) {
                (Some(a), Some(i)) => {
                    let row = &mut active[*i].job;
                    row.state = cove_api::JobState::Running;
                    row.attempt = a;
                    out[*w].push(row.clone());
                    free[*w] -= 1;
                }
                _ => taken = true,
            }
        }
        // Another replica or a cancel got there first: the set is behind the store.
        runs.active.put_back((!taken).then_some(active));
        if out.iter().any(|o| !o.is_empty()) {
            runs.wake_kept();
        }
        if !taken {
            break;
        }
    }
    Ok(out)
}

/// The round's decisions: each candidate (`None`: an unknown agent, which gets nothing) with
/// its free slots.
fn assign(
    active: &[ActiveJob],
    candidates: &[Option<Candidate>],
    free: &[usize],
) -> schedule::Assignment {
    let checks: Vec<Check<'_>> = candidates
        .iter()
        .map(|c| -> Check<'_> {
            match c {
                Some(me) => Box::new(move |j: &ActiveJob| {
                    me.may_run(JobNeeds {
                        repo_id: j.repo_id,
                        owner: &j.repo_owner,
                        labels: &j.job.labels,
                    })
                }),
                None => Box::new(|_: &ActiveJob| false),
            }
        })
        .collect();
    let wants: Vec<schedule::Want<'_>> = checks
        .iter()
        .zip(free)
        .map(|(check, slots)| schedule::Want {
            slots: *slots,
            eligible: check.as_ref(),
        })
        .collect();
    schedule::assign(active, &wants)
}

/// Leases up to `slots` jobs for `agent` in the next placement round.
pub(super) async fn lease_jobs(
    state: &AppState,
    agent: Option<i64>,
    slots: usize,
) -> Result<Vec<JobRow>, RunsError> {
    let poll = Poll {
        agent,
        slots: slots.clamp(1, MAX_LEASES_PER_POLL),
    };
    let st = state.clone();
    state
        .runs()
        .lease_batcher
        .run(poll, move |polls| async move { place(&st, &polls).await })
        .await
}

/// One finish report's write plus its run (settled after the batch commits).
pub(super) struct FinishItem {
    pub write: FinishWrite,
    pub run_id: i64,
}

/// Writes a finish report together with the others that arrived meanwhile; whether it ended
/// its attempt. Returns after the transaction holding it committed and its run was settled.
pub(super) async fn finish_write(state: &AppState, item: FinishItem) -> Result<bool, RunsError> {
    let st = state.clone();
    state
        .runs()
        .finish_batcher
        .run(item, move |items| async move {
            let writes: Vec<FinishWrite> = items.iter().map(|i| i.write.clone()).collect();
            let ended = st.store().finish_jobs(&writes).await?;
            let gone: Vec<i64> = items
                .iter()
                .zip(&ended)
                .filter(|(_, e)| **e)
                .map(|(i, _)| i.write.job_id)
                .collect();
            st.runs().active.ended(&gone);
            let runs: Vec<i64> = items
                .iter()
                .zip(&ended)
                .filter(|(_, e)| **e)
                .map(|(i, _)| i.run_id)
                .collect();
            for (i, e) in items.iter().zip(&ended) {
                if *e {
                    tracing::info!(
                        job = i.write.job_id,
                        attempt = i.write.attempt,
                        state = i.write.to.as_str(),
                        "job finished"
                    );
                }
            }
            super::state::settle_runs(&st, &runs).await?;
            Ok(ended)
        })
        .await
}
