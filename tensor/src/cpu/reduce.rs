//! Reduction kernels: sums over any set of dimensions (f64 accumulators, so long sums keep f32
//! accuracy), their broadcast-back adjoint, and max along one dimension.

use super::PAR_THRESHOLD;
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// Elements per independent partial sum when one output gathers a large input. Fixed (not derived
/// from the thread count) so that results are bit-identical on every machine.
const PIECE: usize = 1 << 13;

/// Columns per task when few outputs with long kept rows gather many inputs.
const COLS: usize = 1 << 10;

/// An outer run of merged dimensions (all kept or all reduced).
#[derive(Clone, Copy, Debug)]
struct Run {
    size: usize,
    reduced: bool,
    /// Stride in input rows (one row = `inner` contiguous elements).
    row_stride: usize,
    /// Stride in output units; meaningful for kept runs only.
    unit_stride: usize,
}

/// How a sum over a set of dimensions walks a row-major tensor. Size-1 dimensions are dropped and
/// neighbouring dimensions of the same kind merged, so the walk has as few levels as possible and
/// the innermost level is always one contiguous run of `inner` elements.
#[derive(Clone, Debug)]
pub struct ReducePlan {
    inner: usize,
    inner_reduced: bool,
    outer: Vec<Run>,
    /// Output units: kept outer positions. An output unit is one value when the inner run is
    /// reduced and `inner` values otherwise.
    units: usize,
    /// Input rows that fold into each output unit.
    reduced_rows: usize,
}

impl ReducePlan {
    /// `reduce[d]` says whether dimension `d` of `dims` is summed over. No dimension may be 0.
    pub fn new(dims: &[usize], reduce: &[bool]) -> Self {
        let mut runs: Vec<(usize, bool)> = Vec::new();
        for (&size, &red) in dims.iter().zip(reduce) {
            if size == 1 {
                continue;
            }
            match runs.last_mut() {
                Some((s, r)) if *r == red => *s *= size,
                _ => runs.push((size, red)),
            }
        }
        let (inner, inner_reduced) = runs.pop().unwrap_or((1, false));
        let mut outer: Vec<Run> = runs
            .iter()
            .map(|&(size, reduced)| Run {
                size,
                reduced,
                row_stride: 0,
                unit_stride: 0,
            })
            .collect();
        let (mut rs, mut us) = (1, 1);
        for run in outer.iter_mut().rev() {
            run.row_stride = rs;
            rs *= run.size;
            if !run.reduced {
                run.unit_stride = us;
                us *= run.size;
            }
        }
        let reduced_rows = outer.iter().filter(|r| r.reduced).map(|r| r.size).product();
        ReducePlan {
            inner,
            inner_reduced,
            outer,
            units: us,
            reduced_rows,
        }
    }

    /// Number of output values.
    pub fn out_len(&self) -> usize {
        self.units * self.unit_len()
    }

    fn unit_len(&self) -> usize {
        if self.inner_reduced {
            1
        } else {
            self.inner
        }
    }

    /// The first input row of output unit `u`.
    fn unit_base(&self, mut u: usize) -> usize {
        let mut base = 0;
        for run in self.outer.iter().rev().filter(|r| !r.reduced) {
            base += (u % run.size) * run.row_stride;
            u /= run.size;
        }
        base
    }

    /// Row offset (from a unit's base) of the `r`-th reduced row.
    fn reduced_offset(&self, mut r: usize) -> usize {
        let mut off = 0;
        for run in self.outer.iter().rev().filter(|r| r.reduced) {
            off += (r % run.size) * run.row_stride;
            r /= run.size;
        }
        off
    }

    /// The output unit that input row `row` folds into.
    fn unit_of_row(&self, mut row: usize) -> usize {
        let mut u = 0;
        for run in self.outer.iter().rev() {
            if !run.reduced {
                u += (row % run.size) * run.unit_stride;
            }
            row /= run.size;
        }
        u
    }
}

