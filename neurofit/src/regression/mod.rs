//! Linear maps from model features to neural responses, vectorised over neuroids (targets are the
//! columns of `Y`): PLS (Brain-Score's default) and ridge with its penalty chosen by generalised
//! cross-validation.

pub mod kernel_pls;
pub mod pls;
pub mod ridge;

use ndarray::{Array1, Array2, ArrayView2};
use ndarray_linalg::{JobSvd, SVDDC};
use serde::{Deserialize, Serialize};

use crate::cv::Split;
use crate::error::{NeurofitError, Result};

/// A fitted affine map from features to responses, whatever fitted it (PLS, ridge):
/// `predict(X) = (X − x_mean) · coef + y_mean`.
#[derive(Debug, Clone)]
pub struct LinearMap {
    x_mean: Array1<f64>,
    y_mean: Array1<f64>,
    /// `[feature, target]`.
    coef: Array2<f64>,
}

impl LinearMap {
    /// A map from its parts; `coef` is `[feature, target]`, one mean per feature and per target.
    pub fn new(x_mean: Array1<f64>, y_mean: Array1<f64>, coef: Array2<f64>) -> Result<LinearMap> {
        if coef.dim() != (x_mean.len(), y_mean.len()) {
            return Err(NeurofitError::shape(
                "linear map coefficients",
                format!("{:?}", coef.dim()),
                format!("[{} features, {} targets]", x_mean.len(), y_mean.len()),
            ));
        }
        Ok(LinearMap {
            x_mean,
            y_mean,
            coef,
        })
    }

    /// The coefficients, `[feature, target]`.
    pub fn coef(&self) -> ArrayView2<'_, f64> {
        self.coef.view()
    }

    /// Predictions `[sample, target]` for `x` `[sample, feature]`.
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.x_mean.len() {
            return Err(NeurofitError::shape(
                "prediction input",
                format!("{} features", x.ncols()),
                format!("{} features, as fitted", self.x_mean.len()),
            ));
        }
        Ok((&x - &self.x_mean).dot(&self.coef) + &self.y_mean)
    }
}

/// Which regression maps features to responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Regression {
    /// PLS with this many components, no scaling (SPEC §7: 25).
    Pls {
        /// Latent components to extract (SPEC §7: 25).
        components: usize,
    },
    /// Ridge; each neuroid takes the `alpha` with the lowest GCV error.
    Ridge {
        /// The candidate penalties, each positive.
        alphas: Vec<f64>,
    },
}

impl Default for Regression {
    fn default() -> Self {
        Regression::Pls { components: 25 }
    }
}

impl Regression {
    /// A report warning where PLS is asked for more components than an area's features, or than
    /// the training stimuli of a split less one, allow: such an area is fitted with that many
    /// (scikit-learn's `PLSRegression` refuses instead), which a user asking for 5,000 would
    /// otherwise not learn. `areas` pairs each area with its feature count; `train` is the
    /// smallest training split. `None` where every area gets what was asked, and for ridge.
    pub fn fewer_components_warning(
        &self,
        areas: &[(String, usize)],
        train: usize,
    ) -> Option<String> {
        let Regression::Pls { components } = self else {
            return None;
        };
        let fewer: Vec<String> = areas
            .iter()
            .filter_map(|(area, features)| {
                let fitted = (*components).min(*features).min(train.saturating_sub(1));
                (fitted < *components).then(|| format!("{area} {fitted}"))
            })
            .collect();
        (!fewer.is_empty()).then(|| {
            format!(
                "PLS was asked for {components} components, more than these areas' features (or \
                 the {train} training stimuli less one) allow; they were fitted with fewer: {}",
                fewer.join(", ")
            )
        })
    }

