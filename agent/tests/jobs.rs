//! Jobs on the real Docker engine (start it with scripts/test-env.sh; the
//! tests fail, never skip, when no engine answers): step state carry-over,
//! the buildspec phase machine, artifacts, exported variables, secrets in
//! the log, cancel and timeout.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use cove_agent::jobs::{
    run_job, ArtifactSpec, CancellationToken, JobError, JobResult, JobSpec, JobStatus, OnFailure,
    Phase, PhaseName, PhaseStatus, Script, Source, LABEL_JOB,
};
use cove_agent::mask::{LogLine, LogSink, LogStream};
use cove_agent::Runtime;

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

async fn docker() -> Docker {
    Runtime::connect()
        .await
        .expect(
            "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
        )
        .docker()
        .clone()
}

/// Run a job, collecting its log; asserts the container is gone afterwards.
async fn run(job: &JobSpec, cancel: CancellationToken) -> (JobResult, Vec<LogLine>) {
    let docker = docker().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l);
        }
        lines
    });
    let mut sink = LogSink::new(tx);
    let result = run_job(&docker, job, &mut sink, &cancel).await.unwrap();
    drop(sink);
    let lines = collector.await.unwrap();
    assert_no_container(&docker, &job.job_id).await;
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.seq, i as u64, "sequence numbers are gap-free");
    }
    (result, lines)
}

async fn assert_no_container(docker: &Docker, job: &str) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_JOB}={job}")])]);
    let left = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(left.is_empty(), "job container left behind: {left:?}");
}

fn output(lines: &[LogLine]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.stream != LogStream::System)
        .map(|l| l.text.clone())
        .collect()
}

