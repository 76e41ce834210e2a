//! Reading the `batch` section into a [`Spec`] (every problem reported at
//! its position in the batch file).

use std::collections::HashSet;

use yamlmap::{Node, Pos};

use super::{Build, Kind, Spec, MAX_BATCH_BUILDS};
use crate::reader::{is_name, list_names, show, Reader};

pub(crate) const BATCH_KEYS: &[&str] = &[
    "fast-fail",
    "build-list",
    "build-matrix",
    "build-graph",
    "build-fanout",
    "service-role",
    "combine-artifacts",
    "build-timeout-in-mins",
];
pub(crate) const ENTRY_KEYS: &[&str] = &[
    "identifier",
    "buildspec",
    "depend-on",
    "env",
    "debug-session",
    "ignore-failure",
];
pub(crate) const ENV_KEYS: &[&str] = &[
    "compute-type",
    "fleet",
    "image",
    "privileged-mode",
    "type",
    "variables",
];

/// The `batch` section (`key_pos`: where `batch:` is written), or `None`
/// when it is not a mapping.
pub(crate) fn read(r: &mut Reader, key_pos: Pos, b: &Node) -> Option<Spec> {
    r.map(b, "`batch`")?;
    warn_unknown(r, b, BATCH_KEYS, "`batch`");
    let fast_fail = b
        .get("fast-fail")
        .and_then(|f| r.boolean(f, "`batch.fast-fail`"))
        .unwrap_or(false);
    let timeout_minutes = b
        .get("build-timeout-in-mins")
        .and_then(|t| r.positive(t, "`batch.build-timeout-in-mins`"));
    if let Some(c) = b.get("combine-artifacts") {
        r.boolean(c, "`batch.combine-artifacts`");
    }
    let kinds: Vec<&yamlmap::Entry> = b
        .entries()
        .iter()
        .filter(|e| {
            matches!(
                e.key.as_str(),
                Some("build-graph" | "build-list" | "build-matrix" | "build-fanout")
            )
        })
        .collect();
    if let [first, second, ..] = kinds.as_slice() {
        r.error(
            second.key.pos,
            format!(
                "a batch has one type, found `{}` and `{}`",
                show(&first.key),
                show(&second.key)
            ),
            "keep one of `build-graph`, `build-list`, `build-matrix`",
        );
    }
    let mut spec = Spec {
        pos: key_pos,
        kind: None,
        fast_fail,
        timeout_minutes,
        builds: Vec::new(),
        too_many: false,
    };
    for e in &kinds {
        let key = e.key.as_str().unwrap_or_default();
        match key {
            "build-graph" | "build-list" => {
                let kind = if key == "build-graph" {
                    Kind::Graph
                } else {
                    Kind::List
                };
                let builds = read_list(r, &e.value, key, kind);
                if spec.kind.is_none() {
                    spec.kind = Some(kind);
                    spec.builds = builds;
                }
            }
            "build-matrix" => {
                let (builds, too_many) = read_matrix(r, e);
                if spec.kind.is_none() {
                    spec.kind = Some(Kind::Matrix);
                    spec.builds = builds;
                    spec.too_many = too_many;
                }
            }
            _ => {}
        }
    }
    Some(spec)
}

fn read_list(r: &mut Reader, list: &Node, key: &str, kind: Kind) -> Vec<Build> {
    let items = r.seq(list, &format!("`batch.{key}`")).unwrap_or_default();
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i.get("identifier")?.as_str())
        .collect();
    let known: HashSet<&str> = ids.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut builds = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if r.map(item, "a batch build").is_none() {
            continue;
        }
        let ctx = format!("a `{key}` entry");
        warn_unknown(r, item, ENTRY_KEYS, &ctx);
        let id = match (item.get("identifier"), kind) {
            (Some(n), _) => r.nonempty_text(n, "`identifier`").inspect(|id| {
                if !is_name(id) {
                    r.error(
                        n.pos,
                        format!(
                            "the build identifier `{id}` may use only letters, digits, `_` and `-`"
                        ),
                        "rename the build, e.g. `linux_small`",
                    );
                } else if !seen.insert(id.clone()) {
                    r.error(
                        n.pos,
                        format!("a second build with the identifier `{id}`"),
                        "give every build its own identifier",
                    );
                }
            }),
            (None, Kind::List) => Some(format!("build{}", index + 1)),
            (None, _) => {
                r.required(item, "identifier", &format!("this `{key}` entry"));
                None
            }
        };
        let buildspec = item
            .get("buildspec")
            .and_then(|n| Some((r.nonempty_text(n, "`buildspec`")?, n.pos)));
        let (image, variables) = item
            .get("env")
            .map(|env| read_env(r, env, "a batch build's `env`"))
            .unwrap_or_default();
        if let Some(d) = item.get("debug-session") {
            r.boolean(d, "`debug-session`");
        }
        let ignore_failure = item
            .get("ignore-failure")
            .and_then(|n| r.boolean(n, "`ignore-failure`"))
            .unwrap_or(false);
        let mut depend_on = Vec::new();
        if let Some(deps) = item.entry("depend-on") {
            if kind == Kind::List {
                r.error(
                    deps.key.pos,
                    "`depend-on` belongs to `build-graph`: the builds of a `build-list` run in parallel",
                    "use `build-graph` for builds that wait for others",
                );
            }
            for d in r.seq(&deps.value, "`depend-on`").unwrap_or_default() {
                let Some(dep) = r.nonempty_text(d, "an entry of `depend-on`") else {
                    continue;
                };
                if !known.contains(dep.as_str()) {
                    let help = if r.is_full() {
                        String::new()
                    } else {
                        format!("builds here: {}", list_names(ids.iter().copied()))
                    };
                    r.error(
                        d.pos,
                        format!("`depend-on` names `{dep}`, which is not a build in `{key}`"),
                        help,
                    );
                } else {
                    depend_on.push(dep);
                }
            }
        }
        if let Some(id) = id {
            builds.push(Build {
                id,
                pos: item.pos,
                buildspec,
                image,
                variables,
                depend_on,
                ignore_failure,
            });
        }
    }
    builds
}

