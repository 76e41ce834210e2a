//! Devfile registries, the pure half: the registry index format
//! (`GET <registry>/index`) and version selection. Fetching is the caller's
//! (the `cove` CLI, the server), through [`crate::Resolver::read_registry`].

use serde::Deserialize;

use crate::Version;

/// One stack of a registry index.
#[derive(Clone, Debug, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    /// Single-version registries name it here.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub versions: Vec<IndexVersion>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct IndexVersion {
    pub version: String,
    #[serde(default)]
    pub default: bool,
}

/// The versions of stack `id` in an index (`(version, is_default)`), or why
/// there are none.
pub fn index_versions(index: &str, id: &str) -> Result<Vec<(String, bool)>, String> {
    let entries: Vec<IndexEntry> =
        serde_json::from_str(index).map_err(|e| format!("not a devfile registry index: {e}"))?;
    let entry = entries
        .iter()
        .find(|e| e.name == id)
        .ok_or_else(|| format!("no stack `{id}`"))?;
    let mut available: Vec<(String, bool)> = entry
        .versions
        .iter()
        .map(|v| (v.version.clone(), v.default))
        .collect();
    if available.is_empty() {
        available.extend(entry.version.clone().map(|v| (v, true)));
    }
    Ok(available)
}

/// The version to use among `available` (version, is-default): `wanted`
/// exactly, `latest` = the highest, nothing = the registry's default, else
/// the highest.
pub fn select_version(
    id: &str,
    available: &[(String, bool)],
    wanted: Option<&str>,
) -> Result<String, String> {
    let highest = || {
        available
            .iter()
            .max_by_key(|(v, _)| Version::parse(v))
            .map(|(v, _)| v.clone())
    };
    let list = || {
        available
            .iter()
            .map(|(v, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some("latest") => highest(),
        Some(v) => available
            .iter()
            .find(|(a, _)| a == v)
            .map(|(a, _)| a.clone()),
        None => available
            .iter()
            .find(|(_, default)| *default)
            .map(|(v, _)| v.clone())
            .or_else(highest),
    }
    .ok_or_else(|| match wanted {
        Some(v) if !available.is_empty() => {
            format!("stack `{id}` has no version {v} (available: {})", list())
        }
        _ => format!("stack `{id}` has no versions"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_selected_like_the_registry() {
        let index = r#"[{"name": "s", "versions": [
            {"version": "1.0.0"}, {"version": "2.0.0", "default": true}, {"version": "2.10.0"}]},
            {"name": "one", "version": "0.1.0"}]"#;
        let av = index_versions(index, "s").unwrap();
        assert_eq!(select_version("s", &av, None).unwrap(), "2.0.0");
        assert_eq!(select_version("s", &av, Some("latest")).unwrap(), "2.10.0");
        assert_eq!(select_version("s", &av, Some("1.0.0")).unwrap(), "1.0.0");
        assert_eq!(
            select_version("s", &av, Some("3.0.0")).unwrap_err(),
            "stack `s` has no version 3.0.0 (available: 1.0.0, 2.0.0, 2.10.0)"
        );
        let one = index_versions(index, "one").unwrap();
        assert_eq!(select_version("one", &one, None).unwrap(), "0.1.0");
        assert_eq!(index_versions(index, "x").unwrap_err(), "no stack `x`");
        let no_default = vec![("1.0.0".to_string(), false), ("1.2.0".to_string(), false)];
        assert_eq!(select_version("s", &no_default, None).unwrap(), "1.2.0");
    }
}