fn all_text(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bare repository with one commit holding `sub/keep` and `README`;
/// returns (tempdir, repo path, commit id).
fn git_fixture() -> (tempfile::TempDir, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let bare = tmp.path().join("repo.git");
    let sh = |dir: &std::path::Path, script: &str| {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(work.join("sub/keep"), "kept\n").unwrap();
    std::fs::write(work.join("README"), "hello\n").unwrap();
    sh(
        &work,
        "git init -q . && git add -A && git -c user.name=t -c user.email=t@e commit -qm init",
    );
    let commit = sh(&work, "git rev-parse HEAD").trim().to_string();
    sh(
        tmp.path(),
        &format!("git clone -q --bare {} {}", work.display(), bare.display()),
    );
    (tmp, bare.to_string_lossy().into_owned(), commit)
}

fn steps(id: &str, steps: &[&str]) -> JobSpec {
    JobSpec::new(
        unique(id),
        Script::Steps(steps.iter().map(|s| s.to_string()).collect()),
    )
}

#[tokio::test]
async fn steps_carry_exported_env_plain_assignments_and_cwd() {
    let (_tmp, repo, commit) = git_fixture();
    let mut job = steps(
        "carry",
        &[
            "cd sub",
            "export X=1",
            "Y=2",
            "pwd; echo \"X=$X Y=$Y\"; cat keep",
            "f() { echo in-f; }",
            "f || echo no-function",
            "set -e",
            "false; echo options-do-not-carry",
            "false\ntrue",
            "unset X",
            "echo \"X=${X-unset}\"",
            "VERSION=1.2.3",
            "cd /tmp",
        ],
    );
    job.source = Source::Git { repo, commit };
    job.exported_variables = vec!["VERSION".into(), "Y".into(), "MISSING".into()];
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    let out = output(&lines);
    let expected = [
        "/cove/src/sub",
        "X=1 Y=2",
        "kept",
        "no-function",
        "options-do-not-carry",
        "X=unset",
    ];
    let mut at = 0;
    for want in expected {
        let found = out[at..].iter().position(|l| l == want);
        assert!(
            found.is_some(),
            "`{want}` missing after line {at} in {out:?}"
        );
        at += found.unwrap() + 1;
    }
    assert_eq!(
        result.variables,
        BTreeMap::from([
            ("VERSION".to_string(), "1.2.3".to_string()),
            ("Y".to_string(), "2".to_string())
        ])
    );
    assert_eq!(result.commands.len(), 13);
    assert!(result.timings.start_latency.is_some());
}

#[tokio::test]
async fn first_failing_step_ends_the_job() {
    let job = steps("fail", &["echo one", "exit 3", "echo never"]);
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Failed);
    assert_eq!(output(&lines), vec!["one"]);
    assert_eq!(result.commands.last().unwrap().exit_code, Some(3));
    assert!(all_text(&lines).contains("exit status 3"));
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fail {
    Nothing,
    Commands(PhaseName),
    Finally(PhaseName),
}

fn buildspec(fail: Fail, on_failure: Option<OnFailure>) -> Script {
    let phases = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];
    Script::Phases(
        phases
            .iter()
            .map(|&p| {
                let k = p.key();
                let mut commands = vec![format!("echo ran-{k}-$CODEBUILD_BUILD_SUCCEEDING")];
                if fail == Fail::Commands(p) {
                    commands.push("false".into());
                }
                commands.push(format!("echo after-{k}"));
                let mut finally = vec![format!("echo fin-{k}")];
                if fail == Fail::Finally(p) {
                    finally.push("exit 4".into());
                }
                let failing = matches!(fail, Fail::Commands(f) | Fail::Finally(f) if f == p);
                Phase {
                    name: p,
                    commands,
                    finally,
                    on_failure: if failing { on_failure.clone() } else { None },
                }
            })
            .collect(),
    )
}

#[tokio::test]
async fn buildspec_phase_machine_table() {
    use Fail::*;
    use PhaseName::*;
    let all =
        "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
               ran-build-1 after-build fin-build ran-post_build-1 after-post_build fin-post_build";
    let cases: Vec<(Fail, Option<OnFailure>, JobStatus, &str)> = vec![
        (Nothing, None, JobStatus::Succeeded, all),
        // install failure: the rest is skipped unless CONTINUE
        (Commands(Install), None, JobStatus::Failed, "ran-install-1 fin-install"),
        (Commands(Install), Some(OnFailure::Abort), JobStatus::Failed, "ran-install-1 fin-install"),
        (
            Commands(Install),
            Some(OnFailure::Continue),
            JobStatus::Failed,
            "ran-install-1 fin-install ran-pre_build-0 after-pre_build fin-pre_build \
             ran-build-0 after-build fin-build ran-post_build-0 after-post_build fin-post_build",
        ),
        (Commands(PreBuild), None, JobStatus::Failed, "ran-install-1 after-install fin-install ran-pre_build-1 fin-pre_build"),
        // build failure: post_build still runs (and knows), unless ABORT
        (
            Commands(Build),
            None,
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 fin-build ran-post_build-0 after-post_build fin-post_build",
        ),
        (
            Commands(Build),
            Some(OnFailure::Abort),
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 fin-build",
        ),
        (
            Commands(Build),
            Some(OnFailure::Continue),
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 fin-build ran-post_build-0 after-post_build fin-post_build",
        ),
        // post_build failure: its finally still runs
        (
            Commands(PostBuild),
            None,
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 after-build fin-build ran-post_build-1 fin-post_build",
        ),
        (
            Commands(PostBuild),
            Some(OnFailure::Abort),
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 after-build fin-build ran-post_build-1 fin-post_build",
        ),
        (
            Commands(PostBuild),
            Some(OnFailure::Continue),
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 after-build fin-build ran-post_build-1 fin-post_build",
        ),
        // a failing finally fails its phase
        (
            Finally(Install),
            None,
            JobStatus::Failed,
            "ran-install-1 after-install fin-install",
        ),
        (
            Finally(Build),
            None,
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 after-build fin-build ran-post_build-0 after-post_build fin-post_build",
        ),
        (
            Finally(Build),
            Some(OnFailure::Abort),
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 after-build fin-build",
        ),
        (
            Finally(Build),
            Some(OnFailure::Continue),
            JobStatus::Failed,
            "ran-install-1 after-install fin-install ran-pre_build-1 after-pre_build fin-pre_build \
             ran-build-1 after-build fin-build ran-post_build-0 after-post_build fin-post_build",
        ),
        (
            Finally(PostBuild),
            Some(OnFailure::Continue),
            JobStatus::Failed,
            all,
        ),
    ];
    for (fail, on_failure, status, expected) in cases {
        let mut job = JobSpec::new(unique("phases"), buildspec(fail, on_failure.clone()));
        job.image = "cove/busybox:latest".into();
        let (result, lines) = run(&job, CancellationToken::new()).await;
        let got = output(&lines).join(" ");
        let expected = expected.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(got, expected, "{fail:?} with on-failure {on_failure:?}");
        assert_eq!(
            result.status, status,
            "{fail:?} with on-failure {on_failure:?}"
        );
        // phases that never started are reported as skipped
        let skipped: Vec<PhaseName> = result
            .phases
            .iter()
            .filter(|p| p.status == PhaseStatus::Skipped)
            .map(|p| p.name)
            .collect();
        for p in &skipped {
            assert!(
                !got.contains(&format!("ran-{}", p.key())),
                "{fail:?}: {p:?} ran"
            );
        }
    }
}

#[tokio::test]
async fn retry_is_requested_when_the_output_matches() {
    let script = |regex: &str| {
        Script::Phases(vec![Phase {
            name: PhaseName::Build,
            commands: vec!["echo 'error: connection reset by peer'; false".into()],
            finally: vec![],
            on_failure: Some(OnFailure::Retry {
                count: Some(2),
                regex: Some(regex.into()),
            }),
        }])
    };
    let mut job = JobSpec::new(unique("retry"), script("connection reset"));
    job.image = "cove/busybox:latest".into();
    let (result, _) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Failed);
    assert!(result.retry);
    job.job_id = unique("retry");
    job.attempt = 3;
    let (result, _) = run(&job, CancellationToken::new()).await;
    assert!(!result.retry, "attempt 3 > count 2");
    let mut job = JobSpec::new(unique("retry"), script("disk full"));
    job.image = "cove/busybox:latest".into();
    let (result, _) = run(&job, CancellationToken::new()).await;
    assert!(!result.retry, "output does not match");
}

