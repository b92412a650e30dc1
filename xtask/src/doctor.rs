//! `cargo xtask doctor`: what this machine has for building and running convrnn, and the Debian
//! commands for what it lacks.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

use crate::machine::Machine;

/// Where Debian's `dataset-fashion-mnist` puts the files (SPEC §9).
const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Packages the workspace needs at build time (the rest are optional at run time).
const BUILD_PACKAGES: [&str; 3] = ["libhdf5-dev", "libopenblas-dev", "pkgconf"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    /// Present-or-not facts that are not problems (e.g. a feature not compiled in).
    Note,
    Missing,
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    /// The Debian package that provides it, when one does.
    package: Option<&'static str>,
}

pub struct Report {
    checks: Vec<Check>,
    /// The tuned CPU convolution paths, one line each.
    conv_choices: Vec<String>,
}

impl Report {
    pub fn gather() -> Self {
        let cuda_compiled = cfg!(feature = "cuda");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut checks = vec![
            tool_version("rustc", "rustc"),
            tool_version("cargo", &cargo),
        ];

        checks.push(match load_library("libdnnl.so.2") {
            Ok(()) => Check {
                name: "oneDNN",
                status: Status::Ok,
                detail: "libdnnl.so.2 loads: CPU convolutions can take the oneDNN fast path".into(),
                package: None,
            },
            Err(e) => Check {
                name: "oneDNN",
                status: Status::Missing,
                detail: format!(
                    "libdnnl.so.2 does not load ({e}); CPU convolutions fall back to the slower \
                     portable kernels"
                ),
                package: Some("libdnnl-dev"),
            },
        });

        checks.push(Check {
            name: "CUDA backend",
            status: Status::Note,
            detail: if cuda_compiled {
                "compiled in (feature `cuda`)".into()
            } else {
                "not compiled in; build with `--features cuda` to use --device cuda:N".into()
            },
            package: None,
        });
        checks.push(match load_library("libcuda.so.1") {
            Ok(()) => Check {
                name: "CUDA driver",
                status: Status::Ok,
                detail: "libcuda.so.1 loads".into(),
                package: None,
            },
            Err(e) => Check {
                name: "CUDA driver",
                // Without the backend compiled in, the driver cannot be used anyway.
                status: if cuda_compiled {
                    Status::Missing
                } else {
                    Status::Note
                },
                detail: format!(
                    "libcuda.so.1 does not load ({e}); only needed for --device cuda:N, and \
                     installed with the NVIDIA driver"
                ),
                package: None,
            },
        });

        checks.push(mpi_check());

        // `neurofit` links HDF5 (recordings) and OpenBLAS (ndarray-linalg) at build time; the
        // doctor runs before the workspace is built, so it is what installs them.
        for (name, files, package, why) in [
            (
                "HDF5",
                &["/usr/include/hdf5/serial/hdf5.h", "/usr/include/hdf5.h"][..],
                "libhdf5-dev",
                "HDF5 / netCDF-4 recordings (neurofit)",
            ),
            (
                "OpenBLAS",
                &[
                    "/usr/lib/x86_64-linux-gnu/libopenblas.so",
                    "/usr/lib/aarch64-linux-gnu/libopenblas.so",
                    "/usr/lib/libopenblas.so",
                ][..],
                "libopenblas-dev",
                "linear algebra of the neural fits (neurofit)",
            ),
            (
                "pkg-config",
                &["/usr/bin/pkg-config"][..],
                "pkgconf",
                "finding HDF5 when building",
            ),
        ] {
            let found = files.iter().find(|f| Path::new(f).exists());
            checks.push(match found {
                Some(f) => Check {
                    name,
                    status: Status::Ok,
                    detail: (*f).to_string(),
                    package: None,
                },
                None => Check {
                    name,
                    status: Status::Missing,
                    detail: format!(
                        "not found ({}); needed to build the workspace: {why}",
                        files.join(", ")
                    ),
                    package: Some(package),
                },
            });
        }

        checks.extend(blas_kernels());
        checks.push(denormals());

        checks.push(if has_postgres_server() {
            Check {
                name: "PostgreSQL",
                status: Status::Ok,
                detail: "a server (initdb, pg_ctl) for the search's PostgreSQL study store and its tests".into(),
                package: None,
            }
        } else {
            Check {
                name: "PostgreSQL",
                status: Status::Missing,
                detail: "no server under /usr/lib/postgresql; the search's PostgreSQL test skips without it \
                         (SQLite needs nothing)"
                    .into(),
                package: Some("postgresql"),
            }
        });

        let fmnist = Path::new(FASHION_MNIST_DIR);
        checks.push(if fmnist.join("train-images-idx3-ubyte.gz").is_file() {
            Check {
                name: "Fashion-MNIST",
                status: Status::Ok,
                detail: FASHION_MNIST_DIR.into(),
                package: None,
            }
        } else {
            Check {
                name: "Fashion-MNIST",
                status: Status::Missing,
                detail: format!(
                    "not in {FASHION_MNIST_DIR}; the small task can also fetch it or read a \
                     directory you name"
                ),
                package: Some("dataset-fashion-mnist"),
            }
        });
        let (check, conv_choices) = conv_tuning_check();
        checks.push(check);
        Report {
            checks,
            conv_choices,
        }
    }

