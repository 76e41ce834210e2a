#![allow(clippy::unwrap_used)]
//! Deploy credentials (issue 21) against real components: the broker assumes the deploy role
//! at moto's STS, the job's gateway serves it with the container-credentials protocol, and a
//! real AWS SDK (boto3, whose container provider is what the AWS CLI uses) picks it up from
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`, sees the
//! assumed role and writes to a moto bucket. Requests without the job's token are refused;
//! credentials are cached and refreshed before expiry (a `ManualClock`, no sleeping).

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::process::Command;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use cove_agent::broker::{Broker, BrokerOptions, Clock, ManualClock};
use cove_agent::creds::DeployCredentials;
use cove_agent::gateway::{AllowList, Gateway, GatewayConfig, NoUpstream};
use cove_api::JobDeploy;
use harness::Moto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROLE: &str = "arn:aws:iam::123456789012:role/deploy-prod";

fn base_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCOVEBASEDEPLOY01");
        std::env::set_var(
            "AWS_SECRET_ACCESS_KEY",
            "base-secret-deploy-never-leaks-0001",
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cove-test-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cove-test-creds",
        );
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    });
}

fn deploy(sts: &str) -> JobDeploy {
    JobDeploy {
        environment: "prod".into(),
        connection: "prod-account".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        role_arn: ROLE.into(),
        session_name: "cove-acme_app-7-DeployProd".into(),
        duration_secs: 3900,
        tags: vec![
            ("repository".into(), "acme/app".into()),
            ("branch".into(), "main".into()),
            ("environment".into(), "prod".into()),
        ],
        sts_endpoint: Some(sts.into()),
    }
}

async fn setup(clock: Arc<dyn Clock>) -> (Moto, Arc<DeployCredentials>, Gateway) {
    base_env();
    let moto = Moto::start();
    let options = BrokerOptions {
        max_attempts: 1,
        ..BrokerOptions::default()
    };
    let broker = Arc::new(Broker::from_default_chain("us-east-1", clock, options).await);
    let creds = Arc::new(DeployCredentials::new(broker, &deploy(&moto.url())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = GatewayConfig::new("job-deploy", AllowList::default());
    config.credentials = Some(creds.clone());
    let gateway = Gateway::start(listener, Arc::new(NoUpstream), config).unwrap();
    (moto, creds, gateway)
}

/// A raw GET of the credentials path with `authorization`: status and body.
async fn get(gateway: &Gateway, authorization: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gateway.local_addr())
        .await
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET /cove/credentials HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Runs python3 with boto3 configured only through the container-credentials variables.
fn boto3(gateway: &Gateway, token: &str, moto: &str, script: &str) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/cove/credentials", gateway.url()),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("MOTO", moto)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_gets_the_deploy_role_from_the_gateway_and_writes_to_a_bucket() {
    let (moto, creds, gateway) = setup(Arc::new(cove_agent::broker::SystemClock)).await;
    let token = creds.token().expose().to_string();

    // No token, a wrong token: refused, nothing assumed.
    assert_eq!(get(&gateway, None).await.0, 401);
    assert_eq!(get(&gateway, Some("wrong")).await.0, 401);
    assert_eq!(
        get(&gateway, Some(&format!("{token}x"))).await.0,
        401,
        "a longer token is not the token"
    );
    assert_eq!(
        creds.secrets().len(),
        1,
        "only the token: nothing was assumed yet"
    );

    let script = r#"
import os, boto3
moto = os.environ["MOTO"]
sts = boto3.client("sts", endpoint_url=moto)
print("ARN", sts.get_caller_identity()["Arn"])
s3 = boto3.client("s3", endpoint_url=moto)
s3.create_bucket(Bucket="prod-bucket")
s3.put_object(Bucket="prod-bucket", Key="release.txt", Body=b"v1")
print("KEYS", [o["Key"] for o in s3.list_objects_v2(Bucket="prod-bucket")["Contents"]])
"#;
    let out = boto3(&gateway, &token, &moto.url(), script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "ARN arn:aws:sts::123456789012:assumed-role/deploy-prod/cove-acme_app-7-DeployProd"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("KEYS ['release.txt']"), "{stdout}");

    // The same SDK with a wrong token gets nothing.
    let out = boto3(&gateway, "not-the-token", &moto.url(), script);
    assert!(!out.status.success());

    // Every credential string handed out is in the mask set; none in the Debug output.
    let (c, cached) = creds.credentials().await.unwrap();
    assert!(cached, "served from the cache");
    let secrets: Vec<String> = creds
        .secrets()
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    for s in [
        c.access_key_id.as_str(),
        c.secret_access_key.expose(),
        c.session_token.expose(),
        token.as_str(),
    ] {
        assert!(secrets.iter().any(|x| x == s));
        assert!(!format!("{creds:?}").contains(s));
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_cached_and_refreshed_before_expiry() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let (_moto, creds, gateway) = setup(clock.clone()).await;
    let token = creds.token().expose().to_string();
    let (status, first) = get(&gateway, Some(&token)).await;
    assert_eq!(status, 200, "{first}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let key = first["AccessKeyId"].as_str().unwrap().to_string();
    assert!(key.starts_with("ASIA"), "{key}");
    for field in ["SecretAccessKey", "Token", "Expiration"] {
        assert!(
            first[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    assert_eq!(first["RoleArn"], ROLE);
    let (_, again) = get(&gateway, Some(&token)).await;
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["AccessKeyId"], first["AccessKeyId"], "a cache hit");
    // Five minutes before the session ends, it is refreshed.
    clock.advance(Duration::from_secs(3900 - 299));
    let (_, later) = get(&gateway, Some(&token)).await;
    let later: serde_json::Value = serde_json::from_str(&later).unwrap();
    assert_ne!(later["AccessKeyId"], first["AccessKeyId"], "refreshed");
    gateway.shutdown().await;
}
