//! `search report`: every trial, the best ones, a cheap parameter importance, the
//! accuracy-vs-parameters Pareto front, and plots.

use crate::median::top_trials;
use crate::params::{ParamValue, Params};
use crate::space::Space;
use crate::store::{Direction, TrialRecord, TrialState};
use crate::study::StudyConfig;
use crate::SearchError;
use plots::{Chart, Series};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One trial in a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialSummary {
    /// The trial's number in the study (0, 1, … in creation order).
    pub number: u64,
    /// Its state when the report was built.
    pub state: TrialState,
    /// The parameters it ran with.
    pub params: Params,
    /// The objective's final value (complete trials only).
    pub value: Option<f64>,
    /// The values reported per step (epoch), which pruners compare.
    pub intermediate: BTreeMap<u64, f64>,
    /// The `params_count` user attribute, when the objective set it.
    pub params_count: Option<u64>,
    /// Why it failed, or why it was re-queued (its worker died).
    pub reason: Option<String>,
    /// How many times it was started (more than 1 after a dead worker's trial was re-queued).
    pub attempts: u32,
    /// Set on a trial stored as running whose worker is gone (its process died on this host, or
    /// it sent no heartbeat within the timeout): why it is presumed dead. Such a trial is counted
    /// as `orphaned`, not `running`; the next worker to claim re-queues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_dead: Option<String>,
}

/// A trial on the accuracy-vs-size Pareto front.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParetoPoint {
    /// The trial's number.
    pub number: u64,
    /// Its objective value.
    pub value: f64,
    /// The model's parameter count, from the trial's `params_count` attribute.
    pub params_count: u64,
}

/// How much of the objective's variance a parameter's value explains over complete trials
/// (between-group over total variance; ranges binned into quartiles). Cheap and rough: it ignores
/// interactions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Importance {
    /// The parameter's name.
    pub param: String,
    /// The share of the objective's variance its value explains, in `[0, 1]`.
    pub score: f64,
    /// The number of complete trials that had the parameter.
    pub n_trials: usize,
}

/// A study summed up for people and scripts: counts per state, every trial, the best, the top K,
/// the accuracy-vs-size Pareto front and parameter importances. Serialises to the
/// `report.json` that [`SearchReport::write`] puts beside its plots (`cargo xtask search report`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchReport {
    /// The study's name.
    pub study: String,
    /// What the space varies ([`Space::base_name`]), e.g. the base model.
    pub base: String,
    /// Whether the objective is maximised or minimised.
    pub direction: Direction,
    /// The number of trials stored, in every state.
    pub n_trials: usize,
    /// State name → count.
    pub states: BTreeMap<String, usize>,
    /// Every trial, by number.
    pub trials: Vec<TrialSummary>,
    /// The best complete trial, if any finished.
    pub best: Option<TrialSummary>,
    /// Numbers of the top-K complete trials, best first.
    pub top: Vec<u64>,
    /// The complete trials no other beats on both the objective and the parameter count (fewest
    /// parameters first); only trials that set `params_count` take part.
    pub pareto_front: Vec<ParetoPoint>,
    /// Most important first.
    pub importance: Vec<Importance>,
}

fn summary(t: &TrialRecord) -> TrialSummary {
    TrialSummary {
        number: t.number,
        state: t.state,
        params: t.params.clone(),
        value: t.value,
        intermediate: t.intermediate.clone(),
        params_count: t.user_attrs.get("params_count").and_then(|v| v.as_u64()),
        reason: t.reason.clone(),
        attempts: t.attempts,
        worker_dead: None,
    }
}

/// The state name a report counts orphaned trials under.
pub const ORPHANED: &str = "orphaned";

impl SearchReport {
    /// The report of the study `study` (stored with `config`) over `trials`, with the best `top_k`
    /// (at least 1) listed in `top`.
    pub fn build<S: Space>(
        study: &str,
        config: &StudyConfig<S>,
        trials: &[TrialRecord],
        top_k: usize,
    ) -> SearchReport {
        let dir = config.direction;
        let mut states = BTreeMap::new();
        for t in trials {
            *states.entry(t.state.as_str().to_string()).or_insert(0) += 1;
        }
        let top = top_trials(trials, top_k.max(1), dir);
        let summaries: Vec<TrialSummary> = trials.iter().map(summary).collect();
        SearchReport {
            study: study.into(),
            base: config.space.base_name(),
            direction: dir,
            n_trials: trials.len(),
            states,
            best: top.first().map(|t| summary(t)),
            top: top.iter().map(|t| t.number).collect(),
            pareto_front: pareto_front(&summaries, dir),
            importance: importance(trials, dir),
            trials: summaries,
        }
    }

