//! Figure 2, size against performance (Neural Computation 2022): validation top-1 against
//! parameters and against units ([`super::models::units`]) for feedforward nets of increasing
//! depth (the compact backbone without cells and with 1 to 4 extra convs per area) and for the
//! ConvRNNs with few layers (every cell on the 3-area backbone); the accuracy–size Pareto front
//! over all of them, for each measure. The claim is tested per gated cell against the feedforward
//! front at its size (Welch's t-test over seeds, Holm-corrected, as figure 1).

use super::accuracy::{self, family_name, list_or_none, Comparison, Measure, ALPHA};
use super::models::{Family, CELLS, GATED_BYPASS};
use super::report::Verdict;
use super::stats;
use super::training::Trained;
use anyhow::{bail, Context, Result};
use plots::{Chart, Series, Written};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub const STEM: &str = "fig2_size_performance";

pub const CLAIM: &str = "ConvRNNs with few layers sit on or above the accuracy–size Pareto \
    front of deeper feedforward nets, counted in parameters and in units: recurrence buys what \
    depth would otherwise cost, so shallow recurrent models trade depth for recurrence (Nayebi et \
    al., Neural Computation 2022).";

/// The feedforward nets of the figure besides the deeper ones of [`super::models::depth_series`].
const SHARED_FEEDFORWARD: [&str; 2] = ["ff_base", "ff_deep"];

/// Whether the model `id` is in the figure: every cell, and the feedforward nets of increasing
/// depth (not the wider ones of figure 1).
pub fn in_figure(id: &str) -> bool {
    CELLS.contains(&id)
        || SHARED_FEEDFORWARD.contains(&id)
        || id
            .strip_prefix("ff_deep")
            .and_then(|k| k.parse::<usize>().ok())
            .is_some_and(|k| super::models::EXTRA_DEPTHS.contains(&k))
}

/// The size of a model in `m`.
fn size_in(m: Measure, r: &Row) -> usize {
    match m {
        Measure::Params => r.acc.params,
        Measure::Units => r.units,
    }
}

/// A model's size beside its parameters (from its spec, not its training run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSize {
    pub model: String,
    pub units: usize,
    pub areas: usize,
}

/// One model's accuracy over seeds, its size in areas and units, and whether it is on each
/// Pareto front.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    #[serde(flatten)]
    pub acc: accuracy::Row,
    pub areas: usize,
    pub units: usize,
    pub on_front_params: bool,
    pub on_front_units: bool,
}

/// The Pareto front of one measure: its members, smallest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Front {
    pub measure: Measure,
    pub models: Vec<String>,
    /// How many of them are recurrent.
    pub recurrent: usize,
}

/// The figure's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub rows: Vec<Row>,
    pub fronts: Vec<Front>,
    pub comparisons: Vec<Comparison>,
    pub verdict: Verdict,
    pub reason: String,
}

/// Indices of the points on the Pareto front of (size, accuracy): those no other point beats on
/// one and matches or beats on the other (smaller or equal size and higher or equal accuracy,
/// one of them strictly). Points with the same size and accuracy do not dominate each other, so
/// ties are all on the front. A point whose accuracy is not a finite number is left out. Sorted
/// by size, then index.
pub fn pareto_front(sizes: &[usize], accuracy: &[f64]) -> Vec<usize> {
    let ok: Vec<usize> = (0..sizes.len().min(accuracy.len()))
        .filter(|&i| accuracy[i].is_finite())
        .collect();
    let dominates = |q: usize, p: usize| {
        sizes[q] <= sizes[p]
            && accuracy[q] >= accuracy[p]
            && (sizes[q] < sizes[p] || accuracy[q] > accuracy[p])
    };
    let mut front: Vec<usize> = ok
        .iter()
        .copied()
        .filter(|&p| !ok.iter().any(|&q| dominates(q, p)))
        .collect();
    front.sort_by_key(|&i| (sizes[i], i));
    front
}

