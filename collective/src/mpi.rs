//! MPI through the MPICH ABI, loaded at run time.
//!
//! MPICH and the implementations that share its ABI (Intel MPI, MVAPICH, Cray MPICH) agree on
//! the library name `libmpi*.so.12`, on handles being `int`s and on the values of the predefined
//! handles, so a thin table of function pointers serves them all, and nothing is linked: the
//! workspace builds and its tests run on machines without MPI. `CONVRNN_MPI_LIB` names another
//! library file. Open MPI's ABI (handles are pointers to its own symbols) is refused with a clear
//! message; under Open MPI's `mpirun` [`crate::connect`] uses the TCP backend instead.
//!
//! Every collective is non-blocking (`MPI_Iallreduce`, `MPI_Ibcast`, `MPI_Ibarrier`) and polled
//! with `MPI_Test` until it completes or [`crate::Options::timeout`] passes. A timed-out
//! communicator is poisoned: dropping it calls `MPI_Abort`, which makes the process manager end
//! every rank of the job, instead of `MPI_Finalize`, which could wait forever for the missing
//! rank. A rank that dies is noticed by the process manager itself (MPICH's hydra ends the job).

use crate::error::{Error, Result};
use crate::launch::Launch;
use crate::{check_root, Backend, Buf, Collective, ReduceOp};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The variable naming the MPI library file to load.
pub const LIB_VAR: &str = "CONVRNN_MPI_LIB";

/// Library files tried in order: MPICH's, then the name MPICH-ABI implementations install.
const LIB_NAMES: [&str; 2] = ["libmpich.so.12", "libmpi.so.12"];

// The MPICH ABI's predefined handles and constants (mpi.h of MPICH 3.1 and later).
type Comm = c_int;
type Datatype = c_int;
type Op = c_int;
type Request = c_int;
const COMM_WORLD: Comm = 0x4400_0000;
const FLOAT: Datatype = 0x4c00_040a;
const DOUBLE: Datatype = 0x4c00_080b;
const UINT64: Datatype = 0x4c00_083e;
const BYTE: Datatype = 0x4c00_010d;
const OP_MAX: Op = 0x5800_0001;
const OP_MIN: Op = 0x5800_0002;
const OP_SUM: Op = 0x5800_0003;
const ERRORS_RETURN: c_int = 0x5400_0001;
const INFO_NULL: c_int = 0x1c00_0000;
const COMM_TYPE_SHARED: c_int = 1;
const THREAD_SERIALIZED: c_int = 2;
const SUCCESS: c_int = 0;
const MAX_ERROR_STRING: usize = 512;
const MAX_LIBRARY_VERSION_STRING: usize = 8192;

fn in_place() -> *const c_void {
    // MPI_IN_PLACE is `(void *) -1` in the MPICH ABI: a sentinel, never dereferenced by us.
    std::ptr::without_provenance(usize::MAX)
}

fn status_ignore() -> *mut c_void {
    // MPI_STATUS_IGNORE is `(MPI_Status *) 1` in the MPICH ABI: a sentinel.
    std::ptr::without_provenance_mut(1)
}

/// The functions we call, resolved once from the loaded library.
struct Api {
    init_thread: unsafe extern "C" fn(*mut c_int, *mut c_void, c_int, *mut c_int) -> c_int,
    initialized: unsafe extern "C" fn(*mut c_int) -> c_int,
    finalize: unsafe extern "C" fn() -> c_int,
    abort: unsafe extern "C" fn(Comm, c_int) -> c_int,
    comm_rank: unsafe extern "C" fn(Comm, *mut c_int) -> c_int,
    comm_size: unsafe extern "C" fn(Comm, *mut c_int) -> c_int,
    comm_split_type: unsafe extern "C" fn(Comm, c_int, c_int, c_int, *mut Comm) -> c_int,
    comm_free: unsafe extern "C" fn(*mut Comm) -> c_int,
    comm_set_errhandler: unsafe extern "C" fn(Comm, c_int) -> c_int,
    iallreduce: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        c_int,
        Datatype,
        Op,
        Comm,
        *mut Request,
    ) -> c_int,
    ibcast: unsafe extern "C" fn(*mut c_void, c_int, Datatype, c_int, Comm, *mut Request) -> c_int,
    ibarrier: unsafe extern "C" fn(Comm, *mut Request) -> c_int,
    test: unsafe extern "C" fn(*mut Request, *mut c_int, *mut c_void) -> c_int,
    error_string: unsafe extern "C" fn(c_int, *mut c_char, *mut c_int) -> c_int,
    library_version: unsafe extern "C" fn(*mut c_char, *mut c_int) -> c_int,
    /// The file it came from, for messages.
    file: String,
}

