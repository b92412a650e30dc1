//! `tensor`: dense f32 tensors, reverse-mode autodiff and the ConvRNN op set on CPU and CUDA.
//!
//! A [`Tensor`] is a cheap, reference-counted handle to f32 values of a [`Shape`] on a
//! [`Device`]. Ops are methods that return [`Result`]; a shape, option or device that does not
//! fit is an [`Error`] saying what was expected, never a panic. An op whose input tracks
//! gradients (a variable, [`Tensor::into_variable`], or a recorded result) records itself, and
//! [`Tensor::backward`] on a scalar loss returns the [`Gradients`] of every variable it depends
//! on; [`no_grad`] turns recording off on this thread (inference, optimiser updates).
//!
//! - [`ops`]: the op families — elementwise with broadcasting, fused gate arithmetic, 2-D
//!   convolution (TensorFlow's "SAME" padding included), pooling, bilinear resize, layer norm,
//!   matrix products, reductions, softmax cross-entropy, shape ops — each with its backward;
//! - [`backend`]: the contract every device's buffer implements; [`cpu`] (oneDNN loaded at run
//!   time when present, pure-Rust kernels otherwise) and, with the feature `cuda`, `cuda` (cuDNN,
//!   cuBLAS and NVRTC, loaded at run time, so the crate builds without a CUDA toolkit);
//! - [`ParamStore`] and [`io`]: named parameters and safetensors checkpoints;
//! - [`testing`]: finite-difference gradient checks for anyone writing a backward;
//!   [`memory`] and [`flops`]: live/peak bytes and counted work, for benchmarks.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let x = Tensor::from_vec(vec![1.0, -2.0], [2], Device::Cpu)?.into_variable();
//! let y = x.sigmoid()?.mul(&x)?;
//! let grads = y.backward_with_grad(&Tensor::ones([2], Device::Cpu)?)?;
//! assert_eq!(grads.get(&x).unwrap().dims(), &[2]);
//! # Ok::<(), tensor::Error>(())
//! ```
#![warn(missing_docs)]

pub mod backend;
pub mod backprop;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
// Without the feature, a CUDA backend whose buffer type has no values, so that the op layer
// needs no `cfg` (see `backend`).
#[cfg(not(feature = "cuda"))]
#[path = "cuda_stub.rs"]
mod cuda;
mod device;
mod error;
pub mod flops;
pub mod io;
pub mod layout;
pub mod memory;
pub mod ops;
mod param;
mod shape;
pub mod storage;
mod tensor;
pub mod testing;

pub use backprop::{is_grad_enabled, no_grad, BackwardCtx, Gradients, NoGradGuard};
pub use device::Device;
pub use error::{Error, Result};
pub use io::{load_tensors, read_metadata, save_tensors, save_tensors_with_metadata};
pub use layout::Layout;
pub use param::ParamStore;
/// The seeded generator every crate of the workspace draws from (re-exported from `seeded-rng`).
pub use seeded_rng::Rng;
pub use shape::Shape;
pub use tensor::{StorageStamp, Tensor, TensorId};
