//! One compact line per decision, for the demo console and plain-text logs.

use std::fmt::Write as _;

use weir_edge::Mode;

use crate::record::{Actuation, StepRecord};

/// Formats a record as one human line, e.g.
///
/// ```text
/// t=  615s lag r1=12.4s r2=0.8s cpu=41% w=P10/0/90 r=-1.23 [hard_staleness: replica-1 lag 42.0s > 30s]
/// ```
///
/// Lags are shown per replica (`rN` is the N-th configured replica): `?` when unknown,
/// `down` when the replica is known to be down. Primary CPU is `?` when unknown, the reward
/// is left out when there is none yet. Then, when they apply: the mode if not enforcing,
/// a source or actuator error, a skipped actuation, and the shield's interventions.
pub fn decision_line(rec: &StepRecord) -> String {
    let mut s = String::with_capacity(128);
    let _ = write!(s, "t={:>5.0}s lag", rec.at_s);
    for (i, r) in rec.observation.replicas.iter().enumerate() {
        let _ = write!(s, " r{}=", i + 1);
        if r.up == Some(false) {
            s.push_str("down");
        } else {
            match r.lag_s.value {
                Some(lag) => {
                    let _ = write!(s, "{lag:.1}s");
                }
                None => s.push('?'),
            }
        }
    }
    match rec.observation.primary.cpu.value {
        Some(cpu) => {
            let _ = write!(s, " cpu={:.0}%", cpu * 100.0);
        }
        None => s.push_str(" cpu=?"),
    }
    let _ = write!(s, " w={}", rec.decision.weights);
    if let Some(r) = rec.reward {
        let _ = write!(s, " r={r:.2}");
    }
    if rec.mode != Mode::Enforce {
        let _ = write!(s, " ({})", rec.mode);
    }
    if let Some(e) = &rec.source_error {
        let _ = write!(s, " source_error={}", e.kind);
    }
    if let Some(d) = &rec.drift {
        let _ = write!(s, " drift=found {} (Weir's {})", d.found, d.expected);
    }
    match &rec.actuation {
        Actuation::Applied => {}
        Actuation::Failed { error } => {
            let _ = write!(
                s,
                " actuation_error={} (in force {})",
                error.kind, rec.in_force
            );
        }
        Actuation::Skipped { reason } => {
            if rec.mode.actuates() {
                let _ = write!(s, " not applied: {reason}");
            }
        }
    }
    if !rec.decision.interventions.is_empty() {
        s.push_str(" [");
        for (i, iv) in rec.decision.interventions.iter().enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            let _ = write!(s, "{}: {}", iv.rule, iv.detail);
        }
        s.push(']');
    }
    s
}

/// [`decision_line`] followed by the policy's own reason for its proposal (`weir demo
/// --explain`), e.g. `… w=P0/0/100 r=-0.40 « greedy: p=0 w=0 s=1 (Q=-3.10)`. The reason is
/// left out when the policy gave none.
pub fn explained_line(rec: &StepRecord) -> String {
    let mut s = decision_line(rec);
    let why = rec.decision.proposal.reason.trim();
    if !why.is_empty() {
        let _ = write!(s, " \u{ab} {why}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{record, two_records};
    use crate::record::ErrorInfo;
    use weir_core::Weights;
    use weir_test_support::ObsBuilder;

    #[test]
    fn line_shows_lags_cpu_weights_reward_and_shield_notes() {
        let [calm, lagging] = two_records();
        assert_eq!(
            decision_line(&calm),
            "t=   15s lag r1=0.5s r2=0.5s cpu=30% w=P0/50/50"
        );
        assert_eq!(
            decision_line(&lagging),
            "t=   30s lag r1=42.0s r2=? cpu=41% w=P10/0/90 r=-1.23 source_error=timeout \
             [hard_staleness: replica-1 lag 42.0s > 30s]"
        );
    }

    #[test]
    fn the_explained_line_adds_the_policy_reason_when_there_is_one() {
        let [calm, _] = two_records();
        let mut rec = calm;
        rec.decision.proposal.reason = "hold: p=20 w=1 s=1 is within 2.00 of it".into();
        assert_eq!(
            explained_line(&rec),
            "t=   15s lag r1=0.5s r2=0.5s cpu=30% w=P0/50/50 \u{ab} hold: p=20 w=1 s=1 is within 2.00 of it"
        );
        rec.decision.proposal.reason = "  ".into();
        assert_eq!(explained_line(&rec), decision_line(&rec));
    }

    #[test]
    fn line_shows_down_replicas_mode_and_failed_actuation() {
        let obs = ObsBuilder::new(2).at(615.0).down(1).blank().build();
        let mut rec = record(3, obs, Weights::even(2));
        rec.mode = Mode::DryRun;
        rec.in_force = Weights::all_primary(2);
        rec.actuation = Actuation::Failed {
            error: ErrorInfo::new("conflict", "resourceVersion changed"),
        };
        assert_eq!(
            decision_line(&rec),
            "t=  615s lag r1=? r2=? cpu=? w=P0/50/50 (dry_run) actuation_error=conflict (in force P100/0/0)"
        );
        let obs = ObsBuilder::new(2).at(615.0).down(1).build();
        let mut rec = record(3, obs, Weights::even(2));
        rec.mode = Mode::Shadow;
        rec.actuation = Actuation::Skipped {
            reason: "shadow mode".into(),
        };
        assert_eq!(
            decision_line(&rec),
            "t=  615s lag r1=0.5s r2=down cpu=30% w=P0/50/50 (shadow)"
        );
    }
}
