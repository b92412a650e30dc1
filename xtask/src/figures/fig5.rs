//! Figure 5, object solution times: per model, the Spearman correlation between its object
//! solution times (when a linear readout of its last area reaches the reference d′, image by
//! image) and the reference's (IT's in the in-silico set), mean ± sd over seeds. The claim is
//! tested by Welch's t-test of the ConvRNNs' correlations against the feedforward nets'.

use super::accuracy::family_name;
use super::models::Family;
use super::neural::{Mapping, Scored};
use super::report::Verdict;
use super::stats;
use anyhow::Result;
use plots::{Chart, Series, Written};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub const STEM: &str = "fig5_object_solution_times";
pub const ALPHA: f64 = 0.05;

pub const CLAIM: &str = "ConvRNNs, whose solution of an image can take more or less time, \
    reproduce the image-by-image object solution times of IT (Kar et al. 2019) better than \
    feedforward nets, which answer after one pass whatever the image (Nayebi et al., Neural \
    Computation 2022).";

/// One model's consistency over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub model: String,
    pub family: Family,
    pub params: usize,
    pub area: String,
    pub seeds: Vec<u64>,
    /// Spearman per seed (NaN where fewer than 3 images were solved by both).
    pub spearman: Vec<f64>,
    pub spearman_mean: f64,
    pub spearman_sd: f64,
    /// Mean over seeds of the images solved by the model and by both.
    pub solved_by_model: f64,
    pub solved_by_both: f64,
    pub images: usize,
}

/// ConvRNNs against feedforward nets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub recurrent: usize,
    pub feedforward: usize,
    pub diff: f64,
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub rows: Vec<Row>,
    pub test: Option<Test>,
    pub verdict: Verdict,
    pub reason: String,
}

/// One row per model from the stages that computed OSTs (a feedforward net's uniform stage: its
/// graded one reads the same features).
pub fn table(scored: &[Scored]) -> Result<Table> {
    let mut rows: Vec<Row> = Vec::new();
    for s in scored.iter().filter(|s| s.mapping != Mapping::Graded) {
        let Some(o) = &s.ost else { continue };
        let rho = o.spearman.unwrap_or(f64::NAN);
        match rows.iter_mut().find(|r| r.model == s.id) {
            Some(r) => {
                r.seeds.push(s.seed);
                r.spearman.push(rho);
                r.solved_by_model += o.solved_by_model as f64;
                r.solved_by_both += o.solved_by_both as f64;
            }
            None => rows.push(Row {
                model: s.id.clone(),
                family: s.family,
                params: s.params,
                area: o.area.clone(),
                seeds: vec![s.seed],
                spearman: vec![rho],
                spearman_mean: 0.0,
                spearman_sd: 0.0,
                solved_by_model: o.solved_by_model as f64,
                solved_by_both: o.solved_by_both as f64,
                images: o.images,
            }),
        }
    }
    for r in &mut rows {
        r.spearman_mean = stats::mean(&r.spearman);
        r.spearman_sd = stats::sd(&r.spearman);
        r.solved_by_model /= r.seeds.len() as f64;
        r.solved_by_both /= r.seeds.len() as f64;
    }
    let pool = |f: Family| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.family == f)
            .flat_map(|r| r.spearman.iter().copied())
            .collect()
    };
    let (rec, ff) = (pool(Family::Recurrent), pool(Family::Feedforward));
    let test = stats::welch(&rec, &ff).map(|w| Test {
        recurrent: rec.len(),
        feedforward: ff.len(),
        diff: w.diff,
        t: w.t,
        df: w.df,
        p: w.p,
    });
    let (verdict, reason) = judge(&rows, test.as_ref());
    Ok(Table {
        rows,
        test,
        verdict,
        reason,
    })
}

