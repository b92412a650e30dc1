//! 2-D convolution on cuDNN: forward, backward-data, backward-filter, and the bias gradient.
//!
//! **Asymmetric padding.** cuDNN pads each spatial dimension by the same amount on both sides.
//! TensorFlow's "SAME" padding puts the odd extra row/column at the bottom/right. We pass cuDNN
//! the symmetric part, `min(top, bottom)` and `min(left, right)`, and pad the input explicitly by
//! the remainder (a `pad2d` copy, zeros) before the call; backward-data crops the padded input
//! gradient back (`crop2d`), backward-filter re-pads the input. Symmetric padding costs nothing
//! extra.
//!
//! The algorithm of each problem is chosen and cached by [`super::conv_algo`]; the cuDNN
//! descriptors come from [`super::dnn`].

use super::buffer::{alloc, CudaBuf};
use super::conv_algo::{
    default_math, run, tf32_allowed, AlgoKey, BackwardData, BackwardFilter, Forward, Pass, Problem,
};
use super::device::Dev;
use super::dnn::{ConvDesc, FilterDesc, TensorDesc};
use super::elementwise::{check_len, reduce_sum, same_device};
use super::kernels::{cfg_1d, i, launch, Arg};
use super::shape::{crop2d, pad2d};
use crate::{Error, Result};
use std::sync::Arc;

/// Geometry of a 2-D convolution with padding resolved per side (TF-"SAME" already turned into
/// explicit amounts by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Step `(vertical, horizontal)` of the window, in input pixels.
    pub stride: (usize, usize),
    /// `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    /// Spacing `(vertical, horizontal)` of the kernel's taps (1: adjacent).
    pub dilation: (usize, usize),
    /// Channel groups (input channels = groups: depthwise).
    pub groups: usize,
}

impl Conv2dGeometry {
    /// The symmetric part cuDNN applies and the explicit remainder `[t, b, l, r]`.
    fn split_pad(&self) -> ((usize, usize), [usize; 4]) {
        let [t, b, l, r] = self.pad;
        let (ph, pw) = (t.min(b), l.min(r));
        ((ph, pw), [t - ph, b - ph, l - pw, r - pw])
    }
}

/// `(out_h, out_w)` of a convolution of `x_shape` `[n, c, h, w]` with a filter of `w_shape`
/// `[o, c / groups, kh, kw]`, validating every constraint with a message naming it.
pub fn conv2d_output_hw(
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    g: &Conv2dGeometry,
) -> Result<(usize, usize)> {
    let [_, c, h, w] = x_shape;
    let [o, cg, kh, kw] = w_shape;
    let bad = |msg: String| Err(Error::invalid("conv2d", msg));
    if g.groups == 0 || g.stride.0 == 0 || g.stride.1 == 0 || g.dilation.0 == 0 || g.dilation.1 == 0
    {
        return bad(format!(
            "stride {:?}, dilation {:?} and groups {} must all be positive",
            g.stride, g.dilation, g.groups
        ));
    }
    if c % g.groups != 0 || o % g.groups != 0 {
        return bad(format!(
            "{c} input and {o} output channels must both be divisible by groups = {}",
            g.groups
        ));
    }
    if cg != c / g.groups {
        return bad(format!(
            "the filter has {cg} input channels per group, the input {c} channels in {} groups",
            g.groups
        ));
    }
    if kh == 0 || kw == 0 {
        return bad("the filter has an empty spatial extent".into());
    }
    let [t, b, l, r] = g.pad;
    let (eh, ew) = (g.dilation.0 * (kh - 1) + 1, g.dilation.1 * (kw - 1) + 1);
    let (hp, wp) = (h + t + b, w + l + r);
    if hp < eh || wp < ew {
        return bad(format!(
            "the padded input {hp}×{wp} is smaller than the dilated filter {eh}×{ew}"
        ));
    }
    Ok(((hp - eh) / g.stride.0 + 1, (wp - ew) / g.stride.1 + 1))
}

/// Shapes as cuDNN sees them: the explicitly padded input and the symmetric padding; and the
/// shapes the caller's buffers hold.
struct Plan {
    sym: (usize, usize),
    extra: [usize; 4],
    x_shape: [usize; 4],
    xp_shape: [usize; 4],
    w_shape: [usize; 4],
    y_shape: [usize; 4],
}

/// What a buffer of a convolution holds, for checking its length.
#[derive(Clone, Copy)]
enum Role {
    Input,
    Filter,
    Bias,
    OutputGradient,
}

impl Plan {
    /// The name and the number of values of a buffer with `role`.
    fn expects(&self, role: Role) -> (&'static str, usize) {
        match role {
            Role::Input => ("the input", self.x_shape.iter().product()),
            Role::Filter => ("the filter", self.w_shape.iter().product()),
            Role::Bias => ("the bias", self.w_shape[0]),
            Role::OutputGradient => ("the output gradient", self.y_shape.iter().product()),
        }
    }
}

