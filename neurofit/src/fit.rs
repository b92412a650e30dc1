//! The neural-fit protocol (SPEC §7) end to end: average repetitions, split stimuli (stratified by
//! object), fit one map per (track, bin, region), correlate held-out predictions per neuroid, divide
//! by split-half ceilings, take medians.

use std::collections::{BTreeMap, HashMap, HashSet};

use ndarray::{Array2, Array3, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::assembly::{Assembly, TimeBin};
use crate::ceiling::split_half_ceiling;
use crate::cv::{stratification_warnings, stratified_splits, Split};
use crate::error::{NeurofitError, Result};
use crate::features::ModelFeatures;
use crate::regression::kernel_pls::centred_gram;
use crate::regression::Regression;
use crate::report::{MapUsed, NeuroidScores, PerBin, Report};
use crate::stats::{finite, nan_median, pearson_columns};
use crate::temporal::{plan, StepToBin, Track};
use crate::validate;

/// Random halvings averaged per split-half ceiling.
pub const CEILING_HALVINGS: usize = 10;

/// Fewest held-out stimuli a split may test: over 2 a Pearson r is always ±1.
pub const MIN_TEST_STIMULI: usize = 3;

/// How to fit; `Default` is the SPEC §7 protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// The map fitted per (area, bin, region): PLS (25 components) or ridge.
    pub regression: Regression,
    /// Train/test splits of the stimuli (10).
    pub splits: usize,
    /// Share of each object's stimuli held out per split (0.1).
    pub test_fraction: f64,
    /// Seeds the splits and the split-half ceilings.
    pub seed: u64,
    /// Which model step predicts which recording bin.
    pub time_map: StepToBin,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            regression: Regression::default(),
            splits: 10,
            test_fraction: 0.1,
            seed: 0,
            time_map: StepToBin::default(),
        }
    }
}

impl FitConfig {
    /// Checks the regression's settings, at least one split and a test fraction strictly between 0
    /// and 1.
    pub fn validate(&self) -> Result<()> {
        self.regression.validate()?;
        if self.splits == 0 {
            return Err(NeurofitError::Config {
                field: "splits",
                reason: "need at least 1 split".into(),
            });
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(NeurofitError::Config {
                field: "test_fraction",
                reason: format!(
                    "must lie strictly between 0 and 1, got {}",
                    self.test_fraction
                ),
            });
        }
        Ok(())
    }
}

/// Stimuli of an assembly in order of first presentation, with their presentations and object.
#[derive(Debug, Clone)]
pub struct StimulusIndex {
    /// Each stimulus's id, in order of first presentation.
    pub stimulus_id: Vec<String>,
    /// Each stimulus's object.
    pub object_name: Vec<String>,
    /// `presentations[s]`: rows of the data for stimulus `s`.
    pub presentations: Vec<Vec<usize>>,
}

impl StimulusIndex {
    /// The stimuli of `a`, with the rows that present each.
    pub fn new(a: &Assembly) -> StimulusIndex {
        let mut pos: HashMap<&str, usize> = HashMap::new();
        let mut idx = StimulusIndex {
            stimulus_id: Vec::new(),
            object_name: Vec::new(),
            presentations: Vec::new(),
        };
        for (row, (s, o)) in a
            .presentations
            .stimulus_id
            .iter()
            .zip(&a.presentations.object_name)
            .enumerate()
        {
            let k = *pos.entry(s.as_str()).or_insert_with(|| {
                idx.stimulus_id.push(s.clone());
                idx.object_name.push(o.clone());
                idx.presentations.push(Vec::new());
                idx.stimulus_id.len() - 1
            });
            idx.presentations[k].push(row);
        }
        idx
    }

