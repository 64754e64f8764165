//! Double DQN training state: experience replay, the online and target networks, Adam.
//!
//! candle provides tensors, autograd, layers and the optimiser; everything specific to
//! reinforcement learning is here: a bounded replay ring, minibatches sampled with Weir's own
//! [`Rng`], the Double-DQN target `r + γ·Q_target(s', argmax_{a' allowed} Q_online(s', a'))`
//! with the max taken only over the actions the shield allowed in `s'` (stored with the
//! transition), the Huber loss, and a periodic hard copy of the online network into the
//! target network. Where a teacher chose the action, a large-margin supervised term (as in
//! DQfD, Hester et al. 2018) is added: `max_a [Q(s,a) + m·(a ≠ a_E)] − Q(s,a_E)` over the
//! allowed actions, weighted by `expert_weight`, so the greedy policy learns the teacher's
//! choice while the TD term keeps the values honest.

use candle_core::{Device, Result, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use weir_core::rng::Rng;

use super::DqnConfig;
use super::actions::N_ACTIONS;
use super::features::N_FEATURES;
use super::net::{Net, TrainNet};

/// A bit set of allowed actions (`N_ACTIONS` ≤ 64).
pub type ActionMask = u64;

/// The bit set of `allowed`.
pub fn mask_bits(allowed: &[bool]) -> ActionMask {
    allowed
        .iter()
        .enumerate()
        .filter(|(_, a)| **a)
        .fold(0, |m, (i, _)| m | (1 << i))
}

/// One step of experience.
#[derive(Debug, Clone)]
pub struct Experience {
    /// Features of the state.
    pub state: [f32; N_FEATURES],
    /// Action taken.
    pub action: usize,
    /// Reward (already scaled).
    pub reward: f32,
    /// Features of the next state.
    pub next: [f32; N_FEATURES],
    /// Actions the shield allowed in the next state.
    pub next_allowed: ActionMask,
    /// Actions the shield allowed in this state.
    pub allowed: ActionMask,
    /// The teacher's action in this state, when a teacher chose it, and every action with
    /// the same target weights (none of them is penalised against it).
    pub expert: Option<(usize, ActionMask)>,
}

/// A bounded ring of experience.
#[derive(Debug, Clone)]
pub struct Replay {
    items: Vec<Experience>,
    capacity: usize,
    next: usize,
}

impl Replay {
    /// An empty ring holding at most `capacity` steps.
    pub fn new(capacity: usize) -> Replay {
        Replay {
            items: Vec::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    /// Adds a step, overwriting the oldest when full.
    pub fn push(&mut self, e: Experience) {
        if self.items.len() < self.capacity {
            self.items.push(e);
        } else {
            self.items[self.next] = e;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// Steps held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Everything that changes during training.
pub struct Learner {
    online: TrainNet,
    target: Net,
    opt: AdamW,
    replay: Replay,
    rng: Rng,
    /// Experience steps since the last gradient step.
    since_update: usize,
    /// Gradient steps taken.
    pub updates: u64,
    /// Experience steps seen.
    pub steps: u64,
    /// Running mean of the loss (for progress reports).
    pub loss: f64,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("replay", &self.replay.len())
            .field("updates", &self.updates)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Learner {
    /// Starts training from `net` with minibatches drawn from `seed`.
    pub fn new(net: &Net, config: &DqnConfig, seed: u64) -> Result<Learner> {
        let online = TrainNet::from_net(net)?;
        let opt = AdamW::new(
            online.vars(),
            ParamsAdamW {
                lr: config.learning_rate,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Learner {
            target: online.snapshot()?,
            online,
            opt,
            replay: Replay::new(config.replay),
            rng: Rng::new(seed),
            since_update: 0,
            updates: 0,
            steps: 0,
            loss: 0.0,
        })
    }

    /// The current online network (a deep copy).
    pub fn net(&self) -> Result<Net> {
        self.online.snapshot()
    }

    /// Q-values of one input under the online network.
    pub fn q(&self, x: &[f32]) -> Result<Vec<f32>> {
        let t = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?;
        self.online
            .forward(&t)?
            .detach()
            .flatten_all()?
            .to_vec1::<f32>()
    }

    /// Records a step and, every `train_every` steps once the replay holds `warmup` steps,
    /// takes a gradient step.
    pub fn observe(&mut self, e: Experience, config: &DqnConfig) -> Result<()> {
        self.replay.push(e);
        self.steps += 1;
        self.since_update += 1;
        if self.replay.len() >= config.warmup.max(config.batch)
            && self.since_update >= config.train_every.max(1)
        {
            self.since_update = 0;
            self.update(config)?;
        }
        Ok(())
    }

    /// One gradient step on a minibatch.
    fn update(&mut self, config: &DqnConfig) -> Result<()> {
        let b = config.batch.max(1);
        let dev = Device::Cpu;
        let mut s = Vec::with_capacity(b * N_FEATURES);
        let mut s2 = Vec::with_capacity(b * N_FEATURES);
        let mut acts = Vec::with_capacity(b);
        let mut rewards = Vec::with_capacity(b);
        let mut masks = Vec::with_capacity(b);
        // The supervised term: per row, the margins (0 for the expert's targets, `m` for
        // other allowed actions, far below for forbidden ones), the expert's index and
        // whether the row has one.
        let lambda = config.expert_weight as f32;
        let margin = (config.expert_margin * config.reward_scale) as f32;
        let mut margins: Vec<f32> = Vec::new();
        let mut expert_idx: Vec<u32> = Vec::new();
        let mut labelled: Vec<f32> = Vec::new();
        for _ in 0..b {
            let e = &self.replay.items[self.rng.below(self.replay.len())];
            s.extend_from_slice(&e.state);
            s2.extend_from_slice(&e.next);
            acts.push(e.action as u32);
            rewards.push(e.reward);
            masks.push(e.next_allowed);
            if lambda > 0.0 {
                let (a_e, same) = e.expert.unwrap_or((0, 0));
                let has = e.expert.is_some();
                margins.extend((0..N_ACTIONS).map(|a| {
                    if !has || same & (1 << a) != 0 || a == a_e {
                        0.0
                    } else if e.allowed & (1 << a) != 0 {
                        margin
                    } else {
                        -1e6
                    }
                }));
                expert_idx.push(a_e as u32);
                labelled.push(if has { 1.0 } else { 0.0 });
            }
        }
        let s2t = Tensor::from_vec(s2, (b, N_FEATURES), &dev)?;
        let q_next_online = self
            .online
            .forward(&s2t)?
            .detach()
            .flatten_all()?
            .to_vec1::<f32>()?;
        let q_next_target = self.target.forward(&s2t)?.flatten_all()?.to_vec1::<f32>()?;
        let gamma = config.gamma as f32;
        let y: Vec<f32> = (0..b)
            .map(|i| {
                let row = &q_next_online[i * N_ACTIONS..(i + 1) * N_ACTIONS];
                let best = (0..N_ACTIONS)
                    .filter(|&a| masks[i] & (1 << a) != 0)
                    .max_by(|&x, &y| row[x].total_cmp(&row[y]).then(y.cmp(&x)));
                match best {
                    Some(a) => rewards[i] + gamma * q_next_target[i * N_ACTIONS + a],
                    None => rewards[i],
                }
            })
            .collect();
        let st = Tensor::from_vec(s, (b, N_FEATURES), &dev)?;
        let at = Tensor::from_vec(acts, (b, 1), &dev)?;
        let yt = Tensor::from_vec(y, b, &dev)?;
        let q_all = self.online.forward(&st)?;
        let q = q_all.gather(&at, 1)?.squeeze(1)?;
        let mut loss = candle_nn::loss::huber(&q, &yt, 1.0)?;
        let n_labelled: f32 = labelled.iter().sum();
        if lambda > 0.0 && n_labelled > 0.0 {
            let mt = Tensor::from_vec(margins, (b, N_ACTIONS), &dev)?;
            let et = Tensor::from_vec(expert_idx, (b, 1), &dev)?;
            let wt = Tensor::from_vec(labelled, b, &dev)?;
            let best = (&q_all + &mt)?.max(1)?;
            let q_e = q_all.gather(&et, 1)?.squeeze(1)?;
            let supervised = ((best - q_e)? * wt)?.sum_all()?;
            let scale = f64::from(lambda / n_labelled);
            loss = (loss + supervised.affine(scale, 0.0)?)?;
        }
        self.opt.backward_step(&loss)?;
        let l = f64::from(loss.to_scalar::<f32>()?);
        self.loss = if self.updates == 0 {
            l
        } else {
            0.99 * self.loss + 0.01 * l
        };
        self.updates += 1;
        if self.updates.is_multiple_of(config.target_every.max(1)) {
            self.target = self.online.snapshot()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_is_a_bounded_ring() {
        let e = |r: f32| Experience {
            state: [0.0; N_FEATURES],
            action: 0,
            reward: r,
            next: [0.0; N_FEATURES],
            next_allowed: 1,
            allowed: 1,
            expert: None,
        };
        let mut r = Replay::new(3);
        for k in 0..5 {
            r.push(e(k as f32));
        }
        assert_eq!(r.len(), 3);
        let rewards: Vec<f32> = r.items.iter().map(|e| e.reward).collect();
        assert_eq!(rewards, vec![3.0, 4.0, 2.0]);
        assert_eq!(mask_bits(&[true, false, true]), 0b101);
    }

    /// Trains on one state where the teacher always picks `expert`, which pays slightly less
    /// than every other action; returns the greedy action afterwards.
    fn greedy_after_teaching(expert_weight: f64) -> (usize, usize) {
        use super::super::net::{Net, sizes};
        let config = DqnConfig {
            hidden: vec![16],
            batch: 16,
            warmup: 16,
            train_every: 1,
            expert_weight,
            ..DqnConfig::default()
        };
        let net = Net::init(
            &sizes(N_FEATURES, &config.hidden, N_ACTIONS),
            &mut Rng::new(7),
        )
        .expect("net");
        let mut state = [0.0f32; N_FEATURES];
        state[0] = 1.0;
        let all: ActionMask = (1u64 << N_ACTIONS) - 1;
        let before = net.q(&state).expect("q");
        let untaught = (0..N_ACTIONS)
            .max_by(|&a, &b| before[a].total_cmp(&before[b]))
            .expect("actions");
        // The teacher's choice: not what the untrained network prefers.
        let expert = (untaught + 5) % N_ACTIONS;
        let mut l = Learner::new(&net, &config, 3).expect("learner");
        for k in 0..3000 {
            let action = k % N_ACTIONS;
            let e = Experience {
                state,
                action,
                reward: if action == expert { -0.02 } else { 0.0 },
                next: state,
                next_allowed: all,
                allowed: all,
                expert: Some((expert, 1 << expert)),
            };
            l.observe(e, &config).expect("learns");
        }
        let q = l.q(&state).expect("q");
        let greedy = (0..N_ACTIONS)
            .max_by(|&a, &b| q[a].total_cmp(&q[b]))
            .expect("actions");
        (greedy, expert)
    }

    #[test]
    fn the_margin_term_teaches_the_teachers_choice_and_plain_td_does_not() {
        let (greedy, expert) = greedy_after_teaching(1.0);
        assert_eq!(greedy, expert, "with the supervised term");
        let (greedy, expert) = greedy_after_teaching(0.0);
        assert_ne!(
            greedy, expert,
            "plain TD must prefer the better-paying actions"
        );
    }
}
