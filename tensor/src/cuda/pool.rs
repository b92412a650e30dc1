//! Max and average pooling on cuDNN.
//!
//! cuDNN pads symmetrically and sizes the output with floor division, while the ops need
//! TF-"SAME" (asymmetric) padding and PyTorch's ceil mode. So cuDNN never pads: we copy the
//! region the windows cover, rows `−pad_top .. (out_h − 1)·stride_h + kernel_h − pad_top` (and
//! likewise for columns), into a tensor of exactly that extent (`pad2d`; cells outside the input
//! get a fill value, input cells outside the region are left out), and cuDNN pools it with
//! padding 0, which yields exactly `out` windows. Unpadded floor-mode problems whose windows
//! cover the input exactly skip the copy. The backward pass maps the region's gradient back
//! (`crop2d`, zero for input cells no window reaches).
//!
//! * Max pooling fills with −∞, so padded cells never win (every window must contain an input
//!   cell, which [`Pool2dGeometry`] validation enforces).
//! * Average pooling fills with zeros and lets cuDNN divide by the full window
//!   (`CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING`; nothing is padding from cuDNN's point of
//!   view), then rescales each output by `kh·kw / (number of input cells in its window)`
//!   (`avg_pool_rescale`): the "exclude padding" average the ops specify. The backward pass
//!   applies the same factor to the output gradient before cuDNN's backward.

use super::buffer::{alloc, CudaBuf};
use super::device::{cuda_err, guarded, Dev};
use super::dnn::{PoolDesc, TensorDesc};
use super::elementwise::{check_len, same_device};
use super::kernels::{cfg_1d, i, launch, Arg};
use crate::{Error, Result};
use cudarc::cudnn::result as dnn;
use cudarc::cudnn::sys;
use std::sync::Arc;

/// Geometry of a 2-D pooling: the padding before the input and the output size, both decided by
/// the caller (TF-"SAME" or explicit padding, floor or ceil mode). Padding after the input is
/// implied: windows reach as far as `(out − 1)·stride + kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dGeometry {
    /// Window `(height, width)`.
    pub kernel: (usize, usize),
    /// Step `(vertical, horizontal)` between windows.
    pub stride: (usize, usize),
    /// Padding rows above the input: window `i` starts at row `i·stride.0 − pad_top`.
    pub pad_top: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
    /// `(out_h, out_w)`.
    pub out: (usize, usize),
}

