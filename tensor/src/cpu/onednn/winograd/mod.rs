//! 3×3 "same" convolutions by Winograd's minimal filtering F(m×m, 3×3), for m = 2 (the module
//! `f2`, [`Winograd`]) and m = 4 (`f4`, with its matrices; [`Winograd4`]).
//!
//! Each m×m output tile is computed from an (m+2)×(m+2) input tile with (m+2)² multiplications per
//! (input, output) channel pair instead of 9m²: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Over a batch
//! this is (m+2)² independent matrix products `M_ξ = V_ξ · U_ξᵀ` (`V` the transformed input tiles
//! `[tiles, C]`, `U` the transformed filters `[O, C]`), which run as oneDNN sgemms near the
//! machine's peak, while the transforms are a few additions per element. F(2×2, 3×3) needs
//! 2.25× fewer multiplications than the direct convolution, F(4×4, 3×3) 4× fewer, for heavier
//! transforms, larger rounding errors and a coarser tiling (a 6×6 map is covered by 8×8 of
//! outputs). oneDNN 2.6 has no Winograd convolution for AVX2 (its primitive creation answers
//! `unimplemented`), and its direct kernels run the RGC's 3×3 convolutions on 6×6 and 12×12 maps
//! at 90–145 GFLOP/s.
//!
//! The gradient of the input is the same computation with the filters transposed and rotated by
//! 180°, so forward and backward-data share every kernel here. The weight gradient is the adjoint
//! of the forward: the output gradient's tiles are carried back to the points (`A dY Aᵀ`),
//! multiplied with the input tiles summed over the batch (one sgemm per point), and the sums
//! carried back to the 3×3 filters (`Gᵀ dU G`). The transforms add and subtract inputs of similar
//! size, so the results differ from a direct convolution by a few units in the last place for
//! F(2×2, 3×3) and by more for F(4×4, 3×3), whose transforms scale by up to 8 and 1/24 (the tests
//! compare with 1e-4 and 1e-3 relative).
//!
//! Matrices are row-major. Activations in the blocked layout (`[N, C/16, H, W, 16]`, how the
//! RGC's areas hand them over) are read and written in place, one block of 16 channels at a
//! time: the input and gradient transforms read them, the output transform writes the result
//! (and adds the bias) into them. Plain activations are converted to rows `[N·H·W, C]`
//! ([`super::gemm_conv`]) and back. In place saves two passes over every activation per call
//! (the conversions to rows and back, and the zero-filling of the converted output were 6–7 % of
//! `rgc_shallow`'s training time on an AVX-512 Xeon, by `perf`). The transformed tiles `V`
//! `[P][N·tiles][C]`, `M` and `dM` `[P][N·tiles][O]` are point-major, so that every product
//! reads and writes contiguous matrices (oneDNN's sgemm ran the weight gradient's transposed
//! products at 41 GFLOP/s on tile-major views with leading dimension 16·C, and at 92 on
//! contiguous ones); the filters `U` and their gradient `dU` are `[P][O][C]` too.
//!
//! The products of a call are independent, so they run as rayon tasks, each a single-threaded
//! sgemm ([`super::thread_budget`] is 1 inside a task), rather than one after another each on
//! every thread: on the RGC's small maps (6×6 and 3×3 at batch 16: 144 and 64 tiles) one product
//! is a fraction of a millisecond, and splitting each over the threads paid an OpenMP fork and
//! join (a futex wake-up under the passive wait policy) per product. Measured on 2 AVX-512 cores
//! shared with other work (`xtask bench unroll --model rgc_shallow --size 96 --steps 16 --iters
//! 2`, thresholds, three pairs back to back): 31.4 s of CPU time against 35.3 with the products
//! in series, 53 s wall against 66.

