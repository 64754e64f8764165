//! [`HaproxyActuator`]: Weir's weights onto the servers of one HAProxy backend.

use serde::{Deserialize, Serialize};
use weir_core::{Decision, Weights};
use weir_edge::{Actuator, ActuatorError};

use crate::address::RuntimeAddress;
use crate::client::{self, DEFAULT_TIMEOUT_S, HaproxyError, RuntimeApi};
use crate::reply::{self, ServerState};

/// Which HAProxy backend and servers Weir drives (the `[actuator.haproxy]` part of a config
/// file).
///
/// ```toml
/// address = "tcp://127.0.0.1:9999"     # or "unix:///run/haproxy/admin.sock"
/// backend = "mysql_reads"
/// timeout_s = 2                         # optional, per runtime API command
/// primary_server = "primary"
/// replica_servers = ["replica-1", "replica-2"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConfig {
    /// The runtime API (`stats socket ... level admin`).
    pub address: RuntimeAddress,
    /// The backend (or `listen` section) that serves reads.
    pub backend: String,
    /// Time allowed for each runtime API command, seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// The server name of the primary in that backend.
    pub primary_server: String,
    /// One server name per replica, in Weir's replica order.
    pub replica_servers: Vec<String>,
}

fn default_timeout_s() -> f64 {
    DEFAULT_TIMEOUT_S
}

impl HaproxyConfig {
    /// Builds the actuator this configuration describes (after [`HaproxyConfig::validate`]).
    /// Connects to nothing yet.
    pub fn build(&self) -> Result<HaproxyActuator, HaproxyError> {
        HaproxyActuator::new(self.clone())
    }

    /// Checks names (HAProxy identifiers, no duplicates) and the timeout.
    pub fn validate(&self) -> Result<(), HaproxyError> {
        reply::check_name("backend", &self.backend)
            .map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
        let mut seen: Vec<&str> = Vec::with_capacity(self.replica_servers.len() + 1);
        for name in self.servers() {
            reply::check_name("server", name)
                .map_err(|e| HaproxyError::InvalidInput(e.to_string()))?;
            if seen.contains(&name) {
                return Err(HaproxyError::InvalidInput(format!(
                    "server `{name}` is listed twice in the HAProxy actuator config (primary_server and replica_servers must all differ)"
                )));
            }
            seen.push(name);
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(HaproxyError::InvalidInput(format!(
                "timeout_s must be a positive number of seconds, got {}",
                self.timeout_s
            )));
        }
        Ok(())
    }

    /// Server names in Weir's order: the primary, then each replica.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary_server.as_str())
            .chain(self.replica_servers.iter().map(String::as_str))
    }
}

/// Weir's weight for a destination → HAProxy's server weight. The identity.
///
/// Weir's weights are percent points (they sum to [`Weights::TOTAL`] = 100), and HAProxy's
/// runtime weights are any integer in `0..=256`, used relative to each other by the
/// dynamic algorithms (`roundrobin`, `leastconn`). So 0..=100 is passed through unchanged:
/// no rounding, the same proportions, and the numbers in `show servers state` match
/// Weir's logs. A server at weight 0 gets no new connections (it stays up and keeps the
/// connections it has).
pub fn haproxy_weight(weir_weight: u32) -> u32 {
    weir_weight
}

/// One `set weight` the actuator will send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    server: String,
    weight: u32,
    command: String,
}

/// Applies decisions by setting server weights through HAProxy's runtime API, then reading
/// them back.
///
/// The weights are runtime state: a reload or restart of HAProxy brings back the weights of
/// the configuration file until the next control interval re-applies Weir's (every
/// interval re-applies, which is also how drift is repaired). The backend must use a
/// dynamic algorithm (`balance roundrobin` or `leastconn`); HAProxy rejects intermediate
/// weights on static ones (`static-rr`, non-consistent hashing), and the rejection
/// surfaces as [`ActuatorError::Rejected`].
#[derive(Debug, Clone)]
pub struct HaproxyActuator {
    config: HaproxyConfig,
    api: RuntimeApi,
}

