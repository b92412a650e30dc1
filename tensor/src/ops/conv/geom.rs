//! The geometry of a 2-D convolution, owned by the op layer and shared by every backend: the
//! user's [`Conv2dOpts`], their resolution against the shapes into a [`ConvGeom`] (padding as
//! explicit per-side amounts, output size), the three computations ([`Stage`]) and the operands
//! a backend's convolution reads ([`Activation`], [`Weights`]).

use crate::layout::Layout;
use crate::ops::padding::Padding;
use crate::{Error, Result, Shape, StorageStamp};
use serde::{Deserialize, Serialize};

/// Options of [`Tensor::conv2d`](crate::Tensor::conv2d). Default: stride 1, [`Padding::Same`], dilation 1, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Conv2dOpts {
    /// `(vertical, horizontal)` step of the window, in input pixels (≥ 1).
    pub stride: (usize, usize),
    /// Zeros added around the input (TensorFlow's `SAME` by default).
    pub padding: Padding,
    /// `(vertical, horizontal)` spacing of the kernel's taps, in input pixels (1: adjacent; ≥ 1).
    pub dilation: (usize, usize),
    /// Input and output channels are split into this many independent groups; `groups == C` is a
    /// depthwise convolution (with `O = m·C` for a channel multiplier `m`).
    pub groups: usize,
}

impl Default for Conv2dOpts {
    fn default() -> Self {
        Conv2dOpts {
            stride: (1, 1),
            padding: Padding::Same,
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dOpts {
    /// The same options with stride `s` in both directions.
    pub fn with_stride(self, s: usize) -> Self {
        Conv2dOpts {
            stride: (s, s),
            ..self
        }
    }
    /// The same options with `padding`.
    pub fn with_padding(self, padding: Padding) -> Self {
        Conv2dOpts { padding, ..self }
    }
    /// The same options with dilation `d` in both directions.
    pub fn with_dilation(self, d: usize) -> Self {
        Conv2dOpts {
            dilation: (d, d),
            ..self
        }
    }
    /// The same options with `groups` groups (`groups` = input channels: depthwise).
    pub fn with_groups(self, groups: usize) -> Self {
        Conv2dOpts { groups, ..self }
    }
}

/// Output `(height, width)` and padding `(top, bottom, left, right)`.
type SizeAndPadding = ((usize, usize), (usize, usize, usize, usize));

/// Output `(height, width)` of a convolution with a `kernel`-sized window over `in_hw`, and the
/// resolved padding `(top, bottom, left, right)`.
pub(super) fn output_and_padding(
    in_hw: (usize, usize),
    kernel: (usize, usize),
    opts: &Conv2dOpts,
) -> Result<SizeAndPadding> {
    const OP: &str = "conv2d";
    if opts.stride.0 == 0 || opts.stride.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!("stride must be at least 1, got {:?}", opts.stride),
        ));
    }
    if opts.dilation.0 == 0 || opts.dilation.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!("dilation must be at least 1, got {:?}", opts.dilation),
        ));
    }
    if kernel.0 == 0 || kernel.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!("the kernel must be at least 1×1, got {kernel:?}"),
        ));
    }
    let extent = (
        (kernel.0 - 1) * opts.dilation.0 + 1,
        (kernel.1 - 1) * opts.dilation.1 + 1,
    );
    let pads = opts.padding.amounts(in_hw, extent, opts.stride);
    let (t, b, l, r) = pads;
    let (ph, pw) = (in_hw.0 + t + b, in_hw.1 + l + r);
    if ph < extent.0 || pw < extent.1 || in_hw.0 == 0 || in_hw.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "input {}×{} (padded {ph}×{pw}) is smaller than the {}×{} window of a {}×{} kernel \
                 with dilation {:?}",
                in_hw.0, in_hw.1, extent.0, extent.1, kernel.0, kernel.1, opts.dilation
            ),
        ));
    }
    let out = (
        (ph - extent.0) / opts.stride.0 + 1,
        (pw - extent.1) / opts.stride.1 + 1,
    );
    Ok((out, pads))
}

