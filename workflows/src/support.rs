//! What Cove does with every construct the parser accepts: it runs with its
//! documented meaning, it runs with a warning that says what differs, or it
//! is refused before a run starts with "not supported by Cove: …".
//!
//! [`validate_file`](crate::validate_file) judges a file by its format's own
//! rules (the conformance corpus); [`validate_for_cove`](crate::validate_for_cove)
//! adds [`check`], so nothing Cove would silently ignore reaches a run.
//! [`CONSTRUCTS`] is the table behind docs/compatibility.md "## Workflows"
//! (`workflows/tests/compatibility_doc.rs` keeps the page equal to
//! [`markdown`]); a unit test requires a row for every key the parsers know.

use yamlmap::{Diagnostic, Node, Pos};

use crate::model::Format;

/// One construct and Cove's behaviour.
#[derive(Clone, Copy, Debug)]
pub struct Construct {
    pub format: Format,
    /// The key path as written in a file: `Actions.<action>.Timeout`,
    /// `phases.<phase>.run-as`.
    pub key: &'static str,
    /// `runs`, `warns` or `refuses` (or several, by value).
    pub support: &'static str,
    pub what: &'static str,
}

const fn cc(key: &'static str, support: &'static str, what: &'static str) -> Construct {
    Construct {
        format: Format::Codecatalyst,
        key,
        support,
        what,
    }
}

const fn bs(key: &'static str, support: &'static str, what: &'static str) -> Construct {
    Construct {
        format: Format::Buildspec,
        key,
        support,
        what,
    }
}

