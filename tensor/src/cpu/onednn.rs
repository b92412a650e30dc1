//! oneDNN 2.x (Debian's `libdnnl-dev`, 2.6/2.7) loaded at run time with `libloading`, never
//! linked, so the crate builds and runs without it.
//!
//! Only the handful of C entry points the convolution and GEMM need are declared. Primitive
//! descriptors and primitives are compiled once per (geometry, bias, thread count) and cached:
//! a ConvRNN unroll runs the same convolution hundreds of times, and creating a primitive (JIT
//! code generation) costs far more than running a small one. Every argument is given to oneDNN
//! as `format_tag_any`, so it picks its fastest layouts (on AVX2 `nChw8c` activations and
//! `OIhw8i8o` weights, on AVX-512 `nChw16c` / `OIhw16i16o`); tensors in another layout are
//! reordered by cached reorder primitives on the way in and out.
//!
//! Threads: oneDNN parallelises with OpenMP and fixes a primitive's thread count when it is
//! created. Called from outside rayon's pool it gets rayon's thread count (`RAYON_NUM_THREADS`
//! respected); called from inside a rayon task, or for a convolution under 4 MFLOP, it runs
//! single-threaded, so rayon tasks that each call oneDNN never oversubscribe the cores. Unless
//! the user set `OMP_WAIT_POLICY`, it is set to `PASSIVE` before libgomp loads: spinning OpenMP
//! threads made oneDNN 3–5× slower whenever other processes kept the cores busy, and slowed the
//! rayon work that ran next to them.
//!
//! Environment: `CONVRNN_DNNL_LIB` names the library file (default `libdnnl.so.2`);
//! `CONVRNN_CPU_CONV` (see [`crate::ops::CpuConvBackend`]) chooses between this and the Rust
//! kernels.
//!
//! Concurrency: the engine, primitive descriptors and primitives are immutable after creation
//! and oneDNN documents concurrent `execute` as safe when each call brings its own scratchpad
//! (`dnnl_scratchpad_mode_user`), which is what every call here does. Memory objects and
//! streams are per call.

use super::conv::ConvGeom;
use crate::layout::{Layout, BLOCK};
use crate::storage::CpuBuf;
use crate::{Error, Result, StorageStamp};
use libloading::Library;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock};

type Status = c_int;
type Dim = i64;
type Dims = [Dim; 12];
type Handle = *mut c_void;

/// `dnnl_memory_desc_t`: a plain C struct (696 bytes in 2.6). Only oneDNN reads its fields, so it
/// is kept as opaque storage with room to spare for other 2.x releases.
#[repr(C, align(8))]
struct MemDesc([u8; 2048]);

impl MemDesc {
    fn zeroed() -> Box<MemDesc> {
        Box::new(MemDesc([0; 2048]))
    }
}

/// `dnnl_convolution_desc_t` (5976 bytes in 2.6), opaque like [`MemDesc`].
#[repr(C, align(8))]
struct OpDesc([u8; 16384]);

#[repr(C)]
struct ExecArg {
    arg: c_int,
    memory: Handle,
}

#[repr(C)]
struct Version {
    major: c_int,
    minor: c_int,
    patch: c_int,
    hash: *const c_char,
    cpu_runtime: c_uint,
    gpu_runtime: c_uint,
}

/// Constants of the 2.x C API (dnnl_types.h).
mod k {
    use std::ffi::c_int;
    pub const SUCCESS: c_int = 0;
    pub const ENGINE_CPU: c_int = 1;
    pub const STREAM_DEFAULT: u32 = 1;
    pub const F32: c_int = 3;
    pub const TAG_ANY: c_int = 1;
    pub const TAG_A: c_int = 2; // x
    pub const TAG_ABCD: c_int = 5; // nchw, oihw
    pub const TAG_ABCDE: c_int = 7; // goihw
    pub const TAG_NCHW8C: c_int = 93;
    pub const TAG_NCHW16C: c_int = 69;
    pub const FORWARD_TRAINING: c_int = 64;
    pub const CONV_DIRECT: c_int = 1;
    pub const SCRATCHPAD_USER: c_int = 1;
    pub const QUERY_IMPL_INFO_STR: c_int = 8;
    pub const Q_SRC: c_int = 129;
    pub const Q_DIFF_SRC: c_int = 130;
    pub const Q_WEIGHTS: c_int = 131;
    pub const Q_DIFF_WEIGHTS: c_int = 132;
    pub const Q_DST: c_int = 133;
    pub const Q_DIFF_DST: c_int = 134;
    pub const Q_SCRATCHPAD: c_int = 136;
    pub const ARG_SRC: c_int = 1;
    pub const ARG_DST: c_int = 17;
    pub const ARG_WEIGHTS: c_int = 33;
    pub const ARG_BIAS: c_int = 41;
    pub const ARG_DIFF_SRC: c_int = 129;
    pub const ARG_DIFF_DST: c_int = 145;
    pub const ARG_DIFF_WEIGHTS: c_int = 161;
    pub const ARG_DIFF_BIAS: c_int = 169;
    pub const ARG_SCRATCHPAD: c_int = 80;
    pub const RUNTIME_OMP: u32 = 2;
}

type ConvInitFwd = unsafe extern "C" fn(
    *mut OpDesc,
    c_int,
    c_int,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const Dim,
    *const Dim,
    *const Dim,
    *const Dim,
) -> Status;
type ConvInitBwdData = unsafe extern "C" fn(
    *mut OpDesc,
    c_int,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const Dim,
    *const Dim,
    *const Dim,
    *const Dim,
) -> Status;
type ConvInitBwdWeights = unsafe extern "C" fn(
    *mut OpDesc,
    c_int,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const MemDesc,
    *const Dim,
    *const Dim,
    *const Dim,
    *const Dim,
) -> Status;
type Sgemm = unsafe extern "C" fn(
    c_char,
    c_char,
    Dim,
    Dim,
    Dim,
    f32,
    *const f32,
    Dim,
    *const f32,
    Dim,
    f32,
    *mut f32,
    Dim,
) -> Status;
type DestroyFn = unsafe extern "C" fn(Handle) -> Status;

