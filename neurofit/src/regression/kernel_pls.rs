//! PLS in its dual (kernel) form: the fit of [`super::pls::fit`] — the same iterates, components and
//! predictions, so scikit-learn's to rounding — computed from the Gram matrix of the samples instead
//! of from the features, for every cross-validation split of a feature set at once.
//!
//! Why: a neural fit has far more features (10⁴–10⁵ model units) than training stimuli (~2,300), and
//! the primal algorithm reads and deflates the whole `[sample, feature]` matrix once per component.
//! Everything PLS computes depends on `X` only through `X Xᵀ`, so one Gram matrix `G` of all stimuli
//! per feature set serves every split, and a component then costs `samples²` instead of
//! `samples × features`.
//!
//! The dual quantities of one split, with `K = X Xᵀ` (its training samples, centred), `Yₖ` the
//! deflated targets and `Pₖ = I − Σⱼ tⱼtⱼᵀ/tⱼᵀtⱼ` the projection that deflates `X` (`Xₖ = Pₖ X`,
//! `Yₖ = Pₖ Y`):
//! - the cross-covariance `Cₖ = Xₖᵀ Yₖ` is never formed; its power iteration runs on
//!   `Mₖ = CₖᵀCₖ = Yₖᵀ K Yₖ` `[target, target]`, updated by rank-two terms as `Y` deflates;
//! - x weights `w = Cₖ u / ‖Cₖ u‖ = Xᵀ a` with `a = Yₖ u / ‖Cₖ u‖`; scores `t = Pₖ K a`;
//!   x loadings `p = Xᵀ t / tᵀt`;
//! - `coef = W (PᵀW)⁺ Qᵀ = Xᵀ A (PᵀW)⁺ Qᵀ`, so predictions are `(K_test A) (PᵀW)⁺ Qᵀ + ȳ` with
//!   `(PᵀW)ᵢⱼ = tᵢᵀ K aⱼ / tᵢᵀtᵢ`.
//!
//! What the splits share, so that a split costs little more than its `samples × components`
//! vectors (no split's `[train, train]` or `[train, target]` matrix is ever formed):
//! - with `R` a split's training samples, `E` its test samples, `H` the centring on `R` and `v̂`
//!   the centred `H v` of a vector on `R` spread over all samples (zero on `E`):
//!   `K v = H (G v̂)[R]` and `K_test v = (G v̂)[E] − mean_R (G v̂)`, so the splits run in lockstep,
//!   component by component,
//!   and each product with `K` is one product of `G` with a thin matrix holding every split's
//!   vector (at these sizes reading `G` costs more than multiplying by it);
//! - the scores are orthogonal, so `Yₖ = Y₀ − Σᵢ tᵢqᵢᵀ`: `Yₖ u`, `Yₖᵀ t` and `Yₖᵀ K t` come from
//!   products with the targets of all samples, centred once, shared by the splits;
//! - `M₀ = Y₀ᵀ G[R,R] Y₀` from `G Ỹ` (all samples, computed once) less the test samples' part.
//!
//! scikit-learn zeroes a target once its deflated column is within `10 ε` of zero everywhere; the
//! deflated columns are not formed here, so a column is rebuilt and tested only when its remaining
//! sum of squares (tracked from the loadings) says it might be that small.
//!
//! scikit-learn flips the sign of each x weight so its largest entry is positive; that flips `w`,
//! `t`, `p` and `q` together and leaves `coef` unchanged, so it is skipped here (there is no `w`).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use super::pinv;
use super::pls::{components_to_fit, no_component, stack_columns};
use crate::cv::Split;
use crate::error::{NeurofitError, Result};
use crate::linalg;

/// scikit-learn's defaults for the inner power iteration (as in [`super::pls`]).
const MAX_ITER: usize = 500;
const TOL: f64 = 1e-6;

/// A target column whose remaining sum of squares, tracked by subtraction, is below this fraction
/// of its starting one is rebuilt and tested exactly: the subtraction's rounding error is about
/// `samples × ε` of the start, far below this.
const RECHECK_FRACTION: f64 = 1e-9;

/// Features converted to f64 and centred at a time for [`centred_gram`]: a chunk (10 MiB for
/// 2,560 samples) stays in cache between its conversion and its product, and the f64 copy of the
/// whole feature matrix is never made.
const GRAM_CHUNK: usize = 512;

