//! Figure 6, accuracy over time: validation top-1 of each time step's logits for every model
//! (mean ± sd over seeds), and the decoders last, max_conf and thresh. The claim is tested on the
//! RGC, the paper's model: its accuracy should rise after the image first reaches the readout
//! (paired t-test over seeds of the last step against that first step), and the confidence-based
//! decoders should cost at most [`DECODER_TOLERANCE`] of top-1 against the last step.

use super::accuracy::family_name;
use super::models::Family;
use super::report::Verdict;
use super::stats;
use super::training::Trained;
use anyhow::{Context, Result};
use plots::{Chart, Series, Written};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub const STEM: &str = "fig6_accuracy_over_time";
pub const ALPHA: f64 = 0.05;
/// The decoders in the order they are reported.
pub const DECODERS: [&str; 3] = ["last", "max_conf", "thresh"];
/// How much top-1 a confidence-based decoder may lose against the last step for the claim to
/// hold: 2 points, above the paper's largest gap (1.19 points, thresh).
pub const DECODER_TOLERANCE: f64 = 0.02;
/// The model the claim is tested on.
pub const CLAIM_MODEL: &str = "rgc";
/// Feedforward nets of figure 1 drawn beside the cells, and those left out so the figure stays
/// readable (every other model, a given one too, is drawn).
const FEEDFORWARD_DRAWN: [&str; 2] = ["ff_base", "ff_wide5"];
const FEEDFORWARD_LEFT_OUT: [&str; 3] = ["ff_wide2", "ff_deep", "ff_deep_wide2"];

pub const CLAIM: &str = "A ConvRNN's accuracy keeps rising over the time steps after its first \
    feedforward pass reaches the readout, and decoders that answer as soon as the model is \
    confident cost little accuracy: on ImageNet the paper's rgc_intermediate scores 73.00 % \
    top-1 with the last step, 72.29 % with max_conf and 71.81 % with thresh (Nayebi et al., \
    NeurIPS 2018 and Neural Computation 2022; SPEC §5).";

/// One model's accuracy at one time step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub model: String,
    pub family: Family,
    pub step: usize,
    pub top1_mean: f64,
    pub top1_sd: f64,
    pub seeds: usize,
}

/// One model's accuracy with one decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderRow {
    pub model: String,
    pub family: Family,
    pub decoder: String,
    pub top1_mean: f64,
    pub top1_sd: f64,
    /// Mean over seeds of (last − this decoder).
    pub cost_vs_last: f64,
    pub seeds: usize,
}

/// Per model: the last step against the first step the image reaches the readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rise {
    pub model: String,
    pub family: Family,
    pub first_step: usize,
    pub first_mean: f64,
    pub last_mean: f64,
    /// Paired t-test over seeds of last − first (`None` with fewer than two seeds).
    pub t: Option<f64>,
    pub p: Option<f64>,
}

/// The figure's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The model the claim is tested on.
    pub claim_model: String,
    pub steps: Vec<StepRow>,
    pub decoders: Vec<DecoderRow>,
    pub rises: Vec<Rise>,
    pub verdict: Verdict,
    pub reason: String,
}

/// The runs of each model, in the order first seen.
fn by_model(trained: &[Trained]) -> Vec<Vec<&Trained>> {
    let mut groups: Vec<Vec<&Trained>> = Vec::new();
    for t in trained {
        match groups.iter_mut().find(|g| g[0].id == t.id) {
            Some(g) => g.push(t),
            None => groups.push(vec![t]),
        }
    }
    groups
}

/// The table with the claim tested on [`CLAIM_MODEL`].
pub fn table(trained: &[Trained]) -> Result<Table> {
    table_on(trained, CLAIM_MODEL)
}

