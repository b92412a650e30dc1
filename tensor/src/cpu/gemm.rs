//! Single-precision GEMM on row-major host matrices.
//!
//! `C = alpha·op(A)·op(B) + beta·C`, `op` = optional transpose. The pure-Rust `gemm` crate is the
//! always-available path; faster system libraries (oneDNN's sgemm) are preferred when loaded.

/// A row-major matrix operand: `data[r * ld + c]`, optionally read transposed.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub trans: bool,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], ld: usize) -> Self {
        MatRef {
            data,
            ld,
            trans: false,
        }
    }
    pub fn t(self) -> Self {
        MatRef {
            trans: !self.trans,
            ..self
        }
    }
    /// (row stride, column stride) of op(self).
    fn strides(&self) -> (isize, isize) {
        if self.trans {
            (1, self.ld as isize)
        } else {
            (self.ld as isize, 1)
        }
    }
}

/// `c[m×n] (ldc) = alpha · op(a)[m×k] · op(b)[k×n] + beta · c`, using every rayon thread.
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_threads(
        rayon::current_num_threads(),
        m,
        n,
        k,
        alpha,
        a,
        b,
        beta,
        c,
        ldc,
    );
}

/// [`sgemm`] on the calling thread only, for callers that already run independent products in
/// parallel (one image per rayon task in the convolution).
pub fn sgemm_seq(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_threads(1, m, n, k, alpha, a, b, beta, c, ldc);
}

fn sgemm_threads(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            for v in &mut c[r * ldc..r * ldc + n] {
                *v *= beta;
            }
        }
        return;
    }
    rust_sgemm_threads(threads, m, n, k, alpha, a, b, beta, c, ldc);
}

/// The pure-Rust path (the `gemm` crate), always available.
pub fn rust_sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    rust_sgemm_threads(
        rayon::current_num_threads(),
        m,
        n,
        k,
        alpha,
        a,
        b,
        beta,
        c,
        ldc,
    );
}

fn rust_sgemm_threads(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    assert!(c.len() >= (m - 1) * ldc + n, "sgemm: C too small");
    assert!(
        a.data.len() >= max_index(m, k, a_rs, a_cs),
        "sgemm: A too small"
    );
    assert!(
        b.data.len() >= max_index(k, n, b_rs, b_cs),
        "sgemm: B too small"
    );
    let par = if (m * n * k) < 64 * 64 * 64 || threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // SAFETY: the asserts above bound every index the strides can reach; `gemm` computes
    // dst = dst_scale·dst + ab_scale·lhs·rhs and reads dst only when `read_dst` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            beta != 0.0,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
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

fn max_index(rows: usize, cols: usize, rs: isize, cs: isize) -> usize {
    (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_for_all_transposes() {
        let (m, n, k) = (37, 29, 71);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let want = naive(m, n, k, &a, ta, &b, tb);
            let am = MatRef::new(&a, if ta { m } else { k });
            let bm = MatRef::new(&b, if tb { k } else { n });
            let am = if ta { am.t() } else { am };
            let bm = if tb { bm.t() } else { bm };
            let mut c = vec![1.0; m * n];
            sgemm(m, n, k, 2.0, am, bm, 0.5, &mut c, n);
            for (got, w) in c.iter().zip(&want) {
                assert!(
                    (got - (2.0 * w + 0.5)).abs() < 1e-3,
                    "{ta} {tb}: {got} vs {w}"
                );
            }
        }
    }
}