    pub fn print(&self) {
        println!("convrnn doctor");
        for c in &self.checks {
            let tag = match c.status {
                Status::Ok => "ok",
                Status::Note => "note",
                Status::Missing => "missing",
            };
            println!("  {tag:<8} {:<14} {}", c.name, c.detail);
        }
        for line in &self.conv_choices {
            println!("  {:<23} {line}", "");
        }
        let pkgs = self.missing_packages();
        if !pkgs.is_empty() {
            println!("\nTo install what is missing (Debian, as root), or run `cargo xtask doctor --install`:");
            println!("  {}", apt_command(&pkgs));
        }
    }

    /// Missing packages without which the workspace does not build.
    pub fn missing_build_packages(&self) -> Vec<&'static str> {
        self.missing_packages()
            .into_iter()
            .filter(|p| BUILD_PACKAGES.contains(p))
            .collect()
    }

    /// Debian packages that provide the missing pieces.
    pub fn missing_packages(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Missing)
            .filter_map(|c| c.package)
            .collect()
    }
}

/// The CPU and its ISA, where the tuned convolution paths are cached, and the choices it holds
/// (one line each).
fn conv_tuning_check() -> (Check, Vec<String>) {
    use tensor::cpu::conv_tune::{Loaded, Machine, Setting, Tuner, CACHE_ENV};
    let machine = Machine::detect();
    let cpu = format!("{} ({})", machine.cpu, machine.isa);
    let file = match Setting::from_env() {
        Setting::Off => {
            let detail = format!(
                "{cpu}; tuning off ({CACHE_ENV}=off): `auto` uses the AVX2-measured thresholds"
            );
            return (note("conv paths", detail), Vec::new());
        }
        Setting::File(f) => f,
    };
    let tuner = Tuner::new(Some(file.clone()), machine);
    let state = match tuner.loaded() {
        Loaded::Missing => "none yet: timed on first use of each convolution".to_string(),
        Loaded::Read(n) => format!("{n} choices"),
        Loaded::Ignored(why) => format!("ignored and rewritten on next use: {why}"),
    };
    let detail = format!("{cpu}; tuned choices in {} ({state})", file.display());
    let lines = tuner.choices().iter().map(|c| c.to_string()).collect();
    (note("conv paths", detail), lines)
}

