//! A leased job's sandbox: its private network, the endpoint gateway and
//! the package credentials the lease asks for, turned into what the job
//! runner gets ([`SandboxedJob`]: network, variables, files, masked values).
//!
//! The agent's [`SandboxSettings`] decide placement and egress; the lease's
//! [`JobPackages`] (from the server's per-repository configuration and the
//! workflow's `Packages` section) decide role, domain, repositories and mode.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use cove_api::{JobLease, JobPackages, PackageMode};

use crate::broker::{
    Broker, BrokerConfig, BrokerOptions, JobRef, Mode, PackageFormat, RepositoryRef, SystemClock,
};
use crate::gateway::AllowList;
use crate::jobs::{JobFile, JobSpec};
use crate::private_net::{
    Firewall, GatewayAt, JobSandbox, NetOptions, Placement, SandboxSettings, SandboxSpec,
};

/// Home directory of the build user (jobs run as root).
const HOME: &str = "/root";

/// The process-wide broker: base credentials from the standard AWS chain,
/// tokens cached across jobs.
static BROKER: tokio::sync::OnceCell<Arc<Broker>> = tokio::sync::OnceCell::const_new();

async fn broker() -> Arc<Broker> {
    BROKER
        .get_or_init(|| async {
            Arc::new(
                Broker::from_default_chain(
                    "us-east-1",
                    Arc::new(SystemClock),
                    BrokerOptions::default(),
                )
                .await,
            )
        })
        .await
        .clone()
}

/// Where this agent's gateway listens and how it reaches the host firewall.
pub fn gateway_at(settings: &SandboxSettings) -> GatewayAt {
    let named = settings
        .container
        .clone()
        .or_else(|| std::env::var("COVE_AGENT_CONTAINER").ok())
        .filter(|c| !c.is_empty());
    match (settings.placement, named) {
        (Placement::Host, _) | (Placement::Auto, None) => GatewayAt::HostBridge,
        (Placement::Container | Placement::Auto, Some(me)) => GatewayAt::Container(me),
        // Docker sets the hostname to the short container id.
        (Placement::Container, None) => {
            GatewayAt::Container(std::env::var("HOSTNAME").unwrap_or_default())
        }
    }
}

pub fn net_options(settings: &SandboxSettings) -> NetOptions {
    NetOptions {
        firewall: match gateway_at(settings) {
            GatewayAt::HostBridge | GatewayAt::Address(_) => Firewall::Local {
                iptables: settings.iptables.clone(),
            },
            GatewayAt::Container(_) => Firewall::HostContainer {
                iptables: settings.iptables.clone(),
                image: settings.firewall_image.clone(),
            },
        },
    }
}

/// The broker's configuration for a lease; the agent's endpoints win over
/// the lease's (the server administrator's endpoint profile). Endpoints a
/// repository's own configuration might still carry (`config.sts_endpoint`,
/// `config.codeartifact_endpoint`, refused by servers since issue 14) are
/// never used. npm repositories are narrowed to (and ordered like) the ones
/// the action names, the unscoped one first.
pub fn broker_config(settings: &SandboxSettings, p: &JobPackages) -> BrokerConfig {
    let c = &p.config;
    let format = |f: &str| match f {
        "pypi" => Some(PackageFormat::Pypi),
        "npm" => Some(PackageFormat::Npm),
        _ => None,
    };
    let mut repositories: Vec<RepositoryRef> = Vec::new();
    let mut npm: Vec<&cove_api::NpmRegistry> = p.npm.iter().collect();
    npm.sort_by_key(|r| !r.scopes.is_empty());
    for r in npm {
        repositories.push(RepositoryRef {
            name: r.repository.clone(),
            format: PackageFormat::Npm,
        });
    }
    for r in &c.repositories {
        let Some(f) = format(&r.format) else { continue };
        if f == PackageFormat::Npm && !p.npm.is_empty() {
            continue;
        }
        let r = RepositoryRef {
            name: r.name.clone(),
            format: f,
        };
        if !repositories.contains(&r) {
            repositories.push(r);
        }
    }
    BrokerConfig {
        role_arn: c.role_arn.clone(),
        region: c.region.clone(),
        domain: c.domain.clone(),
        domain_owner: c.domain_owner.clone(),
        repositories,
        sts_endpoint: settings
            .sts_endpoint
            .clone()
            .or_else(|| p.sts_endpoint.clone()),
        codeartifact_endpoint: settings
            .codeartifact_endpoint
            .clone()
            .or_else(|| p.codeartifact_endpoint.clone()),
        max_session_secs: c.max_session_secs,
    }
}

