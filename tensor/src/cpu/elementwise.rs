//! Elementwise kernels.

use super::{simd, PAR_THRESHOLD};
use crate::ops::{BinaryOp, UnaryOp};
use crate::storage::CpuBuf;
use crate::Shape;
use rayon::prelude::*;
use std::mem::MaybeUninit;

const CHUNK: usize = 1 << 13;

/// `op` applied to every value of `x` (in parallel above [`PAR_THRESHOLD`]).
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

/// A buffer of `n` values that `fill` writes in chunks of `CHUNK` (in parallel when large): `fill`
/// gets the chunk's index and must write every element of it. Not zeroed first: a pass over memory
/// the kernel is about to overwrite anyway.
fn filled(n: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> CpuBuf {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    if n >= PAR_THRESHOLD {
        spare
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| fill(c, o));
    } else {
        for (c, o) in spare.chunks_mut(CHUNK).enumerate() {
            fill(c, o);
        }
    }
    // SAFETY: every caller's `fill` writes each element of its chunk (they zip the chunk with
    // inputs asserted to be as long), so all `n` values are initialised.
    unsafe { v.set_len(n) };
    CpuBuf::new(v)
}

/// The chunk of `x` that lines up with output chunk `c` of length `len`.
#[inline]
fn chunk(x: &[f32], c: usize, len: usize) -> &[f32] {
    let part = &x[c * CHUNK..][..len];
    assert_eq!(part.len(), len);
    part
}

fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Copy) -> CpuBuf {
    filled(x.len(), |c, o| {
        let x = chunk(x, c, o.len());
        simd::dispatch(|| {
            for (o, i) in o.iter_mut().zip(x) {
                o.write(f(*i));
            }
        })
    })
}

/// The gradient of the input of `op` from its input `x`, its output `y` and the output's
/// gradient `g` ([`UnaryOp::derivative`] per element; all three of one length).
pub fn unary_backward(op: UnaryOp, x: &[f32], y: &[f32], g: &[f32]) -> CpuBuf {
    // One loop per op with the op a constant inside it, so that each vectorises.
    macro_rules! per_op {
        ($($op:pat => $f:expr),* $(,)?) => {
            match op {
                $($op => map3(x, y, g, $f),)*
            }
        };
    }
    per_op! {
        UnaryOp::Neg => |_, _, g| UnaryOp::Neg.derivative(0.0, 0.0, g),
        UnaryOp::Exp => |x, y, g| UnaryOp::Exp.derivative(x, y, g),
        UnaryOp::Log => |x, y, g| UnaryOp::Log.derivative(x, y, g),
        UnaryOp::Sigmoid => |x, y, g| UnaryOp::Sigmoid.derivative(x, y, g),
        UnaryOp::Tanh => |x, y, g| UnaryOp::Tanh.derivative(x, y, g),
        UnaryOp::Elu => |x, y, g| UnaryOp::Elu.derivative(x, y, g),
        UnaryOp::Relu => |x, y, g| UnaryOp::Relu.derivative(x, y, g),
        UnaryOp::Sqr => |x, y, g| UnaryOp::Sqr.derivative(x, y, g),
        UnaryOp::Sqrt => |x, y, g| UnaryOp::Sqrt.derivative(x, y, g),
        UnaryOp::Recip => |x, y, g| UnaryOp::Recip.derivative(x, y, g),
        UnaryOp::Affine { mul, add } => move |x, y, g| UnaryOp::Affine { mul, add }.derivative(x, y, g),
    }
}

/// `out[i] = f(a[i], b[i], c[i])` over three slices of equal length.
fn map3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Sync + Copy) -> CpuBuf {
    assert!(a.len() == b.len() && a.len() == c.len());
    filled(a.len(), |k, o| {
        let (a, b, c) = (
            chunk(a, k, o.len()),
            chunk(b, k, o.len()),
            chunk(c, k, o.len()),
        );
        simd::dispatch(|| {
            for (((o, a), b), c) in o.iter_mut().zip(a).zip(b).zip(c) {
                o.write(f(*a, *b, *c));
            }
        })
    })
}

/// `out[i] = f(a[i], b[i])` over two slices of equal length.
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Copy) -> CpuBuf {
    assert_eq!(a.len(), b.len());
    filled(a.len(), |k, o| {
        let (a, b) = (chunk(a, k, o.len()), chunk(b, k, o.len()));
        simd::dispatch(|| {
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                o.write(f(*a, *b));
            }
        })
    })
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

/// `op` of `a` (shape `sa`) and `b` (shape `sb`) broadcast to `out`, row-major; `out` must be
/// their broadcast shape ([`crate::ops::elementwise::broadcast_shape`]).
pub fn binary(op: BinaryOp, a: &[f32], sa: &Shape, b: &[f32], sb: &Shape, out: &Shape) -> CpuBuf {
    if sa == out && sb == out {
        return match op {
            BinaryOp::Add => map2(a, b, |a, b| a + b),
            BinaryOp::Sub => map2(a, b, |a, b| a - b),
            BinaryOp::Mul => map2(a, b, |a, b| a * b),
            BinaryOp::Div => map2(a, b, |a, b| a / b),
        };
    }
    let n = out.elem_count();
    let mut res = CpuBuf::zeros(n);
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

/// `mul · f(x + shift) + add` with `f` the logistic sigmoid (`tanh` false) or `tanh`.
pub fn squash(x: &[f32], tanh: bool, shift: f32, mul: f32, add: f32) -> CpuBuf {
    use crate::cpu::fastmath;
    if tanh {
        map(x, move |v| mul * fastmath::tanh(v + shift) + add)
    } else {
        map(x, move |v| mul * fastmath::sigmoid(v + shift) + add)
    }
}

/// The input gradient of [`squash`] from its input `x` and output gradient `g` (the squashing
/// is recomputed from `x`: one `exp` instead of a division that loses digits when `mul` is small).
pub fn squash_backward(x: &[f32], g: &[f32], tanh: bool, shift: f32, mul: f32) -> CpuBuf {
    use crate::cpu::fastmath;
    if tanh {
        map2(x, g, move |v, g| {
            let t = fastmath::tanh(v + shift);
            g * mul * (1.0 - t * t)
        })
    } else {
        map2(x, g, move |v, g| {
            let s = fastmath::sigmoid(v + shift);
            g * mul * s * (1.0 - s)
        })
    }
}

/// `a·b + c·d` over four slices of equal length (rounded as the separate products and sum).
pub fn mul_add_mul(a: &[f32], b: &[f32], c: &[f32], d: &[f32]) -> CpuBuf {
    assert!(a.len() == b.len() && a.len() == c.len() && a.len() == d.len());
    filled(a.len(), |k, o| {
        let n = o.len();
        let (a, b, c, d) = (
            chunk(a, k, n),
            chunk(b, k, n),
            chunk(c, k, n),
            chunk(d, k, n),
        );
        simd::dispatch(|| {
            for i in 0..n {
                o[i].write(a[i] * b[i] + c[i] * d[i]);
            }
        })
    })
}

/// `g·x`, the gradient of a product with respect to its other factor.
pub fn mul_same(g: &[f32], x: &[f32]) -> CpuBuf {
    map2(g, x, |g, x| g * x)
}
