//! Hostile files pushed to the real `cove-server` binary (embedded agent):
//! the ~500-byte alias workflow of issue 13, a workflow with a dependency
//! graph full of cycles, and devfiles that are an alias bomb or a ladder of
//! 2^40 composite paths, and a workflow over the size cap. Each fails on its own (a workflow error with the
//! position of the problem; a 422 for the environment), a good workflow in
//! the same push still gets its run, the server keeps answering, and its
//! peak resident set grows by less than 64 MiB.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    admin_git_url, create_repo_http, free_port, git_blocking, rss, spawn_server, Proc, ADMIN_TOKEN,
};
use cove_api::{Run, WorkflowError};
use serde_json::json;

/// `git` with a committer identity.
fn git(dir: &Path, args: &[&str]) {
    let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@example.com"];
    all.extend_from_slice(args);
    git_blocking(dir, &all);
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Nine levels of nine aliases: 9^9 nodes if expanded.
fn alias_tree() -> String {
    let mut s = String::from("l0: &a0 [x,x,x,x,x,x,x,x,x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        s.push_str(&format!("l{i}: &a{i} [{}]\n", [prev.as_str(); 9].join(",")));
    }
    s
}

fn laughs_workflow() -> String {
    format!(
        "Name: bomb\nSchemaVersion: \"1.0\"\n{}Actions:\n  A: {{Identifier: aws/build@v1, Configuration: {{Steps: [{{Run: *a8}}]}}}}\n",
        alias_tree()
    )
}

/// 2000 actions, each depending on the next and on A0: one cycle per action.
fn cycles_workflow() -> String {
    let mut s = String::from("Name: cycles\nSchemaVersion: \"1.0\"\nActions:\n");
    for i in 0..2000 {
        s.push_str(&format!(
            "  A{i}: {{Identifier: aws/build@v1, DependsOn: [A{}, A0], Configuration: {{Steps: [{{Run: x}}]}}}}\n",
            (i + 1) % 2000
        ));
    }
    s
}

const GOOD_WORKFLOW: &str = "Name: good\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\n    Branches: [main]\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Configuration: {Steps: [{Run: echo ok}]}\n";

fn bomb_devfile() -> String {
    format!(
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {{image: cove/busybox:latest}}\nattributes:\n{}",
        alias_tree().lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

/// 40 levels of two composites that each include both of the next level:
/// 2^40 paths, and the exec commands at the bottom name a missing component.
fn diamond_devfile() -> String {
    let mut s = String::from(
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\ncommands:\n",
    );
    for i in 0..40 {
        for side in ["a", "b"] {
            s.push_str(&format!(
                "  - id: {side}{i}\n    composite: {{commands: [a{n}, b{n}]}}\n",
                n = i + 1
            ));
        }
    }
    for side in ["a", "b"] {
        s.push_str(&format!(
            "  - id: {side}40\n    exec: {{component: nope, commandLine: echo}}\n"
        ));
    }
    s
}

async fn alive(http: &reqwest::Client, url: &str) {
    let r = http
        .get(format!("{url}/api/v1/user"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_fail_alone_and_the_server_stays_flat() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let Proc { child: server, url } = spawn_server(data.path(), port).await.unwrap();
    let pid = server.id().unwrap();
    let http = reqwest::Client::new();
    create_repo_http(&http, &url, "h").await;

    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    git(dir, &["init", "-q", "-b", "main"]);
    write(dir, ".codecatalyst/workflows/bomb.yaml", &laughs_workflow());
    write(
        dir,
        ".codecatalyst/workflows/cycles.yaml",
        &cycles_workflow(),
    );
    write(dir, ".codecatalyst/workflows/good.yaml", GOOD_WORKFLOW);
    // over the 1 MiB size cap: refused unread, without failing the push
    write(
        dir,
        ".codecatalyst/workflows/huge.yaml",
        &format!("Name: huge\n# {}\n", "x".repeat(2 << 20)),
    );
    write(dir, "devfile.yaml", &bomb_devfile());
    write(dir, "diamond.yaml", &diamond_devfile());
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "hostile"]);

    alive(&http, &url).await;
    let (rss_before, _) = rss(pid);

    git(dir, &["push", "-q", &admin_git_url(&url, "h"), "main"]);

    // each bad workflow is its own error, with the position of the problem
    let deadline = Instant::now() + Duration::from_secs(60);
    let errors: Vec<WorkflowError> = loop {
        alive(&http, &url).await;
        let errors: Vec<WorkflowError> =
            common::admin_get(&http, format!("{url}/api/v1/repos/admin/h/workflow-errors")).await;
        if errors.len() >= 3 {
            break errors;
        }
        assert!(Instant::now() < deadline, "workflow errors: {errors:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bomb = errors
        .iter()
        .find(|e| e.file.ends_with("bomb.yaml"))
        .expect("an error for bomb.yaml");
    assert!(
        bomb.message
            .starts_with(".codecatalyst/workflows/bomb.yaml:")
            && bomb.message.contains("alias `*a"),
        "{}",
        bomb.message
    );
    let cycles = errors
        .iter()
        .find(|e| e.file.ends_with("cycles.yaml"))
        .expect("an error for cycles.yaml");
    assert!(
        cycles.message.contains("dependency cycle") && cycles.message.lines().count() <= 101,
        "{}",
        cycles
            .message
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );

    let huge = errors
        .iter()
        .find(|e| e.file.ends_with("huge.yaml"))
        .expect("an error for huge.yaml");
    assert!(
        huge.message.contains("at most 1048576 bytes"),
        "{}",
        huge.message
    );

    // the good workflow of the same push got its run
    let runs: Vec<Run> = common::admin_get(&http, format!("{url}/api/v1/repos/admin/h/runs")).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].workflow, "good");

    // hostile devfiles: 422 with the reason, nothing created
    for (path, expect) in [
        ("devfile.yaml", "alias `*a"),
        ("diamond.yaml", "component `nope`"),
    ] {
        let r = http
            .post(format!("{url}/api/v1/repos/admin/h/environments"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "hostile", "devfile_path": path}))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{path}: {body}");
        alive(&http, &url).await;
    }
    let envs: serde_json::Value =
        common::admin_get(&http, format!("{url}/api/v1/environments")).await;
    assert_eq!(envs.as_array().map(Vec::len), Some(0), "{envs}");

    let (_, peak) = rss(pid);
    assert!(
        peak < rss_before + (64 << 20),
        "server RSS grew from {} MiB to a peak of {} MiB",
        rss_before >> 20,
        peak >> 20
    );
    eprintln!(
        "server RSS before {} MiB, peak after {} MiB",
        rss_before >> 20,
        peak >> 20
    );
}
