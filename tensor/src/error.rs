//! Typed errors: every variant says what was wrong and what was expected.

use crate::{Device, Shape};

/// What went wrong in a tensor operation, a device or a file. `op` fields name the operation
/// that refused (`"conv2d"`, `"matmul"`…) so a message locates the call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operand has the wrong shape for the operation.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        /// The operation that refused.
        op: &'static str,
        /// What it needs, in words ("a rank-4 NCHW tensor", "[8, 16]"…).
        expected: String,
        /// The shape it was given.
        got: Shape,
    },
    /// The operands of one operation live on different devices.
    #[error("{op}: tensors live on different devices ({lhs} and {rhs}); move one with `to_device` first")]
    DeviceMismatch {
        /// The operation that refused.
        op: &'static str,
        /// The device of the first operand.
        lhs: Device,
        /// The device of the operand that differs.
        rhs: Device,
    },
    /// An argument other than a shape is out of range or inconsistent (a dimension index past
    /// the rank, a stride of zero, a pooling window larger than the padded input…).
    #[error("{op}: {msg}")]
    InvalidArgument {
        /// The operation that refused.
        op: &'static str,
        /// What was wrong and what was expected.
        msg: String,
    },
    /// A tensor was built from a buffer whose length is not the product of its shape.
    #[error("data length {len} does not match shape {shape} ({expected} elements)")]
    DataLength {
        /// The number of values given.
        len: usize,
        /// The shape asked for.
        shape: Shape,
        /// The number of values that shape holds.
        expected: usize,
    },
    /// [`Tensor::backward`](crate::Tensor::backward) was called on a tensor that is not a
    /// scalar; the field is its shape.
    #[error("backward: the tensor is not a scalar (shape {0}); call backward on a scalar loss or use backward_with_grad")]
    NonScalarBackward(Shape),
    /// A CUDA library is missing or a CUDA, cuBLAS, cuDNN or NVRTC call failed; the message
    /// names the call and, for a missing library, where it was looked for.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// A CUDA device was asked for in a build without the `cuda` feature; the field is the
    /// device.
    #[error("the CUDA backend is not compiled in: rebuild with `--features cuda` to use {0}")]
    CudaNotCompiled(Device),
    /// A oneDNN call failed (the library was found but refused a primitive or its execution).
    #[error("oneDNN: {0}")]
    OneDnn(String),
    /// A safetensors file is malformed or does not hold what was asked for.
    #[error("safetensors file {path}: {msg}")]
    Safetensors {
        /// The file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A parameter name is empty, reserved or already registered in a
    /// [`ParamStore`](crate::ParamStore), or a checkpoint's tensor of that name has another shape.
    #[error("parameter `{name}`: {msg}")]
    Param {
        /// The parameter's name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error. Its text is part of this error's message, so it is not
        /// also this error's `source()`: printed with its causes, the reason appears once.
        error: std::io::Error,
    },
}

/// The result of every fallible operation of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}
