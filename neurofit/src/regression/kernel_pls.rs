//! PLS in its dual (kernel) form: the fit of [`super::pls::fit`] — the same iterates, components and
//! predictions, so scikit-learn's to rounding — computed from Gram matrices of the samples instead of
//! from the features.
//!
//! Why: a neural fit has far more features (10⁴–10⁵ model units) than training stimuli (~2,300), and
//! the primal algorithm reads and deflates the whole `[sample, feature]` matrix once per component.
//! Everything PLS computes depends on `X` only through `X Xᵀ`, so one Gram matrix of all stimuli per
//! feature set serves every split and region, and a component then costs `samples²` instead of
//! `samples × features`.
//!
//! The dual quantities, with `K = X Xᵀ` (training samples, centred), `Yₖ` the deflated targets and
//! `Pₖ = I − Σⱼ tⱼtⱼᵀ/tⱼᵀtⱼ` the projection that deflates `X` (`Xₖ = Pₖ X`, `Yₖ = Pₖ Y`):
//! - the cross-covariance `Cₖ = Xₖᵀ Yₖ` is never formed; its power iteration runs on
//!   `Mₖ = CₖᵀCₖ = Yₖᵀ K Yₖ` `[target, target]`, updated by rank-two terms as `Y` deflates;
//! - x weights `w = Cₖ u / ‖Cₖ u‖ = Xᵀ a` with `a = Yₖ u / ‖Cₖ u‖`; scores `t = Pₖ K Yₖ u / ‖Cₖ u‖`;
//!   x loadings `p = Xᵀ t / tᵀt`;
//! - `coef = W (PᵀW)⁺ Qᵀ = Xᵀ A (PᵀW)⁺ Qᵀ`, so predictions are `K_test A (PᵀW)⁺ Qᵀ + ȳ` with
//!   `(PᵀW)ᵢⱼ = tᵢᵀ K aⱼ / tᵢᵀtᵢ`.
//!
//! scikit-learn flips the sign of each x weight so its largest entry is positive; that flips `w`,
//! `t`, `p` and `q` together and leaves `coef` unchanged, so it is skipped here (there is no `w`).

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::pinv;
use super::pls::{components_to_fit, deflate, no_component, stack_columns};
use crate::error::{NeurofitError, Result};

/// scikit-learn's defaults for the inner power iteration (as in [`super::pls`]).
const MAX_ITER: usize = 500;
const TOL: f64 = 1e-6;

/// Rows per block of the blocked Gram product: blocks on and above the diagonal are computed in
/// parallel and mirrored.
const GRAM_BLOCK: usize = 256;

/// The Gram matrix `Xc Xcᵀ` `[sample, sample]` of `x` `[sample, feature]` after subtracting the mean
/// over all its samples.
///
/// The mean subtracted here cancels in every split's own centring ([`split_kernels`]); it is there
/// because features far from zero (non-negative activations) would otherwise leave large entries
/// that the centring cancels, losing digits.
pub fn centred_gram(x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
    let mean = x
        .mean_axis(Axis(0))
        .ok_or_else(|| NeurofitError::Regression("Gram matrix of no samples".into()))?;
    let xc = &x - &mean;
    let n = xc.nrows();
    let blocks: Vec<(usize, usize)> = (0..n)
        .step_by(GRAM_BLOCK)
        .flat_map(|i| (i..n).step_by(GRAM_BLOCK).map(move |j| (i, j)))
        .collect();
    let parts: Vec<((usize, usize), Array2<f64>)> = blocks
        .par_iter()
        .map(|&(i, j)| {
            let a = xc.slice(s![i..(i + GRAM_BLOCK).min(n), ..]);
            let b = xc.slice(s![j..(j + GRAM_BLOCK).min(n), ..]);
            ((i, j), a.dot(&b.t()))
        })
        .collect();
    let mut g = Array2::zeros((n, n));
    for ((i, j), block) in parts {
        let (bi, bj) = block.dim();
        g.slice_mut(s![i..i + bi, j..j + bj]).assign(&block);
    }
    // The lower triangle mirrors the upper one (diagonal blocks included, whose product is not
    // exactly symmetric in floating point).
    for i in 1..n {
        for j in 0..i {
            g[[i, j]] = g[[j, i]];
        }
    }
    Ok(g)
}