/// The [`Scheme`] named `$name` of a scheme module (`f2`, `f4`), made from the module's items of
/// the same names in both: `P`, `Q`, the scalar transforms (`input_transform`,
/// `gradient_transform`, `output_transform`), the filter transforms (`filter_transform`,
/// `gradient_filter`) and, on x86-64, the tile loops of its `avx2` module (`input_row`,
/// `gradient_row`, `output_tile`).
macro_rules! scheme {
    ($name:ident, step: $step:expr, tags: $tags:expr) => {
        /// The scheme the driver runs.
        pub(super) const $name: super::Scheme<P, Q> = super::Scheme {
            step: $step,
            tags: $tags,
            input: super::Transform {
                side: $step + 2,
                offset: -1,
                scalar: input_transform,
                fast: fast::INPUT,
            },
            gradient: super::Transform {
                side: $step,
                offset: 0,
                scalar: gradient_transform,
                fast: fast::GRADIENT,
            },
            output: super::Output {
                scalar: output_transform,
                fast: fast::OUTPUT,
            },
            filters: |w, o, c, transpose, u| {
                super::filters_by(filter_transform, w, o, c, transpose, u)
            },
            filter_gradients: |du, o, c| super::filter_gradients_by(gradient_filter, du, o, c),
        };

        /// The vectorised tile loops: the `avx2` module's on x86-64, none elsewhere.
        mod fast {
            use super::super::{FastRow, FastTile};
            use super::{P, Q};
            #[cfg(target_arch = "x86_64")]
            pub(super) const INPUT: Option<FastRow<P, P>> = Some(super::avx2::input_row);
            #[cfg(target_arch = "x86_64")]
            pub(super) const GRADIENT: Option<FastRow<Q, P>> = Some(super::avx2::gradient_row);
            #[cfg(target_arch = "x86_64")]
            pub(super) const OUTPUT: Option<FastTile<P, Q>> = Some(super::avx2::output_tile);
            #[cfg(not(target_arch = "x86_64"))]
            pub(super) const INPUT: Option<FastRow<P, P>> = None;
            #[cfg(not(target_arch = "x86_64"))]
            pub(super) const GRADIENT: Option<FastRow<Q, P>> = None;
            #[cfg(not(target_arch = "x86_64"))]
            pub(super) const OUTPUT: Option<FastTile<P, Q>> = None;
        }
    };
}

mod f2;
mod f4;

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

/// Channels handled together in the tile transforms: one AVX2 register.
const LANES: usize = 8;

/// [`LANES`] channels of one point of a tile.
type Lanes = [f32; LANES];

/// A transform's output `[P][rows][width]` (one plane per point, so that each of the `P`
/// products reads a contiguous matrix), written one tile row per parallel task.
struct Planes<'a, const P: usize> {
    ptr: *mut f32,
    rows: usize,
    width: usize,
    _buf: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `Planes` hands out disjoint rows only (see `row`), so tasks on several threads never
// touch the same element.
unsafe impl<const P: usize> Send for Planes<'_, P> {}
unsafe impl<const P: usize> Sync for Planes<'_, P> {}

impl<'a, const P: usize> Planes<'a, P> {
    fn new(buf: &'a mut [f32], rows: usize, width: usize) -> Self {
        assert!(buf.len() >= P * rows * width, "transform buffer too small");
        Planes {
            ptr: buf.as_mut_ptr(),
            rows,
            width,
            _buf: std::marker::PhantomData,
        }
    }

