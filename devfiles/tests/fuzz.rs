//! Property test: parsing and validating mutated real devfiles never panics,
//! and every rejection carries a position inside the text.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use devfiles::{LoadOptions, NoParents};
use proptest::prelude::*;

fn corpus_texts() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/devfiles");
    let mut out = Vec::new();
    for sub in ["valid", "invalid"] {
        for e in std::fs::read_dir(root.join(sub)).expect("corpus present") {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out.push(
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app-with-dynamodb.yaml"),
        )
        .unwrap(),
    );
    out
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Insert(usize, String),
    Indent(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(":".to_string()),
                Just("- ".to_string()),
                Just("{{x}}".to_string()),
                Just("&a *a".to_string()),
                Just("\t".to_string()),
                ".{0,6}"
            ]
        )
            .prop_map(|(a, s)| Mutation::Insert(a, s)),
        any::<usize>().prop_map(Mutation::Indent),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::Insert(i, s) => {
                let l = &mut lines[i % n];
                let at = l
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(i % (l.chars().count() + 1))
                    .unwrap_or(l.len());
                l.insert_str(at, s);
            }
            Mutation::Indent(i) => lines[i % n].insert_str(0, "  "),
            Mutation::Truncate(i) => lines.truncate(i % n),
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_devfiles_never_panic(idx in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..4)) {
        let texts = corpus_texts();
        let text = apply(&texts[idx % texts.len()], &muts);
        // YAML breaks lines at \n, \r\n and a lone \r
        let line_count = text.replace("\r\n", "\n").split(['\n', '\r']).count().max(1);
        match devfiles::load_str("mutated.yaml", &text, &NoParents, &LoadOptions::default()) {
            Ok(loaded) => {
                let _ = loaded.plan(&Default::default());
            }
            Err(r) => {
                prop_assert!(!r.errors.is_empty());
                for e in &r.errors {
                    prop_assert!(e.line >= 1 && e.line <= line_count + 1, "{e} (text has {line_count} lines)");
                    prop_assert!(e.column >= 1, "{e}");
                }
            }
        }
    }
}
