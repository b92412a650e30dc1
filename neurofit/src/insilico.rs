//! In-silico V4 and IT recordings with known ground truth, over an HvM-like stimulus set
//! ([`datasets::StimulusSet`]); the stand-in for the HvM recordings (SPEC §7, §9).
//!
//! The generator is deliberately *not* a ConvRNN (a ConvRNN would then be scored against itself):
//! it is a fixed, seeded filter-bank model with hand-written dynamics.
//!
//! # Image drive
//! Each image is box-averaged to 32×32 and filtered by 8 quadrature Gabor pairs (4 orientations ×
//! wavelengths 4 and 8 px, σ = 0.56 λ), sampled every 2 px: oriented energy maps
//! `E_c(p) = sqrt(even² + odd²)`, 8 × 16 × 16.
//! - **V4 site** `i`: a Gaussian receptive field `G_i` (centre uniform in the central 60 % of the
//!   image, σ uniform in 0.1–0.25 of the side) and non-negative weights on 3 random channels:
//!   `u_ij = Σ_c w_ic Σ_p G_i(p) E_c(p) / Σ_p G_i(p)`.
//! - **IT site** `i`: `u_ij = 1.0·a_i[category_j] + 0.5·b_i[object_j] + 0.7·z(v_i · f_j)` with
//!   `a_i`, `b_i`, `v_i` standard normal, `f_j` the energy maps pooled to 8 × 4 × 4, and `z`
//!   standardisation over the set. Category and identity tuning, plus visual-feature tuning.
//!
//! Every drive is standardised over the stimulus set per site (`ũ_ij`), then made non-negative
//! and selective by `s_ij = softplus(1.5 ũ_ij)`.
//!
//! # Dynamics
//! The image is on for 0–100 ms. With `τ` time since the response onset, the temporal kernel is a
//! transient plus a sustained phase:
//! `k(τ) = (τ/τ₁) e^{1−τ/τ₁} + 0.5 (1 − e^{−τ/τ₂})` for `0 ≤ τ < 100`, and for `τ ≥ 100`
//! (after the image goes off) the same value at 100 decaying as `e^{−(τ−100)/τ₃}`; τ₁ = 20,
//! τ₂ = 30, τ₃ = 40 ms; `k = 0` for `τ < 0`.
//! The true rate (Hz) of site `i` for image `j` at time `t` is
//! `μ_ij(t) = β_i + g_i k(t − L_i) + h_i s_ij k(t − L_i − δ_j)`:
//! a baseline `β_i ~ U[2, 10]`, an untuned onset response (`g_i ~ U[10, 30]`) at the site's
//! latency `L_i` (V4 ~ U[60, 90] ms, IT ~ U[90, 120] ms), and the image-selective response
//! (`h_i ~ U[20, 60]`) delayed by `δ_j`. In V4 `δ_j = 0`; in IT `δ_j = 40 ms · d_j`, where the
//! image's difficulty `d_j = 0.5·(variation level: 0, ½, 1) + 0.5·min(1, (1 − contrast)/0.6)`:
//! harder images resolve later in IT. Bins are 10 ms from 0 to 260 ms; a bin's rate is the mean of
//! `μ` over the bin (1 ms sub-steps).
//!
//! # Trials and the known ceiling
//! Each of `R` repetitions draws, independently per stimulus, site and bin, a spike count
//! `n ~ Poisson(λ)` with `λ = μ · 0.01 s · rate_scale` and records `n / (0.01 s · rate_scale)` Hz;
//! `rate_scale` (think: pooled multi-unit activity) sets the reliability. The trial noise variance
//! is `μ / (0.01 · rate_scale)`, so for a site and bin with variance `V` of `μ` over stimuli, the
//! reliability of the `R`-trial mean is known by construction:
//! `ceiling = V / (V + mean_j(μ_j) / (0.01 · rate_scale · R))`.
//! This is what the Spearman–Brown-corrected split-half correlation (SPEC §7) estimates.
//!
//! # What a perfect model scores
//! A model whose features map linearly onto the true rates `μ` predicts the trial-averaged
//! response with Pearson `r → sqrt(ceiling)` (the correlation of a signal with itself plus
//! independent noise), so its ceiling-normalised score `r² / ceiling` is 1 up to sampling error;
//! [`InsilicoRecording::true_rates`] is that perfect prediction.
//!
//! # Reference object solution times
//! The reference OST of image `j` is when the mean IT site's image-selective response peaks:
//! `mean_i(L_i) + δ_j + τ₁`. Kar et al. threshold the decoder at the observer's per-image accuracy;
//! here every image's reference d′ is [`InsilicoConfig::reference_dprime`].