/// The training Gram `[train, train]` and the test-by-train Gram `[test, train]` of one split,
/// both centred on the training mean, from a Gram `g` of all samples (any common offset removed).
pub fn split_kernels(
    g: ArrayView2<'_, f64>,
    train: &[usize],
    test: &[usize],
) -> Result<(Array2<f64>, Array2<f64>)> {
    let n_all = g.nrows();
    if g.ncols() != n_all {
        return Err(NeurofitError::shape(
            "Gram matrix",
            format!("{} × {}", g.nrows(), g.ncols()),
            "a square matrix".to_string(),
        ));
    }
    if let Some(&bad) = train.iter().chain(test).find(|&&i| i >= n_all) {
        return Err(NeurofitError::Regression(format!(
            "split names sample {bad}, but the Gram matrix has {n_all}"
        )));
    }
    if train.is_empty() {
        return Err(NeurofitError::Regression(
            "a split with no training samples".into(),
        ));
    }
    let n = train.len() as f64;
    // m[i] = mean over training samples l of g[i, l] (= xᵢ · x̄ in the Gram's frame).
    let m: Array1<f64> = g
        .outer_iter()
        .map(|row| train.iter().map(|&l| row[l]).sum::<f64>() / n)
        .collect();
    let mu = train.iter().map(|&l| m[l]).sum::<f64>() / n;
    let centred = |rows: &[usize]| {
        Array2::from_shape_fn((rows.len(), train.len()), |(a, b)| {
            let (i, j) = (rows[a], train[b]);
            g[[i, j]] - m[i] - m[j] + mu
        })
    };
    Ok((centred(train), centred(test)))
}

