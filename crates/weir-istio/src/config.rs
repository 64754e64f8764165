//! What the operator writes in the config file to point Weir at one route of one
//! VirtualService, and how that route's destinations map onto Weir's weights.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The Istio actuator's settings. Unknown keys are rejected, so a typo fails at load time
/// instead of silently selecting nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IstioConfig {
    /// Namespace of the VirtualService.
    pub namespace: String,
    /// Name of the VirtualService (`metadata.name`).
    pub virtual_service: String,
    /// Which route inside the VirtualService Weir manages. Every other route is left alone.
    pub route: RouteSelector,
    /// How the route's destinations correspond to the primary and the replicas.
    pub layout: Layout,
    /// How many times a patch that lost a race (HTTP 409, or 422 from a failed `test`) is
    /// retried from a fresh read before giving up with a conflict.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_max_retries() -> u32 {
    3
}

/// How to find the one managed route. Exactly one route must match.
///
/// In TOML: `route = { http_name = "reads" }`, `route = { tcp_port = 3306 }` or
/// `route = { hosts = ["mysql-primary", "mysql-replicas"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RouteSelector {
    /// The `spec.http[]` route with this `name`. Istio does not enforce unique names, so two
    /// routes with the same name are an error, not a guess.
    HttpName(String),
    /// The `spec.tcp[]` route one of whose `match[].port` equals this port. TCP routes have no
    /// name; this is how Argo Rollouts finds them too.
    TcpPort(u32),
    /// The route (`http` or `tcp`) whose set of destination hosts is exactly this set (order
    /// and repetition ignored: `["mysql"]` matches a route whose destinations are all
    /// `mysql` with different subsets).
    Hosts(Vec<String>),
}

impl fmt::Display for RouteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteSelector::HttpName(name) => write!(f, "http route named {name:?}"),
            RouteSelector::TcpPort(port) => write!(f, "tcp route matching port {port}"),
            RouteSelector::Hosts(hosts) => write!(f, "route with destination hosts {hosts:?}"),
        }
    }
}

/// How the managed route's destinations correspond to Weir's weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Layout {
    /// Two Kubernetes services, the seed design's setup: one for the primary and one that
    /// load-balances over every replica. Istio cannot weight replicas individually here, so
    /// Weir's replica weights are summed onto the reader destination.
    TwoServices {
        /// Destination host of the primary, exactly as written in the VirtualService.
        primary_host: String,
        /// Destination host of the reader service, exactly as written in the VirtualService.
        replicas_host: String,
    },
    /// One destination per database server (usually one host with a DestinationRule subset
    /// per pod), so every replica gets its own weight.
    PerReplica {
        /// The primary's destination.
        primary: Destination,
        /// One destination per replica, in Weir's replica order.
        replicas: Vec<Destination>,
    },
}

impl Layout {
    /// How many destinations the managed route must have.
    pub fn destination_count(&self) -> usize {
        match self {
            Layout::TwoServices { .. } => 2,
            Layout::PerReplica { replicas, .. } => 1 + replicas.len(),
        }
    }
}

/// One `route[].destination` of a VirtualService route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// `destination.host`, exactly as written in the VirtualService (short name or FQDN).
    pub host: String,
    /// `destination.subset`, if the route names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subset {
            Some(subset) => write!(f, "{}/{subset}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_selector_and_layout_from_json() {
        let two: IstioConfig = serde_json::from_value(serde_json::json!({
            "namespace": "db",
            "virtual_service": "mysql",
            "route": { "tcp_port": 3306 },
            "layout": { "two_services": { "primary_host": "p", "replicas_host": "r" } }
        }))
        .unwrap();
        assert_eq!(two.route, RouteSelector::TcpPort(3306));
        assert_eq!(two.max_retries, 3);
        assert_eq!(two.layout.destination_count(), 2);

        let per: IstioConfig = serde_json::from_value(serde_json::json!({
            "namespace": "db",
            "virtual_service": "mysql",
            "route": { "http_name": "reads" },
            "layout": { "per_replica": {
                "primary": { "host": "mysql", "subset": "primary" },
                "replicas": [{ "host": "mysql", "subset": "r0" }, { "host": "mysql-r1" }]
            } },
            "max_retries": 5
        }))
        .unwrap();
        assert_eq!(per.route, RouteSelector::HttpName("reads".into()));
        assert_eq!(per.layout.destination_count(), 3);
        assert_eq!(per.max_retries, 5);

        let hosts: RouteSelector =
            serde_json::from_value(serde_json::json!({ "hosts": ["a", "b"] })).unwrap();
        assert_eq!(hosts, RouteSelector::Hosts(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn rejects_unknown_fields() {
        let typo = serde_json::from_value::<IstioConfig>(serde_json::json!({
            "namespace": "db",
            "virtual_service": "mysql",
            "route": { "tcp_port": 3306 },
            "layout": { "two_services": { "primary_host": "p", "replica_host": "r" } }
        }));
        assert!(typo.is_err());
        let extra = serde_json::from_value::<Destination>(serde_json::json!({
            "host": "h", "port": 3306
        }));
        assert!(extra.is_err());
    }
}