use crate::assembly::{Assembly, Neuroids, Presentations, TimeBin};
use datasets::{derive_seed, Dataset, StimulusSet, VariationLevel};
use ndarray::{Array2, Array3, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tensor::Rng;

/// Bin width and the recording window (SPEC §3, §7).
pub const BIN_MS: f64 = 10.0;
/// The recording window after image onset: 26 bins of 10 ms.
pub const WINDOW_MS: f64 = 260.0;
/// The image is shown for the first 100 ms.
pub const IMAGE_ON_MS: f64 = 100.0;
const TAU_TRANSIENT: f64 = 20.0;
const TAU_RISE: f64 = 30.0;
const TAU_DECAY: f64 = 40.0;
const SUSTAINED: f64 = 0.5;
const MAX_IT_DELAY_MS: f64 = 40.0;
const WORK_SIDE: usize = 32;
const MAP_SIDE: usize = 16;
const CHANNELS: usize = 8;

/// Why a recording could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum InsilicoError {
    /// A generator setting is out of range.
    #[error("in-silico config: {0}")]
    Config(String),
    /// The stimulus set is unusable (empty, or without the metadata the generator needs).
    #[error("in-silico stimuli: {0}")]
    Stimuli(String),
}

/// Recorded brain regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Region {
    /// Visual area V4 (intermediate, feature-tuned sites).
    V4,
    /// Inferior temporal cortex (category- and identity-tuned sites, later).
    IT,
}

impl Region {
    /// The region's name as recordings write it (`V4`, `IT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Region::V4 => "V4",
            Region::IT => "IT",
        }
    }
}

/// Every parameter of the generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsilicoConfig {
    /// Number of V4 sites.
    pub v4_sites: usize,
    /// Number of IT sites.
    pub it_sites: usize,
    /// Trials per stimulus (`R`).
    pub repetitions: usize,
    /// Multiplies the expected spike counts; larger is more reliable (see the module doc).
    pub rate_scale: f64,
    /// The per-image d′ an object-solution-time decoder has to reach.
    pub reference_dprime: f32,
    /// Seeds every site's parameters and every trial's spike counts.
    pub seed: u64,
}

impl Default for InsilicoConfig {
    /// HvM's site counts (88 V4, 168 IT), 30 repetitions, `rate_scale` 1. The trials take
    /// `images × 30 × 256 × 26 × 4` bytes: 4.6 GB for the full 5,760-image set; use fewer
    /// repetitions (and a larger `rate_scale` to keep the ceiling) where memory is short.
    fn default() -> Self {
        InsilicoConfig {
            v4_sites: 88,
            it_sites: 168,
            repetitions: 30,
            rate_scale: 1.0,
            reference_dprime: 2.0,
            seed: 0,
        }
    }
}

impl InsilicoConfig {
    /// Checks the site counts, repetitions (at least 2, for the split-half ceiling), `rate_scale`
    /// and `reference_dprime` before anything is generated.
    pub fn validate(&self) -> Result<(), InsilicoError> {
        let bad = |m: String| Err(InsilicoError::Config(m));
        if self.v4_sites + self.it_sites == 0 {
            return bad("no sites: v4_sites and it_sites are both 0".into());
        }
        if self.repetitions < 2 {
            return bad(format!(
                "repetitions {} must be at least 2 (a split-half ceiling needs two)",
                self.repetitions
            ));
        }
        if !(self.rate_scale.is_finite() && self.rate_scale > 0.0) {
            return bad(format!("rate_scale {} must be positive", self.rate_scale));
        }
        if !self.reference_dprime.is_finite() {
            return bad("reference_dprime must be finite".into());
        }
        Ok(())
    }
}

/// One site's fixed parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteParams {
    /// The site's id in the assembly.
    pub neuroid_id: String,
    /// Its region.
    pub region: Region,
    /// Response latency `L_i`, ms after image onset.
    pub latency_ms: f64,
    /// Baseline rate `β_i`, Hz.
    pub baseline_hz: f64,
    /// Gain of the untuned onset response `g_i`, Hz.
    pub onset_gain_hz: f64,
    /// Gain of the image-selective response `h_i`, Hz.
    pub selective_gain_hz: f64,
}