fn tar_files(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(tar);
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        if e.header().entry_type().is_symlink() {
            data = format!("-> {}", e.link_name().unwrap().unwrap().display()).into_bytes();
        } else {
            e.read_to_end(&mut data).unwrap();
        }
        files.insert(path, data);
    }
    files
}

#[tokio::test]
async fn output_artifacts_are_collected_by_glob() {
    let mut job = steps(
        "artifacts",
        &[
            "mkdir -p dist/sub && printf 'alpha' > dist/a.txt && printf '\\001\\002\\377' > dist/sub/b.bin",
            "echo notes > notes.md && echo no > other.txt && ln -s a.txt dist/link",
        ],
    );
    job.image = "cove/busybox:latest".into();
    job.outputs = vec![
        ArtifactSpec {
            name: "all".into(),
            files: vec!["dist/**/*".into(), "*.md".into()],
            ..Default::default()
        },
        ArtifactSpec {
            name: "based".into(),
            files: vec!["**/*".into()],
            base_directory: Some("dist".into()),
            exclude_paths: vec!["sub/*".into()],
            ..Default::default()
        },
        ArtifactSpec {
            name: "flat".into(),
            files: vec!["dist/sub/*".into()],
            discard_paths: true,
            ..Default::default()
        },
    ];
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    let got: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = result
        .artifacts
        .iter()
        .map(|a| (a.name.as_str(), tar_files(&a.tar.read().unwrap())))
        .collect();
    let b = |s: &[u8]| s.to_vec();
    assert_eq!(
        got["all"],
        BTreeMap::from([
            ("dist/a.txt".to_string(), b(b"alpha")),
            ("dist/link".to_string(), b(b"-> a.txt")),
            ("dist/sub/b.bin".to_string(), b(&[1, 2, 255])),
            ("notes.md".to_string(), b(b"notes\n")),
        ])
    );
    assert_eq!(
        got["based"],
        BTreeMap::from([
            ("a.txt".to_string(), b(b"alpha")),
            ("link".to_string(), b(b"-> a.txt")),
        ])
    );
    assert_eq!(
        got["flat"],
        BTreeMap::from([("b.bin".to_string(), b(&[1, 2, 255]))])
    );
}