/// The Gram matrix `Xc Xcᵀ` `[sample, sample]` of `x` `[sample, feature]` (f32 or f64, any
/// layout) after subtracting the mean over all its samples, in f64, or an error naming the first
/// non-finite feature.
///
/// The mean subtracted here cancels in every split's own centring; it is there because features far
/// from zero (non-negative activations) would otherwise leave large entries that the centring
/// cancels, losing digits.
pub fn centred_gram<A: Copy + Into<f64>>(x: ArrayView2<'_, A>) -> Result<Array2<f64>> {
    let (n, p) = x.dim();
    if n == 0 {
        return Err(NeurofitError::Regression(
            "Gram matrix of no samples".into(),
        ));
    }
    let mut g = Array2::zeros((n, n));
    let mut chunk = Array2::<f64>::zeros((n, GRAM_CHUNK.min(p)));
    for f0 in (0..p).step_by(GRAM_CHUNK) {
        let width = GRAM_CHUNK.min(p - f0);
        let mut c = chunk.slice_mut(ndarray::s![.., ..width]);
        c.zip_mut_with(&x.slice(ndarray::s![.., f0..f0 + width]), |o, &v| {
            *o = v.into()
        });
        if let Some(bad) = c.iter().position(|v| !v.is_finite()) {
            return Err(NeurofitError::Regression(format!(
                "feature {} of sample {} is not finite",
                f0 + bad % width,
                bad / width
            )));
        }
        let mut mean = Array1::<f64>::zeros(width);
        for row in c.rows() {
            mean += &row;
        }
        mean /= n as f64;
        c -= &mean;
        linalg::syrk_lower(c.view(), if f0 == 0 { 0.0 } else { 1.0 }, g.view_mut());
    }
    linalg::mirror_lower(g.view_mut());
    Ok(g)
}

/// Fit PLS with `components` components on each split's training samples and predict its test
/// samples, from the centred Gram `g` `[sample, sample]` of all samples ([`centred_gram`]) and the
/// targets `y` `[sample, target]` of all samples (only training rows reach a split's fit).
/// `features` is the number of columns of the `X` behind `g` (it caps the components as in
/// [`super::pls::fit`]). Returns one `[test sample, target]` matrix per split.
pub fn fit_predict_splits(
    g: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    splits: &[&Split],
    features: usize,
    components: usize,
) -> Result<Vec<Array2<f64>>> {
    let n_all = g.nrows();
    if g.ncols() != n_all || y.nrows() != n_all {
        return Err(NeurofitError::shape(
            "kernel PLS inputs",
            format!(
                "G {}×{}, Y {}×{}",
                g.nrows(),
                g.ncols(),
                y.nrows(),
                y.ncols()
            ),
            "a square Gram matrix and one row of Y per sample".to_string(),
        ));
    }
    for s in splits {
        if let Some(&bad) = s.train.iter().chain(&s.test).find(|&&i| i >= n_all) {
            return Err(NeurofitError::Regression(format!(
                "split names sample {bad}, but the Gram matrix has {n_all}"
            )));
        }
    }
    if splits.is_empty() {
        return Ok(Vec::new());
    }
    fit_splits(g, y, splits, features, components)?
        .into_iter()
        .map(SplitFit::predict)
        .collect()
}

