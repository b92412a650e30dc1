//! Which model features predict which recording time bin (SPEC §7): a ConvRNN's unroll step `k`
//! (10 ms each) predicts the bin starting `first_bin_ms + 10·k` ms; a feedforward model uses the same
//! features at every bin (`Uniform`) or successively deeper areas at later bins (`Graded`).

use serde::{Deserialize, Serialize};

use crate::assembly::TimeBin;
use crate::error::{NeurofitError, Result};

/// Duration of one unroll step (SPEC §3).
pub const STEP_MS: f64 = 10.0;

/// How the model's unroll steps are matched to the recording's time bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum StepToBin {
    /// Step `k` of the feature step axis ↔ the bin starting at `first_bin_ms + 10·k` ms. Bins before
    /// `first_bin_ms` or past the last step are not scored; a bin inside that range whose start is not
    /// on a step boundary is an error.
    OneToOne {
        /// Start of the bin that step 0 predicts, ms after image onset.
        first_bin_ms: f64,
    },
    /// Every bin uses each area's last step.
    Uniform,
    /// One combined track: bins are split into as many contiguous, equal groups as there are areas and
    /// the `i`-th group uses area `i`'s last step (earlier bins, shallower areas); it needs at least
    /// as many bins as areas.
    Graded,
}

impl Default for StepToBin {
    fn default() -> Self {
        StepToBin::OneToOne { first_bin_ms: 70.0 }
    }
}

/// One fitted map: recording bin `bin` is predicted from area `area`'s features at `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinMap {
    /// Index of the recording bin.
    pub bin: usize,
    /// Index of the area in [`crate::ModelFeatures::areas`].
    pub area: usize,
    /// Index into the area's feature step axis.
    pub step: usize,
}

/// The maps reported under one name: an area's (one-to-one, uniform) or the graded combination.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// The track's name in the report (an area's, or `graded`).
    pub name: String,
    /// One map per scored bin, in bin order.
    pub maps: Vec<BinMap>,
}

