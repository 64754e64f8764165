//! The receding-horizon oracle: the benchmark's near-optimal reference, not a product policy.
//!
//! At each decision it takes the simulator's true state and the episode's shield as they are
//! before the decision ([`OracleView`]), plans `horizon` control intervals ahead on clones of
//! both, applies only the first action of the best plan, and replans at the next interval.
//!
//! * **Constraints.** Every planned step goes through a clone of the episode's shield: the
//!   cloned simulator's own `observe()` (delayed, noisy, possibly stale, as the real shield
//!   will see it then) feeds `Shield::apply`, and the plan continues with the weights `apply`
//!   returns. A plan is therefore a sequence of decisions the real shield would have made,
//!   step limit, primary cap, stale-observation hold and fail-safe included.
//! * **Score.** A plan's value is the sum over its intervals of the episode runner's reward
//!   (`RewardConfig::reward` of the true `IntervalStats::outcome(moved_fraction)`), each
//!   discounted by `discount^k`. The simulator is deterministic for a state, so the first
//!   interval's reward is exactly what the episode will score, and the rest are exact for
//!   the planned actions.
//! * **Candidates** ([`candidates`]): primary levels 0, 10, …, 100 and the current share,
//!   times replica patterns derived from the true state — even; the current replica weights;
//!   proportional to read capacity; without replicas over `max_staleness_s` now; without
//!   those that will be over it within the horizon if nothing changes (a probe run); those
//!   demoted to 1/3 instead; without only the worst; only the best; capacity-proportional
//!   over the replicas fresh for the whole horizon — plus the current weights. At most
//!   `12 × 9 + 1 = 109` weight vectors whatever the replica count (the one-step lookahead's
//!   grid is `11 × 3^n`: 2673 for 5 replicas). At every node the targets are passed through
//!   the node's shield and deduplicated by the weights it applies.
//! * **Search.** Beam search: each depth expands every node of the beam with every candidate
//!   (plus "hold" at that node) and keeps the `beam` best partial plans by discounted
//!   cumulative reward, at most `per_first` of them sharing the same first action (so at
//!   least `beam / per_first` different first actions are judged over the whole horizon).
//!   Cost per decision: `C + (horizon − 1) · beam · C` simulated intervals (C = distinct
//!   applied candidates, ≤ 109), plus a probe of `horizon` intervals; each expansion clones
//!   the simulator and the shield.
//!
//! Deterministic: candidates and nodes live in vectors in a fixed order, sorts are stable
//! with explicit tie-breaks, nothing iterates a hash map and nothing runs in parallel.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use weir_core::{
    ActionValue, DecisionContext, Explanation, Mask, Policy, Proposal, RewardConfig, Weights,
};
use weir_policy::Teacher;
use weir_shield::Shield;
use weir_sim::{IntervalStats, Simulator};

use crate::oracle::{OracleSlot, OracleView};

/// The oracle's name in `--policies` and in reports.
pub const HORIZON: &str = "horizon";

/// Primary levels tried, percent (the current share is added).
const LEVELS: [u32; 11] = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

/// Largest number of replica patterns [`candidates`] derives.
pub const MAX_PATTERNS: usize = 9;

/// Largest number of weight vectors [`candidates`] returns, whatever the replica count.
pub const MAX_CANDIDATES: usize = (LEVELS.len() + 1) * MAX_PATTERNS + 1;

/// Search settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HorizonConfig {
    /// Control intervals planned ahead (≥ 1; 1 is a one-step lookahead over the candidates).
    pub horizon: usize,
    /// Partial plans kept at each depth (≥ 1).
    pub beam: usize,
    /// Partial plans kept per first action (≥ 1).
    pub per_first: usize,
    /// Discount per interval (1 = plain sum).
    pub discount: f64,
}

impl Default for HorizonConfig {
    fn default() -> Self {
        HorizonConfig {
            horizon: 5,
            beam: 8,
            per_first: 2,
            discount: 1.0,
        }
    }
}

/// What the candidate builder knows about one replica (true values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaOutlook {
    /// Reachable now.
    pub up: bool,
    /// True lag now, seconds.
    pub lag_s: f64,
    /// Highest true lag over the horizon if the current weights are held, seconds.
    pub peak_lag_s: f64,
    /// Configured read capacity, reads per second.
    pub capacity_qps: f64,
}