#[tokio::test]
async fn artifact_paths_outside_the_tree_are_rejected() {
    let docker = docker().await;
    for bad in ["../x", "/etc/passwd", "dist/../../x"] {
        let mut job = steps("reject", &["true"]);
        job.outputs = vec![ArtifactSpec {
            name: "out".into(),
            files: vec![bad.into()],
            ..Default::default()
        }];
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let err = run_job(
            &docker,
            &job,
            &mut LogSink::new(tx),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, JobError::BadSpec { .. }), "{err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    // a symlink that leaves the tree fails the job at collection time
    let mut job = steps(
        "symlink",
        &["mkdir dist && echo ok > dist/ok && ln -s /etc/passwd dist/evil"],
    );
    job.image = "cove/busybox:latest".into();
    job.outputs = vec![ArtifactSpec {
        name: "out".into(),
        files: vec!["dist/*".into()],
        ..Default::default()
    }];
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Failed);
    let error = result.error.unwrap();
    assert!(
        error.contains("dist/evil") && error.contains("outside the source tree"),
        "{error}"
    );
    assert!(all_text(&lines).contains("outside the source tree"));
    assert!(result.artifacts.is_empty());
    // a job that removes its own source tree fails; the agent does not
    let mut job = steps("gone", &["cd / && rm -rf /cove/src"]);
    job.image = "cove/busybox:latest".into();
    job.outputs = vec![ArtifactSpec {
        name: "out".into(),
        files: vec!["**/*".into()],
        ..Default::default()
    }];
    let (result, _) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Failed);
    assert!(result.error.unwrap().contains("no longer exists"));
}

#[tokio::test]
async fn secrets_are_injected_and_masked_in_every_form() {
    let secret = "s3cr3t-Value-42/+x";
    let mut job = steps(
        "secrets",
        &[
            "test \"${#CATALYST_SECRETS_token}\" -eq 18 && echo injected",
            "echo \"plain: $CATALYST_SECRETS_token\"",
            "printf '%s' \"$CATALYST_SECRETS_token\" | base64",
            "printf 'xy%s' \"$CATALYST_SECRETS_token\" | base64",
            "s=$CATALYST_SECRETS_token; printf 'split: %s' \"${s%%-*}\"; sleep 0.3; printf '%s\\n' \"-${s#*-}\"",
            "python3 -c 'import os, urllib.parse; print(\"url:\", urllib.parse.quote(os.environ[\"CATALYST_SECRETS_token\"], safe=\"\"))'",
            "echo \"$CATALYST_SECRETS_token\" >&2",
            "LEAK=\"x-$CATALYST_SECRETS_token\"",
        ],
    );
    job.secrets = vec![("CATALYST_SECRETS_token".into(), secret.into())];
    job.exported_variables = vec!["LEAK".into()];
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    let text = all_text(&lines);
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let b64_shifted = base64::engine::general_purpose::STANDARD.encode(format!("xy{secret}"));
    let url = "s3cr3t-Value-42%2F%2Bx";
    for leaked in [
        secret,
        &b64,
        &b64[..20],
        &b64_shifted[4..24],
        url,
        "s3cr3t-Value",
    ] {
        assert!(!text.contains(leaked), "`{leaked}` leaked:\n{text}");
    }
    let out = output(&lines);
    assert!(out.contains(&"injected".to_string()));
    for want in ["plain: ***", "split: ***", "url: ***"] {
        assert!(out.iter().any(|l| l == want), "`{want}` missing: {out:?}");
    }
    assert!(lines
        .iter()
        .any(|l| l.stream == LogStream::Stderr && l.text == "***"));
    assert_eq!(
        result.variables["LEAK"], "x-***",
        "exported values are masked too"
    );
}

#[tokio::test]
async fn cancel_sends_sigterm_then_sigkill_and_removes_the_container() {
    let mut job = steps(
        "cancel",
        &[
            "trap 'echo got-term' TERM; echo looping; while :; do sleep 0.1; done",
            "echo never",
        ],
    );
    job.grace = Duration::from_secs(1);
    let docker = docker().await;
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(64);
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut when = None;
            while let Some(l) = rx.recv().await {
                if l.text == "looping" && when.is_none() {
                    when = Some(Instant::now());
                    cancel.cancel();
                }
                lines.push(l);
            }
            (lines, when)
        })
    };
    let mut sink = LogSink::new(tx);
    let result = run_job(&docker, &job, &mut sink, &cancel).await.unwrap();
    drop(sink);
    let (lines, when) = canceller.await.unwrap();
    let took = when.unwrap().elapsed();
    assert_eq!(result.status, JobStatus::Cancelled);
    let text = all_text(&lines);
    assert!(text.contains("got-term"), "the TERM trap ran:\n{text}");
    assert!(text.contains("SIGKILL"), "{text}");
    assert!(!text.contains("never"));
    assert_eq!(result.commands.len(), 1);
    assert_eq!(result.commands[0].exit_code, None);
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert_no_container(&docker, &job.job_id).await;
}