/// Independent accumulators per f64 sum: one chain is limited by the add latency (≈ 4 cycles),
/// eight keep the vector units busy. The lane order is fixed, so results stay deterministic.
const LANES: usize = 8;

/// `Σ f(x_i)` accumulated in f64.
#[inline]
pub(crate) fn sum_by(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += f(c[j]);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &v in rest {
        s += f(v);
    }
    s
}

/// `Σ f(a_i, b_i)` accumulated in f64 (`a` and `b` of equal length).
#[inline]
pub(crate) fn sum2_by(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] += f(x[j], y[j]);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for (&x, &y) in ra.iter().zip(rb) {
        s += f(x, y);
    }
    s
}

fn sum_f64(v: &[f32]) -> f64 {
    sum_by(v, |x| x as f64)
}

/// `scale · Σ` of `x` under `plan`.
pub fn sum(x: &[f32], plan: &ReducePlan, scale: f64) -> CpuBuf {
    let l = plan.inner;
    let ul = plan.unit_len();
    let mut out = CpuBuf::zeros(plan.out_len());
    if out.is_empty() {
        return out;
    }
    let par = x.len() >= PAR_THRESHOLD;
    if par && plan.units < 4 * rayon::current_num_threads().max(1) {
        // Few outputs gather many inputs: split each output's inputs into fixed pieces summed in
        // parallel, then add the pieces in order.
        for (u, o) in out.chunks_mut(ul).enumerate() {
            sum_unit_split(x, plan, u, o, scale);
        }
        return out;
    }
    let unit = |(u, o): (usize, &mut [f32])| {
        let base = plan.unit_base(u);
        if plan.inner_reduced {
            let mut acc = 0.0;
            for r in 0..plan.reduced_rows {
                let row = base + plan.reduced_offset(r);
                acc += sum_f64(&x[row * l..(row + 1) * l]);
            }
            o[0] = (acc * scale) as f32;
        } else {
            let mut acc = vec![0f64; l];
            for r in 0..plan.reduced_rows {
                let row = base + plan.reduced_offset(r);
                for (a, v) in acc.iter_mut().zip(&x[row * l..(row + 1) * l]) {
                    *a += *v as f64;
                }
            }
            for (o, a) in o.iter_mut().zip(&acc) {
                *o = (a * scale) as f32;
            }
        }
    };
    if par {
        out.par_chunks_mut(ul).enumerate().for_each(unit);
    } else {
        out.chunks_mut(ul).enumerate().for_each(unit);
    }
    out
}

/// One output unit of [`sum`], parallel over fixed pieces of its inputs.
fn sum_unit_split(x: &[f32], plan: &ReducePlan, u: usize, o: &mut [f32], scale: f64) {
    let l = plan.inner;
    let base = plan.unit_base(u);
    if plan.inner_reduced {
        let chunks_per_row = l.div_ceil(PIECE);
        let pieces: Vec<f64> = (0..plan.reduced_rows * chunks_per_row)
            .into_par_iter()
            .map(|p| {
                let row = base + plan.reduced_offset(p / chunks_per_row);
                let start = (p % chunks_per_row) * PIECE;
                let end = (start + PIECE).min(l);
                sum_f64(&x[row * l + start..row * l + end])
            })
            .collect();
        o[0] = (pieces.iter().sum::<f64>() * scale) as f32;
    } else if l >= COLS {
        // Long kept rows: split the columns; each column adds its rows in order.
        o.par_chunks_mut(COLS).enumerate().for_each(|(p, o)| {
            let start = p * COLS;
            let mut acc = vec![0f64; o.len()];
            for r in 0..plan.reduced_rows {
                let row = (base + plan.reduced_offset(r)) * l + start;
                for (a, v) in acc.iter_mut().zip(&x[row..row + o.len()]) {
                    *a += *v as f64;
                }
            }
            for (o, a) in o.iter_mut().zip(&acc) {
                *o = (a * scale) as f32;
            }
        });
    } else {
        // Short kept rows: split the rows into pieces of about PIECE elements, each with its own
        // accumulator row (at most as many f64s in all as the input has f32s).
        let rows_per_piece = (PIECE / l).max(1);
        let pieces: Vec<Vec<f64>> = (0..plan.reduced_rows.div_ceil(rows_per_piece))
            .into_par_iter()
            .map(|p| {
                let mut acc = vec![0f64; l];
                let end = ((p + 1) * rows_per_piece).min(plan.reduced_rows);
                for r in p * rows_per_piece..end {
                    let row = base + plan.reduced_offset(r);
                    for (a, v) in acc.iter_mut().zip(&x[row * l..(row + 1) * l]) {
                        *a += *v as f64;
                    }
                }
                acc
            })
            .collect();
        for (j, o) in o.iter_mut().enumerate() {
            *o = (pieces.iter().map(|p| p[j]).sum::<f64>() * scale) as f32;
        }
    }
}

