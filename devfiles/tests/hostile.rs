//! Hostile devfiles: anchors and aliases, deep nesting, wide lists, long and
//! cyclic composite commands, many `{{variable}}` references, parent
//! chains and many errors are accepted or refused within the bounds of
//! issue 13 (time, a 512 KiB stack; memory in `peak_rss.rs`), and a
//! refusal is a short, capped list of positioned errors.

#![allow(clippy::unwrap_used)]

#[path = "../../yamlmap/tests/support/mod.rs"]
mod support;
#[allow(dead_code)]
mod shapes {
    include!("shapes/mod.rs");
}

use std::collections::BTreeMap;

use devfiles::{load_str, LoadOptions, Loaded, Rejected, Resolver};
use proptest::prelude::*;
use shapes::*;
use support::*;
use yamlmap::MAX_DIAGNOSTICS;

/// Parents from memory.
struct Parents(BTreeMap<String, String>);

impl Resolver for Parents {
    fn read(&self, _from: &str, uri: &str) -> Result<(String, String), String> {
        self.0
            .get(uri)
            .map(|t| (uri.to_string(), t.clone()))
            .ok_or_else(|| format!("no parent {uri}"))
    }
}

/// Load `text` (and plan it) on a small stack; assert the bounds and the
/// size of what comes back.
fn run_with(shape: &str, text: String, parents: BTreeMap<String, String>) -> Result<(), Rejected> {
    let len = text.len();
    let (out, cost) = measure(move || {
        load_str(
            "devfile.yaml",
            &text,
            &Parents(parents),
            &LoadOptions::default(),
        )
        .map(|l: Loaded| {
            let (plan, _) = l.plan(&Default::default());
            (l.warnings.len(), plan.containers.len())
        })
    });
    report(shape, len, &cost);
    assert_bounded(shape, len, &cost);
    match out {
        Ok((warnings, _)) => {
            assert!(
                warnings <= MAX_DIAGNOSTICS + 1,
                "{shape}: {warnings} warnings"
            );
            Ok(())
        }
        Err(rejected) => {
            assert_capped(shape, &rejected.errors);
            assert_capped(shape, &rejected.warnings);
            assert!(!rejected.errors.is_empty());
            Err(rejected)
        }
    }
}

fn run(shape: &str, text: String) -> Result<(), Rejected> {
    run_with(shape, text, BTreeMap::new())
}

fn assert_capped(shape: &str, diags: &[devfiles::Diagnostic]) {
    assert!(
        diags.len() <= MAX_DIAGNOSTICS + 1,
        "{shape}: {} diagnostics",
        diags.len()
    );
    for d in diags {
        assert!(
            d.message.len() + d.help.as_deref().map_or(0, str::len) < 4096,
            "{shape}: a diagnostic of {} bytes",
            d.message.len()
        );
        assert!(d.line >= 1 && d.column >= 1, "{shape}: {d}");
    }
}

fn first_error(shape: &str, text: String) -> devfiles::Diagnostic {
    run(shape, text).expect_err(shape).errors.remove(0)
}

#[test]
fn alias_bombs_are_refused_with_the_alias_position() {
    let e = first_error(
        "attributes alias tree 9x9",
        devfile_with_attributes(&alias_tree(9, 9)),
    );
    assert!(e.message.contains("alias `*a"), "{e}");
    assert!(e.line > 5, "{e}");
    // within the budget, the expanded attributes go through every stage
    run(
        "attributes alias tree 4x10",
        devfile_with_attributes(&alias_tree(4, 10)),
    )
    .unwrap();
}

#[test]
fn deep_attributes_are_refused_past_the_depth_cap() {
    run(
        "attributes 60 deep",
        devfile_with_attributes(&deep_block(60)),
    )
    .unwrap();
    let e = first_error(
        "attributes 200 deep",
        devfile_with_attributes(&deep_block(200)),
    );
    assert!(e.message.contains("nested more than 64 levels"), "{e}");
}

