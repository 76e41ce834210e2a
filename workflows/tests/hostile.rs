//! Hostile workflows and buildspecs: anchors and aliases, deep nesting,
//! long, dense and cyclic `DependsOn` graphs, group cross products, many
//! `${…}` references and many errors are accepted or refused within the
//! bounds of issue 13 (time, a 512 KiB stack; memory in `peak_rss.rs`),
//! and a refusal is a short, capped list of positioned errors.

#[path = "../../yamlmap/tests/support/mod.rs"]
mod support;
#[allow(dead_code)]
mod shapes {
    include!("shapes/mod.rs");
}

use proptest::prelude::*;
use shapes::*;
use support::*;
use workflows::{validate_file, Diagnostic, RunPlan, RunProgress};
use yamlmap::MAX_DIAGNOSTICS;

/// Validate (and plan, and run to the end) `text` on a small stack; assert
/// the bounds and the size of what comes back.
fn run(shape: &str, text: String) -> Result<usize, Vec<Diagnostic>> {
    let len = text.len();
    let (out, cost) = measure(move || {
        validate_file("wf.yaml", &text).map(|(w, warnings)| {
            let plan = RunPlan::new(&w).expect("validated workflows have no cycle");
            let mut progress = RunProgress::new(&plan);
            loop {
                let started = progress.start_ready();
                if started.is_empty() {
                    break;
                }
                let ids: Vec<String> = started.iter().map(|s| s.to_string()).collect();
                for id in ids {
                    progress.finish(&id, true);
                }
            }
            assert!(progress.is_done());
            assert!(warnings.len() <= MAX_DIAGNOSTICS + 1);
            w.actions.len()
        })
    });
    report(shape, len, &cost);
    assert_bounded(shape, len, &cost);
    if let Err(diags) = &out {
        assert!(
            diags.len() <= MAX_DIAGNOSTICS + 1,
            "{shape}: {} diagnostics",
            diags.len()
        );
        assert!(diags.iter().any(Diagnostic::is_error));
        for d in diags {
            let size = d.message.len() + d.help.as_deref().map_or(0, str::len);
            assert!(size < 4096, "{shape}: a diagnostic of {size} bytes");
            assert!(d.line >= 1 && d.column >= 1, "{shape}: {d}");
        }
    }
    out
}

#[test]
fn the_issue_13_alias_file_is_refused_at_once() {
    let text = laughs();
    assert!(text.len() <= 600, "{}", text.len());
    let e = run("laughs", text).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("alias `*a"), "{}", e[0]);
    assert!(e[0].to_string().starts_with("wf.yaml:"), "{}", e[0]);
}

#[test]
fn long_and_dense_dependency_graphs_are_linear() {
    assert_eq!(run("chain 2500", chain(2_500)).unwrap(), 2_500);
    // every action depends on every earlier one
    assert_eq!(run("dense 250", dense(250)).unwrap(), 250);
}

#[test]
fn cycles_are_reported_briefly() {
    let e = run("ring 2500", ring(2_500)).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("more) …"), "{}", e[0]);
    let e = run("many cycles 2000", many_cycles(2_000)).unwrap_err();
    assert!(
        e.iter()
            .any(|d| d.message.starts_with("and ") && d.message.contains("more dependency cycles")),
        "{e:?}"
    );
}

#[test]
fn group_cross_products_hit_the_edge_budget() {
    // 10 groups of 300: 9 × 90 000 edges
    let e = run("group product 10x300", group_product(10, 300)).unwrap_err();
    assert!(
        e.iter()
            .any(|d| d.message.contains("more than 50000 dependencies")),
        "{e:?}"
    );
    run("group product 3x100", group_product(3, 100)).unwrap();
}

#[test]
fn many_references_cost_no_rescans() {
    run(
        "50k references to one output",
        many_references(50_000, true),
    )
    .unwrap();
    let e = run(
        "50k references to a missing action",
        many_references(50_000, false),
    )
    .unwrap_err();
    assert_eq!(e.len(), MAX_DIAGNOSTICS + 1);
    assert!(
        e.last().unwrap().message.starts_with("and "),
        "{}",
        e.last().unwrap()
    );
    // each reported reference points at its own column
    let e = run(
        "40k distinct missing actions",
        distinct_bad_references(40_000),
    )
    .unwrap_err();
    assert!(e[1].column > e[0].column, "{} / {}", e[0], e[1]);
    let e = run("10 distinct missing actions", distinct_bad_references(10)).unwrap_err();
    assert!(e[9].column > e[8].column, "{} / {}", e[8], e[9]);
}

#[test]
fn many_errors_are_capped_with_a_count() {
    let e = run("2k unknown dependencies", unknown_dependencies(2_000)).unwrap_err();
    assert_eq!(e.len(), MAX_DIAGNOSTICS + 1);
    assert!(
        e.last().unwrap().message.starts_with("and 1900 more"),
        "{}",
        e.last().unwrap()
    );
    let e = run("batch graph 8k", batch_graph(8_000)).unwrap_err();
    assert_eq!(e.len(), MAX_DIAGNOSTICS + 1, "{e:?}");
    run("buildspec with 20k commands", long_buildspec(20_000)).unwrap();
}

#[test]
fn deep_configuration_is_refused_past_the_depth_cap() {
    let e = run("deep configuration", with_body(&deep_block(100))).unwrap_err();
    assert!(
        e[0].message.contains("nested more than 64 levels"),
        "{}",
        e[0]
    );
}

fn hostile_workflow() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..10, 1usize..12).prop_map(|(l, f)| with_body(&alias_tree(l, f))),
        (1usize..150).prop_map(|d| with_body(&deep_block(d))),
        (1usize..300).prop_map(|d| with_body(&format!("k: {}", deep_flow(d)))),
        (1usize..4_000).prop_map(chain),
        (1usize..4_000).prop_map(ring),
        (1usize..3_000).prop_map(many_cycles),
        (1usize..300).prop_map(dense),
        (1usize..20, 1usize..400).prop_map(|(g, p)| group_product(g, p)),
        (1usize..60_000, any::<bool>()).prop_map(|(n, k)| many_references(n, k)),
        (1usize..40_000).prop_map(distinct_bad_references),
        (1usize..4_000).prop_map(unknown_dependencies),
        (1usize..10_000).prop_map(batch_graph),
        (1usize..30_000).prop_map(long_buildspec),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_hostile_workflows_are_bounded(mut text in hostile_workflow()) {
        text.truncate(CAP);
        let _ = run("generated", text);
    }
}
