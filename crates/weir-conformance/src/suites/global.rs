//! The global rate limit: two Envoys sharing one `weir ratelimit` (in process) and one Redis
//! enforce a per-user limit across both; a third Envoy limits per client address and one
//! path; stopping the service shows `failure_mode` allow (requests pass) and deny (requests
//! are refused).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use weir_ratelimit::{FailureMode, ManualClock, Settings};

use crate::Error;
use crate::check::{Check, Tally};
use crate::harness::{Caller, Ctx, DEFAULT_WORKERS, EndpointLine, Outcome, Probe, Proxy, send};
use crate::upstream::{Upstream, UpstreamSpec};

/// The per-user limit.
pub const PER_USER: u64 = 10;
const SERVICE: &str = "ratelimit.ratelimit.svc.cluster.local:8081";
/// The proxies' wait for the service: Envoy's default (20 ms) is shorter than a cold first
/// call (a new HTTP/2 connection, the service's first Redis connection), which `deny` would
/// turn into a 500 (measured: `upstream_rq_504`).
const TIMEOUT_MS: u32 = 250;

/// The policy with a global per-user limit and `failure_mode`, in `domain`.
pub fn policy(name: &str, domain: &str, failure_mode: &str) -> String {
    crate::policy(
        name,
        &format!(
            "  subsets: [ {{ name: s, labels: {{ version: s }} }} ]\n  \
             routes: [ {{ name: all, destinations: [ {{ subset: s }} ] }} ]\n  rate_limit:\n    \
             global:\n      domain: {domain}\n      service: {SERVICE}\n      \
             failure_mode: {failure_mode}\n      timeout_ms: {TIMEOUT_MS}\n      \
             limits: [ {{ key: header, name: x-user-id, requests: {PER_USER}, per: minute }} ]\n"
        ),
    )
}

/// Per client address, for the keys policy.
pub const PER_ADDRESS: u64 = 4;
/// For the one path, for the keys policy.
pub const PER_PATH: u64 = 3;

/// The limits by client address and by one path.
fn keys_limits() -> String {
    format!(
        "limits: [ {{ key: remote_address, requests: {PER_ADDRESS}, per: minute }}, \
         {{ key: path, value: /checkout, requests: {PER_PATH}, per: minute }} ]"
    )
}

/// The policy limiting each client address and the path `/checkout`.
pub fn keys_policy() -> String {
    crate::policy(
        "global-keys",
        &format!(
            "  subsets: [ {{ name: s, labels: {{ version: s }} }} ]\n  \
             routes: [ {{ name: all, destinations: [ {{ subset: s }} ] }} ]\n  rate_limit:\n    \
             global:\n      domain: conformance-keys\n      service: {SERVICE}\n      \
             timeout_ms: {TIMEOUT_MS}\n      {}\n",
            keys_limits()
        ),
    )
}

/// The rate-limit service's configuration file for `policy` (what `compile -o` writes).
pub fn service_config(name: &str, policy: &str) -> Result<String, Error> {
    let bad = |problems: String| Error::Policy {
        name: name.to_string(),
        problems,
    };
    let ps = weir_govern::parse(policy, name).map_err(|e| bad(e.to_string()))?;
    let p = ps.first().ok_or_else(|| bad("no policy".into()))?;
    let out = weir_govern::compile(p, name).map_err(|e| bad(e.to_string()))?;
    let cm = out
        .ratelimit_config_map()
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no global rate limit".into()))?;
    cm["data"]
        .as_object()
        .and_then(|d| d.values().next())
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| bad("the ConfigMap has no data".into()))
}

/// A `redis-server` of our own on a free port, killed on drop.
pub struct Redis {
    /// Its URL.
    pub url: String,
    child: Child,
}

impl Redis {
    /// Starts one writing nothing to disk but its log in `dir`, and waits until it listens.
    pub async fn start(dir: &Path) -> Result<Redis, Error> {
        let bin = find("redis-server").ok_or(Error::RedisMissing)?;
        let port = crate::harness::free_port()?;
        let log = std::fs::File::create(dir.join("redis.log"))
            .map_err(|e| Error::io("creating redis.log", e))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::io("opening redis.log", e))?;
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io("starting redis-server", e))?;
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::io(
            "redis-server did not listen within 5 s",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        ))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs the global-limit checks.
pub async fn run(ctx: &Ctx) -> Vec<Check> {
    let line = format!(
        "global: {{ limits: [ {{ key: header, name: x-user-id, requests: {PER_USER}, per: minute }} ] }}"
    );
    super::or_failed("global rate limit", &line, run_inner(ctx, &line).await)
}

fn who(o: &Outcome) -> String {
    match (o.status, &o.answer) {
        (200, Some(_)) => "200".into(),
        (s, None) => format!("{s} from Envoy"),
        (s, Some(_)) => format!("{s} from the upstream"),
    }
}

