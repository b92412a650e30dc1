//! Winograd F(4×4, 3×3): each 4×4 output tile from a 6×6 input tile, 36 products per tile (4×
//! fewer multiplications than the direct convolution, 1.78× fewer than F(2×2, 3×3)), with the
//! interpolation points 0, ±1, ±2 and ∞ of Lavin and Gray, "Fast Algorithms for Convolutional
//! Neural Networks" (2016):
//!
//! ```text
//!      ⎡4  0 −5  0  1  0⎤        ⎡ 1/4     0    0 ⎤        ⎡1  1  1  1  1  0⎤
//!      ⎢0 −4 −4  1  1  0⎥        ⎢−1/6 −1/6 −1/6 ⎥        ⎢0  1 −1  2 −2  0⎥
//! Bᵀ = ⎢0  4 −4 −1  1  0⎥    G = ⎢−1/6  1/6 −1/6 ⎥   Aᵀ = ⎢0  1  1  4  4  0⎥
//!      ⎢0 −2 −1  2  1  0⎥        ⎢1/24 1/12  1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//!      ⎢0  2 −1 −2  1  0⎥        ⎢1/24 −1/12 1/6 ⎥
//!      ⎣0  4  0 −5  0  1⎦        ⎣   0     0    1 ⎦
//! ```
//!
//! The 1-D transforms below apply these matrices with the common subexpressions shared. The
//! arithmetic runs on arrays of [`LANES`] channels, which the compiler vectorises where the tile
//! loops are compiled for AVX2 (`avx2`); both copies round alike (no FMA contraction), so they
//! agree bit for bit.

use super::{FilterLanes, Lanes, FILTER_LANES, LANES};

/// Transformed points per tile: 6×6.
pub(super) const P: usize = 36;
/// Outputs per tile: 4×4.
pub(super) const Q: usize = 16;

// The scheme the driver runs.
scheme!(F4, step: 4, tags: (2, 3));

/// Element-wise arithmetic on arrays of `N` lanes (the lane loops the compiler vectorises).
#[inline(always)]
fn add<const N: usize>(a: [f32; N], b: [f32; N]) -> [f32; N] {
    std::array::from_fn(|l| a[l] + b[l])
}

#[inline(always)]
fn sub<const N: usize>(a: [f32; N], b: [f32; N]) -> [f32; N] {
    std::array::from_fn(|l| a[l] - b[l])
}

#[inline(always)]
fn scale<const N: usize>(k: f32, a: [f32; N]) -> [f32; N] {
    std::array::from_fn(|l| k * a[l])
}

/// `Bᵀ d` of six values (a column or a row of a 6×6 tile).
#[inline(always)]
fn bt([d0, d1, d2, d3, d4, d5]: [Lanes; 6]) -> [Lanes; 6] {
    let a = sub(d4, scale(4.0, d2));
    let b = sub(d3, scale(4.0, d1));
    let c = sub(d4, d2);
    let e = scale(2.0, sub(d3, d1));
    [
        add(sub(scale(4.0, d0), scale(5.0, d2)), d4),
        add(a, b),
        sub(a, b),
        add(c, e),
        sub(c, e),
        add(sub(scale(4.0, d1), scale(5.0, d3)), d5),
    ]
}

/// `Aᵀ m` of six values: four outputs.
#[inline(always)]
fn at([m0, m1, m2, m3, m4, m5]: [Lanes; 6]) -> [Lanes; 4] {
    let (p, q) = (add(m1, m2), sub(m1, m2));
    let (r, s) = (add(m3, m4), sub(m3, m4));
    [
        add(add(m0, p), r),
        add(q, scale(2.0, s)),
        add(p, scale(4.0, r)),
        add(add(q, scale(8.0, s)), m5),
    ]
}

/// `A y` of four values: six (the adjoint of [`at`]).
#[inline(always)]
fn a([y0, y1, y2, y3]: [Lanes; 4]) -> [Lanes; 6] {
    let (p, q) = (add(y0, y2), add(y1, y3));
    let (r, s) = (add(y0, scale(4.0, y2)), add(scale(2.0, y1), scale(8.0, y3)));
    [y0, add(p, q), sub(p, q), add(r, s), sub(r, s), y3]
}