/// How the CPU threads treat denormal floats (`CONVRNN_DENORMALS`; xtask's `main` has set it on
/// this thread already, so the register is what the engine's threads get).
fn denormals() -> Check {
    use tensor::cpu::denormals::{this_thread_flushes, Denormals, DENORMALS_ENV};
    match Denormals::from_env() {
        Err(e) => Check {
            name: "denormals",
            status: Status::Missing,
            detail: e,
            package: None,
        },
        Ok(mode) => note(
            "denormals",
            format!(
                "{} ({DENORMALS_ENV}; flush-to-zero on the engine threads: {})",
                mode.as_str(),
                if this_thread_flushes() { "yes" } else { "no" }
            ),
        ),
    }
}

fn note(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: Status::Note,
        detail,
        package: None,
    }
}

/// MPI for `mpiexec -n N … xtask train` and the MPI tests: an MPICH-ABI library that loads
/// (the backend loads it at run time) and MPICH's process manager on the PATH.
fn mpi_check() -> Check {
    let mpiexec = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mpiexec"))
            .find(|p| p.is_file())
    });
    match (collective::mpi::library_version(), mpiexec) {
        (Ok(version), Some(exec)) => Check {
            name: "MPI",
            status: Status::Ok,
            detail: format!("{version}; {}", exec.display()),
            package: None,
        },
        (lib, exec) => Check {
            name: "MPI",
            status: Status::Missing,
            detail: format!(
                "{}{}; needed for `mpiexec -n N … train` and the MPI tests, which skip without \
                 it (`train --nproc N` needs no MPI)",
                lib.err().map_or(String::new(), |e| format!("{e}; ")),
                if exec.is_none() {
                    "no mpiexec on the PATH"
                } else {
                    "mpiexec found"
                }
            ),
            package: Some("mpich"),
        },
    }
}

/// Which kernels the neural fits' linear algebra runs: the `gemm` crate's (neurofit's Gram matrices
/// and products), chosen from the CPU at run time, and the core OpenBLAS picked for itself (only
/// LAPACK's factorisations use it). Debian's OpenBLAS 0.3.21, for one, did not recognise the Xeon
/// with AVX-512 and AMX of issue #18 and fell back to its generic Prescott kernels there.
fn blas_kernels() -> Vec<Check> {
    let machine = Machine::detect();
    let kernel = gemm_kernel();
    let mut checks = vec![Check {
        name: "fit GEMM",
        status: Status::Ok,
        detail: format!(
            "neural fits' Gram matrices and products: gemm crate, {kernel} kernels (chosen at run \
             time; {}, {})",
            machine.cpu, machine.isa
        ),
        package: None,
    }];
    if let Some(core) = openblas_core() {
        checks.push(Check {
            name: "OpenBLAS core",
            status: Status::Note,
            detail: format!(
                "{core} (OpenBLAS's own choice; neurofit uses it only for LAPACK: the small SVDs of \
                 PLS and ridge's SVD)"
            ),
            package: None,
        });
    }
    checks
}

/// The kernel family the `gemm` crate dispatches f64 products to on this CPU: its own rule, mirrored
/// (neurofit's `linalg::Kernel`, which xtask cannot link: xtask must build before HDF5 and OpenBLAS
/// are installed). neurofit builds the crate with its AVX-512 kernels. Its 256-bit kernel needs only
/// FMA, so a CPU with FMA but no AVX2 still runs it: this is not
/// [`crate::machine::Isa`].
fn gemm_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "AVX-512F"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "AVX2+FMA"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// `openblas_get_corename()` and `openblas_get_config()` of the system OpenBLAS, when it loads.
fn openblas_core() -> Option<String> {
    type Text = unsafe extern "C" fn() -> *const std::ffi::c_char;
    // SAFETY: loading runs OpenBLAS's initialiser (it detects the CPU and starts its threads); the
    // two functions take no arguments and return pointers to static NUL-terminated strings.
    // The library is never unloaded: OpenBLAS's threads would outlive an unload.
    unsafe {
        let lib = libloading::Library::new("libopenblas.so.0").ok()?;
        let text = |name: &[u8]| -> Option<String> {
            let f = lib.get::<Text>(name).ok()?;
            let p = f();
            (!p.is_null()).then(|| {
                std::ffi::CStr::from_ptr(p)
                    .to_string_lossy()
                    .trim()
                    .to_string()
            })
        };
        let core = text(b"openblas_get_corename\0")?;
        let config = text(b"openblas_get_config\0").unwrap_or_default();
        std::mem::forget(lib);
        Some(if config.is_empty() {
            core
        } else {
            format!("{core}, {config}")
        })
    }
}