async fn run_inner(ctx: &Ctx, line: &str) -> Result<Vec<Check>, Error> {
    let dir = ctx.dir.join("global-rate-limit");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the directory", e))?;
    let redis = Redis::start(&dir).await?;
    let allow = policy("global-allow", "conformance-allow", "allow");
    let deny = policy("global-deny", "conformance-deny", "deny");
    let keys = keys_policy();
    let mut configs = Vec::new();
    for (name, p) in [
        ("global-allow", &allow),
        ("global-deny", &deny),
        ("global-keys", &keys),
    ] {
        let file = dir.join(format!("{name}.ratelimit.yaml"));
        std::fs::write(&file, service_config(name, p)?)
            .map_err(|e| Error::io("writing the rate-limit configuration", e))?;
        configs.push(file);
    }
    // A clock that stands still: the checks count within one window, whatever the time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let settings = Settings::new(configs, listen, redis.url.clone(), FailureMode::Allow);
    let service = weir_ratelimit::start(settings, Arc::new(ManualClock::new(now)))
        .await
        .map_err(|e| Error::RateLimit(e.to_string()))?;
    let rl = service.grpc_addr.to_string();
    let upstream = Upstream::start(UpstreamSpec::new("s-a", "s")).await?;
    let eps = [EndpointLine {
        subset: "s".into(),
        address: upstream.addr,
        locality: None,
    }];
    let caller = Caller::default();
    let mut proxies = Vec::new();
    for (name, p) in [
        ("global-allow-a", &allow),
        ("global-allow-b", &allow),
        ("global-deny", &deny),
        ("global-keys", &keys),
    ] {
        proxies.push(
            ctx.proxy(name, p, &caller, Some(&rl), &eps, DEFAULT_WORKERS)
                .await?,
        );
    }
    let [a, b, d, k] = &proxies[..] else {
        return Err(Error::RateLimit("four proxies expected".into()));
    };
    let mut checks = key_checks(k).await?;

    // One user through both proxies, alternately: the limit holds across them.
    let n = 2 * (PER_USER + 3);
    let mut tally = Tally::new();
    let mut via = Tally::new();
    for i in 0..n {
        let proxy: &Proxy = if i % 2 == 0 { a } else { b };
        let o = send(
            &ctx.client,
            &proxy.base,
            &Probe::get().header("x-user-id", "alice"),
        )
        .await;
        if o.status == 429 {
            via.add(if i % 2 == 0 { "429 via A" } else { "429 via B" });
        }
        tally.add(&who(&o));
    }
    checks.push(Check {
        feature: "global rate limit: one user, two Envoys".into(),
        policy_line: line.into(),
        requests: n,
        expected: format!(
            "{n} requests as x-user-id alice, alternately through Envoy A and B: {PER_USER} × \
             200, {} × 429",
            n - PER_USER
        ),
        observed: format!("{}; 429s by proxy: {}", tally.describe(), via.describe()),
        pass: tally.get("200") == PER_USER && tally.get("429 from Envoy") == n - PER_USER,
    });
    // The checks below mean something only when alice was limited.
    let alice_limited = tally.get("429 from Envoy") > 0;

    // Another user, and requests without the header, are not limited by alice's count.
    let mut others = Tally::new();
    for i in 0..PER_USER {
        let proxy: &Proxy = if i % 2 == 0 { a } else { b };
        let bob = send(
            &ctx.client,
            &proxy.base,
            &Probe::get().header("x-user-id", "bob"),
        )
        .await;
        others.add(&format!("bob {}", who(&bob)));
        let anon = send(&ctx.client, &proxy.base, &Probe::get()).await;
        others.add(&format!("no header {}", who(&anon)));
    }
    checks.push(Check {
        feature: "global rate limit: counted per user".into(),
        policy_line: line.into(),
        requests: 2 * PER_USER,
        expected: format!(
            "alice limited above; then {PER_USER} as bob and {PER_USER} without x-user-id, all \
             200"
        ),
        observed: format!("alice limited: {alice_limited}; {}", others.describe()),
        pass: alice_limited
            && others.get("bob 200") == PER_USER
            && others.get("no header 200") == PER_USER,
    });

    // The deny proxy answers while the service is up.
    let before = send(
        &ctx.client,
        &d.base,
        &Probe::get().header("x-user-id", "carol"),
    )
    .await;
    a.snapshot(ctx, "service-up").await;
    d.snapshot(ctx, "service-up").await;
    service
        .shutdown()
        .await
        .map_err(|e| Error::RateLimit(e.to_string()))?;
    let stopped = 5u64;
    let mut allowed = Tally::new();
    let mut denied = Tally::new();
    for _ in 0..stopped {
        let o = send(
            &ctx.client,
            &a.base,
            &Probe::get().header("x-user-id", "alice"),
        )
        .await;
        allowed.add(&who(&o));
        let o = send(
            &ctx.client,
            &d.base,
            &Probe::get().header("x-user-id", "carol"),
        )
        .await;
        denied.add(&who(&o));
    }
    checks.push(Check {
        feature: "global rate limit: failure_mode allow".into(),
        policy_line: format!("global: {{ failure_mode: allow, timeout_ms: {TIMEOUT_MS} }}"),
        requests: stopped,
        expected: format!(
            "alice limited above; rate-limit service stopped: {stopped} requests as alice all \
             200"
        ),
        observed: format!("alice limited: {alice_limited}; {}", allowed.describe()),
        pass: alice_limited && allowed.get("200") == stopped,
    });
    let refused = denied
        .keys()
        .all(|key| key.ends_with("from Envoy") && !key.starts_with("200"));
    checks.push(Check {
        feature: "global rate limit: failure_mode deny".into(),
        policy_line: format!("global: {{ failure_mode: deny, timeout_ms: {TIMEOUT_MS} }}"),
        requests: stopped + 1,
        expected: format!(
            "service up: 200; service stopped: {stopped} requests all refused by Envoy (never \
             reach the upstream)"
        ),
        observed: format!(
            "service up: {}; stopped: {}",
            who(&before),
            denied.describe()
        ),
        pass: before.status == 200 && denied.total() == stopped && refused,
    });
    drop(redis);
    Ok(checks)
}

