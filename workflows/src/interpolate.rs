//! The interpolation boundary (design notes §1.6 and §6 rule 5).
//!
//! Cove substitutes exactly these before a step reaches the shell:
//!
//! - `${Action.Var}` / `${Group.Action.Var}`: an output variable of another
//!   action (a bare name resolves to the sibling in the same group first,
//!   then outward to the top level);
//! - `${WorkflowSource.CommitId}` and `${WorkflowSource.BranchName}`;
//! - `${Secrets.Name}`: in shell text it becomes `${CATALYST_SECRETS_Name}`
//!   (the secret is injected as that env var, so its value never appears in
//!   the script); in a non-shell configuration value it becomes the value;
//! - input variables `${Name}`, **only** in non-shell configuration values
//!   ([`Target::Value`]); in shell text they already are environment
//!   variables, so the shell expands them.
//!
//! Everything else — `$X`, `${X}`, `${X:-y}`, `` `cmd` ``, `$(cmd)`,
//! `${{ github.x }}` — is left byte for byte. A reference is the text
//! `${` + `[A-Za-z0-9._-]+` + `}` containing at least one dot; it is split
//! at its last dot into scope (`Group.Action`) and variable name (the same
//! reading as AWS's local runner).

use std::collections::BTreeMap;

/// One `${scope.name}` occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference<'t> {
    /// Byte range of the whole `${…}` in the text.
    pub start: usize,
    pub end: usize,
    /// `Secrets`, `WorkflowSource`, `Action` or `Group.Action`.
    pub scope: &'t str,
    pub name: &'t str,
}

impl Reference<'_> {
    pub fn text<'s>(&self, source: &'s str) -> &'s str {
        &source[self.start..self.end]
    }
}

fn is_ref_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Every `${…}` of `text` that has the reference shape (with a dot).
pub fn references(text: &str) -> Vec<Reference<'_>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("${") {
        let start = i + off;
        let body = start + 2;
        let mut j = body;
        while j < bytes.len() && is_ref_char(bytes[j]) {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'}' && j > body {
            let inner = &text[body..j];
            if let Some(dot) = inner.rfind('.') {
                let (scope, name) = (&inner[..dot], &inner[dot + 1..]);
                if !scope.is_empty() && !name.is_empty() {
                    out.push(Reference {
                        start,
                        end: j + 1,
                        scope,
                        name,
                    });
                    i = j + 1;
                    continue;
                }
            }
        }
        i = start + 2;
    }
    out
}

/// Input variable references `${Name}` (no dot) in `text`, with byte ranges.
fn input_references(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("${") {
        let start = i + off;
        let body = start + 2;
        let mut j = body;
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric() || matches!(bytes[j], b'_' | b'-'))
        {
            j += 1;
        }
        if j > body && j < bytes.len() && bytes[j] == b'}' {
            out.push((start, j + 1, &text[body..j]));
            i = j + 1;
        } else {
            i = start + 2;
        }
    }
    out
}

/// The env var a secret is injected as.
pub fn secret_env_name(secret: &str) -> String {
    format!("CATALYST_SECRETS_{secret}")
}

/// Where the interpolated text goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// A `Run` step or buildspec command: secrets become env references,
    /// input variables are left to the shell.
    #[default]
    Shell,
    /// A non-shell value (e.g. a deploy action's `Context`, a custom
    /// action's configuration): secrets and input variables are
    /// substituted with their values. The agent must still mask the secret
    /// values in its logs.
    Value,
}

/// What one action's text may be interpolated with.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub target: Target,
    /// Group path of the action whose text this is (for bare-name lookup).
    pub scope: Vec<String>,
    pub commit_id: String,
    pub branch_name: String,
    /// Output variables of finished actions, by action id.
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// The action's `Inputs.Variables` (used with [`Target::Value`]).
    pub inputs: BTreeMap<String, String>,
    /// Secret values (used with [`Target::Value`]).
    pub secrets: BTreeMap<String, String>,
}

