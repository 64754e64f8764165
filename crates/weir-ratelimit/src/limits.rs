//! The loaded limits: envoyproxy/ratelimit's configuration files, read, checked with
//! [`RateLimitConfig::check`] and compiled into a lookup tree per domain, plus the reference
//! service's matching rule and counter key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use weir_govern::ratelimit::{Descriptor, RateLimitConfig, RateLimitValue};

/// Why a set of configuration files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No path was given.
    #[error("no rate-limit configuration file was given")]
    NoPaths,
    /// A file or directory could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A directory holds no `*.yaml` / `*.yml` file.
    #[error("{path}: the directory holds no *.yaml or *.yml file")]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A file is not a rate-limit configuration.
    #[error("{path}: not a rate-limit configuration: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A file breaks the reference service's loader rules.
    #[error("{path}: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Each problem as `field path: message`.
        problems: Vec<String>,
    },
    /// Two files configure one domain.
    #[error("{path}: domain {domain:?} is already configured by {first}")]
    DuplicateDomain {
        /// The second file.
        path: PathBuf,
        /// The domain.
        domain: String,
        /// The first file.
        first: PathBuf,
    },
}

/// The files of a configuration and their bytes, as read: unchanged bytes need no reload.
pub type Snapshot = Vec<(PathBuf, Vec<u8>)>;

/// Reads the configuration files: each path is a file, or a directory whose `*.yaml` and
/// `*.yml` files are read in name order (as a mounted ConfigMap is).
pub fn read_files(paths: &[PathBuf]) -> Result<Snapshot, ConfigError> {
    if paths.is_empty() {
        return Err(ConfigError::NoPaths);
    }
    let mut out = Vec::new();
    for path in paths {
        let read_err = |error| ConfigError::Read {
            path: path.clone(),
            error,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(read_err)? {
                let p = entry.map_err(read_err)?.path();
                let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
                // Kubernetes mounts ConfigMap keys through `..data` symlinks; hidden names are
                // its bookkeeping, not files of ours.
                let hidden = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if yaml && !hidden && p.is_file() {
                    files.push(p);
                }
            }
            if files.is_empty() {
                return Err(ConfigError::EmptyDirectory { path: path.clone() });
            }
            files.sort();
            for f in files {
                let bytes = std::fs::read(&f).map_err(|error| ConfigError::Read {
                    path: f.clone(),
                    error,
                })?;
                out.push((f, bytes));
            }
        } else {
            out.push((path.clone(), std::fs::read(path).map_err(read_err)?));
        }
    }
    Ok(out)
}

/// Parses and checks the files read by [`read_files`].
pub fn parse(snapshot: &Snapshot) -> Result<Limits, ConfigError> {
    let mut configs = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, bytes) in snapshot {
        let config = parse_one(path, bytes)?;
        if let Some(first) = seen.get(&config.domain) {
            return Err(ConfigError::DuplicateDomain {
                path: path.clone(),
                domain: config.domain,
                first: first.clone(),
            });
        }
        seen.insert(config.domain.clone(), path.clone());
        configs.push(config);
    }
    Ok(Limits::new(configs))
}

fn parse_one(path: &Path, bytes: &[u8]) -> Result<RateLimitConfig, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: format!("not UTF-8: {e}"),
    })?;
    let config: RateLimitConfig = serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let problems = config.check();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: problems
                .into_iter()
                .map(|(at, msg)| format!("{at}: {msg}"))
                .collect(),
        });
    }
    Ok(config)
}

/// One descriptor entry of the tree: the limit for descriptors ending here, and the entries
/// nested under it.
#[derive(Debug, Default)]
struct Node {
    limit: Option<RateLimitValue>,
    shadow: bool,
    children: Level,
}