/// The lease's deploy role with the agent's own STS endpoint, which wins over the server's
/// endpoint profile (as for packages).
fn deploy_with(settings: &SandboxSettings, d: &cove_api::JobDeploy) -> cove_api::JobDeploy {
    let mut d = d.clone();
    if let Some(sts) = &settings.sts_endpoint {
        d.sts_endpoint = Some(sts.clone());
    }
    d
}

/// A job in its sandbox; [`SandboxedJob::teardown`] after the job.
#[derive(Debug)]
pub struct SandboxedJob {
    sandbox: JobSandbox,
}

impl SandboxedJob {
    /// Creates the sandbox for `lease` and points `spec` at it.
    pub async fn start(
        docker: &Docker,
        settings: &SandboxSettings,
        lease: &JobLease,
        spec: &mut JobSpec,
    ) -> Result<SandboxedJob, String> {
        Self::start_at(docker, settings, lease, spec, gateway_at(settings)).await
    }

    /// [`SandboxedJob::start`] with the gateway at `at`. [`GatewayAt::Address`] (a job Pod on
    /// Kubernetes): no private network; `spec.gateway` is set to the gateway's address (the
    /// one egress the Pod's NetworkPolicy allows) instead of `spec.network`.
    pub async fn start_at(
        docker: &Docker,
        settings: &SandboxSettings,
        lease: &JobLease,
        spec: &mut JobSpec,
        at: GatewayAt,
    ) -> Result<SandboxedJob, String> {
        let packages = lease.packages.as_ref();
        let codeartifact = packages.map(|p| broker_config(settings, p));
        let mode = match packages.map(|p| p.mode) {
            Some(PackageMode::Compatible) => Mode::Compatible,
            _ => Mode::TokenFree,
        };
        let aws_cli = packages.is_some_and(|p| p.aws_cli);
        let mut allow = AllowList::parse(&settings.egress_allow)
            .map_err(|e| format!("the agent's egress allow-list: {e}"))?;
        let api_url = codeartifact.as_ref().map(|c| {
            c.codeartifact_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://codeartifact.{}.amazonaws.com", c.region))
        });
        if aws_cli {
            allow = allow.with_urls(api_url.iter().map(String::as_str));
        }
        let job = JobRef {
            run_id: lease.run_id.to_string(),
            job_id: lease.job_id.to_string(),
            timeout: Duration::from_secs(lease.timeout_secs.max(1)),
        };
        let broker = match (&codeartifact, &lease.deploy) {
            (Some(_), _) | (None, Some(_)) => broker().await,
            (None, None) => Arc::new(Broker::new(
                aws_config::SdkConfig::builder().build(),
                Arc::new(SystemClock),
                BrokerOptions::default(),
            )),
        };
        let deploy = match &lease.deploy {
            Some(d) => Some(Arc::new(
                crate::creds::DeployCredentials::new(broker.clone(), &deploy_with(settings, d))
                    .map_err(|e| format!("the job's deploy role: {e}"))?,
            )),
            None => None,
        };
        let sandbox = JobSandbox::start(
            docker,
            broker,
            SandboxSpec {
                job,
                codeartifact: codeartifact.clone(),
                mode,
                allow,
                home: HOME.into(),
                net: net_options(settings),
                gateway_at: at.clone(),
                deploy,
            },
        )
        .await
        .map_err(|e| format!("the job's private network could not be set up: {e}"))?;

        if matches!(at, GatewayAt::Address(_)) {
            spec.gateway = sandbox.gateway_addr();
        } else {
            spec.network = Some(sandbox.network_name().to_string());
        }
        let injection = sandbox.injection();
        let mut files = injection.files.clone();
        let mut secret_env: Vec<(String, String)> = injection
            .secret_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut env: Vec<(String, String)> = injection
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let (Some(p), Some(creds)) = (packages, sandbox.credentials()) {
            // npm scopes of `NpmConfiguration`: `@scope:registry=` lines.
            let scoped: Vec<String> = p
                .npm
                .iter()
                .flat_map(|r| r.scopes.iter().map(move |s| (s, &r.repository)))
                .filter_map(|(scope, repo)| {
                    let url = match mode {
                        Mode::TokenFree => format!(
                            "{}/npm/{repo}/",
                            sandbox.gateway_url().trim_end_matches('/')
                        ),
                        Mode::Compatible => creds
                            .endpoints
                            .iter()
                            .find(|e| &e.repository == repo && e.format == PackageFormat::Npm)?
                            .url
                            .clone(),
                    };
                    let scope = if scope.starts_with('@') {
                        scope.clone()
                    } else {
                        format!("@{scope}")
                    };
                    Some(format!("{scope}:registry={url}\n"))
                })
                .collect();
            if let Some(npmrc) = files
                .iter_mut()
                .find(|f| f.path == Path::new(HOME).join(".npmrc"))
            {
                for line in scoped {
                    npmrc.contents.push_str(&line);
                }
            }
            let token = creds.token.token.expose().to_string();
            if p.export_token {
                secret_env.push(("CATALYST_PACKAGES_AUTHORIZATION_TOKEN".into(), token));
                env.push((
                    "CATALYST_MACHINE_RESOURCE_NAME".into(),
                    format!("cove-{}-{}", lease.run_id, lease.job_id),
                ));
            }
            if aws_cli {
                let s = &creds.token.session;
                secret_env.push(("AWS_ACCESS_KEY_ID".into(), s.access_key_id.clone()));
                secret_env.push((
                    "AWS_SECRET_ACCESS_KEY".into(),
                    s.secret_access_key.expose().to_string(),
                ));
                secret_env.push((
                    "AWS_SESSION_TOKEN".into(),
                    s.session_token.expose().to_string(),
                ));
                env.push(("AWS_REGION".into(), p.config.region.clone()));
                env.push(("AWS_DEFAULT_REGION".into(), p.config.region.clone()));
                if let Some(url) = &api_url {
                    env.push(("AWS_ENDPOINT_URL_CODEARTIFACT".into(), url.clone()));
                }
            }
        }
        inject(spec, &sandbox, env, secret_env, files);
        Ok(SandboxedJob { sandbox })
    }

