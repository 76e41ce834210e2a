// Hostile devfile shapes, shared by `hostile.rs` and `peak_rss.rs`.
#[allow(unused_imports)]
use super::support::indent;

const HEAD: &str = "schemaVersion: 2.2.0\nmetadata:\n  name: hostile\n";
const RUNTIME: &str = "  - name: runtime\n    container:\n      image: cove/universal:latest\n";

/// A valid devfile whose top-level `attributes` hold `body`.
pub fn devfile_with_attributes(body: &str) -> String {
    format!("{HEAD}components:\n{RUNTIME}attributes:\n{}", indent(body, 2))
}

fn exec(id: &str) -> String {
    format!("  - id: {id}\n    exec:\n      component: runtime\n      commandLine: echo {id}\n")
}

fn composite(id: &str, children: &[String]) -> String {
    format!("  - id: {id}\n    composite:\n      commands: [{}]\n", children.join(", "))
}

/// c0 includes c1 includes … c(n-1), which is an exec command.
pub fn composite_chain(n: usize) -> String {
    let mut s = format!("{HEAD}components:\n{RUNTIME}commands:\n");
    for i in 0..n.saturating_sub(1) {
        s.push_str(&composite(&format!("c{i}"), &[format!("c{}", i + 1)]));
    }
    s.push_str(&exec(&format!("c{}", n.saturating_sub(1))));
    s
}

/// Levels of two composites each including both of the next level.
pub fn composite_diamonds(levels: usize) -> String {
    let mut s = format!("{HEAD}components:\n{RUNTIME}commands:\n");
    for i in 0..levels {
        let next = [format!("a{}", i + 1), format!("b{}", i + 1)];
        s.push_str(&composite(&format!("a{i}"), &next));
        s.push_str(&composite(&format!("b{i}"), &next));
    }
    s.push_str(&exec(&format!("a{levels}")));
    s.push_str(&exec(&format!("b{levels}")));
    s
}

/// c0 includes c1 … includes c(n-1) includes c0.
pub fn composite_ring(n: usize) -> String {
    let mut s = format!("{HEAD}components:\n{RUNTIME}commands:\n");
    for i in 0..n {
        s.push_str(&composite(&format!("c{i}"), &[format!("c{}", (i + 1) % n)]));
    }
    s
}

/// A composite chain of `chain` and `events` postStart bindings to its head.
pub fn events_on_chain(chain: usize, events: usize) -> String {
    let mut s = composite_chain(chain);
    s.push_str("events:\n  postStart:\n");
    for _ in 0..events {
        s.push_str("    - c0\n");
    }
    s
}

/// `n` exec commands that name a component that does not exist.
pub fn broken_commands(n: usize) -> String {
    let mut s = format!("{HEAD}components:\n{RUNTIME}commands:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - id: x{i}\n    exec:\n      component: nope\n      commandLine: echo\n"
        ));
    }
    s
}

/// `n` unknown keys in one container.
pub fn unknown_keys(n: usize) -> String {
    let mut s = format!("{HEAD}components:\n{RUNTIME}");
    for i in 0..n {
        s.push_str(&format!("      bogus{i}: 1\n"));
    }
    s
}

/// One variable of `value_len` bytes referenced `refs` times in one command.
pub fn variable_fanout(value_len: usize, refs: usize) -> String {
    format!(
        "{HEAD}variables:\n  v: {}\ncomponents:\n{RUNTIME}commands:\n  - id: big\n    exec:\n      component: runtime\n      commandLine: \"{}\"\n",
        "x".repeat(value_len),
        "{{v}}".repeat(refs)
    )
}

/// `n` distinct undefined variables in one command.
pub fn unknown_variables(n: usize) -> String {
    let refs: String = (0..n).map(|i| format!("{{{{u{i}}}}}")).collect();
    format!(
        "{HEAD}components:\n{RUNTIME}commands:\n  - id: big\n    exec:\n      component: runtime\n      commandLine: \"{refs}\"\n"
    )
}

/// `n` container components.
pub fn many_containers(n: usize) -> String {
    let mut s = format!("{HEAD}components:\n");
    for i in 0..n {
        s.push_str(&format!("  - name: c{i}\n    container:\n      image: cove/busybox\n"));
    }
    s
}

/// A parent-chain member: `parent.uri: p{next}.yaml` when `has_parent`,
/// with `attributes` holding `body`.
pub fn parent_doc(has_parent: bool, next: usize, body: &str) -> String {
    let mut s = HEAD.to_string();
    if has_parent {
        s.push_str(&format!("parent:\n  uri: p{next}.yaml\n"));
    }
    s.push_str(&format!("components:\n  - name: r{next}\n    container:\n      image: cove/universal:latest\n"));
    if !body.is_empty() {
        s.push_str(&format!("attributes:\n{}", indent(body, 2)));
    }
    s
}

/// A parent with `n` containers, and a child that overrides each of them
/// under `parent.components` and (when `redefine`) also redefines each at
/// the top level (an error per element).
pub fn parent_and_overrides(n: usize, redefine: bool) -> (String, String) {
    let parent = many_containers(n);
    let mut child = format!("{HEAD}parent:\n  uri: p.yaml\n  components:\n");
    for i in 0..n {
        child.push_str(&format!("    - {{name: c{i}, container: {{image: cove/universal}}}}\n"));
    }
    if redefine {
        child.push_str("components:\n");
        for i in 0..n {
            child.push_str(&format!("  - {{name: c{i}, container: {{image: x}}}}\n"));
        }
    }
    (child, parent)
}
