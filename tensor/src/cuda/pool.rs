//! Max and average pooling on cuDNN.
//!
//! cuDNN pads symmetrically and sizes the output with floor division, while the ops need
//! TF-"SAME" (asymmetric) padding and PyTorch's ceil mode. So every padded problem is padded
//! explicitly first (`pad2d`) and cuDNN pools the padded tensor without padding of its own:
//!
//! * max pooling pads with −∞, so padded cells never win (for the window geometries the ops
//!   allow, every window contains at least one input cell);
//! * average pooling pads with zeros and lets cuDNN divide by the full window
//!   (`CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING`, nothing is padding from cuDNN's point of
//!   view), then rescales each output by `kh·kw / (number of input cells in its window)`
//!   (`avg_pool_rescale`), which is the "exclude padding" average the ops specify. The backward
//!   pass applies the same factor to the output gradient before cuDNN's backward.
//!
//! Ceil mode is extra padding at the bottom/right: the padded extent is made large enough for the
//! requested output size, `(out − 1)·stride + kernel`.

use super::buffer::{alloc, CudaBuf};
use super::conv::TensorDesc;
use super::device::{cuda_err, guarded, Dev};
use super::elementwise::{check_len, same_device};
use super::kernels::{cfg_1d, i, launch, Arg};
use super::shape::{crop2d, pad2d};
use crate::{Error, Result};
use cudarc::cudnn::result as dnn;
use cudarc::cudnn::sys;
use std::sync::Arc;

/// Geometry of a 2-D pooling with padding resolved per side and the output size decided by the
/// caller (floor or ceil mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dGeometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    /// `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    /// `(out_h, out_w)`.
    pub out: (usize, usize),
}

