#![allow(clippy::unwrap_used)]
//! Credential broker against real components: moto (STS) and the CodeArtifact
//! double (`tests/codeartifact_double/double.py`). Expiry is driven by a
//! `ManualClock`, never by sleeping.

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use cove_agent::broker::{
    Broker, BrokerConfig, BrokerError, BrokerOptions, Clock, JobRef, ManualClock, Mode,
    PackageFormat, RepositoryRef, SystemClock,
};
use harness::{free_port, Double, Moto};

const BASE_KEY: &str = "AKIDCOVEBASETEST0001";
const BASE_SECRET: &str = "base-secret-must-never-leak-0123456789";

/// Base credentials come from the standard chain: here, the environment.
/// IMDS is disabled so nothing ever talks to 169.254.169.254.
fn base_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", BASE_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", BASE_SECRET);
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

async fn broker(clock: Arc<dyn Clock>) -> Broker {
    base_env();
    let options = BrokerOptions {
        max_attempts: 1,
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(10),
        ..BrokerOptions::default()
    };
    Broker::from_default_chain("us-east-1", clock, options).await
}

fn config(sts: &str, codeartifact: &str) -> BrokerConfig {
    BrokerConfig {
        role_arn: "arn:aws:iam::123456789012:role/cove-build".into(),
        region: "us-east-1".into(),
        domain: "acme".into(),
        domain_owner: "123456789012".into(),
        repositories: vec![
            RepositoryRef {
                name: "npm-store".into(),
                format: PackageFormat::Npm,
            },
            RepositoryRef {
                name: "py-store".into(),
                format: PackageFormat::Pypi,
            },
        ],
        sts_endpoint: Some(sts.into()),
        codeartifact_endpoint: Some(codeartifact.into()),
        max_session_secs: None,
    }
}

fn job(timeout_secs: u64) -> JobRef {
    JobRef {
        run_id: "run-42".into(),
        job_id: "build/npm test".into(),
        timeout: Duration::from_secs(timeout_secs),
    }
}

#[tokio::test]
async fn assume_role_then_token_then_endpoints_for_npm_and_pypi() {
    let moto = Moto::start();
    let double = Double::start(&[]);
    let b = broker(Arc::new(SystemClock)).await;
    let cfg = config(&moto.url(), &double.url());
    let creds = b
        .job_credentials(&cfg, &job(3600), Mode::Compatible)
        .await
        .unwrap();
    assert!(!creds.from_cache);
    assert!(creds.token.token.expose().starts_with("eyJ"));
    let urls: Vec<(PackageFormat, &str)> = creds
        .endpoints
        .iter()
        .map(|e| (e.format, e.url.as_str()))
        .collect();
    assert_eq!(
        urls,
        vec![
            (
                PackageFormat::Npm,
                format!("{}/acme-123456789012/npm/npm-store/", double.url()).as_str()
            ),
            (
                PackageFormat::Pypi,
                format!("{}/acme-123456789012/pypi/py-store/", double.url()).as_str()
            ),
        ]
    );
    let stats = double.stats();
    assert_eq!(stats["authorization_token"], 1);
    assert_eq!(stats["repository_endpoint"], 2);
    // CodeArtifact was called with the *assumed* session (moto's ASIA key and
    // a session token), not with the base credentials.
    let akid = stats["last_access_key_id"].as_str().unwrap();
    assert!(akid.starts_with("ASIA"), "{akid}");
    assert_ne!(akid, BASE_KEY);
    assert_eq!(stats["last_security_token_present"], true);
    // Token duration = job timeout + refresh margin.
    assert_eq!(stats["last_duration"], 3900);
    let left = creds
        .token
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3800), "{left:?}");
}

#[tokio::test]
async fn second_job_hits_the_cache_without_any_request() {
    let moto = Moto::start();
    let double = Double::start(&[]);
    let b = broker(Arc::new(SystemClock)).await;
    let cfg = config(&moto.url(), &double.url());
    let first = b
        .job_credentials(&cfg, &job(600), Mode::TokenFree)
        .await
        .unwrap();
    let before = double.stats();
    let second = b
        .job_credentials(&cfg, &job(600), Mode::TokenFree)
        .await
        .unwrap();
    assert!(second.from_cache);
    assert_eq!(second.token.token, first.token.token);
    assert_eq!(second.endpoints, first.endpoints);
    assert_eq!(
        double.stats(),
        before,
        "a cache hit must not reach CodeArtifact"
    );
    // The gateway's per-request lookup is a cache hit too.
    let t = b.token(&cfg, &job(600)).await.unwrap();
    assert_eq!(t.token, first.token.token);
    assert_eq!(double.count("authorization_token"), 1);
}