/// Every construct of CodeCatalyst workflow YAML and buildspec 0.2 that the
/// parsers accept, with what Cove does with it.
pub const CONSTRUCTS: &[Construct] = &[
    cc("Name", "runs", "the workflow's name"),
    cc("SchemaVersion", "runs", "`1.0` only"),
    cc("RunMode", "runs", "`QUEUED`, `SUPERSEDED`, `PARALLEL` (docs/runs.md)"),
    cc("Compute", "runs", "workflow-level compute; see the keys below"),
    cc("Compute.Type", "runs · warns", "`EC2` runs the action as a job container on a Cove agent; `Lambda` warns: it runs the same way, without Lambda's limits"),
    cc("Compute.Fleet", "runs · warns", "a provisioned fleet `NAME` runs the action only on an agent of the agent pool `NAME` (label `pool=NAME`; docs/agents.md); on-demand `Linux.x86-64.*` / `Linux.Arm64.*` warn: they run on an agent labelled `arch=amd64` / `arch=arm64` with its job limits, not the fleet's size"),
    cc("Compute.SharedInstance", "runs · refuses", "`false` runs; `true` is refused: every action runs in its own fresh container, so files do not carry between actions (use artifacts)"),
    cc("Triggers", "runs", "none: manual starts only"),
    cc("Triggers[].Type", "runs", "`PUSH`, `PULLREQUEST`, `SCHEDULE`, `MANUAL`"),
    cc("Triggers[].Events", "runs · refuses", "`OPEN`, `REVISION`, `CLOSED`, `MERGED` run; `DRAFT` is refused (Cove has no draft pull requests)"),
    cc("Triggers[].Branches", "runs", "full-match regular expressions"),
    cc("Triggers[].FilesChanged", "runs", "full-match regular expressions over changed paths"),
    cc("Triggers[].Expression", "runs", "6-field EventBridge cron, UTC (docs/runs.md)"),
    cc("Actions", "runs", "actions and action groups"),
    cc("Actions.<group>.Actions", "runs", "an action group"),
    cc("Actions.<group>.DependsOn", "runs", "the group's members wait for these"),
    cc("Actions.<action>.Identifier", "runs · refuses", "`aws/build@v1`, `aws/managed-test@v1` and `aws/approval@v1` run; `aws/github-actions-runner@v1`, other `aws/*` actions (`aws/cdk-deploy@v1`, …), custom (`.`) and third-party actions are refused"),
    cc("Actions.<action>.DependsOn", "runs", "explicit dependencies (cross-level names accepted with a warning)"),
    cc("Actions.<action>.Compute", "runs · warns · refuses", "as workflow-level `Compute` (without `SharedInstance`)"),
    cc("Actions.<action>.Timeout", "runs", "minutes before the job is stopped (timed out)"),
    cc("Actions.<action>.Environment", "runs", "selects the package configuration of that environment; deployment environments: docs/deployments.md"),
    cc("Actions.<action>.Environment.Name", "runs", "the environment's name"),
    cc("Actions.<action>.Environment.Connections", "runs", "account connection and role (docs/deployments.md)"),
    cc("Actions.<action>.Caching", "runs", "file caches stored by the server per repository, workflow, action and key; restored before the steps, saved after a success (docs/runs.md \"Caches\")"),
    cc("Actions.<action>.Caching.FileCaching.<key>.Path", "runs · refuses", "a directory or file (relative: under the source directory); a glob is refused"),
    cc("Actions.<action>.Caching.FileCaching.<key>.RestoreKeys", "runs", "keys tried in order when the cache's own key has nothing stored"),
    cc("Actions.<action>.Inputs", "runs", "see the keys below"),
    cc("Actions.<action>.Inputs.Sources", "runs · refuses", "`WorkflowSource` (the run's commit) runs; other source names are refused"),
    cc("Actions.<action>.Inputs.Artifacts", "runs", "extracted to `$CATALYST_SOURCE_DIR_<name>`"),
    cc("Actions.<action>.Inputs.Variables", "runs", "environment variables of the steps, `${Action.Var}` substituted"),
    cc("Actions.<action>.Outputs", "runs", "see the keys below"),
    cc("Actions.<action>.Outputs.Artifacts", "runs", "collected by glob after the steps"),
    cc("Actions.<action>.Outputs.Variables", "runs", "exported for `${Action.Var}`"),
    cc("Actions.<action>.Outputs.AutoDiscoverReports", "runs · refuses", "`Enabled: false` runs (nothing to do); enabled auto-discovery is refused"),
    cc("Actions.<action>.Outputs.Reports", "runs", "test and coverage reports: collected after the steps (also after a failure), stored with the run, `cove run reports`, the run page (docs/runs.md \"Reports\")"),
    cc("Actions.<action>.Outputs.Reports.<name>.Format", "runs · refuses", "`JUNITXML`, `TESTNGXML`, `NUNITXML`, `NUNIT3XML`, `VISUALSTUDIOTRX`, `CUCUMBERJSON`, `COBERTURAXML`, `JACOCOXML`, `CLOVERXML`, `LCOV` run; `SIMPLECOV`, `ESLINTJSON`, `PYLINTJSON`, `SARIFSA`, `SARIFSCA` are refused"),
    cc("Actions.<action>.Outputs.Reports.<name>.IncludePaths", "runs", "globs relative to the source directory"),
    cc("Actions.<action>.Outputs.Reports.<name>.ExcludePaths", "runs", "globs left out"),
    cc("Actions.<action>.Outputs.Reports.<name>.SuccessCriteria", "runs · refuses", "`PassRate`, `LineCoverage`, `BranchCoverage` (minimum percent) run: a report below one fails its action; `Vulnerabilities` and `StaticAnalysis*` are refused"),
    cc("Actions.<action>.Configuration", "runs", "build/test: `Steps`, `Container`, `Packages`; approval gates: docs/approvals.md"),
    cc("Actions.<action>.Configuration.Steps[].Run", "runs", "one shell script per step (docs/jobs.md)"),
    cc("Actions.<action>.Configuration.Container", "runs · refuses", "the job runs in `Image`, pulled by the agent's engine; CodeCatalyst's curated `CodeCatalystLinux*` images are refused (omit `Container` for Cove's default image)"),
    cc("Actions.<action>.Configuration.ApprovalsRequired", "runs", "approval gate (docs/approvals.md)"),
    cc("Actions.<action>.Configuration.Approvers", "runs", "approval gate (docs/approvals.md)"),
    cc("Actions.<action>.Configuration.Condition", "runs", "approval gate (docs/approvals.md)"),
    cc("Actions.<action>.Packages", "runs", "`NpmConfiguration`, `ExportAuthorizationToken` through the job's package gateway (docs/private-subnet.md)"),
    bs("version", "runs", "`0.2` only"),
    bs("run-as", "refuses", "commands run as the image's user"),
    bs("env", "runs", "see the keys below"),
    bs("env.shell", "runs · refuses", "`bash`, `sh`, `/bin/sh`, `/bin/bash` run; `powershell.exe`, `pwsh.exe`, `cmd.exe` are refused"),
    bs("env.variables", "runs", "literal values"),
    bs("env.parameter-store", "refuses", "Cove does not read SSM parameters; use repository secrets in a CodeCatalyst workflow"),
    bs("env.secrets-manager", "refuses", "Cove does not read Secrets Manager; use repository secrets in a CodeCatalyst workflow"),
    bs("env.exported-variables", "runs", "exported like `Outputs.Variables`"),
    bs("env.git-credential-helper", "runs · refuses", "`no` runs; `yes` is refused: jobs get no git credentials"),
    bs("proxy", "warns", "explicit-proxy settings do not apply: Cove uploads artifacts and logs itself"),
    bs("batch", "runs · warns", "without `phases` (a batch-only buildspec): each build is an action of the run (docs/runs.md \"Batch buildspecs\"), and the file's own `env`, `artifacts`, `reports`, `cache` warn (each build uses its buildspec's); beside `phases`: warns, the phases run as one build (as a non-batch CodeBuild start does) and the batch is not started"),
    bs("batch.fast-fail", "runs", "`true`: once a build fails (one without `ignore-failure`), running builds are stopped and the others never start; default `false`: the others run on"),
    bs("batch.build-graph", "runs", "builds that wait for their `depend-on` builds to succeed"),
    bs("batch.build-list", "runs", "builds that run in parallel (`identifier` optional: `build1`, `build2` …)"),
    bs("batch.build-matrix", "runs", "one build per combination of the `dynamic` values (buildspec × image × compute type × each variable), `static` settings on all"),
    bs("batch.build-matrix.static", "runs", "`ignore-failure` and `env` of every build"),
    bs("batch.build-matrix.dynamic", "runs", "`buildspec`, `env.image`, `env.compute-type`, `env.variables` lists"),
    bs("batch.build-fanout", "refuses", "test splitting (`codebuild-tests-run`) is not available"),
    bs("batch.service-role", "warns", "no effect: builds run with the agent's job permissions"),
    bs("batch.combine-artifacts", "runs", "a run's artifacts are always kept together, per build identifier"),
    bs("batch.build-timeout-in-mins", "warns", "applied to each build (its job timeout), not to the batch as a whole"),
    bs("batch.<build>.identifier", "runs", "the action's name (letters, digits, `_`, `-`)"),
    bs("batch.<build>.buildspec", "runs · refuses", "a path in the repository, read at the run's commit; its phases run; S3 locations are refused"),
    bs("batch.<build>.depend-on", "runs", "`build-graph` only: the build runs once these succeeded, and is skipped when one did not"),
    bs("batch.<build>.ignore-failure", "runs", "the build's failure (or its being skipped) does not fail the run"),
    bs("batch.<build>.debug-session", "warns", "`true` has no effect (no Session Manager); use `cove env` for an interactive environment"),
    bs("batch.<build>.env", "runs", "overrides of the build's buildspec; see the keys below"),
    bs("batch.<build>.env.variables", "runs", "set over the buildspec's `env.variables`"),
    bs("batch.<build>.env.image", "runs · refuses", "the job's image, pulled by the agent's engine; CodeBuild's curated `aws/codebuild/…` images are refused"),
    bs("batch.<build>.env.compute-type", "warns", "the build runs with the agent's job limits"),
    bs("batch.<build>.env.fleet", "refuses", "builds run on Cove's registered agents"),
    bs("batch.<build>.env.type", "runs · warns · refuses", "`LINUX_CONTAINER` runs; other Linux types warn (run as a Linux container); `ARM_*` and `WINDOWS_*` types are refused"),
    bs("batch.<build>.env.privileged-mode", "runs · refuses", "`false` runs; `true` is refused: jobs never run privileged (no Docker daemon inside a build)"),
    bs("phases", "runs", "install, pre_build, build, post_build in order (docs/jobs.md)"),
    bs("phases.<phase>.run-as", "refuses", "commands run as the image's user"),
    bs("phases.<phase>.on-failure", "runs", "`ABORT`, `CONTINUE`, `RETRY[-n][-regex]`"),
    bs("phases.<phase>.runtime-versions", "warns", "runtimes are not installed: the job image's versions are used"),
    bs("phases.<phase>.commands", "runs", "each command in a fresh shell with carried state"),
    bs("phases.<phase>.finally", "runs", "always runs once its phase started"),
    bs("reports", "runs", "report groups: collected after the phases, stored with the run, `cove run reports`, the run page; as in CodeBuild they do not change the build's result"),
    bs("reports.<group>.files", "runs", "globs"),
    bs("reports.<group>.base-directory", "runs", "paths relative to it"),
    bs("reports.<group>.discard-paths", "runs", "file names only matter for messages"),
    bs("reports.<group>.file-format", "runs · refuses", "as CodeCatalyst `Format`; `SIMPLECOV` is refused"),
    bs("artifacts", "runs", "the artifact `primary`"),
    bs("artifacts.files", "runs", "globs"),
    bs("artifacts.name", "warns", "the artifact is stored as `primary` (or its secondary identifier), not under this name"),
    bs("artifacts.discard-paths", "runs", "flattens paths"),
    bs("artifacts.base-directory", "runs", "paths relative to it"),
    bs("artifacts.exclude-paths", "runs", "globs left out"),
    bs("artifacts.enable-symlinks", "warns", "artifacts are tar archives; symlinks are kept as they are"),
    bs("artifacts.s3-prefix", "warns", "artifacts are stored by the Cove server, not in S3"),
    bs("artifacts.secondary-artifacts", "runs", "one artifact per identifier"),
    bs("cache", "runs", "restored before the phases, saved after a successful build (docs/runs.md \"Caches\")"),
    bs("cache.paths", "runs · refuses", "directories or files, `dir/**/*` meaning the directory; other globs are refused"),
    bs("cache.key", "runs", "the key (default `default`)"),
    bs("cache.fallback-keys", "runs", "keys tried in order when the key has nothing stored"),
    bs("cache.action", "refuses", "restore-only or save-only caches are not supported"),
];

