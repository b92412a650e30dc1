//! Finding the CUDA libraries at run time.
//!
//! cudarc is built with dynamic loading: the first call into a library `dlopen`s it by bare file
//! name (`libcudnn.so`, `libcudnn.so.9`, …, see `cudarc::get_lib_name_candidates`) and *panics* when
//! none of the names loads. Two consequences shape this module:
//!
//! * Before cudarc touches a library we try the very same names ourselves; when none loads we return
//!   an [`Error::Cuda`] that names the library, every place we looked and how to fix it, instead of
//!   letting cudarc panic.
//! * A bare-name `dlopen` only searches `LD_LIBRARY_PATH` (read once at process start), the
//!   `ldconfig` cache and the default directories, so a directory cannot be added from inside the
//!   process. But the dynamic loader answers a bare-name request with an object that is *already
//!   loaded* under that SONAME. So for every directory in `CONVRNN_CUDA_LIB_DIRS` (colon-separated)
//!   we load the CUDA libraries found there by full path, `RTLD_GLOBAL`, before cudarc asks: its later
//!   `dlopen("libcudnn.so.9")` then returns our copy. Libraries that `dlopen` their own helpers by
//!   name (cuDNN 9 its `libcudnn_*` sub-libraries, NVRTC its `libnvrtc-builtins`) find those the same
//!   way, which is why the helpers are preloaded too.
//!
//! One caveat: cudarc tries the unversioned name (`libcudnn.so`) first. If a *different* library of
//! that exact name sits on the default search path, it wins over our preloaded copy (whose SONAME is
//! versioned). Remove it from the path or point `LD_LIBRARY_PATH` at the wanted directory instead.
//!
//! When the explicit directories and the default search both fail, we look for the libraries a
//! Python environment installs with NVIDIA's wheels (`site-packages/nvidia/*/lib`, under
//! `$VIRTUAL_ENV`, `$CONDA_PREFIX`, `~/.local`, pyenv's versions, `/usr/local`, `/usr`,
//! `/opt/conda`) and preload from there.

use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The environment variable naming extra library directories (colon-separated).
pub const LIB_DIRS_VAR: &str = "CONVRNN_CUDA_LIB_DIRS";

/// A CUDA library the backend loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CudaLib {
    /// The driver API (`libcuda.so.1`), installed with the NVIDIA kernel driver.
    Driver,
    /// The run-time compiler for our elementwise/reduction kernels.
    Nvrtc,
    /// GEMM.
    Cublas,
    /// Convolution and pooling.
    Cudnn,
    /// Collectives between GPUs (data-parallel training only; not in [`CudaLib::ALL`]).
    Nccl,
}

impl CudaLib {
    /// The libraries every CUDA tensor op needs (NCCL, needed only by multi-GPU training, is not
    /// among them).
    pub const ALL: [CudaLib; 4] = [
        CudaLib::Driver,
        CudaLib::Nvrtc,
        CudaLib::Cublas,
        CudaLib::Cudnn,
    ];

