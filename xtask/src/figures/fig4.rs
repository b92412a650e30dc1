//! Figure 4, neural predictivity over time: per region (V4, IT) and 10 ms bin, the median over
//! neuroids of the noise-corrected predictivity (r² / ceiling), mean ± sd over seeds, for the
//! ConvRNNs (step k ↔ bin at 70 + 10·k ms) and the feedforward nets mapped uniformly and graded.
//! The claim is tested per region on each model-seed's median over bins: the ConvRNNs against
//! the uniform and against the graded feedforward fits (Welch's t-test, Holm over the four).

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

pub const STEM: &str = "fig4_neural_predictivity";
pub const ALPHA: f64 = 0.05;
/// The tests compare the bins from here on: the first bin a ConvRNN's steps reach (a feedforward
/// fit also covers the earlier ones, before the responses start).
pub const COMPARED_FROM_MS: f64 = 70.0;
/// The regions the claim is about.
pub const REGIONS: [&str; 2] = ["V4", "IT"];

pub const CLAIM: &str = "ConvRNNs predict the time course of V4 and IT responses (median \
    noise-corrected predictivity per 10 ms bin) better than feedforward models, whether the \
    feedforward features are mapped to every bin alike (uniform) or deeper areas to later bins \
    (graded) (Nayebi et al., NeurIPS 2018 Fig. 4; Neural Computation 2022 Fig. 3).";

/// One model, mapping, region and bin over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinRow {
    pub model: String,
    pub family: Family,
    pub mapping: Mapping,
    pub region: String,
    pub track: String,
    pub bin_ms: f64,
    pub mean: f64,
    pub sd: f64,
    /// Seeds with a score in this bin.
    pub seeds: usize,
}

/// One model-seed's median over bins (the unit of the tests).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub model: String,
    pub family: Family,
    pub mapping: Mapping,
    pub region: String,
    pub seed: u64,
    pub median: f64,
}

/// ConvRNNs against one feedforward mapping in one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub region: String,
    pub against: Mapping,
    /// ConvRNNs against that mapping (the difference: their mean minus its mean).
    #[serde(flatten)]
    pub test: stats::Tested,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub bins: Vec<BinRow>,
    pub summaries: Vec<Summary>,
    pub comparisons: Vec<Comparison>,
    pub verdict: Verdict,
    pub reason: String,
}

pub fn table(scored: &[Scored]) -> Result<Table> {
    // Groups: model × mapping, in the order first seen.
    let mut groups: Vec<Vec<&Scored>> = Vec::new();
    for s in scored {
        match groups
            .iter_mut()
            .find(|g| g[0].id == s.id && g[0].mapping == s.mapping)
        {
            Some(g) => g.push(s),
            None => groups.push(vec![s]),
        }
    }
    let (mut bins, mut summaries) = (Vec::new(), Vec::new());
    for g in &groups {
        let first = g[0];
        for r in &first.regions {
            for (b, &bin_ms) in first.bins_ms.iter().enumerate() {
                let v: Vec<f64> = g
                    .iter()
                    .filter_map(|s| s.regions.iter().find(|x| x.region == r.region))
                    .filter_map(|x| x.per_bin.get(b).copied().flatten())
                    .collect();
                if v.is_empty() {
                    continue;
                }
                bins.push(BinRow {
                    model: first.id.clone(),
                    family: first.family,
                    mapping: first.mapping,
                    region: r.region.clone(),
                    track: r.track.clone(),
                    bin_ms,
                    mean: stats::mean(&v),
                    sd: stats::sd(&v),
                    seeds: v.len(),
                });
            }
            for s in g {
                let covered: Vec<f64> = s
                    .regions
                    .iter()
                    .find(|x| x.region == r.region)
                    .map(|x| {
                        x.per_bin
                            .iter()
                            .zip(&s.bins_ms)
                            .filter(|(_, &b)| b >= COMPARED_FROM_MS)
                            .filter_map(|(v, _)| *v)
                            .collect()
                    })
                    .unwrap_or_default();
                summaries.push(Summary {
                    model: s.id.clone(),
                    family: s.family,
                    mapping: s.mapping,
                    region: r.region.clone(),
                    seed: s.seed,
                    median: stats::median(&covered),
                });
            }
        }
    }
    let mut comparisons = Vec::new();
    for region in REGIONS {
        let of = |m: Mapping| -> Vec<f64> {
            summaries
                .iter()
                .filter(|s| s.region == region && s.mapping == m)
                .map(|s| s.median)
                .collect()
        };
        let rec = of(Mapping::Recurrent);
        for against in [Mapping::Uniform, Mapping::Graded] {
            if let Some(test) = stats::Tested::welch(&rec, &of(against)) {
                comparisons.push(Comparison {
                    region: region.to_string(),
                    against,
                    test,
                });
            }
        }
    }
    stats::holm_tested(&mut comparisons, |c| &mut c.test);
    let (verdict, reason) = judge(&comparisons);
    Ok(Table {
        bins,
        summaries,
        comparisons,
        verdict,
        reason,
    })
}