/// The lockstep fit of every split (inputs checked by [`fit_predict_splits`]).
fn fit_splits<'s>(
    g: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    splits: &[&'s Split],
    features: usize,
    components: usize,
) -> Result<Vec<SplitFit<'s>>> {
    let shared = Shared::new(g, y)?;
    let mut fits: Vec<SplitFit<'_>> = splits
        .par_iter()
        .map(|s| SplitFit::new(&shared, s, features, components))
        .collect::<Result<_>>()?;
    loop {
        // Each split's next direction (the power iteration is the per-split work).
        let directions: Vec<Option<(Array1<f64>, f64)>> =
            fits.par_iter_mut().map(|f| f.direction(&shared)).collect();
        let active: Vec<(usize, Array1<f64>, f64)> = directions
            .into_iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|(u, c)| (i, u, c)))
            .collect();
        if active.is_empty() {
            break;
        }
        // a = Yₖ u / ‖Cₖ u‖ for every split from one product with the shared targets.
        let u_all =
            Array2::from_shape_fn((shared.yc.ncols(), active.len()), |(j, c)| active[c].1[j]);
        let yu = linalg::matmul(shared.yc.view(), u_all.view());
        let weights: Vec<Array1<f64>> = active
            .iter()
            .enumerate()
            .map(|(c, (i, u, c_norm))| fits[*i].weights(yu.column(c), u, *c_norm))
            .collect();
        let ids: Vec<usize> = active.iter().map(|a| a.0).collect();
        let k_weights = apply_kernels(&shared, &fits, &ids, &weights);
        // Scores t = Pₖ K a; a split whose score vanishes stops here.
        let mut scored = Vec::with_capacity(ids.len());
        for ((&i, a), (ka, ka_test)) in ids.iter().zip(weights).zip(k_weights) {
            if let Some((t, ss)) = fits[i].score(ka) {
                scored.push((i, a, ka_test, t, ss));
            }
        }
        if scored.is_empty() {
            continue;
        }
        let ids: Vec<usize> = scored.iter().map(|s| s.0).collect();
        let scores: Vec<Array1<f64>> = scored.iter().map(|s| s.3.clone()).collect();
        let k_scores: Vec<Array1<f64>> = apply_kernels(&shared, &fits, &ids, &scores)
            .into_iter()
            .map(|(kt, _)| kt)
            .collect();
        // Ỹᵀ t and Ỹᵀ K t for every split from one product with the shared targets.
        let mut spread = Array2::zeros((g.nrows(), 2 * ids.len()));
        for (c, (&i, kt)) in ids.iter().zip(&k_scores).enumerate() {
            for (r, &s) in fits[i].train.iter().enumerate() {
                spread[[s, 2 * c]] = scores[c][r];
                spread[[s, 2 * c + 1]] = kt[r];
            }
        }
        let yt = linalg::matmul(shared.yc.t(), spread.view());
        for (c, ((i, a, ka_test, t, ss), kt)) in scored.into_iter().zip(k_scores).enumerate() {
            fits[i].accept(Component {
                y0t: yt.column(2 * c),
                y0kt: yt.column(2 * c + 1),
                a,
                ka_test,
                t,
                kt,
                ss,
            });
        }
    }
    Ok(fits)
}

/// What every split of one call reads: the Gram matrix and the targets of all samples.
struct Shared<'g, 'y> {
    g: ArrayView2<'g, f64>,
    y: ArrayView2<'y, f64>,
    /// `Ỹ = Y − ȳ` over all samples `[sample, target]`.
    yc: Array2<f64>,
    y_mean: Array1<f64>,
    /// `G Ỹ` `[sample, target]`.
    g_yc: Array2<f64>,
    /// `G 1` (zero but for rounding when `G` is centred), `Ỹᵀ G Ỹ`, `Ỹᵀ G 1` and `1ᵀ G 1`.
    g_ones: Array1<f64>,
    yc_g_yc: Array2<f64>,
    yc_g_ones: Array1<f64>,
    ones_g_ones: f64,
}

impl<'g, 'y> Shared<'g, 'y> {
    fn new(g: ArrayView2<'g, f64>, y: ArrayView2<'y, f64>) -> Result<Self> {
        let y_mean = y
            .mean_axis(Axis(0))
            .ok_or_else(|| NeurofitError::Regression("empty Y".into()))?;
        let yc = &y - &y_mean;
        let g_yc = linalg::matmul(g, yc.view());
        let g_ones = g.sum_axis(Axis(1));
        let yc_g_yc = linalg::matmul(yc.t(), g_yc.view());
        let yc_g_ones = linalg::matvec(yc.t(), g_ones.view());
        let ones_g_ones = g_ones.sum();
        Ok(Shared {
            g,
            y,
            yc,
            y_mean,
            g_yc,
            g_ones,
            yc_g_yc,
            yc_g_ones,
            ones_g_ones,
        })
    }
}

/// One accepted component of a split, with what the shared products gave for it.
struct Component<'v> {
    /// `Ỹᵀ t̂` and `Ỹᵀ (K t)^` (spread over all samples).
    y0t: ArrayView1<'v, f64>,
    y0kt: ArrayView1<'v, f64>,
    a: Array1<f64>,
    ka_test: Array1<f64>,
    t: Array1<f64>,
    kt: Array1<f64>,
    ss: f64,
}

/// The state of one split's fit between components.
struct SplitFit<'s> {
    train: &'s [usize],
    test: &'s [usize],
    /// Components this split extracts at most.
    k_max: usize,
    /// Training mean of the targets, and its difference from the all-sample mean.
    y_mean: Array1<f64>,
    delta: Array1<f64>,
    /// `Mₖ = Yₖᵀ K Yₖ`.
    m: Array2<f64>,
    /// Per target: `‖Y₀ⱼ‖²` and the part of it the components so far explain (`Σ tᵀt qⱼ²`).
    y0_ss: Array1<f64>,
    explained: Array1<f64>,
    /// Targets scikit-learn has zeroed (explained to rounding).
    zeroed: Vec<bool>,
    /// Per component: `a`, `K_test a`, `t`, `K t`, `tᵀt`, y loadings `q`.
    a: Vec<Array1<f64>>,
    ka_test: Vec<Array1<f64>>,
    t: Vec<Array1<f64>>,
    kt: Vec<Array1<f64>>,
    ss: Vec<f64>,
    q: Vec<Array1<f64>>,
    done: bool,
}