/// The device and the plan of a convolution of `x_shape` with `w_shape`, after checking the
/// geometry, that `bufs` live on one device and that each holds the values its role asks for.
fn prepare(
    op: &'static str,
    (x_shape, w_shape): ([usize; 4], [usize; 4]),
    g: &Conv2dGeometry,
    bufs: &[(Role, &CudaBuf)],
) -> Result<(Arc<Dev>, Plan)> {
    let all: Vec<&CudaBuf> = bufs.iter().map(|(_, b)| *b).collect();
    let dev = same_device(op, &all)?;
    let (oh, ow) = conv2d_output_hw(x_shape, w_shape, g)?;
    let (sym, extra) = g.split_pad();
    let [n, c, h, w] = x_shape;
    let pl = Plan {
        sym,
        extra,
        x_shape,
        xp_shape: [n, c, h + extra[0] + extra[1], w + extra[2] + extra[3]],
        w_shape,
        y_shape: [n, w_shape[0], oh, ow],
    };
    for &(role, b) in bufs {
        let (what, len) = pl.expects(role);
        check_len(op, what, b, len)?;
    }
    Ok((dev, pl))
}

/// Describes the problem of pass `P` and runs it: `(px, pw, py)` are the addresses of the
/// (padded) input or its gradient, the filter or its gradient, and the output or its gradient.
fn solve<P: Pass>(
    dev: &Arc<Dev>,
    pl: &Plan,
    g: &Conv2dGeometry,
    (px, pw, py): (u64, u64, u64),
) -> Result<()> {
    let w_shape = pl.w_shape;
    let tf32 = tf32_allowed();
    let p = Problem {
        key: AlgoKey {
            dir: P::DIR,
            x: pl.xp_shape,
            w: w_shape,
            sym_pad: pl.sym,
            stride: g.stride,
            dilation: g.dilation,
            groups: g.groups,
            tf32,
        },
        x: TensorDesc::nchw(pl.xp_shape)?,
        w: FilterDesc::oihw(w_shape)?,
        y: TensorDesc::nchw(pl.y_shape)?,
        conv: ConvDesc::cross_correlation(
            pl.sym,
            g.stride,
            g.dilation,
            g.groups,
            default_math(tf32),
        )?,
        px,
        pw,
        py,
    };
    run::<P>(dev, &p)
}

/// The input padded by the asymmetric remainder, or `None` when cuDNN's symmetric padding covers
/// everything.
fn padded_input(x: &CudaBuf, x_shape: [usize; 4], pl: &Plan) -> Result<Option<CudaBuf>> {
    if pl.extra == [0; 4] {
        Ok(None)
    } else {
        pad2d(x, x_shape, pl.extra, 0.0).map(Some)
    }
}

/// `y[n, o, oh, ow] = Σ x ⋆ w (+ bias[o])`. `x`: `[n, c, h, w]`, `w`: `[o, c / groups, kh, kw]`,
/// `bias`: `[o]`. Returns the output (shape `[n, o, oh, ow]` from [`conv2d_output_hw`]).
pub fn conv2d_forward(
    x: &CudaBuf,
    x_shape: [usize; 4],
    w: &CudaBuf,
    w_shape: [usize; 4],
    bias: Option<&CudaBuf>,
    g: &Conv2dGeometry,
) -> Result<CudaBuf> {
    let mut bufs = vec![(Role::Input, x), (Role::Filter, w)];
    bufs.extend(bias.map(|b| (Role::Bias, b)));
    let (dev, pl) = prepare("conv2d", (x_shape, w_shape), g, &bufs)?;
    let y = alloc(&dev, pl.y_shape.iter().product())?;
    if y.is_empty() {
        return Ok(y);
    }
    if x.is_empty() {
        // No input channels (or batch): the output is the bias alone.
        let mut y = y;
        y.fill_zero()?;
        if let Some(b) = bias {
            add_bias(&dev, &mut y, b, pl.y_shape)?;
        }
        return Ok(y);
    }
    let xp = padded_input(x, x_shape, &pl)?;
    let xsrc = xp.as_ref().unwrap_or(x);
    solve::<Forward>(&dev, &pl, g, (xsrc.ptr(), w.ptr(), y.ptr()))?;
    let mut y = y;
    if let Some(b) = bias {
        add_bias(&dev, &mut y, b, pl.y_shape)?;
    }
    Ok(y)
}