/// Output `(height, width)` of a convolution with a `kernel` = (kh, kw) window over `in_hw`.
pub fn conv2d_output_size(
    in_hw: (usize, usize),
    kernel: (usize, usize),
    opts: &Conv2dOpts,
) -> Result<(usize, usize)> {
    output_and_padding(in_hw, kernel, opts).map(|(out, _)| out)
}

/// Everything a kernel needs to know about one convolution, with the padding already resolved
/// to explicit (top, bottom, left, right) amounts. Also the cache key of compiled oneDNN
/// primitives (and, serialised, of the tuned CPU paths on disk), so it holds nothing but sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvGeom {
    /// Batch size N.
    pub n: usize,
    /// Input channels C.
    pub c: usize,
    /// Input height H.
    pub h: usize,
    /// Input width W.
    pub w: usize,
    /// Output channels O.
    pub o: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Vertical dilation.
    pub dh: usize,
    /// Horizontal dilation.
    pub dw: usize,
    /// Zero rows added above the input.
    pub pt: usize,
    /// Zero rows added below the input.
    pub pb: usize,
    /// Zero columns added left of the input.
    pub pl: usize,
    /// Zero columns added right of the input.
    pub pr: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Channel groups (input and output channels are split into this many independent
    /// convolutions; C = groups: depthwise).
    pub groups: usize,
}

impl ConvGeom {
    /// The geometry of convolving an input of shape `x` `[N, C, H, W]` with weights of shape
    /// `w` `[O, C/groups, kh, kw]` (and a bias of shape `bias` `[O]`) under `opts`, after checking
    /// that the shapes and options fit together.
    pub fn resolve(
        x: &Shape,
        w: &Shape,
        bias: Option<&Shape>,
        opts: &Conv2dOpts,
    ) -> Result<ConvGeom> {
        const OP: &str = "conv2d";
        let (n, c, h, wd) = x.dims4(OP)?;
        let groups = opts.groups;
        if groups == 0 {
            return Err(Error::invalid(OP, "groups must be at least 1, got 0"));
        }
        if c % groups != 0 {
            return Err(Error::invalid(
                OP,
                format!("input channels ({c}) are not divisible by groups ({groups})"),
            ));
        }
        let weight_shape = || {
            format!(
                "a weight [O, {}, kh, kw] (input channels {c} / groups {groups})",
                c / groups
            )
        };
        let (o, wc, kh, kw) = match w.dims() {
            &[o, wc, kh, kw] => (o, wc, kh, kw),
            _ => {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    expected: weight_shape(),
                    got: w.clone(),
                })
            }
        };
        if wc != c / groups {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: weight_shape(),
                got: w.clone(),
            });
        }
        if o == 0 || o % groups != 0 {
            return Err(Error::invalid(
                OP,
                format!("output channels ({o}) must be a positive multiple of groups ({groups})"),
            ));
        }
        if let Some(b) = bias {
            if b.dims() != [o] {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    expected: format!("a bias [{o}] (one value per output channel)"),
                    got: b.clone(),
                });
            }
        }
        let ((ho, wo), (pt, pb, pl, pr)) = output_and_padding((h, wd), (kh, kw), opts)?;
        Ok(ConvGeom {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            sh: opts.stride.0,
            sw: opts.stride.1,
            dh: opts.dilation.0,
            dw: opts.dilation.1,
            pt,
            pb,
            pl,
            pr,
            ho,
            wo,
            groups,
        })
    }

    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Length of one im2col column: the reduction size of the GEMM.
    pub fn kdim(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// The input's shape `[N, C, H, W]`.
    pub fn in_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    /// The output's shape `[N, O, Ho, Wo]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.o, self.ho, self.wo]
    }
    /// The weight's shape `[O, C/groups, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.o, self.cg(), self.kh, self.kw]
    }
    /// Positions of one input channel: H·W.
    pub fn in_plane(&self) -> usize {
        self.h * self.w
    }
    /// Positions of one output channel: Ho·Wo.
    pub fn out_plane(&self) -> usize {
        self.ho * self.wo
    }
    /// Values of the whole input: N·C·H·W.
    pub fn in_len(&self) -> usize {
        self.n * self.c * self.in_plane()
    }
    /// Values of the whole output: N·O·Ho·Wo.
    pub fn out_len(&self) -> usize {
        self.n * self.o * self.out_plane()
    }
    /// Values of the weights: O·(C/groups)·kh·kw.
    pub fn weight_len(&self) -> usize {
        self.o * self.kdim()
    }
    /// Each group reads a single input channel (depthwise, with any channel multiplier): the
    /// GEMM would have a reduction of only kh·kw, so direct kernels win.
    pub fn is_depthwise(&self) -> bool {
        self.cg() == 1
    }
    /// A 1×1, stride-1, unpadded convolution: the input already is the im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt + self.pb + self.pl + self.pr == 0
    }
    /// Multiply-adds × 2 of the forward pass (the backward passes cost the same each).
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.o * self.out_plane()) as f64 * self.kdim() as f64
    }
}