impl<'s> SplitFit<'s> {
    fn new(
        shared: &Shared<'_, '_>,
        split: &'s Split,
        features: usize,
        components: usize,
    ) -> Result<Self> {
        let (train, test) = (&split.train[..], &split.test[..]);
        let q = shared.yc.ncols();
        let k_max = components_to_fit(train.len(), features, q, components)?;
        let y_mean = shared
            .y
            .select(Axis(0), train)
            .mean_axis(Axis(0))
            .ok_or_else(|| NeurofitError::Regression("a split with no training samples".into()))?;
        let delta = &y_mean - &shared.y_mean;
        // Per target: ‖Y₀ⱼ‖² and whether Y₀ⱼ is within 10 ε of zero everywhere.
        let mut y0_ss = Array1::<f64>::zeros(q);
        let mut y0_max = Array1::<f64>::zeros(q);
        for &s in train {
            for (j, &v) in shared.y.row(s).iter().enumerate() {
                let c = v - y_mean[j];
                y0_ss[j] += c * c;
                y0_max[j] = y0_max[j].max(c.abs());
            }
        }
        let zeroed: Vec<bool> = y0_max.iter().map(|&m| m < 10.0 * f64::EPSILON).collect();
        let mut m = initial_m(shared, test, &delta);
        for (j, _) in zeroed.iter().enumerate().filter(|(_, &z)| z) {
            m.column_mut(j).fill(0.0);
            m.row_mut(j).fill(0.0);
        }
        Ok(SplitFit {
            train,
            test,
            k_max,
            y_mean,
            delta,
            m,
            y0_ss,
            explained: Array1::zeros(q),
            zeroed,
            a: Vec::with_capacity(k_max),
            ka_test: Vec::with_capacity(k_max),
            t: Vec::with_capacity(k_max),
            kt: Vec::with_capacity(k_max),
            ss: Vec::with_capacity(k_max),
            q: Vec::with_capacity(k_max),
            done: false,
        })
    }

    /// The next component's y-weights direction `u` and `‖Cₖ u‖`, or `None` once the split is done.
    fn direction(&mut self, shared: &Shared<'_, '_>) -> Option<(Array1<f64>, f64)> {
        if self.done || self.ss.len() >= self.k_max {
            self.done = true;
            return None;
        }
        self.zero_explained_targets(shared);
        let Some(j0) = self.zeroed.iter().position(|&z| !z) else {
            self.done = true;
            return None;
        };
        let u = power_iteration(self.m.view(), j0);
        let c_norm2 = u.dot(&linalg::matvec(self.m.view(), u.view()));
        if c_norm2 <= 0.0 || !c_norm2.is_finite() {
            self.done = true;
            return None;
        }
        Some((u, c_norm2.sqrt() + f64::EPSILON))
    }

    /// As scikit-learn (and the primal fit): targets whose deflated column is within `10 ε` of zero
    /// are zeroed. Only columns whose tracked sum of squares has (nearly) vanished are rebuilt.
    fn zero_explained_targets(&mut self, shared: &Shared<'_, '_>) {
        if self.t.is_empty() {
            return;
        }
        let n = self.train.len() as f64;
        let tiny = 10.0 * f64::EPSILON;
        for j in 0..self.zeroed.len() {
            let left = self.y0_ss[j] - self.explained[j];
            if self.zeroed[j] || left > RECHECK_FRACTION * self.y0_ss[j] + n * tiny * tiny {
                continue;
            }
            // Yₖ's column j, deflated component by component as the primal fit does.
            let mut col: Array1<f64> = self
                .train
                .iter()
                .map(|&s| shared.y[[s, j]] - self.y_mean[j])
                .collect();
            for (t, q) in self.t.iter().zip(&self.q) {
                col.scaled_add(-q[j], t);
            }
            if col.iter().all(|v| v.abs() < tiny) {
                self.zeroed[j] = true;
                self.m.column_mut(j).fill(0.0);
                self.m.row_mut(j).fill(0.0);
            }
        }
    }

