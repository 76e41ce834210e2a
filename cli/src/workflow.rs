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
    let mut ok = true;
    let mut report = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {name}"))?;
        let validated = if format_only {
            workflows::validate_file(&name, &text)
        } else {
            let mut reader = WorkTree::of(f);
            workflows::validate_for_cove_with(&name, &text, &mut reader)
        };
        let (workflow, errors, warnings) = match validated {
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

/// The buildspecs a batch buildspec's builds name, read from the git work tree that holds the
/// file (else the current directory), at most 1 MiB each.
struct WorkTree {
    root: PathBuf,
}

impl WorkTree {
    fn of(file: &std::path::Path) -> WorkTree {
        let start = file
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        let root = start
            .as_deref()
            .and_then(|dir| dir.ancestors().find(|d| d.join(".git").exists()))
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        WorkTree { root }
    }
}

impl workflows::BuildspecReader for WorkTree {
    fn read(&mut self, path: &str) -> Result<String, workflows::ReadError> {
        use std::io::Read;
        let max: u64 = 1024 * 1024;
        let full = self.root.join(path);
        let file = match std::fs::File::open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(workflows::ReadError::NotFound(path.to_string()))
            }
            Err(e) => {
                return Err(workflows::ReadError::Unreadable(
                    path.to_string(),
                    e.to_string(),
                ))
            }
        };
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| workflows::ReadError::Unreadable(path.to_string(), e.to_string()))?;
        if bytes.len() as u64 > max {
            let size = std::fs::metadata(&full).map_or(max + 1, |m| m.len());
            return Err(workflows::ReadError::TooLarge {
                path: path.to_string(),
                size,
                max,
            });
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
