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

use crate::episode::{Agent, OracleSlot, RunOptions, run_episode};
use crate::oracle::OracleTeacher;

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Scenarios to train on (never the evaluation set).
    pub scenarios: Vec<Scenario>,
    /// Number of episodes.
    pub episodes: u64,
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

/// Trains a table from scratch (or continues `start`).
pub fn train(
    opts: &TrainOptions,
    start: Option<QLearn>,
    mut progress: impl FnMut(&TrainProgress),
) -> Result<QLearn, String> {
    if opts.scenarios.is_empty() {
        return Err("no training scenarios".to_string());
    }
    opts.config.validate()?;
    let mut rng = Rng::new(opts.seed);
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
    let mut steps = q.info().steps;
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
        let seed = rng.next_u64();
        let frac = if opts.episodes > 1 {
            ep as f64 / (opts.episodes - 1) as f64
        } else {
            1.0
        };
        let epsilon = opts.epsilon_start + (opts.epsilon_end - opts.epsilon_start) * frac;
        agent.policy.set_epsilon(epsilon);
        let (m, back) = run_episode(&scn, seed, agent, &opts.run, None);
        agent = back;
        steps += m.decisions;
        ticks += (scn.duration_s / scn.timing.tick_s).round() as u64;
        progress(&TrainProgress {
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
    let mut q = *agent.policy;
    q.set_teacher(None, 0.0);
    let previous = q.info().episodes;
    q.set_info(TrainInfo {
        episodes: previous + opts.episodes,
        steps,
        seed: opts.seed,
        scenarios: opts.scenarios.iter().map(|s| s.name.clone()).collect(),
        command: opts.command.clone(),
    });
    q.serve_mode(false);
    Ok(q)
}