/// The replicas' outlook: their true state now, and their peak lag over `intervals` control
/// intervals of a probe run holding the current weights.
pub fn outlook(sim: &Simulator, intervals: usize) -> Vec<ReplicaOutlook> {
    let truth = sim.truth();
    let scn = sim.scenario();
    let mut out: Vec<ReplicaOutlook> = truth
        .replicas
        .iter()
        .zip(&scn.replicas)
        .map(|(t, cfg)| ReplicaOutlook {
            up: t.up,
            lag_s: t.lag_s,
            peak_lag_s: t.lag_s,
            capacity_qps: cfg.capacity,
        })
        .collect();
    let mut probe = sim.clone();
    let ticks = ticks_per_interval(sim) * intervals as u64;
    for _ in 0..ticks {
        if probe.done() {
            break;
        }
        probe.step();
        for (i, r) in out.iter_mut().enumerate() {
            if let Some(l) = probe.true_lag_s(i) {
                r.peak_lag_s = r.peak_lag_s.max(l);
            }
        }
    }
    out
}

/// The candidate target weights for this state (deduplicated, deterministic order, the
/// current weights first). Every entry is valid for `replicas.len()` replicas; there are at
/// most [`MAX_CANDIDATES`].
pub fn candidates(
    current: &Weights,
    replicas: &[ReplicaOutlook],
    max_staleness_s: f64,
) -> Vec<Weights> {
    let n = replicas.len();
    let fresh_now = |r: &ReplicaOutlook| r.up && r.lag_s <= max_staleness_s;
    let fresh_ahead = |r: &ReplicaOutlook| r.up && r.peak_lag_s <= max_staleness_s;
    let mut patterns: Vec<Vec<f64>> = Vec::with_capacity(MAX_PATTERNS);
    // Even.
    patterns.push(vec![1.0; n]);
    // The current replica weights.
    if current.replicas.len() == n {
        patterns.push(current.replicas.iter().map(|&w| f64::from(w)).collect());
    }
    // Proportional to read capacity, replicas that are up.
    patterns.push(
        replicas
            .iter()
            .map(|r| if r.up { r.capacity_qps } else { 0.0 })
            .collect(),
    );
    // Without the replicas stale now.
    patterns.push(
        replicas
            .iter()
            .map(|r| if fresh_now(r) { 1.0 } else { 0.0 })
            .collect(),
    );
    // Without those stale within the horizon.
    patterns.push(
        replicas
            .iter()
            .map(|r| if fresh_ahead(r) { 1.0 } else { 0.0 })
            .collect(),
    );
    // Those demoted to 1/3 instead.
    patterns.push(
        replicas
            .iter()
            .map(|r| match (r.up, fresh_ahead(r)) {
                (false, _) => 0.0,
                (true, true) => 1.0,
                (true, false) => 1.0 / 3.0,
            })
            .collect(),
    );
    // Rank by badness: down last, then by peak lag, then by lag now; ties by index.
    let badness = |i: usize| {
        let r = &replicas[i];
        (!r.up, r.peak_lag_s, r.lag_s)
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (da, pa, la) = badness(a);
        let (db, pb, lb) = badness(b);
        da.cmp(&db)
            .then(pa.total_cmp(&pb))
            .then(la.total_cmp(&lb))
            .then(a.cmp(&b))
    });
    // Without only the worst.
    if let Some(&worst) = order.last() {
        patterns.push((0..n).map(|i| if i == worst { 0.0 } else { 1.0 }).collect());
    }
    // Only the best.
    if let Some(&best) = order.first() {
        patterns.push((0..n).map(|i| if i == best { 1.0 } else { 0.0 }).collect());
    }
    // Capacity-proportional over the replicas fresh for the whole horizon.
    patterns.push(
        replicas
            .iter()
            .map(|r| if fresh_ahead(r) { r.capacity_qps } else { 0.0 })
            .collect(),
    );
    debug_assert!(patterns.len() <= MAX_PATTERNS);

    let mut levels: Vec<f64> = LEVELS.iter().map(|&l| f64::from(l) / 100.0).collect();
    levels.push(current.primary_share());

    let mut out: Vec<Weights> = Vec::with_capacity(MAX_CANDIDATES);
    let mut seen: BTreeSet<Vec<u32>> = BTreeSet::new();
    let mut push = |w: Weights, out: &mut Vec<Weights>| {
        if w.validate(n).is_ok() && seen.insert(w.iter().collect()) {
            out.push(w);
        }
    };
    push(current.clone(), &mut out);
    for pattern in &patterns {
        // An all-zero pattern would put everything on the primary: level 100 covers it.
        if !pattern.iter().any(|&f| f > 0.0) {
            continue;
        }
        for &level in &levels {
            push(Weights::from_parts(level, pattern), &mut out);
        }
    }
    if out.is_empty() {
        out.push(Weights::all_primary(n));
    }
    out
}

