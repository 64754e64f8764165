//! Weir's offline work, all in simulated time: run a policy through an episode of a
//! scenario ([`episode`]), the lookahead oracle that sees the simulator's true state
//! ([`oracle`]), Q-learning training ([`train`]), DQN training ([`train_dqn`]), the policy
//! benchmark ([`bench`]), and the simulator as a [`live`] source, actuator and clock for the
//! real controller loop (the demo).
//!
//! Every run goes through the same [`weir_controller::ControlStep`] (policy → shield) as the
//! live controller. Results are deterministic for a given seed: the benchmark's JSON and CSV
//! are byte-identical across runs, whatever the number of worker threads.

pub mod bench;
pub mod episode;
mod error;
pub mod live;
pub mod oracle;
pub mod train;
pub mod train_dqn;

pub use bench::{BenchOptions, BenchReport, run as run_bench};
pub use episode::{Agent, Entrant, EpisodeMetrics, PolicySpec, RunOptions, run_episode};
pub use error::EvalError;
pub use oracle::LOOKAHEAD;
pub use train::{TrainOptions, TrainProgress, train};
pub use train_dqn::{DqnProgress, DqnTrainOptions, ScenarioSource, jittered_files, train_dqn};
