//! Figure 3, search (NeurIPS 2018, Fig. 3): the search stage's history (each trial's validation
//! top-1 in the order run, and the best so far), its accuracy-vs-parameters Pareto front, and the
//! median model of its top k trained with the figures' seeds against the hand-designed RGC
//! (`compact_rgc`, the space's base) and the feedforward base (Welch's t-test over seeds,
//! Holm-corrected over the two, as figure 1).

use super::accuracy::{self, list_or_none, Comparison, Measure, Row, ALPHA};
use super::report::Verdict;
use super::stats;
use super::study::{self, Searched, MEDIAN_ID};
use super::training::Trained;
use anyhow::Result;
use plots::{Chart, Series, Written};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub const STEM: &str = "fig3_search";
/// The models the median model is compared with: the hand-designed RGC and the feedforward base.
pub const REFERENCES: [&str; 2] = ["rgc", "ff_base"];

pub const CLAIM: &str = "An architecture search over the general RGC's knobs and feedback \
    finds better recurrent cells than the hand-designed RGC: the median model of the search's \
    best trials scores above the hand-designed RGC and the feedforward base at the same training \
    budget (Nayebi et al., NeurIPS 2018, Fig. 3).";

/// One trial as the history shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub number: u64,
    pub state: String,
    pub value: Option<f64>,
    pub params: Option<u64>,
    /// The best complete trial's value up to and including this one.
    pub best_so_far: Option<f64>,
    pub on_front: bool,
    pub in_top: bool,
}

/// The figure's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub base: String,
    pub history: Vec<HistoryRow>,
    /// Trials on the Pareto front, smallest first.
    pub pareto: Vec<u64>,
    /// The top k, best first.
    pub top: Vec<u64>,
    /// The trials the median model summarises; empty when there is none.
    pub median_trials: Vec<u64>,
    /// Why there is no median model, when there is none.
    pub median_missing: Option<String>,
    /// The median model, the hand-designed RGC and the base, over the figures' seeds.
    pub rows: Vec<Row>,
    pub comparisons: Vec<Comparison>,
    pub verdict: Verdict,
    pub reason: String,
}

/// The history with the best so far, the front and the top marked; the trained models'
/// accuracies and the tests. `trained` holds the runs of the median model and of the references.
pub fn table(searched: &Searched, trained: &[Trained]) -> Result<Table> {
    let mut trials = searched.trials.clone();
    trials.sort_by_key(|t| t.number);
    let mut best: Option<f64> = None;
    let history = trials
        .iter()
        .map(|t| {
            if study::complete(t) {
                if let Some(v) = t.value.filter(|v| v.is_finite()) {
                    best = Some(best.map_or(v, |b| b.max(v)));
                }
            }
            HistoryRow {
                number: t.number,
                state: t.state.clone(),
                value: t.value,
                params: t.params,
                best_so_far: best,
                on_front: searched.pareto.contains(&t.number),
                in_top: searched.top.contains(&t.number),
            }
        })
        .collect();
    let rows = accuracy::rows(trained)?;
    let median = rows.iter().find(|r| r.model == MEDIAN_ID);
    let mut comparisons = Vec::new();
    if let Some(m) = median {
        for name in REFERENCES {
            let Some(r) = rows.iter().find(|r| r.model == name) else {
                continue;
            };
            let Some(test) = stats::Tested::welch(&m.top1, &r.top1) else {
                continue;
            };
            comparisons.push(Comparison {
                model: m.model.clone(),
                measure: Measure::Params,
                size: m.params,
                reference: r.model.clone(),
                reference_size: r.params,
                test,
            });
        }
    }
    stats::holm_tested(&mut comparisons, |c| &mut c.test);
    let (verdict, reason) = judge(searched, median.is_some(), &comparisons);
    let (median_trials, median_missing) = match &searched.median {
        Ok(m) => (m.trials.clone(), None),
        Err(why) => (Vec::new(), Some(why.clone())),
    };
    Ok(Table {
        base: searched.base.clone(),
        history,
        pareto: searched.pareto.clone(),
        top: searched.top.clone(),
        median_trials,
        median_missing,
        rows,
        comparisons,
        verdict,
        reason,
    })
}

