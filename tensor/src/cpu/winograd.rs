//! 3×3 "same" convolutions by Winograd's minimal filtering F(2×2, 3×3).
//!
//! Each 2×2 output tile is computed from a 4×4 input tile with 16 multiplications per (input,
//! output) channel pair instead of 36: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Over a batch this is
//! 16 independent matrix products `M_ξ = V_ξ · U_ξᵀ` (`V` the transformed input tiles `[tiles, C]`,
//! `U` the transformed filters `[O, C]`), which run as oneDNN sgemms near the machine's peak,
//! while the transforms are a few additions per element. oneDNN 2.6 has no Winograd convolution
//! for AVX2 (its primitive creation answers `unimplemented`), and its direct kernels run the
//! RGC's 3×3 convolutions on 6×6 and 12×12 maps at 90–145 GFLOP/s.
//!
//! The gradient of the input is the same computation with the filters transposed and rotated by
//! 180°, so forward and backward-data share every kernel here. The weight gradient is the adjoint
//! of the forward: the output gradient's tiles are carried back to the 16 points (`A dY Aᵀ`),
//! multiplied with the input tiles summed over the batch (16 more sgemms), and the sums carried
//! back to the 3×3 filters (`Gᵀ dU G`). The transforms add and subtract inputs of similar size,
//! so the results differ from a direct convolution by a few units in the last place (the tests
//! compare with 1e-4 relative).
//!
//! Matrices are row-major. Activations are rows `[N·H·W, C]` ([`super::small_map`]'s
//! conversions); the transformed tiles `V` `[16][N·tiles][C]`, `M` and `dM` `[16][N·tiles][O]`
//! are point-major, so that every product reads and writes contiguous matrices (oneDNN's sgemm
//! ran the weight gradient's transposed products at 41 GFLOP/s on tile-major views with leading
//! dimension 16·C, and at 92 on contiguous ones); the filters `U` and `dU` are `[O][16][C]`.

use super::conv::ConvGeom;
use super::onednn::{OneDnn, Scratch};
use super::simd;
use super::small_map::{bias_gradient, from_rows, gemm, to_rows};
use crate::error::Result;
use crate::layout::Layout;
use crate::storage::CpuBuf;
use crate::StorageStamp;
use rayon::prelude::*;

/// Number of transformed points per tile: 4×4.
const POINTS: usize = 16;
/// Channels handled together in the transforms: one AVX2 register.
const LANES: usize = 8;

/// A transform's output `[16][rows][width]` (one plane per point, so that each of the 16
/// products reads a contiguous matrix), written one tile row per parallel task.
struct Planes<'a> {
    ptr: *mut f32,
    rows: usize,
    width: usize,
    _buf: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `Planes` hands out disjoint rows only (see `row`), so tasks on several threads never
// touch the same element.
unsafe impl Send for Planes<'_> {}
unsafe impl Sync for Planes<'_> {}

impl<'a> Planes<'a> {
    fn new(buf: &'a mut [f32], rows: usize, width: usize) -> Self {
        assert!(
            buf.len() >= POINTS * rows * width,
            "transform buffer too small"
        );
        Planes {
            ptr: buf.as_mut_ptr(),
            rows,
            width,
            _buf: std::marker::PhantomData,
        }
    }

    /// Row `row` of each of the 16 planes.
    ///
    /// # Safety
    /// `row < rows`, and no two calls that are alive at once may pass the same `row`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, row: usize) -> [&mut [f32]; POINTS] {
        debug_assert!(row < self.rows);
        std::array::from_fn(|k| {
            // SAFETY: (k·rows + row + 1)·width <= 16·rows·width <= the buffer's length, and the
            // caller keeps rows disjoint between live calls.
            unsafe {
                std::slice::from_raw_parts_mut(
                    self.ptr.add((k * self.rows + row) * self.width),
                    self.width,
                )
            }
        })
    }
}

