//! `weir operator` end to end against the fake API server: Lease leader election
//! (kube-lease-manager), the kube-runtime controller fed by a real list + watch stream, the
//! HTTP endpoints, losing the Lease, and a graceful shutdown that hands over to a standby.
//!
//! Leader election runs on the wall clock (kube-lease-manager reads `SystemTime` and sleeps
//! on tokio's real timer), so time cannot be injected here. Instead no outcome depends on how
//! fast the machine is: the Leases are [`LEASE_S`] long and renewed every fifth of that, so a
//! leader keeps its Lease through a stall of many seconds (a standby may take over only after
//! a release, never because a renewal was late); an intruder's Lease is an hour long; each
//! outcome is awaited with a deadline ([`DEADLINE`]) far beyond what it takes; and nothing
//! asserts how long anything took.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use support::{
    Canned, FakeApiServer, Permission, drop_rate_limit_and_monitoring, example_policy, lease_path,
    readsplit_json, rs_path, saved_state, tp_path, virtual_service, vs_path, with_rate_limits,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_operator::operator::{OperatorError, OperatorOptions, lease_grace_s, serve};

const NS: &str = "db";
const LEASE_NS: &str = "weir-system";
const LEASE: &str = "weir-operator";
const ALL_READSPLITS: &str = "/apis/weir.dev/v1alpha1/readsplits";
/// Long enough for anything here to happen many times over on a loaded CI machine (the
/// slowest, a standby taking over a released Lease, takes up to one [`LEASE_S`]).
const DEADLINE: Duration = Duration::from_secs(150);
/// The operators' Lease duration, seconds. The leader renews it every 6 s, so it would lose
/// the Lease to the standby only by missing renewals for 24 s.
const LEASE_S: u64 = 30;

/// One running operator instance.
struct Instance {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), OperatorError>>,
}

