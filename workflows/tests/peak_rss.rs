//! Peak memory of validating and planning each hostile workflow shape,
//! measured as the peak resident set of a child process that does only
//! that: at most 64 MiB.

#[path = "../../yamlmap/tests/support/mod.rs"]
mod support;
#[allow(dead_code)]
mod shapes {
    include!("shapes/mod.rs");
}

use shapes::*;
use support::*;

fn main() {
    let shapes = vec![
        ("the issue 13 alias file", laughs()),
        (
            "alias tree 4x10 in a configuration",
            with_body(&alias_tree(4, 10)),
        ),
        (
            "alias tree 2x220 in a configuration",
            with_body(&alias_tree(2, 220)),
        ),
        ("chain 2400", chain(2_400)),
        ("ring 2400", ring(2_400)),
        ("many cycles 2000", many_cycles(2_000)),
        ("dense 250", dense(250)),
        ("group product 10x300", group_product(10, 300)),
        ("group product 2x2000", group_product(2, 2_000)),
        (
            "50k references to one output",
            many_references(50_000, true),
        ),
        (
            "50k references to a missing action",
            many_references(50_000, false),
        ),
        (
            "40k distinct missing actions",
            distinct_bad_references(40_000),
        ),
        ("2k unknown dependencies", unknown_dependencies(2_000)),
        ("batch graph 8k", batch_graph(8_000)),
        ("buildspec with 20k commands", long_buildspec(20_000)),
        ("buildspec over the size cap", long_buildspec(70_000)),
        // 100 builds over 16 referenced buildspecs of ~1 MiB each (read from memory): the
        // 8 MiB text bound stops the expansion
        (
            "batch of 100 builds of 1 MiB buildspecs",
            batch_of_big_builds(100),
        ),
        (
            "batch of 8 builds of 1 MiB buildspecs",
            batch_of_big_builds(8),
        ),
    ];
    peak_rss_main(
        shapes
            .into_iter()
            .map(|(s, t)| (s.to_string(), t))
            .collect(),
        |text| match validate(text) {
            Ok((w, _)) => {
                let plan = workflows::RunPlan::new(&w).expect("no cycle");
                format!("accepted: {} actions", plan.order().len())
            }
            Err(d) => format!("{} errors: {}", d.len(), d[0]),
        },
    );
}

/// A batch-only buildspec of `n` builds, each naming one of 16 files.
fn batch_of_big_builds(n: usize) -> String {
    let mut s = String::from("# batch\nversion: 0.2\nbatch:\n  build-list:\n");
    for i in 0..n {
        s.push_str(&format!("    - buildspec: f{}.yml\n", i % 16));
    }
    s
}

/// Every file a batch names: ~1 MiB of commands (10 000 of 100 bytes).
struct BigFiles;

impl workflows::BuildspecReader for BigFiles {
    fn read(&mut self, _path: &str) -> Result<String, workflows::ReadError> {
        let mut s = String::from("version: 0.2\nphases:\n  build:\n    commands:\n");
        for i in 0..10_000 {
            s.push_str(&format!("      - echo {i:0>90}\n"));
        }
        Ok(s)
    }
}

fn validate(text: &str) -> Result<workflows::Validated, Vec<workflows::Diagnostic>> {
    if text.starts_with("# batch") {
        workflows::validate_for_cove_with("wf.yaml", text, &mut BigFiles)
    } else {
        workflows::validate_file("wf.yaml", text)
    }
}