/// The adjoint of [`sum`]: every input position receives `scale ·` the value of the output it
/// was summed into. `n` is the input's element count.
pub fn broadcast_back(g: &[f32], plan: &ReducePlan, scale: f32, n: usize) -> CpuBuf {
    let l = plan.inner;
    let mut out = CpuBuf::zeros(n);
    if n == 0 {
        return out;
    }
    let row = |(r, o): (usize, &mut [f32])| {
        let u = plan.unit_of_row(r);
        if plan.inner_reduced {
            o.fill(g[u] * scale);
        } else {
            for (o, v) in o.iter_mut().zip(&g[u * l..(u + 1) * l]) {
                *o = v * scale;
            }
        }
    };
    if n >= PAR_THRESHOLD {
        out.par_chunks_mut(l).enumerate().for_each(row);
    } else {
        out.chunks_mut(l).enumerate().for_each(row);
    }
    out
}

/// Sum of all elements in f64, in fixed pieces so the result does not depend on the thread count.
pub fn sum_all(x: &[f32]) -> f64 {
    if x.len() < PAR_THRESHOLD {
        return sum_f64(x);
    }
    let pieces: Vec<f64> = x.par_chunks(PIECE).map(sum_f64).collect();
    pieces.iter().sum()
}

/// Max over the middle axis of `x` viewed as `[outer, d, inner]` (`d > 0`): the values
/// `[outer, inner]` and the first index of each maximum. NaN counts as larger than any number, as
/// in PyTorch.
pub fn max_dim(x: &[f32], outer: usize, d: usize, inner: usize) -> (CpuBuf, Vec<usize>) {
    let mut vals = CpuBuf::zeros(outer * inner);
    let mut idx = vec![0usize; outer * inner];
    if vals.is_empty() {
        return (vals, idx);
    }
    let block = |(o, (v, a)): (usize, (&mut [f32], &mut [usize]))| {
        let src = &x[o * d * inner..(o + 1) * d * inner];
        v.copy_from_slice(&src[..inner]);
        a.fill(0);
        for k in 1..d {
            for ((best, arg), &c) in v
                .iter_mut()
                .zip(a.iter_mut())
                .zip(&src[k * inner..(k + 1) * inner])
            {
                if c > *best || (c.is_nan() && !best.is_nan()) {
                    *best = c;
                    *arg = k;
                }
            }
        }
    };
    if x.len() >= PAR_THRESHOLD {
        vals.par_chunks_mut(inner)
            .zip(idx.par_chunks_mut(inner))
            .enumerate()
            .for_each(block);
    } else {
        vals.chunks_mut(inner)
            .zip(idx.chunks_mut(inner))
            .enumerate()
            .for_each(block);
    }
    (vals, idx)
}

