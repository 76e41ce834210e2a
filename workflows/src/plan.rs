//! Scheduling a workflow's actions (design notes §6 rule 4).
//!
//! An action runs only when every action it depends on has **succeeded**;
//! when an action fails, every action that depends on it (directly or
//! transitively) ends as skipped and never runs. Actions without a path
//! between them may run in parallel.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::Workflow;

/// A dependency cycle, as action ids: `[a, b, a]` means a depends on b
/// which depends on a.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle: {}", path.join(" -> "))]
pub struct CycleError {
    pub path: Vec<String>,
}

/// Cycles found by one depth-first search over `deps` (node → the nodes it
/// depends on), one per back edge, each as `[a, …, a]`: the first `max` of
/// them, and how many more back edges there were. Linear in the graph plus
/// the length of the paths returned.
pub(crate) fn cycles(deps: &[Vec<usize>], max: usize) -> (Vec<Vec<usize>>, usize) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    // where each open node is on the stack
    let mut depth_of = vec![0usize; deps.len()];
    let mut found = Vec::new();
    let mut more = 0;
    for root in 0..deps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, next edge index)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::Open;
                        depth_of[dep] = stack.len();
                        stack.push((dep, 0));
                    }
                    Mark::Open if found.len() < max => {
                        let mut path: Vec<usize> =
                            stack[depth_of[dep]..].iter().map(|(n, _)| *n).collect();
                        path.push(dep);
                        found.push(path);
                    }
                    Mark::Open => more += 1,
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    (found, more)
}

/// The dependency graph of one workflow, ready to schedule.
#[derive(Clone, Debug, Serialize)]
pub struct RunPlan {
    ids: Vec<String>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    order: Vec<usize>,
    #[serde(skip)]
    by_id: BTreeMap<String, usize>,
}

impl RunPlan {
    pub fn new(workflow: &Workflow) -> Result<RunPlan, CycleError> {
        let ids: Vec<String> = workflow.actions.iter().map(|a| a.id.clone()).collect();
        let index: BTreeMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = workflow
            .actions
            .iter()
            .map(|a| {
                a.depends_on
                    .iter()
                    .filter_map(|d| index.get(d.action.as_str()).copied())
                    .collect()
            })
            .collect();
        if let Some(c) = cycles(&deps, 1).0.into_iter().next() {
            return Err(CycleError {
                path: c.into_iter().map(|i| ids[i].clone()).collect(),
            });
        }
        let mut dependents = vec![Vec::new(); ids.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        // Kahn's algorithm, taking the earliest-declared ready action first
        // so the order is stable.
        let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> = (0..ids.len()).filter(|&i| remaining[i] == 0).collect();
        let mut order = Vec::with_capacity(ids.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &j in &dependents[i] {
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        let by_id = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Ok(RunPlan {
            ids,
            deps,
            dependents,
            order,
            by_id,
        })
    }

    /// All action ids in a topological order (dependencies first; ties in
    /// file order).
    pub fn order(&self) -> Vec<&str> {
        self.order.iter().map(|&i| self.ids[i].as_str()).collect()
    }

    /// Direct dependencies of `id`.
    pub fn dependencies(&self, id: &str) -> Vec<&str> {
        self.index(id)
            .map(|i| self.deps[i].iter().map(|&d| self.ids[d].as_str()).collect())
            .unwrap_or_default()
    }

    /// Actions not yet in `succeeded` whose dependencies all are, in
    /// topological order. The caller leaves out what it already started.
    pub fn ready(&self, succeeded: &BTreeSet<String>) -> Vec<&str> {
        self.order
            .iter()
            .filter(|&&i| !succeeded.contains(&self.ids[i]))
            .filter(|&&i| {
                self.deps[i]
                    .iter()
                    .all(|&d| succeeded.contains(&self.ids[d]))
            })
            .map(|&i| self.ids[i].as_str())
            .collect()
    }

    /// Every action that (transitively) depends on `failed`: these end as
    /// skipped. In topological order.
    pub fn skipped_after_failure(&self, failed: &str) -> Vec<&str> {
        let Some(start) = self.index(failed) else {
            return Vec::new();
        };
        let mut hit = vec![false; self.ids.len()];
        let mut todo = vec![start];
        while let Some(i) = todo.pop() {
            for &j in &self.dependents[i] {
                if !hit[j] {
                    hit[j] = true;
                    todo.push(j);
                }
            }
        }
        self.order
            .iter()
            .filter(|&&i| hit[i])
            .map(|&i| self.ids[i].as_str())
            .collect()
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }
}

/// State of one action during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// A dependency failed (or was skipped); the action never ran.
    Skipped,
}

/// Bookkeeping for one run over a [`RunPlan`].
#[derive(Clone, Debug)]
pub struct RunProgress<'p> {
    plan: &'p RunPlan,
    states: Vec<ActionState>,
}

impl<'p> RunProgress<'p> {
    pub fn new(plan: &'p RunPlan) -> Self {
        RunProgress {
            plan,
            states: vec![ActionState::Pending; plan.ids.len()],
        }
    }