/// The "## Workflows" tables of docs/compatibility.md.
pub fn markdown() -> String {
    let mut out = String::new();
    for (format, title) in [
        (Format::Codecatalyst, "CodeCatalyst workflow YAML"),
        (Format::Buildspec, "CodeBuild buildspec 0.2"),
    ] {
        out.push_str(&format!(
            "### {title}\n\n| construct | Cove | what happens |\n|---|---|---|\n"
        ));
        for c in CONSTRUCTS.iter().filter(|c| c.format == format) {
            out.push_str(&format!("| `{}` | {} | {} |\n", c.key, c.support, c.what));
        }
        out.push('\n');
    }
    out
}

const PREFIX: &str = "not supported by Cove: ";

struct Checker<'a> {
    file: &'a str,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn refuse(&mut self, pos: Pos, what: impl AsRef<str>, help: &str) {
        self.out.push(
            Diagnostic::error(self.file, pos, format!("{PREFIX}{}", what.as_ref())).with_help(help),
        );
    }

    fn warn(&mut self, pos: Pos, what: impl AsRef<str>, help: &str) {
        self.out
            .push(Diagnostic::warning(self.file, pos, what.as_ref()).with_help(help));
    }
}

/// Cove's refusals (errors starting "not supported by Cove: ") and warnings
/// for a file that [`validate_file`](crate::validate_file) accepted.
pub(crate) fn check(file: &str, root: &Node, format: Format) -> Vec<Diagnostic> {
    let mut c = Checker {
        file,
        out: Vec::new(),
    };
    match format {
        Format::Codecatalyst => codecatalyst(&mut c, root),
        Format::Buildspec => buildspec(&mut c, root),
    }
    c.out
}