/// The table with the claim tested on `claim_model`.
pub fn table_on(trained: &[Trained], claim_model: &str) -> Result<Table> {
    let (mut steps, mut decoders, mut rises) = (Vec::new(), Vec::new(), Vec::new());
    for g in by_model(trained) {
        let (id, family) = (g[0].id.clone(), g[0].family);
        let n = g.iter().map(|t| t.top1_per_step.len()).min().unwrap_or(0);
        for step in 0..n {
            let v: Vec<f64> = g.iter().map(|t| t.top1_per_step[step]).collect();
            steps.push(StepRow {
                model: id.clone(),
                family,
                step,
                top1_mean: stats::mean(&v),
                top1_sd: stats::sd(&v),
                seeds: v.len(),
            });
        }
        let last: Vec<f64> = g
            .iter()
            .map(|t| {
                t.decoder("last")
                    .with_context(|| format!("{id}: no last decoder"))
            })
            .collect::<Result<_>>()?;
        for name in DECODERS {
            let v: Vec<f64> = g
                .iter()
                .map(|t| {
                    t.decoder(name)
                        .with_context(|| format!("{id}: no {name} decoder"))
                })
                .collect::<Result<_>>()?;
            let cost: Vec<f64> = last.iter().zip(&v).map(|(a, b)| a - b).collect();
            decoders.push(DecoderRow {
                model: id.clone(),
                family,
                decoder: name.to_string(),
                top1_mean: stats::mean(&v),
                top1_sd: stats::sd(&v),
                cost_vs_last: stats::mean(&cost),
                seeds: v.len(),
            });
        }
        let first_step = g[0].first_readout_step;
        if first_step < n {
            let first: Vec<f64> = g.iter().map(|t| t.top1_per_step[first_step]).collect();
            let end: Vec<f64> = g.iter().map(|t| t.top1_per_step[n - 1]).collect();
            let test = stats::paired(&end, &first);
            rises.push(Rise {
                model: id.clone(),
                family,
                first_step,
                first_mean: stats::mean(&first),
                last_mean: stats::mean(&end),
                t: test.map(|x| x.t),
                p: test.map(|x| x.p),
            });
        }
    }
    let (verdict, reason) = judge(claim_model, &rises, &decoders, trained);
    Ok(Table {
        claim_model: claim_model.to_string(),
        steps,
        decoders,
        rises,
        verdict,
        reason,
    })
}

fn judge(
    claim: &str,
    rises: &[Rise],
    decoders: &[DecoderRow],
    trained: &[Trained],
) -> (Verdict, String) {
    let Some(rise) = rises.iter().find(|r| r.model == claim) else {
        return (Verdict::CannotTest, format!("no {claim} model was trained"));
    };
    let Some(p) = rise.p else {
        return (
            Verdict::CannotTest,
            format!(
                "{claim} has one seed: the rise and the decoders' costs are tested over seeds \
                 (paired t-test), which needs at least two"
            ),
        );
    };
    // A NaN p-value is a test that could not be computed, not a non-significant one.
    if p.is_nan() {
        return (
            Verdict::CannotTest,
            format!(
                "the rise of {claim}'s accuracy could not be tested (p-value NaN: an \
                 accuracy per step is not a finite number)"
            ),
        );
    }
    let rise_words = format!(
        "{claim}'s top-1 goes from {:.1} % at step {} to {:.1} % at the last step \
         (paired t-test over seeds, p = {p:.3})",
        100.0 * rise.first_mean,
        rise.first_step,
        100.0 * rise.last_mean
    );
    // Costs of the confidence decoders, tested per seed against 0.
    let mut costly = Vec::new();
    let mut cost_words = Vec::new();
    for name in ["max_conf", "thresh"] {
        let Some(row) = decoders
            .iter()
            .find(|d| d.model == claim && d.decoder == name)
        else {
            return (
                Verdict::CannotTest,
                format!("no {name} decoder for {claim}"),
            );
        };
        let runs: Vec<&Trained> = trained.iter().filter(|t| t.id == claim).collect();
        let last: Vec<f64> = runs.iter().filter_map(|t| t.decoder("last")).collect();
        let this: Vec<f64> = runs.iter().filter_map(|t| t.decoder(name)).collect();
        let test = stats::paired(&last, &this);
        if row.cost_vs_last.is_nan() || test.is_some_and(|x| x.p.is_nan()) {
            return (
                Verdict::CannotTest,
                format!(
                    "the cost of {name} on {claim} could not be tested (p-value NaN: a \
                     decoder's accuracy is not a finite number)"
                ),
            );
        }
        let significant = test.is_some_and(|x| x.p < ALPHA);
        cost_words.push(format!(
            "{name} costs {:+.1} points",
            100.0 * row.cost_vs_last
        ));
        if row.cost_vs_last > DECODER_TOLERANCE && significant {
            costly.push(name);
        }
    }
    let words = format!("{rise_words}; {}", cost_words.join(", "));
    let rose = p < ALPHA && rise.last_mean > rise.first_mean;
    let fell = p < ALPHA && rise.last_mean < rise.first_mean;
    let cheap = decoders
        .iter()
        .filter(|d| d.model == claim && d.decoder != "last")
        .all(|d| d.cost_vs_last <= DECODER_TOLERANCE);
    if fell || !costly.is_empty() {
        (Verdict::Contradicts, words)
    } else if rose && cheap {
        (Verdict::Supports, words)
    } else {
        (Verdict::Inconclusive, words)
    }
}

