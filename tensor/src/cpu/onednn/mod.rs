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
//!
//! The module is split by job: `ffi` declares the C API, `pool` recycles buffers, `primitives`
//! builds and runs oneDNN objects, `cache` keeps compiled convolutions and reordered or
//! transformed weights, `conv` holds the convolution entry points ([`OneDnn::conv_product`],
//! [`OneDnn::conv_backward_weights`]) and `gemm` the sgemm ([`OneDnn::sgemm`]). [`small_map`] and
//! [`winograd`] are convolutions of our own built on that sgemm and on the pool, around the row
//! layout of [`gemm_conv`].

mod cache;
mod conv;
mod ffi;
mod gemm;
pub mod gemm_conv;
mod pool;
mod primitives;
pub mod small_map;
pub mod winograd;

pub use cache::DerivedKey;
pub use conv::WeightProduct;
pub use pool::Scratch;

use ffi::{check, k, Api, Handle};
use libloading::Library;
use std::ffi::c_int;
use std::ptr;
use std::sync::{Mutex, OnceLock};

/// The library file tried by default.
pub const LIBRARY: &str = "libdnnl.so.2";
/// Names another oneDNN library file to load instead of [`LIBRARY`].
pub const LIBRARY_ENV: &str = "CONVRNN_DNNL_LIB";

/// The loaded library: entry points, one CPU engine, caches.
pub struct OneDnn {
    api: Api,
    omp_set_num_threads: Option<unsafe extern "C" fn(c_int)>,
    engine: Handle,
    attr: Handle,
    streams: Mutex<Vec<usize>>,
    caches: cache::Caches,
    pool: pool::BufferPool,
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
pub fn get() -> crate::Result<&'static OneDnn> {
    ONEDNN
        .get_or_init(load)
        .as_ref()
        .map_err(|e| crate::Error::OneDnn(e.clone()))
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

/// oneDNN's OpenMP runtime is the process's libgomp (already loaded as libdnnl's dependency);
/// its thread count is set per calling thread before each call.
fn openmp_thread_setter() -> (Option<Library>, Option<unsafe extern "C" fn(c_int)>) {
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
    let loaded = Api::load(&lib, &path)?;
    let api = loaded.api;
    let (gomp, omp_set_num_threads) = if loaded.openmp {
        openmp_thread_setter()
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
        caches: cache::Caches::default(),
        pool: pool::BufferPool::default(),
        version: loaded.version,
        path,
        _lib: lib,
        _gomp: gomp,
    })
}

impl OneDnn {
    /// `major.minor.patch` and the file it was loaded from.
    pub fn describe(&self) -> String {
        let (a, b, c) = self.version;
        format!("oneDNN {a}.{b}.{c} ({})", self.path)
    }

    /// Sets the OpenMP thread count of the calling thread's later oneDNN calls.
    fn set_threads(&self, n: usize) {
        if let Some(f) = self.omp_set_num_threads {
            // SAFETY: plain OpenMP call; affects the calling thread's later parallel regions.
            unsafe { f(n as c_int) }
        }
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
