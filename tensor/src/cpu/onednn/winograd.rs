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
//! Matrices are row-major. Activations in the blocked layout (`[N, C/16, H, W, 16]`, how the
//! RGC's areas hand them over) are read and written in place, one block of 16 channels at a
//! time: the input and gradient transforms read them, the output transform writes the result
//! (and adds the bias) into them. Plain activations are converted to rows `[N·H·W, C]`
//! ([`super::gemm_conv`]) and back. In place saves two passes over every activation per call
//! (the conversions to rows and back, and the zero-filling of the converted output were 6–7 % of
//! `rgc_shallow`'s training time on an AVX-512 Xeon, by `perf`). The transformed tiles `V`
//! `[16][N·tiles][C]`, `M` and `dM` `[16][N·tiles][O]` are point-major, so that every product
//! reads and writes contiguous matrices (oneDNN's sgemm ran the weight gradient's transposed
//! products at 41 GFLOP/s on tile-major views with leading dimension 16·C, and at 92 on
//! contiguous ones); the filters `U` and their gradient `dU` are `[16][O][C]` too.
//!
//! The 16 products of a call are independent, so they run as 16 rayon tasks, each a
//! single-threaded sgemm ([`super::thread_budget`] is 1 inside a task), rather than one after
//! another each on every thread: on the RGC's small maps (6×6 and 3×3 at batch 16: 144 and 64
//! tiles) one product is a fraction of a millisecond, and splitting each over the threads paid an
//! OpenMP fork and join (a futex wake-up under the passive wait policy) 16 times per call.
//! Measured on 2 AVX-512 cores shared with other work (`xtask bench unroll --model rgc_shallow
//! --size 96 --steps 16 --iters 2`, thresholds, three pairs back to back): 31.4 s of CPU time
//! against 35.3 with the products in series, 53 s wall against 66. With more rayon threads than
//! 16, some stay idle during the products.

use super::gemm_conv::{from_rows, rows, GemmConv, Job};
use super::Scratch;
use crate::cpu::gemm::{Gemm, MatMut, MatRef};
use crate::cpu::simd::{self, Isa};
use crate::error::Result;
use crate::layout::{Layout, BLOCK};
use crate::ops::conv::{Activation, ConvGeom, Weights};
use crate::storage::CpuBuf;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

/// Filters handled together by the filter transforms ([`filters`], [`filter_gradients`]): the
/// arithmetic runs on arrays of this many lanes, which the compiler vectorises (16 is a whole
/// number of registers on every ISA [`simd::dispatch`] compiles for).
const FILTER_LANES: usize = 16;

