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
    ];
    peak_rss_main(
        shapes
            .into_iter()
            .map(|(s, t)| (s.to_string(), t))
            .collect(),
        |text| match workflows::validate_file("wf.yaml", text) {
            Ok((w, _)) => {
                let plan = workflows::RunPlan::new(&w).expect("no cycle");
                format!("accepted: {} actions", plan.order().len())
            }
            Err(d) => format!("{} errors: {}", d.len(), d[0]),
        },
    );
}
