//! Object solution times (Kar et al. 2019; SPEC §8): when, image by image, a linear readout of
//! an area's activity reaches the accuracy a reference observer has on that image.
//!
//! Per time bin and per fold of a stratified 10-fold split over images (every image is held out
//! exactly once):
//! 1. features are standardised with the training images' mean and spread;
//! 2. a one-vs-rest least-squares classifier with ridge `λ` (one-hot targets, intercept) is fitted
//!    in closed form (primal or dual, whichever system is smaller), and its scores are turned into
//!    class probabilities by a softmax whose temperature minimises the training cross-entropy;
//! 3. held-out images get class probabilities `p`.
//!
//! Per-image d′ (Rajalingham et al.'s I1, as Kar et al.): for image `j` of class `c`, the hit rate
//! `HR_j = mean_{k≠c} p_jc / (p_jc + p_jk)` (binary choices against each distractor class) and the
//! false-alarm rate `FAR_c = mean` over images `i` of other classes of `p_ic / (p_ic + p_i,class(i))`;
//! `d′_j = Φ⁻¹(HR_j) − Φ⁻¹(FAR_c)`, rates clipped to `[0.005, 0.995]` (|d′| ≤ 5.15).
//!
//! The model OST of an image is the first bin where its d′ reaches the image's reference d′,
//! linearly interpolated between that bin and the one before (bins are placed at their centres);
//! an image never reaching it is unsolved (`NaN`). The score is the Spearman correlation between
//! model and reference OSTs over the images both solve.

use crate::assembly::TimeBin;
use ndarray::{Array2, ArrayView2, ArrayView3, Axis};
use seeded_rng::Rng;
use serde::{Deserialize, Serialize};

/// Why object solution times could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum OstError {
    /// The inputs disagree in size or are out of range (the message says which).
    #[error("object solution times: {0}")]
    Invalid(String),
}

/// How the d′ decoder behind object solution times is cross-validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OstOptions {
    /// Cross-validation folds over the images (stratified by class).
    pub folds: usize,
    /// Ridge penalty on the standardised features.
    pub ridge: f64,
    /// Seeds the folds.
    pub seed: u64,
}

impl Default for OstOptions {
    fn default() -> Self {
        OstOptions {
            folds: 10,
            ridge: 1.0,
            seed: 0,
        }
    }
}

/// Per-image d′ over time, the model's and the reference's solution times and how they agree.
#[derive(Clone, Debug, PartialEq)]
pub struct OstReport {
    /// Held-out d′, `[image, bin]`.
    pub dprime: Array2<f32>,
    /// Per image, ms; `NaN` where the threshold is never reached.
    pub model_ost_ms: Vec<f32>,
    /// Per image, the reference's (e.g. the monkeys') solution time in ms, as given; `NaN`:
    /// unsolved.
    pub reference_ost_ms: Vec<f32>,
    /// Spearman correlation over the images both solve (`NaN` with fewer than 3).
    pub spearman: f32,
    /// Images that both the model and the reference solve.
    pub solved_by_both: usize,
    /// Images that the model solves.
    pub solved_by_model: usize,
}