fn text(n: &Node) -> Option<&str> {
    n.as_str().filter(|_| !n.is_null())
}

fn is_false(n: &Node) -> bool {
    text(n).is_some_and(|t| crate::yaml11::bool_of(t) == Some(false))
}

fn codecatalyst(c: &mut Checker, root: &Node) {
    if let Some(n) = root.get("Compute") {
        compute(c, n);
    }
    for t in root.get("Triggers").map(Node::items).unwrap_or_default() {
        for ev in t.get("Events").map(Node::items).unwrap_or_default() {
            if text(ev).is_some_and(|e| e.eq_ignore_ascii_case("DRAFT")) {
                c.refuse(
                    ev.pos,
                    "the pull request event `DRAFT` (Cove has no draft pull requests)",
                    "remove `DRAFT`; use `OPEN` or `REVISION`",
                );
            }
        }
    }
    if let Some(actions) = root.get("Actions") {
        walk_actions(c, actions);
    }
}

fn walk_actions(c: &mut Checker, actions: &Node) {
    for e in actions.entries() {
        if e.value.get("Identifier").is_some() {
            action(c, &e.value);
        } else if let Some(inner) = e.value.get("Actions") {
            walk_actions(c, inner);
        }
    }
}

fn compute(c: &mut Checker, n: &Node) {
    if let Some(t) = n.get("Type").and_then(text) {
        if t.eq_ignore_ascii_case("Lambda") {
            c.warn(
                n.get("Type").map_or(n.pos, |x| x.pos),
                "`Compute.Type: Lambda` runs as a job container on a Cove agent, like `EC2`",
                "Lambda's limits (no Docker, 15 minutes) are not applied",
            );
        }
    }
    if let Some(f) = n.get("Fleet") {
        let name = text(f).unwrap_or_default();
        if let Some((_, arch)) = crate::fleet::ON_DEMAND.iter().find(|(n, _)| *n == name) {
            c.warn(
                f.pos,
                format!(
                    "fleet `{name}`: the action runs on an agent labelled `arch={arch}`, with that \
                     agent's job limits, not this fleet's size"
                ),
                "remove `Fleet` to silence this warning",
            );
        } else if !crate::fleet::valid_label_value(name) {
            c.refuse(
                f.pos,
                format!("the fleet name `{name}` as an agent pool (pool names are 1-63 letters, digits, `.`, `_`, `-`)"),
                "rename the fleet to a valid pool name, or remove `Fleet`",
            );
        }
    }
    if let Some(s) = n.get("SharedInstance") {
        if !is_false(s) {
            c.refuse(
                s.pos,
                "`SharedInstance: true` (every action runs in its own fresh container)",
                "pass files between actions with `Outputs.Artifacts` and `Inputs.Artifacts`, and remove `SharedInstance`",
            );
        }
    }
}

