//! Dense convolutions on small output maps as one im2col GEMM over the whole batch.
//!
//! oneDNN's direct kernels parallelise and block over the spatial positions of each image, so on
//! maps of a few pixels (the RGC's 512-channel area at 3×3, the readout at 1×1) they run at
//! 45–95 GFLOP/s, and the weight gradient, whose per-thread partial sums oneDNN reduces at the
//! end, at 6–60. Stacking every image's output positions into the rows of one matrix turns each of
//! the three computations into a single large sgemm (oneDNN's, ≈ 130–140 GFLOP/s on the same
//! shapes), at the cost of an im2col buffer that is small precisely because the map is small.
//!
//! Matrices are row-major:
//! * activations as rows `[N·H·W, C]` ([`super::gemm_conv`]);
//! * `col` `[N·Ho·Wo, C·kh·kw]`, column `(c·kh + ki)·kw + kj` — the order of a plain weight's row,
//!   so the weights `[O, C, kh, kw]` are used as the matrix `[O, C·kh·kw]` without any copy.

use super::gemm_conv::{from_rows, rows as to_rows, GemmConv, Job};
use super::{OneDnn, Scratch};
use crate::cpu::gemm::{Gemm, MatMut, MatRef};
use crate::error::Result;
use crate::layout::Layout;
use crate::ops::conv::{valid_range, Activation, ConvGeom, Weights};
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// Largest output map (`Ho·Wo`) that [`suits`] sends here. Measured with `conv_bench rgc` on 2
/// AVX2 cores with batch 16: on 3×3 maps the GEMM takes 9.8 / 19.6 ms for the forward and both
/// backward passes of 256→512 / 512→512 against oneDNN's 12.8 / 32.0, and the 2×2 → 1×1 readout
/// 4.4 against 14.1; on a 6×6 map it is slower than oneDNN (22.6 against 18.7 ms), whose kernels
/// have enough positions there, so larger maps stay with oneDNN (or Winograd).
pub const MAX_OUT_PLANE: usize = 16;

/// Whether the batched GEMM is the faster CPU path for `g`: a dense (ungrouped) convolution with
/// an output map of at most [`MAX_OUT_PLANE`] positions.
pub fn suits(g: &ConvGeom) -> bool {
    g.groups == 1 && g.out_plane() <= MAX_OUT_PLANE
}

/// Visits every (output position `p` of the map, kernel tap `t`, input position `q`) with `q`
/// inside the input: `q = (ho·sh + ki·dh − pt, wo·sw + kj·dw − pl)`, `t = ki·kw + kj`.
fn for_each_tap(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    for ki in 0..g.kh {
        let hoff = (ki * g.dh) as isize - g.pt as isize;
        let (hlo, hhi) = valid_range(g.ho, g.sh, hoff, g.h);
        for kj in 0..g.kw {
            let woff = (kj * g.dw) as isize - g.pl as isize;
            let (wlo, whi) = valid_range(g.wo, g.sw, woff, g.w);
            for ho in hlo..hhi {
                let hi = ((ho * g.sh) as isize + hoff) as usize;
                for wo in wlo..whi {
                    let wi = ((wo * g.sw) as isize + woff) as usize;
                    f(ho * g.wo + wo, ki * g.kw + kj, hi * g.w + wi);
                }
            }
        }
    }
}

/// Rows of the input `[N·H·W, C]` → `col` `[N·Ho·Wo, C·kh·kw]`, zero where a tap falls in the
/// padding (every element written).
fn im2col(xr: &[f32], g: &ConvGeom, col: &mut [f32]) {
    let (kk, p, hw) = (g.kh * g.kw, g.out_plane(), g.in_plane());
    let ck = g.c * kk;
    let col = &mut col[..g.n * p * ck];
    if col.is_empty() {
        return;
    }
    col.par_chunks_mut(p * ck).enumerate().for_each(|(i, img)| {
        img.fill(0.0);
        let x = &xr[i * hw * g.c..][..hw * g.c];
        for_each_tap(g, |p, t, q| {
            let dst = &mut img[p * ck + t..];
            for (ch, v) in x[q * g.c..][..g.c].iter().enumerate() {
                dst[ch * kk] = *v;
            }
        });
    });
}

/// The adjoint of [`im2col`]: `col` `[N·Ho·Wo, C·kh·kw]` summed into rows `xr` `[N·H·W, C]`
/// (every element written).
fn col2im(col: &[f32], g: &ConvGeom, xr: &mut [f32]) {
    let (kk, p, hw) = (g.kh * g.kw, g.out_plane(), g.in_plane());
    let ck = g.c * kk;
    let xr = &mut xr[..g.n * hw * g.c];
    if xr.is_empty() {
        return;
    }
    xr.par_chunks_mut(hw * g.c)
        .enumerate()
        .for_each(|(i, img)| {
            img.fill(0.0);
            let cimg = &col[i * p * ck..][..p * ck];
            for_each_tap(g, |p, t, q| {
                let src = &cimg[p * ck + t..];
                for (ch, d) in img[q * g.c..][..g.c].iter_mut().enumerate() {
                    *d += src[ch * kk];
                }
            });
        });
}

/// im2col of `x` `[N, C, H, W]`: `[N·Ho·Wo, C·kh·kw]`.
fn columns<'a>(d: &'a OneDnn, x: Activation<'_>, g: &ConvGeom) -> Scratch<'a> {
    let xr = to_rows(d, x, g.in_shape());
    let mut col = d.scratch(g.n * g.out_plane() * g.c * g.kh * g.kw);
    im2col(&xr, g, &mut col);
    col
}

