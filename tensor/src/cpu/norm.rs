//! Layer normalisation kernels over samples `[n][c][s]` (`s` = spatial size, 1 for `[N, F]`),
//! with an optional per-channel affine. Statistics are two-pass in f64, one sample per task.

use super::reduce::{sum2_by, sum_by};
use super::PAR_THRESHOLD;
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// Output and per-sample statistics `stats[i] = [mean, mean_lo, rstd]` (`[n, 3]`): the mean as
/// an f32 pair `mean + mean_lo` (`mean_lo` is the f64 mean's rounding remainder, so that
/// `(x − mean) − mean_lo` recovers x̂ accurately in the backward even when the mean is large next
/// to the spread; `x − mean` is exact there by Sterbenz's lemma) and `rstd = 1/sqrt(var + eps)`
/// (biased variance).
pub struct LayerNormForward {
    /// The normalised (and scaled, shifted) output, shaped as the input.
    pub y: CpuBuf,
    /// `[n, STATS]`: `[mean, mean_lo, rstd]` per sample, for [`layer_norm_backward`].
    pub stats: CpuBuf,
}

/// Statistics saved per sample by [`layer_norm`].
pub const STATS: usize = 3;

/// Forward layer norm of samples `[n][c][s]`. `x.len() == n * c * s`, `c * s > 0`; `gamma`/`beta` have length `c`.
pub fn layer_norm(
    x: &[f32],
    (n, c, s): (usize, usize, usize),
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> LayerNormForward {
    let m = c * s;
    let mut y = CpuBuf::zeros(n * m);
    let mut stats = CpuBuf::zeros(n * STATS);
    let sample = |(i, (y, st)): (usize, (&mut [f32], &mut [f32]))| {
        let x = &x[i * m..(i + 1) * m];
        let mu = sum_by(x, |v| v as f64) / m as f64;
        let var = sum_by(x, |v| {
            let d = v as f64 - mu;
            d * d
        }) / m as f64;
        let rs = 1.0 / (var + eps as f64).sqrt();
        st[0] = mu as f32;
        st[1] = (mu - st[0] as f64) as f32;
        st[2] = rs as f32;
        for ch in 0..c {
            let (g, b) = (
                gamma.map_or(1.0, |g| g[ch] as f64),
                beta.map_or(0.0, |b| b[ch] as f64),
            );
            // One multiply-add per element: y = x·(rs·g) + (b − mu·rs·g).
            let (a, off) = (rs * g, b - mu * rs * g);
            for (y, &v) in y[ch * s..(ch + 1) * s]
                .iter_mut()
                .zip(&x[ch * s..(ch + 1) * s])
            {
                *y = (v as f64 * a + off) as f32;
            }
        }
    };
    if n * m >= PAR_THRESHOLD {
        y.par_chunks_mut(m)
            .zip(stats.par_chunks_mut(STATS))
            .enumerate()
            .for_each(sample);
    } else {
        y.chunks_mut(m)
            .zip(stats.chunks_mut(STATS))
            .enumerate()
            .for_each(sample);
    }
    LayerNormForward { y, stats }
}

/// Gradients of layer norm from the upstream gradient `g`.
pub struct LayerNormBackward {
    /// d/dx, when requested.
    pub dx: Option<CpuBuf>,
    /// d/dgamma (length `c`), when requested.
    pub dgamma: Option<CpuBuf>,
    /// d/dbeta (length `c`), when requested.
    pub dbeta: Option<CpuBuf>,
}

/// Backward layer norm with the statistics `stats` saved by [`layer_norm`]. With `x̂ = (x − mean)·rstd`
/// and `d = g·gamma`: `dx = rstd·(d − mean(d) − x̂·mean(d·x̂))` over the sample,
/// `dgamma_c = Σ g·x̂` and `dbeta_c = Σ g` over batch and space.
/// `need` flags which of `[dx, dgamma, dbeta]` to compute.
pub fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    stats: &[f32],
    (n, c, s): (usize, usize, usize),
    gamma: Option<&[f32]>,
    need: [bool; 3],
) -> LayerNormBackward {
    let [need_dx, need_dgamma, need_dbeta] = need;
    let m = c * s;
    // Per-sample, per-channel partials of Σ g·x̂ and Σ g, summed over samples afterwards in order.
    let mut parts = vec![0f64; n * 2 * c];
    let sample = |i: usize, dx: Option<&mut [f32]>, part: &mut [f64]| {
        let (x, g) = (&x[i * m..(i + 1) * m], &g[i * m..(i + 1) * m]);
        let (mu, lo, rs) = (stats[i * STATS], stats[i * STATS + 1], stats[i * STATS + 2]);
        let (mut sum_d, mut sum_dx) = (0f64, 0f64);
        for ch in 0..c {
            let gm = gamma.map_or(1.0, |gm| gm[ch]);
            let (xc, gc) = (&x[ch * s..(ch + 1) * s], &g[ch * s..(ch + 1) * s]);
            // Σ g·x̂ = rstd · Σ g·((x − mean) − mean_lo).
            let gx = rs as f64 * sum2_by(xc, gc, |v, gv| gv as f64 * ((v - mu) - lo) as f64);
            let gs = sum_by(gc, |gv| gv as f64);
            part[ch] = gx;
            part[c + ch] = gs;
            sum_d += gm as f64 * gs;
            sum_dx += gm as f64 * gx;
        }
        let Some(dx) = dx else { return };
        let (a, b) = ((sum_d / m as f64) as f32, (sum_dx / m as f64) as f32);
        for ch in 0..c {
            let gm = gamma.map_or(1.0, |gm| gm[ch]);
            let sl = ch * s..(ch + 1) * s;
            for ((o, &v), &gv) in dx[sl.clone()].iter_mut().zip(&x[sl.clone()]).zip(&g[sl]) {
                let xh = ((v - mu) - lo) * rs;
                *o = rs * (gv * gm - a - xh * b);
            }
        }
    };
    let par = n * m >= PAR_THRESHOLD;
    let dx = if need_dx {
        let mut dx = CpuBuf::zeros(n * m);
        let f = |(i, (d, p)): (usize, (&mut [f32], &mut [f64]))| sample(i, Some(d), p);
        if par {
            dx.par_chunks_mut(m)
                .zip(parts.par_chunks_mut(2 * c))
                .enumerate()
                .for_each(f);
        } else {
            dx.chunks_mut(m)
                .zip(parts.chunks_mut(2 * c))
                .enumerate()
                .for_each(f);
        }
        Some(dx)
    } else {
        if need_dgamma || need_dbeta {
            let f = |(i, p): (usize, &mut [f64])| sample(i, None, p);
            if par {
                parts.par_chunks_mut(2 * c).enumerate().for_each(f);
            } else {
                parts.chunks_mut(2 * c).enumerate().for_each(f);
            }
        }
        None
    };
    let channel_sums = |first: usize| {
        let mut acc = vec![0f64; c];
        for p in parts.chunks(2 * c) {
            for (a, v) in acc.iter_mut().zip(&p[first..first + c]) {
                *a += v;
            }
        }
        CpuBuf::new(acc.into_iter().map(|v| v as f32).collect())
    };
    LayerNormBackward {
        dx,
        dgamma: need_dgamma.then(|| channel_sums(0)),
        dbeta: need_dbeta.then(|| channel_sums(c)),
    }
}