impl Instance {
    async fn start(api: &FakeApiServer, sources: &Canned, identity: &str) -> Instance {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = OperatorOptions {
            listen: addr,
            namespace: None,
            lease_name: LEASE.into(),
            lease_namespace: LEASE_NS.into(),
            identity: identity.into(),
            lease_duration_s: LEASE_S,
            concurrency: 16,
        };
        let clock: Arc<dyn Fn() -> Timestamp + Send + Sync> = Arc::new(Timestamp::now);
        let task = tokio::spawn(serve(
            api.client(),
            listener,
            sources.clone(),
            clock,
            opts,
            async move {
                let _ = stopped.await;
            },
        ));
        Instance {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The value of an unlabelled metric on `/metrics`.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Asks it to stop and waits until it has.
    async fn shut_down(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the operator did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Waits until `check` holds; fails with `what` at the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn holder(api: &FakeApiServer) -> Option<String> {
    api.get(&lease_path(LEASE_NS, LEASE))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

/// replica-1's weight in the VirtualService's TCP route.
fn replica1_weight(api: &FakeApiServer) -> u64 {
    api.get(&vs_path(NS, "mysql")).unwrap()["spec"]["tcp"][0]["route"][1]["weight"]
        .as_u64()
        .unwrap()
}

fn saved_decisions(api: &FakeApiServer) -> Option<u64> {
    saved_state(api, NS, "orders")?["decisions"].as_u64()
}

/// A cluster with one enforcing ReadSplit deciding every second, whose replica-1 is 45 s
/// behind.
fn cluster() -> (FakeApiServer, Canned) {
    let api = support::cluster_api();
    api.put(&vs_path(NS, "mysql"), virtual_service(NS, "mysql"));
    let mut rs = readsplit_json(NS, "orders", "mysql", "Enforce");
    rs["spec"]["intervalSeconds"] = json!(1);
    api.put(&rs_path(NS, "orders"), rs);
    let sources = Canned::default();
    sources.set(&format!("{NS}/orders"), Some(&[45.0, 0.2]));
    (api, sources)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_governs_through_the_watch_and_releases_the_lease_on_shutdown() {
    let (api, sources) = cluster();
    let a = Instance::start(&api, &sources, "weir-a").await;

    eventually("weir-a holds the Lease", || async {
        holder(&api).as_deref() == Some("weir-a")
    })
    .await;
    eventually("replica-1 is drained", || async {
        replica1_weight(&api) == 0
    })
    .await;
    assert_eq!(api.open_watches(ALL_READSPLITS), 1);

    // It listed ReadSplits only once it held the Lease.
    let requests = api.requests();
    let locked = requests
        .iter()
        .position(|r| {
            r.path == lease_path(LEASE_NS, LEASE)
                && r.method == Method::PATCH
                && r.body.as_ref().unwrap()["spec"]["holderIdentity"] == "weir-a"
        })
        .expect("no Lease acquisition");
    let listed = requests
        .iter()
        .position(|r| r.path == ALL_READSPLITS && r.method == Method::GET)
        .expect("ReadSplits never listed");
    assert!(
        listed > locked,
        "listed ReadSplits before holding the Lease"
    );

    // The endpoints.
    assert_eq!(a.get("/healthz").await.0, 200);
    assert_eq!(a.get("/readyz").await.0, 200);
    assert_eq!(a.metric("weir_operator_leader").await, Some(1.0));
    assert_eq!(a.metric("weir_operator_readsplits").await, Some(1.0));
    let (_, metrics) = a.get("/metrics").await;
    assert!(
        metrics.contains(
            r#"weir_operator_weight{namespace="db",readsplit="orders",destination="replica-1"} 0"#
        ),
        "{metrics}"
    );

    // A spec change arrives through the watch and acts at once: Shadow stops writing.
    let after_drain = api.count(&Method::PATCH, &vs_path(NS, "mysql"));
    let status_patches = api.count(&Method::PATCH, &format!("{}/status", rs_path(NS, "orders")));
    let mut rs = api.get(&rs_path(NS, "orders")).unwrap();
    rs["spec"]["mode"] = json!("Shadow");
    api.put(&rs_path(NS, "orders"), rs);
    eventually("the new generation is observed", || async {
        api.get(&rs_path(NS, "orders")).unwrap()["status"]["observedGeneration"] == 2
    })
    .await;
    assert!(
        api.count(&Method::PATCH, &format!("{}/status", rs_path(NS, "orders"))) > status_patches
    );
    sources.set(&format!("{NS}/orders"), Some(&[0.2, 0.2]));
    let decided = api.count(&Method::PATCH, &format!("{}/status", rs_path(NS, "orders")));
    eventually("two more decisions", || async {
        api.count(&Method::PATCH, &format!("{}/status", rs_path(NS, "orders"))) >= decided + 2
    })
    .await;
    assert_eq!(
        api.count(&Method::PATCH, &vs_path(NS, "mysql")),
        after_drain
    );
    assert_eq!(
        replica1_weight(&api),
        0,
        "shadow mode wrote the VirtualService"
    );

    a.shut_down().await;
    assert_eq!(holder(&api), None, "the Lease was not released");
    assert_eq!(api.open_watches(ALL_READSPLITS), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_then_takes_over_from_the_saved_state() {
    let (api, sources) = cluster();
    let a = Instance::start(&api, &sources, "weir-a").await;
    eventually("weir-a holds the Lease", || async {
        holder(&api).as_deref() == Some("weir-a")
    })
    .await;
    eventually("weir-a drained replica-1 and saved", || async {
        replica1_weight(&api) == 0 && saved_decisions(&api).is_some()
    })
    .await;

    let b = Instance::start(&api, &sources, "weir-b").await;
    eventually("weir-b is ready", || async {
        b.get("/readyz").await.0 == 200
    })
    .await;
    // weir-b has read the Lease held by weir-a and stands by.
    eventually("weir-b reports it is not the leader", || async {
        b.metric("weir_operator_leader").await == Some(0.0)
    })
    .await;
    assert_eq!(holder(&api).as_deref(), Some("weir-a"));
    assert_eq!(
        api.open_watches(ALL_READSPLITS),
        1,
        "two instances are watching"
    );
    assert_eq!(b.metric("weir_operator_readsplits").await, Some(0.0));

    // Hand-over: weir-a stops and releases; weir-b takes the Lease (when it next looks, at
    // most a Lease duration later) and carries on from the state ConfigMap.
    let saved_by_a = saved_decisions(&api).unwrap();
    a.shut_down().await;
    eventually("weir-b holds the Lease", || async {
        holder(&api).as_deref() == Some("weir-b")
    })
    .await;
    eventually("weir-b governs", || async {
        b.metric("weir_operator_readsplits").await == Some(1.0)
    })
    .await;
    // replica-1 recovers: weir-b gives it reads back and saves at the change of weights.
    // Its decision count continues weir-a's (a fresh start would count from 1).
    sources.set(&format!("{NS}/orders"), Some(&[0.2, 0.2]));
    eventually("replica-1 gets reads back", || async {
        replica1_weight(&api) > 0
    })
    .await;
    eventually("weir-b saved", || async {
        saved_decisions(&api).is_some_and(|d| d > saved_by_a)
    })
    .await;
    let saved = saved_state(&api, NS, "orders").unwrap();
    assert_eq!(saved["inForce"]["replicas"][0], replica1_weight(&api));

    b.shut_down().await;
    assert_eq!(holder(&api), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stops_governing_at_once() {
    let (api, sources) = cluster();
    let a = Instance::start(&api, &sources, "weir-a").await;
    eventually("weir-a drained replica-1", || async {
        replica1_weight(&api) == 0
    })
    .await;

    // Another instance takes the Lease (as after a partition that outlived weir-a's term) and
    // keeps renewing it, as a live leader does. Its Lease is an hour long, so however late
    // this loop runs on a loaded machine, weir-a never sees it expire.
    let intruder = {
        let api = api.clone();
        tokio::spawn(async move {
            let acquired = serde_json::to_value(MicroTime(Timestamp::now())).unwrap();
            loop {
                let now = serde_json::to_value(MicroTime(Timestamp::now())).unwrap();
                api.patch_as(
                    &lease_path(LEASE_NS, LEASE),
                    "kube-lease-weir-z",
                    &json!({ "spec": { "holderIdentity": "weir-z", "acquireTime": acquired, "renewTime": now, "leaseDurationSeconds": 3600 } }),
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    eventually("weir-a steps down", || async {
        a.metric("weir_operator_leader").await == Some(0.0)
    })
    .await;
    eventually("weir-a closed its watch", || async {
        api.open_watches(ALL_READSPLITS) == 0
    })
    .await;
    assert_eq!(a.metric("weir_operator_readsplits").await, Some(0.0));
    assert_eq!(
        holder(&api).as_deref(),
        Some("weir-z"),
        "weir-a took the Lease back"
    );

    // Nothing it still held may act: replica-1 recovers and the spec changes, yet no write.
    let writes = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .filter(|r| r.method != Method::GET && !r.path.contains("/leases/"))
            .count()
    };
    let before = writes(&api);
    sources.set(&format!("{NS}/orders"), Some(&[0.2, 0.2]));
    let mut rs = api.get(&rs_path(NS, "orders")).unwrap();
    rs["spec"]["intervalSeconds"] = json!(2);
    api.put(&rs_path(NS, "orders"), rs);
    // Three of its decision intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(writes(&api), before, "a deposed leader kept writing");
    assert_eq!(replica1_weight(&api), 0);

    assert_eq!(a.metric("weir_operator_leader").await, Some(0.0));

    a.shut_down().await;
    intruder.abort();
    // It does not release a Lease it no longer holds.
    assert_eq!(holder(&api).as_deref(), Some("weir-z"));
}

#[test]
fn the_leader_renews_often_enough_to_ride_out_a_stall() {
    assert_eq!(lease_grace_s(2), 1);
    // A 15-s Lease renewed every 3 s, a 30-s one every 6 s.
    assert_eq!(lease_grace_s(15), 12);
    assert_eq!(lease_grace_s(LEASE_S), 24);
    for duration in 2..=3600 {
        let grace = lease_grace_s(duration);
        // What kube-lease-manager accepts, renewing at least every fifth of the Lease.
        assert!(0 < grace && grace < duration, "{duration}: {grace}");
        assert!(
            duration - grace <= (duration / 5).max(1),
            "{duration}: {grace}"
        );
    }
}

/// Permissions the deployed RBAC grants that no test scenario can exercise, each with why the
/// operator needs it anyway.
const GRANTED_FOR_WHAT_TESTS_CANNOT_SHOW: &[(&str, &str)] = &[(
    "patch events (events.k8s.io)",
    "kube-runtime's event recorder patches an event that repeats (same reason and note) instead \
     of creating it again; every WeightsChanged note here differs",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_rbac_is_exactly_what_the_whole_operator_uses() {
    let (api, sources) = cluster();
    let tp_path = |name: &str| tp_path("shop", name);
    let policy = with_rate_limits(example_policy("canary.yaml"));
    api.put(&tp_path("checkout"), policy);
    let a = Instance::start(&api, &sources, "weir-a").await;
    eventually("replica-1 is drained", || async {
        replica1_weight(&api) == 0 && saved_decisions(&api).is_some()
    })
    .await;
    let filters = "/apis/networking.istio.io/v1alpha3/namespaces/shop/envoyfilters";
    let has_filter = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .any(|r| r.path.starts_with(filters) && r.method == Method::PATCH)
    };
    eventually("the policy is applied", || async {
        let tp = api.get(&tp_path("checkout")).unwrap();
        tp["status"]["conditions"][0]["reason"] == "Applied" && has_filter(&api)
    })
    .await;
    // Without its rate limit the policy's EnvoyFilter goes.
    drop_rate_limit_and_monitoring(&api, &tp_path("checkout"));
    eventually("the EnvoyFilter is pruned", || async {
        let tp = api.get(&tp_path("checkout")).unwrap();
        tp["status"]["observedGeneration"] == 2
            && api
                .requests()
                .iter()
                .any(|r| r.path.starts_with(filters) && r.method == Method::DELETE)
    })
    .await;
    a.shut_down().await;

    assert!(
        api.forbidden().is_empty(),
        "refused: {:#?}",
        api.forbidden()
    );
    let used: BTreeSet<String> = api
        .used_permissions()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut granted = BTreeSet::new();
    for rule in support::deployed_rbac().rules {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    granted.insert(
                        Permission {
                            group: group.clone(),
                            resource: resource.clone(),
                            verb: verb.clone(),
                        }
                        .to_string(),
                    );
                }
            }
        }
    }
    let unused: Vec<&String> = granted.difference(&used).collect();
    let explained: Vec<&str> = GRANTED_FOR_WHAT_TESTS_CANNOT_SHOW
        .iter()
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(
        unused, explained,
        "granted but never used by the operator (remove them from deploy.rs, or explain them)"
    );
}