/// im2col over the whole batch and one sgemm per computation; [`suits`] says where `Auto` uses
/// it.
pub struct SmallMap;

impl GemmConv for SmallMap {
    fn check(g: &ConvGeom) -> Result<()> {
        if g.groups != 1 {
            return Err(crate::Error::invalid(
                "conv2d",
                format!(
                    "the batched-GEMM convolution is for dense convolutions (groups = 1), got groups = {}",
                    g.groups
                ),
            ));
        }
        Ok(())
    }

    /// `col · wᵀ`, the weights `[O, C·kh·kw]` used as a matrix as they are.
    fn forward(
        j: Job<'_>,
        x: Activation<'_>,
        w: Weights<'_>,
        bias: Option<&[f32]>,
        layout: Layout,
    ) -> Result<CpuBuf> {
        let Job { d, g } = j;
        let (rows, ck) = (g.n * g.out_plane(), g.c * g.kh * g.kw);
        let col = columns(d, x, g);
        let mut yr = d.scratch(rows * g.o);
        d.sgemm(
            Gemm::new(rows, g.o, ck),
            MatRef::new(&col, ck),
            MatRef::new(w.data, ck).t(),
            MatMut::new(&mut yr, g.o),
        )?;
        Ok(from_rows(&yr, bias, layout, g.out_shape()))
    }

    /// col2im of `dy · w`.
    fn backward_data(
        j: Job<'_>,
        dy: Activation<'_>,
        w: Weights<'_>,
        layout: Layout,
    ) -> Result<CpuBuf> {
        let Job { d, g } = j;
        let (rows, ck) = (g.n * g.out_plane(), g.c * g.kh * g.kw);
        let dyr = to_rows(d, dy, g.out_shape());
        let mut dcol = d.scratch(rows * ck);
        d.sgemm(
            Gemm::new(rows, ck, g.o),
            MatRef::new(&dyr, g.o),
            MatRef::new(w.data, ck),
            MatMut::new(&mut dcol, ck),
        )?;
        let mut dxr = d.scratch(g.n * g.in_plane() * g.c);
        col2im(&dcol, g, &mut dxr);
        Ok(from_rows(&dxr, None, layout, g.in_shape()))
    }

    /// `dyᵀ · col`.
    fn weight_gradient(j: Job<'_>, x: Activation<'_>, dy: Activation<'_>) -> Result<Vec<f32>> {
        let Job { d, g } = j;
        let (rows, ck) = (g.n * g.out_plane(), g.c * g.kh * g.kw);
        let dyr = to_rows(d, dy, g.out_shape());
        let col = columns(d, x, g);
        let mut dw = vec![0.0; g.o * ck];
        d.sgemm(
            Gemm::new(g.o, ck, rows),
            MatRef::new(&dyr, g.o).t(),
            MatRef::new(&col, ck),
            MatMut::new(&mut dw, ck),
        )?;
        Ok(dw)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ops::conv::Conv2dOpts;
    use crate::ops::Padding;

    fn geom(n: usize, c: usize, hw: (usize, usize), o: usize, k: usize, pad: usize) -> ConvGeom {
        let opts = Conv2dOpts::default().with_padding(Padding::symmetric(pad));
        let (x, w) = ([n, c, hw.0, hw.1], [o, c, k, k]);
        ConvGeom::resolve(&x.into(), &w.into(), None, &opts).unwrap()
    }

    #[test]
    fn im2col_places_taps_and_padding_and_col2im_is_its_adjoint() {
        let g = geom(2, 3, (3, 3), 1, 3, 1);
        let xr: Vec<f32> = (0..g.n * g.in_plane() * g.c)
            .map(|i| i as f32 + 1.0)
            .collect();
        // NaN-filled buffers: every element must be written.
        let mut col = vec![f32::NAN; g.n * g.out_plane() * g.c * 9];
        im2col(&xr, &g, &mut col);
        let ck = g.c * 9;
        // output (0,0) of image 1, channel 2: tap (0,0) is padding, tap (1,1) is input (0,0)
        let row = &col[(g.out_plane()) * ck..][..ck];
        assert_eq!(row[2 * 9], 0.0);
        assert_eq!(row[2 * 9 + 4], xr[(g.in_plane()) * g.c + 2]);
        // <im2col(x), y> == <x, col2im(y)>
        let y: Vec<f32> = (0..col.len())
            .map(|i| ((i * 7) % 11) as f32 - 5.0)
            .collect();
        let lhs: f64 = col
            .iter()
            .zip(&y)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        let mut back = vec![f32::NAN; xr.len()];
        col2im(&y, &g, &mut back);
        let rhs: f64 = xr
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        assert_eq!(lhs, rhs);
    }

    #[test]
    fn suits_only_small_dense_maps() {
        assert!(suits(&geom(16, 512, (3, 3), 512, 3, 1)));
        assert!(suits(&geom(16, 512, (2, 2), 1000, 2, 0)));
        assert!(!suits(&geom(16, 256, (6, 6), 256, 3, 1)));
        let mut grouped = geom(16, 512, (3, 3), 512, 3, 1);
        grouped.groups = 512;
        assert!(!suits(&grouped));
    }
}
