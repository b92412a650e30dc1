//! Convolutions of our own built on oneDNN's sgemm ([`super::small_map`], [`super::winograd`]):
//! the row layout they compute in and their shared entry points.
//!
//! Activations are converted to rows `[N·H·W, C]` (one row per image position, channels along
//! the row) from the tensors' own layout ([`Layout::Plain`] or [`Layout::Blocked16`]) and back,
//! so that every product reads and writes contiguous row-major matrices; Winograd's transforms
//! read and write the blocked layout directly instead, which saves both conversions. An
//! implementation ([`GemmConv`]) provides the three computations; [`Checked`] checks the
//! geometry once and computes the bias gradient beside them.

use super::{OneDnn, Scratch};
use crate::error::Result;
use crate::layout::{Layout, BLOCK};
use crate::ops::conv::{Activation, ConvGeom, Weights};
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// A convolution `g` on the library `d`: what each computation of a [`GemmConv`] works with.
#[derive(Clone, Copy)]
pub struct Job<'d> {
    /// The loaded library (its sgemm and buffer pool).
    pub d: &'d OneDnn,
    /// The convolution.
    pub g: &'d ConvGeom,
}

/// The three computations of a convolution, with oneDNN's sgemm and its pool of temporaries.
/// They compute on rows and convert at the ends (`rows`, `from_rows`), or read and write the
/// tensors' own layouts directly where that saves the passes ([`super::winograd`]).
pub trait GemmConv {
    /// An error saying what the implementation needs, for a geometry it does not compute.
    fn check(g: &ConvGeom) -> Result<()>;
    /// `x` convolved with `w` (+ `bias`): `[N, O, Ho, Wo]` in `layout`.
    fn forward(
        j: Job<'_>,
        x: Activation<'_>,
        w: Weights<'_>,
        bias: Option<&[f32]>,
        layout: Layout,
    ) -> Result<CpuBuf>;
    /// The input gradient `[N, C, H, W]` in `layout` from the output gradient `dy` and `w`.
    fn backward_data(
        j: Job<'_>,
        dy: Activation<'_>,
        w: Weights<'_>,
        layout: Layout,
    ) -> Result<CpuBuf>;
    /// The plain weight gradient `[O, C, kh, kw]` from `x` and the output gradient `dy`.
    fn weight_gradient(j: Job<'_>, x: Activation<'_>, dy: Activation<'_>) -> Result<Vec<f32>>;
}

/// The convolution `g` on `d` by the implementation `C`, after checking that `C` computes it:
/// the three computations on tensors in their own layouts.
pub struct Checked<'d, C> {
    j: Job<'d>,
    conv: std::marker::PhantomData<C>,
}

impl<'d, C: GemmConv> Checked<'d, C> {
    /// The convolution `g` on `d` by `C`.
    ///
    /// # Errors
    /// `C`'s error (an [`Error::InvalidArgument`](crate::Error::InvalidArgument) saying what it
    /// needs) when `C` does not compute `g`.
    pub fn new(d: &'d OneDnn, g: &'d ConvGeom) -> Result<Self> {
        C::check(g)?;
        let conv = std::marker::PhantomData;
        Ok(Checked {
            j: Job { d, g },
            conv,
        })
    }

    /// Forward convolution of `x` with plain weights `[O, C, kh, kw]` (+ `bias`): `[N, O, Ho,
    /// Wo]` in `layout`.
    pub fn forward(
        &self,
        x: Activation,
        w: Weights,
        bias: Option<&[f32]>,
        layout: Layout,
    ) -> Result<CpuBuf> {
        C::forward(self.j, x, w, bias, layout)
    }

    /// Gradient of the input, in `layout`, from the output gradient `dy`.
    pub fn backward_data(&self, dy: Activation, w: Weights, layout: Layout) -> Result<CpuBuf> {
        C::backward_data(self.j, dy, w, layout)
    }

    /// Gradients of the plain weights `[O, C, kh, kw]` and, when `want_bias`, of the bias.
    pub fn backward_weights(
        &self,
        x: Activation,
        dy: Activation,
        want_bias: bool,
    ) -> Result<(CpuBuf, Option<CpuBuf>)> {
        let db = want_bias.then(|| bias_gradient(&dy, self.j.g.out_shape()));
        let dw = C::weight_gradient(self.j, x, dy)?;
        Ok((CpuBuf::new(dw), db))
    }
}