    /// Marks the running trials whose worker is presumed dead (trial number → why), so that a
    /// report never shows a dead worker's trial as running.
    pub fn mark_dead_workers(&mut self, dead: &BTreeMap<u64, String>) {
        for t in &mut self.trials {
            if t.state != TrialState::Running {
                continue;
            }
            if let Some(why) = dead.get(&t.number) {
                t.worker_dead = Some(why.clone());
                if let Some(n) = self.states.get_mut(TrialState::Running.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        self.states.remove(TrialState::Running.as_str());
                    }
                }
                *self.states.entry(ORPHANED.to_string()).or_insert(0) += 1;
            }
        }
    }

    /// Writes `report.json` and the plots into `dir`; returns the files written. `objective`
    /// labels the plots' value axis (what the objective measures).
    pub fn write(&self, dir: &Path, objective: &str) -> Result<Vec<PathBuf>, SearchError> {
        std::fs::create_dir_all(dir).map_err(SearchError::io("creating", dir))?;
        let json =
            serde_json::to_vec_pretty(self).map_err(SearchError::json("serialising the report"))?;
        let path = dir.join("report.json");
        crate::write_atomically(&path, &json).map_err(SearchError::io("writing", &path))?;
        let mut out = vec![path];
        out.extend(write_plots(self, dir, objective)?);
        Ok(out)
    }
}

/// Complete trials with a parameter count that no other trial beats on both value and size.
pub fn pareto_front(trials: &[TrialSummary], dir: Direction) -> Vec<ParetoPoint> {
    let pts: Vec<ParetoPoint> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| {
            Some(ParetoPoint {
                number: t.number,
                value: t.value.filter(|v| v.is_finite())?,
                params_count: t.params_count?,
            })
        })
        .collect();
    let dominates = |a: &ParetoPoint, b: &ParetoPoint| {
        let (sa, sb) = (dir.score(a.value), dir.score(b.value));
        sa >= sb && a.params_count <= b.params_count && (sa > sb || a.params_count < b.params_count)
    };
    let mut front: Vec<ParetoPoint> = pts
        .iter()
        .filter(|p| !pts.iter().any(|q| dominates(q, p)))
        .cloned()
        .collect();
    front.sort_by_key(|p| (p.params_count, p.number));
    front
}

fn variance(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
}

/// See [`Importance`].
pub fn importance(trials: &[TrialRecord], dir: Direction) -> Vec<Importance> {
    let done: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .collect();
    let mut names: Vec<&String> = done.iter().flat_map(|t| t.params.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let pairs: Vec<(&ParamValue, f64)> = done
            .iter()
            .filter_map(|t| Some((t.params.get(name)?, dir.score(t.value?))))
            .collect();
        if pairs.len() < 4 {
            continue;
        }
        let ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let total = variance(&ys);
        if total <= 0.0 {
            continue;
        }
        let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let numeric: Option<Vec<f64>> = pairs
            .iter()
            .map(|(v, _)| match v {
                ParamValue::Float(x) => Some(*x),
                _ => None,
            })
            .collect();
        if let Some(xs) = numeric {
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
            let cuts = [q(0.25), q(0.5), q(0.75)];
            for (x, (_, y)) in xs.iter().zip(&pairs) {
                let bin = cuts.iter().filter(|c| x > c).count();
                groups.entry(bin.to_string()).or_default().push(*y);
            }
        } else {
            for (v, y) in &pairs {
                groups.entry(format!("{v:?}")).or_default().push(*y);
            }
        }
        let mean = ys.iter().sum::<f64>() / ys.len() as f64;
        let between: f64 = groups
            .values()
            .map(|g| {
                let m = g.iter().sum::<f64>() / g.len() as f64;
                g.len() as f64 * (m - mean).powi(2)
            })
            .sum::<f64>()
            / ys.len() as f64;
        out.push(Importance {
            param: name.clone(),
            score: (between / total).clamp(0.0, 1.0),
            n_trials: pairs.len(),
        });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.param.cmp(&b.param)));
    out
}

