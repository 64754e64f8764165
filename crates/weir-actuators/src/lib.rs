//! Every actuator Weir ships, by kind: the one place that knows them all.
//!
//! `weir run` and `weir check` read the `[actuator]` section as a `kind` and raw settings
//! ([`weir_config::ActuatorSection`]). [`ActuatorConfig::from_section`] turns it into the
//! settings of that kind — each edge crate owns its own ([`HaproxyConfig`], [`IstioConfig`])
//! — naming the file and the field on error, and cross-checks them against the replica list;
//! [`ActuatorConfig::build`] builds the actuator (each config builds its own, Vector's
//! `SinkConfig::build` pattern) behind one [`BoxActuator`], and
//! [`ActuatorConfig::build_for`] wraps it for the mode (a dry run plans with it and sends
//! nothing). Everything else — reading the weights in force, planning the exact commands or
//! patch, the note on connection lifetime — is asked of the actuator through
//! [`weir_edge::Actuator`], so no other code matches on the kind.
//!
//! A new actuator (ProxySQL, xDS, ...) is its own crate implementing `Actuator` plus a
//! variant and its arms here.
//!
//! **Never:** open a connection while reading settings, or accept a section with a field its
//! kind does not know.

use weir_config::{ActuatorSection, ConfigError, WeirConfig, deserialize};
use weir_edge::{BoxActuator, DryRunActuator, Mode};
use weir_haproxy::{HaproxyConfig, HaproxyError};
use weir_istio::{IstioConfig, Layout};

/// `kind = "haproxy"`: HAProxy's runtime API.
pub const HAPROXY: &str = "haproxy";
/// `kind = "istio"`: one route of an Istio VirtualService.
pub const ISTIO: &str = "istio";
/// `kind = "dry-run"`: logs what it would apply; touches nothing.
pub const DRY_RUN: &str = "dry-run";

/// Every kind, in the order they are listed to people.
pub const KINDS: [&str; 3] = [HAPROXY, ISTIO, DRY_RUN];

/// The actuator settings of one kind, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ActuatorConfig {
    /// HAProxy's runtime API.
    Haproxy(HaproxyConfig),
    /// One route of an Istio VirtualService.
    Istio(IstioConfig),
    /// Logs exactly what would be sent; touches nothing.
    DryRun,
}

/// Why an actuator could not be built.
///
/// Each message carries its cause, so no variant has a `source`: the binary's `{:#}` prints
/// the cause once.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HAProxy settings were refused.
    #[error("actuator (haproxy): {0}")]
    Haproxy(HaproxyError),
    /// No Kubernetes client configuration was found.
    #[error(
        "actuator (istio): no Kubernetes config found (in-cluster service account or KUBECONFIG): {}",
        weir_edge::with_causes(.0)
    )]
    Kube(kube::Error),
}

impl From<HaproxyError> for BuildError {
    fn from(e: HaproxyError) -> Self {
        BuildError::Haproxy(e)
    }
}

impl ActuatorConfig {
    /// Reads `section` for the kind it names, for a cluster of `replicas` replicas; `origin`
    /// names the file in errors, which name the field (`actuator.replica_servers`).
    pub fn from_section(
        section: &ActuatorSection,
        origin: &str,
        replicas: usize,
    ) -> Result<ActuatorConfig, ConfigError> {
        let field = |field: &str, message: String| ConfigError::Field {
            origin: origin.to_string(),
            field: field.to_string(),
            message,
        };
        let settings = toml::Value::Table(section.settings.clone());
        match section.kind.as_str() {
            HAPROXY => {
                let h: HaproxyConfig = deserialize(settings, origin, "actuator")?;
                h.validate().map_err(|e| field("actuator", e.to_string()))?;
                if h.replica_servers.len() != replicas {
                    return Err(field(
                        "actuator.replica_servers",
                        format!(
                            "lists {} servers for {replicas} replicas (prometheus.replicas)",
                            h.replica_servers.len()
                        ),
                    ));
                }
                Ok(ActuatorConfig::Haproxy(h))
            }
            ISTIO => {
                let i: IstioConfig = deserialize(settings, origin, "actuator")?;
                if let Layout::PerReplica { replicas: r, .. } = &i.layout
                    && r.len() != replicas
                {
                    return Err(field(
                        "actuator.layout.per_replica.replicas",
                        format!(
                            "lists {} destinations for {replicas} replicas (prometheus.replicas)",
                            r.len()
                        ),
                    ));
                }
                Ok(ActuatorConfig::Istio(i))
            }
            DRY_RUN => match section.settings.keys().next() {
                Some(k) => Err(field(
                    &format!("actuator.{k}"),
                    format!("unknown field `{k}`: the {DRY_RUN} actuator has no settings"),
                )),
                None => Ok(ActuatorConfig::DryRun),
            },
            other => Err(field(
                "actuator.kind",
                format!(
                    "unknown actuator `{other}`, expected one of {}",
                    KINDS.map(|k| format!("`{k}`")).join(", ")
                ),
            )),
        }
    }

    /// Reads the `[actuator]` section of `cfg` (loaded from `origin`).
    pub fn from_config(cfg: &WeirConfig, origin: &str) -> Result<ActuatorConfig, ConfigError> {
        ActuatorConfig::from_section(&cfg.actuator, origin, cfg.prometheus.replicas.len())
    }

