//! The CUDA backend (feature `cuda`): cudarc with dynamic loading, so it builds without a CUDA
//! toolkit and finds the driver and libraries at run time ([`loader`]; set
//! `CONVRNN_CUDA_LIB_DIRS` to add directories such as a Python environment's
//! `site-packages/nvidia/*/lib`).
//!
//! Per device there is one context, one stream, a caching allocator ([`CudaBuf`], [`live_bytes`],
//! [`empty_cache`]), a cuBLAS handle, a cuDNN handle and the NVRTC kernels of `kernels.cu`,
//! compiled once per process. CUDA tensors always use [`crate::Layout::Plain`].
//!
//! The functions here work on buffers plus shapes, like the CPU kernels in [`crate::cpu`]; the op
//! modules dispatch to them from their `Storage::Cuda` arms:
//!
//! | family | functions |
//! | --- | --- |
//! | elementwise | [`unary`], [`unary_backward`], [`binary`], [`sum_to`], [`expand`] |
//! | reductions | [`sum_dims`], [`mean_dims`], [`sum_all`], [`mean_all`], [`max_dim`], [`max_dim_backward`] |
//! | GEMM (cuBLAS) | [`sgemm`], [`sgemm_strided_batched`], [`matmul`] with [`DevMat`] |
//! | convolution (cuDNN) | [`conv2d_forward`], [`conv2d_backward_data`], [`conv2d_backward_filter`], [`conv2d_backward_bias`] with [`Conv2dGeometry`] |
//! | pooling (cuDNN) | [`max_pool2d_forward`], [`max_pool2d_backward`], [`avg_pool2d_forward`], [`avg_pool2d_backward`] with [`Pool2dGeometry`] |
//! | resize | [`resize_bilinear_forward`], [`resize_bilinear_backward`] |
//! | layer norm | [`layer_norm_forward`], [`layer_norm_backward`] |
//! | losses | [`softmax_forward`], [`softmax_backward`], [`log_softmax_forward`], [`log_softmax_backward`], [`cross_entropy_forward`], [`cross_entropy_backward`] |
//! | copies | [`cat`], [`split`], [`narrow`], [`pad2d`], [`crop2d`] |
//!
//! Every function returns `Error::Cuda` (never panics) when a library is missing, and
//! `Error::InvalidArgument` for inconsistent shapes.

mod buffer;
mod conv;
mod device;
mod elementwise;
mod gemm;
pub mod kernels;
pub mod loader;
mod nn;
mod pool;
mod shape;

pub use buffer::{
    cached_bytes, driver_allocations, empty_cache, live_bytes, peak_bytes, reset_peak, CudaBuf,
};
pub use conv::{
    conv2d_backward_bias, conv2d_backward_data, conv2d_backward_filter, conv2d_forward,
    conv2d_output_hw, set_allow_tf32, Conv2dGeometry, WORKSPACE_LIMIT,
};
pub use device::{device_count, probe, synchronize};
pub use elementwise::{
    binary, expand, full, max_dim, max_dim_backward, mean_all, mean_dims, sum_all, sum_dims,
    sum_to, unary, unary_backward,
};
pub use gemm::{matmul, sgemm, sgemm_strided_batched, DevMat};
pub use loader::{CudaLib, LibSearch, LIB_DIRS_VAR};
pub use nn::{
    cross_entropy_backward, cross_entropy_forward, layer_norm_backward, layer_norm_forward,
    log_softmax_backward, log_softmax_forward, resize_bilinear_backward, resize_bilinear_forward,
    softmax_backward, softmax_forward, LayerNormStats,
};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,
    Pool2dGeometry,
};
pub use shape::{cat, crop2d, narrow, pad2d, split};
