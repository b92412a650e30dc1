//! Single-precision GEMM on row-major host matrices.
//!
//! `C = alpha·op(A)·op(B) + beta·C`, `op` = optional transpose, on the pure-Rust `gemm` crate
//! (always available). oneDNN's sgemm ([`super::onednn::OneDnn::sgemm`]) takes the same
//! [`Gemm`], [`MatRef`] and [`MatMut`] arguments.

pub use crate::backend::Gemm;

/// A row-major matrix operand: `data[r * ld + c]`, optionally read transposed.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// The values; element `(r, c)` of the stored matrix is `data[r * ld + c]`.
    pub data: &'a [f32],
    /// The leading dimension: values from one stored row to the next (≥ the stored columns).
    pub ld: usize,
    /// Whether the product reads the matrix transposed.
    pub trans: bool,
}

impl<'a> MatRef<'a> {
    /// The matrix in `data` with leading dimension `ld`, read as stored.
    pub fn new(data: &'a [f32], ld: usize) -> Self {
        MatRef {
            data,
            ld,
            trans: false,
        }
    }
    /// The same matrix read transposed (twice: as stored again). Nothing is copied.
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
    /// Whether `data` holds every element of op(self) as a `rows × cols` matrix (both ≥ 1).
    pub fn holds(&self, rows: usize, cols: usize) -> bool {
        let (rs, cs) = self.strides();
        self.data.len() > (rows - 1) * rs as usize + (cols - 1) * cs as usize
    }
}

/// A row-major output matrix: `data[r * ld + c]`.
pub struct MatMut<'a> {
    /// The values; element `(r, c)` is `data[r * ld + c]`.
    pub data: &'a mut [f32],
    /// The leading dimension: values from one row to the next (≥ the columns).
    pub ld: usize,
}

impl<'a> MatMut<'a> {
    /// The matrix in `data` with leading dimension `ld`.
    pub fn new(data: &'a mut [f32], ld: usize) -> Self {
        MatMut { data, ld }
    }
}

impl Gemm {
    /// Handles the products without work: none when `C` is empty, `C = beta·C` when the
    /// reduction is empty (zeros for beta 0, whatever `C` held). Returns whether anything is
    /// left for a GEMM kernel, after checking that the operands hold their matrices (a wrong
    /// size is a bug in the caller, not a user error).
    pub fn prepare(&self, a: &MatRef<'_>, b: &MatRef<'_>, c: &mut MatMut<'_>) -> bool {
        let Gemm { m, n, k, beta, .. } = *self;
        if m == 0 || n == 0 {
            return false;
        }
        assert!(
            c.ld >= n && c.data.len() >= (m - 1) * c.ld + n,
            "sgemm: C too small"
        );
        if k == 0 {
            for row in c.data.chunks_mut(c.ld).take(m) {
                let row = &mut row[..n];
                if beta == 0.0 {
                    row.fill(0.0);
                } else {
                    row.iter_mut().for_each(|v| *v *= beta);
                }
            }
            return false;
        }
        assert!(a.holds(m, k), "sgemm: A too small");
        assert!(b.holds(k, n), "sgemm: B too small");
        true
    }
}

/// `c = alpha · op(a) · op(b) + beta · c` (see [`Gemm`]), using every rayon thread.
///
/// # Panics
/// If an operand's slice is too short for its matrix (a bug in the caller; see
/// [`Gemm::prepare`]).
pub fn sgemm(g: Gemm, a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>) {
    sgemm_threads(rayon::current_num_threads(), g, a, b, c);
}

/// [`sgemm`] on the calling thread only, for callers that already run independent products in
/// parallel (one image per rayon task in the convolution).
pub fn sgemm_seq(g: Gemm, a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>) {
    sgemm_threads(1, g, a, b, c);
}

fn sgemm_threads(threads: usize, g: Gemm, a: MatRef<'_>, b: MatRef<'_>, mut c: MatMut<'_>) {
    if !g.prepare(&a, &b, &mut c) {
        return;
    }
    let Gemm {
        m,
        n,
        k,
        alpha,
        beta,
    } = g;
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let par = if (m * n * k) < 64 * 64 * 64 || threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // SAFETY: `prepare` checked that the operands hold every index the strides can reach;
    // `gemm` computes dst = dst_scale·dst + ab_scale·lhs·rhs and reads dst only when `read_dst`
    // is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            1,
            c.ld as isize,
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
    fn an_empty_reduction_scales_c_and_beta_zero_overwrites_it() {
        let (a, b) = ([0.0f32; 0], [0.0f32; 0]);
        let mut c = vec![f32::NAN, 2.0, 3.0, 4.0];
        let g = Gemm::new(2, 2, 0);
        sgemm(
            g,
            MatRef::new(&a, 0),
            MatRef::new(&b, 2),
            MatMut::new(&mut c, 2),
        );
        assert_eq!(c, [0.0; 4]);
        let mut c = vec![1.0, 2.0, 3.0, 4.0];
        let g = g.beta(0.5);
        sgemm(
            g,
            MatRef::new(&a, 0),
            MatRef::new(&b, 2),
            MatMut::new(&mut c, 2),
        );
        assert_eq!(c, [0.5, 1.0, 1.5, 2.0]);
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
            sgemm(
                Gemm::new(m, n, k).alpha(2.0).beta(0.5),
                am,
                bm,
                MatMut::new(&mut c, n),
            );
            for (got, w) in c.iter().zip(&want) {
                assert!(
                    (got - (2.0 * w + 0.5)).abs() < 1e-3,
                    "{ta} {tb}: {got} vs {w}"
                );
            }
        }
    }
}