/// `t` of `shape` `[n, c, h, w]` as rows `[n·h·w, c]` in a pooled buffer.
pub(super) fn rows<'d>(d: &'d OneDnn, t: Activation<'_>, shape: [usize; 4]) -> Scratch<'d> {
    let [n, c, h, w] = shape;
    let mut r = d.scratch(n * c * h * w);
    to_rows(t.data, t.layout, (n, c, h * w), &mut r);
    r
}

/// `[N, C, hw]` in `layout` → `rows` `[N·hw, C]` (every element written).
fn to_rows(src: &[f32], layout: Layout, (n, c, hw): (usize, usize, usize), rows: &mut [f32]) {
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

/// Rows `[N·H·W, C]` (+ `bias` per channel) → `shape` `[N, C, H, W]` in `layout`.
pub(super) fn from_rows(
    rows: &[f32],
    bias: Option<&[f32]>,
    layout: Layout,
    shape: [usize; 4],
) -> CpuBuf {
    let [n, c, h, w] = shape;
    let hw = h * w;
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
    CpuBuf::new(out)
}

/// The bias gradient: the sums over images and positions of each channel of the output
/// gradient `dy` (`shape` `[N, O, Ho, Wo]`), in either layout; each channel's sum runs over
/// (image, position) in order, as a column sum of its rows would.
fn bias_gradient(dy: &Activation<'_>, [n, o, h, w]: [usize; 4]) -> CpuBuf {
    let hw = h * w;
    let mut db = vec![0.0f32; o];
    if o * hw == 0 {
        return CpuBuf::new(db);
    }
    for img in dy.data.chunks_exact(o * hw).take(n) {
        match dy.layout {
            Layout::Plain => {
                for (s, plane) in db.iter_mut().zip(img.chunks_exact(hw)) {
                    for v in plane {
                        *s += v;
                    }
                }
            }
            Layout::Blocked16 => {
                for (sums, block) in db.chunks_exact_mut(BLOCK).zip(img.chunks_exact(hw * BLOCK)) {
                    for lanes in block.chunks_exact(BLOCK) {
                        for (s, v) in sums.iter_mut().zip(lanes) {
                            *s += v;
                        }
                    }
                }
            }
        }
    }
    CpuBuf::new(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_in_both_layouts() {
        let (n, c, hw) = (2, 32, 5);
        let src: Vec<f32> = (0..n * c * hw).map(|i| i as f32).collect();
        for layout in [Layout::Plain, Layout::Blocked16] {
            let mut rows = vec![f32::NAN; src.len()];
            to_rows(&src, layout, (n, c, hw), &mut rows);
            assert_eq!(
                from_rows(&rows, None, layout, [n, c, hw, 1]).as_slice(),
                &src[..]
            );
        }
        // element (n=1, c=17, p=3) of a plain tensor lands in row 1·5+3, column 17
        let mut rows = vec![f32::NAN; src.len()];
        to_rows(&src, Layout::Plain, (n, c, hw), &mut rows);
        assert_eq!(rows[(hw + 3) * c + 17], src[(c + 17) * hw + 3]);
    }

    /// The bias gradient sums each channel over images and positions, the same in both layouts
    /// and equal to the column sums of the rows.
    #[test]
    fn bias_gradient_in_both_layouts_is_the_column_sum_of_the_rows() {
        let (n, c, h, w) = (3, 32, 2, 3);
        let hw = h * w;
        let plain: Vec<f32> = (0..n * c * hw)
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let mut rows = vec![f32::NAN; plain.len()];
        to_rows(&plain, Layout::Plain, (n, c, hw), &mut rows);
        let mut want = vec![0.0f32; c];
        for r in rows.chunks_exact(c) {
            for (s, v) in want.iter_mut().zip(r) {
                *s += v;
            }
        }
        let blocked = from_rows(&rows, None, Layout::Blocked16, [n, c, h, w]);
        for (layout, data) in [
            (Layout::Plain, &plain[..]),
            (Layout::Blocked16, blocked.as_slice()),
        ] {
            let dy = Activation { data, layout };
            let got = bias_gradient(&dy, [n, c, h, w]);
            assert_eq!(got.as_slice(), &want[..], "{layout:?}");
        }
        // No positions: zero sums, no panic.
        let dy = Activation {
            data: &[][..],
            layout: Layout::Plain,
        };
        assert_eq!(
            bias_gradient(&dy, [n, c, 0, w]).as_slice(),
            &vec![0.0; c][..]
        );
    }
}
