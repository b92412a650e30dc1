//! What the tables of figures 1 to 3 share: a model's validation accuracy over seeds (a row),
//! one model's accuracy tested against a reference's at their sizes (a comparison), and how
//! both are written as CSV and Markdown. Figure 2's rows add sizes and fronts to a [`Row`]; the
//! figures differ in which pairs they compare and how they judge the claim, not in these.

use super::models::Family;
use super::report::Verdict;
use super::stats;
use super::training::Trained;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Significance level of every comparison of figures 1 to 3.
pub const ALPHA: f64 = 0.05;

/// One model's accuracy over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub model: String,
    pub family: Family,
    pub params: usize,
    pub seeds: Vec<u64>,
    /// Validation top-1 of the last step, per seed.
    pub top1: Vec<f64>,
    pub top1_mean: f64,
    pub top1_sd: f64,
}

/// The runs grouped by model (in the order first seen): each model's last-step accuracy per
/// seed, its mean and sd.
pub fn rows(trained: &[Trained]) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    for t in trained {
        let top1 = *t
            .top1_per_step
            .last()
            .with_context(|| format!("{} (seed {}) has no accuracy", t.id, t.seed))?;
        match rows.iter_mut().find(|r| r.model == t.id) {
            Some(r) => {
                r.seeds.push(t.seed);
                r.top1.push(top1);
            }
            None => rows.push(Row {
                model: t.id.clone(),
                family: t.family,
                params: t.params,
                seeds: vec![t.seed],
                top1: vec![top1],
                top1_mean: 0.0,
                top1_sd: 0.0,
            }),
        }
    }
    for r in &mut rows {
        r.top1_mean = stats::mean(&r.top1);
        r.top1_sd = stats::sd(&r.top1);
    }
    Ok(rows)
}

pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Recurrent => "recurrent",
        Family::Feedforward => "feedforward",
    }
}

/// One CSV row per model and seed: `model,family,params,seed,top1`.
pub fn rows_csv(rows: &[Row]) -> String {
    let mut s = String::from("model,family,params,seed,top1\n");
    for r in rows {
        for (seed, v) in r.seeds.iter().zip(&r.top1) {
            let _ = writeln!(
                s,
                "{},{},{},{seed},{v:.6}",
                r.model,
                family_name(r.family),
                r.params
            );
        }
    }
    s
}

/// The Markdown table of `rows`: model, family, parameters, mean and sd in percent, seeds.
pub fn rows_markdown(rows: &[Row]) -> String {
    let mut s =
        String::from("| model | family | parameters | top-1 % (mean) | sd | seeds |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} | {} |",
            r.model,
            family_name(r.family),
            r.params,
            100.0 * r.top1_mean,
            100.0 * r.top1_sd,
            r.seeds.len()
        );
    }
    s
}

/// What a model's size is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Params,
    /// The neurons the areas emit per step ([`super::models::units`]).
    Units,
}

impl Measure {
    pub const ALL: [Measure; 2] = [Measure::Params, Measure::Units];

    pub fn words(self) -> &'static str {
        match self {
            Measure::Params => "parameters",
            Measure::Units => "units",
        }
    }
}

/// A model against its reference: their sizes and Welch's test of their accuracies over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The model tested (a cell, the search's median model).
    pub model: String,
    /// What `size` and `reference_size` count.
    pub measure: Measure,
    pub size: usize,
    pub reference: String,
    pub reference_size: usize,
    /// Model against reference (the difference: model mean minus reference mean, a fraction).
    #[serde(flatten)]
    pub test: stats::Tested,
}

impl Comparison {
    /// Whether the model is significantly above its reference (Holm-adjusted, at [`ALPHA`]).
    pub fn above(&self) -> bool {
        self.test.above(ALPHA)
    }
    /// Whether the model is significantly below its reference.
    pub fn below(&self) -> bool {
        self.test.below(ALPHA)
    }
}