fn action(c: &mut Checker, n: &Node) {
    if let Some(idn) = n.get("Identifier") {
        let id = text(idn).unwrap_or_default();
        let base = id.split('@').next().unwrap_or_default();
        let refused = match base {
            "aws/build" | "aws/build-beta" | "aws/managed-test" | "aws/approval" => None,
            "aws/github-actions-runner" => Some((
                format!("the GitHub Actions runner action `{id}`"),
                "rewrite its steps as an `aws/build@v1` action with `Run:` steps",
            )),
            "." => Some((
                "custom actions (`Identifier: .`)".to_string(),
                "inline the action's commands as `Run:` steps of an `aws/build@v1` action",
            )),
            b if b.starts_with("aws/") => Some((
                format!(
                    "the managed action `{id}` (Cove runs only build, test and approval actions)"
                ),
                "run the tool yourself in an `aws/build@v1` action, e.g. `npx cdk deploy`",
            )),
            _ => Some((
                format!("the third-party action `{id}`"),
                "run the tool yourself in an `aws/build@v1` action",
            )),
        };
        if let Some((what, help)) = refused {
            c.refuse(idn.pos, what, help);
        }
    }
    if let Some(n) = n.get("Compute") {
        compute(c, n);
    }
    for e in n
        .get("Caching")
        .and_then(|x| x.get("FileCaching"))
        .map(Node::entries)
        .unwrap_or_default()
    {
        if let Some(p) = e.value.get("Path") {
            cache_path(c, p);
        }
    }
    if let Some(inputs) = n.get("Inputs") {
        for s in inputs.get("Sources").map(Node::items).unwrap_or_default() {
            if let Some(name) = text(s).filter(|t| *t != "WorkflowSource") {
                c.refuse(
                    s.pos,
                    format!("the source `{name}` (only `WorkflowSource`, the run's commit)"),
                    "check out other repositories in a step, or remove it",
                );
            }
        }
    }
    if let Some(outputs) = n.get("Outputs") {
        for e in outputs
            .get("Reports")
            .map(Node::entries)
            .unwrap_or_default()
        {
            if let Some(f) = e.value.get("Format") {
                report_format(c, f);
            }
            for k in e
                .value
                .get("SuccessCriteria")
                .map(Node::entries)
                .unwrap_or_default()
            {
                let key = k.key.as_str().unwrap_or_default();
                if !crate::reports::CRITERIA.contains(&key) {
                    c.refuse(
                        k.key.pos,
                        format!("the success criterion `{key}`"),
                        "use `PassRate`, `LineCoverage` or `BranchCoverage`",
                    );
                }
            }
        }
        if let Some(e) = outputs.entry("AutoDiscoverReports") {
            if !e.value.get("Enabled").is_some_and(is_false) {
                c.refuse(
                    e.key.pos,
                    "`AutoDiscoverReports` (reports are not discovered or collected)",
                    "set `Enabled: false` or remove `AutoDiscoverReports`",
                );
            }
        }
    }
    if let Some(image) = n
        .get("Configuration")
        .and_then(|x| x.get("Container"))
        .and_then(|x| x.get("Image"))
    {
        if let Some(name) = text(image).filter(|t| t.starts_with("CodeCatalystLinux")) {
            c.refuse(
                image.pos,
                format!("CodeCatalyst's curated image `{name}`"),
                "remove `Container` to run in Cove's default image, or name an image your agents can pull",
            );
        }
    }
}

