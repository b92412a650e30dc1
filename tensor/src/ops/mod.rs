//! The op set. Each module owns one family: its forward, its backward and the dispatch to the
//! CPU kernels (`crate::cpu`) and CUDA kernels (`crate::cuda`, feature `cuda`).

pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod padding;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod shape;

pub use conv::{conv2d_output_size, Conv2dOpts, CpuConvBackend};
pub use elementwise::{BinaryOp, UnaryOp};
pub use fused::Squash;
pub use padding::Padding;
pub use pool::{pool2d_output_size, Pool2dOpts};
