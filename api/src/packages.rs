//! Package access for builds: a repository's CodeArtifact configuration
//! (`/api/v1/repos/{owner}/{name}/packages`) and what a job lease carries of it.

use serde::{Deserialize, Serialize};

/// How a build reaches its packages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PackageMode {
    /// The build sees only the agent gateway's package URLs; no token enters it.
    #[default]
    TokenFree,
    /// What `aws codeartifact login` writes: the token is in the build's
    /// `.npmrc`, `pip.conf`, `.pypirc` and `CODEARTIFACT_AUTH_TOKEN`.
    Compatible,
}

/// One CodeArtifact repository builds may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageRepository {
    pub name: String,
    /// `npm` or `pypi`.
    pub format: String,
}

/// Which role the agent assumes and which CodeArtifact repositories a build
/// may read. Per repository, optionally per workflow environment
/// (`Environment.Name` of an action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageConfig {
    pub role_arn: String,
    pub region: String,
    pub domain: String,
    /// AWS account id owning the domain.
    pub domain_owner: String,
    pub repositories: Vec<PackageRepository>,
    #[serde(default)]
    pub mode: PackageMode,
    /// Name of an endpoint profile of the server's configuration
    /// (`[packages.endpoints.NAME]`: STS and CodeArtifact endpoints chosen by an
    /// administrator); absent: AWS's regional endpoints (or the agent's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<String>,
    /// No longer accepted: endpoints come only from administrator configuration
    /// (`endpoints` names a profile). Kept so that a request or a stored
    /// configuration naming one is refused with a message, not ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
    /// No longer accepted (see `sts_endpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codeartifact_endpoint: Option<String>,
    /// The role's maximum session, when below 12 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_secs: Option<u64>,
}

/// `PUT /api/v1/repos/{owner}/{name}/packages` and an entry of its `GET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageConfigEntry {
    /// Workflow environment this applies to; absent: the repository default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub config: PackageConfig,
}

/// npm scopes routed to one repository (`NpmConfiguration.PackageRegistries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NpmRegistry {
    pub repository: String,
    /// `@scope` names; empty: the default registry.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Package access of one leased job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobPackages {
    /// The configuration that applies (repository default or the action's
    /// environment).
    pub config: PackageConfig,
    /// The mode in effect: the configuration's, or compatible when the action
    /// needs the token itself (`ExportAuthorizationToken`, a buildspec running
    /// `aws codeartifact …`).
    pub mode: PackageMode,
    /// npm registries the action asked for (CodeCatalyst `NpmConfiguration`);
    /// empty: every npm repository of the configuration, the first as default.
    #[serde(default)]
    pub npm: Vec<NpmRegistry>,
    /// `Packages.ExportAuthorizationToken`: export the token as
    /// `CATALYST_PACKAGES_AUTHORIZATION_TOKEN`.
    #[serde(default)]
    pub export_token: bool,
    /// The build runs the AWS CLI against CodeArtifact (`aws codeartifact
    /// login`): give it the job's role session and the API endpoint.
    #[serde(default)]
    pub aws_cli: bool,
    /// STS endpoint of the administrator's endpoint profile the configuration
    /// names (the server resolves it; the agent's own setting wins). Never
    /// anything a repository owner typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
    /// CodeArtifact API endpoint of that profile (as `sts_endpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codeartifact_endpoint: Option<String>,
}