/// `STEM.csv` (accuracy per step) and `STEM_decoders.csv`.
pub fn csv(table: &Table) -> (String, String) {
    let mut a = String::from("model,family,step,top1_mean,top1_sd,seeds\n");
    for r in &table.steps {
        let _ = writeln!(
            a,
            "{},{},{},{:.6},{:.6},{}",
            r.model,
            family_name(r.family),
            r.step,
            r.top1_mean,
            r.top1_sd,
            r.seeds
        );
    }
    let mut b = String::from("model,family,decoder,top1_mean,top1_sd,cost_vs_last,seeds\n");
    for r in &table.decoders {
        let _ = writeln!(
            b,
            "{},{},{},{:.6},{:.6},{:.6},{}",
            r.model,
            family_name(r.family),
            r.decoder,
            r.top1_mean,
            r.top1_sd,
            r.cost_vs_last,
            r.seeds
        );
    }
    (a, b)
}

/// The chart: top-1 per time step, one line per cell and two feedforward nets.
pub fn draw(table: &Table, out: &Path, data: &str) -> Result<Written> {
    let seeds = table.steps.first().map_or(0, |r| r.seeds);
    let mut chart = Chart::new(
        format!("Accuracy over time: {data}, mean ± sd over {seeds} seeds"),
        "time step (10 ms)",
        "validation top-1",
    )
    // Fitted to the data, not 0..1: at the quick scale every curve lay in the bottom quarter.
    .size(super::CHART_SIZE.0, super::CHART_SIZE.1);
    let mut drawn: Vec<&str> = Vec::new();
    for r in &table.steps {
        if !drawn.contains(&r.model.as_str()) && !FEEDFORWARD_LEFT_OUT.contains(&r.model.as_str()) {
            drawn.push(&r.model);
        }
    }
    for m in drawn {
        // A step whose accuracy is not finite is left out (the verdict says why).
        let rows: Vec<&StepRow> = table
            .steps
            .iter()
            .filter(|r| r.model == *m)
            .filter(|r| r.top1_mean.is_finite() && r.top1_sd.is_finite())
            .collect();
        if !rows.is_empty() {
            chart = chart.with(
                Series::line(m, rows.iter().map(|r| (r.step as f64, r.top1_mean)))
                    .with_errors(rows.iter().map(|r| r.top1_sd)),
            );
        }
    }
    Ok(chart.write(&out.join(STEM))?)
}

