//! Typed errors: every variant says what was wrong and what was expected.

use crate::{Device, Shape};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        op: &'static str,
        expected: String,
        got: Shape,
    },
    #[error("{op}: tensors live on different devices ({lhs} and {rhs}); move one with `to_device` first")]
    DeviceMismatch {
        op: &'static str,
        lhs: Device,
        rhs: Device,
    },
    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },
    #[error("data length {len} does not match shape {shape} ({expected} elements)")]
    DataLength {
        len: usize,
        shape: Shape,
        expected: usize,
    },
    #[error("backward: the tensor is not a scalar (shape {0}); call backward on a scalar loss or use backward_with_grad")]
    NonScalarBackward(Shape),
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("the CUDA backend is not compiled in: rebuild with `--features cuda` to use {0}")]
    CudaNotCompiled(Device),
    #[error("oneDNN: {0}")]
    OneDnn(String),
    #[error("safetensors file {path}: {msg}")]
    Safetensors { path: String, msg: String },
    #[error("parameter `{name}`: {msg}")]
    Param { name: String, msg: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}