    /// Checks the settings before any fit: at least one PLS component, or a non-empty list of
    /// positive finite ridge penalties.
    pub fn validate(&self) -> Result<()> {
        match self {
            Regression::Pls { components: 0 } => Err(NeurofitError::Config {
                field: "regression.pls.components",
                reason: "must be at least 1".into(),
            }),
            Regression::Pls { .. } => Ok(()),
            Regression::Ridge { alphas } => {
                if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
                    Err(NeurofitError::Config {
                        field: "regression.ridge.alphas",
                        reason: format!("need at least one finite alpha > 0, got {alphas:?}"),
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Fit on `[sample, feature]` / `[sample, target]` training data and predict `x_test`
    /// `[test sample, feature]`, giving `[test sample, target]`.
    pub fn fit_predict(
        &self,
        x_train: ArrayView2<'_, f64>,
        y_train: ArrayView2<'_, f64>,
        x_test: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        match self {
            Regression::Pls { components } => {
                pls::fit(x_train, y_train, *components)?.predict(x_test)
            }
            Regression::Ridge { alphas } => ridge::fit(x_train, y_train, alphas)?.predict(x_test),
        }
    }

    /// Whether fits on `train` samples of `features` features are cheaper from a Gram matrix of the
    /// samples ([`Regression::fit_predict_gram`]) than from the features: PLS with more features
    /// than training samples (a neural fit's usual shape).
    pub fn prefers_gram(&self, train: usize, features: usize) -> bool {
        matches!(self, Regression::Pls { .. }) && features > train
    }

    /// As [`Regression::fit_predict`] for each of `splits`, from the centred Gram matrix `g`
    /// `[sample, sample]` of all samples ([`kernel_pls::centred_gram`]) and the targets `y`
    /// `[sample, target]` of all samples, with `features` the width of the `X` behind `g`: one
    /// `[test sample, target]` prediction per split, the same as fitting each split from the
    /// features, to rounding.
    pub fn fit_predict_gram(
        &self,
        g: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        splits: &[&Split],
        features: usize,
    ) -> Result<Vec<Array2<f64>>> {
        match self {
            Regression::Pls { components } => {
                kernel_pls::fit_predict_splits(g, y, splits, features, *components)
            }
            Regression::Ridge { .. } => Err(NeurofitError::Regression(
                "ridge is fitted from features, not from a Gram matrix".into(),
            )),
        }
    }
}

/// An error naming the first non-finite entry of `m` (`what`: the array). A NaN or infinity makes
/// PLS find no component and ridge's SVD fail or no penalty fit, errors that blame the data's
/// variance or the penalties instead.
pub(crate) fn check_finite(what: &str, m: ArrayView2<'_, f64>) -> Result<()> {
    match m.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((i, j), v)) => Err(NeurofitError::Regression(format!(
            "{what} holds {v} at [{i}, {j}]; expected finite values"
        ))),
        None => Ok(()),
    }
}

/// Moore–Penrose pseudo-inverse with scipy's default cut-off (`s > max(m, n) · eps · s_max`), so PLS
/// matches scikit-learn even when its small `Pᵀ W` is near singular.
pub(crate) fn pinv(a: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
    let (m, n) = a.dim();
    let (u, s, vt) = a
        .to_owned()
        .svddc(JobSvd::Some)
        .map_err(|e| NeurofitError::Linalg(format!("SVD of a {m}×{n} matrix: {e}")))?;
    let (u, vt) = match (u, vt) {
        (Some(u), Some(vt)) => (u, vt),
        _ => {
            return Err(NeurofitError::Linalg(
                "SVD returned no singular vectors".into(),
            ))
        }
    };
    let s_max = s.iter().cloned().fold(0.0, f64::max);
    let cutoff = m.max(n) as f64 * f64::EPSILON * s_max;
    let s_inv = s.mapv(|v| if v > cutoff { 1.0 / v } else { 0.0 });
    // A⁺ = V diag(1/s) Uᵀ
    let v_scaled = vt.t().to_owned() * &s_inv;
    Ok(v_scaled.dot(&u.t()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_linear_map_predicts_around_the_means_and_checks_shapes() {
        let m = LinearMap::new(array![1.0, 2.0], array![10.0], array![[3.0], [-1.0]]).unwrap();
        let p = m.predict(array![[1.0, 2.0], [2.0, 2.0]].view()).unwrap();
        assert_eq!(p, array![[10.0], [13.0]]);
        let err = m
            .predict(array![[1.0, 2.0, 3.0]].view())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 features") && err.contains("2 features"),
            "{err}"
        );
        assert!(LinearMap::new(
            array![0.0],
            array![0.0, 0.0],
            array![[1.0, 2.0], [3.0, 4.0]]
        )
        .is_err());
    }

    #[test]
    fn pinv_of_invertible_matrix_is_its_inverse() {
        let a = array![[2.0, 1.0], [1.0, 3.0]];
        let p = pinv(a.view()).unwrap();
        let eye = a.dot(&p);
        for ((i, j), v) in eye.indexed_iter() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-12, "{eye:?}");
        }
    }

    #[test]
    fn pinv_of_rank_one_matrix_satisfies_penrose() {
        let a = array![[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]];
        let p = pinv(a.view()).unwrap();
        let apa = a.dot(&p).dot(&a);
        assert!((&apa - &a).iter().all(|d| d.abs() < 1e-10), "{apa:?}");
    }

    #[test]
    fn non_finite_training_data_is_an_error_naming_the_entry() {
        let x = Array2::from_shape_fn((20, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
        let y = Array2::from_shape_fn((20, 2), |(i, j)| ((i * 5 + j) % 7) as f64);
        for reg in [
            Regression::Pls { components: 3 },
            Regression::Ridge { alphas: vec![1.0] },
        ] {
            assert!(reg.fit_predict(x.view(), y.view(), x.view()).is_ok());
            let err = |x: &Array2<f64>, y: &Array2<f64>| {
                reg.fit_predict(x.view(), y.view(), x.view())
                    .unwrap_err()
                    .to_string()
            };
            let (mut bad_x, mut bad_y) = (x.clone(), y.clone());
            bad_x[[3, 1]] = f64::NAN;
            bad_y[[2, 0]] = f64::INFINITY;
            let e = err(&bad_x, &y);
            assert!(
                e.contains("features") && e.contains("[3, 1]"),
                "{reg:?}: {e}"
            );
            let e = err(&x, &bad_y);
            assert!(
                e.contains("targets") && e.contains("[2, 0]"),
                "{reg:?}: {e}"
            );
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(Regression::Pls { components: 0 }.validate().is_err());
        assert!(Regression::Ridge { alphas: vec![] }.validate().is_err());
        assert!(Regression::Ridge {
            alphas: vec![1.0, -1.0]
        }
        .validate()
        .is_err());
        assert!(Regression::default().validate().is_ok());
    }

    #[test]
    fn asking_for_more_components_than_an_area_allows_is_a_warning() {
        let areas = [("V1".to_string(), 200), ("IT".to_string(), 10)];
        let w = Regression::Pls { components: 25 }
            .fewer_components_warning(&areas, 500)
            .unwrap();
        assert!(
            w.contains("25 components") && w.contains("IT 10") && !w.contains("V1"),
            "{w}"
        );
        // Few training stimuli bound every area.
        let w = Regression::Pls { components: 25 }
            .fewer_components_warning(&areas, 8)
            .unwrap();
        assert!(w.contains("V1 7, IT 7"), "{w}");
        assert_eq!(
            Regression::Pls { components: 10 }.fewer_components_warning(&areas, 500),
            None
        );
        let ridge = Regression::Ridge { alphas: vec![1.0] };
        assert_eq!(ridge.fewer_components_warning(&areas, 2), None);
    }
}
