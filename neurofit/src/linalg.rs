//! The fits' dense f64 products — Gram matrices, matrix products, matrix–vector products — on the
//! pure-Rust `gemm` crate, which picks its kernel (AVX-512, AVX2 + FMA or scalar) from what the CPU
//! reports at run time.
//!
//! Why not the system BLAS: it is only as fast as its knowledge of the processor. Debian's OpenBLAS
//! 0.3.21 did not recognise the AVX-512 + AMX Xeon of issue #18 (a processor newer than the library)
//! and ran its generic Prescott (SSE3) kernels there, at about a third of the machine's speed (it
//! does pick SkylakeX on an Ice Lake Xeon); the remedy, `OPENBLAS_CORETYPE`, is read when the library
//! loads, before `main`, so a program cannot set it for itself. ndarray's `dot` still goes to the
//! system BLAS; the products that dominate a fit go through this module instead. LAPACK (the small
//! SVDs of the PLS pseudo-inverse and of ridge) stays on the system library.

use std::fmt;

use gemm::Parallelism;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};

/// Products smaller than this many multiply–adds (about a millisecond's work) run on the calling
/// thread: splitting them costs more than it saves, and the fits run many such products side by side.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// Gram matrices at most this many rows are computed whole (both triangles): below it the halved
/// work no longer pays for the smaller products.
const GRAM_BASE_ROWS: usize = 192;

/// The kernel family the `gemm` crate runs on this CPU (its own run-time dispatch, mirrored: the
/// crate is built with its AVX-512 kernels, `x86-v4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// 512-bit vectors, 8 doubles (x86-64 with AVX-512F).
    Avx512,
    /// 256-bit vectors with fused multiply–add (x86-64 with FMA).
    Avx2Fma,
    /// 128-bit NEON vectors (aarch64).
    Neon,
    /// No vector kernel for this CPU.
    Scalar,
}

impl Kernel {
    /// What the `gemm` crate dispatches to on the CPU this runs on.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                Kernel::Avx512
            } else if std::arch::is_x86_feature_detected!("fma") {
                Kernel::Avx2Fma
            } else {
                Kernel::Scalar
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                Kernel::Neon
            } else {
                Kernel::Scalar
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Kernel::Scalar
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernel::Avx512 => "AVX-512F",
            Kernel::Avx2Fma => "AVX2+FMA",
            Kernel::Neon => "NEON",
            Kernel::Scalar => "scalar",
        })
    }
}