/// Groups the runs by model (in the order first seen), draws the fronts and tests the claim.
/// `sizes` gives each model's units and areas.
pub fn table(trained: &[Trained], sizes: &[ModelSize]) -> Result<Table> {
    let mut rows = accuracy::rows(trained)?
        .into_iter()
        .map(|acc| {
            let size = sizes
                .iter()
                .find(|s| s.model == acc.model)
                .with_context(|| format!("no size (units, areas) for {}", acc.model))?;
            Ok(Row {
                areas: size.areas,
                units: size.units,
                acc,
                on_front_params: false,
                on_front_units: false,
            })
        })
        .collect::<Result<Vec<Row>>>()?;
    if !rows.iter().any(|r| r.acc.family == Family::Feedforward) {
        bail!("figure 2 needs at least one feedforward model");
    }
    let means: Vec<f64> = rows.iter().map(|r| r.acc.top1_mean).collect();
    let mut fronts = Vec::new();
    for m in Measure::ALL {
        let at: Vec<usize> = rows.iter().map(|r| size_in(m, r)).collect();
        let on = pareto_front(&at, &means);
        for &i in &on {
            match m {
                Measure::Params => rows[i].on_front_params = true,
                Measure::Units => rows[i].on_front_units = true,
            }
        }
        fronts.push(Front {
            measure: m,
            models: on.iter().map(|&i| rows[i].acc.model.clone()).collect(),
            recurrent: on
                .iter()
                .filter(|&&i| rows[i].acc.family == Family::Recurrent)
                .count(),
        });
    }
    let mut comparisons = Vec::new();
    for m in Measure::ALL {
        for cell in rows
            .iter()
            .filter(|r| GATED_BYPASS.contains(&r.acc.model.as_str()))
        {
            let Some(reference) = front_at(&rows, m, size_in(m, cell)) else {
                continue;
            };
            let Some(test) = stats::Tested::welch(&cell.acc.top1, &reference.acc.top1) else {
                continue;
            };
            comparisons.push(Comparison {
                model: cell.acc.model.clone(),
                measure: m,
                size: size_in(m, cell),
                reference: reference.acc.model.clone(),
                reference_size: size_in(m, reference),
                test,
            });
        }
    }
    stats::holm_tested(&mut comparisons, |c| &mut c.test);
    let (verdict, reason) = judge(&comparisons);
    Ok(Table {
        rows,
        fronts,
        comparisons,
        verdict,
        reason,
    })
}

/// The feedforward front at `size`: the most accurate feedforward net (mean over seeds) no larger
/// than `size`; the smallest feedforward net when none is that small. Nets whose accuracy is not
/// a finite number are not on a front.
fn front_at(rows: &[Row], m: Measure, size: usize) -> Option<&Row> {
    let ff = || {
        rows.iter()
            .filter(|r| r.acc.family == Family::Feedforward && r.acc.top1_mean.is_finite())
    };
    ff().filter(|r| size_in(m, r) <= size)
        .max_by(|a, b| {
            a.acc
                .top1_mean
                .total_cmp(&b.acc.top1_mean)
                .then(size_in(m, b).cmp(&size_in(m, a)))
        })
        .or_else(|| ff().min_by_key(|r| size_in(m, r)))
}

fn judge(cs: &[Comparison]) -> (Verdict, String) {
    for m in Measure::ALL {
        let tested = cs.iter().filter(|c| c.measure == m).count();
        if tested < GATED_BYPASS.len() {
            return (
                Verdict::CannotTest,
                format!(
                    "not every gated cell ({}) has at least two seeds and a feedforward \
                     reference in {}",
                    GATED_BYPASS.join(", "),
                    m.words()
                ),
            );
        }
    }
    let untested: Vec<String> = cs
        .iter()
        .filter(|c| c.test.untested())
        .map(|c| {
            format!(
                "{} against {} ({})",
                c.model,
                c.reference,
                c.measure.words()
            )
        })
        .collect();
    if !untested.is_empty() {
        return (
            Verdict::CannotTest,
            format!(
                "the test of {} could not be computed (its p-value is NaN: an accuracy is not a \
                 finite number)",
                untested.join(", ")
            ),
        );
    }
    let below: Vec<String> = cs
        .iter()
        .filter(|c| c.below())
        .map(|c| format!("{} in {}", c.model, c.measure.words()))
        .collect();
    if !below.is_empty() {
        return (
            Verdict::Contradicts,
            format!(
                "significantly below the feedforward front at its size: {}",
                below.join(", ")
            ),
        );
    }
    let above = |m: Measure| -> Vec<String> {
        cs.iter()
            .filter(|c| c.measure == m && c.above())
            .map(|c| c.model.clone())
            .collect()
    };
    let (ap, au) = (above(Measure::Params), above(Measure::Units));
    let words = format!(
        "no gated cell is significantly below the feedforward front at its size; significantly \
         above it in parameters: {}; in units: {}",
        list_or_none(&ap),
        list_or_none(&au)
    );
    if !ap.is_empty() && !au.is_empty() {
        (Verdict::Supports, words)
    } else {
        (Verdict::Inconclusive, words)
    }
}

