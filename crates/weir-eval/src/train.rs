//! Offline Q-learning in the simulator.
//!
//! Episodes cycle through the training scenarios; each one is jittered (capacities, rates,
//! event times and factors scaled by up to ±`jitter`) and run with a fresh seed, so the
//! table learns the problem rather than the files. Exploration (ε-greedy over the shield's
//! allowed actions) decays linearly from `epsilon_start` to `epsilon_end`; with probability
//! `teacher_rate` the lookahead oracle picks the behaviour action instead, which steers
//! experience towards the states a good policy visits (Q-learning stays off-policy). The
//! whole run is deterministic for a given `seed`.

use std::sync::{Arc, Mutex};

use weir_core::rng::Rng;
use weir_policy::{QConfig, QLearn, Teacher, qlearn::TrainInfo};
use weir_sim::Scenario;

use crate::EvalError;
use crate::episode::{Agent, RunOptions, run_episode};
use crate::oracle::OracleSlot;
use crate::oracle::OracleTeacher;

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Scenarios to train on (never the evaluation set).
    pub scenarios: Vec<Scenario>,
    /// Episodes per ensemble member.
    pub episodes: u64,
    /// Tables trained with independent seeds and merged (bagging).
    pub members: u32,
    /// Worker threads for the members (the result does not depend on it).
    pub threads: usize,
    /// Master seed.
    pub seed: u64,
    /// Relative parameter jitter per episode (0 = run the files as written).
    pub jitter: f64,
    /// Exploration at the first episode.
    pub epsilon_start: f64,
    /// Exploration at the last episode.
    pub epsilon_end: f64,
    /// Table settings.
    pub config: QConfig,
    /// Reward and shield settings.
    pub run: RunOptions,
    /// Recorded in the model file.
    pub command: String,
    /// Probability that the lookahead oracle picks the behaviour action (0 = plain ε-greedy).
    /// Q-learning is off-policy: the table learns the value of its own greedy policy.
    pub teacher_rate: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            scenarios: Vec::new(),
            episodes: 3000,
            members: 6,
            threads: 2,
            seed: 1,
            jitter: 0.2,
            epsilon_start: 0.3,
            epsilon_end: 0.02,
            config: QConfig::default(),
            run: RunOptions::default(),
            command: String::new(),
            teacher_rate: 0.3,
        }
    }
}

/// Reported after each episode.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    /// Ensemble member (0-based).
    pub member: u32,
    /// Episode just finished (1-based).
    pub episode: u64,
    /// Total episodes.
    pub episodes: u64,
    /// Scenario of the episode.
    pub scenario: String,
    /// Exploration rate used.
    pub epsilon: f64,
    /// Mean reward of the episode.
    pub mean_reward: f64,
    /// Stale reads of the episode, percent.
    pub stale_read_pct: f64,
    /// Failed reads of the episode, percent.
    pub failed_read_pct: f64,
    /// States visited so far.
    pub visited_states: usize,
    /// Decisions (learning steps) so far.
    pub steps: u64,
    /// Simulator ticks so far.
    pub ticks: u64,
}

/// Trains `opts.members` tables with independent seeds (in parallel, `opts.threads` at a time)
/// and merges them, visit-weighted, into one (bagging: the average of several noisy tables
/// makes a steadier greedy policy than any one of them). Deterministic for `opts.seed`
/// whatever the number of threads. `start`, if given, is the starting point of every member.
pub fn train(
    opts: &TrainOptions,
    start: Option<QLearn>,
    progress: impl FnMut(&TrainProgress) + Send,
) -> Result<QLearn, EvalError> {
    if opts.scenarios.is_empty() {
        return Err(EvalError::Nothing("no training scenarios"));
    }
    opts.config.validate()?;
    let members = opts.members.max(1);
    let progress = Mutex::new(progress);
    let next = std::sync::atomic::AtomicU32::new(0);
    let results: Mutex<Vec<Option<(QLearn, u64)>>> = Mutex::new(vec![None; members as usize]);
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.clamp(1, members as usize) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= members {
                        break;
                    }
                    let seed = Rng::new(opts.seed).fork(u64::from(k)).next_u64();
                    let r = train_member(opts, start.clone(), seed, k, &progress);
                    if let Ok(mut all) = results.lock() {
                        all[k as usize] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| EvalError::Worker("a training worker panicked"))?;
    let mut merged: Option<QLearn> = None;
    let mut steps = start.as_ref().map_or(0, |q| q.info().steps);
    for r in results {
        let (q, s) = r.ok_or(EvalError::Worker("a training member did not run"))?;
        steps += s;
        match &mut merged {
            None => merged = Some(q),
            Some(m) => m.merge(&q)?,
        }
    }
    let mut q = merged.ok_or(EvalError::Worker("no training member"))?;
    let previous = start.as_ref().map_or(0, |q| q.info().episodes);
    q.set_info(TrainInfo {
        episodes: previous + opts.episodes * u64::from(members),
        steps,
        seed: opts.seed,
        scenarios: opts.scenarios.iter().map(|s| s.name.clone()).collect(),
        command: opts.command.clone(),
    });
    q.serve_mode(false);
    Ok(q)
}

/// One member: `opts.episodes` episodes from `seed`. Returns the table and its learning steps.
fn train_member<F: FnMut(&TrainProgress)>(
    opts: &TrainOptions,
    start: Option<QLearn>,
    seed: u64,
    member: u32,
    progress: &Mutex<F>,
) -> (QLearn, u64) {
    let mut rng = Rng::new(seed);
    let mut q = start.unwrap_or_else(|| QLearn::new(opts.config.clone()));
    q.train_mode(opts.epsilon_start, rng.next_u64());
    let oracle: Option<OracleSlot> = (opts.teacher_rate > 0.0).then(|| Arc::new(Mutex::new(None)));
    if let Some(slot) = &oracle {
        let teacher: Arc<Mutex<dyn Teacher>> = Arc::new(Mutex::new(OracleTeacher::new(
            opts.run.reward.clone(),
            slot.clone(),
        )));
        q.set_teacher(Some(teacher), opts.teacher_rate);
    }
    let mut steps = 0u64;
    let mut ticks = 0u64;
    let mut agent = Agent {
        policy: Box::new(q),
        oracle,
        shielded: true,
    };
    for ep in 0..opts.episodes {
        let base = &opts.scenarios[(ep as usize) % opts.scenarios.len()];
        let scn = if opts.jitter > 0.0 {
            base.jittered(&mut rng, opts.jitter)
        } else {
            base.clone()
        };
        let episode_seed = rng.next_u64();
        let frac = if opts.episodes > 1 {
            ep as f64 / (opts.episodes - 1) as f64
        } else {
            1.0
        };
        let epsilon = opts.epsilon_start + (opts.epsilon_end - opts.epsilon_start) * frac;
        agent.policy.set_epsilon(epsilon);
        let (m, back) = run_episode(&scn, episode_seed, agent, &opts.run, None);
        agent = back;
        steps += m.decisions;
        ticks += (scn.duration_s / scn.timing.tick_s).round() as u64;
        if let Ok(mut report) = progress.lock() {
            report(&TrainProgress {
                member,
                episode: ep + 1,
                episodes: opts.episodes,
                scenario: base.name.clone(),
                epsilon,
                mean_reward: m.mean_reward,
                stale_read_pct: m.stale_read_pct,
                failed_read_pct: m.failed_read_pct,
                visited_states: agent.policy.visited_states(),
                steps,
                ticks,
            });
        }
    }
    let mut q = *agent.policy;
    q.set_teacher(None, 0.0);
    (q, steps)
}
