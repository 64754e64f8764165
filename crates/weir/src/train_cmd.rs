//! `weir train`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use weir_eval::{
    DqnTrainOptions, TeacherKind, TrainOptions, generated_and_files, train, train_dqn_ensemble,
};
use weir_policy::{PolicyKind, QLearn};

use crate::cli::{TeacherArg, TrainArgs};

pub fn run(args: TrainArgs) -> Result<()> {
    let scenarios = weir_sim::load_dir(&args.scenarios).with_context(|| {
        format!(
            "loading training scenarios from {}",
            args.scenarios.display()
        )
    })?;
    match args.policy {
        PolicyKind::Qlearn => run_qlearn(args, scenarios),
        PolicyKind::Dqn => run_dqn(args, scenarios),
        other => bail!("policy {other} does not learn: train qlearn or dqn"),
    }
}

/// Networks in the ensemble `weir train --policy dqn` trains by default (docs/benchmark.md).
pub(crate) const DQN_MEMBERS: u32 = 5;
/// Tables `weir train --policy qlearn` bags by default.
const QLEARN_MEMBERS: u32 = 6;

/// The seed each shipped model was trained with (docs/benchmark.md): `weir train` without
/// `--seed` rebuilds the shipped file.
pub(crate) fn shipped_seed(policy: PolicyKind) -> u64 {
    match policy {
        // Chosen between two five-network ensembles on the validation set (docs/benchmark.md).
        PolicyKind::Dqn => 6,
        _ => 1,
    }
}

fn run_qlearn(args: TrainArgs, scenarios: Vec<weir_sim::Scenario>) -> Result<()> {
    if args.switch_cost.is_some() {
        bail!("--switch-cost is for dqn: qlearn trains on the reward's own switch cost");
    }
    if args.teacher_without_foresight {
        bail!("--teacher-without-foresight is for dqn: qlearn's teacher is the one-step lookahead");
    }
    let seed = args.seed.unwrap_or(shipped_seed(PolicyKind::Qlearn));
    let episodes = args.episodes.unwrap_or(3000);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models/qlearn.json"));
    let start = match &args.resume {
        Some(p) => Some(QLearn::load(p)?),
        None => None,
    };
    let command = format!(
        "weir train --scenarios {} --episodes {} --members {} --seed {} --jitter {} --teacher-rate {} --reward {} --out {}",
        args.scenarios.display(),
        episodes,
        args.members.unwrap_or(QLEARN_MEMBERS),
        seed,
        args.jitter,
        args.teacher_rate,
        format!("{:?}", args.reward).to_lowercase(),
        out.display()
    );
    let opts = TrainOptions {
        scenarios,
        episodes,
        seed,
        jitter: args.jitter,
        teacher_rate: args.teacher_rate,
        members: args.members.unwrap_or(QLEARN_MEMBERS),
        threads: args.threads,
        run: weir_eval::RunOptions {
            reward: args.reward.config(),
            ..weir_eval::RunOptions::default()
        },
        command,
        ..TrainOptions::default()
    };
    let q = train_with_progress(&opts, start, args.progress_every)?;
    q.save(&out)?;
    println!(
        "wrote {} ({} states visited, {} episodes, {} learning steps)",
        out.display(),
        q.visited_states(),
        q.info().episodes,
        q.info().steps
    );
    Ok(())
}

/// Trains, printing a progress line every `every` episodes (across all ensemble members; the
/// means are over the episodes since the previous line).
pub fn train_with_progress(
    opts: &TrainOptions,
    start: Option<QLearn>,
    every: u64,
) -> Result<QLearn> {
    let every = every.max(1);
    let total = opts.episodes * u64::from(opts.members.max(1));
    let mut done = 0u64;
    let mut window = (0.0, 0.0, 0u64);
    let (mut steps, mut ticks) = (
        vec![0u64; opts.members.max(1) as usize],
        vec![0u64; opts.members.max(1) as usize],
    );
    let started = std::time::Instant::now();
    let q = train(opts, start, |p| {
        done += 1;
        window.0 += p.mean_reward;
        window.1 += p.stale_read_pct;
        window.2 += 1;
        if let (Some(s), Some(t)) = (
            steps.get_mut(p.member as usize),
            ticks.get_mut(p.member as usize),
        ) {
            *s = p.steps;
            *t = p.ticks;
        }
        if done.is_multiple_of(every) || done == total {
            let k = window.2.max(1) as f64;
            println!(
                "episodes {:>6}/{}  ({} members)  ε≈{:.3}  mean reward {:>8.3}  stale {:>6.2}%  steps {:>9}  ticks {:>11}  {:.1}s",
                done,
                total,
                opts.members.max(1),
                p.epsilon,
                window.0 / k,
                window.1 / k,
                steps.iter().sum::<u64>(),
                ticks.iter().sum::<u64>(),
                started.elapsed().as_secs_f64()
            );
            window = (0.0, 0.0, 0);
        }
    })?;
    Ok(q)
}