/// `c = alpha · a · b + beta · c` for any strides (transposed views cost nothing; `c` is not read
/// when `beta` is zero). Panics when the shapes do not chain: callers build them.
pub fn gemm_into(
    alpha: f64,
    a: ArrayView2<'_, f64>,
    b: ArrayView2<'_, f64>,
    beta: f64,
    mut c: ArrayViewMut2<'_, f64>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(
        b.nrows() == k && c.dim() == (m, n),
        "gemm: {}×{} · {}×{} into {}×{}",
        m,
        k,
        b.nrows(),
        n,
        c.nrows(),
        c.ncols()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|v| beta * v);
        return;
    }
    let par = if m * n * k < PARALLEL_MIN_MACS || rayon::current_num_threads() < 2 {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    // SAFETY: the three views are valid for every (row, column) inside their shapes, which the
    // assert above ties together; `gemm` reads `a` and `b` only at such indices, and writes `c`
    // (read first only when `beta` is not zero: dst = beta·dst + alpha·a·b), which is exclusively
    // borrowed and cannot alias the shared `a` and `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// `a · b`.
pub fn matmul(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    gemm_into(1.0, a, b, 0.0, c.view_mut());
    c
}

/// `a · v`.
pub fn matvec(a: ArrayView2<'_, f64>, v: ArrayView1<'_, f64>) -> Array1<f64> {
    let mut out = Array2::zeros((a.nrows(), 1));
    gemm_into(1.0, a, v.insert_axis(Axis(1)), 0.0, out.view_mut());
    out.into_shape_with_order(a.nrows())
        .unwrap_or_else(|_| unreachable!("an n×1 matrix holds n values"))
}

/// The Gram matrix `x xᵀ` `[row, row]` of `x` `[row, column]`, exactly symmetric.
pub fn gram(x: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut g = Array2::zeros((x.nrows(), x.nrows()));
    syrk_lower(x, 0.0, g.view_mut());
    mirror_lower(g.view_mut());
    g
}

/// The symmetric rank-k update `g ← beta · g + x xᵀ` on the lower triangle of `g` `[row, row]`
/// (diagonal included; above it some entries are updated too, others left as they were:
/// [`mirror_lower`] completes the matrix).
///
/// Only the lower triangle's blocks are multiplied (about half the multiply–adds of a general
/// product), by halving the rows recursively so that every block is one large product.
pub fn syrk_lower(x: ArrayView2<'_, f64>, beta: f64, mut g: ArrayViewMut2<'_, f64>) {
    let n = x.nrows();
    assert_eq!(
        g.dim(),
        (n, n),
        "syrk: {n} rows into a {:?} matrix",
        g.dim()
    );
    if n <= GRAM_BASE_ROWS {
        gemm_into(1.0, x, x.t(), beta, g);
        return;
    }
    // Split on a multiple of 8 rows (a SIMD width) so blocks stay aligned to the kernels' tiles.
    let h = (n / 2).div_ceil(8) * 8;
    let (top, bottom) = x.split_at(Axis(0), h);
    syrk_lower(top, beta, g.slice_mut(s![..h, ..h]));
    gemm_into(1.0, bottom, top.t(), beta, g.slice_mut(s![h.., ..h]));
    syrk_lower(bottom, beta, g.slice_mut(s![h.., h..]));
}

/// Copies the lower triangle of the square `g` onto its upper triangle.
pub fn mirror_lower(mut g: ArrayViewMut2<'_, f64>) {
    for i in 0..g.nrows() {
        for j in i + 1..g.ncols() {
            g[[i, j]] = g[[j, i]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seeded_rng::Rng;

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut rng = Rng::new(seed);
        Array2::from_shape_simple_fn((rows, cols), || rng.normal())
    }

    fn naive(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum()
        })
    }

    fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        assert_eq!(a.dim(), b.dim());
        a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
    }

    #[test]
    fn products_match_the_definition_for_any_layout() {
        let a = random(37, 53, 1);
        let b = random(53, 29, 2);
        let want = naive(a.view(), b.view());
        // Plain, transposed-in-place and strided operands.
        let at = a.t().to_owned();
        let bt = b.t().to_owned();
        assert!(max_abs_diff(&matmul(a.view(), b.view()), &want) < 1e-12);
        assert!(max_abs_diff(&matmul(at.t(), bt.t()), &want) < 1e-12);
        let wide = random(37, 106, 3);
        let mut wide = wide;
        wide.slice_mut(s![.., ..;2]).assign(&a);
        assert!(max_abs_diff(&matmul(wide.slice(s![.., ..;2]), b.view()), &want) < 1e-12);
        // Large enough to run in parallel.
        let (a, b) = (random(150, 120, 4), random(120, 90, 5));
        assert!(max_abs_diff(&matmul(a.view(), b.view()), &naive(a.view(), b.view())) < 1e-11);
    }

    #[test]
    fn gemm_into_scales_and_accumulates_and_handles_empty_depth() {
        let (a, b) = (random(6, 4, 6), random(4, 5, 7));
        let mut c = random(6, 5, 8);
        let want = &c * 0.5 - naive(a.view(), b.view()) * 2.0;
        gemm_into(-2.0, a.view(), b.view(), 0.5, c.view_mut());
        assert!(max_abs_diff(&c, &want) < 1e-12);
        let mut c = Array2::from_elem((3, 2), 4.0);
        let (a, b) = (Array2::zeros((3, 0)), Array2::zeros((0, 2)));
        gemm_into(1.0, a.view(), b.view(), 0.25, c.view_mut());
        assert!(c.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn matvec_matches_the_definition() {
        let a = random(41, 23, 9);
        let v = random(23, 1, 10);
        let got = matvec(a.view(), v.column(0));
        let want = naive(a.view(), v.view());
        for i in 0..41 {
            assert!((got[i] - want[[i, 0]]).abs() < 1e-12);
        }
    }

    #[test]
    fn syrk_accumulates_in_chunks() {
        let x = random(2 * GRAM_BASE_ROWS + 5, 40, 21);
        let mut g = Array2::from_elem((x.nrows(), x.nrows()), 3.0);
        syrk_lower(x.slice(s![.., ..15]), 0.5, g.view_mut());
        syrk_lower(x.slice(s![.., 15..]), 1.0, g.view_mut());
        mirror_lower(g.view_mut());
        let want = naive(x.view(), x.t()) + 1.5;
        assert!(max_abs_diff(&g, &want) < 1e-11);
    }

    #[test]
    fn gram_is_symmetric_and_exact_across_the_recursion() {
        // Sizes below, at and well above the base case, odd ones included.
        for n in [
            1,
            7,
            GRAM_BASE_ROWS,
            GRAM_BASE_ROWS + 1,
            3 * GRAM_BASE_ROWS + 13,
        ] {
            let x = random(n, 31, n as u64);
            let g = gram(x.view());
            let want = naive(x.view(), x.t());
            assert!(max_abs_diff(&g, &want) < 1e-11, "n = {n}");
            for ((i, j), v) in g.indexed_iter() {
                assert_eq!(*v, g[[j, i]], "n = {n}");
            }
        }
    }
}