/// `G g` of three values: six.
#[inline(always)]
fn g_of([g0, g1, g2]: [FilterLanes; 3]) -> [FilterLanes; 6] {
    let p = add(g0, g2);
    let r = add(scale(1.0 / 24.0, g0), scale(1.0 / 6.0, g2));
    let s = scale(1.0 / 12.0, g1);
    [
        scale(0.25, g0),
        scale(-1.0 / 6.0, add(p, g1)),
        scale(-1.0 / 6.0, sub(p, g1)),
        add(r, s),
        sub(r, s),
        g2,
    ]
}

/// `Gᵀ u` of six values: three (the adjoint of [`g_of`]).
#[inline(always)]
fn gt_of([u0, u1, u2, u3, u4, u5]: [FilterLanes; 6]) -> [FilterLanes; 3] {
    let (p, q) = (add(u1, u2), sub(u2, u1));
    let (r, s) = (add(u3, u4), sub(u3, u4));
    [
        add(
            sub(scale(0.25, u0), scale(1.0 / 6.0, p)),
            scale(1.0 / 24.0, r),
        ),
        add(scale(1.0 / 6.0, q), scale(1.0 / 12.0, s)),
        add(scale(1.0 / 6.0, sub(r, p)), u5),
    ]
}

/// `t` applied to the columns of the `rows × cols` matrix `x` (row-major), then `u` to the rows of
/// the result: the 2-D transform `T x Uᵀ`, row-major `R × C`.
#[inline(always)]
fn two_d<const N: usize, const I: usize, const J: usize, const R: usize, const C: usize>(
    x: &[[f32; N]],
    t: impl Fn([[f32; N]; I]) -> [[f32; N]; R],
    u: impl Fn([[f32; N]; J]) -> [[f32; N]; C],
    out: &mut [[f32; N]],
) {
    debug_assert_eq!((x.len(), out.len()), (I * J, R * C));
    // T x: one column (J of them, I values each) at a time.
    let mut tx = [[[0.0f32; N]; J]; R];
    for s in 0..J {
        let col = t(std::array::from_fn(|i| x[i * J + s]));
        for (r, v) in col.into_iter().enumerate() {
            tx[r][s] = v;
        }
    }
    // (T x) Uᵀ: one row at a time.
    for (r, row) in tx.into_iter().enumerate() {
        for (c, v) in u(row).into_iter().enumerate() {
            out[r * C + c] = v;
        }
    }
}

/// `Bᵀ d B` on [`LANES`] channels at once; `d` and the result are 6×6, row-major.
#[inline(always)]
fn input_transform(d: &[Lanes; P]) -> [Lanes; P] {
    let mut v = [[0.0; LANES]; P];
    two_d::<LANES, 6, 6, 6, 6>(d, bt, bt, &mut v);
    v
}

/// `Aᵀ m A` on [`LANES`] channels at once: 6×6 → 4×4, row-major.
#[inline(always)]
fn output_transform(m: &[Lanes; P]) -> [Lanes; Q] {
    let mut y = [[0.0; LANES]; Q];
    two_d::<LANES, 6, 6, 4, 4>(m, at, at, &mut y);
    y
}

/// `A y Aᵀ` on [`LANES`] channels at once: 4×4 → 6×6, row-major.
#[inline(always)]
fn gradient_transform(y: &[Lanes; Q]) -> [Lanes; P] {
    let mut m = [[0.0; LANES]; P];
    two_d::<LANES, 4, 4, 6, 6>(y, a, a, &mut m);
    m
}

/// `G g Gᵀ` of [`FILTER_LANES`] filters at once: `g[k][l]` is tap `k` (row-major 3×3) of filter
/// `l`, `u[k][l]` becomes point `k` (row-major 6×6) of its transform.
#[inline(always)]
fn filter_transform(g: &[FilterLanes; 9], u: &mut [FilterLanes; P]) {
    two_d::<FILTER_LANES, 3, 3, 6, 6>(g, g_of, g_of, u);
}

