//! PLS regression (PLS2, NIPALS, mode A, regression deflation, no scaling): the same sequence of
//! operations as scikit-learn's `PLSRegression(n_components, scale=False)`, so predictions agree with it
//! to rounding. Every neuroid is a column of `Y`, fitted together as Brain-Score does.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::{check_finite, pinv, LinearMap};
use crate::error::{NeurofitError, Result};

/// scikit-learn's defaults for the inner power iteration.
const MAX_ITER: usize = 500;
const TOL: f64 = 1e-6;

/// A fitted PLS map.
#[derive(Debug, Clone)]
pub struct PlsModel {
    /// The affine map the components amount to.
    pub map: LinearMap,
    /// Components actually extracted (fewer than asked when the residual of `Y` vanishes first).
    pub components: usize,
}

/// Fit on `x` `[sample, feature]` and `y` `[sample, target]`.
///
/// Asking for more components than `min(samples - 1, features)` uses that many instead: a component
/// beyond the rank of the centred `X` carries nothing. Components stop early, keeping those found,
/// once every column of the deflated `Y` is zero (scikit-learn raises there instead).
pub fn fit(x: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>, components: usize) -> Result<PlsModel> {
    let (n, p) = x.dim();
    let t = y.ncols();
    if y.nrows() != n {
        return Err(NeurofitError::shape(
            "PLS targets",
            format!("{} rows", y.nrows()),
            format!("{n} rows, one per sample of X"),
        ));
    }
    let k_max = components_to_fit(n, p, t, components)?;
    check_finite("PLS features", x)?;
    check_finite("PLS targets", y)?;
    let x_mean = x
        .mean_axis(Axis(0))
        .ok_or_else(|| NeurofitError::Regression("empty X".into()))?;
    let y_mean = y
        .mean_axis(Axis(0))
        .ok_or_else(|| NeurofitError::Regression("empty Y".into()))?;
    let mut xk = &x - &x_mean;
    let mut yk = &y - &y_mean;
    let mut cross = xk.t().dot(&yk);
    let eps = f64::EPSILON;

    let mut w_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    let mut p_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    let mut q_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    for _ in 0..k_max {
        // Columns of Y already explained to rounding are zeroed, as scikit-learn does, so they cannot
        // seed the power iteration with noise.
        for mut col in yk.axis_iter_mut(Axis(1)) {
            if col.iter().all(|v| v.abs() < 10.0 * eps) {
                col.fill(0.0);
            }
        }
        for (j, col) in yk.axis_iter(Axis(1)).enumerate() {
            if col.iter().all(|&v| v == 0.0) {
                cross.column_mut(j).fill(0.0);
            }
        }
        let Some((mut w, mut c)) = first_singular_vectors(cross.view(), yk.view()) else {
            break;
        };
        flip_sign(&mut w, &mut c);
        let scores = xk.dot(&w);
        let ss = scores.dot(&scores);
        if ss <= 0.0 || !ss.is_finite() {
            break;
        }
        let x_load = xk.t().dot(&scores) / ss;
        deflate(&mut xk, &scores, &x_load);
        let y_load = yk.t().dot(&scores) / ss;
        deflate(&mut yk, &scores, &y_load);
        // Xₖ₊₁ᵀ Yₖ₊₁ = Xₖᵀ Yₖ − (tᵀt) p qᵀ: deflating both sides is a rank-one update of the product.
        deflate(&mut cross, &(&x_load * ss), &y_load);
        w_cols.push(w);
        p_cols.push(x_load);
        q_cols.push(y_load);
    }
    let k = w_cols.len();
    if k == 0 {
        return Err(no_component());
    }
    let w = stack_columns(&w_cols, p);
    let pl = stack_columns(&p_cols, p);
    let q = stack_columns(&q_cols, t);
    // x_rotations = W (Pᵀ W)⁺ ; coef = x_rotations Qᵀ
    let rot = w.dot(&pinv(pl.t().dot(&w).view())?);
    let coef = rot.dot(&q.t());
    Ok(PlsModel {
        map: LinearMap::new(x_mean, y_mean, coef)?,
        components: k,
    })
}

