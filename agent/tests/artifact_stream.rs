//! An output artifact is collected into a temporary file and never held in memory: a job
//! that writes a 192 MiB artifact does not raise the agent's peak memory by more than a
//! few chunks. One test in its own binary: it reads and resets this process's peak RSS.

#![allow(clippy::unwrap_used)]

mod common;

use common::peak_kib;
use cove_agent::jobs::{run_job, ArtifactSpec, JobSpec, JobStatus, Script};
use cove_agent::mask::LogSink;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_large_output_artifact_is_spooled_not_buffered() {
    const SIZE: u64 = 192 << 20;
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    docker.ping().await.expect("a Docker engine must answer");
    let mut job = JobSpec::new(
        format!("t-artifact-stream-{}", std::process::id()),
        Script::Steps(vec![format!("head -c {SIZE} /dev/urandom > big.bin")]),
    );
    job.image = "cove/busybox:latest".into();
    job.outputs = vec![ArtifactSpec {
        name: "big".into(),
        files: vec!["big.bin".into()],
        ..Default::default()
    }];
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let mut sink = LogSink::new(tx);
    // Reset the peak (Linux: writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_kib();
    let result = run_job(&docker, &job, &mut sink, &CancellationToken::new())
        .await
        .unwrap();
    let grown_mib = peak_kib().saturating_sub(before) / 1024;
    drop(sink);
    drain.await.unwrap();
    assert_eq!(result.status, JobStatus::Succeeded);
    let artifact = &result.artifacts[0];
    let len = std::fs::metadata(artifact.tar.path()).unwrap().len();
    assert!(len > SIZE, "the tar holds the file ({len} bytes)");
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while collecting a {} MiB artifact",
        SIZE >> 20
    );
}