/// Ticks in one control interval, as the episode runner counts them.
fn ticks_per_interval(sim: &Simulator) -> u64 {
    let t = &sim.scenario().timing;
    ((t.control_interval_s / t.tick_s).round() as u64).max(1)
}

/// One partial plan.
#[derive(Clone)]
struct Node {
    sim: Simulator,
    shield: Shield,
    current: Weights,
    value: f64,
    /// Index of its first action in `Plan::firsts`.
    first: usize,
}

/// A first action: what to propose, and what the shield applies.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstAction {
    /// The target to propose (the applied weights when the shield passes them unchanged).
    pub proposal: Weights,
    /// What the shield applies.
    pub applied: Weights,
    /// Best discounted plan value found starting with it (`None` if pruned before the end).
    pub value: Option<f64>,
    /// Index, among the first-step targets, of the first one the shield applies this way.
    pub target: usize,
}

/// The result of one planning step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Every distinct first action, in candidate order.
    pub firsts: Vec<FirstAction>,
    /// Index of the chosen one in `firsts`.
    pub best: usize,
    /// Discounted value of the best plan.
    pub value: f64,
    /// Simulated control intervals (node expansions), the probe included.
    pub expansions: u64,
}

/// Expands `node` by one interval with every target in `targets` (deduplicated by the
/// weights its shield applies). Returns the children and, for each, the target proposed.
fn expand(
    node: &Node,
    targets: &[Weights],
    reward: &RewardConfig,
    weight: f64,
    ticks: u64,
) -> Vec<(Node, Weights, usize)> {
    let obs = node.sim.observe();
    let slo = &node.sim.scenario().slo;
    let mut seen: BTreeSet<Vec<u32>> = BTreeSet::new();
    let mut out = Vec::with_capacity(targets.len());
    let mask = node.shield.mask(&obs, &node.current);
    for (index, t) in targets.iter().enumerate() {
        let mut shield = node.shield.clone();
        let applied = shield
            .apply(&obs, &node.current, Proposal::new(t.clone(), ""))
            .weights;
        if !seen.insert(applied.iter().collect()) {
            continue;
        }
        let proposal = if mask.allows(&applied) {
            applied.clone()
        } else {
            t.clone()
        };
        let mut sim = node.sim.clone();
        sim.set_weights(&applied);
        let mut stats = IntervalStats::default();
        for _ in 0..ticks {
            if sim.done() {
                break;
            }
            stats.add(&sim.step());
        }
        let moved = node.current.moved_fraction(&applied);
        let r = reward.reward(&stats.outcome(moved), slo);
        out.push((
            Node {
                sim,
                shield,
                current: applied,
                value: node.value + weight * r,
                first: node.first,
            },
            proposal,
            index,
        ));
    }
    out
}

/// Keeps the `beam` best nodes, at most `per_first` per first action. Stable: ties keep the
/// earlier node.
fn select(mut nodes: Vec<Node>, beam: usize, per_first: usize, firsts: usize) -> Vec<Node> {
    nodes.sort_by(|a, b| b.value.total_cmp(&a.value));
    let mut count = vec![0usize; firsts];
    let mut out = Vec::with_capacity(beam);
    for n in nodes {
        if out.len() >= beam {
            break;
        }
        if count[n.first] < per_first {
            count[n.first] += 1;
            out.push(n);
        }
    }
    out
}

