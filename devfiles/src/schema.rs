//! The schema stage: what the official JSON schema of the file's own
//! `schemaVersion` allows, checked on the positioned YAML tree so that every
//! error points at the offending key or value. Types and enum values are
//! left to the typed (serde) stage that follows.

use std::collections::HashMap;
use std::sync::OnceLock;

use yamlmap::{cap_diagnostics, Diagnostic, Dropped, Node, Value, MAX_DIAGNOSTICS};

use crate::schema_fields::{FIELDS, ONLY_2_0_0};
use crate::version::{is_semver, Version};

struct Field {
    since: Version,
    free: bool,
}

fn fields() -> &'static HashMap<&'static str, Field> {
    static FIELDS_MAP: OnceLock<HashMap<&'static str, Field>> = OnceLock::new();
    FIELDS_MAP.get_or_init(|| {
        FIELDS
            .iter()
            .map(|(path, since, free)| {
                let since = Version::parse(since).expect("schema_fields.rs holds valid versions");
                (*path, Field { since, free: *free })
            })
            .collect()
    })
}

/// The fields of devfile 2.0.0 that 2.1.0 removed (`github`, `sparseCheckoutDirs`).
fn only_2_0_0() -> &'static HashMap<&'static str, bool> {
    static MAP: OnceLock<HashMap<&'static str, bool>> = OnceLock::new();
    MAP.get_or_init(|| ONLY_2_0_0.iter().copied().collect())
}

/// The field at `path` as the schema of `version` has it.
fn field(path: &str, version: Version) -> Option<Field> {
    match fields().get(path) {
        Some(f) => Some(Field {
            since: f.since,
            free: f.free,
        }),
        None if version < Version::V2_1_0 => only_2_0_0().get(path).map(|free| Field {
            since: Version::V2_0_0,
            free: *free,
        }),
        None => None,
    }
}

/// Constructs of devfile 2.0.0 that 2.1.0 removed and Cove does not run.
const REMOVED_IN_2_1: &[(&str, &str)] = &[
    ("plugin", "`plugin` components"),
    ("vscodeTask", "`vscodeTask` commands"),
    ("vscodeLaunch", "`vscodeLaunch` commands"),
];

/// Constructs of devfile 2.0.0 that 2.1.0 removed: fine in 2.0.0 files.
const ONLY_IN_2_0: &[(&str, &str)] = &[
    (
        "github",
        "`github` project sources (use `git` from 2.1.0 on)",
    ),
    ("sparseCheckoutDirs", "`sparseCheckoutDirs`"),
];

/// Exactly-one-of groups (the schema's `oneOf` with `required`).
const ONE_OF: &[(&str, &[&str])] = &[
    (
        "components[]",
        &["container", "kubernetes", "openshift", "volume", "image"],
    ),
    ("commands[]", &["exec", "apply", "composite"]),
    ("projects[]", &["git", "github", "zip"]),
    ("starterProjects[]", &["git", "github", "zip"]),
    ("dependentProjects[]", &["git", "zip"]),
    ("components[].kubernetes", &["uri", "inlined"]),
    ("components[].openshift", &["uri", "inlined"]),
    (
        "components[].image.dockerfile",
        &["uri", "git", "devfileRegistry"],
    ),
    ("parent", &["uri", "id", "kubernetes"]),
];

/// Identifier fields: `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63 chars
/// (endpoint names at most 15 from 2.2.0 on).
const IDENTIFIERS: &[&str] = &[
    "components[].name",
    "commands[].id",
    "projects[].name",
    "starterProjects[].name",
    "dependentProjects[].name",
    "components[].container.endpoints[].name",
    "components[].kubernetes.endpoints[].name",
    "components[].openshift.endpoints[].name",
];

pub fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && ok(&b[0]) && ok(&b[b.len() - 1]) && b.iter().all(|c| ok(c) || *c == b'-')
}

pub(crate) struct Checker<'a> {
    file: &'a str,
    version: Version,
    errors: Vec<Diagnostic>,
    dropped: Dropped,
}

