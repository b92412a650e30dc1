//! Ridge regression in closed form through one thin SVD of the centred features; each target
//! (neuroid) takes, from the candidate list, the penalty with the lowest generalised cross-validation
//! error, all targets at once.
//!
//! With `X = U S Vᵀ` (centred) and shrinkage `fᵢ = sᵢ² / (sᵢ² + α)`, the fitted values are
//! `U diag(f) Uᵀ y`, the residual sum of squares is `‖y‖² − ‖Uᵀy‖² + Σ (1 − fᵢ)² (Uᵀy)ᵢ²`, and
//! `GCV(α) = n · RSS / (n − 1 − Σ fᵢ)²` (the 1 is the intercept's degree of freedom).

use ndarray::{Array1, Array2, ArrayView2, Axis};
use ndarray_linalg::{JobSvd, SVDDC};

use super::{check_finite, LinearMap};
use crate::error::{NeurofitError, Result};

/// A fitted ridge map.
#[derive(Debug, Clone)]
pub struct RidgeModel {
    /// The affine map.
    pub map: LinearMap,
    /// The penalty each target chose.
    pub alpha: Vec<f64>,
}

/// Fit `x` `[sample, feature]` to `y` `[sample, target]`, choosing per target among `alphas`.
pub fn fit(x: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>, alphas: &[f64]) -> Result<RidgeModel> {
    let (n, p) = x.dim();
    let t = y.ncols();
    if y.nrows() != n {
        return Err(NeurofitError::shape(
            "ridge targets",
            format!("{} rows", y.nrows()),
            format!("{n} rows, one per sample of X"),
        ));
    }
    if n < 3 || p == 0 || t == 0 {
        return Err(NeurofitError::Regression(format!(
            "ridge needs at least 3 samples, 1 feature and 1 target; got {n} samples, {p} features, {t} targets"
        )));
    }
    if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(NeurofitError::Config {
            field: "regression.ridge.alphas",
            reason: format!("need at least one finite alpha > 0, got {alphas:?}"),
        });
    }
    check_finite("ridge features", x)?;
    check_finite("ridge targets", y)?;
    let x_mean = x
        .mean_axis(Axis(0))
        .ok_or_else(|| NeurofitError::Regression("empty X".into()))?;
    let y_mean = y
        .mean_axis(Axis(0))
        .ok_or_else(|| NeurofitError::Regression("empty Y".into()))?;
    let xc = &x - &x_mean;
    let yc = &y - &y_mean;
    let (u, s, vt) = xc
        .svddc(JobSvd::Some)
        .map_err(|e| NeurofitError::Linalg(format!("SVD of {n}×{p} features: {e}")))?;
    let (u, vt) = match (u, vt) {
        (Some(u), Some(vt)) => (u, vt),
        _ => {
            return Err(NeurofitError::Linalg(
                "SVD returned no singular vectors".into(),
            ))
        }
    };
    let uty = u.t().dot(&yc); // [k, target]
    let y_ss: Array1<f64> = yc.map_axis(Axis(0), |c| c.dot(&c));
    let uty_ss: Array1<f64> = uty.map_axis(Axis(0), |c| c.dot(&c));
    let s2 = s.mapv(|v| v * v);

    let mut best_gcv = vec![f64::INFINITY; t];
    let mut best_alpha = vec![alphas[0]; t];
    for &alpha in alphas {
        let f = s2.mapv(|v| v / (v + alpha));
        let dof = n as f64 - 1.0 - f.sum();
        if dof <= 0.0 {
            continue;
        }
        let shrink2 = f.mapv(|fi| (1.0 - fi) * (1.0 - fi));
        for j in 0..t {
            let col = uty.column(j);
            let kept: f64 = col.iter().zip(shrink2.iter()).map(|(c, w)| c * c * w).sum();
            let rss = (y_ss[j] - uty_ss[j]).max(0.0) + kept;
            let gcv = n as f64 * rss / (dof * dof);
            if gcv < best_gcv[j] {
                best_gcv[j] = gcv;
                best_alpha[j] = alpha;
            }
        }
    }
    if best_gcv.iter().any(|g| !g.is_finite()) {
        return Err(NeurofitError::Regression(format!(
            "no candidate alpha leaves positive residual degrees of freedom with {n} samples; try larger alphas than {alphas:?}"
        )));
    }
    // coef = V · (diag(s / (s² + α_j)) Uᵀ y_j) for each target j.
    let mut b = uty;
    for (j, mut col) in b.axis_iter_mut(Axis(1)).enumerate() {
        let a = best_alpha[j];
        for (c, (&si, &si2)) in col.iter_mut().zip(s.iter().zip(s2.iter())) {
            *c *= si / (si2 + a);
        }
    }
    let coef = vt.t().dot(&b);
    Ok(RidgeModel {
        map: LinearMap::new(x_mean, y_mean, coef)?,
        alpha: best_alpha,
    })
}

impl RidgeModel {
    /// Predictions `[sample, target]` for `x` `[sample, feature]`.
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        self.map.predict(x)
    }
}