/// A build's `env`: the image and the variables.
fn read_env(r: &mut Reader, env: &Node, ctx: &str) -> (Option<String>, Vec<(String, String)>) {
    if r.map(env, ctx).is_none() {
        return (None, Vec::new());
    }
    warn_unknown(r, env, ENV_KEYS, ctx);
    let image = env
        .get("image")
        .and_then(|n| r.nonempty_text(n, "`env.image`"));
    for key in ["compute-type", "fleet", "type"] {
        if let Some(n) = env.get(key) {
            r.text(n, &format!("`env.{key}`"));
        }
    }
    if let Some(p) = env.get("privileged-mode") {
        r.boolean(p, "`env.privileged-mode`");
    }
    let mut variables = Vec::new();
    if let Some(vars) = env.get("variables") {
        for e in r.map(vars, "`env.variables`").unwrap_or_default() {
            let Some(name) = e.key.as_str() else { continue };
            let value = if e.value.is_null() {
                Some(String::new())
            } else {
                r.text(&e.value, &format!("`env.variables.{name}`"))
            };
            if let Some(value) = value {
                variables.push((name.to_string(), value));
            }
        }
    }
    (image, variables)
}

/// One dimension of a matrix: the values of a scalar or a list.
fn values(r: &mut Reader, n: &Node, what: &str) -> Vec<String> {
    if n.as_str().is_some() && !n.is_null() {
        return r.nonempty_text(n, what).into_iter().collect();
    }
    r.text_list(n, what)
}