fn judge(rows: &[Row], test: Option<&Test>) -> (Verdict, String) {
    if rows.is_empty() {
        return (
            Verdict::CannotTest,
            "the recordings have no reference object solution times (only the in-silico set \
             has them)"
                .into(),
        );
    }
    let Some(t) = test else {
        return (
            Verdict::CannotTest,
            "fewer than two correlations among the ConvRNNs or among the feedforward nets".into(),
        );
    };
    if t.p.is_nan() {
        let unsolved: Vec<&str> = rows
            .iter()
            .filter(|r| r.spearman.iter().any(|x| x.is_nan()))
            .map(|r| r.model.as_str())
            .collect();
        return (
            Verdict::CannotTest,
            format!(
                "the test could not be computed (p-value NaN): {} solved fewer than 3 images \
                 together with the reference in some seed, so its correlation is undefined",
                unsolved.join(", ")
            ),
        );
    }
    let words = format!(
        "the ConvRNNs' mean Spearman minus the feedforward nets' is {:+.3} (Welch's t = {:.2}, \
         df = {:.1}, p = {:.3}; {} and {} model-seeds)",
        t.diff, t.t, t.df, t.p, t.recurrent, t.feedforward
    );
    if t.p < ALPHA && t.diff > 0.0 {
        (Verdict::Supports, words)
    } else if t.p < ALPHA && t.diff < 0.0 {
        (Verdict::Contradicts, words)
    } else {
        (Verdict::Inconclusive, words)
    }
}

/// `STEM.csv`: one row per model and seed.
pub fn csv(table: &Table) -> String {
    let mut s = String::from("model,family,params,area,seed,spearman\n");
    for r in &table.rows {
        for (seed, v) in r.seeds.iter().zip(&r.spearman) {
            let _ = writeln!(
                s,
                "{},{},{},{},{seed},{}",
                r.model,
                family_name(r.family),
                r.params,
                r.area,
                if v.is_finite() {
                    format!("{v:.6}")
                } else {
                    String::new()
                }
            );
        }
    }
    s
}

/// The chart: each model's consistency against its parameters.
pub fn draw(table: &Table, out: &Path, data: &str) -> Result<Written> {
    let mut chart = Chart::new(
        format!("Object solution times vs the reference: {data}"),
        "parameters (log scale)",
        "Spearman, model OST vs reference OST",
    )
    .log_x()
    .size(super::CHART_SIZE.0, super::CHART_SIZE.1);
    for r in table
        .rows
        .iter()
        .filter(|r| r.spearman_mean.is_finite() && r.spearman_sd.is_finite())
    {
        chart = chart.with(
            Series::points(
                format!("{} ({})", r.model, family_name(r.family)),
                [(r.params as f64, r.spearman_mean)],
            )
            .with_errors([r.spearman_sd])
            .with_labels([r.model.as_str()]),
        );
    }
    Ok(chart.write(&out.join(STEM))?)
}

