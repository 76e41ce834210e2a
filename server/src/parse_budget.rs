//! Parsing a user's file (workflow, buildspec, devfile) off the async
//! workers, with a budget, so one hostile file fails its own run or
//! environment while the server keeps serving.
//!
//! The parsers bound themselves (docs/security.md "Parser bounds": 1 MiB
//! of input, 64 levels of nesting, 50 000 nodes after alias expansion,
//! linear graph checks, 100 diagnostics). On top of that, here:
//!
//! - every parse runs on a blocking thread (`spawn_blocking`), never on a
//!   tokio worker that serves requests;
//! - at most [`MAX_CONCURRENT_PARSES`] run at once (a permit is held by the
//!   blocking thread itself, so even an abandoned parse keeps counting);
//! - a parse that has not answered after [`PARSE_TIMEOUT`] is abandoned
//!   and its file gets a positioned error saying so; a parser panic is an
//!   error for that file too.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use yamlmap::{Diagnostic, Pos};

use crate::runs::source::{At, CommitReader};

/// Parses running at once; each stays under 64 MiB by the parsers' bounds.
pub const MAX_CONCURRENT_PARSES: usize = 4;

/// How long one parse may take (the parsers answer in well under a second
/// for any input; this only catches what they do not foresee).
pub const PARSE_TIMEOUT: Duration = Duration::from_secs(10);

fn permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT_PARSES)))
        .clone()
}

/// Run `parse` on a blocking thread within the budget. `Err` is a message
/// about `file` for when the budget, not the parser, decided.
pub async fn off_thread<T: Send + 'static>(
    file: &str,
    parse: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Diagnostic> {
    let permit = permits()
        .acquire_owned()
        .await
        .map_err(|_| budget_error(file, "the server is shutting down".into()))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        parse()
    });
    match tokio::time::timeout(PARSE_TIMEOUT, task).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => {
            tracing::error!(file, error = %e, "a parser failed");
            Err(budget_error(
                file,
                "Cove could not read this file (its parser failed)".into(),
            ))
        }
        Err(_) => {
            tracing::warn!(
                file,
                "a parse took longer than its budget and was abandoned"
            );
            Err(budget_error(
                file,
                format!(
                    "reading this file took longer than {} s, so it was abandoned",
                    PARSE_TIMEOUT.as_secs()
                ),
            ))
        }
    }
}

fn budget_error(file: &str, message: String) -> Diagnostic {
    Diagnostic::error(file, Pos::START, message)
        .with_help("make the file smaller or simpler (fewer aliases, less nesting)")
}

/// [`workflows::validate_for_cove_with`] within the budget: a construct Cove would
/// not run is an error here, before any run exists. A batch buildspec's builds read the
/// buildspecs they name from the repository at `at` (the same commit), within the same budget.
pub async fn workflow(
    file: &str,
    text: &str,
    at: At,
) -> Result<workflows::Validated, Vec<Diagnostic>> {
    let (f, t) = (file.to_string(), text.to_string());
    off_thread(file, move || {
        workflows::validate_for_cove_with(&f, &t, &mut CommitReader::new(at))
    })
    .await
    .unwrap_or_else(|d| Err(vec![d]))
}

/// [`workflows::implicit_buildspec_workflow_with`] within the budget (see [`workflow`]).
pub async fn implicit_buildspec(
    file: &str,
    text: &str,
    default_branch: &str,
    at: At,
) -> Result<workflows::Validated, Vec<Diagnostic>> {
    let (f, t, b) = (
        file.to_string(),
        text.to_string(),
        default_branch.to_string(),
    );
    off_thread(file, move || {
        workflows::implicit_buildspec_workflow_with(&f, &t, &b, &mut CommitReader::new(at))
    })
    .await
    .unwrap_or_else(|d| Err(vec![d]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_parse_is_an_error_for_its_file() {
        let e = off_thread("f.yaml", || -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(e.file, "f.yaml");
        assert!(e.message.contains("parser failed"), "{e}");
        // the permit came back
        assert_eq!(off_thread("g.yaml", || 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_issue_13_alias_file_is_an_error_not_an_abort() {
        let mut text = String::from("Name: x\nSchemaVersion: '1.0'\nl0: &a0 [x,x,x,x,x,x,x,x,x]\n");
        for i in 1..9 {
            text.push_str(&format!(
                "l{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(",")
            ));
        }
        let at = At {
            repo_path: "/nonexistent".into(),
            commit: "0".repeat(40),
        };
        let e = workflow("wf.yaml", &text, at).await.unwrap_err();
        assert!(e[0].message.contains("alias"), "{}", e[0]);
    }
}
