//! The harness: a policy and its upstreams → the inventory (the file a user writes), the
//! standalone bootstrap rendered by `weir_govern::standalone` (the code `weir govern compile
//! --target envoy` runs), a real Envoy on it, and requests through it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use weir_govern::standalone;
use weir_govern::{Output, TrafficPolicy};

use crate::Error;
use crate::envoy::Envoy;
use crate::upstream::{Answer, Locality, Upstream, UpstreamSpec};

/// The calling proxy, as the inventory's `caller` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// Where it runs.
    pub locality: Locality,
    /// Its workload labels.
    pub labels: BTreeMap<String, String>,
}

impl Caller {
    /// A caller labelled `key: value`.
    pub fn labelled(key: &str, value: &str) -> Caller {
        Caller {
            locality: Locality::default(),
            labels: BTreeMap::from([(key.to_string(), value.to_string())]),
        }
    }
}

/// One endpoint line of an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointLine {
    /// Its subset.
    pub subset: String,
    /// Its address.
    pub address: SocketAddr,
    /// Its locality.
    pub locality: Option<Locality>,
}

/// A YAML scalar, quoted.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn locality_yaml(l: &Locality) -> String {
    let parts: Vec<String> = [
        ("region", &l.region),
        ("zone", &l.zone),
        ("subzone", &l.subzone),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {}", quote(v))))
    .collect();
    parts.join(", ")
}

/// The inventory file for a standalone Envoy listening on `listen` (admin on `admin`).
pub fn inventory_yaml(
    listen: &str,
    admin: &str,
    caller: &Caller,
    ratelimit_service: Option<&str>,
    endpoints: &[EndpointLine],
) -> String {
    let mut out = format!("listen: {}\nadmin: {}\n", quote(listen), quote(admin));
    let labels: Vec<String> = caller
        .labels
        .iter()
        .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
        .collect();
    let loc = locality_yaml(&caller.locality);
    let sep = if loc.is_empty() { "" } else { ", " };
    let _ = writeln!(
        out,
        "caller: {{ {loc}{sep}labels: {{ {} }} }}",
        labels.join(", ")
    );
    if let Some(rl) = ratelimit_service {
        let _ = writeln!(out, "ratelimit_service: {}", quote(rl));
    }
    out.push_str("endpoints:\n");
    for e in endpoints {
        let _ = write!(
            out,
            "  - {{ subset: {}, address: {}",
            quote(&e.subset),
            quote(&e.address.to_string())
        );
        if let Some(l) = &e.locality {
            let _ = write!(out, ", locality: {{ {} }}", locality_yaml(l));
        }
        out.push_str(" }\n");
    }
    out
}

/// A policy compiled and rendered for a standalone Envoy.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The policy.
    pub policy: TrafficPolicy,
    /// What it compiles into.
    pub output: Output,
    /// The bootstrap, as YAML.
    pub bootstrap_yaml: String,
    /// The renderer's notes.
    pub notes: Vec<String>,
}

/// Parses, compiles and renders `policy` (one document) with `inventory`.
pub fn render(name: &str, policy: &str, inventory: &str) -> Result<Rendered, Error> {
    let problems = |e: weir_govern::Problems| Error::Policy {
        name: name.to_string(),
        problems: e.to_string(),
    };
    let mut policies = weir_govern::parse(policy, name).map_err(problems)?;
    if policies.len() != 1 {
        return Err(Error::Policy {
            name: name.to_string(),
            problems: format!("expected one policy, got {}", policies.len()),
        });
    }
    let policy = policies.remove(0);
    let output = weir_govern::compile(&policy, name).map_err(problems)?;
    let inv = standalone::parse_inventory(inventory, "inventory.yaml").map_err(problems)?;
    let s = standalone::render(&policy, &output, &inv, "inventory.yaml").map_err(problems)?;
    let bootstrap_yaml = standalone::to_yaml(&s).map_err(|e| Error::Policy {
        name: name.to_string(),
        problems: e.to_string(),
    })?;
    Ok(Rendered {
        policy,
        output,
        bootstrap_yaml,
        notes: s.notes,
    })
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
}