/// Plans from `view` and returns the first actions with their values and the best one.
pub fn plan(view: &OracleView, reward: &RewardConfig, cfg: &HorizonConfig) -> Plan {
    plan_from(view, reward, cfg, None)
}

/// Like [`plan`], but the first action is one of `first_options` (when given) instead of the
/// oracle's own [`candidates`]; the later steps still use those. This is how a learner with
/// its own action list asks which of its actions the oracle would take.
pub fn plan_from(
    view: &OracleView,
    reward: &RewardConfig,
    cfg: &HorizonConfig,
    first_options: Option<&[Weights]>,
) -> Plan {
    let horizon = cfg.horizon.max(1);
    let beam = cfg.beam.max(1);
    let per_first = cfg.per_first.max(1);
    let ticks = ticks_per_interval(&view.sim);
    let outlook = outlook(&view.sim, horizon);
    let max_staleness = view.sim.scenario().slo.max_staleness_s;
    let targets = candidates(&view.current, &outlook, max_staleness);
    let first_targets = first_options.unwrap_or(&targets);
    let mut expansions = horizon as u64;

    let root = Node {
        sim: view.sim.clone(),
        shield: view.shield.clone(),
        current: view.current.clone(),
        value: 0.0,
        first: 0,
    };
    let mut firsts = Vec::new();
    let mut frontier = Vec::new();
    for (i, (mut node, proposal, target)) in expand(&root, first_targets, reward, 1.0, ticks)
        .into_iter()
        .enumerate()
    {
        expansions += 1;
        node.first = i;
        firsts.push(FirstAction {
            proposal,
            applied: node.current.clone(),
            value: None,
            target,
        });
        frontier.push(node);
    }
    let nfirst = firsts.len();
    let mut frontier = select(frontier, beam, per_first, nfirst);
    let mut weight = 1.0;
    for _ in 1..horizon {
        if frontier.iter().all(|n| n.sim.done()) {
            break;
        }
        weight *= cfg.discount;
        let mut children = Vec::new();
        for node in &frontier {
            if node.sim.done() {
                children.push(node.clone());
                continue;
            }
            // The root's candidates, plus holding this node's weights.
            let mut here = Vec::with_capacity(targets.len() + 1);
            here.push(node.current.clone());
            here.extend(targets.iter().filter(|t| **t != node.current).cloned());
            for (child, _, _) in expand(node, &here, reward, weight, ticks) {
                expansions += 1;
                children.push(child);
            }
        }
        frontier = select(children, beam, per_first, nfirst);
    }
    for n in &frontier {
        let v = &mut firsts[n.first].value;
        if v.is_none_or(|x| n.value > x) {
            *v = Some(n.value);
        }
    }
    // Best value; ties prefer holding the current weights, then the earlier first action.
    let mut best: Option<(usize, f64)> = None;
    for (i, f) in firsts.iter().enumerate() {
        let Some(v) = f.value else { continue };
        let better = match best {
            None => true,
            Some((b, bv)) => {
                v > bv
                    || (v == bv && f.applied == view.current && firsts[b].applied != view.current)
            }
        };
        if better {
            best = Some((i, v));
        }
    }
    let (best, value) = best.unwrap_or((0, f64::NEG_INFINITY));
    Plan {
        firsts,
        best,
        value,
        expansions,
    }
}

/// The receding-horizon oracle as a training teacher: among the learner's allowed actions, the
/// first step of the best plan (the later steps use the oracle's own candidates). It reads the
/// true simulator and the episode's shield from the slot, like [`Horizon`].
pub struct HorizonTeacher {
    reward: RewardConfig,
    config: HorizonConfig,
    slot: OracleSlot,
}

impl HorizonTeacher {
    /// A teacher reading the truth from `slot`.
    pub fn new(reward: RewardConfig, config: HorizonConfig, slot: OracleSlot) -> Self {
        HorizonTeacher {
            reward,
            config,
            slot,
        }
    }
}