/// `dst[..len] = src[..len]` (a fixed-size copy when whole, so that it needs no `memcpy` call).
#[inline(always)]
fn copy_lanes(dst: &mut [f32], src: &[f32], len: usize) {
    if len == FILTER_LANES {
        dst[..FILTER_LANES].copy_from_slice(&src[..FILTER_LANES]);
    } else {
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// `G g Gᵀ` of [`FILTER_LANES`] filters at once: `g[k][l]` is tap `k` (row-major 3×3) of filter
/// `l`, `u[k][l]` becomes point `k` (row-major 4×4) of its transform. (Results are written into
/// the caller's arrays: returned by value, they were copied with `memcpy` calls.)
#[inline(always)]
fn filter_transform(g: &[[f32; FILTER_LANES]; 9], u: &mut [[f32; FILTER_LANES]; POINTS]) {
    // G g: four rows of three.
    let mut gg = [[[0.0f32; FILTER_LANES]; 3]; 4];
    for j in 0..3 {
        for l in 0..FILTER_LANES {
            let (a, b, cc) = (g[j][l], g[3 + j][l], g[6 + j][l]);
            gg[0][j][l] = a;
            gg[1][j][l] = 0.5 * (a + b + cc);
            gg[2][j][l] = 0.5 * (a - b + cc);
            gg[3][j][l] = cc;
        }
    }
    // (G g) Gᵀ: each row's three values become four.
    for (r, row) in gg.iter().enumerate() {
        for l in 0..FILTER_LANES {
            let (a, b, cc) = (row[0][l], row[1][l], row[2][l]);
            u[r * 4][l] = a;
            u[r * 4 + 1][l] = 0.5 * (a + b + cc);
            u[r * 4 + 2][l] = 0.5 * (a - b + cc);
            u[r * 4 + 3][l] = cc;
        }
    }
}

/// `U = G g Gᵀ` for every filter, as `[16][outs][ins]`. Forward: `outs` = O, `ins` = C and
/// `g = w[o][c]`. Backward-data (`transpose`): `outs` = C, `ins` = O and `g` is `w[o][c]`
/// rotated by 180°, the filter that carries `dy` back to `dx`. Point-major, so that each
/// product's `U_ξ` is a contiguous `[outs, ins]` matrix: as `[outs][16][ins]` its rows lay
/// `16·ins` floats apart (16 KB at 256 channels, the same cache sets row after row), and
/// oneDNN's sgemm ran the products slower on most of the RGC's shapes (BENCHMARKS.md,
/// "Winograd's filter layout"). [`FILTER_LANES`] filters at a time, compiled for the widest ISA
/// the CPU has ([`simd::dispatch`]).
fn filters(w: &[f32], o: usize, c: usize, transpose: bool, u: &mut [f32]) {
    let (outs, ins) = if transpose { (c, o) } else { (o, c) };
    if outs * ins == 0 {
        return;
    }
    let planes = Planes::new(u, outs, ins);
    (0..outs).into_par_iter().for_each(|oo| {
        // SAFETY: `oo < outs` and each task passes its own `oo`.
        let mut dst = unsafe { planes.row(oo) };
        simd::dispatch(|| {
            for i0 in (0..ins).step_by(FILTER_LANES) {
                let len = FILTER_LANES.min(ins - i0);
                let mut g = [[0.0f32; FILTER_LANES]; 9];
                for l in 0..len {
                    let ii = i0 + l;
                    for (k, gk) in g.iter_mut().enumerate() {
                        gk[l] = if transpose {
                            w[(ii * c + oo) * 9 + (8 - k)]
                        } else {
                            w[(oo * c + ii) * 9 + k]
                        };
                    }
                }
                let mut u = [[0.0f32; FILTER_LANES]; POINTS];
                filter_transform(&g, &mut u);
                for (uk, row) in u.iter().zip(dst.iter_mut()) {
                    copy_lanes(&mut row[i0..], uk, len);
                }
            }
        })
    });
}

/// The AVX2 copy of a transform over one tile row: `(sources, destinations, full)` with `full` the
/// channels it covers (a multiple of 8).
#[cfg(target_arch = "x86_64")]
type FastRow<const K: usize> = unsafe fn(&[&[f32]; K], &mut [&mut [f32]; POINTS], usize);

/// A tile transform from `K` points (a `side × side` window of the map) to 16, as a scalar
/// function on [`LANES`] channels and, on x86-64, an AVX2 one over whole registers.
struct Transform<const K: usize> {
    side: usize,
    /// Where the window starts, relative to the tile's first output pixel.
    offset: isize,
    scalar: fn(&[[f32; LANES]; K]) -> [[f32; LANES]; POINTS],
    #[cfg(target_arch = "x86_64")]
    fast: FastRow<K>,
}

/// `V = Bᵀ d B` of every 4×4 input tile `d`.
const INPUT: Transform<POINTS> = Transform {
    side: 4,
    offset: -1,
    scalar: input_transform,
    #[cfg(target_arch = "x86_64")]
    fast: avx2::input_row,
};

/// `dM = A dY Aᵀ` of every 2×2 tile `dY` of the output gradient: the adjoint of
/// [`output_tiles`], carrying the gradient of the outputs back to the 16 products.
const GRADIENT: Transform<4> = Transform {
    side: 2,
    offset: 0,
    scalar: gradient_transform,
    #[cfg(target_arch = "x86_64")]
    fast: avx2::gradient_row,
};

/// An activation map `[N, width, H, W]` as a transform reads it.
#[derive(Clone, Copy)]
enum Map<'a> {
    /// Rows `[N·H·W, width]` ([`super::gemm_conv`]).
    Rows(&'a [f32]),
    /// The tensor's own [`Layout::Blocked16`] values, `[N, width/16, H, W, 16]`: read in place,
    /// one block of 16 channels at a time, which saves converting it to rows first.
    Blocked(&'a [f32]),
}

/// `t` of every tile of `src` (zero outside the map): `out` `[16][N·tiles][width]` (every
/// element written), with the AVX2 copy where `isa` allows ([`vectorised`]).
fn transform_tiles<const K: usize>(
    src: Map<'_>,
    n: usize,
    (h, w): (usize, usize),
    width: usize,
    out: &mut [f32],
    t: &Transform<K>,
    isa: Isa,
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let per_image = th * tw;
    let zeros = vec![0.0; width];
    let planes = Planes::new(out, n * per_image, width);
    (0..n * per_image).into_par_iter().for_each(|row| {
        // SAFETY: each task writes its own row.
        let mut dst = unsafe { planes.row(row) };
        let (i, tile) = (row / per_image, row % per_image);
        let y0 = 2 * (tile / tw) as isize + t.offset;
        let x0 = 2 * (tile % tw) as isize + t.offset;
        // The window's positions on the map, or None where it reaches past the map.
        let at: [Option<usize>; K] = std::array::from_fn(|k| {
            let (y, x) = (y0 + (k / t.side) as isize, x0 + (k % t.side) as isize);
            (y >= 0 && x >= 0 && y < h as isize && x < w as isize)
                .then(|| y as usize * w + x as usize)
        });
        match src {
            Map::Rows(src) => {
                let window: [&[f32]; K] = std::array::from_fn(|k| {
                    at[k].map_or(&zeros[..], |p| &src[(i * h * w + p) * width..][..width])
                });
                transform_row(&window, &mut dst, width, t, isa);
            }
            Map::Blocked(src) => {
                for b in 0..width / BLOCK {
                    let plane = &src[(i * (width / BLOCK) + b) * h * w * BLOCK..];
                    let window: [&[f32]; K] = std::array::from_fn(|k| {
                        at[k].map_or(&zeros[..BLOCK], |p| &plane[p * BLOCK..][..BLOCK])
                    });
                    let mut part = dst.each_mut().map(|d| &mut d[b * BLOCK..][..BLOCK]);
                    transform_row(&window, &mut part, BLOCK, t, isa);
                }
            }
        }
    });
}

/// Whether the AVX2 copies of the transforms may run: `isa` is AVX2 or wider and this CPU has it
/// (the tests ask for [`Isa::Baseline`] to run the scalar copies on any CPU).
fn vectorised(isa: Isa) -> bool {
    isa != Isa::Baseline && isa.available()
}

/// One tile row of `t`: `dst[k][ch]` for every channel `ch` of `width`, by the AVX2 version
/// (where [`vectorised`]) on whole registers and the scalar one on the rest.
fn transform_row<const K: usize>(
    src: &[&[f32]; K],
    dst: &mut [&mut [f32]; POINTS],
    width: usize,
    t: &Transform<K>,
    isa: Isa,
) {
    let full = width - width % LANES;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if vectorised(isa) {
        // SAFETY: the CPU has AVX2; every source and destination holds `width` values.
        unsafe { (t.fast)(src, dst, full) };
        done = full;
    }
    for c0 in (done..full).step_by(LANES) {
        let d = std::array::from_fn(|k| lanes(&src[k][c0..]));
        for (k, o) in (t.scalar)(&d).iter().enumerate() {
            dst[k][c0..][..LANES].copy_from_slice(o);
        }
    }
    if full < width {
        // The last channels, fewer than LANES: padded with zeros.
        let len = width - full;
        let d = std::array::from_fn(|k| padded(&src[k][full..]));
        for (k, o) in (t.scalar)(&d).iter().enumerate() {
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

/// `Bᵀ` applied to four values (a column or a row of a 4×4 tile).
#[inline(always)]
fn bt([d0, d1, d2, d3]: [f32; 4]) -> [f32; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `Aᵀ` applied to four values: two outputs.
#[inline(always)]
fn at([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// Lane `l` of points `first`, `first + step`, `first + 2·step`, `first + 3·step` of a tile.
#[inline(always)]
fn four(p: &[[f32; LANES]], first: usize, step: usize, l: usize) -> [f32; 4] {
    std::array::from_fn(|i| p[first + i * step][l])
}

/// `Bᵀ d B` on [`LANES`] channels at once; `d` and the result are 4×4, row-major.
#[inline(always)]
fn input_transform(d: &[[f32; LANES]; POINTS]) -> [[f32; LANES]; POINTS] {
    let mut t = [[0.0f32; LANES]; POINTS];
    let mut v = [[0.0f32; LANES]; POINTS];
    for l in 0..LANES {
        // Bᵀ d: combine rows, one column at a time.
        for s in 0..4 {
            for (i, x) in bt(four(d, s, 4, l)).into_iter().enumerate() {
                t[4 * i + s][l] = x;
            }
        }
        // (Bᵀ d) B: combine columns.
        for r in 0..4 {
            for (j, x) in bt(four(&t, 4 * r, 1, l)).into_iter().enumerate() {
                v[4 * r + j][l] = x;
            }
        }
    }
    v
}

/// `Aᵀ m A` on [`LANES`] channels at once: 4×4 → 2×2, row-major.
#[inline(always)]
fn output_transform(m: &[[f32; LANES]; POINTS]) -> [[f32; LANES]; 4] {
    let mut t = [[0.0f32; LANES]; 8];
    let mut y = [[0.0f32; LANES]; 4];
    for l in 0..LANES {
        for s in 0..4 {
            [t[s][l], t[4 + s][l]] = at(four(m, s, 4, l));
        }
        for r in 0..2 {
            [y[2 * r][l], y[2 * r + 1][l]] = at(four(&t, 4 * r, 1, l));
        }
    }
    y
}

/// Where [`output_tiles`] writes.
enum Dest<'a> {
    /// Rows `[N·H·W, O]` ([`super::gemm_conv`]).
    Rows(&'a mut [f32]),
    /// The output tensor itself in [`Layout::Blocked16`], `[N, O/16, H, W, 16]`, with a bias per
    /// channel added: written in place, which saves converting rows to it afterwards.
    Blocked(&'a mut [MaybeUninit<f32>], Option<&'a [f32]>),
}

/// `s` as a slice to write into (with values, never with uninitialised memory).
fn as_uninit(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the callers only store floats, so
    // `s` holds initialised values whenever it is read again.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// The 2×2 output tiles `Aᵀ M A` of `m` `[16][N·tiles][O]`, cropped to the map, into `dest`
/// (every element of its `N·H·W·O` written), with the AVX2 copy where `isa` allows
/// ([`vectorised`]).
fn output_tiles(m: &[f32], n: usize, (h, w): (usize, usize), o: usize, dest: Dest, isa: Isa) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let (per_image, plane) = (th * tw, h * w * o);
    let (out, bias, blocked) = match dest {
        Dest::Rows(r) => (as_uninit(&mut r[..n * plane]), None, false),
        Dest::Blocked(b, bias) => (&mut b[..n * plane], bias, true),
    };
    if out.is_empty() {
        return;
    }
    let rows = n * per_image;
    out.par_chunks_mut(plane).enumerate().for_each(|(i, img)| {
        for t in 0..per_image {
            let row = i * per_image + t;
            let (y0, x0) = (2 * (t / tw), 2 * (t % tw));
            // The tile's four positions on the map; rows and columns past it are dropped.
            let pos: [Option<usize>; 4] = std::array::from_fn(|k| {
                let (yy, xx) = (y0 + k / 2, x0 + k % 2);
                (yy < h && xx < w).then_some(yy * w + xx)
            });
            let src: [&[f32]; POINTS] = std::array::from_fn(|k| &m[(k * rows + row) * o..][..o]);
            if blocked {
                for b in 0..o / BLOCK {
                    let part = src.map(|s| &s[b * BLOCK..][..BLOCK]);
                    let at = pos.map(|p| p.map(|p| (b * h * w + p) * BLOCK));
                    let bias = bias.map(|bb| &bb[b * BLOCK..][..BLOCK]);
                    output_tile(&part, img, &at, bias, BLOCK, isa);
                }
            } else {
                output_tile(&src, img, &pos.map(|p| p.map(|p| p * o)), None, o, isa);
            }
        }
    });
}

/// One 2×2 output tile from its transformed products `src` (16 points of `width` channels):
/// output `k` (row-major 2×2) goes to `img[at[k]..][..width]` (+ `bias`), or nowhere for `None`.
fn output_tile(
    src: &[&[f32]; POINTS],
    img: &mut [MaybeUninit<f32>],
    at: &[Option<usize>; 4],
    bias: Option<&[f32]>,
    width: usize,
    isa: Isa,
) {
    let full = width - width % LANES;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if vectorised(isa) {
        // SAFETY: the CPU has AVX2; every source and the bias hold `width` values and every
        // offset in `at` leaves room for `width` values in `img`.
        unsafe { avx2::output_tile(src, img, at, bias, full) };
        done = full;
    }
    let mut put = |o0: usize, len: usize, y: &[[f32; LANES]; 4]| {
        for (yk, a) in y.iter().zip(at) {
            if let Some(a) = a {
                for (l, (d, v)) in img[a + o0..][..len].iter_mut().zip(yk).enumerate() {
                    d.write(bias.map_or(*v, |b| v + b[o0 + l]));
                }
            }
        }
    };
    for o0 in (done..full).step_by(LANES) {
        let mm = std::array::from_fn(|k| lanes(&src[k][o0..]));
        put(o0, LANES, &output_transform(&mm));
    }
    if full < width {
        let mm = std::array::from_fn(|k| padded(&src[k][full..]));
        put(full, width - full, &output_transform(&mm));
    }
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

/// `Gᵀ dU G` of [`FILTER_LANES`] filters at once: `u[k][l]` is point `k` of filter `l`'s
/// gradient, `g[k][l]` becomes tap `k` (row-major 3×3) of its filter gradient.
#[inline(always)]
fn gradient_filter(u: &[[f32; FILTER_LANES]; POINTS], g: &mut [[f32; FILTER_LANES]; 9]) {
    // Gᵀ dU: three rows of four.
    let mut t = [[[0.0f32; FILTER_LANES]; 4]; 3];
    for s in 0..4 {
        for l in 0..FILTER_LANES {
            let (u0, u1, u2, u3) = (u[s][l], u[4 + s][l], u[8 + s][l], u[12 + s][l]);
            t[0][s][l] = u0 + 0.5 * (u1 + u2);
            t[1][s][l] = 0.5 * (u1 - u2);
            t[2][s][l] = 0.5 * (u1 + u2) + u3;
        }
    }
    // (Gᵀ dU) G: each row's four values become three.
    for (r, row) in t.iter().enumerate() {
        for l in 0..FILTER_LANES {
            let (a0, a1, a2, a3) = (row[0][l], row[1][l], row[2][l], row[3][l]);
            g[3 * r][l] = a0 + 0.5 * (a1 + a2);
            g[3 * r + 1][l] = 0.5 * (a1 - a2);
            g[3 * r + 2][l] = 0.5 * (a1 + a2) + a3;
        }
    }
}

/// The adjoint of [`filters`] (forward): `dw[o][c] = Gᵀ dU[o][c] G` for `du` `[16][O][C]`, into
/// plain `[O, C, 3, 3]`, [`FILTER_LANES`] input channels at a time (contiguous in every plane of
/// `du`), compiled for the widest ISA the CPU has ([`simd::dispatch`]). The output is written
/// once, without zero-filling it first.
fn filter_gradients(du: &[f32], o: usize, c: usize) -> Vec<f32> {
    let len = o * c * 9;
    let mut dw: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        dw.spare_capacity_mut()[..len]
            .par_chunks_mut(c * 9)
            .enumerate()
            .for_each(|(oo, dst)| {
                simd::dispatch(|| {
                    for i0 in (0..c).step_by(FILTER_LANES) {
                        let n = FILTER_LANES.min(c - i0);
                        let mut u = [[0.0f32; FILTER_LANES]; POINTS];
                        for (k, uk) in u.iter_mut().enumerate() {
                            copy_lanes(uk, &du[(k * o + oo) * c + i0..], n);
                        }
                        let mut g = [[0.0f32; FILTER_LANES]; 9];
                        gradient_filter(&u, &mut g);
                        for (l, taps) in dst[i0 * 9..][..n * 9].chunks_exact_mut(9).enumerate() {
                            for (t, gt) in taps.iter_mut().zip(&g) {
                                t.write(gt[l]);
                            }
                        }
                    }
                })
            });
    }
    // SAFETY: the chunk of filter `oo` holds `c · 9` elements and the loop above wrote the 9
    // taps of every one of its `c` input channels, so all `len` elements are initialised.
    unsafe { dw.set_len(len) };
    dw
}

/// The transforms on 8 channels per AVX2 register: the same additions as the scalar
/// [`input_transform`] and [`output_transform`], in the same order, so both give identical results.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::POINTS;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// `Bᵀ` applied to four registers (a column or a row of a 4×4 tile).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn apply_bt([d0, d1, d2, d3]: [__m256; 4]) -> [__m256; 4] {
        [
            _mm256_sub_ps(d0, d2),
            _mm256_add_ps(d1, d2),
            _mm256_sub_ps(d2, d1),
            _mm256_sub_ps(d1, d3),
        ]
    }

    /// `Aᵀ` applied to four registers: two outputs.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn apply_at([m0, m1, m2, m3]: [__m256; 4]) -> [__m256; 2] {
        [
            _mm256_add_ps(_mm256_add_ps(m0, m1), m2),
            _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3),
        ]
    }

    /// Channels `c0..c0 + 8` of column `s` of a 4×4 tile of sources (points `s`, `4 + s`,
    /// `8 + s`, `12 + s`).
    ///
    /// # Safety
    /// The CPU must have AVX2; every source must hold at least `c0 + 8` values.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn column(src: &[&[f32]; POINTS], s: usize, c0: usize) -> [__m256; 4] {
        // SAFETY: the caller guarantees c0 + 8 values in every source.
        [0, 4, 8, 12].map(|k| unsafe { _mm256_loadu_ps(src[k + s].as_ptr().add(c0)) })
    }

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
            // Bᵀ d: combine rows, one column at a time.
            let mut t = [_mm256_setzero_ps(); POINTS];
            for s in 0..4 {
                // SAFETY: c0 + 8 <= full <= every source's length.
                let col = unsafe { apply_bt(column(src, s, c0)) };
                for (i, v) in col.into_iter().enumerate() {
                    t[4 * i + s] = v;
                }
            }
            // (Bᵀ d) B: combine columns.
            for r in 0..4 {
                // SAFETY: the CPU has AVX2 (this function's contract).
                let v = unsafe { apply_bt([t[4 * r], t[4 * r + 1], t[4 * r + 2], t[4 * r + 3]]) };
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

    /// `img[at[k] + ch] = (Aᵀ m A)[k] (+ bias[ch])` for channels `ch < full` (a multiple of 8)
    /// and the outputs `k` with an offset.
    ///
    /// # Safety
    /// The CPU must have AVX2; every `src[k]` (and `bias`) must hold at least `full` values and
    /// `img` at least `at[k] + full` for every offset.
    #[target_feature(enable = "avx2")]
    pub unsafe fn output_tile(
        src: &[&[f32]; POINTS],
        img: &mut [MaybeUninit<f32>],
        at: &[Option<usize>; 4],
        bias: Option<&[f32]>,
        full: usize,
    ) {
        debug_assert!(src.iter().all(|s| s.len() >= full));
        debug_assert!(bias.is_none_or(|b| b.len() >= full));
        debug_assert!(at.iter().flatten().all(|&a| img.len() >= a + full));
        let out = img.as_mut_ptr() as *mut f32;
        let mut o0 = 0;
        while o0 < full {
            // Aᵀ m: combine rows, one column at a time.
            let mut t = [_mm256_setzero_ps(); 8];
            for s in 0..4 {
                // SAFETY: o0 + 8 <= full <= every source's length.
                let [a0, a1] = unsafe { apply_at(column(src, s, o0)) };
                (t[s], t[4 + s]) = (a0, a1);
            }
            // SAFETY: o0 + 8 <= full <= the bias's length.
            let b = bias.map(|b| unsafe { _mm256_loadu_ps(b.as_ptr().add(o0)) });
            // (Aᵀ m) A: combine columns.
            for r in 0..2 {
                // SAFETY: the CPU has AVX2 (this function's contract).
                let y = unsafe { apply_at([t[4 * r], t[4 * r + 1], t[4 * r + 2], t[4 * r + 3]]) };
                for (j, yj) in y.into_iter().enumerate() {
                    if let Some(a) = at[2 * r + j] {
                        let yj = b.map_or(yj, |b| _mm256_add_ps(yj, b));
                        // SAFETY: a + o0 + 8 <= a + full <= img.len().
                        unsafe { _mm256_storeu_ps(out.add(a + o0), yj) };
                    }
                }
            }
            o0 += 8;
        }
    }
}

/// The transformed input tiles `[16][N·tiles][c]` of `x` `[N, c, H, W]`, and how many tiles
/// there are.
fn tiles_of<'d>(j: Job<'d>, x: Activation<'_>, c: usize) -> (usize, Scratch<'d>) {
    let Job { d, g } = j;
    let (n, hw) = (g.n, (g.h, g.w));
    let tiles = n * hw.0.div_ceil(2) * hw.1.div_ceil(2);
    let mut v = d.scratch(tiles * POINTS * c);
    let xr;
    let src = match x.layout {
        Layout::Blocked16 if c.is_multiple_of(BLOCK) => Map::Blocked(x.data),
        _ => {
            xr = rows(d, x, [n, c, g.h, g.w]);
            Map::Rows(&xr)
        }
    };
    transform_tiles(src, n, hw, c, &mut v, &INPUT, Isa::detect());
    (tiles, v)
}

/// The "same" 3×3 convolution of `x` `[N, ins, H, W]` with the transformed filters `u`
/// `[16][outs][ins]` (+ `bias`): `[N, outs, H, W]` in `layout`.
fn convolve(
    j: Job<'_>,
    x: Activation<'_>,
    u: &[f32],
    (ins, outs): (usize, usize),
    bias: Option<&[f32]>,
    layout: Layout,
) -> Result<CpuBuf> {
    let Job { d, g } = j;
    let (tiles, v) = tiles_of(j, x, ins);
    let mut m = d.scratch(tiles * POINTS * outs);
    let v: &[f32] = &v;
    per_point(&mut m, tiles * outs, |p, mp| {
        d.sgemm(
            Gemm::new(tiles, outs, ins),
            MatRef::new(&v[p * tiles * ins..], ins),
            MatRef::new(&u[p * outs * ins..], ins).t(),
            MatMut::new(mp, outs),
        )
    })?;
    let (hw, shape) = ((g.h, g.w), [g.n, outs, g.h, g.w]);
    let len = g.n * outs * g.in_plane();
    match layout {
        Layout::Blocked16 if outs.is_multiple_of(BLOCK) => {
            let mut out = Vec::with_capacity(len);
            let dest = Dest::Blocked(&mut out.spare_capacity_mut()[..len], bias);
            output_tiles(&m, g.n, hw, outs, dest, Isa::detect());
            // SAFETY: the 2×2 tiles cover every position of every image's map, and
            // `output_tiles` writes every channel of every position it covers.
            unsafe { out.set_len(len) };
            Ok(CpuBuf::new(out))
        }
        _ => {
            let mut yr = d.scratch(len);
            output_tiles(&m, g.n, hw, outs, Dest::Rows(&mut yr), Isa::detect());
            Ok(from_rows(&yr, bias, layout, shape))
        }
    }
}

/// `product(p, plane)` for each of the 16 points, as parallel tasks, with `plane` the `p`-th
/// `len` elements of `out`.
fn per_point(
    out: &mut [f32],
    len: usize,
    product: impl Fn(usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<()> {
    if len == 0 {
        // Nothing to compute (and `par_chunks_mut` refuses a chunk size of 0).
        return Ok(());
    }
    out[..POINTS * len]
        .par_chunks_mut(len)
        .enumerate()
        .try_for_each(|(p, plane)| product(p, plane))
}

/// The weight shape, part of the transformed filters' cache key.
fn shape(g: &ConvGeom) -> [usize; 4] {
    [g.o, g.c, g.kh, g.kw]
}

/// Winograd F(2×2, 3×3); [`supports`] says which convolutions it computes, [`suits`] where
/// `Auto` uses it.
pub struct Winograd;

impl GemmConv for Winograd {
    fn check(g: &ConvGeom) -> Result<()> {
        if supports(g) {
            Ok(())
        } else {
            Err(crate::Error::invalid(
                "conv2d",
                format!(
                    "the Winograd convolution needs a dense 3×3 kernel, stride 1, no dilation and \
                     one pixel of padding on every side; got {g:?}"
                ),
            ))
        }
    }

    /// The filters `[O, C, 3, 3]` are transformed once per weight state.
    fn forward(
        j: Job<'_>,
        x: Activation<'_>,
        w: Weights<'_>,
        bias: Option<&[f32]>,
        layout: Layout,
    ) -> Result<CpuBuf> {
        let Job { d, g } = j;
        let u = d.derived_weights(w.stamp, (0, shape(g)), g.o * POINTS * g.c, |u| {
            filters(w.data, g.o, g.c, false, u)
        });
        convolve(j, x, &u, (g.c, g.o), bias, layout)
    }

    /// The forward's computation with the filters transposed and rotated.
    fn backward_data(
        j: Job<'_>,
        dy: Activation<'_>,
        w: Weights<'_>,
        layout: Layout,
    ) -> Result<CpuBuf> {
        let Job { d, g } = j;
        let u = d.derived_weights(w.stamp, (1, shape(g)), g.c * POINTS * g.o, |u| {
            filters(w.data, g.o, g.c, true, u)
        });
        convolve(j, dy, &u, (g.o, g.c), None, layout)
    }

    /// The adjoint of the forward. The products are `dU_ξ = dM_ξᵀ · V_ξ`, summed over every
    /// tile of the batch by 16 sgemms (`dM` from `GRADIENT`, `V` the forward's input
    /// tiles), and the filters' gradients are `Gᵀ dU G`.
    fn weight_gradient(j: Job<'_>, x: Activation<'_>, dy: Activation<'_>) -> Result<Vec<f32>> {
        let Job { d, g } = j;
        let (tiles, v) = tiles_of(j, x, g.c);
        let mut dm = d.scratch(tiles * POINTS * g.o);
        let dyr;
        let src = match dy.layout {
            Layout::Blocked16 if g.o.is_multiple_of(BLOCK) => Map::Blocked(dy.data),
            _ => {
                dyr = rows(d, dy, g.out_shape());
                Map::Rows(&dyr)
            }
        };
        transform_tiles(src, g.n, (g.h, g.w), g.o, &mut dm, &GRADIENT, Isa::detect());
        let mut du = d.scratch(POINTS * g.o * g.c);
        let (v, dm): (&[f32], &[f32]) = (&v, &dm);
        per_point(&mut du, g.o * g.c, |p, dup| {
            d.sgemm(
                Gemm::new(g.o, g.c, tiles),
                MatRef::new(&dm[p * tiles * g.o..], g.o).t(),
                MatRef::new(&v[p * tiles * g.c..], g.c),
                MatMut::new(dup, g.c),
            )
        })?;
        Ok(filter_gradients(&du, g.o, g.c))
    }
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

    /// `[n, width, h·w]` test values of `rows` `[n·h·w, width]` in the blocked layout.
    fn blocked(rows: &[f32], n: usize, width: usize, (h, w): (usize, usize)) -> Vec<f32> {
        from_rows(rows, None, Layout::Blocked16, [n, width, h, w])
            .as_slice()
            .to_vec()
    }

    /// The AVX2 copies of the tile transforms compute what the scalar ones do (on an AVX2
    /// machine the scalar ones otherwise run only on the last channels), on whole registers and
    /// a tail, with partial tiles at the bottom and right, with and without a bias.
    #[test]
    fn avx2_transforms_equal_the_scalar_ones() {
        if !Isa::Avx2Fma.available() {
            eprintln!("skipping: this CPU has no AVX2, only the scalar transforms run");
            return;
        }
        let (n, hw, width): (usize, (usize, usize), usize) = (2, (5, 3), 2 * LANES + 4);
        let tiles = n * hw.0.div_ceil(2) * hw.1.div_ceil(2);
        let src: Vec<f32> = (0..n * hw.0 * hw.1 * width)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.25 - 1.5).collect();
        let input = |isa| {
            let mut out = vec![f32::NAN; POINTS * tiles * width];
            transform_tiles(Map::Rows(&src), n, hw, width, &mut out, &INPUT, isa);
            out
        };
        let gradient = |isa| {
            let mut out = vec![f32::NAN; POINTS * tiles * width];
            transform_tiles(Map::Rows(&src), n, hw, width, &mut out, &GRADIENT, isa);
            out
        };
        let products = input(Isa::Baseline);
        let output = |isa| {
            let mut yr = vec![f32::NAN; src.len()];
            output_tiles(&products, n, hw, width, Dest::Rows(&mut yr), isa);
            yr
        };
        // With a bias, through the scalar and AVX2 `output_tile` directly (the blocked
        // destination takes whole blocks of 16 only): every tile of image 0.
        let biased = |isa| {
            let mut yr = vec![MaybeUninit::new(f32::NAN); src.len()];
            let (per_image, tw) = (tiles / n, hw.1.div_ceil(2));
            for t in 0..per_image {
                let tile: [&[f32]; POINTS] =
                    std::array::from_fn(|k| &products[(k * tiles + t) * width..][..width]);
                let (y0, x0) = (2 * (t / tw), 2 * (t % tw));
                let at = std::array::from_fn(|k| {
                    let (yy, xx) = (y0 + k / 2, x0 + k % 2);
                    (yy < hw.0 && xx < hw.1).then_some((yy * hw.1 + xx) * width)
                });
                output_tile(&tile, &mut yr, &at, Some(&bias), width, isa);
            }
            // SAFETY: initialised above (NaN or written).
            yr.iter()
                .map(|v| unsafe { v.assume_init() })
                .collect::<Vec<f32>>()
        };
        let want = [
            products.clone(),
            gradient(Isa::Baseline),
            output(Isa::Baseline),
            biased(Isa::Baseline),
        ];
        assert!(want[..3].iter().flatten().all(|v| v.is_finite()));
        let got = [
            input(Isa::Avx2Fma),
            gradient(Isa::Avx2Fma),
            output(Isa::Avx2Fma),
            biased(Isa::Avx2Fma),
        ];
        for (what, (g, w)) in ["input", "gradient", "output", "biased output"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            // Equal as numbers: the AVX2 gradient negates by 0 − y, the scalar one by −y, so a
            // zero may differ in sign. (NaN ≠ NaN: image 1 of the biased output is compared
            // through its bits.)
            let bits = |v: &[f32]| {
                v.iter()
                    .map(|x| if *x == 0.0 { 0 } else { x.to_bits() })
                    .collect::<Vec<u32>>()
            };
            assert_eq!(bits(g), bits(w), "{what} transform");
        }
        // The bias is the only difference between the biased and the plain output.
        let plain = output(Isa::Baseline);
        let (y, yb) = (&plain[..src.len() / n], &want[3][..src.len() / n]);
        for (i, (a, b)) in y.iter().zip(yb).enumerate() {
            assert_eq!(a + bias[i % width], *b, "element {i}");
        }
    }

    /// Reading a blocked map in place, and writing a blocked output (+ bias) in place, give
    /// exactly what the row layout gives after converting (on every ISA this CPU has).
    #[test]
    fn blocked_maps_equal_rows() {
        let (n, hw, width): (usize, (usize, usize), usize) = (2, (5, 3), 2 * BLOCK);
        let tiles = n * hw.0.div_ceil(2) * hw.1.div_ceil(2);
        let rows_in: Vec<f32> = (0..n * hw.0 * hw.1 * width)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        let blocked_in = blocked(&rows_in, n, width, hw);
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.25 - 3.5).collect();
        for isa in [Isa::Baseline, Isa::Avx2Fma]
            .into_iter()
            .filter(|i| i.available())
        {
            let both = |t: &dyn Fn(Map<'_>, &mut [f32])| {
                let mut a = vec![f32::NAN; POINTS * tiles * width];
                let mut b = vec![f32::NAN; POINTS * tiles * width];
                t(Map::Rows(&rows_in), &mut a);
                t(Map::Blocked(&blocked_in), &mut b);
                (a, b)
            };
            let (a, b) = both(&|m, out| transform_tiles(m, n, hw, width, out, &INPUT, isa));
            assert!(a.iter().all(|v| v.is_finite()));
            assert_eq!(a, b, "{isa:?} input transform");
            let (a, b) = both(&|m, out| transform_tiles(m, n, hw, width, out, &GRADIENT, isa));
            assert_eq!(a, b, "{isa:?} gradient transform");

            let products = a;
            let mut yr = vec![f32::NAN; rows_in.len()];
            output_tiles(&products, n, hw, width, Dest::Rows(&mut yr), isa);
            let want = from_rows(&yr, Some(&bias), Layout::Blocked16, [n, width, hw.0, hw.1]);
            let mut out = Vec::with_capacity(rows_in.len());
            let dest = Dest::Blocked(&mut out.spare_capacity_mut()[..rows_in.len()], Some(&bias));
            output_tiles(&products, n, hw, width, dest, isa);
            // SAFETY: output_tiles writes every element (what this test checks against `want`).
            unsafe { out.set_len(rows_in.len()) };
            assert_eq!(out, want.as_slice(), "{isa:?} output transform");
        }
    }

    /// The filter transforms, vectorised over [`FILTER_LANES`] filters, compute exactly what the
    /// per-filter formulas do: whole groups of lanes and a tail, forward and transposed.
    #[test]
    fn filter_transforms_equal_the_per_filter_formulas() {
        let (o, c) = (3, FILTER_LANES + 5);
        let w: Vec<f32> = (0..o * c * 9)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        // G g Gᵀ of one 3×3 filter, row-major.
        let transform = |g: [f32; 9]| -> [f32; 16] {
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + cc);
                gg[2][j] = 0.5 * (a - b + cc);
                gg[3][j] = cc;
            }
            let mut u = [0.0f32; 16];
            for (r, [a, b, cc]) in gg.into_iter().enumerate() {
                u[r * 4..][..4].copy_from_slice(&[a, 0.5 * (a + b + cc), 0.5 * (a - b + cc), cc]);
            }
            u
        };
        for transpose in [false, true] {
            let (outs, ins) = if transpose { (c, o) } else { (o, c) };
            let mut got = vec![f32::NAN; outs * POINTS * ins];
            filters(&w, o, c, transpose, &mut got);
            for oo in 0..outs {
                for ii in 0..ins {
                    let g = std::array::from_fn(|k| {
                        if transpose {
                            w[(ii * c + oo) * 9 + (8 - k)]
                        } else {
                            w[(oo * c + ii) * 9 + k]
                        }
                    });
                    for (k, v) in transform(g).into_iter().enumerate() {
                        assert_eq!(
                            got[(k * outs + oo) * ins + ii],
                            v,
                            "{transpose} {oo} {ii} {k}"
                        );
                    }
                }
            }
        }
        // Gᵀ dU G of every (o, c) of dU [16][O][C].
        let du: Vec<f32> = (0..POINTS * o * c)
            .map(|i| ((i * 6007) % 1000) as f32 / 125.0 - 4.0)
            .collect();
        let dw = filter_gradients(&du, o, c);
        assert_eq!(dw.len(), o * c * 9);
        for oo in 0..o {
            for ii in 0..c {
                let u = |k: usize| du[(k * o + oo) * c + ii];
                let mut t = [[0.0f32; 4]; 3];
                for s in 0..4 {
                    let (u0, u1, u2, u3) = (u(s), u(4 + s), u(8 + s), u(12 + s));
                    t[0][s] = u0 + 0.5 * (u1 + u2);
                    t[1][s] = 0.5 * (u1 - u2);
                    t[2][s] = 0.5 * (u1 + u2) + u3;
                }
                for (r, [a0, a1, a2, a3]) in t.into_iter().enumerate() {
                    let want = [a0 + 0.5 * (a1 + a2), 0.5 * (a1 - a2), 0.5 * (a1 + a2) + a3];
                    assert_eq!(
                        dw[(oo * c + ii) * 9 + 3 * r..][..3],
                        want,
                        "{oo} {ii} row {r}"
                    );
                }
            }
        }
        assert!(filter_gradients(&[], 0, c).is_empty());
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