fn buildspec(c: &mut Checker, root: &Node) {
    if let Some(e) = root.entry("run-as") {
        c.refuse(
            e.key.pos,
            "`run-as` (commands run as the image's user)",
            "remove `run-as`, or switch users with `su`/`sudo` in a command",
        );
    }
    if let Some(env) = root.get("env") {
        if let Some(shell) = env.get("shell") {
            if let Some(s) = text(shell).filter(|s| {
                matches!(
                    s.to_ascii_lowercase().as_str(),
                    "powershell.exe" | "pwsh.exe" | "cmd.exe"
                )
            }) {
                c.refuse(
                    shell.pos,
                    format!("the Windows shell `{s}` (jobs run on Linux)"),
                    "use `bash` or `/bin/sh`",
                );
            }
        }
        for key in ["parameter-store", "secrets-manager"] {
            if let Some(e) = env.entry(key) {
                c.refuse(
                    e.key.pos,
                    format!("`env.{key}` (Cove does not read AWS parameters or secrets)"),
                    "store the value as a repository secret (`cove repo secret set`) and use a CodeCatalyst workflow with `${Secrets.NAME}`",
                );
            }
        }
        if let Some(g) = env.get("git-credential-helper") {
            if !is_false(g) {
                c.refuse(
                    g.pos,
                    "`git-credential-helper: yes` (jobs get no git credentials)",
                    "remove it; the source is checked out for the job",
                );
            }
        }
    }
    if let Some(e) = root.entry("proxy") {
        c.warn(
            e.key.pos,
            "`proxy` has no effect: Cove uploads artifacts and logs itself",
            "remove `proxy`",
        );
    }
    if let Some(e) = root.entry("batch") {
        if root.get("phases").is_some() {
            c.warn(
                e.key.pos,
                "`batch` is not started: Cove runs the phases as one build (as a non-batch CodeBuild start does)",
                "remove `batch`, or move the batch into its own buildspec (without `phases`), whose builds name their buildspecs",
            );
        } else {
            batch(c, &e.value);
            for key in ["env", "artifacts", "reports", "cache"] {
                if let Some(k) = root.entry(key) {
                    c.warn(
                        k.key.pos,
                        format!("`{key}` of a batch-only buildspec has no effect: each build uses the `{key}` of the buildspec it names"),
                        "move it into the builds' buildspecs (a build's `env.variables` go under its entry's `env`)",
                    );
                }
            }
        }
    }
    for p in root.get("phases").map(Node::entries).unwrap_or_default() {
        if let Some(e) = p.value.entry("run-as") {
            c.refuse(
                e.key.pos,
                "`run-as` (commands run as the image's user)",
                "remove `run-as`, or switch users with `su`/`sudo` in a command",
            );
        }
        if let Some(e) = p.value.entry("runtime-versions") {
            c.warn(
                e.key.pos,
                "`runtime-versions` installs nothing: the job image's runtime versions are used",
                "choose an image with the versions you need (CodeCatalyst `Container`) or install them in a command",
            );
        }
    }
    for e in root.get("reports").map(Node::entries).unwrap_or_default() {
        if let Some(f) = e.value.get("file-format") {
            report_format(c, f);
        }
    }
    if let Some(a) = root.get("artifacts") {
        artifact_notes(c, a);
        for s in a
            .get("secondary-artifacts")
            .map(Node::entries)
            .unwrap_or_default()
        {
            artifact_notes(c, &s.value);
        }
    }
    if let Some(cache) = root.get("cache") {
        for p in cache.get("paths").map(Node::items).unwrap_or_default() {
            cache_path(c, p);
        }
        if let Some(e) = cache.entry("action") {
            c.refuse(
                e.key.pos,
                "`cache.action` (a cache is always restored before the build and saved after it)",
                "remove `action`",
            );
        }
    }
}

