//! The CPU backend: kernels as plain functions over host slices, parallel with rayon, and their
//! implementation of the backend contract (`backend.rs`, [`crate::backend::BackendStorage`]).
//! These are the reference every other backend is tested against.

mod backend;
pub mod conv;
mod conv_choice;
pub mod conv_tune;
pub mod denormals;
pub mod depthwise;
pub mod elementwise;
pub mod fastmath;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod onednn;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod shape;
pub mod simd;

/// Below this many elements a kernel runs on one thread; rayon's fork/join costs more than it saves.
pub const PAR_THRESHOLD: usize = 1 << 15;
