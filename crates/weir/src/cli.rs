//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use weir_policy::PolicyKind;

/// Weir keeps reads off lagging database replicas: it watches replication lag and primary
/// load, decides with a learned policy inside a hard safety shield, and shifts read weights.
///
/// Start with `weir demo`: a simulated primary and two replicas, one of which stalls for a
/// backup, governed live by the trained policy. `weir bench` compares policies on scenario
/// files; `weir train` trains a learned policy (the DQN, or the Q-table) in the simulator.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WEIR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulated cluster governed live by Weir (accelerated time), printing one line per
    /// decision and serving /api/state, /api/history, /api/events and /metrics.
    Demo(DemoArgs),
    /// Train a learned policy (the DQN by default, or the Q-table) in the simulator and
    /// write a versioned model file atomically.
    Train(TrainArgs),
    /// Compare policies on scenario files with the same seeds; print tables and write
    /// JSON/CSV. Same options → byte-identical output.
    Bench(BenchArgs),
    /// Validate scenario files and print a one-line summary of each; `weir scenarios
    /// generate` writes procedurally generated ones.
    Scenarios(ScenarioArgs),
    /// Run the controller against a real cluster: Prometheus in, HAProxy or Istio out, as the
    /// config file says (start in `mode = "shadow"`). Serves the same HTTP API as the demo.
    Run(RunArgs),
    /// Validate a config file, run each query once and print what it got per replica, read
    /// the target's current weights, and print the exact change the current observation
    /// would produce — without sending it.
    Check(CheckArgs),
    /// Print the ReadSplit and TrafficPolicy CustomResourceDefinitions (YAML) for
    /// `kubectl apply -f -`.
    Crd,
    /// Print the operator's plain Kubernetes manifests (default values), or with --write
    /// regenerate deploy/crd, deploy/manifests and the Helm chart under deploy/helm/weir.
    Manifests(ManifestsArgs),
    /// The Kubernetes operator: govern every ReadSplit (in-cluster config or kubeconfig),
    /// with leader election on a Lease.
    Operator(OperatorArgs),
    /// Service governance: compile TrafficPolicy files into Istio objects, or check them.
    #[command(subcommand)]
    Govern(GovernCommand),
    /// The global rate-limit service Envoy calls (RateLimitService over gRPC), counting in
    /// Redis; reads the configuration `weir govern compile` writes.
    Ratelimit(crate::ratelimit_cmd::RatelimitArgs),
    /// Adaptive admission control: the sidecar proxy (`weir admit proxy`).
    #[command(subcommand)]
    Admit(crate::admit_cmd::AdmitCommand),
}

#[derive(Debug, Subcommand)]
pub enum GovernCommand {
    /// Compile policy files into Istio objects: one deterministic YAML stream on stdout
    /// (rate-limit ConfigMaps, DestinationRules, EnvoyFilters, VirtualServices: make before
    /// break), or one file per policy in a directory (plus each rate-limit service
    /// configuration on its own). Notes on Istio caveats go to stderr.
    Compile(GovernCompileArgs),
    /// Check policy files: every problem, each naming the file, the field and the value.
    /// Exits non-zero when there is any.
    Check(GovernCheckArgs),
    /// Say what a policy does, in words: the routing table, affinity, limits, and every
    /// Istio caveat that applies.
    Explain(GovernExplainArgs),
    /// Check hand-written Istio YAML (VirtualServices, DestinationRules, EnvoyFilters) with
    /// the compiler's semantic checks and the known silent EnvoyFilter failures. Exits
    /// non-zero when there is an error (warnings alone do not fail).
    Lint(GovernLintArgs),
}

