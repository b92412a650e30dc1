//! Elementwise kernels.

use super::PAR_THRESHOLD;
use crate::ops::{BinaryOp, UnaryOp};
use crate::storage::CpuBuf;
use crate::Shape;
use rayon::prelude::*;

const CHUNK: usize = 1 << 13;

pub fn unary(op: UnaryOp, x: &[f32]) -> CpuBuf {
    // One monomorphised loop per op (the `match` outside the loop), so each vectorises.
    match op {
        UnaryOp::Neg => map(x, |v| -v),
        UnaryOp::Exp => map(x, crate::cpu::fastmath::exp),
        UnaryOp::Log => map(x, f32::ln),
        UnaryOp::Sigmoid => map(x, crate::cpu::fastmath::sigmoid),
        UnaryOp::Tanh => map(x, crate::cpu::fastmath::tanh),
        UnaryOp::Elu => map(x, |v| UnaryOp::Elu.apply(v)),
        UnaryOp::Relu => map(x, |v| v.max(0.0)),
        UnaryOp::Sqr => map(x, |v| v * v),
        UnaryOp::Sqrt => map(x, f32::sqrt),
        UnaryOp::Recip => map(x, |v| 1.0 / v),
        UnaryOp::Affine { mul, add } => map(x, move |v| mul * v + add),
    }
}

fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> CpuBuf {
    let mut out = CpuBuf::zeros(x.len());
    let run = |(o, i): (&mut [f32], &[f32])| {
        for (o, i) in o.iter_mut().zip(i) {
            *o = f(*i);
        }
    };
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(run);
    } else {
        run((&mut out, x));
    }
    out
}

pub fn unary_backward(op: UnaryOp, x: &[f32], y: &[f32], g: &[f32]) -> CpuBuf {
    let mut out = CpuBuf::zeros(x.len());
    type Chunks<'a> = (&'a mut [f32], (&'a [f32], (&'a [f32], &'a [f32])));
    let f = |(o, (x, (y, g))): Chunks<'_>| {
        for i in 0..o.len() {
            o[i] = op.derivative(x[i], y[i], g[i]);
        }
    };
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(
                x.par_chunks(CHUNK)
                    .zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))),
            )
            .for_each(f);
    } else {
        f((&mut out, (x, (y, g))));
    }
    out
}

/// Strides of `s` seen from a broadcast shape of rank `rank` (0 on broadcast dimensions).
fn broadcast_strides(s: &Shape, out: &Shape) -> Vec<usize> {
    let rank = out.rank();
    let own = s.strides();
    let off = rank - s.rank();
    (0..rank)
        .map(|i| {
            if i < off || s.dim(i - off) == 1 {
                0
            } else {
                own[i - off]
            }
        })
        .collect()
}

/// Offset of element `idx` (row-major in `out`) under `strides`.
#[inline]
fn offset(mut idx: usize, out: &[usize], strides: &[usize]) -> usize {
    let mut o = 0;
    for d in (0..out.len()).rev() {
        o += (idx % out[d]) * strides[d];
        idx /= out[d];
    }
    o
}

pub fn binary(op: BinaryOp, a: &[f32], sa: &Shape, b: &[f32], sb: &Shape, out: &Shape) -> CpuBuf {
    let n = out.elem_count();
    let mut res = CpuBuf::zeros(n);
    if sa == out && sb == out {
        let f = |(o, (a, b)): (&mut [f32], (&[f32], &[f32]))| {
            for i in 0..o.len() {
                o[i] = op.apply(a[i], b[i]);
            }
        };
        if n >= PAR_THRESHOLD {
            res.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(f);
        } else {
            f((&mut res, (a, b)));
        }
        return res;
    }
    let (ta, tb) = (broadcast_strides(sa, out), broadcast_strides(sb, out));
    let dims = out.dims();
    // Rows of the innermost dimension: one offset computation per row, a tight loop inside.
    let inner = *dims.last().unwrap_or(&1);
    let (ia, ib) = (*ta.last().unwrap_or(&0), *tb.last().unwrap_or(&0));
    let row = |(r, o): (usize, &mut [f32])| {
        let (oa, ob) = (offset(r * inner, dims, &ta), offset(r * inner, dims, &tb));
        for (j, o) in o.iter_mut().enumerate() {
            *o = op.apply(a[oa + j * ia], b[ob + j * ib]);
        }
    };
    if inner == 0 {
        return res;
    }
    if n >= PAR_THRESHOLD {
        res.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        res.chunks_mut(inner).enumerate().for_each(row);
    }
    res
}

/// Sums `x` (of shape `from`) down to `to`, which broadcasts to `from`.
pub fn sum_to(x: &[f32], from: &Shape, to: &Shape) -> CpuBuf {
    let mut out = CpuBuf::zeros(to.elem_count());
    let strides = broadcast_strides(to, from);
    let dims = from.dims();
    let inner = *dims.last().unwrap_or(&1);
    if inner == 0 || x.is_empty() {
        return out;
    }
    let is = *strides.last().unwrap_or(&0);
    for (r, row) in x.chunks(inner).enumerate() {
        let o = offset(r * inner, dims, &strides);
        if is == 0 {
            out[o] += row.iter().sum::<f32>();
        } else {
            for (j, v) in row.iter().enumerate() {
                out[o + j] += v;
            }
        }
    }
    out
}

/// Materialises the broadcast of `x` (shape `from`) to `to`.
pub fn expand(x: &[f32], from: &Shape, to: &Shape) -> CpuBuf {
    let mut out = CpuBuf::zeros(to.elem_count());
    let strides = broadcast_strides(from, to);
    let dims = to.dims();
    let inner = *dims.last().unwrap_or(&1);
    if inner == 0 {
        return out;
    }
    let is = *strides.last().unwrap_or(&0);
    out.par_chunks_mut(inner).enumerate().for_each(|(r, row)| {
        let o = offset(r * inner, dims, &strides);
        for (j, v) in row.iter_mut().enumerate() {
            *v = x[o + j * is];
        }
    });
    out
}
