//! One job's commands run in its container: steps or buildspec phases with their semantics,
//! masked output, cancel and timeout, variables, artifacts and reports collected.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::engine::{Downloaded, JobEngine, Running};
use crate::mask::{LogSink, MaskSet, MaskedOutput};

use super::*;

pub(super) struct Runner<'a> {
    pub(super) engine: &'a dyn JobEngine,
    pub(super) job: &'a JobSpec,
    pub(super) secrets: Arc<MaskSet>,
    pub(super) cancel: &'a CancellationToken,
    pub(super) deadline: tokio::time::Instant,
    pub(super) interrupted: Option<Interrupt>,
    /// Set while a stopped phase's `finally` runs: its own deadline, and
    /// cancellation is ignored.
    pub(super) cleanup_until: Option<tokio::time::Instant>,
    pub(super) first_started: Option<Instant>,
    /// Commands started so far.
    pub(super) commands: usize,
    pub(super) last_started: Instant,
    /// Masked output of the running command (bounded), for RETRY regexes.
    pub(super) tail: String,
}

/// The outcome of one command.
pub(super) enum Ran {
    Exit(i64),
    /// Stopped by cancel, timeout or the cleanup budget.
    Interrupted,
    /// Not started: the job was already stopped.
    NotStarted,
}

impl Runner<'_> {
    pub(super) fn io(&self) -> impl FnOnce(std::io::Error) -> JobError {
        let job = self.job.job_id.clone();
        move |source| JobError::Io { job, source }
    }

    /// Every command in execution-file order.
    pub(super) fn all_commands(&self) -> Vec<&str> {
        match &self.job.script {
            Script::Steps(s) => s.iter().map(String::as_str).collect(),
            Script::Phases(p) => p
                .iter()
                .flat_map(|p| p.commands.iter().chain(&p.finally))
                .map(String::as_str)
                .collect(),
        }
    }

    pub(super) fn workdir(&self) -> String {
        match (&self.job.source, self.job.inputs.first()) {
            (Source::None, Some(a)) => format!("{ARTIFACTS_DIR}/{}", a.name),
            _ => SRC_DIR.to_string(),
        }
    }

    pub(super) async fn upload(&self, path: &str, tar: impl Into<Tar>) -> Result<(), JobError> {
        self.engine.upload(path, tar.into()).await
    }

    pub(super) async fn run(
        &mut self,
        sink: &mut LogSink,
        source: Option<Tar>,
    ) -> Result<JobResult, JobError> {
        let mut boot = script::Bootstrap::new().map_err(self.io())?;
        for a in &self.job.inputs {
            boot.dir(&format!("cove/artifacts/{}", a.name), 0o755)
                .map_err(self.io())?;
        }
        boot.file(
            "cove/state/pwd",
            format!("{}\n", self.workdir()).as_bytes(),
            0o644,
        )
        .map_err(self.io())?;
        for (n, c) in self.all_commands().into_iter().enumerate() {
            boot.command(n, c).map_err(self.io())?;
        }
        self.upload("/", boot.finish().map_err(self.io())?).await?;
        if !self.job.files.is_empty() {
            let mut files = script::Bootstrap::empty();
            for f in &self.job.files {
                files
                    .file(f.path.trim_start_matches('/'), &f.contents, f.mode)
                    .map_err(self.io())?;
            }
            self.upload("/", files.finish().map_err(self.io())?).await?;
        }
        if let Some(src) = source {
            self.upload(SRC_DIR, src).await?;
        }
        for a in &self.job.inputs {
            self.upload(&format!("{ARTIFACTS_DIR}/{}", a.name), a.tar.clone())
                .await?;
        }
        // cache hits: entries are relative to `/`, so each path comes back where it was
        let mut restored = Vec::new();
        for c in &self.job.caches {
            if let Some(tar) = &c.restore {
                self.upload("/", tar.clone()).await?;
                restored.push(c.name.clone());
            }
        }
        self.engine.start().await?;

        let mut out = MaskedOutput::new(sink, &self.secrets);
        let mut result = JobResult {
            status: JobStatus::Succeeded,
            commands: Vec::new(),
            phases: Vec::new(),
            variables: BTreeMap::new(),
            artifacts: Vec::new(),
            error: None,
            retry: false,
            timings: JobTimings::default(),
        };
        for name in &restored {
            out.system(&format!("[cove] cache {name} restored")).await;
        }
        let failed = match self.job.script.clone() {
            Script::Steps(steps) => self.run_steps(&steps, &mut out, &mut result).await?,
            Script::Phases(phases) => self.run_phases(&phases, &mut out, &mut result).await?,
        };
        result.status = match (self.interrupted, failed) {
            (Some(Interrupt::Cancelled), _) => JobStatus::Cancelled,
            (Some(Interrupt::TimedOut), _) => JobStatus::TimedOut,
            (None, true) => JobStatus::Failed,
            (None, false) => JobStatus::Succeeded,
        };
        if self.interrupted.is_none() {
            // artifact upload is attempted even after a failed build (§2.2)
            result.variables = self.exported_variables().await?;
            // an exported value leaves the private network like a log line
            for (name, value) in result.variables.iter_mut() {
                let masked = self.secrets.mask_str(value);
                if masked != *value {
                    out.system(&format!(
                        "[cove] exported variable {name} contains a secret; it is exported masked"
                    ))
                    .await;
                    *value = masked;
                }
            }
            if result.status == JobStatus::Succeeded {
                for c in &self.job.caches {
                    match cache::save(self.engine, c).await {
                        Ok(Some(a)) => {
                            out.system(&format!(
                                "[cove] cache {} saved ({} files)",
                                c.name,
                                a.files.len()
                            ))
                            .await;
                            result.artifacts.push(a);
                        }
                        Ok(None) => {
                            out.system(&format!(
                                "[cove] cache {}: none of its paths exists; not saved",
                                c.name
                            ))
                            .await;
                        }
                        Err(e) => out.system(&format!("[cove] cache {}: {e}", c.name)).await,
                    }
                }
            }
            match self.collect_artifacts().await {
                Ok(a) => {
                    let caches = std::mem::replace(&mut result.artifacts, a);
                    result.artifacts.extend(caches);
                }
                Err(Collect::Docker(e)) => return Err(e),
                Err(Collect::Artifact(e)) => {
                    out.system(&format!("[cove] {e}")).await;
                    result.error = Some(e.to_string());
                    result.status = JobStatus::Failed;
                }
            }
        }
        let summary = match result.status {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::TimedOut => "timed out",
        };
        out.system(&format!("[cove] job {summary}")).await;
        Ok(result)
    }

    pub(super) async fn run_steps(
        &mut self,
        steps: &[String],
        out: &mut MaskedOutput<'_>,
        result: &mut JobResult,
    ) -> Result<bool, JobError> {
        for (n, step) in steps.iter().enumerate() {
            match self.run_command(n, step, &BTreeMap::new(), out).await? {
                Ran::Exit(code) => {
                    result
                        .commands
                        .push(self.record(None, false, step, Some(code)));
                    if code != 0 {
                        return Ok(true);
                    }
                }
                Ran::Interrupted => {
                    result.commands.push(self.record(None, false, step, None));
                    return Ok(true);
                }
                Ran::NotStarted => return Ok(true),
            }
        }
        Ok(false)
    }

    pub(super) fn record(
        &self,
        phase: Option<PhaseName>,
        finally: bool,
        command: &str,
        exit_code: Option<i64>,
    ) -> CommandRecord {
        CommandRecord {
            phase,
            finally,
            command: command.to_string(),
            exit_code,
            millis: self.last_started.elapsed().as_millis() as u64,
        }
    }

    /// The buildspec phase machine (rule 3). Returns whether the job failed.
    pub(super) async fn run_phases(
        &mut self,
        phases: &[Phase],
        out: &mut MaskedOutput<'_>,
        result: &mut JobResult,
    ) -> Result<bool, JobError> {
        let mut n = 0usize;
        let mut job_failed = false;
        let mut stop = false;
        for phase in phases {
            let first = n;
            n += phase.commands.len() + phase.finally.len();
            if stop || self.interrupted.is_some() {
                result.phases.push(PhaseRecord {
                    name: phase.name,
                    status: PhaseStatus::Skipped,
                });
                continue;
            }
            out.system(&format!("[cove] phase {}", phase.name.key()))
                .await;
            let overrides = BTreeMap::from([
                ("CODEBUILD_SRC_DIR".to_string(), SRC_DIR.to_string()),
                (
                    "CODEBUILD_BUILD_SUCCEEDING".to_string(),
                    if job_failed { "0" } else { "1" }.to_string(),
                ),
            ]);
            let mut phase_failed = false;
            let mut output = String::new();
            let lists = [
                (false, &phase.commands, first),
                (true, &phase.finally, first + phase.commands.len()),
            ];
            for (finally, list, base) in lists {
                if self.interrupted.is_some() {
                    if !finally || list.is_empty() {
                        break;
                    }
                    // rule 10: a stopped phase's `finally` still runs, within a budget
                    out.system(&format!(
                        "[cove] phase {} finally (cleanup, at most {:?})",
                        phase.name.key(),
                        self.job.cleanup_budget
                    ))
                    .await;
                    self.cleanup_until =
                        Some(tokio::time::Instant::now() + self.job.cleanup_budget);
                } else if finally && !list.is_empty() {
                    out.system(&format!("[cove] phase {} finally", phase.name.key()))
                        .await;
                }
                for (i, command) in list.iter().enumerate() {
                    let ran = self.run_command(base + i, command, &overrides, out).await?;
                    output.push_str(&self.tail);
                    let code = match ran {
                        Ran::Exit(c) => Some(c),
                        Ran::Interrupted => None,
                        Ran::NotStarted => {
                            phase_failed = true;
                            break;
                        }
                    };
                    result
                        .commands
                        .push(self.record(Some(phase.name), finally, command, code));
                    if code != Some(0) {
                        phase_failed = true;
                        break;
                    }
                }
            }
            self.cleanup_until = None;
            let status = if self.interrupted.is_some() {
                PhaseStatus::Stopped
            } else if phase_failed {
                PhaseStatus::Failed
            } else {
                PhaseStatus::Succeeded
            };
            result.phases.push(PhaseRecord {
                name: phase.name,
                status,
            });
            if !phase_failed {
                continue;
            }
            job_failed = true;
            match &phase.on_failure {
                Some(OnFailure::Abort) => stop = true,
                Some(OnFailure::Continue) => {}
                Some(OnFailure::Retry { count, regex }) => {
                    stop = true;
                    let matches = match regex {
                        None => true,
                        Some(r) => match regex::Regex::new(r) {
                            Ok(re) => re.is_match(&output),
                            Err(e) => {
                                out.system(&format!(
                                    "[cove] on-failure RETRY regex `{r}` is invalid: {e}"
                                ))
                                .await;
                                false
                            }
                        },
                    };
                    result.retry = matches && self.job.attempt <= count.unwrap_or(3);
                }
                // CodeBuild's transitions: install/pre_build failures skip
                // the rest, a failed build still runs post_build
                None => stop = matches!(phase.name, PhaseName::Install | PhaseName::PreBuild),
            }
        }
        Ok(job_failed)
    }

    /// Run command file `n` and stream its output.
    pub(super) async fn run_command(
        &mut self,
        n: usize,
        command: &str,
        overrides: &BTreeMap<String, String>,
        out: &mut MaskedOutput<'_>,
    ) -> Result<Ran, JobError> {
        let first_line = command.lines().next().unwrap_or("");
        let shown = if command.lines().nth(1).is_some() {
            format!("{first_line} …")
        } else {
            first_line.to_string()
        };
        let cleanup = self.cleanup_until;
        if self.interrupted.is_none() {
            if self.cancel.is_cancelled() {
                self.interrupted = Some(Interrupt::Cancelled);
            } else if tokio::time::Instant::now() >= self.deadline {
                self.interrupted = Some(Interrupt::TimedOut);
            }
        }
        let stop_at = cleanup.unwrap_or(self.deadline);
        if (self.interrupted.is_some() && cleanup.is_none())
            || tokio::time::Instant::now() >= stop_at
        {
            return Ok(Ran::NotStarted);
        }
        out.system(&format!("[cove] $ {shown}")).await;
        self.last_started = Instant::now();
        let first = self.commands == 0;
        self.commands += 1;
        self.tail.clear();
        let mut env: Vec<String> = Vec::new();
        if first {
            env.extend(self.builtin_env());
            env.extend(self.job.env.iter().map(|(k, v)| format!("{k}={v}")));
            if !self.engine.secrets_in_container() {
                env.extend(self.job.secrets.iter().map(|(k, v)| format!("{k}={v}")));
            }
        }
        let cmd = script::command_line(&self.job.shell, n, first, overrides);
        let Running {
            mut output,
            exit,
            keep,
        } = self.engine.exec(cmd, env, self.workdir()).await?;
        if self.first_started.is_none() {
            self.first_started = Some(Instant::now());
        }
        let mut interrupted: Option<Interrupt> = None;
        let mut grace_until: Option<tokio::time::Instant> = None;
        let mut give_up: Option<tokio::time::Instant> = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            tokio::select! {
                chunk = output.next() => match chunk {
                    None => break,
                    Some(Ok((stream, bytes))) => {
                        self.keep_tail(&bytes);
                        out.write(stream, &bytes).await;
                    }
                    Some(Err(e)) => {
                        if interrupted.is_some() {
                            break;
                        }
                        return Err(e);
                    }
                },
                _ = self.cancel.cancelled(), if interrupted.is_none() && cleanup.is_none() => {
                    interrupted = Some(Interrupt::Cancelled);
                    out.system("[cove] cancelled: sending SIGTERM").await;
                    self.signal("TERM").await;
                    grace_until = Some(tokio::time::Instant::now() + self.job.grace);
                }
                _ = tokio::time::sleep_until(stop_at), if interrupted.is_none() => {
                    interrupted = Some(Interrupt::TimedOut);
                    let why = if cleanup.is_some() {
                        format!("the cleanup budget of {:?} is spent", self.job.cleanup_budget)
                    } else {
                        format!("timed out after {:?}", self.job.timeout)
                    };
                    out.system(&format!("[cove] {why}: sending SIGTERM")).await;
                    self.signal("TERM").await;
                    grace_until = Some(tokio::time::Instant::now() + self.job.grace);
                }
                _ = tokio::time::sleep_until(grace_until.unwrap_or(far)), if grace_until.is_some() => {
                    grace_until = None;
                    out.system("[cove] still running after the grace period: sending SIGKILL").await;
                    self.signal("KILL").await;
                    give_up = Some(tokio::time::Instant::now() + AFTER_KILL);
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or(far)), if give_up.is_some() => break,
            }
        }
        out.finish().await;
        if interrupted.is_some() {
            // the first interruption decides the job's status
            self.interrupted = self.interrupted.or(interrupted);
            return Ok(Ran::Interrupted);
        }
        let code = exit.await?;
        drop(keep);
        tracing::debug!(job = %self.job.job_id, command = n, exit_code = code, millis = self.last_started.elapsed().as_millis() as u64, "command finished");
        if code != 0 {
            out.system(&format!("[cove] exit status {code}")).await;
        }
        Ok(Ran::Exit(code))
    }

    pub(super) fn keep_tail(&mut self, bytes: &[u8]) {
        if self.tail.len() < TAIL_BYTES {
            self.tail.push_str(&String::from_utf8_lossy(bytes));
        }
    }

    pub(super) fn builtin_env(&self) -> Vec<String> {
        let mut env = Vec::new();
        if !matches!(self.job.source, Source::None) {
            env.push(format!("CATALYST_SOURCE_DIR_WorkflowSource={SRC_DIR}"));
        }
        env.push(format!("CATALYST_DEFAULT_DIR={}", self.workdir()));
        for a in &self.job.inputs {
            env.push(format!(
                "CATALYST_SOURCE_DIR_{}={ARTIFACTS_DIR}/{}",
                a.name, a.name
            ));
        }
        env
    }

    /// Signal the running command's process group (best effort: the
    /// container is removed at the end anyway).
    pub(super) async fn signal(&self, sig: &str) {
        let script = format!(
            "p=$(cat {pid} 2>/dev/null) && [ -n \"$p\" ] && kill -{sig} -\"$p\"",
            pid = script::PID_FILE
        );
        match self.engine.capture(&["/bin/sh", "-c", &script]).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(job = %self.job.job_id, signal = sig, %error, "signalling the step failed")
            }
        }
    }

    pub(super) async fn exported_variables(&self) -> Result<BTreeMap<String, String>, JobError> {
        if self.job.exported_variables.is_empty() || self.commands == 0 {
            return Ok(BTreeMap::new());
        }
        let dump = self.engine.capture(&["cat", script::ENV0_FILE]).await?;
        let env = script::parse_env(&dump);
        Ok(self
            .job
            .exported_variables
            .iter()
            .filter_map(|k| env.get(k).map(|v| (k.clone(), v.clone())))
            .collect())
    }

    pub(super) async fn collect_artifacts(&self) -> Result<Vec<OutputArtifact>, Collect> {
        if self.job.outputs.is_empty() {
            return Ok(Vec::new());
        }
        for spec in &self.job.outputs {
            spec.validate().map_err(Collect::Artifact)?;
        }
        // spool the tree to a temporary file: a source tree can be large
        let spool = tempfile::tempfile().map_err(|e| Collect::Docker(self.io()(e)))?;
        let mut file = tokio::fs::File::from_std(spool);
        let got = self
            .engine
            .download(SRC_DIR, &mut file, u64::MAX)
            .await
            .map_err(Collect::Docker)?;
        if got == Downloaded::NotFound {
            // the job removed its own source directory
            return Err(Collect::Artifact(ArtifactError::Io {
                artifact: self.job.outputs[0].name.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{SRC_DIR} no longer exists"),
                ),
            }));
        }
        file.flush()
            .await
            .map_err(|e| Collect::Docker(self.io()(e)))?;
        let mut tree = file.into_std().await;
        let specs = self.job.outputs.clone();
        let job = self.job.job_id.clone();
        tokio::task::spawn_blocking(move || {
            specs
                .iter()
                .map(|spec| {
                    tree.seek(SeekFrom::Start(0)).map_err(|source| {
                        Collect::Docker(JobError::Io {
                            job: job.clone(),
                            source,
                        })
                    })?;
                    collect(spec, std::io::BufReader::new(&tree), Some("src"))
                        .map_err(Collect::Artifact)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            Err(Collect::Docker(JobError::Io {
                job: self.job.job_id.clone(),
                source: std::io::Error::other(e),
            }))
        })
    }
}

pub(super) enum Collect {
    Docker(JobError),
    Artifact(ArtifactError),
}
