//! The host-side clone streams the working tree into the environment: a
//! repository holding a 192 MiB file does not raise the agent's peak memory
//! by more than a few chunks (it used to be buffered whole as one tar).
//! One test in its own binary: it reads and resets this process's peak RSS.

#![allow(clippy::unwrap_used)]

mod common;

use common::{commit_all, git, peak_kib};
use cove_agent::sources::SourceSpec;
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, NoParents, PlanOptions};

const DEVFILE: &str = "schemaVersion: 2.2.0
components:
  - name: main
    container:
      image: cove/busybox:latest
";

#[tokio::test]
async fn a_large_working_tree_is_streamed_not_buffered() {
    const SIZE: usize = 192 << 20;
    let rt = Runtime::connect()
        .await
        .expect("docker engine (run scripts/test-env.sh)");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    // Incompressible content, written without holding it in memory.
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(work.join("big.bin")).unwrap());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..SIZE / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
    commit_all(&work, "big");
    std::fs::remove_file(work.join("big.bin")).unwrap();
    let url = format!("file://{}", work.display());

    let env = format!("t-stream-{}", std::process::id());
    let plan = devfiles::load_str("devfile.yaml", DEVFILE, &NoParents, &LoadOptions::default())
        .unwrap()
        .plan(&PlanOptions {
            repo: Some("demo".into()),
        })
        .0;
    rt.create(&PodSpec::new(&env, plan)).await.unwrap();
    let source = SourceSpec {
        clone_url: url,
        repo: "demo".into(),
        branch: "main".into(),
        new_branch: None,
        auth_header: None,
        git_user_name: "Dev".into(),
        git_user_email: "dev@example.com".into(),
    };
    // Reset the peak (Linux: writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_kib();
    let result = cove_agent::sources::checkout(&rt, &env, "main", "/projects", &source).await;
    let grown_mib = (peak_kib().saturating_sub(before)) / 1024;
    let size = rt
        .exec(
            &env,
            "main",
            &["stat", "-c", "%s", "/projects/demo/big.bin"],
            &[],
            None,
        )
        .await;
    rt.delete(&env).await.unwrap();
    assert!(result.unwrap(), "sources cloned");
    assert_eq!(size.unwrap().stdout.trim(), SIZE.to_string());
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while streaming a {} MiB tree",
        SIZE >> 20
    );
}