/// Envoy worker threads unless a check says otherwise (an Istio sidecar's default).
pub const DEFAULT_WORKERS: u32 = 2;

/// What a run needs: the Envoy binary, a directory for its files, the HTTP client.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The Envoy binary.
    pub envoy_bin: PathBuf,
    /// Where each scenario's policy, inventory, bootstrap and Envoy log are written.
    pub dir: PathBuf,
    /// Fewer requests (CI).
    pub short: bool,
    /// The client requests go through.
    pub client: reqwest::Client,
}

/// An HTTP client for 127.0.0.1: no proxy, no redirects, a 10 s timeout, optionally bound
/// to a local address (source-IP affinity).
pub fn client(local: Option<IpAddr>) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .local_address(local)
        .build()
        .map_err(Error::Client)
}

/// An Envoy running a policy.
pub struct Proxy {
    /// The process.
    pub envoy: Envoy,
    /// `http://127.0.0.1:port`, where it accepts the service's traffic.
    pub base: String,
    /// The compiled policy.
    pub rendered: Rendered,
}

impl Proxy {
    /// Saves Envoy's admin `/clusters` and `/stats` as `<label>.clusters.txt` and
    /// `<label>.stats.txt` beside its bootstrap, for reading after a run.
    pub async fn snapshot(&self, ctx: &Ctx, label: &str) {
        let dir = self
            .envoy
            .log
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for page in ["clusters", "stats"] {
            let url = format!("http://{}/{page}", self.envoy.admin);
            if let Ok(r) = ctx.client.get(url).send().await
                && let Ok(text) = r.text().await
            {
                let _ = std::fs::write(dir.join(format!("{label}.{page}.txt")), text);
            }
        }
    }
}

/// A policy's Envoy and its upstreams.
pub struct Running {
    /// The Envoy.
    pub proxy: Proxy,
    /// The upstreams, in the order given.
    pub upstreams: Vec<Upstream>,
}

impl Running {
    /// The upstream called `id`.
    pub fn upstream(&self, id: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.spec.id == id)
    }

    /// The Envoy's base URL.
    pub fn base(&self) -> &str {
        &self.proxy.base
    }
}

impl Ctx {
    /// Starts `upstreams` and an Envoy running `policy` for `caller`, with two worker threads
    /// (an Istio sidecar's default).
    pub async fn start(
        &self,
        name: &str,
        policy: &str,
        caller: &Caller,
        upstreams: &[UpstreamSpec],
    ) -> Result<Running, Error> {
        self.start_with(name, policy, caller, upstreams, DEFAULT_WORKERS)
            .await
    }

    /// The same, with `workers` Envoy worker threads.
    pub async fn start_with(
        &self,
        name: &str,
        policy: &str,
        caller: &Caller,
        upstreams: &[UpstreamSpec],
        workers: u32,
    ) -> Result<Running, Error> {
        let mut started = Vec::new();
        for u in upstreams {
            started.push(Upstream::start(u.clone()).await?);
        }
        let endpoints: Vec<EndpointLine> = started
            .iter()
            .map(|u| EndpointLine {
                subset: u.spec.subset.clone(),
                address: u.addr,
                locality: u.spec.locality.clone(),
            })
            .collect();
        let proxy = self
            .proxy(name, policy, caller, None, &endpoints, workers)
            .await?;
        Ok(Running {
            proxy,
            upstreams: started,
        })
    }

