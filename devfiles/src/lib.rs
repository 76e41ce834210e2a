//! `devfiles` — the devfile 2.x engine: parse (2.0.0–2.3.0, with positions),
//! validate (schema of the file's own version, then the semantic rules),
//! resolve `parent` chains and `{{variables}}`, and turn the result into an
//! [`EnvironmentPlan`], the only thing an agent consumes.
//!
//! Invariants: pure. No IO of its own: no files, Docker, network, async or
//! processes. A parent devfile is read through the caller's [`Resolver`]
//! (the CLI's reads local files, the server's reads the commit, an agent's
//! reads what the server sent). Errors and warnings are
//! [`yamlmap::Diagnostic`]s with file, line and column, and are returned,
//! never printed.

pub mod model;
mod overrides;
mod plan;
pub mod quantity;
pub mod registry;
mod resolve;
mod schema;
mod schema_fields;
mod validate;
mod version;

use std::collections::BTreeMap;
use std::fmt;

pub use model::{ComponentKind, Devfile, Exposure, GroupKind, Protocol};
pub use overrides::{
    capability_name, ADDABLE_CAPABILITIES, CONTAINER_OVERRIDES, POD_OVERRIDES, REFUSED_CAPABILITIES,
};
pub use plan::{
    CommandAction, CommandPlan, ContainerPlan, EndpointPlan, EnvPair, EnvironmentPlan, EventsPlan,
    MountPlan, PlanOptions, ProjectPlan, SkippedComponent, VolumePlan, DEFAULT_SOURCE_MAPPING,
    ENTRYPOINT_ATTRIBUTE, KEEP_ALIVE,
};
pub use resolve::replace_vars;
pub use resolve::MAX_SUBSTITUTED_BYTES;
pub use schema::is_identifier;
pub use validate::RESERVED_ENV;
pub use version::Version;
use yamlmap::{cap_diagnostics, Dropped, MAX_DIAGNOSTICS};
pub use yamlmap::{Diagnostic, Pos, Severity};

/// File names looked up, in order, when a repository has a devfile.
pub const DEVFILE_NAMES: &[&str] = &[
    "devfile.yaml",
    ".devfile.yaml",
    "devfile.yml",
    ".devfile.yml",
];

/// The image of the default environment.
pub const UNIVERSAL_IMAGE: &str = "cove/universal:latest";

/// The devfile used for repositories that have none: one universal
/// container with the sources mounted, like CodeCatalyst's default.
pub const DEFAULT_DEVFILE: &str = "\
schemaVersion: 2.2.0
metadata:
  name: default
components:
  - name: universal
    container:
      image: cove/universal:latest
      mountSources: true
      memoryLimit: 4Gi
";

/// Reads parent devfiles named by `parent.uri`, and by `parent.id` from a
/// devfile registry.
pub trait Resolver {
    /// Read `uri` as referenced from the devfile `from_file`. Returns the
    /// display name of the parent file and its text, or a reason.
    fn read(&self, from_file: &str, uri: &str) -> Result<(String, String), String>;

    /// Read the parent `id` (at `version`, else the registry's default)
    /// from `registry_url`, else from the caller's default registry.
    /// Returns a display name (`REGISTRY/devfiles/ID/VERSION`) and the text,
    /// or a reason that says what was tried (e.g. "cannot reach registry
    /// URL …"). The default refuses: only callers that can reach a registry
    /// (the `cove` CLI, the server) supply one.
    fn read_registry(
        &self,
        registry_url: Option<&str>,
        id: &str,
        version: Option<&str>,
    ) -> Result<(String, String), String> {
        let _ = (id, version);
        Err(match registry_url {
            Some(url) => format!("parents from a devfile registry (here {url}) are read by `cove devfile validate|plan`, not here; commit the parent into the repository and use `parent.uri`"),
            None => "`parent.id` needs `parent.registryUrl` or a configured default devfile registry".into(),
        })
    }

    /// Whether two names this resolver returned are the same file (a parent
    /// chain that comes back to one of its files is a cycle). Names are
    /// compared as written unless the resolver knows better (the CLI's
    /// compares canonical paths).
    fn same_file(&self, a: &str, b: &str) -> bool {
        a == b
    }
}

/// A resolver for devfiles that come from somewhere without siblings (an
/// API request body): every `parent.uri` is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoParents;

impl Resolver for NoParents {
    fn read(&self, _from: &str, _uri: &str) -> Result<(String, String), String> {
        Err(
            "this devfile was not read from a repository, so relative parents cannot be found"
                .into(),
        )
    }
}

/// Options for loading.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Variable values that override the devfile's `variables` (`--var`).
    pub variables: BTreeMap<String, String>,
}