#[derive(Debug, Args)]
pub struct GovernLintArgs {
    /// Istio YAML files, checked together (subsets, hosts and rate-limit actions are
    /// looked up across all of them).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GovernExplainArgs {
    /// A policy file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct GovernCompileArgs {
    /// Policy files (YAML; several policies per file separated by `---`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write `<namespace>.<name>.yaml` per policy here (created if missing) instead of
    /// printing one stream; with `--target envoy`, `envoy.yaml`.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// `istio` (Kubernetes objects) or `envoy` (one standalone Envoy bootstrap: `envoy -c`).
    #[arg(long, value_enum, default_value_t = GovernTarget::Istio)]
    pub target: GovernTarget,
    /// With `--target envoy`: where the proxy listens, the caller's locality and labels, each
    /// subset's endpoints, the rate-limit service's address (YAML).
    #[arg(long, required_if_eq("target", "envoy"))]
    pub inventory: Option<PathBuf>,
}

/// What `weir govern compile` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GovernTarget {
    /// Istio objects.
    Istio,
    /// A standalone Envoy bootstrap.
    Envoy,
}

#[derive(Debug, Args)]
pub struct GovernCheckArgs {
    /// Policy files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// Write every generated deploy file below the current directory (the repository root)
    /// instead of printing the manifests.
    #[arg(long)]
    pub write: bool,
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9464", env = "WEIR_LISTEN")]
    pub listen: SocketAddr,
    /// Watch ReadSplits in this namespace only (default: all namespaces).
    #[arg(long, env = "WEIR_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "weir-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This instance's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease stays held without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Most ReadSplits reconciled at once (each sends eight Prometheus queries): bounds the
    /// load on Prometheus and the API server when many come due together, as at start-up.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (TOML). Every key can be overridden with WEIR__SECTION__KEY=value; see
    /// deploy/weir.example.toml.
    #[arg(long, short, env = "WEIR_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (TOML), as for `weir run`.
    #[arg(long, short, env = "WEIR_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Scenario file to run (default: the embedded scenarios/demo.toml).
    #[arg(long, env = "WEIR_SCENARIO")]
    pub scenario: Option<PathBuf>,
    /// Policy: dqn (the shipped deep Q-network), qlearn (the shipped Q-table), shun,
    /// threshold, static.
    #[arg(long, default_value = "dqn", env = "WEIR_POLICY")]
    pub policy: PolicyKind,
    /// Model file for a learned policy (default: the model shipped in the binary).
    #[arg(long, env = "WEIR_MODEL")]
    pub model: Option<PathBuf>,
    /// Simulated seconds per real second (0 = as fast as possible).
    #[arg(long, default_value_t = 60.0, env = "WEIR_SPEED")]
    pub speed: f64,
    /// Address for the HTTP API and dashboard.
    #[arg(long, default_value = "127.0.0.1:9464", env = "WEIR_LISTEN")]
    pub listen: SocketAddr,
    /// Do not serve HTTP.
    #[arg(long)]
    pub no_serve: bool,
    /// Keep serving HTTP after the scenario ends, until Ctrl-C.
    #[arg(long)]
    pub linger: bool,
    /// End each decision line with the policy's reason (`« greedy: …`, `« hold: …`,
    /// `« surprise: …`), as /api/history records it.
    #[arg(long)]
    pub explain: bool,
    /// Seed for the simulator (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bearer token that enables the mutating endpoints (pause, resume, override).
    #[arg(long, env = "WEIR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Policy to train: `dqn` (a deep Q-network, the default policy) or `qlearn` (a Q-table).
    #[arg(long, default_value = "dqn")]
    pub policy: PolicyKind,
    /// Directory of training scenarios (never the evaluation set).
    #[arg(long, default_value = "scenarios/train")]
    pub scenarios: PathBuf,
    /// Episodes (per ensemble member for qlearn). Default: 3000 for qlearn, 1500 for dqn.
    #[arg(long)]
    pub episodes: Option<u64>,
    /// Models trained with independent seeds (seed, seed+1, ...) and merged: qlearn's tables
    /// visit-weighted (bagging; default 6), dqn's networks averaged into one network that
    /// serves their mean Q-values (default 5), all trained at once, one thread each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub members: Option<u32>,
    /// qlearn: worker threads for the members (the model does not depend on it).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Master seed (the run is deterministic for a seed). Default: the seed the shipped model
    /// records (6 for dqn, 1 for qlearn); for dqn, `weir train` with no other flag rebuilds the
    /// shipped network (the shipped Q-table predates later reward and shield changes).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Relative jitter of scenario parameters per episode.
    #[arg(long, default_value_t = 0.2)]
    pub jitter: f64,
    /// Output model file (written atomically). Default: models/qlearn.json for qlearn,
    /// models/dqn.safetensors for dqn.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reward to train on: `multi` (Weir's multi-objective reward) or `seed` (the seed
    /// design's 100/(p99+1) − max_lag², to see what it teaches).
    #[arg(long, value_enum, default_value = "multi")]
    pub reward: RewardArg,
    /// Continue training this model instead of starting from scratch.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Probability that the lookahead oracle picks the exploration action (0 = plain ε-greedy).
    #[arg(long, default_value_t = 0.3)]
    pub teacher_rate: f64,
    /// dqn: the teacher, `lookahead` (one interval ahead) or `horizon` (the receding-horizon
    /// oracle, planning from the network's own actions).
    #[arg(long, value_enum, default_value = "lookahead")]
    pub teacher: TeacherArg,
    /// dqn: the teacher plans without foresight (from the true state now, no future scripted
    /// event, noise at its mean), as `weir bench --oracle-without-foresight` does.
    #[arg(long)]
    pub teacher_without_foresight: bool,
    /// dqn: weight of the supervised large-margin term that pushes the network towards the
    /// teacher's choices (0 = plain DQN; the teacher then only picks behaviour actions).
    #[arg(long, default_value_t = 0.0)]
    pub expert_weight: f64,
    /// dqn: the reward's cost of a weight change while training (default: the reward's own,
    /// 0.5). Training only: benchmarks and `weir run` score with the reward section.
    #[arg(long)]
    pub switch_cost: Option<f64>,
    /// dqn: share of episodes drawn from the scenario generator's train split (domain
    /// randomisation; seeded by --seed) instead of the jittered training files.
    #[arg(long, default_value_t = 0.5)]
    pub generated_share: f64,
    /// Print progress every N episodes.
    #[arg(long, default_value_t = 250)]
    pub progress_every: u64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenario files or directories (default: scenarios/eval and the generated held-out set).
    #[arg(
        long = "scenarios",
        num_args = 1..,
        default_values = ["scenarios/eval", "scenarios/heldout"]
    )]
    pub scenarios: Vec<PathBuf>,
    /// Comma-separated policies: static, threshold, shun, qlearn, dqn, and the oracles
    /// lookahead (one step) and horizon (receding horizon; scores are normalised against it
    /// when it runs, else against lookahead). Append +shield to run a baseline inside the
    /// shield, or -bare to run Weir's policy without it.
    #[arg(
        long,
        default_value = "static,threshold+shield,shun,shun+shield,qlearn,dqn,lookahead,horizon",
        value_delimiter = ','
    )]
    pub policies: Vec<String>,
    /// Comma-separated seeds.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Q-learning model file (default: the model shipped in the binary).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// DQN model file (default: the model shipped in the binary).
    #[arg(long)]
    pub dqn_model: Option<PathBuf>,
    /// Reward used to score the runs (and by the oracle): `multi` or `seed`.
    #[arg(long, value_enum, default_value = "multi")]
    pub reward: RewardArg,
    /// The cost of a weight change the oracles (lookahead, horizon) plan with, instead of the
    /// reward's own; the runs are still scored with the reward. Shows what the last bit of
    /// reward costs in weight changes for a near-optimal controller.
    #[arg(long)]
    pub oracle_switch_cost: Option<f64>,
    /// The oracles plan without foresight: from the true state now, but with no future
    /// scripted event (those under way are assumed to go on) and the noise at its mean.
    /// Shows how much of the reference's lead is knowing the future.
    #[arg(long)]
    pub oracle_without_foresight: bool,
    /// Write the full report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write per-episode and summary rows as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Worker threads (output does not depend on it).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Measure simulator and training throughput instead (wall-clock; not deterministic).
    #[arg(long)]
    pub throughput: bool,
}

