//! Spatial padding shared by convolution and pooling.
//!
//! `Same` reproduces TensorFlow's "SAME" exactly, including its asymmetry: when the total padding
//! of a dimension is odd, the extra cell goes after (bottom/right), never before. PyTorch's
//! symmetric `padding=p` is `Padding::symmetric(p)`.

use serde::{Deserialize, Serialize};

/// Padding of the two spatial dimensions of an NCHW tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub enum Padding {
    /// No padding: windows lie entirely inside the input.
    Valid,
    /// TensorFlow "SAME": `out = ceil(in / stride)`, total padding
    /// `max((out-1)·stride + (k-1)·dilation + 1 - in, 0)`, `before = total / 2`,
    /// `after = total - before`.
    #[default]
    Same,
    /// Explicit amounts per side.
    Explicit {
        /// Rows of zeros above the input.
        top: usize,
        /// Rows of zeros below the input.
        bottom: usize,
        /// Columns of zeros left of the input.
        left: usize,
        /// Columns of zeros right of the input.
        right: usize,
    },
}

impl Padding {
    /// `p` cells on every side (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Padding::Explicit {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// `(top, bottom, left, right)` for an input of `in_hw` and a window spanning
    /// `extent_hw = (k − 1)·dilation + 1` cells, moved by `stride`.
    pub fn amounts(
        &self,
        in_hw: (usize, usize),
        extent_hw: (usize, usize),
        stride: (usize, usize),
    ) -> (usize, usize, usize, usize) {
        let ((t, b), (l, r)) = self.resolve(in_hw, extent_hw, stride, (1, 1));
        (t, b, l, r)
    }

    /// The amounts `((top, bottom), (left, right))` for an input of `in_hw` under a window of
    /// `kernel` cells moved by `stride` with `dilation`. Strides of 0 are treated as 1 here;
    /// the ops reject them before resolving.
    pub fn resolve(
        &self,
        in_hw: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
    ) -> ((usize, usize), (usize, usize)) {
        match *self {
            Padding::Valid => ((0, 0), (0, 0)),
            Padding::Same => (
                same_padding(in_hw.0, kernel.0, stride.0, dilation.0),
                same_padding(in_hw.1, kernel.1, stride.1, dilation.1),
            ),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => ((top, bottom), (left, right)),
        }
    }
}

/// TensorFlow "SAME" padding `(before, after)` of one dimension.
pub fn same_padding(
    in_len: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    let stride = stride.max(1);
    let out = in_len.div_ceil(stride);
    let span = kernel.saturating_sub(1) * dilation + 1;
    let needed = (out.saturating_sub(1) * stride + span).saturating_sub(in_len);
    let before = needed / 2;
    (before, needed - before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_matches_tensorflow() {
        // 7 -> 4 under 2/2: one cell of padding, placed after.
        assert_eq!(same_padding(7, 2, 2, 1), (0, 1));
        // 8 -> 4 under 2/2: none.
        assert_eq!(same_padding(8, 2, 2, 1), (0, 0));
        // 224 -> 112 under 7/2 (a ResNet stem): total 5, split 2 before / 3 after.
        assert_eq!(same_padding(224, 7, 2, 1), (2, 3));
        // Stride 1 keeps the size: total k-1.
        assert_eq!(same_padding(5, 3, 1, 1), (1, 1));
        assert_eq!(same_padding(5, 4, 1, 1), (1, 2));
        // Dilation widens the window: 3 taps at dilation 2 span 5 cells.
        assert_eq!(same_padding(6, 3, 1, 2), (2, 2));
        // A window larger than the input.
        assert_eq!(same_padding(2, 5, 1, 1), (2, 2));
    }

    #[test]
    fn resolve_per_variant() {
        let p = Padding::Same.resolve((7, 8), (2, 2), (2, 2), (1, 1));
        assert_eq!(p, ((0, 1), (0, 0)));
        assert_eq!(
            Padding::Valid.resolve((7, 8), (3, 3), (1, 1), (1, 1)),
            ((0, 0), (0, 0))
        );
        assert_eq!(
            Padding::symmetric(2).resolve((7, 8), (3, 3), (1, 1), (1, 1)),
            ((2, 2), (2, 2))
        );
        let e = Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 3,
            right: 4,
        };
        assert_eq!(e.resolve((1, 1), (1, 1), (1, 1), (1, 1)), ((1, 2), (3, 4)));
    }

    #[test]
    fn serde_round_trip() {
        for p in [Padding::Valid, Padding::Same, Padding::symmetric(1)] {
            let s = serde_json::to_string(&p).unwrap_or_default();
            let back: Padding = serde_json::from_str(&s).unwrap_or(Padding::Valid);
            assert_eq!(back, p, "{s}");
        }
        let typo = r#"{"Explicit":{"top":1,"bottom":1,"left":1,"rigth":1}}"#;
        assert!(serde_json::from_str::<Padding>(typo).is_err());
    }
}