/// One of the three computations of a convolution. Backends may run each on a different
/// implementation, and caches of prepared data are kept per computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// The output from the input and the weights (and bias).
    Forward,
    /// The gradient of the input from the output's gradient and the weights.
    BackwardData,
    /// The gradients of the weights (and bias) from the input and the output's gradient.
    BackwardWeights,
}

/// An activation `[N, C, H, W]` (or its gradient) as a backend's convolution reads it: its
/// buffer (by default the host values) and the layout the values are in.
pub struct Activation<'a, B: ?Sized = [f32]> {
    /// The values (or the buffer on the backend's device).
    pub data: &'a B,
    /// How the values are ordered: [`Layout::Plain`] NCHW or, on the CPU, [`Layout::Blocked16`].
    pub layout: Layout,
}

/// Plain weights `[O, C/groups, kh, kw]` (by default the host values) and the stamp of their
/// storage, under which copies derived from them (reordered or transformed weights) are cached.
pub struct Weights<'a, B: ?Sized = [f32]> {
    /// The values, plain `[O, C/groups, kh, kw]`.
    pub data: &'a B,
    /// Which data this is, so caches of derived copies know when the weights changed.
    pub stamp: &'a StorageStamp,
}

// Copy whatever the buffer type (a derive would ask the buffer itself to be Copy).
impl<B: ?Sized> Clone for Activation<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for Activation<'_, B> {}
impl<B: ?Sized> Clone for Weights<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for Weights<'_, B> {}

/// The output indices `[lo, hi)` along one axis whose input index `i·stride + offset` lies in
/// `[0, n_in)`.
#[inline]
pub(crate) fn valid_range(
    n_out: usize,
    stride: usize,
    offset: isize,
    n_in: usize,
) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) + s - 1) / s
    };
    let room = n_in as isize - offset;
    let hi = if room > 0 { (room + s - 1) / s } else { 0 };
    let hi = (hi as usize).min(n_out);
    let lo = (lo as usize).min(hi);
    (lo, hi)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for n_out in 0..6 {
            for stride in 1..4 {
                for offset in -5isize..5 {
                    for n_in in 0..7 {
                        let (lo, hi) = valid_range(n_out, stride, offset, n_in);
                        let ok: Vec<usize> = (0..n_out)
                            .filter(|&i| {
                                let p = (i * stride) as isize + offset;
                                p >= 0 && p < n_in as isize
                            })
                            .collect();
                        let want = match (ok.first(), ok.last()) {
                            (Some(&a), Some(&b)) => (a, b + 1),
                            _ => (lo, lo),
                        };
                        assert_eq!((lo, hi), want, "{n_out} {stride} {offset} {n_in}");
                    }
                }
            }
        }
    }
}