/// `weir train --policy dqn`: `--members` networks (seeds seed, seed+1, ...), each trained on
/// its own thread and averaged into one (deterministic for a seed), with a progress bar
/// (episodes of all members, mean reward of the last 50 episodes, ETA).
fn run_dqn(args: TrainArgs, scenarios: Vec<weir_sim::Scenario>) -> Result<()> {
    if args.resume.is_some() {
        bail!("--resume is for qlearn: a DQN is trained from scratch");
    }
    if scenarios.is_empty() {
        bail!("no training scenarios in {}", args.scenarios.display());
    }
    let seed = args.seed.unwrap_or(shipped_seed(PolicyKind::Dqn));
    let members = args.members.unwrap_or(DQN_MEMBERS);
    let defaults = DqnTrainOptions::default();
    let episodes = args.episodes.unwrap_or(defaults.episodes);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models/dqn.safetensors"));
    let mut reward = args.reward.config();
    let switch_flag = match args.switch_cost {
        Some(c) if c.is_finite() && c >= 0.0 => {
            reward.switch = c;
            format!(" --switch-cost {c}")
        }
        Some(c) => bail!("--switch-cost must be a non-negative number, got {c}"),
        None => String::new(),
    };
    let blind_flag = if args.teacher_without_foresight {
        " --teacher-without-foresight"
    } else {
        ""
    };
    let command = format!(
        "weir train --policy dqn --scenarios {} --generated-share {} --episodes {episodes} --members {members} --seed {} --jitter {} --teacher-rate {} --teacher {}{blind_flag} --expert-weight {}{switch_flag} --reward {} --out {}",
        args.scenarios.display(),
        args.generated_share,
        seed,
        args.jitter,
        args.teacher_rate,
        format!("{:?}", args.teacher).to_lowercase(),
        args.expert_weight,
        format!("{:?}", args.reward).to_lowercase(),
        out.display()
    );
    if !(args.expert_weight.is_finite() && args.expert_weight >= 0.0) {
        bail!(
            "--expert-weight must be a non-negative number, got {}",
            args.expert_weight
        );
    }
    let opts = DqnTrainOptions {
        episodes,
        seed,
        teacher_rate: args.teacher_rate,
        teacher: match args.teacher {
            TeacherArg::Lookahead => TeacherKind::Lookahead,
            TeacherArg::Horizon => TeacherKind::Horizon(weir_eval::HorizonConfig::default()),
        },
        config: weir_policy::DqnConfig {
            expert_weight: args.expert_weight,
            ..defaults.config.clone()
        },
        run: weir_eval::RunOptions {
            reward,
            oracle_without_foresight: args.teacher_without_foresight,
            ..weir_eval::RunOptions::default()
        },
        command,
        ..defaults
    };
    let bar = ProgressBar::new(episodes * u64::from(members));
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} episodes  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let every = args.progress_every.max(1);
    let started = Instant::now();
    if !(0.0..=1.0).contains(&args.generated_share) {
        bail!(
            "--generated-share must be within 0..=1, got {}",
            args.generated_share
        );
    }
    let source = |member_seed: u64| {
        generated_and_files(
            scenarios.clone(),
            args.jitter,
            weir_sim::generate::GeneratorConfig::default(),
            member_seed,
            args.generated_share,
        )
    };
    // The last 50 episodes' rewards, over all members.
    let recent = std::sync::Mutex::new(std::collections::VecDeque::<f64>::new());
    let model = train_dqn_ensemble(&opts, members, source, |member, p| {
        let mean = {
            let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == 50 {
                recent.pop_front();
            }
            recent.push_back(p.mean_reward);
            recent.iter().sum::<f64>() / recent.len().max(1) as f64
        };
        let msg = format!(
            "reward(50) {mean:>7.3}  ε {:.3}  loss {:.4}  updates {}",
            p.epsilon, p.loss, p.updates
        );
        bar.inc(1);
        bar.set_message(msg.clone());
        if bar.is_hidden() && (p.episode.is_multiple_of(every) || p.episode == p.episodes) {
            let who = if members > 1 {
                format!("member {member}: ")
            } else {
                String::new()
            };
            println!(
                "{who}episodes {:>6}/{}  {msg}  {:.1}s",
                p.episode,
                p.episodes,
                started.elapsed().as_secs_f64()
            );
        }
    })?;
    bar.finish();
    model.save(&out)?;
    println!(
        "wrote {} ({}; {} learning steps, {:.1}s)",
        out.display(),
        model.describe(),
        model.info.steps,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_policy::{Model, PolicyKind};

    use super::{DQN_MEMBERS, shipped_seed};

    #[test]
    fn train_without_a_seed_uses_the_seed_each_shipped_model_records() {
        for kind in [PolicyKind::Dqn, PolicyKind::Qlearn] {
            let model = Model::shipped(kind)
                .expect("a shipped model")
                .expect("it loads");
            let described = model.describe();
            let seed = shipped_seed(kind);
            assert!(
                described.contains(&format!("--seed {seed} ")),
                "{kind}: `weir train` defaults to --seed {seed}, the shipped model says: {described}"
            );
        }
        let dqn = Model::shipped(PolicyKind::Dqn)
            .expect("a shipped model")
            .expect("it loads")
            .describe();
        assert!(
            dqn.contains(&format!("--members {DQN_MEMBERS} "))
                && dqn.contains(&format!("mean of {DQN_MEMBERS} networks")),
            "`weir train --policy dqn` defaults to --members {DQN_MEMBERS}, the shipped model says: {dqn}"
        );
    }
}
