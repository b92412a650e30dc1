//! Batched matrix products on [`super::gemm::sgemm`], with operands read transposed in place.

use super::gemm::{sgemm, Gemm, MatMut, MatRef};
use crate::backend::BatchDims;
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// One operand of a batched product: `batch` row-major matrices `stride` elements apart (stride 0
/// = the same matrix for every batch), each stored `rows × cols` and read transposed when
/// `trans` (so `op(M)` is `cols × rows`).
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    /// The values of every matrix of the batch.
    pub data: &'a [f32],
    /// Values from one matrix to the next (0: one matrix shared by the batch).
    pub stride: usize,
    /// Columns of each matrix as stored (its leading dimension).
    pub cols: usize,
    /// Whether each matrix is read transposed.
    pub trans: bool,
}

impl<'a> Operand<'a> {
    fn mat(&self, b: usize) -> MatRef<'a> {
        let m = MatRef::new(&self.data[b * self.stride..], self.cols);
        if self.trans {
            m.t()
        } else {
            m
        }
    }
}

/// `out[i] = op(a[i]) · op(b[i])` (the product `g` of `m × n`, reduction length `k`, with its
/// alpha and beta) for `i < batch`.
pub fn batched_matmul(batch: usize, g: Gemm, a: Operand<'_>, b: Operand<'_>, out: &mut [f32]) {
    let (m, n, k) = (g.m, g.n, g.k);
    if m * n == 0 {
        return;
    }
    let one = |(i, c): (usize, &mut [f32])| sgemm(g, a.mat(i), b.mat(i), MatMut::new(c, n));
    // Small products are single-threaded inside sgemm: spread them over the batch instead.
    if batch > 1 && m * n * k < 64 * 64 * 64 {
        out.par_chunks_mut(m * n).enumerate().for_each(one);
    } else {
        out.chunks_mut(m * n).enumerate().for_each(one);
    }
}

/// A fresh `batch × m × n` product, see [`batched_matmul`].
pub fn matmul(dims: BatchDims, a: Operand<'_>, b: Operand<'_>) -> CpuBuf {
    let BatchDims { batch, m, n, k } = dims;
    let mut out = CpuBuf::zeros(batch * m * n);
    batched_matmul(batch, Gemm::new(m, n, k), a, b, &mut out);
    out
}

/// `x · wᵀ + bias` for `x: [n, i]`, `w: [o, i]`, `bias: [o]`.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, n: usize, i: usize, o: usize) -> CpuBuf {
    let mut out = CpuBuf::zeros(n * o);
    let beta = match bias {
        Some(b) => {
            for row in out.chunks_mut(o) {
                row.copy_from_slice(b);
            }
            1.0
        }
        None => 0.0,
    };
    if n * o > 0 {
        sgemm(
            Gemm::new(n, o, i).beta(beta),
            MatRef::new(x, i),
            MatRef::new(w, i).t(),
            MatMut::new(&mut out, o),
        );
    }
    out
}
