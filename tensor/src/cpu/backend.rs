//! The CPU backend: [`BackendStorage`] for host buffers, each method one of the kernels of this
//! module's siblings. The convolution goes through [`super::conv_choice`], which picks among the
//! CPU implementations.

use super::reduce::ReducePlan;
use super::{conv_choice, elementwise, linear, loss, norm, pool, reduce, resize, shape};
use crate::backend::{BackendStorage, BatchDims, MatLayout, ParamGrads, Rows};
use crate::layout::{self, Layout};
use crate::ops::conv::{Activation, ConvGeom, CpuConvBackend, Weights};
use crate::ops::pool::PoolGeom;
use crate::ops::{BinaryOp, UnaryOp};
use crate::storage::{CpuBuf, Storage};
use crate::{Device, Error, Result, Shape};

/// The values of an `[n, c, h, w]` tensor `src` (in the other layout) in layout `to`.
pub(crate) fn relayout(src: &[f32], [n, c, h, w]: [usize; 4], to: Layout) -> CpuBuf {
    let mut dst = CpuBuf::zeros(src.len());
    match to {
        Layout::Blocked16 => layout::plain_to_blocked16(src, n, c, h * w, &mut dst),
        Layout::Plain => layout::blocked16_to_plain(src, n, c, h * w, &mut dst),
    }
    dst
}

impl<'a> Activation<'a, CpuBuf> {
    /// The host values.
    fn host(self) -> Activation<'a> {
        Activation {
            data: self.data.as_slice(),
            layout: self.layout,
        }
    }
}

impl<'a> Weights<'a, CpuBuf> {
    /// The host values.
    fn host(self) -> Weights<'a> {
        Weights {
            data: self.data.as_slice(),
            stamp: self.stamp,
        }
    }
}

fn operand(data: &[f32], l: MatLayout) -> linear::Operand<'_> {
    linear::Operand {
        data,
        stride: l.stride,
        cols: l.cols,
        trans: l.trans,
    }
}

