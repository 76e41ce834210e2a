//! Pull requests on a real server with real git (issue 15): opening from a pushed branch,
//! revisions from pushes (approvals go stale), the diff with a rename, line comments and
//! replies, reviews, the three merge methods checked with the `git` CLI on the bare
//! repository, refusals (conflict, missing approval, destination moved), the merge firing
//! the destination's PUSH workflow, readers refused, per-repository numbering.

mod common;

use std::path::{Path, PathBuf};

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use serde_json::{json, Value};

struct Team {
    server: TestServer,
    alice: String,
    bob: String,
    rita: String,
    work: PathBuf,
}

const REPO: &str = "admin/pr";

const OLD_TXT: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n\
eleven\ntwelve\nthirteen\nfourteen\nfifteen\n";

impl Team {
    /// A server without the embedded agent (runs stay queued) on `database_url` (SQLite in
    /// the data directory when `None`).
    async fn start(database_url: Option<String>) -> Result<Team> {
        let server = TestServer::start_configured(|c| {
            c.embedded_agent = false;
            c.database_url = database_url;
        })
        .await?;
        let alice = server.create_user("alice").await?;
        let bob = server.create_user("bob").await?;
        let rita = server.create_user("rita").await?;
        server.create_repo(&server.admin_token, "pr").await?;
        for (user, role) in [("alice", "writer"), ("bob", "writer"), ("rita", "reader")] {
            let r = server.put_member(REPO, user, role).await?;
            let status = r.status();
            let body = r.text().await?;
            assert_eq!(status, 200, "{body}");
        }
        let work = server.tmp.path().join("work");
        std::fs::create_dir_all(&work)?;
        git_ok(&work, &["init", "-q", "-b", "main"]).await?;
        commit_file(&work, "a.txt", b"base\n", "base a").await?;
        commit_file(&work, "old.txt", OLD_TXT.as_bytes(), "base old").await?;
        let team = Team {
            alice,
            bob,
            rita,
            work,
            server,
        };
        team.push("main").await?;
        Ok(team)
    }

    async fn push(&self, branch: &str) -> Result<()> {
        let url = self.server.git_url(REPO, Some(&self.alice));
        git_ok(&self.work, &["push", "-q", "-f", &url, branch]).await?;
        Ok(())
    }

    async fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        call(&self.server, token, method, path, body).await
    }

    /// `git` on the hosted bare repository.
    async fn bare(&self, args: &[&str]) -> Result<String> {
        let dir = self.bare_dir();
        let mut full = vec!["--git-dir", dir.to_str().unwrap_or_default()];
        full.extend_from_slice(args);
        git_ok(&self.work, &full).await
    }

    fn bare_dir(&self) -> PathBuf {
        self.server
            .data_dir
            .join("repos")
            .join(format!("{REPO}.git"))
    }

    async fn open(&self, source: &str, reviewers: &[&str]) -> Result<Value> {
        let (status, pr) = self
            .api(
                &self.alice,
                "POST",
                &format!("/repos/{REPO}/pulls"),
                Some(json!({
                    "source": source,
                    "title": format!("Change {source}"),
                    "description": "It **changes** things.",
                    "reviewers": reviewers,
                })),
            )
            .await?;
        assert_eq!(status, 201, "{pr}");
        Ok(pr)
    }
}