/// The report's section; `who` names the models (default: those of figure 1).
pub fn section(table: &Table, figure: Option<&Written>, data: &str, who: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Figure 5: object solution times\n");
    let _ = writeln!(s, "**The paper's claim.** {CLAIM}\n");
    match figure {
        Some(f) => {
            let _ = writeln!(s, "{}\n", super::report::image_lines(f, "figure 5"));
        }
        None => {
            let _ = writeln!(s, "(no chart: no model has a finite correlation)\n");
        }
    }
    let _ = writeln!(
        s,
        "**Data and models.** {data}. {}, each scored by `neurofit score`: per image, the first \
         10 ms bin where \
         a cross-validated linear readout of the model's last area reaches the reference's d′ \
         (Kar et al. 2019), correlated with the reference's solution times (Spearman, images \
         both solve). ConvRNNs see the image for 100 ms; feedforward nets see it throughout. \
         {} Table: `{STEM}.csv`, `{STEM}.json`.\n",
        who.unwrap_or("The models of figure 1 listed below (trained as there), every seed"),
        super::report::spread_words(table.rows.iter().map(|r| r.seeds.len()).max().unwrap_or(0))
    );
    let _ = writeln!(
        s,
        "| model | family | area | Spearman (mean) | sd | seeds | solved by model | solved by both | images |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for r in &table.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {} | {} | {:.0} | {:.0} | {} |",
            r.model,
            family_name(r.family),
            r.area,
            r.spearman_mean,
            stats::sd_cell(r.spearman_sd, r.seeds.len(), 1.0, 3),
            r.seeds.len(),
            r.solved_by_model,
            r.solved_by_both,
            r.images
        );
    }
    let _ = writeln!(
        s,
        "\n**Test.** Welch's t-test, two-sided, of the ConvRNNs' correlations (every model and \
         seed) against the feedforward nets', α = {ALPHA}.\n"
    );
    let _ = writeln!(
        s,
        "{}",
        super::report::verdict_line(table.verdict, &table.reason)
    );
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::figures::neural::{parse, tests::neurofit_json, tests::subject, AreaRule};

    /// rgc and ugrnn at `rec`, ff_base (uniform and graded) at `ff`, three seeds.
    pub(crate) fn scored(rec: f64, ff: f64, level: f64) -> Vec<Scored> {
        let mut v = Vec::new();
        for seed in 0..3u64 {
            let jitter = 0.01 * seed as f64;
            for id in ["rgc", "ugrnn"] {
                let j = neurofit_json(level + jitter, Some(rec + jitter), false);
                v.push(
                    parse(
                        &subject(id, Family::Recurrent, seed),
                        Mapping::Recurrent,
                        &AreaRule::Positional,
                        &j,
                    )
                    .unwrap(),
                );
            }
            for (m, graded) in [(Mapping::Uniform, false), (Mapping::Graded, true)] {
                let j = neurofit_json(
                    0.5 * level + jitter,
                    Some(ff + 0.01 * ((seed + 1) % 3) as f64),
                    graded,
                );
                v.push(
                    parse(
                        &subject("ff_base", Family::Feedforward, seed),
                        m,
                        &AreaRule::Positional,
                        &j,
                    )
                    .unwrap(),
                );
            }
        }
        v
    }

    #[test]
    fn one_row_per_model_and_the_verdicts() {
        let t = table(&scored(0.6, 0.2, 0.4)).unwrap();
        assert_eq!(t.rows.len(), 3);
        assert!(t.rows.iter().all(|r| r.seeds.len() == 3
            && r.spearman_mean.is_finite()
            && r.spearman_sd.is_finite()));
        assert_eq!(t.verdict, Verdict::Supports, "{}", t.reason);
        let c = csv(&t);
        assert!(
            c.starts_with(
                "model,family,params,area,seed,spearman\nrgc,recurrent,1000,conv3,0,0.600000\n"
            ),
            "{c}"
        );
        assert_eq!(c.lines().count(), 1 + 9);
        assert!(!c.contains("NaN"));
        assert_eq!(
            table(&scored(0.2, 0.6, 0.4)).unwrap().verdict,
            Verdict::Contradicts
        );
        assert_eq!(
            table(&scored(0.4, 0.4, 0.4)).unwrap().verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn an_undefined_correlation_cannot_decide() {
        let mut v = scored(0.6, 0.2, 0.4);
        v[0].ost.as_mut().unwrap().spearman = None;
        let t = table(&v).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest, "{}", t.reason);
        assert!(t.reason.contains("rgc"), "{}", t.reason);
        for s in &mut v {
            s.ost = None;
        }
        assert_eq!(table(&v).unwrap().verdict, Verdict::CannotTest);
    }

    #[test]
    fn the_chart_and_section_name_the_models() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&scored(0.6, 0.2, 0.4)).unwrap();
        let w = draw(&t, dir.path(), "in-silico").unwrap();
        let svg = std::fs::read_to_string(&w.svg).unwrap();
        let text = section(&t, Some(&w), "in-silico", None);
        for m in ["rgc", "ugrnn", "ff_base"] {
            assert!(svg.contains(m) && text.contains(&format!("| {m} |")), "{m}");
        }
        assert!(text.contains("**Verdict: supports.**"), "{text}");
        assert!(!text.contains("none (n ="), "{text}");
    }

    #[test]
    fn one_seed_prints_no_spread() {
        let one: Vec<Scored> = scored(0.6, 0.2, 0.4)
            .into_iter()
            .filter(|s| s.seed == 0)
            .collect();
        let t = table(&one).unwrap();
        let text = section(&t, None, "in-silico", None);
        assert!(
            text.contains("| rgc | recurrent | conv3 | 0.600 | none (n = 1) | 1 |"),
            "{text}"
        );
        assert!(!text.contains("| 0.000 |"), "{text}");
    }
}
