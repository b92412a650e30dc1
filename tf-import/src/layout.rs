//! TensorFlow's tensor layouts and ours. TF stores convolution kernels `[kh, kw, in, out]`
//! (HWIO), depthwise kernels `[kh, kw, C, 1]`, dense kernels `[in, out]` and LSTM peepholes
//! `[H, W, C]`; we use `[out, in, kh, kw]`, `[C, 1, kh, kw]`, `[out, in]` and `[1, C, H, W]`.

/// How one TensorFlow variable maps onto one of our parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[kh, kw, in, out]` → `[out, in, kh, kw]`.
    ConvHwio,
    /// `[kh, kw, C, 1]` → `[C, 1, kh, kw]`.
    Depthwise,
    /// `[in, out]` → `[out, in]`.
    Dense,
    /// `[H, W, C]` → `[1, C, H, W]`.
    Hwc,
    /// Same shape, same order (biases, layer-norm scales, scalars stored as `[1]`).
    Same,
}

impl Layout {
    /// The TensorFlow shape of a variable that fills our parameter of shape `ours`.
    pub fn tf_shape(self, ours: &[usize]) -> Option<Vec<usize>> {
        Some(match (self, ours) {
            (Layout::ConvHwio, &[o, i, kh, kw]) => vec![kh, kw, i, o],
            (Layout::Depthwise, &[c, 1, kh, kw]) => vec![kh, kw, c, 1],
            (Layout::Dense, &[o, i]) => vec![i, o],
            (Layout::Hwc, &[1, c, h, w]) => vec![h, w, c],
            (Layout::Same, s) => s.to_vec(),
            _ => return None,
        })
    }

    /// Reorders `data` (TensorFlow order, shape `self.tf_shape(ours)`) into our order.
    pub fn to_ours(self, data: &[f32], ours: &[usize]) -> Vec<f32> {
        let mut out = vec![0f32; data.len()];
        match (self, ours) {
            (Layout::ConvHwio, &[o, i, kh, kw]) => {
                for y in 0..kh {
                    for x in 0..kw {
                        for c in 0..i {
                            for k in 0..o {
                                out[((k * i + c) * kh + y) * kw + x] =
                                    data[((y * kw + x) * i + c) * o + k];
                            }
                        }
                    }
                }
            }
            (Layout::Depthwise, &[c, 1, kh, kw]) => {
                for y in 0..kh {
                    for x in 0..kw {
                        for ch in 0..c {
                            out[(ch * kh + y) * kw + x] = data[(y * kw + x) * c + ch];
                        }
                    }
                }
            }
            (Layout::Dense, &[o, i]) => {
                for c in 0..i {
                    for k in 0..o {
                        out[k * i + c] = data[c * o + k];
                    }
                }
            }
            (Layout::Hwc, &[1, c, h, w]) => {
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            out[(ch * h + y) * w + x] = data[(y * w + x) * c + ch];
                        }
                    }
                }
            }
            _ => out.copy_from_slice(data),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element `[y, x, c, k]` of an HWIO kernel lands at `[k, c, y, x]`.
    #[test]
    fn hwio_becomes_oihw() {
        let (kh, kw, i, o) = (2, 3, 4, 5);
        let tf: Vec<f32> = (0..kh * kw * i * o).map(|v| v as f32).collect();
        let ours = [o, i, kh, kw];
        assert_eq!(Layout::ConvHwio.tf_shape(&ours), Some(vec![kh, kw, i, o]));
        let got = Layout::ConvHwio.to_ours(&tf, &ours);
        let (y, x, c, k) = (1, 2, 3, 4);
        assert_eq!(
            got[((k * i + c) * kh + y) * kw + x],
            tf[((y * kw + x) * i + c) * o + k]
        );
        let mut sorted = got.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, tf, "a permutation");
    }

    #[test]
    fn depthwise_dense_and_peephole_layouts() {
        let dw: Vec<f32> = (0..2 * 2 * 3).map(|v| v as f32).collect(); // [2, 2, 3, 1]
        let got = Layout::Depthwise.to_ours(&dw, &[3, 1, 2, 2]);
        assert_eq!(&got[..4], &[0.0, 3.0, 6.0, 9.0], "channel 0's 2×2 taps");
        let fc = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [in 2, out 3]
        assert_eq!(
            Layout::Dense.to_ours(&fc, &[3, 2]),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        let hwc: Vec<f32> = (0..2 * 2 * 2).map(|v| v as f32).collect(); // [2, 2, 2]
        assert_eq!(
            Layout::Hwc.to_ours(&hwc, &[1, 2, 2, 2]),
            vec![0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
        );
        assert_eq!(Layout::Hwc.tf_shape(&[1, 2, 3, 4]), Some(vec![3, 4, 2]));
        assert_eq!(
            Layout::Depthwise.tf_shape(&[3, 2, 2, 2]),
            None,
            "not a depthwise shape"
        );
    }
}