#[tokio::test]
async fn timeout_ends_the_job_as_timed_out() {
    let mut job = steps("timeout", &["echo start; sleep 30", "echo never"]);
    job.image = "cove/busybox:latest".into();
    job.timeout = Duration::from_secs(2);
    job.grace = Duration::from_secs(1);
    let began = Instant::now();
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::TimedOut, "{}", all_text(&lines));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let text = all_text(&lines);
    assert!(
        text.contains("timed out") && !text.contains("never"),
        "{text}"
    );
}

#[tokio::test]
async fn lines_stream_while_the_step_runs_in_order_and_long_lines_are_cut() {
    let mut job = steps(
        "stream",
        &[
            "echo a; sleep 0.1; echo b >&2; sleep 0.1; echo c",
            "head -c 40000 /dev/zero | tr '\\0' x; echo",
            "echo first; sleep 2; echo second",
        ],
    );
    job.image = "cove/busybox:latest".into();
    let docker = docker().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(64);
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push((Instant::now(), l));
        }
        lines
    });
    let mut sink = LogSink::new(tx);
    let result = run_job(&docker, &job, &mut sink, &CancellationToken::new())
        .await
        .unwrap();
    let ended = Instant::now();
    drop(sink);
    let lines = collector.await.unwrap();
    assert_eq!(result.status, JobStatus::Succeeded);
    let out: Vec<(LogStream, usize, &str)> = lines
        .iter()
        .filter(|(_, l)| l.stream != LogStream::System)
        .map(|(_, l)| (l.stream, l.text.len(), l.text.as_str()))
        .collect();
    assert_eq!(
        out.iter().map(|(s, n, _)| (*s, *n)).collect::<Vec<_>>(),
        vec![
            (LogStream::Stdout, 1),
            (LogStream::Stderr, 1),
            (LogStream::Stdout, 1),
            (LogStream::Stdout, 16 * 1024),
            (LogStream::Stdout, 16 * 1024),
            (LogStream::Stdout, 40000 - 32 * 1024),
            (LogStream::Stdout, 5),
            (LogStream::Stdout, 6),
        ]
    );
    assert_eq!(
        [out[0].2, out[1].2, out[2].2, out[6].2, out[7].2],
        ["a", "b", "c", "first", "second"]
    );
    let first_at = lines.iter().find(|(_, l)| l.text == "first").unwrap().0;
    assert!(
        ended - first_at > Duration::from_millis(1500),
        "`first` left only {:?} before the job ended",
        ended - first_at
    );
}

#[tokio::test]
async fn input_artifacts_and_a_source_tarball() {
    let tar_of = |path: &str, data: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
        b.into_inner().unwrap()
    };
    // no source: the first input artifact is the working directory
    let mut job = steps(
        "inputs",
        &["pwd; cat built.txt; cat \"$CATALYST_SOURCE_DIR_second/other.txt\""],
    );
    job.image = "cove/busybox:latest".into();
    job.inputs = vec![
        cove_agent::jobs::InputArtifact {
            name: "build".into(),
            tar: tar_of("built.txt", b"from-build\n").into(),
        },
        cove_agent::jobs::InputArtifact {
            name: "second".into(),
            tar: tar_of("other.txt", b"from-second\n").into(),
        },
    ];
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    assert_eq!(
        output(&lines),
        vec!["/cove/artifacts/build", "from-build", "from-second"]
    );
    // a tarball handed over by the server
    let mut job = steps("tarball", &["pwd; cat app/main.txt"]);
    job.image = "cove/busybox:latest".into();
    job.source = Source::Tar(tar_of("app/main.txt", b"main\n"));
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    assert_eq!(output(&lines), vec!["/cove/src", "main"]);
}