/// The loaded library. MPI can be initialised once per process and must stay loaded until the
/// process exits (its exit handlers live in it), so it is loaded once and never unloaded. Only a
/// library that loaded is kept: a failure is tried again on the next call, so a process that
/// installs MPI (`cargo xtask doctor --install`) sees it afterwards.
static API: OnceLock<Api> = OnceLock::new();
/// Whether this process has called `MPI_Init_thread` (MPI allows it once per process).
static STARTED: AtomicBool = AtomicBool::new(false);

fn fix() -> String {
    format!(
        "install MPICH (Debian: `apt-get install -y mpich`, which `cargo xtask doctor \
         --install` does as root), or name an MPICH-ABI library with {LIB_VAR}; without MPI, \
         launch with torchrun-style variables or `cargo xtask train --nproc N` (TCP backend)"
    )
}

fn load() -> std::result::Result<Api, String> {
    let names: Vec<String> = match std::env::var(LIB_VAR) {
        Ok(v) if !v.trim().is_empty() => vec![v],
        _ => LIB_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    let mut tried = Vec::new();
    for name in &names {
        // SAFETY: loading runs the library's initialisers; an MPI library is meant to be loaded
        // into the process that calls it. RTLD_GLOBAL: MPICH's network modules resolve its
        // symbols when they are loaded.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(name),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        };
        let lib = match lib {
            Ok(l) => l,
            Err(e) => {
                tried.push(format!("{name}: {e}"));
                continue;
            }
        };
        // SAFETY: only probing for a data symbol's presence.
        if unsafe { lib.get::<*const c_void>(b"ompi_mpi_comm_world\0") }.is_ok() {
            return Err(format!(
                "{name} is Open MPI, whose ABI this backend does not speak (it speaks MPICH's); \
                 use MPICH's mpiexec, or the TCP backend (--backend tcp) under Open MPI's mpirun"
            ));
        }
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol is the MPI function of that name, whose C signature in the
                // MPICH ABI is the field's type.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{name} has no {}: {e}", $name))?
            };
        }
        let api = Api {
            init_thread: sym!("MPI_Init_thread"),
            initialized: sym!("MPI_Initialized"),
            finalize: sym!("MPI_Finalize"),
            abort: sym!("MPI_Abort"),
            comm_rank: sym!("MPI_Comm_rank"),
            comm_size: sym!("MPI_Comm_size"),
            comm_split_type: sym!("MPI_Comm_split_type"),
            comm_free: sym!("MPI_Comm_free"),
            comm_set_errhandler: sym!("MPI_Comm_set_errhandler"),
            iallreduce: sym!("MPI_Iallreduce"),
            ibcast: sym!("MPI_Ibcast"),
            ibarrier: sym!("MPI_Ibarrier"),
            test: sym!("MPI_Test"),
            error_string: sym!("MPI_Error_string"),
            library_version: sym!("MPI_Get_library_version"),
            file: name.clone(),
        };
        // Never unloaded: see `API`.
        std::mem::forget(lib);
        return Ok(api);
    }
    Err(format!(
        "none of the MPI libraries loads ({})",
        tried.join("; ")
    ))
}

fn api() -> Result<&'static Api> {
    loaded_once(&API, load).map_err(|detail| Error::Library {
        what: "MPI".into(),
        detail,
        fix: fix(),
    })
}

/// `cell`'s value, loading it with `load` while it has none; a failed load is not remembered.
/// (Two threads racing may both load; the first value stored wins, and a library opened twice is
/// the same handle counted twice.)
fn loaded_once<T, E>(
    cell: &'static OnceLock<T>,
    load: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<&'static T, E> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = load()?;
    Ok(cell.get_or_init(|| value))
}