    /// `a = Yₖ u / ‖Cₖ u‖` from `Ỹ u` (all samples): `Yₖ u = (Ỹ u)[R] − δᵀu − Σᵢ tᵢ (qᵢᵀu)`.
    fn weights(&self, yu: ArrayView1<'_, f64>, u: &Array1<f64>, c_norm: f64) -> Array1<f64> {
        let du = self.delta.dot(u);
        let mut v: Array1<f64> = self.train.iter().map(|&s| yu[s] - du).collect();
        for (t, q) in self.t.iter().zip(&self.q) {
            v.scaled_add(-q.dot(u), t);
        }
        v / c_norm
    }

    /// `t = Pₖ K a` (given `K a`) and `tᵀt`, or `None` (the split is done) when it vanishes.
    fn score(&mut self, mut t: Array1<f64>) -> Option<(Array1<f64>, f64)> {
        for (tj, &ssj) in self.t.iter().zip(&self.ss) {
            let c = tj.dot(&t) / ssj;
            t.scaled_add(-c, tj);
        }
        let ss = t.dot(&t);
        if ss <= 0.0 || !ss.is_finite() {
            self.done = true;
            return None;
        }
        Some((t, ss))
    }

    /// Deflates by the component: the y loadings `q = Yₖᵀ t / tᵀt` and
    /// `Mₖ₊₁ = Mₖ − b qᵀ − q bᵀ + (tᵀKt) q qᵀ` with `b = Yₖᵀ K t`, for `Yₖ₊₁ = Yₖ − t qᵀ`.
    fn accept(&mut self, c: Component<'_>) {
        let sum_t = c.t.sum();
        let sum_kt = c.kt.sum();
        // Yₖᵀ v = Y₀ᵀ v − Σᵢ qᵢ (tᵢᵀ v), and Y₀ᵀ v = Ỹ[R]ᵀ v − δ (1ᵀ v).
        let mut y_load = &c.y0t - &(&self.delta * sum_t);
        let mut b = &c.y0kt - &(&self.delta * sum_kt);
        for (ti, qi) in self.t.iter().zip(&self.q) {
            y_load.scaled_add(-ti.dot(&c.t), qi);
            b.scaled_add(-ti.dot(&c.kt), qi);
        }
        y_load /= c.ss;
        for (j, _) in self.zeroed.iter().enumerate().filter(|(_, &z)| z) {
            y_load[j] = 0.0;
            b[j] = 0.0;
        }
        // −b qᵀ − q bᵀ + (tᵀKt) q qᵀ = −r qᵀ − q rᵀ with r = b − (tᵀKt / 2) q.
        let r = &b - &(&y_load * (0.5 * c.t.dot(&c.kt)));
        for (mut row, (&ri, &qi)) in self.m.outer_iter_mut().zip(r.iter().zip(&y_load)) {
            row.scaled_add(-ri, &y_load);
            row.scaled_add(-qi, &r);
        }
        self.explained
            .zip_mut_with(&y_load, |e, &qj| *e += c.ss * qj * qj);
        self.a.push(c.a);
        self.ka_test.push(c.ka_test);
        self.t.push(c.t);
        self.kt.push(c.kt);
        self.ss.push(c.ss);
        self.q.push(y_load);
    }

    /// `(K_test A) (PᵀW)⁺ Qᵀ + ȳ`.
    fn predict(self) -> Result<Array2<f64>> {
        let c = self.ss.len();
        if c == 0 {
            return Err(no_component());
        }
        // (PᵀW)ᵢⱼ = pᵢ · wⱼ = tᵢᵀ K aⱼ / tᵢᵀtᵢ
        let ptw = Array2::from_shape_fn((c, c), |(i, j)| self.kt[i].dot(&self.a[j]) / self.ss[i]);
        let ka_test = stack_columns(&self.ka_test, self.test.len());
        let q_mat = stack_columns(&self.q, self.y_mean.len());
        let rotated = linalg::matmul(ka_test.view(), pinv(ptw.view())?.view());
        Ok(linalg::matmul(rotated.view(), q_mat.t()) + &self.y_mean)
    }
}