fn judge(cs: &[Comparison]) -> (Verdict, String) {
    if cs.len() < 2 * REGIONS.len() {
        return (
            Verdict::CannotTest,
            "the comparisons need V4 and IT recordings and at least two ConvRNN and two \
             feedforward model-seeds per mapping"
                .into(),
        );
    }
    let untested: Vec<String> = cs
        .iter()
        .filter(|c| c.test.untested())
        .map(|c| format!("{} against {}", c.region, c.against.words()))
        .collect();
    if !untested.is_empty() {
        return (
            Verdict::CannotTest,
            format!(
                "the test of {} could not be computed (p-value NaN: a model-seed has no \
                 finite predictivity in that region)",
                untested.join(", ")
            ),
        );
    }
    let words: Vec<String> = cs
        .iter()
        .map(|c| {
            format!(
                "{} vs {}: {:+.3} (p Holm {:.3})",
                c.region,
                c.against.words(),
                c.test.diff,
                c.test.p_holm
            )
        })
        .collect();
    let words = words.join("; ");
    if cs.iter().any(|c| c.test.below(ALPHA)) {
        (Verdict::Contradicts, words)
    } else if cs.iter().all(|c| c.test.above(ALPHA)) {
        (Verdict::Supports, words)
    } else {
        (Verdict::Inconclusive, words)
    }
}

/// `STEM.csv`: one row per model, mapping, region and bin.
pub fn csv(table: &Table) -> String {
    let mut s = String::from("model,family,mapping,region,track,bin_ms,mean,sd,seeds\n");
    for r in &table.bins {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.6},{:.6},{}",
            r.model,
            family_name(r.family),
            r.mapping.words(),
            r.region,
            r.track,
            r.bin_ms,
            r.mean,
            r.sd,
            r.seeds
        );
    }
    s
}

/// One chart per region: predictivity per bin, a line per model and mapping.
pub fn draw(table: &Table, out: &Path, data: &str) -> Result<Vec<(String, Written)>> {
    let mut regions: Vec<&str> = Vec::new();
    for r in &table.bins {
        if !regions.contains(&r.region.as_str()) {
            regions.push(&r.region);
        }
    }
    let mut written = Vec::new();
    for region in regions {
        let mut series: Vec<Series> = Vec::new();
        for r in table.bins.iter().filter(|r| r.region == region) {
            if !(r.mean.is_finite() && r.sd.is_finite()) {
                continue;
            }
            let name = match r.mapping {
                Mapping::Recurrent => r.model.clone(),
                m => format!("{} {}", r.model, m.words()),
            };
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => {
                    s.points.push((r.bin_ms, r.mean));
                    s.errors.push(r.sd);
                }
                None => series.push(Series::line(name, [(r.bin_ms, r.mean)]).with_errors([r.sd])),
            }
        }
        if series.is_empty() {
            continue;
        }
        let chart = Chart {
            series,
            ..Chart::new(
                format!("{region} predictivity over time: {data}"),
                "bin start (ms)",
                "median r² / ceiling",
            )
            .size(super::CHART_SIZE.0, super::CHART_SIZE.1)
        };
        written.push((
            region.to_string(),
            chart.write(&out.join(format!("{STEM}_{region}")))?,
        ));
    }
    Ok(written)
}