impl Context {
    /// A context for `action`'s text: its group path as the lookup scope
    /// and its `Inputs.Variables`. The caller fills in the run's commit,
    /// branch, finished actions' outputs and (for [`Target::Value`]) the
    /// secret values.
    pub fn for_action(action: &crate::model::Action, target: Target) -> Context {
        Context {
            target,
            scope: action.group_path.clone(),
            inputs: action
                .inputs
                .variables
                .iter()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect(),
            ..Context::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("`{reference}` names no action with outputs (no finished action `{scope}`)")]
    UnknownAction { reference: String, scope: String },
    #[error("`{reference}`: action `{action}` did not export `{name}`")]
    UnknownVariable {
        reference: String,
        action: String,
        name: String,
    },
    #[error("`{reference}`: WorkflowSource has only CommitId and BranchName")]
    UnknownWorkflowSourceVariable { reference: String },
    #[error("`{reference}`: secret `{name}` is not defined")]
    MissingSecret { reference: String, name: String },
    #[error("substituting the references makes this text longer than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Longest text [`interpolate`] produces: output variables used many times
/// cannot multiply into an unbounded script.
pub const MAX_INTERPOLATED_BYTES: usize = yamlmap::MAX_INPUT_BYTES;

/// Resolve `name` (possibly dotted) seen from `scope`: innermost group
/// first, then outward. `exists` says whether an id is known.
pub fn resolve_scoped(
    scope: &[String],
    name: &str,
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    for depth in (0..=scope.len()).rev() {
        let mut id = scope[..depth].join(".");
        if !id.is_empty() {
            id.push('.');
        }
        id.push_str(name);
        if exists(&id) {
            return Some(id);
        }
    }
    None
}

/// Substitute the workflow references in `text` (see the module docs);
/// everything else is copied unchanged.
pub fn interpolate(text: &str, ctx: &Context) -> Result<String, InterpolateError> {
    let out = substitute_all(text, ctx)?;
    if out.len() > MAX_INTERPOLATED_BYTES {
        return Err(InterpolateError::TooLarge {
            limit: MAX_INTERPOLATED_BYTES,
        });
    }
    Ok(out)
}

/// Append `v` unless `out` would pass [`MAX_INTERPOLATED_BYTES`].
fn push_bounded(out: &mut String, v: &str) -> Result<(), InterpolateError> {
    if out.len().saturating_add(v.len()) > MAX_INTERPOLATED_BYTES {
        return Err(InterpolateError::TooLarge {
            limit: MAX_INTERPOLATED_BYTES,
        });
    }
    out.push_str(v);
    Ok(())
}

fn substitute_all(text: &str, ctx: &Context) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len().min(MAX_INTERPOLATED_BYTES));
    let mut last = 0;
    for r in references(text) {
        out.push_str(&text[last..r.start]);
        last = r.end;
        let reference = r.text(text).to_string();
        match r.scope {
            "Secrets" => match ctx.target {
                Target::Shell => {
                    out.push_str("${");
                    out.push_str(&secret_env_name(r.name));
                    out.push('}');
                }
                Target::Value => match ctx.secrets.get(r.name) {
                    Some(v) => push_bounded(&mut out, v)?,
                    None => {
                        return Err(InterpolateError::MissingSecret {
                            reference,
                            name: r.name.to_string(),
                        })
                    }
                },
            },
            "WorkflowSource" => match r.name {
                "CommitId" => out.push_str(&ctx.commit_id),
                "BranchName" => out.push_str(&ctx.branch_name),
                _ => return Err(InterpolateError::UnknownWorkflowSourceVariable { reference }),
            },
            scope => {
                let Some(id) = resolve_scoped(&ctx.scope, scope, |id| ctx.outputs.contains_key(id))
                else {
                    return Err(InterpolateError::UnknownAction {
                        reference,
                        scope: scope.to_string(),
                    });
                };
                match ctx.outputs.get(&id).and_then(|vars| vars.get(r.name)) {
                    Some(v) => push_bounded(&mut out, v)?,
                    None => {
                        return Err(InterpolateError::UnknownVariable {
                            reference,
                            action: id,
                            name: r.name.to_string(),
                        })
                    }
                }
            }
        }
    }
    out.push_str(&text[last..]);
    if ctx.target == Target::Value && !ctx.inputs.is_empty() {
        let mut with_inputs = String::with_capacity(out.len());
        let mut last = 0;
        for (start, end, name) in input_references(&out) {
            if let Some(v) = ctx.inputs.get(name) {
                with_inputs.push_str(&out[last..start]);
                push_bounded(&mut with_inputs, v)?;
                last = end;
            }
        }
        with_inputs.push_str(&out[last..]);
        out = with_inputs;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_used_many_times_cannot_grow_past_the_cap() {
        let mut c = ctx();
        c.outputs.insert(
            "Big".into(),
            BTreeMap::from([("V".to_string(), "x".repeat(100 * 1024))]),
        );
        let text = "${Big.V} ".repeat(20);
        assert_eq!(
            interpolate(&text, &c),
            Err(InterpolateError::TooLarge {
                limit: MAX_INTERPOLATED_BYTES
            })
        );
        assert!(interpolate(&"${Big.V} ".repeat(5), &c).is_ok());
    }

    fn ctx() -> Context {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "FirstAction".to_string(),
            BTreeMap::from([("VAR1".to_string(), "foo".to_string())]),
        );
        outputs.insert(
            "Group1.SubAction1".to_string(),
            BTreeMap::from([("VAR3".to_string(), "foooo".to_string())]),
        );
        outputs.insert(
            "beta.deploy".to_string(),
            BTreeMap::from([("endpointUrl".to_string(), "https://beta".to_string())]),
        );
        outputs.insert(
            "gamma.deploy".to_string(),
            BTreeMap::from([("endpointUrl".to_string(), "https://gamma".to_string())]),
        );
        Context {
            commit_id: "abc123".into(),
            branch_name: "main".into(),
            outputs,
            inputs: BTreeMap::from([("Who".to_string(), "Alice".to_string())]),
            secrets: BTreeMap::from([("TOKEN".to_string(), "s3cr3t".to_string())]),
            ..Context::default()
        }
    }