/// Writes `history.svg` (each complete trial's value by trial number, and the best so far) and
/// `pareto.svg` (value against parameter count for every complete trial, and the Pareto front)
/// into `dir`, with axes, labels (`objective` on the value axis) and legends. A plot with nothing
/// to show is not written.
pub fn write_plots(
    r: &SearchReport,
    dir: &Path,
    objective: &str,
) -> Result<Vec<PathBuf>, SearchError> {
    let complete = || {
        r.trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| Some((t, t.value.filter(|v| v.is_finite())?)))
    };
    let by_number: Vec<(f64, f64)> = complete().map(|(t, v)| (t.number as f64, v)).collect();
    let mut best: Option<f64> = None;
    let best_so_far: Vec<(f64, f64)> = by_number
        .iter()
        .map(|&(x, y)| {
            let b = match best {
                Some(b) if r.direction.score(b) >= r.direction.score(y) => b,
                _ => y,
            };
            best = Some(b);
            (x, b)
        })
        .collect();
    let by_size = complete().filter_map(|(t, v)| Some((t.params_count? as f64, v)));
    let front = r
        .pareto_front
        .iter()
        .map(|p| (p.params_count as f64, p.value));
    let chart = |name: &str, x_label: &str| {
        Chart::new(format!("study `{}`: {name}", r.study), x_label, objective)
    };
    let plots = [
        (
            "history",
            chart("history", "trial number")
                .with(Series::points("complete trials", by_number))
                .with(Series::line("best so far", best_so_far)),
        ),
        (
            "pareto",
            chart("pareto", "parameters")
                .with(Series::points("complete trials", by_size))
                .with(Series::line("Pareto front", front)),
        ),
    ];
    let mut out = Vec::new();
    for (name, chart) in plots {
        if chart.is_empty() {
            continue;
        }
        let path = dir.join(format!("{name}.svg"));
        let svg = chart.to_svg().map_err(|source| SearchError::Plot {
            path: path.clone(),
            source,
        })?;
        crate::write_atomically(&path, svg.as_bytes())
            .map_err(SearchError::io("writing", &path))?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        number: u64,
        state: TrialState,
        value: Option<f64>,
        count: Option<u64>,
        lr: f64,
    ) -> TrialRecord {
        let mut r = TrialRecord {
            id: number as i64,
            number,
            state,
            value,
            params: [("lr".to_string(), ParamValue::Float(lr))].into(),
            ..TrialRecord::default()
        };
        if let Some(c) = count {
            r.user_attrs
                .insert("params_count".into(), serde_json::json!(c));
        }
        r
    }

    #[test]
    fn report_lists_trials_best_and_the_pareto_front() {
        let cfg = StudyConfig::new(crate::space::ParamSpace::new());
        let trials = vec![
            t(0, TrialState::Complete, Some(0.70), Some(100), 0.01),
            t(1, TrialState::Complete, Some(0.80), Some(300), 0.02),
            t(2, TrialState::Complete, Some(0.75), Some(400), 0.03), // dominated by 1
            t(3, TrialState::Failed, None, None, 0.04),
            t(4, TrialState::Complete, Some(0.60), Some(50), 0.05),
            t(5, TrialState::Pruned, Some(0.99), Some(10), 0.06), // not complete: off the front
        ];
        let r = SearchReport::build("s", &cfg, &trials, 2);
        assert_eq!(r.best.as_ref().unwrap().number, 1);
        assert_eq!(r.top, vec![1, 2]);
        assert_eq!(r.states["complete"], 4);
        let front: Vec<u64> = r.pareto_front.iter().map(|p| p.number).collect();
        assert_eq!(front, vec![4, 0, 1]);
        let j: serde_json::Value = serde_json::to_value(&r).unwrap();
        let first = &j["trials"][0];
        for key in ["number", "state", "params", "value"] {
            assert!(first.get(key).is_some(), "{key} missing: {first}");
        }
        assert_eq!(first["state"], "complete");

        let dir = tempfile::tempdir().unwrap();
        let files = r.write(dir.path(), "objective (validation top-1)").unwrap();
        assert_eq!(files.len(), 3, "report.json, history.svg and pareto.svg");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 100, "{}", f.display());
        }
        let pareto = std::fs::read_to_string(dir.path().join("pareto.svg")).unwrap();
        for label in [
            "Pareto front",
            "complete trials",
            "parameters",
            "validation top-1",
        ] {
            assert!(pareto.contains(label), "{label} missing from pareto.svg");
        }
        let back: SearchReport =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn importance_finds_the_parameter_that_matters() {
        let trials: Vec<TrialRecord> = (0..20)
            .map(|i| {
                let lr = (i as f64 + 1.0) / 20.0;
                let mut r = t(i, TrialState::Complete, Some(lr * 2.0), None, lr);
                // A second parameter that has nothing to do with the value.
                r.params
                    .insert("noise".into(), ParamValue::Bool(i % 2 == 0));
                r
            })
            .collect();
        let imp = importance(&trials, Direction::Maximize);
        assert_eq!(imp[0].param, "lr");
        assert!(imp[0].score > 0.8, "{imp:?}");
        let noise = imp.iter().find(|i| i.param == "noise").unwrap();
        assert!(noise.score < 0.1, "{imp:?}");
    }
}
