//! A prebuild on this agent (docs/prebuilds.md): the pod made from the devfile of one commit,
//! the sources cloned, the devfile's default `build` command run (and the postStart events
//! when the devfile marks them prebuild-safe), every component committed to a snapshot image
//! ([`Runtime::snapshot`]), then the pod removed — whether the prebuild succeeded or not.

use cove_api::agent::{EnvSource, PrebuiltImage};

use crate::commands::{run_command, run_event, CommandRun};
use crate::environment::{self, Progress};
use crate::pod::{PodSpec, Runtime};

/// Largest prebuild log kept: 1 MiB (the rest is dropped with a note, as job logs).
pub const MAX_LOG_BYTES: usize = 1 << 20;

/// A bounded log.
#[derive(Default)]
pub struct Log {
    text: String,
    dropped: usize,
}

impl Log {
    pub fn line(&mut self, line: &str) {
        if self.text.len() + line.len() + 1 > MAX_LOG_BYTES {
            self.dropped += line.len() + 1;
            return;
        }
        self.text.push_str(line);
        if !line.ends_with('\n') {
            self.text.push('\n');
        }
    }

    fn runs(&mut self, what: &str, runs: &[CommandRun]) {
        for r in runs {
            self.line(&format!("{what} {} (exit {}):", r.id, r.exit_code));
            self.line(&r.output);
        }
    }

    pub fn finish(mut self) -> String {
        if self.dropped > 0 {
            let note = format!(
                "[cove: log cut at {MAX_LOG_BYTES} bytes; {} bytes dropped]\n",
                self.dropped
            );
            self.text.push_str(&note);
        }
        self.text
    }
}

/// What a prebuild asks for.
pub struct Request<'a> {
    pub spec: PodSpec,
    pub source: &'a EnvSource,
    pub build: Option<&'a str>,
    pub post_start: bool,
    pub sha: &'a str,
    pub image_repo: &'a str,
    pub labels: &'a [(String, String)],
}

/// Runs the prebuild; the pod is removed in every case, and no image is left on failure.
pub async fn run(rt: &Runtime, req: Request<'_>) -> (Result<Vec<PrebuiltImage>, String>, String) {
    let mut log = Log::default();
    let result = steps(rt, &req, &mut log).await;
    if let Err(e) = rt.delete(&req.spec.env_id).await {
        log.line(&format!("removing the prebuild's pod failed: {e}"));
    }
    match &result {
        Ok(_) => log.line("prebuild succeeded"),
        Err(e) => log.line(&format!("prebuild failed: {e}")),
    }
    (result, log.finish())
}

async fn steps(
    rt: &Runtime,
    req: &Request<'_>,
    log: &mut Log,
) -> Result<Vec<PrebuiltImage>, String> {
    let env = req.spec.env_id.as_str();
    // postStart runs after the build, and only when marked prebuild-safe
    let mut spec = req.spec.clone();
    let post_start = std::mem::take(&mut spec.plan.events.post_start);
    let mut lines = Vec::new();
    let mut progress = |p: Progress| {
        lines.push(match p {
            Progress::CreatingContainers => "creating containers".to_string(),
            Progress::Cloning { repo } => format!("cloning {repo}"),
            Progress::Dotfiles => "installing dotfiles".into(),
            Progress::PostStart { command } => format!("postStart: {command}"),
            Progress::Running => "containers running".into(),
        })
    };
    let created = environment::create(rt, &spec, Some(req.source), None, &mut progress).await;
    for l in lines {
        log.line(&l);
    }
    let started = created.map_err(|e| e.to_string())?;
    check_head(rt, &spec, req).await?;
    log.line(&format!("sources at {}", req.sha));
    for p in &started.projects {
        log.line(&format!("project {}: {} {}", p.name, p.outcome, p.detail));
    }
    if let Some(id) = req.build {
        log.line(&format!("build: {id}"));
        let runs = run_command(rt, env, &spec.plan, id)
            .await
            .map_err(|e| e.to_string())?;
        log.runs("build", &runs);
        if let Some(bad) = runs.iter().find(|r| !r.succeeded()) {
            return Err(format!(
                "the build command `{}` exited with {}",
                bad.id, bad.exit_code
            ));
        }
    }
    if req.post_start && !post_start.is_empty() {
        let runs = run_event(rt, env, &spec.plan, &post_start)
            .await
            .map_err(|e| e.to_string())?;
        log.runs("postStart", &runs);
        if let Some(bad) = runs.iter().find(|r| !r.succeeded()) {
            return Err(format!(
                "the postStart command `{}` exited with {}",
                bad.id, bad.exit_code
            ));
        }
    }
    log.line(&format!("snapshot into {}", req.image_repo));
    let images = rt
        .snapshot(env, &spec.plan, req.image_repo, req.labels)
        .await
        .map_err(|e| e.to_string())?;
    for (component, image) in &images {
        log.line(&format!("  {component}: {image}"));
    }
    Ok(images
        .into_iter()
        .map(|(component, image)| PrebuiltImage { component, image })
        .collect())
}

/// The clone's branch head is `req.sha` (read from the loose ref a fresh checkout writes, so
/// the image needs no git).
async fn check_head(rt: &Runtime, spec: &PodSpec, req: &Request<'_>) -> Result<(), String> {
    let (Some(main), Some(root)) = (
        spec.plan.main_container(),
        spec.plan
            .main_container()
            .and_then(|m| m.source_mapping.clone()),
    ) else {
        return Err("the devfile has no container with the sources mounted".into());
    };
    let git = format!("{}/{}/.git", root.trim_end_matches('/'), req.source.repo);
    let branch = req.source.branch.as_str();
    let head = rt
        .read_file(
            &spec.env_id,
            &main.name,
            &format!("{git}/refs/heads/{branch}"),
            4096,
        )
        .await
        .map_err(|e| e.to_string())?;
    match head.as_deref().map(str::trim) {
        Some(h) if h == req.sha => Ok(()),
        Some(h) => Err(format!(
            "the branch moved during the prebuild (at {h}, expected {}); a newer prebuild follows",
            req.sha
        )),
        None => Err(format!("cannot read the cloned head of {branch}")),
    }
}