/// The C entry points, copied out of the library (valid while it stays loaded, i.e. forever).
#[derive(Clone, Copy)]
struct Api {
    engine_create: unsafe extern "C" fn(*mut Handle, c_int, usize) -> Status,
    stream_create: unsafe extern "C" fn(*mut Handle, Handle, c_uint) -> Status,
    stream_wait: unsafe extern "C" fn(Handle) -> Status,
    md_init_by_tag: unsafe extern "C" fn(*mut MemDesc, c_int, *const Dim, c_int, c_int) -> Status,
    md_equal: unsafe extern "C" fn(*const MemDesc, *const MemDesc) -> c_int,
    md_get_size: unsafe extern "C" fn(*const MemDesc) -> usize,
    conv_fwd_init: ConvInitFwd,
    conv_bwd_data_init: ConvInitBwdData,
    conv_bwd_weights_init: ConvInitBwdWeights,
    attr_create: unsafe extern "C" fn(*mut Handle) -> Status,
    attr_set_scratchpad_mode: unsafe extern "C" fn(Handle, c_int) -> Status,
    pd_create: unsafe extern "C" fn(*mut Handle, *const c_void, Handle, Handle, Handle) -> Status,
    pd_destroy: DestroyFn,
    pd_query: unsafe extern "C" fn(Handle, c_int, c_int, *mut c_void) -> Status,
    pd_query_md: unsafe extern "C" fn(Handle, c_int, c_int) -> *const MemDesc,
    reorder_pd_create: unsafe extern "C" fn(
        *mut Handle,
        *const MemDesc,
        Handle,
        *const MemDesc,
        Handle,
        Handle,
    ) -> Status,
    memory_create: unsafe extern "C" fn(*mut Handle, *const MemDesc, Handle, *mut c_void) -> Status,
    memory_destroy: DestroyFn,
    primitive_create: unsafe extern "C" fn(*mut Handle, Handle) -> Status,
    primitive_destroy: DestroyFn,
    primitive_execute: unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> Status,
    sgemm: Sgemm,
}

fn status_name(s: Status) -> &'static str {
    match s {
        1 => "out of memory",
        2 => "invalid arguments",
        3 => "unimplemented",
        4 => "iterator ends",
        5 => "runtime error",
        6 => "not required",
        _ => "unknown status",
    }
}

fn check(s: Status, what: &str) -> Result<()> {
    if s == k::SUCCESS {
        Ok(())
    } else {
        Err(Error::OneDnn(format!(
            "{what} failed: {} ({s})",
            status_name(s)
        )))
    }
}

/// The library file tried by default.
pub const LIBRARY: &str = "libdnnl.so.2";
/// Names another oneDNN library file to load instead of [`LIBRARY`].
pub const LIBRARY_ENV: &str = "CONVRNN_DNNL_LIB";

/// A 64-byte-aligned chunk: scratchpads and intermediate buffers in oneDNN's own layouts are
/// allocated in these, aligned as oneDNN aligns its own allocations.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Room for `bytes` bytes, written and read only by oneDNN (never through Rust references, so
/// it is left uninitialised instead of paying for a memset per call).
fn aligned_buffer(bytes: usize) -> Vec<Line> {
    Vec::with_capacity(bytes.div_ceil(64).max(1))
}

/// Temporaries (scratchpads, buffers in oneDNN's layouts) recycled between calls. A fresh
/// multi-megabyte buffer costs a page fault per 4 KiB on first touch, taken inside oneDNN's
/// kernels: the weight-gradient scratchpad of a 512×512 3×3 conv alone is tens of megabytes.
#[derive(Default)]
struct BufferPool {
    free: Mutex<PoolLists>,
}

#[derive(Default)]
struct PoolLists {
    /// Free buffers by length in lines.
    by_len: HashMap<usize, Vec<Vec<Line>>>,
    bytes: usize,
}

/// At most this many bytes wait in the pool; at most this many buffers of one length.
const POOL_MAX_BYTES: usize = 512 << 20;
const POOL_MAX_PER_LEN: usize = 4;

impl BufferPool {
    /// Room for `bytes` bytes (contents unspecified: only oneDNN writes and reads it).
    fn take(&self, bytes: usize) -> Pooled<'_> {
        let lines = bytes.div_ceil(64).max(1);
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let reused = f.by_len.get_mut(&lines).and_then(Vec::pop);
        if reused.is_some() {
            f.bytes -= lines * 64;
        }
        drop(f);
        Pooled {
            buf: reused.unwrap_or_else(|| aligned_buffer(bytes)),
            pool: self,
        }
    }
}

/// A pooled buffer, returned to its pool on drop.
struct Pooled<'a> {
    buf: Vec<Line>,
    pool: &'a BufferPool,
}

impl Pooled<'_> {
    fn ptr(&mut self) -> *mut c_void {
        self.buf.as_mut_ptr() as *mut c_void
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let lines = buf.capacity();
        let mut f = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if f.bytes + lines * 64 > POOL_MAX_BYTES {
            return;
        }
        let list = f.by_len.entry(lines).or_default();
        if list.len() < POOL_MAX_PER_LEN {
            list.push(buf);
            f.bytes += lines * 64;
        }
    }
}

/// A pooled `f32` buffer for the convolutions built on oneDNN's sgemm ([`super::winograd`],
/// [`super::small_map`]), recycled like oneDNN's own temporaries. Its contents are whatever the
/// previous user left (zeros when freshly allocated): callers write before they read.
pub struct Scratch<'a> {
    buf: Pooled<'a>,
    len: usize,
}

impl std::ops::Deref for Scratch<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `OneDnn::scratch` initialised at least `len` floats of the 64-byte-aligned
        // buffer, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.buf.buf.as_ptr() as *const f32, self.len) }
    }
}

impl std::ops::DerefMut for Scratch<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf.as_mut_ptr() as *mut f32, self.len) }
    }
}

/// An output that oneDNN writes completely: allocated without zero-filling (a pass over the
/// whole buffer, and its page faults, for nothing); its length is set once it has been written.
struct OutBuf(Vec<f32>, usize);

impl OutBuf {
    fn new(n: usize) -> Self {
        OutBuf(Vec::with_capacity(n), n)
    }
    fn ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr() as *mut c_void
    }
    /// # Safety
    /// Every one of the `n` elements must have been written (through [`OutBuf::ptr`]).
    unsafe fn written(mut self) -> CpuBuf {
        // SAFETY: the caller guarantees the first `n` elements are initialised; capacity ≥ n.
        unsafe { self.0.set_len(self.1) };
        CpuBuf::new(std::mem::take(&mut self.0))
    }
}

/// A primitive with its descriptor. The handles are owned and destroyed with it.
struct Prim {
    pd: Handle,
    prim: Handle,
    scratch_bytes: usize,
    pd_destroy: DestroyFn,
    primitive_destroy: DestroyFn,
}

// SAFETY: oneDNN primitives and primitive descriptors are immutable after creation and safe to
// use from several threads at once (each execute call here supplies its own scratchpad).
unsafe impl Send for Prim {}
unsafe impl Sync for Prim {}

impl Drop for Prim {
    fn drop(&mut self) {
        // SAFETY: both handles were created by oneDNN, are owned by this value and not used after.
        unsafe {
            (self.primitive_destroy)(self.prim);
            (self.pd_destroy)(self.pd);
        }
    }
}

