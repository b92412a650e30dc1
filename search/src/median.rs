//! The median of a study's best trials (the paper's way to turn a search into one architecture):
//! over the top K complete trials, the median of every continuous value and the majority of every
//! discrete choice. Parameters are decided in sampling order, so a conditional parameter is only
//! decided when its parent's decided value switches it on, and only from the top trials that had
//! it. (`convrnn::median_spec` turns the result into a model.)

use crate::params::{Domain, ParamValue, Params};
use crate::space::Space;
use crate::store::{Direction, TrialRecord, TrialState};
use crate::SearchError;

/// The best `top_k` complete trials, best first (ties: the earlier trial).
pub fn top_trials(trials: &[TrialRecord], top_k: usize, direction: Direction) -> Vec<&TrialRecord> {
    let mut done: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .collect();
    done.sort_by(|a, b| {
        let (sa, sb) = (
            direction.score(a.value.unwrap_or(f64::NAN)),
            direction.score(b.value.unwrap_or(f64::NAN)),
        );
        sb.total_cmp(&sa).then(a.number.cmp(&b.number))
    });
    done.truncate(top_k);
    done
}

/// Median/majority parameters over the top `top_k` complete trials.
pub fn median_params<S: Space + ?Sized>(
    trials: &[TrialRecord],
    top_k: usize,
    space: &S,
    direction: Direction,
) -> Result<(Params, Vec<u64>), SearchError> {
    if top_k == 0 {
        return Err(SearchError::Params("--top-k must be at least 1".into()));
    }
    let top = top_trials(trials, top_k, direction);
    if top.is_empty() {
        return Err(SearchError::Params(
            "the study has no complete trial to take a median over".into(),
        ));
    }
    let mut out = Params::new();
    for def in space.param_defs() {
        if !def.condition.holds(&out) {
            continue;
        }
        let values: Vec<&ParamValue> = top
            .iter()
            .filter_map(|t| t.params.get(&def.name))
            .filter(|v| def.domain.contains(v))
            .collect();
        let v = if values.is_empty() {
            // The decided parents switch on a combination none of the top trials had: fall back
            // to the middle of the domain rather than leave the knob undefined.
            middle(&def.domain)
        } else {
            match &def.domain {
                Domain::Float { log, .. } => ParamValue::Float(median_f64(
                    values.iter().filter_map(|v| v.as_f64()).collect(),
                    *log,
                )),
                Domain::Int { log, .. } => ParamValue::Int(
                    median_f64(values.iter().filter_map(|v| v.as_f64()).collect(), *log).round()
                        as i64,
                ),
                _ => majority(&values),
            }
        };
        out.insert(def.name, v);
    }
    Ok((out, top.iter().map(|t| t.number).collect()))
}

fn median_f64(mut v: Vec<f64>, log: bool) -> f64 {
    if log {
        v.iter_mut().for_each(|x| *x = x.ln());
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    if log {
        m.exp()
    } else {
        m
    }
}

/// The most frequent value; a tie goes to the value of the best-ranked trial among the tied.
fn majority(values: &[&ParamValue]) -> ParamValue {
    let count = |v: &ParamValue| values.iter().filter(|x| **x == v).count();
    let most = values.iter().map(|v| count(v)).max().unwrap_or(0);
    values
        .iter()
        .find(|v| count(v) == most)
        .map(|v| (*v).clone())
        .unwrap_or(ParamValue::Bool(false))
}

fn middle(d: &Domain) -> ParamValue {
    match d {
        Domain::Float { low, high, log } => ParamValue::Float(if *log {
            (low.ln() + high.ln()).exp().sqrt()
        } else {
            (low + high) / 2.0
        }),
        Domain::Int { low, high, .. } => ParamValue::Int((low + high) / 2),
        _ => d.choice(0).unwrap_or(ParamValue::Bool(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_majority_helpers() {
        assert_eq!(median_f64(vec![3.0, 1.0, 2.0], false), 2.0);
        assert_eq!(median_f64(vec![1.0, 4.0], false), 2.5);
        assert!((median_f64(vec![1e-4, 1e-2], true) - 1e-3).abs() < 1e-12);
        let (a, b) = (ParamValue::Int(3), ParamValue::Int(5));
        assert_eq!(majority(&[&a, &b, &b]), b);
        // Tie: the first listed (best-ranked) wins.
        assert_eq!(majority(&[&a, &b]), a);
        assert_eq!(majority(&[&b, &a]), b);
    }
}
