//! `yamlmap` — YAML documents with source positions, and the [`Diagnostic`]
//! type that Cove's pure parsers (`devfiles`, `workflows`) report with.
//!
//! Typed deserialization is done with `serde_yaml`, which cannot tell where a
//! value came from once it is in a struct. This crate parses the same text a
//! second time into a [`Node`] tree in which every key and value carries its
//! line and column, so semantic checks can point at the exact place to change.
//!
//! Invariants: no IO, no async, no knowledge of devfiles or workflows. Lines
//! and columns are 1-based everywhere.

mod diagnostic;
mod node;

pub use diagnostic::{cap_diagnostics, Diagnostic, Dropped, Pos, Severity, MAX_DIAGNOSTICS};
pub use node::{
    parse, parse_counted, parse_with, Entry, Limits, Node, ParseError, Seg, Value, MAX_DEPTH,
    MAX_INPUT_BYTES, MAX_NODES,
};
