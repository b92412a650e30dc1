//! Winograd F(2×2, 3×3): each 2×2 output tile from a 4×4 input tile, 16 products per tile
//! (2.25× fewer multiplications than the direct convolution). The transforms need only additions
//! and halvings, so they are exact on small integers (`super::tests`) and add little rounding error.
//! Hand-written AVX2 copies of the tile transforms ([`avx2`]) run where the CPU has AVX2.

use super::{FILTER_LANES, LANES};

/// Transformed points per tile: 4×4.
pub(super) const P: usize = 16;
/// Outputs per tile: 2×2.
pub(super) const Q: usize = 4;

// The scheme the driver runs.
scheme!(F2, step: 2, tags: (0, 1));

/// `G g Gᵀ` of [`FILTER_LANES`] filters at once: `g[k][l]` is tap `k` (row-major 3×3) of filter
/// `l`, `u[k][l]` becomes point `k` (row-major 4×4) of its transform. (Results are written into
/// the caller's arrays: returned by value, they were copied with `memcpy` calls.)
#[inline(always)]
pub(super) fn filter_transform(g: &[[f32; FILTER_LANES]; 9], u: &mut [[f32; FILTER_LANES]; P]) {
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
pub(super) fn input_transform(d: &[[f32; LANES]; P]) -> [[f32; LANES]; P] {
    let mut t = [[0.0f32; LANES]; P];
    let mut v = [[0.0f32; LANES]; P];
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
pub(super) fn output_transform(m: &[[f32; LANES]; P]) -> [[f32; LANES]; 4] {
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
/// `A y Aᵀ` on [`LANES`] channels at once: 2×2 → 4×4, row-major.
#[inline(always)]
pub(super) fn gradient_transform(y: &[[f32; LANES]; 4]) -> [[f32; LANES]; P] {
    let mut m = [[0.0f32; LANES]; P];
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
pub(super) fn gradient_filter(u: &[[f32; FILTER_LANES]; P], g: &mut [[f32; FILTER_LANES]; 9]) {
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
/// The transforms on 8 channels per AVX2 register: the same additions as the scalar
/// plain `[O, C, 3, 3]`, [`FILTER_LANES`] input channels at a time (contiguous in every plane of
/// [`input_transform`] and [`output_transform`], in the same order, so both give identical results.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::P as POINTS;
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