/// Fewest input and output channels for which [`suits`] picks this module. The 16 products have
/// the channels as their inner and outer dimensions, and with few channels they run far from the
/// sgemm's peak (`conv_bench rgc`, 2 AVX2 cores, batch 16, forward / forward+both backward:
/// 64→128 at 24×24 10.5 / 32.9 ms here against oneDNN's 10.8 / 31.7, no gain; 128→256 at 12×12
/// 8.3 / 24.7 against 11.8 / 37.4; 256→256 at 12×12 14.1 / 39.5 against 18.1 / 55.5).
pub const MIN_CHANNELS: usize = 128;

/// Whether `g` is a convolution this module computes: dense, 3×3, stride 1, no dilation, one
/// pixel of padding on every side (so the output map is the input map).
pub fn supports(g: &ConvGeom) -> bool {
    g.groups == 1
        && (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
        && (g.pt, g.pb, g.pl, g.pr) == (1, 1, 1, 1)
        && (g.ho, g.wo) == (g.h, g.w)
}

/// Whether `Auto` should run `g` here: [`supports`] it, with at least [`MIN_CHANNELS`] channels
/// on both sides.
pub fn suits(g: &ConvGeom) -> bool {
    supports(g) && g.c.min(g.o) >= MIN_CHANNELS
}

/// `U = G g Gᵀ` for every filter, as `[outs][16][ins]`. Forward: `outs` = O, `ins` = C and
/// `g = w[o][c]`. Backward-data (`transpose`): `outs` = C, `ins` = O and `g` is `w[o][c]`
/// rotated by 180°, the filter that carries `dy` back to `dx`.
fn filters(w: &[f32], o: usize, c: usize, transpose: bool, u: &mut [f32]) {
    let (outs, ins) = if transpose { (c, o) } else { (o, c) };
    u[..outs * POINTS * ins]
        .par_chunks_mut(POINTS * ins)
        .enumerate()
        .for_each(|(oo, dst)| {
            for ii in 0..ins {
                let tap = |k: usize| {
                    if transpose {
                        w[(ii * c + oo) * 9 + (8 - k)]
                    } else {
                        w[(oo * c + ii) * 9 + k]
                    }
                };
                // G g: four rows of three.
                let mut gg = [[0.0f32; 3]; 4];
                for j in 0..3 {
                    let (a, b, cc) = (tap(j), tap(3 + j), tap(6 + j));
                    gg[0][j] = a;
                    gg[1][j] = 0.5 * (a + b + cc);
                    gg[2][j] = 0.5 * (a - b + cc);
                    gg[3][j] = cc;
                }
                // (G g) Gᵀ: each row's three values become four.
                for (r, row) in gg.iter().enumerate() {
                    let [a, b, cc] = *row;
                    let out = [a, 0.5 * (a + b + cc), 0.5 * (a - b + cc), cc];
                    for (s, v) in out.into_iter().enumerate() {
                        dst[(r * 4 + s) * ins + ii] = v;
                    }
                }
            }
        });
}

/// `V = Bᵀ d B` for every 4×4 input tile `d` (zero outside the map) of rows `xr` `[N·H·W, C]`:
/// `v` `[16][N·tiles][C]` (every element written).
fn input_tiles(xr: &[f32], n: usize, (h, w): (usize, usize), c: usize, v: &mut [f32]) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let per_image = th * tw;
    let zeros = vec![0.0; c];
    let planes = Planes::new(v, n * per_image, c);
    (0..n * per_image).into_par_iter().for_each(|row| {
        // SAFETY: each task writes its own row.
        let mut dst = unsafe { planes.row(row) };
        let (i, t) = (row / per_image, row % per_image);
        let (y0, x0) = (2 * (t / tw) as isize - 1, 2 * (t % tw) as isize - 1);
        let src: [&[f32]; POINTS] = std::array::from_fn(|k| {
            let (y, x) = (y0 + (k / 4) as isize, x0 + (k % 4) as isize);
            if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                &zeros[..]
            } else {
                &xr[((i * h + y as usize) * w + x as usize) * c..][..c]
            }
        });
        transform_row(
            &src,
            &mut dst,
            c,
            input_transform,
            #[cfg(target_arch = "x86_64")]
            avx2::input_row,
        );
    });
}

