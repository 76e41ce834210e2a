//! Running devfile commands and lifecycle events inside a pod (devfile rule
//! 10): each exec command is `/bin/sh -c` in its container after `cd
//! <workingDir>` with `exec.env` exported; a sequential composite stops at
//! the first failure, a parallel one runs every child; apply commands have no
//! Docker meaning and are reported as skipped.

use devfiles::{CommandAction, EnvironmentPlan};
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError};

/// The outcome of one leaf command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRun {
    pub id: String,
    /// Container component it ran in (empty for skipped apply commands).
    pub component: String,
    pub exit_code: i64,
    pub output: String,
    pub skipped: bool,
}

impl CommandRun {
    pub fn succeeded(&self) -> bool {
        self.skipped || self.exit_code == 0
    }
}

/// Quote `dir` for a POSIX shell while still letting `$VAR` expand.
fn shell_dir(dir: &str) -> String {
    let mut out = String::from("\"");
    for c in dir.chars() {
        if matches!(c, '"' | '\\' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The shell line an exec command runs as.
pub fn exec_line(command_line: &str, working_dir: Option<&str>) -> String {
    match working_dir {
        Some(dir) => format!("cd {} && {command_line}", shell_dir(dir)),
        None => command_line.to_string(),
    }
}

/// Run command `id` of `plan` in environment `env`. Returns every leaf run
/// in order; the command failed if any returned run failed.
pub fn run_command<'a>(
    rt: &'a dyn Backend,
    env: &'a str,
    plan: &'a EnvironmentPlan,
    id: &'a str,
) -> BoxFuture<'a, Result<Vec<CommandRun>, BackendError>> {
    async move {
        let Some(cmd) = plan.command(id) else {
            return Ok(vec![CommandRun {
                id: id.to_string(),
                component: String::new(),
                exit_code: 127,
                output: format!("command `{id}` is not defined in the devfile\n"),
                skipped: false,
            }]);
        };
        match &cmd.action {
            CommandAction::Exec { component, command_line, working_dir, env: vars, .. } => {
                let line = exec_line(command_line, working_dir.as_deref());
                let vars: Vec<(String, String)> = vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
                let out = rt.exec(env, component, &["/bin/sh", "-c", &line], &vars, None).await?;
                Ok(vec![CommandRun {
                    id: cmd.id.clone(),
                    component: component.clone(),
                    exit_code: out.exit_code,
                    output: out.stdout + &out.stderr,
                    skipped: false,
                }])
            }
            CommandAction::Composite { commands, parallel: false } => {
                let mut runs = Vec::new();
                for child in commands {
                    let r = run_command(rt, env, plan, child).await?;
                    let failed = r.iter().any(|x| !x.succeeded());
                    runs.extend(r);
                    if failed {
                        break;
                    }
                }
                Ok(runs)
            }
            CommandAction::Composite { commands, parallel: true } => {
                let all = join_all(commands.iter().map(|c| run_command(rt, env, plan, c))).await;
                let mut runs = Vec::new();
                for r in all {
                    runs.extend(r?);
                }
                Ok(runs)
            }
            CommandAction::Apply { component, component_kind } => Ok(vec![CommandRun {
                id: cmd.id.clone(),
                component: component.clone(),
                exit_code: 0,
                output: format!("apply of {component_kind:?} component `{component}` skipped: the Docker backend does not apply it\n").to_lowercase(),
                skipped: true,
            }]),
        }
    }
    .boxed()
}

/// Run the commands bound to an event, in order. A failing command does not
/// stop the others (CodeCatalyst keeps the environment up after a failing
/// postStart and reports it).
pub async fn run_event(
    rt: &dyn Backend,
    env: &str,
    plan: &EnvironmentPlan,
    ids: &[String],
) -> Result<Vec<CommandRun>, BackendError> {
    let mut runs = Vec::new();
    for id in ids {
        runs.extend(run_command(rt, env, plan, id).await?);
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_dir_is_quoted_but_expands_variables() {
        assert_eq!(
            exec_line("make", Some("${PROJECT_SOURCE}/a b")),
            "cd \"${PROJECT_SOURCE}/a b\" && make"
        );
        assert_eq!(exec_line("x", Some("/a\"b")), "cd \"/a\\\"b\" && x");
        assert_eq!(exec_line("x", None), "x");
    }
}
