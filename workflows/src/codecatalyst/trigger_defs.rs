//! `Triggers` of a CodeCatalyst workflow: push, pull request and schedule
//! triggers, their branch and file patterns (matching is in `crate::triggers`).

use super::*;

pub(super) fn triggers(r: &mut Reader, n: &Node) -> Vec<Trigger> {
    let Some(items) = r.seq(n, "`Triggers`") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut schedule_seen = false;
    for item in items {
        if r.map(item, "a trigger").is_none() {
            continue;
        }
        r.check_keys(item, TRIGGER_KEYS, "a trigger");
        let Some(type_node) = r.required(item, "Type", "this trigger") else {
            continue;
        };
        let Some(ty) = r.text(type_node, "trigger `Type`") else {
            continue;
        };
        let upper = ty.to_ascii_uppercase();
        let branches = item
            .get("Branches")
            .map(|b| patterns(r, b, "Branches"))
            .unwrap_or_default();
        let files_changed = item
            .get("FilesChanged")
            .map(|b| patterns(r, b, "FilesChanged"))
            .unwrap_or_default();
        let forbid = |r: &mut Reader, key: &str, why: &str| {
            if let Some(e) = item.entry(key) {
                r.error(
                    e.key.pos,
                    format!("`{key}` is not allowed in a {upper} trigger"),
                    why.to_string(),
                );
            }
        };
        match upper.as_str() {
            "PUSH" => {
                forbid(r, "Events", "`Events` belongs to PULLREQUEST triggers");
                forbid(r, "Expression", "`Expression` belongs to SCHEDULE triggers");
                out.push(Trigger::Push {
                    branches,
                    files_changed,
                });
            }
            "PULLREQUEST" => {
                forbid(r, "Expression", "`Expression` belongs to SCHEDULE triggers");
                let events = match item.get("Events") {
                    Some(ev) => pr_events(r, ev),
                    None => {
                        r.error(
                            item.pos,
                            "a PULLREQUEST trigger requires `Events`",
                            "add `Events: [OPEN, REVISION]` (or CLOSED)",
                        );
                        Vec::new()
                    }
                };
                out.push(Trigger::PullRequest {
                    events,
                    branches,
                    files_changed,
                });
            }
            "SCHEDULE" => {
                forbid(r, "Events", "`Events` belongs to PULLREQUEST triggers");
                forbid(
                    r,
                    "FilesChanged",
                    "a schedule does not look at changed files",
                );
                if schedule_seen {
                    r.error(
                        type_node.pos,
                        "a workflow may have only one SCHEDULE trigger",
                        "merge the schedules into one cron expression or split the workflow",
                    );
                }
                schedule_seen = true;
                let expression = r
                    .required(item, "Expression", "a SCHEDULE trigger")
                    .and_then(|e| {
                        let text = r.nonempty_text(e, "`Expression`")?;
                        if let Err(why) = crate::cron::Cron::parse(&text) {
                            let pos = pattern_error_pos(r, e, &text, Some(why.offset));
                            r.error(
                                pos,
                                format!("invalid schedule `Expression` `{text}`: {why}"),
                                "use 6 fields `min hour day-of-month month day-of-week year` (UTC), with `?` in exactly one of day-of-month/day-of-week",
                            );
                        }
                        Some(text)
                    })
                    .unwrap_or_default();
                out.push(Trigger::Schedule {
                    expression,
                    branches,
                });
            }
            "MANUAL" => {
                forbid(r, "Events", "`Events` belongs to PULLREQUEST triggers");
                forbid(r, "Expression", "`Expression` belongs to SCHEDULE triggers");
                forbid(
                    r,
                    "FilesChanged",
                    "a manual run does not look at changed files",
                );
                out.push(Trigger::Manual);
            }
            _ => r.error(
                type_node.pos,
                format!("unknown trigger `Type` `{ty}`"),
                "use `PUSH`, `PULLREQUEST`, `SCHEDULE` or `MANUAL`",
            ),
        }
    }
    out
}

fn pr_events(r: &mut Reader, n: &Node) -> Vec<PullRequestEvent> {
    let Some(items) = r.seq(n, "`Events`") else {
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            n.pos,
            "`Events` is empty",
            "list at least one of OPEN, REVISION, CLOSED",
        );
    }
    let mut out = Vec::new();
    for item in items {
        let Some(t) = r.text(item, "an event") else {
            continue;
        };
        let ev = match t.to_ascii_uppercase().as_str() {
            "OPEN" => PullRequestEvent::Open,
            "REVISION" => PullRequestEvent::Revision,
            "CLOSED" => PullRequestEvent::Closed,
            "DRAFT" => PullRequestEvent::Draft,
            "MERGED" => PullRequestEvent::Merged,
            _ => {
                r.error(
                    item.pos,
                    format!("unknown pull request event `{t}`"),
                    "use OPEN, REVISION or CLOSED",
                );
                continue;
            }
        };
        if !out.contains(&ev) {
            out.push(ev);
        }
    }
    out
}

pub(crate) fn patterns(r: &mut Reader, n: &Node, key: &str) -> Vec<Pattern> {
    let Some(items) = r.seq(n, &format!("`{key}`")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(src) = r.nonempty_text(item, &format!("an entry of `{key}`")) else {
            continue;
        };
        match Pattern::new(&src) {
            Ok(p) => {
                if key == "FilesChanged" && src.ends_with('/') {
                    r.warn(
                        item.pos,
                        format!("`{src}` matches only the path `{src}` itself: FilesChanged entries are full-match regular expressions"),
                        format!("to match files below it write `{src}.*`"),
                    );
                }
                out.push(p);
            }
            Err(e) => {
                let help = if src.contains('*') && !src.contains(".*") {
                    format!(
                        "{key} entries are regular expressions, not globs: \
                         write `.*` for \"anything\" (e.g. `{}`)",
                        src.replace('*', ".*")
                    )
                } else {
                    format!("{key} entries are regular expressions matched against the whole name")
                };
                r.error(
                    pattern_error_pos(r, item, &src, e.offset),
                    format!("`{key}`: {e}"),
                    help,
                );
            }
        }
    }
    out
}

/// Where in the file the regex error is: inside the scalar when its text
/// appears verbatim on the scalar's first line, else the scalar itself.
fn pattern_error_pos(r: &Reader, item: &Node, src: &str, offset: Option<usize>) -> Pos {
    let Some(offset) = offset else {
        return item.pos;
    };
    let found = r.find_from(item.pos, src);
    let quote = usize::from(matches!(
        &item.value,
        yamlmap::Value::Scalar { plain: false, .. }
    ));
    if found.line == item.pos.line && found.column <= item.pos.column + quote {
        Pos::new(found.line, found.column + offset)
    } else {
        item.pos
    }
}