impl BackendStorage for CpuBuf {
    fn of(s: &Storage) -> Option<&Self> {
        match s {
            Storage::Cpu(b) => Some(b),
            Storage::Cuda(_) => None,
        }
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn to_host(&self) -> Result<Vec<f32>> {
        Ok(self.to_vec())
    }
    fn copy_from(&mut self, src: &Self) -> Result<()> {
        if src.len() != self.len() {
            return Err(Error::invalid(
                "copy_from",
                format!(
                    "source has {} values, destination {}",
                    src.len(),
                    self.len()
                ),
            ));
        }
        self.copy_from_slice(src);
        Ok(())
    }
    fn duplicate(&self) -> Result<Self> {
        Ok(CpuBuf::new(self.to_vec()))
    }
    fn relayout(&self, dims: [usize; 4], from: Layout, to: Layout) -> Result<Self> {
        if from == to {
            return self.duplicate();
        }
        Ok(relayout(self, dims, to))
    }

    fn unary(&self, op: UnaryOp) -> Result<Self> {
        Ok(elementwise::unary(op, self))
    }
    fn unary_backward(&self, op: UnaryOp, y: &Self, g: &Self) -> Result<Self> {
        Ok(elementwise::unary_backward(op, self, y, g))
    }
    fn binary(&self, op: BinaryOp, sa: &Shape, b: &Self, sb: &Shape, out: &Shape) -> Result<Self> {
        Ok(elementwise::binary(op, self, sa, b, sb, out))
    }
    fn sum_to(&self, from: &Shape, to: &Shape) -> Result<Self> {
        Ok(elementwise::sum_to(self, from, to))
    }
    fn expand(&self, from: &Shape, to: &Shape) -> Result<Self> {
        Ok(elementwise::expand(self, from, to))
    }

    fn sum_over(&self, dims: &[usize], reduce: &[bool], scale: f64) -> Result<Self> {
        Ok(reduce::sum(self, &ReducePlan::new(dims, reduce), scale))
    }
    fn broadcast_back(&self, dims: &[usize], reduce: &[bool], scale: f32) -> Result<Self> {
        let plan = ReducePlan::new(dims, reduce);
        Ok(reduce::broadcast_back(
            self,
            &plan,
            scale,
            dims.iter().product(),
        ))
    }
    fn max_dim(&self, shape: &Shape, dim: usize) -> Result<(Self, Vec<usize>)> {
        let (outer, d, inner) = shape.around(dim);
        Ok(reduce::max_dim(self, outer, d, inner))
    }
    fn max_dim_backward(&self, idx: &[usize], shape: &Shape, dim: usize) -> Result<Self> {
        let (outer, d, inner) = shape.around(dim);
        Ok(reduce::max_dim_backward(self, idx, outer, d, inner))
    }

    fn matmul(&self, a: MatLayout, b: &Self, bl: MatLayout, dims: BatchDims) -> Result<Self> {
        Ok(linear::matmul(dims, operand(self, a), operand(b, bl)))
    }
    fn linear(
        &self,
        w: &Self,
        bias: Option<&Self>,
        (n, i, o): (usize, usize, usize),
    ) -> Result<Self> {
        Ok(linear::linear(self, w, bias.map(|b| b.as_slice()), n, i, o))
    }

    fn softmax(&self, k: usize, log: bool) -> Result<Self> {
        Ok(loss::softmax(self, k, log))
    }
    fn softmax_backward(&self, g: &Self, k: usize, log: bool) -> Result<Self> {
        Ok(if log {
            loss::log_softmax_backward(self, g, k)
        } else {
            loss::softmax_backward(self, g, k)
        })
    }
    fn cross_entropy(&self, k: usize, targets: &[usize], smoothing: f32) -> Result<Self> {
        let l = loss::cross_entropy(self, k, targets, smoothing);
        Ok(CpuBuf::new(vec![l as f32]))
    }
    fn cross_entropy_backward(
        &self,
        k: usize,
        targets: &[usize],
        smoothing: f32,
        g: &Self,
    ) -> Result<Self> {
        Ok(loss::cross_entropy_backward(
            self, k, targets, smoothing, g[0],
        ))
    }

    fn layer_norm(
        &self,
        ncs: (usize, usize, usize),
        gamma: Option<&Self>,
        beta: Option<&Self>,
        eps: f32,
    ) -> Result<(Self, Self)> {
        let (gamma, beta) = (gamma.map(|b| b.as_slice()), beta.map(|b| b.as_slice()));
        let f = norm::layer_norm(self, ncs, gamma, beta, eps);
        Ok((f.y, f.stats))
    }
    fn layer_norm_backward(
        &self,
        g: &Self,
        stats: &Self,
        ncs: (usize, usize, usize),
        gamma: Option<&Self>,
        need: [bool; 3],
    ) -> Result<[Option<Self>; 3]> {
        let gamma = gamma.map(|b| b.as_slice());
        let b = norm::layer_norm_backward(self, g, stats, ncs, gamma, need);
        Ok([b.dx, b.dgamma, b.dbeta])
    }

    fn resize_bilinear(
        &self,
        [n, c, h, w]: [usize; 4],
        out: (usize, usize),
        align: bool,
    ) -> Result<Self> {
        Ok(resize::resize_bilinear(self, n * c, (h, w), out, align))
    }
    fn resize_bilinear_backward(
        &self,
        [n, c, h, w]: [usize; 4],
        out: (usize, usize),
        align: bool,
    ) -> Result<Self> {
        Ok(resize::resize_bilinear_backward(
            self,
            n * c,
            (h, w),
            out,
            align,
        ))
    }
    fn max_pool2d(&self, g: &PoolGeom, keep_argmax: bool) -> Result<(Self, Vec<u32>)> {
        let mut argmax = if keep_argmax {
            vec![0u32; g.planes() * g.oh * g.ow]
        } else {
            Vec::new()
        };
        let y = pool::max_pool2d(self, g, keep_argmax.then_some(argmax.as_mut_slice()));
        Ok((y, argmax))
    }
    fn max_pool2d_backward(
        &self,
        _x: &Self,
        _y: &Self,
        argmax: &[u32],
        g: &PoolGeom,
    ) -> Result<Self> {
        Ok(pool::max_pool2d_backward(self, argmax, g))
    }
    fn avg_pool2d(&self, g: &PoolGeom) -> Result<Self> {
        Ok(pool::avg_pool2d(self, g))
    }
    fn avg_pool2d_backward(&self, g: &PoolGeom) -> Result<Self> {
        Ok(pool::avg_pool2d_backward(self, g))
    }
    fn global_avg_pool(&self, planes: usize, hw: usize) -> Result<Self> {
        Ok(pool::global_avg_pool(self, planes, hw))
    }
    fn global_avg_pool_backward(&self, planes: usize, hw: usize) -> Result<Self> {
        Ok(pool::global_avg_pool_backward(self, planes, hw))
    }

    fn copy_rows(&self, s: Rows, dst: &mut Self, d: Rows, chunk: usize) -> Result<()> {
        shape::copy_rows(self, s, dst, d, chunk);
        Ok(())
    }
    fn transpose2d(&self, r: usize, c: usize) -> Result<Self> {
        Ok(shape::transpose2d(self, r, c))
    }

    fn conv2d(
        x: Activation<'_, Self>,
        w: Weights<'_, Self>,
        bias: Option<&Self>,
        g: &ConvGeom,
        cpu: CpuConvBackend,
    ) -> Result<(Self, Layout)> {
        let bias = bias.map(|b| b.as_slice());
        conv_choice::forward(x.host(), w.host(), bias, g, cpu)
    }
    fn conv2d_backward_data(
        dy: Activation<'_, Self>,
        w: Weights<'_, Self>,
        x_layout: Layout,
        g: &ConvGeom,
        has_bias: bool,
        cpu: CpuConvBackend,
    ) -> Result<(Self, Layout)> {
        conv_choice::backward_data(dy.host(), w.host(), x_layout, g, (has_bias, cpu))
    }
    fn conv2d_backward_params(
        x: Activation<'_, Self>,
        dy: Activation<'_, Self>,
        g: &ConvGeom,
        want: ParamGrads,
        cpu: CpuConvBackend,
    ) -> Result<(Option<Self>, Option<Self>)> {
        conv_choice::backward_params(x.host(), dy.host(), g, want, cpu)
    }
}
