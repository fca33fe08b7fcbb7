//! Lenient JSON field access for the console's documents (config.md §5): numbers as strings,
//! booleans as strings, integral floats and `null` as absent are all accepted.

use serde_json::{Map, Value};

use super::ConfigError;

/// A JSON object view.
pub type Obj = Map<String, Value>;

fn present<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn bad(key: &str, want: &str) -> ConfigError {
    ConfigError::Invalid(format!("`{key}` must be {want}"))
}

/// An integer field (`3000`, `"3000"` or `3000.0`).
pub fn int(o: &Obj, key: &str, default: i64) -> Result<i64, ConfigError> {
    let Some(v) = present(o, key) else {
        return Ok(default);
    };
    let parsed = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    parsed.ok_or_else(|| bad(key, "an integer"))
}

/// A floating-point field.
pub fn float(o: &Obj, key: &str, default: f64) -> Result<f64, ConfigError> {
    let Some(v) = present(o, key) else {
        return Ok(default);
    };
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(key, "a number"))
}

/// A boolean field (`true` or `"true"`).
pub fn boolean(o: &Obj, key: &str, default: bool) -> Result<bool, ConfigError> {
    let Some(v) = present(o, key) else {
        return Ok(default);
    };
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| bad(key, "a boolean"))
}

/// A string field.
pub fn string(o: &Obj, key: &str) -> Result<Option<String>, ConfigError> {
    match present(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad(key, "a string")),
    }
}

/// A list (or set) of strings.
pub fn strings(o: &Obj, key: &str) -> Result<Vec<String>, ConfigError> {
    match present(o, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(key, "a list of strings")),
            })
            .collect(),
        Some(_) => Err(bad(key, "a list of strings")),
    }
}

/// A nested object; `None` when absent.
pub fn object<'a>(o: &'a Obj, key: &str) -> Result<Option<&'a Obj>, ConfigError> {
    match present(o, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(key, "an object")),
    }
}

/// A list of objects.
pub fn objects<'a>(o: &'a Obj, key: &str) -> Result<Vec<&'a Obj>, ConfigError> {
    match present(o, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_object().ok_or_else(|| bad(key, "a list of objects")))
            .collect(),
        Some(_) => Err(bad(key, "a list of objects")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_console_spellings() {
        let v: Value = serde_json::json!({
            "a": "3000", "b": 3000.0, "c": "true", "d": null, "e": 7, "f": "0.5"
        });
        let o = v.as_object().unwrap();
        assert_eq!(int(o, "a", 0).unwrap(), 3000);
        assert_eq!(int(o, "b", 0).unwrap(), 3000);
        assert!(boolean(o, "c", false).unwrap());
        assert_eq!(int(o, "d", 9).unwrap(), 9);
        assert_eq!(int(o, "missing", 5).unwrap(), 5);
        assert_eq!(float(o, "f", 0.0).unwrap(), 0.5);
        assert!(int(o, "c", 0).is_err());
    }
}