    pub(crate) fn spec(self) -> LibSpec {
        match self {
            CudaLib::Driver => LibSpec {
                title: "the CUDA driver library (libcuda.so.1)",
                cudarc_names: &["cuda", "nvcuda"],
                fix: "install the NVIDIA driver (libcuda.so.1 ships with it, not with the CUDA \
                      toolkit or pip wheels); inside a container, start it with the GPU exposed \
                      (e.g. `docker run --gpus all`). If libcuda.so.1 lives in an unusual \
                      directory, add that directory to CONVRNN_CUDA_LIB_DIRS",
            },
            CudaLib::Nvrtc => LibSpec {
                title: "NVRTC, the CUDA run-time compiler (libnvrtc.so.13)",
                cudarc_names: &["nvrtc"],
                fix: "`pip install nvidia-cuda-nvrtc` (CUDA 13) into a Python environment and set \
                      CONVRNN_CUDA_LIB_DIRS=<site-packages>/nvidia/cu13/lib (or \
                      .../nvidia/cuda_nvrtc/lib, wherever libnvrtc.so.13 landed), or install the \
                      CUDA 13 toolkit and add its lib64 directory to LD_LIBRARY_PATH",
            },
            CudaLib::Cublas => LibSpec {
                title: "cuBLAS (libcublas.so.13)",
                cudarc_names: &["cublas"],
                fix: "`pip install nvidia-cublas` (CUDA 13) into a Python environment and set \
                      CONVRNN_CUDA_LIB_DIRS=<site-packages>/nvidia/cu13/lib (or \
                      .../nvidia/cublas/lib), or install the CUDA 13 toolkit and add its lib64 \
                      directory to LD_LIBRARY_PATH",
            },
            CudaLib::Cudnn => LibSpec {
                title: "cuDNN 9 (libcudnn.so.9)",
                cudarc_names: &["cudnn"],
                fix: "`pip install nvidia-cudnn-cu13` into a Python environment and set \
                      CONVRNN_CUDA_LIB_DIRS=<site-packages>/nvidia/cudnn/lib, or install cuDNN 9 \
                      for CUDA 13 system-wide",
            },
            CudaLib::Nccl => LibSpec {
                title: "NCCL (libnccl.so.2)",
                cudarc_names: &["nccl"],
                fix: "`pip install nvidia-nccl-cu13` into a Python environment and set \
                      CONVRNN_CUDA_LIB_DIRS=<site-packages>/nvidia/nccl/lib, or install NCCL 2 \
                      system-wide (Debian/Ubuntu with NVIDIA's repository: libnccl2)",
            },
        }
    }
}

/// What to look for and what to tell the user about one library.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LibSpec {
    pub title: &'static str,
    /// Names given to `cudarc::get_lib_name_candidates`, exactly as cudarc's loader uses them.
    pub cudarc_names: &'static [&'static str],
    pub fix: &'static str,
}

/// File-name stems (`<stem>.so`, `<stem>.so.N…`) preloaded from library directories: the four
/// libraries, the helpers they load by name, and their link-time dependencies.
const PRELOAD_STEMS: &[&str] = &[
    "libcuda",
    "libnvrtc-builtins",
    "libnvrtc",
    "libnvJitLink",
    "libcublasLt",
    "libcublas",
    "libcudnn_graph",
    "libcudnn_engines_precompiled",
    "libcudnn_engines_runtime_compiled",
    "libcudnn_heuristic",
    "libcudnn_ops",
    "libcudnn_cnn",
    "libcudnn_adv",
    "libcudnn",
    "libnccl",
];

/// Where to look for libraries beyond the loader's default search.
#[derive(Clone, Debug, Default)]
pub struct LibSearch {
    /// Directories from `CONVRNN_CUDA_LIB_DIRS`, preloaded first.
    pub dirs: Vec<PathBuf>,
    /// Whether to look in Python environments when everything else fails.
    pub discover_python: bool,
}

impl LibSearch {
    /// `CONVRNN_CUDA_LIB_DIRS` from the environment, with Python discovery as a fallback.
    pub fn from_env() -> Self {
        Self::from_var(std::env::var(LIB_DIRS_VAR).ok().as_deref(), true)
    }

    /// The search a given value of `CONVRNN_CUDA_LIB_DIRS` describes (for tests and tools that
    /// must not depend on the process environment).
    pub fn from_var(value: Option<&str>, discover_python: bool) -> Self {
        let dirs = value
            .unwrap_or("")
            .split(':')
            .filter(|s| !s.trim().is_empty())
            .map(|s| PathBuf::from(s.trim()))
            .collect();
        LibSearch {
            dirs,
            discover_python,
        }
    }
}

/// What happened to one file we tried to preload.
#[derive(Clone, Debug)]
enum FileOutcome {
    Loaded,
    Failed(String),
}

/// Libraries we opened, kept loaded for the life of the process (cudarc holds its own handles in
/// statics, so unloading ours would gain nothing).
struct Loaded {
    files: HashMap<PathBuf, FileOutcome>,
    #[cfg(unix)]
    handles: Vec<libloading::os::unix::Library>,
    by_name: Vec<libloading::Library>,
}

fn loaded() -> &'static Mutex<Loaded> {
    static L: OnceLock<Mutex<Loaded>> = OnceLock::new();
    L.get_or_init(|| {
        Mutex::new(Loaded {
            files: HashMap::new(),
            #[cfg(unix)]
            handles: Vec::new(),
            by_name: Vec::new(),
        })
    })
}