/// Check `root` against the schema of `version`. Returns the violations
/// (the first [`MAX_DIAGNOSTICS`] and an "and N more").
pub(crate) fn check(file: &str, root: &Node, version: Version) -> Vec<Diagnostic> {
    let mut c = Checker {
        file,
        version,
        errors: Vec::new(),
        dropped: Dropped::default(),
    };
    c.walk(root, "");
    cap_diagnostics(&mut c.errors, MAX_DIAGNOSTICS, c.dropped);
    c.errors
}

impl Checker<'_> {
    fn err(&mut self, d: Diagnostic) {
        if self.errors.len() < MAX_DIAGNOSTICS {
            self.errors.push(d);
        } else {
            self.dropped.add(&d);
        }
    }

    fn walk(&mut self, node: &Node, path: &str) {
        match &node.value {
            Value::Seq(items) => {
                let item_path = format!("{path}[]");
                for item in items {
                    self.walk(item, &item_path);
                }
            }
            Value::Map(entries) => {
                self.check_one_of(node, path);
                for e in entries {
                    let Some(key) = e.key.as_str() else { continue };
                    let child = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    let lookup = child.strip_prefix("parent.").unwrap_or(&child);
                    match field(child.as_str(), self.version) {
                        Some(f) if f.since <= self.version => {
                            self.check_value(&e.value, lookup, &child);
                            if !f.free {
                                self.walk(&e.value, &child);
                            }
                        }
                        // metadata allows extra keys, so a newer metadata field is just an extra key
                        Some(_) if path == "metadata" => {}
                        Some(f) => {
                            let since = f.since;
                            self.err(
                                Diagnostic::error(
                                    self.file,
                                    e.key.pos,
                                    format!(
                                        "`{key}` needs schemaVersion {since} or later, but this devfile declares {}",
                                        self.version
                                    ),
                                )
                                .with_help(format!("raise schemaVersion to {since} or remove `{key}`")),
                            );
                        }
                        None if path == "metadata" => {} // metadata allows extra keys
                        None => self.unknown_field(key, e.key.pos, path),
                    }
                }
            }
            Value::Scalar { .. } => {}
        }
    }

    fn unknown_field(&mut self, key: &str, pos: yamlmap::Pos, parent: &str) {
        if self.errors.len() >= MAX_DIAGNOSTICS {
            // only counted: skip the suggestions
            self.dropped.add(&Diagnostic::error(self.file, pos, ""));
            return;
        }
        if let Some((_, what)) = ONLY_IN_2_0.iter().find(|(k, _)| *k == key) {
            self.err(
                Diagnostic::error(
                    self.file,
                    pos,
                    format!(
                        "{what}: devfile 2.0.0 has them, but 2.1.0 removed them and this devfile declares {}",
                        self.version
                    ),
                )
                .with_help(
                    "use `git` remotes (and no `sparseCheckoutDirs`), or declare schemaVersion 2.0.0",
                ),
            );
            return;
        }
        if let Some((_, what)) = REMOVED_IN_2_1.iter().find(|(k, _)| *k == key) {
            self.err(
                Diagnostic::error(
                    self.file,
                    pos,
                    format!("{what} belong to devfile 2.0.0 only and are not supported by Cove"),
                )
                .with_help(format!(
                    "remove `{key}`; see the devfile 2.1.0 migration notes"
                )),
            );
            return;
        }
        let prefix = if parent.is_empty() {
            String::new()
        } else {
            format!("{parent}.")
        };
        let mut allowed: Vec<&str> = fields()
            .iter()
            .filter(|(p, f)| f.since <= self.version && p.starts_with(&prefix))
            .map(|(p, _)| &p[prefix.len()..])
            .filter(|rest| !rest.contains(['.', '[']))
            .collect();
        allowed.sort_unstable();
        allowed.dedup();
        let where_ = if parent.is_empty() {
            "the top level".to_string()
        } else {
            format!("`{parent}`")
        };
        let mut d = Diagnostic::error(
            self.file,
            pos,
            format!(
                "unknown field `{key}` in {where_} (not allowed by the devfile {} schema)",
                self.version
            ),
        );
        let suggestion = allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(key))
            .or_else(|| allowed.iter().find(|a| edit_distance(a, key) <= 2));
        d = match suggestion {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None if !allowed.is_empty() => {
                d.with_help(format!("allowed here: {}", allowed.join(", ")))
            }
            None => d,
        };
        self.err(d);
    }

    fn check_one_of(&mut self, node: &Node, path: &str) {
        let lookup = path.strip_prefix("parent.").unwrap_or(path);
        let is_override = path.starts_with("parent.");
        let Some((_, options)) = ONE_OF.iter().find(|(p, _)| *p == lookup) else {
            return;
        };
        // `github` is a project source of 2.0.0 only
        let options: Vec<&str> = options
            .iter()
            .copied()
            .filter(|o| *o != "github" || self.version < Version::V2_1_0)
            .collect();
        let present: Vec<&str> = options
            .iter()
            .copied()
            .filter(|o| node.get(o).is_some())
            .collect();
        let what = describe(lookup);
        if present.len() > 1 {
            let second = node
                .entry(present[1])
                .map(|e| e.key.pos)
                .unwrap_or(node.pos);
            self.err(
                Diagnostic::error(
                    self.file,
                    second,
                    format!(
                        "{what} has both `{}` and `{}`; exactly one of {} is allowed",
                        present[0],
                        present[1],
                        options.join(", ")
                    ),
                )
                .with_help(format!("keep one of `{}` and `{}`", present[0], present[1])),
            );
        } else if present.is_empty() && !is_override {
            self.err(
                Diagnostic::error(
                    self.file,
                    node.pos,
                    format!("{what} needs one of: {}", options.join(", ")),
                )
                .with_help(format!("add exactly one of {}", options.join(", "))),
            );
        }
    }

    fn check_value(&mut self, value: &Node, lookup: &str, full: &str) {
        if IDENTIFIERS.contains(&lookup) {
            let Some(text) = value.as_str() else { return };
            let max = if lookup.ends_with("endpoints[].name") && self.version >= Version::V2_2_0 {
                15
            } else {
                63
            };
            let field = lookup.rsplit('.').next().unwrap_or(lookup);
            if !is_identifier(text) {
                let suggestion = to_identifier(text);
                self.err(
                    Diagnostic::error(
                        self.file,
                        value.pos,
                        format!("{field} `{text}` does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ (lower-case letters, digits and '-')"),
                    )
                    .with_help(format!("rename it, for example to `{suggestion}`, and update every reference to it")),
                );
            } else if text.len() > max {
                self.err(Diagnostic::error(
                    self.file,
                    value.pos,
                    format!(
                        "{field} `{text}` is {} characters long; at most {max} are allowed",
                        text.len()
                    ),
                ));
            }
        }
        if full == "metadata.version" {
            if let Some(text) = value.as_str() {
                if !is_semver(text) {
                    self.err(
                        Diagnostic::error(
                            self.file,
                            value.pos,
                            format!("metadata.version `{text}` does not match the semver pattern MAJOR.MINOR.PATCH"),
                        )
                        .with_help("use a version such as 1.0.0"),
                    );
                }
            }
        }
    }
}

fn describe(path: &str) -> String {
    match path {
        "components[]" => "a component".into(),
        "commands[]" => "a command".into(),
        "projects[]" | "starterProjects[]" | "dependentProjects[]" => "a project".into(),
        "parent" => "`parent`".into(),
        p => format!("`{}`", p.rsplit('.').next().unwrap_or(p)),
    }
}

/// A best-effort identifier derived from `text`, for hints.
pub fn to_identifier(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "name".into()
    } else {
        trimmed
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("a"));
        assert!(is_identifier("run-app-2"));
        assert!(!is_identifier("-a"));
        assert!(!is_identifier("a-"));
        assert!(!is_identifier("Build"));
        assert!(!is_identifier("npm install"));
        assert_eq!(to_identifier("npm install"), "npm-install");
        assert_eq!(to_identifier("testContainer1"), "testcontainer1");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("image", "imgae"), 2);
        assert_eq!(edit_distance("image", "image"), 0);
    }
}
