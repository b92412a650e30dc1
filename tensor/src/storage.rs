//! Device buffers behind tensors, and the dispatch of a computation to the backend that holds its
//! operands (`dispatch`).

use crate::backend::BackendStorage;
use crate::cuda::CudaBuf;
use crate::{memory, Device, Error, Result};

/// A host buffer of f32 whose size is counted in [`crate::memory`].
pub struct CpuBuf(Vec<f32>);

impl CpuBuf {
    /// Takes ownership of `v`, counting its capacity in [`crate::memory`]'s host bytes.
    pub fn new(v: Vec<f32>) -> Self {
        memory::cpu_alloc(v.capacity() * 4);
        CpuBuf(v)
    }
    /// `n` zeros.
    pub fn zeros(n: usize) -> Self {
        Self::new(vec![0.0; n])
    }
    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
    /// The values, writable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.0
    }
    /// The number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the buffer holds no value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for CpuBuf {
    fn drop(&mut self) {
        memory::cpu_free(self.0.capacity() * 4);
    }
}

impl std::ops::Deref for CpuBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}
impl std::ops::DerefMut for CpuBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// The data of a tensor on its device. Without the `cuda` feature the CUDA buffer type has no
/// values, so `Storage::Cuda` never exists, but code matching on it compiles either way.
pub enum Storage {
    /// Values in host memory.
    Cpu(CpuBuf),
    /// Values in the memory of a CUDA device (only ever made with the `cuda` feature).
    Cuda(CudaBuf),
}

impl From<CpuBuf> for Storage {
    fn from(b: CpuBuf) -> Self {
        Storage::Cpu(b)
    }
}

impl From<CudaBuf> for Storage {
    fn from(b: CudaBuf) -> Self {
        Storage::Cuda(b)
    }
}

/// Evaluates `$body` with each `$name` bound to the buffer inside the storage `$storage`, on the
/// backend that holds the first one; the others must be on the same backend, or the result is
/// a [`Error::DeviceMismatch`] for `$op`. The body is compiled once per backend, so it can use
/// only what [`BackendStorage`] offers, and must give the same type (a `Result`) on each.
///
/// ```text
/// let y = dispatch!("relu", (x = &*s) => x.unary(UnaryOp::Relu).map(Storage::from))?;
/// ```
macro_rules! dispatch {
    ($op:expr, ($($name:ident = $storage:expr),+ $(,)?) => $body:expr) => {{
        $(let $name = $storage;)+
        let devices = [$($crate::storage::Storage::device(&*$name)),+];
        #[allow(unreachable_patterns)]
        match ($($name,)+) {
            ($($crate::storage::Storage::Cpu($name),)+) => $body,
            ($($crate::storage::Storage::Cuda($name),)+) => $body,
            _ => Err($crate::storage::mixed_devices($op, &devices)),
        }
    }};
}
pub(crate) use dispatch;

/// The error for operands found on different devices by [`dispatch`].
pub(crate) fn mixed_devices(op: &'static str, devices: &[Device]) -> Error {
    let lhs = devices[0];
    let rhs = devices.iter().copied().find(|d| *d != lhs).unwrap_or(lhs);
    Error::DeviceMismatch { op, lhs, rhs }
}

/// The optional operand `s` on the backend `B` of an op's other operands, or an error when it
/// lives elsewhere.
pub(crate) fn same_backend<'a, B: BackendStorage>(
    op: &'static str,
    s: Option<&'a Storage>,
) -> Result<Option<&'a B>> {
    s.map(|s| {
        B::of(s).ok_or_else(|| {
            Error::invalid(
                op,
                "an optional operand lives on a different device than the others",
            )
        })
    })
    .transpose()
}

impl Storage {
    /// The host values `v`.
    pub fn cpu(v: Vec<f32>) -> Self {
        Storage::Cpu(CpuBuf::new(v))
    }

    /// `n` zeros on `device` (an error for a CUDA device without the `cuda` feature).
    pub fn zeros(device: Device, n: usize) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuBuf::zeros(n))),
            Device::Cuda(ordinal) => Ok(Storage::Cuda(CudaBuf::zeros(ordinal, n)?)),
        }
    }

    /// The host values `data` on `device`.
    pub fn from_host(device: Device, data: Vec<f32>) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::cpu(data)),
            Device::Cuda(ordinal) => Ok(Storage::Cuda(CudaBuf::from_host(ordinal, &data)?)),
        }
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(b) => b.device(),
            Storage::Cuda(b) => b.device(),
        }
    }

    /// The values, copied to the host.
    pub fn to_host(&self) -> Result<Vec<f32>> {
        dispatch!("to_host", (b = self) => b.to_host())
    }

    /// The host buffer, or an error naming `op` for data on another device (for the computations
    /// that exist only on the CPU).
    pub fn host(&self, op: &'static str) -> Result<&CpuBuf> {
        match self {
            Storage::Cpu(b) => Ok(b),
            other => Err(not_on_host(op, other.device())),
        }
    }

    /// [`Storage::host`], writable.
    pub fn host_mut(&mut self, op: &'static str) -> Result<&mut CpuBuf> {
        match self {
            Storage::Cpu(b) => Ok(b),
            other => Err(not_on_host(op, other.device())),
        }
    }
}

fn not_on_host(op: &'static str, device: Device) -> Error {
    Error::invalid(op, format!("expected a CPU tensor, got one on {device}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_device_mismatch_names_the_first_operand_and_the_first_that_differs() {
        let e = mixed_devices("add", &[Device::Cpu, Device::Cpu, Device::Cuda(1)]);
        assert!(
            matches!(
                e,
                Error::DeviceMismatch {
                    op: "add",
                    lhs: Device::Cpu,
                    rhs: Device::Cuda(1)
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn dispatch_runs_the_backend_of_the_operands() {
        let (a, b) = (Storage::cpu(vec![1.0, 2.0]), Storage::cpu(vec![3.0, 4.0]));
        let shape = crate::Shape::from([2]);
        let sum = dispatch!("add", (x = &a, y = &b) => {
            x.binary(crate::ops::BinaryOp::Add, &shape, y, &shape, &shape)
                .map(Storage::from)
        })
        .unwrap();
        assert_eq!(sum.device(), Device::Cpu);
        assert_eq!(sum.to_host().unwrap(), vec![4.0, 6.0]);
        assert!(a.host("t").is_ok());
    }
}
