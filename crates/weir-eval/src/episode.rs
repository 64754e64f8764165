//! One policy through one scenario, with the true outcome measured by the simulator.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir_controller::ControlStep;
use weir_core::{Policy, RewardConfig, Weights};
use weir_policy::{Model, PolicyKind};
use weir_shield::{Shield, ShieldConfig};
use weir_sim::{IntervalStats, Scenario, Simulator, TickStats};

use crate::EvalError;
use crate::horizon::{HORIZON, Horizon, HorizonConfig};
use crate::oracle::{LOOKAHEAD, Lookahead, OracleSlot, OracleView};

/// What runs in an episode: a product policy from the registry, or one of the oracles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entrant {
    /// A product policy.
    Policy(PolicyKind),
    /// The one-step lookahead oracle (sees the simulator's true state).
    Lookahead,
    /// The receding-horizon oracle (sees the true state, plans several intervals ahead
    /// inside the shield).
    Horizon,
}

/// A policy as named on the command line, and whether the shield enforces on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicySpec {
    /// The policy or the oracle.
    pub entrant: Entrant,
    /// Whether the shield enforces (the bare baselines run watch-only by default, as they do
    /// in the wild; Weir's own policies and the oracle run shielded).
    pub shielded: bool,
}

impl PolicySpec {
    /// Parses `name` or `name+shield` / `name-bare`, where `name` is a product policy
    /// (`PolicyKind`), `lookahead` or `horizon`.
    pub fn parse(s: &str) -> Result<PolicySpec, EvalError> {
        let (name, shielded) = if let Some(n) = s.strip_suffix("+shield") {
            (n, Some(true))
        } else if let Some(n) = s.strip_suffix("-bare") {
            (n, Some(false))
        } else {
            (s, None)
        };
        let entrant = if name == LOOKAHEAD {
            Entrant::Lookahead
        } else if name == HORIZON {
            Entrant::Horizon
        } else {
            Entrant::Policy(
                PolicyKind::parse(name).map_err(|e| EvalError::UnknownPolicy {
                    name: e.name,
                    expected: format!(
                        "{}, {LOOKAHEAD} or {HORIZON} (optionally with +shield or -bare)",
                        PolicyKind::names()
                    ),
                })?,
            )
        };
        let spec = PolicySpec {
            entrant,
            shielded: false,
        };
        Ok(PolicySpec {
            shielded: shielded.unwrap_or(spec.shielded_by_default()),
            entrant,
        })
    }

    /// The name: a policy's, `lookahead` or `horizon`.
    pub fn name(&self) -> &'static str {
        match self.entrant {
            Entrant::Policy(k) => k.as_str(),
            Entrant::Lookahead => LOOKAHEAD,
            Entrant::Horizon => HORIZON,
        }
    }

    /// Whether this entrant runs shielded unless told otherwise: Weir's learned policies and
    /// the oracle do, the rules people run without a shield do not.
    fn shielded_by_default(&self) -> bool {
        match self.entrant {
            Entrant::Policy(k) => k.needs_model(),
            Entrant::Lookahead | Entrant::Horizon => true,
        }
    }

    /// The label used in reports: the name, with `+shield`/`-bare` when not the default.
    pub fn label(&self) -> String {
        match (self.shielded, self.shielded_by_default()) {
            (true, false) => format!("{}+shield", self.name()),
            (false, true) => format!("{}-bare", self.name()),
            _ => self.name().to_string(),
        }
    }
}

/// Settings shared by every episode.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Reward used for learning and reporting.
    pub reward: RewardConfig,
    /// Shield settings (`primary_read_capacity_qps` defaults to the scenario's primary
    /// capacity, `enforce` comes from the [`PolicySpec`]).
    pub shield: ShieldConfig,
    /// The switch cost the oracles (`lookahead`, `horizon`) plan with instead of the
    /// reward's; every episode is still scored with `reward`. `None`: the reward's own.
    pub oracle_switch_cost: Option<f64>,
    /// The oracles (and a teacher) plan on [`Simulator::without_foresight`] copies: the true
    /// state now, but no future events and no future noise. `false`: on exact copies, which
    /// see the scripted future (the benchmark's reference).
    pub oracle_without_foresight: bool,
}

impl RunOptions {
    /// The reward the oracles plan with.
    pub fn oracle_reward(&self) -> RewardConfig {
        let mut r = self.reward.clone();
        if let Some(c) = self.oracle_switch_cost {
            r.switch = c;
        }
        r
    }
}

