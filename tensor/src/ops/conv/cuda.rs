//! The CUDA path of [`Tensor::conv2d`]: cuDNN through [`crate::cuda`]. CUDA tensors are always
//! plain, so there is no layout or CPU-backend choice to make; the geometry (TF-"SAME" already
//! resolved into explicit per-side padding) is the one the CPU path uses.

use super::ConvGeom;
use crate::cuda::{self, Conv2dGeometry, CudaBuf};
use crate::layout::Layout;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};

fn geometry(g: &ConvGeom) -> Conv2dGeometry {
    Conv2dGeometry {
        stride: (g.sh, g.sw),
        pad: [g.pt, g.pb, g.pl, g.pr],
        dilation: (g.dh, g.dw),
        groups: g.groups,
    }
}

/// The device buffer of an operand; devices were checked before dispatch, so a host buffer
/// here is a bug rather than a user error, reported without panicking.
fn buf<'a>(s: &'a Storage, what: &str) -> Result<&'a CudaBuf> {
    match s {
        Storage::Cuda(b) => Ok(b),
        Storage::Cpu(_) => Err(Error::invalid(
            "conv2d",
            format!("{what} is on the CPU while the input is on a CUDA device"),
        )),
    }
}

fn on_device(b: CudaBuf, shape: [usize; 4], like: &Tensor) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(b),
        Shape::new(shape),
        Layout::Plain,
        like.device(),
    )
}

/// Forward and recorded backward of a convolution whose operands live on one CUDA device.
pub(super) fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: ConvGeom) -> Result<Tensor> {
    let geo = geometry(&g);
    let x_shape = [g.n, g.c, g.h, g.w];
    let w_shape = [g.o, g.cg(), g.kh, g.kw];
    let y_shape = [g.n, g.o, g.ho, g.wo];
    let out = {
        let (xs, ws) = (x.storage(), w.storage());
        let bs = bias.map(|b| b.storage());
        let bb = bs.as_deref().map(|s| buf(s, "the bias")).transpose()?;
        let y = cuda::conv2d_forward(
            buf(&xs, "the input")?,
            x_shape,
            buf(&ws, "the weight")?,
            w_shape,
            bb,
            &geo,
        )?;
        on_device(y, y_shape, x)
    };
    let has_bias = bias.is_some();
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    Ok(out.with_history("conv2d", &inputs, move |ctx| {
        let (x, w) = (&ctx.inputs[0], &ctx.inputs[1]);
        let dy = ctx.grad.plain()?;
        let ds = dy.storage();
        let dyb = buf(&ds, "the output gradient")?;
        let dx = if ctx.needs_grad(0) {
            let ws = w.storage();
            let dx =
                cuda::conv2d_backward_data(dyb, buf(&ws, "the weight")?, w_shape, x_shape, &geo)?;
            Some(on_device(dx, x_shape, x))
        } else {
            None
        };
        let dw = if ctx.needs_grad(1) {
            let xs = x.storage();
            let dw =
                cuda::conv2d_backward_filter(buf(&xs, "the input")?, x_shape, dyb, w_shape, &geo)?;
            Some(on_device(dw, w_shape, x))
        } else {
            None
        };
        let mut grads = vec![dx, dw];
        if has_bias {
            grads.push(if ctx.needs_grad(2) {
                let db = cuda::conv2d_backward_bias(dyb, y_shape)?;
                Some(Tensor::from_storage(
                    Storage::Cuda(db),
                    Shape::from([g.o]),
                    Layout::Plain,
                    x.device(),
                ))
            } else {
                None
            });
        }
        Ok(grads)
    }))
}
