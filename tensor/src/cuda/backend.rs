//! The CUDA backend: [`BackendStorage`] for device buffers, each method one of this module's
//! functions (cuDNN for convolution and pooling, cuBLAS for products, NVRTC kernels for the
//! rest). CUDA tensors are always plain; the CPU's convolution choice does not apply.

use super::{Conv2dGeometry, CudaBuf, DevMat, Pool2dGeometry};
use crate::backend::{BackendStorage, BatchDims, MatLayout, ParamGrads, Rows};
use crate::ops::conv::{Activation, ConvGeom, CpuConvBackend, Weights};
use crate::ops::pool::PoolGeom;
use crate::ops::{BinaryOp, UnaryOp};
use crate::storage::Storage;
use crate::{Device, Error, Layout, Result, Shape};

/// The convolution's geometry in cuDNN's terms (TF-"SAME" already resolved per side).
fn conv_geometry(g: &ConvGeom) -> Conv2dGeometry {
    Conv2dGeometry {
        stride: (g.sh, g.sw),
        pad: [g.pt, g.pb, g.pl, g.pr],
        dilation: (g.dh, g.dw),
        groups: g.groups,
    }
}

/// The pooling's window geometry in cuDNN's terms.
fn pool_geometry(g: &PoolGeom) -> Pool2dGeometry {
    Pool2dGeometry {
        kernel: (g.kh, g.kw),
        stride: (g.sh, g.sw),
        pad_top: g.pad_top,
        pad_left: g.pad_left,
        out: (g.oh, g.ow),
    }
}

fn mat(buf: &CudaBuf, l: MatLayout) -> DevMat<'_> {
    DevMat {
        buf,
        offset: 0,
        ld: l.cols,
        trans: l.trans,
    }
}

impl BackendStorage for CudaBuf {
    fn of(s: &Storage) -> Option<&Self> {
        match s {
            Storage::Cuda(b) => Some(b),
            Storage::Cpu(_) => None,
        }
    }
    fn device(&self) -> Device {
        Device::Cuda(self.ordinal())
    }
    fn len(&self) -> usize {
        CudaBuf::len(self)
    }
    fn to_host(&self) -> Result<Vec<f32>> {
        CudaBuf::to_host(self)
    }
    fn copy_from(&mut self, src: &Self) -> Result<()> {
        CudaBuf::copy_from(self, src)
    }
    fn duplicate(&self) -> Result<Self> {
        self.try_clone()
    }
    fn relayout(&self, _dims: [usize; 4], from: Layout, to: Layout) -> Result<Self> {
        if from == to {
            return self.try_clone();
        }
        Err(Error::invalid(
            "to_layout",
            "CUDA tensors always use the plain layout",
        ))
    }

    fn unary(&self, op: UnaryOp) -> Result<Self> {
        super::unary(op, self)
    }
    fn unary_backward(&self, op: UnaryOp, y: &Self, g: &Self) -> Result<Self> {
        super::unary_backward(op, self, y, g)
    }
    fn binary(&self, op: BinaryOp, sa: &Shape, b: &Self, sb: &Shape, out: &Shape) -> Result<Self> {
        super::binary(op, self, sa, b, sb, out)
    }
    fn sum_to(&self, from: &Shape, to: &Shape) -> Result<Self> {
        super::sum_to(self, from, to)
    }
    fn expand(&self, from: &Shape, to: &Shape) -> Result<Self> {
        super::expand(self, from, to)
    }

    fn sum_over(&self, dims: &[usize], reduce: &[bool], scale: f64) -> Result<Self> {
        super::sum_over(self, dims, reduce, scale as f32)
    }
    fn broadcast_back(&self, dims: &[usize], reduce: &[bool], scale: f32) -> Result<Self> {
        super::broadcast_back(self, dims, reduce, scale)
    }
    fn max_dim(&self, shape: &Shape, dim: usize) -> Result<(Self, Vec<usize>)> {
        super::max_dim(self, shape, dim)
    }
    fn max_dim_backward(&self, idx: &[usize], shape: &Shape, dim: usize) -> Result<Self> {
        super::max_dim_backward(self, idx, shape, dim)
    }

    fn matmul(&self, a: MatLayout, b: &Self, bl: MatLayout, dims: BatchDims) -> Result<Self> {
        super::matmul_strided(dims, (mat(self, a), a.stride), (mat(b, bl), bl.stride))
    }
    fn linear(
        &self,
        w: &Self,
        bias: Option<&Self>,
        (n, i, o): (usize, usize, usize),
    ) -> Result<Self> {
        super::linear_forward(self, w, bias, n, i, o)
    }

    fn softmax(&self, k: usize, log: bool) -> Result<Self> {
        let rows = self.len() / k;
        if log {
            super::log_softmax_forward(self, rows, k)
        } else {
            super::softmax_forward(self, rows, k)
        }
    }
    fn softmax_backward(&self, g: &Self, k: usize, log: bool) -> Result<Self> {
        let rows = self.len() / k;
        if log {
            super::log_softmax_backward(self, g, rows, k)
        } else {
            super::softmax_backward(self, g, rows, k)
        }
    }
    fn cross_entropy(&self, k: usize, targets: &[usize], smoothing: f32) -> Result<Self> {
        super::cross_entropy_forward(self, targets.len(), k, targets, smoothing)
    }
    fn cross_entropy_backward(
        &self,
        k: usize,
        targets: &[usize],
        smoothing: f32,
        g: &Self,
    ) -> Result<Self> {
        super::cross_entropy_backward(self, targets.len(), k, targets, smoothing, g)
    }