fn has_postgres_server() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .flatten()
            .any(|v| v.path().join("bin/initdb").is_file())
    })
}

fn tool_version(name: &'static str, program: &str) -> Check {
    let out = Command::new(program).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Check {
            name,
            status: Status::Ok,
            detail: String::from_utf8_lossy(&o.stdout).trim().to_string(),
            package: None,
        },
        _ => Check {
            name,
            status: Status::Missing,
            detail: format!(
                "`{program} --version` failed; install Rust with rustup (https://rustup.rs)"
            ),
            package: None,
        },
    }
}

fn load_library(name: &str) -> std::result::Result<(), String> {
    // SAFETY: loading runs the library's initialisers. Both libraries probed here are the vendor
    // builds the engine itself loads at run time; the handle is dropped (unloaded) at once.
    unsafe { libloading::Library::new(name) }
        .map(drop)
        .map_err(|e| e.to_string())
}

fn apt_command(pkgs: &[&str]) -> String {
    format!("apt-get update && apt-get install -y {}", pkgs.join(" "))
}

/// Whether this process runs as root (effective uid 0, from /proc/self/status).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The environment variable that keeps commands from installing packages on their own (set to
/// anything but empty or `0`): tests that run `xtask` as root, and machines without a network,
/// set it. `cargo xtask doctor --install` still installs when asked.
pub const NO_INSTALL_VAR: &str = "CONVRNN_NO_INSTALL";

/// Whether a value of [`NO_INSTALL_VAR`] turns the automatic installs off.
fn installs_disabled(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Installs every missing package when running as root (unless [`NO_INSTALL_VAR`] is set);
/// otherwise the caller's own error (e.g. data not found) names the command. Everything the
/// doctor checks is optional for building, so a failed install (no network) is a warning, not an
/// error.
pub fn install_missing_if_root() {
    if installs_disabled(std::env::var_os(NO_INSTALL_VAR).as_deref()) || !is_root() {
        return;
    }
    let missing = Report::gather().missing_packages();
    if missing.is_empty() {
        return;
    }
    if let Err(e) = install(&missing) {
        eprintln!("warning: {e:#}; continuing without it");
    }
}

/// `apt-get update && apt-get install -y PKGS`.
pub fn install(pkgs: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "installing needs root; run as root:\n  {}",
            apt_command(pkgs)
        );
    }
    println!("\n$ {}", apt_command(pkgs));
    for args in [vec!["update"], [&["install", "-y"][..], pkgs].concat()] {
        let status = Command::new("apt-get")
            .args(&args)
            .status()
            .context("could not run apt-get (is this Debian or Ubuntu?)")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

pub fn run(do_install: bool) -> Result<()> {
    let report = Report::gather();
    report.print();
    if do_install {
        let pkgs = report.missing_packages();
        if pkgs.is_empty() {
            println!("\nNothing to install.");
        } else {
            install(&pkgs)?;
            println!();
            Report::gather().print();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_no_install_variable_turns_installs_off_unless_empty_or_zero() {
        assert!(!installs_disabled(None));
        assert!(!installs_disabled(Some(OsStr::new(""))));
        assert!(!installs_disabled(Some(OsStr::new("0"))));
        assert!(installs_disabled(Some(OsStr::new("1"))));
        assert!(installs_disabled(Some(OsStr::new("yes"))));
    }
}