    /// Repetition-averaged responses `[stimulus, neuroid, bin]`, over the finite repetitions
    /// (missing trials are skipped, as Brain-Score's `mean(skipna=True)` does; NaN where a
    /// stimulus has none, which [`crate::validate::clean`] leaves no kept neuroid with).
    pub fn average(&self, a: &Assembly) -> Array3<f64> {
        let (_, n, b) = a.data.dim();
        let mut out = Array3::zeros((self.stimulus_id.len(), n, b));
        let mut count = ndarray::Array2::<u32>::zeros((n, b));
        for (s, rows) in self.presentations.iter().enumerate() {
            let mut acc = out.index_axis_mut(Axis(0), s);
            count.fill(0);
            for &r in rows {
                ndarray::Zip::from(&mut acc)
                    .and(&mut count)
                    .and(&a.data.index_axis(Axis(0), r))
                    .for_each(|o, k, &v| {
                        if v.is_finite() {
                            *o += v as f64;
                            *k += 1;
                        }
                    });
            }
            ndarray::Zip::from(&mut acc)
                .and(&count)
                .for_each(|o, &k| *o = if k > 0 { *o / k as f64 } else { f64::NAN });
        }
        out
    }
}

/// The recording bins after the first scored one that no model step falls on, which the report
/// leaves out: a run with too few steps scored only the first bins without saying so (the
/// summary is a median over the bins scored). Bins before the first scored one are the
/// response's latency, left out by the protocol (SPEC §7: the first step predicts 70 ms).
fn unscored_bins_warning(bins: &[TimeBin], scored: &[usize]) -> Option<String> {
    let first = *scored.first()?;
    // Contiguous runs of unscored bins, as `start–end ms`.
    let mut runs: Vec<(f64, f64)> = Vec::new();
    let mut count = 0;
    let mut previous: Option<usize> = None;
    for (b, bin) in bins.iter().enumerate().skip(first) {
        if scored.binary_search(&b).is_ok() {
            continue;
        }
        count += 1;
        match runs.last_mut() {
            Some(run) if previous == Some(b.wrapping_sub(1)) => run.1 = bin.end_ms,
            _ => runs.push((bin.start_ms, bin.end_ms)),
        }
        previous = Some(b);
    }
    if runs.is_empty() {
        return None;
    }
    let spans: Vec<String> = runs.iter().map(|(a, b)| format!("{a}–{b} ms")).collect();
    Some(format!(
        "{count} of the recordings' {} time bins after the first scored one ({}) fall on no \
         model step and are not scored; more unroll steps reach them",
        bins.len(),
        spans.join(", ")
    ))
}