impl Teacher for HorizonTeacher {
    fn choose(
        &mut self,
        candidates: &[Weights],
        allowed: &[bool],
        _current: &Weights,
    ) -> Option<usize> {
        let view = self.slot.lock().ok().and_then(|s| s.clone())?;
        let ok = |a: usize| allowed.get(a).copied().unwrap_or(false);
        let options: Vec<Weights> = (0..candidates.len())
            .filter(|&a| ok(a))
            .map(|a| candidates[a].clone())
            .collect();
        if options.is_empty() {
            return None;
        }
        let plan = plan_from(&view, &self.reward, &self.config, Some(&options));
        let best = plan.firsts.get(plan.best).filter(|f| f.value.is_some())?;
        // Back from the option's index to the candidate's (the shield may have changed the
        // option on its way, e.g. by its step limit: the learner's action is still that one).
        (0..candidates.len()).filter(|&a| ok(a)).nth(best.target)
    }
}

/// The receding-horizon oracle policy.
pub struct Horizon {
    reward: RewardConfig,
    config: HorizonConfig,
    slot: OracleSlot,
    last: Explanation,
}

impl Horizon {
    /// An oracle that reads the true simulator and shield from `slot` at each decision.
    pub fn new(reward: RewardConfig, config: HorizonConfig, slot: OracleSlot) -> Self {
        Horizon {
            reward,
            config,
            slot,
            last: Explanation::default(),
        }
    }

    /// A fresh slot and an oracle reading it.
    pub fn with_slot(reward: RewardConfig, config: HorizonConfig) -> (Self, OracleSlot) {
        let slot: OracleSlot = Arc::new(Mutex::new(None));
        (Horizon::new(reward, config, slot.clone()), slot)
    }

    /// The search settings.
    pub fn config(&self) -> &HorizonConfig {
        &self.config
    }
}

impl Policy for Horizon {
    fn name(&self) -> &str {
        HORIZON
    }

    fn decide(&mut self, ctx: &DecisionContext<'_>) -> Proposal {
        let view = self.slot.lock().ok().and_then(|s| s.clone());
        let Some(view) = view else {
            return Proposal::new(ctx.current.clone(), "horizon: no simulator attached, hold");
        };
        let plan = plan(&view, &self.reward, &self.config);
        let Some(first) = plan.firsts.get(plan.best) else {
            return Proposal::new(ctx.current.clone(), "horizon: nothing to plan, hold");
        };
        let proposal = Proposal::new(
            first.proposal.clone(),
            format!(
                "horizon: best of {} first actions over {} intervals, value {:.3} ({} intervals simulated)",
                plan.firsts.len(),
                self.config.horizon,
                plan.value,
                plan.expansions
            ),
        );
        let mut actions: Vec<ActionValue> = plan
            .firsts
            .iter()
            .filter(|f| f.value.is_some())
            .map(|f| ActionValue {
                label: f.applied.to_string(),
                weights: f.proposal.clone(),
                value: f.value,
                allowed: ctx.mask.allows(&f.proposal),
            })
            .collect();
        actions.sort_by(|a, b| {
            b.value
                .unwrap_or(f64::MIN)
                .total_cmp(&a.value.unwrap_or(f64::MIN))
        });
        actions.truncate(12);
        self.last = Explanation {
            policy: HORIZON.to_string(),
            state: "true simulator state and shield".to_string(),
            actions,
            fallback: None,
        };
        proposal
    }