    /// A pooled sandbox ([`crate::job_pool`]) claimed by the job of `spec`: points `spec` at
    /// it. The sandbox was made for the agent's settings alone (no package credentials, no
    /// deploy role), so only its gateway variables apply.
    pub fn pooled(sandbox: JobSandbox, spec: &mut JobSpec) -> SandboxedJob {
        spec.network = Some(sandbox.network_name().to_string());
        let injection = sandbox.injection();
        let files = injection.files.clone();
        let secret_env = injection
            .secret_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let env = injection
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        inject(spec, &sandbox, env, secret_env, files);
        SandboxedJob { sandbox }
    }

    /// See [`crate::private_net::JobSandbox::late_secrets`].
    pub fn late_secrets(&self) -> Option<crate::mask::LateSecrets> {
        self.sandbox.late_secrets()
    }

    pub fn network_name(&self) -> &str {
        self.sandbox.network_name()
    }

    /// Gateway stopped, rules and network removed.
    pub async fn teardown(self) {
        if let Err(e) = self.sandbox.teardown().await {
            tracing::warn!(error = %e, "removing a job's private network failed");
        }
    }
}

/// Later entries win: the sandbox's variables override the action's own proxy or index
/// settings.
fn inject(
    spec: &mut JobSpec,
    sandbox: &JobSandbox,
    env: Vec<(String, String)>,
    secret_env: Vec<(String, String)>,
    files: Vec<crate::broker::InjectedFile>,
) {
    spec.env.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
    spec.env.extend(env);
    spec.secrets
        .retain(|(k, _)| !secret_env.iter().any(|(e, _)| e == k));
    spec.secrets.extend(secret_env);
    spec.files.extend(files.into_iter().map(|f| JobFile {
        path: f.path.to_string_lossy().into_owned(),
        contents: f.contents.into_bytes(),
        mode: f.mode,
    }));
    spec.mask
        .extend(sandbox.secrets().iter().map(|s| s.expose().to_string()));
}

/// A sandbox for the job pool: the private network of slot `slot` (its `cove.job` label),
/// its rules and, when the agent's egress allow-list is not empty, its gateway — made from
/// the agent's settings only, before any job, so it holds no credentials.
pub async fn pool_sandbox(
    docker: &Docker,
    settings: &SandboxSettings,
    slot: &str,
) -> Result<JobSandbox, String> {
    let allow = AllowList::parse(&settings.egress_allow)
        .map_err(|e| format!("the agent's egress allow-list: {e}"))?;
    let broker = Arc::new(Broker::new(
        aws_config::SdkConfig::builder().build(),
        Arc::new(SystemClock),
        BrokerOptions::default(),
    ));
    JobSandbox::start(
        docker,
        broker,
        SandboxSpec {
            job: JobRef {
                run_id: String::new(),
                job_id: slot.to_string(),
                timeout: Duration::from_secs(3600),
            },
            codeartifact: None,
            mode: Mode::TokenFree,
            allow,
            home: HOME.into(),
            net: net_options(settings),
            gateway_at: gateway_at(settings),
            deploy: None,
        },
    )
    .await
    .map_err(|e| format!("a pooled private network could not be set up: {e}"))
}