    /// Row `row` of each of the `P` planes.
    ///
    /// # Safety
    /// `row < rows`, and no two calls that are alive at once may pass the same `row`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, row: usize) -> [&mut [f32]; P] {
        debug_assert!(row < self.rows);
        std::array::from_fn(|k| {
            // SAFETY: (k·rows + row + 1)·width <= P·rows·width <= the buffer's length, and the
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

/// Fewest input and output channels for which [`suits`] picks this module. The products have
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

/// Whether `Auto` with tuning off should run `g` here by F(2×2, 3×3): [`supports`] it, with
/// at least [`MIN_CHANNELS`] channels on both sides (and not [`suits_f4`]).
pub fn suits(g: &ConvGeom) -> bool {
    supports(g) && g.c.min(g.o) >= MIN_CHANNELS
}

/// Fewest input and output channels for which [`suits_f4`] picks F(4×4, 3×3).
pub const MIN_CHANNELS_F4: usize = 64;

/// Smallest map side for which [`suits_f4`] picks F(4×4, 3×3): on smaller maps its 4×4 tiles
/// compute too many positions past the edge (a 6×6 map as 8×8).
pub const MIN_SIDE_F4: usize = 12;

/// Whether `Auto` with tuning off should run `g` by F(4×4, 3×3): [`supports`] it, with at least
/// [`MIN_CHANNELS_F4`] channels on both sides and maps of at least [`MIN_SIDE_F4`] a side. On the
/// RGC's convolutions (`conv_bench rgc`, Zen 4, batch 16, forward and both backward passes) it
/// beat F(2×2, 3×3) and oneDNN's direct kernels on every such shape, with oneDNN's kernels at
/// AVX-512 and capped at AVX2 (`DNNL_MAX_CPU_ISA=AVX2`): 64→128 at 24×24 13.9 ms against 18.5
/// and 19.9 (AVX2), 256→256 at 12×12 18.7 against 25.7 and 39.4; and lost on 6×6 and 3×3 maps.
pub fn suits_f4(g: &ConvGeom) -> bool {
    supports(g) && g.c.min(g.o) >= MIN_CHANNELS_F4 && g.h.min(g.w) >= MIN_SIDE_F4
}

/// Filters handled together by the filter transforms ([`filters_by`], [`filter_gradients_by`]):
/// the arithmetic runs on arrays of this many lanes, which the compiler vectorises (16 is a whole
/// number of registers on every ISA [`simd::dispatch`] compiles for).
const FILTER_LANES: usize = 16;

/// [`FILTER_LANES`] filters, one value each.
type FilterLanes = [f32; FILTER_LANES];

/// `dst[..len] = src[..len]` (a fixed-size copy when whole, so that it needs no `memcpy` call).
#[inline(always)]
fn copy_lanes(dst: &mut [f32], src: &[f32], len: usize) {
    if len == FILTER_LANES {
        dst[..FILTER_LANES].copy_from_slice(&src[..FILTER_LANES]);
    } else {
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// `U = G g Gᵀ` (by `transform`, [`FILTER_LANES`] filters at a time) for every filter, as
/// `[P][outs][ins]`. Forward: `outs` = O, `ins` = C and `g = w[o][c]`. Backward-data
/// (`transpose`): `outs` = C, `ins` = O and `g` is `w[o][c]` rotated by 180°, the filter that
/// carries `dy` back to `dx`. Point-major, so that each product's `U_ξ` is a contiguous
/// `[outs, ins]` matrix: as `[outs][P][ins]` its rows lay `P·ins` floats apart (16 KB at 256
/// channels for F(2×2, 3×3), the same cache sets row after row), and oneDNN's sgemm ran the
/// products slower on most of the RGC's shapes (BENCHMARKS.md, "Winograd's filter layout").
/// Compiled for the widest ISA the CPU has ([`simd::dispatch`]).
#[inline(always)]
fn filters_by<const P: usize>(
    transform: impl Fn(&[FilterLanes; 9], &mut [FilterLanes; P]) + Copy + Sync,
    w: &[f32],
    o: usize,
    c: usize,
    transpose: bool,
    u: &mut [f32],
) {
    let (outs, ins) = if transpose { (c, o) } else { (o, c) };
    if outs * ins == 0 {
        return;
    }
    let planes = Planes::<P>::new(u, outs, ins);
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
                let mut u = [[0.0f32; FILTER_LANES]; P];
                transform(&g, &mut u);
                for (uk, row) in u.iter().zip(dst.iter_mut()) {
                    copy_lanes(&mut row[i0..], uk, len);
                }
            }
        })
    });
}

