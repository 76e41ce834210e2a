#![allow(clippy::unwrap_used)]
//! Issue 21 acceptance, end to end on the real Docker engine with moto (STS and S3) and the
//! embedded agent: a writer pushes → Build → DeployDev runs at once with the dev role and
//! writes the dev bucket → DeployProd waits for its approver → approved → assumes the prod
//! role → writes the prod bucket. Both environments' histories show the deployments; no
//! credential string of either role is in the run's logs (a step that prints the credentials
//! endpoint's answer shows it masked), and the credentials never were environment variables
//! of the job.

mod common;

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use cove_api::{Deployment, JobState, Run, RunState};
use harness::Moto;
use serde_json::json;

const DEV_ROLE: &str = "arn:aws:iam::111111111111:role/dev-deploy";
const PROD_ROLE: &str = "arn:aws:iam::222222222222:role/prod-deploy";
const ENVS: &str = "/repos/admin/app/deploy/environments";

fn workflow(endpoint: &str) -> String {
    let deploy = |name: &str, env: &str, conn: &str, role: &str, bucket: &str| {
        format!(
            r#"  {name}:
    Identifier: aws/build@v1
    Environment:
      Name: {env}
      Connections:
        - Name: {conn}
          Role: {role}
    Configuration:
      Steps:
        - Run: aws --endpoint-url {endpoint} sts get-caller-identity --query Arn --output text
        - Run: aws --endpoint-url {endpoint} s3 mb s3://{bucket} >/dev/null
        - Run: echo "$CATALYST_SOURCE_COMMIT" > release.txt && aws --endpoint-url {endpoint} s3 cp release.txt s3://{bucket}/release.txt >/dev/null
        - Run: 'echo "endpoint says: $(curl -s -H "Authorization: $AWS_CONTAINER_AUTHORIZATION_TOKEN" "$AWS_CONTAINER_CREDENTIALS_FULL_URI")"'
        - Run: 'echo "aws key variables: $(env | grep -c -E "^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)=")"'
"#
        )
    };
    format!(
        r#"Name: deliver
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo built
{}    DependsOn: [Build]
{}    DependsOn: [DeployDev]
"#,
        deploy("DeployDev", "dev", "dev-account", DEV_ROLE, "dev-bucket"),
        deploy(
            "DeployProd",
            "prod",
            "prod-account",
            PROD_ROLE,
            "prod-bucket"
        ),
    )
}

async fn run_of(server: &TestServer, id: i64) -> Run {
    common::api_json(server, &format!("/runs/{id}"))
        .await
        .unwrap()
}

