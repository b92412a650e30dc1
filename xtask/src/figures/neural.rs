//! The neural stages of figures 4 and 5: one trained model scored by the `neurofit` binary (which
//! xtask runs rather than links: it needs HDF5 and OpenBLAS) against recordings, the in-silico
//! V4/IT set by default or a given Brain-Score assembly. A stage keeps, per region, the
//! noise-corrected predictivity (median over neuroids of r² / ceiling) per 10 ms bin of the area
//! that stands for that region, and the object solution times of the model's last area against
//! the recording's reference (in-silico only).
//!
//! Which area stands for a region ([`AreaRule`]): for a released architecture (as `cargo xtask
//! import` writes them) the areas the authors found to match it ([`topology::regions`]: V4 ←
//! conv5–6 of an intermediate model, conv3 of a shallow one; IT ← conv9–10, conv5), a region
//! with two areas scored by the one of them with the higher median over the compared bins;
//! for any other model IT ← the last area, V4 ← the one before it (the paper maps its deepest
//! areas to IT and the ones before to V4). A graded feedforward fit has one track for both.
//!
//! neurofit scores every area, so the choice is only a reading of its output: the neural stage
//! (its key holds no area map) reads it by position, and a model with a known map has a
//! *regions* stage on top that reads the same `neurofit.json` again with the map ([`rescore`]),
//! keyed by the map, so changing the map never runs neurofit again.

use super::cache::StageKey;
use super::models::Family;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use topology::regions::{AreaMap, Region};
use topology::ModelSpec;

/// The report's words for [`AreaRule`].
pub const AREA_RULE_WORDS: &str = "V4 and IT from the areas the authors found to match them \
    for a released architecture (intermediate: conv5 or conv6 → V4, conv9 or conv10 → IT, each \
    region from the one of its two areas with the higher median over the compared bins; \
    shallow: conv3 → V4, conv5 → IT), and for any other model V4 from its second-to-last area, \
    IT from its last";

/// Which of a model's areas stand for each recorded region.
#[derive(Clone, Debug, PartialEq)]
pub enum AreaRule {
    /// V4 ← the second-to-last area, IT (and any other region) ← the last.
    Positional,
    /// The authors' map of a released architecture. A region with several areas is scored by
    /// the one whose median over the compared bins (from [`super::fig4::COMPARED_FROM_MS`], the
    /// summary figure 4 tests) is highest: the paper picks each region's preferred layer(s) by
    /// their fit to the region's responses (Neural Computation 2022, Fig. 3a) — a choice of
    /// layer, not of a layer per bin, which would pick the luckier of two noisy estimates in
    /// every bin. A recorded region the map has no areas for is read by position.
    Known(AreaMap),
}

impl AreaRule {
    /// The rule for a model of `spec`: its map when it is a released architecture.
    pub fn of(spec: &ModelSpec) -> AreaRule {
        AreaMap::of(spec).map_or(AreaRule::Positional, AreaRule::Known)
    }
}

/// The region of the authors' map a recorded region is read as. The recordings' `IT` (HvM's IT
/// sites, and the in-silico set modelled on them) is read as cIT/aIT, the areas the authors map
/// to IT's later stages and the one whose last area neurofit's object solution times read.
fn mapped_region(recorded: &str) -> Option<Region> {
    match recorded {
        "V4" => Some(Region::V4),
        "pIT" => Some(Region::Pit),
        "IT" | "cIT" | "aIT" => Some(Region::CitAit),
        _ => None,
    }
}

/// How a model's features are mapped to the recording's bins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// A ConvRNN: the image on for 100 ms, step k predicting the bin at 70 + 10·k ms.
    Recurrent,
    /// A feedforward net, image on throughout: each area's last step predicts every bin.
    Uniform,
    /// A feedforward net: successively deeper areas predict successively later bins.
    Graded,
}

