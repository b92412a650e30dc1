//! Device buffers behind tensors.

use crate::{memory, Device, Result};

/// A host buffer of f32 whose size is counted in [`crate::memory`].
pub struct CpuBuf(Vec<f32>);

impl CpuBuf {
    pub fn new(v: Vec<f32>) -> Self {
        memory::cpu_alloc(v.capacity() * 4);
        CpuBuf(v)
    }
    pub fn zeros(n: usize) -> Self {
        Self::new(vec![0.0; n])
    }
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
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

/// The data of a tensor on its device.
pub enum Storage {
    Cpu(CpuBuf),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaBuf),
}

impl Storage {
    pub fn cpu(v: Vec<f32>) -> Self {
        Storage::Cpu(CpuBuf::new(v))
    }

    /// `n` zeros on `device` (an error for a CUDA device without the `cuda` feature).
    pub fn zeros(device: Device, n: usize) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuBuf::zeros(n))),
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => Ok(Storage::Cuda(crate::cuda::CudaBuf::zeros(ordinal, n)?)),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(crate::Error::CudaNotCompiled(device)),
        }
    }
}