/// The AVX2 copy of a transform over one tile row: `(sources, destinations, full)` with `full` the
/// channels it covers (a multiple of 8).
#[cfg(target_arch = "x86_64")]
type FastRow<const K: usize> = unsafe fn(&[&[f32]; K], &mut [&mut [f32]; POINTS], usize);

/// One tile row of a transform from `K` points to 16: `dst[k][ch]` for every channel `ch` of
/// `width`, by `fast` (AVX2, where the CPU has it) on whole registers and `scalar` on the rest.
fn transform_row<const K: usize>(
    src: &[&[f32]; K],
    dst: &mut [&mut [f32]; POINTS],
    width: usize,
    scalar: fn(&[[f32; LANES]; K]) -> [[f32; LANES]; POINTS],
    #[cfg(target_arch = "x86_64")] fast: FastRow<K>,
) {
    let full = width - width % LANES;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2_fma() {
        // SAFETY: the CPU has AVX2; every source and destination holds `width` values.
        unsafe { fast(src, dst, full) };
        done = full;
    }
    for c0 in (done..full).step_by(LANES) {
        let d = std::array::from_fn(|k| lanes(&src[k][c0..]));
        for (k, o) in scalar(&d).iter().enumerate() {
            dst[k][c0..][..LANES].copy_from_slice(o);
        }
    }
    if full < width {
        // The last channels, fewer than LANES: padded with zeros.
        let len = width - full;
        let d = std::array::from_fn(|k| padded(&src[k][full..]));
        for (k, o) in scalar(&d).iter().enumerate() {
            dst[k][full..].copy_from_slice(&o[..len]);
        }
    }
}

/// The first [`LANES`] values of `s`, as a register-sized array (a fixed-size copy; a
/// variable-length one would call `memcpy`).
#[inline(always)]
fn lanes(s: &[f32]) -> [f32; LANES] {
    let mut a = [0.0; LANES];
    a.copy_from_slice(&s[..LANES]);
    a
}

/// The (fewer than [`LANES`]) values of `s`, padded with zeros.
#[inline(always)]
fn padded(s: &[f32]) -> [f32; LANES] {
    let mut a = [0.0; LANES];
    a[..s.len()].copy_from_slice(s);
    a
}

/// `Bᵀ d B` on [`LANES`] channels at once; `d` and the result are 4×4, row-major.
#[inline(always)]
fn input_transform(d: &[[f32; LANES]; POINTS]) -> [[f32; LANES]; POINTS] {
    let mut t = [[0.0f32; LANES]; POINTS];
    // Bᵀ d: combine rows.
    for s in 0..4 {
        for l in 0..LANES {
            let (d0, d1, d2, d3) = (d[s][l], d[4 + s][l], d[8 + s][l], d[12 + s][l]);
            t[s][l] = d0 - d2;
            t[4 + s][l] = d1 + d2;
            t[8 + s][l] = d2 - d1;
            t[12 + s][l] = d1 - d3;
        }
    }
    // (Bᵀ d) B: combine columns.
    let mut v = [[0.0f32; LANES]; POINTS];
    for r in 0..4 {
        for l in 0..LANES {
            let (a0, a1, a2, a3) = (
                t[4 * r][l],
                t[4 * r + 1][l],
                t[4 * r + 2][l],
                t[4 * r + 3][l],
            );
            v[4 * r][l] = a0 - a2;
            v[4 * r + 1][l] = a1 + a2;
            v[4 * r + 2][l] = a2 - a1;
            v[4 * r + 3][l] = a1 - a3;
        }
    }
    v
}

/// `Aᵀ m A` on [`LANES`] channels at once: 4×4 → 2×2, row-major.
#[inline(always)]
fn output_transform(m: &[[f32; LANES]; POINTS]) -> [[f32; LANES]; 4] {
    let mut t = [[0.0f32; LANES]; 8];
    for s in 0..4 {
        for l in 0..LANES {
            let (m0, m1, m2, m3) = (m[s][l], m[4 + s][l], m[8 + s][l], m[12 + s][l]);
            t[s][l] = m0 + m1 + m2;
            t[4 + s][l] = m1 - m2 - m3;
        }
    }
    let mut y = [[0.0f32; LANES]; 4];
    for r in 0..2 {
        for l in 0..LANES {
            let (a0, a1, a2, a3) = (
                t[4 * r][l],
                t[4 * r + 1][l],
                t[4 * r + 2][l],
                t[4 * r + 3][l],
            );
            y[2 * r][l] = a0 + a1 + a2;
            y[2 * r + 1][l] = a1 - a2 - a3;
        }
    }
    y
}

