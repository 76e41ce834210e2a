//! `cove workflow validate`: offline checks with the `workflows` engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::devfile::Output;

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Validate CodeCatalyst workflows (`.codecatalyst/workflows/*.yaml`) and
    /// CodeBuild buildspecs: prints `FILE:LINE:COL: error: …` for each problem
    /// and exits 1 if any file is invalid. Warnings go to stderr. A construct
    /// Cove would not run is an error `not supported by Cove: …`
    /// (docs/compatibility.md) unless `--format-only`.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Print the normalized workflow as JSON when valid.
        #[arg(long)]
        show: bool,
        /// Check only the format's own rules (CodeCatalyst / CodeBuild), not
        /// what Cove supports.
        #[arg(long)]
        format_only: bool,
    },
}

pub fn run(cmd: WorkflowCommand) -> Result<ExitCode> {
    let WorkflowCommand::Validate {
        files,
        output,
        show,
        format_only,
    } = cmd;
    let validate = if format_only {
        workflows::validate_file
    } else {
        workflows::validate_for_cove
    };
    let mut ok = true;
    let mut report = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {name}"))?;
        let (workflow, errors, warnings) = match validate(&name, &text) {
            Ok((w, warnings)) => (Some(w), Vec::new(), warnings),
            Err(errors) => (None, errors, Vec::new()),
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
                if let (true, Some(w)) = (show, &workflow) {
                    println!("{}", serde_json::to_string_pretty(w)?);
                }
            }
            Output::Json => report.push(serde_json::json!({
                "file": name,
                "valid": errors.is_empty(),
                "errors": errors,
                "warnings": warnings,
                "workflow": if show { serde_json::to_value(&workflow)? } else { serde_json::Value::Null },
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