/// Score `features` against `recordings` under `cfg` (SPEC §7).
///
/// Features are matched to recorded stimuli by id (extra feature rows are ignored; a recorded stimulus
/// without features is an error, as are a stimulus id or area name given twice and an area
/// without feature columns). Missing trials (non-finite responses) are skipped in the averages
/// and neuroids without any finite repetition of some stimulus are dropped and listed in the
/// report (see [`crate::validate`]); every stimulus needs at least two repetitions for the ceiling.
pub fn score(features: &ModelFeatures, recordings: &Assembly, cfg: &FitConfig) -> Result<Report> {
    cfg.validate()?;
    let cleaned = validate::clean(recordings)?;
    let asm = &cleaned.assembly;
    let stim = StimulusIndex::new(asm);
    let rows = feature_rows(features, &stim.stimulus_id)?;
    let avg = stim.average(asm);

    let mut regions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (j, r) in asm.neuroids.region.iter().enumerate() {
        regions.entry(r.clone()).or_default().push(j);
    }

    let areas: Vec<(String, usize)> = features
        .areas
        .iter()
        .map(|a| (a.area.clone(), a.data.len_of(Axis(2))))
        .collect();
    let tracks = plan(&cfg.time_map, &asm.bins, &areas)?;
    let mut scored: Vec<usize> = tracks
        .iter()
        .flat_map(|t| t.maps.iter().map(|m| m.bin))
        .collect();
    scored.sort_unstable();
    scored.dedup();
    let slot: HashMap<usize, usize> = scored.iter().enumerate().map(|(i, &b)| (b, i)).collect();

    let ceilings: Vec<Vec<f64>> = scored
        .par_iter()
        .map(|&b| {
            split_half_ceiling(
                asm.bin(b),
                &stim.presentations,
                &stim.stimulus_id,
                CEILING_HALVINGS,
                cfg.seed,
            )
        })
        .collect::<Result<_>>()?;

    let splits = stratified_splits(&stim.object_name, cfg.splits, cfg.test_fraction, cfg.seed)?;
    // Two points always correlate at ±1, so a held-out r over fewer than 3 stimuli is no score.
    let fewest_test = splits.iter().map(|s| s.test.len()).min().unwrap_or(0);
    if fewest_test < MIN_TEST_STIMULI {
        return Err(NeurofitError::Splits(format!(
            "a split tests {fewest_test} of the {} stimuli; a held-out Pearson r needs at least \
             {MIN_TEST_STIMULI} (raise test_fraction or record more stimuli)",
            stim.stimulus_id.len()
        )));
    }

    let n_neur = asm.num_neuroids();
    // Each area with its features (`areas` above pairs it with its steps).
    let feature_counts: Vec<(String, usize)> = features
        .areas
        .iter()
        .map(|a| (a.area.clone(), a.data.len_of(Axis(1))))
        .collect();
    let mut report = Report {
        model: features.model.clone(),
        config: cfg.clone(),
        bins: scored
            .iter()
            .map(|&b| [asm.bins[b].start_ms, asm.bins[b].end_ms])
            .collect(),
        ceiling: regions
            .iter()
            .map(|(r, idx)| {
                let per_bin = ceilings
                    .iter()
                    .map(|c| nan_median(idx.iter().map(|&j| c[j])))
                    .collect();
                (r.clone(), per_bin)
            })
            .collect(),
        scores: BTreeMap::new(),
        raw_r: BTreeMap::new(),
        maps: BTreeMap::new(),
        neuroid_id: asm.neuroids.neuroid_id.clone(),
        region: asm.neuroids.region.clone(),
        neuroid_ceiling: ceilings
            .iter()
            .map(|c| c.iter().map(|&v| finite(v)).collect())
            .collect(),
        per_neuroid: BTreeMap::new(),
        dropped: cleaned.dropped.clone(),
        warnings: stratification_warnings(&stim.object_name, cfg.test_fraction)
            .into_iter()
            .chain(validate::dropped_warning(&cleaned.dropped))
            .chain(validate::skipped_warning(&cleaned))
            .chain(unscored_bins_warning(&asm.bins, &scored))
            .chain(cfg.regression.fewer_components_warning(
                &feature_counts,
                splits.iter().map(|s| s.train.len()).min().unwrap_or(0),
            ))
            .collect(),
    };

    for track in &tracks {
        let fitted = fit_track(
            track,
            features,
            &rows,
            &avg,
            &regions,
            &splits,
            &cfg.regression,
        )?;
        let mut nr = NeuroidScores {
            r: vec![vec![None; n_neur]; scored.len()],
            noise_corrected_r: vec![vec![None; n_neur]; scored.len()],
            score: vec![vec![None; n_neur]; scored.len()],
        };
        let mut maps = vec![None; scored.len()];
        for (m, r) in track.maps.iter().zip(&fitted) {
            let i = slot[&m.bin];
            maps[i] = Some(MapUsed {
                area: areas[m.area].0.clone(),
                step: m.step,
            });
            for j in 0..n_neur {
                let c = ceilings[i][j];
                nr.r[i][j] = finite(r[j]);
                if c > 0.0 {
                    nr.noise_corrected_r[i][j] = finite(r[j] / c.sqrt());
                    nr.score[i][j] = finite(r[j] * r[j] / c);
                }
            }
        }
        let per_region = |vals: &Vec<PerBin>| -> BTreeMap<String, PerBin> {
            regions
                .iter()
                .map(|(name, idx)| {
                    let per_bin = (0..scored.len())
                        .map(|i| {
                            // A bin this track does not predict has no score.
                            maps[i].as_ref()?;
                            nan_median(idx.iter().map(|&j| vals[i][j].unwrap_or(f64::NAN)))
                        })
                        .collect();
                    (name.clone(), per_bin)
                })
                .collect()
        };
        report
            .scores
            .insert(track.name.clone(), per_region(&nr.score));
        report.raw_r.insert(track.name.clone(), per_region(&nr.r));
        report.maps.insert(track.name.clone(), maps);
        report.per_neuroid.insert(track.name.clone(), nr);
    }
    Ok(report)
}

