//! The Docker backend through the `Backend` trait (`&dyn Backend`, as the environment code
//! uses it), on the real Docker engine: lifecycle, bounded exec with its exit code, the
//! streaming exec (stdin in, stdout and stderr apart, exit code), uploads and reads. The
//! test fails, never skips, when no engine answers.

#![allow(clippy::unwrap_used)]

use cove_agent::backend::{Backend, BackendKind};
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, NoParents, PlanOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn plan(yaml: &str) -> devfiles::EnvironmentPlan {
    devfiles::load_str("test.yaml", yaml, &NoParents, &LoadOptions::default())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_backend_through_the_trait() {
    let rt = Runtime::connect().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    );
    let env = unique("t-bk");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let b: &dyn Backend = &rt;
    assert_eq!(b.kind(), BackendKind::Docker);
    let one = "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest, mountSources: true}\n";
    let st = b.create(&PodSpec::new(&env, plan(one))).await.unwrap();
    assert!(st.running(), "{st:?}");

    let out = b
        .exec(
            &env,
            "main",
            &["sh", "-c", "echo $A; exit 4"],
            &[("A".into(), "1".into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.stdout.as_str()), (4, "1\n"));

    // streams: stdin reaches the command, stdout and stderr come apart, then the exit code
    let mut s = b
        .exec_streams(
            &env,
            "main",
            vec![
                "sh".into(),
                "-c".into(),
                "read line; echo \"out:$line\"; echo err >&2; exit 5".into(),
            ],
            None,
        )
        .await
        .unwrap();
    s.stdin.write_all(b"hello\n").await.unwrap();
    s.stdin.shutdown().await.unwrap();
    let mut stderr = s.stderr.take().expect("stderr apart without a TTY");
    let (mut out, mut err) = (String::new(), String::new());
    let (a, e) = tokio::join!(
        s.stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.unwrap();
    e.unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("out:hello\n", "err\n"));
    assert_eq!(s.exit.await.unwrap(), Some(5));

    // with a TTY: one stream
    let s = b
        .exec_streams(
            &env,
            "main",
            vec!["sh".into(), "-c".into(), "echo tty; exit 0".into()],
            Some((80, 24)),
        )
        .await
        .unwrap();
    assert!(s.stderr.is_none());
    assert!(s.resize.is_some());
    let mut stdout = s.stdout;
    let mut text = String::new();
    stdout.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("tty"), "{text:?}");
    assert_eq!(s.exit.await.unwrap(), Some(0));

    // files through the trait
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"through the trait\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "t.txt", &body[..]).unwrap();
    b.upload_tar(&env, "main", "/projects", tar.into_inner().unwrap())
        .await
        .unwrap();
    assert_eq!(
        b.read_file(&env, "main", "/projects/t.txt", 1024)
            .await
            .unwrap()
            .as_deref(),
        Some("through the trait\n")
    );

    b.stop(&env).await.unwrap();
    assert!(!b.status(&env).await.unwrap().unwrap().running());
    assert!(b.start(&env).await.unwrap().running());
    assert_eq!(
        b.read_file(&env, "main", "/projects/t.txt", 1024)
            .await
            .unwrap()
            .as_deref(),
        Some("through the trait\n")
    );
    b.delete(&env).await.unwrap();
    assert!(b.status(&env).await.unwrap().is_none());
}