/// Which oracle teaches the DQN.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum TeacherArg {
    /// The one-step lookahead.
    Lookahead,
    /// The receding-horizon oracle (the benchmark's reference settings).
    Horizon,
}

/// Which reward formula.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RewardArg {
    /// Weir's multi-objective reward (stale and failed reads, primary CPU, p99, jitter).
    Multi,
    /// The seed design's `100/(p99+1) − max_lag²`.
    Seed,
}

impl RewardArg {
    /// The reward configuration.
    pub fn config(self) -> weir_core::RewardConfig {
        let kind = match self {
            RewardArg::Multi => weir_core::RewardKind::MultiObjective,
            RewardArg::Seed => weir_core::RewardKind::Seed,
        };
        weir_core::RewardConfig {
            kind,
            ..weir_core::RewardConfig::default()
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    pub command: Option<ScenarioCommand>,
    /// Scenario files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Write procedurally generated scenarios (domain randomisation) to a directory, one
    /// `gen-<split>-NNNN.toml` per scenario. The train and heldout splits never share a
    /// random stream; train only on `--split train`.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Which family to draw from: train (any use) or heldout (final evaluation only).
    #[arg(long, value_enum)]
    pub split: SplitArg,
    /// Seed of the set (the same seed, split and count write the same files).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of scenarios (indices 0..count).
    #[arg(long, default_value_t = 12)]
    pub count: u32,
    /// Directory to write into (created if missing; files of the same name are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

/// A generator split.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    /// For training and tuning.
    Train,
    /// For the final evaluation only (scenarios/heldout is seed 2026, count 12).
    Heldout,
}

/// Sets up tracing on stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal; never in files, pipes or CI logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use clap::CommandFactory;

    use super::Cli;

    /// The default of `--arg` of the subcommand at `path`, from the definition (so a
    /// `WEIR_*` variable in the test's environment cannot change it).
    fn default_of(path: &[&str], arg: &str) -> SocketAddr {
        let mut cmd = Cli::command();
        for name in path {
            cmd = cmd
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"))
                .clone();
        }
        let a = cmd
            .get_arguments()
            .find(|a| a.get_id() == arg)
            .unwrap_or_else(|| panic!("{path:?} has no --{arg}"));
        let default = a
            .get_default_values()
            .first()
            .and_then(|v| v.to_str())
            .unwrap_or_else(|| panic!("{path:?} --{arg} has no default"));
        default
            .parse()
            .unwrap_or_else(|e| panic!("{path:?} --{arg} default {default:?}: {e}"))
    }

    #[test]
    fn every_listen_address_defaults_to_loopback() {
        for (path, arg) in [
            (&["demo"][..], "listen"),
            (&["operator"][..], "listen"),
            (&["ratelimit"][..], "listen"),
            (&["ratelimit"][..], "metrics"),
        ] {
            let addr = default_of(path, arg);
            assert!(
                addr.ip().is_loopback(),
                "weir {} --{arg} defaults to {addr}",
                path.join(" ")
            );
        }
        // `weir run`: the config file's `listen`, when the file leaves it out.
        let example = include_str!("../../../deploy/weir.example.toml");
        let without_listen: String = example
            .lines()
            .filter(|l| !l.trim_start().starts_with("listen"))
            .map(|l| format!("{l}\n"))
            .collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, without_listen).expect("writes");
        let cfg = weir_config::WeirConfig::load(&path, Vec::<(String, String)>::new())
            .expect("the example without `listen` loads");
        assert!(
            cfg.listen.ip().is_loopback(),
            "run listens on {}",
            cfg.listen
        );
        // `weir admit proxy`: the proxy's and its admin port's, when the file leaves them out.
        let proxy = weir_admit_proxy::ProxyConfig::default();
        assert!(proxy.listen.ip().is_loopback() && proxy.admin.ip().is_loopback());
    }
}