impl HaproxyActuator {
    /// An actuator for `config`, after [`HaproxyConfig::validate`]. Connects to nothing yet.
    pub fn new(config: HaproxyConfig) -> Result<HaproxyActuator, HaproxyError> {
        config.validate()?;
        let api = RuntimeApi::new(config.address.clone(), config.timeout_s)?;
        Ok(HaproxyActuator { config, api })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HaproxyConfig {
        &self.config
    }

    /// The runtime API client, for commands the actuator does not wrap.
    pub fn api(&self) -> &RuntimeApi {
        &self.api
    }

    /// The exact `set weight` commands [`Actuator::apply`] would send for `decision`, in
    /// order (for dry-run and `weir check`). Each is followed, once all are sent, by a
    /// `get weight` of the same server to check it took.
    ///
    /// Servers that get weight are set before servers that lose it all, so that the backend
    /// never has every server at 0 in between (which would refuse new connections).
    pub fn plan(&self, decision: &Decision) -> Result<Vec<String>, HaproxyError> {
        Ok(self
            .steps(&decision.weights)?
            .into_iter()
            .map(|s| s.command)
            .collect())
    }

    fn steps(&self, weights: &Weights) -> Result<Vec<Step>, HaproxyError> {
        let n = self.config.replica_servers.len();
        if weights.replicas.len() != n {
            return Err(HaproxyError::InvalidInput(format!(
                "the decision has {} replica weights but the HAProxy actuator has {n} replica servers ({})",
                weights.replicas.len(),
                self.config.replica_servers.join(", ")
            )));
        }
        if weights.total() == 0 {
            return Err(HaproxyError::InvalidInput(
                "refusing to set every server's weight to 0: HAProxy would refuse all new connections".into(),
            ));
        }
        let mut steps = Vec::with_capacity(n + 1);
        for (server, weight) in self.config.servers().zip(weights.iter()) {
            let weight = haproxy_weight(weight);
            steps.push(Step {
                server: server.to_owned(),
                weight,
                command: client::set_weight_command(&self.config.backend, server, weight)?,
            });
        }
        // Stable: within each group Weir's order (primary, then replicas) is kept.
        steps.sort_by_key(|s| s.weight == 0);
        Ok(steps)
    }

    /// Sets `weights` and reads every server back. The inherent form of
    /// [`Actuator::apply`], with the detailed error.
    pub async fn apply_weights(&self, weights: &Weights) -> Result<(), HaproxyError> {
        let steps = self.steps(weights)?;
        for step in &steps {
            self.api
                .set_weight(&self.config.backend, &step.server, step.weight)
                .await?;
        }
        for step in &steps {
            let got = self
                .api
                .get_weight(&self.config.backend, &step.server)
                .await?;
            if got.current != step.weight {
                return Err(HaproxyError::ReadBack {
                    backend: self.config.backend.clone(),
                    server: step.server.clone(),
                    expected: step.weight,
                    got: got.current,
                });
            }
        }
        tracing::debug!(backend = %self.config.backend, %weights, "haproxy weights applied");
        Ok(())
    }

    /// The weights HAProxy has now, as Weir weights: normalised to sum to
    /// [`Weights::TOTAL`] with the largest-remainder rounding of [`Weights::from_parts`]
    /// (so weights Weir set read back exactly). For `weir check` and for start-up, to begin
    /// from what is in force. Every configured server at weight 0 is an error: there is no
    /// split to report.
    pub async fn read_current(&self) -> Result<Weights, HaproxyError> {
        let mut raw = Vec::with_capacity(self.config.replica_servers.len() + 1);
        for server in self.config.servers() {
            raw.push(
                self.api
                    .get_weight(&self.config.backend, server)
                    .await?
                    .current,
            );
        }
        weights_from_haproxy(&self.config.backend, &raw)
    }

    /// `show servers state` of the backend, reduced to the configured servers in Weir's
    /// order (primary first). A configured server missing from the backend is an error
    /// naming it. For `weir check`: shows which servers are up, in maintenance or draining.
    pub async fn servers_state(&self) -> Result<Vec<ServerState>, HaproxyError> {
        let rows = self.api.show_servers_state(&self.config.backend).await?;
        self.config
            .servers()
            .map(|name| {
                rows.iter()
                    .find(|r| r.name == name)
                    .cloned()
                    .ok_or_else(|| HaproxyError::Rejected {
                        command: format!("show servers state {}", self.config.backend),
                        reply: format!(
                            "backend `{}` has no server `{name}` (it has: {})",
                            self.config.backend,
                            rows.iter()
                                .map(|r| r.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            })
            .collect()
    }
}

/// Raw HAProxy weights (primary first) → Weir weights summing to [`Weights::TOTAL`].
fn weights_from_haproxy(backend: &str, raw: &[u32]) -> Result<Weights, HaproxyError> {
    let total: u64 = raw.iter().map(|&w| u64::from(w)).sum();
    let Some((&primary, replicas)) = raw.split_first() else {
        return Err(HaproxyError::InvalidInput("no servers configured".into()));
    };
    if total == 0 {
        return Err(HaproxyError::AllZero {
            backend: backend.to_owned(),
        });
    }
    if total == u64::from(Weights::TOTAL) {
        // Weir's own points (or a file written in them): exact, no rounding, so comparing
        // with what Weir applied shows drift and nothing else.
        return Ok(Weights {
            primary,
            replicas: replicas.to_vec(),
        });
    }
    let factors: Vec<f64> = replicas.iter().map(|&w| f64::from(w)).collect();
    Ok(Weights::from_parts(
        f64::from(primary) / total as f64,
        &factors,
    ))
}

impl From<HaproxyError> for ActuatorError {
    fn from(e: HaproxyError) -> ActuatorError {
        let message = e.to_string();
        match e {
            HaproxyError::Unreachable { .. } | HaproxyError::Io { .. } => {
                ActuatorError::Unreachable(message)
            }
            HaproxyError::Timeout { after_s, .. } => ActuatorError::Timeout { after_s },
            HaproxyError::Rejected { .. } => ActuatorError::Rejected(message),
            HaproxyError::BadReply { .. }
            | HaproxyError::ReadBack { .. }
            | HaproxyError::AllZero { .. } => ActuatorError::BadResponse(message),
            HaproxyError::InvalidInput(_) => ActuatorError::Other(message),
        }
    }
}

impl Actuator for HaproxyActuator {
    async fn apply(&mut self, decision: &Decision) -> Result<(), ActuatorError> {
        self.apply_weights(&decision.weights)
            .await
            .map_err(ActuatorError::from)
    }

    fn name(&self) -> &str {
        "haproxy"
    }

    async fn read_current(&self, _replicas: usize) -> Result<Weights, ActuatorError> {
        HaproxyActuator::read_current(self)
            .await
            .map_err(ActuatorError::from)
    }

    /// Weir's points are HAProxy's weights ([`haproxy_weight`] is the identity), so what
    /// `get weight` returns is exactly what the last apply set, unless someone changed it.
    fn reads_back_exactly(&self) -> bool {
        true
    }

    async fn plan(&self, decision: &Decision) -> Result<Vec<String>, ActuatorError> {
        HaproxyActuator::plan(self, decision).map_err(ActuatorError::from)
    }

    fn connection_note(&self) -> Option<&'static str> {
        Some(crate::connection_lifetime_note())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Proposal;

    fn config() -> HaproxyConfig {
        toml::from_str(
            r#"
            address = "tcp://127.0.0.1:9999"
            backend = "reads"
            primary_server = "primary"
            replica_servers = ["replica-1", "replica-2"]
            "#,
        )
        .unwrap()
    }

    fn decision(primary: u32, replicas: &[u32]) -> Decision {
        let weights = Weights {
            primary,
            replicas: replicas.to_vec(),
        };
        Decision {
            at_s: 0.0,
            weights: weights.clone(),
            proposal: Proposal::new(weights, "test"),
            interventions: Vec::new(),
        }
    }

    #[test]
    fn config_defaults_and_rejects_unknown_fields() {
        let c = config();
        assert_eq!(c.timeout_s, 2.0);
        assert!(c.validate().is_ok());
        let e = toml::from_str::<HaproxyConfig>(
            "address = \"tcp://127.0.0.1:9999\"\nbackend = \"reads\"\nprimary_server = \"p\"\nreplica_servers = []\nweight_scale = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("weight_scale"), "{e}");
        let e = toml::from_str::<HaproxyConfig>(
            "address = \"127.0.0.1:9999\"\nbackend = \"reads\"\nprimary_server = \"p\"\nreplica_servers = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("127.0.0.1:9999"), "{e}");
    }

    #[test]
    fn config_validation_names_the_problem() {
        let mut c = config();
        c.replica_servers.push("primary".into());
        let e = HaproxyActuator::new(c).unwrap_err().to_string();
        assert!(e.contains("`primary` is listed twice"), "{e}");
        let mut c = config();
        c.backend = "reads;shutdown".into();
        assert!(HaproxyActuator::new(c).is_err());
        let mut c = config();
        c.timeout_s = 0.0;
        let e = HaproxyActuator::new(c).unwrap_err().to_string();
        assert!(e.contains("timeout_s"), "{e}");
    }

    #[test]
    fn plan_sets_weights_as_is_and_zeros_last() {
        let a = HaproxyActuator::new(config()).unwrap();
        assert_eq!(
            a.plan(&decision(0, &[50, 50])).unwrap(),
            vec![
                "set weight reads/replica-1 50",
                "set weight reads/replica-2 50",
                "set weight reads/primary 0",
            ]
        );
        assert_eq!(
            a.plan(&decision(20, &[0, 80])).unwrap(),
            vec![
                "set weight reads/primary 20",
                "set weight reads/replica-2 80",
                "set weight reads/replica-1 0",
            ]
        );
    }

    #[test]
    fn plan_refuses_wrong_shapes() {
        let a = HaproxyActuator::new(config()).unwrap();
        let e = a.plan(&decision(100, &[0])).unwrap_err();
        assert!(e.to_string().contains("1 replica weights"), "{e}");
        assert!(matches!(ActuatorError::from(e), ActuatorError::Other(_)));
        let e = a.plan(&decision(0, &[0, 0])).unwrap_err();
        assert!(e.to_string().contains("every server"), "{e}");
    }

    #[test]
    fn read_back_weights_are_normalised() {
        let w = weights_from_haproxy("reads", &[20, 0, 80]).unwrap();
        assert_eq!(w.primary, 20);
        assert_eq!(w.replicas, vec![0, 80]);
        // HAProxy's configured weights need not be percent points.
        let w = weights_from_haproxy("reads", &[1, 1, 1]).unwrap();
        assert_eq!(w, Weights::from_parts(1.0 / 3.0, &[1.0, 1.0]));
        assert_eq!(w.total(), Weights::TOTAL);
        assert!(w.iter().all(|x| x == 33 || x == 34), "{w}");
        let w = weights_from_haproxy("reads", &[256, 0, 0]).unwrap();
        assert_eq!(w, Weights::all_primary(2));
        let w = weights_from_haproxy("reads", &[0, 3, 1]).unwrap();
        assert_eq!(w.replicas, vec![75, 25]);
        let e = weights_from_haproxy("reads", &[0, 0, 0]).unwrap_err();
        assert!(e.to_string().contains("reads"), "{e}");
        assert!(matches!(
            ActuatorError::from(e),
            ActuatorError::BadResponse(_)
        ));
    }

    #[test]
    fn every_weir_weight_fits_haproxy() {
        for w in 0..=Weights::TOTAL {
            assert!(haproxy_weight(w) <= client::MAX_WEIGHT);
        }
    }

    #[test]
    fn errors_map_to_actuator_kinds() {
        let rejected = HaproxyError::Rejected {
            command: "set weight reads/nope 1".into(),
            reply: "No such server.".into(),
        };
        match ActuatorError::from(rejected) {
            ActuatorError::Rejected(m) => assert!(m.contains("No such server."), "{m}"),
            other => panic!("{other:?}"),
        }
        let timeout = HaproxyError::Timeout {
            address: RuntimeAddress::parse("tcp://127.0.0.1:9999").unwrap(),
            command: "get weight reads/primary".into(),
            after_s: 2.0,
        };
        assert_eq!(
            ActuatorError::from(timeout),
            ActuatorError::Timeout { after_s: 2.0 }
        );
    }
}
