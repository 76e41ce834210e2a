//! The normalized workflow model shared by both input formats.
//!
//! A CodeCatalyst workflow and a CodeBuild buildspec both become one
//! [`Workflow`]: a list of [`Action`]s with resolved dependencies. Sections
//! Cove does not interpret yet (action-specific configuration, `Packages`,
//! `AutoDiscoverReports`, buildspec `batch`) are kept as JSON data.
//!
//! Kept-as-data scalars follow YAML 1.1 with one deliberate exception: plain
//! floats stay text (`3.10` must not become `3.1`). See [`crate::yaml11`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::pattern::Pattern;

/// Which file format a workflow was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `.codecatalyst/workflows/*.yaml`, `SchemaVersion: 1.0`.
    Codecatalyst,
    /// CodeBuild `buildspec.yml`, `version: 0.2`.
    Buildspec,
}

#[derive(Clone, Debug, Serialize)]
pub struct Workflow {
    pub name: String,
    /// The path the workflow was read from, as given by the caller.
    pub source_file: String,
    pub format: Format,
    /// `SchemaVersion` (CodeCatalyst, always `1.0`) or buildspec `version`,
    /// kept as the scalar text (`0.2` unquoted is a float in YAML; we keep
    /// the text).
    pub schema_version: String,
    pub run_mode: RunMode,
    /// No triggers means the workflow only starts manually.
    pub triggers: Vec<Trigger>,
    /// Workflow-level compute (CodeCatalyst); an action may not set its own
    /// compute when this is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<Compute>,
    /// Every action, flattened out of action groups, in file order.
    pub actions: Vec<Action>,
    /// Buildspec `batch` section as data. In a batch-only buildspec (no
    /// `phases`) its builds are the [`Action`]s (see [`Action::batch`]);
    /// beside `phases` it is not started (the phases run as one build).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<Json>,
    /// Batch `fast-fail`: once a build fails (one without
    /// `ignore-failure`), the builds still running are stopped and those
    /// not started never run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fast_fail: bool,
}

/// How runs of one workflow share its actions (CodeCatalyst `RunMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunMode {
    /// Runs wait in FIFO order at each action's entry (at most 50 waiting).
    #[default]
    Queued,
    /// A newer run entering a queue cancels the older waiting run, which
    /// ends as `Superseded` (not `Failed`).
    Superseded,
    /// No serialisation between runs.
    Parallel,
}