#[tokio::test]
async fn a_stopped_phase_still_runs_its_finally_within_a_budget() {
    let phases = |finally: &str| {
        Script::Phases(vec![
            Phase {
                name: PhaseName::Build,
                commands: vec!["echo started; sleep 30".into(), "echo never".into()],
                finally: vec![finally.into(), "echo after-cleanup".into()],
                on_failure: None,
            },
            Phase {
                name: PhaseName::PostBuild,
                commands: vec!["echo never-post".into()],
                finally: vec![],
                on_failure: None,
            },
        ])
    };
    // timeout: finally runs and the job ends timed out
    let mut job = JobSpec::new(unique("cleanup"), phases("echo cleanup-ran"));
    job.image = "cove/busybox:latest".into();
    job.timeout = Duration::from_secs(2);
    job.grace = Duration::from_secs(1);
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::TimedOut);
    assert_eq!(
        output(&lines),
        vec!["started", "cleanup-ran", "after-cleanup"]
    );
    assert_eq!(
        result
            .phases
            .iter()
            .map(|p| (p.name, p.status))
            .collect::<Vec<_>>(),
        vec![
            (PhaseName::Build, PhaseStatus::Stopped),
            (PhaseName::PostBuild, PhaseStatus::Skipped)
        ]
    );
    // a finally that hangs is stopped when the budget is spent
    let mut job = JobSpec::new(unique("cleanup"), phases("echo cleaning; sleep 30"));
    job.image = "cove/busybox:latest".into();
    job.timeout = Duration::from_secs(2);
    job.grace = Duration::from_secs(1);
    job.cleanup_budget = Duration::from_secs(1);
    let began = Instant::now();
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::TimedOut);
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(output(&lines), vec!["started", "cleaning"]);
    assert!(all_text(&lines).contains("cleanup budget"));
}

#[tokio::test]
async fn bash_as_the_shell_keeps_the_same_carry_over_rules() {
    let mut job = steps(
        "bash",
        &[
            "arr=(1 2 3); export A=\"x y\"; cd /tmp",
            "echo \"arr=${#arr[@]} A=$A pwd=$PWD\" {p,q}",
            "[[ $A == 'x y' ]] && echo bashism-ok",
        ],
    );
    job.shell = "/bin/bash".into();
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    assert_eq!(
        output(&lines),
        vec!["arr=0 A=x y pwd=/tmp p q", "bashism-ok"],
        "arrays do not carry, exports and cwd do, brace expansion works"
    );
}

#[tokio::test]
async fn source_fetched_from_a_url_at_a_commit() {
    let (_tmp, repo, commit) = git_fixture();
    let mut job = steps(
        "url",
        &["cat README sub/keep; ls -a | grep -c '^.git$' || true"],
    );
    job.image = "cove/busybox:latest".into();
    job.source = Source::Git {
        repo: format!("file://{repo}"),
        commit,
    };
    let (result, lines) = run(&job, CancellationToken::new()).await;
    assert_eq!(result.status, JobStatus::Succeeded, "{}", all_text(&lines));
    assert_eq!(output(&lines), vec!["hello", "kept", "0"], "files, no .git");
    // an unknown commit is the agent's error, before any container exists
    let mut job = steps("url", &["true"]);
    job.source = Source::Git {
        repo: format!("file://{}", _tmp.path().join("repo.git").display()),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let err = run_job(
        &docker().await,
        &job,
        &mut LogSink::new(tx),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, JobError::Source { .. }), "{err}");
    assert_no_container(&docker().await, &job.job_id).await;
}