    fn shell(text: &str) -> String {
        interpolate(text, &ctx()).unwrap()
    }

    #[test]
    fn shell_syntax_passes_through_byte_for_byte() {
        for text in [
            "echo $HOME ${HOME} ${HOME:-/root} ${X:+y} ${#X} ${X%.*}",
            "npm i pkg@${{github.event.inputs.version}}",
            "echo ${{ x.y }} `date` $(pwd) $${notref} ${} ${.} ${a.} ${.b}",
            "find * -name 'x' -prune -o -exec rm -rf '{}' ';'",
            "${VERSION_BUMP:+$VERSION_BUMP --force-publish}",
            "echo ${Who} ${endpointUrl}",
            "ünïcödé ${ and $ at the end $",
        ] {
            assert_eq!(shell(text), text, "{text}");
        }
    }

    #[test]
    fn workflow_references_are_substituted() {
        assert_eq!(shell("echo ${FirstAction.VAR1}o"), "echo fooo");
        assert_eq!(shell("x=${Group1.SubAction1.VAR3}"), "x=foooo");
        assert_eq!(
            shell("${WorkflowSource.BranchName}@${WorkflowSource.CommitId}"),
            "main@abc123"
        );
    }

    #[test]
    fn secrets_become_env_references_in_shell_text() {
        assert_eq!(
            shell("export T=${Secrets.TOKEN}"),
            "export T=${CATALYST_SECRETS_TOKEN}"
        );
        let mut c = ctx();
        c.target = Target::Value;
        assert_eq!(
            interpolate(r#"{"t": "${Secrets.TOKEN}"}"#, &c).unwrap(),
            r#"{"t": "s3cr3t"}"#
        );
    }

    #[test]
    fn input_variables_only_in_values() {
        assert_eq!(shell("greet ${Who}"), "greet ${Who}");
        let mut c = ctx();
        c.target = Target::Value;
        assert_eq!(
            interpolate("greet ${Who} ${Other}", &c).unwrap(),
            "greet Alice ${Other}"
        );
    }

    #[test]
    fn bare_names_resolve_to_the_sibling_first() {
        let mut c = ctx();
        c.scope = vec!["gamma".into()];
        assert_eq!(
            interpolate("${deploy.endpointUrl}", &c).unwrap(),
            "https://gamma"
        );
        c.scope = vec!["beta".into()];
        assert_eq!(
            interpolate("${deploy.endpointUrl}", &c).unwrap(),
            "https://beta"
        );
        // outward lookup reaches top-level actions
        assert_eq!(interpolate("${FirstAction.VAR1}", &c).unwrap(), "foo");
    }

    #[test]
    fn unknown_references_are_errors() {
        let c = ctx();
        assert!(matches!(
            interpolate("${Nope.X}", &c),
            Err(InterpolateError::UnknownAction { .. })
        ));
        assert!(matches!(
            interpolate("${FirstAction.NOPE}", &c),
            Err(InterpolateError::UnknownVariable { .. })
        ));
        assert!(matches!(
            interpolate("${WorkflowSource.Foo}", &c),
            Err(InterpolateError::UnknownWorkflowSourceVariable { .. })
        ));
        let mut v = ctx();
        v.target = Target::Value;
        assert!(matches!(
            interpolate("${Secrets.MISSING}", &v),
            Err(InterpolateError::MissingSecret { .. })
        ));
    }

    #[test]
    fn reference_scanner_splits_at_the_last_dot() {
        let text = "a ${G.A.V} b ${x} ${S.y}";
        let refs = references(text);
        assert_eq!(refs.len(), 2);
        assert_eq!((refs[0].scope, refs[0].name), ("G.A", "V"));
        assert_eq!(refs[0].text(text), "${G.A.V}");
        assert_eq!((refs[1].scope, refs[1].name), ("S", "y"));
    }
}