fn lock_loaded() -> std::sync::MutexGuard<'static, Loaded> {
    loaded().lock().unwrap_or_else(|e| e.into_inner())
}

/// The stems to preload for `spec`: every CUDA library we know (so dependencies and helpers
/// load too) plus the spec's own names.
fn stems_for(spec: &LibSpec) -> Vec<String> {
    let mut stems: Vec<String> = PRELOAD_STEMS.iter().map(|s| s.to_string()).collect();
    for n in spec.cudarc_names {
        let own = format!("lib{n}");
        if !stems.contains(&own) {
            stems.push(own);
        }
    }
    stems
}

/// The index in `stems` of the stem `name` is a library file of: `<stem>.so` or
/// `<stem>.so.<version>`.
fn stem_of(name: &str, stems: &[String]) -> Option<usize> {
    let is_lib = |stem: &str| {
        name.strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix(".so"))
            .is_some_and(|v| v.is_empty() || v.starts_with('.'))
    };
    stems.iter().position(|stem| is_lib(stem)).or_else(|| {
        // cuDNN 9 loads sub-libraries by name as it needs them, and new versions add some
        // (`libcudnn_ext`, `libcudnn_engines_tensor_ir`, …): every `libcudnn_*` library counts,
        // ranked with the known sub-libraries.
        let sub = name
            .strip_prefix("libcudnn_")
            .and_then(|rest| rest.split_once(".so"))
            .is_some_and(|(sub, v)| !sub.is_empty() && (v.is_empty() || v.starts_with('.')));
        if sub {
            stems.iter().position(|s| s == "libcudnn_adv")
        } else {
            None
        }
    })
}

/// The library files of `stems` in `dir`, in `stems` order (helpers before the libraries that
/// need them). Unreadable or missing directories give nothing.
fn library_files(dir: &Path, stems: &[String]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((stem_of(&name, stems)?, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Loads every library file of `stems` in `dirs` by full path with `RTLD_GLOBAL`. Files whose
/// dependencies are not loaded yet fail at first; we retry until a round makes no progress, so
/// the order inside and across directories does not matter.
fn preload_dirs(dirs: &[PathBuf], stems: &[String]) {
    let files: Vec<PathBuf> = dirs.iter().flat_map(|d| library_files(d, stems)).collect();
    let mut guard = lock_loaded();
    loop {
        let mut progress = false;
        for f in &files {
            if matches!(guard.files.get(f), Some(FileOutcome::Loaded)) {
                continue;
            }
            match open_global(f) {
                Ok(handle) => {
                    #[cfg(unix)]
                    guard.handles.push(handle);
                    #[cfg(not(unix))]
                    guard.by_name.push(handle);
                    guard.files.insert(f.clone(), FileOutcome::Loaded);
                    progress = true;
                }
                Err(e) => {
                    guard.files.insert(f.clone(), FileOutcome::Failed(e));
                }
            }
        }
        if !progress {
            break;
        }
    }
}

#[cfg(unix)]
fn open_global(path: &Path) -> std::result::Result<libloading::os::unix::Library, String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY};
    // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's CUDA libraries,
    // which are designed to be loaded this way (exactly what cudarc itself does).
    unsafe { Library::open(Some(path), RTLD_LAZY | RTLD_GLOBAL) }.map_err(|e| e.to_string())
}

#[cfg(not(unix))]
fn open_global(path: &Path) -> std::result::Result<libloading::Library, String> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())
}

/// The bare names cudarc will `dlopen` for `spec`, in its order.
fn candidate_names(spec: &LibSpec) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in spec.cudarc_names {
        for c in cudarc::get_lib_name_candidates(n) {
            if !names.contains(&c) {
                names.push(c);
            }
        }
    }
    names
}