async fn call(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = server
        .http
        .request(method.parse()?, server.api(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// No file of any working tree under the data directory: only bare repositories.
fn assert_no_working_tree(dir: &Path) {
    for entry in walk(dir) {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            !matches!(name, "a.txt" | "old.txt" | "new.txt" | "f1.txt" | "index"),
            "a working-tree file was left behind: {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn kinds(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_revise_review_comment_and_fast_forward() -> Result<()> {
    for database_url in backends().await? {
        open_revise_review_comment_and_fast_forward_on(database_url).await?;
    }
    Ok(())
}

async fn open_revise_review_comment_and_fast_forward_on(
    database_url: Option<String>,
) -> Result<()> {
    let t = Team::start(database_url).await?;
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "feature"]).await?;
    git_ok(w, &["mv", "old.txt", "new.txt"]).await?;
    git_ok(w, &["commit", "-q", "-m", "rename"]).await?;
    commit_file(w, "a.txt", b"base\nfeature\n", "feature a").await?;
    t.push("feature").await?;

    let pr = t.open("feature", &["bob"]).await?;
    assert_eq!(pr["number"], 1);
    assert_eq!(pr["state"], "open");
    assert_eq!(pr["destination"], "main");
    assert_eq!(pr["revision"], 1);
    assert_eq!(pr["reviewers"][0]["username"], "bob");
    let pulls = format!("/repos/{REPO}/pulls/1");

    // The diff against the merge base: the rename and the modification.
    let (status, diff) = t
        .api(&t.rita, "GET", &format!("{pulls}/diff"), None)
        .await?;
    assert_eq!(status, 200, "{diff}");
    assert_eq!(diff["files_changed"], 2, "{diff}");
    let files = diff["files"].as_array().cloned().unwrap_or_default();
    let renamed = files
        .iter()
        .find(|f| f["status"] == "renamed")
        .expect("a renamed file");
    assert_eq!(renamed["old_path"], "old.txt");
    assert_eq!(renamed["new_path"], "new.txt");
    let modified = files
        .iter()
        .find(|f| f["new_path"] == "a.txt")
        .expect("a.txt");
    assert!(modified["patch"]
        .as_str()
        .unwrap_or_default()
        .contains("+feature"));
    assert_eq!(diff["truncated"], false);
    let (_, commits) = t
        .api(&t.rita, "GET", &format!("{pulls}/commits"), None)
        .await?;
    assert_eq!(commits.as_array().map(Vec::len), Some(2), "{commits}");

    // A reader reads but cannot comment, review or merge.
    let (status, _) = t.api(&t.rita, "GET", &pulls, None).await?;
    assert_eq!(status, 200);
    let (status, _) = t
        .api(
            &t.rita,
            "POST",
            &format!("{pulls}/comments"),
            Some(json!({ "body": "no" })),
        )
        .await?;
    assert_eq!(status, 403);
    let (status, _) = t
        .api(
            &t.rita,
            "POST",
            &format!("{pulls}/merge"),
            Some(json!({ "method": "fast_forward" })),
        )
        .await?;
    assert_eq!(status, 403);

    // A line comment and a reply that joins its thread.
    let (status, line) = t
        .api(
            &t.bob,
            "POST",
            &format!("{pulls}/comments"),
            Some(json!({ "body": "why?", "path": "a.txt", "side": "new", "line": 2 })),
        )
        .await?;
    assert_eq!(status, 201, "{line}");
    assert_eq!(line["commit"], pr["head_sha"]);
    let (status, reply) = t
        .api(
            &t.alice,
            "POST",
            &format!("{pulls}/comments"),
            Some(json!({ "body": "because", "parent_id": line["id"] })),
        )
        .await?;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["parent_id"], line["id"]);
    assert_eq!(reply["path"], "a.txt");
    assert_eq!(reply["line"], 2);
    // Only its author edits a comment.
    let (status, _) = t
        .api(
            &t.alice,
            "PATCH",
            &format!("{pulls}/comments/{}", line["id"]),
            Some(json!({ "body": "hijack" })),
        )
        .await?;
    assert_eq!(status, 403);
    let (status, edited) = t
        .api(
            &t.bob,
            "PATCH",
            &format!("{pulls}/comments/{}", line["id"]),
            Some(json!({ "body": "why this line?" })),
        )
        .await?;
    assert_eq!(status, 200, "{edited}");
    let (_, comments) = t
        .api(&t.rita, "GET", &format!("{pulls}/comments"), None)
        .await?;
    assert_eq!(comments.as_array().map(Vec::len), Some(2));
    assert_eq!(comments[0]["body"], "why this line?");

    // Bob approves revision 1; a push makes revision 2 and the approval stale.
    let (status, review) = t
        .api(
            &t.bob,
            "POST",
            &format!("{pulls}/reviews"),
            Some(json!({ "verdict": "approve", "body": "ok" })),
        )
        .await?;
    assert_eq!(status, 201, "{review}");
    let (_, pr) = t.api(&t.rita, "GET", &pulls, None).await?;
    assert_eq!(pr["reviewers"][0]["verdict"], "approve");
    let head2 = commit_file(w, "a.txt", b"base\nfeature\nmore\n", "more").await?;
    t.push("feature").await?;
    let (_, pr) = t.api(&t.rita, "GET", &pulls, None).await?;
    assert_eq!(pr["revision"], 2, "{pr}");
    assert_eq!(pr["head_sha"], head2.as_str());
    assert_eq!(pr["reviewers"][0]["verdict"], Value::Null);
    let (_, reviews) = t
        .api(&t.rita, "GET", &format!("{pulls}/reviews"), None)
        .await?;
    assert_eq!(reviews[0]["stale"], true, "{reviews}");
    let (_, revisions) = t
        .api(&t.rita, "GET", &format!("{pulls}/revisions"), None)
        .await?;
    assert_eq!(revisions.as_array().map(Vec::len), Some(2));

    // Not mergeable without bob's approval of the current revision.
    let (_, m) = t
        .api(&t.alice, "GET", &format!("{pulls}/mergeable"), None)
        .await?;
    assert_eq!(m["mergeable"], false);
    let (status, refused) = t
        .api(
            &t.alice,
            "POST",
            &format!("{pulls}/merge"),
            Some(json!({ "method": "fast_forward" })),
        )
        .await?;
    assert_eq!(status, 409, "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("required reviewer bob has not approved"),
        "{text}"
    );
    let main_before = t.bare(&["rev-parse", "refs/heads/main"]).await?;

    let (status, _) = t
        .api(
            &t.bob,
            "POST",
            &format!("{pulls}/reviews"),
            Some(json!({ "verdict": "approve" })),
        )
        .await?;
    assert_eq!(status, 201);
    let (_, m) = t
        .api(&t.alice, "GET", &format!("{pulls}/mergeable"), None)
        .await?;
    assert_eq!(m["mergeable"], true, "{m}");
    let (status, merged) = t
        .api(
            &t.alice,
            "POST",
            &format!("{pulls}/merge"),
            Some(json!({ "method": "fast_forward", "delete_source": true })),
        )
        .await?;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["state"], "merged");
    assert_eq!(merged["merge_sha"], head2.as_str());
    assert_eq!(t.bare(&["rev-parse", "refs/heads/main"]).await?, head2);
    assert_eq!(
        t.bare(&["rev-parse", "refs/heads/main~3"]).await?,
        main_before,
        "fast-forward keeps history linear"
    );
    assert!(t
        .bare(&["rev-parse", "--verify", "-q", "refs/heads/feature"])
        .await
        .is_err());
    assert_no_working_tree(&t.server.data_dir);

    // The merge is recorded as a push by alice, and as pull-request events.
    let (_, pushes) = t
        .api(&t.rita, "GET", &format!("/repos/{REPO}/events"), None)
        .await?;
    let pushes = pushes.as_array().cloned().unwrap_or_default();
    let main_push = pushes
        .iter()
        .rev()
        .find(|e| e["ref_name"] == "refs/heads/main")
        .expect("a push event for main");
    assert_eq!(main_push["new_sha"], head2.as_str());
    assert_eq!(main_push["old_sha"], main_before.as_str());
    assert_eq!(main_push["pusher"], "alice");
    let (_, events) = t
        .api(&t.rita, "GET", &format!("{pulls}/events"), None)
        .await?;
    assert_eq!(
        kinds(&events),
        [
            "pr_opened",
            "comment_added",
            "comment_added",
            "review_submitted",
            "pr_revision",
            "review_submitted",
            "pr_merged"
        ],
        "{events}"
    );
    t.server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_commit_squash_conflict_and_numbering() -> Result<()> {
    for database_url in backends().await? {
        merge_commit_squash_conflict_and_numbering_on(database_url).await?;
    }
    Ok(())
}

async fn merge_commit_squash_conflict_and_numbering_on(database_url: Option<String>) -> Result<()> {
    let t = Team::start(database_url).await?;
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "f1"]).await?;
    let f1 = commit_file(w, "f1.txt", b"one\n", "f1").await?;
    t.push("f1").await?;
    git_ok(w, &["checkout", "-q", "main"]).await?;
    git_ok(w, &["checkout", "-q", "-b", "f2"]).await?;
    commit_file(w, "f2.txt", b"two\n", "f2 a").await?;
    commit_file(w, "f2b.txt", b"two b\n", "f2 b").await?;
    t.push("f2").await?;
    git_ok(w, &["checkout", "-q", "main"]).await?;
    git_ok(w, &["checkout", "-q", "-b", "f3"]).await?;
    commit_file(w, "a.txt", b"theirs\n", "f3 a").await?;
    t.push("f3").await?;
    git_ok(w, &["checkout", "-q", "main"]).await?;
    commit_file(w, "a.txt", b"ours\n", "main a").await?;
    t.push("main").await?;

    // Numbers are per repository and sequential.
    for (n, branch) in [(1, "f1"), (2, "f2"), (3, "f3")] {
        let pr = t.open(branch, &[]).await?;
        assert_eq!(pr["number"], n);
    }

    // main moved since f1 branched off: no fast-forward, with the reason.
    let (status, refused) = t
        .api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/1/merge"),
            Some(json!({ "method": "fast_forward" })),
        )
        .await?;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("cannot be fast-forwarded"),
        "{refused}"
    );

    // A merge commit: two parents, the old main and f1's head.
    let main1 = t.bare(&["rev-parse", "refs/heads/main"]).await?;
    let (status, merged) = t
        .api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/1/merge"),
            Some(json!({ "method": "merge" })),
        )
        .await?;
    assert_eq!(status, 200, "{merged}");
    let main2 = t.bare(&["rev-parse", "refs/heads/main"]).await?;
    assert_eq!(merged["merge_sha"], main2.as_str());
    assert_eq!(
        t.bare(&["log", "-1", "--format=%P", "refs/heads/main"])
            .await?,
        format!("{main1} {f1}")
    );
    assert_eq!(t.bare(&["show", "refs/heads/main:f1.txt"]).await?, "one");
    assert_eq!(t.bare(&["show", "refs/heads/main:a.txt"]).await?, "ours");

    // A squash: one parent, both of f2's files, the PR number in the message.
    let (status, merged) = t
        .api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/2/merge"),
            Some(json!({ "method": "squash" })),
        )
        .await?;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(
        t.bare(&["log", "-1", "--format=%P", "refs/heads/main"])
            .await?,
        main2
    );
    assert!(t
        .bare(&["log", "-1", "--format=%s", "refs/heads/main"])
        .await?
        .contains("(#2)"));
    assert_eq!(t.bare(&["show", "refs/heads/main:f2b.txt"]).await?, "two b");
    let main3 = t.bare(&["rev-parse", "refs/heads/main"]).await?;

    // f3 conflicts with main on a.txt: refused with the path, main untouched.
    let (_, m) = t
        .api(
            &t.alice,
            "GET",
            &format!("/repos/{REPO}/pulls/3/mergeable"),
            None,
        )
        .await?;
    assert_eq!(m["mergeable"], false);
    for method in ["merge", "squash"] {
        let (status, refused) = t
            .api(
                &t.alice,
                "POST",
                &format!("/repos/{REPO}/pulls/3/merge"),
                Some(json!({ "method": method })),
            )
            .await?;
        assert_eq!(status, 409, "{refused}");
        assert!(
            refused.to_string().contains("conflict in a.txt"),
            "{refused}"
        );
    }
    assert_eq!(t.bare(&["rev-parse", "refs/heads/main"]).await?, main3);

    // The repository may narrow the methods; only owners set them.
    let settings = json!({ "allowed_merge_methods": ["squash"], "stale_approvals": true });
    let (status, _) = t
        .api(
            &t.alice,
            "PUT",
            &format!("/repos/{REPO}/pull-settings"),
            Some(settings.clone()),
        )
        .await?;
    assert_eq!(status, 403);
    let (status, _) = t
        .api(
            &t.server.admin_token,
            "PUT",
            &format!("/repos/{REPO}/pull-settings"),
            Some(settings),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, refused) = t
        .api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/3/merge"),
            Some(json!({ "method": "merge" })),
        )
        .await?;
    assert_eq!(status, 409);
    assert!(
        refused.to_string().contains("does not allow merge"),
        "{refused}"
    );

    // Closing: by its author; a closed PR is not merged.
    let (status, closed) = t
        .api(
            &t.bob,
            "POST",
            &format!("/repos/{REPO}/pulls/3/close"),
            None,
        )
        .await?;
    assert_eq!(status, 403, "{closed}");
    let (status, closed) = t
        .api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/3/close"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    let (_, all) = t
        .api(
            &t.rita,
            "GET",
            &format!("/repos/{REPO}/pulls?state=all"),
            None,
        )
        .await?;
    let states: Vec<_> = all
        .as_array()
        .map(|a| a.iter().map(|p| p["state"].to_string()).collect())
        .unwrap_or_default();
    assert_eq!(states, ["\"closed\"", "\"merged\"", "\"merged\""]);
    assert_no_working_tree(&t.server.data_dir);
    t.server.stop().await;
    Ok(())
}

