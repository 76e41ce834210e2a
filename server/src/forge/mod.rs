//! The forge: branch rules (and, from other work, pull requests).

pub mod rules;
pub mod rules_http;
pub mod rules_push;
