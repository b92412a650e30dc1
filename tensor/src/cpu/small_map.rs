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
//! * activations as rows `[N·H·W, C]` (one row per image position, channels along the row),
//!   converted from and to the tensors' own layout ([`Layout::Plain`] or [`Layout::Blocked16`]);
//! * `col` `[N·Ho·Wo, C·kh·kw]`, column `(c·kh + ki)·kw + kj` — the order of a plain weight's row,
//!   so the weights `[O, C, kh, kw]` are used as the matrix `[O, C·kh·kw]` without any copy.

use super::conv::{valid_range, ConvGeom};
use super::onednn::{thread_budget, OneDnn, Scratch};
use crate::error::Result;
use crate::layout::{Layout, BLOCK};
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

/// `[N, C, hw]` in `layout` → `rows` `[N·hw, C]` (every element written).
pub(super) fn to_rows(
    src: &[f32],
    layout: Layout,
    (n, c, hw): (usize, usize, usize),
    rows: &mut [f32],
) {
    let rows = &mut rows[..n * hw * c];
    if rows.is_empty() {
        return;
    }
    rows.par_chunks_mut(hw * c)
        .enumerate()
        .for_each(|(i, img)| match layout {
            Layout::Plain => {
                let s = &src[i * c * hw..][..c * hw];
                for (ch, plane) in s.chunks_exact(hw).enumerate() {
                    for (q, v) in plane.iter().enumerate() {
                        img[q * c + ch] = *v;
                    }
                }
            }
            Layout::Blocked16 => {
                let s = &src[i * c * hw..][..c * hw];
                for (b, block) in s.chunks_exact(hw * BLOCK).enumerate() {
                    for (q, lanes) in block.chunks_exact(BLOCK).enumerate() {
                        img[q * c + b * BLOCK..][..BLOCK].copy_from_slice(lanes);
                    }
                }
            }
        });
}

/// Rows `[N·hw, C]` (+ `bias` per channel) → `[N, C, hw]` in `layout`.
pub(super) fn from_rows(
    rows: &[f32],
    bias: Option<&[f32]>,
    layout: Layout,
    n: usize,
    c: usize,
    hw: usize,
) -> CpuBuf {
    let mut out = vec![0.0; n * c * hw];
    if out.is_empty() {
        return CpuBuf::new(out);
    }
    let b = |ch: usize| bias.map_or(0.0, |b| b[ch]);
    out.par_chunks_mut(c * hw).enumerate().for_each(|(i, img)| {
        let r = &rows[i * hw * c..][..hw * c];
        match layout {
            Layout::Plain => {
                for (ch, plane) in img.chunks_exact_mut(hw).enumerate() {
                    let bc = b(ch);
                    for (q, v) in plane.iter_mut().enumerate() {
                        *v = r[q * c + ch] + bc;
                    }
                }
            }
            Layout::Blocked16 => {
                for (blk, block) in img.chunks_exact_mut(hw * BLOCK).enumerate() {
                    for (q, lanes) in block.chunks_exact_mut(BLOCK).enumerate() {
                        let src = &r[q * c + blk * BLOCK..][..BLOCK];
                        for (l, (d, s)) in lanes.iter_mut().zip(src).enumerate() {
                            *d = s + b(blk * BLOCK + l);
                        }
                    }
                }
            }
        }
    });
    let _ = n;
    CpuBuf::new(out)
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

/// The bias gradient: the column sums of the output gradient's rows `dyr` `[rows, o]`.
pub(super) fn bias_gradient(dyr: &[f32], o: usize) -> CpuBuf {
    let mut db = vec![0.0; o];
    for r in dyr.chunks_exact(o) {
        for (s, v) in db.iter_mut().zip(r) {
            *s += v;
        }
    }
    CpuBuf::new(db)
}

/// im2col of `x` `[N, C, H, W]` in `layout`: `[N·Ho·Wo, C·kh·kw]`.
fn columns<'a>(d: &'a OneDnn, x: &[f32], layout: Layout, g: &ConvGeom) -> Scratch<'a> {
    let mut xr = d.scratch(g.n * g.in_plane() * g.c);
    to_rows(x, layout, (g.n, g.c, g.in_plane()), &mut xr);
    let mut col = d.scratch(g.n * g.out_plane() * g.c * g.kh * g.kw);
    im2col(&xr, g, &mut col);
    col
}

/// The checks every entry point shares: a dense convolution with a non-empty batch.
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