const PUSH_MAIN: &str = "Name: on-main
SchemaVersion: \"1.0\"
Triggers:
  - Type: PUSH
    Branches:
      - main
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo merged
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_starts_the_destinations_push_workflow() -> Result<()> {
    // No agent: the run is created from the merge's push event and stays queued.
    let t = Team::start(None).await?;
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "wf"]).await?;
    let head = commit_file(
        w,
        ".codecatalyst/workflows/main.yaml",
        PUSH_MAIN.as_bytes(),
        "workflow",
    )
    .await?;
    t.push("wf").await?;
    let runs: Vec<cove_api::Run> = common::runs_of(&t.server, REPO).await?;
    assert!(runs.is_empty(), "a push to wf starts nothing: {runs:?}");
    // Subscribers (notifications) get the pull request's events after they are stored.
    let mut bus = t.server.state.subscribe_pulls();
    t.open("wf", &[]).await?;
    let (status, merged) = t
        .api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/1/merge"),
            Some(json!({ "method": "fast_forward" })),
        )
        .await?;
    assert_eq!(status, 200, "{merged}");
    let opened = bus.recv().await?;
    assert_eq!((opened.kind.as_str(), opened.number), ("pr_opened", 1));
    assert_eq!(opened.repo, REPO);
    let merged_event = bus.recv().await?;
    assert_eq!(merged_event.kind, "pr_merged");
    assert_eq!(merged_event.actor.as_deref(), Some("alice"));
    assert_eq!(merged_event.detail, head);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let runs = common::runs_of(&t.server, REPO).await?;
        if let Some(run) = runs.iter().find(|r| r.branch == "main") {
            assert_eq!(run.commit, head);
            assert_eq!(run.workflow, "on-main");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run for main after the merge: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    t.server.stop().await;
    Ok(())
}