/// Fit PLS with `components` components on the centred training Gram `k` `[train, train]` and the
/// targets `y` `[train, target]`, and predict the samples whose centred Gram against the training
/// samples is `k_test` `[test, train]`. `features` is the number of columns of the `X` behind the
/// Gram matrices (it caps the components as in [`super::pls::fit`]).
pub fn fit_predict(
    k: ArrayView2<'_, f64>,
    k_test: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    features: usize,
    components: usize,
) -> Result<Array2<f64>> {
    let n = k.nrows();
    let q = y.ncols();
    if k.ncols() != n || y.nrows() != n || k_test.ncols() != n {
        return Err(NeurofitError::shape(
            "kernel PLS inputs",
            format!(
                "K {}×{}, Y {}×{}, K_test {}×{}",
                k.nrows(),
                k.ncols(),
                y.nrows(),
                q,
                k_test.nrows(),
                k_test.ncols()
            ),
            "K n×n, Y n×targets and K_test test×n for one n".to_string(),
        ));
    }
    let k_max = components_to_fit(n, features, q, components)?;
    let eps = f64::EPSILON;
    let y_mean = y
        .mean_axis(Axis(0))
        .ok_or_else(|| NeurofitError::Regression("empty Y".into()))?;
    let mut yk = &y - &y_mean;
    // K Yₖ and Mₖ = Yₖᵀ K Yₖ, kept up to date as Y deflates.
    let mut ky = k.dot(&yk);
    let mut m = yk.t().dot(&ky);

    let mut a_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    let mut t_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    let mut kt_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    let mut ss_vals: Vec<f64> = Vec::with_capacity(k_max);
    let mut q_cols: Vec<Array1<f64>> = Vec::with_capacity(k_max);
    for _ in 0..k_max {
        // As scikit-learn (and the primal fit): targets explained to rounding are zeroed.
        for j in 0..q {
            if yk.column(j).iter().all(|v| v.abs() < 10.0 * eps) {
                yk.column_mut(j).fill(0.0);
                ky.column_mut(j).fill(0.0);
                m.column_mut(j).fill(0.0);
                m.row_mut(j).fill(0.0);
            }
        }
        let Some(u) = power_iteration(m.view(), yk.view()) else {
            break;
        };
        let c_norm2 = u.dot(&m.dot(&u));
        if c_norm2 <= 0.0 || !c_norm2.is_finite() {
            break;
        }
        let c_norm = c_norm2.sqrt() + eps;
        let a = yk.dot(&u) / c_norm;
        let mut t = ky.dot(&u) / c_norm;
        // t = Pₖ K Yₖ u / ‖Cₖ u‖: project out the earlier scores.
        for (tj, &ssj) in t_cols.iter().zip(&ss_vals) {
            let c = tj.dot(&t) / ssj;
            t.scaled_add(-c, tj);
        }
        let ss = t.dot(&t);
        if ss <= 0.0 || !ss.is_finite() {
            break;
        }
        let kt = k.dot(&t);
        let y_load = yk.t().dot(&t) / ss;
        // Mₖ₊₁ = Mₖ − b qᵀ − q bᵀ + (tᵀKt) q qᵀ with b = (K Yₖ)ᵀ t, for Yₖ₊₁ = Yₖ − t qᵀ.
        let b = ky.t().dot(&t);
        let tkt = t.dot(&kt);
        for i in 0..q {
            for j in 0..q {
                m[[i, j]] += -b[i] * y_load[j] - y_load[i] * b[j] + tkt * y_load[i] * y_load[j];
            }
        }
        deflate(&mut yk, &t, &y_load);
        deflate(&mut ky, &kt, &y_load);
        a_cols.push(a);
        t_cols.push(t);
        kt_cols.push(kt);
        ss_vals.push(ss);
        q_cols.push(y_load);
    }
    let c = a_cols.len();
    if c == 0 {
        return Err(no_component());
    }
    // (PᵀW)ᵢⱼ = pᵢ · wⱼ = tᵢᵀ K aⱼ / tᵢᵀtᵢ
    let ptw = Array2::from_shape_fn((c, c), |(i, j)| kt_cols[i].dot(&a_cols[j]) / ss_vals[i]);
    let a_mat = stack_columns(&a_cols, n);
    let q_mat = stack_columns(&q_cols, q);
    // coef = Xᵀ B with B = A (PᵀW)⁺ Qᵀ; predictions K_test B + ȳ.
    let b_mat = a_mat.dot(&pinv(ptw.view())?).dot(&q_mat.t());
    Ok(k_test.dot(&b_mat) + &y_mean)
}