/// Builds the shield for a scenario.
pub fn shield_for(scn: &Scenario, base: &ShieldConfig, enforce: bool) -> Shield {
    let cfg = ShieldConfig {
        primary_read_capacity_qps: base
            .primary_read_capacity_qps
            .or(Some(scn.primary.capacity)),
        enforce,
        ..base.clone()
    };
    Shield::new(cfg, scn.slo.clone(), scn.replicas.len())
}

/// A policy ready to run: the policy, and for the oracle the slot it sees the truth through.
pub struct Agent<P: Policy + ?Sized = dyn Policy> {
    /// The policy.
    pub policy: Box<P>,
    /// Set for the oracles: the slot the runner shows them the truth through.
    pub oracle: Option<OracleSlot>,
    /// Whether the shield enforces.
    pub shielded: bool,
}

impl Agent {
    /// Builds the agent for a spec. `model` is used for a policy that needs one (served
    /// greedily).
    pub fn build(
        spec: &PolicySpec,
        model: Option<&Model>,
        opts: &RunOptions,
    ) -> Result<Agent, EvalError> {
        let (policy, oracle) = match spec.entrant {
            Entrant::Lookahead => {
                let slot: OracleSlot = Arc::new(Mutex::new(None));
                let p: Box<dyn Policy> =
                    Box::new(Lookahead::new(opts.oracle_reward(), slot.clone()));
                (p, Some(slot))
            }
            Entrant::Horizon => {
                let slot: OracleSlot = Arc::new(Mutex::new(None));
                let p: Box<dyn Policy> = Box::new(Horizon::new(
                    opts.oracle_reward(),
                    HorizonConfig::default(),
                    slot.clone(),
                ));
                (p, Some(slot))
            }
            Entrant::Policy(kind) => (kind.build(model, false)?, None),
        };
        Ok(Agent {
            policy,
            oracle,
            shielded: spec.shielded,
        })
    }
}

/// True results of one episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeMetrics {
    /// Reads served stale, percent of offered reads.
    pub stale_read_pct: f64,
    /// Mean lag of the stale reads, seconds.
    pub mean_staleness_s: f64,
    /// Failed reads, percent.
    pub failed_read_pct: f64,
    /// Simulated seconds with primary CPU above `primary_cpu_max`.
    pub cpu_over_max_s: f64,
    /// 95th percentile of primary CPU over ticks, percent.
    pub primary_cpu_p95_pct: f64,
    /// Mean cluster read p99, milliseconds.
    pub mean_read_p99_ms: f64,
    /// Decisions that changed the weights.
    pub weight_changes: u64,
    /// Of those, the changes where the shield altered what the policy proposed: a move cut
    /// short by the step limit or trimmed to the primary's cap, or a move the policy did not
    /// ask for (a fail-safe, a cap that fell under the weights in force).
    #[serde(default)]
    pub changes_by_shield: u64,
    /// Of those, the changes a learned policy's fallback rule made, as proposed (the shield
    /// did not alter them).
    #[serde(default)]
    pub changes_by_fallback: u64,
    /// Mean reward per control interval.
    pub mean_reward: f64,
    /// Shield interventions.
    pub shield_interventions: u64,
    /// Decisions that broke a hard limit after the shield (watch-only shields count what
    /// they would have prevented).
    pub hard_limit_violations: u64,
    /// Control intervals.
    pub decisions: u64,
    /// Decisions where a learned policy fell back on a rule (state outside what it was
    /// trained on, or an unusable observation), as its explanation says.
    #[serde(default)]
    pub fallbacks: u64,
}

/// Histogram of primary CPU (0..=2 in 0.1% bins) for the p95 without storing every tick.
#[derive(Clone)]
struct CpuHistogram {
    bins: Vec<u64>,
    n: u64,
}

impl CpuHistogram {
    const BINS: usize = 2001;

    fn new() -> Self {
        CpuHistogram {
            bins: vec![0; Self::BINS],
            n: 0,
        }
    }

    fn add(&mut self, cpu: f64) {
        let i = ((cpu.max(0.0) * 1000.0).round() as usize).min(Self::BINS - 1);
        self.bins[i] += 1;
        self.n += 1;
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let rank = (q * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.bins.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return i as f64 / 1000.0;
            }
        }
        (Self::BINS - 1) as f64 / 1000.0
    }
}