/// For every map of the track (in order): per-neuroid held-out r, mean over splits.
fn fit_track(
    track: &Track,
    features: &ModelFeatures,
    rows: &[usize],
    avg: &Array3<f64>,
    regions: &BTreeMap<String, Vec<usize>>,
    splits: &[Split],
    regression: &Regression,
) -> Result<Vec<Vec<f64>>> {
    track
        .maps
        .par_iter()
        .map(|m| {
            let area = &features.areas[m.area];
            let step = area.data.index_axis(Axis(2), m.step);
            let x = step.select(Axis(0), rows);
            if x.iter().any(|v| !v.is_finite()) {
                return Err(NeurofitError::Assembly(format!(
                    "features of area `{}` at step {} contain non-finite values",
                    area.area, m.step
                )));
            }
            let y_all = avg.index_axis(Axis(2), m.bin);
            // Features that do not vary over the stimuli (a generator's rates before their
            // latency, a dead unit set) predict nothing: r is undefined, not an error.
            if unvarying(x.view(), 0..x.nrows()) {
                return Ok(vec![f64::NAN; y_all.ncols()]);
            }
            let n_features = x.ncols();
            let most_train = splits.iter().map(|s| s.train.len()).max().unwrap_or(0);
            // One Gram matrix of all stimuli serves every split and region of this map.
            let design = if regression.prefers_gram(most_train, n_features) {
                Design::Gram(centred_gram(x.view())?)
            } else {
                Design::Features(x.mapv(f64::from))
            };
            drop(x);
            let mut r = vec![f64::NAN; y_all.ncols()];
            for idx in regions.values() {
                let y = y_all.select(Axis(1), idx);
                // Responses that do not vary over the training stimuli (a bin before any site
                // responds) have nothing to fit: r is undefined, not an error.
                let fitted: Vec<&Split> = splits
                    .iter()
                    .filter(|s| !unvarying(y.view(), s.train.iter().copied()))
                    .collect();
                let predictions = match &design {
                    Design::Gram(g) => {
                        regression.fit_predict_gram(g.view(), y.view(), &fitted, n_features)?
                    }
                    Design::Features(x) => fitted
                        .par_iter()
                        .map(|s| {
                            regression.fit_predict(
                                x.select(Axis(0), &s.train).view(),
                                y.select(Axis(0), &s.train).view(),
                                x.select(Axis(0), &s.test).view(),
                            )
                        })
                        .collect::<Result<_>>()?,
                };
                let per_split: Vec<Vec<f64>> = fitted
                    .iter()
                    .zip(&predictions)
                    .map(|(s, pred)| {
                        pearson_columns(pred.view(), y.select(Axis(0), &s.test).view())
                    })
                    .collect();
                for (k, &j) in idx.iter().enumerate() {
                    let vals: Vec<f64> = per_split
                        .iter()
                        .map(|v| v[k])
                        .filter(|v| v.is_finite())
                        .collect();
                    if !vals.is_empty() {
                        r[j] = vals.iter().sum::<f64>() / vals.len() as f64;
                    }
                }
            }
            Ok(r)
        })
        .collect()
}

/// What a map's regressions are fitted from.
enum Design {
    /// The centred Gram matrix of all stimuli (PLS with more features than training stimuli).
    Gram(Array2<f64>),
    /// The features `[stimulus, feature]`.
    Features(Array2<f64>),
}