/// The generator's output: trials, the truth behind them, and what a perfect model would achieve.
#[derive(Clone, Debug)]
pub struct InsilicoRecording {
    /// Trials: `R × N` presentations (repetition-major), all sites, 26 bins of 10 ms from 0 ms.
    pub assembly: Assembly,
    /// The noise-free rates, `[stimulus, neuroid, bin]` in stimulus order.
    pub true_rates: Array3<f32>,
    /// The known reliability of the `R`-trial mean, `[neuroid, bin]` (0 where nothing varies).
    pub ceiling: Array2<f32>,
    /// Per stimulus, in stimulus order.
    pub stimulus_id: Vec<String>,
    /// Per stimulus, its category index.
    pub category: Vec<usize>,
    /// Per stimulus, its difficulty `d_j` in 0..=1 (variation level and contrast).
    pub difficulty: Vec<f32>,
    /// IT image-selective delay `δ_j`, ms.
    pub it_delay_ms: Vec<f32>,
    /// Per stimulus, the reference object solution time, ms (`mean_i(L_i) + δ_j + τ₁`).
    pub reference_ost_ms: Vec<f32>,
    /// Per stimulus, the d′ an OST decoder has to reach ([`InsilicoConfig::reference_dprime`]).
    pub reference_dprime: Vec<f32>,
    /// Every site's parameters, in neuroid order.
    pub sites: Vec<SiteParams>,
    /// The configuration it was generated from.
    pub config: InsilicoConfig,
}

impl InsilicoRecording {
    /// The median known ceiling over one region's sites in bin `b` (`None` without such sites).
    pub fn median_ceiling(&self, region: Region, b: usize) -> Option<f32> {
        let mut v: Vec<f32> = self
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.region == region)
            .map(|(i, _)| self.ceiling[[i, b]])
            .collect();
        median(&mut v)
    }
}

pub(crate) fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// The temporal kernel `k(τ)` (module doc).
pub fn kernel(tau: f64) -> f64 {
    let on = |t: f64| {
        (t / TAU_TRANSIENT) * (1.0 - t / TAU_TRANSIENT).exp()
            + SUSTAINED * (1.0 - (-t / TAU_RISE).exp())
    };
    if tau < 0.0 {
        0.0
    } else if tau < IMAGE_ON_MS {
        on(tau)
    } else {
        on(IMAGE_ON_MS) * (-(tau - IMAGE_ON_MS) / TAU_DECAY).exp()
    }
}

/// Difficulty in [0, 1] from the variation level and the object's contrast.
pub fn difficulty(level: VariationLevel, contrast: f32) -> f32 {
    let v = level.index() as f32 / 2.0;
    let c = ((1.0 - contrast) / 0.6).clamp(0.0, 1.0);
    0.5 * v + 0.5 * c
}

/// Box-averages a `side × side` plane to `WORK_SIDE²` (nearest pixel where a cell holds no centre).
fn to_work(img: &[f32], side: usize) -> Vec<f32> {
    let mut out = vec![0f32; WORK_SIDE * WORK_SIDE];
    let k = side as f64 / WORK_SIDE as f64;
    let range = |o: usize| {
        let lo = (o as f64 * k - 0.5).ceil().max(0.0) as usize;
        let hi = (((o + 1) as f64 * k - 0.5).ceil().max(0.0) as usize).min(side);
        if lo < hi {
            lo..hi
        } else {
            let c = (((o as f64 + 0.5) * k) as usize).min(side - 1);
            c..c + 1
        }
    };
    for oy in 0..WORK_SIDE {
        let ys = range(oy);
        for ox in 0..WORK_SIDE {
            let xs = range(ox);
            let mut s = 0f32;
            for y in ys.clone() {
                for x in xs.clone() {
                    s += img[y * side + x];
                }
            }
            out[oy * WORK_SIDE + ox] = s / (ys.len() * xs.len()) as f32;
        }
    }
    out
}

/// A quadrature Gabor pair: half-size and the even and odd kernels.
struct Gabor {
    half: i64,
    even: Vec<f32>,
    odd: Vec<f32>,
}

fn gabor_bank() -> Vec<Gabor> {
    let mut bank = Vec::with_capacity(CHANNELS);
    for lambda in [4.0f64, 8.0] {
        for o in 0..4 {
            let theta = o as f64 * std::f64::consts::PI / 4.0;
            let sigma = 0.56 * lambda;
            let half = (2.0 * sigma).ceil() as i64;
            let w = (2 * half + 1) as usize;
            let (mut even, mut odd) = (vec![0f32; w * w], vec![0f32; w * w]);
            for dy in -half..=half {
                for dx in -half..=half {
                    let (x, y) = (dx as f64, dy as f64);
                    let xr = x * theta.cos() + y * theta.sin();
                    let g = (-(x * x + y * y) / (2.0 * sigma * sigma)).exp();
                    let ph = std::f64::consts::TAU * xr / lambda;
                    let i = (dy + half) as usize * w + (dx + half) as usize;
                    even[i] = (g * ph.cos()) as f32;
                    odd[i] = (g * ph.sin()) as f32;
                }
            }
            // A zero-mean even filter ignores uniform brightness.
            let m = even.iter().sum::<f32>() / even.len() as f32;
            even.iter_mut().for_each(|v| *v -= m);
            bank.push(Gabor { half, even, odd });
        }
    }
    bank
}