#[tokio::test]
async fn dropping_the_job_future_removes_the_container() {
    let mut job = steps("drop", &["echo running; sleep 60"]);
    job.image = "cove/busybox:latest".into();
    let docker = docker().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(64);
    let task = {
        let (docker, job) = (docker.clone(), job.clone());
        tokio::spawn(async move {
            let mut sink = LogSink::new(tx);
            run_job(&docker, &job, &mut sink, &CancellationToken::new()).await
        })
    };
    while let Some(l) = rx.recv().await {
        if l.text == "running" {
            break;
        }
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // the guard's removal runs in the background
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_JOB}={}", job.job_id)],
    )]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "container not removed: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stale_job_containers_are_removed_unless_running() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::CreateContainerOptions;
    let docker = docker().await;
    let (stale, live) = (unique("stale"), unique("live"));
    for job in [&stale, &live] {
        let labels = HashMap::from([
            (LABEL_JOB.to_string(), job.to_string()),
            ("cove.role".to_string(), "job".to_string()),
        ]);
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(format!("cove-job-{job}-1")),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some("cove/busybox:latest".into()),
                    cmd: Some(vec!["true".into()]),
                    labels: Some(labels),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // other tests' jobs run concurrently: claim every job but `stale`
    let removed =
        cove_agent::jobs::remove_stale_job_containers(&docker, |job| job != stale.as_str())
            .await
            .unwrap();
    assert_eq!(removed, vec![stale.clone()]);
    assert_no_container(&docker, &stale).await;
    let removed =
        cove_agent::jobs::remove_stale_job_containers(&docker, |job| job != live.as_str())
            .await
            .unwrap();
    assert_eq!(removed, vec![live.clone()]);
    assert_no_container(&docker, &live).await;
}

/// What a job's sandbox costs: a trivial job on the default bridge vs on its
/// own private network (host placement: network, DROP rule, gateway listener
/// and its port rules, teardown), and one batch of host firewall rules run
/// through the helper container that container placement uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by scripts/bench-broker.sh"]
async fn bench_job_sandbox_overhead() {
    use cove_agent::broker::{Broker, BrokerOptions, JobRef, Mode, SystemClock};
    use cove_agent::gateway::AllowList;
    use cove_agent::private_net::{
        Firewall, GatewayAt, JobSandbox, NetOptions, PrivateNetwork, SandboxSpec,
    };
    let docker = docker().await;
    let rounds = 10;
    let broker = std::sync::Arc::new(Broker::new(
        aws_config::SdkConfig::builder().build(),
        std::sync::Arc::new(SystemClock),
        BrokerOptions::default(),
    ));
    let (mut plain, mut sandboxed, mut helper) = (Vec::new(), Vec::new(), Vec::new());
    let once = |network: Option<String>| {
        let mut spec = JobSpec::new(unique("bench"), Script::Steps(vec!["true".into()]));
        spec.image = "cove/busybox:latest".into();
        spec.network = network;
        spec
    };
    for _ in 0..rounds {
        let t = Instant::now();
        let (r, _) = run(&once(None), CancellationToken::new()).await;
        assert_eq!(r.status, JobStatus::Succeeded);
        plain.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let job = unique("bench");
        let sandbox = JobSandbox::start(
            &docker,
            broker.clone(),
            SandboxSpec {
                job: JobRef {
                    run_id: "bench".into(),
                    job_id: job.clone(),
                    timeout: Duration::from_secs(60),
                },
                codeartifact: None,
                mode: Mode::TokenFree,
                allow: AllowList::parse(&["allowed.invalid:443"]).unwrap(),
                home: "/root".into(),
                net: NetOptions::default(),
                gateway_at: GatewayAt::HostBridge,
                deploy: None,
            },
        )
        .await
        .unwrap();
        let mut spec = once(Some(sandbox.network_name().to_string()));
        spec.job_id = job;
        let (r, _) = run(&spec, CancellationToken::new()).await;
        assert_eq!(r.status, JobStatus::Succeeded);
        sandbox.teardown().await.unwrap();
        sandboxed.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let net = PrivateNetwork::create(
            &docker,
            &unique("bench"),
            NetOptions {
                firewall: Firewall::HostContainer {
                    iptables: "iptables".into(),
                    image: "cove/agent:latest".into(),
                },
            },
        )
        .await
        .unwrap();
        net.remove().await.unwrap();
        helper.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (p, s, h) = (
        median(&mut plain),
        median(&mut sandboxed),
        median(&mut helper),
    );
    println!("BENCH trivial job, default bridge (no sandbox): median {p:.0} ms of {rounds}");
    println!(
        "BENCH trivial job in its private network with a gateway (host placement), incl. teardown: median {s:.0} ms of {rounds} (+{:.0} ms)",
        s - p
    );
    println!(
        "BENCH private network create + remove with rules through the helper container (container placement): median {h:.0} ms of {rounds}"
    );
}