#[tokio::test]
async fn expired_token_is_refreshed_never_reused() {
    let moto = Moto::start();
    let double = Double::start(&[]);
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let b = broker(clock.clone()).await;
    let cfg = config(&moto.url(), &double.url());
    // 600 s timeout → 900 s token (the minimum).
    let first = b.token(&cfg, &job(600)).await.unwrap();
    assert_eq!(double.count("last_duration"), 900);

    // 9 minutes later: 6 minutes left, more than the 5-minute margin → cached.
    clock.advance(Duration::from_secs(540));
    let same = b.token(&cfg, &job(600)).await.unwrap();
    assert_eq!(same.token, first.token);
    assert_eq!(double.count("authorization_token"), 1);

    // Compatible mode needs the token to outlive the job (10 min): refresh.
    let compat = b
        .job_credentials(&cfg, &job(600), Mode::Compatible)
        .await
        .unwrap();
    assert!(!compat.from_cache);
    assert_ne!(compat.token.token, first.token);
    assert_eq!(double.count("authorization_token"), 2);

    // Past expiry: never reused.
    clock.advance(Duration::from_secs(3600));
    let fresh = b.token(&cfg, &job(600)).await.unwrap();
    assert_ne!(fresh.token, compat.token.token);
    assert!(fresh.expires_at > clock.now() + Duration::from_secs(600));
    assert_eq!(double.count("authorization_token"), 3);
}

#[tokio::test]
async fn sts_access_denied_names_the_role_and_no_secret() {
    // moto allows every AssumeRole; the double's STS denies a configured role.
    let role = "arn:aws:iam::123456789012:role/cove-build";
    let double = Double::start(&["--deny-role", role]);
    let b = broker(Arc::new(SystemClock)).await;
    let cfg = config(&format!("{}/sts/", double.url()), &double.url());
    let err = b
        .job_credentials(&cfg, &job(600), Mode::TokenFree)
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, BrokerError::AssumeRoleDenied { .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains(role), "{text}");
    assert!(!text.contains(BASE_SECRET), "{text}");
    assert_eq!(double.count("sts_assume_role"), 1);
    assert_eq!(double.count("authorization_token"), 0);
}

#[tokio::test]
async fn codeartifact_access_denied_names_domain_and_owner() {
    let moto = Moto::start();
    let double = Double::start(&["--deny-domain", "acme"]);
    let b = broker(Arc::new(SystemClock)).await;
    let cfg = config(&moto.url(), &double.url());
    let err = b
        .job_credentials(&cfg, &job(600), Mode::TokenFree)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::CodeArtifactDenied { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("domain acme"), "{text}");
    assert!(text.contains("owner 123456789012"), "{text}");
    assert!(text.contains("GetAuthorizationToken"), "{text}");
    assert!(!format!("{text} {err:?}").contains(BASE_SECRET));
    assert_eq!(double.count("denied"), 1);
}

#[tokio::test]
async fn unreachable_endpoints_are_named() {
    // Nothing listens on these ports (bound, then released).
    let closed = format!("http://127.0.0.1:{}", free_port());
    let b = broker(Arc::new(SystemClock)).await;
    let err = b
        .job_credentials(&config(&closed, &closed), &job(600), Mode::TokenFree)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::Unreachable { service: "STS", .. }),
        "{err:?}"
    );
    eprintln!("{err}");
    assert!(err.to_string().contains(&closed), "{err}");

    let moto = Moto::start();
    let err = b
        .job_credentials(&config(&moto.url(), &closed), &job(600), Mode::TokenFree)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Unreachable {
                service: "CodeArtifact",
                ..
            }
        ),
        "{err:?}"
    );
    eprintln!("{err}");
    assert!(err.to_string().contains(&closed), "{err}");
}