/// SQLite (`None`), plus a fresh PostgreSQL database when `COVE_TEST_POSTGRES_URL` is set.
async fn backends() -> Result<Vec<Option<String>>> {
    let mut out = vec![None];
    if let Some(base) = common::postgres_base_url() {
        out.push(Some(common::create_postgres_db(&base, "cove_pulls").await?));
    }
    Ok(out)
}

/// Ten pull requests opened at once get #1 … #10, each once, on SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_allocated_atomically_on_every_backend() -> Result<()> {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    assert!(
        !ci || common::postgres_base_url().is_some(),
        "CI=true but COVE_TEST_POSTGRES_URL is not set"
    );
    for database_url in backends().await? {
        let t = Team::start(database_url.clone()).await?;
        let url = t.server.git_url(REPO, Some(&t.alice));
        for i in 0..10 {
            let branch = format!("b{i}");
            git_ok(&t.work, &["checkout", "-q", "-b", &branch, "main"]).await?;
            commit_file(&t.work, &format!("{branch}.txt"), b"x\n", &branch).await?;
            git_ok(&t.work, &["push", "-q", &url, &branch]).await?;
        }
        let opened = futures_util::future::join_all((0..10).map(|i| {
            let t = &t;
            async move { t.open(&format!("b{i}"), &[]).await }
        }))
        .await;
        let mut numbers = Vec::new();
        for pr in opened {
            numbers.push(pr?["number"].as_i64().unwrap_or_default());
        }
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (1..=10).collect::<Vec<_>>(),
            "backend {database_url:?}"
        );
        t.server.stop().await;
    }
    Ok(())
}

