//! YAML 1.1 scalar reading on top of `yamlmap` (which keeps scalars as
//! text). CodeCatalyst and CodeBuild read YAML 1.1, so `yes`/`no`/`on`/`off`
//! are booleans. Generic: a candidate for moving into `yamlmap`.

use serde_json::Value as Json;
use yamlmap::{Node, Value};

/// The YAML 1.1 boolean reading of `text`
/// (`y|yes|true|on` / `n|no|false|off` in lower, Capitalised or UPPER case).
pub fn bool_of(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// True for a plain scalar that YAML 1.1 reads as null.
pub fn is_null(node: &Node) -> bool {
    node.is_null()
}

/// A plain decimal integer (`-12`, `300`), as YAML 1.1 would read it.
fn int_of(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `012` is octal in YAML 1.1; keep such text as a string rather than
    // guess.
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// Convert a node to JSON for sections kept as data: null, YAML 1.1
/// booleans and decimal integers are typed; every other scalar (including
/// floats such as `3.10`, which would lose their text) stays a string.
/// Quoted and block scalars are always strings.
pub fn to_json(node: &Node) -> Json {
    match &node.value {
        Value::Scalar { text, plain } => {
            if !*plain {
                return Json::String(text.clone());
            }
            if node.is_null() {
                return Json::Null;
            }
            if let Some(b) = bool_of(text) {
                return Json::Bool(b);
            }
            if let Some(i) = int_of(text) {
                return Json::from(i);
            }
            Json::String(text.clone())
        }
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut map = serde_json::Map::new();
            for e in entries {
                let key = match &e.key.value {
                    Value::Scalar { text, .. } => text.clone(),
                    _ => format!("{:?}", to_json(&e.key)),
                };
                map.insert(key, to_json(&e.value));
            }
            Json::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        yamlmap::parse(text).unwrap().unwrap()
    }

    #[test]
    fn yaml11_booleans() {
        for t in ["yes", "Yes", "YES", "on", "ON", "true", "y"] {
            assert_eq!(bool_of(t), Some(true), "{t}");
        }
        for t in ["no", "No", "off", "Off", "false", "FALSE", "n"] {
            assert_eq!(bool_of(t), Some(false), "{t}");
        }
        for t in ["", "1", "0", "yess", "oN", "enabled"] {
            assert_eq!(bool_of(t), None, "{t}");
        }
    }

    #[test]
    fn kept_data_keeps_float_text() {
        let d = doc("a: 3.10\nb: yes\nc: '1'\nd: 12\ne:\nf: 012\ng: off\n");
        assert_eq!(
            to_json(&d).to_string(),
            r#"{"a":"3.10","b":true,"c":"1","d":12,"e":null,"f":"012","g":false}"#
        );
    }
}
