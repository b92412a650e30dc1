//! Pooling kernels over NCHW planes (plain layout). Every (n, c) plane is independent, so work is
//! split over planes.

use super::PAR_THRESHOLD;
use crate::ops::pool::PoolGeom;
use crate::storage::CpuBuf;
use rayon::prelude::*;

// The window helpers the kernels use; the geometry itself belongs to the op layer.
impl PoolGeom {
    /// The input range `[lo, hi)` covered by each output position of one dimension, clipped to the
    /// input (padded cells are simply not visited).
    fn ranges(out: usize, len: usize, k: usize, s: usize, pad: usize) -> Vec<(usize, usize)> {
        (0..out)
            .map(|o| {
                let start = o * s;
                let lo = start.saturating_sub(pad).min(len);
                let hi = (start + k).saturating_sub(pad).min(len);
                (lo, hi)
            })
            .collect()
    }
    fn rows(&self) -> Vec<(usize, usize)> {
        Self::ranges(self.oh, self.h, self.kh, self.sh, self.pad_top)
    }
    fn cols(&self) -> Vec<(usize, usize)> {
        Self::ranges(self.ow, self.w, self.kw, self.sw, self.pad_left)
    }
    /// Planes per rayon task so that one task handles at least `PAR_THRESHOLD` input elements.
    fn min_planes(&self) -> usize {
        (PAR_THRESHOLD / (self.h * self.w).max(1)).max(1)
    }
}

/// Max pooling. Padded cells never win. Ties go to the first maximum in row-major window order;
/// a NaN in a window wins (it propagates, as in PyTorch). When `argmax` is given (one entry per
/// output) it receives the winning cell's index within its input plane, for the backward pass.
pub fn max_pool2d(x: &[f32], g: &PoolGeom, argmax: Option<&mut [u32]>) -> CpuBuf {
    let (rows, cols) = (g.rows(), g.cols());
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut out = CpuBuf::zeros(g.planes() * ohw);
    if out.is_empty() {
        return out;
    }
    let plane = |p: usize, o: &mut [f32], mut idx: Option<&mut [u32]>| {
        let xp = &x[p * hw..][..hw];
        for (oy, &(y0, y1)) in rows.iter().enumerate() {
            for (ox, &(x0, x1)) in cols.iter().enumerate() {
                // Every window holds at least one input cell (the op checks the padding).
                let mut best_i = y0 * g.w + x0;
                let mut best = f32::NEG_INFINITY;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let i = yy * g.w + xx;
                        let v = xp[i];
                        if v > best || (v.is_nan() && !best.is_nan()) {
                            best = v;
                            best_i = i;
                        }
                    }
                }
                o[oy * g.ow + ox] = best;
                if let Some(idx) = idx.as_deref_mut() {
                    idx[oy * g.ow + ox] = best_i as u32;
                }
            }
        }
    };
    let min = g.min_planes();
    match argmax {
        Some(idx) => out
            .par_chunks_mut(ohw)
            .zip(idx.par_chunks_mut(ohw))
            .with_min_len(min)
            .enumerate()
            .for_each(|(p, (o, i))| plane(p, o, Some(i))),
        None => out
            .par_chunks_mut(ohw)
            .with_min_len(min)
            .enumerate()
            .for_each(|(p, o)| plane(p, o, None)),
    }
    out
}

/// The input gradient of max pooling: each output gradient goes to its recorded argmax.
pub fn max_pool2d_backward(grad: &[f32], argmax: &[u32], g: &PoolGeom) -> CpuBuf {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = CpuBuf::zeros(g.planes() * hw);
    if dx.is_empty() || ohw == 0 {
        return dx;
    }
    dx.par_chunks_mut(hw)
        .with_min_len(g.min_planes())
        .enumerate()
        .for_each(|(p, d)| {
            let gp = &grad[p * ohw..][..ohw];
            let ip = &argmax[p * ohw..][..ohw];
            for (gv, &i) in gp.iter().zip(ip) {
                d[i as usize] += gv;
            }
        });
    dx
}

