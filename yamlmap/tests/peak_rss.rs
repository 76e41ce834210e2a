//! Peak memory of parsing each hostile shape, measured as the peak resident
//! set of a child process that does only that parse: at most 64 MiB.

mod support;

use support::*;
use yamlmap::MAX_NODES;

fn main() {
    let shapes = vec![
        ("alias tree 9x9 (billion laughs)", alias_tree(9, 9)),
        ("alias tree 5x10 (in budget)", alias_tree(5, 10)),
        ("alias tree 2x250 (in budget)", alias_tree(2, 250)),
        (
            "wide map just under the node budget",
            wide_map(MAX_NODES / 2 - 10),
        ),
        (
            "flow seq just under the node budget",
            format!("k: {}\n", long_flow_seq(MAX_NODES - 10)),
        ),
        (
            "flow seq at the size cap",
            format!("k: {}\n", long_flow_seq(CAP / 2 - 4)),
        ),
        ("duplicate keys at the size cap", duplicate_keys(CAP / 5)),
        ("deep flow at the size cap", deep_flow(CAP / 2 - 1)),
        (
            "one scalar at the size cap",
            format!("k: {}", "x".repeat(CAP - 4)),
        ),
    ];
    peak_rss_main(
        shapes
            .into_iter()
            .map(|(s, t)| (s.to_string(), t))
            .collect(),
        |text| match yamlmap::parse(text) {
            Ok(_) => "accepted".to_string(),
            Err(e) => e.to_string(),
        },
    );
}