/// `Gᵀ dU G` of [`FILTER_LANES`] filters at once: `u[k][l]` is point `k` of filter `l`'s
/// gradient, `g[k][l]` becomes tap `k` (row-major 3×3) of its filter gradient.
#[inline(always)]
fn gradient_filter(u: &[FilterLanes; P], g: &mut [FilterLanes; 9]) {
    two_d::<FILTER_LANES, 6, 6, 3, 3>(u, gt_of, gt_of, g);
}

/// The tile loops compiled for AVX2 and FMA, over whole registers: the scalar transforms
/// inlined, their lane loops vectorised.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::{row_by, tile_by};
    use super::{gradient_transform, input_transform, output_transform, P, Q};
    use std::mem::MaybeUninit;

    /// [`input_transform`] over channels `..full` of one tile row.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn input_row(src: &[&[f32]; P], dst: &mut [&mut [f32]; P], full: usize) {
        row_by(input_transform, src, dst, full)
    }

    /// [`gradient_transform`] over channels `..full` of one tile row.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gradient_row(src: &[&[f32]; Q], dst: &mut [&mut [f32]; P], full: usize) {
        row_by(gradient_transform, src, dst, full)
    }

    /// [`output_transform`] over channels `..full` of one tile.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn output_tile(
        src: &[&[f32]; P],
        img: &mut [MaybeUninit<f32>],
        at: &[Option<usize>; Q],
        bias: Option<&[f32]>,
        full: usize,
    ) {
        tile_by(output_transform, src, img, at, bias, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-D matrices as written in the module's documentation.
    const BT: [[f32; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];
    const G: [[f64; 3]; 6] = [
        [0.25, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    const AT: [[f32; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    fn lanes_of<const N: usize>(v: &[f32]) -> [Lanes; N] {
        std::array::from_fn(|i| [v[i]; LANES])
    }

    /// The factored 1-D transforms compute the matrices above (exactly where the matrix has
    /// integers; `G` to rounding).
    #[test]
    fn one_dimensional_transforms_are_the_matrices() {
        let x: Vec<f32> = vec![1.5, -2.0, 0.25, 3.0, -0.75, 2.5];
        let v = bt(lanes_of(&x));
        for (i, row) in BT.iter().enumerate() {
            let want: f32 = row.iter().zip(&x).map(|(b, d)| b * d).sum();
            assert_eq!(v[i][0], want, "Bᵀ row {i}");
        }
        let y = at(lanes_of(&x));
        for (i, row) in AT.iter().enumerate() {
            let want: f32 = row.iter().zip(&x).map(|(b, d)| b * d).sum();
            assert_eq!(y[i][0], want, "Aᵀ row {i}");
        }
        let m = a(lanes_of(&x[..4]));
        for j in 0..6 {
            let want: f32 = (0..4).map(|i| AT[i][j] * x[i]).sum();
            assert_eq!(m[j][0], want, "A row {j}");
        }
        let fl = |v: &[f32]| -> Vec<FilterLanes> { v.iter().map(|&x| [x; FILTER_LANES]).collect() };
        let gx = fl(&x[..3]);
        let u = g_of([gx[0], gx[1], gx[2]]);
        for (j, row) in G.iter().enumerate() {
            let want: f64 = row.iter().zip(&x).map(|(g, v)| g * *v as f64).sum();
            assert!((u[j][0] as f64 - want).abs() < 1e-6, "G row {j}");
        }
        let ux = fl(&x);
        let back = gt_of(std::array::from_fn(|i| ux[i]));
        for k in 0..3 {
            let want: f64 = (0..6).map(|j| G[j][k] * x[j] as f64).sum();
            assert!((back[k][0] as f64 - want).abs() < 1e-6, "Gᵀ row {k}");
        }
    }
}