    /// An Envoy running `policy` for `caller` in front of `endpoints`.
    pub async fn proxy(
        &self,
        name: &str,
        policy: &str,
        caller: &Caller,
        ratelimit_service: Option<&str>,
        endpoints: &[EndpointLine],
        workers: u32,
    ) -> Result<Proxy, Error> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(&format!("creating {}", dir.display()), e))?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let admin = format!("127.0.0.1:{}", free_port()?);
        let inventory = inventory_yaml(&listen, &admin, caller, ratelimit_service, endpoints);
        let rendered = render(name, policy, &inventory)?;
        write(&dir.join("policy.yaml"), policy)?;
        write(&dir.join("inventory.yaml"), &inventory)?;
        let bootstrap = dir.join("envoy.yaml");
        write(&bootstrap, &rendered.bootstrap_yaml)?;
        let envoy = Envoy::start(
            &self.envoy_bin,
            &bootstrap,
            workers,
            &admin,
            &dir.join("envoy.log"),
            &self.client,
        )
        .await?;
        Ok(Proxy {
            envoy,
            base: format!("http://{listen}"),
            rendered,
        })
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(&format!("writing {}", path.display()), e))
}

/// One request to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The method (`GET` when empty).
    pub method: String,
    /// Path and query (`/` when empty).
    pub path: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
}

impl Probe {
    /// `GET /`.
    pub fn get() -> Probe {
        Probe::default()
    }

