//! The pure-Rust 2-D convolution: im2col/col2im around [`sgemm`](super::gemm) for dense and
//! grouped convolutions, direct kernels ([`super::depthwise`]) when each group sees one input
//! channel. Always compiled; the reference the oneDNN path is tested against.
//!
//! All buffers are plain NCHW; weights are `[O, C/groups, kh, kw]`.

use super::gemm::{sgemm, sgemm_seq, Gemm, MatMut, MatRef};
use crate::ops::conv::{valid_range, ConvGeom};
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// Offsets of kernel tap `k` along an axis: input index = out·stride + k·dilation − pad_before.
#[inline]
fn tap_offset(k: usize, dil: usize, pad: usize) -> isize {
    (k * dil) as isize - pad as isize
}

/// `col[(ci·kh + ki)·kw + kj][ho·Wo + wo] = x[ci][ho·sh + ki·dh − pt][wo·sw + kj·dw − pl]` (0 in
/// the padding) for one group of one image.
fn im2col(x: &[f32], g: &ConvGeom, col: &mut [f32]) {
    let (hw, ohw) = (g.in_plane(), g.out_plane());
    for ci in 0..g.cg() {
        let xc = &x[ci * hw..][..hw];
        for ki in 0..g.kh {
            let hoff = tap_offset(ki, g.dh, g.pt);
            let (hlo, hhi) = valid_range(g.ho, g.sh, hoff, g.h);
            for kj in 0..g.kw {
                let woff = tap_offset(kj, g.dw, g.pl);
                let (wlo, whi) = valid_range(g.wo, g.sw, woff, g.w);
                let row = &mut col[((ci * g.kh + ki) * g.kw + kj) * ohw..][..ohw];
                row[..hlo * g.wo].fill(0.0);
                row[hhi * g.wo..].fill(0.0);
                for ho in hlo..hhi {
                    let hi = (ho * g.sh) as isize + hoff;
                    let src = &xc[hi as usize * g.w..][..g.w];
                    let dst = &mut row[ho * g.wo..][..g.wo];
                    dst[..wlo].fill(0.0);
                    dst[whi..].fill(0.0);
                    if wlo == whi {
                        continue;
                    }
                    let start = (wlo * g.sw) as isize + woff;
                    if g.sw == 1 {
                        dst[wlo..whi].copy_from_slice(&src[start as usize..][..whi - wlo]);
                    } else {
                        for (d, s) in dst[wlo..whi]
                            .iter_mut()
                            .zip(src[start as usize..].iter().step_by(g.sw))
                        {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: accumulates `col` into `dx` (one group of one image; `dx` must be
/// zeroed by the caller).
fn col2im(col: &[f32], g: &ConvGeom, dx: &mut [f32]) {
    let (hw, ohw) = (g.in_plane(), g.out_plane());
    for ci in 0..g.cg() {
        let dxc = &mut dx[ci * hw..][..hw];
        for ki in 0..g.kh {
            let hoff = tap_offset(ki, g.dh, g.pt);
            let (hlo, hhi) = valid_range(g.ho, g.sh, hoff, g.h);
            for kj in 0..g.kw {
                let woff = tap_offset(kj, g.dw, g.pl);
                let (wlo, whi) = valid_range(g.wo, g.sw, woff, g.w);
                if wlo == whi {
                    continue;
                }
                let row = &col[((ci * g.kh + ki) * g.kw + kj) * ohw..][..ohw];
                for ho in hlo..hhi {
                    let hi = (ho * g.sh) as isize + hoff;
                    let dst = &mut dxc[hi as usize * g.w..][..g.w];
                    let src = &row[ho * g.wo + wlo..ho * g.wo + whi];
                    let start = ((wlo * g.sw) as isize + woff) as usize;
                    if g.sw == 1 {
                        for (d, s) in dst[start..][..src.len()].iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst[start..].iter_mut().step_by(g.sw).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// How a convolution spreads over rayon's threads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Everything on the calling thread: too small for fork/join to pay.
    Serial,
    /// One image per rayon task, single-threaded GEMMs (no synchronisation inside a product).
    PerImage,
    /// Images in sequence, each GEMM on all threads (a batch smaller than the thread count).
    ParallelGemm,
}

/// Below this many flops a convolution runs on the calling thread.
const SERIAL_FLOPS: f64 = 2e6;

fn plan(g: &ConvGeom) -> Plan {
    let threads = rayon::current_num_threads();
    if threads <= 1 || g.flops() < SERIAL_FLOPS {
        Plan::Serial
    } else if g.n >= threads {
        Plan::PerImage
    } else {
        Plan::ParallelGemm
    }
}

/// A GEMM on this thread alone or on all threads.
fn gemm_on(seq: bool, g: Gemm, a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>) {
    if seq {
        sgemm_seq(g, a, b, c);
    } else {
        sgemm(g, a, b, c);
    }
}

/// Forward convolution: `x` `[N,C,H,W]`, `w` `[O,C/g,kh,kw]`, `bias` `[O]` → `[N,O,Ho,Wo]`.
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> CpuBuf {
    if g.is_depthwise() {
        return super::depthwise::forward(x, w, bias, g);
    }
    let mut out = CpuBuf::zeros(g.out_len());
    if g.out_len() == 0 {
        return out;
    }
    let (chw, ohw) = (g.c * g.in_plane(), g.out_plane());
    let col_len = if g.is_pointwise() { 0 } else { g.kdim() * ohw };
    let image = |seq: bool, col: &mut Vec<f32>, xi: &[f32], oi: &mut [f32]| {
        let beta = match bias {
            Some(b) => {
                for (plane, bv) in oi.chunks_mut(ohw).zip(b) {
                    plane.fill(*bv);
                }
                1.0
            }
            None => 0.0,
        };
        for grp in 0..g.groups {
            let xg = &xi[grp * g.cg() * g.in_plane()..][..g.cg() * g.in_plane()];
            let bmat = if g.is_pointwise() {
                xg
            } else {
                im2col(xg, g, col);
                &col[..]
            };
            let wg = &w[grp * g.og() * g.kdim()..][..g.og() * g.kdim()];
            gemm_on(
                seq,
                Gemm::new(g.og(), ohw, g.kdim()).beta(beta),
                MatRef::new(wg, g.kdim()),
                MatRef::new(bmat, ohw),
                MatMut::new(&mut oi[grp * g.og() * ohw..][..g.og() * ohw], ohw),
            );
        }
    };
    let plan = plan(g);
    if plan == Plan::PerImage {
        out.par_chunks_mut(g.o * ohw)
            .zip(x.par_chunks(chw))
            .for_each_init(
                || vec![0.0; col_len],
                |col, (oi, xi)| image(true, col, xi, oi),
            );
    } else {
        let mut col = vec![0.0; col_len];
        for (oi, xi) in out.chunks_mut(g.o * ohw).zip(x.chunks(chw)) {
            image(plan == Plan::Serial, &mut col, xi, oi);
        }
    }
    out
}

/// Gradient with respect to the input: `dy` `[N,O,Ho,Wo]`, `w` `[O,C/g,kh,kw]` → `[N,C,H,W]`.
pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeom) -> CpuBuf {
    if g.is_depthwise() {
        return super::depthwise::backward_data(dy, w, g);
    }
    let mut dx = CpuBuf::zeros(g.in_len());
    if g.in_len() == 0 || g.out_len() == 0 {
        return dx;
    }
    let (chw, ohw, cghw) = (g.c * g.in_plane(), g.out_plane(), g.cg() * g.in_plane());
    let col_len = if g.is_pointwise() { 0 } else { g.kdim() * ohw };
    let image = |seq: bool, col: &mut Vec<f32>, dyi: &[f32], dxi: &mut [f32]| {
        for grp in 0..g.groups {
            let wg = &w[grp * g.og() * g.kdim()..][..g.og() * g.kdim()];
            let dyg = &dyi[grp * g.og() * ohw..][..g.og() * ohw];
            let dxg = &mut dxi[grp * cghw..][..cghw];
            let (a, b) = (MatRef::new(wg, g.kdim()).t(), MatRef::new(dyg, ohw));
            let prod = Gemm::new(g.kdim(), ohw, g.og());
            if g.is_pointwise() {
                gemm_on(seq, prod, a, b, MatMut::new(dxg, ohw));
            } else {
                gemm_on(seq, prod, a, b, MatMut::new(col, ohw));
                col2im(col, g, dxg);
            }
        }
    };
    let plan = plan(g);
    if plan == Plan::PerImage {
        dx.par_chunks_mut(chw)
            .zip(dy.par_chunks(g.o * ohw))
            .for_each_init(
                || vec![0.0; col_len],
                |col, (dxi, dyi)| image(true, col, dyi, dxi),
            );
    } else {
        let mut col = vec![0.0; col_len];
        for (dxi, dyi) in dx.chunks_mut(chw).zip(dy.chunks(g.o * ohw)) {
            image(plan == Plan::Serial, &mut col, dyi, dxi);
        }
    }
    dx
}

/// Gradient with respect to the weights: `x` `[N,C,H,W]`, `dy` `[N,O,Ho,Wo]` → `[O,C/g,kh,kw]`.
pub fn backward_weights(x: &[f32], dy: &[f32], g: &ConvGeom) -> CpuBuf {
    if g.is_depthwise() {
        return super::depthwise::backward_weights(x, dy, g);
    }
    let wlen = g.weight_len();
    if g.n == 0 || g.out_plane() == 0 {
        return CpuBuf::zeros(wlen);
    }
    let (chw, ohw, cghw) = (g.c * g.in_plane(), g.out_plane(), g.cg() * g.in_plane());
    let col_len = if g.is_pointwise() { 0 } else { g.kdim() * ohw };
    // dW_g += dy_g [og × HoWo] · col_gᵀ [HoWo × kdim], summed over images.
    let image = |seq: bool, col: &mut Vec<f32>, acc: &mut [f32], xi: &[f32], dyi: &[f32]| {
        for grp in 0..g.groups {
            let xg = &xi[grp * cghw..][..cghw];
            let bmat = if g.is_pointwise() {
                xg
            } else {
                im2col(xg, g, col);
                &col[..]
            };
            let dyg = &dyi[grp * g.og() * ohw..][..g.og() * ohw];
            gemm_on(
                seq,
                Gemm::new(g.og(), g.kdim(), ohw).beta(1.0),
                MatRef::new(dyg, ohw),
                MatRef::new(bmat, ohw).t(),
                MatMut::new(
                    &mut acc[grp * g.og() * g.kdim()..][..g.og() * g.kdim()],
                    g.kdim(),
                ),
            );
        }
    };
    let plan = plan(g);
    if plan == Plan::PerImage {
        // One accumulator per rayon job (a handful: rayon splits adaptively), summed at the end.
        let acc = x
            .par_chunks(chw)
            .zip(dy.par_chunks(g.o * ohw))
            .fold(
                || (vec![0.0f32; wlen], vec![0.0f32; col_len]),
                |(mut acc, mut col), (xi, dyi)| {
                    image(true, &mut col, &mut acc, xi, dyi);
                    (acc, col)
                },
            )
            .map(|(acc, _)| acc)
            .reduce_with(|mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += *y;
                }
                a
            })
            .unwrap_or_else(|| vec![0.0; wlen]);
        CpuBuf::new(acc)
    } else {
        let mut acc = CpuBuf::zeros(wlen);
        let mut col = vec![0.0; col_len];
        for (xi, dyi) in x.chunks(chw).zip(dy.chunks(g.o * ohw)) {
            image(plan == Plan::Serial, &mut col, &mut acc, xi, dyi);
        }
        acc
    }
}

/// Gradient with respect to the bias: `dy` `[N,O,Ho,Wo]` summed over N, Ho, Wo → `[O]`.
pub fn backward_bias(dy: &[f32], n: usize, o: usize, plane: usize) -> CpuBuf {
    let mut db = CpuBuf::zeros(o);
    if plane == 0 {
        return db;
    }
    db.par_iter_mut().enumerate().for_each(|(oc, d)| {
        let mut s = 0.0f64;
        for i in 0..n {
            s += super::depthwise::sum(&dy[(i * o + oc) * plane..][..plane]) as f64;
        }
        *d = s as f32;
    });
    db
}

/// [`backward_bias`] of a `dy` in the blocked layout (`[n][o/16][plane][16]`).
pub fn backward_bias_blocked(dy: &[f32], n: usize, o: usize, plane: usize) -> CpuBuf {
    use crate::layout::BLOCK;
    let mut db = CpuBuf::zeros(o);
    if plane == 0 {
        return db;
    }
    let blocks = o / BLOCK;
    db.par_chunks_mut(BLOCK).enumerate().for_each(|(cb, d)| {
        let mut acc = [0.0f64; BLOCK];
        for i in 0..n {
            let mut part = [0.0f32; BLOCK];
            for px in dy[(i * blocks + cb) * plane * BLOCK..][..plane * BLOCK].chunks_exact(BLOCK) {
                for l in 0..BLOCK {
                    part[l] += px[l];
                }
            }
            for l in 0..BLOCK {
                acc[l] += part[l] as f64;
            }
        }
        for l in 0..BLOCK {
            d[l] = acc[l] as f32;
        }
    });
    db
}
