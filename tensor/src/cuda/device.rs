//! The per-process, per-ordinal device context: CUDA context, the one stream all work of the
//! device runs on, the caching allocator, and the cuBLAS / cuDNN handles and NVRTC kernels,
//! each created on first use (so a process that never convolves never needs cuDNN).

use super::buffer::Pool;
use super::kernels::Kernels;
use super::loader::{check_single_install, ensure, ensure_cudnn, CudaLib};
use crate::{Error, Result};
use cudarc::driver::{CudaContext, CudaStream};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Runs `f`, turning a panic inside cudarc (a missing symbol, an internal assertion) into an
/// [`Error::Cuda`] that says what we were doing.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Cuda(format!("{what}: {msg}")))
        }
    }
}

/// An [`Error::Cuda`] for a failed CUDA call.
pub(crate) fn cuda_err(what: impl std::fmt::Display, e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("{what}: {e:?}"))
}

/// A cuDNN handle bound to a device's stream. cuDNN allows a handle to be used from any thread
/// as long as calls do not overlap, which the `Mutex` around it guarantees.
pub(crate) struct DnnHandle(pub(crate) cudarc::cudnn::sys::cudnnHandle_t);

// SAFETY: see the type's doc comment; the handle is only reached through a Mutex.
unsafe impl Send for DnnHandle {}

impl Drop for DnnHandle {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `create_handle` and is destroyed exactly once.
        let _ = unsafe { cudarc::cudnn::result::destroy_handle(self.0) };
    }
}

type Lazy<T> = OnceLock<std::result::Result<T, String>>;

/// Everything the backend keeps per device.
pub(crate) struct Dev {
    pub(crate) ordinal: usize,
    pub(crate) ctx: Arc<CudaContext>,
    /// All work of this device runs on this stream, so buffers returned to the caching allocator
    /// can be reused at once: any later use is ordered after every earlier one.
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) pool: Mutex<Pool>,
    kernels: Lazy<Kernels>,
    blas: Lazy<Mutex<cudarc::cublas::CudaBlas>>,
    dnn: Lazy<Mutex<DnnHandle>>,
    /// cuDNN algorithm choices, keyed by problem (see `conv.rs`).
    pub(crate) conv_algos: Mutex<HashMap<super::conv_algo::AlgoKey, super::conv_algo::AlgoChoice>>,
}

fn devices() -> &'static Mutex<HashMap<usize, Arc<Dev>>> {
    static D: OnceLock<Mutex<HashMap<usize, Arc<Dev>>>> = OnceLock::new();
    D.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The context of device `ordinal`, created on first use.
pub(crate) fn device(ordinal: usize) -> Result<Arc<Dev>> {
    let mut map = devices().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(open(ordinal)?);
    map.insert(ordinal, d.clone());
    Ok(d)
}

/// The context of `ordinal` if it was already created (no initialisation).
pub(crate) fn existing(ordinal: usize) -> Option<Arc<Dev>> {
    devices()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ordinal)
        .cloned()
}

/// Number of CUDA devices the driver reports.
pub fn device_count() -> Result<usize> {
    ensure(CudaLib::Driver)?;
    guarded("counting CUDA devices", || {
        let n = CudaContext::device_count().map_err(|e| {
            Error::Cuda(format!(
                "the CUDA driver loaded but reports no usable device ({e:?}); check `nvidia-smi` \
                 and that the GPU is visible to this process (CUDA_VISIBLE_DEVICES, container \
                 flags)"
            ))
        })?;
        Ok(n.max(0) as usize)
    })
}