/// Callback for each tick (the demo and tests watch the truth through it).
pub type TickHook<'a> = &'a mut dyn FnMut(&TickStats);

/// Runs `policy` through `scn` with `seed`. Returns the metrics and the policy (which may
/// have learned, if it was in training mode).
pub fn run_episode<P: Policy + ?Sized>(
    scn: &Scenario,
    seed: u64,
    agent: Agent<P>,
    opts: &RunOptions,
    mut on_tick: Option<TickHook<'_>>,
) -> (EpisodeMetrics, Agent<P>) {
    let n = scn.replicas.len();
    let mut sim = Simulator::new(scn, seed);
    let initial = Weights::even(n);
    sim.set_weights(&initial);
    let Agent {
        policy,
        oracle: oracle_slot,
        shielded,
    } = agent;
    let shield = shield_for(scn, &opts.shield, shielded).with_priorities(&opts.reward);
    let mut step: ControlStep<P> = ControlStep::new(
        policy,
        shield,
        scn.slo.clone(),
        opts.reward.clone(),
        initial.clone(),
        8,
    );
    let interval = scn.timing.control_interval_s;
    let ticks_per_interval = ((interval / scn.timing.tick_s).round() as u64).max(1);
    let mut cpu = CpuHistogram::new();
    let mut total = IntervalStats::default();
    let mut last: Option<IntervalStats> = None;
    let mut weights = initial;
    let mut cpu_over_s = 0.0;
    let mut reward_sum = 0.0;
    let mut decisions = 0u64;
    let mut changes = 0u64;
    let mut changes_by_shield = 0u64;
    let mut changes_by_fallback = 0u64;
    let mut fallbacks = 0u64;
    while !sim.done() {
        if let Some(slot) = &oracle_slot
            && let Ok(mut s) = slot.lock()
        {
            *s = Some(OracleView {
                sim: if opts.oracle_without_foresight {
                    sim.without_foresight()
                } else {
                    sim.clone()
                },
                shield: step.shield().clone(),
                current: step.current().clone(),
            });
        }
        let obs = sim.observe();
        let out = step.step(obs, last.map(|s| s.outcome(0.0)));
        let fell_back = out.explanation.fallback.is_some();
        if fell_back {
            fallbacks += 1;
        }
        let new = out.decision.weights;
        let altered = new != out.decision.proposal.weights;
        let moved = weights.moved_fraction(&new);
        if new != weights {
            changes += 1;
            if altered {
                changes_by_shield += 1;
            } else if fell_back {
                changes_by_fallback += 1;
            }
        }
        sim.set_weights(&new);
        let mut this = IntervalStats::default();
        for _ in 0..ticks_per_interval {
            if sim.done() {
                break;
            }
            let t = sim.step();
            this.add(&t);
            cpu.add(t.primary_cpu);
            if t.primary_cpu > scn.slo.primary_cpu_max {
                cpu_over_s += t.dt_s;
            }
            if let Some(h) = on_tick.as_mut() {
                h(&t);
            }
        }
        total.merge(&this);
        reward_sum += opts.reward.reward(&this.outcome(moved), &scn.slo);
        decisions += 1;
        weights = new;
        last = Some(this);
    }
    let status = step.shield().status().clone();
    let interventions = status.interventions.values().sum();
    let metrics = EpisodeMetrics {
        stale_read_pct: 100.0 * total.stale_fraction(),
        mean_staleness_s: total.mean_staleness_s(),
        failed_read_pct: 100.0 * total.failed_fraction(),
        cpu_over_max_s: cpu_over_s,
        primary_cpu_p95_pct: 100.0 * cpu.quantile(0.95),
        mean_read_p99_ms: total.mean_read_p99_ms(),
        weight_changes: changes,
        changes_by_shield,
        changes_by_fallback,
        mean_reward: if decisions > 0 {
            reward_sum / decisions as f64
        } else {
            0.0
        },
        shield_interventions: interventions,
        hard_limit_violations: status.hard_limit_violations,
        decisions,
        fallbacks,
    };
    let mut policy = step.into_policy();
    policy.reset();
    if let Some(slot) = &oracle_slot
        && let Ok(mut s) = slot.lock()
    {
        *s = None;
    }
    (
        metrics,
        Agent {
            policy,
            oracle: oracle_slot,
            shielded,
        },
    )
}