/// OSTs from `features` (`[image, feature, bin]`, finite), class `labels` (at least 2 images of
/// each class present), per-image `reference_ost_ms` (`NaN`: unsolved by the reference) and
/// per-image d′ `thresholds` (finite), over `bins`.
pub fn object_solution_times(
    features: ArrayView3<'_, f32>,
    labels: &[usize],
    reference_ost_ms: &[f32],
    thresholds: &[f32],
    bins: &[TimeBin],
    opts: &OstOptions,
) -> Result<OstReport, OstError> {
    let (n, p, nb) = features.dim();
    let bad = |m: String| Err(OstError::Invalid(m));
    if labels.len() != n || reference_ost_ms.len() != n || thresholds.len() != n {
        return bad(format!(
            "{n} images but {} labels, {} reference OSTs and {} thresholds",
            labels.len(),
            reference_ost_ms.len(),
            thresholds.len()
        ));
    }
    if bins.len() != nb {
        return bad(format!("{nb} feature bins but {} time bins", bins.len()));
    }
    if p == 0 || nb == 0 {
        return bad("features have no columns or no bins".into());
    }
    // A non-finite feature turns its bin's d′ to 0 and a NaN threshold is never reached: both
    // would pass as images the model does not solve.
    if let Some(j) = thresholds.iter().position(|t| !t.is_finite()) {
        return bad(format!(
            "image {j} has threshold d′ {}; expected a finite d′",
            thresholds[j]
        ));
    }
    if let Some(((j, f, b), v)) = features.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return bad(format!(
            "image {j} has feature {f} = {v} in bin {b}; expected finite features"
        ));
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let present = (0..classes).filter(|c| labels.contains(c)).count();
    if present < 2 {
        return bad("at least two classes are needed".into());
    }
    // A class's only image, when held out, has no image of its class to train on: it would be
    // reported unsolved whatever the features.
    if let Some(c) = (0..classes).find(|&c| labels.iter().filter(|&&l| l == c).count() == 1) {
        return bad(format!(
            "class {c} has 1 image; each class needs at least 2, one to train on while the other \
             is held out"
        ));
    }
    if opts.folds < 2 || opts.folds > n {
        return bad(format!(
            "folds {} must be in 2..={n} (the number of images)",
            opts.folds
        ));
    }
    if !(opts.ridge.is_finite() && opts.ridge > 0.0) {
        return bad(format!("ridge {} must be positive", opts.ridge));
    }
    let fold = stratified_folds(labels, opts.folds, opts.seed);
    let mut dprime = Array2::<f32>::zeros((n, nb));
    for b in 0..nb {
        let x = features.index_axis(Axis(2), b);
        let mut probs = Array2::<f64>::zeros((n, classes));
        for f in 0..opts.folds {
            let train: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
            let test: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
            if test.is_empty() {
                continue;
            }
            let pr = fit_predict(x, labels, classes, &train, &test, opts.ridge);
            for (r, &i) in test.iter().enumerate() {
                probs.row_mut(i).assign(&pr.row(r));
            }
        }
        let d = i1_dprime(&probs, labels, classes);
        dprime.column_mut(b).assign(&ndarray::Array1::from(d));
    }
    let centres: Vec<f64> = bins.iter().map(|b| 0.5 * (b.start_ms + b.end_ms)).collect();
    let model_ost_ms: Vec<f32> = (0..n)
        .map(|j| {
            crossing(
                dprime.row(j).as_slice().unwrap_or(&[]),
                thresholds[j],
                &centres,
            )
        })
        .collect();
    let (a, r): (Vec<f64>, Vec<f64>) = model_ost_ms
        .iter()
        .zip(reference_ost_ms)
        .filter(|(m, r)| m.is_finite() && r.is_finite())
        .map(|(&m, &r)| (m as f64, r as f64))
        .unzip();
    Ok(OstReport {
        spearman: if a.len() >= 3 {
            spearman(&a, &r) as f32
        } else {
            f32::NAN
        },
        solved_by_both: a.len(),
        solved_by_model: model_ost_ms.iter().filter(|v| v.is_finite()).count(),
        dprime,
        model_ost_ms,
        reference_ost_ms: reference_ost_ms.to_vec(),
    })
}

/// The first time `d` reaches `threshold`, interpolated between bin centres; `NaN` if never.
fn crossing(d: &[f32], threshold: f32, centres: &[f64]) -> f32 {
    for b in 0..d.len() {
        if d[b] >= threshold {
            if b == 0 {
                return centres[0] as f32;
            }
            let (d0, d1) = (d[b - 1] as f64, d[b] as f64);
            let frac = if d1 > d0 {
                ((threshold as f64 - d0) / (d1 - d0)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return (centres[b - 1] + frac * (centres[b] - centres[b - 1])) as f32;
        }
    }
    f32::NAN
}

/// Fold of each image: within each class, a seeded shuffle dealt round-robin.
fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ 0x4f53_5446);
    let mut fold = vec![0; labels.len()];
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut next = 0;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        rng.shuffle(&mut idx);
        for i in idx {
            fold[i] = next % folds;
            next += 1;
        }
    }
    fold
}

/// Class probabilities `[test, classes]` from a ridge least-squares classifier fitted on `train`.
fn fit_predict(
    x: ArrayView2<'_, f32>,
    labels: &[usize],
    classes: usize,
    train: &[usize],
    test: &[usize],
    ridge: f64,
) -> Array2<f64> {
    let p = x.ncols();
    let rows = |idx: &[usize]| -> Array2<f64> {
        Array2::from_shape_fn((idx.len(), p), |(r, c)| x[[idx[r], c]] as f64)
    };
    let (mut xt, mut xs) = (rows(train), rows(test));
    let nt = train.len() as f64;
    for c in 0..p {
        let m = xt.column(c).sum() / nt;
        let sd = (xt.column(c).iter().map(|v| (v - m) * (v - m)).sum::<f64>() / nt).sqrt();
        let sd = if sd > 1e-12 { sd } else { 1.0 };
        xt.column_mut(c).mapv_inplace(|v| (v - m) / sd);
        xs.column_mut(c).mapv_inplace(|v| (v - m) / sd);
    }
    let mut y = Array2::<f64>::zeros((train.len(), classes));
    for (r, &i) in train.iter().enumerate() {
        y[[r, labels[i]]] = 1.0;
    }
    let ymean = y
        .mean_axis(Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(classes));
    let yc = &y - &ymean.view().insert_axis(Axis(0));
    // Centred features need no intercept column; the target mean is the intercept.
    let w = if p <= train.len() {
        let mut g = xt.t().dot(&xt);
        g.diag_mut().mapv_inplace(|v| v + ridge);
        solve_spd(g, xt.t().dot(&yc))
    } else {
        let mut k = xt.dot(&xt.t());
        k.diag_mut().mapv_inplace(|v| v + ridge);
        xt.t().dot(&solve_spd(k, yc))
    };
    let scores_train = xt.dot(&w) + ymean.view().insert_axis(Axis(0));
    let tau = calibrate(&scores_train, train.iter().map(|&i| labels[i]));
    let scores = xs.dot(&w) + ymean.view().insert_axis(Axis(0));
    softmax(&scores, tau)
}