/// Requests through the keys proxy from `127.0.0.<last>`, one client per address.
async fn from(
    k: &Proxy,
    last: u8,
    probes: &[Probe],
    tally: &mut Tally,
    label: &str,
) -> Result<(), Error> {
    let client = crate::harness::client(Some([127, 0, 0, last].into()))?;
    for p in probes {
        let o = send(&client, &k.base, p).await;
        tally.add(&format!("{label} {}", who(&o)));
    }
    Ok(())
}

/// Limits by client address (each address its own count) and by one path (any query string,
/// nothing else), through the keys proxy.
async fn key_checks(k: &Proxy) -> Result<Vec<Check>, Error> {
    let line = format!("global: {{ {} }}", keys_limits());
    let over = PER_ADDRESS + 2;
    let mut by_address = Tally::new();
    let other = Probe::get().path("/other");
    from(
        k,
        2,
        &vec![other.clone(); over as usize],
        &mut by_address,
        "127.0.0.2",
    )
    .await?;
    from(
        k,
        3,
        &vec![other; PER_ADDRESS as usize],
        &mut by_address,
        "127.0.0.3",
    )
    .await?;
    let address = Check {
        feature: "global rate limit: per client address".into(),
        policy_line: line.clone(),
        requests: over + PER_ADDRESS,
        expected: format!(
            "{over} from 127.0.0.2: {PER_ADDRESS} × 200, 2 × 429; {PER_ADDRESS} from 127.0.0.3: \
             all 200"
        ),
        observed: by_address.describe(),
        pass: by_address.get("127.0.0.2 200") == PER_ADDRESS
            && by_address.get("127.0.0.2 429 from Envoy") == 2
            && by_address.get("127.0.0.3 200") == PER_ADDRESS,
    };
    // Each request from its own address, so that only the path's count can refuse it.
    let mut by_path = Tally::new();
    let sends = [
        ("/checkout", 10),
        ("/checkout?step=2", 11),
        ("/checkout", 12),
        ("/checkout", 13),
        ("/checkoutx", 14),
        ("/other", 15),
    ];
    for (p, last) in sends {
        from(k, last, &[Probe::get().path(p)], &mut by_path, p).await?;
    }
    let path = Check {
        feature: "global rate limit: one path".into(),
        policy_line: line,
        requests: sends.len() as u64,
        expected: format!(
            "each from its own address: /checkout, /checkout?step=2, /checkout: 200 ({PER_PATH} \
             counted); a 4th /checkout: 429; /checkoutx and /other: 200 (not the path)"
        ),
        observed: by_path.describe(),
        pass: by_path.get("/checkout 200") == 2
            && by_path.get("/checkout?step=2 200") == 1
            && by_path.get("/checkout 429 from Envoy") == 1
            && by_path.get("/checkoutx 200") == 1
            && by_path.get("/other 200") == 1,
    };
    Ok(vec![address, path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_configuration_comes_from_the_policy() {
        let text = service_config("g", &policy("g", "dom", "deny")).unwrap();
        assert!(text.contains("domain: dom"), "{text}");
        assert!(text.contains("x-user-id"), "{text}");
        assert!(text.contains("requests_per_unit: 10"), "{text}");
        let text = service_config("k", &keys_policy()).unwrap();
        assert!(text.contains("key: remote_address"), "{text}");
        assert!(text.contains("value: /checkout"), "{text}");
    }
}
