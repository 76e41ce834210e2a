#![allow(clippy::unwrap_used)]
//! Followed job logs are pushed, not polled (issue 19): lines written after a follower
//! subscribed reach it — the SSE stream of the browser and the plain-text `?follow=true` of
//! `cove run logs -f` — in order and complete while two jobs are written at the same time, and
//! a follower that does not read while many batches are stored catches up from the store
//! without losing a line. No Docker: the test plays the agent over the agent protocol.
//!
//! Nothing but the pushed batches can deliver the lines here within the bound: appending lines
//! no longer wakes the engine's progress notification, and the followers' safety re-check
//! (`log_follow::RECHECK`, 30 s) is longer than the bound of [`DEADLINE`].

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::TestServer;
use cove_api::{JobLease, JobLogLine, Run};
use futures_util::StreamExt;
use serde_json::json;

/// Generous bound for every line to arrive; well under `RECHECK`.
const DEADLINE: Duration = Duration::from_secs(20);

const WORKFLOW: &str = "Name: two\nSchemaVersion: \"1.0\"\nRunMode: PARALLEL\nTriggers:\n  - Type: PUSH\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo a\n  B:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo b\n";

async fn start() -> Result<TestServer> {
    TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.runs.reap_interval = Duration::from_secs(3600);
    })
    .await
}

async fn lease(server: &TestServer) -> Result<JobLease> {
    let resp = server
        .http
        .post(server.api("/agent/lease"))
        .bearer_auth(server.agent_token().await?)
        .json(&json!({ "wait_ms": 10_000 }))
        .send()
        .await?;
    if resp.status() != 200 {
        bail!("lease: {} {}", resp.status(), resp.text().await?);
    }
    Ok(resp.json().await?)
}

/// Stores lines `from..to` of `job` as the agent does: one batch after another.
async fn write(server: &TestServer, job: i64, from: u64, to: u64, per_batch: u64) -> Result<()> {
    let token = server.agent_token().await?;
    let mut seq = from;
    while seq < to {
        let end = (seq + per_batch).min(to);
        let lines: Vec<_> = (seq..end)
            .map(|s| json!({"seq": s, "stream": "stdout", "ts": 1, "text": format!("job{job}-line{s}")}))
            .collect();
        let resp = server
            .http
            .post(server.api(&format!("/agent/jobs/{job}/logs")))
            .bearer_auth(&token)
            .json(&json!({"attempt": 1, "lines": lines}))
            .send()
            .await?;
        if resp.status() != 204 {
            bail!("logs: {} {}", resp.status(), resp.text().await?);
        }
        seq = end;
    }
    Ok(())
}

async fn finish(server: &TestServer, job: i64) -> Result<()> {
    let resp = server
        .http
        .post(server.api(&format!("/agent/jobs/{job}/finish")))
        .bearer_auth(server.agent_token().await?)
        .json(&json!({"attempt": 1, "outcome": "succeeded", "variables": {}, "error": null, "retry": false}))
        .send()
        .await?;
    if resp.status() != 204 {
        bail!("finish: {} {}", resp.status(), resp.text().await?);
    }
    Ok(())
}

fn expected(job: i64, n: u64) -> Vec<String> {
    (0..n).map(|s| format!("job{job}-line{s}")).collect()
}

/// An SSE reader: `(event, data)` pairs.
struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Sse {
    async fn open(server: &TestServer, path: &str) -> Result<Sse> {
        let resp = server
            .http
            .get(server.api(path))
            .bearer_auth(&server.admin_token)
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("{path}: {}", resp.status());
        }
        Ok(Sse {
            body: resp.bytes_stream().boxed(),
            buf: String::new(),
        })
    }

    async fn next(&mut self) -> Result<Option<(String, String)>> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && event == "message" {
                    continue; // keep-alive comment
                }
                return Ok(Some((event, data)));
            }
            match self.body.next().await {
                Some(chunk) => self.buf.push_str(std::str::from_utf8(&chunk?)?),
                None => return Ok(None),
            }
        }
    }

    /// Texts of `lines` events until `want` lines came (seqs strictly increasing).
    async fn lines(&mut self, want: usize, last_seq: &mut Option<u64>) -> Result<Vec<String>> {
        let mut got = Vec::new();
        while got.len() < want {
            let Some((event, data)) = self.next().await? else {
                bail!("stream ended after {} lines", got.len())
            };
            if event != "lines" {
                bail!("unexpected event {event}: {data}");
            }
            for l in serde_json::from_str::<Vec<JobLogLine>>(&data)? {
                if last_seq.is_some_and(|s| l.seq <= s) {
                    bail!("seq {} after {last_seq:?}", l.seq);
                }
                *last_seq = Some(l.seq);
                got.push(l.text);
            }
        }
        Ok(got)
    }
}

/// A plain-text follower (`cove run logs -f`): its lines.
struct Text {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Text {
    async fn open(server: &TestServer, path: &str) -> Result<Text> {
        let resp = server
            .http
            .get(server.api(path))
            .bearer_auth(&server.admin_token)
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("{path}: {}", resp.status());
        }
        Ok(Text {
            body: resp.bytes_stream().boxed(),
            buf: String::new(),
        })
    }