impl PlsModel {
    /// Predictions `[sample, target]` for `x` `[sample, feature]`.
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        self.map.predict(x)
    }
}

/// The error of a fit that found no component at all.
pub(crate) fn no_component() -> NeurofitError {
    NeurofitError::Regression(
        "PLS found no component: the centred targets or the centred features are all zero".into(),
    )
}

/// How many components a fit of `n` samples × `features` → `targets` extracts when `components`
/// are asked for (at most `min(n − 1, features)`), or an error for sizes PLS cannot fit.
pub(crate) fn components_to_fit(
    n: usize,
    features: usize,
    targets: usize,
    components: usize,
) -> Result<usize> {
    if n < 2 || features == 0 || targets == 0 {
        return Err(NeurofitError::Regression(format!(
            "PLS needs at least 2 samples, 1 feature and 1 target; got {n} × {features} features, {targets} targets"
        )));
    }
    if components == 0 {
        return Err(NeurofitError::Config {
            field: "regression.components",
            reason: "must be at least 1".into(),
        });
    }
    Ok(components.min(features).min(n - 1))
}

/// scikit-learn's `_get_first_singular_vectors_power_method` (mode A, normalised y weights), run on
/// the cross-covariance `cross = Xᵀ Y` `[feature, target]` instead of on `X` and `Y`.
///
/// Each of scikit-learn's steps (`x_w ∝ Xᵀ y_score`, `y_score ∝ Y y_w`, `y_w ∝ Yᵀ X x_w`) is, up to a
/// positive scalar that the following normalisation removes, a product with `cross` or its transpose,
/// so an iteration costs `features × targets` instead of `samples × features`; the iterates agree with
/// scikit-learn's to rounding. `None` when every column of `y` is zero.
fn first_singular_vectors(
    cross: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
) -> Option<(Array1<f64>, Array1<f64>)> {
    let eps = f64::EPSILON;
    let j0 = y
        .axis_iter(Axis(1))
        .position(|col| col.iter().any(|v| v.abs() > eps))?;
    let mut v = cross.column(j0).to_owned();
    let mut x_w_old: Option<Array1<f64>> = None;
    let mut x_w = Array1::zeros(cross.nrows());
    let mut y_w = Array1::zeros(cross.ncols());
    for _ in 0..MAX_ITER {
        x_w = &v / (v.dot(&v).sqrt() + eps);
        y_w = cross.t().dot(&x_w);
        y_w /= y_w.dot(&y_w).sqrt() + eps;
        // scikit-learn starts x_weights_old at the scalar 100, so the first check never passes.
        let d = match &x_w_old {
            Some(old) => &x_w - old,
            None => x_w.mapv(|v| v - 100.0),
        };
        if d.dot(&d) < TOL || y.ncols() == 1 {
            break;
        }
        x_w_old = Some(x_w.clone());
        v = cross.dot(&y_w);
    }
    Some((x_w, y_w))
}

/// Make the largest-magnitude entry of `u` positive (scikit-learn's `_svd_flip_1d`).
fn flip_sign(u: &mut Array1<f64>, v: &mut Array1<f64>) {
    let mut best = 0;
    for (i, x) in u.iter().enumerate() {
        if x.abs() > u[best].abs() {
            best = i;
        }
    }
    if u[best] < 0.0 {
        u.mapv_inplace(|x| -x);
        v.mapv_inplace(|x| -x);
    }
}

/// `m −= scores ⊗ loadings`, row by row in place (no outer-product temporary).
pub(crate) fn deflate(m: &mut Array2<f64>, scores: &Array1<f64>, loadings: &Array1<f64>) {
    for (mut row, &s) in m.outer_iter_mut().zip(scores) {
        row.scaled_add(-s, loadings);
    }
}

pub(crate) fn stack_columns(cols: &[Array1<f64>], rows: usize) -> Array2<f64> {
    let mut m = Array2::zeros((rows, cols.len()));
    for (j, c) in cols.iter().enumerate() {
        m.column_mut(j).assign(c);
    }
    m
}
