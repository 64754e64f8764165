//! Weir's offline work, all in simulated time: run a policy through an episode of a
//! scenario ([`episode`]), the oracles that see the simulator's true state — the one-step
//! lookahead ([`oracle`]) and the receding-horizon planner ([`horizon`]), which plans several
//! control intervals ahead through a copy of the episode's shield and is the benchmark's
//! reference when it runs — Q-learning training ([`train`]), DQN training ([`train_dqn`]), the
//! policy benchmark ([`bench`]), and the simulator as a [`live`] source, actuator and clock for
//! the real controller loop (the demo).
//!
//! Every run goes through the same [`weir_controller::ControlStep`] (policy → shield) as the
//! live controller. The oracles are the only code allowed to see the simulator's true state
//! (through [`oracle::OracleSlot`]); product policies see observations only. Results are
//! deterministic for a given seed: the benchmark's JSON and CSV are byte-identical across
//! runs, whatever the number of worker threads.

pub mod bench;
pub mod episode;
mod error;
pub mod horizon;
pub mod live;
pub mod oracle;
pub mod train;
pub mod train_dqn;

pub use bench::{BenchOptions, BenchReport, run as run_bench};
pub use episode::{Agent, Entrant, EpisodeMetrics, PolicySpec, RunOptions, run_episode};
pub use error::EvalError;
pub use horizon::{HORIZON, Horizon, HorizonConfig};
pub use oracle::{LOOKAHEAD, OracleSlot, OracleView};
pub use train::{TrainOptions, TrainProgress, train};
pub use train_dqn::{
    DqnProgress, DqnTrainOptions, ScenarioSource, TeacherKind, generated_and_files, jittered_files,
    train_dqn, train_dqn_ensemble,
};
