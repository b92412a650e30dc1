//! The CUDA backend of a build without the `cuda` feature: a buffer type with no values, so the
//! op layer's CUDA arms compile and can never run, and constructors that say how to get the real
//! backend. Creating a tensor on a CUDA device is the only way in, and it fails with
//! [`Error::CudaNotCompiled`].

use crate::backend::{BackendStorage, BatchDims, MatLayout, ParamGrads, Rows};
use crate::ops::conv::{Activation, ConvGeom, CpuConvBackend, Weights};
use crate::ops::pool::PoolGeom;
use crate::ops::{BinaryOp, UnaryOp};
use crate::storage::Storage;
use crate::{Device, Error, Layout, Result, Shape};

/// A CUDA buffer, of which a build without the `cuda` feature has none.
pub enum CudaBuf {}

impl CudaBuf {
    /// Always [`Error::CudaNotCompiled`].
    pub fn zeros(ordinal: usize, _n: usize) -> Result<CudaBuf> {
        Err(Error::CudaNotCompiled(Device::Cuda(ordinal)))
    }
    /// Always [`Error::CudaNotCompiled`].
    pub fn from_host(ordinal: usize, _data: &[f32]) -> Result<CudaBuf> {
        Err(Error::CudaNotCompiled(Device::Cuda(ordinal)))
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
        match *self {}
    }
    fn len(&self) -> usize {
        match *self {}
    }
    fn to_host(&self) -> Result<Vec<f32>> {
        match *self {}
    }
    fn copy_from(&mut self, _: &Self) -> Result<()> {
        match *self {}
    }
    fn duplicate(&self) -> Result<Self> {
        match *self {}
    }
    fn relayout(&self, _: [usize; 4], _: Layout, _: Layout) -> Result<Self> {
        match *self {}
    }
    fn unary(&self, _: UnaryOp) -> Result<Self> {
        match *self {}
    }
    fn unary_backward(&self, _: UnaryOp, _: &Self, _: &Self) -> Result<Self> {
        match *self {}
    }
    fn binary(&self, _: BinaryOp, _: &Shape, _: &Self, _: &Shape, _: &Shape) -> Result<Self> {
        match *self {}
    }
    fn sum_to(&self, _: &Shape, _: &Shape) -> Result<Self> {
        match *self {}
    }
    fn expand(&self, _: &Shape, _: &Shape) -> Result<Self> {
        match *self {}
    }
    fn sum_over(&self, _: &[usize], _: &[bool], _: f64) -> Result<Self> {
        match *self {}
    }
    fn broadcast_back(&self, _: &[usize], _: &[bool], _: f32) -> Result<Self> {
        match *self {}
    }
    fn max_dim(&self, _: &Shape, _: usize) -> Result<(Self, Vec<usize>)> {
        match *self {}
    }
    fn max_dim_backward(&self, _: &[usize], _: &Shape, _: usize) -> Result<Self> {
        match *self {}
    }
    fn matmul(&self, _: MatLayout, _: &Self, _: MatLayout, _: BatchDims) -> Result<Self> {
        match *self {}
    }
    fn linear(&self, _: &Self, _: Option<&Self>, _: (usize, usize, usize)) -> Result<Self> {
        match *self {}
    }
    fn softmax(&self, _: usize, _: bool) -> Result<Self> {
        match *self {}
    }
    fn softmax_backward(&self, _: &Self, _: usize, _: bool) -> Result<Self> {
        match *self {}
    }
    fn cross_entropy(&self, _: usize, _: &[usize], _: f32) -> Result<Self> {
        match *self {}
    }
    fn cross_entropy_backward(&self, _: usize, _: &[usize], _: f32, _: &Self) -> Result<Self> {
        match *self {}
    }
    fn layer_norm(
        &self,
        _: (usize, usize, usize),
        _: Option<&Self>,
        _: Option<&Self>,
        _: f32,
    ) -> Result<(Self, Self)> {
        match *self {}
    }
    fn layer_norm_backward(
        &self,
        _: &Self,
        _: &Self,
        _: (usize, usize, usize),
        _: Option<&Self>,
        _: [bool; 3],
    ) -> Result<[Option<Self>; 3]> {
        match *self {}
    }
    fn resize_bilinear(&self, _: [usize; 4], _: (usize, usize), _: bool) -> Result<Self> {
        match *self {}
    }
    fn resize_bilinear_backward(&self, _: [usize; 4], _: (usize, usize), _: bool) -> Result<Self> {
        match *self {}
    }
    fn max_pool2d(&self, _: &PoolGeom, _: bool) -> Result<(Self, Vec<u32>)> {
        match *self {}
    }
    fn max_pool2d_backward(&self, _: &Self, _: &Self, _: &[u32], _: &PoolGeom) -> Result<Self> {
        match *self {}
    }
    fn avg_pool2d(&self, _: &PoolGeom) -> Result<Self> {
        match *self {}
    }
    fn avg_pool2d_backward(&self, _: &PoolGeom) -> Result<Self> {
        match *self {}
    }
    fn global_avg_pool(&self, _: usize, _: usize) -> Result<Self> {
        match *self {}
    }
    fn global_avg_pool_backward(&self, _: usize, _: usize) -> Result<Self> {
        match *self {}
    }
    fn copy_rows(&self, _: Rows, _: &mut Self, _: Rows, _: usize) -> Result<()> {
        match *self {}
    }
    fn transpose2d(&self, _: usize, _: usize) -> Result<Self> {
        match *self {}
    }
    fn conv2d(
        x: Activation<'_, Self>,
        _: Weights<'_, Self>,
        _: Option<&Self>,
        _: &ConvGeom,
        _: CpuConvBackend,
    ) -> Result<(Self, Layout)> {
        match *x.data {}
    }
    fn conv2d_backward_data(
        dy: Activation<'_, Self>,
        _: Weights<'_, Self>,
        _: Layout,
        _: &ConvGeom,
        _: bool,
        _: CpuConvBackend,
    ) -> Result<(Self, Layout)> {
        match *dy.data {}
    }
    fn conv2d_backward_params(
        x: Activation<'_, Self>,
        _: Activation<'_, Self>,
        _: &ConvGeom,
        _: ParamGrads,
        _: CpuConvBackend,
    ) -> Result<(Option<Self>, Option<Self>)> {
        match *x.data {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{Device, Tensor};

    #[test]
    fn a_cuda_tensor_without_the_feature_is_a_clear_error() {
        for e in [
            Tensor::zeros([2], Device::Cuda(0)).unwrap_err(),
            Tensor::from_vec(vec![1.0], [1], Device::Cuda(1)).unwrap_err(),
            Tensor::ones([2], Device::Cpu)
                .unwrap()
                .to_device(Device::Cuda(0))
                .unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(
                msg.contains("--features cuda") && msg.contains("cuda:"),
                "{msg}"
            );
        }
    }
}
