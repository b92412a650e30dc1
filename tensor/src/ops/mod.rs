//! The op set. Each module owns one family: its forward, its backward and the dispatch to the
//! CPU kernels (`crate::cpu`) and CUDA kernels (`crate::cuda`, feature `cuda`).

pub mod conv;
pub mod elementwise;

pub use conv::{conv2d_output_size, Conv2dOpts, CpuConvBackend, Padding};
pub use elementwise::{BinaryOp, UnaryOp};