/// A batch-only buildspec's batch section.
fn batch(c: &mut Checker, b: &Node) {
    if let Some(e) = b.entry("build-fanout") {
        c.refuse(
            e.key.pos,
            "`build-fanout` (test splitting with `codebuild-tests-run` is not available)",
            "use `build-matrix` with a variable that selects the tests of each build",
        );
    }
    if let Some(e) = b.entry("service-role") {
        c.warn(
            e.key.pos,
            "`service-role` has no effect: builds run with the agent's job permissions",
            "remove `service-role`",
        );
    }
    if let Some(e) = b.entry("build-timeout-in-mins") {
        c.warn(
            e.key.pos,
            "`build-timeout-in-mins` applies to each build (its job's timeout), not to the batch as a whole",
            "remove it to use the default job timeout (60 minutes)",
        );
    }
    for key in ["build-graph", "build-list"] {
        for item in b.get(key).map(Node::items).unwrap_or_default() {
            build(c, item);
        }
    }
    if let Some(m) = b.get("build-matrix") {
        if let Some(s) = m.get("static") {
            build(c, s);
        }
        if let Some(env) = m.get("dynamic").and_then(|d| d.get("env")) {
            build_env(c, env);
        }
    }
}

/// One build (or the matrix's `static` / `dynamic` part).
fn build(c: &mut Checker, n: &Node) {
    if let Some(d) = n.get("debug-session") {
        if !is_false(d) {
            c.warn(
                d.pos,
                "`debug-session` has no effect (no Session Manager)",
                "remove it; open an environment with `cove env create` to work interactively",
            );
        }
    }
    if let Some(env) = n.get("env") {
        build_env(c, env);
    }
}

fn build_env(c: &mut Checker, env: &Node) {
    // a dynamic matrix dimension is a list: judge each value
    let values = |key: &str| -> Vec<&Node> {
        match env.get(key) {
            Some(n) if !n.items().is_empty() => n.items().iter().collect(),
            Some(n) => vec![n],
            None => Vec::new(),
        }
    };
    for n in values("compute-type") {
        if let Some(t) = text(n) {
            c.warn(
                n.pos,
                format!(
                    "`compute-type: {t}` has no effect: the build runs with the agent's job limits"
                ),
                "remove `compute-type` to silence this warning",
            );
        }
    }
    if let Some(n) = env.get("fleet") {
        c.refuse(
            n.pos,
            format!(
                "the fleet `{}` (builds run on Cove's registered agents)",
                text(n).unwrap_or_default()
            ),
            "remove `fleet`",
        );
    }
    for n in values("image") {
        if let Some(t) = text(n).filter(|t| t.starts_with("aws/codebuild/")) {
            c.refuse(
                n.pos,
                format!("CodeBuild's curated image `{t}`"),
                "name an image your agents can pull (e.g. `debian:bookworm`), or remove `image` for Cove's default image",
            );
        }
    }
    if let Some(n) = env.get("type") {
        let t = text(n).unwrap_or_default();
        if t.starts_with("ARM") || t.starts_with("WINDOWS") {
            c.refuse(
                n.pos,
                format!("the environment type `{t}` (Cove's agents run Linux x86-64 jobs)"),
                "use `LINUX_CONTAINER` or remove `type`",
            );
        } else if t != "LINUX_CONTAINER" {
            c.warn(
                n.pos,
                format!("the environment type `{t}` runs as a Linux container on a Cove agent"),
                "use `LINUX_CONTAINER` or remove `type`",
            );
        }
    }
    if let Some(n) = env.get("privileged-mode") {
        if !is_false(n) {
            c.refuse(
                n.pos,
                "`privileged-mode: true` (jobs never run privileged, so there is no Docker daemon inside a build)",
                "remove `privileged-mode`; build images outside the job",
            );
        }
    }
}

