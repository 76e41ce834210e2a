//! Environment lifecycle on the real engine with a real git repository:
//! sources cloned into /projects/<repo>, postStart in order (a failing one
//! reported, the environment stays up), restart from the workspace devfile,
//! an invalid workspace devfile refused with its position.

#![allow(clippy::unwrap_used)]

mod common;

use common::{commit_all, git};
use cove_agent::environment::{self, Progress};
use cove_agent::sources::SourceSpec;
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, NoParents, PlanOptions};

const DEVFILE: &str = r#"schemaVersion: 2.2.0
components:
  - name: main
    container:
      image: cove/busybox:latest
      env: [{name: IS_LOCAL, value: "true"}]
commands:
  - id: first
    exec: {component: main, commandLine: "echo one > /projects/order.txt"}
  - id: broken
    exec: {component: main, commandLine: "echo intentional-error-message; exit 3"}
  - id: second
    exec: {component: main, commandLine: "echo two >> /projects/order.txt", workingDir: "${PROJECT_SOURCE}"}
events:
  postStart: [first, broken, second]
"#;

fn repo_with_devfile() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("devfile.yaml"), DEVFILE).unwrap();
    std::fs::write(work.join("hello.txt"), "hello from git\n").unwrap();
    commit_all(&work, "init");
    git(tmp.path(), &["clone", "-q", "--bare", "work", "demo.git"]);
    let url = format!("file://{}/demo.git", tmp.path().display());
    (tmp, url)
}

fn plan_of(text: &str) -> devfiles::EnvironmentPlan {
    devfiles::load_str("devfile.yaml", text, &NoParents, &LoadOptions::default())
        .unwrap()
        .plan(&PlanOptions {
            repo: Some("demo".into()),
        })
        .0
}

struct Cleanup(Runtime, String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let (rt, env) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { rt.delete(&env).await.ok() })
        })
        .join()
        .ok();
    }
}

#[tokio::test]
async fn create_clone_post_start_restart() {
    let rt = Runtime::connect()
        .await
        .expect("docker engine (run scripts/test-env.sh)");
    let (_repo, url) = repo_with_devfile();
    let env = format!("t-env-{}", std::process::id());
    let _c = Cleanup(rt.clone(), env.clone());
    let source = SourceSpec {
        clone_url: url.clone(),
        repo: "demo".into(),
        branch: "main".into(),
        new_branch: Some("feature-x".into()),
        auth_header: Some("Authorization: Basic c2VjcmV0LXRva2Vu".into()),
        git_user_name: "Dev".into(),
        git_user_email: "dev@example.com".into(),
    };
    let spec = PodSpec::new(&env, plan_of(DEVFILE));
    let mut steps = Vec::new();
    let started = environment::create(&rt, &spec, Some(&source), None, &mut |p| steps.push(p))
        .await
        .unwrap();
    assert!(started.cloned);
    assert_eq!(steps.first(), Some(&Progress::CreatingContainers));
    assert_eq!(steps.last(), Some(&Progress::Running));
    assert!(steps.contains(&Progress::Cloning {
        repo: "demo".into()
    }));

    // postStart ran in order; the failing one is reported with its output
    let ids: Vec<&str> = started.post_start.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["first", "broken", "second"]);
    let broken = &started.post_start[1];
    assert_eq!(broken.exit_code, 3);
    assert!(broken.output.contains("intentional-error-message"));
    let out = rt
        .exec(
            &env,
            "main",
            &["cat", "/projects/order.txt", "/projects/demo/hello.txt"],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "one\ntwo\nhello from git\n");

    // new branch, git user configured, no credential left in the container
    let out = rt
        .exec(
            &env,
            "main",
            &[
                "sh",
                "-c",
                "cat /projects/demo/.git/HEAD; cat /projects/demo/.git/config; env",
            ],
            &[],
            None,
        )
        .await
        .unwrap();
    assert!(
        out.stdout.contains("ref: refs/heads/feature-x"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("email = dev@example.com"));
    assert!(
        !out.stdout.contains("c2VjcmV0LXRva2Vu"),
        "credential leaked into the container"
    );

    // edit the devfile in the workspace: restart applies it, data stays
    let changed = DEVFILE.replace(
        "value: \"true\"}]",
        "value: \"true\"}, {name: ADDED, value: yes-added}]",
    );
    rt.exec(
        &env,
        "main",
        &[
            "sh",
            "-c",
            &format!("cat > /projects/demo/devfile.yaml <<'EOF'\n{changed}EOF"),
        ],
        &[],
        None,
    )
    .await
    .unwrap();
    let (new_plan, text) = environment::plan_from_workspace(
        &rt,
        &env,
        "main",
        "/projects/demo/devfile.yaml",
        "demo",
        None,
    )
    .await
    .unwrap();
    assert_eq!(text, changed);
    let new_spec = PodSpec::new(&env, new_plan);
    let status = environment::restart(&rt, &spec.plan, &new_spec)
        .await
        .unwrap();
    assert!(status.running());
    let out = rt
        .exec(
            &env,
            "main",
            &["sh", "-c", "echo $ADDED; cat /projects/order.txt"],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "yes-added\none\ntwo\n");

    // a broken devfile is refused with file:line:col, the environment keeps running
    rt.exec(&env, "main", &["sh", "-c", "printf 'schemaVersion: 2.2.0\\ncomponents:\\n  - name: Bad Name\\n    container: {image: x}\\n' > /projects/demo/devfile.yaml"], &[], None).await.unwrap();
    let err = environment::plan_from_workspace(
        &rt,
        &env,
        "main",
        "/projects/demo/devfile.yaml",
        "demo",
        None,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/projects/demo/devfile.yaml:3:11: error:"),
        "{err}"
    );
    assert!(rt.status(&env).await.unwrap().unwrap().running());

    // stop runs preStop (none here) and stops; the clone is not repeated on restart of the pod
    environment::stop(&rt, &env, &new_spec.plan).await.unwrap();
    rt.start(&env).await.unwrap();
    let again = cove_agent::sources::checkout(&rt, &env, "main", "/projects", &source)
        .await
        .unwrap();
    assert!(!again, "sources already present");
}
