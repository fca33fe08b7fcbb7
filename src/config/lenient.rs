//! The leniency of the console's JSON documents (config.md §5), as serde helpers: `null` is
//! absent (`from_value` drops null members before deserializing, so a field takes its
//! default), unknown keys are ignored (no `deny_unknown_fields`), and the field helpers below,
//! used as `#[serde(deserialize_with = "lenient::int")]`, accept numbers and booleans written
//! as strings and integral floats. A type error names the key's path.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ConfigError;

/// A JSON object view.
pub type Obj = Map<String, Value>;

/// Drops the `null` members of every object (not array elements: a null in a list is an error
/// as before).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Deserializes a document (or part of one) with the rules above; an error names the key path.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(strip_nulls(v))
        .map_err(|e| ConfigError::Invalid(format!("`{}`: {}", e.path(), e.inner())))
}

/// An integer (`3000`, `"3000"` or `3000.0`); `None` for anything else.
pub fn int_of(v: &Value) -> Option<i64> {
    let integral = |f: f64| (f.fract() == 0.0).then_some(f as i64);
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(integral))
        }
        _ => None,
    }
}

fn bad<E: serde::de::Error>(v: &Value, want: &str) -> E {
    E::custom(format!("must be {want}, not {v}"))
}

/// An integer field (`3000`, `"3000"` or `3000.0`).
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    int_of(&v).ok_or_else(|| bad(&v, "an integer"))
}

/// An optional integer field (absent or null: `None`).
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    int(d).map(Some)
}

/// A floating-point field (a number or a number in a string).
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(&v, "a number"))
}

/// A boolean field (`true` or `"true"`).
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| bad(&v, "a boolean"))
}

/// A string field; a number is taken as its decimal text (`"acks": 1`).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(bad(&other, "a string")),
    }
}

/// An optional string field (absent or null: `None`).
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string(d).map(Some)
}

/// A unit's `proxies`: proxy cluster -> list of nodes; non-string nodes are skipped.
pub fn proxies<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, BTreeSet<String>>, D::Error> {
    BTreeMap::<String, Value>::deserialize(d)?
        .into_iter()
        .map(|(cluster, nodes)| match nodes {
            Value::Array(a) => Ok((
                cluster,
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            )),
            other => Err(D::Error::custom(format!(
                "`{cluster}` must be a list of nodes, not {other}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Doc {
        #[serde(deserialize_with = "int")]
        a: i64,
        #[serde(deserialize_with = "int")]
        b: i64,
        #[serde(deserialize_with = "boolean")]
        c: bool,
        #[serde(deserialize_with = "int")]
        d: i64,
        #[serde(deserialize_with = "float")]
        f: f64,
        #[serde(deserialize_with = "string")]
        s: String,
        #[serde(deserialize_with = "int")]
        missing: i64,
    }

    impl Default for Doc {
        fn default() -> Self {
            Doc {
                a: 0,
                b: 0,
                c: false,
                d: 9,
                f: 0.0,
                s: String::new(),
                missing: 5,
            }
        }
    }

    #[test]
    fn accepts_console_spellings() {
        let v: Value = serde_json::json!({
            "a": "3000", "b": 3000.0, "c": "true", "d": null, "e": [7], "f": "0.5", "s": 1
        });
        let d: Doc = from_value(v).unwrap();
        assert_eq!((d.a, d.b, d.c, d.d, d.missing), (3000, 3000, true, 9, 5));
        assert_eq!(d.f, 0.5);
        assert_eq!(d.s, "1");
        let e = from_value::<Doc>(serde_json::json!({"c": "yes"})).unwrap_err();
        assert!(e.to_string().contains("`c`: must be a boolean"), "{e}");
        let e = from_value::<Doc>(serde_json::json!({"a": "true"})).unwrap_err();
        assert!(e.to_string().contains("`a`: must be an integer"), "{e}");
        let e = from_value::<Doc>(serde_json::json!({"a": 0.5})).unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
    }
}