impl Mapping {
    pub fn words(self) -> &'static str {
        match self {
            Mapping::Recurrent => "recurrent",
            Mapping::Uniform => "uniform",
            Mapping::Graded => "graded",
        }
    }

    /// Whether a known area map changes what this mapping reads (a graded fit has one track).
    pub fn reads_areas(self) -> bool {
        self != Mapping::Graded
    }

    /// The mappings a model of `family` is scored with.
    pub fn for_family(family: Family) -> &'static [Mapping] {
        match family {
            Family::Recurrent => &[Mapping::Recurrent],
            Family::Feedforward => &[Mapping::Uniform, Mapping::Graded],
        }
    }
}

/// The stages scoring a model of `family` with `rule` takes: a neural stage per mapping, and a
/// regions stage over each that reads areas when the map is known.
pub fn stages_of(family: Family, rule: &AreaRule) -> u64 {
    Mapping::for_family(family)
        .iter()
        .map(|m| 1 + u64::from(m.reads_areas() && matches!(rule, AreaRule::Known(_))))
        .sum()
}

/// What a scale sets for the neural stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuralScale {
    /// The models of figure 1 scored (their ids); every seed of each.
    pub models: Vec<String>,
    /// Train/test splits of the fits.
    pub splits: usize,
    /// In-silico images per object at variation levels V0, V3, V6.
    pub insilico_images: [usize; 3],
    /// Principal components kept per area.
    pub pca: usize,
}

impl NeuralScale {
    /// What each scale scores. Quick scores two gated cells and two feedforward nets (every
    /// seed) on a half-size in-silico set with 3 splits, so the neural stages stay a few minutes
    /// of CPU; full scores every model of figure 1 with the protocol's 10 splits.
    pub fn of(scale: super::Scale) -> Self {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        match scale {
            super::Scale::Micro => NeuralScale {
                models: ids(&["rgc", "ff_base"]),
                splits: 2,
                insilico_images: [1, 1, 1],
                pca: 20,
            },
            super::Scale::Quick => NeuralScale {
                models: ids(&["rgc", "ugrnn", "ff_base", "ff_wide2"]),
                splits: 3,
                insilico_images: [1, 2, 2],
                pca: 50,
            },
            super::Scale::Full => NeuralScale {
                models: super::models::matched_size_set()
                    .map(|v| v.into_iter().map(|c| c.id).collect())
                    .unwrap_or_default(),
                splits: 10,
                insilico_images: [2, 4, 4],
                pca: 200,
            },
        }
    }
}

/// The recordings scored against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Recordings {
    /// The in-silico V4/IT set, generated by neurofit (seed 0).
    InSilico,
    /// A Brain-Score assembly and its stimulus set.
    Given {
        recordings: PathBuf,
        stimuli: PathBuf,
    },
}

impl Recordings {
    /// What identifies the recordings in a stage key: the in-silico generator, or the files'
    /// paths, sizes and modification times (hashing a large assembly on every run would cost
    /// more than it saves).
    pub fn fingerprint(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Recordings::InSilico => serde_json::json!("in-silico"),
            Recordings::Given {
                recordings,
                stimuli,
            } => {
                let stamp = |p: &Path| -> Result<serde_json::Value> {
                    let m = std::fs::metadata(p).with_context(|| format!("{}", p.display()))?;
                    let t = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    Ok(serde_json::json!([p.display().to_string(), m.len(), t]))
                };
                serde_json::json!({"recordings": stamp(recordings)?, "stimuli": stamp(stimuli)?})
            }
        })
    }

    pub fn words(&self) -> String {
        match self {
            Recordings::InSilico => {
                "the in-silico V4/IT recordings (neurofit's generator, seed 0, \
                HvM-like stimuli)"
                    .into()
            }
            Recordings::Given {
                recordings,
                stimuli,
            } => format!(
                "the assembly {} with the stimuli {}",
                recordings.display(),
                stimuli.display()
            ),
        }
    }
}

/// One region's predictivity per bin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionScores {
    pub region: String,
    /// The fitted track (model area, or `graded`).
    pub track: String,
    /// Median over neuroids of r² / ceiling per bin (`None`: the track does not cover the bin).
    pub per_bin: Vec<Option<f64>>,
}