/// At agent start: private networks and firewall rules a killed agent left
/// behind (no destructor ran). A job is live while a container labelled
/// with it runs — whichever agent on this engine owns it — so only the
/// leftovers of finished jobs are removed.
pub async fn clean_after_crash(docker: &Docker, settings: &SandboxSettings) {
    use std::collections::{HashMap, HashSet};
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}=job", crate::pod::LABEL_ROLE)],
    )]);
    let running: HashSet<String> = match docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: false,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
    {
        Ok(list) => list
            .into_iter()
            .filter_map(|c| c.labels?.remove(crate::jobs::LABEL_JOB))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "listing job containers failed; no crash cleanup");
            return;
        }
    };
    // Networks created in the last two minutes may belong to a job another
    // agent on this engine is starting right now (no container yet).
    let mut young = HashSet::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!(
            "{}={}",
            crate::private_net::LABEL_ROLE,
            crate::private_net::ROLE_PRIVATE_NET
        )],
    )]);
    if let Ok(nets) = docker
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
    {
        for n in nets {
            let created = n.created.as_deref().and_then(rfc3339_secs).unwrap_or(now);
            if now.saturating_sub(created) < 120 {
                if let Some(job) = n
                    .labels
                    .and_then(|mut l| l.remove(crate::private_net::LABEL_JOB))
                {
                    young.insert(job);
                }
            }
        }
    }
    match crate::private_net::cleanup_orphans(docker, &net_options(settings), |job| {
        running.contains(job) || young.contains(job)
    })
    .await
    {
        Ok(cleaned) if !cleaned.is_empty() => {
            tracing::info!(
                jobs = cleaned.len(),
                "removed private networks of finished jobs"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cleaning up private networks failed"),
    }
    let helper_age = std::time::Duration::from_secs(60);
    if let Err(e) = crate::private_net::remove_stale_helpers(docker, helper_age, |_| true).await {
        tracing::warn!(error = %e, "removing stale firewall helpers failed");
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-26T11:32:06.5Z`).
pub(crate) fn rfc3339_secs(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_agent_or_the_servers_profile_never_the_repository() {
        let mut p = JobPackages {
            config: cove_api::PackageConfig {
                role_arn: "arn:aws:iam::123456789012:role/cove-build".into(),
                region: "us-east-1".into(),
                domain: "acme".into(),
                domain_owner: "123456789012".into(),
                repositories: vec![],
                mode: PackageMode::TokenFree,
                endpoints: Some("vpc".into()),
                sts_endpoint: Some("http://owner-typed.example:1".into()),
                codeartifact_endpoint: Some("http://owner-typed.example:2".into()),
                max_session_secs: None,
            },
            mode: PackageMode::TokenFree,
            npm: vec![],
            export_token: false,
            aws_cli: true,
            sts_endpoint: None,
            codeartifact_endpoint: None,
        };
        let mut settings = SandboxSettings::default();
        let c = broker_config(&settings, &p);
        assert_eq!((c.sts_endpoint, c.codeartifact_endpoint), (None, None));
        p.sts_endpoint = Some("http://sts.admin:1".into());
        p.codeartifact_endpoint = Some("http://ca.admin:2".into());
        let c = broker_config(&settings, &p);
        assert_eq!(c.sts_endpoint.as_deref(), Some("http://sts.admin:1"));
        assert_eq!(
            c.codeartifact_endpoint.as_deref(),
            Some("http://ca.admin:2")
        );
        settings.sts_endpoint = Some("http://sts.agent:1".into());
        let c = broker_config(&settings, &p);
        assert_eq!(c.sts_endpoint.as_deref(), Some("http://sts.agent:1"));
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_secs("2026-11-26T11:32:06.566582Z"),
            Some(1_795_692_726)
        );
        assert_eq!(rfc3339_secs("2000-03-01T00:00:00+00:00"), Some(951_868_800));
        assert_eq!(rfc3339_secs("garbage"), None);
    }
}