/// Oriented energy maps `[channel][MAP_SIDE²]` of a `WORK_SIDE²` image.
fn energy(img: &[f32], bank: &[Gabor]) -> Vec<f32> {
    let mut out = vec![0f32; CHANNELS * MAP_SIDE * MAP_SIDE];
    let stride = WORK_SIDE / MAP_SIDE;
    for (c, g) in bank.iter().enumerate() {
        let w = (2 * g.half + 1) as usize;
        for my in 0..MAP_SIDE {
            for mx in 0..MAP_SIDE {
                let (cy, cx) = ((my * stride) as i64, (mx * stride) as i64);
                let (mut e, mut o) = (0f32, 0f32);
                for dy in -g.half..=g.half {
                    let y = cy + dy;
                    if y < 0 || y >= WORK_SIDE as i64 {
                        continue;
                    }
                    for dx in -g.half..=g.half {
                        let x = cx + dx;
                        if x < 0 || x >= WORK_SIDE as i64 {
                            continue;
                        }
                        let v = img[y as usize * WORK_SIDE + x as usize];
                        let k = (dy + g.half) as usize * w + (dx + g.half) as usize;
                        e += v * g.even[k];
                        o += v * g.odd[k];
                    }
                }
                out[c * MAP_SIDE * MAP_SIDE + my * MAP_SIDE + mx] = (e * e + o * o).sqrt();
            }
        }
    }
    out
}

/// Standardises each column of `[stimulus, site]` over stimuli (constant columns become 0).
fn standardise_columns(x: &mut Array2<f64>) {
    for mut col in x.columns_mut() {
        let n = col.len() as f64;
        let m = col.sum() / n;
        let sd = (col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
        col.mapv_inplace(|v| if sd > 1e-12 { (v - m) / sd } else { 0.0 });
    }
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// A Poisson draw: Knuth's method for small means, a rounded normal above 30 (variance ≈ λ).
fn poisson(rng: &mut Rng, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * rng.normal()).round().max(0.0);
    }
    let l = (-lambda).exp();
    let mut k = 0.0;
    let mut p = rng.uniform();
    while p > l {
        k += 1.0;
        p *= rng.uniform();
    }
    k
}