/// `M₀ = Y₀ᵀ K Y₀ = Ŷ₀ᵀ G Ŷ₀` of the split testing on `test`, with `Ŷ₀` its centred training
/// targets spread over all samples (zero on the test samples), from the shared products: with
/// `F = Ỹ − 1δᵀ` and `Z` the test rows of `F` (zero elsewhere), `Ŷ₀ = F − Z`, so
/// `M₀ = FᵀGF − ZᵀGF − (ZᵀGF)ᵀ + ZᵀGZ`, where only `FᵀGF` involves every sample and it expands
/// into the shared `ỸᵀGỸ`, `Ỹᵀ(G1)` and `1ᵀG1`.
fn initial_m(shared: &Shared<'_, '_>, test: &[usize], delta: &Array1<f64>) -> Array2<f64> {
    fn col(v: &Array1<f64>) -> ArrayView2<'_, f64> {
        v.view().insert_axis(Axis(1))
    }
    fn row(v: &Array1<f64>) -> ArrayView2<'_, f64> {
        v.view().insert_axis(Axis(0))
    }
    // FᵀGF = ỸᵀGỸ − (Ỹᵀg) δᵀ − δ (Ỹᵀg)ᵀ + (1ᵀg) δδᵀ with g = G 1.
    let mut m = shared.yc_g_yc.clone();
    linalg::gemm_into(-1.0, col(&shared.yc_g_ones), row(delta), 1.0, m.view_mut());
    linalg::gemm_into(-1.0, col(delta), row(&shared.yc_g_ones), 1.0, m.view_mut());
    linalg::gemm_into(
        shared.ones_g_ones,
        col(delta),
        row(delta),
        1.0,
        m.view_mut(),
    );
    // (GF)[E] = (GỸ)[E] − g[E] δᵀ, and Z[E] = Ỹ[E] − 1δᵀ.
    let mut gf_test = shared.g_yc.select(Axis(0), test);
    for (mut r, &s) in gf_test.outer_iter_mut().zip(test) {
        r.scaled_add(-shared.g_ones[s], delta);
    }
    let z = shared.yc.select(Axis(0), test) - delta;
    let zt_gf = linalg::matmul(z.t(), gf_test.view());
    m -= &zt_gf;
    m -= &zt_gf.t();
    let g_tt = Array2::from_shape_fn((test.len(), test.len()), |(a, b)| {
        shared.g[[test[a], test[b]]]
    });
    let g_z = linalg::matmul(g_tt.view(), z.view());
    linalg::gemm_into(1.0, z.t(), g_z.view(), 1.0, m.view_mut());
    m
}

