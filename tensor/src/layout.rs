//! Physical layouts of rank-4 activations.
//!
//! `Plain` is row-major NCHW. `Blocked16` is oneDNN's `nChw16c`: channels split into blocks of 16
//! stored innermost, `[n][c/16][h][w][16]`. The CPU convolution runs near peak only in the blocked
//! layout, so activations stay blocked through an unroll and are converted at the edges. Only
//! tensors with `C % 16 == 0` are ever blocked, so no padded channels exist. Elementwise ops work
//! on either layout as long as the operands agree; every other op converts to `Plain` first.

use serde::{Deserialize, Serialize};

/// How the values of a tensor are ordered in memory. A tensor's [`Shape`](crate::Shape) is
/// always the logical NCHW shape; the layout only changes where each value sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Layout {
    /// Row-major in the order of the shape (NCHW for activations). Every tensor can be plain.
    #[default]
    Plain,
    /// oneDNN's `nChw16c`: rank 4 with `C % 16 == 0` only, `[n][c/16][h][w][16]`. Made by
    /// [`Tensor::to_layout`](crate::Tensor::to_layout) and by the CPU convolution.
    Blocked16,
}

/// Block size of [`Layout::Blocked16`].
pub const BLOCK: usize = 16;

/// NCHW → nChw16c. `c` must be a multiple of 16.
pub fn plain_to_blocked16(src: &[f32], n: usize, c: usize, hw: usize, dst: &mut [f32]) {
    use rayon::prelude::*;
    let cb = c / BLOCK;
    dst.par_chunks_mut(hw * BLOCK)
        .enumerate()
        .for_each(|(nb, out)| {
            let (i, b) = (nb / cb, nb % cb);
            for k in 0..BLOCK {
                let s = &src[(i * c + b * BLOCK + k) * hw..][..hw];
                for (p, v) in s.iter().enumerate() {
                    out[p * BLOCK + k] = *v;
                }
            }
        });
    let _ = n;
}

/// nChw16c → NCHW. `c` must be a multiple of 16.
pub fn blocked16_to_plain(src: &[f32], n: usize, c: usize, hw: usize, dst: &mut [f32]) {
    use rayon::prelude::*;
    dst.par_chunks_mut(hw).enumerate().for_each(|(nc, out)| {
        let (i, ch) = (nc / c, nc % c);
        let (b, k) = (ch / BLOCK, ch % BLOCK);
        let base = (i * (c / BLOCK) + b) * hw * BLOCK;
        for (p, o) in out.iter_mut().enumerate() {
            *o = src[base + p * BLOCK + k];
        }
    });
    let _ = n;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_position() {
        let (n, c, hw) = (2, 32, 5);
        let src: Vec<f32> = (0..n * c * hw).map(|i| i as f32).collect();
        let mut b = vec![0.0; src.len()];
        plain_to_blocked16(&src, n, c, hw, &mut b);
        // element (n=1, c=17, p=3) sits at block 1, lane 1
        assert_eq!(b[(3 * hw + 3) * 16 + 1], src[(c + 17) * hw + 3]);
        let mut back = vec![0.0; src.len()];
        blocked16_to_plain(&b, n, c, hw, &mut back);
        assert_eq!(back, src);
    }
}
