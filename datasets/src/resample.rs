//! Antialiased bilinear resampling of one f32 plane (a triangle filter widened by the scale factor
//! when shrinking, as PIL's and torchvision's antialiased resize do), so shrinking a large photo or
//! a clutter canvas averages over every source pixel instead of aliasing.

/// A rectangle of the source plane, in pixels (fractional edges allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Region {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Region {
    pub fn full(width: usize, height: usize) -> Self {
        Region {
            x: 0.0,
            y: 0.0,
            w: width as f64,
            h: height as f64,
        }
    }
}

/// For each output index along one axis: the first source index and its weights (summing to 1).
fn axis_weights(src_len: usize, start: f64, len: f64, out_len: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = len / out_len as f64;
    let support = scale.max(1.0);
    (0..out_len)
        .map(|i| {
            let centre = start + (i as f64 + 0.5) * scale;
            let lo = ((centre - support - 0.5).floor().max(0.0)) as usize;
            let hi = ((centre + support - 0.5).ceil().max(0.0) as usize).min(src_len - 1);
            let mut ws: Vec<f64> = (lo..=hi.max(lo))
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre).abs() / support)).max(0.0))
                .collect();
            let total: f64 = ws.iter().sum();
            if total <= 0.0 {
                // The region edge lies outside the image: take the nearest pixel.
                let nearest = (centre.floor().max(0.0) as usize).min(src_len - 1);
                return (nearest, vec![1.0]);
            }
            ws.iter_mut().for_each(|w| *w /= total);
            (
                lo.min(src_len - 1),
                ws.into_iter().map(|w| w as f32).collect(),
            )
        })
        .collect()
}

/// Resamples `region` of the `src_w × src_h` plane `src` into the `out_w × out_h` plane `out`.
/// All sizes must be non-zero and `src`/`out` exactly as long as their sizes say.
pub(crate) fn resample_plane(
    src: &[f32],
    src_w: usize,
    src_h: usize,
    region: Region,
    out: &mut [f32],
    out_w: usize,
    out_h: usize,
) {
    debug_assert_eq!(src.len(), src_w * src_h);
    debug_assert_eq!(out.len(), out_w * out_h);
    let wx = axis_weights(src_w, region.x, region.w, out_w);
    let wy = axis_weights(src_h, region.y, region.h, out_h);
    let row_lo = wy.iter().map(|(s, _)| *s).min().unwrap_or(0);
    let row_hi = wy
        .iter()
        .map(|(s, w)| s + w.len())
        .max()
        .unwrap_or(0)
        .min(src_h);
    // Horizontal pass over the rows the vertical pass will read.
    let mut mid = vec![0f32; (row_hi - row_lo) * out_w];
    for (r, mrow) in (row_lo..row_hi).zip(mid.chunks_exact_mut(out_w)) {
        let srow = &src[r * src_w..(r + 1) * src_w];
        for (m, (s, ws)) in mrow.iter_mut().zip(&wx) {
            *m = ws.iter().zip(&srow[*s..]).map(|(w, v)| w * v).sum();
        }
    }
    for (orow, (s, ws)) in out.chunks_exact_mut(out_w).zip(&wy) {
        orow.fill(0.0);
        for (k, w) in ws.iter().enumerate() {
            let mrow = &mid[(s + k - row_lo) * out_w..(s + k - row_lo + 1) * out_w];
            for (o, m) in orow.iter_mut().zip(mrow) {
                *o += w * m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_constant_preservation() {
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut out = vec![0.0; 12];
        resample_plane(&src, 4, 3, Region::full(4, 3), &mut out, 4, 3);
        for (a, b) in src.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5, "{src:?} {out:?}");
        }
        let ones = vec![1.0; 37 * 23];
        for (w, h) in [(5, 3), (80, 41), (1, 1)] {
            let mut out = vec![0.0; w * h];
            resample_plane(&ones, 37, 23, Region::full(37, 23), &mut out, w, h);
            assert!(out.iter().all(|v| (v - 1.0).abs() < 1e-5), "{w}x{h}");
        }
    }

    #[test]
    fn halving_averages_pixel_pairs() {
        // Shrinking by exactly two with a triangle of radius 2 weights the inner pair 3/8 each and
        // the outer neighbours 1/8 each (edges renormalised).
        let src = [0.0, 0.0, 8.0, 8.0, 0.0, 0.0];
        let mut out = [0.0; 3];
        resample_plane(&src, 6, 1, Region::full(6, 1), &mut out, 3, 1);
        assert!((out[1] - 6.0).abs() < 1e-5, "{out:?}");
        assert!((out[0] - 8.0 / 7.0).abs() < 1e-5, "{out:?}");
    }

    #[test]
    fn crop_region_picks_the_right_pixels() {
        let src: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut out = [0.0; 4];
        let r = Region {
            x: 1.0,
            y: 2.0,
            w: 2.0,
            h: 2.0,
        };
        resample_plane(&src, 4, 4, r, &mut out, 2, 2);
        assert_eq!(out, [9.0, 10.0, 13.0, 14.0]);
    }
}