/// The entries at one depth: by key and (for entries that name one) value, plus the
/// wildcard entries (`value: prefix*`) in file order.
#[derive(Debug, Default)]
struct Level {
    exact: HashMap<(String, Option<String>), Node>,
    wildcards: Vec<(String, String, Node)>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty()
    }

    /// The reference service's order: key and value, then the first wildcard whose prefix the
    /// value starts with, then the key alone.
    fn get(&self, key: &str, value: &str) -> Option<&Node> {
        self.exact
            .get(&(key.to_string(), Some(value.to_string())))
            .or_else(|| {
                self.wildcards
                    .iter()
                    .find(|(k, prefix, _)| k == key && value.starts_with(prefix.as_str()))
                    .map(|(_, _, n)| n)
            })
            .or_else(|| self.exact.get(&(key.to_string(), None)))
    }
}

fn compile(descriptors: &[Descriptor]) -> Level {
    let mut level = Level::default();
    for d in descriptors {
        let node = Node {
            limit: d.rate_limit.clone(),
            shadow: d.shadow_mode,
            children: compile(&d.descriptors),
        };
        match d.value.as_deref().and_then(|v| v.strip_suffix('*')) {
            Some(prefix) => level
                .wildcards
                .push((d.key.clone(), prefix.to_string(), node)),
            None => {
                level.exact.insert((d.key.clone(), d.value.clone()), node);
            }
        }
    }
    level
}

/// Entries that set `detailed_metric`, as `domain: descriptors[i]…` (it has no effect here).
fn detailed_metric_paths(
    domain: &str,
    descriptors: &[Descriptor],
    path: &str,
    out: &mut Vec<String>,
) {
    for (i, d) in descriptors.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if d.detailed_metric {
            out.push(format!("{domain}: {here}"));
        }
        detailed_metric_paths(domain, &d.descriptors, &format!("{here}.descriptors"), out);
    }
}

/// Every loaded domain's limits.
#[derive(Debug, Default)]
pub struct Limits {
    domains: HashMap<String, Level>,
    detailed_metric: Vec<String>,
}

/// The limit a request descriptor falls under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The limit.
    pub limit: RateLimitValue,
    /// Counted, but always answered OK.
    pub shadow: bool,
    /// The counter key without its window suffix: `domain_key_value_…_`.
    pub key: String,
}

impl Limits {
    /// Compiles checked configurations (one per domain).
    pub fn new(configs: Vec<RateLimitConfig>) -> Self {
        let mut detailed_metric = Vec::new();
        for c in &configs {
            detailed_metric_paths(
                &c.domain,
                &c.descriptors,
                "descriptors",
                &mut detailed_metric,
            );
        }
        Limits {
            domains: configs
                .into_iter()
                .map(|c| (c.domain, compile(&c.descriptors)))
                .collect(),
            detailed_metric,
        }
    }

    /// The entries that set `detailed_metric`, which has no effect in this service (its
    /// metrics are per domain and outcome, never per value): the loader logs them.
    pub fn detailed_metric_entries(&self) -> &[String] {
        &self.detailed_metric
    }

    /// Whether a domain is configured.
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// The configured domains, sorted.
    pub fn domains(&self) -> Vec<String> {
        let mut d: Vec<String> = self.domains.keys().cloned().collect();
        d.sort();
        d
    }

    /// The limit for one request descriptor (its `(key, value)` entries in order), by the
    /// reference service's rule: at each depth the entry with the same key and value, else the
    /// entry with the same key and no value; the limit applies when the descriptor's last
    /// entry lands on an entry that has one. Unknown domain or no match: `None` (no limit).
    pub fn find(&self, domain: &str, entries: &[(&str, &str)]) -> Option<Matched> {
        let mut level = self.domains.get(domain)?;
        let mut found = None;
        for (i, (key, value)) in entries.iter().enumerate() {
            let node = level.get(key, value)?;
            if i + 1 == entries.len() {
                found = node.limit.as_ref().map(|l| (l, node.shadow));
            }
            if node.children.is_empty() {
                break;
            }
            level = &node.children;
        }
        let (limit, shadow) = found?;
        Some(Matched {
            limit: limit.clone(),
            shadow,
            key: counter_key(domain, entries),
        })
    }
}

