//! Devfile fidelity on the real Docker engine (issue 17): a service sidecar
//! keeps its image's entrypoint and answers on localhost, and
//! `container-overrides` reach the container. Test devfiles live in
//! devfiles/tests/fidelity/. The tests fail, never skip, when no engine answers.

#![allow(clippy::unwrap_used)]

/// Reading devfiles from disk, as the `cove` CLI does.
#[allow(dead_code)]
#[path = "../../cli/src/devfile_fs.rs"]
mod devfile_fs;

use std::path::Path;

use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, PlanOptions};

fn plan(name: &str) -> devfiles::EnvironmentPlan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../devfiles/tests/fidelity")
        .join(name);
    devfile_fs::load_file(&path, &LoadOptions::default(), &devfile_fs::FsResolver)
        .unwrap_or_else(|r| panic!("{r}"))
        .plan(&PlanOptions {
            repo: Some("repo".into()),
        })
        .0
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

/// Removes the environment even when the test fails.
struct Cleanup(Runtime, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (rt, env) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { rt.delete(&env).await.ok() });
        })
        .join()
        .ok();
    }
}

fn docker_inspect(id: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn sidecar_keeps_its_entrypoint_and_overrides_apply() {
    let rt = Runtime::connect().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    );
    let env = unique("t-fidelity");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let plan = plan("sidecar.yaml");
    let status = rt.create(&PodSpec::new(&env, plan.clone())).await.unwrap();
    assert!(status.running(), "{status:?}");

    // the sidecar's own ENTRYPOINT (httpd) serves on localhost inside `app`
    let fetch = "for i in $(seq 50); do wget -q -O - http://localhost:8080/ && exit 0; sleep 0.1; done; exit 1";
    let out = rt
        .exec(&env, "app", &["sh", "-c", fetch], &[], None)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "echo-server: served by the image's own entrypoint"
    );

    // container-overrides: user and group, read-only root, capabilities
    // (NET_ADMIN is outside the baseline and not added), memory over memoryLimit
    let out = rt
        .exec(
            &env,
            "app",
            &[
                "sh",
                "-c",
                "id -u; id -g; touch /probe 2>/dev/null && echo writable || echo read-only; grep CapBnd /proc/self/status",
            ],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        out.stdout, "1234\n1234\nread-only\nCapBnd:\t0000000000000020\n",
        "{out:?}"
    );
    let app = status
        .containers
        .iter()
        .find(|c| c.component == "app")
        .unwrap();
    assert_eq!(
        docker_inspect(&app.id, "{{.HostConfig.Memory}}"),
        (256u64 * 1024 * 1024).to_string()
    );
    let web = status
        .containers
        .iter()
        .find(|c| c.component == "web")
        .unwrap();
    assert_eq!(
        docker_inspect(&web.id, "{{json .Config.Entrypoint}}"),
        r#"["httpd","-f","-p","8080","-h","/www"]"#
    );
}

#[tokio::test]
async fn github_project_with_sparse_checkout_is_cloned_with_git() {
    let rt = Runtime::connect().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    );
    let env = unique("t-sparse");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let mut plan = plan("github-2.0.0.yaml");
    plan.projects.truncate(1); // the second one names a remote that cannot be reached
    let spec = PodSpec::new(&env, plan);
    rt.create(&spec).await.unwrap();
    // the seed repository, inside the environment (the clone uses the
    // container's own git and network)
    let seed = "set -e; mkdir -p /tmp/seed && cd /tmp/seed && git init -q -b main . \
        && mkdir docs src site && echo d > docs/a.md && echo s > src/b.rs && echo w > site/i.html \
        && echo r > README && git add . && git -c user.name=t -c user.email=t@t commit -qm seed \
        && git clone -q --bare /tmp/seed /tmp/seed.git";
    let out = rt
        .exec(&env, "tools", &["sh", "-c", seed], &[], None)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");

    let mut steps = Vec::new();
    let done = cove_agent::environment::clone_projects(&rt, &spec, &mut |p| steps.push(p)).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].outcome, "cloned", "{done:?}");
    assert_eq!(done[0].path, "/projects/docs-only");
    let out = rt
        .exec(
            &env,
            "tools",
            &[
                "sh",
                "-c",
                "cd /projects/docs-only && ls -A | grep -v '^.git$' | sort | tr '\\n' ' '; git remote",
            ],
            &[],
            None,
        )
        .await
        .unwrap();
    // only the listed directories (and top-level files) are checked out
    assert_eq!(out.stdout, "README docs site origin\n", "{out:?}");

    // a second run leaves the clone alone
    let again = cove_agent::environment::clone_projects(&rt, &spec, &mut |_| {}).await;
    assert_eq!(again[0].outcome, "present");
}
