//! Direct kernels for convolutions in which every group reads one input channel (depthwise, with
//! any channel multiplier `m = O / groups`; also a dense convolution of a one-channel image).
//! im2col + GEMM does not pay there: the GEMM's reduction would be only kh·kw long.
//!
//! Stride 1 (the depthwise convolutions of the ConvRNN cells) runs on a zero-padded copy of each
//! plane, in "extended" coordinates `p = row·Wp + col` with the padded width `Wp`: every kernel
//! tap is then a constant offset, so the whole output plane is one long loop over `p` that keeps
//! eight outputs in a vector register while it adds all kh·kw taps (the few extended columns past
//! `Wo` are computed and dropped). The loops are compiled twice, with AVX2+FMA (chosen at run
//! time) and for the baseline target. Other strides walk output rows and add one tap at a time,
//! with the padding never materialised.

use crate::ops::conv::{valid_range, ConvGeom};
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

fn forward_strided(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> CpuBuf {
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

fn backward_data_strided(dy: &[f32], w: &[f32], g: &ConvGeom) -> CpuBuf {
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

fn backward_weights_strided(x: &[f32], dy: &[f32], g: &ConvGeom) -> CpuBuf {
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

/// The output `[N, O, Ho, Wo]` of a convolution in which every group reads one input channel
/// ([`ConvGeom::is_depthwise`]), from plain `x` `[N, C, H, W]`, `w` `[O, 1, kh, kw]` and an
/// optional `bias` `[O]`.
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> CpuBuf {
    if g.sh == 1 && g.sw == 1 {
        forward_unit(x, w, bias, g)
    } else {
        forward_strided(x, w, bias, g)
    }
}

/// The input gradient `[N, C, H, W]` of such a convolution from the output gradient `dy`
/// `[N, O, Ho, Wo]` and the weights `w`.
pub fn backward_data(dy: &[f32], w: &[f32], g: &ConvGeom) -> CpuBuf {
    if g.sh == 1 && g.sw == 1 {
        backward_data_unit(dy, w, g)
    } else {
        backward_data_strided(dy, w, g)
    }
}

/// The weight gradient `[O, 1, kh, kw]` of such a convolution from its input `x` and the output
/// gradient `dy`.
pub fn backward_weights(x: &[f32], dy: &[f32], g: &ConvGeom) -> CpuBuf {
    if g.sh == 1 && g.sw == 1 {
        backward_weights_unit(x, dy, g)
    } else {
        backward_weights_strided(x, dy, g)
    }
}

// ----- stride 1: extended coordinates -------------------------------------------------------

/// `a·b + c`, fused where the enclosing function enables FMA.
trait MulAdd {
    fn madd(a: f32, b: f32, c: f32) -> f32;
}
struct Fused;
struct Separate;
impl MulAdd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}
impl MulAdd for Separate {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `out[p] (+)= Σ_t w_t · src[p + off_t]` over `p < out.len()`, for taps `(off_t, w_t)`.
/// Works on 32 outputs at a time: four independent 8-lane accumulators hide the latency of the
/// multiply-add chain over the taps.
#[inline(always)]
fn taps_kernel<M: MulAdd>(src: &[f32], taps: &[(usize, f32)], out: &mut [f32], accumulate: bool) {
    const W: usize = 32;
    let mut blocks = out.chunks_exact_mut(W);
    let mut p = 0;
    for ob in &mut blocks {
        let mut acc = [0.0f32; W];
        if accumulate {
            acc.copy_from_slice(ob);
        }
        for &(off, wv) in taps {
            let s = &src[p + off..p + off + W];
            for i in 0..W {
                acc[i] = M::madd(wv, s[i], acc[i]);
            }
        }
        ob.copy_from_slice(&acc);
        p += W;
    }
    let mut chunks = blocks.into_remainder().chunks_exact_mut(8);
    for oc in &mut chunks {
        let mut acc = [0.0f32; 8];
        if accumulate {
            acc.copy_from_slice(oc);
        }
        for &(off, wv) in taps {
            let s = &src[p + off..p + off + 8];
            for i in 0..8 {
                acc[i] = M::madd(wv, s[i], acc[i]);
            }
        }
        oc.copy_from_slice(&acc);
        p += 8;
    }
    for (i, o) in chunks.into_remainder().iter_mut().enumerate() {
        let mut a = if accumulate { *o } else { 0.0 };
        for &(off, wv) in taps {
            a = M::madd(wv, src[p + i + off], a);
        }
        *o = a;
    }
}

/// `acc[i mod 32] += a[i]·b[i]`: a dot product left as 32 partial sums (four independent vector
/// chains), so that a caller summing many products reduces horizontally only once.
#[inline(always)]
fn dot_acc_kernel<M: MulAdd>(a: &[f32], b: &[f32], acc: &mut [f32; 32]) {
    const W: usize = 32;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (mut ca, mut cb) = (a.chunks_exact(W), b.chunks_exact(W));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..W {
            acc[i] = M::madd(x[i], y[i], acc[i]);
        }
    }
    let (mut ra, mut rb) = (
        ca.remainder().chunks_exact(8),
        cb.remainder().chunks_exact(8),
    );
    for (x, y) in (&mut ra).zip(&mut rb) {
        for i in 0..8 {
            acc[i] = M::madd(x[i], y[i], acc[i]);
        }
    }
    for (i, (x, y)) in ra.remainder().iter().zip(rb.remainder()).enumerate() {
        acc[8 + i] = M::madd(*x, *y, acc[8 + i]);
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn taps_avx2(src: &[f32], taps: &[(usize, f32)], out: &mut [f32], accumulate: bool) {
    taps_kernel::<Fused>(src, taps, out, accumulate)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_acc_avx2(a: &[f32], b: &[f32], acc: &mut [f32; 32]) {
    dot_acc_kernel::<Fused>(a, b, acc)
}

fn apply_taps(src: &[f32], taps: &[(usize, f32)], out: &mut [f32], accumulate: bool) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        unsafe { taps_avx2(src, taps, out, accumulate) };
        return;
    }
    taps_kernel::<Separate>(src, taps, out, accumulate)
}

fn dot_acc(a: &[f32], b: &[f32], acc: &mut [f32; 32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        unsafe { dot_acc_avx2(a, b, acc) };
        return;
    }
    dot_acc_kernel::<Separate>(a, b, acc)
}

/// Sizes of the extended coordinates of a stride-1 convolution.
#[derive(Clone, Copy)]
struct Ext {
    /// Padded height and width.
    hp: usize,
    wp: usize,
    /// Extended output length `Ho·Wp`.
    len: usize,
    /// Largest tap offset `(kh−1)·dh·Wp + (kw−1)·dw`.
    max_off: usize,
}

impl Ext {
    fn new(g: &ConvGeom) -> Ext {
        let (hp, wp) = (g.h + g.pt + g.pb, g.w + g.pl + g.pr);
        Ext {
            hp,
            wp,
            len: g.ho * wp,
            max_off: (g.kh - 1) * g.dh * wp + (g.kw - 1) * g.dw,
        }
    }
    /// Length of a padded input plane: one spare row, so the dropped extended columns of the
    /// last output row still read inside the buffer.
    fn padded_len(&self) -> usize {
        (self.hp + 1) * self.wp
    }
    fn offsets(&self, g: &ConvGeom) -> impl Iterator<Item = usize> + '_ {
        let (kh, kw, dh, dw, wp) = (g.kh, g.kw, g.dh, g.dw, self.wp);
        (0..kh).flat_map(move |ki| (0..kw).map(move |kj| ki * dh * wp + kj * dw))
    }
}

/// Copies an H×W plane into the interior of a zeroed padded plane (the border is never written,
/// so it stays zero across calls).
fn pad_into(src: &[f32], g: &ConvGeom, e: &Ext, dst: &mut [f32]) {
    for (r, row) in src.chunks_exact(g.w).enumerate() {
        dst[(r + g.pt) * e.wp + g.pl..][..g.w].copy_from_slice(row);
    }
}

fn forward_unit(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> CpuBuf {
    let mut out = CpuBuf::zeros(g.out_len());
    let (hw, ohw, kk, m) = (g.in_plane(), g.out_plane(), g.kh * g.kw, g.og());
    if ohw == 0 || g.out_len() == 0 {
        return out;
    }
    let e = Ext::new(g);
    out.par_chunks_mut(ohw)
        .enumerate()
        .with_min_len(planes_per_task(g))
        .for_each_init(
            || {
                (
                    vec![0.0f32; e.padded_len()],
                    vec![0.0f32; e.len],
                    Vec::with_capacity(kk),
                )
            },
            |(xpad, ext, taps), (no, plane)| {
                let (n, o) = (no / g.o, no % g.o);
                pad_into(&x[(n * g.c + o / m) * hw..][..hw], g, &e, xpad);
                taps.clear();
                taps.extend(e.offsets(g).zip(w[o * kk..][..kk].iter().copied()));
                apply_taps(xpad, taps, ext, false);
                let b = bias.map_or(0.0, |b| b[o]);
                for (orow, erow) in plane.chunks_exact_mut(g.wo).zip(ext.chunks(e.wp)) {
                    for (o, v) in orow.iter_mut().zip(erow) {
                        *o = v + b;
                    }
                }
            },
        );
    out
}

fn backward_data_unit(dy: &[f32], w: &[f32], g: &ConvGeom) -> CpuBuf {
    let mut dx = CpuBuf::zeros(g.in_len());
    let (hw, ohw, kk, m) = (g.in_plane(), g.out_plane(), g.kh * g.kw, g.og());
    if hw == 0 || g.in_len() == 0 || ohw == 0 {
        return dx;
    }
    let e = Ext::new(g);
    // dx_pad[q] = Σ_t w_t · dy_ext[q − off_t]: a gather over dy in extended coordinates, stored
    // after `max_off` zeros so that q − off_t never goes below zero. Only the rows of dx_pad that
    // lie inside the image (pt .. pt+H) are computed.
    let front = e.max_off;
    let buf_len = front + e.padded_len();
    let base = g.pt * e.wp;
    dx.par_chunks_mut(hw)
        .enumerate()
        .with_min_len((planes_per_task(g) / m).max(1))
        .for_each_init(
            || {
                (
                    vec![0.0f32; buf_len],
                    vec![0.0f32; g.h * e.wp],
                    Vec::with_capacity(kk),
                )
            },
            |(buf, ext, taps), (nc, dxp)| {
                let (n, ci) = (nc / g.c, nc % g.c);
                for (j, o) in (ci * m..(ci + 1) * m).enumerate() {
                    let dyp = &dy[(n * g.o + o) * ohw..][..ohw];
                    for (r, row) in dyp.chunks_exact(g.wo).enumerate() {
                        buf[front + r * e.wp..][..g.wo].copy_from_slice(row);
                    }
                    taps.clear();
                    taps.extend(
                        e.offsets(g)
                            .map(|off| front + base - off)
                            .zip(w[o * kk..][..kk].iter().copied()),
                    );
                    apply_taps(buf, taps, ext, j > 0);
                }
                for (r, row) in dxp.chunks_exact_mut(g.w).enumerate() {
                    row.copy_from_slice(&ext[r * e.wp + g.pl..][..g.w]);
                }
            },
        );
    dx
}

fn backward_weights_unit(x: &[f32], dy: &[f32], g: &ConvGeom) -> CpuBuf {
    let (hw, ohw, kk, m) = (g.in_plane(), g.out_plane(), g.kh * g.kw, g.og());
    let mut dw = CpuBuf::zeros(g.weight_len());
    if ohw == 0 || g.n == 0 {
        return dw;
    }
    let e = Ext::new(g);
    let offsets: Vec<usize> = e.offsets(g).collect();
    let per_channel = 2 * kk * g.n * e.len;
    // dW[o][t] = Σ_n Σ_p dy_ext[p] · x_pad[p + off_t], with dy_ext zero in the extended columns.
    dw.par_chunks_mut(kk)
        .enumerate()
        .with_min_len((20_000 / per_channel.max(1)).max(1))
        .for_each_init(
            || (vec![0.0f32; e.padded_len()], vec![0.0f32; e.len]),
            |(xpad, dyext), (o, dwo)| {
                let ci = o / m;
                // 32 partial sums per tap, reduced once at the end (in f64) rather than per image.
                let mut acc = vec![[0.0f32; 32]; kk];
                for n in 0..g.n {
                    pad_into(&x[(n * g.c + ci) * hw..][..hw], g, &e, xpad);
                    let dyp = &dy[(n * g.o + o) * ohw..][..ohw];
                    for (r, row) in dyp.chunks_exact(g.wo).enumerate() {
                        dyext[r * e.wp..][..g.wo].copy_from_slice(row);
                    }
                    for (a, &off) in acc.iter_mut().zip(&offsets) {
                        dot_acc(dyext, &xpad[off..off + e.len], a);
                    }
                }
                for (d, a) in dwo.iter_mut().zip(&acc) {
                    *d = a.iter().map(|v| *v as f64).sum::<f64>() as f32;
                }
            },
        );
    dw
}

// ----- the blocked layout: depthwise, multiplier 1, stride 1 ---------------------------------

/// Lanes of [`crate::Layout::Blocked16`]: the 16 channels of a block are the vector lanes, so
/// every kernel tap is a full-width multiply-add with no edge cases and no layout conversion in a
/// blocked unroll.
const B: usize = crate::layout::BLOCK;

/// Whether [`forward_blocked`] and friends handle `g`: a depthwise convolution with one output
/// per channel, stride 1, and channels in whole blocks.
pub fn blocked_supported(g: &ConvGeom) -> bool {
    g.groups == g.c && g.o == g.c && g.c.is_multiple_of(B) && g.sh == 1 && g.sw == 1
}

/// `out[r][c] (+)= Σ_t wt[t] ∘ src[r + th_t][c + tw_t]` over an `rows × cols` grid of B-lane
/// vectors, `src` being `src_w` vectors wide. Four neighbouring outputs share each weight load and
/// give eight independent multiply-add chains.
#[inline(always)]
fn blocked_taps_kernel<M: MulAdd>(
    src: &[f32],
    src_w: usize,
    taps: &[(usize, usize)],
    wt: &[f32],
    out: &mut [f32],
    cols: usize,
) {
    for (r, orow) in out.chunks_exact_mut(cols * B).enumerate() {
        let mut quads = orow.chunks_exact_mut(4 * B);
        let mut c = 0;
        for oq in &mut quads {
            let mut acc = [0.0f32; 4 * B];
            for (&(th, tw), wv) in taps.iter().zip(wt.chunks_exact(B)) {
                let base = ((r + th) * src_w + c + tw) * B;
                let s = &src[base..base + 4 * B];
                for j in 0..4 {
                    for l in 0..B {
                        acc[j * B + l] = M::madd(wv[l], s[j * B + l], acc[j * B + l]);
                    }
                }
            }
            oq.copy_from_slice(&acc);
            c += 4;
        }
        for op in quads.into_remainder().chunks_exact_mut(B) {
            let mut acc = [0.0f32; B];
            for (&(th, tw), wv) in taps.iter().zip(wt.chunks_exact(B)) {
                let base = ((r + th) * src_w + c + tw) * B;
                let s = &src[base..base + B];
                for l in 0..B {
                    acc[l] = M::madd(wv[l], s[l], acc[l]);
                }
            }
            op.copy_from_slice(&acc);
            c += 1;
        }
    }
}

/// `acc[t] += Σ_{r,c} dy[r][c] ∘ src[r + th_t][c + tw_t]` (B-lane vectors) for every tap.
#[inline(always)]
fn blocked_wgrad_kernel<M: MulAdd>(
    dy: &[f32],
    src: &[f32],
    src_w: usize,
    taps: &[(usize, usize)],
    cols: usize,
    acc: &mut [f32],
) {
    for (&(th, tw), at) in taps.iter().zip(acc.chunks_exact_mut(B)) {
        let mut a = [0.0f32; 4 * B];
        for (r, dyr) in dy.chunks_exact(cols * B).enumerate() {
            let xr = &src[((r + th) * src_w + tw) * B..][..cols * B];
            let (dq, xq) = (dyr.chunks_exact(4 * B), xr.chunks_exact(4 * B));
            let (drest, xrest) = (dq.remainder(), xq.remainder());
            for (d, x) in dq.zip(xq) {
                for i in 0..4 * B {
                    a[i] = M::madd(d[i], x[i], a[i]);
                }
            }
            for (d, x) in drest.chunks_exact(B).zip(xrest.chunks_exact(B)) {
                for l in 0..B {
                    a[l] = M::madd(d[l], x[l], a[l]);
                }
            }
        }
        for l in 0..B {
            at[l] += (a[l] + a[B + l]) + (a[2 * B + l] + a[3 * B + l]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn blocked_taps_avx2(
    src: &[f32],
    src_w: usize,
    taps: &[(usize, usize)],
    wt: &[f32],
    out: &mut [f32],
    cols: usize,
) {
    blocked_taps_kernel::<Fused>(src, src_w, taps, wt, out, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn blocked_wgrad_avx2(
    dy: &[f32],
    src: &[f32],
    src_w: usize,
    taps: &[(usize, usize)],
    cols: usize,
    acc: &mut [f32],
) {
    blocked_wgrad_kernel::<Fused>(dy, src, src_w, taps, cols, acc)
}

fn blocked_taps(
    src: &[f32],
    src_w: usize,
    taps: &[(usize, usize)],
    wt: &[f32],
    out: &mut [f32],
    cols: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        unsafe { blocked_taps_avx2(src, src_w, taps, wt, out, cols) };
        return;
    }
    blocked_taps_kernel::<Separate>(src, src_w, taps, wt, out, cols)
}

fn blocked_wgrad(
    dy: &[f32],
    src: &[f32],
    src_w: usize,
    taps: &[(usize, usize)],
    cols: usize,
    acc: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        unsafe { blocked_wgrad_avx2(dy, src, src_w, taps, cols, acc) };
        return;
    }
    blocked_wgrad_kernel::<Separate>(dy, src, src_w, taps, cols, acc)
}

/// Weights `[C, 1, kh, kw]` of channel block `cb` as `[kh·kw][B]` lanes.
fn block_weights(w: &[f32], g: &ConvGeom, cb: usize, dst: &mut Vec<f32>) {
    let kk = g.kh * g.kw;
    dst.clear();
    dst.resize(kk * B, 0.0);
    for l in 0..B {
        for (t, v) in w[(cb * B + l) * kk..][..kk].iter().enumerate() {
            dst[t * B + l] = *v;
        }
    }
}

/// Copies `rows × cols` vectors into a zeroed `dst` that is `dst_w` vectors wide, at (top, left).
fn place_block(src: &[f32], cols: usize, dst: &mut [f32], dst_w: usize, top: usize, left: usize) {
    for (r, row) in src.chunks_exact(cols * B).enumerate() {
        dst[((r + top) * dst_w + left) * B..][..cols * B].copy_from_slice(row);
    }
}

fn forward_taps(g: &ConvGeom) -> Vec<(usize, usize)> {
    (0..g.kh)
        .flat_map(|ki| (0..g.kw).map(move |kj| (ki * g.dh, kj * g.dw)))
        .collect()
}

/// Forward depthwise convolution, input and output in the blocked layout.
pub fn forward_blocked(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> CpuBuf {
    let mut out = CpuBuf::zeros(g.out_len());
    let (hw, ohw, cb_n) = (g.in_plane(), g.out_plane(), g.c / B);
    if ohw == 0 || g.out_len() == 0 {
        return out;
    }
    let (hp, wp) = (g.h + g.pt + g.pb, g.w + g.pl + g.pr);
    let taps = forward_taps(g);
    out.par_chunks_mut(ohw * B)
        .enumerate()
        .with_min_len((planes_per_task(g) / B).max(1))
        .for_each_init(
            || (vec![0.0f32; hp * wp * B], Vec::new()),
            |(xpad, wt), (nb, ob)| {
                let cb = nb % cb_n;
                place_block(&x[nb * hw * B..][..hw * B], g.w, xpad, wp, g.pt, g.pl);
                block_weights(w, g, cb, wt);
                blocked_taps(xpad, wp, &taps, wt, ob, g.wo);
                if let Some(b) = bias {
                    let bv = &b[cb * B..][..B];
                    for px in ob.chunks_exact_mut(B) {
                        for (o, v) in px.iter_mut().zip(bv) {
                            *o += v;
                        }
                    }
                }
            },
        );
    out
}

/// Input gradient of [`forward_blocked`], blocked like `dy`.
pub fn backward_data_blocked(dy: &[f32], w: &[f32], g: &ConvGeom) -> CpuBuf {
    let mut dx = CpuBuf::zeros(g.in_len());
    let (hw, ohw, cb_n) = (g.in_plane(), g.out_plane(), g.c / B);
    if hw == 0 || g.in_len() == 0 || ohw == 0 {
        return dx;
    }
    // dx[h][w] = Σ_t w_t · dy[h + pt − ki·dh][w + pl − kj·dw]: a correlation of dy, placed at
    // (P_top, P_left) = ((kh−1)·dh, (kw−1)·dw) in a zero buffer so no index goes negative.
    let (p_top, p_left) = ((g.kh - 1) * g.dh, (g.kw - 1) * g.dw);
    let rows = (g.h + g.pt).max(g.ho) + p_top;
    let cols = (g.w + g.pl).max(g.wo) + p_left;
    let taps: Vec<(usize, usize)> = (0..g.kh)
        .flat_map(|ki| {
            (0..g.kw).map(move |kj| (g.pt + p_top - ki * g.dh, g.pl + p_left - kj * g.dw))
        })
        .collect();
    dx.par_chunks_mut(hw * B)
        .enumerate()
        .with_min_len((planes_per_task(g) / B).max(1))
        .for_each_init(
            || (vec![0.0f32; rows * cols * B], Vec::new()),
            |(dypad, wt), (nb, dxb)| {
                place_block(
                    &dy[nb * ohw * B..][..ohw * B],
                    g.wo,
                    dypad,
                    cols,
                    p_top,
                    p_left,
                );
                block_weights(w, g, nb % cb_n, wt);
                blocked_taps(dypad, cols, &taps, wt, dxb, g.w);
            },
        );
    dx
}

/// Weight gradient `[C, 1, kh, kw]` from blocked `x` and `dy`.
pub fn backward_weights_blocked(x: &[f32], dy: &[f32], g: &ConvGeom) -> CpuBuf {
    let kk = g.kh * g.kw;
    let mut dw = CpuBuf::zeros(g.weight_len());
    let (hw, ohw, cb_n) = (g.in_plane(), g.out_plane(), g.c / B);
    if ohw == 0 || g.n == 0 {
        return dw;
    }
    let (hp, wp) = (g.h + g.pt + g.pb, g.w + g.pl + g.pr);
    let taps = forward_taps(g);
    let per_block: Vec<Vec<f32>> = (0..cb_n)
        .into_par_iter()
        .map_init(
            || vec![0.0f32; hp * wp * B],
            |xpad, cb| {
                let mut acc = vec![0.0f32; kk * B];
                for n in 0..g.n {
                    let nb = n * cb_n + cb;
                    place_block(&x[nb * hw * B..][..hw * B], g.w, xpad, wp, g.pt, g.pl);
                    let dyb = &dy[nb * ohw * B..][..ohw * B];
                    blocked_wgrad(dyb, xpad, wp, &taps, g.wo, &mut acc);
                }
                acc
            },
        )
        .collect();
    for (cb, acc) in per_block.iter().enumerate() {
        for t in 0..kk {
            for l in 0..B {
                dw[(cb * B + l) * kk + t] = acc[t * B + l];
            }
        }
    }
    dw
}