/// Tries cudarc's names in cudarc's order; on success keeps the handle open.
fn load_by_name(names: &[String]) -> bool {
    for name in names {
        // SAFETY: see `open_global`.
        if let Ok(lib) = unsafe { libloading::Library::new(name) } {
            lock_loaded().by_name.push(lib);
            return true;
        }
    }
    false
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// `site-packages/nvidia/*/lib` directories of the Python environments we know where to find.
pub fn python_nvidia_lib_dirs() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            roots.push(PathBuf::from(v));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(&home).join(".local"));
        roots.extend(subdirs(&PathBuf::from(&home).join(".pyenv/versions")));
    }
    if let Some(pyenv) = std::env::var_os("PYENV_ROOT") {
        roots.extend(subdirs(&PathBuf::from(pyenv).join("versions")));
    }
    for r in ["/usr/local", "/usr", "/opt/conda"] {
        roots.push(PathBuf::from(r));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for root in roots {
        for libdir in ["lib", "lib64"] {
            let Ok(pys) = std::fs::read_dir(root.join(libdir)) else {
                continue;
            };
            for py in pys.filter_map(|e| e.ok()) {
                if !py.file_name().to_string_lossy().starts_with("python3") {
                    continue;
                }
                for pkgs in ["site-packages", "dist-packages"] {
                    let nvidia = py.path().join(pkgs).join("nvidia");
                    let Ok(subs) = std::fs::read_dir(&nvidia) else {
                        continue;
                    };
                    for sub in subs.filter_map(|e| e.ok()) {
                        let lib = sub.path().join("lib");
                        if lib.is_dir() && seen.insert(lib.clone()) {
                            out.push(lib);
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Makes `spec` loadable by cudarc or says exactly why it is not.
pub(crate) fn locate(spec: &LibSpec, search: &LibSearch) -> std::result::Result<(), String> {
    let names = candidate_names(spec);
    let stems = stems_for(spec);
    preload_dirs(&search.dirs, &stems);
    if load_by_name(&names) {
        return Ok(());
    }
    let python = if search.discover_python {
        let dirs = python_nvidia_lib_dirs();
        preload_dirs(&dirs, &stems);
        if load_by_name(&names) {
            return Ok(());
        }
        Some(dirs)
    } else {
        None
    };
    Err(not_found_message(spec, &names, search, python.as_deref()))
}

fn describe_dir(dir: &Path, spec: &LibSpec, outcomes: &HashMap<PathBuf, FileOutcome>) -> String {
    if !dir.is_dir() {
        return format!("{} (not a directory)", dir.display());
    }
    let own: Vec<String> = spec
        .cudarc_names
        .iter()
        .map(|n| format!("lib{n}"))
        .collect();
    let files = library_files(dir, &own);
    let relevant: Vec<&PathBuf> = files.iter().collect();
    if relevant.is_empty() {
        return format!("{} (no {} there)", dir.display(), spec.title);
    }
    let mut parts = Vec::new();
    for f in relevant {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match outcomes.get(f) {
            Some(FileOutcome::Failed(e)) => {
                parts.push(format!("found {name} but loading it failed: {e}"))
            }
            Some(FileOutcome::Loaded) => parts.push(format!(
                "loaded {name}, but its SONAME matches none of the names cudarc asks for"
            )),
            None => parts.push(format!("found {name}, not tried")),
        }
    }
    format!("{} ({})", dir.display(), parts.join("; "))
}

fn not_found_message(
    spec: &LibSpec,
    names: &[String],
    search: &LibSearch,
    python: Option<&[PathBuf]>,
) -> String {
    let outcomes = lock_loaded().files.clone();
    let env_part = if search.dirs.is_empty() {
        format!("{LIB_DIRS_VAR} (not set)")
    } else {
        let dirs: Vec<String> = search
            .dirs
            .iter()
            .map(|d| describe_dir(d, spec, &outcomes))
            .collect();
        format!("{LIB_DIRS_VAR}: {}", dirs.join(", "))
    };
    let py_part = match python {
        None => String::new(),
        Some([]) => "; Python environments' site-packages/nvidia/*/lib (none found)".into(),
        Some(dirs) => {
            let d: Vec<String> = dirs
                .iter()
                .map(|d| describe_dir(d, spec, &outcomes))
                .collect();
            format!(
                "; Python environments' site-packages/nvidia/*/lib: {}",
                d.join(", ")
            )
        }
    };
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(v) if !v.is_empty() => format!("LD_LIBRARY_PATH={v}"),
        _ => "LD_LIBRARY_PATH (not set)".into(),
    };
    format!(
        "could not load {title}. Searched {env_part}{py_part}; then {ld}, the ldconfig cache and \
         the system library directories for the names [{names}]. To fix: {fix}.",
        title = spec.title,
        names = names.join(", "),
        fix = spec.fix,
    )
}

/// What was preloaded from library directories so far: one line per file, `loaded` or the
/// loader's error (for diagnostics).
pub fn preload_report() -> String {
    let guard = lock_loaded();
    let mut lines: Vec<String> = guard
        .files
        .iter()
        .map(|(f, o)| match o {
            FileOutcome::Loaded => format!("loaded {}", f.display()),
            FileOutcome::Failed(e) => format!("failed {}: {e}", f.display()),
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Makes `lib` loadable for cudarc (once per process; the outcome is cached) or returns an
/// [`Error::Cuda`] naming the library, where we looked and how to fix it.
pub fn ensure(lib: CudaLib) -> Result<()> {
    static DONE: OnceLock<Mutex<HashMap<CudaLib, std::result::Result<(), String>>>> =
        OnceLock::new();
    let map = DONE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = map
        .entry(lib)
        .or_insert_with(|| locate(&lib.spec(), &LibSearch::from_env()));
    outcome.clone().map_err(Error::Cuda)
}

/// [`ensure`] against an explicit search instead of the process environment (not cached).
pub fn check_with(lib: CudaLib, search: &LibSearch) -> Result<()> {
    locate(&lib.spec(), search).map_err(Error::Cuda)
}

/// The directories from which files of the library family `prefix` (`libcudnn` also covers its
/// `libcudnn_*` sub-libraries; `libcublas` covers `libcublasLt`) are mapped, read from the text of
/// `/proc/self/maps`, each directory once, in first-seen order.
fn mapped_dirs(maps: &str, prefix: &str) -> Vec<(PathBuf, Vec<String>)> {
    let mut dirs: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path; the path is everything after the fifth field.
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim) else {
            continue;
        };
        let path = Path::new(path);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        if !(name.starts_with(prefix) && name.contains(".so")) {
            continue;
        }
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        match dirs.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) if !names.contains(&name) => names.push(name),
            Some(_) => {}
            None => dirs.push((dir, vec![name])),
        }
    }
    dirs
}

/// The error for a library family mapped from more than one directory, or `None`.
fn mixed_install_error(lib: CudaLib, dirs: &[(PathBuf, Vec<String>)]) -> Option<String> {
    if dirs.len() < 2 {
        return None;
    }
    let spec = lib.spec();
    let unversioned = format!("lib{}.so", spec.cudarc_names[0]);
    let places: Vec<String> = dirs
        .iter()
        .map(|(d, names)| format!("{} ({})", d.display(), names.join(", ")))
        .collect();
    Some(format!(
        "{title} is loaded from {n} installations at once: {places}. Files of different \
         installations must not be mixed (cuDNN answers CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH). \
         This happens when a system copy named `{unversioned}` is on the default search path \
         and {var} names a directory holding only versioned files: cudarc opens `{unversioned}` \
         first, so the system copy wins over the preloaded one. Fix: either drop that directory \
         from {var} to use the system copy, or put a directory holding the link `{unversioned}` \
         → the wanted versioned file first on LD_LIBRARY_PATH (scripts/gpu-check.sh does so).",
        title = spec.title,
        n = dirs.len(),
        places = places.join(" and "),
        var = LIB_DIRS_VAR,
    ))
}

/// Makes cuDNN ready before any cuDNN function is called: [`ensure`]s it (so cudarc finds it rather
/// than panicking), loads it through cudarc, and checks that only one installation is mapped
/// (once per process; the outcome is cached).
pub fn ensure_cudnn() -> Result<()> {
    static READY: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            // Keep the bare message: it is wrapped in `Error::Cuda` again below.
            let message = |e: Error| match e {
                Error::Cuda(m) => m,
                other => other.to_string(),
            };
            ensure(CudaLib::Cudnn).map_err(message)?;
            // The first cudarc call opens the library the way every later one will.
            let _ = cudarc::cudnn::result::get_version();
            check_single_install(CudaLib::Cudnn).map_err(message)
        })
        .clone()
        .map_err(Error::Cuda)
}

/// Fails when the library family of `lib` is mapped into this process from more than one
/// directory (read from `/proc/self/maps`; elsewhere the check passes).
pub fn check_single_install(lib: CudaLib) -> Result<()> {
    let prefix = match lib {
        CudaLib::Driver => return Ok(()),
        CudaLib::Nvrtc => "libnvrtc",
        CudaLib::Cublas => "libcublas",
        CudaLib::Cudnn => "libcudnn",
        CudaLib::Nccl => "libnccl",
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Ok(());
    };
    match mixed_install_error(lib, &mapped_dirs(&maps, prefix)) {
        Some(e) => Err(Error::Cuda(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_mapped_from_two_directories_is_named_with_both() {
        let maps = "\
7f00-7f01 r-xp 00000000 fd:01 11 /nonexistent/sys/libcudnn.so.9.14.0
7f01-7f02 r--p 00001000 fd:01 11 /nonexistent/sys/libcudnn.so.9.14.0
7f02-7f03 r-xp 00000000 fd:01 12 /nonexistent/wheel/libcudnn_graph.so.9
7f03-7f04 r-xp 00000000 fd:01 13 /nonexistent/wheel/libcudnn_ops.so.9
7f04-7f05 rw-p 00000000 00:00 0
7f05-7f06 r-xp 00000000 fd:01 14 /nonexistent/sys/libcublas.so.13
7f06-7f07 r-xp 00000000 fd:01 15 /usr/lib/libc.so.6  (deleted)
";
        let dirs = mapped_dirs(maps, "libcudnn");
        assert_eq!(
            dirs,
            vec![
                (
                    PathBuf::from("/nonexistent/sys"),
                    vec!["libcudnn.so.9.14.0".to_string()]
                ),
                (
                    PathBuf::from("/nonexistent/wheel"),
                    vec![
                        "libcudnn_graph.so.9".to_string(),
                        "libcudnn_ops.so.9".to_string()
                    ]
                ),
            ]
        );
        let e = mixed_install_error(CudaLib::Cudnn, &dirs).expect("two installations");
        for want in [
            "/nonexistent/sys (libcudnn.so.9.14.0)",
            "/nonexistent/wheel (libcudnn_graph.so.9, libcudnn_ops.so.9)",
            "`libcudnn.so`",
            LIB_DIRS_VAR,
            "LD_LIBRARY_PATH",
        ] {
            assert!(e.contains(want), "{want:?} missing from: {e}");
        }
        let one = mapped_dirs(maps, "libcublas");
        assert_eq!(one.len(), 1);
        assert_eq!(mixed_install_error(CudaLib::Cublas, &one), None);
        assert!(mapped_dirs(maps, "libnvrtc").is_empty());
    }

    #[test]
    fn this_process_does_not_mix_installations() {
        for lib in CudaLib::ALL {
            check_single_install(lib).expect("a single installation");
        }
    }

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "convrnn-loader-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const FAKE: LibSpec = LibSpec {
        title: "the convrnn test library (libconvrnnfake.so.1)",
        cudarc_names: &["convrnnfake"],
        fix: "nothing to fix, this library does not exist",
    };

    #[test]
    fn missing_library_error_names_library_dirs_and_fix() {
        let dir = TempDir::new("missing");
        let var = format!("{}:/nonexistent/convrnn-lib-dir", dir.0.display());
        let search = LibSearch::from_var(Some(&var), false);
        assert_eq!(search.dirs.len(), 2);
        let msg = locate(&FAKE, &search).expect_err("the fake library cannot load");
        for needle in [
            "libconvrnnfake.so.1",
            LIB_DIRS_VAR,
            &dir.0.display().to_string(),
            "no the convrnn test library",
            "/nonexistent/convrnn-lib-dir (not a directory)",
            "LD_LIBRARY_PATH",
            "libconvrnnfake.so, ",
            "To fix: nothing to fix",
        ] {
            assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
        }
    }

    #[test]
    fn a_broken_library_file_is_reported_with_the_loader_error() {
        let dir = TempDir::new("broken");
        std::fs::write(dir.0.join("libconvrnnfake.so.1"), b"not an ELF file").expect("write");
        let search = LibSearch::from_var(Some(&dir.0.display().to_string()), false);
        let msg = locate(&FAKE, &search).expect_err("a text file is no library");
        assert!(
            msg.contains("found libconvrnnfake.so.1 but loading it failed"),
            "{msg}"
        );
    }

    #[test]
    fn unset_variable_is_reported_as_such() {
        let search = LibSearch::from_var(None, false);
        assert!(search.dirs.is_empty());
        let msg = locate(&FAKE, &search).expect_err("the fake library cannot load");
        assert!(msg.contains("CONVRNN_CUDA_LIB_DIRS (not set)"), "{msg}");
        // Empty entries (a trailing colon) are ignored.
        assert_eq!(LibSearch::from_var(Some("/a::/b:"), false).dirs.len(), 2);
    }

    #[test]
    fn real_libraries_are_found_or_explained() {
        // Where the CUDA libraries are installed they load; elsewhere (the CI machine) the error
        // must name the library and the directory we were told to search.
        let dir = TempDir::new("real");
        let search = LibSearch::from_var(Some(&dir.0.display().to_string()), false);
        for lib in CudaLib::ALL {
            match check_with(lib, &search) {
                Ok(()) => println!("{lib:?}: loadable here"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(lib.spec().title), "{msg}");
                    assert!(msg.contains(&dir.0.display().to_string()), "{msg}");
                    assert!(msg.contains("To fix"), "{msg}");
                }
            }
        }
    }

    #[test]
    fn found_libraries_answer_through_cudarc() {
        // Where the libraries are only reachable through our preloading (not on the default
        // search path), this shows cudarc's own by-name loading picks up the preloaded copies.
        if ensure(CudaLib::Nvrtc).is_ok() {
            let (mut major, mut minor) = (0, 0);
            // SAFETY: plain version query.
            unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
                .result()
                .expect("nvrtcVersion");
            println!("NVRTC {major}.{minor}");
            assert!(major >= 12, "NVRTC {major}.{minor}");
        } else {
            println!("skipped NVRTC: not available");
        }
        if ensure(CudaLib::Cublas).is_ok() {
            let mut major = 0;
            // SAFETY: plain version query, no handle needed.
            unsafe {
                cudarc::cublas::sys::cublasGetProperty(
                    cudarc::cublas::sys::libraryPropertyType::MAJOR_VERSION,
                    &mut major,
                )
            }
            .result()
            .expect("cublasGetProperty");
            println!("cuBLAS {major}");
            assert!(major >= 12);
        } else {
            println!("skipped cuBLAS: not available");
        }
        if ensure(CudaLib::Cudnn).is_ok() {
            let v = cudarc::cudnn::result::get_version();
            println!("cuDNN {v}");
            assert!((90000..100000).contains(&v), "cuDNN {v}");
        } else {
            println!("skipped cuDNN: not available");
        }
        println!("preloaded:\n{}", preload_report());
    }

    #[test]
    fn stems_match_versioned_files_only_of_their_library() {
        let stems = stems_for(&CudaLib::Cudnn.spec());
        let idx = |n: &str| stem_of(n, &stems).map(|i| stems[i].clone());
        assert_eq!(idx("libcudnn.so.9").as_deref(), Some("libcudnn"));
        assert_eq!(idx("libcudnn_ops.so.9").as_deref(), Some("libcudnn_ops"));
        assert_eq!(idx("libcublasLt.so.13").as_deref(), Some("libcublasLt"));
        assert_eq!(
            idx("libnvrtc-builtins.so.13.0").as_deref(),
            Some("libnvrtc-builtins")
        );
        assert_eq!(idx("libcuda.so.1").as_deref(), Some("libcuda"));
        assert_eq!(idx("libcudnn_ext.so.9").as_deref(), Some("libcudnn_adv"));
        assert_eq!(
            idx("libcudnn_engines_tensor_ir.so.9").as_deref(),
            Some("libcudnn_adv")
        );
        assert_eq!(idx("libcudnn_.so.9"), None);
        assert_eq!(idx("libcudart.so.13"), None);
        assert_eq!(idx("libcudnn.a"), None);
        // Helpers sort before the libraries that load them.
        let pos = |n: &str| stems.iter().position(|s| s == n).expect("stem");
        assert!(pos("libnvrtc-builtins") < pos("libnvrtc"));
        assert!(pos("libcublasLt") < pos("libcublas"));
        assert!(pos("libcudnn_graph") < pos("libcudnn"));
    }
}