/// One trigger. `Branches` and `FilesChanged` are full-match regular
/// expressions (see [`Pattern`]); an empty list means "all".
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type")]
pub enum Trigger {
    #[serde(rename = "PUSH")]
    Push {
        branches: Vec<Pattern>,
        files_changed: Vec<Pattern>,
    },
    /// Branches are matched against the pull request's *destination*
    /// branch; the run uses the workflow file and sources of the *source*
    /// branch.
    #[serde(rename = "PULLREQUEST")]
    PullRequest {
        events: Vec<PullRequestEvent>,
        branches: Vec<Pattern>,
        files_changed: Vec<Pattern>,
    },
    /// One run per matched branch. `expression` is a 6-field EventBridge
    /// cron expression in UTC.
    #[serde(rename = "SCHEDULE")]
    Schedule {
        expression: String,
        branches: Vec<Pattern>,
    },
    #[serde(rename = "MANUAL")]
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PullRequestEvent {
    /// The pull request was created.
    Open,
    /// Every push to the source branch, including the first one (so a
    /// trigger on `REVISION` also fires when the pull request is opened).
    Revision,
    Closed,
    Draft,
    Merged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Compute {
    #[serde(rename = "type")]
    pub kind: ComputeType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// All actions share one instance (workflow level only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_instance: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ComputeType {
    #[serde(rename = "EC2")]
    Ec2,
    Lambda,
}

/// What an action's `Identifier` names, so later stages can refuse what
/// they cannot run before a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// `aws/build@…` and every buildspec.
    Build,
    /// `aws/managed-test@…`.
    Test,
    /// `aws/github-actions-runner@…` (steps use GitHub syntax).
    GithubActionsRunner,
    /// `aws/approval@…`: a manual gate, no compute.
    Approval,
    /// `aws/cdk-deploy@…`, `aws/cdk-bootstrap@…` and other `aws/*` actions
    /// driven only by `Configuration`.
    AwsManaged,
    /// `.`: defined in the workflow's own repository.
    Custom,
    /// Any other `owner/name@version`.
    ThirdParty,
}

impl ActionKind {
    /// True for actions whose exported variables are exactly their
    /// `Outputs.Variables` (so references to others can be checked).
    pub fn declares_outputs(self) -> bool {
        matches!(self, ActionKind::Build | ActionKind::Test)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Action {
    /// Unique id: the group path and the name joined with `.`
    /// (`Group1.SubAction1`); this is also how `${Group1.SubAction1.VAR}`
    /// names it.
    pub id: String,
    /// The action's own name (last segment of `id`).
    pub name: String,
    /// Enclosing action groups, outermost first; empty at top level.
    pub group_path: Vec<String>,
    pub identifier: String,
    pub kind: ActionKind,
    /// Resolved dependencies: explicit `DependsOn` (a group stands for all
    /// its actions), the enclosing groups' `DependsOn`, and implicit edges
    /// from `${Action.Var}` references and `Inputs.Artifacts`. Deduplicated;
    /// the first reason found is kept.
    pub depends_on: Vec<Dependency>,
    pub inputs: Inputs,
    pub outputs: Outputs,
    pub configuration: Configuration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<Compute>,
    /// Minutes before the action is stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caching: Vec<Cache>,
    /// `Packages` (e.g. `NpmConfiguration`, `ExportAuthorizationToken`),
    /// kept as data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Json>,
    /// Every secret the action uses, in first-use order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// `aws/approval@…` only: who decides, how many, and when it pauses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::approval::Gate>,
    /// A build of a batch buildspec: which buildspec it runs and whether its
    /// failure is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchBuild>,
}

/// A build of a batch-only buildspec (`build-graph`, `build-list` or
/// `build-matrix` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchBuild {
    /// The buildspec whose phases the build runs (a path in the
    /// repository, read at the run's commit).
    pub buildspec: String,
    /// `ignore-failure`: the build's failure (or its being skipped) does
    /// not fail the run. Builds that depend on it still wait for its
    /// success.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// Id of the action depended on.
    pub action: String,
    pub via: DependencyReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum DependencyReason {
    /// `DependsOn` entry (the name as written: an action or a group).
    DependsOn(String),
    /// `DependsOn` of an enclosing group (the group's id).
    GroupDependsOn(String),
    /// A `${Action.Var}` reference (the reference text).
    Variable(String),
    /// An `Inputs.Artifacts` entry produced by that action (artifact name).
    Artifact(String),
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Inputs {
    /// `WorkflowSource` or named sources; empty means no checkout.
    pub sources: Vec<String>,
    /// Artifact names produced by other actions.
    pub artifacts: Vec<String>,
    /// Become environment variables of the steps. Values may contain
    /// `${Action.Var}` references, substituted before the action starts.
    pub variables: Vec<Variable>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub name: String,
    /// The scalar text as written (`1` stays `"1"`, `yes` stays `"yes"`:
    /// values are never re-typed, unlike YAML 1.1 booleans elsewhere).
    pub value: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Outputs {
    pub artifacts: Vec<ArtifactOutput>,
    /// Names of environment variables whose final values are exported.
    pub variables: Vec<String>,
    pub reports: Vec<Report>,
    /// CodeCatalyst `AutoDiscoverReports`, kept as data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_discover_reports: Option<Json>,
}

/// An artifact an action produces. Buildspec artifacts use the name
/// `primary` for the top-level `artifacts` block and the identifier of each
/// `secondary-artifacts` entry.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ArtifactOutput {
    pub name: String,
    /// Globs relative to the working dir (or `base_directory`).
    pub files: Vec<String>,
    /// Buildspec `name:` (shell-expanded by the agent, may contain `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_template: Option<String>,
    /// Buildspec: the matched directories themselves are not included, only
    /// their contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_directory: Option<String>,
    /// Buildspec: flatten paths.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub discard_paths: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_symlinks: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_prefix: Option<String>,
}

/// A test/coverage/static-analysis report (CodeCatalyst `Outputs.Reports`
/// or buildspec `reports`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub name: String,
    /// Upper-case format name (`JUNITXML` when a buildspec omits it).
    pub format: String,
    /// CodeCatalyst `IncludePaths` / buildspec `files`.
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_directory: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub discard_paths: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_criteria: Option<Json>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Configuration {
    /// What the agent executes, in order. See [`Step`] for the semantics.
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Buildspec `env.shell` (default `/bin/sh` on Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Buildspec top-level `run-as` (a phase's `run-as` overrides it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// Buildspec `env.git-credential-helper`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_credential_helper: Option<bool>,
    /// Action-specific keys (`StackName`, `Context`, a custom action's
    /// inputs, buildspec `proxy`…), kept as data. Values may contain
    /// `${…}` references, substituted with [`crate::Target::Value`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, Json>,
}

/// One unit of execution.
///
/// Execution semantics (design notes §1.7, §2.2 and §6 rules 1–3), which the
/// agent implements:
///
/// 1. **Per-command state snapshot.** Every command (a [`Step::Run`], or one
///    entry of a phase's `commands`/`finally`) runs in a fresh `/bin/sh`
///    (or `env.shell`) process that starts in the previous command's working
///    directory with the previous command's environment, *including plain
///    `X=1` assignments* (allexport). Shell functions, aliases, options
///    (`set -e`), traps and arrays do not carry over. For buildspecs this
///    state also carries across phases.
/// 2. **Exit status.** A command's status is its script's last command: a
///    multi-line block does not stop at its first failing line unless it
///    sets `set -e` itself. The first failing command ends the action (or
///    the phase's `commands`); later commands do not run.
/// 3. **Buildspec phase machine.** Phases run in the order install,
///    pre_build, build, post_build. A failure in install or pre_build skips
///    the remaining phases; a failure in build still runs post_build with
///    `CODEBUILD_BUILD_SUCCEEDING=0`; artifact upload is always attempted.
///    `finally` always runs once its phase started, and its failure fails
///    the phase. A phase's `on_failure` overrides the default transition
///    (see [`OnFailure`]).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// A CodeCatalyst `Run:` step: one shell script.
    Run { command: String },
    /// A buildspec phase.
    Phase(Phase),
    /// A GitHub-syntax step of `aws/github-actions-runner` (`uses:`,
    /// `with:`, `run:`), kept as data.
    Github { step: Json },
}

#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: PhaseName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Only meaningful in `install`. Values are the scalar text
    /// (`python: 3.10` stays `"3.10"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub runtime_versions: BTreeMap<String, String>,
    pub commands: Vec<String>,
    /// Runs after `commands` whenever the phase started, even if a command
    /// failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Install,
    PreBuild,
    Build,
    PostBuild,
}

impl PhaseName {
    pub const ALL: [PhaseName; 4] = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];

    /// The key used in a buildspec.
    pub fn key(self) -> &'static str {
        match self {
            PhaseName::Install => "install",
            PhaseName::PreBuild => "pre_build",
            PhaseName::Build => "build",
            PhaseName::PostBuild => "post_build",
        }
    }
}

/// A buildspec phase's `on-failure`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnFailure {
    /// Abort the build: no later phase runs (artifacts are still attempted).
    Abort,
    /// Move on to the next phase; the build's result is still failed.
    Continue,
    /// Newer CodeBuild form `RETRY`, `RETRY-<count>`, `RETRY-<regex>`,
    /// `RETRY-<count>-<regex>`: retry the build, at most `count` times
    /// (CodeBuild's default 3), only when the error output matches `regex`
    /// (if given).
    Retry {
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        regex: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    /// `CODECATALYST`, `ECR` or `DockerHub`.
    pub registry: String,
    pub image: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Environment {
    pub name: String,
    pub connections: Vec<Connection>,
}

/// The action runs with credentials of `role` in the account connection
/// `name` (an STS AssumeRole for Cove).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub name: String,
    pub role: String,
}

/// A cache entry: CodeCatalyst `Caching.FileCaching.<key>` or buildspec
/// `cache`. Restored before the steps, saved after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cache {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore_keys: Vec<String>,
}

/// A secret an action uses. Secrets are injected as environment variables
/// and referenced by name in scripts, never inlined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SecretRef {
    /// `${Secrets.name}`, injected as `CATALYST_SECRETS_<name>`.
    Codecatalyst { name: String },
    /// Buildspec `env.parameter-store`: env var `env` ← SSM parameter.
    ParameterStore { env: String, parameter: String },
    /// Buildspec `env.secrets-manager`:
    /// `secret-id[:json-key[:version-stage[:version-id]]]`, taken
    /// literally (`$X` in it is not expanded).
    SecretsManager {
        env: String,
        secret_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        json_key: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version_stage: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
    },
}

impl Workflow {
    pub fn action(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }
}
