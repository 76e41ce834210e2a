//! Property: mutating real corpus files (deleting, duplicating and swapping
//! lines, inserting random characters) never makes parsing, validation,
//! planning or interpolation panic, and every diagnostic has a real
//! position.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use workflows::{interpolate, validate_file, Context, RunPlan, Step};

fn corpus() -> &'static [(String, String)] {
    static CORPUS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CORPUS.get_or_init(common::corpus_files)
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Insert text at (line, char offset).
    Insert(usize, usize, String),
    /// Drop the text after (line, char offset): a truncated file.
    Truncate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![
        "[ -~]{1,6}",
        Just(":".to_string()),
        Just("- ".to_string()),
        Just("\t".to_string()),
        Just("---\n".to_string()),
        Just("${".to_string()),
        Just("${A.B}".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("é€".to_string()),
        Just("\n  ".to_string()),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<usize>(), snippet).prop_map(|(l, c, s)| Mutation::Insert(l, c, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(l, c)| Mutation::Truncate(l, c)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let n = lines.len();
    let char_split = |line: &str, c: usize| -> usize {
        let chars = line.chars().count();
        line.char_indices()
            .nth(c % (chars + 1))
            .map(|(b, _)| b)
            .unwrap_or(line.len())
    };
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Mutation::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        Mutation::Insert(l, c, s) => {
            let line = &mut lines[l % n];
            let at = char_split(line, *c);
            line.insert_str(at, s);
        }
        Mutation::Truncate(l, c) => {
            let keep = l % n;
            let at = char_split(&lines[keep], *c);
            lines[keep].truncate(at);
            lines.truncate(keep + 1);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_files_never_panic(
        file in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let (rel, original) = &corpus()[file.index(corpus().len())];
        let text = mutations.iter().fold(original.clone(), |t, m| apply(&t, m));
        let line_count = text.lines().count().max(1) + 1;
        match validate_file(rel, &text) {
            Ok((w, warnings)) => {
                for d in &warnings {
                    prop_assert!(!d.is_error());
                    prop_assert!(d.line >= 1 && d.line <= line_count && d.column >= 1, "{d}");
                }
                // validation rejects cycles, so a valid workflow always plans
                let plan = RunPlan::new(&w);
                prop_assert!(plan.is_ok(), "{rel}: {plan:?}\n{text}");
                for a in &w.actions {
                    for s in &a.configuration.steps {
                        if let Step::Run { command } = s {
                            let _ = interpolate(command, &Context::default());
                        }
                    }
                }
                let _ = serde_json::to_string(&w);
            }
            Err(diags) => {
                prop_assert!(diags.iter().any(|d| d.is_error()), "{rel}: Err without an error");
                for d in &diags {
                    prop_assert!(d.line >= 1 && d.line <= line_count && d.column >= 1, "{rel}: {d}\n{text}");
                    // every error says what to change
                    prop_assert!(!d.is_error() || d.help.is_some(), "{rel}: no help: {d}");
                }
            }
        }
    }
}
