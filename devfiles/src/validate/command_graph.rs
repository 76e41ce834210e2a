//! Composite commands as a graph, and how cycles are shown.

use super::*;

/// Most composite cycles spelled out as a path.
pub(super) const MAX_CYCLE_PATHS: usize = 20;

/// `names` joined with `, `: at most 20, then how many more.
pub(super) fn list_names<'s>(names: impl Iterator<Item = &'s str>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for n in names {
        if shown.len() < 20 {
            shown.push(n);
        } else {
            more += 1;
        }
    }
    let mut out = shown.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// A cycle for a message; a long one shows its ends.
pub(super) fn show_cycle(cycle: &[&str]) -> String {
    const ENDS: usize = 8;
    if cycle.len() <= 2 * ENDS + 1 {
        return cycle.join(" -> ");
    }
    format!(
        "{} -> … ({} more) … -> {}",
        cycle[..ENDS].join(" -> "),
        cycle.len() - 2 * ENDS,
        cycle[cycle.len() - ENDS..].join(" -> ")
    )
}

/// Commands as a graph: a composite command points at the commands it
/// includes (unknown children are left out; they are reported elsewhere).
/// Every question asked of it is answered in time linear in the graph, so
/// long chains and wide diamonds of composites cost no more than their
/// size, and nothing recurses.
pub(super) struct CommandGraph<'d> {
    /// lowercased id → index of the first command with that id
    pub(super) first: HashMap<String, usize>,
    /// lowercased ids, by index
    ids: Vec<String>,
    /// index → included commands (only for composite commands, the way
    /// the agent runs them: exec and apply take precedence)
    children: Vec<Vec<usize>>,
    _d: std::marker::PhantomData<&'d Devfile>,
}

impl<'d> CommandGraph<'d> {
    pub(super) fn new(d: &'d Devfile) -> Self {
        let ids: Vec<String> = d.commands.iter().map(|c| c.id.to_lowercase()).collect();
        let mut first = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            first.entry(id.clone()).or_insert(i);
        }
        let children = d
            .commands
            .iter()
            .map(|c| match (&c.exec, &c.apply, &c.composite) {
                (None, None, Some(comp)) => comp
                    .commands
                    .iter()
                    .filter_map(|child| first.get(&child.to_lowercase()).copied())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        CommandGraph {
            first,
            ids,
            children,
            _d: std::marker::PhantomData,
        }
    }

    /// Which commands lie on a cycle (Tarjan's strongly connected
    /// components, iteratively).
    pub(super) fn on_cycle(&self) -> Vec<bool> {
        let n = self.children.len();
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut result = vec![false; n];
        let mut next = 0usize;
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            // (node, next child position)
            let mut work = vec![(root, 0usize)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut ci)) = work.last_mut() {
                if let Some(&w) = self.children[v].get(*ci) {
                    *ci += 1;
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut members = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        members.push(w);
                        if w == v {
                            break;
                        }
                    }
                    let cyclic = members.len() > 1 || self.children[v].contains(&v);
                    for m in members {
                        result[m] = cyclic;
                    }
                }
            }
        }
        result
    }

    /// A path `start -> … -> start` (lowercased ids), found by a
    /// depth-first search that visits each command once.
    pub(super) fn cycle_through(&self, start: usize) -> Vec<&str> {
        let mut seen = vec![false; self.children.len()];
        let mut work = vec![(start, 0usize)];
        seen[start] = true;
        while let Some(&mut (v, ref mut ci)) = work.last_mut() {
            let Some(&w) = self.children[v].get(*ci) else {
                work.pop();
                continue;
            };
            *ci += 1;
            if w == start {
                let mut path: Vec<&str> = work.iter().map(|(n, _)| self.ids[*n].as_str()).collect();
                path.push(self.ids[start].as_str());
                return path;
            }
            if !seen[w] {
                seen[w] = true;
                work.push((w, 0));
            }
        }
        vec![self.ids[start].as_str()]
    }

    /// For each command: true when every leaf command reached from it is
    /// apply (`want_apply`) or exec (otherwise). A command that reaches a
    /// wrong leaf is found by walking back from the wrong leaves once.
    pub(super) fn leaves_are(&self, d: &Devfile, want_apply: bool) -> Vec<bool> {
        let n = self.children.len();
        let mut parents = vec![Vec::new(); n];
        for (v, cs) in self.children.iter().enumerate() {
            for &w in cs {
                parents[w].push(v);
            }
        }
        let mut ok = vec![true; n];
        let mut todo = Vec::new();
        for (i, c) in d.commands.iter().enumerate() {
            let wrong = match (&c.exec, &c.apply, &c.composite) {
                (Some(_), _, _) => want_apply,
                (_, Some(_), _) => !want_apply,
                (_, _, Some(_)) => false,
                _ => true,
            };
            if wrong {
                ok[i] = false;
                todo.push(i);
            }
        }
        while let Some(w) = todo.pop() {
            for &v in &parents[w] {
                if ok[v] {
                    ok[v] = false;
                    todo.push(v);
                }
            }
        }
        ok
    }
}
