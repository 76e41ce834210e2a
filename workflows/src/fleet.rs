//! `Compute.Fleet` → the labels an agent must carry to run the action (pure).
//!
//! The mapping (docs/agents.md "Fleets, pools and labels"):
//! - the on-demand fleets `Linux.x86-64.Large` / `Linux.x86-64.XLarge` → `arch=amd64`;
//! - `Linux.Arm64.Large` / `Linux.Arm64.XLarge` → `arch=arm64`;
//! - any other name (a provisioned fleet) → `pool=<name>`: an agent of the administrator's
//!   agent pool of that name, or an agent that declares the label `pool=<name>` itself when
//!   no administrator pool has that name.
//!
//! Fleet sizes are not applied: an action runs with its agent's job limits.

use std::collections::BTreeMap;

use crate::{Action, Workflow};

/// The label naming an agent's pool.
pub const POOL_LABEL: &str = "pool";
/// The label naming an agent's CPU architecture (`amd64`, `arm64`).
pub const ARCH_LABEL: &str = "arch";
/// The label naming an agent's backend (`docker`, `kubernetes`).
pub const BACKEND_LABEL: &str = "backend";

/// The on-demand fleets and the architecture each stands for.
pub const ON_DEMAND: &[(&str, &str)] = &[
    ("Linux.x86-64.Large", "amd64"),
    ("Linux.x86-64.XLarge", "amd64"),
    ("Linux.Arm64.Large", "arm64"),
    ("Linux.Arm64.XLarge", "arm64"),
];

/// Longest label key or value (as Kubernetes label values).
pub const MAX_LABEL_LEN: usize = 63;

/// Whether `value` can be a label value: 1–63 of ASCII letters, digits, `.`, `_`, `-`.
pub fn valid_label_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `key` can be a label key: 1–63 of lower-case ASCII letters, digits, `.`, `_`,
/// `-`, `/`, starting with a letter or digit.
pub fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_LABEL_LEN
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/')
        })
}

/// The labels a fleet name requires (see the module documentation).
pub fn fleet_labels(fleet: &str) -> BTreeMap<String, String> {
    let (key, value) = match ON_DEMAND.iter().find(|(name, _)| *name == fleet) {
        Some((_, arch)) => (ARCH_LABEL, (*arch).to_string()),
        None => (POOL_LABEL, fleet.to_string()),
    };
    BTreeMap::from([(key.to_string(), value)])
}

/// The labels an action's agent must carry: from its own `Compute.Fleet`, else the
/// workflow's.
pub fn action_labels(workflow: &Workflow, action: &Action) -> BTreeMap<String, String> {
    action
        .compute
        .as_ref()
        .or(workflow.compute.as_ref())
        .and_then(|c| c.fleet.as_deref())
        .map(fleet_labels)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_demand_fleets_map_to_an_architecture_and_others_to_a_pool() {
        assert_eq!(
            fleet_labels("Linux.x86-64.Large"),
            BTreeMap::from([("arch".to_string(), "amd64".to_string())])
        );
        assert_eq!(
            fleet_labels("Linux.Arm64.XLarge"),
            BTreeMap::from([("arch".to_string(), "arm64".to_string())])
        );
        assert_eq!(
            fleet_labels("gpu"),
            BTreeMap::from([("pool".to_string(), "gpu".to_string())])
        );
    }

    #[test]
    fn label_syntax() {
        assert!(valid_label_key("pool") && valid_label_key("cove.dev/zone"));
        assert!(!valid_label_key("Pool") && !valid_label_key("") && !valid_label_key("-x"));
        assert!(!valid_label_key(&"k".repeat(64)));
        assert!(valid_label_value("Linux.x86-64.Large") && valid_label_value("gpu_2"));
        assert!(!valid_label_value("") && !valid_label_value("a b") && !valid_label_value("a=b"));
    }
}