/// `c[m×n] (leading dimension ldc) = op(a)·op(b)` with oneDNN's sgemm on the threads this
/// caller may use.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    d: &OneDnn,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let c_len = (m - 1) * ldc + n;
    if k == 0 {
        for r in c[..c_len].chunks_mut(ldc) {
            r[..n].fill(0.0);
        }
        return Ok(());
    }
    let a_len = if ta {
        (k - 1) * lda + m
    } else {
        (m - 1) * lda + k
    };
    let b_len = if tb {
        (n - 1) * ldb + k
    } else {
        (k - 1) * ldb + n
    };
    assert!(
        a.len() >= a_len && b.len() >= b_len && c.len() >= c_len && ldc >= n,
        "gemm operand sizes"
    );
    // SAFETY: the assert bounds every element the three matrices' sizes and leading dimensions
    // reach; `c` is a distinct mutable borrow, so it aliases neither input.
    unsafe {
        d.sgemm(
            thread_budget(),
            ta,
            tb,
            m,
            n,
            k,
            1.0,
            a.as_ptr(),
            lda,
            b.as_ptr(),
            ldb,
            0.0,
            c.as_mut_ptr(),
            ldc,
        )
    }
}

/// Forward convolution: `x` `[N, C, H, W]` in `x_layout`, plain weights `[O, C, kh, kw]`; the
/// result `[N, O, Ho, Wo]` is in `out_layout`.
pub fn forward(
    d: &OneDnn,
    x: &[f32],
    x_layout: Layout,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeom,
    out_layout: Layout,
) -> Result<CpuBuf> {
    check(g)?;
    let (rows, ck) = (g.n * g.out_plane(), g.c * g.kh * g.kw);
    let col = columns(d, x, x_layout, g);
    let mut yr = d.scratch(rows * g.o);
    gemm(
        d,
        (false, true),
        (rows, g.o, ck),
        &col,
        ck,
        w,
        ck,
        &mut yr,
        g.o,
    )?;
    Ok(from_rows(&yr, bias, out_layout, g.n, g.o, g.out_plane()))
}

/// Gradient of the input, in `dx_layout`; `dy` `[N, O, Ho, Wo]` is in `dy_layout`.
pub fn backward_data(
    d: &OneDnn,
    dy: &[f32],
    dy_layout: Layout,
    w: &[f32],
    g: &ConvGeom,
    dx_layout: Layout,
) -> Result<CpuBuf> {
    check(g)?;
    let (rows, ck) = (g.n * g.out_plane(), g.c * g.kh * g.kw);
    let mut dyr = d.scratch(rows * g.o);
    to_rows(dy, dy_layout, (g.n, g.o, g.out_plane()), &mut dyr);
    let mut dcol = d.scratch(rows * ck);
    gemm(
        d,
        (false, false),
        (rows, ck, g.o),
        &dyr,
        g.o,
        w,
        ck,
        &mut dcol,
        ck,
    )?;
    let mut dxr = d.scratch(g.n * g.in_plane() * g.c);
    col2im(&dcol, g, &mut dxr);
    Ok(from_rows(&dxr, None, dx_layout, g.n, g.c, g.in_plane()))
}

/// Gradients of the plain weights `[O, C, kh, kw]` and, when `want_bias`, of the bias.
pub fn backward_weights(
    d: &OneDnn,
    x: &[f32],
    x_layout: Layout,
    dy: &[f32],
    dy_layout: Layout,
    g: &ConvGeom,
    want_bias: bool,
) -> Result<(CpuBuf, Option<CpuBuf>)> {
    check(g)?;
    let (rows, ck) = (g.n * g.out_plane(), g.c * g.kh * g.kw);
    let col = columns(d, x, x_layout, g);
    let mut dyr = d.scratch(rows * g.o);
    to_rows(dy, dy_layout, (g.n, g.o, g.out_plane()), &mut dyr);
    let mut dw = vec![0.0; g.o * ck];
    gemm(
        d,
        (true, false),
        (g.o, ck, rows),
        &dyr,
        g.o,
        &col,
        ck,
        &mut dw,
        ck,
    )?;
    let db = want_bias.then(|| bias_gradient(&dyr, g.o));
    Ok((CpuBuf::new(dw), db))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(n: usize, c: usize, hw: (usize, usize), o: usize, k: usize, pad: usize) -> ConvGeom {
        ConvGeom {
            n,
            c,
            h: hw.0,
            w: hw.1,
            o,
            kh: k,
            kw: k,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: pad,
            pb: pad,
            pl: pad,
            pr: pad,
            ho: hw.0 + 2 * pad + 1 - k,
            wo: hw.1 + 2 * pad + 1 - k,
            groups: 1,
        }
    }

    #[test]
    fn rows_round_trip_in_both_layouts() {
        let (n, c, hw) = (2, 32, 5);
        let src: Vec<f32> = (0..n * c * hw).map(|i| i as f32).collect();
        for layout in [Layout::Plain, Layout::Blocked16] {
            let mut rows = vec![f32::NAN; src.len()];
            to_rows(&src, layout, (n, c, hw), &mut rows);
            assert_eq!(
                from_rows(&rows, None, layout, n, c, hw).as_slice(),
                &src[..]
            );
        }
        // element (n=1, c=17, p=3) of a plain tensor lands in row 1·5+3, column 17
        let mut rows = vec![f32::NAN; src.len()];
        to_rows(&src, Layout::Plain, (n, c, hw), &mut rows);
        assert_eq!(rows[(hw + 3) * c + 17], src[(c + 17) * hw + 3]);
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