/// Average pooling over the non-padded cells of each window (TensorFlow "SAME" semantics,
/// PyTorch's `count_include_pad=False`).
pub fn avg_pool2d(x: &[f32], g: &PoolGeom) -> CpuBuf {
    let (rows, cols) = (g.rows(), g.cols());
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut out = CpuBuf::zeros(g.planes() * ohw);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ohw)
        .with_min_len(g.min_planes())
        .enumerate()
        .for_each(|(p, o)| {
            let xp = &x[p * hw..][..hw];
            for (oy, &(y0, y1)) in rows.iter().enumerate() {
                for (ox, &(x0, x1)) in cols.iter().enumerate() {
                    let mut s = 0.0f32;
                    for yy in y0..y1 {
                        s += xp[yy * g.w + x0..yy * g.w + x1].iter().sum::<f32>();
                    }
                    let count = ((y1 - y0) * (x1 - x0)).max(1);
                    o[oy * g.ow + ox] = s / count as f32;
                }
            }
        });
    out
}

/// The input gradient of [`avg_pool2d`]: each output gradient is shared equally by the
/// non-padded cells of its window.
pub fn avg_pool2d_backward(grad: &[f32], g: &PoolGeom) -> CpuBuf {
    let (rows, cols) = (g.rows(), g.cols());
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = CpuBuf::zeros(g.planes() * hw);
    if dx.is_empty() || ohw == 0 {
        return dx;
    }
    dx.par_chunks_mut(hw)
        .with_min_len(g.min_planes())
        .enumerate()
        .for_each(|(p, d)| {
            let gp = &grad[p * ohw..][..ohw];
            for (oy, &(y0, y1)) in rows.iter().enumerate() {
                for (ox, &(x0, x1)) in cols.iter().enumerate() {
                    let count = ((y1 - y0) * (x1 - x0)).max(1);
                    let share = gp[oy * g.ow + ox] / count as f32;
                    for yy in y0..y1 {
                        for v in &mut d[yy * g.w + x0..yy * g.w + x1] {
                            *v += share;
                        }
                    }
                }
            }
        });
    dx
}

/// The mean of each of `planes` planes of `hw` values.
pub fn global_avg_pool(x: &[f32], planes: usize, hw: usize) -> CpuBuf {
    let mut out = CpuBuf::zeros(planes);
    if planes == 0 || hw == 0 {
        return out;
    }
    let min = (PAR_THRESHOLD / hw).max(1);
    out.par_iter_mut()
        .zip(x.par_chunks(hw))
        .with_min_len(min)
        .for_each(|(o, xp)| {
            // Accumulate in f64: planes of 56×56 and more lose digits in an f32 running sum.
            *o = (xp.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32;
        });
    out
}

/// The input gradient of [`global_avg_pool`]: each plane receives `grad / hw` everywhere.
pub fn global_avg_pool_backward(grad: &[f32], planes: usize, hw: usize) -> CpuBuf {
    let mut dx = CpuBuf::zeros(planes * hw);
    if dx.is_empty() {
        return dx;
    }
    let min = (PAR_THRESHOLD / hw).max(1);
    dx.par_chunks_mut(hw)
        .zip(grad.par_iter())
        .with_min_len(min)
        .for_each(|(d, &gv)| d.fill(gv / hw as f32));
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(h: usize, w: usize, k: usize, s: usize, pad: usize, oh: usize, ow: usize) -> PoolGeom {
        PoolGeom {
            n: 1,
            c: 1,
            h,
            w,
            oh,
            ow,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pad_top: pad,
            pad_left: pad,
        }
    }

    #[test]
    fn window_ranges_clip_padding() {
        // 5 cells, k=3, s=2, one cell of padding before: windows [-1,2), [1,4), [3,6) clipped.
        let r = PoolGeom::ranges(3, 5, 3, 2, 1);
        assert_eq!(r, vec![(0, 2), (1, 4), (3, 5)]);
    }

    #[test]
    fn max_ties_go_to_the_first_cell() {
        let x = [1.0, 3.0, 3.0, 0.0];
        let g = geom(1, 4, 4, 1, 0, 1, 1);
        let mut idx = [0u32; 1];
        let y = max_pool2d(&x, &g, Some(&mut idx));
        assert_eq!((y[0], idx[0]), (3.0, 1));
    }

    #[test]
    fn max_of_all_negative_infinity_is_negative_infinity() {
        let x = [f32::NEG_INFINITY; 4];
        let g = geom(2, 2, 2, 2, 1, 2, 2);
        let y = max_pool2d(&x, &g, None);
        assert!(y.iter().all(|v| *v == f32::NEG_INFINITY));
    }

    #[test]
    fn max_propagates_nan() {
        let x = [1.0, f32::NAN, 2.0, 0.0];
        let g = geom(2, 2, 2, 2, 0, 1, 1);
        assert!(max_pool2d(&x, &g, None)[0].is_nan());
    }
}
