//! File + environment layering and field-naming errors.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Value;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "WEIR__";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. (The message carries the cause, so it is no `source`:
    /// `{:#}` prints it once.)
    #[error("{path}: {error}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// Not valid TOML (the message carries line and column).
    #[error("{origin}: {message}")]
    Syntax {
        /// File or label.
        origin: String,
        /// Parser message.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// Variable name.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A field is missing, unknown or of the wrong type.
    #[error("{origin}: {field}: {message}")]
    Field {
        /// File or label.
        origin: String,
        /// Dotted path of the field (`prometheus.queries.replica_lag_s.query`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads `path`, applies overrides from `env` (pairs of name and value, typically
/// `std::env::vars()`), and deserialises.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    from_toml_str(&text, &path.display().to_string(), env)
}

/// Like [`load`] for text already read; `origin` names it in errors.
pub fn from_toml_str<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut value: Value =
        text.parse::<toml::Table>()
            .map(Value::Table)
            .map_err(|e| ConfigError::Syntax {
                origin: origin.to_string(),
                message: e.to_string().trim_end().to_string(),
            })?;
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
        .collect();
    overrides.sort();
    for (var, raw) in &overrides {
        apply_override(&mut value, var, raw)?;
    }
    let origin_with_env = if overrides.is_empty() {
        origin.to_string()
    } else {
        let names: Vec<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
        format!("{origin} (with {})", names.join(", "))
    };
    deserialize(value, &origin_with_env, "")
}

/// Deserialises one section (or the whole file, with an empty `prefix`) from a value already
/// read and overridden, naming the field as `prefix` + its path within the value. This is how
/// a component that owns its settings (an actuator's `[actuator]` section) reads them with the
/// same errors as the rest of the file.
pub fn deserialize<T: DeserializeOwned>(
    value: Value,
    origin: &str,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let field = match (prefix, inner.as_str()) {
            ("", ".") => "(top level)".to_string(),
            (p, ".") => p.to_string(),
            ("", f) => f.to_string(),
            (p, f) => format!("{p}.{f}"),
        };
        ConfigError::Field {
            origin: origin.to_string(),
            field,
            message: e.into_inner().to_string(),
        }
    })
}

fn apply_override(root: &mut Value, var: &str, raw: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_string(),
        message,
    };
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(env_err(
            "empty path segment (use single `__` between keys)".to_string(),
        ));
    }
    let new = parse_scalar(raw);
    let mut node = root;
    for (k, seg) in path.iter().enumerate() {
        let last = k + 1 == path.len();
        node = match node {
            Value::Table(t) => {
                if last {
                    t.insert(seg.clone(), new);
                    return Ok(());
                }
                t.entry(seg.clone())
                    .or_insert_with(|| Value::Table(toml::Table::new()))
            }
            Value::Array(a) => {
                let i: usize = seg.parse().map_err(|_| {
                    env_err(format!(
                        "`{seg}` is not an index into the array at this point"
                    ))
                })?;
                let len = a.len();
                let slot = a.get_mut(i).ok_or_else(|| {
                    env_err(format!(
                        "index {i} is out of range (the array has {len} entries)"
                    ))
                })?;
                if last {
                    *slot = new;
                    return Ok(());
                }
                slot
            }
            _ => {
                let at = path[..k].join(".");
                return Err(env_err(format!(
                    "`{at}` is a value, not a table: cannot set `{seg}` inside it"
                )));
            }
        };
    }
    Ok(())
}

fn parse_scalar(raw: &str) -> Value {
    if let Ok(b) = raw.parse::<bool>() {
        return Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>()
        && f.is_finite()
    {
        return Value::Float(f);
    }
    Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        interval_s: f64,
        #[serde(default)]
        mode: Option<String>,
        prometheus: Prom,
        #[serde(default)]
        replicas: Vec<Replica>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Prom {
        url: String,
        #[serde(default)]
        timeout_s: Option<f64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Replica {
        name: String,
    }

    const TEXT: &str = "interval_s = 15\n[prometheus]\nurl = \"http://127.0.0.1:9090\"\n[[replicas]]\nname = \"r1\"\n[[replicas]]\nname = \"r2\"\n";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_any_field() {
        let c: Cfg = from_toml_str(
            TEXT,
            "weir.toml",
            env(&[
                ("WEIR__INTERVAL_S", "10"),
                ("WEIR__PROMETHEUS__URL", "http://prom:9090"),
                ("WEIR__PROMETHEUS__TIMEOUT_S", "2.5"),
                ("WEIR__REPLICAS__1__NAME", "other"),
                ("WEIR__MODE", "shadow"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.interval_s, 10.0);
        assert_eq!(c.prometheus.url, "http://prom:9090");
        assert_eq!(c.prometheus.timeout_s, Some(2.5));
        assert_eq!(c.replicas[1].name, "other");
        assert_eq!(c.mode.as_deref(), Some("shadow"));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let bad = TEXT.replace("name = \"r2\"", "name = \"r2\"\nweight = 3");
        let e = from_toml_str::<Cfg>(&bad, "weir.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("weir.toml: replicas[1]"), "{e}");
        assert!(e.contains("unknown field `weight`"), "{e}");

        let e = from_toml_str::<Cfg>(
            "interval_s = \"soon\"\n[prometheus]\nurl = \"x\"\n",
            "a.toml",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a.toml: interval_s"), "{e}");

        let e = from_toml_str::<Cfg>("interval_s = 1\n", "a.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `prometheus`"), "{e}");

        let e = from_toml_str::<Cfg>("interval_s = = 1", "a.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.toml: ") && e.contains("line 1"), "{e}");

        let e = from_toml_str::<Cfg>(TEXT, "a.toml", env(&[("WEIR__INTERVAL_S__X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WEIR__INTERVAL_S__X") && e.contains("not a table"),
            "{e}"
        );

        let e = from_toml_str::<Cfg>(TEXT, "a.toml", env(&[("WEIR__REPLICAS__5__NAME", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");

        let e = from_toml_str::<Cfg>(TEXT, "a.toml", env(&[("WEIR__INTERVAL_S", "fast")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("with WEIR__INTERVAL_S") && e.contains("interval_s"),
            "{e}"
        );
    }
}
