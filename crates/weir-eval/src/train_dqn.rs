//! Offline DQN training in the simulator.
//!
//! Every step goes through [`run_episode`], so the network sees exactly what the live loop
//! would show it (the same `ControlStep`, the shield's mask and repairs) and learns through
//! [`weir_core::Policy::learn`]. Where the episodes come from is a closure (`source`):
//! today [`jittered_files`] (the training files, parameters jittered per episode); a
//! procedural generator can be passed instead without touching the training loop.
//!
//! Exploration decays linearly from `epsilon_start` to `epsilon_end` over the first
//! `explore_fraction` of the episodes; with probability `teacher_rate` an oracle (the
//! one-step lookahead, or the receding horizon planning from the learner's own actions)
//! picks the behaviour action (it steers experience towards states a good policy visits;
//! DQN is off-policy, so the network still learns its own greedy values; with
//! `DqnConfig::expert_weight > 0` it is also pushed towards the teacher's choices by a
//! large-margin term, see `weir_policy::dqn::learner`). Training runs on
//! one thread and is deterministic for a seed: the weights are initialised and the
//! minibatches sampled from Weir's `Rng`, and candle's CPU kernels give the same result run
//! after run (checked by a test and by `weir train --policy dqn` twice).

use std::sync::{Arc, Mutex};

use weir_core::rng::Rng;
use weir_policy::qlearn::TrainInfo;
use weir_policy::{Dqn, DqnConfig, DqnModel, Teacher};
use weir_sim::Scenario;

use crate::EvalError;
use crate::episode::{Agent, RunOptions, run_episode};
use crate::horizon::{HorizonConfig, HorizonTeacher};
use crate::oracle::{OracleSlot, OracleTeacher};

/// Where training episodes come from: called with the episode number (0-based) and the
/// training run's generator, returns the scenario to run.
pub trait ScenarioSource: FnMut(u64, &mut Rng) -> Scenario {}
impl<F: FnMut(u64, &mut Rng) -> Scenario> ScenarioSource for F {}

/// The training files in turn, each episode's copy jittered by up to ±`jitter` (0 = as
/// written).
pub fn jittered_files(files: Vec<Scenario>, jitter: f64) -> impl ScenarioSource {
    move |episode, rng| {
        let base = &files[(episode as usize) % files.len().max(1)];
        if jitter > 0.0 {
            base.jittered(rng, jitter)
        } else {
            base.clone()
        }
    }
}

/// Domain randomisation: each episode is, with probability `share`, a fresh scenario from the
/// generator's *train* split (`weir_sim::generate`, index = episode number, master `seed`),
/// else the next training file jittered by up to ±`jitter`. The held-out split and the
/// evaluation files are never read. A generator error (a bad configuration) falls back to the
/// file, so training never stops on it; `GeneratorConfig::default()` never errs.
pub fn generated_and_files(
    files: Vec<Scenario>,
    jitter: f64,
    generator: weir_sim::generate::GeneratorConfig,
    seed: u64,
    share: f64,
) -> impl ScenarioSource {
    let mut from_files = jittered_files(files, jitter);
    move |episode, rng| {
        if rng.uniform() < share
            && let Ok(s) = weir_sim::generate::generate(
                &generator,
                weir_sim::generate::Split::Train,
                seed,
                u32::try_from(episode).unwrap_or(u32::MAX),
            )
        {
            return s;
        }
        from_files(episode, rng)
    }
}

/// The oracle that picks the behaviour action (and, with `expert_weight > 0`, labels it).
#[derive(Debug, Clone, PartialEq)]
pub enum TeacherKind {
    /// One interval ahead over the learner's actions (cheap, myopic).
    Lookahead,
    /// The receding-horizon oracle with these settings, the learner's actions as first steps.
    Horizon(HorizonConfig),
}

/// DQN training settings.
#[derive(Debug, Clone)]
pub struct DqnTrainOptions {
    /// Episodes.
    pub episodes: u64,
    /// Master seed.
    pub seed: u64,
    /// Exploration at the first episode.
    pub epsilon_start: f64,
    /// Exploration from `explore_fraction` of the run on.
    pub epsilon_end: f64,
    /// Share of the episodes over which exploration decays.
    pub explore_fraction: f64,
    /// Probability that the teacher picks the behaviour action.
    pub teacher_rate: f64,
    /// Which oracle teaches.
    pub teacher: TeacherKind,
    /// Network and learning settings.
    pub config: DqnConfig,
    /// Reward and shield settings.
    pub run: RunOptions,
    /// Recorded in the model file.
    pub command: String,
}