fn judge(searched: &Searched, trained_median: bool, cs: &[Comparison]) -> (Verdict, String) {
    if let Err(why) = &searched.median {
        return (
            Verdict::CannotTest,
            format!("the search gave no median model ({why})"),
        );
    }
    if !trained_median || cs.len() < REFERENCES.len() {
        return (
            Verdict::CannotTest,
            format!(
                "the median model and each of {} need at least two seeds",
                REFERENCES.join(" and ")
            ),
        );
    }
    if let Some(c) = cs.iter().find(|c| c.test.untested()) {
        return (
            Verdict::CannotTest,
            format!(
                "the test against {} could not be computed (its p-value is NaN: an accuracy is \
                 not a finite number)",
                c.reference
            ),
        );
    }
    let words = cs
        .iter()
        .map(|c| {
            format!(
                "{:+.1} points against {} (p Holm = {:.3})",
                100.0 * c.test.diff,
                c.reference,
                c.test.p_holm
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if cs.iter().any(Comparison::below) {
        (
            Verdict::Contradicts,
            format!("the median model is significantly below a reference: {words}"),
        )
    } else if cs.iter().all(Comparison::above) {
        (
            Verdict::Supports,
            format!("the median model is significantly above both: {words}"),
        )
    } else {
        (
            Verdict::Inconclusive,
            format!("not significantly above both: {words}"),
        )
    }
}

/// `STEM.csv` (one row per trial) and `STEM_models.csv` (one row per trained model and seed).
pub fn csv(table: &Table) -> (String, String) {
    let mut s =
        String::from("trial,state,value,params,best_so_far,on_pareto_front,in_top_k,in_median\n");
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for h in &table.history {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{}",
            h.number,
            h.state,
            opt(h.value),
            h.params.map_or(String::new(), |p| p.to_string()),
            opt(h.best_so_far),
            h.on_front,
            h.in_top,
            table.median_trials.contains(&h.number)
        );
    }
    (s, accuracy::rows_csv(&table.rows))
}

/// The charts' file stems: history, Pareto front, the median model against the references.
pub const CHARTS: [&str; 3] = ["history", "pareto", "median"];

/// Three charts: the history (the best so far, complete trials, pruned ones at their last
/// report), the Pareto front of the complete trials, and the median model against the references
/// (mean ± sd over seeds); lines are drawn first so that the markers lie over them. A chart with
/// nothing finite to draw is left out, with the reason. The data is named in the report beside
/// the charts (a title holding it would not fit).
pub fn draw(table: &Table, out: &Path) -> Result<Vec<std::result::Result<Written, String>>> {
    let finite = |h: &&HistoryRow| h.value.is_some_and(f64::is_finite);
    let at = |h: &HistoryRow, x: f64| (x, h.value.unwrap_or(f64::NAN));
    let complete: Vec<&HistoryRow> = table
        .history
        .iter()
        .filter(|h| study::complete_state(&h.state))
        .filter(finite)
        .collect();
    let other: Vec<&HistoryRow> = table
        .history
        .iter()
        .filter(|h| !study::complete_state(&h.state))
        .filter(finite)
        .collect();
    let size = |c: Chart| c.size(super::CHART_SIZE.0, super::CHART_SIZE.1);
    let mut history = size(Chart::new(
        format!("Search over {}: history", table.base),
        "trial",
        "trial validation top-1",
    ))
    .counts_x()
    .with(Series::line(
        "best so far",
        table
            .history
            .iter()
            .filter_map(|h| h.best_so_far.map(|b| (h.number as f64, b))),
    ))
    .with(Series::points(
        "trial (complete)",
        complete.iter().map(|h| at(h, h.number as f64)),
    ));
    if !other.is_empty() {
        history = history.with(Series::points(
            "trial (pruned: last report)",
            other.iter().map(|h| at(h, h.number as f64)),
        ));
    }
    let sized: Vec<&HistoryRow> = complete
        .iter()
        .copied()
        .filter(|h| h.params.is_some())
        .collect();
    let by_params = |h: &HistoryRow| at(h, h.params.unwrap_or(0) as f64);
    let mut front: Vec<&HistoryRow> = sized.iter().copied().filter(|h| h.on_front).collect();
    front.sort_by_key(|h| h.params);
    let pareto = size(Chart::new(
        format!("Search over {}: accuracy vs size", table.base),
        "parameters (log scale)",
        "trial validation top-1",
    ))
    .log_x()
    .with(Series::line(
        "Pareto front",
        front.iter().map(|h| by_params(h)),
    ))
    .with(
        Series::points("trial (complete)", sized.iter().map(|h| by_params(h)))
            .with_labels(sized.iter().map(|h| h.number.to_string())),
    );
    let seeds = table.rows.first().map_or(0, |r| r.seeds.len());
    let mut median = size(Chart::new(
        format!(
            "Median of the top {} trials vs hand-designed, mean ± sd over {seeds} seeds",
            table.top.len()
        ),
        "parameters (log scale)",
        "validation top-1 (last step)",
    ))
    .log_x();
    for r in table
        .rows
        .iter()
        .filter(|r| r.top1_mean.is_finite() && r.top1_sd.is_finite())
    {
        median = median.with(
            Series::points(&r.model, [(r.params as f64, r.top1_mean)]).with_errors([r.top1_sd]),
        );
    }
    [("history", history), ("pareto", pareto), ("median", median)]
        .into_iter()
        .map(|(which, chart)| {
            if chart.is_empty() {
                return Ok(Err(format!(
                    "no {which} chart: nothing with a finite accuracy to draw"
                )));
            }
            Ok(Ok(chart.write(&out.join(format!("{STEM}_{which}")))?))
        })
        .collect()
}

/// The report's section.
pub fn section(
    table: &Table,
    figures: &[std::result::Result<Written, String>],
    data: &str,
    search: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Figure 3: search (NeurIPS 2018, Fig. 3)\n");
    let _ = writeln!(s, "**The paper's claim.** {CLAIM}\n");
    for (f, which) in figures.iter().zip(CHARTS) {
        match f {
            Ok(w) => {
                let _ = writeln!(
                    s,
                    "{}\n",
                    super::report::image_lines(w, &format!("figure 3, {which}"))
                );
            }
            Err(why) => {
                let _ = writeln!(s, "{why}.\n");
            }
        }
    }
    let complete = table
        .history
        .iter()
        .filter(|h| study::complete_state(&h.state))
        .count();
    let _ = writeln!(
        s,
        "**Data and models.** {search}. {} trials, {complete} complete. The median model \
         (`{MEDIAN_ID}`: the median of every continuous knob and the majority of every choice \
         over the top {} trials, as `cargo xtask search median`) is then trained like every \
         model of the figures on the {data}, with the figures' seeds and recipe, beside the \
         hand-designed RGC (`rgc`, the space's base `{}`) and the feedforward base (`ff_base`), \
         both shared with figure 1. Tables: `{STEM}.csv` (per trial), `{STEM}_models.csv` (per \
         model and seed), `{STEM}.json` (all of it).\n",
        table.history.len(),
        table.top.len(),
        table.base
    );
    let _ = writeln!(
        s,
        "**Pareto front** (accuracy vs parameters, smallest first): trials {}. **Top {}** (best \
         first): trials {}. {}\n",
        list_or_none(&table.pareto),
        table.top.len(),
        list_or_none(&table.top),
        match &table.median_missing {
            Some(why) => format!("No median model: {why}."),
            None => format!(
                "The median model summarises trials {}.",
                list_or_none(&table.median_trials)
            ),
        }
    );
    let _ = writeln!(
        s,
        "| trial | state | top-1 % | parameters | best so far % | front | top k |\n\
         |---|---|---|---|---|---|---|"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}", 100.0 * v));
    let yes = |b: bool| if b { "yes" } else { "" };
    for h in &table.history {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            h.number,
            h.state,
            pct(h.value),
            h.params.map_or("-".into(), |p| p.to_string()),
            pct(h.best_so_far),
            yes(h.on_front),
            yes(h.in_top)
        );
    }
    s.push('\n');
    s.push_str(&accuracy::rows_markdown(&table.rows));
    let words = format!(
        "The median model against each reference: Welch's t-test over seeds, \
         two-sided, p-values Holm-corrected over the {} tests, α = {ALPHA}. *Supported* when it \
         is significantly above both; *contradicted* when it is significantly below either; \
         *inconclusive* otherwise.",
        table.comparisons.len()
    );
    s.push_str(&accuracy::test_markdown(
        &words,
        &table.comparisons,
        "model",
        false,
        table.verdict,
        &table.reason,
    ));
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::figures::fig1::tests::run;
    use crate::figures::models::Family;
    use crate::figures::study::{Median, TrialRow};

    /// A search of five trials: 0 complete 0.3 (20k), 1 failed, 2 complete 0.5 (40k), 3 pruned
    /// at 0.2, 4 complete 0.4 (30k). Every complete trial is on the front (each larger one is
    /// better).
    pub(crate) fn searched() -> Searched {
        let row = |number, state: &str, value, params| TrialRow {
            number,
            state: state.into(),
            value,
            params,
        };
        Searched {
            base: "compact_rgc".into(),
            trials: vec![
                row(0, "complete", Some(0.3), Some(20_000)),
                row(1, "failed", None, Some(50_000)),
                row(2, "complete", Some(0.5), Some(40_000)),
                row(3, "pruned", Some(0.2), Some(10_000)),
                row(4, "complete", Some(0.4), Some(30_000)),
            ],
            pareto: vec![0, 4, 2],
            top: vec![2, 4],
            median: Ok(Median {
                spec: topology::zoo::get_or_err("compact_rgc").unwrap(),
                lr: 1e-3,
                weight_decay: 1e-4,
                trials: vec![2, 4],
            }),
            wall_seconds: 1.0,
            cpu_seconds: None,
        }
    }

    /// The median model scoring `median`, rgc 0.5, ff_base 0.45, three seeds.
    pub(crate) fn runs(median: f64) -> Vec<Trained> {
        let noise = [0.0, 0.004, -0.004];
        let mut v = Vec::new();
        for (id, params, level) in [
            (MEDIAN_ID, 200_000, median),
            ("rgc", 110_000, 0.5),
            ("ff_base", 30_000, 0.45),
        ] {
            let family = if id == "ff_base" {
                Family::Feedforward
            } else {
                Family::Recurrent
            };
            for seed in 0..3 {
                v.push(run(id, family, params, seed, level + noise[seed as usize]));
            }
        }
        v
    }

    #[test]
    fn the_history_marks_the_best_so_far_the_front_and_the_top() {
        let t = table(&searched(), &runs(0.6)).unwrap();
        assert_eq!(t.history.len(), 5);
        let best: Vec<Option<f64>> = t.history.iter().map(|h| h.best_so_far).collect();
        // The pruned trial's 0.2 and the failed trial do not count as bests.
        assert_eq!(
            best,
            [Some(0.3), Some(0.3), Some(0.5), Some(0.5), Some(0.5)]
        );
        let front: Vec<u64> = t
            .history
            .iter()
            .filter(|h| h.on_front)
            .map(|h| h.number)
            .collect();
        assert_eq!(front, [0, 2, 4]);
        assert_eq!(t.median_trials, [2, 4]);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.comparisons.len(), 2);
        assert_eq!(t.verdict, Verdict::Supports, "{}", t.reason);
        let (trials, models) = csv(&t);
        let lines: Vec<&str> = trials.lines().collect();
        assert_eq!(
            lines[0],
            "trial,state,value,params,best_so_far,on_pareto_front,in_top_k,in_median"
        );
        assert_eq!(lines.len(), 6);
        assert!(lines
            .iter()
            .all(|l| l.split(',').count() == 8 && !l.contains("NaN")));
        assert_eq!(lines[2], "1,failed,,50000,0.300000,false,false,false");
        assert_eq!(
            lines[3],
            "2,complete,0.500000,40000,0.500000,true,true,true"
        );
        let models: Vec<&str> = models.lines().collect();
        assert_eq!(models.len(), 1 + 9);
        assert!(models.contains(&"search_median,recurrent,200000,0,0.600000"));
    }

    #[test]
    fn verdicts_follow_the_tests() {
        let s = searched();
        assert_eq!(table(&s, &runs(0.4)).unwrap().verdict, Verdict::Contradicts);
        // Above the base, level with the RGC.
        let t = table(&s, &runs(0.5)).unwrap();
        assert_eq!(t.verdict, Verdict::Inconclusive, "{}", t.reason);
        let one: Vec<Trained> = runs(0.6).into_iter().filter(|t| t.seed == 0).collect();
        assert_eq!(table(&s, &one).unwrap().verdict, Verdict::CannotTest);
        // A search without a complete trial has no median model to test.
        let mut none = searched();
        none.median = Err("the study has no complete trial".into());
        let without: Vec<Trained> = runs(0.6)
            .into_iter()
            .filter(|t| t.id != MEDIAN_ID)
            .collect();
        let t = table(&none, &without).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest);
        assert!(t.reason.contains("no complete trial"), "{}", t.reason);
        assert!(t.median_trials.is_empty() && t.comparisons.is_empty());
        // A diverged seed of the median model: NaN p-values, cannot test; the row stays.
        let mut v = runs(0.6);
        *v[0].top1_per_step.last_mut().unwrap() = f64::NAN;
        let t = table(&s, &v).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest, "{}", t.reason);
        assert!(t.rows[0].top1_mean.is_nan());
    }

    #[test]
    fn the_charts_and_section_show_the_search_and_the_models() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&searched(), &runs(0.6)).unwrap();
        let w = draw(&t, dir.path()).unwrap();
        assert_eq!(w.len(), 3);
        for (f, which) in w.iter().zip(CHARTS) {
            let f = f.as_ref().unwrap();
            assert!(f.svg.ends_with(format!("fig3_search_{which}.svg")));
        }
        let history = std::fs::read_to_string(&w[0].as_ref().unwrap().svg).unwrap();
        assert!(history.contains("best so far") && history.contains("pruned"));
        let median = std::fs::read_to_string(&w[2].as_ref().unwrap().svg).unwrap();
        for m in [MEDIAN_ID, "rgc", "ff_base"] {
            assert!(median.contains(m), "{m}");
        }
        let text = section(&t, &w, "clutter", "8 trials");
        assert!(text.contains("trials 0, 4, 2"), "{text}");
        assert!(
            text.contains("| 3 | pruned | 20.0 | 10000 | 50.0 |  |  |"),
            "{text}"
        );
        assert!(text.contains("| search_median | recurrent | 200000 | 60.0 | 0.4 | 3 |"));
        assert!(text.contains("**Verdict: supports.**"));
        // Without a median model the third chart says why instead.
        let mut none = searched();
        none.median = Err("no complete trial".into());
        let without: Vec<Trained> = runs(0.6)
            .into_iter()
            .filter(|t| t.id != MEDIAN_ID)
            .collect();
        let t = table(&none, &without).unwrap();
        let w = draw(&t, dir.path()).unwrap();
        assert!(w[2].is_ok(), "rgc and ff_base are still drawn");
        let text = section(&t, &w, "clutter", "8 trials");
        assert!(
            text.contains("No median model: no complete trial."),
            "{text}"
        );
    }
}
