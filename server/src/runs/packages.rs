//! CodeArtifact access of builds: the repository's package configurations
//! (REST handlers, validation) and what a job's lease carries of them
//! ([`job_packages`]). The agent turns that into credentials (its broker),
//! a gateway and the build's `.npmrc`/`pip.conf`.

use crate::extract::{Json, Query};
use axum::extract::State;
use axum::Extension;
use cove_api::{JobPackages, NpmRegistry, PackageConfig, PackageConfigEntry, PackageMode};
use serde::Deserialize;
use workflows::{Action, Step};

use super::package_policy::PackagesPolicy;
use super::RunsError;
use crate::error::ApiError;
use crate::store::{now_secs, RepoRow};
use crate::AppState;

fn valid_word(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// An AWS region name (`us-east-1`, `us-gov-west-1`): lowercase words and a
/// number joined by `-`. The default CodeArtifact API host of a build that runs
/// the AWS CLI is derived from it, so it is never more than a region name.
fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every problem with a configuration, as one message a person can act on:
/// its shape, then what the administrator's `policy` does not allow for
/// repository `repo` (`owner/name`): raw endpoints, unknown endpoint
/// profiles, roles outside the allowed patterns.
pub fn validate_for(
    policy: &PackagesPolicy,
    repo: &str,
    entry: &PackageConfigEntry,
) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Err(e) = validate(entry) {
        problems.push(e);
    }
    problems.extend(policy.refusals(repo, &entry.config));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Every problem with a configuration's shape, as one message a person can act on.
pub fn validate(entry: &PackageConfigEntry) -> Result<(), String> {
    let c = &entry.config;
    let mut problems = Vec::new();
    if let Some(env) = &entry.environment {
        if !valid_word(env, 100) {
            problems.push(format!(
                "environment {env:?}: letters, digits, '.', '_', '-', at most 100"
            ));
        }
    }
    let arn_ok = c
        .role_arn
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .and_then(|(_, r)| r.split_once(":role/"))
        .is_some_and(|(account, role)| {
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !role.is_empty()
        });
    if !arn_ok {
        problems.push(format!(
            "role_arn {:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)",
            c.role_arn
        ));
    }
    if !valid_region(&c.region) {
        problems.push(format!(
            "region {:?} is not an AWS region name (e.g. us-east-1)",
            c.region
        ));
    }
    if !valid_word(&c.domain, 50) {
        problems.push(format!(
            "domain {:?} is not a CodeArtifact domain name",
            c.domain
        ));
    }
    if c.domain_owner.len() != 12 || !c.domain_owner.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!(
            "domain_owner {:?} must be a 12-digit AWS account id",
            c.domain_owner
        ));
    }
    if c.repositories.is_empty() {
        problems.push("repositories: name at least one CodeArtifact repository".into());
    }
    for r in &c.repositories {
        if !valid_word(&r.name, 100) {
            problems.push(format!("repository {:?} is not a repository name", r.name));
        }
        if !matches!(r.format.as_str(), "npm" | "pypi") {
            problems.push(format!(
                "repository {}: format {:?} is not supported (npm, pypi)",
                r.name, r.format
            ));
        }
    }
    if let Some(s) = c.max_session_secs {
        if !(900..=43200).contains(&s) {
            problems.push(format!("max_session_secs {s} must be 900..=43200"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `GET /api/v1/repos/{owner}/{name}/packages`.
pub async fn list(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<PackageConfigEntry>>, ApiError> {
    let mut out = Vec::new();
    for (environment, json) in state.store().list_package_configs(repo.id).await? {
        let config: PackageConfig = serde_json::from_str(&json).map_err(|e| {
            ApiError::internal(anyhow::anyhow!("stored package configuration: {e}"))
        })?;
        out.push(PackageConfigEntry {
            environment: (!environment.is_empty()).then_some(environment),
            config,
        });
    }
    Ok(Json(out))
}

/// `PUT /api/v1/repos/{owner}/{name}/packages`.
pub async fn put(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(entry): Json<PackageConfigEntry>,
) -> Result<Json<PackageConfigEntry>, ApiError> {
    let full = format!("{}/{}", repo.owner, repo.name);
    validate_for(&state.runs().config.packages, &full, &entry).map_err(ApiError::Unprocessable)?;
    let json = serde_json::to_string(&entry.config)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    state
        .store()
        .put_package_config(
            repo.id,
            entry.environment.as_deref().unwrap_or(""),
            &json,
            now_secs(),
        )
        .await?;
    Ok(Json(entry))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentQuery {
    pub environment: Option<String>,
}

/// `DELETE /api/v1/repos/{owner}/{name}/packages[?environment=]`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(q): Query<EnvironmentQuery>,
) -> Result<axum::http::StatusCode, ApiError> {
    let env = q.environment.unwrap_or_default();
    if state.store().delete_package_config(repo.id, &env).await? {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(if env.is_empty() {
            "package configuration (repository default)".into()
        } else {
            format!("package configuration of environment {env}")
        }))
    }
}

/// npm registries an action asks for in `Packages.NpmConfiguration`.
fn npm_registries(packages: &serde_json::Value) -> Vec<NpmRegistry> {
    packages
        .pointer("/NpmConfiguration/PackageRegistries")
        .and_then(|r| r.as_array())
        .map(|regs| {
            regs.iter()
                .filter_map(|r| {
                    Some(NpmRegistry {
                        repository: r.get("PackagesRepository")?.as_str()?.to_string(),
                        scopes: r
                            .get("Scopes")
                            .and_then(|s| s.as_array())
                            .map(|s| {
                                s.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an action's commands run the AWS CLI against CodeArtifact
/// (`aws codeartifact login …`, `aws codeartifact get-authorization-token …`).
pub fn runs_aws_codeartifact(action: &Action) -> bool {
    let mentions = |c: &String| {
        c.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "aws" && w[1] == "codeartifact")
    };
    action.configuration.steps.iter().any(|s| match s {
        Step::Run { command } => mentions(command),
        Step::Phase(p) => p.commands.iter().chain(&p.finally).any(mentions),
        Step::Github { .. } => false,
    })
}

/// The package access of a job: the configuration for the action's
/// environment (else the repository default), narrowed to the npm
/// registries the action names, and the mode it needs.
pub async fn job_packages(
    state: &AppState,
    repo_id: i64,
    action: &Action,
) -> Result<Option<JobPackages>, RunsError> {
    let requested = action.packages.as_ref();
    let npm = requested.map(npm_registries).unwrap_or_default();
    let export_token = requested
        .and_then(|p| p.get("ExportAuthorizationToken"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let aws_cli = runs_aws_codeartifact(action);
    let env = action.environment.as_ref().map(|e| e.name.as_str());
    let configs = state.store().list_package_configs(repo_id).await?;
    let chosen = env
        .and_then(|e| configs.iter().find(|(n, _)| n == e))
        .or_else(|| configs.iter().find(|(n, _)| n.is_empty()));
    let Some((chosen_env, json)) = chosen else {
        if !npm.is_empty() || export_token {
            return Err(RunsError::BadRequest(format!(
                "action {} asks for packages (`Packages`) but this repository has no package configuration{} (cove repo packages set)",
                action.id,
                env.map(|e| format!(" for environment {e} or as default"))
                    .unwrap_or_default()
            )));
        }
        return Ok(None);
    };
    let mut config: PackageConfig = serde_json::from_str(json)
        .map_err(|e| RunsError::BadRequest(format!("stored package configuration: {e}")))?;
    // A configuration stored before endpoints and roles came from the
    // administrator (or before the policy changed) is refused here, by field.
    let repo = state
        .store()
        .repo_by_id(repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository {repo_id}")))?;
    let policy = &state.runs().config.packages;
    let refusals = policy.refusals(&format!("{}/{}", repo.owner, repo.name), &config);
    if !refusals.is_empty() {
        let which = match chosen_env.as_str() {
            "" => "the repository default".to_string(),
            e => format!("environment {e}"),
        };
        return Err(RunsError::BadRequest(format!(
            "action {}: the package configuration ({which}) is no longer allowed: {}; set it again with `cove repo packages set`",
            action.id,
            refusals.join("; ")
        )));
    }
    let profile = policy.profile(&config).cloned().unwrap_or_default();
    // Only administrator settings travel to the agent.
    config.sts_endpoint = None;
    config.codeartifact_endpoint = None;
    for r in &npm {
        if !config
            .repositories
            .iter()
            .any(|c| c.name == r.repository && c.format == "npm")
        {
            return Err(RunsError::BadRequest(format!(
                "action {}: package repository `{}` is not an npm repository of this repository's package configuration (configured: {})",
                action.id,
                r.repository,
                config
                    .repositories
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.format))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mode = if export_token || aws_cli {
        PackageMode::Compatible
    } else {
        config.mode
    };
    Ok(Some(JobPackages {
        config,
        mode,
        npm,
        export_token,
        aws_cli,
        sts_endpoint: profile.sts,
        codeartifact_endpoint: profile.codeartifact,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_api::PackageRepository;

    fn entry() -> PackageConfigEntry {
        PackageConfigEntry {
            environment: None,
            config: PackageConfig {
                role_arn: "arn:aws:iam::123456789012:role/cove-build".into(),
                region: "us-east-1".into(),
                domain: "acme".into(),
                domain_owner: "123456789012".into(),
                repositories: vec![PackageRepository {
                    name: "npm-store".into(),
                    format: "npm".into(),
                }],
                mode: PackageMode::TokenFree,
                endpoints: None,
                sts_endpoint: None,
                codeartifact_endpoint: None,
                max_session_secs: None,
            },
        }
    }

    #[test]
    fn a_good_configuration_passes_and_bad_fields_are_all_named() {
        assert_eq!(validate(&entry()), Ok(()));
        let mut bad = entry();
        bad.config.role_arn = "cove-build".into();
        bad.config.domain_owner = "12".into();
        bad.config.repositories[0].format = "maven".into();
        bad.environment = Some("a b".into());
        bad.config.region = "x.evil.example".into();
        let message = validate(&bad).unwrap_err();
        for needle in [
            "role_arn",
            "domain_owner",
            "maven",
            "environment \"a b\"",
            "region \"x.evil.example\"",
        ] {
            assert!(message.contains(needle), "{needle} not in {message}");
        }
    }

    #[test]
    fn regions_are_aws_region_names() {
        for ok in [
            "us-east-1",
            "eu-central-1",
            "us-gov-west-1",
            "ap-southeast-2",
        ] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-east-1",
            "us.east-1",
            "x.evil.com",
            "us-east-1a",
        ] {
            assert!(!valid_region(bad), "{bad}");
        }
    }

    #[test]
    fn npm_registries_come_from_the_codecatalyst_section() {
        let p = serde_json::json!({"NpmConfiguration": {"PackageRegistries": [
            {"PackagesRepository": "npm-store", "Scopes": ["@acme"]},
            {"PackagesRepository": "public"}
        ]}});
        assert_eq!(
            npm_registries(&p),
            vec![
                NpmRegistry {
                    repository: "npm-store".into(),
                    scopes: vec!["@acme".into()]
                },
                NpmRegistry {
                    repository: "public".into(),
                    scopes: vec![]
                }
            ]
        );
    }
}