/// scikit-learn's power iteration for the first singular vectors of `Cₖ`, run on `Mₖ = CₖᵀCₖ`:
/// its `y_weights` iterate `u` starts at the first non-zero target and moves to `M u / ‖M u‖`; its
/// x weights are `C u / ‖C u‖`, and their change between iterations, which it tests against `TOL`,
/// is `2 − 2 uᵢᵀ M uᵢ₋₁ / (‖C uᵢ‖ ‖C uᵢ₋₁‖)`. Returns the last `u` (the x weights' direction), or
/// `None` when every target is zero.
fn power_iteration(m: ArrayView2<'_, f64>, y: ArrayView2<'_, f64>) -> Option<Array1<f64>> {
    let eps = f64::EPSILON;
    let j0 = y
        .axis_iter(Axis(1))
        .position(|col| col.iter().any(|v| v.abs() > eps))?;
    let mut u = Array1::zeros(m.nrows());
    u[j0] = 1.0;
    // (u, ‖C u‖) of the previous iteration.
    let mut prev: Option<(Array1<f64>, f64)> = None;
    for _ in 0..MAX_ITER {
        let mu = m.dot(&u);
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
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cv::SplitMix64;
    use crate::regression::pls;

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut rng = SplitMix64::new(seed);
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
        let y = x.dot(&w) * 0.1 + random(60, 7, seed + 2);
        (x, y)
    }

    #[test]
    fn matches_the_primal_fit_on_wide_data() {
        let (x, y) = wide_problem(1);
        let train: Vec<usize> = (0..60).filter(|i| i % 6 != 0).collect();
        let test: Vec<usize> = (0..60).filter(|i| i % 6 == 0).collect();
        let g = centred_gram(x.view()).unwrap();
        let (k, k_test) = split_kernels(g.view(), &train, &test).unwrap();
        let y_train = y.select(Axis(0), &train);
        for comps in [1, 5, 25, 200] {
            let dual = fit_predict(k.view(), k_test.view(), y_train.view(), 150, comps).unwrap();
            let primal = pls::fit(x.select(Axis(0), &train).view(), y_train.view(), comps)
                .unwrap()
                .predict(x.select(Axis(0), &test).view())
                .unwrap();
            let d = max_rel_diff(&dual, &primal);
            assert!(d < 1e-8, "{comps} components: relative difference {d:e}");
        }
    }

    #[test]
    fn matches_the_primal_fit_with_one_target_and_with_few_features() {
        let (x, y) = wide_problem(7);
        let x = x.slice(s![.., ..20]).to_owned();
        let y1 = y.slice(s![.., ..1]).to_owned();
        let all: Vec<usize> = (0..50).collect();
        let test: Vec<usize> = (50..60).collect();
        let g = centred_gram(x.view()).unwrap();
        let (k, k_test) = split_kernels(g.view(), &all, &test).unwrap();
        for yy in [&y1, &y] {
            let y_train = yy.select(Axis(0), &all);
            let dual = fit_predict(k.view(), k_test.view(), y_train.view(), 20, 25).unwrap();
            let primal = pls::fit(x.select(Axis(0), &all).view(), y_train.view(), 25)
                .unwrap()
                .predict(x.select(Axis(0), &test).view())
                .unwrap();
            let d = max_rel_diff(&dual, &primal);
            assert!(
                d < 1e-8,
                "{} targets: relative difference {d:e}",
                yy.ncols()
            );
        }
    }

    #[test]
    fn gram_is_the_centred_product_in_any_block_layout() {
        let x = random(GRAM_BLOCK + 37, 9, 3) + 5.0;
        let g = centred_gram(x.view()).unwrap();
        let xc = &x - &x.mean_axis(Axis(0)).unwrap();
        let want = xc.dot(&xc.t());
        assert!(max_rel_diff(&g, &want) < 1e-12);
        for ((i, j), v) in g.indexed_iter() {
            assert_eq!(*v, g[[j, i]]);
        }
    }

    #[test]
    fn split_kernels_centre_on_the_training_mean() {
        let x = random(30, 12, 4) * 2.0 + 7.0;
        let (train, test) = ((0..24).collect::<Vec<_>>(), (24..30).collect::<Vec<_>>());
        let g = centred_gram(x.view()).unwrap();
        let (k, kt) = split_kernels(g.view(), &train, &test).unwrap();
        let xtr = x.select(Axis(0), &train);
        let mean = xtr.mean_axis(Axis(0)).unwrap();
        let (a, b) = (&xtr - &mean, &x.select(Axis(0), &test) - &mean);
        assert!(max_rel_diff(&k, &a.dot(&a.t())) < 1e-12);
        assert!(max_rel_diff(&kt, &b.dot(&a.t())) < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let g = Array2::<f64>::eye(4);
        assert!(split_kernels(g.view(), &[0, 1], &[7]).is_err());
        assert!(split_kernels(g.slice(s![.., ..3]), &[0], &[1]).is_err());
        assert!(split_kernels(g.view(), &[], &[1]).is_err());
        let (k, kt) = split_kernels(g.view(), &[0, 1, 2], &[3]).unwrap();
        let y = Array2::<f64>::zeros((3, 2));
        assert!(fit_predict(k.view(), kt.view(), y.view(), 4, 0).is_err());
        let msg = fit_predict(k.view(), kt.view(), y.view(), 4, 2)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("are all zero"), "{msg}");
        let y_bad = Array2::<f64>::zeros((2, 2));
        assert!(fit_predict(k.view(), kt.view(), y_bad.view(), 4, 2).is_err());
    }
}