#[tokio::test]
async fn outputs_for_both_modes_and_redacted_debug() {
    let moto = Moto::start();
    let double = Double::start(&[]);
    let b = broker(Arc::new(SystemClock)).await;
    let cfg = config(&moto.url(), &double.url());
    let creds = b
        .job_credentials(&cfg, &job(600), Mode::Compatible)
        .await
        .unwrap();
    let token = creds.token.token.expose().to_string();
    let secrets: Vec<String> = creds
        .secrets()
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    assert_eq!(secrets.len(), 3);
    assert!(secrets.contains(&token));
    assert!(secrets.contains(&creds.token.session.secret_access_key.expose().to_string()));

    // Nothing secret in any Debug output.
    let home = Path::new("/root");
    let compat = creds.compatible(home);
    let free = creds.token_free(home, "http://gateway.invalid:8080");
    for text in [
        format!("{creds:?}"),
        format!("{:?}", creds.token),
        format!("{:?}", creds.token.session),
        format!("{compat:?}"),
        format!("{free:?}"),
        format!("{b:?}"),
    ] {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "secret in {text}");
        }
    }

    // Compatible: what `aws codeartifact login` writes.
    let host = format!("127.0.0.1:{}", double.port);
    let npm_url = format!("http://{host}/acme-123456789012/npm/npm-store/");
    let npmrc = compat.file("/root/.npmrc").unwrap();
    assert_eq!(
        npmrc.contents,
        format!(
            "registry={npm_url}\n//{host}/acme-123456789012/npm/npm-store/:_authToken={token}\n"
        )
    );
    assert_eq!(npmrc.mode, 0o600);
    let index = format!("http://aws:{token}@{host}/acme-123456789012/pypi/py-store/simple/");
    assert_eq!(compat.secret_env["PIP_INDEX_URL"], index);
    assert_eq!(compat.secret_env["CODEARTIFACT_AUTH_TOKEN"], token);
    // Plain variables hold no secret (they may land in container config).
    for v in compat.env.values() {
        assert!(!v.contains(&token), "{v}");
    }
    assert_eq!(compat.env["PIP_TRUSTED_HOST"], host);
    let pip = compat.file("/root/.config/pip/pip.conf").unwrap();
    assert!(pip.contents.contains(&format!("index-url = {index}\n")));
    let pypirc = compat.file("/root/.pypirc").unwrap();
    assert_eq!(pypirc.mode, 0o600);
    assert!(pypirc.contents.contains("username = aws\n"));
    assert!(pypirc.contents.contains(&format!("password = {token}\n")));
    assert_eq!(compat.secrets.len(), 3);

    // Token-free: gateway URLs only, nothing secret anywhere.
    assert_eq!(
        free.file("/root/.npmrc").unwrap().contents,
        "registry=http://gateway.invalid:8080/npm/npm-store/\n"
    );
    assert_eq!(
        free.env["PIP_INDEX_URL"],
        "http://gateway.invalid:8080/pypi/py-store/simple/"
    );
    assert!(free.secrets.is_empty());
    assert!(free.secret_env.is_empty());
    let everything = format!(
        "{:?}{}",
        free.env,
        free.files
            .iter()
            .map(|f| f.contents.as_str())
            .collect::<String>()
    );
    for s in &secrets {
        assert!(!everything.contains(s.as_str()));
    }
}

fn median_p95(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 95).div_ceil(100) - 1])
}

/// `scripts/bench-broker.sh`: latency of a cache miss (AssumeRole +
/// GetAuthorizationToken + 2 × GetRepositoryEndpoint against moto and the
/// double) vs a cache hit. Prints numbers, asserts nothing about them.
#[tokio::test]
#[ignore = "benchmark: run by scripts/bench-broker.sh"]
async fn bench_broker_cache_hit_vs_miss() {
    let moto = Moto::start();
    let double = Double::start(&[]);
    let cfg = config(&moto.url(), &double.url());
    let (runs, hits) = (20, 2000);
    let mut miss = Vec::new();
    for _ in 0..runs {
        let b = broker(Arc::new(SystemClock)).await;
        let t = std::time::Instant::now();
        let c = b
            .job_credentials(&cfg, &job(600), Mode::TokenFree)
            .await
            .unwrap();
        miss.push(t.elapsed());
        assert!(!c.from_cache);
    }
    let b = broker(Arc::new(SystemClock)).await;
    b.job_credentials(&cfg, &job(600), Mode::TokenFree)
        .await
        .unwrap();
    let mut hit = Vec::new();
    for _ in 0..hits {
        let t = std::time::Instant::now();
        let c = b
            .job_credentials(&cfg, &job(600), Mode::TokenFree)
            .await
            .unwrap();
        hit.push(t.elapsed());
        assert!(c.from_cache);
    }
    let (m50, m95) = median_p95(miss);
    let (h50, h95) = median_p95(hit);
    println!("BENCH broker miss ({runs} runs: AssumeRole + GetAuthorizationToken + 2x GetRepositoryEndpoint, moto + double): median {m50:?}, p95 {m95:?}");
    println!(
        "BENCH broker hit  ({hits} runs: cached token + endpoints): median {h50:?}, p95 {h95:?}"
    );
}