/// The 2×2 output tiles `Aᵀ M A` of `m` `[16][N·tiles][O]`, cropped to the map: rows `yr`
/// `[N·H·W, O]` (every element written).
fn output_tiles(m: &[f32], n: usize, (h, w): (usize, usize), o: usize, yr: &mut [f32]) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let per_image = th * tw;
    let yr = &mut yr[..n * h * w * o];
    if yr.is_empty() {
        return;
    }
    yr.par_chunks_mut(h * w * o)
        .enumerate()
        .for_each(|(i, img)| {
            let rows = n * per_image;
            for t in 0..per_image {
                let row = i * per_image + t;
                let src = std::array::from_fn(|k| &m[(k * rows + row) * o..][..o]);
                output_tile(&src, img, (h, w), (2 * (t / tw), 2 * (t % tw)), o);
            }
        });
}

/// One 2×2 output tile at (`y0`, `x0`) of one image's rows `img` `[H·W, O]` from its transformed
/// products `src` (16 points of O); rows and columns past the map are dropped.
fn output_tile(
    src: &[&[f32]; POINTS],
    img: &mut [f32],
    (h, w): (usize, usize),
    (y0, x0): (usize, usize),
    o: usize,
) {
    let full = o - o % LANES;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2_fma() {
        let at: [Option<usize>; 4] = std::array::from_fn(|k| {
            let (yy, xx) = (y0 + k / 2, x0 + k % 2);
            (yy < h && xx < w).then_some((yy * w + xx) * o)
        });
        // SAFETY: the CPU has AVX2; every source holds `o` values and every offset in `at`
        // leaves room for `o` values in `img`.
        unsafe { avx2::output_tile(src, img, &at, full) };
        done = full;
    }
    let mut put = |o0: usize, len: usize, y: &[[f32; LANES]; 4]| {
        for (k, yk) in y.iter().enumerate() {
            let (yy, xx) = (y0 + k / 2, x0 + k % 2);
            if yy < h && xx < w {
                img[(yy * w + xx) * o + o0..][..len].copy_from_slice(&yk[..len]);
            }
        }
    };
    for o0 in (done..full).step_by(LANES) {
        let mm = std::array::from_fn(|k| lanes(&src[k][o0..]));
        put(o0, LANES, &output_transform(&mm));
    }
    if full < o {
        let mm = std::array::from_fn(|k| padded(&src[k][full..]));
        put(full, o - full, &output_transform(&mm));
    }
}

/// `dM = A dY Aᵀ` for every 2×2 tile `dY` of the output gradient (zero past the map) of rows
/// `dyr` `[N·H·W, O]`: `dm` `[16][N·tiles][O]` (every element written). This is the adjoint of
/// [`output_tiles`]: it carries the gradient of the outputs back to the 16 products.
fn gradient_tiles(dyr: &[f32], n: usize, (h, w): (usize, usize), o: usize, dm: &mut [f32]) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let per_image = th * tw;
    let zeros = vec![0.0; o];
    let planes = Planes::new(dm, n * per_image, o);
    (0..n * per_image).into_par_iter().for_each(|row| {
        // SAFETY: each task writes its own row.
        let mut dst = unsafe { planes.row(row) };
        let (i, t) = (row / per_image, row % per_image);
        let (y0, x0) = (2 * (t / tw), 2 * (t % tw));
        let src: [&[f32]; 4] = std::array::from_fn(|k| {
            let (y, x) = (y0 + k / 2, x0 + k % 2);
            if y < h && x < w {
                &dyr[((i * h + y) * w + x) * o..][..o]
            } else {
                &zeros[..]
            }
        });
        transform_row(
            &src,
            &mut dst,
            o,
            gradient_transform,
            #[cfg(target_arch = "x86_64")]
            avx2::gradient_row,
        );
    });
}