/// Object solution times of the model's last area against the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ost {
    pub area: String,
    /// Spearman correlation over the images both solve (`None` with fewer than 3).
    pub spearman: Option<f64>,
    pub solved_by_both: usize,
    pub solved_by_model: usize,
    pub images: usize,
}

/// A neural stage's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub id: String,
    pub family: Family,
    pub seed: u64,
    pub params: usize,
    pub mapping: Mapping,
    /// Start of each bin, ms.
    pub bins_ms: Vec<f64>,
    pub regions: Vec<RegionScores>,
    pub ost: Option<Ost>,
    /// CPU seconds (user + system) of the neurofit process, where the platform reports it.
    pub cpu_seconds: Option<f64>,
}

/// The identity of a model's scoring: scale, mapping and recordings (the trained model is the
/// stage's input).
pub fn stage_config(
    scale: &NeuralScale,
    mapping: Mapping,
    recordings: &Recordings,
) -> Result<serde_json::Value> {
    Ok(serde_json::json!({
        "splits": scale.splits,
        "insilico_images": scale.insilico_images,
        "pca": scale.pca,
        "mapping": mapping,
        "recordings": recordings.fingerprint()?,
    }))
}

/// The neurofit arguments scoring the run in `run_dir` into `out`.
pub fn neurofit_args(
    run_dir: &Path,
    out: &Path,
    scale: &NeuralScale,
    mapping: Mapping,
    recordings: &Recordings,
) -> Vec<String> {
    let [a, b, c] = scale.insilico_images;
    let mut v: Vec<String> = [
        "--model",
        &run_dir.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--base",
        "none",
        "--splits",
        &scale.splits.to_string(),
        "--pca",
        &scale.pca.to_string(),
        "--seed",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match mapping {
        Mapping::Recurrent => {}
        Mapping::Uniform => v.extend(["--feedforward-map".into(), "uniform".into()]),
        Mapping::Graded => v.extend(["--feedforward-map".into(), "graded".into()]),
    }
    match recordings {
        Recordings::Given {
            recordings,
            stimuli,
        } => v.extend([
            "--recordings".into(),
            recordings.display().to_string(),
            "--stimuli".into(),
            stimuli.display().to_string(),
        ]),
        // The in-silico set's size; neurofit refuses it next to given recordings.
        _ => v.extend(["--insilico-images".into(), format!("{a},{b},{c}")]),
    }
    v
}

/// What the stage needs to know of the model besides neurofit's output.
pub struct Subject<'a> {
    pub id: &'a str,
    pub family: Family,
    pub seed: u64,
    pub params: usize,
    /// The model's areas in order.
    pub areas: Vec<String>,
}

/// Scores one trained model: runs neurofit into `work` and reads its `neurofit.json`.
pub fn score(
    subject: &Subject<'_>,
    run_dir: &Path,
    work: &Path,
    scale: &NeuralScale,
    mapping: Mapping,
    recordings: &Recordings,
) -> Result<Scored> {
    let out = work.join("neurofit");
    let before = super::training::children_cpu_seconds();
    let status = crate::neurofit_command("score")?
        .args(neurofit_args(run_dir, &out, scale, mapping, recordings))
        .status()
        .context("could not run neurofit")?;
    anyhow::ensure!(status.success(), "neurofit score failed ({status})");
    let cpu = before
        .zip(super::training::children_cpu_seconds())
        .map(|(a, b)| b - a);
    let path = neurofit_output(work);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    // The stage's key holds no area map, so its own result reads the areas by position; a model
    // with a known map is read again by its regions stage.
    let mut s = parse(subject, mapping, &AreaRule::Positional, &json)
        .with_context(|| format!("{}", path.display()))?;
    s.cpu_seconds = cpu;
    Ok(s)
}

