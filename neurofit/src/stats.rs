//! Column-wise Pearson correlation, Spearman–Brown correction and NaN-aware medians.

use ndarray::ArrayView2;

/// Pearson r between matching columns of `a` and `b` (both `[sample, column]`).
/// A column with zero variance in either input gives NaN: its correlation is undefined.
///
/// Accumulated row by row (rows are contiguous in the usual layout), every column at once; each
/// column's sums run over the samples in order, as a column-by-column loop would.
pub fn pearson_columns(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Vec<f64> {
    debug_assert_eq!(a.dim(), b.dim());
    let (n, cols) = a.dim();
    if n < 2 {
        return vec![f64::NAN; cols];
    }
    let (mut mx, mut my) = (vec![0.0; cols], vec![0.0; cols]);
    for (ra, rb) in a.rows().into_iter().zip(b.rows()) {
        for (j, (&x, &y)) in ra.iter().zip(rb.iter()).enumerate() {
            mx[j] += x;
            my[j] += y;
        }
    }
    for m in mx.iter_mut().chain(my.iter_mut()) {
        *m /= n as f64;
    }
    let (mut sxy, mut sxx, mut syy) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for (ra, rb) in a.rows().into_iter().zip(b.rows()) {
        for (j, (&x, &y)) in ra.iter().zip(rb.iter()).enumerate() {
            let (dx, dy) = (x - mx[j], y - my[j]);
            sxy[j] += dx * dy;
            sxx[j] += dx * dx;
            syy[j] += dy * dy;
        }
    }
    (0..cols)
        .map(|j| {
            let denom = (sxx[j] * syy[j]).sqrt();
            if denom > 0.0 && denom.is_finite() {
                sxy[j] / denom
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Spearman–Brown prophecy: reliability of a measure `n` times as long as one with reliability `r`.
/// With `n = 2` this is the split-half correction `2r / (1 + r)`.
pub fn spearman_brown(r: f64, n: f64) -> f64 {
    n * r / (1.0 + (n - 1.0) * r)
}

/// Median of the finite values; `None` when there are none.
pub fn nan_median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    })
}

/// `Some(x)` for finite `x`: JSON has no NaN, so undefined values travel as `null`.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn pearson_of_affine_copies_is_one_and_of_negation_minus_one() {
        let a = array![[1.0, 2.0], [2.0, 0.5], [4.0, 1.0], [3.0, 7.0]];
        let b = a.mapv(|x| 3.0 * x - 1.0);
        let r = pearson_columns(a.view(), b.view());
        assert!(r.iter().all(|r| (r - 1.0).abs() < 1e-12), "{r:?}");
        let r = pearson_columns(a.view(), (-&a).view());
        assert!(r.iter().all(|r| (r + 1.0).abs() < 1e-12), "{r:?}");
    }

    #[test]
    fn pearson_matches_a_hand_computed_value() {
        // x = [1,2,3], y = [1,3,2]: cov = 0.5 (n-1 scaled), var = 1 each -> r = 0.5
        let a = array![[1.0], [2.0], [3.0]];
        let b = array![[1.0], [3.0], [2.0]];
        assert!((pearson_columns(a.view(), b.view())[0] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn pearson_of_many_columns_matches_each_column_alone() {
        let a = ndarray::Array2::from_shape_fn((7, 5), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
        let b = ndarray::Array2::from_shape_fn((7, 5), |(i, j)| ((i * i + 2 * j) % 5) as f64);
        let all = pearson_columns(a.view(), b.view());
        for j in 0..5 {
            let one = pearson_columns(
                a.slice(ndarray::s![.., j..=j]),
                b.slice(ndarray::s![.., j..=j]),
            );
            assert_eq!(all[j].to_bits(), one[0].to_bits(), "column {j}");
        }
        // Transposed (column-major) inputs give the same.
        let (at, bt) = (
            a.t().as_standard_layout().into_owned(),
            b.t().as_standard_layout().into_owned(),
        );
        let again = pearson_columns(at.t(), bt.t());
        assert_eq!(all, again);
    }

    #[test]
    fn constant_column_gives_nan() {
        let a = array![[1.0], [1.0], [1.0]];
        let b = array![[1.0], [2.0], [3.0]];
        assert!(pearson_columns(a.view(), b.view())[0].is_nan());
    }

    #[test]
    fn spearman_brown_split_half() {
        assert!((spearman_brown(0.5, 2.0) - 2.0 / 3.0).abs() < 1e-12);
        assert!((spearman_brown(1.0, 2.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn median_skips_nan_and_handles_even_counts() {
        assert_eq!(nan_median([3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(nan_median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(nan_median([f64::NAN]), None);
    }
}