/// Oversized input is refused with the bound and creates nothing; an oversized patch is cut
/// at the per-file cap and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_are_bounded_and_truncation_is_said() -> Result<()> {
    let t = Team::start(None).await?;
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "big"]).await?;
    // ~2 MiB of text in one file: its patch passes the 1 MiB per-file cap.
    let big: String = (0..40_000)
        .map(|i| format!("line {i:06} of a file that is much too large to review\n"))
        .collect();
    commit_file(w, "big.txt", big.as_bytes(), "big").await?;
    t.push("big").await?;
    let pulls = format!("/repos/{REPO}/pulls");
    for (field, value) in [
        ("title", "t".repeat(513)),
        ("description", "d".repeat(64 * 1024 + 1)),
    ] {
        let mut body = json!({ "source": "big", "title": "ok" });
        body[field] = json!(value);
        let (status, refused) = t.api(&t.alice, "POST", &pulls, Some(body)).await?;
        assert_eq!(status, 400, "{field}: {refused}");
        assert!(refused.to_string().contains("at most"), "{refused}");
    }
    let (status, refused) = t
        .api(
            &t.alice,
            "POST",
            &pulls,
            Some(json!({ "source": "big", "title": "ok", "reviewers": ["nobody"] })),
        )
        .await?;
    assert_eq!(status, 400, "{refused}");
    let (status, refused) = t
        .api(
            &t.alice,
            "POST",
            &pulls,
            Some(json!({ "source": "big", "title": "ok", "reviewers": ["alice"] })),
        )
        .await?;
    assert_eq!(status, 400, "{refused}");
    assert!(refused
        .to_string()
        .contains("author cannot be a required reviewer"));
    let (_, all) = t
        .api(&t.alice, "GET", &format!("{pulls}?state=all"), None)
        .await?;
    assert_eq!(all, json!([]), "a refused request creates nothing");

    let pr = t.open("big", &[]).await?;
    let (status, diff) = t
        .api(
            &t.alice,
            "GET",
            &format!("{pulls}/{}/diff", pr["number"]),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(diff["truncated"], true);
    assert!(
        diff["truncated_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("1024 KiB per file"),
        "{}",
        diff["truncated_reason"]
    );
    let file = &diff["files"][0];
    assert_eq!(file["truncated"], true);
    assert_eq!(file["additions"], 40_000);
    assert!(file["patch"].as_str().unwrap_or_default().len() <= 1024 * 1024);
    t.server.stop().await;
    Ok(())
}

/// A push the server stored on disk but never saw (it stopped in between) becomes a revision
/// of the open pull request at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_missed_while_down_is_a_revision_at_start() -> Result<()> {
    let t = Team::start(None).await?;
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "feature"]).await?;
    commit_file(w, "a.txt", b"one\n", "one").await?;
    t.push("feature").await?;
    t.open("feature", &["bob"]).await?;
    let (status, _) = t
        .api(
            &t.bob,
            "POST",
            &format!("/repos/{REPO}/pulls/1/reviews"),
            Some(json!({ "verdict": "approve" })),
        )
        .await?;
    assert_eq!(status, 201);
    // Straight into the bare repository, behind the server's back.
    let head = commit_file(w, "a.txt", b"two\n", "two").await?;
    let bare = t.bare_dir();
    git_ok(
        w,
        &["push", "-q", bare.to_str().unwrap_or_default(), "feature"],
    )
    .await?;
    let Team { server, alice, .. } = t;
    let server = server.restart().await?;
    let (status, pr) = call(
        &server,
        &alice,
        "GET",
        &format!("/repos/{REPO}/pulls/1"),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(pr["revision"], 2, "{pr}");
    assert_eq!(pr["head_sha"], head.as_str());
    assert_eq!(
        pr["reviewers"][0]["verdict"],
        Value::Null,
        "the approval went stale"
    );
    let (_, events) = call(
        &server,
        &alice,
        "GET",
        &format!("/repos/{REPO}/pulls/1/events"),
        None,
    )
    .await?;
    let last = events
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["kind"], "pr_revision");
    assert_eq!(last["actor"], Value::Null);
    server.stop().await;
    Ok(())
}

