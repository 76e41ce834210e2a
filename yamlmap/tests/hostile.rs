//! Hostile shapes: every input up to the 1 MiB cap is parsed or refused
//! within the bounds of issue 13 (time, 64 MiB of heap, a 512 KiB stack),
//! and a refusal is one positioned error.

mod support;

use proptest::prelude::*;
use support::*;
use yamlmap::{parse, ParseError, Pos, MAX_DEPTH, MAX_NODES};

/// Parse `text` on a small stack, assert the bounds, return the result.
fn run(shape: &str, text: String) -> Result<Option<yamlmap::Node>, ParseError> {
    let len = text.len();
    let (out, cost) = measure(move || parse(&text).map(|n| n.map(|_| ())));
    report(shape, len, &cost);
    assert_bounded(shape, len, &cost);
    if let Err(e) = &out {
        assert!(
            e.message.len() < 1024,
            "{shape}: long message {}",
            e.message.len()
        );
    }
    out.map(|_| None)
}

fn limit_error(shape: &str, text: String) -> ParseError {
    let e = run(shape, text).expect_err(shape);
    assert!(!e.syntax, "{shape}: expected a limit error, got {e}");
    e
}

#[test]
fn billion_laughs_is_refused_at_the_alias_that_exceeds_the_budget() {
    // 9 levels of 9 aliases: 9^9 ≈ 387 million nodes if expanded
    let text = alias_tree(9, 9);
    assert!(text.len() < 600);
    let e = limit_error("alias tree 9x9", text.clone());
    assert!(e.message.contains("alias `*a"), "{e}");
    assert!(e.message.contains(&MAX_NODES.to_string()), "{e}");
    // the position is an alias on one of the later lines
    assert!(e.pos.line > 3 && e.pos.column > 1, "{e}");
    assert!(text.lines().nth(e.pos.line - 1).unwrap()[e.pos.column - 1..].starts_with('*'));
}

#[test]
fn an_alias_tree_within_the_budget_is_read_in_full() {
    // 4 levels of 10: about 12 300 nodes once expanded
    let text = alias_tree(4, 10);
    let (node, cost) = measure(move || parse(&text).expect("within budget").unwrap());
    assert_bounded("alias tree 4x10", 0, &cost);
    let last = node.get("l3").unwrap();
    assert_eq!(last.items().len(), 10);
    assert_eq!(last.items()[9].items()[9].items().len(), 10);
}

#[test]
fn nesting_deeper_than_the_cap_is_refused_with_its_position() {
    for (shape, ok, bad) in [
        ("flow seqs", deep_flow(MAX_DEPTH), deep_flow(MAX_DEPTH + 1)),
        (
            "flow maps",
            deep_flow_map(MAX_DEPTH),
            deep_flow_map(MAX_DEPTH + 1),
        ),
        (
            "block maps",
            deep_block(MAX_DEPTH),
            deep_block(MAX_DEPTH + 1),
        ),
        ("dashes", deep_dashes(MAX_DEPTH), deep_dashes(MAX_DEPTH + 1)),
    ] {
        run(shape, ok).unwrap_or_else(|e| panic!("{shape} at the cap: {e}"));
        let e = limit_error(shape, bad);
        assert!(e.message.contains("nested more than 64 levels"), "{e}");
        assert!(e.pos != Pos::START || shape == "dashes", "{shape}: {e}");
    }
    // and as deep as the size cap allows
    limit_error("flow seqs 500k", deep_flow(CAP / 2 - 1));
    limit_error("flow maps 200k", deep_flow_map(CAP / 5 - 1));
    limit_error("dashes 500k", deep_dashes(CAP / 2 - 2));
}

#[test]
fn wide_and_long_documents_stay_linear() {
    // many distinct keys: no quadratic duplicate check
    let n = MAX_NODES / 2 - 1;
    let text = wide_map(n);
    let (node, cost) = measure(move || parse(&text).unwrap().unwrap().entries().len());
    assert_bounded("wide map at the node budget", 0, &cost);
    assert_eq!(node, n);
    // the same key many times: one error, at the second occurrence
    let e = run("duplicate keys", duplicate_keys(CAP / 5)).unwrap_err();
    assert_eq!(e.pos, Pos::new(2, 1));
    // beyond the node budget
    limit_error("flow seq 500k", long_flow_seq(CAP / 2 - 1));
    limit_error("wide map 100k", wide_map(100_000));
}

#[test]
fn inputs_over_the_size_cap_are_refused_before_parsing() {
    let e = limit_error("over the cap", "a".repeat(CAP + 1));
    assert_eq!(e.pos, Pos::START);
    assert!(e.message.contains("1048576 bytes"), "{e}");
    run("at the cap", format!("a: {}", "b".repeat(CAP - 3))).unwrap();
}

/// One hostile fragment, chosen and sized by proptest.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..12, 1usize..12).prop_map(|(l, f)| alias_tree(l, f)),
        (1usize..400).prop_map(|d| format!("k: {}\n", deep_flow(d))),
        (1usize..400).prop_map(|d| format!("k: {}\n", deep_flow_map(d))),
        (1usize..150).prop_map(deep_block),
        (1usize..400).prop_map(|d| format!("k:\n{}", indent(&deep_dashes(d), 2))),
        (1usize..80_000).prop_map(wide_map),
        (1usize..50_000).prop_map(duplicate_keys),
        (1usize..300_000).prop_map(|n| format!("k: {}\n", long_flow_seq(n))),
        // unterminated and mixed brackets
        (1usize..100_000).prop_map(|n| format!("k: {}\n", "[{".repeat(n))),
        (1usize..100_000).prop_map(|n| format!("k: &a {}\n", "*a ".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn generated_hostile_documents_are_bounded(parts in prop::collection::vec(fragment(), 1..4)) {
        // fragments as sibling keys of one document, each under its own key
        let mut text = String::new();
        for (i, p) in parts.iter().enumerate() {
            text.push_str(&format!("f{i}:\n{}", indent(p, 2)));
        }
        text.truncate(CAP);
        let _ = run("generated", text);
    }
}