/// `A y Aᵀ` on [`LANES`] channels at once: 2×2 → 4×4, row-major.
#[inline(always)]
fn gradient_transform(y: &[[f32; LANES]; 4]) -> [[f32; LANES]; POINTS] {
    let mut m = [[0.0f32; LANES]; POINTS];
    for l in 0..LANES {
        // A y: four rows of two.
        let t = [
            [y[0][l], y[1][l]],
            [y[0][l] + y[2][l], y[1][l] + y[3][l]],
            [y[0][l] - y[2][l], y[1][l] - y[3][l]],
            [-y[2][l], -y[3][l]],
        ];
        // (A y) Aᵀ: each row's two values become four.
        for (r, [a, b]) in t.into_iter().enumerate() {
            m[4 * r][l] = a;
            m[4 * r + 1][l] = a + b;
            m[4 * r + 2][l] = a - b;
            m[4 * r + 3][l] = -b;
        }
    }
    m
}

/// The adjoint of [`filters`] (forward): `dw[o][c] = Gᵀ dU[o][c] G` for `du` `[O][16][C]`, into
/// plain `[O, C, 3, 3]`.
fn filter_gradients(du: &[f32], o: usize, c: usize) -> Vec<f32> {
    let mut dw = vec![0.0; o * c * 9];
    dw.par_chunks_mut(c * 9).enumerate().for_each(|(oo, dst)| {
        let src = &du[oo * POINTS * c..][..POINTS * c];
        for (ii, g) in dst.chunks_exact_mut(9).enumerate() {
            let u = |k: usize| src[k * c + ii];
            // Gᵀ dU: three rows of four.
            let mut t = [[0.0f32; 4]; 3];
            for s in 0..4 {
                let (u0, u1, u2, u3) = (u(s), u(4 + s), u(8 + s), u(12 + s));
                t[0][s] = u0 + 0.5 * (u1 + u2);
                t[1][s] = 0.5 * (u1 - u2);
                t[2][s] = 0.5 * (u1 + u2) + u3;
            }
            // (Gᵀ dU) G: each row's four values become three.
            for (r, [a0, a1, a2, a3]) in t.into_iter().enumerate() {
                g[3 * r] = a0 + 0.5 * (a1 + a2);
                g[3 * r + 1] = 0.5 * (a1 - a2);
                g[3 * r + 2] = 0.5 * (a1 + a2) + a3;
            }
        }
    });
    dw
}