/// A cache path must be a plain path (`dir/**/*` means the directory).
fn cache_path(c: &mut Checker, p: &Node) {
    let Some(t) = text(p) else { return };
    let t = t.trim();
    let base = t
        .strip_suffix("/**/*")
        .or_else(|| t.strip_suffix("/**"))
        .unwrap_or(t);
    if base.contains(['*', '?', '[']) || base.split('/').any(|s| s == "..") {
        c.refuse(
            p.pos,
            format!(
                "the cache path `{t}` (only directories and files, `dir/**/*` for a directory)"
            ),
            "name the directory to cache, e.g. `node_modules` or `/root/.m2`",
        );
    }
}

fn report_format(c: &mut Checker, f: &Node) {
    let Some(t) = text(f) else { return };
    let upper = t.trim().to_ascii_uppercase();
    if !crate::reports::supported(&upper) {
        c.refuse(
            f.pos,
            format!("the report format `{}`", t.trim()),
            &format!(
                "Cove reads {} and {}",
                crate::reports::TEST_FORMATS.join(", "),
                crate::reports::COVERAGE_FORMATS.join(", ")
            ),
        );
    }
}

fn artifact_notes(c: &mut Checker, a: &Node) {
    for (key, why) in [
        ("name", "the artifact is stored as `primary` (or its secondary identifier), not under this name"),
        ("s3-prefix", "artifacts are stored by the Cove server, not in S3"),
        ("enable-symlinks", "artifacts are tar archives that keep symlinks as they are"),
    ] {
        if let Some(e) = a.entry(key) {
            c.warn(
                e.key.pos,
                format!("`{key}` has no effect: {why}"),
                &format!("remove `{key}`"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(format: Format, key: &str) -> bool {
        CONSTRUCTS
            .iter()
            .any(|c| c.format == format && c.key == key)
    }

    /// Every key a parser accepts has a row (so the page cannot miss one).
    #[test]
    fn every_parser_key_has_a_row() {
        use crate::{buildspec as b, codecatalyst as cc};
        let mut missing = Vec::new();
        let mut need = |format: Format, prefix: &str, keys: &[&str]| {
            for k in keys {
                let path = format!("{prefix}{k}");
                if !has(format, &path) {
                    missing.push(path);
                }
            }
        };
        let c = Format::Codecatalyst;
        need(c, "", cc::TOP_KEYS);
        need(c, "Actions.<action>.", cc::ACTION_KEYS);
        need(c, "Actions.<group>.", cc::GROUP_KEYS);
        need(c, "Triggers[].", cc::TRIGGER_KEYS);
        need(c, "Compute.", &["Type", "Fleet", "SharedInstance"]);
        need(c, "Actions.<action>.Environment.", &["Name", "Connections"]);
        need(
            c,
            "Actions.<action>.Inputs.",
            &["Sources", "Artifacts", "Variables"],
        );
        need(
            c,
            "Actions.<action>.Outputs.",
            &["Artifacts", "Variables", "AutoDiscoverReports", "Reports"],
        );
        need(
            c,
            "Actions.<action>.Outputs.Reports.<name>.",
            &["Format", "IncludePaths", "ExcludePaths", "SuccessCriteria"],
        );
        need(
            c,
            "Actions.<action>.Caching.FileCaching.<key>.",
            &["Path", "RestoreKeys"],
        );
        need(
            c,
            "Actions.<action>.Configuration.",
            &["Container", "ApprovalsRequired", "Approvers", "Condition"],
        );
        let s = Format::Buildspec;
        need(s, "", b::TOP_KEYS);
        need(s, "env.", b::ENV_KEYS);
        need(s, "phases.<phase>.", b::PHASE_KEYS);
        need(s, "artifacts.", b::ARTIFACT_KEYS);
        need(s, "reports.<group>.", b::REPORT_KEYS);
        need(s, "cache.", b::CACHE_KEYS);
        need(s, "batch.", crate::batch::BATCH_KEYS);
        need(s, "batch.<build>.", crate::batch::ENTRY_KEYS);
        need(s, "batch.<build>.env.", crate::batch::ENV_KEYS);
        assert!(missing.is_empty(), "no row in CONSTRUCTS for {missing:?}");
    }

    #[test]
    fn verdicts_are_words_of_the_page() {
        for c in CONSTRUCTS {
            for word in c.support.split(" · ") {
                assert!(
                    matches!(word, "runs" | "warns" | "refuses"),
                    "{}: {}",
                    c.key,
                    c.support
                );
            }
        }
    }
}
