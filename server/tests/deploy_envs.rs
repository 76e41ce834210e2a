#![allow(clippy::unwrap_used)]
//! Deployment environments (issue 21) through the real server and store: who may manage
//! environments, connections (administrators only) and variables (secrets write-only), and
//! what they do to runs — deploy actions refused before anything is leased (unknown
//! environment, branch not allowed, a pusher who may not deploy, a role the administrator did
//! not allow), a protected environment's action waiting for its approvers and leased once
//! approved, with the environment's variables and secrets in its lease. No agent runs here:
//! the test leases jobs itself (`runs::try_lease`), so what would be leased is observable.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use cove_api::{DeployEnvironment, Deployment, JobState, Run};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const DEPLOY_ROLE: &str = "arn:aws:iam::123456789012:role/deploy";

async fn call(
    server: &TestServer,
    method: reqwest::Method,
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

/// `admin/app` with olga owner, walt writer, rita reader; returns their tokens.
async fn team(server: &TestServer) -> (String, String, String) {
    server
        .create_repo(&server.admin_token, "app")
        .await
        .unwrap();
    let olga = server.create_user("olga").await.unwrap();
    let walt = server.create_user("walt").await.unwrap();
    let rita = server.create_user("rita").await.unwrap();
    for (u, r) in [("olga", "owner"), ("walt", "writer"), ("rita", "reader")] {
        assert_eq!(
            server.put_member("admin/app", u, r).await.unwrap().status(),
            200
        );
    }
    (olga, walt, rita)
}

const ENVS: &str = "/repos/admin/app/deploy/environments";

#[tokio::test]
async fn environments_connections_and_variables_follow_their_rules() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let (olga, walt, rita) = team(&server).await;
    use reqwest::Method as M;
    // Owners create environments; writers and readers may not.
    let prod = json!({"name": "prod", "description": "production",
        "protection": {"required_approvals": 1, "approvers": ["olga"], "branches": ["main"]}});
    assert_eq!(
        call(&server, M::POST, &walt, ENVS, Some(prod.clone()))
            .await
            .0,
        403
    );
    assert_eq!(
        call(&server, M::POST, &rita, ENVS, Some(prod.clone()))
            .await
            .0,
        403
    );
    let (status, body) = call(&server, M::POST, &olga, ENVS, Some(prod.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(call(&server, M::POST, &olga, ENVS, Some(prod)).await.0, 409);
    let (status, body) = call(
        &server,
        M::POST,
        &olga,
        ENVS,
        Some(
            json!({"name": "a b", "protection": {"required_approvals": 2, "approvers": ["olga"]}}),
        ),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body.contains("name \\\"a b\\\"") && body.contains("more than the 1"),
        "{body}"
    );

    // Connections: administrators only; the role must be an IAM role of that account.
    let conn = format!("{ENVS}/prod/connections/prod-account");
    let good = json!({"account_id": ACCOUNT, "region": "us-east-1", "roles": [DEPLOY_ROLE]});
    assert_eq!(
        call(&server, M::PUT, &olga, &conn, Some(good.clone()))
            .await
            .0,
        403
    );
    let (status, body) = call(
        &server,
        M::PUT,
        &server.admin_token,
        &conn,
        Some(json!({"account_id": ACCOUNT, "region": "us-east-1",
            "roles": ["arn:aws:iam::210987654321:role/deploy"], "endpoints": "nowhere"})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body.contains("not in the connection's account") && body.contains("nowhere"),
        "{body}"
    );
    let (status, body) = call(&server, M::PUT, &server.admin_token, &conn, Some(good)).await;
    assert_eq!(status, 200, "{body}");

    // Variables: owners; a secret is never shown again.
    let secret = "s3cr3t-deploy-value-91";
    let (status, body) = call(
        &server,
        M::PUT,
        &olga,
        &format!("{ENVS}/prod/variables/API_KEY"),
        Some(json!({"value": secret, "secret": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!body.contains(secret), "{body}");
    assert_eq!(
        call(
            &server,
            M::PUT,
            &walt,
            &format!("{ENVS}/prod/variables/REGION"),
            Some(json!({"value": "eu-west-1"}))
        )
        .await
        .0,
        403
    );
    let (status, _) = call(
        &server,
        M::PUT,
        &olga,
        &format!("{ENVS}/prod/variables/REGION"),
        Some(json!({"value": "eu-west-1"})),
    )
    .await;
    assert_eq!(status, 200);

    // Readers see everything but the secret's value.
    let (status, body) = call(&server, M::GET, &rita, &format!("{ENVS}/prod"), None).await;
    assert_eq!(status, 200);
    assert!(!body.contains(secret), "{body}");
    let env: DeployEnvironment = serde_json::from_str(&body)?;
    assert_eq!(env.connections.len(), 1);
    assert_eq!(env.connections[0].roles, vec![DEPLOY_ROLE.to_string()]);
    assert_eq!(env.protection.approvers, vec!["olga".to_string()]);
    let vars: Vec<(String, bool, Option<String>)> = env
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.secret, v.value.clone()))
        .collect();
    assert_eq!(
        vars,
        vec![
            ("API_KEY".into(), true, None),
            ("REGION".into(), false, Some("eu-west-1".into()))
        ]
    );
    // Sealed at rest.
    let raw: Vec<String> = sqlx_values(&server).await;
    assert!(raw.iter().all(|v| !v.contains(secret)), "{raw:?}");
    // Updates keep the name; deleting removes connections and variables too.
    let (status, _) = call(
        &server,
        M::PUT,
        &olga,
        &format!("{ENVS}/prod"),
        Some(json!({"description": "prod!", "protection": {}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&server, M::DELETE, &olga, &format!("{ENVS}/prod"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&server, M::GET, &olga, &format!("{ENVS}/prod"), None)
            .await
            .0,
        404
    );
    assert!(sqlx_values(&server).await.is_empty());
    server.stop().await;
    Ok(())
}

/// Every stored variable value, as the database holds it.
async fn sqlx_values(server: &TestServer) -> Vec<String> {
    let mut out = Vec::new();
    let repo = server
        .state
        .store()
        .repo("admin", "app")
        .await
        .unwrap()
        .unwrap();
    for e in server.state.store().deploy_envs(repo.id).await.unwrap() {
        for v in server.state.store().deploy_variables(e.id).await.unwrap() {
            out.push(v.value);
        }
    }
    out
}

fn workflow(branch: &str) -> String {
    format!(
        r#"Name: deploy
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [{branch}]
Actions:
  DeployDev:
    Identifier: aws/build@v1
    Environment:
      Name: dev
      Connections:
        - Name: dev-account
          Role: {DEPLOY_ROLE}
    Configuration:
      Steps:
        - Run: echo dev
  DeployProd:
    Identifier: aws/build@v1
    Environment:
      Name: prod
      Connections:
        - Name: prod-account
          Role: {DEPLOY_ROLE}
    Configuration:
      Steps:
        - Run: echo prod
  OpsOnly:
    Identifier: aws/build@v1
    Environment:
      Name: ops
    Configuration:
      Steps:
        - Run: echo ops
  Unknown:
    Identifier: aws/build@v1
    Environment:
      Name: staging
      Connections:
        - Name: dev-account
          Role: {DEPLOY_ROLE}
    Configuration:
      Steps:
        - Run: echo staging
  BadRole:
    Identifier: aws/build@v1
    Environment:
      Name: dev
      Connections:
        - Name: dev-account
          Role: arn:aws:iam::123456789012:role/admin
    Configuration:
      Steps:
        - Run: echo admin
  Packages:
    Identifier: aws/build@v1
    Environment:
      Name: not-a-deploy-environment
    Configuration:
      Steps:
        - Run: echo packages
"#
    )
}

async fn wait_run(server: &TestServer, branch: &str) -> Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = common::runs_of(server, "admin/app").await.unwrap();
        if let Some(r) = runs.into_iter().find(|r| r.branch == branch) {
            return r;
        }
        assert!(Instant::now() < deadline, "no run on {branch}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_run(server: &TestServer, id: i64) -> Run {
    common::api_json(server, &format!("/runs/{id}"))
        .await
        .unwrap()
}

/// The run once `ready` holds (a new run's refusals and gates are applied just after it is
/// stored).
async fn settled(server: &TestServer, id: i64, ready: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = get_run(server, id).await;
        if ready(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} did not settle: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job<'a>(run: &'a Run, action: &str) -> &'a cove_api::Job {
    run.jobs.iter().find(|j| j.action == action).unwrap()
}

/// Leases every job that can be leased now; the leases by action.
async fn lease_all(server: &TestServer) -> Vec<cove_api::JobLease> {
    let mut out = Vec::new();
    while let Some(l) = cove_server::runs::try_lease(&server.state).await.unwrap() {
        out.push(l);
    }
    out
}

#[tokio::test]
async fn deploy_actions_are_checked_before_anything_is_leased() -> Result<()> {
    deploy_actions_on(None).await
}

/// The same on PostgreSQL (every query of `store/deploy.rs` and the gate path).
#[tokio::test]
async fn deploy_actions_are_checked_before_anything_is_leased_on_postgres() -> Result<()> {
    let Some(url) = common::postgres_db_or_skip("deploy").await? else {
        return Ok(());
    };
    deploy_actions_on(Some(url.clone())).await?;
    common::drop_postgres_db(&common::postgres_base_url().unwrap(), &url).await
}

async fn deploy_actions_on(database_url: Option<String>) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.database_url = database_url;
    })
    .await?;
    let (olga, walt, rita) = team(&server).await;
    use reqwest::Method as M;
    for (name, protection) in [
        ("dev", json!({"branches": ["main"]})),
        (
            "prod",
            json!({"branches": ["main"], "required_approvals": 1, "approvers": ["olga"]}),
        ),
        ("ops", json!({"deployers": ["olga"]})),
    ] {
        let (s, b) = call(
            &server,
            M::POST,
            &olga,
            ENVS,
            Some(json!({"name": name, "protection": protection})),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    for (env, conn) in [("dev", "dev-account"), ("prod", "prod-account")] {
        let (s, b) = call(
            &server,
            M::PUT,
            &server.admin_token,
            &format!("{ENVS}/{env}/connections/{conn}"),
            Some(json!({"account_id": ACCOUNT, "region": "us-east-1", "roles": [DEPLOY_ROLE]})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let secret = "prod-secret-value-7731";
    for (name, value, is_secret) in [("TARGET", "prod-bucket", false), ("TOKEN", secret, true)] {
        let (s, _) = call(
            &server,
            M::PUT,
            &olga,
            &format!("{ENVS}/prod/variables/{name}"),
            Some(json!({"value": value, "secret": is_secret})),
        )
        .await;
        assert_eq!(s, 200);
    }

    // walt (a writer) pushes the workflow to main.
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/deploy.yaml",
        workflow("'.*'").as_bytes(),
        "wf",
    )
    .await?;
    let url = server.git_url("admin/app", Some(&walt));
    git_ok(dir, &["push", "-q", &url, "main"]).await?;
    let run = wait_run(&server, "main").await;
    let run = settled(&server, run.id, |r| {
        job(r, "DeployProd").state == JobState::WaitingApproval
    })
    .await;
    let failed = |a: &str| {
        let j = job(&run, a);
        assert_eq!(j.state, JobState::Failed, "{a}: {j:?}");
        j.error.clone().unwrap_or_default()
    };
    assert!(failed("Unknown").contains("`staging` does not exist"));
    assert!(failed("BadRole").contains("not one the administrator allowed"));
    assert!(failed("OpsOnly").contains("walt may not deploy to environment `ops`"));
    assert_eq!(job(&run, "DeployProd").state, JobState::WaitingApproval);
    let log = common::log_text(&server, run.id, "OpsOnly").await?;
    assert!(log.contains("deploy refused"), "{log}");

    // Only DeployDev and the package-only action are leased; prod waits for olga.
    let leases_first = lease_all(&server).await;
    let mut actions: Vec<&str> = leases_first.iter().map(|l| l.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, vec!["DeployDev", "Packages"]);
    let approve = format!("/runs/{}/actions/DeployProd/approve", run.id);
    let (s, b) = call(
        &server,
        M::POST,
        &walt,
        &approve,
        Some(json!({"comment": "me"})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(lease_all(&server).await.is_empty());
    let (s, b) = call(
        &server,
        M::POST,
        &olga,
        &approve,
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let leases = lease_all(&server).await;
    assert_eq!(leases.len(), 1);
    let prod = &leases[0];
    assert_eq!(prod.action, "DeployProd");
    assert!(prod
        .env
        .contains(&("TARGET".to_string(), "prod-bucket".to_string())));
    assert!(!prod.env.iter().any(|(_, v)| v == secret));
    assert!(prod
        .secrets
        .contains(&("TOKEN".to_string(), secret.to_string())));
    // The role the agent assumes: the connection's, with a bounded session and tags.
    let role = prod.deploy.as_ref().expect("deploy role in the lease");
    assert_eq!(role.role_arn, DEPLOY_ROLE);
    assert_eq!(role.account_id, ACCOUNT);
    assert_eq!(
        role.session_name,
        format!("cove-admin_app-{}-DeployProd", run.number)
    );
    assert_eq!(role.duration_secs, 3600 + 300);
    assert!(role
        .tags
        .contains(&("branch".to_string(), "main".to_string())));
    assert!(role
        .tags
        .contains(&("environment".to_string(), "prod".to_string())));
    assert!(role
        .tags
        .contains(&("repository".to_string(), "admin/app".to_string())));
    let packages = leases_first
        .iter()
        .find(|l| l.action == "Packages")
        .unwrap();
    assert!(packages.deploy.is_none());

    // The history names the run, the action, who pushed and the state.
    let history: Vec<Deployment> =
        common::api_json(&server, &format!("{ENVS}/prod/deployments")).await?;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].actor.as_deref(), Some("walt"));
    assert_eq!(history[0].action, "DeployProd");
    assert_eq!(history[0].state, "running");
    let ops: Vec<Deployment> =
        common::api_json(&server, &format!("{ENVS}/ops/deployments")).await?;
    assert_eq!(ops[0].state, "refused");
    assert!(ops[0]
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("walt may not deploy"));

    // The prod deploy succeeds (as its agent would report); the environment shows it.
    assert!(
        server
            .state
            .store()
            .end_job(
                prod.job_id,
                JobState::Running,
                Some(prod.attempt),
                JobState::Succeeded,
                None,
                None,
                cove_server::store::now_ms(),
            )
            .await?
    );
    let page: DeployEnvironment = common::api_json(&server, &format!("{ENVS}/prod")).await?;
    assert_eq!(page.current.as_ref().map(|d| d.run_id), Some(run.id));

    // Rollback: only to a run that deployed there successfully; the new run has only that
    // environment's deploy actions and the same protections (prod waits for olga again).
    let rollback = format!("{ENVS}/ops/rollback");
    let (s, b) = call(
        &server,
        M::POST,
        &walt,
        &rollback,
        Some(json!({"run": run.number})),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    let rollback = format!("{ENVS}/prod/rollback");
    assert_eq!(
        call(
            &server,
            M::POST,
            &rita,
            &rollback,
            Some(json!({"run": run.number}))
        )
        .await
        .0,
        403
    );
    let (s, b) = call(
        &server,
        M::POST,
        &walt,
        &rollback,
        Some(json!({"run": run.number})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let again: Run = serde_json::from_str(&b)?;
    assert_eq!(again.trigger, "rollback");
    let again = settled(&server, again.id, |r| {
        job(r, "DeployProd").state == JobState::WaitingApproval
    })
    .await;
    let actions: Vec<&str> = again.jobs.iter().map(|j| j.action.as_str()).collect();
    assert_eq!(actions, vec!["DeployProd"]);
    let history: Vec<Deployment> =
        common::api_json(&server, &format!("{ENVS}/prod/deployments")).await?;
    assert_eq!(history[0].rollback_of, Some(run.id));
    assert_eq!(history[0].state, "waiting_approval");

    // A branch prod and dev do not allow: refused before anything is leased.
    git_ok(dir, &["checkout", "-q", "-b", "feature"]).await?;
    commit_file(dir, "x.txt", b"x", "x").await?;
    git_ok(dir, &["push", "-q", &url, "feature"]).await?;
    let run = wait_run(&server, "feature").await;
    let run = settled(&server, run.id, |r| {
        job(r, "DeployProd").state.is_terminal()
    })
    .await;
    for a in ["DeployDev", "DeployProd"] {
        let j = job(&run, a);
        assert_eq!(j.state, JobState::Failed, "{a}");
        assert!(
            j.error
                .as_deref()
                .unwrap_or_default()
                .contains("branch `feature` may not deploy"),
            "{j:?}"
        );
    }
    // (The run's other actions queue behind the first run's, still running: QUEUED mode.)
    let leased: Vec<String> = lease_all(&server)
        .await
        .into_iter()
        .map(|l| l.action)
        .collect();
    assert!(
        !leased.iter().any(|a| a.starts_with("Deploy")),
        "{leased:?}"
    );
    server.stop().await;
    Ok(())
}

/// The YAML block after `<!-- example: NAME -->` in docs/deployments.md.
fn documented_example(name: &str) -> String {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deployments.md"),
    )
    .unwrap();
    let at = doc
        .find(&format!("<!-- example: {name} -->"))
        .unwrap_or_else(|| panic!("example {name} in docs/deployments.md"));
    let rest = &doc[at..];
    let start = rest.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end].to_string()
}

/// Ends a leased job as succeeded (what its agent would report).
async fn succeed(server: &TestServer, lease: &cove_api::JobLease) {
    assert!(server
        .state
        .store()
        .end_job(
            lease.job_id,
            JobState::Running,
            Some(lease.attempt),
            JobState::Succeeded,
            None,
            None,
            cove_server::store::now_ms(),
        )
        .await
        .unwrap());
    // Written behind the engine's back: tell it, as its own finish path does (the placement
    // rounds keep the active set until a wake-up; docs/runs.md "Dispatch").
    server.state.runs().wake_local();
}

#[tokio::test]
async fn the_documented_examples_deploy_in_order_and_in_parallel() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let (olga, walt, _rita) = team(&server).await;
    use reqwest::Method as M;
    let envs = [
        ("dev", vec![("dev-account", "111111111111")], 0),
        ("test", vec![("test-account", "222222222222")], 0),
        ("prod", vec![("prod-account", "333333333333")], 1),
        (
            "fleet",
            vec![
                ("eu-account", "444444444444"),
                ("us-account", "555555555555"),
            ],
            0,
        ),
    ];
    for (name, conns, approvals) in &envs {
        let (s, b) = call(
            &server,
            M::POST,
            &olga,
            ENVS,
            Some(json!({"name": name, "protection": {"required_approvals": approvals, "approvers": if *approvals > 0 { vec!["olga"] } else { vec![] }}})),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        for (conn, account) in conns {
            let (s, b) = call(
                &server,
                M::PUT,
                &server.admin_token,
                &format!("{ENVS}/{name}/connections/{conn}"),
                Some(json!({"account_id": account, "region": "us-east-1",
                    "roles": [format!("arn:aws:iam::{account}:role/deploy")]})),
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
    }
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/promote.yaml",
        documented_example("sequential").as_bytes(),
        "promote",
    )
    .await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/fleet.yaml",
        documented_example("parallel").as_bytes(),
        "fleet",
    )
    .await?;
    git_ok(
        dir,
        &[
            "push",
            "-q",
            &server.git_url("admin/app", Some(&walt)),
            "main",
        ],
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let runs = common::runs_of(&server, "admin/app").await?;
        if runs.len() == 2 {
            break runs;
        }
        assert!(Instant::now() < deadline, "two runs: {runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let promote = runs.iter().find(|r| r.workflow == "promote").unwrap().id;
    let fleet = runs.iter().find(|r| r.workflow == "fleet").unwrap().id;

    // Both builds first; then the fleet's two accounts at once, dev alone.
    let mut leased = lease_all(&server).await;
    leased.sort_by(|a, b| a.action.cmp(&b.action));
    let names: Vec<&str> = leased.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(names, vec!["Build", "Build"]);
    for l in &leased {
        succeed(&server, l).await;
    }
    let mut leased = lease_all(&server).await;
    leased.sort_by(|a, b| a.action.cmp(&b.action));
    let got: Vec<(String, String)> = leased
        .iter()
        .map(|l| {
            (
                l.action.clone(),
                l.deploy.as_ref().unwrap().role_arn.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "DeployDev".into(),
                "arn:aws:iam::111111111111:role/deploy".into()
            ),
            (
                "DeployEu".into(),
                "arn:aws:iam::444444444444:role/deploy".into()
            ),
            (
                "DeployUs".into(),
                "arn:aws:iam::555555555555:role/deploy".into()
            ),
        ]
    );
    assert!(leased
        .iter()
        .filter(|l| l.action != "DeployDev")
        .all(|l| l.run_id == fleet));
    // Promotion: test after dev, prod after test and an approval.
    for l in &leased {
        succeed(&server, l).await;
    }
    let next = lease_all(&server).await;
    let names: Vec<&str> = next.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(names, vec!["DeployTest"]);
    succeed(&server, &next[0]).await;
    // (the agent's finish report settles the run, which opens the gate; here: the reaper's tick)
    cove_server::runs::approval::tick(&server.state)
        .await
        .unwrap();
    let run = settled(&server, promote, |r| {
        job(r, "DeployProd").state == JobState::WaitingApproval
    })
    .await;
    assert_eq!(job(&run, "DeployTest").state, JobState::Succeeded);
    assert!(lease_all(&server).await.is_empty());
    let (s, b) = call(
        &server,
        M::POST,
        &olga,
        &format!("/runs/{promote}/actions/DeployProd/approve"),
        Some(json!({"comment": "go"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let last = lease_all(&server).await;
    assert_eq!(last.len(), 1);
    assert_eq!(
        last[0].deploy.as_ref().unwrap().role_arn,
        "arn:aws:iam::333333333333:role/deploy"
    );
    server.stop().await;
    Ok(())
}

/// A retried run asks a protected environment's approvers again: the approval of the failed
/// attempt does not carry over (as a re-run of a protected deployment on GitHub).
#[tokio::test]
async fn a_retried_deploy_waits_for_its_approvers_again() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let (olga, walt, _) = team(&server).await;
    use reqwest::Method as M;
    let (s, b) = call(
        &server,
        M::POST,
        &olga,
        ENVS,
        Some(
            json!({"name": "prod", "protection": {"required_approvals": 1, "approvers": ["olga"]}}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &server,
        M::PUT,
        &server.admin_token,
        &format!("{ENVS}/prod/connections/prod-account"),
        Some(json!({"account_id": ACCOUNT, "region": "us-east-1", "roles": [DEPLOY_ROLE]})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let wf = format!(
        "Name: prod\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\n    Branches: [main]\n\
         Actions:\n  DeployProd:\n    Identifier: aws/build@v1\n    Environment:\n      Name: prod\n\
         \x20     Connections:\n        - Name: prod-account\n          Role: {DEPLOY_ROLE}\n\
         \x20   Configuration:\n      Steps:\n        - Run: echo prod\n"
    );
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/prod.yaml",
        wf.as_bytes(),
        "wf",
    )
    .await?;
    git_ok(
        dir,
        &[
            "push",
            "-q",
            &server.git_url("admin/app", Some(&walt)),
            "main",
        ],
    )
    .await?;
    let run = wait_run(&server, "main").await;
    settled(&server, run.id, |r| {
        job(r, "DeployProd").state == JobState::WaitingApproval
    })
    .await;
    let approve = format!("/runs/{}/actions/DeployProd/approve", run.id);
    let (s, b) = call(
        &server,
        M::POST,
        &olga,
        &approve,
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let leases = lease_all(&server).await;
    assert_eq!(leases.len(), 1, "approved: leased");
    // The deploy fails (as its agent would report); the run fails.
    assert!(
        server
            .state
            .store()
            .end_job(
                leases[0].job_id,
                JobState::Running,
                Some(leases[0].attempt),
                JobState::Failed,
                Some("exit 1"),
                None,
                cove_server::store::now_ms(),
            )
            .await?
    );
    cove_server::runs::settle_run(&server.state, run.id).await?;
    settled(&server, run.id, |r| r.state.is_terminal()).await;
    let (s, b) = call(
        &server,
        M::POST,
        &walt,
        &format!("/runs/{}/retry", run.id),
        None,
    )
    .await;
    assert!(s.is_success(), "{s} {b}");
    // The retry waits for olga again; nothing is leased until she decides once more.
    settled(&server, run.id, |r| {
        job(r, "DeployProd").state == JobState::WaitingApproval
    })
    .await;
    assert!(
        lease_all(&server).await.is_empty(),
        "no lease on the old approval"
    );
    let (s, b) = call(
        &server,
        M::POST,
        &olga,
        &approve,
        Some(json!({"comment": "again"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let leases = lease_all(&server).await;
    assert_eq!(leases.len(), 1, "approved again: leased");
    assert_eq!(leases[0].action, "DeployProd");
    server.stop().await;
    Ok(())
}