/// The extent `(hp, wp)` the windows cover, `(out − 1)·stride + kernel`, after checking that
/// every window holds at least one input cell.
fn covered_extent(x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<(usize, usize)> {
    let [_, _, h, w] = x_shape;
    let (kh, kw) = g.kernel;
    let (sh, sw) = g.stride;
    let (oh, ow) = g.out;
    let (t, l) = (g.pad_top, g.pad_left);
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || oh == 0 || ow == 0 {
        return Err(Error::invalid(
            "pool2d",
            format!(
                "kernel {:?}, stride {:?} and output size {:?} must be positive",
                g.kernel, g.stride, g.out
            ),
        ));
    }
    // The first window must reach the input, the last must start before its end.
    if t >= kh || l >= kw || (oh - 1) * sh >= h + t || (ow - 1) * sw >= w + l {
        return Err(Error::invalid(
            "pool2d",
            format!(
                "output {:?} with kernel {:?}, stride {:?} and leading padding ({t}, {l}) has \
                 windows outside the {h}×{w} input",
                g.out, g.kernel, g.stride
            ),
        ));
    }
    Ok(((oh - 1) * sh + kh, (ow - 1) * sw + kw))
}

/// Whether the covered extent is exactly the input (no copy needed).
fn is_identity(x_shape: [usize; 4], g: &Pool2dGeometry, hw: (usize, usize)) -> bool {
    g.pad_top == 0 && g.pad_left == 0 && hw == (x_shape[2], x_shape[3])
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
    dev.bind()?;
    let (xd, yd, pd) = (
        TensorDesc::nchw(xp_shape)?,
        TensorDesc::nchw(y_shape)?,
        PoolDesc::new_2d(mode, g.kernel, g.stride)?,
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
    dev.bind()?;
    let (xd, yd, pd) = (
        TensorDesc::nchw(xp_shape)?,
        TensorDesc::nchw(y_shape)?,
        PoolDesc::new_2d(mode, g.kernel, g.stride)?,
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

/// The covered window region of `x` (`[n, c, hp, wp]`), cells outside the input set to `value`;
/// `None` when that region is `x` itself.
fn window_region(
    x: &CudaBuf,
    x_shape: [usize; 4],
    g: &Pool2dGeometry,
    hw: (usize, usize),
    value: f32,
) -> Result<Option<CudaBuf>> {
    if is_identity(x_shape, g, hw) {
        return Ok(None);
    }
    region_copy(x, x_shape, g, hw, value).map(Some)
}

fn region_copy(
    x: &CudaBuf,
    x_shape: [usize; 4],
    g: &Pool2dGeometry,
    hw: (usize, usize),
    value: f32,
) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    let dev = x.dev().clone();
    let out = alloc(&dev, n * c * hw.0 * hw.1)?;
    if !out.is_empty() {
        launch(
            &dev,
            "pad2d",
            cfg_1d(out.len()),
            &[
                Arg::P(x.ptr()),
                Arg::P(out.ptr()),
                i(n * c),
                i(h),
                i(w),
                i(hw.0),
                i(hw.1),
                i(g.pad_top),
                i(g.pad_left),
                Arg::F(value),
            ],
        )?;
    }
    Ok(out)
}

/// The adjoint of `region_copy`: input cells take their value from the region, cells outside
/// it (never in a window) get 0.
fn region_to_input(
    xp: &CudaBuf,
    x_shape: [usize; 4],
    g: &Pool2dGeometry,
    hw: (usize, usize),
) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    let dev = xp.dev().clone();
    let out = alloc(&dev, n * c * h * w)?;
    if !out.is_empty() {
        launch(
            &dev,
            "crop2d",
            cfg_1d(out.len()),
            &[
                Arg::P(xp.ptr()),
                Arg::P(out.ptr()),
                i(n * c),
                i(h),
                i(w),
                i(hw.0),
                i(hw.1),
                i(g.pad_top),
                i(g.pad_left),
            ],
        )?;
    }
    Ok(out)
}

fn region_shape(x_shape: [usize; 4], hw: (usize, usize)) -> [usize; 4] {
    [x_shape[0], x_shape[1], hw.0, hw.1]
}

/// Max pooling of `x` (`[n, c, h, w]`) to `[n, c, out_h, out_w]`; padded cells never win.
pub fn max_pool2d_forward(x: &CudaBuf, x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<CudaBuf> {
    check_input("max_pool2d", x, x_shape)?;
    let hw = covered_extent(x_shape, g)?;
    let dev = x.dev().clone();
    let xp = window_region(x, x_shape, g, hw, f32::NEG_INFINITY)?;
    pool_forward(
        &dev,
        max_mode(),
        xp.as_ref().unwrap_or(x),
        region_shape(x_shape, hw),
        g,
    )
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
    let hw = covered_extent(x_shape, g)?;
    let out_len = x_shape[0] * x_shape[1] * g.out.0 * g.out.1;
    check_len("max_pool2d backward", "the output", y, out_len)?;
    check_len("max_pool2d backward", "the output gradient", dy, out_len)?;
    let xp = window_region(x, x_shape, g, hw, f32::NEG_INFINITY)?;
    let dxp = pool_backward(
        &dev,
        max_mode(),
        xp.as_ref().unwrap_or(x),
        region_shape(x_shape, hw),
        y,
        dy,
        g,
    )?;
    if is_identity(x_shape, g, hw) {
        Ok(dxp)
    } else {
        region_to_input(&dxp, x_shape, g, hw)
    }
}

/// `src * kh·kw / count` per output position (see the module docs).
fn rescale(
    dev: &Arc<Dev>,
    src: &CudaBuf,
    x_shape: [usize; 4],
    g: &Pool2dGeometry,
) -> Result<CudaBuf> {
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
            i(g.pad_top),
            i(g.pad_left),
        ],
    )?;
    Ok(out)
}

/// Average pooling of `x` (`[n, c, h, w]`) over the input cells of each window (padding is not
/// counted), to `[n, c, out_h, out_w]`.
pub fn avg_pool2d_forward(x: &CudaBuf, x_shape: [usize; 4], g: &Pool2dGeometry) -> Result<CudaBuf> {
    check_input("avg_pool2d", x, x_shape)?;
    let hw = covered_extent(x_shape, g)?;
    let dev = x.dev().clone();
    let xp = window_region(x, x_shape, g, hw, 0.0)?;
    let y = pool_forward(
        &dev,
        avg_mode(),
        xp.as_ref().unwrap_or(x),
        region_shape(x_shape, hw),
        g,
    )?;
    if is_identity(x_shape, g, hw) {
        Ok(y)
    } else {
        rescale(&dev, &y, x_shape, g)
    }
}

/// The input gradient of [`avg_pool2d_forward`] from the output gradient `dy`.
pub fn avg_pool2d_backward(
    dy: &CudaBuf,
    x_shape: [usize; 4],
    g: &Pool2dGeometry,
) -> Result<CudaBuf> {
    let hw = covered_extent(x_shape, g)?;
    let out_len = x_shape[0] * x_shape[1] * g.out.0 * g.out.1;
    check_len("avg_pool2d backward", "the output gradient", dy, out_len)?;
    let dev = dy.dev().clone();
    let identity = is_identity(x_shape, g, hw);
    let scaled = if identity {
        None
    } else {
        Some(rescale(&dev, dy, x_shape, g)?)
    };
    let dys = scaled.as_ref().unwrap_or(dy);
    let xp_shape = region_shape(x_shape, hw);
    // cuDNN's average backward reads neither x nor y, but wants valid buffers of their shapes.
    let x_dummy = alloc(&dev, xp_shape.iter().product())?;
    let dxp = pool_backward(&dev, avg_mode(), &x_dummy, xp_shape, dys, dys, g)?;
    if identity {
        Ok(dxp)
    } else {
        region_to_input(&dxp, x_shape, g, hw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(k: usize, s: usize, pad: usize, out: usize) -> Pool2dGeometry {
        Pool2dGeometry {
            kernel: (k, k),
            stride: (s, s),
            pad_top: pad,
            pad_left: pad,
            out: (out, out),
        }
    }

    #[test]
    fn covered_extent_handles_same_ceil_and_floor() {
        // TF SAME, k 3 s 2 on 8: out 4, pad top 0 -> windows cover 9 rows (one padded).
        assert_eq!(
            covered_extent([1, 1, 8, 8], &g(3, 2, 0, 4)).unwrap(),
            (9, 9)
        );
        // Ceil mode, k 2 s 2 on 5: out 3 covers 6.
        assert_eq!(
            covered_extent([1, 1, 5, 5], &g(2, 2, 0, 3)).unwrap(),
            (6, 6)
        );
        // Floor mode on the same input leaves the last row out.
        let floor = g(2, 2, 0, 2);
        assert_eq!(covered_extent([1, 1, 5, 5], &floor).unwrap(), (4, 4));
        assert!(!is_identity([1, 1, 5, 5], &floor, (4, 4)));
        assert!(is_identity([1, 1, 4, 4], &floor, (4, 4)));
        // Windows past the input, or entirely in the leading padding.
        assert!(covered_extent([1, 1, 5, 5], &g(2, 2, 0, 4)).is_err());
        assert!(covered_extent([1, 1, 5, 5], &g(2, 2, 2, 2)).is_err());
    }
}
