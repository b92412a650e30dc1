//! The op set. Each module owns one family: its forward, its backward and the dispatch to the
//! CPU kernels (`crate::cpu`) and CUDA kernels (`crate::cuda`, feature `cuda`).

pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod reduce;

pub use elementwise::{BinaryOp, UnaryOp};