fn add_bias(dev: &Arc<Dev>, y: &mut CudaBuf, b: &CudaBuf, y_shape: [usize; 4]) -> Result<()> {
    let [n, o, oh, ow] = y_shape;
    launch(
        dev,
        "add_bias_nchw",
        cfg_1d(y.len()),
        &[Arg::P(y.ptr()), Arg::P(b.ptr()), i(n), i(o), i(oh * ow)],
    )
}

/// The input gradient `dx` (`[n, c, h, w]` = `x_shape`) from the output gradient `dy` and the
/// filter `w`.
pub fn conv2d_backward_data(
    dy: &CudaBuf,
    w: &CudaBuf,
    w_shape: [usize; 4],
    x_shape: [usize; 4],
    g: &Conv2dGeometry,
) -> Result<CudaBuf> {
    let bufs = [(Role::OutputGradient, dy), (Role::Filter, w)];
    let (dev, pl) = prepare("conv2d backward", (x_shape, w_shape), g, &bufs)?;
    let dxp = alloc(&dev, pl.xp_shape.iter().product())?;
    if dxp.is_empty() {
        return Ok(dxp);
    }
    if dy.is_empty() {
        let mut dx = alloc(&dev, x_shape.iter().product())?;
        dx.fill_zero()?;
        return Ok(dx);
    }
    solve::<BackwardData>(&dev, &pl, g, (dxp.ptr(), w.ptr(), dy.ptr()))?;
    if pl.extra == [0; 4] {
        Ok(dxp)
    } else {
        crop2d(&dxp, x_shape, pl.extra)
    }
}

/// The filter gradient `dw` (`w_shape`) from the input `x` and the output gradient `dy`.
pub fn conv2d_backward_filter(
    x: &CudaBuf,
    x_shape: [usize; 4],
    dy: &CudaBuf,
    w_shape: [usize; 4],
    g: &Conv2dGeometry,
) -> Result<CudaBuf> {
    let bufs = [(Role::Input, x), (Role::OutputGradient, dy)];
    let (dev, pl) = prepare("conv2d backward", (x_shape, w_shape), g, &bufs)?;
    let mut dw = alloc(&dev, w_shape.iter().product())?;
    if dw.is_empty() {
        return Ok(dw);
    }
    if x.is_empty() || dy.is_empty() {
        dw.fill_zero()?;
        return Ok(dw);
    }
    let xp = padded_input(x, x_shape, &pl)?;
    let xsrc = xp.as_ref().unwrap_or(x);
    solve::<BackwardFilter>(&dev, &pl, g, (xsrc.ptr(), dw.ptr(), dy.ptr()))?;
    Ok(dw)
}

/// The bias gradient `[o]`: `dy` (`[n, o, oh, ow]`) summed over batch and space.
pub fn conv2d_backward_bias(dy: &CudaBuf, y_shape: [usize; 4]) -> Result<CudaBuf> {
    reduce_sum(
        dy,
        &y_shape,
        &[true, false, true, true],
        1.0,
        "conv2d bias gradient",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(pad: [usize; 4]) -> Conv2dGeometry {
        Conv2dGeometry {
            stride: (1, 1),
            pad,
            dilation: (1, 1),
            groups: 1,
        }
    }

    #[test]
    fn asymmetric_padding_splits_into_symmetric_and_explicit() {
        assert_eq!(geo([0, 1, 0, 1]).split_pad(), ((0, 0), [0, 1, 0, 1]));
        assert_eq!(geo([1, 2, 2, 1]).split_pad(), ((1, 1), [0, 1, 1, 0]));
        assert_eq!(geo([2, 2, 3, 3]).split_pad(), ((2, 3), [0; 4]));
    }

    #[test]
    fn output_size_and_validation() {
        // TF SAME, stride 2, k 3 on 8x8: out 4, total pad 1 -> top 0, bottom 1.
        let g = Conv2dGeometry {
            stride: (2, 2),
            pad: [0, 1, 0, 1],
            dilation: (1, 1),
            groups: 1,
        };
        assert_eq!(
            conv2d_output_hw([1, 3, 8, 8], [4, 3, 3, 3], &g).unwrap(),
            (4, 4)
        );
        let dil = Conv2dGeometry {
            dilation: (2, 2),
            ..geo([2, 2, 2, 2])
        };
        assert_eq!(
            conv2d_output_hw([1, 1, 5, 5], [1, 1, 3, 3], &dil).unwrap(),
            (5, 5)
        );
        let grouped = Conv2dGeometry {
            groups: 2,
            ..geo([0; 4])
        };
        let e = conv2d_output_hw([1, 4, 5, 5], [6, 3, 3, 3], &grouped).unwrap_err();
        assert!(e.to_string().contains("per group"), "{e}");
        let e = conv2d_output_hw([1, 3, 2, 2], [1, 3, 3, 3], &geo([0; 4])).unwrap_err();
        assert!(e.to_string().contains("smaller"), "{e}");
    }
}
