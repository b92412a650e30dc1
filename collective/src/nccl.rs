//! NCCL for CUDA tensors (feature `cuda`; cudarc loads `libnccl.so.2` at run time, so this builds
//! without CUDA).
//!
//! NCCL needs every rank to hold the same 128-byte unique id before its communicator exists;
//! rank 0 makes one and a host communicator (MPI or TCP) broadcasts it. That host communicator
//! also carries the host-side collectives (metric sums, the start-up record, barriers); only
//! tensor collectives go through NCCL, enqueued on the engine's own CUDA stream so they are
//! ordered after the kernels that computed the gradients, with no extra synchronisation.
//!
//! Hangs: a collective's completion is polled through a CUDA event together with
//! `ncclCommGetAsyncError`; past the timeout the communicator is aborted (`ncclCommAbort`, which
//! also releases the kernels waiting on the dead peer) and an error returned. Creating the
//! communicator blocks inside NCCL until every rank arrives, so a watchdog thread ends the
//! process with a message if that takes longer than the timeout.

use crate::error::{Error, Result};
use crate::{Backend, Buf, Collective, ReduceOp};
use cudarc::driver::CudaStream;
use cudarc::nccl::{result, sys};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tensor::storage::Storage;
use tensor::{Device, Tensor};

/// The raw communicator; NCCL allows using it from any thread one call at a time, which the
/// mutex in [`NcclComm`] ensures.
struct RawComm(sys::ncclComm_t);
// SAFETY: see above; the pointer is only dereferenced by NCCL, under `NcclComm::lock`.
unsafe impl Send for RawComm {}
// SAFETY: as above.
unsafe impl Sync for RawComm {}

/// The NCCL backend; see the module documentation.
pub struct NcclComm {
    host: Box<dyn Collective>,
    ordinal: usize,
    comm: RawComm,
    stream: Arc<CudaStream>,
    timeout: Duration,
    lock: Mutex<()>,
    poisoned: AtomicBool,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NcclComm(rank {} of {}, cuda:{})",
            self.host.rank(),
            self.host.world_size(),
            self.ordinal
        )
    }
}

fn nccl_err(what: &str, e: result::NcclError) -> Error {
    Error::Nccl(format!("{what}: {:?}", e.0))
}

impl NcclComm {
    /// Creates the communicator of this rank on `cuda:<ordinal>`, its id sent over `host`.
    pub fn new(host: Box<dyn Collective>, ordinal: usize, timeout: Duration) -> Result<NcclComm> {
        tensor::cuda::loader::ensure(tensor::cuda::CudaLib::Nccl)?;
        let stream = tensor::cuda::stream(ordinal)?;
        let mut id = [0u8; 128];
        if host.rank() == 0 {
            let made = result::get_uniqueid().map_err(|e| nccl_err("ncclGetUniqueId", e))?;
            for (d, s) in id.iter_mut().zip(made.internal) {
                *d = s as u8;
            }
        }
        host.broadcast(Buf::U8(&mut id), 0)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        for (d, s) in internal.iter_mut().zip(id) {
            *d = s as std::ffi::c_char;
        }
        let (rank, world) = (host.rank(), host.world_size());
        // ncclCommInitRank blocks until every rank has called it: a rank that never comes would
        // hang this one forever, so a watchdog ends the process after the timeout.
        let (done, watched) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watched.recv_timeout(timeout) {
                eprintln!(
                    "rank {rank}: NCCL's communicator was not complete after {:.0} s (another \
                     rank died or never started); exiting",
                    timeout.as_secs_f64()
                );
                std::process::exit(1);
            }
        });
        let mut comm = std::mem::MaybeUninit::uninit();
        // SAFETY: `comm` is written by NCCL on success; the id is the one all ranks share.
        let init = unsafe {
            result::comm_init_rank(
                comm.as_mut_ptr(),
                world as std::ffi::c_int,
                sys::ncclUniqueId { internal },
                rank as std::ffi::c_int,
            )
        };
        let _ = done.send(());
        init.map_err(|e| nccl_err("ncclCommInitRank", e))?;
        // SAFETY: initialised by the successful call above.
        let comm = unsafe { comm.assume_init() };
        Ok(NcclComm {
            host,
            ordinal,
            comm: RawComm(comm),
            stream,
            timeout,
            lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
        })
    }

    /// Waits for the work just enqueued on the stream, watching NCCL's asynchronous errors.
    fn wait(&self, what: &str) -> Result<()> {
        let event = self
            .stream
            .record_event(None)
            .map_err(|e| Error::Nccl(format!("{what}: recording an event: {e:?}")))?;
        let out = crate::poll(self.timeout, self.host.rank(), what, || {
            match event.try_is_complete() {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => return Err(self.fail(format!("{what}: CUDA error {e:?}"))),
            }
            let mut state = sys::ncclResult_t::ncclSuccess;
            // SAFETY: the communicator is live; `state` is a live local.
            unsafe { sys::ncclCommGetAsyncError(self.comm.0, &mut state) };
            if matches!(
                state,
                sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress
            ) {
                Ok(false)
            } else {
                Err(self.fail(format!("{what}: NCCL reports {state:?}")))
            }
        });
        if out.is_err() {
            self.fail(String::new());
        }
        out
    }

    /// Aborts the communicator (which also frees kernels stuck on a dead peer).
    fn fail(&self, msg: String) -> Error {
        if !self.poisoned.swap(true, Ordering::SeqCst) {
            // SAFETY: the communicator is live and aborted once (the flag above).
            let _ = unsafe { result::comm_abort(self.comm.0) };
        }
        Error::Nccl(msg)
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Nccl(
                "an earlier collective failed; the communicator was aborted".into(),
            ));
        }
        Ok(self.lock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `op(address, len)` on `t`'s device buffer and waits for it; CPU tensors go through
    /// the host communicator instead (`None`).
    fn on_device(
        &self,
        t: &Tensor,
        what: &str,
        op: impl FnOnce(u64, usize) -> std::result::Result<result::NcclStatus, result::NcclError>,
    ) -> Result<Option<()>> {
        if t.device() != Device::Cuda(self.ordinal) {
            return Ok(None);
        }
        let _g = self.guard()?;
        // NCCL works on the calling thread's current device (any thread may run a step).
        self.stream.context().bind_to_thread().map_err(|e| {
            Error::Nccl(format!(
                "{what}: making cuda:{} current: {e:?}",
                self.ordinal
            ))
        })?;
        let mut storage = t.storage_mut();
        let Storage::Cuda(buf) = &mut *storage else {
            return Ok(None);
        };
        let (ptr, len) = (buf.device_address(), buf.len());
        if len == 0 {
            return Ok(Some(()));
        }
        op(ptr, len).map_err(|e| self.fail(format!("{what}: {:?}", e.0)))?;
        // The buffer stays borrowed (the write guard) until the collective has finished.
        self.wait(what)?;
        Ok(Some(()))
    }
}