    /// Mark every pending action whose dependencies all succeeded as
    /// running and return their ids.
    pub fn start_ready(&mut self) -> Vec<&'p str> {
        let plan = self.plan;
        let mut started = Vec::new();
        for &i in &plan.order {
            if self.states[i] == ActionState::Pending
                && plan.deps[i]
                    .iter()
                    .all(|&d| self.states[d] == ActionState::Succeeded)
            {
                self.states[i] = ActionState::Running;
                started.push(plan.ids[i].as_str());
            }
        }
        started
    }

    /// Record the end of a running action. A failure skips every pending
    /// dependent. Unknown ids are ignored.
    pub fn finish(&mut self, id: &str, succeeded: bool) {
        let Some(i) = self.plan.index(id) else { return };
        if succeeded {
            self.states[i] = ActionState::Succeeded;
            return;
        }
        self.states[i] = ActionState::Failed;
        for dep in self.plan.skipped_after_failure(id) {
            if let Some(j) = self.plan.index(dep) {
                if self.states[j] == ActionState::Pending {
                    self.states[j] = ActionState::Skipped;
                }
            }
        }
    }

    pub fn state(&self, id: &str) -> Option<ActionState> {
        self.plan.index(id).map(|i| self.states[i])
    }

    /// True when nothing is pending or running.
    pub fn is_done(&self) -> bool {
        self.states
            .iter()
            .all(|s| !matches!(s, ActionState::Pending | ActionState::Running))
    }

    pub fn states(&self) -> BTreeMap<&'p str, ActionState> {
        self.plan
            .ids
            .iter()
            .map(String::as_str)
            .zip(self.states.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_reported_as_paths() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3
        let deps = vec![vec![1], vec![2], vec![0], vec![3]];
        let c = cycles(&deps, 10);
        assert_eq!(c, (vec![vec![0, 1, 2, 0], vec![3, 3]], 0));
        assert_eq!(cycles(&deps, 1), (vec![vec![0, 1, 2, 0]], 1));
        assert!(cycles(&[vec![1, 2], vec![2], vec![]], 10).0.is_empty());
    }

    fn diamond() -> Workflow {
        let text = "Name: d\nSchemaVersion: '1.0'\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: a}]}}\n  B: {Identifier: aws/build@v1, DependsOn: [A], Configuration: {Steps: [{Run: b}]}}\n  C: {Identifier: aws/build@v1, DependsOn: [A], Configuration: {Steps: [{Run: c}]}}\n  D: {Identifier: aws/build@v1, DependsOn: [B, C], Configuration: {Steps: [{Run: d}]}}\n  E: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: e}]}}\n";
        crate::validate_file("d.yaml", text).expect("valid").0
    }

    #[test]
    fn ready_needs_every_dependency_to_succeed() {
        let w = diamond();
        let plan = RunPlan::new(&w).expect("acyclic");
        assert_eq!(plan.order(), vec!["A", "B", "C", "D", "E"]);
        let mut ok = BTreeSet::new();
        assert_eq!(plan.ready(&ok), vec!["A", "E"]);
        ok.insert("A".to_string());
        assert_eq!(plan.ready(&ok), vec!["B", "C", "E"]);
        ok.insert("B".to_string());
        assert!(!plan.ready(&ok).contains(&"D"));
        ok.insert("C".to_string());
        assert!(plan.ready(&ok).contains(&"D"));
        assert_eq!(plan.skipped_after_failure("A"), vec!["B", "C", "D"]);
        assert_eq!(plan.dependencies("D"), vec!["B", "C"]);
    }

    #[test]
    fn a_failure_skips_dependents_and_nothing_else() {
        let w = diamond();
        let plan = RunPlan::new(&w).expect("acyclic");
        let mut run = RunProgress::new(&plan);
        assert_eq!(run.start_ready(), vec!["A", "E"]);
        assert!(run.start_ready().is_empty(), "nothing new while A runs");
        run.finish("A", true);
        assert_eq!(run.start_ready(), vec!["B", "C"]);
        run.finish("B", false);
        assert_eq!(run.state("D"), Some(ActionState::Skipped));
        run.finish("C", true);
        run.finish("E", true);
        assert!(run.start_ready().is_empty());
        assert!(run.is_done());
        assert_eq!(run.state("C"), Some(ActionState::Succeeded));
        assert_eq!(run.state("B"), Some(ActionState::Failed));
    }
}