/// Where a neural stage whose work folder is `work` leaves neurofit's output.
pub fn neurofit_output(work: &Path) -> PathBuf {
    work.join("neurofit").join("neurofit.json")
}

/// Bumped when the way a regions stage reads neurofit's output changes.
const REGIONS_VERSION: u32 = 1;

/// The key of the regions stage reading the neural stage `fit` with `map`.
pub fn regions_key(map: &AreaMap, fit: &StageKey) -> Result<StageKey> {
    StageKey::new(
        "regions",
        &serde_json::json!({ "map": map, "version": REGIONS_VERSION }),
        &[fit],
    )
}

/// A regions stage: the neural stage's result `fit`, its neurofit output in `fit_work` read
/// again with `map` (no neurofit run); its CPU seconds are the fit's.
pub fn rescore(
    subject: &Subject<'_>,
    mapping: Mapping,
    map: &AreaMap,
    fit: &Scored,
    fit_work: &Path,
) -> Result<Scored> {
    let path = neurofit_output(fit_work);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (the neurofit output of a complete neural stage; delete that stage's \
             folder to score the model again)",
            path.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut s = parse(subject, mapping, &AreaRule::Known(map.clone()), &json)
        .with_context(|| format!("{}", path.display()))?;
    s.cpu_seconds = fit.cpu_seconds;
    Ok(s)
}

/// The stage's result from neurofit's JSON output, each region read from the area `rule` says.
pub fn parse(
    subject: &Subject<'_>,
    mapping: Mapping,
    rule: &AreaRule,
    json: &serde_json::Value,
) -> Result<Scored> {
    let bins_ms: Vec<f64> = json["bins"]
        .as_array()
        .context("no `bins`")?
        .iter()
        .map(|b| b[0].as_f64().context("a bin without a start"))
        .collect::<Result<_>>()?;
    let scores = json["scores"].as_object().context("no `scores`")?;
    let regions_seen: Vec<String> = json["ceiling"]
        .as_object()
        .context("no `ceiling`")?
        .keys()
        .cloned()
        .collect();
    let (last, before_last) = match subject.areas.as_slice() {
        [] => bail!("{} has no areas", subject.id),
        [only] => (only.clone(), only.clone()),
        [.., b, l] => (l.clone(), b.clone()),
    };
    let read = |track: &str, region: &str| -> Result<Vec<Option<f64>>> {
        let per_bin: Vec<Option<f64>> = scores
            .get(track)
            .and_then(|t| t.get(region))
            .and_then(|v| v.as_array())
            .with_context(|| format!("no scores of track `{track}` for region {region}"))?
            .iter()
            .map(|v| v.as_f64())
            .collect();
        if per_bin.len() != bins_ms.len() {
            bail!(
                "track `{track}` has {} values for {} bins",
                per_bin.len(),
                bins_ms.len()
            );
        }
        Ok(per_bin)
    };
    // The median over the compared bins, as figure 4's test summarises a track (NaN: none).
    let compared_median = |per_bin: &[Option<f64>]| {
        let v: Vec<f64> = per_bin
            .iter()
            .zip(&bins_ms)
            .filter(|(_, &b)| b >= super::fig4::COMPARED_FROM_MS)
            .filter_map(|(v, _)| *v)
            .collect();
        super::stats::median(&v)
    };
    let mut regions = Vec::new();
    for region in regions_seen {
        let mapped = match (mapping, rule) {
            (Mapping::Graded, _) | (_, AreaRule::Positional) => None,
            (_, AreaRule::Known(map)) => mapped_region(&region)
                .map(|r| map.areas(r))
                .filter(|a| !a.is_empty()),
        };
        let (track, per_bin) = match mapped {
            Some(areas) => {
                let mut best: Option<(String, Vec<Option<f64>>, f64)> = None;
                for area in areas {
                    let per_bin = read(area, &region)?;
                    let m = compared_median(&per_bin);
                    // The first of equal medians; a NaN median (no compared bin) never wins.
                    if best
                        .as_ref()
                        .is_none_or(|(_, _, b)| m > *b || b.is_nan() && !m.is_nan())
                    {
                        best = Some((area.clone(), per_bin, m));
                    }
                }
                let (track, per_bin, _) = best.context("a region mapped to no area")?;
                (track, per_bin)
            }
            None => {
                let track = match mapping {
                    Mapping::Graded => "graded".to_string(),
                    _ if region == "V4" => before_last.clone(),
                    _ => last.clone(),
                };
                let per_bin = read(&track, &region)?;
                (track, per_bin)
            }
        };
        regions.push(RegionScores {
            region,
            track,
            per_bin,
        });
    }
    let ost = match &json["behaviour"] {
        serde_json::Value::Null => None,
        b => Some(Ost {
            area: b["area"].as_str().unwrap_or_default().to_string(),
            spearman: b["spearman"].as_f64(),
            solved_by_both: b["solved_by_both"].as_u64().unwrap_or(0) as usize,
            solved_by_model: b["solved_by_model"].as_u64().unwrap_or(0) as usize,
            images: b["images"].as_u64().unwrap_or(0) as usize,
        }),
    };
    Ok(Scored {
        id: subject.id.to_string(),
        family: subject.family,
        seed: subject.seed,
        params: subject.params,
        mapping,
        bins_ms,
        regions,
        ost,
        cpu_seconds: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// neurofit's output for a model with areas conv1..conv3 scoring `level` everywhere (V4 and
    /// IT, 3 bins), the first bin uncovered; OST Spearman `rho`.
    pub(crate) fn neurofit_json(level: f64, rho: Option<f64>, graded: bool) -> serde_json::Value {
        let track = |v: f64| serde_json::json!({"V4": [null, v, v], "IT": [null, v, v]});
        let scores = if graded {
            serde_json::json!({"graded": track(level)})
        } else {
            serde_json::json!({"conv1": track(0.0), "conv2": track(level), "conv3": track(level)})
        };
        serde_json::json!({
            "bins": [[70.0, 80.0], [80.0, 90.0], [90.0, 100.0]],
            "ceiling": {"IT": [0.5, 0.5, 0.5], "V4": [0.5, 0.5, 0.5]},
            "scores": scores,
            "behaviour": {"area": "conv3", "spearman": rho, "solved_by_both": 30,
                          "solved_by_model": 40, "images": 64},
        })
    }

    pub(crate) fn subject(id: &str, family: Family, seed: u64) -> Subject<'_> {
        Subject {
            id,
            family,
            seed,
            params: 1000,
            areas: vec!["conv1".into(), "conv2".into(), "conv3".into()],
        }
    }

    #[test]
    fn parses_the_areas_standing_for_each_region() {
        let s = parse(
            &subject("rgc", Family::Recurrent, 0),
            Mapping::Recurrent,
            &AreaRule::Positional,
            &neurofit_json(0.4, Some(0.5), false),
        )
        .unwrap();
        assert_eq!(s.bins_ms, [70.0, 80.0, 90.0]);
        let v4 = s.regions.iter().find(|r| r.region == "V4").unwrap();
        let it = s.regions.iter().find(|r| r.region == "IT").unwrap();
        assert_eq!((v4.track.as_str(), it.track.as_str()), ("conv2", "conv3"));
        assert_eq!(it.per_bin, [None, Some(0.4), Some(0.4)]);
        assert_eq!(s.ost.as_ref().unwrap().spearman, Some(0.5));
        let g = parse(
            &subject("ff_base", Family::Feedforward, 0),
            Mapping::Graded,
            &AreaRule::Positional,
            &neurofit_json(0.2, None, true),
        )
        .unwrap();
        assert!(g.regions.iter().all(|r| r.track == "graded"));
        assert_eq!(g.ost.unwrap().spearman, None);
        // A graded output read as uniform has no conv tracks: a clear error.
        let e = parse(
            &subject("ff_base", Family::Feedforward, 0),
            Mapping::Uniform,
            &AreaRule::Positional,
            &neurofit_json(0.2, None, true),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("no scores of track `conv3`"),
            "{e:#}"
        );
    }

    /// neurofit's output for an intermediate model (conv1..conv10, V4 and IT, bins from 60 ms,
    /// the first before the compared bins): `level(area, region)` in every bin from 70 ms, and
    /// 0.9 in the 60 ms bin of conv5 (not compared, so it must not decide).
    pub(crate) fn intermediate_json(level: impl Fn(usize, &str) -> f64) -> serde_json::Value {
        let mut scores = serde_json::Map::new();
        for a in 1..=10 {
            let early = if a == 5 { 0.9 } else { 0.0 };
            let track = |r: &str| serde_json::json!([early, level(a, r), level(a, r)]);
            scores.insert(
                format!("conv{a}"),
                serde_json::json!({"V4": track("V4"), "IT": track("IT")}),
            );
        }
        serde_json::json!({
            "bins": [[60.0, 70.0], [70.0, 80.0], [80.0, 90.0]],
            "ceiling": {"IT": [0.5, 0.5, 0.5], "V4": [0.5, 0.5, 0.5]},
            "scores": scores,
            "behaviour": null,
        })
    }

    fn released_subject(preset: &str) -> (Subject<'static>, AreaRule) {
        let spec = topology::zoo::get(preset).unwrap();
        let s = Subject {
            id: "released",
            family: Family::Recurrent,
            seed: 0,
            params: 1,
            areas: spec.areas.iter().map(|a| a.name.clone()).collect(),
        };
        (s, AreaRule::of(&spec))
    }

    fn tracks(s: &Scored) -> (String, String) {
        let t = |r: &str| {
            s.regions
                .iter()
                .find(|x| x.region == r)
                .unwrap()
                .track
                .clone()
        };
        (t("V4"), t("IT"))
    }

    #[test]
    fn a_released_model_is_read_by_the_authors_map_taking_the_better_area() {
        let (subject, rule) = released_subject("rgc_intermediate");
        assert!(matches!(rule, AreaRule::Known(_)));
        // conv9 is the best V4 track of all and conv10 the last area: by position V4 would be
        // read from conv9; by the map from conv5 or conv6, the better of the two (conv6), and
        // IT from the better of conv9 and conv10 (conv9).
        let level = |a: usize, r: &str| match (a, r) {
            (9, "V4") => 0.8,
            (6, "V4") => 0.5,
            (5, "V4") => 0.4,
            (9, "IT") => 0.3,
            (10, "IT") => 0.2,
            _ => 0.1,
        };
        let json = intermediate_json(level);
        let s = parse(&subject, Mapping::Recurrent, &rule, &json).unwrap();
        assert_eq!(tracks(&s), ("conv6".into(), "conv9".into()));
        let v4 = s.regions.iter().find(|r| r.region == "V4").unwrap();
        assert_eq!(v4.per_bin, [Some(0.0), Some(0.5), Some(0.5)]);
        let p = parse(&subject, Mapping::Recurrent, &AreaRule::Positional, &json).unwrap();
        assert_eq!(tracks(&p), ("conv9".into(), "conv10".into()));
        // Equal medians: the first area listed.
        let flat = intermediate_json(|_, _| 0.3);
        let s = parse(&subject, Mapping::Uniform, &rule, &flat).unwrap();
        assert_eq!(tracks(&s), ("conv5".into(), "conv9".into()));
        // A map naming an area the output does not score is a clear error.
        let mut map = topology::regions::Depth::Intermediate.area_map();
        map.v4 = vec!["conv42".into()];
        let e = parse(&subject, Mapping::Recurrent, &AreaRule::Known(map), &json).unwrap_err();
        assert!(
            format!("{e:#}").contains("no scores of track `conv42`"),
            "{e:#}"
        );
    }

    #[test]
    fn a_released_shallow_model_reads_conv3_and_conv5() {
        let (subject, rule) = released_subject("rgc_shallow");
        let json = serde_json::json!({
            "bins": [[70.0, 80.0]],
            "ceiling": {"IT": [0.5], "V4": [0.5]},
            "scores": {
                "conv3": {"V4": [0.2], "IT": [0.1]},
                "conv4": {"V4": [0.6], "IT": [0.1]},
                "conv5": {"V4": [0.1], "IT": [0.3]},
            },
            "behaviour": null,
        });
        let s = parse(&subject, Mapping::Recurrent, &rule, &json).unwrap();
        assert_eq!(tracks(&s), ("conv3".into(), "conv5".into()));
        // A graded fit has one track whatever the map.
        let g = serde_json::json!({
            "bins": [[70.0, 80.0]],
            "ceiling": {"V4": [0.5]},
            "scores": {"graded": {"V4": [0.2]}},
            "behaviour": null,
        });
        let s = parse(&subject, Mapping::Graded, &rule, &g).unwrap();
        assert_eq!(s.regions[0].track, "graded");
        // The compact models keep the positional rule.
        let compact = topology::zoo::get("compact_rgc").unwrap();
        assert_eq!(AreaRule::of(&compact), AreaRule::Positional);
    }

    #[test]
    fn rescoring_reads_the_neural_stages_output_with_the_map() {
        let (subject, rule) = released_subject("rgc_intermediate");
        let AreaRule::Known(map) = rule else {
            panic!("rgc_intermediate has a map")
        };
        let d = tempfile::tempdir().unwrap();
        let json = intermediate_json(|a, _| a as f64 / 10.0);
        let path = neurofit_output(d.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, json.to_string()).unwrap();
        let mut fit = parse(&subject, Mapping::Recurrent, &AreaRule::Positional, &json).unwrap();
        fit.cpu_seconds = Some(12.5);
        let s = rescore(&subject, Mapping::Recurrent, &map, &fit, d.path()).unwrap();
        assert_eq!(tracks(&s), ("conv6".into(), "conv10".into()));
        assert_eq!(s.cpu_seconds, Some(12.5), "the fit's CPU time");
        std::fs::remove_file(&path).unwrap();
        let e = rescore(&subject, Mapping::Recurrent, &map, &fit, d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("delete that stage"), "{e:#}");
        // The key follows the map and the fit it reads.
        let fit_key = StageKey::new("neural", &1, &[]).unwrap();
        let other_fit = StageKey::new("neural", &2, &[]).unwrap();
        let shallow = topology::regions::Depth::Shallow.area_map();
        let k = |m: &AreaMap, f: &StageKey| regions_key(m, f).unwrap().id();
        assert_ne!(k(&map, &fit_key), k(&shallow, &fit_key));
        assert_ne!(k(&map, &fit_key), k(&map, &other_fit));
        assert!(k(&map, &fit_key).starts_with("regions-"));
    }

    #[test]
    fn arguments_follow_mapping_and_recordings() {
        let scale = NeuralScale {
            models: vec![],
            splits: 3,
            insilico_images: [1, 2, 2],
            pca: 50,
        };
        let a = neurofit_args(
            Path::new("run"),
            Path::new("o"),
            &scale,
            Mapping::Graded,
            &Recordings::InSilico,
        );
        let line = a.join(" ");
        assert!(line.contains("--insilico-images 1,2,2"), "{line}");
        assert!(line.contains("--feedforward-map graded") && line.contains("--base none"));
        let given = Recordings::Given {
            recordings: "r.nc".into(),
            stimuli: "s".into(),
        };
        let line = neurofit_args(
            Path::new("run"),
            Path::new("o"),
            &scale,
            Mapping::Recurrent,
            &given,
        )
        .join(" ");
        assert!(line.contains("--recordings r.nc --stimuli s"), "{line}");
        assert!(!line.contains("--feedforward-map"));
        let k = |m| stage_config(&scale, m, &Recordings::InSilico).unwrap();
        assert_ne!(k(Mapping::Uniform), k(Mapping::Graded));
    }
}