/// The transforms on 8 channels per AVX2 register: the same additions as the scalar
/// [`input_transform`] and [`output_transform`], in the same order, so both give identical results.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::POINTS;
    use std::arch::x86_64::*;

    /// `dst[k][ch] = (Bᵀ d B)[k]` for channels `ch < full` (a multiple of 8).
    ///
    /// # Safety
    /// The CPU must have AVX2; every `src[k]` and `dst[k]` must hold at least `full` values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn input_row(src: &[&[f32]; POINTS], dst: &mut [&mut [f32]; POINTS], full: usize) {
        debug_assert!(src.iter().all(|s| s.len() >= full) && dst.iter().all(|d| d.len() >= full));
        let out: [*mut f32; POINTS] = std::array::from_fn(|k| dst[k].as_mut_ptr());
        let mut c0 = 0;
        while c0 < full {
            let mut t = [_mm256_setzero_ps(); POINTS];
            for s in 0..4 {
                // SAFETY: c0 + 8 <= full <= every source's length.
                let (d0, d1, d2, d3) = unsafe {
                    (
                        _mm256_loadu_ps(src[s].as_ptr().add(c0)),
                        _mm256_loadu_ps(src[4 + s].as_ptr().add(c0)),
                        _mm256_loadu_ps(src[8 + s].as_ptr().add(c0)),
                        _mm256_loadu_ps(src[12 + s].as_ptr().add(c0)),
                    )
                };
                t[s] = _mm256_sub_ps(d0, d2);
                t[4 + s] = _mm256_add_ps(d1, d2);
                t[8 + s] = _mm256_sub_ps(d2, d1);
                t[12 + s] = _mm256_sub_ps(d1, d3);
            }
            for r in 0..4 {
                let (a0, a1, a2, a3) = (t[4 * r], t[4 * r + 1], t[4 * r + 2], t[4 * r + 3]);
                let v = [
                    _mm256_sub_ps(a0, a2),
                    _mm256_add_ps(a1, a2),
                    _mm256_sub_ps(a2, a1),
                    _mm256_sub_ps(a1, a3),
                ];
                for (j, vj) in v.into_iter().enumerate() {
                    // SAFETY: c0 + 8 <= full <= the destination's length.
                    unsafe { _mm256_storeu_ps(out[4 * r + j].add(c0), vj) };
                }
            }
            c0 += 8;
        }
    }

    /// `dst[k][ch] = (A y Aᵀ)[k]` for channels `ch < full` (a multiple of 8).
    ///
    /// # Safety
    /// The CPU must have AVX2; every `src[k]` and `dst[k]` must hold at least `full` values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn gradient_row(src: &[&[f32]; 4], dst: &mut [&mut [f32]; POINTS], full: usize) {
        debug_assert!(src.iter().all(|s| s.len() >= full) && dst.iter().all(|d| d.len() >= full));
        let out: [*mut f32; POINTS] = std::array::from_fn(|k| dst[k].as_mut_ptr());
        let zero = _mm256_setzero_ps();
        let mut o0 = 0;
        while o0 < full {
            // SAFETY: o0 + 8 <= full <= every source's length.
            let y = unsafe { [0, 1, 2, 3].map(|k| _mm256_loadu_ps(src[k].as_ptr().add(o0))) };
            let t = [
                [y[0], y[1]],
                [_mm256_add_ps(y[0], y[2]), _mm256_add_ps(y[1], y[3])],
                [_mm256_sub_ps(y[0], y[2]), _mm256_sub_ps(y[1], y[3])],
                [_mm256_sub_ps(zero, y[2]), _mm256_sub_ps(zero, y[3])],
            ];
            for (r, [a, b]) in t.into_iter().enumerate() {
                let m = [
                    a,
                    _mm256_add_ps(a, b),
                    _mm256_sub_ps(a, b),
                    _mm256_sub_ps(zero, b),
                ];
                for (j, mj) in m.into_iter().enumerate() {
                    // SAFETY: o0 + 8 <= full <= the destination's length.
                    unsafe { _mm256_storeu_ps(out[4 * r + j].add(o0), mj) };
                }
            }
            o0 += 8;
        }
    }

    /// `img[at[k] + ch] = (Aᵀ m A)[k]` for channels `ch < full` (a multiple of 8) and the
    /// outputs `k` with an offset.
    ///
    /// # Safety
    /// The CPU must have AVX2; every `src[k]` must hold at least `full` values and `img` at
    /// least `at[k] + full` for every offset.
    #[target_feature(enable = "avx2")]
    pub unsafe fn output_tile(
        src: &[&[f32]; POINTS],
        img: &mut [f32],
        at: &[Option<usize>; 4],
        full: usize,
    ) {
        debug_assert!(src.iter().all(|s| s.len() >= full));
        debug_assert!(at.iter().flatten().all(|&a| img.len() >= a + full));
        let out = img.as_mut_ptr();
        let mut o0 = 0;
        while o0 < full {
            let mut t = [_mm256_setzero_ps(); 8];
            for s in 0..4 {
                // SAFETY: o0 + 8 <= full <= every source's length.
                let (m0, m1, m2, m3) = unsafe {
                    (
                        _mm256_loadu_ps(src[s].as_ptr().add(o0)),
                        _mm256_loadu_ps(src[4 + s].as_ptr().add(o0)),
                        _mm256_loadu_ps(src[8 + s].as_ptr().add(o0)),
                        _mm256_loadu_ps(src[12 + s].as_ptr().add(o0)),
                    )
                };
                t[s] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                t[4 + s] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
            }
            for r in 0..2 {
                let (a0, a1, a2, a3) = (t[4 * r], t[4 * r + 1], t[4 * r + 2], t[4 * r + 3]);
                let y = [
                    _mm256_add_ps(_mm256_add_ps(a0, a1), a2),
                    _mm256_sub_ps(_mm256_sub_ps(a1, a2), a3),
                ];
                for (j, yj) in y.into_iter().enumerate() {
                    if let Some(a) = at[2 * r + j] {
                        // SAFETY: a + o0 + 8 <= a + full <= img.len().
                        unsafe { _mm256_storeu_ps(out.add(a + o0), yj) };
                    }
                }
            }
            o0 += 8;
        }
    }
}

