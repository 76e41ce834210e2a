#![allow(clippy::unwrap_used)]
//! Deploy actions in their runs (issue 21, docs/deployments.md) through the real server and
//! store: the run's DTO names each deploy action's environment and where it stands (refused
//! with the reason, waiting for how many approvals from whom), and a deploy action waiting for
//! an environment's approvals ends at once — with a clear error, its run settled — when that
//! environment is deleted or stops requiring approvals, instead of waiting for its gate's
//! expiry. No agent runs here (`embedded_agent = false`).

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use cove_api::{JobState, Run, RunState};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/deploy";
const ENVS: &str = "/repos/admin/app/deploy/environments";

async fn call(
    server: &TestServer,
    method: Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = server
        .http
        .request(method, server.api(path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// `admin/app` with olga (owner) and walt (writer); environments `name → protection`, each with
/// a connection `<name>-account`; returns (olga, walt).
async fn setup(server: &TestServer, envs: &[(&str, Value)]) -> (String, String) {
    server
        .create_repo(&server.admin_token, "app")
        .await
        .unwrap();
    let olga = server.create_user("olga").await.unwrap();
    let walt = server.create_user("walt").await.unwrap();
    for (u, r) in [("olga", "owner"), ("walt", "writer")] {
        assert_eq!(
            server.put_member("admin/app", u, r).await.unwrap().status(),
            200
        );
    }
    for (name, protection) in envs {
        let (s, b) = call(
            server,
            Method::POST,
            &olga,
            ENVS,
            Some(json!({"name": name, "protection": protection})),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = call(
            server,
            Method::PUT,
            &server.admin_token,
            &format!("{ENVS}/{name}/connections/{name}-account"),
            Some(json!({"account_id": ACCOUNT, "region": "us-east-1", "roles": [ROLE]})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    (olga, walt)
}

/// One deploy action per environment (`Deploy<Env>` into `<env>`), plus a build.
fn workflow(envs: &[&str]) -> String {
    let mut out = String::from(
        "Name: deploy\nSchemaVersion: \"1.0\"\nRunMode: PARALLEL\nTriggers:\n  - Type: PUSH\n    Branches: ['.*']\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo build\n",
    );
    for env in envs {
        let mut action = env.to_string();
        action[..1].make_ascii_uppercase();
        out.push_str(&format!(
            "  Deploy{action}:\n    Identifier: aws/build@v1\n    Environment:\n      Name: {env}\n      Connections:\n        - Name: {env}-account\n          Role: {ROLE}\n    Configuration:\n      Steps:\n        - Run: echo {env}\n"
        ));
    }
    out
}

/// walt pushes `workflow` to `branch`; the run once `ready` holds.
async fn push_run(
    server: &TestServer,
    walt: &str,
    branch: &str,
    workflow: &str,
    ready: impl Fn(&Run) -> bool,
) -> Result<Run> {
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", branch]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/deploy.yaml",
        workflow.as_bytes(),
        "wf",
    )
    .await?;
    git_ok(
        dir,
        &[
            "push",
            "-q",
            &server.git_url("admin/app", Some(walt)),
            branch,
        ],
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = common::runs_of(server, "admin/app").await?;
        if let Some(r) = runs.into_iter().find(|r| r.branch == branch) {
            let run: Run = common::api_json(server, &format!("/runs/{}", r.id)).await?;
            if ready(&run) {
                return Ok(run);
            }
        }
        assert!(Instant::now() < deadline, "no settled run on {branch}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job<'a>(run: &'a Run, action: &str) -> &'a cove_api::Job {
    run.jobs.iter().find(|j| j.action == action).unwrap()
}

async fn get_run(server: &TestServer, id: i64) -> Run {
    common::api_json(server, &format!("/runs/{id}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_run_shows_each_deploy_action_with_its_environment() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let (olga, walt) = setup(
        &server,
        &[
            ("dev", json!({"branches": ["main"]})),
            (
                "prod",
                json!({"branches": ["main"], "required_approvals": 2, "approvers": ["olga", "admin"]}),
            ),
            ("qa", json!({"branches": ["release/*"]})),
        ],
    )
    .await;
    let run = push_run(
        &server,
        &walt,
        "main",
        &workflow(&["dev", "prod", "qa"]),
        |r| job(r, "DeployProd").state == JobState::WaitingApproval,
    )
    .await?;
    assert!(job(&run, "Build").deployment.is_none(), "{run:?}");
    let dev = job(&run, "DeployDev").deployment.clone().unwrap();
    assert_eq!(
        (dev.environment.as_str(), dev.state.as_str()),
        ("dev", "pending")
    );
    assert_eq!(dev.waiting, None);
    let prod = job(&run, "DeployProd").deployment.clone().unwrap();
    assert_eq!(prod.environment, "prod");
    assert_eq!(prod.state, "waiting_approval");
    assert_eq!(
        prod.waiting.as_deref(),
        Some("waiting for 2 approval(s) from olga, admin")
    );
    let qa = job(&run, "DeployQa").deployment.clone().unwrap();
    assert_eq!(
        (qa.environment.as_str(), qa.state.as_str()),
        ("qa", "refused")
    );
    assert!(
        qa.reason
            .as_deref()
            .unwrap_or_default()
            .contains("branch `main` may not deploy to environment `qa`"),
        "{qa:?}"
    );
    // One approval of two: one more needed.
    let (s, b) = call(
        &server,
        Method::POST,
        &olga,
        &format!("/runs/{}/actions/DeployProd/approve", run.id),
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let after: Run = serde_json::from_str(&b)?;
    assert_eq!(
        job(&after, "DeployProd")
            .deployment
            .as_ref()
            .and_then(|d| d.waiting.as_deref()),
        Some("waiting for 1 approval(s) from olga, admin")
    );
    // The runs list carries it too; the OpenAPI document describes the field.
    let runs = common::runs_of(&server, "admin/app").await?;
    assert!(runs[0].jobs.iter().any(|j| j.deployment.is_some()));
    let doc: Value = common::api_json(&server, "/openapi.json").await?;
    let schema = &doc["components"]["schemas"];
    assert!(
        schema["Job"]["properties"]["deployment"].is_object(),
        "{}",
        schema["Job"]
    );
    assert!(schema["JobDeployment"]["properties"]["waiting"].is_object());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_waiting_deploy_ends_when_its_environment_is_deleted_or_stops_requiring_approvals(
) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
    })
    .await?;
    let gated = json!({"required_approvals": 1, "approvers": ["olga"]});
    let (olga, walt) = setup(
        &server,
        &[("prod", gated.clone()), ("stage", gated.clone())],
    )
    .await;
    let run = push_run(&server, &walt, "main", &workflow(&["prod", "stage"]), |r| {
        job(r, "DeployProd").state == JobState::WaitingApproval
            && job(r, "DeployStage").state == JobState::WaitingApproval
    })
    .await?;

    // Deleting prod ends its waiting deploy at once, with the reason, in the job and its log.
    let (s, b) = call(
        &server,
        Method::DELETE,
        &olga,
        &format!("{ENVS}/prod"),
        None,
    )
    .await;
    assert_eq!(s, 204, "{b}");
    let now = get_run(&server, run.id).await;
    let prod = job(&now, "DeployProd");
    assert_eq!(prod.state, JobState::Failed, "{prod:?}");
    let error = prod.error.clone().unwrap_or_default();
    assert!(
        error.contains("deployment environment `prod` was deleted while this action waited"),
        "{error}"
    );
    let log = common::log_text(&server, run.id, "DeployProd").await?;
    assert!(log.contains("`prod` was deleted"), "{log}");
    assert_eq!(job(&now, "DeployStage").state, JobState::WaitingApproval);
    // Approving it now is refused as before (it no longer waits).
    let (s, _) = call(
        &server,
        Method::POST,
        &olga,
        &format!("/runs/{}/actions/DeployProd/approve", run.id),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 409);

    // Tightening or loosening the approvers keeps the gate; dropping approvals ends it.
    let (s, b) = call(
        &server,
        Method::PUT,
        &olga,
        &format!("{ENVS}/stage"),
        Some(json!({"protection": {"required_approvals": 1, "approvers": ["olga", "admin"]}})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        job(&get_run(&server, run.id).await, "DeployStage").state,
        JobState::WaitingApproval
    );
    let (s, b) = call(
        &server,
        Method::PUT,
        &olga,
        &format!("{ENVS}/stage"),
        Some(json!({"protection": {}})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let now = get_run(&server, run.id).await;
    let stage = job(&now, "DeployStage");
    assert_eq!(stage.state, JobState::Failed, "{stage:?}");
    assert!(
        stage
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("environment `stage` stopped requiring approvals"),
        "{stage:?}"
    );
    // The run settled: nothing waits, and with Build still pending it is not finished, but no
    // job of it waits for an approval any more.
    assert!(now
        .jobs
        .iter()
        .all(|j| j.state != JobState::WaitingApproval));
    let history: Vec<cove_api::Deployment> =
        common::api_json(&server, &format!("{ENVS}/stage/deployments")).await?;
    assert_eq!(history[0].state, "failed");

    // A deploy gate not yet open (its dependency still pending) whose environment is deleted
    // fails when it would open, instead of opening a gate no rule can approve.
    let (s, b) = call(
        &server,
        Method::POST,
        &olga,
        ENVS,
        Some(json!({"name": "later", "protection": gated})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &server,
        Method::PUT,
        &server.admin_token,
        &format!("{ENVS}/later/connections/later-account"),
        Some(json!({"account_id": ACCOUNT, "region": "us-east-1", "roles": [ROLE]})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let wf = workflow(&["later"]).replace(
        "  DeployLater:\n",
        "  DeployLater:\n    DependsOn: [Build]\n",
    );
    let second = push_run(&server, &walt, "feature", &wf, |r| {
        job(r, "Build").state == JobState::Pending
    })
    .await?;
    assert_eq!(job(&second, "DeployLater").state, JobState::Pending);
    let (s, _) = call(
        &server,
        Method::DELETE,
        &olga,
        &format!("{ENVS}/later"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let lease = cove_server::runs::try_lease(&server.state)
        .await?
        .expect("a Build is leased");
    let build = if lease.run_id == second.id {
        lease
    } else {
        // The first run's Build: finish it and lease again.
        cove_server::runs::try_lease(&server.state)
            .await?
            .expect("the second run's Build")
    };
    assert_eq!(build.run_id, second.id);
    assert!(
        server
            .state
            .store()
            .end_job(
                build.job_id,
                JobState::Running,
                Some(build.attempt),
                JobState::Succeeded,
                None,
                None,
                cove_server::store::now_ms(),
            )
            .await?
    );
    cove_server::runs::settle_run(&server.state, second.id).await?;
    let second = get_run(&server, second.id).await;
    let later = job(&second, "DeployLater");
    assert_eq!(later.state, JobState::Failed, "{later:?}");
    assert!(
        later
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("deleted or stopped requiring approvals"),
        "{later:?}"
    );
    assert_eq!(second.state, RunState::Failed);
    server.stop().await;
    Ok(())
}