    fn explain(&self) -> Explanation {
        self.last.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn outlooks(n: usize) -> Vec<ReplicaOutlook> {
        (0..n)
            .map(|i| ReplicaOutlook {
                up: i != 1,
                lag_s: [0.5, 0.0, 12.0, 3.0, 40.0][i % 5],
                peak_lag_s: [0.5, 0.0, 30.0, 9.0, 80.0][i % 5],
                capacity_qps: 1000.0 + 500.0 * i as f64,
            })
            .collect()
    }

    #[test]
    fn candidates_are_bounded_valid_and_unique() {
        for n in [1usize, 2, 3, 5] {
            let current = Weights::even(n);
            let c = candidates(&current, &outlooks(n), 5.0);
            assert!(
                !c.is_empty() && c.len() <= MAX_CANDIDATES,
                "{n}: {}",
                c.len()
            );
            assert_eq!(c[0], current);
            for w in &c {
                w.validate(n).unwrap();
            }
            let keys: BTreeSet<Vec<u32>> = c.iter().map(|w| w.iter().collect()).collect();
            assert_eq!(keys.len(), c.len(), "duplicates for {n} replicas");
        }
    }

    #[test]
    fn candidates_for_five_replicas_contain_the_moves_that_matter() {
        let r = outlooks(5);
        let current = Weights::from_parts(0.2, &[1.0, 1.0, 1.0, 1.0, 1.0]);
        let c = candidates(&current, &r, 5.0);
        assert!(c.len() <= MAX_CANDIDATES);
        // Everything on the primary.
        assert!(c.contains(&Weights::all_primary(5)));
        // Only replicas fresh for the whole horizon (0; 1 is down, 2-4 go stale), no primary.
        assert!(c.contains(&Weights::from_parts(0.0, &[1.0, 0.0, 0.0, 0.0, 0.0])));
        // Fresh now (0 and 3), current primary share kept.
        assert!(c.contains(&Weights::from_parts(0.2, &[1.0, 0.0, 0.0, 1.0, 0.0])));
        // Demoted to 1/3 at half primary.
        assert!(c.contains(&Weights::from_parts(
            0.5,
            &[1.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
        )));
        // The down replica is the worst: excluding only it.
        assert!(c.contains(&Weights::from_parts(0.3, &[1.0, 0.0, 1.0, 1.0, 1.0])));
    }

    #[test]
    fn the_teacher_picks_among_the_learners_allowed_actions_away_from_a_lagging_replica() {
        let scn = weir_sim::Scenario::from_toml_str(
            include_str!("../../../scenarios/train/02-slow-replica.toml"),
            "02-slow-replica.toml",
        )
        .unwrap();
        let mut sim = Simulator::new(&scn, 1);
        let even = Weights::even(2);
        sim.set_weights(&even);
        // replica-2's apply slows from 600 s: by 1000 s it lags far behind.
        while sim.now_s() < 1000.0 {
            sim.step();
        }
        assert!(sim.true_lag_s(1).unwrap() > scn.slo.max_staleness_s);
        let shield = Shield::new(weir_shield::ShieldConfig::default(), scn.slo.clone(), 2);
        let slot: OracleSlot = Arc::new(Mutex::new(Some(OracleView {
            sim,
            shield,
            current: even.clone(),
        })));
        let mut teacher = HorizonTeacher::new(
            RewardConfig::default(),
            HorizonConfig::default(),
            slot.clone(),
        );
        let on_lagging = Weights::from_parts(0.4, &[0.0, 1.0]);
        let off_lagging = Weights::from_parts(0.4, &[1.0, 0.0]);
        let options = [even.clone(), on_lagging, off_lagging];
        // Not holding half the reads on the lagging replica. (Both moves pass through the
        // shield, which takes the lagging replica out either way, so the first of them,
        // index 1, stands for both.)
        let chosen = teacher.choose(&options, &[true, true, true], &even);
        assert!(matches!(chosen, Some(1 | 2)), "{chosen:?}");
        assert_eq!(
            teacher.choose(&options, &[true, false, true], &even),
            Some(2)
        );
        // Only what the shield allows is ever chosen; nothing allowed, or no truth: no choice.
        assert_eq!(
            teacher.choose(&options, &[true, false, false], &even),
            Some(0)
        );
        assert_eq!(teacher.choose(&options, &[false; 3], &even), None);
        *slot.lock().unwrap() = None;
        assert_eq!(teacher.choose(&options, &[true; 3], &even), None);
    }

    #[test]
    fn one_replica_candidates_are_the_primary_levels() {
        let r = vec![ReplicaOutlook {
            up: true,
            lag_s: 1.0,
            peak_lag_s: 1.0,
            capacity_qps: 100.0,
        }];
        let c = candidates(&Weights::even(1), &r, 5.0);
        // 0, 10, ..., 100 on the primary (the current share 0 is one of them).
        assert_eq!(c.len(), 11);
        for w in &c {
            w.validate(1).unwrap();
        }
    }
}