/// Whether the given rows of `m` all equal the first of them (no column varies over those
/// samples); compared row by row, so the scan stays contiguous.
fn unvarying<A: PartialEq>(m: ArrayView2<'_, A>, mut rows: impl Iterator<Item = usize>) -> bool {
    match rows.next() {
        Some(first) => rows.all(|r| m.row(r) == m.row(first)),
        None => true,
    }
}

/// Row of `features` for each recorded stimulus, or an error listing the ones it lacks (or
/// naming a repeated stimulus id or area, or an area without features).
fn feature_rows(features: &ModelFeatures, stimulus_id: &[String]) -> Result<Vec<usize>> {
    let n = features.stimulus_id.len();
    // The report keys tracks by area name: a second area of the same name would replace the
    // first's scores.
    let mut areas = HashSet::new();
    for a in &features.areas {
        if a.data.len_of(Axis(0)) != n {
            return Err(NeurofitError::shape(
                format!("features of area `{}`", a.area),
                format!("{} stimulus rows", a.data.len_of(Axis(0))),
                format!("{n}, one per entry of stimulus_id"),
            ));
        }
        // No column predicts nothing, which would pass as an unscored bin rather than a mistake.
        if a.data.len_of(Axis(1)) == 0 {
            return Err(NeurofitError::shape(
                format!("features of area `{}`", a.area),
                "0 features",
                "at least 1 feature per stimulus and step",
            ));
        }
        if !areas.insert(a.area.as_str()) {
            return Err(NeurofitError::Features(format!(
                "area `{}` appears more than once; expected one entry per area",
                a.area
            )));
        }
    }
    // A repeated id would silently take one of its rows for the stimulus.
    let mut pos: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, s) in features.stimulus_id.iter().enumerate() {
        if let Some(first) = pos.insert(s.as_str(), i) {
            return Err(NeurofitError::Features(format!(
                "stimulus id `{s}` labels rows {first} and {i}; expected one row per stimulus"
            )));
        }
    }
    let mut missing = Vec::new();
    let rows: Vec<usize> = stimulus_id
        .iter()
        .filter_map(|s| {
            let r = pos.get(s.as_str()).copied();
            if r.is_none() {
                missing.push(s.clone());
            }
            r
        })
        .collect();
    if !missing.is_empty() {
        return Err(NeurofitError::MissingFeatureStimuli { missing });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_no_step_reaches_are_named_in_runs() {
        let bins = crate::TimeBin::uniform(50.0, 150.0, 10.0); // 10 bins
        assert_eq!(
            unscored_bins_warning(&bins, &(0..10).collect::<Vec<_>>()),
            None
        );
        // Bins 0 and 1 (50–70 ms) come before the first scored one: the latency, not a gap.
        let w = unscored_bins_warning(&bins, &[2, 3, 4, 7]).unwrap();
        assert!(
            w.starts_with(
                "4 of the recordings' 10 time bins after the first scored one (100–120 ms, \
                 130–150 ms)"
            ),
            "{w}"
        );
        assert_eq!(
            unscored_bins_warning(&bins, &(3..10).collect::<Vec<_>>()),
            None
        );
        assert_eq!(unscored_bins_warning(&bins, &[]), None);
    }

    /// A missing trial is left out of its stimulus's mean, not averaged in as NaN (which made the
    /// whole neuroid unusable) or as zero.
    #[test]
    fn averages_skip_missing_trials() {
        let mut a = crate::validate::tests::tiny(); // stimulus a: rows 0 and 2, b: rows 1 and 3
        a.data[[1, 1, 0]] = f32::NAN;
        let stim = StimulusIndex::new(&a);
        let avg = stim.average(&a);
        assert_eq!(avg[[1, 1, 0]], f64::from(a.data[[3, 1, 0]]));
        let both = (f64::from(a.data[[1, 1, 1]]) + f64::from(a.data[[3, 1, 1]])) / 2.0;
        assert_eq!(avg[[1, 1, 1]], both);
        a.data[[3, 1, 0]] = f32::INFINITY;
        assert!(
            stim.average(&a)[[1, 1, 0]].is_nan(),
            "no finite repetition left"
        );
    }
}