fn softmax(scores: &Array2<f64>, tau: f64) -> Array2<f64> {
    let mut out = scores.mapv(|s| s / tau);
    for mut row in out.rows_mut() {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    out
}

/// The softmax temperature (log-spaced grid) with the lowest cross-entropy on these scores.
fn calibrate(scores: &Array2<f64>, labels: impl Iterator<Item = usize> + Clone) -> f64 {
    let mut best = (f64::INFINITY, 1.0);
    for g in 0..48 {
        let tau = 10f64.powf(-3.0 + g as f64 * 5.0 / 47.0);
        let p = softmax(scores, tau);
        let ce: f64 = labels
            .clone()
            .enumerate()
            .map(|(r, c)| -(p[[r, c]].max(1e-12)).ln())
            .sum();
        if ce < best.0 {
            best = (ce, tau);
        }
    }
    best.1
}

/// Solves `a x = b` for symmetric positive-definite `a` by Cholesky.
fn solve_spd(a: Array2<f64>, b: Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = if i == j {
                s.max(1e-300).sqrt()
            } else {
                s / l[[j, j]]
            };
        }
    }
    let mut x = b;
    for mut col in x.columns_mut() {
        for i in 0..n {
            let mut s = col[i];
            for k in 0..i {
                s -= l[[i, k]] * col[k];
            }
            col[i] = s / l[[i, i]];
        }
        for i in (0..n).rev() {
            let mut s = col[i];
            for k in i + 1..n {
                s -= l[[k, i]] * col[k];
            }
            col[i] = s / l[[i, i]];
        }
    }
    x
}

/// Per-image I1 d′ from held-out class probabilities (module doc).
fn i1_dprime(probs: &Array2<f64>, labels: &[usize], classes: usize) -> Vec<f32> {
    let present: Vec<usize> = (0..classes).filter(|c| labels.contains(c)).collect();
    let choice = |i: usize, c: usize, k: usize| {
        let (a, b) = (probs[[i, c]], probs[[i, k]]);
        if a + b > 0.0 {
            a / (a + b)
        } else {
            0.5
        }
    };
    let far: Vec<f64> = (0..classes)
        .map(|c| {
            let v: Vec<f64> = (0..labels.len())
                .filter(|&i| labels[i] != c)
                .map(|i| choice(i, c, labels[i]))
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        })
        .collect();
    let clip = |r: f64| r.clamp(0.005, 0.995);
    (0..labels.len())
        .map(|j| {
            let c = labels[j];
            let hits: Vec<f64> = present
                .iter()
                .filter(|&&k| k != c)
                .map(|&k| choice(j, c, k))
                .collect();
            let hr = hits.iter().sum::<f64>() / hits.len().max(1) as f64;
            (inv_norm_cdf(clip(hr)) - inv_norm_cdf(clip(far[c]))) as f32
        })
        .collect()
}

