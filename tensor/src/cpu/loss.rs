//! Softmax, log-softmax and softmax cross-entropy kernels over rows of length `k`.
//!
//! Every row is shifted by its maximum before exponentiating, so no exp overflows; the
//! normaliser is accumulated in f64.

use super::reduce::sum_by;
use super::PAR_THRESHOLD;
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// `(max, ln Σ exp(x - max))` of a non-empty row.
#[inline]
fn max_and_lse(row: &[f32]) -> (f32, f64) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s = sum_by(row, |v| ((v - m) as f64).exp());
    (m, s.ln())
}

fn rows_mut<F>(out: &mut [f32], k: usize, f: F)
where
    F: Fn((usize, &mut [f32])) + Send + Sync,
{
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(k).enumerate().for_each(f);
    } else {
        out.chunks_mut(k).enumerate().for_each(f);
    }
}

/// Softmax (or, with `log`, log-softmax) of each row of `x`. `k > 0`.
pub fn softmax(x: &[f32], k: usize, log: bool) -> CpuBuf {
    let mut out = CpuBuf::zeros(x.len());
    rows_mut(&mut out, k, |(r, o)| {
        let row = &x[r * k..(r + 1) * k];
        let (m, lse) = max_and_lse(row);
        for (o, &v) in o.iter_mut().zip(row) {
            let z = (v - m) as f64 - lse;
            *o = if log { z as f32 } else { z.exp() as f32 };
        }
    });
    out
}

/// Input gradient of softmax from its output `y`: `y ∘ (g − Σ g∘y)` per row.
pub fn softmax_backward(y: &[f32], g: &[f32], k: usize) -> CpuBuf {
    let mut out = CpuBuf::zeros(y.len());
    rows_mut(&mut out, k, |(r, o)| {
        let (y, g) = (&y[r * k..(r + 1) * k], &g[r * k..(r + 1) * k]);
        let dot: f64 = y.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
        let dot = dot as f32;
        for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
            *o = y * (g - dot);
        }
    });
    out
}

/// Input gradient of log-softmax from its output `y`: `g − exp(y) Σ g` per row.
pub fn log_softmax_backward(y: &[f32], g: &[f32], k: usize) -> CpuBuf {
    let mut out = CpuBuf::zeros(y.len());
    rows_mut(&mut out, k, |(r, o)| {
        let (y, g) = (&y[r * k..(r + 1) * k], &g[r * k..(r + 1) * k]);
        let sum = g.iter().map(|&v| v as f64).sum::<f64>() as f32;
        for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
            *o = g - y.exp() * sum;
        }
    });
    out
}

/// Mean over rows of `−Σ_j q_j log softmax(x)_j`, with the target distribution
/// `q = (1 − ls)·onehot(target) + ls/k`. Targets must be `< k`; `k > 0`.
pub fn cross_entropy(x: &[f32], k: usize, targets: &[usize], ls: f32) -> f64 {
    let ls = ls as f64;
    let row_loss = |(row, &t): (&[f32], &usize)| -> f64 {
        let (m, lse) = max_and_lse(row);
        let shift = m as f64 + lse;
        let logp_t = row[t] as f64 - shift;
        let sum_logp = row.iter().map(|&v| v as f64).sum::<f64>() - k as f64 * shift;
        -(1.0 - ls) * logp_t - ls / k as f64 * sum_logp
    };
    // Per-row losses collected in order, then summed: the result does not depend on scheduling.
    let losses: Vec<f64> = if x.len() >= PAR_THRESHOLD {
        x.par_chunks(k).zip(targets).map(row_loss).collect()
    } else {
        x.chunks(k).zip(targets).map(row_loss).collect()
    };
    losses.iter().sum::<f64>() / targets.len() as f64
}

/// Gradient of [`cross_entropy`] scaled by `scale` (the upstream gradient):
/// `scale · (softmax(x) − q) / n`.
pub fn cross_entropy_backward(
    x: &[f32],
    k: usize,
    targets: &[usize],
    ls: f32,
    scale: f32,
) -> CpuBuf {
    let mut out = CpuBuf::zeros(x.len());
    let c = scale as f64 / targets.len() as f64;
    let (off, on) = (ls as f64 / k as f64, 1.0 - ls as f64);
    rows_mut(&mut out, k, |(r, o)| {
        let row = &x[r * k..(r + 1) * k];
        let (m, lse) = max_and_lse(row);
        let t = targets[r];
        for (j, (o, &v)) in o.iter_mut().zip(row).enumerate() {
            let q = if j == t { on + off } else { off };
            *o = ((((v - m) as f64 - lse).exp() - q) * c) as f32;
        }
    });
    out
}
