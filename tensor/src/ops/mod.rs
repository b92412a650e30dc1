//! The op set. Each module owns one family: shape checks, its forward, its recorded backward,
//! and the hand-off of each computation to the backend that holds the operands
//! (`storage::dispatch` onto [`crate::backend::BackendStorage`]), without knowing which
//! backends exist.

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
