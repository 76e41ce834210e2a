//! `cove devfile validate|plan`: offline checks with the `devfiles` engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use devfiles::{LoadOptions, PlanOptions};

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
    /// Print the environment plan of a devfile as JSON.
    Plan {
        file: PathBuf,
        /// Repository name: sources go to PROJECTS_ROOT/<repo>.
        #[arg(long)]
        repo: Option<String>,
        #[command(flatten)]
        vars: VarArgs,
    },
}

#[derive(Args)]
pub struct VarArgs {
    /// Override a devfile variable: --var KEY=VALUE (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    vars: Vec<String>,
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
            let mut ok = true;
            let mut report = Vec::new();
            for f in &files {
                let (errors, warnings) = match devfiles::load_file(f, &opts) {
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
        DevfileCommand::Plan { file, repo, vars } => {
            match devfiles::load_file(&file, &vars.options()?) {
                Ok(loaded) => {
                    let (plan, plan_warnings) = loaded.plan(&PlanOptions { repo });
                    for w in loaded.warnings.iter().chain(&plan_warnings) {
                        eprintln!("{w}");
                    }
                    println!("{}", serde_json::to_string_pretty(&plan)?);
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
            }
        }
    }
}