fn open(ordinal: usize) -> Result<Dev> {
    let count = device_count()?;
    if ordinal >= count {
        return Err(Error::Cuda(format!(
            "no CUDA device cuda:{ordinal}: the driver reports {count} device(s)"
        )));
    }
    guarded("opening the CUDA device", || {
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| cuda_err(format!("creating a context on cuda:{ordinal}"), e))?;
        // One stream per device and no cross-stream sharing: cudarc's per-buffer events would
        // only add overhead (and must be off before the stream exists to avoid a device sync).
        // SAFETY: every buffer of this device is used only on `stream` (see `Dev::stream`).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_err(format!("creating a stream on cuda:{ordinal}"), e))?;
        Ok(Dev {
            ordinal,
            ctx,
            stream,
            pool: Mutex::new(Pool::default()),
            kernels: OnceLock::new(),
            blas: OnceLock::new(),
            dnn: OnceLock::new(),
            conv_algos: Mutex::new(HashMap::new()),
        })
    })
}

impl Dev {
    /// The NVRTC kernels, compiled (once per process and architecture) and loaded on first use.
    pub(crate) fn kernels(&self) -> Result<&Kernels> {
        self.kernels
            .get_or_init(|| {
                ensure(CudaLib::Nvrtc)
                    .and_then(|_| guarded("compiling the CUDA kernels", || Kernels::load(self)))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Cuda(e.clone()))
    }

    pub(crate) fn blas(&self) -> Result<MutexGuard<'_, cudarc::cublas::CudaBlas>> {
        let b = self
            .blas
            .get_or_init(|| {
                ensure(CudaLib::Cublas)
                    .and_then(|_| {
                        guarded("creating the cuBLAS handle", || {
                            let blas = cudarc::cublas::CudaBlas::new(self.stream.clone())
                                .map(Mutex::new)
                                .map_err(|e| cuda_err("creating the cuBLAS handle", e))?;
                            check_single_install(CudaLib::Cublas)?;
                            Ok(blas)
                        })
                    })
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Cuda(e.clone()))?;
        Ok(b.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn dnn(&self) -> Result<MutexGuard<'_, DnnHandle>> {
        let d = self
            .dnn
            .get_or_init(|| {
                ensure_cudnn()
                    .and_then(|_| guarded("creating the cuDNN handle", || self.create_dnn()))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Cuda(e.clone()))?;
        Ok(d.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn create_dnn(&self) -> Result<Mutex<DnnHandle>> {
        use cudarc::cudnn::result as dnn;
        self.bind()?;
        let version = dnn::get_version();
        if !(90000..100000).contains(&version) {
            return Err(Error::Cuda(format!(
                "the loaded cuDNN reports version {version}; this backend needs cuDNN 9.x \
                 (libcudnn.so.9). {}",
                CudaLib::Cudnn.spec().fix
            )));
        }
        let h = DnnHandle(dnn::create_handle().map_err(|e| cuda_err("cudnnCreate", e))?);
        // SAFETY: `h.0` is a live handle and the stream outlives it (both owned by `self`).
        unsafe { dnn::set_stream(h.0, self.stream.cu_stream() as _) }
            .map_err(|e| cuda_err("cudnnSetStream", e))?;
        Ok(Mutex::new(h))
    }

    /// Makes this device's context current on the calling thread. cudarc does this in its own
    /// calls; raw cuBLAS/cuDNN calls need it first, since any thread may run an op.
    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err(format!("making cuda:{} current", self.ordinal), e))
    }

    /// Waits for all queued work of this device.
    pub(crate) fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| cuda_err(format!("synchronising cuda:{}", self.ordinal), e))
    }
}

/// Whether CUDA device `ordinal` is usable: the driver loads, the device exists and a context can
/// be created on it. The error says why not.
pub fn probe(ordinal: usize) -> Result<()> {
    device(ordinal).map(|_| ())
}

/// The one stream all work of device `ordinal` runs on, for libraries that enqueue work of their
/// own in order with the engine's (NCCL's collectives on gradients).
pub fn stream(ordinal: usize) -> Result<Arc<CudaStream>> {
    let dev = device(ordinal)?;
    dev.bind()?;
    Ok(dev.stream.clone())
}

/// Waits until all work queued on device `ordinal` has finished (for timing).
pub fn synchronize(ordinal: usize) -> Result<()> {
    device(ordinal)?.sync()
}