/// The report's section; `who` names the models (default: those of figure 1).
pub fn section(
    table: &Table,
    figures: &[(String, Written)],
    data: &str,
    who: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Figure 4: neural predictivity over time\n");
    let _ = writeln!(s, "**The paper's claim.** {CLAIM}\n");
    for (region, f) in figures {
        let _ = writeln!(
            s,
            "{}\n",
            super::report::image_lines(f, &format!("figure 4, {region}"))
        );
    }
    let _ = writeln!(
        s,
        "**Data and models.** {data}. {}, scored by `neurofit score` (PLS regression, \
         noise-corrected by the \
         split-half ceiling): {} (the table's track); a \
         ConvRNN sees the image for 100 ms and its step k predicts the bin at 70 + 10·k ms; a \
         feedforward net sees it throughout and is fitted uniformly (each area's last step for \
         every bin) and graded (deeper areas for later bins, one track). {} Table: \
         `{STEM}.csv` (per bin), `{STEM}.json` (with each model-seed's median).\n",
        who.unwrap_or("The models of figure 1 listed below (trained as there), every seed"),
        super::neural::AREA_RULE_WORDS,
        super::report::spread_words(table.bins.iter().map(|b| b.seeds).max().unwrap_or(0))
    );
    let _ = writeln!(
        s,
        "| model | mapping | region | track | median over bins (mean over seeds) | seeds |\n\
         |---|---|---|---|---|---|"
    );
    let mut seen: Vec<(String, Mapping, String)> = Vec::new();
    for m in &table.summaries {
        let key = (m.model.clone(), m.mapping, m.region.clone());
        if seen.contains(&key) {
            continue;
        }
        let v: Vec<f64> = table
            .summaries
            .iter()
            .filter(|x| x.model == m.model && x.mapping == m.mapping && x.region == m.region)
            .map(|x| x.median)
            .collect();
        let track = table
            .bins
            .iter()
            .find(|b| b.model == m.model && b.mapping == m.mapping && b.region == m.region)
            .map_or("-", |b| b.track.as_str());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            m.model,
            m.mapping.words(),
            m.region,
            track,
            stats::mean_sd_cell(stats::mean(&v), stats::sd(&v), v.len(), 1.0, 3),
            v.len()
        );
        seen.push(key);
    }
    let _ = writeln!(
        s,
        "\n**Test.** Per region, each model-seed's median over the bins from {COMPARED_FROM_MS} ms \
         (where the ConvRNNs' steps reach): the ConvRNNs' against the \
         feedforward nets' uniform fits and against their graded fits (Welch's t-test, \
         two-sided, Holm-corrected over the {} comparisons, α = {ALPHA}).\n",
        table.comparisons.len()
    );
    let _ = writeln!(
        s,
        "| region | against | difference | {}\n|---|---|---|---|---|---|---|",
        stats::TESTED_HEADER
    );
    for c in &table.comparisons {
        let _ = writeln!(
            s,
            "| {} | {} | {}",
            c.region,
            c.against.words(),
            c.test.cells(1.0, 3)
        );
    }
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
    use crate::figures::fig5::tests::scored;

    #[test]
    fn one_row_per_model_mapping_region_and_covered_bin() {
        let t = table(&scored(0.5, 0.5, 0.4)).unwrap();
        // rgc, ugrnn, ff_base uniform, ff_base graded × 2 regions × 2 covered bins.
        assert_eq!(t.bins.len(), 4 * 2 * 2);
        assert_eq!(t.summaries.len(), 4 * 2 * 3);
        assert!(t
            .bins
            .iter()
            .all(|b| b.mean.is_finite() && b.sd.is_finite() && b.seeds == 3));
        assert_eq!(t.comparisons.len(), 4);
        assert_eq!(t.verdict, Verdict::Supports, "{}", t.reason);
        let c = csv(&t);
        assert!(c.starts_with("model,family,mapping,region,track,bin_ms,mean,sd,seeds\n"));
        assert!(
            c.contains("\nrgc,recurrent,recurrent,IT,conv3,80,0.410000,"),
            "{c}"
        );
        assert!(c.contains(",graded,V4,graded,"), "{c}");
        assert_eq!(c.lines().count(), 1 + 16);
        assert!(!c.contains("NaN"));
    }

    #[test]
    fn verdicts_follow_the_tests() {
        // Feedforward above the ConvRNNs: scored() gives them half the level, so a negative
        // level puts them above.
        assert_eq!(
            table(&scored(0.5, 0.5, -0.4)).unwrap().verdict,
            Verdict::Contradicts
        );
        let mut v = scored(0.5, 0.5, 0.4);
        for s in v.iter_mut().filter(|s| s.id == "rgc") {
            for r in &mut s.regions {
                r.per_bin = vec![None; r.per_bin.len()];
            }
        }
        let t = table(&v).unwrap();
        assert_eq!(t.verdict, Verdict::CannotTest, "{}", t.reason);
        assert!(t.reason.contains("could not be computed"), "{}", t.reason);
        let only_rec: Vec<Scored> = scored(0.5, 0.5, 0.4)
            .into_iter()
            .filter(|s| s.family == Family::Recurrent)
            .collect();
        assert_eq!(table(&only_rec).unwrap().verdict, Verdict::CannotTest);
    }

    #[test]
    fn a_chart_per_region_naming_the_models() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&scored(0.5, 0.5, 0.4)).unwrap();
        let w = draw(&t, dir.path(), "in-silico").unwrap();
        assert_eq!(w.len(), 2);
        let svg = std::fs::read_to_string(&w[0].1.svg).unwrap();
        assert!(svg.contains("ff_base graded") && svg.contains("rgc"));
        let text = section(&t, &w, "in-silico", None);
        assert!(text.contains("Error bars ±1 sd over seeds"), "{text}");
        assert!(text.contains("| rgc | recurrent | IT | conv3 |"), "{text}");
        assert!(text.contains("**Verdict: supports.**"));
        assert!(text.contains(" ± "), "several seeds: a spread");
    }

    #[test]
    fn one_seed_prints_no_spread() {
        let one: Vec<Scored> = scored(0.5, 0.5, 0.4)
            .into_iter()
            .filter(|s| s.seed == 0)
            .collect();
        let t = table(&one).unwrap();
        let text = section(&t, &[], "in-silico", None);
        assert!(
            text.contains("| rgc | recurrent | IT | conv3 | 0.400 (n = 1) | 1 |"),
            "{text}"
        );
        assert!(!text.contains("± 0.000"), "{text}");
        assert!(text.contains("One seed per model: no error bars"), "{text}");
    }
}