/// The adjoint of [`max_dim`]: `g` (`[outer, inner]`) scattered to the argmax positions of a
/// zero `[outer, d, inner]` tensor.
pub fn max_dim_backward(g: &[f32], idx: &[usize], outer: usize, d: usize, inner: usize) -> CpuBuf {
    let mut out = CpuBuf::zeros(outer * d * inner);
    if out.is_empty() {
        return out;
    }
    let block = |(o, dst): (usize, &mut [f32])| {
        let (g, a) = (
            &g[o * inner..(o + 1) * inner],
            &idx[o * inner..(o + 1) * inner],
        );
        for i in 0..inner {
            dst[a[i] * inner + i] = g[i];
        }
    };
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(d * inner).enumerate().for_each(block);
    } else {
        out.chunks_mut(d * inner).enumerate().for_each(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sum by visiting every input element and computing its output index directly.
    fn naive(x: &[f32], dims: &[usize], reduce: &[bool]) -> Vec<f64> {
        let out_dims: Vec<usize> = dims
            .iter()
            .zip(reduce)
            .map(|(&d, &r)| if r { 1 } else { d })
            .collect();
        let mut out = vec![0f64; out_dims.iter().product()];
        for (i, v) in x.iter().enumerate() {
            let (mut rem, mut o, mut stride) = (i, 0, 1);
            for k in (0..dims.len()).rev() {
                let idx = rem % dims[k];
                rem /= dims[k];
                if !reduce[k] {
                    o += idx * stride;
                }
                stride *= out_dims[k];
            }
            out[o] += *v as f64;
        }
        out
    }

    #[test]
    fn plans_match_naive_sums_including_parallel_paths() {
        // Large enough for the parallel and split paths, with size-1 dims to drop.
        let dims = [3, 1, 70, 2, 160];
        let n: usize = dims.iter().product();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for mask in 0u32..32 {
            let reduce: Vec<bool> = (0..5).map(|d| mask & (1 << d) != 0).collect();
            let plan = ReducePlan::new(&dims, &reduce);
            let got = sum(&x, &plan, 1.0);
            let want = naive(&x, &dims, &reduce);
            assert_eq!(got.len(), want.len(), "mask {mask:05b}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{mask:05b}"
                );
            }
            // broadcast_back of a ramp puts output u's value at every input that fed u.
            let ramp: Vec<f32> = (0..got.len()).map(|i| i as f32).collect();
            let back = broadcast_back(&ramp, &plan, 2.0, n);
            let ones = vec![1f32; n];
            let counts = sum(&ones, &plan, 1.0);
            let total: f64 = back.iter().map(|&v| v as f64).sum();
            let want_total: f64 = ramp
                .iter()
                .zip(counts.iter())
                .map(|(r, c)| 2.0 * *r as f64 * *c as f64)
                .sum();
            assert_eq!(total, want_total, "{mask:05b}");
        }
    }

    #[test]
    fn few_outputs_with_long_or_short_kept_rows() {
        for dims in [[3usize, 20_000], [20_000, 3]] {
            let n = dims[0] * dims[1];
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 3.0)
                .collect();
            let reduce = [true, false];
            let got = sum(&x, &ReducePlan::new(&dims, &reduce), 0.5);
            let want = naive(&x, &dims, &reduce);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - 0.5 * w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{dims:?}"
                );
            }
        }
    }

    #[test]
    fn long_sums_keep_f32_accuracy() {
        // 2^24 + many small values: a naive f32 accumulator stalls at 2^24 and loses them all.
        let mut x = vec![0.25f32; 1 << 20];
        x[0] = 16_777_216.0;
        let want = 16_777_216.0 + 0.25 * ((1 << 20) - 1) as f64;
        assert_eq!(sum_all(&x), want);
        let plan = ReducePlan::new(&[1 << 20], &[true]);
        assert_eq!(sum(&x, &plan, 1.0)[0] as f64, want as f32 as f64);
    }

    #[test]
    fn max_dim_prefers_first_and_nan() {
        let x = [1.0, 5.0, 5.0, 2.0, f32::NAN, 0.0];
        let (v, a) = max_dim(&x, 2, 3, 1);
        assert_eq!(a, vec![1, 1]);
        assert_eq!(v[0], 5.0);
        assert!(v[1].is_nan());
        let back = max_dim_backward(&[1.0, 2.0], &a, 2, 3, 1);
        assert_eq!(&back[..], &[0.0, 1.0, 0.0, 0.0, 2.0, 0.0]);
    }
}