#[test]
fn long_and_wide_command_graphs_are_linear() {
    // a chain of composites
    run("composite chain 5k", composite_chain(5_000)).unwrap();
    // a ladder of diamonds: 2^40 paths through it, no cycle
    run("composite diamonds 40", composite_diamonds(40)).unwrap();
    run("composite diamonds 2000", composite_diamonds(2_000)).unwrap();
    // one ring of composites: every member is on the cycle
    let r = run("composite ring 5k", composite_ring(5_000)).unwrap_err();
    assert!(
        r.errors[0].message.contains("includes itself: "),
        "{}",
        r.errors[0]
    );
    assert!(
        r.errors
            .last()
            .unwrap()
            .message
            .starts_with("and 4900 more"),
        "{}",
        r.errors.last().unwrap()
    );
    // postStart events bound to a long chain
    run("events on a chain", events_on_chain(3_000, 3_000)).unwrap();
}

#[test]
fn many_errors_are_capped_with_a_count() {
    let r = run("4k broken exec commands", broken_commands(4_000)).unwrap_err();
    assert_eq!(r.errors.len(), MAX_DIAGNOSTICS + 1);
    assert!(
        r.errors
            .last()
            .unwrap()
            .message
            .starts_with("and 3900 more"),
        "{}",
        r.errors.last().unwrap()
    );
    let r = run("20k unknown keys", unknown_keys(20_000)).unwrap_err();
    assert_eq!(r.errors.len(), MAX_DIAGNOSTICS + 1);
}

#[test]
fn variable_substitution_has_a_budget() {
    // 1000 references to a 100 KiB value would be 100 MB
    let e = first_error("variable fan-out", variable_fanout(100 * 1024, 1000));
    assert!(e.message.contains("{{variables}}"), "{e}");
    assert!(e.line > 1, "{e}");
    // many unknown variables: warnings, capped
    run("unknown variables 50k", unknown_variables(50_000)).unwrap();
}

#[test]
fn parent_chains_share_one_budget() {
    // eight parents, each well within the node budget alone
    let mut parents = BTreeMap::new();
    for i in 1..=8 {
        parents.insert(
            format!("p{i}.yaml"),
            parent_doc(i < 8, i + 1, &alias_tree(5, 9)),
        );
    }
    let child = parent_doc(true, 1, "");
    let e = run_with("parent chain of alias trees", child, parents)
        .expect_err("over the shared budget")
        .errors
        .remove(0);
    assert!(e.file.starts_with('p'), "{e}");
    assert!(e.message.contains("nodes"), "{e}");
}

#[test]
fn merging_with_a_parent_is_linear() {
    for redefine in [false, true] {
        let (child, parent) = parent_and_overrides(1_500, redefine);
        let parents = BTreeMap::from([("p.yaml".to_string(), parent)]);
        let out = run_with("parent with 1500 overrides", child, parents);
        if redefine {
            let r = out.unwrap_err();
            assert!(
                r.errors[0].message.contains("already defined"),
                "{}",
                r.errors[0]
            );
            assert!(r
                .errors
                .last()
                .unwrap()
                .message
                .starts_with("and 1400 more"));
        } else {
            out.unwrap();
        }
    }
}

fn hostile_devfile() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..10, 1usize..12).prop_map(|(l, f)| devfile_with_attributes(&alias_tree(l, f))),
        (1usize..200).prop_map(|d| devfile_with_attributes(&deep_block(d))),
        (1usize..300).prop_map(|d| devfile_with_attributes(&format!("k: {}", deep_flow(d)))),
        (1usize..8_000).prop_map(composite_chain),
        (1usize..2_000).prop_map(composite_diamonds),
        (1usize..5_000).prop_map(composite_ring),
        (1usize..2_000, 1usize..2_000).prop_map(|(c, e)| events_on_chain(c, e)),
        (1usize..10_000).prop_map(broken_commands),
        (1usize..20_000).prop_map(unknown_keys),
        (1usize..200_000, 1usize..2_000).prop_map(|(v, n)| variable_fanout(v, n)),
        (1usize..40_000).prop_map(unknown_variables),
        (1usize..10_000).prop_map(many_containers),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_hostile_devfiles_are_bounded(mut text in hostile_devfile()) {
        text.truncate(CAP);
        let _ = run("generated", text);
    }
}