    /// The same, with header `name: value`.
    pub fn header(mut self, name: &str, value: &str) -> Probe {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same, with path and query `path`.
    pub fn path(mut self, path: &str) -> Probe {
        self.path = path.to_string();
        self
    }

    /// The same, with `method`.
    pub fn method(mut self, method: &str) -> Probe {
        self.method = method.to_string();
        self
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status code; 0 when no answer came (the reason is in `error`).
    pub status: u16,
    /// The upstream's answer, when an upstream answered.
    pub answer: Option<Answer>,
    /// Response headers (names lower case), in order.
    pub headers: Vec<(String, String)>,
    /// From sending to the end of the body.
    pub elapsed: Duration,
    /// Why no answer came.
    pub error: Option<String>,
}

impl Outcome {
    /// The first response header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Who answered: the upstream's id, else `status N` (Envoy itself), else `no answer`.
    pub fn who(&self) -> String {
        match (&self.answer, self.status) {
            (Some(a), _) => a.id.clone(),
            (None, 0) => "no answer".into(),
            (None, s) => format!("status {s}"),
        }
    }
}

/// Sends `probe` to `base`.
pub async fn send(client: &reqwest::Client, base: &str, probe: &Probe) -> Outcome {
    let started = Instant::now();
    let method = if probe.method.is_empty() {
        reqwest::Method::GET
    } else {
        match reqwest::Method::from_bytes(probe.method.as_bytes()) {
            Ok(m) => m,
            Err(e) => return failed(started, e.to_string()),
        }
    };
    let path = if probe.path.is_empty() {
        "/"
    } else {
        &probe.path
    };
    let mut req = client.request(method, format!("{base}{path}"));
    for (k, v) in &probe.headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return failed(started, e.to_string()),
    };
    let status = resp.status().as_u16();
    let headers = crate::upstream::header_pairs(resp.headers());
    let from_upstream = resp.headers().contains_key("x-upstream");
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return failed(started, e.to_string()),
    };
    let answer = if from_upstream {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    Outcome {
        status,
        answer,
        headers,
        elapsed: started.elapsed(),
        error: None,
    }
}

fn failed(started: Instant, error: String) -> Outcome {
    Outcome {
        status: 0,
        answer: None,
        headers: Vec::new(),
        elapsed: started.elapsed(),
        error: Some(error),
    }
}

/// Sends every probe, `concurrency` at a time; outcomes in the probes' order.
pub async fn send_all(
    client: &reqwest::Client,
    base: &str,
    probes: &[Probe],
    concurrency: usize,
) -> Vec<Outcome> {
    futures_util::stream::iter(probes)
        .map(|p| send(client, base, p))
        .buffered(concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inventory_is_what_the_renderer_reads() {
        let caller = Caller {
            locality: Locality::zone("east", "east-1"),
            labels: BTreeMap::from([("env".into(), "base".into())]),
        };
        let eps = [
            EndpointLine {
                subset: "v1".into(),
                address: "127.0.0.1:18081".parse().unwrap(),
                locality: Some(Locality::zone("east", "east-2")),
            },
            EndpointLine {
                subset: "v2".into(),
                address: "127.0.0.1:18082".parse().unwrap(),
                locality: None,
            },
        ];
        let text = inventory_yaml(
            "127.0.0.1:18000",
            "127.0.0.1:18001",
            &caller,
            Some("127.0.0.1:8081"),
            &eps,
        );
        let inv = standalone::parse_inventory(&text, "inv").unwrap();
        assert_eq!(inv.listen, "127.0.0.1:18000");
        assert_eq!(inv.admin.as_deref(), Some("127.0.0.1:18001"));
        assert_eq!(inv.ratelimit_service.as_deref(), Some("127.0.0.1:8081"));
        let c = inv.caller.unwrap();
        assert_eq!(
            (c.region.as_deref(), c.zone.as_deref(), c.subzone.as_deref()),
            (Some("east"), Some("east-1"), None)
        );
        assert_eq!(c.labels["env"], "base");
        assert_eq!(inv.endpoints.len(), 2);
        assert_eq!(inv.endpoints[0].subset, "v1");
        assert_eq!(inv.endpoints[0].address, "127.0.0.1:18081");
        let l = inv.endpoints[0].locality.clone().unwrap();
        assert_eq!(l.zone.as_deref(), Some("east-2"));
        assert!(inv.endpoints[1].locality.is_none());
    }

    #[test]
    fn a_caller_without_locality_or_labels_is_valid_yaml() {
        let text = inventory_yaml("127.0.0.1:1", "127.0.0.1:2", &Caller::default(), None, &[]);
        let inv = standalone::parse_inventory(&text, "inv").unwrap();
        assert!(inv.endpoints.is_empty() && inv.ratelimit_service.is_none());
    }

    #[test]
    fn render_gives_a_bootstrap_or_the_problems() {
        let policy = "apiVersion: weir.dev/v1alpha1\nkind: TrafficPolicy\n\
                      metadata: { name: t, namespace: n }\nspec:\n  host: t.n.svc\n  port: 8080\n  \
                      subsets: [ { name: v1, labels: { version: v1 } } ]\n  \
                      routes: [ { name: all, destinations: [ { subset: v1 } ] } ]\n";
        let eps = [EndpointLine {
            subset: "v1".into(),
            address: "127.0.0.1:18081".parse().unwrap(),
            locality: None,
        }];
        let inv = inventory_yaml("127.0.0.1:1", "127.0.0.1:2", &Caller::default(), None, &eps);
        let r = render("t", policy, &inv).unwrap();
        assert!(r.bootstrap_yaml.contains("outbound|8080|v1|t.n.svc"));
        let wrong = inventory_yaml(
            "127.0.0.1:1",
            "127.0.0.1:2",
            &Caller::default(),
            None,
            &[EndpointLine {
                subset: "v9".into(),
                ..eps[0].clone()
            }],
        );
        let e = render("t", policy, &wrong).unwrap_err().to_string();
        assert!(e.contains("endpoints[0].subset"), "{e}");
    }

    #[test]
    fn outcomes_say_who_answered() {
        let mut o = Outcome {
            status: 503,
            answer: None,
            headers: vec![("x-envoy-overloaded".into(), "true".into())],
            elapsed: Duration::ZERO,
            error: None,
        };
        assert_eq!(o.who(), "status 503");
        assert_eq!(o.header("x-envoy-overloaded"), Some("true"));
        assert_eq!(o.header("x-other"), None);
        o.status = 0;
        assert_eq!(o.who(), "no answer");
    }
}