/// The destination's branch rule takes part in the merge decision (`forge::merge::requirements`
/// → `forge::rules::merge_requirements`): its approvals, required checks and who may merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destinations_branch_rule_gates_the_merge() -> Result<()> {
    let t = Team::start(None).await?;
    let (status, body) = t
        .api(
            &t.server.admin_token,
            "PUT",
            &format!("/repos/{REPO}/branch-rules"),
            Some(json!({ "rules": [{
                "pattern": "main",
                "require_pull_request": true,
                "required_approvals": 1,
                "required_checks": ["ci"],
                "merge_roles": [],
                "merge_users": ["bob"],
                "allow_force_push": false,
                "allow_deletion": false,
            }] })),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "ruled"]).await?;
    commit_file(w, "a.txt", b"changed\n", "change a").await?;
    t.push("ruled").await?;
    t.open("ruled", &[]).await?;
    let t = &t;
    let merge = |token: String| async move {
        t.api(
            &token,
            "POST",
            &format!("/repos/{REPO}/pulls/1/merge"),
            Some(json!({ "method": "merge" })),
        )
        .await
    };
    // No approval, no green `ci`, and alice may not merge into main.
    let (status, refused) = merge(t.alice.clone()).await?;
    assert_eq!(status, 409, "{refused}");
    let text = refused.to_string();
    for needle in ["approval", "ci", "alice"] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    // Bob approves: the approval is counted; the check is still missing.
    let (status, body) = t
        .api(
            &t.bob,
            "POST",
            &format!("/repos/{REPO}/pulls/1/reviews"),
            Some(json!({ "verdict": "approve", "body": "ok" })),
        )
        .await?;
    assert!(status == 200 || status == 201, "{body}");
    let (status, refused) = merge(t.bob.clone()).await?;
    assert_eq!(status, 409, "{refused}");
    let text = refused.to_string();
    assert!(text.contains("ci"), "{text}");
    assert!(!text.contains("approval"), "the approval counts: {text}");
    // The main branch is unchanged by the refusals.
    let main = t.bare(&["rev-parse", "refs/heads/main"]).await?;
    let base = git_ok(w, &["rev-parse", "main"]).await?;
    assert_eq!(main.trim(), base.trim());
    Ok(())
}

