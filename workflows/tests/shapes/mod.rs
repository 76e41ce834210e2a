// Hostile workflow and buildspec shapes, shared by `hostile.rs` and
// `peak_rss.rs`.
use super::support::{alias_tree, indent};

const HEAD: &str = "Name: hostile\nSchemaVersion: \"1.0\"\n";

/// One action in flow style, depending on `deps`, running `run`.
fn action(id: &str, deps: &[String], run: &str) -> String {
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!("DependsOn: [{}], ", deps.join(", "))
    };
    format!("  {id}: {{Identifier: aws/build@v1, {deps}Outputs: {{Variables: [x]}}, Configuration: {{Steps: [{{Run: {run}}}]}}}}\n")
}

/// The ~500-byte file of issue 13: nine levels of nine aliases, the last
/// one used by a step.
pub fn laughs() -> String {
    format!(
        "{HEAD}{}Actions:\n  A: {{Identifier: aws/build@v1, Configuration: {{Steps: [{{Run: *a8}}]}}}}\n",
        alias_tree(9, 9)
    )
}

/// A0 <- A1 <- … : each action depends on the one before.
pub fn chain(n: usize) -> String {
    let mut s = format!("{HEAD}Actions:\n");
    for i in 0..n {
        let deps = if i == 0 { vec![] } else { vec![format!("A{}", i - 1)] };
        s.push_str(&action(&format!("A{i}"), &deps, "x"));
    }
    s
}

/// A0 -> A1 -> … -> A(n-1) -> A0.
pub fn ring(n: usize) -> String {
    let mut s = format!("{HEAD}Actions:\n");
    for i in 0..n {
        s.push_str(&action(&format!("A{i}"), &[format!("A{}", (i + 1) % n)], "x"));
    }
    s
}

/// Each action depends on the next and on A0: one cycle per action.
pub fn many_cycles(n: usize) -> String {
    let mut s = format!("{HEAD}Actions:\n");
    for i in 0..n {
        s.push_str(&action(
            &format!("A{i}"),
            &[format!("A{}", (i + 1) % n), "A0".to_string()],
            "x",
        ));
    }
    s
}

/// Each action depends on every earlier one (a dense DAG).
pub fn dense(n: usize) -> String {
    let mut s = format!("{HEAD}Actions:\n");
    for i in 0..n {
        let deps: Vec<String> = (0..i).map(|j| format!("A{j}")).collect();
        s.push_str(&action(&format!("A{i}"), &deps, "x"));
    }
    s
}

/// `groups` groups of `per` actions, each group depending on the one before
/// (every action of one on every action of the other).
pub fn group_product(groups: usize, per: usize) -> String {
    let mut s = format!("{HEAD}Actions:\n");
    for g in 0..groups {
        s.push_str(&format!("  G{g}:\n"));
        if g > 0 {
            s.push_str(&format!("    DependsOn: [G{}]\n", g - 1));
        }
        s.push_str("    Actions:\n");
        let mut inner = String::new();
        for i in 0..per {
            inner.push_str(&action(&format!("a{i}"), &[], "x"));
        }
        s.push_str(&indent(&inner, 4));
    }
    s
}

/// One step with `n` references to another action's output (one edge),
/// and one with `n` references to actions that do not exist (n errors).
pub fn many_references(n: usize, known: bool) -> String {
    let target = if known { "A0.x" } else { "Nope.x" };
    let run = format!("\"{}\"", format!("${{{target}}} ").repeat(n));
    format!(
        "{HEAD}Actions:\n{}{}",
        action("A0", &[], "x"),
        action("A1", &[], &run)
    )
}

/// `n` references, each to a different missing action, on one line.
pub fn distinct_bad_references(n: usize) -> String {
    let refs: String = (0..n).map(|i| format!("${{N{i}.x}} ")).collect();
    format!(
        "{HEAD}Actions:\n{}",
        action("A0", &[], &format!("\"{refs}\""))
    )
}

/// `n` actions that each depend on a missing action (n errors with hints).
pub fn unknown_dependencies(n: usize) -> String {
    let mut s = format!("{HEAD}Actions:\n");
    for i in 0..n {
        s.push_str(&action(&format!("A{i}"), &[format!("Missing{i}")], "x"));
    }
    s
}

/// A buildspec with `n` batch builds, each depending on a missing one.
pub fn batch_graph(n: usize) -> String {
    let mut s = String::from("version: 0.2\nphases:\n  build:\n    commands: [x]\nbatch:\n  build-graph:\n");
    for i in 0..n {
        s.push_str(&format!("    - {{identifier: b{i}, depend-on: [m{i}]}}\n"));
    }
    s
}

/// A buildspec with `n` commands.
pub fn long_buildspec(n: usize) -> String {
    let mut s = String::from("version: 0.2\nphases:\n  build:\n    commands:\n");
    for i in 0..n {
        s.push_str(&format!("      - echo {i}\n"));
    }
    s
}

/// A workflow whose one action's configuration holds `body`.
pub fn with_body(body: &str) -> String {
    format!(
        "{HEAD}Actions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: x\n      Extra:\n{}",
        indent(body, 8)
    )
}