impl Default for DqnTrainOptions {
    fn default() -> Self {
        DqnTrainOptions {
            episodes: 1500,
            seed: 1,
            epsilon_start: 0.5,
            epsilon_end: 0.05,
            explore_fraction: 0.6,
            teacher_rate: 0.3,
            teacher: TeacherKind::Lookahead,
            config: DqnConfig::default(),
            run: RunOptions::default(),
            command: String::new(),
        }
    }
}

/// Reported after each episode.
#[derive(Debug, Clone, PartialEq)]
pub struct DqnProgress {
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
    /// Transitions stored so far.
    pub steps: u64,
    /// Gradient steps so far.
    pub updates: u64,
    /// Running mean of the loss.
    pub loss: f64,
}

/// Trains a DQN on the episodes `source` produces. Deterministic for `opts.seed` (and a
/// deterministic source).
pub fn train_dqn(
    opts: &DqnTrainOptions,
    mut source: impl ScenarioSource,
    mut progress: impl FnMut(&DqnProgress),
) -> Result<DqnModel, EvalError> {
    opts.config
        .validate()
        .map_err(|e| EvalError::Training(format!("DQN config: {e}")))?;
    let mut rng = Rng::new(opts.seed);
    let mut dqn = Dqn::untrained(opts.config.clone(), rng.next_u64())?;
    dqn.train_mode(opts.epsilon_start, rng.next_u64())?;
    let oracle: Option<OracleSlot> = (opts.teacher_rate > 0.0).then(|| Arc::new(Mutex::new(None)));
    if let Some(slot) = &oracle {
        let teacher: Arc<Mutex<dyn Teacher>> = match &opts.teacher {
            TeacherKind::Lookahead => Arc::new(Mutex::new(OracleTeacher::new(
                opts.run.reward.clone(),
                slot.clone(),
            ))),
            TeacherKind::Horizon(cfg) => Arc::new(Mutex::new(HorizonTeacher::new(
                opts.run.reward.clone(),
                cfg.clone(),
                slot.clone(),
            ))),
        };
        dqn.set_teacher(Some(teacher), opts.teacher_rate);
    }
    let mut agent = Agent {
        policy: Box::new(dqn),
        oracle,
        shielded: true,
    };
    let mut names: Vec<String> = Vec::new();
    let decay = ((opts.episodes as f64) * opts.explore_fraction.clamp(0.0, 1.0)).max(1.0);
    for ep in 0..opts.episodes {
        let scn = source(ep, &mut rng);
        if names.len() < 64 && !names.contains(&scn.name) {
            names.push(scn.name.clone());
        }
        let episode_seed = rng.next_u64();
        let frac = (ep as f64 / decay).min(1.0);
        let epsilon = opts.epsilon_start + (opts.epsilon_end - opts.epsilon_start) * frac;
        agent.policy.set_epsilon(epsilon);
        let (m, back) = run_episode(&scn, episode_seed, agent, &opts.run, None);
        agent = back;
        if let Some(e) = agent.policy.error() {
            return Err(EvalError::Training(format!("DQN learning step: {e}")));
        }
        let stats = agent.policy.stats();
        progress(&DqnProgress {
            episode: ep + 1,
            episodes: opts.episodes,
            scenario: scn.name.clone(),
            epsilon,
            mean_reward: m.mean_reward,
            stale_read_pct: m.stale_read_pct,
            steps: stats.steps,
            updates: stats.updates,
            loss: stats.loss,
        });
    }
    let mut dqn = *agent.policy;
    let stats = dqn.stats();
    dqn.serve_mode()?;
    dqn.set_info(TrainInfo {
        episodes: opts.episodes,
        steps: stats.steps,
        seed: opts.seed,
        scenarios: names,
        command: opts.command.clone(),
    });
    Ok(dqn.model()?)
}