/// The adjoint of [`filters_by`] (forward): `dw[o][c] = Gᵀ dU[o][c] G` (by `transform`) for `du`
/// `[P][O][C]`, into plain `[O, C, 3, 3]`, [`FILTER_LANES`] input channels at a time (contiguous
/// in every plane of `du`), compiled for the widest ISA the CPU has ([`simd::dispatch`]). The
/// output is written once, without zero-filling it first.
#[inline(always)]
fn filter_gradients_by<const P: usize>(
    transform: impl Fn(&[FilterLanes; P], &mut [FilterLanes; 9]) + Copy + Sync,
    du: &[f32],
    o: usize,
    c: usize,
) -> Vec<f32> {
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
                        let mut u = [[0.0f32; FILTER_LANES]; P];
                        for (k, uk) in u.iter_mut().enumerate() {
                            copy_lanes(uk, &du[(k * o + oo) * c + i0..], n);
                        }
                        let mut g = [[0.0f32; FILTER_LANES]; 9];
                        transform(&u, &mut g);
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

/// The vectorised copy of a transform over one tile row: `(sources, destinations, full)` with
/// `full` the channels it covers (a multiple of [`LANES`]).
type FastRow<const K: usize, const P: usize> = unsafe fn(&[&[f32]; K], &mut [&mut [f32]; P], usize);

/// The vectorised copy of an output transform of one tile: see [`output_tile`].
type FastTile<const P: usize, const Q: usize> =
    unsafe fn(&[&[f32]; P], &mut [MaybeUninit<f32>], &[Option<usize>; Q], Option<&[f32]>, usize);

/// A tile transform from `K` points (a `side × side` window of the map) to `P`, as a scalar
/// function on [`LANES`] channels and a vectorised one over whole registers.
struct Transform<const K: usize, const P: usize> {
    side: usize,
    /// Where the window starts, relative to the tile's first output pixel.
    offset: isize,
    scalar: fn(&[Lanes; K]) -> [Lanes; P],
    /// Runs where [`vectorised`] allows; `None`: the scalar function everywhere.
    fast: Option<FastRow<K, P>>,
}

/// The output transform `Aᵀ M A`, from `P` points to the `Q` outputs of a tile.
struct Output<const P: usize, const Q: usize> {
    scalar: fn(&[Lanes; P]) -> [Lanes; Q],
    /// Runs where [`vectorised`] allows; `None`: the scalar function everywhere.
    fast: Option<FastTile<P, Q>>,
}

/// One Winograd algorithm F(m×m, 3×3): `P` = (m+2)² points and `Q` = m² outputs per tile.
struct Scheme<const P: usize, const Q: usize> {
    /// The output tile's side m: tiles start every m pixels.
    step: usize,
    /// The tags of its forward and backward-data filters in the derived-weights cache.
    tags: (u8, u8),
    /// `V = Bᵀ d B` of every (m+2)×(m+2) input tile `d`.
    input: Transform<P, P>,
    /// `dM = A dY Aᵀ` of every m×m tile `dY` of the output gradient: the adjoint of
    /// [`Scheme::output`], carrying the gradient of the outputs back to the products.
    gradient: Transform<Q, P>,
    /// `Y = Aᵀ M A`.
    output: Output<P, Q>,
    /// [`filters_by`] with the scheme's `G g Gᵀ`.
    filters: fn(&[f32], usize, usize, bool, &mut [f32]),
    /// [`filter_gradients_by`] with the scheme's `Gᵀ dU G`.
    filter_gradients: fn(&[f32], usize, usize) -> Vec<f32>,
}

impl<const P: usize, const Q: usize> Scheme<P, Q> {
    /// Tiles over the batch: `n` maps of `h × w`.
    fn tiles(&self, n: usize, (h, w): (usize, usize)) -> usize {
        n * h.div_ceil(self.step) * w.div_ceil(self.step)
    }
}

/// An activation map `[N, width, H, W]` as a transform reads it.
#[derive(Clone, Copy)]
enum Map<'a> {
    /// Rows `[N·H·W, width]` ([`super::gemm_conv`]).
    Rows(&'a [f32]),
    /// The tensor's own [`Layout::Blocked16`] values, `[N, width/16, H, W, 16]`: read in place,
    /// one block of 16 channels at a time, which saves converting it to rows first.
    Blocked(&'a [f32]),
}

/// `t` of every tile (tiles start every `step` pixels) of `src` (zero outside the map): `out`
/// `[P][N·tiles][width]` (every element written), with the vectorised copy where `isa` allows
/// ([`vectorised`]).
fn transform_tiles<const K: usize, const P: usize>(
    src: Map<'_>,
    n: usize,
    (h, w): (usize, usize),
    width: usize,
    out: &mut [f32],
    (t, step): (&Transform<K, P>, usize),
    isa: Isa,
) {
    let (th, tw) = (h.div_ceil(step), w.div_ceil(step));
    let per_image = th * tw;
    let zeros = vec![0.0; width];
    let planes = Planes::<P>::new(out, n * per_image, width);
    (0..n * per_image).into_par_iter().for_each(|row| {
        // SAFETY: each task writes its own row.
        let mut dst = unsafe { planes.row(row) };
        let (i, tile) = (row / per_image, row % per_image);
        let y0 = (step * (tile / tw)) as isize + t.offset;
        let x0 = (step * (tile % tw)) as isize + t.offset;
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

/// Whether the vectorised copies of the transforms may run: `isa` is AVX2 or wider and this CPU
/// has it (the tests ask for [`Isa::Baseline`] to run the scalar copies on any CPU).
fn vectorised(isa: Isa) -> bool {
    isa != Isa::Baseline && isa.available()
}

/// One tile row of `t`: `dst[k][ch]` for every channel `ch` of `width`, by the vectorised version
/// (where [`vectorised`]) on whole registers and the scalar one on the rest.
fn transform_row<const K: usize, const P: usize>(
    src: &[&[f32]; K],
    dst: &mut [&mut [f32]; P],
    width: usize,
    t: &Transform<K, P>,
    isa: Isa,
) {
    let full = width - width % LANES;
    let mut done = 0;
    if let Some(fast) = t.fast.filter(|_| vectorised(isa)) {
        // SAFETY: the CPU has AVX2; every source and destination holds `width` values.
        unsafe { fast(src, dst, full) };
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

/// The loop of a [`FastRow`] made from a scalar transform `f`: `f` over channels `..full` (a
/// multiple of [`LANES`]). `#[inline(always)]`, like `f`, so that a `#[target_feature]` function
/// that calls it compiles the lane loops for its ISA (inside a `simd::dispatch` closure the
/// compiler did not inline a body this large, and the F(4×4, 3×3) transforms ran as SSE2 code).
#[inline(always)]
fn row_by<const K: usize, const P: usize>(
    f: impl Fn(&[Lanes; K]) -> [Lanes; P],
    src: &[&[f32]; K],
    dst: &mut [&mut [f32]; P],
    full: usize,
) {
    for c0 in (0..full).step_by(LANES) {
        let d = std::array::from_fn(|k| lanes(&src[k][c0..]));
        for (k, o) in f(&d).iter().enumerate() {
            dst[k][c0..][..LANES].copy_from_slice(o);
        }
    }
}

/// The loop of a [`FastTile`] made from a scalar output transform `f`, like [`row_by`].
#[inline(always)]
fn tile_by<const P: usize, const Q: usize>(
    f: impl Fn(&[Lanes; P]) -> [Lanes; Q],
    src: &[&[f32]; P],
    img: &mut [MaybeUninit<f32>],
    at: &[Option<usize>; Q],
    bias: Option<&[f32]>,
    full: usize,
) {
    for o0 in (0..full).step_by(LANES) {
        let m = std::array::from_fn(|k| lanes(&src[k][o0..]));
        put_outputs(img, at, bias, o0, LANES, &f(&m));
    }
}

/// The first [`LANES`] values of `s`, as a register-sized array (a fixed-size copy; a
/// variable-length one would call `memcpy`).
#[inline(always)]
fn lanes(s: &[f32]) -> Lanes {
    let mut a = [0.0; LANES];
    a.copy_from_slice(&s[..LANES]);
    a
}

/// The (fewer than [`LANES`]) values of `s`, padded with zeros.
#[inline(always)]
fn padded(s: &[f32]) -> Lanes {
    let mut a = [0.0; LANES];
    a[..s.len()].copy_from_slice(s);
    a
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

/// The m×m output tiles `Aᵀ M A` of `m` `[P][N·tiles][O]`, cropped to the map, into `dest`
/// (every element of its `N·H·W·O` written), with the vectorised copy where `isa` allows
/// ([`vectorised`]).
fn output_tiles<const P: usize, const Q: usize>(
    s: &Scheme<P, Q>,
    m: &[f32],
    n: usize,
    (h, w): (usize, usize),
    o: usize,
    dest: Dest,
    isa: Isa,
) {
    let step = s.step;
    let (th, tw) = (h.div_ceil(step), w.div_ceil(step));
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
            let (y0, x0) = (step * (t / tw), step * (t % tw));
            // The tile's positions on the map; rows and columns past it are dropped.
            let pos: [Option<usize>; Q] = std::array::from_fn(|k| {
                let (yy, xx) = (y0 + k / step, x0 + k % step);
                (yy < h && xx < w).then_some(yy * w + xx)
            });
            let src: [&[f32]; P] = std::array::from_fn(|k| &m[(k * rows + row) * o..][..o]);
            if blocked {
                for b in 0..o / BLOCK {
                    let part = src.map(|s| &s[b * BLOCK..][..BLOCK]);
                    let at = pos.map(|p| p.map(|p| (b * h * w + p) * BLOCK));
                    let bias = bias.map(|bb| &bb[b * BLOCK..][..BLOCK]);
                    output_tile(&s.output, &part, img, &at, bias, BLOCK, isa);
                }
            } else {
                let at = pos.map(|p| p.map(|p| p * o));
                output_tile(&s.output, &src, img, &at, None, o, isa);
            }
        }
    });
}

/// `img[at[k] + o0 + l] = y[k][l] (+ bias[o0 + l])` for `l < len` and the outputs `k` with an
/// offset.
#[inline(always)]
fn put_outputs<const Q: usize>(
    img: &mut [MaybeUninit<f32>],
    at: &[Option<usize>; Q],
    bias: Option<&[f32]>,
    o0: usize,
    len: usize,
    y: &[Lanes; Q],
) {
    // The bias test and its bounds check stay outside the lane loops, so that they vectorise (a
    // per-element `map_or` kept them scalar: 6 % of an F(4×4, 3×3) forward, by `perf`).
    let bias = bias.map(|b| &b[o0..][..len]);
    for (yk, a) in y.iter().zip(at) {
        if let Some(a) = a {
            let dst = &mut img[a + o0..][..len];
            match bias {
                None => dst.iter_mut().zip(yk).for_each(|(d, v)| {
                    d.write(*v);
                }),
                Some(b) => dst.iter_mut().zip(yk).zip(b).for_each(|((d, v), b)| {
                    d.write(v + b);
                }),
            }
        }
    }
}

/// One output tile from its transformed products `src` (`P` points of `width` channels): output
/// `k` (row-major) goes to `img[at[k]..][..width]` (+ `bias`), or nowhere for `None`.
fn output_tile<const P: usize, const Q: usize>(
    t: &Output<P, Q>,
    src: &[&[f32]; P],
    img: &mut [MaybeUninit<f32>],
    at: &[Option<usize>; Q],
    bias: Option<&[f32]>,
    width: usize,
    isa: Isa,
) {
    let full = width - width % LANES;
    let mut done = 0;
    if let Some(fast) = t.fast.filter(|_| vectorised(isa)) {
        // SAFETY: the CPU has AVX2; every source and the bias hold `width` values and every
        // offset in `at` leaves room for `width` values in `img`.
        unsafe { fast(src, img, at, bias, full) };
        done = full;
    }
    for o0 in (done..full).step_by(LANES) {
        let mm = std::array::from_fn(|k| lanes(&src[k][o0..]));
        put_outputs(img, at, bias, o0, LANES, &(t.scalar)(&mm));
    }
    if full < width {
        let mm = std::array::from_fn(|k| padded(&src[k][full..]));
        put_outputs(img, at, bias, full, width - full, &(t.scalar)(&mm));
    }
}

/// The transformed input tiles `[P][N·tiles][c]` of `x` `[N, c, H, W]`, and how many tiles
/// there are.
fn tiles_of<'d, const P: usize, const Q: usize>(
    s: &Scheme<P, Q>,
    j: Job<'d>,
    x: Activation<'_>,
    c: usize,
) -> (usize, Scratch<'d>) {
    let Job { d, g } = j;
    let (n, hw) = (g.n, (g.h, g.w));
    let tiles = s.tiles(n, hw);
    let mut v = d.scratch(tiles * P * c);
    let xr;
    let src = match x.layout {
        Layout::Blocked16 if c.is_multiple_of(BLOCK) => Map::Blocked(x.data),
        _ => {
            xr = rows(d, x, [n, c, g.h, g.w]);
            Map::Rows(&xr)
        }
    };
    transform_tiles(src, n, hw, c, &mut v, (&s.input, s.step), Isa::detect());
    (tiles, v)
}

/// The "same" 3×3 convolution of `x` `[N, ins, H, W]` with the transformed filters `u`
/// `[P][outs][ins]` (+ `bias`): `[N, outs, H, W]` in `layout`.
fn convolve<const P: usize, const Q: usize>(
    s: &Scheme<P, Q>,
    j: Job<'_>,
    x: Activation<'_>,
    u: &[f32],
    (ins, outs): (usize, usize),
    (bias, layout): (Option<&[f32]>, Layout),
) -> Result<CpuBuf> {
    let Job { d, g } = j;
    let (tiles, v) = tiles_of(s, j, x, ins);
    let mut m = d.scratch(tiles * P * outs);
    let v: &[f32] = &v;
    per_point::<P>(&mut m, tiles * outs, |p, mp| {
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
            output_tiles(s, &m, g.n, hw, outs, dest, Isa::detect());
            // SAFETY: the tiles cover every position of every image's map, and `output_tiles`
            // writes every channel of every position it covers.
            unsafe { out.set_len(len) };
            Ok(CpuBuf::new(out))
        }
        _ => {
            let mut yr = d.scratch(len);
            output_tiles(s, &m, g.n, hw, outs, Dest::Rows(&mut yr), Isa::detect());
            Ok(from_rows(&yr, bias, layout, shape))
        }
    }
}

/// `product(p, plane)` for each of the `P` points, as parallel tasks, with `plane` the `p`-th
/// `len` elements of `out`.
fn per_point<const P: usize>(
    out: &mut [f32],
    len: usize,
    product: impl Fn(usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<()> {
    if len == 0 {
        // Nothing to compute (and `par_chunks_mut` refuses a chunk size of 0).
        return Ok(());
    }
    out[..P * len]
        .par_chunks_mut(len)
        .enumerate()
        .try_for_each(|(p, plane)| product(p, plane))
}

/// The weight shape, part of the transformed filters' cache key.
fn shape(g: &ConvGeom) -> [usize; 4] {
    [g.o, g.c, g.kh, g.kw]
}

/// The error for a geometry [`supports`] rejects.
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

/// The forward convolution by `s` (`transpose` false: `x` with `w`, + `bias`), or its input
/// gradient (`transpose`: the same computation on `dy` with the filters transposed and rotated).
/// The filters `[O, C, 3, 3]` are transformed once per weight state and direction.
fn apply<const P: usize, const Q: usize>(
    s: &Scheme<P, Q>,
    j: Job<'_>,
    (x, w, bias): (Activation<'_>, Weights<'_>, Option<&[f32]>),
    transpose: bool,
    layout: Layout,
) -> Result<CpuBuf> {
    let Job { d, g } = j;
    let (tag, ins, outs) = if transpose {
        (s.tags.1, g.o, g.c)
    } else {
        (s.tags.0, g.c, g.o)
    };
    let u = d.derived_weights(w.stamp, (tag, shape(g)), outs * P * ins, |u| {
        (s.filters)(w.data, g.o, g.c, transpose, u)
    });
    convolve(s, j, x, &u, (ins, outs), (bias, layout))
}

/// The adjoint of the forward. The products are `dU_ξ = dM_ξᵀ · V_ξ`, summed over every tile of
/// the batch by one sgemm per point (`dM` from [`Scheme::gradient`], `V` the forward's input
/// tiles), and the filters' gradients are `Gᵀ dU G`.
fn weight_gradient<const P: usize, const Q: usize>(
    s: &Scheme<P, Q>,
    j: Job<'_>,
    x: Activation<'_>,
    dy: Activation<'_>,
) -> Result<Vec<f32>> {
    let Job { d, g } = j;
    let (tiles, v) = tiles_of(s, j, x, g.c);
    let mut dm = d.scratch(tiles * P * g.o);
    let dyr;
    let src = match dy.layout {
        Layout::Blocked16 if g.o.is_multiple_of(BLOCK) => Map::Blocked(dy.data),
        _ => {
            dyr = rows(d, dy, g.out_shape());
            Map::Rows(&dyr)
        }
    };
    let hw = (g.h, g.w);
    transform_tiles(
        src,
        g.n,
        hw,
        g.o,
        &mut dm,
        (&s.gradient, s.step),
        Isa::detect(),
    );
    let mut du = d.scratch(P * g.o * g.c);
    let (v, dm): (&[f32], &[f32]) = (&v, &dm);
    per_point::<P>(&mut du, g.o * g.c, |p, dup| {
        d.sgemm(
            Gemm::new(g.o, g.c, tiles),
            MatRef::new(&dm[p * tiles * g.o..], g.o).t(),
            MatRef::new(&v[p * tiles * g.c..], g.c),
            MatMut::new(dup, g.c),
        )
    })?;
    Ok((s.filter_gradients)(&du, g.o, g.c))
}

/// The [`GemmConv`] implementation of one scheme.
macro_rules! winograd_conv {
    ($(#[$doc:meta])* $name:ident, $scheme:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl GemmConv for $name {
            fn check(g: &ConvGeom) -> Result<()> {
                check(g)
            }

            fn forward(
                j: Job<'_>,
                x: Activation<'_>,
                w: Weights<'_>,
                bias: Option<&[f32]>,
                layout: Layout,
            ) -> Result<CpuBuf> {
                apply(&$scheme, j, (x, w, bias), false, layout)
            }

            fn backward_data(
                j: Job<'_>,
                dy: Activation<'_>,
                w: Weights<'_>,
                layout: Layout,
            ) -> Result<CpuBuf> {
                apply(&$scheme, j, (dy, w, None), true, layout)
            }

            fn weight_gradient(
                j: Job<'_>,
                x: Activation<'_>,
                dy: Activation<'_>,
            ) -> Result<Vec<f32>> {
                weight_gradient(&$scheme, j, x, dy)
            }
        }
    };
}

winograd_conv!(
    /// Winograd F(2×2, 3×3); [`supports`] says which convolutions it computes, [`suits`] where
    /// `Auto` uses it with tuning off.
    Winograd,
    f2::F2
);

winograd_conv!(
    /// Winograd F(4×4, 3×3): the convolutions [`supports`] accepts; `Auto` uses it where a
    /// measurement on this machine chose it ([`crate::cpu::conv_tune`]), or with tuning off where
    /// [`suits_f4`].
    Winograd4,
    f4::F4
);

#[cfg(test)]
mod tests;
