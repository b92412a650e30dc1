//! The CUDA backend (feature `cuda`): cudarc with dynamic loading, so it builds without a CUDA
//! toolkit and finds the driver and libraries at run time ([`loader`]; set
//! `CONVRNN_CUDA_LIB_DIRS` to add directories such as a Python environment's
//! `site-packages/nvidia/*/lib`).
//!
//! Per device there is one context, one stream, a caching allocator ([`CudaBuf`], [`live_bytes`],
//! [`peak_bytes`], [`cached_bytes`], [`empty_cache`]), a cuBLAS handle, a cuDNN handle and the
//! NVRTC kernels of `kernels.cu`, compiled once per process (CUBIN for the device's
//! architecture). CUDA tensors always use [`crate::Layout::Plain`].
//!
//! The functions here work on buffers plus shapes, like the CPU kernels in [`crate::cpu`]; every op
//! module dispatches to them from its `Storage::Cuda` arms (conv2d goes straight to cuDNN, without
//! the CPU backend choice; max pooling keeps no argmax on the device, its backward recomputes the
//! winners from the saved input and output):
//!
//! | op (CPU kernel) | CUDA function |
//! | --- | --- |
//! | elementwise `unary`, `unary_backward`, `binary`, `sum_to`, `expand` | [`unary`], [`unary_backward`], [`binary`], [`sum_to`], [`expand`] |
//! | `cpu::reduce::sum` / `broadcast_back` (a `ReducePlan` of `dims` + flags) | [`sum_over`] / [`broadcast_back`]; also [`sum_dims`], [`mean_dims`], [`sum_all`], [`mean_all`] |
//! | `cpu::reduce::max_dim` / `max_dim_backward` | [`max_dim`] / [`max_dim_backward`] |
//! | `cpu::linear::matmul` (`Operand`s) / `linear` | [`matmul_strided`] with [`DevMat`] / [`linear_forward`]; raw [`sgemm`], [`sgemm_strided_batched`], [`matmul`] |
//! | `cpu::loss::softmax(v, k, log)` / backward | [`softmax_forward`], [`log_softmax_forward`] / [`softmax_backward`], [`log_softmax_backward`] (`rows = len / k`) |
//! | `cpu::loss::cross_entropy` / backward | [`cross_entropy_forward`] (a one-element buffer) / [`cross_entropy_backward`] (takes the loss gradient buffer) |
//! | `cpu::norm::layer_norm` / backward (stats `[n, 3]`) | [`layer_norm_forward`] / [`layer_norm_backward`] (stats `[n, LN_STATS]`, same layout) |
//! | `cpu::resize_bilinear(b, planes, (h, w), (oh, ow), align)` / backward | [`resize_bilinear_forward`] / [`resize_bilinear_backward`] with `x_shape = [1, planes, h, w]` |
//! | `cpu::max_pool2d` / `avg_pool2d` (+ backward; `PoolGeom`) | [`max_pool2d_forward`] / [`max_pool2d_backward`] (takes x and y instead of an argmax), [`avg_pool2d_forward`] / [`avg_pool2d_backward`] with [`Pool2dGeometry`] `{kernel, stride, pad_top, pad_left, out}` |
//! | `cpu::global_avg_pool` / backward | [`sum_over`] / [`broadcast_back`] on `[planes, h·w]` with flags `[false, true]` and scale `1/(h·w)` |
//! | `cpu::shape::copy_rows` (`Rows {row, off}`), `transpose2d`, reshape copy | [`copy_rows`] with `(row, off)` pairs, [`transpose2d`], [`CudaBuf::try_clone`]; also [`cat`], [`split`], [`narrow`] |
//! | conv2d forward / backward-data / backward-filter / bias | [`conv2d_forward`], [`conv2d_backward_data`], [`conv2d_backward_filter`], [`conv2d_backward_bias`] with [`Conv2dGeometry`] `{stride, pad: [t, b, l, r], dilation, groups}` |
//! | explicit padding | [`pad2d`], [`crop2d`] |
//!
//! Every function returns `Error::Cuda` (never panics) when a library is missing or a CUDA call
//! fails, and `Error::InvalidArgument` for inconsistent shapes. Buffers of different devices
//! are a `DeviceMismatch`.
//!
//! Checks: `cargo test -p tensor --features cuda` runs the parity suite (`tests/cuda_parity.rs`:
//! every op through the `Tensor` API against the CPU engine, forward and gradients, plus the
//! functions here against reference loops; skipped with a message without a GPU) and the unit tests, including an NVRTC compile of the
//! kernels where NVRTC is installed; `scripts/kernel-emulation.sh` runs the kernels on a CPU
//! emulation; `scripts/gpu-check.sh` runs the suite on a GPU machine.

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
pub use device::{device_count, probe, stream, synchronize};
pub use elementwise::{
    binary, broadcast_back, expand, full, max_dim, max_dim_backward, mean_all, mean_dims, sum_all,
    sum_dims, sum_over, sum_to, unary, unary_backward,
};
pub use gemm::{linear_forward, matmul, matmul_strided, sgemm, sgemm_strided_batched, DevMat};
pub use loader::{CudaLib, LibSearch, LIB_DIRS_VAR};
pub use nn::{
    cross_entropy_backward, cross_entropy_forward, layer_norm_backward, layer_norm_forward,
    log_softmax_backward, log_softmax_forward, resize_bilinear_backward, resize_bilinear_forward,
    softmax_backward, softmax_forward, LN_STATS,
};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,
    Pool2dGeometry,
};
pub use shape::{cat, copy_rows, crop2d, narrow, pad2d, split, transpose2d};