/// The transformed input tiles `[16][n·tiles][c]` of `x` `[n, c, H, W]` in `layout`, and how many
/// tiles there are.
fn tiles_of<'a>(
    d: &'a OneDnn,
    x: &[f32],
    layout: Layout,
    n: usize,
    hw: (usize, usize),
    c: usize,
) -> (usize, Scratch<'a>) {
    let mut xr = d.scratch(n * hw.0 * hw.1 * c);
    to_rows(x, layout, (n, c, hw.0 * hw.1), &mut xr);
    let rows = n * hw.0.div_ceil(2) * hw.1.div_ceil(2);
    let mut v = d.scratch(rows * POINTS * c);
    input_tiles(&xr, n, hw, c, &mut v);
    (rows, v)
}

/// The "same" 3×3 convolution of `x` `[n, ins, H, W]` in `layout` with the transformed filters
/// `u` `[outs][16][ins]`: rows `yr` `[n·H·W, outs]`.
#[allow(clippy::too_many_arguments)]
fn convolve(
    d: &OneDnn,
    x: &[f32],
    layout: Layout,
    u: &[f32],
    n: usize,
    hw: (usize, usize),
    (ins, outs): (usize, usize),
    yr: &mut [f32],
) -> Result<()> {
    let (rows, v) = tiles_of(d, x, layout, n, hw, ins);
    let mut m = d.scratch(rows * POINTS * outs);
    for p in 0..POINTS {
        gemm(
            d,
            (false, true),
            (rows, outs, ins),
            &v[p * rows * ins..],
            ins,
            &u[p * ins..],
            POINTS * ins,
            &mut m[p * rows * outs..],
            outs,
        )?;
    }
    output_tiles(&m, n, hw, outs, yr);
    Ok(())
}

/// The weight shape, part of the transformed filters' cache key.
fn shape(g: &ConvGeom) -> [usize; 4] {
    [g.o, g.c, g.kh, g.kw]
}

fn check(g: &ConvGeom) -> Result<()> {
    if supports(g) {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            "conv2d",
            format!(
                "the Winograd convolution needs a dense 3×3 kernel, stride 1, no dilation and one \
                 pixel of padding on every side; got {g:?}"
            ),
        ))
    }
}

/// Forward convolution: `x` in `x_layout`, plain weights `[O, C, 3, 3]`; the result in
/// `out_layout`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    d: &OneDnn,
    x: &[f32],
    x_layout: Layout,
    w: &[f32],
    w_stamp: &StorageStamp,
    bias: Option<&[f32]>,
    g: &ConvGeom,
    out_layout: Layout,
) -> Result<CpuBuf> {
    check(g)?;
    let u = d.derived_weights(w_stamp, (0, shape(g)), g.o * POINTS * g.c, |u| {
        filters(w, g.o, g.c, false, u)
    });
    let mut yr = d.scratch(g.n * g.out_plane() * g.o);
    convolve(d, x, x_layout, &u, g.n, (g.h, g.w), (g.c, g.o), &mut yr)?;
    Ok(from_rows(&yr, bias, out_layout, g.n, g.o, g.out_plane()))
}

