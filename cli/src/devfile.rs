//! `cove devfile validate|plan`: offline checks with the `devfiles` engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use devfiles::{LoadOptions, PlanOptions};

use crate::devfile_registry::RegistryResolver;

#[derive(Subcommand)]
pub enum DevfileCommand {
    /// Validate devfiles: prints `FILE:LINE:COL: error: …` for each problem
    /// and exits 1 if any file is invalid. Warnings go to stderr.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        vars: VarArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the environment plan of a devfile: JSON, or with `--output text`
    /// a summary per container (image, entrypoint kept or overridden and why,
    /// user, limits, endpoints).
    Plan {
        file: PathBuf,
        /// Repository name: sources go to PROJECTS_ROOT/<repo>.
        #[arg(long)]
        repo: Option<String>,
        #[command(flatten)]
        vars: VarArgs,
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
}

#[derive(Args)]
pub struct VarArgs {
    /// Override a devfile variable: --var KEY=VALUE (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    vars: Vec<String>,
    /// Devfile registry for `parent.id` parents that name no `registryUrl`:
    /// an http(s) registry URL or a directory (`<dir>/<id>/<version>/devfile.yaml`).
    /// Default: COVE_DEVFILE_REGISTRY.
    #[arg(long, value_name = "URL|DIR")]
    registry: Option<String>,
}

/// Load a devfile from disk: local parents relative to it, registry parents
/// through [`RegistryResolver`].
fn load(
    path: &std::path::Path,
    opts: &LoadOptions,
    resolver: &RegistryResolver,
) -> Result<devfiles::Loaded, devfiles::Rejected> {
    crate::devfile_fs::load_file(path, opts, resolver)
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

impl VarArgs {
    fn options(&self) -> Result<LoadOptions> {
        let mut variables = BTreeMap::new();
        for v in &self.vars {
            let Some((k, val)) = v.split_once('=') else {
                bail!("--var expects KEY=VALUE, got `{v}`");
            };
            variables.insert(k.to_string(), val.to_string());
        }
        Ok(LoadOptions { variables })
    }
}

pub fn run(cmd: DevfileCommand) -> Result<ExitCode> {
    match cmd {
        DevfileCommand::Validate {
            files,
            vars,
            output,
        } => {
            let opts = vars.options()?;
            let resolver = RegistryResolver::new(vars.registry.clone());
            let mut ok = true;
            let mut report = Vec::new();
            for f in &files {
                let (errors, warnings) = match load(f, &opts, &resolver) {
                    Ok(loaded) => {
                        let (_, plan_warnings) = loaded.plan(&PlanOptions::default());
                        (
                            Vec::new(),
                            loaded.warnings.into_iter().chain(plan_warnings).collect(),
                        )
                    }
                    Err(r) => (r.errors, r.warnings),
                };
                ok &= errors.is_empty();
                match output {
                    Output::Text => {
                        for w in &warnings {
                            eprintln!("{w}");
                        }
                        for e in &errors {
                            println!("{e}");
                        }
                    }
                    Output::Json => report.push(serde_json::json!({
                        "file": f.display().to_string(),
                        "valid": errors.is_empty(),
                        "errors": errors,
                        "warnings": warnings,
                    })),
                }
            }
            if let Output::Json = output {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DevfileCommand::Plan {
            file,
            repo,
            vars,
            output,
        } => match load(
            &file,
            &vars.options()?,
            &RegistryResolver::new(vars.registry.clone()),
        ) {
            Ok(loaded) => {
                let (plan, plan_warnings) = loaded.plan(&PlanOptions { repo });
                for w in loaded.warnings.iter().chain(&plan_warnings) {
                    eprintln!("{w}");
                }
                match output {
                    Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
                    Output::Text => print!("{}", summary(&plan)),
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(r) => {
                for w in &r.warnings {
                    eprintln!("{w}");
                }
                for e in &r.errors {
                    println!("{e}");
                }
                Ok(ExitCode::from(1))
            }
        },
    }
}

/// The plan for people: one block per container, then projects.
fn summary(plan: &devfiles::EnvironmentPlan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for c in &plan.containers {
        let _ = writeln!(out, "container {} ({})", c.name, c.image);
        let _ = writeln!(out, "  entrypoint: {}", c.entrypoint);
        if c.terminal {
            let _ = writeln!(out, "  terminals and `cove env exec` run here");
        }
        if let Some(root) = &c.source_mapping {
            let _ = writeln!(out, "  sources: {root}");
        }
        if let Some(u) = &c.user {
            let _ = writeln!(out, "  user: {u}");
        }
        if let Some(m) = c.memory_limit_bytes {
            let _ = writeln!(out, "  memory limit: {} MiB", m / (1024 * 1024));
        }
        if let Some(m) = c.cpu_limit_millis {
            let _ = writeln!(out, "  cpu limit: {m}m");
        }
        if c.read_only_root_fs {
            let _ = writeln!(out, "  root filesystem: read-only");
        }
        if !c.cap_add.is_empty() || !c.cap_drop.is_empty() {
            let _ = writeln!(
                out,
                "  capabilities: add [{}] drop [{}]",
                c.cap_add.join(", "),
                c.cap_drop.join(", ")
            );
        }
        for e in &c.endpoints {
            let _ = writeln!(out, "  endpoint {}: {} ({:?})", e.name, e.port, e.exposure);
        }
    }
    for p in &plan.projects {
        let sparse = if p.sparse_checkout_dirs.is_empty() {
            String::new()
        } else {
            format!(" (only {})", p.sparse_checkout_dirs.join(", "))
        };
        let _ = writeln!(
            out,
            "project {} -> PROJECTS_ROOT/{}{sparse}",
            p.name, p.clone_path
        );
    }
    out
}