    fn layer_norm(
        &self,
        (n, c, s): (usize, usize, usize),
        gamma: Option<&Self>,
        beta: Option<&Self>,
        eps: f32,
    ) -> Result<(Self, Self)> {
        super::layer_norm_forward(self, n, c, s, gamma, beta, eps)
    }
    fn layer_norm_backward(
        &self,
        g: &Self,
        stats: &Self,
        (n, c, s): (usize, usize, usize),
        gamma: Option<&Self>,
        need: [bool; 3],
    ) -> Result<[Option<Self>; 3]> {
        let (dx, dg, db) = super::layer_norm_backward(self, g, stats, (n, c, s), gamma, need)?;
        Ok([dx, dg, db])
    }

    fn resize_bilinear(
        &self,
        x_shape: [usize; 4],
        out: (usize, usize),
        align: bool,
    ) -> Result<Self> {
        super::resize_bilinear_forward(self, x_shape, out.0, out.1, align)
    }
    fn resize_bilinear_backward(
        &self,
        x_shape: [usize; 4],
        out: (usize, usize),
        align: bool,
    ) -> Result<Self> {
        super::resize_bilinear_backward(self, x_shape, out.0, out.1, align)
    }
    fn max_pool2d(&self, g: &PoolGeom, _keep_argmax: bool) -> Result<(Self, Vec<u32>)> {
        // No argmax: the backward pass recomputes the winners from the input and the output.
        let y = super::max_pool2d_forward(self, g.in_shape(), &pool_geometry(g))?;
        Ok((y, Vec::new()))
    }
    fn max_pool2d_backward(
        &self,
        x: &Self,
        y: &Self,
        _argmax: &[u32],
        g: &PoolGeom,
    ) -> Result<Self> {
        super::max_pool2d_backward(x, g.in_shape(), y, self, &pool_geometry(g))
    }
    fn avg_pool2d(&self, g: &PoolGeom) -> Result<Self> {
        super::avg_pool2d_forward(self, g.in_shape(), &pool_geometry(g))
    }
    fn avg_pool2d_backward(&self, g: &PoolGeom) -> Result<Self> {
        super::avg_pool2d_backward(self, g.in_shape(), &pool_geometry(g))
    }
    fn global_avg_pool(&self, planes: usize, hw: usize) -> Result<Self> {
        super::sum_over(self, &[planes, hw], &[false, true], 1.0 / hw as f32)
    }
    fn global_avg_pool_backward(&self, planes: usize, hw: usize) -> Result<Self> {
        super::broadcast_back(self, &[planes, hw], &[false, true], 1.0 / hw as f32)
    }

    fn copy_rows(&self, s: Rows, dst: &mut Self, d: Rows, chunk: usize) -> Result<()> {
        super::copy_rows(self, (s.row, s.off), dst, (d.row, d.off), chunk)
    }
    fn transpose2d(&self, r: usize, c: usize) -> Result<Self> {
        super::transpose2d(self, r, c)
    }

    fn conv2d(
        x: Activation<'_, Self>,
        w: Weights<'_, Self>,
        bias: Option<&Self>,
        g: &ConvGeom,
        _cpu: CpuConvBackend,
    ) -> Result<(Self, Layout)> {
        let (xs, ws) = (g.in_shape(), g.weight_shape());
        let y = super::conv2d_forward(x.data, xs, w.data, ws, bias, &conv_geometry(g))?;
        Ok((y, Layout::Plain))
    }
    fn conv2d_backward_data(
        dy: Activation<'_, Self>,
        w: Weights<'_, Self>,
        _x_layout: Layout,
        g: &ConvGeom,
        _has_bias: bool,
        _cpu: CpuConvBackend,
    ) -> Result<(Self, Layout)> {
        let (xs, ws) = (g.in_shape(), g.weight_shape());
        let dx = super::conv2d_backward_data(dy.data, w.data, ws, xs, &conv_geometry(g))?;
        Ok((dx, Layout::Plain))
    }
    fn conv2d_backward_params(
        x: Activation<'_, Self>,
        dy: Activation<'_, Self>,
        g: &ConvGeom,
        want: ParamGrads,
        _cpu: CpuConvBackend,
    ) -> Result<(Option<Self>, Option<Self>)> {
        let (xs, ws) = (g.in_shape(), g.weight_shape());
        let geo = conv_geometry(g);
        let dw = want
            .weights
            .then(|| super::conv2d_backward_filter(x.data, xs, dy.data, ws, &geo))
            .transpose()?;
        let db = want
            .bias
            .then(|| super::conv2d_backward_bias(dy.data, g.out_shape()))
            .transpose()?;
        Ok((dw, db))
    }
}