/// Plan the maps for `bins` given each area's `(name, number of steps)`.
pub fn plan(map: &StepToBin, bins: &[TimeBin], areas: &[(String, usize)]) -> Result<Vec<Track>> {
    if areas.is_empty() {
        return Err(NeurofitError::TimeMap("the model has no areas".into()));
    }
    if let Some((name, _)) = areas.iter().find(|(_, steps)| *steps == 0) {
        return Err(NeurofitError::TimeMap(format!(
            "area `{name}` has no time steps"
        )));
    }
    if bins.is_empty() {
        return Err(NeurofitError::TimeMap(
            "the recordings have no time bins".into(),
        ));
    }
    let tracks = match map {
        StepToBin::OneToOne { first_bin_ms } => {
            if !first_bin_ms.is_finite() {
                return Err(NeurofitError::Config {
                    field: "time_map.one_to_one.first_bin_ms",
                    reason: format!("must be finite, got {first_bin_ms}"),
                });
            }
            let mut tracks = Vec::with_capacity(areas.len());
            for (a, (name, steps)) in areas.iter().enumerate() {
                let mut maps = Vec::new();
                for (b, bin) in bins.iter().enumerate() {
                    let k = (bin.start_ms - first_bin_ms) / STEP_MS;
                    let kr = k.round();
                    if kr < 0.0 || kr >= *steps as f64 {
                        continue;
                    }
                    if (k - kr).abs() > 1e-6 {
                        return Err(NeurofitError::TimeMap(format!(
                            "bin [{}, {}) ms does not start on a {STEP_MS} ms step boundary from {first_bin_ms} ms",
                            bin.start_ms, bin.end_ms
                        )));
                    }
                    maps.push(BinMap {
                        bin: b,
                        area: a,
                        step: kr as usize,
                    });
                }
                tracks.push(Track {
                    name: name.clone(),
                    maps,
                });
            }
            if tracks.iter().all(|t| t.maps.is_empty()) {
                return Err(NeurofitError::TimeMap(format!(
                    "no recording bin (first starts at {} ms) falls on a model step from {first_bin_ms} ms",
                    bins[0].start_ms
                )));
            }
            tracks
        }
        StepToBin::Uniform => areas
            .iter()
            .enumerate()
            .map(|(a, (name, steps))| Track {
                name: name.clone(),
                maps: (0..bins.len())
                    .map(|b| BinMap {
                        bin: b,
                        area: a,
                        step: steps - 1,
                    })
                    .collect(),
            })
            .collect(),
        StepToBin::Graded => {
            let n_bins = bins.len();
            // With fewer bins than areas a group would be empty and its area never fitted.
            if n_bins < areas.len() {
                return Err(NeurofitError::TimeMap(format!(
                    "a graded map gives each of the {} areas a group of bins, but the recordings \
                     have {n_bins} bin(s)",
                    areas.len()
                )));
            }
            let maps = (0..n_bins)
                .map(|b| {
                    let a = b * areas.len() / n_bins;
                    BinMap {
                        bin: b,
                        area: a,
                        step: areas[a].1 - 1,
                    }
                })
                .collect();
            vec![Track {
                name: "graded".into(),
                maps,
            }]
        }
    };
    Ok(tracks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn areas() -> Vec<(String, usize)> {
        vec![("V4".into(), 20), ("IT".into(), 20)]
    }

    #[test]
    fn one_to_one_maps_step_k_to_bin_k_and_skips_outside_bins() {
        let bins = TimeBin::uniform(50.0, 300.0, 10.0); // 25 bins, 70 ms is bin 2
        let t = plan(&StepToBin::default(), &bins, &areas()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].name, "IT");
        assert_eq!(
            t[0].maps.first(),
            Some(&BinMap {
                bin: 2,
                area: 0,
                step: 0
            })
        );
        assert_eq!(
            t[0].maps.last(),
            Some(&BinMap {
                bin: 21,
                area: 0,
                step: 19
            })
        );
        assert_eq!(t[0].maps.len(), 20);
    }

    #[test]
    fn misaligned_bins_and_empty_overlap_are_errors() {
        let bins = TimeBin::uniform(75.0, 125.0, 10.0);
        assert!(plan(&StepToBin::default(), &bins, &areas()).is_err());
        let late = TimeBin::uniform(1000.0, 1100.0, 10.0);
        assert!(plan(&StepToBin::default(), &late, &areas()).is_err());
        assert!(plan(&StepToBin::Uniform, &[], &areas()).is_err());
        assert!(plan(&StepToBin::Uniform, &late, &[]).is_err());
    }

    #[test]
    fn uniform_uses_the_last_step_everywhere() {
        let bins = TimeBin::uniform(70.0, 110.0, 10.0);
        let t = plan(&StepToBin::Uniform, &bins, &[("fc".into(), 1)]).unwrap();
        assert_eq!(t[0].maps.len(), 4);
        assert!(t[0].maps.iter().all(|m| m.step == 0 && m.area == 0));
    }

    #[test]
    fn graded_walks_deeper_with_time() {
        let bins = TimeBin::uniform(70.0, 130.0, 10.0); // 6 bins, 3 areas -> 2 bins each
        let a = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)];
        let t = plan(&StepToBin::Graded, &bins, &a).unwrap();
        assert_eq!(t.len(), 1);
        let used: Vec<(usize, usize)> = t[0].maps.iter().map(|m| (m.area, m.step)).collect();
        assert_eq!(used, vec![(0, 0), (0, 0), (1, 1), (1, 1), (2, 2), (2, 2)]);
        let e = plan(&StepToBin::Graded, &bins[..2], &a).unwrap_err();
        assert!(
            e.to_string()
                .contains("3 areas a group of bins, but the recordings have 2 bin(s)"),
            "{e}"
        );
    }

    #[test]
    fn serde_round_trip_and_unknown_fields_rejected() {
        let m = StepToBin::OneToOne { first_bin_ms: 60.0 };
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<StepToBin>(&j).unwrap(), m);
        assert!(
            serde_json::from_str::<StepToBin>(r#"{"one_to_one":{"first_bin_ms":1,"x":2}}"#)
                .is_err()
        );
    }
}