/// Whether an MPICH-ABI MPI library loads on this machine (tests and the doctor ask).
pub fn available() -> bool {
    api().is_ok()
}

/// The MPI library's own description (`MPI_Get_library_version`), or why none loads.
pub fn library_version() -> Result<String> {
    let api = api()?;
    let mut buf = vec![0 as c_char; MAX_LIBRARY_VERSION_STRING];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_LIBRARY_VERSION_STRING characters, as the call requires;
    // MPI allows this call before MPI_Init.
    let rc = unsafe { (api.library_version)(buf.as_mut_ptr(), &mut len) };
    if rc != SUCCESS {
        return Err(Error::Library {
            what: "MPI".into(),
            detail: format!("{}: MPI_Get_library_version returned {rc}", api.file),
            fix: fix(),
        });
    }
    // SAFETY: MPI wrote a NUL-terminated string into `buf`.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    let first = s.to_string_lossy().lines().next().unwrap_or("").to_string();
    Ok(format!(
        "{} ({})",
        first.split_whitespace().collect::<Vec<_>>().join(" "),
        api.file
    ))
}

/// The MPI backend; see the module documentation.
pub struct MpiComm {
    api: &'static Api,
    rank: usize,
    world: usize,
    local_rank: usize,
    timeout: Duration,
    /// MPI is called from one thread at a time (we ask for MPI_THREAD_SERIALIZED).
    lock: Mutex<()>,
    /// A collective timed out or failed: the job cannot finish cleanly, so drop aborts it.
    poisoned: AtomicBool,
    /// `MPI_Init_thread` succeeded (so drop must finalise or abort).
    live: bool,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.rank, self.world)
    }
}

