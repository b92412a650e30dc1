//! Data movement for the shape ops: strided block copies and 2-D transposition.
//!
//! Concatenation, narrowing and their adjoints along any dimension are all the same copy: a tensor
//! viewed as `outer` rows, each holding a contiguous `chunk` at some offset of a row. In the plain
//! layout `outer` is the product of the dimensions before the cut and a chunk is `len · inner`
//! values; in nChw16c a channel cut at a multiple of 16 has exactly the same form with
//! `outer = N`, `inner = H·W`.

use super::PAR_THRESHOLD;
use crate::backend::Rows;
use crate::storage::CpuBuf;
use rayon::prelude::*;

/// Copies a `chunk` from every row of `src` into the matching row of `dst`.
/// `dst.len()` must be a whole number of `dst_rows.row` rows, and `src` must hold as many rows.
pub fn copy_rows(src: &[f32], s: Rows, dst: &mut [f32], d: Rows, chunk: usize) {
    if chunk == 0 || dst.is_empty() {
        return;
    }
    let min = (PAR_THRESHOLD / chunk).max(1);
    dst.par_chunks_mut(d.row)
        .with_min_len(min)
        .enumerate()
        .for_each(|(o, dr)| {
            dr[d.off..][..chunk].copy_from_slice(&src[o * s.row + s.off..][..chunk]);
        });
}

/// The transpose of a row-major `r × c` matrix.
pub fn transpose2d(src: &[f32], r: usize, c: usize) -> CpuBuf {
    // Tiles keep both the reads and the writes within a few cache lines.
    const T: usize = 32;
    let mut out = CpuBuf::zeros(r * c);
    if out.is_empty() {
        return out;
    }
    let min = (PAR_THRESHOLD / (T * r)).max(1);
    // Output rows come in bands of T (the transposed source columns j0..j0+T).
    out.par_chunks_mut(T * r)
        .with_min_len(min)
        .enumerate()
        .for_each(|(band, o)| {
            let j0 = band * T;
            let jn = (c - j0).min(T);
            for i0 in (0..r).step_by(T) {
                for i in i0..(i0 + T).min(r) {
                    let s = &src[i * c + j0..][..jn];
                    for (dj, v) in s.iter().enumerate() {
                        o[dj * r + i] = *v;
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_naive_on_ragged_tiles() {
        for (r, c) in [(1, 1), (3, 70), (65, 33), (100, 1)] {
            let src: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let t = transpose2d(&src, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], src[i * c + j], "{r}x{c} at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn copy_rows_places_chunks() {
        // Two rows of 5; take 2 values at offset 1 into rows of 3 at offset 1.
        let src: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let mut dst = vec![0.0; 6];
        copy_rows(
            &src,
            Rows { row: 5, off: 1 },
            &mut dst,
            Rows { row: 3, off: 1 },
            2,
        );
        assert_eq!(dst, vec![0., 1., 2., 0., 6., 7.]);
    }
}