impl Collective for NcclComm {
    fn rank(&self) -> usize {
        self.host.rank()
    }
    fn world_size(&self) -> usize {
        self.host.world_size()
    }
    fn local_rank(&self) -> usize {
        self.host.local_rank()
    }
    fn backend(&self) -> Backend {
        Backend::Nccl
    }
    fn all_reduce(&self, buf: Buf<'_>, op: ReduceOp) -> Result<()> {
        self.host.all_reduce(buf, op)
    }
    fn broadcast(&self, buf: Buf<'_>, root: usize) -> Result<()> {
        self.host.broadcast(buf, root)
    }
    fn barrier(&self) -> Result<()> {
        self.host.barrier()
    }

    fn all_reduce_tensor(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        let nccl_op = match op {
            ReduceOp::Sum => sys::ncclRedOp_t::ncclSum,
            ReduceOp::Average => sys::ncclRedOp_t::ncclAvg,
            ReduceOp::Max => sys::ncclRedOp_t::ncclMax,
            ReduceOp::Min => sys::ncclRedOp_t::ncclMin,
        };
        let what = format!("NCCL all-reduce of {} floats", t.elem_count());
        let done = self.on_device(t, &what, |ptr, len| {
            // SAFETY: `ptr` addresses `len` floats of a buffer held mutably for the whole
            // collective; the stream is the one its kernels run on.
            unsafe {
                result::all_reduce(
                    ptr as *const std::ffi::c_void,
                    ptr as *mut std::ffi::c_void,
                    len,
                    sys::ncclDataType_t::ncclFloat32,
                    nccl_op,
                    self.comm.0,
                    self.stream.cu_stream() as _,
                )
            }
        })?;
        match done {
            Some(()) => Ok(()),
            None => self.host.all_reduce_tensor(t, op),
        }
    }

    fn broadcast_tensor(&self, t: &Tensor, root: usize) -> Result<()> {
        crate::check_root("broadcast", root, self.world_size())?;
        let what = format!(
            "NCCL broadcast of {} floats from rank {root}",
            t.elem_count()
        );
        let done = self.on_device(t, &what, |ptr, len| {
            // SAFETY: as in `all_reduce_tensor`.
            unsafe {
                result::broadcast(
                    ptr as *const std::ffi::c_void,
                    ptr as *mut std::ffi::c_void,
                    len,
                    sys::ncclDataType_t::ncclFloat32,
                    root as std::ffi::c_int,
                    self.comm.0,
                    self.stream.cu_stream() as _,
                )
            }
        })?;
        match done {
            Some(()) => Ok(()),
            None => self.host.broadcast_tensor(t, root),
        }
    }

    fn abort(&self, code: i32) -> ! {
        self.fail(String::new());
        self.host.abort(code)
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        if !self.poisoned.load(Ordering::SeqCst) {
            // Every collective was waited for, so nothing is pending on the communicator.
            // SAFETY: the communicator is live and destroyed exactly once.
            let _ = unsafe { result::comm_destroy(self.comm.0) };
        }
    }
}