impl Prim {
    /// The memory descriptor oneDNN chose for argument `what`.
    fn md(&self, api: &Api, what: c_int) -> *const MemDesc {
        // SAFETY: `pd` is a live primitive descriptor; the returned pointer lives as long as it.
        unsafe { (api.pd_query_md)(self.pd, what, 0) }
    }

    fn impl_info(&self, api: &Api) -> String {
        let mut s: *const c_char = ptr::null();
        // SAFETY: the impl_info_str query writes a pointer to a NUL-terminated string owned by pd.
        let st = unsafe {
            (api.pd_query)(
                self.pd,
                k::QUERY_IMPL_INFO_STR,
                0,
                &mut s as *mut *const c_char as *mut c_void,
            )
        };
        if st != k::SUCCESS || s.is_null() {
            return "?".into();
        }
        // SAFETY: checked non-null above; oneDNN returns a valid C string.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }
}

/// A memory object over caller-owned data, destroyed on drop.
struct Mem {
    handle: Handle,
    destroy: DestroyFn,
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: created by dnnl_memory_create and owned here.
        unsafe {
            (self.destroy)(self.handle);
        }
    }
}

/// An argument as oneDNN wants it: a memory object, and the buffer behind it when that buffer is
/// a temporary in oneDNN's preferred layout.
struct Bound<'a> {
    mem: Mem,
    tmp: Option<(Pooled<'a>, *const MemDesc)>,
}

/// A weight tensor reordered into the layout of one primitive.
struct CachedWeights {
    stamp: StorageStamp,
    /// Keeps alive the primitive whose weight descriptor `md` points into.
    _entry: Arc<ConvEntry>,
    md: *const MemDesc,
    buf: Arc<Vec<Line>>,
}

/// Which transform of a weight tensor a [`OneDnn::derived_weights`] entry holds: a tag chosen by
/// the convolution that computes it, and the weight's shape `[O, C, kh, kw]` (one storage could be
/// read under another shape).
pub type DerivedKey = (u8, [usize; 4]);

/// One cached transform of a weight tensor.
struct DerivedWeights {
    stamp: StorageStamp,
    data: Arc<Vec<f32>>,
}

/// The weights argument of one call: a memory object over the caller's data or a reordered
/// copy, kept alive until the call returns.
struct BoundWeights {
    mem: Mem,
    _cached: Option<Arc<Vec<Line>>>,
}

/// Which primitive of a convolution an argument belongs to (part of a reorder's cache key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    Fwd,
    BwdData,
    BwdWeights,
}

/// A reorder between a tensor-side layout and the layout oneDNN chose for one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ReorderKey {
    stage: Stage,
    query: c_int,
    user: Layout,
    into_onednn: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConvKey {
    geom: ConvGeom,
    bias: bool,
    threads: usize,
}

struct ConvEntry {
    fwd: Prim,
    bwd_data: OnceLock<std::result::Result<Prim, String>>,
    bwd_weights: OnceLock<std::result::Result<Prim, String>>,
    reorders: Mutex<HashMap<ReorderKey, Arc<Prim>>>,
}

/// Above this many cached convolutions the cache is dropped and rebuilt (entries in use stay
/// alive through their `Arc`); only a workload of ever-changing shapes gets there.
const MAX_CACHED: usize = 512;

/// The loaded library: entry points, one CPU engine, caches.
pub struct OneDnn {
    api: Api,
    omp_set_num_threads: Option<unsafe extern "C" fn(c_int)>,
    engine: Handle,
    attr: Handle,
    streams: Mutex<Vec<usize>>,
    convs: Mutex<HashMap<ConvKey, Arc<ConvEntry>>>,
    /// Weights in a primitive's chosen layout, keyed by (storage, stage): an unroll convolves
    /// with the same weights at every step, so they are reordered once per optimiser update
    /// instead of once per call.
    weights: Mutex<HashMap<(usize, Stage), CachedWeights>>,
    /// Weights transformed for the sgemm-based convolutions (Winograd filters), cached by
    /// (storage, transform) for the same reason.
    derived: Mutex<HashMap<(usize, DerivedKey), DerivedWeights>>,
    pool: BufferPool,
    version: (i32, i32, i32),
    path: String,
    _lib: Library,
    _gomp: Option<Library>,
}

// SAFETY: the engine and attribute handles are only read after creation (oneDNN engines are
// thread-safe); streams are handed out one caller at a time through the mutex-guarded pool.
unsafe impl Send for OneDnn {}
unsafe impl Sync for OneDnn {}

impl std::fmt::Debug for OneDnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b, c) = self.version;
        write!(f, "OneDnn({} {a}.{b}.{c})", self.path)
    }
}

static ONEDNN: OnceLock<std::result::Result<OneDnn, String>> = OnceLock::new();

/// The process-wide oneDNN, loaded on first use; the error says which file was tried and how to
/// install it.
pub fn get() -> Result<&'static OneDnn> {
    ONEDNN
        .get_or_init(load)
        .as_ref()
        .map_err(|e| Error::OneDnn(e.clone()))
}

/// Whether oneDNN loads on this machine.
pub fn available() -> bool {
    get().is_ok()
}