impl MpiComm {
    /// Initialises MPI (once per process) and checks that it agrees with the launcher's
    /// variables.
    pub fn init(launch: &Launch, timeout: Duration) -> Result<MpiComm> {
        let api = api()?;
        let mut already: c_int = 0;
        // SAFETY: MPI_Initialized may be called at any time.
        unsafe { (api.initialized)(&mut already) };
        if already != 0 || STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::Invalid {
                op: "MPI_Init",
                msg: "MPI was already initialised in this process (it can be once)".into(),
            });
        }
        let mut provided: c_int = 0;
        // SAFETY: null argc/argv are allowed by the MPI standard.
        let rc = unsafe {
            (api.init_thread)(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                THREAD_SERIALIZED,
                &mut provided,
            )
        };
        let mut comm = MpiComm {
            api,
            rank: launch.rank,
            world: launch.world_size,
            local_rank: 0,
            timeout,
            lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            live: false,
        };
        comm.check("MPI_Init_thread", rc)?;
        comm.live = true;
        if provided < THREAD_SERIALIZED {
            comm.poisoned.store(true, Ordering::SeqCst);
            return Err(comm.error(
                "MPI_Init_thread",
                format!(
                    "the library offers thread level {provided}, we need MPI_THREAD_SERIALIZED"
                ),
            ));
        }
        // SAFETY: MPI is initialised; MPI_COMM_WORLD and MPI_ERRORS_RETURN are predefined.
        let rc = unsafe { (api.comm_set_errhandler)(COMM_WORLD, ERRORS_RETURN) };
        comm.check("MPI_Comm_set_errhandler", rc)?;
        let (mut rank, mut size) = (0 as c_int, 0 as c_int);
        // SAFETY: as above; the out-pointers are live locals.
        let rc = unsafe { (api.comm_rank)(COMM_WORLD, &mut rank) };
        comm.check("MPI_Comm_rank", rc)?;
        // SAFETY: as above.
        let rc = unsafe { (api.comm_size)(COMM_WORLD, &mut size) };
        comm.check("MPI_Comm_size", rc)?;
        if (rank as usize, size as usize) != (launch.rank, launch.world_size) {
            comm.poisoned.store(true, Ordering::SeqCst);
            return Err(comm.error(
                "MPI_Init_thread",
                format!(
                    "MPI says rank {rank} of {size}, the launcher's variables ({}) say rank {} of \
                     {}: the MPI library loaded ({}) is not the one of the launcher (an MPICH-ABI \
                     mpiexec is needed; under Open MPI's mpirun use --backend tcp)",
                    launch.launcher, launch.rank, launch.world_size, api.file
                ),
            ));
        }
        comm.rank = rank as usize;
        comm.world = size as usize;
        comm.local_rank = comm.shared_memory_rank()?;
        Ok(comm)
    }

    /// This rank's index among the ranks that share its node's memory.
    fn shared_memory_rank(&self) -> Result<usize> {
        let mut node: Comm = 0;
        // SAFETY: a collective over MPI_COMM_WORLD at start-up (every rank is here); the
        // out-pointer is a live local.
        let rc = unsafe {
            (self.api.comm_split_type)(
                COMM_WORLD,
                COMM_TYPE_SHARED,
                self.rank as c_int,
                INFO_NULL,
                &mut node,
            )
        };
        self.check("MPI_Comm_split_type", rc)?;
        let mut local: c_int = 0;
        // SAFETY: `node` is the communicator just created.
        let rc = unsafe { (self.api.comm_rank)(node, &mut local) };
        self.check("MPI_Comm_rank", rc)?;
        // SAFETY: freed once; it is not used afterwards.
        let rc = unsafe { (self.api.comm_free)(&mut node) };
        self.check("MPI_Comm_free", rc)?;
        Ok(local as usize)
    }

    fn error(&self, call: &'static str, message: String) -> Error {
        Error::Mpi {
            call,
            rank: self.rank,
            message,
        }
    }

    fn check(&self, call: &'static str, rc: c_int) -> Result<()> {
        if rc == SUCCESS {
            return Ok(());
        }
        self.poisoned.store(true, Ordering::SeqCst);
        let mut buf = vec![0 as c_char; MAX_ERROR_STRING];
        let mut len: c_int = 0;
        // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters.
        let text = if unsafe { (self.api.error_string)(rc, buf.as_mut_ptr(), &mut len) } == SUCCESS
        {
            // SAFETY: MPI wrote a NUL-terminated string.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            format!("error code {rc}")
        };
        Err(self.error(call, text))
    }

    /// Polls `req` until it completes or the timeout passes (progress in MPICH happens inside
    /// MPI calls, so polling is what moves the data).
    fn wait(&self, req: &mut Request, what: &str) -> Result<()> {
        let out = crate::poll(self.timeout, self.rank, what, || {
            let mut done: c_int = 0;
            // SAFETY: `req` is an active request started by this communicator.
            let rc = unsafe { (self.api.test)(req, &mut done, status_ignore()) };
            self.check("MPI_Test", rc)?;
            Ok(done != 0)
        });
        if out.is_err() {
            self.poisoned.store(true, Ordering::SeqCst);
        }
        out
    }

    /// Runs a non-blocking collective over `buf` in pieces of at most [`MAX_COUNT`] elements:
    /// `start(address, count, datatype, &mut request)` starts one piece, which is waited for.
    fn in_pieces(
        &self,
        buf: &mut Buf<'_>,
        call: &'static str,
        what: &str,
        mut start: impl FnMut(*mut c_void, c_int, Datatype, &mut Request) -> c_int,
    ) -> Result<()> {
        let (ptr, len, ty) = raw(buf);
        let size = buf.elem().size();
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(MAX_COUNT);
            let mut req: Request = 0;
            // SAFETY: `ptr + offset` addresses `n` elements of type `ty` inside `buf`, which is
            // borrowed mutably until the piece completes in `wait` below.
            let piece = unsafe { ptr.cast::<u8>().add(offset * size).cast() };
            self.check(call, start(piece, n as c_int, ty, &mut req))?;
            self.wait(&mut req, what)?;
            offset += n;
        }
        Ok(())
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Invalid {
                op: "collective",
                msg: "an earlier MPI call failed or timed out; the job cannot continue".into(),
            });
        }
        Ok(self.lock.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A buffer as MPI sees it: address, element count, datatype.
fn raw(buf: &mut Buf<'_>) -> (*mut c_void, usize, Datatype) {
    match buf {
        Buf::F32(b) => (b.as_mut_ptr().cast(), b.len(), FLOAT),
        Buf::F64(b) => (b.as_mut_ptr().cast(), b.len(), DOUBLE),
        Buf::U64(b) => (b.as_mut_ptr().cast(), b.len(), UINT64),
        Buf::U8(b) => (b.as_mut_ptr().cast(), b.len(), BYTE),
    }
}

/// MPI counts are `int`s: larger buffers go in pieces of at most this many elements.
const MAX_COUNT: usize = 1 << 30;

impl Collective for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn backend(&self) -> Backend {
        Backend::Mpi
    }

    fn all_reduce(&self, mut buf: Buf<'_>, op: ReduceOp) -> Result<()> {
        buf.check_reducible(op)?;
        let _g = self.guard()?;
        let what = format!("all-reduce ({}, {} elements)", op.name(), buf.len());
        let mpi_op = match op {
            ReduceOp::Sum | ReduceOp::Average => OP_SUM,
            ReduceOp::Max => OP_MAX,
            ReduceOp::Min => OP_MIN,
        };
        self.in_pieces(&mut buf, "MPI_Iallreduce", &what, |ptr, n, ty, req| {
            // SAFETY: `ptr` addresses `n` elements of type `ty`, reduced in place.
            unsafe { (self.api.iallreduce)(in_place(), ptr, n, ty, mpi_op, COMM_WORLD, req) }
        })?;
        if op == ReduceOp::Average {
            buf.divide(self.world);
        }
        Ok(())
    }

    fn broadcast(&self, mut buf: Buf<'_>, root: usize) -> Result<()> {
        check_root("broadcast", root, self.world)?;
        let _g = self.guard()?;
        let what = format!("broadcast from rank {root} ({} elements)", buf.len());
        self.in_pieces(&mut buf, "MPI_Ibcast", &what, |ptr, n, ty, req| {
            // SAFETY: `ptr` addresses `n` elements of type `ty`.
            unsafe { (self.api.ibcast)(ptr, n, ty, root as c_int, COMM_WORLD, req) }
        })
    }

    fn barrier(&self) -> Result<()> {
        let _g = self.guard()?;
        let mut req: Request = 0;
        // SAFETY: MPI is initialised; `req` is a live local.
        let rc = unsafe { (self.api.ibarrier)(COMM_WORLD, &mut req) };
        self.check("MPI_Ibarrier", rc)?;
        self.wait(&mut req, "barrier")
    }

    fn abort(&self, code: i32) -> ! {
        // SAFETY: MPI is initialised; MPI_Abort asks the process manager to end every rank.
        unsafe { (self.api.abort)(COMM_WORLD, code) };
        std::process::exit(code)
    }
}