/// `(K v, K_test v)` of split `ids[c]` for each `vs[c]` (on the split's training samples), from
/// one product of the shared Gram matrix with all of them.
fn apply_kernels(
    shared: &Shared<'_, '_>,
    fits: &[SplitFit<'_>],
    ids: &[usize],
    vs: &[Array1<f64>],
) -> Vec<(Array1<f64>, Array1<f64>)> {
    let n_all = shared.g.nrows();
    // Ĥv: centred on the split's training samples, zero elsewhere.
    let mut spread = Array2::zeros((n_all, ids.len()));
    for (c, (&i, v)) in ids.iter().zip(vs).enumerate() {
        let mean = v.mean().unwrap_or(0.0);
        for (r, &s) in fits[i].train.iter().enumerate() {
            spread[[s, c]] = v[r] - mean;
        }
    }
    let w = linalg::matmul(shared.g, spread.view());
    ids.iter()
        .enumerate()
        .map(|(c, &i)| {
            let (train, test) = (fits[i].train, fits[i].test);
            let col = w.column(c);
            let mean = train.iter().map(|&s| col[s]).sum::<f64>() / train.len() as f64;
            (
                train.iter().map(|&s| col[s] - mean).collect(),
                test.iter().map(|&s| col[s] - mean).collect(),
            )
        })
        .collect()
}

/// scikit-learn's power iteration for the first singular vectors of `Cₖ`, run on `Mₖ = CₖᵀCₖ`:
/// its `y_weights` iterate `u` starts at the first non-zero target `j0` and moves to
/// `M u / ‖M u‖`; its x weights are `C u / ‖C u‖`, and their change between iterations, which it
/// tests against `TOL`, is `2 − 2 uᵢᵀ M uᵢ₋₁ / (‖C uᵢ‖ ‖C uᵢ₋₁‖)`. Returns the last `u` (the x
/// weights' direction).
fn power_iteration(m: ArrayView2<'_, f64>, j0: usize) -> Array1<f64> {
    let eps = f64::EPSILON;
    let mut u = Array1::zeros(m.nrows());
    u[j0] = 1.0;
    // (u, ‖C u‖) of the previous iteration.
    let mut prev: Option<(Array1<f64>, f64)> = None;
    for _ in 0..MAX_ITER {
        let mu = linalg::matvec(m, u.view());
        let c_norm = u.dot(&mu).max(0.0).sqrt() + eps;
        let converged = match &prev {
            // scikit-learn starts its old x weights at the scalar 100: the first test never passes.
            None => false,
            Some((u_old, c_old)) => {
                let cos = u_old.dot(&mu) / (c_norm * c_old);
                let d2 = (1.0 - cos) * 2.0;
                d2 < TOL
            }
        };
        if converged || m.nrows() == 1 {
            break;
        }
        let y_w = &mu / (mu.dot(&mu).sqrt() + eps);
        prev = Some((std::mem::replace(&mut u, y_w), c_norm));
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regression::pls;
    use seeded_rng::Rng;

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut rng = Rng::new(seed);
        Array2::from_shape_simple_fn((rows, cols), || rng.normal())
    }

    fn max_rel_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// More features than samples (the case the dual form is for), targets partly explained by X.
    fn wide_problem(seed: u64) -> (Array2<f64>, Array2<f64>) {
        let x = random(60, 150, seed) + 3.0;
        let w = random(150, 7, seed + 1);
        let y = x.dot(&w) * 0.1 + random(60, 7, seed + 2) + 4.0;
        (x, y)
    }

    /// Every sixth sample held out, starting at `offset`.
    fn split(n: usize, offset: usize) -> Split {
        let (test, train) = (0..n).partition(|i| i % 6 == offset);
        Split { train, test }
    }

    fn primal(x: &Array2<f64>, y: &Array2<f64>, s: &Split, comps: usize) -> Array2<f64> {
        pls::fit(
            x.select(Axis(0), &s.train).view(),
            y.select(Axis(0), &s.train).view(),
            comps,
        )
        .unwrap()
        .predict(x.select(Axis(0), &s.test).view())
        .unwrap()
    }

    #[test]
    fn every_split_matches_its_own_primal_fit() {
        let (x, y) = wide_problem(1);
        let splits: Vec<Split> = (0..6).map(|o| split(60, o)).collect();
        let refs: Vec<&Split> = splits.iter().collect();
        let g = centred_gram(x.view()).unwrap();
        for comps in [1, 5, 25, 200] {
            let dual = fit_predict_splits(g.view(), y.view(), &refs, 150, comps).unwrap();
            for (s, pred) in splits.iter().zip(&dual) {
                let d = max_rel_diff(pred, &primal(&x, &y, s, comps));
                assert!(d < 1e-8, "{comps} components: relative difference {d:e}");
            }
        }
    }

    #[test]
    fn matches_the_primal_fit_with_one_target_and_with_few_features() {
        let (x, y) = wide_problem(7);
        let x = x.slice(ndarray::s![.., ..20]).to_owned();
        let y1 = y.slice(ndarray::s![.., ..1]).to_owned();
        let s = Split {
            train: (0..50).collect(),
            test: (50..60).collect(),
        };
        let g = centred_gram(x.view()).unwrap();
        for yy in [&y1, &y] {
            let dual = fit_predict_splits(g.view(), yy.view(), &[&s], 20, 25).unwrap();
            let d = max_rel_diff(&dual[0], &primal(&x, yy, &s, 25));
            assert!(
                d < 1e-8,
                "{} targets: relative difference {d:e}",
                yy.ncols()
            );
        }
    }

    #[test]
    fn test_targets_do_not_reach_the_fit() {
        let (x, mut y) = wide_problem(3);
        let s = split(60, 2);
        let g = centred_gram(x.view()).unwrap();
        let before = fit_predict_splits(g.view(), y.view(), &[&s], 150, 10).unwrap();
        // The shared products include the test rows and subtract them again, so they still reach
        // the fit through rounding, which grows with their size: here ten times the others.
        for &i in &s.test {
            y.row_mut(i).mapv_inplace(|v| 10.0 * v - 7.0);
        }
        let after = fit_predict_splits(g.view(), y.view(), &[&s], 150, 10).unwrap();
        let d = max_rel_diff(&after[0], &before[0]);
        assert!(d < 1e-12, "relative difference {d:e}");
    }

    #[test]
    fn constant_and_fully_explained_targets_are_zeroed_as_in_the_primal_fit() {
        // On the training samples X has orthogonal, centred columns of distinct norms. Target 0
        // is constant (zeroed before the first component); target 1 is X's first column, which
        // the first component explains exactly (zeroed before the second); target 2 is the third
        // column plus noise orthogonal to X, never explained.
        let (n_train, p) = (50, 5);
        let mut z = random(n_train, p + 1, 13);
        for j in 0..=p {
            let mean = z.column(j).mean().unwrap();
            z.column_mut(j).mapv_inplace(|v| v - mean);
            for i in 0..j {
                let (done, mut rest) = z.view_mut().split_at(Axis(1), j);
                let qi = done.column(i);
                let c = qi.dot(&rest.column(0)) / qi.dot(&qi);
                rest.column_mut(0).scaled_add(-c, &qi);
            }
            let norm = z.column(j).dot(&z.column(j)).sqrt();
            z.column_mut(j)
                .mapv_inplace(|v| v / norm * (p + 1 - j) as f64);
        }
        let mut x = random(60, p, 14);
        x.slice_mut(ndarray::s![..n_train, ..])
            .assign(&z.slice(ndarray::s![.., ..p]));
        let mut y = random(60, 3, 15);
        y.column_mut(0).fill(2.5);
        y.slice_mut(ndarray::s![..n_train, 1]).assign(&z.column(0));
        let noisy = &z.column(2) + &(&z.column(p) * 0.5);
        y.slice_mut(ndarray::s![..n_train, 2]).assign(&noisy);
        let s = Split {
            train: (0..n_train).collect(),
            test: (n_train..60).collect(),
        };
        let g = centred_gram(x.view()).unwrap();
        let fits = fit_splits(g.view(), y.view(), &[&s], p, 2).unwrap();
        assert_eq!(fits[0].zeroed, [true, true, false]);
        assert_eq!(fits[0].ss.len(), 2);
        let dual = fits.into_iter().next().unwrap().predict().unwrap();
        let d = max_rel_diff(&dual, &primal(&x, &y, &s, 2));
        assert!(d < 1e-8, "relative difference {d:e}");
    }

    #[test]
    fn gram_is_the_centred_product_in_chunks_and_from_f32() {
        // More features than a chunk, a partial last chunk, and a transposed (strided) input.
        let x = random(300, GRAM_CHUNK + 37, 3) + 5.0;
        let xc = &x - &x.mean_axis(Axis(0)).unwrap();
        let want = xc.dot(&xc.t());
        let xt = x.t().as_standard_layout().into_owned();
        for g in [
            centred_gram(x.view()).unwrap(),
            centred_gram(xt.t()).unwrap(),
        ] {
            assert!(max_rel_diff(&g, &want) < 1e-12);
            for ((i, j), v) in g.indexed_iter() {
                assert_eq!(*v, g[[j, i]]);
            }
        }
        let x32 = x.mapv(|v| v as f32);
        let want32 = {
            let x = x32.mapv(f64::from);
            let xc = &x - &x.mean_axis(Axis(0)).unwrap();
            xc.dot(&xc.t())
        };
        assert!(max_rel_diff(&centred_gram(x32.view()).unwrap(), &want32) < 1e-12);
    }

    #[test]
    fn gram_names_a_non_finite_feature() {
        let mut x = random(4, GRAM_CHUNK + 3, 8);
        x[[2, GRAM_CHUNK + 1]] = f64::NAN;
        let msg = centred_gram(x.view()).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("feature {} of sample 2", GRAM_CHUNK + 1)),
            "{msg}"
        );
        assert!(centred_gram(Array2::<f64>::zeros((0, 3)).view()).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let g = Array2::<f64>::eye(4);
        let y = random(4, 2, 5);
        let s = |train: Vec<usize>, test: Vec<usize>| Split { train, test };
        let out_of_range = s(vec![0, 1], vec![7]);
        assert!(fit_predict_splits(g.view(), y.view(), &[&out_of_range], 4, 2).is_err());
        let ok = s(vec![0, 1, 2], vec![3]);
        assert!(fit_predict_splits(g.slice(ndarray::s![.., ..3]), y.view(), &[&ok], 4, 2).is_err());
        assert!(fit_predict_splits(g.view(), y.slice(ndarray::s![..3, ..]), &[&ok], 4, 2).is_err());
        assert!(fit_predict_splits(g.view(), y.view(), &[&ok], 4, 0).is_err());
        let one = s(vec![0], vec![3]);
        assert!(fit_predict_splits(g.view(), y.view(), &[&one], 4, 2).is_err());
        let zeros = Array2::<f64>::zeros((4, 2));
        let msg = fit_predict_splits(g.view(), zeros.view(), &[&ok], 4, 2)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("are all zero"), "{msg}");
        assert!(fit_predict_splits(g.view(), y.view(), &[], 4, 2)
            .unwrap()
            .is_empty());
    }
}