/// Gradient of the input, in `dx_layout`; `dy` is in `dy_layout`.
pub fn backward_data(
    d: &OneDnn,
    dy: &[f32],
    dy_layout: Layout,
    w: &[f32],
    w_stamp: &StorageStamp,
    g: &ConvGeom,
    dx_layout: Layout,
) -> Result<CpuBuf> {
    check(g)?;
    let u = d.derived_weights(w_stamp, (1, shape(g)), g.c * POINTS * g.o, |u| {
        filters(w, g.o, g.c, true, u)
    });
    let mut dxr = d.scratch(g.n * g.in_plane() * g.c);
    convolve(d, dy, dy_layout, &u, g.n, (g.h, g.w), (g.o, g.c), &mut dxr)?;
    Ok(from_rows(&dxr, None, dx_layout, g.n, g.c, g.in_plane()))
}

/// Gradients of the plain weights `[O, C, 3, 3]` and, when `want_bias`, of the bias: the
/// adjoint of [`forward`]. The products are `dU_ξ = dM_ξᵀ · V_ξ`, summed over every tile of the
/// batch by 16 sgemms (`dM` from [`gradient_tiles`], `V` the forward's input tiles), and the
/// filters' gradients are `Gᵀ dU G`.
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
    let (n, hw) = (g.n, (g.h, g.w));
    let (rows, v) = tiles_of(d, x, x_layout, n, hw, g.c);
    let mut dyr = d.scratch(n * g.out_plane() * g.o);
    to_rows(dy, dy_layout, (n, g.o, g.out_plane()), &mut dyr);
    let mut dm = d.scratch(rows * POINTS * g.o);
    gradient_tiles(&dyr, n, hw, g.o, &mut dm);
    let mut du = d.scratch(g.o * POINTS * g.c);
    for p in 0..POINTS {
        gemm(
            d,
            (true, false),
            (g.o, g.c, rows),
            &dm[p * rows * g.o..],
            g.o,
            &v[p * rows * g.c..],
            g.c,
            &mut du[p * g.c..],
            POINTS * g.c,
        )?;
    }
    let dw = filter_gradients(&du, g.o, g.c);
    let db = want_bias.then(|| bias_gradient(&dyr, g.o));
    Ok((CpuBuf::new(dw), db))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-D transforms of F(2, 3) reproduce a direct correlation exactly on small integers.
    #[test]
    fn one_tile_equals_the_direct_correlation() {
        // One channel in, one out: a 4×4 input tile and a 3×3 filter.
        let d: Vec<f32> = (0..16).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
        let g: Vec<f32> = (0..9).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();
        let mut dl = [[0.0f32; LANES]; POINTS];
        for k in 0..16 {
            dl[k][0] = d[k];
        }
        let v = input_transform(&dl);
        let mut u = vec![f32::NAN; 16];
        filters(&g, 1, 1, false, &mut u);
        let mut m = [[0.0f32; LANES]; POINTS];
        for k in 0..16 {
            m[k][0] = v[k][0] * u[k];
        }
        let y = output_transform(&m);
        for r in 0..2 {
            for s in 0..2 {
                let mut want = 0.0;
                for ki in 0..3 {
                    for kj in 0..3 {
                        want += d[(r + ki) * 4 + s + kj] * g[ki * 3 + kj];
                    }
                }
                assert_eq!(y[r * 2 + s][0], want, "output ({r}, {s})");
            }
        }
    }

    #[test]
    fn supports_only_same_3x3_stride_1() {
        let g = ConvGeom {
            n: 2,
            c: 16,
            h: 6,
            w: 5,
            o: 32,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 1,
            pb: 1,
            pl: 1,
            pr: 1,
            ho: 6,
            wo: 5,
            groups: 1,
        };
        assert!(supports(&g));
        assert!(!supports(&ConvGeom {
            sh: 2,
            ho: 3,
            wo: 3,
            ..g
        }));
        assert!(!supports(&ConvGeom { groups: 2, ..g }));
        assert!(supports(&ConvGeom { c: 8, ..g }) && !suits(&ConvGeom { c: 8, ..g }));
        assert!(suits(&ConvGeom {
            c: 128,
            o: 256,
            ..g
        }));
        assert!(!supports(&ConvGeom { pt: 0, ho: 5, ..g }));
        assert!(!supports(&ConvGeom {
            kh: 1,
            kw: 1,
            pt: 0,
            pb: 0,
            pl: 0,
            pr: 0,
            ..g
        }));
    }
}