/// `STEM.csv`: one row per model and seed.
pub fn csv(table: &Table) -> String {
    let mut s =
        String::from("model,family,areas,params,units,on_front_params,on_front_units,seed,top1\n");
    for r in &table.rows {
        for (seed, v) in r.acc.seeds.iter().zip(&r.acc.top1) {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{seed},{v:.6}",
                r.acc.model,
                family_name(r.acc.family),
                r.areas,
                r.acc.params,
                r.units,
                r.on_front_params,
                r.on_front_units,
            );
        }
    }
    s
}

/// The file stem of the chart of `m`.
pub fn chart_stem(m: Measure) -> String {
    format!("{STEM}_{}", m.words())
}

/// A chart per measure: each cell a point, the feedforward nets one line in order of depth, the
/// Pareto front over all models a second line, drawn first so that the models' markers lie over
/// it. A model whose accuracy is not a finite number is left out of the chart (the table says
/// so). The data is named in the report beside the charts (a title holding it would not fit).
pub fn draw(table: &Table, out: &Path) -> Result<Vec<Written>> {
    let drawable = |r: &&Row| r.acc.top1_mean.is_finite() && r.acc.top1_sd.is_finite();
    let seeds = table.rows.first().map_or(0, |r| r.acc.seeds.len());
    let mut written = Vec::new();
    for m in Measure::ALL {
        let at = |r: &Row| (size_in(m, r) as f64, r.acc.top1_mean);
        let mut chart = Chart::new(
            format!(
                "Size vs performance in {}: mean ± sd over {seeds} seeds",
                m.words()
            ),
            format!("{} (log scale)", m.words()),
            "validation top-1 (last step)",
        )
        .log_x()
        .size(super::CHART_SIZE.0, super::CHART_SIZE.1);
        let front: Vec<&Row> = table
            .fronts
            .iter()
            .filter(|f| f.measure == m)
            .flat_map(|f| &f.models)
            .filter_map(|id| table.rows.iter().find(|r| &r.acc.model == id))
            .filter(drawable)
            .collect();
        if !front.is_empty() {
            chart = chart.with(Series::line(
                "Pareto front (all models)",
                front.iter().map(|r| at(r)),
            ));
        }
        for r in CELLS
            .iter()
            .filter_map(|c| table.rows.iter().find(|r| r.acc.model == *c))
            .filter(drawable)
        {
            chart = chart.with(Series::points(&r.acc.model, [at(r)]).with_errors([r.acc.top1_sd]));
        }
        let mut ff: Vec<&Row> = table
            .rows
            .iter()
            .filter(|r| r.acc.family == Family::Feedforward)
            .filter(drawable)
            .collect();
        ff.sort_by_key(|r| (r.areas, r.acc.params));
        chart = chart.with(
            Series::line("feedforward, deeper", ff.iter().map(|r| at(r)))
                .with_errors(ff.iter().map(|r| r.acc.top1_sd))
                .with_labels(ff.iter().map(|r| r.acc.model.as_str())),
        );
        written.push(chart.write(&out.join(chart_stem(m)))?);
    }
    Ok(written)
}

