//! Weir's Istio actuator: moves read traffic by editing the weights of **one** route of an
//! Istio `VirtualService` (`networking.istio.io/v1`), and nothing else.
//!
//! # Why a JSON Patch, and what it looks like
//!
//! The seed design sent a JSON merge patch of `spec.http`, which replaces the whole list and so
//! deleted every other route, the write route included. Strategic merge patch does not work on
//! custom resources, and server-side apply treats `http`/`tcp` as atomic lists, so it would
//! take ownership of every route. Weir therefore only ever sends an RFC 6902 JSON Patch (never
//! a replace), built by [`plan_patch`] from a fresh GET:
//!
//! 1. `test /metadata/resourceVersion` — the object has not changed since the read;
//! 2. `test` of the route's identity at its index: `/spec/http/<i>/name` for a named HTTP
//!    route, `/spec/tcp/<i>/match` for a TCP route (TCP routes have no name);
//! 3. `test /spec/<kind>/<i>/route/<j>/destination` for every destination (host, subset and
//!    port exactly as read);
//! 4. then only `replace` (or `add`, if absent) of `/spec/<kind>/<i>/route/<j>/weight`.
//!
//! Other routes, matches, retries, fault injection and metadata are never touched. If another
//! writer got in between, the API server refuses the whole patch (422 for a failed `test`, 409
//! for a conflict); [`IstioActuator`] then re-reads and retries up to `max_retries` times and
//! reports [`ActuatorError::Conflict`](weir_edge::ActuatorError::Conflict) after that. A
//! missing VirtualService, a missing or ambiguous route and a route whose destinations are not
//! the configured [`Layout`] are errors before anything is written. Invalid weights (over
//! int32, zero total, wrong count) are never sent. When the route already has the target
//! weights nothing is sent at all, so re-applying every interval costs one GET.
//!
//! # Choosing the route and the layout
//!
//! [`RouteSelector`] names the route: an HTTP route by `name` (Istio does not enforce unique
//! names, so two matches are an error), a TCP route by `match[].port` (as Argo Rollouts does),
//! or any route by its exact set of destination hosts. [`Layout`] says how its destinations
//! map onto Weir's weights: `two_services` (a primary service and one reader service; Weir's
//! replica weights are summed onto the reader, and [`IstioActuator::read_current`] splits the
//! reader's share evenly back over the replicas) or `per_replica` (one destination per
//! database server, usually DestinationRule subsets, so each replica gets its own weight).
//!
//! # TCP: weights move new connections only
//!
//! MySQL is TCP. Istio applies TCP route weights when a connection is opened; connections that
//! already exist — and database clients pool them — stay where they are. See
//! [`connection_lifetime_note`]: without a bounded connection lifetime a weight change may not
//! take effect for hours.
//!
//! # The kube dependency
//!
//! With the default `client` feature this crate depends on `kube` 5 and `k8s-openapi` 0.29
//! **without** a Kubernetes version feature; the binary that links it must enable exactly one
//! (e.g. `k8s-openapi/latest`). A crate that only needs the config types ([`IstioConfig`]) or
//! the IO-free planner ([`plan_patch`]) depends on it with `default-features = false` and so
//! builds and tests without kube. The tests enable `latest` through a dev-dependency and drive
//! `IstioActuator` against the fake API server of `weir-test-support` (a `tower_test` mock),
//! so they need no cluster.

#[cfg(feature = "client")]
mod actuator;
mod config;
mod error;
mod plan;

#[cfg(feature = "client")]
pub use actuator::{ApplyOutcome, FIELD_MANAGER, IstioActuator, virtual_service_resource};
pub use config::{Destination, IstioConfig, Layout, RouteSelector};
pub use error::IstioError;
pub use plan::{Plan, RouteKind, current_weights, plan_patch};

/// Why a weight change on a TCP route may not show, and what to configure so that it does.
/// Meant for `weir check`, the docs and the controller's status.
pub fn connection_lifetime_note() -> &'static str {
    "Istio applies TCP route weights to NEW connections only: pooled database connections stay \
     on the server they were opened to, so a weight change takes effect only as connections are \
     recycled. Bound their lifetime so that a shift completes: set \
     `trafficPolicy.connectionPool.tcp.maxConnectionDuration` (for example 300s) in the \
     DestinationRule of the database hosts, or a maximum connection lifetime in the client pool \
     (HikariCP maxLifetime, Go's SetConnMaxLifetime, SQLAlchemy pool_recycle). The same holds \
     for HAProxy in TCP mode."
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_note_names_the_fix() {
        let note = super::connection_lifetime_note();
        assert!(note.contains("maxConnectionDuration"));
        assert!(note.contains("NEW connections"));
    }
}