/// envoyproxy/ratelimit's counter key without the window: the domain, then each entry's key
/// and the request's value (so an entry without a value counts each value on its own), each
/// followed by `_`. The window start is appended per request.
pub fn counter_key(domain: &str, entries: &[(&str, &str)]) -> String {
    let mut key = String::with_capacity(
        domain.len()
            + 1
            + entries
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
    );
    key.push_str(domain);
    key.push('_');
    for (k, v) in entries {
        key.push_str(k);
        key.push('_');
        key.push_str(v);
        key.push('_');
    }
    key
}

#[cfg(test)]
mod tests {
    use weir_govern::ratelimit::Unit;

    use super::*;

    const SHOP: &str = "\
domain: shop
descriptors:
  - key: path
    value: /checkout
    rate_limit: { unit: second, requests_per_unit: 2 }
  - key: path
    rate_limit: { unit: minute, requests_per_unit: 100 }
  - key: client
    descriptors:
      - key: path
        value: /search
        rate_limit: { unit: hour, requests_per_unit: 7 }
  - key: tenant
    value: big
    rate_limit: { unit: day, requests_per_unit: 1000 }
    descriptors:
      - key: user
        rate_limit: { unit: minute, requests_per_unit: 5 }
";

    fn limits() -> Limits {
        parse(&vec![(
            PathBuf::from("shop.yaml"),
            SHOP.as_bytes().to_vec(),
        )])
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn per(m: Option<Matched>) -> Option<(Unit, u32)> {
        m.and_then(|m| Some((m.limit.unit?, m.limit.requests_per_unit?)))
    }

    #[test]
    fn a_key_and_value_entry_wins_over_a_key_only_entry() {
        let l = limits();
        assert_eq!(
            per(l.find("shop", &[("path", "/checkout")])),
            Some((Unit::Second, 2))
        );
        assert_eq!(
            per(l.find("shop", &[("path", "/other")])),
            Some((Unit::Minute, 100))
        );
    }

    #[test]
    fn nested_entries_match_composite_descriptors_only_at_their_end() {
        let l = limits();
        assert_eq!(
            per(l.find("shop", &[("client", "a"), ("path", "/search")])),
            Some((Unit::Hour, 7))
        );
        // `client` alone ends on an entry without a limit.
        assert_eq!(per(l.find("shop", &[("client", "a")])), None);
        // No nested entry for this path.
        assert_eq!(
            per(l.find("shop", &[("client", "a"), ("path", "/x")])),
            None
        );
        // An entry with both a limit and nested entries serves both depths.
        assert_eq!(
            per(l.find("shop", &[("tenant", "big")])),
            Some((Unit::Day, 1000))
        );
        assert_eq!(
            per(l.find("shop", &[("tenant", "big"), ("user", "u1")])),
            Some((Unit::Minute, 5))
        );
        // Extra entries past a leaf: the reference stops at the leaf and applies nothing.
        assert_eq!(per(l.find("shop", &[("path", "/a"), ("x", "y")])), None);
    }

    #[test]
    fn unknown_domains_and_keys_have_no_limit() {
        let l = limits();
        assert_eq!(l.find("other", &[("path", "/checkout")]), None);
        assert_eq!(l.find("shop", &[("nope", "/checkout")]), None);
        assert_eq!(l.find("shop", &[]), None);
        assert!(l.has_domain("shop") && !l.has_domain("other"));
    }

    #[test]
    fn counter_keys_carry_the_requests_values() {
        let l = limits();
        let a = l.find("shop", &[("path", "/a")]).map(|m| m.key);
        let b = l.find("shop", &[("path", "/b")]).map(|m| m.key);
        assert_eq!(a.as_deref(), Some("shop_path_/a_"));
        assert_eq!(b.as_deref(), Some("shop_path_/b_"));
        assert_eq!(
            counter_key("shop", &[("client", "a"), ("path", "/search")]),
            "shop_client_a_path_/search_"
        );
    }

    #[test]
    fn bad_files_say_which_file_and_why() {
        let parse_err = parse(&vec![(PathBuf::from("a.yaml"), b"domain: [".to_vec())]);
        let msg = parse_err.map(|_| ()).unwrap_err().to_string();
        assert!(
            msg.starts_with("a.yaml: not a rate-limit configuration"),
            "{msg}"
        );

        let unknown = "domain: x\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1, shadow: true }\n";
        let msg = parse(&vec![(
            PathBuf::from("u.yaml"),
            unknown.as_bytes().to_vec(),
        )])
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(msg.contains("shadow"), "{msg}");

        let no_unit =
            "domain: x\ndescriptors:\n  - key: a\n    rate_limit: { requests_per_unit: 3 }\n";
        let msg = parse(&vec![(
            PathBuf::from("z.yaml"),
            no_unit.as_bytes().to_vec(),
        )])
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("z.yaml: descriptors[0].rate_limit.unit: missing"),
            "{msg}"
        );

        let twice = vec![
            (PathBuf::from("1.yaml"), SHOP.as_bytes().to_vec()),
            (PathBuf::from("2.yaml"), SHOP.as_bytes().to_vec()),
        ];
        let msg = parse(&twice).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            msg,
            "2.yaml: domain \"shop\" is already configured by 1.yaml"
        );
    }

    #[test]
    fn directories_are_read_in_name_order_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"))
        };
        write("b.yaml", "domain: b\n");
        write("a.yml", "domain: a\n");
        write("notes.txt", "not yaml");
        write(".hidden.yaml", "garbage: [");
        let snap = read_files(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = snap
            .iter()
            .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        assert_eq!(
            parse(&snap).map(|l| l.domains()).ok(),
            Some(vec!["a".into(), "b".into()])
        );

        let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            read_files(&[empty.path().to_path_buf()]),
            Err(ConfigError::EmptyDirectory { .. })
        ));
        assert!(matches!(
            read_files(&[dir.path().join("missing.yaml")]),
            Err(ConfigError::Read { .. })
        ));
        assert!(matches!(read_files(&[]), Err(ConfigError::NoPaths)));
    }

    #[test]
    fn wildcards_come_after_an_exact_value_and_before_a_key_alone() {
        let text = "\
domain: w
descriptors:
  - key: path
    value: /api/*
    rate_limit: { unit: second, requests_per_unit: 20 }
  - key: path
    value: /api/admin
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: path
    rate_limit: { unit: second, requests_per_unit: 100 }
  - key: ldap
    rate_limit: { unlimited: true }
  - key: user
    value: beta
    shadow_mode: true
    detailed_metric: true
    rate_limit: { unit: second, requests_per_unit: 5 }
";
        let l = parse(&vec![(PathBuf::from("w.yaml"), text.as_bytes().to_vec())])
            .unwrap_or_else(|e| panic!("{e}"));
        let n = |v: &str| {
            l.find("w", &[("path", v)])
                .and_then(|m| m.limit.requests_per_unit)
        };
        assert_eq!(n("/api/admin"), Some(1));
        assert_eq!(n("/api/users"), Some(20));
        assert_eq!(n("/web"), Some(100));
        // Each value under a wildcard has its own counter, as the reference keys it.
        assert_eq!(
            l.find("w", &[("path", "/api/users")]).map(|m| m.key),
            Some("w_path_/api/users_".to_string())
        );
        assert!(
            l.find("w", &[("ldap", "x")])
                .is_some_and(|m| m.limit.unlimited)
        );
        let beta = l.find("w", &[("user", "beta")]);
        assert!(beta.is_some_and(|m| m.shadow));
        assert!(!l.find("w", &[("path", "/web")]).is_some_and(|m| m.shadow));
        assert_eq!(l.detailed_metric_entries(), ["w: descriptors[4]"]);
    }
}
