//! Bilinear resize kernels with PyTorch's source-index arithmetic (`upsample_bilinear2d`),
//! parallel over N·C planes.

use super::PAR_THRESHOLD;
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// The two source cells of one output position and their weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tap {
    /// The source cell at or before the position.
    pub i0: usize,
    /// The next source cell (clamped to the last).
    pub i1: usize,
    /// The weight of `i0` (`1 − l1`).
    pub l0: f32,
    /// The weight of `i1`: the fractional part of the source position.
    pub l1: f32,
}

/// Interpolation taps of one dimension, computed in f32 exactly as PyTorch's CPU kernel does so
/// that results agree to rounding.
///
/// `align_corners`: `src = dst·(in-1)/(out-1)` (0 when `out == 1`); otherwise the half-pixel
/// mapping `src = (dst+0.5)·in/out - 0.5`, clamped below at 0. The right neighbour is clamped to
/// the last cell.
pub fn taps(in_len: usize, out_len: usize, align_corners: bool) -> Vec<Tap> {
    let scale = if align_corners {
        if out_len > 1 {
            (in_len as f32 - 1.0) / (out_len as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        in_len as f32 / out_len as f32
    };
    let last = in_len.saturating_sub(1);
    (0..out_len)
        .map(|d| {
            let src = if align_corners {
                scale * d as f32
            } else {
                (scale * (d as f32 + 0.5) - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(last);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < last { i0 + 1 } else { i0 };
            Tap {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}

fn min_planes(elems_per_plane: usize) -> usize {
    (PAR_THRESHOLD / elems_per_plane.max(1)).max(1)
}

/// Resizes `planes` planes of `h × w` to `oh × ow`.
pub fn resize_bilinear(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    align_corners: bool,
) -> CpuBuf {
    let mut out = CpuBuf::zeros(planes * oh * ow);
    if out.is_empty() {
        return out;
    }
    let (ty, tx) = (taps(h, oh, align_corners), taps(w, ow, align_corners));
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .with_min_len(min_planes(oh * ow))
        .for_each(|(o, xp)| {
            for (oy, t) in ty.iter().enumerate() {
                let (r0, r1) = (&xp[t.i0 * w..][..w], &xp[t.i1 * w..][..w]);
                for (o, s) in o[oy * ow..][..ow].iter_mut().zip(&tx) {
                    *o = t.l0 * (s.l0 * r0[s.i0] + s.l1 * r0[s.i1])
                        + t.l1 * (s.l0 * r1[s.i0] + s.l1 * r1[s.i1]);
                }
            }
        });
    out
}

/// The adjoint of [`resize_bilinear`]: each output gradient is scattered to its four source
/// cells with the forward weights.
pub fn resize_bilinear_backward(
    grad: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    align_corners: bool,
) -> CpuBuf {
    let mut dx = CpuBuf::zeros(planes * h * w);
    if dx.is_empty() || oh * ow == 0 {
        return dx;
    }
    let (ty, tx) = (taps(h, oh, align_corners), taps(w, ow, align_corners));
    dx.par_chunks_mut(h * w)
        .zip(grad.par_chunks(oh * ow))
        .with_min_len(min_planes(oh * ow))
        .for_each(|(d, gp)| {
            for (oy, t) in ty.iter().enumerate() {
                for (g, s) in gp[oy * ow..][..ow].iter().zip(&tx) {
                    let (g0, g1) = (t.l0 * g, t.l1 * g);
                    d[t.i0 * w + s.i0] += g0 * s.l0;
                    d[t.i0 * w + s.i1] += g0 * s.l1;
                    d[t.i1 * w + s.i0] += g1 * s.l0;
                    d[t.i1 * w + s.i1] += g1 * s.l1;
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(t: &[Tap]) -> Vec<f32> {
        t.iter().map(|t| t.i0 as f32 + t.l1).collect()
    }

    #[test]
    fn tap_positions() {
        assert_eq!(positions(&taps(2, 3, true)), vec![0.0, 0.5, 1.0]);
        assert_eq!(positions(&taps(5, 1, true)), vec![0.0]);
        // Half-pixel: 2 -> 4 gives -0.25 (clamped to 0), 0.25, 0.75, 1.25 (right cell clamped).
        let t = taps(2, 4, false);
        assert_eq!(positions(&t[..3]), vec![0.0, 0.25, 0.75]);
        assert_eq!((t[3].i0, t[3].i1), (1, 1));
        // 4 -> 2: 0.5 and 2.5.
        assert_eq!(positions(&taps(4, 2, false)), vec![0.5, 2.5]);
        // Weights always sum to one.
        for t in taps(7, 3, false).iter().chain(&taps(3, 11, true)) {
            assert!((t.l0 + t.l1 - 1.0).abs() < 1e-6);
        }
    }
}