/// The explicit padding `[t, b, l, r]` (ceil-mode extension included) and the padded `(h, w)`.
fn padded_geometry(x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<([usize; 4], (usize, usize))> {
    let [_, _, h, w] = x_shape;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (oh, ow) = g.out;
    let [t, b, l, r] = g.pad;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || oh == 0 || ow == 0 {
        return Err(Error::invalid(
            "pool2d",
            format!(
                "kernel {:?}, stride {:?} and output size {:?} must be positive",
                g.kernel, g.stride, g.out
            ),
        ));
    }
    if t >= kh + h || l >= kw + w {
        return Err(Error::invalid(
            "pool2d",
            format!("padding {:?} leaves windows with no input cell", g.pad),
        ));
    }
    // Every window must start inside the input or its leading padding, and must fit.
    let need = |o: usize, s: usize, k: usize| (o - 1) * s + k;
    let (hp, wp) = (
        (h + t + b).max(need(oh, sh, kh)),
        (w + l + r).max(need(ow, sw, kw)),
    );
    if (oh - 1) * sh >= h + t || (ow - 1) * sw >= w + l {
        return Err(Error::invalid(
            "pool2d",
            format!(
                "output size {:?} has windows starting past the input (input {h}×{w}, padding \
                 {:?}, stride {:?})",
                g.out, g.pad, g.stride
            ),
        ));
    }
    // cuDNN sizes the output as floor((padded - k) / s) + 1; it must equal the requested size.
    if (hp - kh) / sh + 1 != oh || (wp - kw) / sw + 1 != ow {
        return Err(Error::invalid(
            "pool2d",
            format!(
                "output size {:?} does not match input {h}×{w} with kernel {:?}, stride {:?} and \
                 padding {:?}",
                g.out, g.kernel, g.stride, g.pad
            ),
        ));
    }
    Ok(([t, hp - h - t, l, wp - w - l], (hp, wp)))
}

struct PoolDesc(sys::cudnnPoolingDescriptor_t);
impl PoolDesc {
    fn new(mode: sys::cudnnPoolingMode_t, g: &Pool2dGeometry) -> Result<Self> {
        let d = PoolDesc(
            dnn::create_pooling_descriptor().map_err(|e| cuda_err("cuDNN pooling descriptor", e))?,
        );
        let c = |v: usize| {
            i32::try_from(v)
                .map_err(|_| Error::invalid("pool2d", format!("size {v} exceeds cuDNN's limit")))
        };
        let window = [c(g.kernel.0)?, c(g.kernel.1)?];
        let strides = [c(g.stride.0)?, c(g.stride.1)?];
        // SAFETY: `d.0` was just created; the arrays hold two entries as `nb_dims` says.
        unsafe {
            dnn::set_pooling_descriptor(
                d.0,
                mode,
                sys::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
                2,
                &window,
                &[0, 0],
                &strides,
            )
        }
        .map_err(|e| cuda_err("cuDNN pooling descriptor", e))?;
        Ok(d)
    }
}
impl Drop for PoolDesc {
    fn drop(&mut self) {
        // SAFETY: created by `create_pooling_descriptor`, destroyed once.
        let _ = unsafe { sys::cudnnDestroyPoolingDescriptor(self.0) };
    }
}

fn max_mode() -> sys::cudnnPoolingMode_t {
    sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC
}

fn avg_mode() -> sys::cudnnPoolingMode_t {
    sys::cudnnPoolingMode_t::CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
}

fn pool_forward(
    dev: &Arc<Dev>,
    mode: sys::cudnnPoolingMode_t,
    xp: &CudaBuf,
    xp_shape: [usize; 4],
    g: &Pool2dGeometry,
) -> Result<CudaBuf> {
    let [n, c, _, _] = xp_shape;
    let y_shape = [n, c, g.out.0, g.out.1];
    let y = alloc(dev, y_shape.iter().product())?;
    if y.is_empty() {
        return Ok(y);
    }
    let h = dev.dnn()?;
    let (xd, yd, pd) = (
        TensorDesc::nchw(xp_shape)?,
        TensorDesc::nchw(y_shape)?,
        PoolDesc::new(mode, g)?,
    );
    let (alpha, beta) = (1.0f32, 0.0f32);
    guarded("cuDNN pooling forward", || {
        // SAFETY: descriptors describe the two buffers; alpha/beta are host floats.
        unsafe {
            dnn::pooling_forward(
                h.0,
                pd.0,
                &alpha as *const f32 as *const std::ffi::c_void,
                xd.0,
                xp.ptr() as *const std::ffi::c_void,
                &beta as *const f32 as *const std::ffi::c_void,
                yd.0,
                y.ptr() as *mut std::ffi::c_void,
            )
        }
        .map_err(|e| cuda_err("cuDNN pooling forward", e))
    })?;
    Ok(y)
}

/// dx (padded shape) from cuDNN's pooling backward.
fn pool_backward(
    dev: &Arc<Dev>,
    mode: sys::cudnnPoolingMode_t,
    xp: &CudaBuf,
    xp_shape: [usize; 4],
    y: &CudaBuf,
    dy: &CudaBuf,
    g: &Pool2dGeometry,
) -> Result<CudaBuf> {
    let [n, c, _, _] = xp_shape;
    let y_shape = [n, c, g.out.0, g.out.1];
    let mut dxp = alloc(dev, xp_shape.iter().product())?;
    if dxp.is_empty() {
        return Ok(dxp);
    }
    if dy.is_empty() {
        dxp.fill_zero()?;
        return Ok(dxp);
    }
    let h = dev.dnn()?;
    let (xd, yd, pd) = (
        TensorDesc::nchw(xp_shape)?,
        TensorDesc::nchw(y_shape)?,
        PoolDesc::new(mode, g)?,
    );
    let (alpha, beta) = (1.0f32, 0.0f32);
    guarded("cuDNN pooling backward", || {
        // SAFETY: descriptors describe the buffers (y/dy share a shape, x/dx share a shape);
        // alpha/beta are host floats.
        unsafe {
            sys::cudnnPoolingBackward(
                h.0,
                pd.0,
                &alpha as *const f32 as *const std::ffi::c_void,
                yd.0,
                y.ptr() as *const std::ffi::c_void,
                yd.0,
                dy.ptr() as *const std::ffi::c_void,
                xd.0,
                xp.ptr() as *const std::ffi::c_void,
                &beta as *const f32 as *const std::ffi::c_void,
                xd.0,
                dxp.ptr() as *mut std::ffi::c_void,
            )
        }
        .result()
        .map_err(|e| cuda_err("cuDNN pooling backward", e))
    })?;
    Ok(dxp)
}

fn check_input(op: &'static str, x: &CudaBuf, x_shape: [usize; 4]) -> Result<()> {
    check_len(op, "the input", x, x_shape.iter().product())
}

/// Pads `x` by `pad` with `value` unless `pad` is all zeros.
fn maybe_pad(x: &CudaBuf, x_shape: [usize; 4], pad: [usize; 4], value: f32) -> Result<Option<CudaBuf>> {
    if pad == [0; 4] {
        Ok(None)
    } else {
        pad2d(x, x_shape, pad, value).map(Some)
    }
}

fn padded_shape(x_shape: [usize; 4], hw: (usize, usize)) -> [usize; 4] {
    [x_shape[0], x_shape[1], hw.0, hw.1]
}

/// Max pooling of `x` (`[n, c, h, w]`) to `[n, c, out_h, out_w]`; padded cells never win.
pub fn max_pool2d_forward(x: &CudaBuf, x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<CudaBuf> {
    check_input("max_pool2d", x, x_shape)?;
    let (pad, hw) = padded_geometry(x_shape, g)?;
    let dev = x.dev().clone();
    let xp = maybe_pad(x, x_shape, pad, f32::NEG_INFINITY)?;
    pool_forward(&dev, max_mode(), xp.as_ref().unwrap_or(x), padded_shape(x_shape, hw), g)
}

/// The input gradient of max pooling: each output gradient goes to the maximum of its window.
/// `y` is the forward output (as returned by [`max_pool2d_forward`]).
pub fn max_pool2d_backward(
    x: &CudaBuf,
    x_shape: [usize; 4],
    y: &CudaBuf,
    dy: &CudaBuf,
    g: &Pool2dGeometry,
) -> Result<CudaBuf> {
    check_input("max_pool2d backward", x, x_shape)?;
    let dev = same_device("max_pool2d backward", &[x, y, dy])?;
    let (pad, hw) = padded_geometry(x_shape, g)?;
    let out_len = x_shape[0] * x_shape[1] * g.out.0 * g.out.1;
    check_len("max_pool2d backward", "the output", y, out_len)?;
    check_len("max_pool2d backward", "the output gradient", dy, out_len)?;
    let xp = maybe_pad(x, x_shape, pad, f32::NEG_INFINITY)?;
    let dxp = pool_backward(
        &dev,
        max_mode(),
        xp.as_ref().unwrap_or(x),
        padded_shape(x_shape, hw),
        y,
        dy,
        g,
    )?;
    if pad == [0; 4] {
        Ok(dxp)
    } else {
        crop2d(&dxp, x_shape, pad)
    }
}

/// `src * kh·kw / count` per output position (see the module docs).
fn rescale(dev: &Arc<Dev>, src: &CudaBuf, x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    let out = alloc(dev, src.len())?;
    if src.is_empty() {
        return Ok(out);
    }
    launch(
        dev,
        "avg_pool_rescale",
        cfg_1d(src.len()),
        &[
            Arg::P(src.ptr()),
            Arg::P(out.ptr()),
            i(n * c),
            i(g.out.0),
            i(g.out.1),
            i(h),
            i(w),
            i(g.kernel.0),
            i(g.kernel.1),
            i(g.stride.0),
            i(g.stride.1),
            i(g.pad[0]),
            i(g.pad[2]),
        ],
    )?;
    Ok(out)
}

/// Average pooling of `x` (`[n, c, h, w]`) over the input cells of each window (padding is not
/// counted), to `[n, c, out_h, out_w]`.
pub fn avg_pool2d_forward(x: &CudaBuf, x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<CudaBuf> {
    check_input("avg_pool2d", x, x_shape)?;
    let (pad, hw) = padded_geometry(x_shape, g)?;
    let dev = x.dev().clone();
    let xp = maybe_pad(x, x_shape, pad, 0.0)?;
    let y = pool_forward(&dev, avg_mode(), xp.as_ref().unwrap_or(x), padded_shape(x_shape, hw), g)?;
    if pad == [0; 4] {
        Ok(y)
    } else {
        rescale(&dev, &y, x_shape, g)
    }
}

/// The input gradient of [`avg_pool2d_forward`] from the output gradient `dy`.
pub fn avg_pool2d_backward(dy: &CudaBuf, x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<CudaBuf> {
    let (pad, hw) = padded_geometry(x_shape, g)?;
    let out_len = x_shape[0] * x_shape[1] * g.out.0 * g.out.1;
    check_len("avg_pool2d backward", "the output gradient", dy, out_len)?;
    let dev = dy.dev().clone();
    let xp_shape = padded_shape(x_shape, hw);
    let scaled = if pad == [0; 4] {
        None
    } else {
        Some(rescale(&dev, dy, x_shape, g)?)
    };
    let dys = scaled.as_ref().unwrap_or(dy);
    // cuDNN's average backward reads neither x nor y, but wants valid buffers of their shapes.
    let x_dummy = alloc(&dev, xp_shape.iter().product())?;
    let dxp = pool_backward(&dev, avg_mode(), &x_dummy, xp_shape, dys, dys, g)?;
    if pad == [0; 4] {
        Ok(dxp)
    } else {
        crop2d(&dxp, x_shape, pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(k: usize, s: usize, pad: [usize; 4], out: usize) -> Pool2dGeometry {
        Pool2dGeometry {
            kernel: (k, k),
            stride: (s, s),
            pad,
            out: (out, out),
        }
    }

    #[test]
    fn padding_covers_same_and_ceil_mode() {
        // TF SAME, k 3 s 2 on 8: out 4, total pad 1 -> [0, 1].
        let (pad, hw) = padded_geometry([1, 1, 8, 8], &g(3, 2, [0, 1, 0, 1], 4)).unwrap();
        assert_eq!((pad, hw), ([0, 1, 0, 1], (9, 9)));
        // Ceil mode, k 2 s 2 on 5, no padding: out 3 needs a 6-wide padded input.
        let (pad, hw) = padded_geometry([1, 1, 5, 5], &g(2, 2, [0; 4], 3)).unwrap();
        assert_eq!((pad, hw), ([0, 1, 0, 1], (6, 6)));
        // Floor mode on the same input.
        let (pad, _) = padded_geometry([1, 1, 5, 5], &g(2, 2, [0; 4], 2)).unwrap();
        assert_eq!(pad, [0; 4]);
        // An output size the geometry cannot produce.
        assert!(padded_geometry([1, 1, 5, 5], &g(2, 2, [0; 4], 4)).is_err());
        assert!(padded_geometry([1, 1, 5, 5], &g(2, 2, [0; 4], 1)).is_err());
    }
}