/// A rule with `require_up_to_date` refuses the merge while the source branch lacks the
/// destination's latest commit, and allows it once the destination was merged into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_out_of_date_branch_merges_only_when_the_rule_allows() -> Result<()> {
    let t = Team::start(None).await?;
    let (status, body) = t
        .api(
            &t.server.admin_token,
            "PUT",
            &format!("/repos/{REPO}/branch-rules"),
            Some(json!({ "rules": [{ "pattern": "main", "require_up_to_date": true }] })),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let w = &t.work;
    git_ok(w, &["checkout", "-q", "-b", "behind"]).await?;
    commit_file(w, "b.txt", b"from the branch\n", "branch change").await?;
    t.push("behind").await?;
    t.open("behind", &[]).await?;
    // main moves on after the branch was cut
    git_ok(w, &["checkout", "-q", "main"]).await?;
    commit_file(w, "m.txt", b"main moved\n", "main moves").await?;
    t.push("main").await?;
    let merge = || async {
        t.api(
            &t.alice,
            "POST",
            &format!("/repos/{REPO}/pulls/1/merge"),
            Some(json!({ "method": "merge" })),
        )
        .await
    };
    let (status, refused) = merge().await?;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("out of date with main"),
        "{refused}"
    );
    let (status, mergeable) = t
        .api(
            &t.alice,
            "GET",
            &format!("/repos/{REPO}/pulls/1/mergeable"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{mergeable}");
    assert!(mergeable.to_string().contains("out of date"), "{mergeable}");
    // The branch takes main in: the same merge goes through.
    git_ok(w, &["checkout", "-q", "behind"]).await?;
    git_ok(w, &["merge", "-q", "--no-edit", "main"]).await?;
    t.push("behind").await?;
    let (status, merged) = merge().await?;
    assert_eq!(status, 200, "{merged}");
    Ok(())
}