/// The Markdown table of `comparisons`, the tested model's column headed `model_header`; with
/// `measure` a column says what each size counts (else every size is in parameters).
pub fn comparisons_markdown(
    comparisons: &[Comparison],
    model_header: &str,
    measure: bool,
) -> String {
    let (head, rule) = if measure {
        ("measure | size | reference | size", "|---|---|---|---|---|")
    } else {
        ("parameters | reference | parameters", "|---|---|---|---|")
    };
    let mut s = format!(
        "| {model_header} | {head} | difference (points) | {}\n{rule}---|---|---|---|---|\n",
        stats::TESTED_HEADER
    );
    for c in comparisons {
        let measure = if measure {
            format!("{} | ", c.measure.words())
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {measure}{} | {} | {} | {}",
            c.model,
            c.size,
            c.reference,
            c.reference_size,
            c.test.cells(100.0, 1)
        );
    }
    s
}

/// The end of a figure's section: the test (`words`, one paragraph), the table of
/// `comparisons` (as [`comparisons_markdown`]) and the verdict.
pub fn test_markdown(
    words: &str,
    comparisons: &[Comparison],
    model_header: &str,
    measure: bool,
    verdict: Verdict,
    reason: &str,
) -> String {
    format!(
        "\n**Test.** {words}\n\n{}{}\n",
        comparisons_markdown(comparisons, model_header, measure),
        super::report::verdict_line(verdict, reason)
    )
}

/// `v` joined with commas, or `none`.
pub fn list_or_none<T: std::fmt::Display>(v: &[T]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::fig1::tests::run;

    #[test]
    fn rows_group_the_seeds_of_each_model_in_order() {
        let runs = [
            run("b", Family::Recurrent, 20, 0, 0.5),
            run("a", Family::Feedforward, 10, 0, 0.4),
            run("b", Family::Recurrent, 20, 1, 0.7),
        ];
        let rows = rows(&runs).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].model.as_str(), &rows[0].seeds), ("b", &vec![0, 1]));
        assert!((rows[0].top1_mean - 0.6).abs() < 1e-12);
        let md = rows_markdown(&rows);
        assert!(
            md.contains("| b | recurrent | 20 | 60.0 | 14.1 | 2 |"),
            "{md}"
        );
        assert!(
            md.contains("| a | feedforward | 10 | 40.0 | 0.0 | 1 |"),
            "{md}"
        );
        let csv = rows_csv(&rows);
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.contains("\nb,recurrent,20,1,0.700000\n"), "{csv}");
        let mut empty = run("c", Family::Recurrent, 1, 0, 0.5);
        empty.top1_per_step.clear();
        assert!(format!("{:#}", self::rows(&[empty]).unwrap_err()).contains("c (seed 0)"));
    }

    #[test]
    fn comparison_tables_have_as_many_cells_as_headers() {
        let mut test = stats::Tested::welch(&[0.7, 0.71, 0.69], &[0.5, 0.52, 0.48]).unwrap();
        test.p_holm = test.p; // one test: Holm leaves it as it is
        let c = |measure| Comparison {
            model: "rgc".into(),
            measure,
            size: 100,
            reference: "ff_base".into(),
            reference_size: 90,
            test,
        };
        for (cs, measure) in [
            (vec![c(Measure::Params)], false),
            (vec![c(Measure::Params), c(Measure::Units)], true),
        ] {
            let md = comparisons_markdown(&cs, "cell", measure);
            let lines: Vec<&str> = md.lines().collect();
            assert_eq!(lines.len(), 2 + cs.len(), "{md}");
            let cells = |l: &str| l.matches('|').count();
            assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{md}");
            assert!(lines[2].starts_with("| rgc | "), "{md}");
        }
        let md = comparisons_markdown(&[c(Measure::Units)], "cell", true);
        assert!(md.contains("| rgc | units | 100 | ff_base | 90 |"), "{md}");
        assert!(c(Measure::Params).above() && !c(Measure::Params).below());
        assert_eq!(list_or_none::<u64>(&[]), "none");
        assert_eq!(list_or_none(&[3, 1]), "3, 1");
    }
}