/// The report's section; `who` names the models (default: those of figure 1).
pub fn section(table: &Table, figure: &Written, data: &str, who: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Figure 6: accuracy over time and decoders\n");
    let _ = writeln!(s, "**The paper's claim.** {CLAIM}\n");
    let _ = writeln!(s, "{}\n", super::report::image_lines(figure, "figure 6"));
    let _ = writeln!(
        s,
        "**Data and models.** {data}; {}. Each step's logits are decoded alone; `last` is the last \
         step, `max_conf` per image the step of highest top-class probability and `thresh` the \
         first step whose top-class probability reaches 0.9 (else the most confident), both \
         from the first step the image reaches the readout. {} \
         Tables: `{STEM}.csv`, `{STEM}_decoders.csv`, `{STEM}.json`.\n",
        who.map_or_else(
            || format!(
                "the models of figure 1 (the chart draws the cells and {}; the tables hold every \
                 model)",
                FEEDFORWARD_DRAWN.join(" and ")
            ),
            str::to_string
        ),
        super::report::spread_words(table.steps.iter().map(|r| r.seeds).max().unwrap_or(0))
    );
    let _ = writeln!(
        s,
        "| model | first step | top-1 % there | top-1 % last step | p (paired) | last % | \
         max_conf % | thresh % |\n|---|---|---|---|---|---|---|---|"
    );
    for r in &table.rises {
        let dec = |name: &str| {
            table
                .decoders
                .iter()
                .find(|d| d.model == r.model && d.decoder == name)
                .map_or("-".into(), |d| {
                    stats::mean_sd_cell(d.top1_mean, d.top1_sd, d.seeds, 100.0, 1)
                })
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
            r.model,
            r.first_step,
            100.0 * r.first_mean,
            100.0 * r.last_mean,
            r.p.map_or("-".into(), |p| format!("{p:.3}")),
            dec("last"),
            dec("max_conf"),
            dec("thresh")
        );
    }
    let _ = writeln!(
        s,
        "\n**Test.** On {}: a paired t-test over seeds of the last step's top-1 against \
         the first step the image reaches the readout (α = {ALPHA}), and the confidence \
         decoders' cost against `last`, allowed up to {:.0} points (the paper's largest is \
         1.19). Contradicted when accuracy falls significantly or a decoder costs more than that \
         significantly (paired t-test).\n",
        table.claim_model,
        100.0 * DECODER_TOLERANCE
    );
    let _ = writeln!(
        s,
        "{}",
        super::report::verdict_line(table.verdict, &table.reason)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::fig1::tests::runs;
    use crate::figures::models::CELLS;

    #[test]
    fn one_row_per_model_and_step_and_per_model_and_decoder() {
        let trained = runs(0.7, 0.5);
        let t = table(&trained).unwrap();
        let models = CELLS.len() + 2;
        assert_eq!(t.steps.len(), models * 6);
        assert_eq!(t.decoders.len(), models * DECODERS.len());
        assert_eq!(t.rises.len(), models);
        assert!(t
            .steps
            .iter()
            .all(|r| r.top1_mean.is_finite() && r.top1_sd.is_finite() && r.seeds == 3));
        let (a, b) = csv(&t);
        assert_eq!(a.lines().count(), 1 + models * 6);
        assert_eq!(b.lines().count(), 1 + models * 3);
        assert!(!a.contains("NaN") && !b.contains("NaN"));
        assert!(
            a.starts_with("model,family,step,top1_mean,top1_sd,seeds\nsimplernn,")
                || a.starts_with("model,family,step,top1_mean,top1_sd,seeds\ntimedecay,")
        );
        let rgc = t.rises.iter().find(|r| r.model == "rgc").unwrap();
        assert_eq!(rgc.first_step, 3);
        assert!((rgc.first_mean - 0.56).abs() < 1e-9, "{rgc:?}");
        // Every decoder of the fixture is 1 point under the last step: a small cost.
        assert_eq!(t.verdict, Verdict::Supports, "{}", t.reason);
    }

    #[test]
    fn a_costly_decoder_or_a_fall_contradicts() {
        let mut trained = runs(0.7, 0.5);
        for (i, r) in trained.iter_mut().filter(|r| r.id == "rgc").enumerate() {
            r.decoders[2].top1 = 0.6 - 0.001 * i as f64;
        }
        let t = table(&trained).unwrap();
        assert_eq!(t.verdict, Verdict::Contradicts, "{}", t.reason);
        let mut fall = runs(0.7, 0.5);
        for (i, r) in fall.iter_mut().filter(|r| r.id == "rgc").enumerate() {
            r.top1_per_step = vec![0.1, 0.1, 0.1, 0.8 + 0.01 * i as f64, 0.5, 0.4];
        }
        assert_eq!(table(&fall).unwrap().verdict, Verdict::Contradicts);
        let none: Vec<Trained> = runs(0.7, 0.5)
            .into_iter()
            .filter(|r| r.id != "rgc")
            .collect();
        assert_eq!(table(&none).unwrap().verdict, Verdict::CannotTest);
    }

    #[test]
    fn a_test_that_could_not_be_computed_cannot_decide_the_claim() {
        let mut nan_step = runs(0.7, 0.5);
        let rgc = nan_step.iter_mut().find(|r| r.id == "rgc").unwrap();
        *rgc.top1_per_step.last_mut().unwrap() = f64::NAN;
        let t = table(&nan_step).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest, "{}", t.reason);
        assert!(t.reason.contains("could not be tested"), "{}", t.reason);
        let dir = tempfile::tempdir().unwrap();
        let w = draw(&t, dir.path(), "clutter").unwrap();
        assert!(section(&t, &w, "clutter", None).contains("**Verdict: cannot test.**"));
        let mut nan_decoder = runs(0.7, 0.5);
        let rgc = nan_decoder.iter_mut().find(|r| r.id == "rgc").unwrap();
        rgc.decoders[2].top1 = f64::NAN;
        let t = table(&nan_decoder).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest, "{}", t.reason);
        assert!(t.reason.contains("thresh"), "{}", t.reason);
    }

    #[test]
    fn the_chart_and_section_name_the_models() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&runs(0.7, 0.5)).unwrap();
        let w = draw(&t, dir.path(), "clutter").unwrap();
        let svg = std::fs::read_to_string(&w.svg).unwrap();
        for m in CELLS.iter().chain(&FEEDFORWARD_DRAWN) {
            assert!(svg.contains(m), "{m}");
        }
        let text = section(&t, &w, "clutter", None);
        assert!(text.contains("| rgc | 3 | 56.0 | 70.0 |"), "{text}");
        assert!(text.contains("**Verdict: supports.**"));
    }
}