/// The matrix's builds (static settings on each, the product of the
/// dynamic values), and whether there were too many to list.
fn read_matrix(r: &mut Reader, e: &yamlmap::Entry) -> (Vec<Build>, bool) {
    let m = &e.value;
    if r.map(m, "`batch.build-matrix`").is_none() {
        return (Vec::new(), false);
    }
    warn_unknown(r, m, &["static", "dynamic"], "`batch.build-matrix`");
    let mut ignore_failure = false;
    let (mut image, mut variables) = (None, Vec::new());
    if let Some(s) = m.get("static") {
        if r.map(s, "`build-matrix.static`").is_some() {
            warn_unknown(
                r,
                s,
                &["ignore-failure", "env", "debug-session"],
                "`build-matrix.static`",
            );
            ignore_failure = s
                .get("ignore-failure")
                .and_then(|n| r.boolean(n, "`ignore-failure`"))
                .unwrap_or(false);
            if let Some(env) = s.get("env") {
                (image, variables) = read_env(r, env, "`build-matrix.static.env`");
            }
        }
    }
    // (dimension name, values, position): buildspec, image, compute type, variables
    let mut buildspecs: Vec<(String, Pos)> = Vec::new();
    let mut dims: Vec<(Dim, Vec<String>)> = Vec::new();
    if let Some(d) = m.get("dynamic") {
        if r.map(d, "`build-matrix.dynamic`").is_some() {
            warn_unknown(r, d, &["buildspec", "env"], "`build-matrix.dynamic`");
            if let Some(b) = d.get("buildspec") {
                let list: Vec<&Node> = if b.as_str().is_some() && !b.is_null() {
                    vec![b]
                } else {
                    r.seq(b, "`dynamic.buildspec`")
                        .unwrap_or_default()
                        .iter()
                        .collect()
                };
                for n in list {
                    if let Some(t) = r.nonempty_text(n, "a buildspec of `dynamic.buildspec`") {
                        buildspecs.push((t, n.pos));
                    }
                }
            }
            if let Some(env) = d.get("env") {
                if r.map(env, "`dynamic.env`").is_some() {
                    warn_unknown(
                        r,
                        env,
                        &["compute-type", "image", "variables"],
                        "`dynamic.env`",
                    );
                    if let Some(n) = env.get("image") {
                        dims.push((Dim::Image, values(r, n, "`dynamic.env.image`")));
                    }
                    if let Some(n) = env.get("compute-type") {
                        dims.push((Dim::ComputeType, values(r, n, "`dynamic.env.compute-type`")));
                    }
                    if let Some(vars) = env.get("variables") {
                        for v in r.map(vars, "`dynamic.env.variables`").unwrap_or_default() {
                            let Some(name) = v.key.as_str() else { continue };
                            let vals = values(r, &v.value, &format!("`variables.{name}`"));
                            dims.push((Dim::Variable(name.to_string()), vals));
                        }
                    }
                }
            }
        }
    }
    dims.retain(|(_, v)| !v.is_empty());
    let count = dims.iter().fold(buildspecs.len().max(1), |n, (_, v)| {
        n.saturating_mul(v.len())
    });
    if count > MAX_BATCH_BUILDS {
        r.error(
            e.key.pos,
            format!("this matrix makes {count} builds; Cove runs at most {MAX_BATCH_BUILDS} builds in one batch"),
            "use fewer values in `dynamic`",
        );
        return (Vec::new(), true);
    }
    let bs_choices: Vec<Option<&(String, Pos)>> = if buildspecs.is_empty() {
        vec![None]
    } else {
        buildspecs.iter().map(Some).collect()
    };
    let mut builds = Vec::new();
    let mut used = HashSet::new();
    let per_buildspec: usize = dims.iter().map(|(_, v)| v.len()).product();
    for bs in &bs_choices {
        for n in 0..per_buildspec {
            // the n-th combination; the last dimension changes fastest
            let mut combo = vec![0usize; dims.len()];
            let mut rest = n;
            for k in (0..dims.len()).rev() {
                combo[k] = rest % dims[k].1.len();
                rest /= dims[k].1.len();
            }
            let mut b = Build {
                id: String::new(),
                pos: e.key.pos,
                buildspec: bs.map(|(t, p)| (t.clone(), *p)),
                image: image.clone(),
                variables: variables.clone(),
                depend_on: Vec::new(),
                ignore_failure,
            };
            let mut parts = Vec::new();
            if buildspecs.len() > 1 {
                if let Some((t, _)) = bs {
                    let stem = t.rsplit('/').next().unwrap_or(t);
                    parts.push(stem.split('.').next().unwrap_or(stem).to_string());
                }
            }
            for ((dim, vals), &i) in dims.iter().zip(&combo) {
                let v = &vals[i];
                match dim {
                    Dim::Image => b.image = Some(v.clone()),
                    Dim::ComputeType => {}
                    Dim::Variable(name) => {
                        b.variables.retain(|(k, _)| k != name);
                        b.variables.push((name.clone(), v.clone()));
                    }
                }
                if vals.len() > 1 {
                    let v = match dim {
                        Dim::Image => v.rsplit('/').next().unwrap_or(v),
                        _ => v,
                    };
                    parts.push(v.to_string());
                }
            }
            b.id = unique_id(&parts, &mut used);
            builds.push(b);
        }
    }
    (builds, false)
}

enum Dim {
    Image,
    ComputeType,
    Variable(String),
}

/// A readable action name from a matrix build's values: each part with
/// characters outside `[A-Za-z0-9_-]` replaced by `_`, at most 24 of them,
/// joined with `-`; `matrix` when nothing varies; `-2`, `-3` … when taken.
fn unique_id(parts: &[String], used: &mut HashSet<String>) -> String {
    let clean: Vec<String> = parts
        .iter()
        .map(|p| {
            let s: String = p
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(24)
                .collect();
            let s = s.trim_matches('_').to_string();
            if s.is_empty() {
                "_".to_string()
            } else {
                s
            }
        })
        .collect();
    let base = if clean.is_empty() {
        "matrix".to_string()
    } else {
        clean.join("-")
    };
    let mut id = base.clone();
    let mut n = 2;
    while !used.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

fn warn_unknown(r: &mut Reader, n: &Node, known: &[&str], ctx: &str) {
    for e in n.entries() {
        let k = show(&e.key);
        if !known.contains(&k.as_str()) {
            let what = if e.value.is_null() {
                " (empty, ignored)"
            } else {
                " (kept, not interpreted)"
            };
            r.warn(
                e.key.pos,
                format!("unknown key `{k}` in {ctx}{what}"),
                format!("known keys: {}", known.join(", ")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_ids_are_readable_and_unique() {
        let mut used = HashSet::new();
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(unique_id(&p(&["node:20", "a b"]), &mut used), "node_20-a_b");
        assert_eq!(
            unique_id(&p(&["node:20", "a b"]), &mut used),
            "node_20-a_b-2"
        );
        assert_eq!(unique_id(&[], &mut used), "matrix");
    }
}
