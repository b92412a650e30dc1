//! PCA by randomised SVD (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1), fitted on a
//! subset of rows and applied to all, so wide activation maps (224-px models) can be compressed
//! without ever forming a `D × D` covariance. Linear algebra is hand-written and small: modified
//! Gram–Schmidt (applied twice) for the range finder's QR, cyclic Jacobi for the `l × l`
//! symmetric eigenproblem; the big products go through ndarray's `dot`.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use seeded_rng::Rng;

/// Oversampling and power iterations of the range finder (Halko et al.'s usual choices).
const OVERSAMPLE: usize = 10;
const POWER_ITERS: usize = 2;

/// A fitted projection: `project(x) = (x − mean) · components`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    /// `[D]`.
    pub mean: Array1<f32>,
    /// `[D, k]`, orthonormal columns, by decreasing singular value.
    pub components: Array2<f32>,
    /// `[k]`, singular values of the centred fit matrix.
    pub singular_values: Array1<f32>,
}

impl Pca {
    /// Fits `k` components to the rows of `x` (`[rows, D]`). `k` is clipped to `min(rows, D)`.
    pub fn fit(x: ArrayView2<'_, f32>, k: usize, seed: u64) -> Pca {
        let (m, d) = x.dim();
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
        let xc = &x - &mean.view().insert_axis(Axis(0));
        let k = k.min(m).min(d);
        let l = (k + OVERSAMPLE).min(m).min(d);
        let mut rng = Rng::new(seed);
        let omega = Array2::from_shape_fn((d, l), |_| rng.normal() as f32);
        let mut q = orthonormalise(xc.dot(&omega));
        for _ in 0..POWER_ITERS {
            let z = orthonormalise(xc.t().dot(&q));
            q = orthonormalise(xc.dot(&z));
        }
        // B = Qᵀ X, `[l, D]`; its right singular vectors are X's (restricted to range(Q)).
        let b = q.t().dot(&xc);
        let bbt = b.dot(&b.t()).mapv(|v| v as f64);
        let (evals, evecs) = jacobi_eigh(bbt);
        let mut order: Vec<usize> = (0..evals.len()).collect();
        order.sort_by(|&i, &j| evals[j].total_cmp(&evals[i]));
        let mut components = Array2::<f32>::zeros((d, k));
        let mut singular_values = Array1::<f32>::zeros(k);
        for (c, &i) in order.iter().take(k).enumerate() {
            let s = evals[i].max(0.0).sqrt();
            singular_values[c] = s as f32;
            if s <= 1e-12 {
                continue;
            }
            let u = evecs.column(i).mapv(|v| v as f32);
            let v = b.t().dot(&u) / s as f32;
            components.column_mut(c).assign(&v);
        }
        Pca {
            mean,
            components,
            singular_values,
        }
    }

    /// `[rows, D]` → `[rows, k]`.
    pub fn project(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        (&x - &self.mean.view().insert_axis(Axis(0))).dot(&self.components)
    }

    /// Number of principal components kept (the projection's width).
    pub fn num_components(&self) -> usize {
        self.components.ncols()
    }
}

/// Orthonormal columns spanning `a`'s columns (modified Gram–Schmidt, twice for stability);
/// columns that vanish (rank deficiency) are set to zero. Works on the transpose so that each
/// column is a contiguous row.
pub(crate) fn orthonormalise(a: Array2<f32>) -> Array2<f32> {
    let mut q = a.reversed_axes().as_standard_layout().into_owned();
    let cols = q.nrows();
    for _pass in 0..2 {
        for j in 0..cols {
            for i in 0..j {
                let (done, mut rest) = q.view_mut().split_at(Axis(0), j);
                let qi = done.row(i);
                let mut qj = rest.row_mut(0);
                let dot = qi.dot(&qj);
                qj.scaled_add(-dot, &qi);
            }
            let norm = q.row(j).dot(&q.row(j)).sqrt();
            if norm > 1e-20 {
                q.row_mut(j).mapv_inplace(|v| v / norm);
            } else {
                q.row_mut(j).fill(0.0);
            }
        }
    }
    q.reversed_axes()
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi rotations.
pub(crate) fn jacobi_eigh(mut a: Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut v = Array2::<f64>::eye(n);
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[[p, q]] * a[[p, q]];
            }
        }
        if off.sqrt() <= 1e-14 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[[p, q]];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[[i, i]]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(rows: usize, cols: usize, rng: &mut Rng) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| rng.normal() as f32)
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let mut rng = Rng::new(1);
        let m = random(6, 6, &mut rng).mapv(|v| v as f64);
        let a = m.dot(&m.t());
        let (w, v) = jacobi_eigh(a.clone());
        let recon = v
            .dot(&Array2::from_diag(&Array1::from(w.clone())))
            .dot(&v.t());
        let err = (&recon - &a).iter().map(|x| x.abs()).fold(0.0, f64::max);
        assert!(err < 1e-9, "{err}");
        let vtv = v.t().dot(&v);
        assert!((&vtv - &Array2::<f64>::eye(6))
            .iter()
            .all(|x| x.abs() < 1e-10));
        assert!(w.iter().all(|&x| x > -1e-9), "a Gram matrix is PSD: {w:?}");
    }

    #[test]
    fn rank_k_matrix_is_reconstructed_exactly() {
        let mut rng = Rng::new(2);
        let (m, d, k) = (60, 40, 3);
        let x = random(m, k, &mut rng).dot(&random(k, d, &mut rng)) + 5.0;
        let pca = Pca::fit(x.view(), k, 7);
        let z = pca.project(x.view());
        let recon = z.dot(&pca.components.t()) + pca.mean.view().insert_axis(Axis(0));
        let err = (&recon - &x).iter().map(|v| v.abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "max reconstruction error {err}");
        let ctc = pca.components.t().dot(&pca.components);
        assert!((&ctc - &Array2::<f32>::eye(k))
            .iter()
            .all(|v| v.abs() < 1e-4));
    }

    #[test]
    fn leading_components_match_the_exact_eigendecomposition() {
        // Full-rank data with a decaying spectrum: the top 2 components and their singular values
        // agree with the exact eigenvectors of the covariance.
        let mut rng = Rng::new(3);
        let (m, d) = (80, 12);
        let mut x = random(m, d, &mut rng);
        for (j, mut col) in x.columns_mut().into_iter().enumerate() {
            col.mapv_inplace(|v| v * 0.6f32.powi(j as i32) * 10.0);
        }
        let rot = orthonormalise(random(d, d, &mut rng));
        let x = x.dot(&rot);
        let pca = Pca::fit(x.view(), 2, 11);
        let xc = &x - &x.mean_axis(Axis(0)).unwrap().insert_axis(Axis(0));
        let (w, v) = jacobi_eigh(xc.t().dot(&xc).mapv(|v| v as f64));
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&i, &j| w[j].total_cmp(&w[i]));
        for c in 0..2 {
            let exact = v.column(order[c]).mapv(|v| v as f32);
            let cos = exact.dot(&pca.components.column(c)).abs();
            assert!(cos > 0.999, "component {c}: |cos| = {cos}");
            let s = w[order[c]].sqrt() as f32;
            assert!((pca.singular_values[c] - s).abs() / s < 1e-3);
        }
    }
}