/// The report's section.
pub fn section(table: &Table, figures: &[Written], data: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Figure 2: size against performance (Neural Computation 2022)\n"
    );
    let _ = writeln!(s, "**The paper's claim.** {CLAIM}\n");
    for (f, m) in figures.iter().zip(Measure::ALL) {
        let _ = writeln!(
            s,
            "{}\n",
            super::report::image_lines(f, &format!("figure 2, {}", m.words()))
        );
    }
    let seeds = table.rows.first().map_or(0, |r| r.acc.seeds.len());
    let _ = writeln!(
        s,
        "**Data and models.** {data}. The ConvRNNs with few layers are the cells of figure 1 on \
         the 3-area compact backbone; the feedforward nets are that backbone without cells \
         (`ff_base`) and with 1 to 4 extra 3×3 convs after conv2 and after conv3 (`ff_deep`, \
         `ff_deep2` … `ff_deep4`: 5 to 11 areas, unrolled until the image reaches the readout). \
         Units are the neurons each area emits per step, summed over areas (channels × height \
         × width of its output before pooling; a cell's hidden memory is not counted). {seeds} \
         seeds per model; accuracy is the last step's validation top-1; error bars ±1 sd over \
         seeds; the Pareto fronts are over the means. Table: `{STEM}.csv` (per seed), \
         `{STEM}.json` (all of it).\n"
    );
    let _ = writeln!(
        s,
        "| model | family | areas | parameters | units | top-1 % (mean) | sd | seeds | on the \
         front (params) | on the front (units) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let yes = |b: bool| if b { "yes" } else { "" };
    for r in &table.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            r.acc.model,
            family_name(r.acc.family),
            r.areas,
            r.acc.params,
            r.units,
            100.0 * r.acc.top1_mean,
            stats::sd_cell(r.acc.top1_sd, r.acc.seeds.len(), 100.0, 1),
            r.acc.seeds.len(),
            yes(r.on_front_params),
            yes(r.on_front_units)
        );
    }
    s.push('\n');
    for f in &table.fronts {
        let _ = writeln!(
            s,
            "**Pareto front in {}** (smallest first, {} of {} recurrent): {}.\n",
            f.measure.words(),
            f.recurrent,
            f.models.len(),
            if f.models.is_empty() {
                "empty (no model has a finite accuracy)".to_string()
            } else {
                f.models.join(", ")
            }
        );
    }
    let words = format!(
        "Each gated cell with a bypass ({}) against the feedforward front at its size, \
         in parameters and in units: the most accurate feedforward net (mean over seeds) no \
         larger than the cell. Welch's t-test over seeds, two-sided, p-values Holm-corrected \
         over the {} tests, α = {ALPHA}. *Supported* when no gated cell is significantly below \
         its reference and at least one is significantly above it in each measure; \
         *contradicted* when one is significantly below; *inconclusive* otherwise.",
        GATED_BYPASS.join(", "),
        table.comparisons.len()
    );
    s.push_str(&accuracy::test_markdown(
        &words,
        &table.comparisons,
        "cell",
        true,
        table.verdict,
        &table.reason,
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::fig1::tests::run;

    /// Every cell at 100k parameters and ff_base's units, and a depth series of feedforward nets
    /// whose accuracy rises with depth from `ff_from` by 0.05 per step; gated cells score
    /// `gated`, the others 0.45. Three seeds, a little noise.
    fn runs(gated: f64, ff_from: f64) -> (Vec<Trained>, Vec<ModelSize>) {
        let noise = [0.0, 0.004, -0.004];
        let (mut v, mut sizes) = (Vec::new(), Vec::new());
        for cell in CELLS {
            let level = if GATED_BYPASS.contains(&cell) {
                gated
            } else {
                0.45
            };
            for seed in 0..3 {
                v.push(run(
                    cell,
                    Family::Recurrent,
                    100_000,
                    seed,
                    level + noise[seed as usize],
                ));
            }
            sizes.push(ModelSize {
                model: cell.into(),
                units: 1_000,
                areas: 3,
            });
        }
        for (k, id) in ["ff_base", "ff_deep", "ff_deep2", "ff_deep3"]
            .iter()
            .enumerate()
        {
            for seed in 0..3 {
                v.push(run(
                    id,
                    Family::Feedforward,
                    30_000 + 60_000 * k,
                    seed,
                    ff_from + 0.05 * k as f64 + noise[(seed as usize + 1) % 3],
                ));
            }
            sizes.push(ModelSize {
                model: id.to_string(),
                units: 1_000 + 500 * k,
                areas: 3 + 2 * k,
            });
        }
        (v, sizes)
    }

    #[test]
    fn the_figure_has_every_cell_and_the_deeper_feedforward_nets_only() {
        let mut all = crate::figures::models::matched_size_set().unwrap();
        all.extend(crate::figures::models::depth_series().unwrap());
        let ids: Vec<&str> = all
            .iter()
            .filter(|m| in_figure(&m.id))
            .map(|m| m.id.as_str())
            .collect();
        let mut want: Vec<&str> = CELLS.to_vec();
        want.extend(["ff_base", "ff_deep", "ff_deep2", "ff_deep3", "ff_deep4"]);
        assert_eq!(ids, want);
        assert!(!in_figure("ff_wide2") && !in_figure("ff_deep_wide2") && !in_figure("ff_deep9"));
    }

    #[test]
    fn pareto_front_edge_cases() {
        assert_eq!(pareto_front(&[], &[]), Vec::<usize>::new());
        assert_eq!(pareto_front(&[5], &[0.3]), [0]);
        // A bigger, better model and a smaller, worse one are both on the front; a bigger, worse
        // one is not.
        assert_eq!(pareto_front(&[10, 20, 30], &[0.5, 0.6, 0.55]), [0, 1]);
        // Ties in size and accuracy do not dominate each other.
        assert_eq!(pareto_front(&[10, 10, 20], &[0.5, 0.5, 0.4]), [0, 1]);
        // Same size, one better: only it. Same accuracy, one smaller: only it.
        assert_eq!(pareto_front(&[10, 10], &[0.5, 0.6]), [1]);
        assert_eq!(pareto_front(&[10, 20], &[0.5, 0.5]), [0]);
        // A NaN accuracy is on no front and hides nothing behind it.
        assert_eq!(pareto_front(&[10, 20], &[f64::NAN, 0.4]), [1]);
        assert_eq!(pareto_front(&[10], &[f64::NAN]), Vec::<usize>::new());
        // Sorted by size.
        assert_eq!(pareto_front(&[30, 10], &[0.9, 0.1]), [1, 0]);
    }

    #[test]
    fn table_has_a_row_per_model_fronts_and_a_test_per_gated_cell_and_measure() {
        let (v, sizes) = runs(0.7, 0.4);
        let t = table(&v, &sizes).unwrap();
        assert_eq!(t.rows.len(), CELLS.len() + 4);
        assert!(t.rows.iter().all(|r| r.acc.seeds.len() == 3
            && r.acc.top1_mean.is_finite()
            && r.acc.top1_sd.is_finite()));
        assert_eq!(t.comparisons.len(), 2 * GATED_BYPASS.len());
        // In parameters the cells (100k) face ff_deep (90k, the best at most 100k); in units
        // (1,000) only ff_base is that small.
        for c in &t.comparisons {
            let want = match c.measure {
                Measure::Params => "ff_deep",
                Measure::Units => "ff_base",
            };
            assert_eq!(c.reference, want, "{c:?}");
            assert!(c.test.p.is_finite() && c.test.p_holm >= c.test.p);
        }
        let params = &t.fronts[0];
        assert_eq!(params.measure, Measure::Params);
        // ff_base (30k, 0.40), ff_deep (90k, 0.45), the gated cells tie at 100k / 0.7 in the
        // mean, and nothing larger beats them.
        assert_eq!(
            params.models,
            ["ff_base", "ff_deep", "ugrnn", "intersectionrnn", "rgc"]
        );
        assert_eq!(params.recurrent, 3);
        assert!(t.rows.iter().filter(|r| r.on_front_units).count() == 3);
        assert_eq!(t.verdict, Verdict::Supports, "{}", t.reason);
        let csv = csv(&t);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "model,family,areas,params,units,on_front_params,on_front_units,seed,top1"
        );
        assert_eq!(lines.len(), 1 + 3 * t.rows.len());
        assert!(lines
            .iter()
            .all(|l| l.split(',').count() == 9 && !l.contains("NaN")));
        assert!(
            csv.contains("\nrgc,recurrent,3,100000,1000,true,true,0,0.700000\n"),
            "{csv}"
        );
        assert!(csv.contains("\nff_deep3,feedforward,9,210000,2500,false,false,"));
    }

    #[test]
    fn verdicts_follow_the_tests() {
        // Gated cells below the feedforward front at their size.
        let (v, sizes) = runs(0.3, 0.4);
        assert_eq!(table(&v, &sizes).unwrap().verdict, Verdict::Contradicts);
        // Level with the front in parameters (ff_deep, 0.50), above it in units (ff_base,
        // 0.45): nothing below, but not above in both measures.
        let (v, sizes) = runs(0.5, 0.45);
        let t = table(&v, &sizes).unwrap();
        assert_eq!(t.verdict, Verdict::Inconclusive, "{}", t.reason);
        assert!(
            t.reason.contains("in parameters: none; in units: "),
            "{}",
            t.reason
        );
        // One seed: nothing can be tested.
        let (v, sizes) = runs(0.7, 0.4);
        let one: Vec<Trained> = v.into_iter().filter(|t| t.seed == 0).collect();
        assert_eq!(table(&one, &sizes).unwrap().verdict, Verdict::CannotTest);
        // A model without a size is an error, not a silent zero.
        let (v, mut sizes) = runs(0.7, 0.4);
        sizes.retain(|s| s.model != "rgc");
        assert!(format!("{:#}", table(&v, &sizes).unwrap_err()).contains("rgc"));
    }

    #[test]
    fn a_diverged_model_stays_in_the_table_but_off_the_front_and_its_test_cannot_decide() {
        let (mut v, sizes) = runs(0.7, 0.4);
        // A feedforward net diverged: off the front, the others still compared.
        for t in v.iter_mut().filter(|t| t.id == "ff_deep3") {
            *t.top1_per_step.last_mut().unwrap() = f64::NAN;
        }
        let t = table(&v, &sizes).unwrap();
        let row = t.rows.iter().find(|r| r.acc.model == "ff_deep3").unwrap();
        assert!(row.acc.top1_mean.is_nan() && !row.on_front_params && !row.on_front_units);
        assert!(t.fronts.iter().all(|f| !f.models.contains(&row.acc.model)));
        assert_eq!(t.verdict, Verdict::Supports, "{}", t.reason);
        assert!(csv(&t).contains("ff_deep3,feedforward,9,210000,2500,false,false,0,NaN"));
        // A gated cell diverged in one seed: its tests cannot be computed.
        let rgc = v.iter_mut().find(|t| t.id == "rgc").unwrap();
        *rgc.top1_per_step.last_mut().unwrap() = f64::NAN;
        let t = table(&v, &sizes).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest, "{}", t.reason);
        assert!(
            t.reason.contains("rgc against ff_deep (parameters)"),
            "{}",
            t.reason
        );
        let dir = tempfile::tempdir().unwrap();
        let w = draw(&t, dir.path()).unwrap();
        let svg = std::fs::read_to_string(&w[0].svg).unwrap();
        assert!(!svg.contains("ff_deep3"), "a NaN model is not drawn");
        let text = section(&t, &w, "clutter");
        assert!(text.contains("**Verdict: cannot test.**"), "{text}");
        assert!(text.contains("| ff_deep3 | feedforward | 9 | 210000 | 2500 | NaN |"));
    }

    #[test]
    fn the_charts_and_section_name_every_model_and_the_front() {
        let dir = tempfile::tempdir().unwrap();
        let (v, sizes) = runs(0.7, 0.4);
        let t = table(&v, &sizes).unwrap();
        let w = draw(&t, dir.path()).unwrap();
        assert_eq!(w.len(), 2);
        assert!(w[0].svg.ends_with("fig2_size_performance_parameters.svg"));
        assert!(w[1].svg.ends_with("fig2_size_performance_units.svg"));
        for f in &w {
            let svg = std::fs::read_to_string(&f.svg).unwrap();
            for c in CELLS {
                assert!(svg.contains(c), "{c} not in the chart");
            }
            assert!(svg.contains("ff_deep3") && svg.contains("Pareto front"));
        }
        let text = section(&t, &w, "clutter");
        for r in &t.rows {
            assert!(text.contains(&format!("| {} |", r.acc.model)));
        }
        assert!(text.contains("**Pareto front in parameters** (smallest first, 3 of 5"));
        assert!(
            text.contains("| rgc | units | 1000 | ff_base | 1000 |"),
            "{text}"
        );
        assert!(text.contains("**Verdict: supports.**"));
    }
}
