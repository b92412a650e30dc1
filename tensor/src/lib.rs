//! `tensor`: dense f32 tensors, reverse-mode autodiff and the ConvRNN op set on CPU and CUDA.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let x = Tensor::from_vec(vec![1.0, -2.0], [2], Device::Cpu)?.into_variable();
//! let y = x.sigmoid()?.mul(&x)?;
//! let grads = y.backward_with_grad(&Tensor::ones([2], Device::Cpu)?)?;
//! assert_eq!(grads.get(&x).unwrap().dims(), &[2]);
//! # Ok::<(), tensor::Error>(())
//! ```

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