/// How long a failing rank waits between printing why and aborting the job (see `Drop`).
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl Drop for MpiComm {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        if self.poisoned.load(Ordering::SeqCst) || std::thread::panicking() {
            // MPI_Finalize could wait forever for a rank that is gone; end the job instead.
            eprintln!("rank {}: aborting the MPI job after an error", self.rank);
            // The process manager stops forwarding this rank's output once it handles the
            // abort: a loaded machine lost the error that explains why the job ended. A moment
            // lets the forwarder carry it first.
            std::thread::sleep(ABORT_GRACE);
            // SAFETY: MPI is initialised and not finalised.
            unsafe { (self.api.abort)(COMM_WORLD, 1) };
            return;
        }
        // SAFETY: MPI is initialised, no request is pending (every collective waits for its
        // own), and it is finalised exactly once (init succeeds once per process).
        unsafe { (self.api.finalize)() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask doctor --install` checks MPI, installs it, and checks again in one process:
    /// a remembered failure made the second check report MPI missing after a good install.
    #[test]
    fn a_failed_load_is_tried_again_and_a_success_is_kept() {
        static CELL: OnceLock<u32> = OnceLock::new();
        let mut calls = 0;
        let first: std::result::Result<&u32, String> = loaded_once(&CELL, || {
            calls += 1;
            Err("not installed".to_string())
        });
        assert_eq!(first, Err("not installed".to_string()));
        let second = loaded_once(&CELL, || {
            calls += 1;
            Ok::<u32, String>(7)
        });
        assert_eq!(second, Ok(&7));
        let third = loaded_once(&CELL, || {
            calls += 1;
            Ok::<u32, String>(8)
        });
        assert_eq!(third, Ok(&7));
        assert_eq!(calls, 2);
    }
}