/// A devfile that passed every check: flattened (parents merged),
/// variables substituted.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub devfile: Devfile,
    /// The declared schema version (suffix stripped).
    pub version: Version,
    pub warnings: Vec<Diagnostic>,
    /// File and position of each component, for plan warnings.
    component_pos: BTreeMap<String, (String, Pos)>,
}

impl Loaded {
    /// Plan the environment. Returns the plan and warnings about what a
    /// Docker backend leaves out.
    pub fn plan(&self, opts: &PlanOptions) -> (EnvironmentPlan, Vec<Diagnostic>) {
        let plan = plan::plan(&self.devfile, opts);
        let warnings = plan
            .skipped
            .iter()
            .map(|s| {
                let (file, pos) = self.component_pos.get(&s.name).cloned().unwrap_or_default();
                Diagnostic::warning(
                    file,
                    pos,
                    format!(
                        "component `{}` ({}) is skipped: {}",
                        s.name,
                        plan::kind_str(s.kind),
                        s.reason
                    ),
                )
            })
            .collect();
        (plan, warnings)
    }
}

/// A devfile that was rejected: at least one error, plus any warnings.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// Load a devfile from text. `file` is the name used in diagnostics and as
/// the base for relative parents.
pub fn load_str(
    file: &str,
    text: &str,
    resolver: &dyn Resolver,
    opts: &LoadOptions,
) -> Result<Loaded, Rejected> {
    // every list is cut to MAX_DIAGNOSTICS plus an "and N more"
    let none = Dropped::default();
    let reject = |mut errors: Vec<Diagnostic>,
                  dropped_errors,
                  mut warnings: Vec<Diagnostic>,
                  dropped_warnings| {
        sort_diagnostics(&mut errors);
        sort_diagnostics(&mut warnings);
        cap_diagnostics(&mut errors, MAX_DIAGNOSTICS, dropped_errors);
        cap_diagnostics(&mut warnings, MAX_DIAGNOSTICS, dropped_warnings);
        Rejected { errors, warnings }
    };
    let mut chain =
        resolve::load_chain(file, text, resolver).map_err(|e| reject(e, none, Vec::new(), none))?;
    let mut warnings = Vec::new();
    // variables exist from 2.1.0 on (rule 8)
    if chain[0].version >= Version::V2_1_0 {
        let vars = resolve::collect_variables(&chain, &opts.variables);
        let mut budget = resolve::SubstBudget::default();
        for doc in &mut chain {
            if let Err(e) = resolve::substitute_doc(doc, &vars, &mut warnings, &mut budget) {
                return Err(reject(vec![e], none, warnings, none));
            }
        }
    }
    let flat = resolve::merge_chain(chain).map_err(|e| reject(e, none, warnings.clone(), none))?;
    let findings = validate::validate(&flat);
    warnings.extend(findings.warnings);
    if !findings.errors.is_empty() {
        return Err(reject(
            findings.errors,
            findings.dropped_errors,
            warnings,
            findings.dropped_warnings,
        ));
    }
    sort_diagnostics(&mut warnings);
    cap_diagnostics(&mut warnings, MAX_DIAGNOSTICS, findings.dropped_warnings);
    let component_pos = flat
        .devfile
        .components
        .iter()
        .map(|c| {
            let (file, pos) = flat.locate("components", &c.name, &[]);
            (c.name.clone(), (file.to_string(), pos))
        })
        .collect();
    Ok(Loaded {
        version: flat.version,
        devfile: flat.devfile,
        warnings,
        component_pos,
    })
}

/// Order diagnostics by file, line and column (stable: one place keeps the
/// order they were found in). A list already capped keeps its final
/// "and N more" last.
fn sort_diagnostics(diags: &mut [Diagnostic]) {
    let n = diags.len().min(MAX_DIAGNOSTICS);
    diags[..n].sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
}

/// The default environment for repositories without a devfile.
pub fn default_devfile() -> Loaded {
    load_str(
        "<default devfile>",
        DEFAULT_DEVFILE,
        &NoParents,
        &LoadOptions::default(),
    )
    .expect("the built-in default devfile is valid (tested)")
}

/// The field table (path, first schema version, free-form), for the test
/// that checks it against the official schemas.
#[doc(hidden)]
pub fn schema_field_table() -> &'static [(&'static str, &'static str, bool)] {
    schema_fields::FIELDS
}

/// The fields only devfile 2.0.0 has (path, free-form), for the same test.
#[doc(hidden)]
pub fn schema_field_table_2_0_only() -> &'static [(&'static str, bool)] {
    schema_fields::ONLY_2_0_0
}
