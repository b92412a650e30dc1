//! Direct kernels for convolutions in which every group reads one input channel (depthwise, with
//! any channel multiplier `m = O / groups`; also a dense convolution of a one-channel image).
//! im2col + GEMM does not pay there: the GEMM's reduction would be only kh·kw long.
//!
//! Each kernel walks whole output rows and adds one kernel tap at a time as a contiguous
//! `axpy` over the row (stride 1), so the inner loops vectorise; the padding is never
//! materialised: per tap, the range of output columns whose input lies inside the image is
//! computed once.

use super::conv::{valid_range, ConvGeom};
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// For each kernel column `kj`: the output columns `[lo, hi)` that read inside the image, and the
/// input column of output column 0 (`−pl + kj·dw`).
fn column_taps(g: &ConvGeom) -> Vec<(usize, usize, isize)> {
    (0..g.kw)
        .map(|kj| {
            let off = (kj * g.dw) as isize - g.pl as isize;
            let (lo, hi) = valid_range(g.wo, g.sw, off, g.w);
            (lo, hi, off)
        })
        .collect()
}

/// Input row read by output row `ho` at kernel row `ki`, if inside the image.
#[inline]
fn input_row(g: &ConvGeom, ho: usize, ki: usize) -> Option<usize> {
    let hi = (ho * g.sh + ki * g.dh) as isize - g.pt as isize;
    (hi >= 0 && (hi as usize) < g.h).then_some(hi as usize)
}

/// Enough planes per rayon task that a task is worth its scheduling (~2·10⁴ flops).
fn planes_per_task(g: &ConvGeom) -> usize {
    (20_000 / (2 * g.kh * g.kw * g.out_plane()).max(1)).max(1)
}

#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * *x;
    }
}

/// Sum with eight independent partial sums, so it vectorises and loses less precision than a
/// sequential f32 sum.
pub(crate) fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rem: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rem
}

pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> CpuBuf {
    let mut out = CpuBuf::zeros(g.out_len());
    let (hw, ohw, kk, m) = (g.in_plane(), g.out_plane(), g.kh * g.kw, g.og());
    if ohw == 0 || g.out_len() == 0 {
        return out;
    }
    let taps = column_taps(g);
    out.par_chunks_mut(ohw)
        .enumerate()
        .with_min_len(planes_per_task(g))
        .for_each(|(no, plane)| {
            let (n, o) = (no / g.o, no % g.o);
            let xp = &x[(n * g.c + o / m) * hw..][..hw];
            let wk = &w[o * kk..][..kk];
            plane.fill(bias.map_or(0.0, |b| b[o]));
            for ho in 0..g.ho {
                let orow = &mut plane[ho * g.wo..][..g.wo];
                for ki in 0..g.kh {
                    let Some(hi) = input_row(g, ho, ki) else {
                        continue;
                    };
                    let xrow = &xp[hi * g.w..][..g.w];
                    for (&(lo, hi_, off), &wv) in taps.iter().zip(&wk[ki * g.kw..][..g.kw]) {
                        if lo == hi_ {
                            continue;
                        }
                        let start = ((lo * g.sw) as isize + off) as usize;
                        if g.sw == 1 {
                            axpy(wv, &xrow[start..][..hi_ - lo], &mut orow[lo..hi_]);
                        } else {
                            for (o, xv) in orow[lo..hi_]
                                .iter_mut()
                                .zip(xrow[start..].iter().step_by(g.sw))
                            {
                                *o += wv * *xv;
                            }
                        }
                    }
                }
            }
        });
    out
}

pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeom) -> CpuBuf {
    let mut dx = CpuBuf::zeros(g.in_len());
    let (hw, ohw, kk, m) = (g.in_plane(), g.out_plane(), g.kh * g.kw, g.og());
    if hw == 0 || g.in_len() == 0 || ohw == 0 {
        return dx;
    }
    let taps = column_taps(g);
    // One task per input plane: it gathers from its m output planes, so no two tasks write the
    // same memory.
    dx.par_chunks_mut(hw)
        .enumerate()
        .with_min_len((planes_per_task(g) / m).max(1))
        .for_each(|(nc, dxp)| {
            let (n, ci) = (nc / g.c, nc % g.c);
            for o in ci * m..(ci + 1) * m {
                let dyp = &dy[(n * g.o + o) * ohw..][..ohw];
                let wk = &w[o * kk..][..kk];
                for ho in 0..g.ho {
                    let dyrow = &dyp[ho * g.wo..][..g.wo];
                    for ki in 0..g.kh {
                        let Some(hi) = input_row(g, ho, ki) else {
                            continue;
                        };
                        let dxrow = &mut dxp[hi * g.w..][..g.w];
                        for (&(lo, hi_, off), &wv) in taps.iter().zip(&wk[ki * g.kw..][..g.kw]) {
                            if lo == hi_ {
                                continue;
                            }
                            let start = ((lo * g.sw) as isize + off) as usize;
                            if g.sw == 1 {
                                axpy(wv, &dyrow[lo..hi_], &mut dxrow[start..][..hi_ - lo]);
                            } else {
                                for (d, v) in
                                    dxrow[start..].iter_mut().step_by(g.sw).zip(&dyrow[lo..hi_])
                                {
                                    *d += wv * *v;
                                }
                            }
                        }
                    }
                }
            }
        });
    dx
}

pub fn backward_weights(x: &[f32], dy: &[f32], g: &ConvGeom) -> CpuBuf {
    let (hw, ohw, kk, m) = (g.in_plane(), g.out_plane(), g.kh * g.kw, g.og());
    let mut dw = CpuBuf::zeros(g.weight_len());
    if ohw == 0 || g.n == 0 {
        return dw;
    }
    let taps = column_taps(g);
    // Per output channel: one row of partial products per tap, summed over images and output
    // rows as vectors (a contiguous multiply-add) and reduced to a scalar once at the end.
    dw.par_chunks_mut(kk).enumerate().for_each_init(
        || vec![0.0f32; kk * g.wo],
        |acc, (o, dwo)| {
            acc.fill(0.0);
            let ci = o / m;
            for n in 0..g.n {
                let xp = &x[(n * g.c + ci) * hw..][..hw];
                let dyp = &dy[(n * g.o + o) * ohw..][..ohw];
                for ho in 0..g.ho {
                    let dyrow = &dyp[ho * g.wo..][..g.wo];
                    for ki in 0..g.kh {
                        let Some(hi) = input_row(g, ho, ki) else {
                            continue;
                        };
                        let xrow = &xp[hi * g.w..][..g.w];
                        for (kj, &(lo, hi_, off)) in taps.iter().enumerate() {
                            if lo == hi_ {
                                continue;
                            }
                            let a = &mut acc[(ki * g.kw + kj) * g.wo..][lo..hi_];
                            let start = ((lo * g.sw) as isize + off) as usize;
                            if g.sw == 1 {
                                for ((a, d), xv) in
                                    a.iter_mut().zip(&dyrow[lo..hi_]).zip(&xrow[start..])
                                {
                                    *a += *d * *xv;
                                }
                            } else {
                                for ((a, d), xv) in a
                                    .iter_mut()
                                    .zip(&dyrow[lo..hi_])
                                    .zip(xrow[start..].iter().step_by(g.sw))
                                {
                                    *a += *d * *xv;
                                }
                            }
                        }
                    }
                }
            }
            for (k, d) in dwo.iter_mut().enumerate() {
                *d = sum(&acc[k * g.wo..][..g.wo]);
            }
        },
    );
    dw
}