    /// The kind, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            ActuatorConfig::Haproxy(_) => HAPROXY,
            ActuatorConfig::Istio(_) => ISTIO,
            ActuatorConfig::DryRun => DRY_RUN,
        }
    }

    /// One line for people: `haproxy tcp://… backend reads`.
    pub fn describe(&self) -> String {
        match self {
            ActuatorConfig::Haproxy(h) => format!("haproxy {} backend {}", h.address, h.backend),
            ActuatorConfig::Istio(i) => {
                format!("istio {}/{} ({})", i.namespace, i.virtual_service, i.route)
            }
            ActuatorConfig::DryRun => DRY_RUN.to_string(),
        }
    }

    /// Builds the real actuator (`None` for the dry-run kind, which has no target). Connects
    /// to nothing yet; for Istio it finds the Kubernetes client configuration.
    pub async fn build(&self) -> Result<Option<BoxActuator>, BuildError> {
        Ok(match self {
            ActuatorConfig::Haproxy(h) => Some(BoxActuator::new(h.build()?)),
            ActuatorConfig::Istio(i) => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(BuildError::Kube)?;
                Some(BoxActuator::new(i.build(client)))
            }
            ActuatorConfig::DryRun => None,
        })
    }

    /// The actuator the loop uses in `mode`: the real one, or in dry-run mode (and for the
    /// dry-run kind) a [`DryRunActuator`] that plans with the real one and sends nothing.
    pub async fn build_for(&self, mode: Mode) -> Result<BoxActuator, BuildError> {
        Ok(match (mode, self.build().await?) {
            (Mode::DryRun, Some(real)) => BoxActuator::new(DryRunActuator::planning_with(real)),
            (_, Some(real)) => real,
            (_, None) => BoxActuator::new(DryRunActuator::new()),
        })
    }

    /// Whether there is a target whose weights can be read back.
    pub fn has_target(&self) -> bool {
        !matches!(self, ActuatorConfig::DryRun)
    }
}

#[cfg(test)]
mod tests {
    use weir_config::{EXAMPLE, from_toml_str};
    use weir_core::{Decision, Proposal, Weights};
    use weir_edge::Actuator;

    use super::*;

    fn read(text: &str) -> Result<ActuatorConfig, ConfigError> {
        let cfg: WeirConfig = from_toml_str(text, "w.toml", Vec::new())?;
        cfg.validate("w.toml")?;
        ActuatorConfig::from_config(&cfg, "w.toml")
    }

    fn istio_section(replicas: &str) -> String {
        let start = EXAMPLE.find("[actuator]").unwrap_or(EXAMPLE.len());
        format!(
            "{}[actuator]\nkind = \"istio\"\nnamespace = \"db\"\nvirtual_service = \"mysql\"\nroute = {{ tcp_port = 3306 }}\nlayout = {{ per_replica = {{ primary = {{ host = \"mysql\", subset = \"primary\" }}, replicas = [{replicas}] }} }}\n",
            &EXAMPLE[..start]
        )
    }

    #[test]
    fn the_example_names_haproxy() {
        let a = read(EXAMPLE).unwrap();
        assert_eq!(a.kind(), HAPROXY);
        assert!(a.has_target());
        assert_eq!(
            a.describe(),
            "haproxy tcp://127.0.0.1:9999 backend mysql_reads"
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                EXAMPLE.replace(
                    "replica_servers = [\"replica-1\", \"replica-2\"]",
                    "replica_servers = [\"replica-1\"]",
                ),
                "actuator.replica_servers",
            ),
            (
                EXAMPLE.replace("kind = \"haproxy\"", "kind = \"haproxy\"\ncolour = 1"),
                "actuator",
            ),
            (
                EXAMPLE.replace("kind = \"haproxy\"", "kind = \"f5\""),
                "actuator.kind",
            ),
            (
                EXAMPLE.replace("kind = \"haproxy\"", "kind = \"dry-run\""),
                "actuator.address",
            ),
            (
                istio_section("{ host = \"mysql\", subset = \"r1\" }"),
                "actuator.layout.per_replica.replicas",
            ),
        ];
        for (text, want) in cases {
            let e = read(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.starts_with("w.toml"), "{e}");
        }
        let ok = istio_section(
            "{ host = \"mysql\", subset = \"r1\" }, { host = \"mysql\", subset = \"r2\" }",
        );
        assert_eq!(read(&ok).unwrap().kind(), ISTIO);
    }

    #[tokio::test]
    async fn a_dry_run_plans_with_the_real_actuator_and_the_kind_dry_run_has_none() {
        let haproxy = read(EXAMPLE).unwrap();
        let dry = haproxy.build_for(Mode::DryRun).await.unwrap();
        assert_eq!(dry.name(), DRY_RUN);
        let decision = Decision {
            at_s: 0.0,
            proposal: Proposal::new(Weights::even(2), "test"),
            weights: Weights::even(2),
            interventions: Vec::new(),
        };
        // HAProxy plans without connecting: the exact commands it would send.
        let plan = dry.plan(&decision).await.unwrap();
        assert!(
            plan.iter()
                .any(|c| c.starts_with("set weight mysql_reads/replica-1")),
            "{plan:?}"
        );
        assert!(dry.connection_note().is_some());
        let real = haproxy.build_for(Mode::Enforce).await.unwrap();
        assert_eq!(real.name(), HAPROXY);

        let none = ActuatorConfig::DryRun;
        assert!(!none.has_target());
        assert!(none.build().await.unwrap().is_none());
        let dry = none.build_for(Mode::Enforce).await.unwrap();
        assert_eq!(dry.name(), DRY_RUN);
        assert!(dry.plan(&decision).await.unwrap().is_empty());
    }
}