async fn wait(server: &TestServer, id: i64, what: &str, ready: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let run = run_of(server, id).await;
        if ready(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id}: {what} did not happen: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn state(run: &Run, action: &str) -> JobState {
    run.jobs.iter().find(|j| j.action == action).unwrap().state
}

/// The objects of a moto bucket, listed from the host.
fn bucket(endpoint: &str, name: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import boto3,sys; s3=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id='x',aws_secret_access_key='y'); \
             print(s3.get_object(Bucket=sys.argv[2],Key='release.txt')['Body'].read().decode().strip())",
            endpoint,
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_deploys_dev_then_prod_after_approval_with_assumed_roles() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    cove_tests::require_image("cove/universal:latest");
    // The embedded agent's base credentials: the standard chain (environment).
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIADEPLOYE2EBASE001");
    std::env::set_var(
        "AWS_SECRET_ACCESS_KEY",
        "deployE2eBaseSecret/0123456789abcdefgh",
    );
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    // On 127.0.0.2: the build reaches it only through its gateway's forward proxy.
    let moto = Moto::start_on("127.0.0.2");
    let endpoint = moto.url();
    let policy = format!("[endpoints.moto]\nsts = \"{endpoint}\"\n");
    let allow = format!("127.0.0.2:{}", moto.port);
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/universal:latest".into();
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.lease = Duration::from_secs(20);
        c.runs.packages = toml::from_str(&policy).unwrap();
        c.runs.sandbox.egress_allow = vec![allow];
    })
    .await?;
    server.create_repo(&server.admin_token, "app").await?;
    let olga = server.create_user("olga").await?;
    let walt = server.create_user("walt").await?;
    for (u, r) in [("olga", "owner"), ("walt", "writer")] {
        assert_eq!(server.put_member("admin/app", u, r).await?.status(), 200);
    }
    let post = |token: &str, path: String, body: serde_json::Value| {
        let req = server
            .http
            .post(server.api(&path))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let put = |token: &str, path: String, body: serde_json::Value| {
        let req = server
            .http
            .put(server.api(&path))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, b) = post(
        &olga,
        ENVS.into(),
        json!({"name": "dev", "protection": {"branches": ["main"]}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = post(
        &olga,
        ENVS.into(),
        json!({"name": "prod", "protection": {"branches": ["main"], "required_approvals": 1, "approvers": ["olga"]}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    for (env, conn, account, role) in [
        ("dev", "dev-account", "111111111111", DEV_ROLE),
        ("prod", "prod-account", "222222222222", PROD_ROLE),
    ] {
        let (s, b) = put(
            &server.admin_token,
            format!("{ENVS}/{env}/connections/{conn}"),
            json!({"account_id": account, "region": "us-east-1", "roles": [role], "endpoints": "moto"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }

    // walt pushes main.
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    let commit = commit_file(
        dir,
        ".codecatalyst/workflows/deliver.yaml",
        workflow(&endpoint).as_bytes(),
        "deliver",
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
    let run_id = loop {
        if let Some(r) = common::runs_of(&server, "admin/app").await?.first() {
            break r.id;
        }
        assert!(Instant::now() < deadline, "no run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Dev deploys by itself; prod waits for olga.
    let run = wait(&server, run_id, "prod waiting", |r| {
        state(r, "DeployProd") == JobState::WaitingApproval || r.state.is_terminal()
    })
    .await;
    assert_eq!(state(&run, "DeployDev"), JobState::Succeeded, "{run:?}");
    assert_eq!(state(&run, "DeployProd"), JobState::WaitingApproval);
    assert_eq!(bucket(&endpoint, "dev-bucket"), commit);
    let (s, b) = post(
        &olga,
        format!("/runs/{run_id}/actions/DeployProd/approve"),
        json!({"comment": "ship it"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let run = wait(&server, run_id, "the run's end", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(bucket(&endpoint, "prod-bucket"), commit);

    // Each action saw its own assumed role; no credential string in the logs; none of the
    // usual key variables in the job's environment.
    for (action, role) in [("DeployDev", "dev-deploy"), ("DeployProd", "prod-deploy")] {
        let log = common::log_text(&server, run_id, action).await?;
        let number = run.number;
        assert!(
            log.contains(&format!(
                "assumed-role/{role}/cove-admin_app-{number}-{action}"
            )),
            "{action}: {log}"
        );
        assert!(log.contains("endpoint says: "), "{log}");
        assert!(
            !log.contains("ASIA"),
            "{action}: an access key id in the log: {log}"
        );
        assert!(
            log.contains("\"AccessKeyId\":\"***\""),
            "{action}: masked: {log}"
        );
        assert!(!log.contains("AKIADEPLOYE2EBASE001"), "{log}");
        assert!(log.contains("aws key variables: 0"), "{action}: {log}");
    }

    // The environment pages: what is deployed, by whom.
    for env in ["dev", "prod"] {
        let history: Vec<Deployment> =
            common::api_json(&server, &format!("{ENVS}/{env}/deployments")).await?;
        assert_eq!(history.len(), 1, "{env}: {history:?}");
        assert_eq!(history[0].state, "succeeded");
        assert_eq!(history[0].actor.as_deref(), Some("walt"));
        assert_eq!(history[0].commit_sha, commit);
        let page: cove_api::DeployEnvironment =
            common::api_json(&server, &format!("{ENVS}/{env}")).await?;
        assert_eq!(page.current.map(|d| d.run_id), Some(run_id));
    }
    server.stop().await;
    Ok(())
}
