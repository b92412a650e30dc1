//! Early stopping of poor trials. Pruners are pure functions of the trial's reported values and the
//! other trials' records, so several workers sharing a study agree without extra state.

use crate::store::{Direction, TrialRecord, TrialState};
use serde::{Deserialize, Serialize};

/// Which pruning rule a study uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pruner {
    /// Never prune.
    None,
    /// Stop a trial whose best value so far is worse than the median of the complete trials'
    /// values at the same step.
    Median {
        /// Complete trials needed before pruning starts.
        n_startup_trials: usize,
        /// Steps below this are never pruned.
        n_warmup_steps: u64,
    },
    /// Asynchronous successive halving: at rung `r` (step `min_resource · η^(s + r)`), a trial
    /// continues only if its value is in the top `1/η` of all values reported at that step
    /// (the best one continues while fewer than η have reported).
    SuccessiveHalving {
        /// The step of the first rung (0 counts as 1).
        min_resource: u64,
        /// η: each rung keeps the top `1/η` and lies η times further (values below 2 count as 2).
        reduction_factor: u64,
        /// `s`: skips the first `s` rungs (0: the first rung is at `min_resource`).
        min_early_stopping_rate: u32,
    },
}

impl Default for Pruner {
    fn default() -> Self {
        Pruner::Median {
            n_startup_trials: 5,
            n_warmup_steps: 1,
        }
    }
}

fn better(direction: Direction, a: f64, b: f64) -> bool {
    match direction {
        Direction::Maximize => a > b,
        Direction::Minimize => a < b,
    }
}

impl Pruner {
    /// Whether `trial`, which has just reported `step`, should stop. `others` may include `trial`
    /// itself (it is recognised by its id and skipped where it must be).
    pub fn should_prune(
        &self,
        direction: Direction,
        trial: &TrialRecord,
        step: u64,
        others: &[TrialRecord],
    ) -> bool {
        let Some(&value) = trial.intermediate.get(&step) else {
            return false;
        };
        match *self {
            Pruner::None => false,
            Pruner::Median {
                n_startup_trials,
                n_warmup_steps,
            } => {
                let complete: Vec<&TrialRecord> = others
                    .iter()
                    .filter(|t| t.id != trial.id && t.state == TrialState::Complete)
                    .collect();
                if complete.len() < n_startup_trials || step < n_warmup_steps {
                    return false;
                }
                let mut at: Vec<f64> = complete
                    .iter()
                    .filter_map(|t| t.intermediate.get(&step).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                if at.is_empty() {
                    return false;
                }
                let best = trial
                    .intermediate
                    .range(..=step)
                    .map(|(_, v)| *v)
                    .fold(value, |a, b| if better(direction, b, a) { b } else { a });
                let m = median(&mut at);
                better(direction, m, best)
            }
            Pruner::SuccessiveHalving {
                min_resource,
                reduction_factor,
                min_early_stopping_rate,
            } => {
                let eta = reduction_factor.max(2);
                let mut rung_step = min_resource.max(1);
                for _ in 0..min_early_stopping_rate {
                    rung_step = rung_step.saturating_mul(eta);
                }
                while rung_step < step {
                    rung_step = rung_step.saturating_mul(eta);
                }
                if rung_step != step {
                    return false;
                }
                let mut competing: Vec<f64> = others
                    .iter()
                    .filter(|t| t.id != trial.id)
                    .filter_map(|t| t.intermediate.get(&step).copied())
                    .filter(|v| v.is_finite())
                    .collect();
                competing.push(value);
                // Best first.
                competing.sort_by(|a, b| match direction {
                    Direction::Maximize => b.total_cmp(a),
                    Direction::Minimize => a.total_cmp(b),
                });
                let keep = (competing.len() / eta as usize).max(1);
                better(direction, competing[keep - 1], value)
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rec(id: i64, state: TrialState, curve: &[f64]) -> TrialRecord {
        TrialRecord {
            id,
            number: id as u64,
            state,
            intermediate: curve
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64 + 1, *v))
                .collect::<BTreeMap<_, _>>(),
            ..TrialRecord::default()
        }
    }

    #[test]
    fn median_rule_prunes_below_the_median_only_after_startup() {
        let others: Vec<TrialRecord> = [0.5, 0.6, 0.7]
            .iter()
            .enumerate()
            .map(|(i, &v)| rec(i as i64, TrialState::Complete, &[v, v + 0.1]))
            .collect();
        let p = Pruner::Median {
            n_startup_trials: 3,
            n_warmup_steps: 0,
        };
        let poor = rec(10, TrialState::Running, &[0.55]);
        let good = rec(11, TrialState::Running, &[0.65]);
        assert!(p.should_prune(Direction::Maximize, &poor, 1, &others));
        assert!(!p.should_prune(Direction::Maximize, &good, 1, &others));
        // Minimising flips the comparison.
        assert!(p.should_prune(Direction::Minimize, &good, 1, &others));
        // Too few complete trials: no pruning.
        let p4 = Pruner::Median {
            n_startup_trials: 4,
            n_warmup_steps: 0,
        };
        assert!(!p4.should_prune(Direction::Maximize, &poor, 1, &others));
        // Warm-up steps are never pruned.
        let pw = Pruner::Median {
            n_startup_trials: 0,
            n_warmup_steps: 2,
        };
        assert!(!pw.should_prune(Direction::Maximize, &poor, 1, &others));
        // The best value so far counts: an earlier good step protects the trial.
        let dipped = rec(12, TrialState::Running, &[0.8, 0.1]);
        assert!(!p.should_prune(Direction::Maximize, &dipped, 2, &others));
    }

    #[test]
    fn successive_halving_keeps_the_top_third_at_rung_steps() {
        let sh = Pruner::SuccessiveHalving {
            min_resource: 1,
            reduction_factor: 3,
            min_early_stopping_rate: 0,
        };
        // Rungs at steps 1, 3, 9: step 2 is never judged.
        let others: Vec<TrialRecord> = (0..5)
            .map(|i| rec(i, TrialState::Complete, &[i as f64 / 10.0; 3]))
            .collect();
        let mid = rec(20, TrialState::Running, &[0.25, 0.0]);
        assert!(sh.should_prune(Direction::Maximize, &mid, 1, &others));
        assert!(!sh.should_prune(Direction::Maximize, &mid, 2, &others));
        // Six values at the rung: the top two continue.
        let top = rec(21, TrialState::Running, &[0.35]);
        assert!(!sh.should_prune(Direction::Maximize, &top, 1, &others));
        // The very first trial always continues.
        let first = rec(30, TrialState::Running, &[0.0]);
        assert!(!sh.should_prune(Direction::Maximize, &first, 1, &[]));
        assert!(!Pruner::None.should_prune(Direction::Maximize, &mid, 1, &others));
    }
}