    async fn lines(&mut self, want: usize) -> Result<Vec<String>> {
        let mut got = Vec::new();
        loop {
            while let Some(end) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=end).collect();
                got.push(line.trim_end_matches('\n').to_string());
            }
            if got.len() >= want {
                return Ok(got);
            }
            match self.body.next().await {
                Some(chunk) => self.buf.push_str(std::str::from_utf8(&chunk?)?),
                None => bail!("stream ended after {} lines", got.len()),
            }
        }
    }

    /// True when the body ends with nothing more.
    async fn ended(&mut self) -> Result<bool> {
        Ok(self.buf.is_empty() && self.body.next().await.is_none())
    }
}

async fn two_leased_jobs(server: &TestServer) -> Result<(Run, BTreeMap<String, i64>)> {
    let work = tempfile::tempdir()?;
    common::push_workflow(server, work.path(), "app", WORKFLOW).await?;
    let mut jobs = BTreeMap::new();
    for _ in 0..2 {
        let l = lease(server).await?;
        jobs.insert(l.action.clone(), l.job_id);
    }
    let runs: Vec<Run> = server
        .http
        .get(server.api("/repos/admin/app/runs"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    Ok((runs.into_iter().next().context("a run")?, jobs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_get_lines_written_after_they_subscribed_in_order_and_complete() -> Result<()> {
    let server = start().await?;
    let (run, jobs) = two_leased_jobs(&server).await?;
    let (a, b) = (jobs["A"], jobs["B"]);
    // One line each, so that every follower is known to be subscribed before the rest.
    write(&server, a, 0, 1, 1).await?;
    write(&server, b, 0, 1, 1).await?;
    let mut sse_a = Sse::open(&server, &format!("/runs/{}/jobs/A/logs/stream", run.id)).await?;
    let mut sse_b = Sse::open(&server, &format!("/runs/{}/jobs/B/logs/stream", run.id)).await?;
    let mut text_a = Text::open(
        &server,
        &format!("/runs/{}/jobs/A/logs?follow=true", run.id),
    )
    .await?;
    let (mut seq_a, mut seq_b) = (None, None);
    assert_eq!(sse_a.lines(1, &mut seq_a).await?, expected(a, 1));
    assert_eq!(sse_b.lines(1, &mut seq_b).await?, expected(b, 1));
    assert_eq!(text_a.lines(1).await?, expected(a, 1));

    // Two writers at once (two jobs), batches of 3 lines, 300 lines each.
    const N: u64 = 300;
    let got = tokio::time::timeout(DEADLINE, async {
        let (wa, wb, ra, rb, ta) = tokio::join!(
            write(&server, a, 1, N, 3),
            write(&server, b, 1, N, 3),
            sse_a.lines(N as usize - 1, &mut seq_a),
            sse_b.lines(N as usize - 1, &mut seq_b),
            text_a.lines(N as usize - 1),
        );
        wa?;
        wb?;
        anyhow::Ok((ra?, rb?, ta?))
    })
    .await
    .context("the lines written after the followers subscribed did not all arrive")??;
    assert_eq!(got.0, expected(a, N)[1..]);
    assert_eq!(got.1, expected(b, N)[1..]);
    assert_eq!(got.2, expected(a, N)[1..]);

    // The job ends: the SSE stream says so, the text follow ends, no channel is left.
    finish(&server, a).await?;
    let end = tokio::time::timeout(DEADLINE, sse_a.next()).await??;
    let (event, data) = end.context("an end event")?;
    assert_eq!(event, "end", "{data}");
    assert!(data.contains("succeeded"), "{data}");
    assert!(tokio::time::timeout(DEADLINE, text_a.ended()).await??);
    drop(sse_a);
    drop(sse_b);
    finish(&server, b).await?;
    let t = tokio::time::Instant::now();
    while server.state.log_hub().channels() > 0 && t.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.state.log_hub().channels(), 0, "channels left behind");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_falls_behind_catches_up_from_the_store_without_losing_lines() -> Result<()>
{
    use cove_server::runs::log_follow::{follow, Followed, CHANNEL_BATCHES};
    let server = start().await?;
    let (_run, jobs) = two_leased_jobs(&server).await?;
    let a = jobs["A"];
    write(&server, a, 0, 1, 1).await?;
    let mut follower = Box::pin(follow(server.state.clone(), a, None, 1000));
    let first = tokio::time::timeout(DEADLINE, follower.next()).await?;
    let Some(Followed::Lines(first)) = first else {
        bail!("first: {first:?}")
    };
    assert_eq!(
        first.iter().map(|l| &l.text).collect::<Vec<_>>(),
        expected(a, 1).iter().collect::<Vec<_>>()
    );
    // Four times more batches than the channel holds, while the follower does not read.
    let n = 1 + 4 * CHANNEL_BATCHES as u64 * 2;
    write(&server, a, 1, n, 2).await?;
    finish(&server, a).await?;
    let mut texts = Vec::new();
    let mut last = first.last().map(|l| l.seq);
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(item) = follower.next().await {
            match item {
                Followed::Lines(lines) => {
                    for l in lines {
                        assert!(
                            last.is_none_or(|s| l.seq == s + 1),
                            "seq {} after {last:?}",
                            l.seq
                        );
                        last = Some(l.seq);
                        texts.push(l.text);
                    }
                }
                Followed::End(state) => return Ok(state),
                Followed::Error(e) => bail!("store error: {e}"),
            }
        }
        bail!("ended without End")
    })
    .await??;
    assert_eq!(ended, Some(cove_api::JobState::Succeeded));
    assert_eq!(texts, expected(a, n)[1..]);
    drop(follower);
    assert_eq!(server.state.log_hub().channels(), 0);
    Ok(())
}