/// Generates the recording for `stimuli`.
pub fn generate(
    stimuli: &StimulusSet,
    config: &InsilicoConfig,
) -> Result<InsilicoRecording, InsilicoError> {
    config.validate()?;
    let n = stimuli.len();
    if n < 2 {
        return Err(InsilicoError::Stimuli(format!(
            "{n} stimuli; at least 2 are needed"
        )));
    }
    let dims = stimuli.images.dims();
    if dims.channels != 1 || dims.height != dims.width {
        return Err(InsilicoError::Stimuli(format!(
            "expected square 1-channel images, got {dims}"
        )));
    }
    let side = dims.width;
    let bank = gabor_bank();
    let maps: Vec<Vec<f32>> = (0..n)
        .into_par_iter()
        .map(|j| {
            let img: Vec<f32> = stimuli
                .images
                .image(j)
                .unwrap_or_default()
                .iter()
                .map(|&v| v as f32 / 255.0)
                .collect();
            energy(&to_work(&img, side), &bank)
        })
        .collect();

    let mut rng = Rng::new(derive_seed(&[config.seed, 0x5349_5445]));
    let n_sites = config.v4_sites + config.it_sites;
    let mut sites = Vec::with_capacity(n_sites);
    let mut drive = Array2::<f64>::zeros((n, n_sites));
    let plane = MAP_SIDE * MAP_SIDE;

    for i in 0..config.v4_sites {
        let cx = uniform(&mut rng, 0.2, 0.8) * MAP_SIDE as f64;
        let cy = uniform(&mut rng, 0.2, 0.8) * MAP_SIDE as f64;
        let sigma = uniform(&mut rng, 0.1, 0.25) * MAP_SIDE as f64;
        let mut w = [0f64; CHANNELS];
        for _ in 0..3 {
            w[rng.below(CHANNELS)] += rng.normal().abs();
        }
        let g: Vec<f64> = (0..plane)
            .map(|p| {
                let (x, y) = ((p % MAP_SIDE) as f64 + 0.5, (p / MAP_SIDE) as f64 + 0.5);
                (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * sigma * sigma)).exp()
            })
            .collect();
        let gs: f64 = g.iter().sum();
        for (j, m) in maps.iter().enumerate() {
            let mut u = 0.0;
            for (c, &wc) in w.iter().enumerate() {
                if wc == 0.0 {
                    continue;
                }
                let e = &m[c * plane..(c + 1) * plane];
                u += wc * g.iter().zip(e).map(|(a, &b)| a * b as f64).sum::<f64>() / gs;
            }
            drive[[j, i]] = u;
        }
        sites.push(site(
            &mut rng,
            format!("V4_{i:03}"),
            Region::V4,
            (60.0, 90.0),
        ));
    }

    // IT's visual features: energy pooled to 8 × 4 × 4.
    let pooled: Vec<Vec<f64>> = maps
        .iter()
        .map(|m| {
            let q = MAP_SIDE / 4;
            let mut f = vec![0f64; CHANNELS * 16];
            for c in 0..CHANNELS {
                for p in 0..plane {
                    let (x, y) = (p % MAP_SIDE / q, p / MAP_SIDE / q);
                    f[c * 16 + y * 4 + x] += m[c * plane + p] as f64;
                }
            }
            f
        })
        .collect();
    let n_cat = stimuli.config.categories.len();
    let n_obj = stimuli.config.objects_per_category;
    let mut vis = Array2::<f64>::zeros((n, config.it_sites));
    let mut tuning = Vec::with_capacity(config.it_sites);
    for i in 0..config.it_sites {
        let a: Vec<f64> = (0..n_cat).map(|_| rng.normal()).collect();
        let b: Vec<f64> = (0..n_cat * n_obj).map(|_| rng.normal()).collect();
        let v: Vec<f64> = (0..CHANNELS * 16).map(|_| rng.normal()).collect();
        for (j, f) in pooled.iter().enumerate() {
            vis[[j, i]] = v.iter().zip(f).map(|(a, b)| a * b).sum();
        }
        tuning.push((a, b));
        sites.push(site(
            &mut rng,
            format!("IT_{i:03}"),
            Region::IT,
            (90.0, 120.0),
        ));
    }
    standardise_columns(&mut vis);
    for (i, (a, b)) in tuning.iter().enumerate() {
        for (j, m) in stimuli.meta.iter().enumerate() {
            let obj = m.category_index * n_obj + m.object_index;
            drive[[j, config.v4_sites + i]] =
                1.0 * a[m.category_index] + 0.5 * b[obj] + 0.7 * vis[[j, i]];
        }
    }
    standardise_columns(&mut drive);

    let diff: Vec<f32> = stimuli
        .meta
        .iter()
        .map(|m| difficulty(m.variation, m.contrast))
        .collect();
    let delay: Vec<f64> = diff.iter().map(|&d| MAX_IT_DELAY_MS * d as f64).collect();
    let bins = TimeBin::uniform(0.0, WINDOW_MS, BIN_MS);
    let nb = bins.len();

    // True bin rates: the mean over 1 ms sub-steps.
    let per_stimulus: Vec<f32> = (0..n)
        .into_par_iter()
        .flat_map_iter(|j| {
            let mut rates = Vec::with_capacity(n_sites * nb);
            for (i, s) in sites.iter().enumerate() {
                let sel = softplus(1.5 * drive[[j, i]]);
                let d = if s.region == Region::IT {
                    delay[j]
                } else {
                    0.0
                };
                for bin in &bins {
                    let steps = (bin.end_ms - bin.start_ms).round().max(1.0) as usize;
                    let mut acc = 0.0;
                    for k in 0..steps {
                        let t = bin.start_ms + k as f64 + 0.5;
                        acc += s.baseline_hz
                            + s.onset_gain_hz * kernel(t - s.latency_ms)
                            + s.selective_gain_hz * sel * kernel(t - s.latency_ms - d);
                    }
                    rates.push((acc / steps as f64) as f32);
                }
            }
            rates
        })
        .collect();
    let true_rates = Array3::from_shape_vec((n, n_sites, nb), per_stimulus)
        .map_err(|e| InsilicoError::Stimuli(format!("rate array: {e}")))?;

    let unit = BIN_MS / 1000.0 * config.rate_scale;
    let reps = config.repetitions;
    let mut ceiling = Array2::<f32>::zeros((n_sites, nb));
    for i in 0..n_sites {
        for b in 0..nb {
            let col = true_rates.slice(ndarray::s![.., i, b]);
            let m = col.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = col.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n as f64;
            let noise = m / (unit * reps as f64);
            ceiling[[i, b]] = if var > 1e-9 {
                (var / (var + noise)) as f32
            } else {
                0.0
            };
        }
    }

    let trials: Vec<f32> = (0..reps * n)
        .into_par_iter()
        .flat_map_iter(|p| {
            let (r, j) = (p / n, p % n);
            let mut trng = Rng::new(derive_seed(&[config.seed, r as u64, j as u64, 0x5452]));
            let rates = true_rates.index_axis(Axis(0), j);
            rates
                .iter()
                .map(|&mu| (poisson(&mut trng, mu as f64 * unit) / unit) as f32)
                .collect::<Vec<f32>>()
        })
        .collect();
    let data = Array3::from_shape_vec((reps * n, n_sites, nb), trials)
        .map_err(|e| InsilicoError::Stimuli(format!("trial array: {e}")))?;

    let stimulus_id: Vec<String> = stimuli.meta.iter().map(|m| m.stimulus_id.clone()).collect();
    let mut presentations = Presentations::default();
    for r in 0..reps {
        for m in &stimuli.meta {
            presentations.stimulus_id.push(m.stimulus_id.clone());
            presentations.object_name.push(m.object_name.clone());
            presentations.repetition.push(r as u32);
        }
    }
    let neuroids = Neuroids {
        neuroid_id: sites.iter().map(|s| s.neuroid_id.clone()).collect(),
        region: sites
            .iter()
            .map(|s| s.region.as_str().to_string())
            .collect(),
    };
    let it_latency = {
        let l: Vec<f64> = sites
            .iter()
            .filter(|s| s.region == Region::IT)
            .map(|s| s.latency_ms)
            .collect();
        if l.is_empty() {
            105.0
        } else {
            l.iter().sum::<f64>() / l.len() as f64
        }
    };
    Ok(InsilicoRecording {
        assembly: Assembly {
            data,
            presentations,
            neuroids,
            bins,
        },
        true_rates,
        ceiling,
        stimulus_id,
        category: stimuli.meta.iter().map(|m| m.category_index).collect(),
        difficulty: diff,
        it_delay_ms: delay.iter().map(|&d| d as f32).collect(),
        reference_ost_ms: delay
            .iter()
            .map(|&d| (it_latency + d + TAU_TRANSIENT) as f32)
            .collect(),
        reference_dprime: vec![config.reference_dprime; n],
        sites,
        config: config.clone(),
    })
}

