//! Peak memory of loading and planning each hostile devfile shape, measured
//! as the peak resident set of a child process that does only that: at
//! most 64 MiB.

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
        (
            "attributes alias tree 9x9",
            devfile_with_attributes(&alias_tree(9, 9)),
        ),
        (
            "attributes alias tree 4x10 (in budget)",
            devfile_with_attributes(&alias_tree(4, 10)),
        ),
        (
            "attributes alias tree 2x220 (in budget)",
            devfile_with_attributes(&alias_tree(2, 220)),
        ),
        (
            "attributes wide map 24k",
            devfile_with_attributes(&wide_map(24_000)),
        ),
        (
            "attributes 64 deep",
            devfile_with_attributes(&deep_block(62)),
        ),
        ("composite chain 6k", composite_chain(6_000)),
        (
            "composite chain 20k (over the size cap)",
            composite_chain(20_000),
        ),
        ("composite diamonds 2500", composite_diamonds(2_500)),
        ("composite ring 5k", composite_ring(5_000)),
        ("events on a chain", events_on_chain(3_000, 3_000)),
        ("broken exec commands 5k", broken_commands(5_000)),
        ("unknown keys 20k", unknown_keys(20_000)),
        ("variable fan-out", variable_fanout(100 * 1024, 1000)),
        ("variable fan-out in budget", variable_fanout(1000, 1000)),
        ("unknown variables 50k", unknown_variables(50_000)),
        ("containers 7k", many_containers(7_000)),
        ("containers 15k (over the budget)", many_containers(15_000)),
    ];
    peak_rss_main(
        shapes
            .into_iter()
            .map(|(s, t)| (s.to_string(), t))
            .collect(),
        |text| match devfiles::load_str(
            "devfile.yaml",
            text,
            &devfiles::NoParents,
            &devfiles::LoadOptions::default(),
        ) {
            Ok(l) => {
                let (plan, _) = l.plan(&Default::default());
                format!("accepted: {} containers", plan.containers.len())
            }
            Err(r) => format!("{} errors: {}", r.errors.len(), r.errors[0]),
        },
    );
}