/// Trains `members` networks at once, one thread each (the machine's cores share them),
/// and serves their mean as one model ([`DqnModel::ensemble`]). Member `i` is exactly the
/// network [`train_dqn`] gives with seed `opts.seed + i` on the episodes of `source(seed)`,
/// so the whole is deterministic for `opts.seed`. `progress` is told which member reports.
/// One member is a plain network, byte for byte what [`train_dqn`] writes.
pub fn train_dqn_ensemble<S: ScenarioSource>(
    opts: &DqnTrainOptions,
    members: u32,
    source: impl Fn(u64) -> S + Sync,
    progress: impl Fn(usize, &DqnProgress) + Sync,
) -> Result<DqnModel, EvalError> {
    if members == 0 {
        return Err(EvalError::Training(
            "an ensemble needs at least 1 member".into(),
        ));
    }
    if members == 1 {
        return train_dqn(opts, source(opts.seed), |p| progress(0, p));
    }
    let trained: Vec<Result<DqnModel, EvalError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..members as usize)
            .map(|i| {
                let (source, progress) = (&source, &progress);
                scope.spawn(move || {
                    let seed = opts.seed.wrapping_add(i as u64);
                    let member = DqnTrainOptions {
                        seed,
                        ..opts.clone()
                    };
                    train_dqn(&member, source(seed), |p| progress(i, p))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EvalError::Training(
                        "a member's training thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let trained = trained.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(DqnModel::ensemble(&trained, opts.command.clone())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_scenario() -> Scenario {
        let mut s = Scenario::from_toml_str(
            include_str!("../../../scenarios/train/02-slow-replica.toml"),
            "02-slow-replica.toml",
        )
        .expect("training scenario parses");
        // The slow replica starts at 600 s: 900 s of it is enough to learn something.
        s.duration_s = 900.0;
        s
    }

    fn tiny_options() -> DqnTrainOptions {
        DqnTrainOptions {
            episodes: 3,
            teacher_rate: 0.2,
            config: DqnConfig {
                hidden: vec![16, 16],
                warmup: 32,
                batch: 16,
                ..DqnConfig::default()
            },
            ..DqnTrainOptions::default()
        }
    }

    #[test]
    fn a_short_training_is_deterministic() {
        let run = || {
            let mut rewards = Vec::new();
            let m = train_dqn(
                &tiny_options(),
                jittered_files(vec![tiny_scenario()], 0.2),
                |p| rewards.push(p.mean_reward),
            )
            .expect("trains");
            (m.to_bytes(), rewards, m.info.steps)
        };
        let (a, ra, steps) = run();
        let (b, rb, _) = run();
        assert_eq!(ra, rb);
        assert!(steps > 0);
        assert!(a == b, "same seed, different model files");
    }

    #[test]
    fn a_teacher_without_foresight_teaches_from_the_present_only() {
        // The slow replica starts at 600 s: a teacher that sees the script plans for it
        // before it happens, one without foresight cannot.
        let run = |blind: bool| {
            let opts = DqnTrainOptions {
                episodes: 1,
                teacher_rate: 1.0,
                teacher: TeacherKind::Horizon(HorizonConfig {
                    horizon: 2,
                    beam: 2,
                    ..HorizonConfig::default()
                }),
                run: RunOptions {
                    oracle_without_foresight: blind,
                    ..RunOptions::default()
                },
                ..tiny_options()
            };
            let mut rewards = Vec::new();
            let m = train_dqn(&opts, jittered_files(vec![tiny_scenario()], 0.0), |p| {
                rewards.push(p.mean_reward)
            })
            .expect("trains");
            (m.to_bytes(), rewards)
        };
        let (exact, r_exact) = run(false);
        let (blind, r_blind) = run(true);
        assert!(
            exact != blind && r_exact != r_blind,
            "the teacher without foresight chose exactly as the one that sees the script"
        );
    }

    #[test]
    fn an_ensemble_is_its_members_trained_alone_averaged() {
        let opts = DqnTrainOptions {
            episodes: 2,
            seed: 7,
            ..tiny_options()
        };
        let source = |_seed: u64| jittered_files(vec![tiny_scenario()], 0.2);
        let reports = std::sync::Mutex::new([0u64; 2]);
        let together = train_dqn_ensemble(&opts, 2, source, |i, _| {
            reports.lock().unwrap()[i] += 1;
        })
        .expect("trains");
        assert_eq!(
            *reports.lock().unwrap(),
            [2, 2],
            "each member reports each episode"
        );
        let alone: Vec<DqnModel> = [7, 8]
            .into_iter()
            .map(|seed| {
                let member = DqnTrainOptions {
                    seed,
                    ..opts.clone()
                };
                train_dqn(&member, source(seed), |_| {}).expect("trains")
            })
            .collect();
        assert_ne!(
            alone[0].to_bytes(),
            alone[1].to_bytes(),
            "members differ by seed"
        );
        let merged = DqnModel::ensemble(&alone, opts.command.clone()).expect("merges");
        assert!(together.to_bytes() == merged.to_bytes());
        assert_eq!(together.config.members, 2);
        // One member is a plain network, the same file train_dqn writes.
        let one = train_dqn_ensemble(&opts, 1, source, |_, _| {}).expect("trains");
        assert!(one.to_bytes() == alone[0].to_bytes());
    }
}