fn site(rng: &mut Rng, neuroid_id: String, region: Region, latency: (f64, f64)) -> SiteParams {
    SiteParams {
        neuroid_id,
        region,
        latency_ms: uniform(rng, latency.0, latency.1),
        baseline_hz: uniform(rng, 2.0, 10.0),
        onset_gain_hz: uniform(rng, 10.0, 30.0),
        selective_gain_hz: uniform(rng, 20.0, 60.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::{HvmConfig, ImageDims, U8Images};

    /// Forty 28×28 objects, four per class, with class-dependent shapes.
    pub(crate) fn toy_stimuli(per_level: [usize; 3], seed: u64) -> StimulusSet {
        let n = 40;
        let mut pixels = vec![0u8; n * 784];
        let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
        for (i, img) in pixels.chunks_exact_mut(784).enumerate() {
            let c = labels[i];
            let (h, w) = (3 + c, 10 - c / 2);
            for y in 14 - h..14 + h {
                for x in 14 - w / 2..14 + w / 2 + (i / 10) {
                    img[y * 28 + x] = 120 + (i * 3) as u8;
                }
            }
        }
        let names = (0..10).map(|c| format!("class{c}")).collect();
        let src = U8Images::new(ImageDims::new(1, 28, 28), pixels, labels, names).unwrap();
        let cfg = HvmConfig {
            categories: vec![0, 3, 5, 8],
            objects_per_category: 3,
            images_per_object_per_level: per_level,
            size_px: 32,
            seed,
        };
        StimulusSet::generate(&src, &cfg).unwrap()
    }

    fn small_config() -> InsilicoConfig {
        InsilicoConfig {
            v4_sites: 12,
            it_sites: 16,
            repetitions: 20,
            rate_scale: 1.0,
            reference_dprime: 2.0,
            seed: 3,
        }
    }

    #[test]
    fn deterministic_per_seed_with_brainscore_coords() {
        let stim = toy_stimuli([1, 2, 2], 1);
        let cfg = small_config();
        let a = generate(&stim, &cfg).unwrap();
        let b = generate(&stim, &cfg).unwrap();
        assert_eq!(a.assembly, b.assembly);
        assert_eq!(a.true_rates, b.true_rates);
        let c = generate(
            &stim,
            &InsilicoConfig {
                seed: 4,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(a.assembly.data, c.assembly.data);
        let n = stim.len();
        assert_eq!(a.assembly.num_presentations(), 20 * n);
        assert_eq!(a.assembly.num_neuroids(), 28);
        assert_eq!(a.assembly.num_bins(), 26);
        assert_eq!(a.assembly.bins[25].end_ms, 260.0);
        assert_eq!(a.assembly.neuroids.region[0], "V4");
        assert_eq!(a.assembly.neuroids.region[27], "IT");
        assert_eq!(a.assembly.presentations.repetition[n], 1);
        assert_eq!(
            a.assembly.presentations.stimulus_id[n],
            stim.meta[0].stimulus_id
        );
        assert!(a.assembly.data.iter().all(|v| v.is_finite() && *v >= 0.0));
    }

    #[test]
    fn latencies_and_image_dependent_timing() {
        let stim = toy_stimuli([2, 2, 2], 2);
        let rec = generate(&stim, &small_config()).unwrap();
        for (i, s) in rec.sites.iter().enumerate() {
            let lat_bin = (s.latency_ms / BIN_MS).floor() as usize;
            // Before the latency every image evokes the baseline; after it, rates rise.
            for j in 0..stim.len() {
                assert!((rec.true_rates[[j, i, lat_bin - 1]] as f64 - s.baseline_hz).abs() < 1e-3);
            }
            assert_eq!(rec.ceiling[[i, 0]], 0.0);
            let peak = (0..26)
                .map(|b| rec.true_rates[[0, i, b]])
                .fold(0.0, f32::max);
            assert!(peak as f64 > s.baseline_hz + 5.0);
            match s.region {
                Region::V4 => assert!((60.0..90.0).contains(&s.latency_ms)),
                Region::IT => assert!((90.0..120.0).contains(&s.latency_ms)),
            }
        }
        // Harder images get later IT selectivity and later reference OSTs.
        let mean_ost = |lvl: VariationLevel| {
            let v: Vec<f32> = stim
                .meta
                .iter()
                .zip(&rec.reference_ost_ms)
                .filter(|(m, _)| m.variation == lvl)
                .map(|(_, &o)| o)
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        assert!(mean_ost(VariationLevel::V0) + 15.0 < mean_ost(VariationLevel::V6));
        // The transient: the response peaks within the image's presentation and then decays.
        let (k_peak, k_late) = (kernel(TAU_TRANSIENT), kernel(160.0));
        assert!(k_peak > kernel(90.0) && k_late < 0.3 * kernel(90.0));
    }

    /// Split-half (even/odd repetitions) Pearson r over stimuli, Spearman–Brown corrected.
    fn split_half(asm: &Assembly, n: usize, reps: usize, i: usize, b: usize) -> f64 {
        let mut halves = [vec![0f64; n], vec![0f64; n]];
        for r in 0..reps {
            for j in 0..n {
                halves[r % 2][j] += asm.data[[r * n + j, i, b]] as f64;
            }
        }
        let r = pearson(&halves[0], &halves[1]);
        2.0 * r / (1.0 + r)
    }

    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn known_ceiling_matches_split_half_spearman_brown() {
        let stim = toy_stimuli([2, 4, 4], 3);
        let n = stim.len();
        for rate_scale in [0.3, 2.0] {
            let cfg = InsilicoConfig {
                rate_scale,
                ..small_config()
            };
            let rec = generate(&stim, &cfg).unwrap();
            // Bins where every site responds; earlier, sites straddle their latencies and a
            // median over a bimodal handful of sites is unstable.
            let mut diffs = Vec::new();
            for b in [13, 16, 19, 22] {
                for region in [Region::V4, Region::IT] {
                    let mut emp: Vec<f32> = Vec::new();
                    for (i, s) in rec.sites.iter().enumerate() {
                        if s.region == region {
                            let e = split_half(&rec.assembly, n, cfg.repetitions, i, b) as f32;
                            diffs.push(e - rec.ceiling[[i, b]]);
                            emp.push(e);
                        }
                    }
                    let emp = median(&mut emp).unwrap();
                    let known = rec.median_ceiling(region, b).unwrap();
                    assert!(
                        (emp - known).abs() < 0.12,
                        "{region:?} bin {b} scale {rate_scale}: split-half {emp} vs known {known}"
                    );
                }
            }
            let bias = diffs.iter().sum::<f32>() / diffs.len() as f32;
            assert!(
                bias.abs() < 0.04,
                "scale {rate_scale}: mean(split-half − known) = {bias}"
            );
        }
        // The rate scale really moves the ceiling.
        let lo = generate(
            &stim,
            &InsilicoConfig {
                rate_scale: 0.1,
                ..small_config()
            },
        )
        .unwrap();
        let hi = generate(
            &stim,
            &InsilicoConfig {
                rate_scale: 5.0,
                ..small_config()
            },
        )
        .unwrap();
        assert!(
            lo.median_ceiling(Region::IT, 15).unwrap() + 0.2
                < hi.median_ceiling(Region::IT, 15).unwrap()
        );
    }

    #[test]
    fn perfect_model_scores_one() {
        let stim = toy_stimuli([2, 4, 4], 4);
        let n = stim.len();
        let cfg = small_config();
        let rec = generate(&stim, &cfg).unwrap();
        let b = 15;
        let mut scores = Vec::new();
        for i in 0..rec.sites.len() {
            let c = rec.ceiling[[i, b]] as f64;
            if c < 0.05 {
                continue;
            }
            let truth: Vec<f64> = (0..n).map(|j| rec.true_rates[[j, i, b]] as f64).collect();
            let mut mean = vec![0f64; n];
            for r in 0..cfg.repetitions {
                for j in 0..n {
                    mean[j] += rec.assembly.data[[r * n + j, i, b]] as f64;
                }
            }
            let r = pearson(&truth, &mean);
            scores.push((r * r / c) as f32);
        }
        assert!(scores.len() > rec.sites.len() / 2);
        let m = median(&mut scores).unwrap();
        assert!(
            (m - 1.0).abs() < 0.15,
            "median ceiled score of the true rates: {m}"
        );
    }

    #[test]
    fn bad_configs_are_rejected() {
        let stim = toy_stimuli([1, 1, 1], 1);
        for bad in [
            InsilicoConfig {
                repetitions: 1,
                ..small_config()
            },
            InsilicoConfig {
                rate_scale: 0.0,
                ..small_config()
            },
            InsilicoConfig {
                v4_sites: 0,
                it_sites: 0,
                ..small_config()
            },
        ] {
            assert!(
                matches!(generate(&stim, &bad), Err(InsilicoError::Config(_))),
                "{bad:?}"
            );
        }
    }
}

/// End to end on the real Fashion-MNIST: `cargo test -p neurofit -- --ignored
/// real_fashion_mnist --nocapture` (about a minute on 2 cores; needs the data, SPEC §9).
#[cfg(test)]
mod real_data {
    use super::*;
    use crate::ost::{object_solution_times, OstOptions};
    use datasets::{FashionMnist, HvmConfig};

    #[test]
    #[ignore = "needs Fashion-MNIST on disk; slow"]
    fn real_fashion_mnist_recording_and_neural_ost() {
        let fm = FashionMnist::locate_and_load(None).unwrap();
        let cfg = HvmConfig {
            images_per_object_per_level: [2, 8, 8],
            ..HvmConfig::default()
        };
        let t0 = std::time::Instant::now();
        let stim = StimulusSet::generate(&fm.test, &cfg).unwrap();
        eprintln!("{} stimuli in {:.1?}", stim.len(), t0.elapsed());
        let t1 = std::time::Instant::now();
        let rec = generate(&stim, &InsilicoConfig::default()).unwrap();
        eprintln!(
            "recording {:?} in {:.1?}",
            rec.assembly.data.dim(),
            t1.elapsed()
        );
        for b in [7, 9, 11, 13, 15, 18, 22, 25] {
            eprintln!(
                "bin {:>3} ms: median ceiling V4 {:.3} IT {:.3}",
                b * 10,
                rec.median_ceiling(Region::V4, b).unwrap(),
                rec.median_ceiling(Region::IT, b).unwrap()
            );
        }
        // The OST of the generator's own trial-averaged IT sites follows its reference OSTs.
        let n = stim.len();
        let it: Vec<usize> = (0..rec.sites.len())
            .filter(|&i| rec.sites[i].region == Region::IT)
            .collect();
        let reps = rec.config.repetitions;
        let mut mean = Array3::<f32>::zeros((n, it.len(), rec.assembly.num_bins()));
        for r in 0..reps {
            for j in 0..n {
                for (k, &i) in it.iter().enumerate() {
                    for b in 0..rec.assembly.num_bins() {
                        mean[[j, k, b]] += rec.assembly.data[[r * n + j, i, b]] / reps as f32;
                    }
                }
            }
        }
        let t2 = std::time::Instant::now();
        let report = object_solution_times(
            mean.view(),
            &rec.category,
            &rec.reference_ost_ms,
            &rec.reference_dprime,
            &rec.assembly.bins,
            &OstOptions::default(),
        )
        .unwrap();
        eprintln!(
            "neural OST: Spearman {:.3} over {} images solved by both ({} by the decoder) in {:.1?}",
            report.spearman,
            report.solved_by_both,
            report.solved_by_model,
            t2.elapsed()
        );
        assert!(report.spearman > 0.3, "{}", report.spearman);
    }
}
