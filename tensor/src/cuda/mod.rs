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
//! The functions here work on buffers plus shapes, like the CPU kernels in [`crate::cpu`]. The op
//! layer reaches them through the backend contract, [`crate::backend::BackendStorage`], which
//! `backend.rs` implements for [`CudaBuf`] by calling them (conv2d goes straight to cuDNN, without
//! the CPU's implementation choice; max pooling keeps no argmax on the device, its backward
//! recomputes the winners from the saved input and output). A kernel the contract asks for and
//! this backend lacks is a compile error; the functions stay public for tests and benchmarks
//! that call them directly.
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

mod backend;
mod buffer;
mod conv;
mod conv_algo;
mod device;
mod dnn;
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
    conv2d_output_hw, Conv2dGeometry,
};
pub use conv_algo::{set_allow_tf32, WORKSPACE_LIMIT};
pub use device::{device_count, probe, stream, synchronize};
pub use elementwise::{
    binary, broadcast_back, expand, full, max_dim, max_dim_backward, mean_all, mean_dims, sum_all,
    sum_dims, sum_over, sum_to, unary, unary_backward,
};
pub use gemm::{
    linear_forward, matmul, matmul_strided, sgemm, sgemm_strided_batched, DevMat, DevMatMut,
};
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