/// Φ⁻¹ by Acklam's rational approximation (relative error below 1.2e-9).
pub(crate) fn inv_norm_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Ranks (1-based), ties averaged.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ: Pearson correlation of the ranks.
pub(crate) fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va > 0.0 && vb > 0.0 {
        cov / (va * vb).sqrt()
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn helpers_match_known_values() {
        assert!((inv_norm_cdf(0.975) - 1.959964).abs() < 1e-5);
        assert!((inv_norm_cdf(0.01) + 2.326348).abs() < 1e-5);
        assert!(inv_norm_cdf(0.5).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 100.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        let centres = [5.0, 15.0, 25.0];
        assert_eq!(crossing(&[0.0, 1.0, 3.0], 2.0, &centres), 20.0);
        assert!(crossing(&[0.0, 1.0, 1.5], 2.0, &centres).is_nan());
        let a = ndarray::arr2(&[[4.0, 2.0], [2.0, 3.0]]);
        let x = solve_spd(a.clone(), ndarray::arr2(&[[1.0], [2.0]]));
        let back = a.dot(&x);
        assert!((back[[0, 0]] - 1.0).abs() < 1e-12 && (back[[1, 0]] - 2.0).abs() < 1e-12);
    }

    /// Images whose class signal switches on at a planted bin; OSTs must follow the plant.
    #[test]
    fn planted_solution_times_are_recovered() {
        let (n, p, nb, classes) = (96, 12, 20, 4);
        let mut rng = Rng::new(5);
        let protos: Vec<Vec<f32>> = (0..classes)
            .map(|_| (0..p).map(|_| 2.5 * rng.normal() as f32).collect())
            .collect();
        let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
        // Planted onset bins 3..15.
        let onset: Vec<usize> = (0..n).map(|_| 3 + rng.below(13)).collect();
        let mut x = Array3::<f32>::zeros((n, p, nb));
        for j in 0..n {
            for b in 0..nb {
                let gain = ((b as f32 - onset[j] as f32 + 1.0) / 2.0).clamp(0.0, 1.0);
                for f in 0..p {
                    x[[j, f, b]] = gain * protos[labels[j]][f] + rng.normal() as f32;
                }
            }
        }
        let bins = TimeBin::uniform(0.0, 200.0, 10.0);
        let reference: Vec<f32> = onset.iter().map(|&o| o as f32 * 10.0 + 7.0).collect();
        // d′ is clipped at 5.15: the last image's threshold can never be reached.
        let mut thresholds = vec![3.0; n];
        thresholds[n - 1] = 6.0;
        let report = object_solution_times(
            x.view(),
            &labels,
            &reference,
            &thresholds,
            &bins,
            &OstOptions::default(),
        )
        .unwrap();
        assert!(
            report.model_ost_ms[n - 1].is_nan(),
            "the image with an unreachable threshold is unsolved"
        );
        assert!(
            report.solved_by_both >= n - 5,
            "{} solved",
            report.solved_by_both
        );
        assert!(report.spearman > 0.85, "Spearman {}", report.spearman);
        // Before any onset, d′ is near chance; late, it is high.
        let early = report.dprime.column(1).mean().unwrap();
        let late = report
            .dprime
            .column(nb - 1)
            .slice(ndarray::s![..n - 1])
            .mean()
            .unwrap();
        assert!(
            early.abs() < 0.7 && late > 3.0,
            "early {early}, late {late}"
        );
        // Solved images' OSTs lie near their planted onsets.
        let err: Vec<f32> = (0..n - 1)
            .filter(|&j| report.model_ost_ms[j].is_finite())
            .map(|j| (report.model_ost_ms[j] - reference[j]).abs())
            .collect();
        let med = crate::stats::nan_median(err.iter().map(|&e| f64::from(e))).unwrap();
        assert!(med < 15.0, "median |model − planted| = {med} ms");
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let mut x = Array3::<f32>::zeros((6, 2, 3));
        let bins = TimeBin::uniform(0.0, 30.0, 10.0);
        let labels = vec![0, 1, 0, 1, 0, 1];
        let r = vec![1.0; 6];
        let o = OstOptions {
            folds: 3,
            ..OstOptions::default()
        };
        assert!(object_solution_times(x.view(), &labels[..5], &r, &r, &bins, &o).is_err());
        assert!(object_solution_times(x.view(), &labels, &r, &r, &bins[..2], &o).is_err());
        assert!(object_solution_times(x.view(), &[0; 6], &r, &r, &bins, &o).is_err());
        let e = object_solution_times(x.view(), &[0, 1, 0, 1, 0, 2], &r, &r, &bins, &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("class 2 has 1 image"), "{e}");
        let big = OstOptions {
            folds: 7,
            ..o.clone()
        };
        assert!(object_solution_times(x.view(), &labels, &r, &r, &bins, &big).is_err());
        assert!(object_solution_times(x.view(), &labels, &r, &r, &bins, &o).is_ok());
        // A NaN threshold is never reached and a non-finite feature made its bin's d′ 0: both
        // passed as images the model does not solve.
        let mut t = r.clone();
        t[4] = f32::NAN;
        let e = object_solution_times(x.view(), &labels, &r, &t, &bins, &o).unwrap_err();
        assert!(e.to_string().contains("image 4"), "{e}");
        x[[2, 1, 0]] = f32::INFINITY;
        let e = object_solution_times(x.view(), &labels, &r, &r, &bins, &o).unwrap_err();
        assert!(e.to_string().contains("image 2"), "{e}");
    }
}