/// How many OpenMP threads a oneDNN call made from the current thread may use.
pub fn thread_budget() -> usize {
    if rayon::current_thread_index().is_some() {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Below this many flops a convolution runs on one thread: an OpenMP fork/join and its barrier
/// cost more than they save (and much more when the cores are shared, because libgomp's threads
/// spin at the barrier while the thread they wait for is descheduled).
const SINGLE_THREAD_FLOPS: f64 = 4e6;

fn conv_threads(g: &ConvGeom) -> usize {
    if g.flops() < SINGLE_THREAD_FLOPS {
        1
    } else {
        thread_budget()
    }
}

fn load() -> std::result::Result<OneDnn, String> {
    load_from(&std::env::var(LIBRARY_ENV).unwrap_or_else(|_| LIBRARY.to_string()))
}

/// libgomp's file name: loaded as libdnnl's dependency, and looked up for its thread count.
const GOMP: &str = "libgomp.so.1";

/// libgomp reads `OMP_WAIT_POLICY` once, when it is loaded. Its default makes idle threads spin
/// at every barrier, which costs 3–5× on a machine whose cores are busy with other work (the
/// spinning thread waits for one that is descheduled; measured in examples/conv_bench.rs). Unless
/// the user chose a policy, or libgomp is already in the process, ask for the passive policy:
/// a few microseconds per parallel region, nothing next to a convolution worth parallelising.
fn default_omp_wait_policy() {
    const VAR: &str = "OMP_WAIT_POLICY";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    // RTLD_NOLOAD: only ask whether libgomp is mapped already, without loading it.
    #[cfg(target_os = "linux")]
    {
        use libloading::os::unix::{Library as UnixLibrary, RTLD_LAZY};
        const RTLD_NOLOAD: std::ffi::c_int = 4;
        // SAFETY: with RTLD_NOLOAD nothing is loaded and no initialiser runs.
        if unsafe { UnixLibrary::open(Some(GOMP), RTLD_LAZY | RTLD_NOLOAD) }.is_ok() {
            return;
        }
    }
    // Setting a variable races only with C code reading the environment on another thread at this
    // instant; Rust readers take the same lock as `set_var`.
    std::env::set_var(VAR, "PASSIVE");
}

fn load_from(path: &str) -> std::result::Result<OneDnn, String> {
    let path = path.to_string();
    default_omp_wait_policy();
    // SAFETY: loading a shared library runs its initialisers; libdnnl's are benign.
    let lib = unsafe { Library::new(&path) }.map_err(|e| {
        format!(
            "could not load {path} ({e}); install oneDNN with `apt-get install libdnnl-dev` \
             (Debian/Ubuntu), point {LIBRARY_ENV} at the library, or use the pure-Rust \
             convolution with CONVRNN_CPU_CONV=rust"
        )
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol is declared with the signature of oneDNN 2.x's C API, checked
            // against the version below before anything is called.
            *unsafe { lib.get($name) }.map_err(|e| {
                format!(
                    "{path} lacks {} ({e}); oneDNN 2.x is required",
                    String::from_utf8_lossy(&$name[..$name.len() - 1])
                )
            })?
        };
    }
    let version_fn: unsafe extern "C" fn() -> *const Version = sym!(b"dnnl_version\0");
    // SAFETY: dnnl_version returns a pointer to a static struct.
    let v = unsafe { &*version_fn() };
    let version = (v.major, v.minor, v.patch);
    if v.major != 2 {
        return Err(format!(
            "{path} is oneDNN {}.{}.{}; the convolution speaks the 2.x C API (Debian's libdnnl-dev 2.6/2.7)",
            v.major, v.minor, v.patch
        ));
    }
    let api = Api {
        engine_create: sym!(b"dnnl_engine_create\0"),
        stream_create: sym!(b"dnnl_stream_create\0"),
        stream_wait: sym!(b"dnnl_stream_wait\0"),
        md_init_by_tag: sym!(b"dnnl_memory_desc_init_by_tag\0"),
        md_equal: sym!(b"dnnl_memory_desc_equal\0"),
        md_get_size: sym!(b"dnnl_memory_desc_get_size\0"),
        conv_fwd_init: sym!(b"dnnl_dilated_convolution_forward_desc_init\0"),
        conv_bwd_data_init: sym!(b"dnnl_dilated_convolution_backward_data_desc_init\0"),
        conv_bwd_weights_init: sym!(b"dnnl_dilated_convolution_backward_weights_desc_init\0"),
        attr_create: sym!(b"dnnl_primitive_attr_create\0"),
        attr_set_scratchpad_mode: sym!(b"dnnl_primitive_attr_set_scratchpad_mode\0"),
        pd_create: sym!(b"dnnl_primitive_desc_create\0"),
        pd_destroy: sym!(b"dnnl_primitive_desc_destroy\0"),
        pd_query: sym!(b"dnnl_primitive_desc_query\0"),
        pd_query_md: sym!(b"dnnl_primitive_desc_query_md\0"),
        reorder_pd_create: sym!(b"dnnl_reorder_primitive_desc_create\0"),
        memory_create: sym!(b"dnnl_memory_create\0"),
        memory_destroy: sym!(b"dnnl_memory_destroy\0"),
        primitive_create: sym!(b"dnnl_primitive_create\0"),
        primitive_destroy: sym!(b"dnnl_primitive_destroy\0"),
        primitive_execute: sym!(b"dnnl_primitive_execute\0"),
        sgemm: sym!(b"dnnl_sgemm\0"),
    };
    // oneDNN's OpenMP runtime is the process's libgomp (already loaded as libdnnl's dependency);
    // its thread count is set per calling thread before each call.
    let (gomp, omp_set_num_threads) = if v.cpu_runtime == k::RUNTIME_OMP {
        // SAFETY: libgomp is already mapped into the process by libdnnl; this only adds a handle.
        match unsafe { Library::new(GOMP) } {
            Ok(g) => {
                // SAFETY: `omp_set_num_threads(int)` is the OpenMP standard signature.
                let f = unsafe { g.get::<unsafe extern "C" fn(c_int)>(b"omp_set_num_threads\0") }
                    .ok()
                    .map(|s| *s);
                (Some(g), f)
            }
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    let mut engine: Handle = ptr::null_mut();
    let mut attr: Handle = ptr::null_mut();
    // SAFETY: out-pointers are valid; the functions come from the loaded 2.x library.
    unsafe {
        check(
            (api.engine_create)(&mut engine, k::ENGINE_CPU, 0),
            "dnnl_engine_create",
        )
        .map_err(|e| e.to_string())?;
        check((api.attr_create)(&mut attr), "dnnl_primitive_attr_create")
            .map_err(|e| e.to_string())?;
        check(
            (api.attr_set_scratchpad_mode)(attr, k::SCRATCHPAD_USER),
            "dnnl_primitive_attr_set_scratchpad_mode",
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(OneDnn {
        api,
        omp_set_num_threads,
        engine,
        attr,
        streams: Mutex::new(Vec::new()),
        convs: Mutex::new(HashMap::new()),
        weights: Mutex::new(HashMap::new()),
        derived: Mutex::new(HashMap::new()),
        pool: BufferPool::default(),
        version,
        path,
        _lib: lib,
        _gomp: gomp,
    })
}

fn dims(v: &[usize]) -> Dims {
    let mut d = [0; 12];
    for (o, i) in d.iter_mut().zip(v) {
        *o = *i as Dim;
    }
    d
}

/// The tag of [`Layout::Blocked16`] (`nChw{BLOCK}c`).
fn blocked_tag() -> c_int {
    if BLOCK == 8 {
        k::TAG_NCHW8C
    } else {
        k::TAG_NCHW16C
    }
}

impl OneDnn {
    /// `major.minor.patch` and the file it was loaded from.
    pub fn describe(&self) -> String {
        let (a, b, c) = self.version;
        format!("oneDNN {a}.{b}.{c} ({})", self.path)
    }

    fn set_threads(&self, n: usize) {
        if let Some(f) = self.omp_set_num_threads {
            // SAFETY: plain OpenMP call; affects the calling thread's later parallel regions.
            unsafe { f(n as c_int) }
        }
    }

    fn md(&self, shape: &[usize], tag: c_int) -> Result<Box<MemDesc>> {
        let mut md = MemDesc::zeroed();
        let d = dims(shape);
        // SAFETY: md has room for a dnnl_memory_desc_t; dims holds `shape.len()` entries.
        check(
            unsafe {
                (self.api.md_init_by_tag)(&mut *md, shape.len() as c_int, d.as_ptr(), k::F32, tag)
            },
            "dnnl_memory_desc_init_by_tag",
        )?;
        Ok(md)
    }

    fn activation_md(&self, shape: [usize; 4], layout: Layout) -> Result<Box<MemDesc>> {
        let tag = match layout {
            Layout::Plain => k::TAG_ABCD,
            Layout::Blocked16 => blocked_tag(),
        };
        self.md(&shape, tag)
    }

    fn weights_md(&self, g: &ConvGeom, tag_any: bool) -> Result<Box<MemDesc>> {
        if g.groups == 1 {
            self.md(
                &[g.o, g.c, g.kh, g.kw],
                if tag_any { k::TAG_ANY } else { k::TAG_ABCD },
            )
        } else {
            self.md(
                &[g.groups, g.og(), g.cg(), g.kh, g.kw],
                if tag_any { k::TAG_ANY } else { k::TAG_ABCDE },
            )
        }
    }

    fn prim(&self, pd: Handle) -> Result<Prim> {
        let mut prim: Handle = ptr::null_mut();
        // SAFETY: pd is a live primitive descriptor.
        let st = unsafe { (self.api.primitive_create)(&mut prim, pd) };
        if st != k::SUCCESS {
            // SAFETY: pd is owned here and not used after.
            unsafe { (self.api.pd_destroy)(pd) };
            check(st, "dnnl_primitive_create")?;
        }
        // SAFETY: pd is live; the scratchpad query returns a descriptor owned by pd.
        let scratch_bytes = unsafe {
            let md = (self.api.pd_query_md)(pd, k::Q_SCRATCHPAD, 0);
            if md.is_null() {
                0
            } else {
                (self.api.md_get_size)(md)
            }
        };
        Ok(Prim {
            pd,
            prim,
            scratch_bytes,
            pd_destroy: self.api.pd_destroy,
            primitive_destroy: self.api.primitive_destroy,
        })
    }

    fn pd_from_op(&self, od: &OpDesc, hint: Handle, what: &str) -> Result<Prim> {
        let mut pd: Handle = ptr::null_mut();
        // SAFETY: od was initialised by a *_desc_init call; attr and engine are live.
        check(
            unsafe {
                (self.api.pd_create)(
                    &mut pd,
                    od as *const OpDesc as *const c_void,
                    self.attr,
                    self.engine,
                    hint,
                )
            },
            what,
        )?;
        self.prim(pd)
    }

    /// Strides, dilations (oneDNN counts the gaps: dilation − 1) and (top,left)/(bottom,right)
    /// padding.
    fn conv_params(g: &ConvGeom) -> [Dims; 4] {
        [
            dims(&[g.sh, g.sw]),
            dims(&[g.dh - 1, g.dw - 1]),
            dims(&[g.pt, g.pl]),
            dims(&[g.pb, g.pr]),
        ]
    }

    fn make_fwd(&self, g: &ConvGeom, bias: bool) -> Result<Prim> {
        let src = self.md(&[g.n, g.c, g.h, g.w], k::TAG_ANY)?;
        let wei = self.weights_md(g, true)?;
        let dst = self.md(&[g.n, g.o, g.ho, g.wo], k::TAG_ANY)?;
        let b = self.md(&[g.o], k::TAG_A)?;
        let [st, di, pl, pr] = Self::conv_params(g);
        let mut od = Box::new(OpDesc([0; 16384]));
        // SAFETY: every descriptor is initialised; parameter arrays hold 2 spatial entries.
        check(
            unsafe {
                (self.api.conv_fwd_init)(
                    &mut *od,
                    k::FORWARD_TRAINING,
                    k::CONV_DIRECT,
                    &*src,
                    &*wei,
                    if bias { &*b } else { ptr::null() },
                    &*dst,
                    st.as_ptr(),
                    di.as_ptr(),
                    pl.as_ptr(),
                    pr.as_ptr(),
                )
            },
            "dnnl_dilated_convolution_forward_desc_init",
        )?;
        self.pd_from_op(&od, ptr::null_mut(), "creating the forward convolution")
    }

    fn make_bwd_data(&self, g: &ConvGeom, hint: &Prim) -> Result<Prim> {
        let src = self.md(&[g.n, g.c, g.h, g.w], k::TAG_ANY)?;
        let wei = self.weights_md(g, true)?;
        let dst = self.md(&[g.n, g.o, g.ho, g.wo], k::TAG_ANY)?;
        let [st, di, pl, pr] = Self::conv_params(g);
        let mut od = Box::new(OpDesc([0; 16384]));
        // SAFETY: as in make_fwd.
        check(
            unsafe {
                (self.api.conv_bwd_data_init)(
                    &mut *od,
                    k::CONV_DIRECT,
                    &*src,
                    &*wei,
                    &*dst,
                    st.as_ptr(),
                    di.as_ptr(),
                    pl.as_ptr(),
                    pr.as_ptr(),
                )
            },
            "dnnl_dilated_convolution_backward_data_desc_init",
        )?;
        self.pd_from_op(&od, hint.pd, "creating the backward-data convolution")
    }

    fn make_bwd_weights(&self, g: &ConvGeom, bias: bool, hint: &Prim) -> Result<Prim> {
        let src = self.md(&[g.n, g.c, g.h, g.w], k::TAG_ANY)?;
        let wei = self.weights_md(g, true)?;
        let dst = self.md(&[g.n, g.o, g.ho, g.wo], k::TAG_ANY)?;
        let b = self.md(&[g.o], k::TAG_A)?;
        let [st, di, pl, pr] = Self::conv_params(g);
        let mut od = Box::new(OpDesc([0; 16384]));
        // SAFETY: as in make_fwd.
        check(
            unsafe {
                (self.api.conv_bwd_weights_init)(
                    &mut *od,
                    k::CONV_DIRECT,
                    &*src,
                    &*wei,
                    if bias { &*b } else { ptr::null() },
                    &*dst,
                    st.as_ptr(),
                    di.as_ptr(),
                    pl.as_ptr(),
                    pr.as_ptr(),
                )
            },
            "dnnl_dilated_convolution_backward_weights_desc_init",
        )?;
        self.pd_from_op(&od, hint.pd, "creating the backward-weights convolution")
    }

    fn entry(&self, g: &ConvGeom, bias: bool, threads: usize) -> Result<Arc<ConvEntry>> {
        let key = ConvKey {
            geom: *g,
            bias,
            threads,
        };
        let mut convs = self.convs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = convs.get(&key) {
            return Ok(e.clone());
        }
        if convs.len() >= MAX_CACHED {
            convs.clear();
        }
        let fwd = self
            .make_fwd(g, bias)
            .map_err(|e| Error::OneDnn(format!("{e} (convolution {g:?}, bias {bias})")))?;
        let e = Arc::new(ConvEntry {
            fwd,
            bwd_data: OnceLock::new(),
            bwd_weights: OnceLock::new(),
            reorders: Mutex::new(HashMap::new()),
        });
        convs.insert(key, e.clone());
        Ok(e)
    }

    fn stream(&self) -> Result<usize> {
        if let Some(s) = self.streams.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        let mut s: Handle = ptr::null_mut();
        // SAFETY: engine is live.
        check(
            unsafe { (self.api.stream_create)(&mut s, self.engine, k::STREAM_DEFAULT) },
            "dnnl_stream_create",
        )?;
        Ok(s as usize)
    }

    fn memory(&self, md: *const MemDesc, data: *mut c_void) -> Result<Mem> {
        let mut m: Handle = ptr::null_mut();
        // SAFETY: md is a live descriptor; data points to at least md_get_size(md) bytes (the
        // callers size every buffer from the descriptor or the tensor shape it describes).
        check(
            unsafe { (self.api.memory_create)(&mut m, md, self.engine, data) },
            "dnnl_memory_create",
        )?;
        Ok(Mem {
            handle: m,
            destroy: self.api.memory_destroy,
        })
    }

    /// Runs a primitive with its own scratchpad and waits for it.
    fn execute(&self, p: &Prim, args: &[(c_int, &Mem)]) -> Result<()> {
        let mut scratch = self.pool.take(p.scratch_bytes);
        let mut exec: Vec<ExecArg> = args
            .iter()
            .map(|(a, m)| ExecArg {
                arg: *a,
                memory: m.handle,
            })
            .collect();
        let scratch_mem;
        if p.scratch_bytes > 0 {
            let md = p.md(&self.api, k::Q_SCRATCHPAD);
            scratch_mem = self.memory(md, scratch.ptr())?;
            exec.push(ExecArg {
                arg: k::ARG_SCRATCHPAD,
                memory: scratch_mem.handle,
            });
        }
        let stream = self.stream()?;
        // SAFETY: all memory objects in `exec` wrap buffers that outlive this call; the stream is
        // used by this thread only until it is returned to the pool.
        let res = unsafe {
            let st = (self.api.primitive_execute)(
                p.prim,
                stream as Handle,
                exec.len() as c_int,
                exec.as_ptr(),
            );
            check(st, "dnnl_primitive_execute")
                .and_then(|_| check((self.api.stream_wait)(stream as Handle), "dnnl_stream_wait"))
        };
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream);
        res
    }

    fn reorder(
        &self,
        entry: &ConvEntry,
        key: ReorderKey,
        from: *const MemDesc,
        to: *const MemDesc,
    ) -> Result<Arc<Prim>> {
        let mut map = entry.reorders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let mut pd: Handle = ptr::null_mut();
        // SAFETY: both descriptors are live; engine and attr are live.
        check(
            unsafe {
                (self.api.reorder_pd_create)(&mut pd, from, self.engine, to, self.engine, self.attr)
            },
            "dnnl_reorder_primitive_desc_create",
        )?;
        let p = Arc::new(self.prim(pd)?);
        map.insert(key, p.clone());
        Ok(p)
    }

    /// `data` (in the layout `user` describes) as the argument `chosen` of stage `stage`,
    /// reordered into a temporary when the layouts differ.
    fn bind_input(
        &self,
        entry: &ConvEntry,
        stage: Stage,
        query: c_int,
        chosen: *const MemDesc,
        user: &MemDesc,
        user_layout: Layout,
        data: &[f32],
    ) -> Result<Bound<'_>> {
        let ptr = data.as_ptr() as *mut c_void;
        // SAFETY: both descriptors are live.
        if unsafe { (self.api.md_equal)(chosen, user) } != 0 {
            return Ok(Bound {
                mem: self.memory(chosen, ptr)?,
                tmp: None,
            });
        }
        // SAFETY: chosen is live.
        let mut tmp = self.pool.take(unsafe { (self.api.md_get_size)(chosen) });
        let mem = self.memory(chosen, tmp.ptr())?;
        let key = ReorderKey {
            stage,
            query,
            user: user_layout,
            into_onednn: true,
        };
        self.reorder_into(entry, key, user, data, chosen, &mem)?;
        Ok(Bound {
            mem,
            tmp: Some((tmp, chosen)),
        })
    }

    /// Reorders `data` (laid out as `user`) into `dst` (laid out as `chosen`).
    fn reorder_into(
        &self,
        entry: &ConvEntry,
        key: ReorderKey,
        user: &MemDesc,
        data: &[f32],
        chosen: *const MemDesc,
        dst: &Mem,
    ) -> Result<()> {
        let src = self.memory(user, data.as_ptr() as *mut c_void)?;
        let r = self.reorder(entry, key, user, chosen)?;
        self.execute(&r, &[(k::ARG_SRC, &src), (k::ARG_DST, dst)])
    }

    /// The plain weights `w` (whose storage `stamp` names) as the weights argument `chosen` of
    /// `stage`. The reordered copy is cached and reused while the storage is unchanged (entries
    /// of dropped storages are purged when a new one is added).
    fn bind_weights(
        &self,
        entry: &Arc<ConvEntry>,
        stage: Stage,
        chosen: *const MemDesc,
        user: &MemDesc,
        w: &[f32],
        stamp: &StorageStamp,
    ) -> Result<BoundWeights> {
        // SAFETY: both descriptors are live.
        if unsafe { (self.api.md_equal)(chosen, user) } != 0 {
            return Ok(BoundWeights {
                mem: self.memory(chosen, w.as_ptr() as *mut c_void)?,
                _cached: None,
            });
        }
        let over = |buf: Arc<Vec<Line>>| -> Result<BoundWeights> {
            Ok(BoundWeights {
                mem: self.memory(chosen, buf.as_ptr() as *mut c_void)?,
                _cached: Some(buf),
            })
        };
        let cache_key = (stamp.key(), stage);
        {
            let map = self.weights.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(&cache_key) {
                // SAFETY: `c.md` lives as long as `c._entry`; `chosen` is live.
                if c.stamp.same_data(stamp) && unsafe { (self.api.md_equal)(chosen, c.md) } != 0 {
                    return over(c.buf.clone());
                }
            }
        }
        // SAFETY: chosen is live.
        let mut tmp = aligned_buffer(unsafe { (self.api.md_get_size)(chosen) });
        let mem = self.memory(chosen, tmp.as_mut_ptr() as *mut c_void)?;
        let key = ReorderKey {
            stage,
            query: k::Q_WEIGHTS,
            user: Layout::Plain,
            into_onednn: true,
        };
        self.reorder_into(entry, key, user, w, chosen, &mem)?;
        drop(mem);
        let buf = Arc::new(tmp);
        let mut map = self.weights.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| c.stamp.alive());
        map.insert(
            cache_key,
            CachedWeights {
                stamp: stamp.clone(),
                _entry: entry.clone(),
                md: chosen,
                buf: buf.clone(),
            },
        );
        drop(map);
        over(buf)
    }

    /// Memory for output argument `chosen`: `out` itself when the layouts agree, else a temporary
    /// that [`Self::finish_output`] reorders into `out`.
    fn bind_output(
        &self,
        chosen: *const MemDesc,
        user: &MemDesc,
        out: &mut OutBuf,
    ) -> Result<Bound<'_>> {
        // SAFETY: both descriptors are live.
        if unsafe { (self.api.md_equal)(chosen, user) } != 0 {
            return Ok(Bound {
                mem: self.memory(chosen, out.ptr())?,
                tmp: None,
            });
        }
        // SAFETY: chosen is live.
        let mut tmp = self.pool.take(unsafe { (self.api.md_get_size)(chosen) });
        let mem = self.memory(chosen, tmp.ptr())?;
        Ok(Bound {
            mem,
            tmp: Some((tmp, chosen)),
        })
    }

    fn finish_output(
        &self,
        entry: &ConvEntry,
        stage: Stage,
        query: c_int,
        bound: Bound,
        user: &MemDesc,
        user_layout: Layout,
        out: &mut OutBuf,
    ) -> Result<()> {
        let Some((_, chosen)) = &bound.tmp else {
            return Ok(());
        };
        let dst = self.memory(user, out.ptr())?;
        let key = ReorderKey {
            stage,
            query,
            user: user_layout,
            into_onednn: false,
        };
        let r = self.reorder(entry, key, *chosen, user)?;
        self.execute(&r, &[(k::ARG_SRC, &bound.mem), (k::ARG_DST, &dst)])
    }

    /// Forward convolution. `x` is in `x_layout`; the result is in `out_layout`.
    pub fn conv_forward(
        &self,
        g: &ConvGeom,
        x: &[f32],
        x_layout: Layout,
        w: &[f32],
        w_stamp: &StorageStamp,
        bias: Option<&[f32]>,
        out_layout: Layout,
    ) -> Result<CpuBuf> {
        let threads = conv_threads(g);
        self.set_threads(threads);
        let e = self.entry(g, bias.is_some(), threads)?;
        let api = &self.api;
        let x_md = self.activation_md([g.n, g.c, g.h, g.w], x_layout)?;
        let w_md = self.weights_md(g, false)?;
        let y_md = self.activation_md([g.n, g.o, g.ho, g.wo], out_layout)?;
        let b_md = self.md(&[g.o], k::TAG_A)?;
        let st = Stage::Fwd;
        let xs = self.bind_input(
            &e,
            st,
            k::Q_SRC,
            e.fwd.md(api, k::Q_SRC),
            &x_md,
            x_layout,
            x,
        )?;
        let ws = self.bind_weights(&e, st, e.fwd.md(api, k::Q_WEIGHTS), &w_md, w, w_stamp)?;
        let bs = match bias {
            Some(b) => Some(self.memory(&*b_md, b.as_ptr() as *mut c_void)?),
            None => None,
        };
        let mut out = OutBuf::new(g.out_len());
        let ys = self.bind_output(e.fwd.md(api, k::Q_DST), &y_md, &mut out)?;
        let mut args = vec![
            (k::ARG_SRC, &xs.mem),
            (k::ARG_WEIGHTS, &ws.mem),
            (k::ARG_DST, &ys.mem),
        ];
        if let Some(b) = &bs {
            args.push((k::ARG_BIAS, b));
        }
        self.execute(&e.fwd, &args)?;
        self.finish_output(&e, st, k::Q_DST, ys, &y_md, out_layout, &mut out)?;
        // SAFETY: the convolution (or the reorder after it) wrote every element of `out`.
        Ok(unsafe { out.written() })
    }

    /// Gradient of the input, returned in `dx_layout`; `dy` is in `dy_layout`.
    pub fn conv_backward_data(
        &self,
        g: &ConvGeom,
        has_bias: bool,
        dy: &[f32],
        dy_layout: Layout,
        w: &[f32],
        w_stamp: &StorageStamp,
        dx_layout: Layout,
    ) -> Result<CpuBuf> {
        let threads = conv_threads(g);
        self.set_threads(threads);
        let e = self.entry(g, has_bias, threads)?;
        let p = match e
            .bwd_data
            .get_or_init(|| self.make_bwd_data(g, &e.fwd).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(msg) => return Err(Error::OneDnn(format!("{msg} (convolution {g:?})"))),
        };
        let api = &self.api;
        let dy_md = self.activation_md([g.n, g.o, g.ho, g.wo], dy_layout)?;
        let w_md = self.weights_md(g, false)?;
        let dx_md = self.activation_md([g.n, g.c, g.h, g.w], dx_layout)?;
        let st = Stage::BwdData;
        let dys = self.bind_input(
            &e,
            st,
            k::Q_DIFF_DST,
            p.md(api, k::Q_DIFF_DST),
            &dy_md,
            dy_layout,
            dy,
        )?;
        let ws = self.bind_weights(&e, st, p.md(api, k::Q_WEIGHTS), &w_md, w, w_stamp)?;
        let mut dx = OutBuf::new(g.in_len());
        let dxs = self.bind_output(p.md(api, k::Q_DIFF_SRC), &dx_md, &mut dx)?;
        self.execute(
            p,
            &[
                (k::ARG_DIFF_DST, &dys.mem),
                (k::ARG_WEIGHTS, &ws.mem),
                (k::ARG_DIFF_SRC, &dxs.mem),
            ],
        )?;
        self.finish_output(&e, st, k::Q_DIFF_SRC, dxs, &dx_md, dx_layout, &mut dx)?;
        // SAFETY: the backward-data primitive (or the reorder after it) wrote every element.
        Ok(unsafe { dx.written() })
    }

    /// Gradients of the weights (plain `[O, C/g, kh, kw]`) and, for a convolution with bias, of
    /// the bias.
    pub fn conv_backward_weights(
        &self,
        g: &ConvGeom,
        has_bias: bool,
        x: &[f32],
        x_layout: Layout,
        dy: &[f32],
        dy_layout: Layout,
    ) -> Result<(CpuBuf, Option<CpuBuf>)> {
        if g.n == 0 {
            // Nothing to sum over; oneDNN may not touch the outputs at all.
            return Ok((
                CpuBuf::zeros(g.weight_len()),
                has_bias.then(|| CpuBuf::zeros(g.o)),
            ));
        }
        let threads = conv_threads(g);
        self.set_threads(threads);
        let e = self.entry(g, has_bias, threads)?;
        let p = match e.bwd_weights.get_or_init(|| {
            self.make_bwd_weights(g, has_bias, &e.fwd)
                .map_err(|e| e.to_string())
        }) {
            Ok(p) => p,
            Err(msg) => return Err(Error::OneDnn(format!("{msg} (convolution {g:?})"))),
        };
        let api = &self.api;
        let x_md = self.activation_md([g.n, g.c, g.h, g.w], x_layout)?;
        let dy_md = self.activation_md([g.n, g.o, g.ho, g.wo], dy_layout)?;
        let w_md = self.weights_md(g, false)?;
        let b_md = self.md(&[g.o], k::TAG_A)?;
        let st = Stage::BwdWeights;
        let xs = self.bind_input(&e, st, k::Q_SRC, p.md(api, k::Q_SRC), &x_md, x_layout, x)?;
        let dys = self.bind_input(
            &e,
            st,
            k::Q_DIFF_DST,
            p.md(api, k::Q_DIFF_DST),
            &dy_md,
            dy_layout,
            dy,
        )?;
        let mut dw = OutBuf::new(g.weight_len());
        let dws = self.bind_output(p.md(api, k::Q_DIFF_WEIGHTS), &w_md, &mut dw)?;
        let mut db = has_bias.then(|| OutBuf::new(g.o));
        let dbm = match &mut db {
            Some(b) => Some(self.memory(&*b_md, b.ptr())?),
            None => None,
        };
        let mut args = vec![
            (k::ARG_SRC, &xs.mem),
            (k::ARG_DIFF_DST, &dys.mem),
            (k::ARG_DIFF_WEIGHTS, &dws.mem),
        ];
        if let Some(m) = &dbm {
            args.push((k::ARG_DIFF_BIAS, m));
        }
        self.execute(p, &args)?;
        self.finish_output(
            &e,
            st,
            k::Q_DIFF_WEIGHTS,
            dws,
            &w_md,
            Layout::Plain,
            &mut dw,
        )?;
        // SAFETY: the primitive (or the reorder after it) wrote every element of both (an empty
        // batch returned zeros above).
        Ok(unsafe { (dw.written(), db.map(|b| b.written())) })
    }

    /// Whether oneDNN's forward convolution reads and writes [`Layout::Blocked16`] as is (no
    /// reorder on either side): true where its preferred block is the tensor's block size (16 on
    /// AVX-512 machines), false on AVX2, which blocks by 8.
    pub fn runs_blocked_natively(&self, g: &ConvGeom, has_bias: bool) -> Result<bool> {
        let threads = conv_threads(g);
        self.set_threads(threads);
        let e = self.entry(g, has_bias, threads)?;
        let x = self.activation_md([g.n, g.c, g.h, g.w], Layout::Blocked16)?;
        let y = self.activation_md([g.n, g.o, g.ho, g.wo], Layout::Blocked16)?;
        let api = &self.api;
        // SAFETY: all four descriptors are live.
        Ok(unsafe {
            (api.md_equal)(e.fwd.md(api, k::Q_SRC), &*x) != 0
                && (api.md_equal)(e.fwd.md(api, k::Q_DST), &*y) != 0
        })
    }

    /// The implementations oneDNN picked for forward, backward-data and backward-weights.
    pub fn conv_impl_info(&self, g: &ConvGeom, has_bias: bool) -> Result<[String; 3]> {
        let threads = conv_threads(g);
        self.set_threads(threads);
        let e = self.entry(g, has_bias, threads)?;
        let bd = e
            .bwd_data
            .get_or_init(|| self.make_bwd_data(g, &e.fwd).map_err(|e| e.to_string()));
        let bw = e.bwd_weights.get_or_init(|| {
            self.make_bwd_weights(g, has_bias, &e.fwd)
                .map_err(|e| e.to_string())
        });
        let name = |p: &std::result::Result<Prim, String>| match p {
            Ok(p) => p.impl_info(&self.api),
            Err(e) => format!("error: {e}"),
        };
        Ok([e.fwd.impl_info(&self.api), name(bd), name(bw)])
    }

    /// `make`'s transform (into a zeroed buffer of `len` floats) of the weights with `stamp`,
    /// computed once per state of their storage: the unroll convolves with the same weights at
    /// every step, and they change only when the optimiser writes them.
    pub fn derived_weights(
        &self,
        stamp: &StorageStamp,
        key: DerivedKey,
        len: usize,
        make: impl FnOnce(&mut [f32]),
    ) -> Arc<Vec<f32>> {
        let cache_key = (stamp.key(), key);
        {
            let map = self.derived.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(&cache_key) {
                if c.stamp.same_data(stamp) && c.data.len() == len {
                    return c.data.clone();
                }
            }
        }
        let mut data = vec![0.0; len];
        make(&mut data);
        let data = Arc::new(data);
        let mut map = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| c.stamp.alive());
        map.insert(
            cache_key,
            DerivedWeights {
                stamp: stamp.clone(),
                data: data.clone(),
            },
        );
        data
    }

    /// A buffer of `len` floats from the pool of temporaries (contents unspecified).
    pub fn scratch(&self, len: usize) -> Scratch<'_> {
        let mut buf = self.pool.take(len * 4);
        let lines = buf.buf.capacity();
        // Buffers that oneDNN used are uninitialised (length 0); make every line a valid float
        // once, so that the buffer can be handed out as a slice. Recycled ones keep their length.
        if buf.buf.len() < lines {
            buf.buf.resize(lines, Line([0; 64]));
        }
        Scratch { buf, len }
    }

    /// Row-major `c = alpha·op(a)·op(b) + beta·c` with `threads` OpenMP threads.
    ///
    /// # Safety
    /// The pointers must address matrices of the given sizes and leading dimensions, and `c`
    /// must not alias `a` or `b`.
    pub unsafe fn sgemm(
        &self,
        threads: usize,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        kd: usize,
        alpha: f32,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) -> Result<()> {
        self.set_threads(threads);
        let t = |x: bool| (if x { b'T' } else { b'N' }) as c_char;
        // SAFETY: forwarded to the caller's contract.
        let st = unsafe {
            (self.api.sgemm)(
                t(trans_a),
                t(trans_b),
                m as Dim,
                n as Dim,
                kd as Dim,
                alpha,
                a,
                lda as Dim,
                b,
                ldb as Dim,
                beta,
                c,
                ldc as Dim,
            )
        };
        check(st, "dnnl_sgemm")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_the_file_and_the_install_command() {
        let err = load_from("/nonexistent/libdnnl.so.2").unwrap_err();
        assert!(err.contains("/nonexistent/libdnnl.so.2"), "{err}");
        assert!(err.contains("apt-get install libdnnl-dev"), "{err}");
    }
}
