//! CPU convolution throughput: forward and forward+backward GFLOP/s of the oneDNN path (plain
//! input, and blocked input) and the pure-Rust path, plus oneDNN's sgemm against the `gemm`
//! crate.
//!
//! ```text
//! cargo run --release -p tensor --example conv_bench [dense|dw|gemm|tiny|rgc|all] [reps]
//! ```
//! Each figure is the best of `reps` runs (default 3) after one warm-up run, so a briefly busy
//! machine affects it little. Threads: rayon's (RAYON_NUM_THREADS); oneDNN uses as many.
//! On a machine shared with other work, `RAYON_NUM_THREADS=1 CONV_BENCH_CLOCK=cpu` measures
//! single-core throughput by CPU time, which other processes barely disturb.

// A benchmark on generated inputs: any failure is a bug that should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::time::Instant;
use tensor::cpu::gemm::{sgemm, Gemm, MatMut, MatRef};
use tensor::cpu::onednn;
use tensor::ops::{Conv2dOpts, CpuConvBackend};
use tensor::testing::rand_tensor;
use tensor::{Layout, Rng, Tensor};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of all threads of this process in seconds (Linux `CLOCK_PROCESS_CPUTIME_ID`).
fn process_cpu_seconds() -> f64 {
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Whether to time by CPU time (`CONV_BENCH_CLOCK=cpu`) instead of wall-clock time. With one
/// thread (`RAYON_NUM_THREADS=1`) CPU time is what a quiet core would take, however busy the
/// machine is; with more threads it also counts time spent spinning at barriers.
fn cpu_clock() -> bool {
    std::env::var("CONV_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    if cpu_clock() {
        let t = process_cpu_seconds();
        f();
        return process_cpu_seconds() - t;
    }
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps)
        .map(|_| time(&mut f))
        .fold(f64::INFINITY, f64::min)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// oneDNN, plain input; the result comes back in whatever layout the op returns.
    OneDnnPlain,
    /// oneDNN, plain input, result converted back to plain (a plain-only engine's cost).
    OneDnnPlainToPlain,
    /// oneDNN, blocked input and output (an unroll that stays blocked).
    OneDnnBlocked,
    Rust,
    /// What `conv2d` does by default, from a blocked input.
    AutoBlocked,
    /// im2col over the batch and one sgemm, blocked input.
    GemmBlocked,
    /// Winograd F(2×2, 3×3) forward and input gradient, blocked input.
    WinogradBlocked,
    /// Winograd F(4×4, 3×3) forward and input gradient, blocked input.
    Winograd4Blocked,
}

/// Times every variant of one convolution. The variants take turns within each repetition, so
/// a burst of load from other processes hits them alike; each figure is the fastest repetition.
fn conv_case(
    reps: usize,
    name: &str,
    x_shape: [usize; 4],
    o: usize,
    k: usize,
    opts: Conv2dOpts,
    variants: &[Variant],
) {
    let mut rng = Rng::new(7);
    let x = rand_tensor(&mut rng, x_shape);
    let w = rand_tensor(&mut rng, [o, x_shape[1] / opts.groups, k, k]).map_values(|v| v * 0.05);
    let b = rand_tensor(&mut rng, [o]);
    let (ho, wo) =
        tensor::ops::conv2d_output_size((x_shape[2], x_shape[3]), (k, k), &opts).unwrap();
    let flops = 2.0 * (x_shape[0] * o * ho * wo) as f64 * (x_shape[1] / opts.groups * k * k) as f64;
    struct Run {
        v: Variant,
        backend: CpuConvBackend,
        x: Tensor,
        xv: Tensor,
        dy: Tensor,
        out_layout: Layout,
        fwd: f64,
        both: f64,
    }
    let (wv, bv) = (w.detach().into_variable(), b.detach().into_variable());
    let finish = |v: Variant, y: Tensor| {
        if v == Variant::OneDnnPlainToPlain {
            y.plain().unwrap()
        } else {
            y
        }
    };
    let mut runs: Vec<Run> = variants
        .iter()
        .map(|&v| {
            let (backend, layout) = match v {
                Variant::Rust => (CpuConvBackend::Rust, Layout::Plain),
                Variant::OneDnnPlain | Variant::OneDnnPlainToPlain => {
                    (CpuConvBackend::OneDnn, Layout::Plain)
                }
                Variant::OneDnnBlocked => (CpuConvBackend::OneDnn, Layout::Blocked16),
                Variant::AutoBlocked => (CpuConvBackend::Auto, Layout::Blocked16),
                Variant::GemmBlocked => (CpuConvBackend::Gemm, Layout::Blocked16),
                Variant::WinogradBlocked => (CpuConvBackend::Winograd, Layout::Blocked16),
                Variant::Winograd4Blocked => (CpuConvBackend::Winograd4, Layout::Blocked16),
            };
            let xin = x.to_layout(layout).unwrap();
            // Warm-up: compiles and caches the primitives.
            let y = finish(v, xin.conv2d_on(&w, Some(&b), &opts, backend).unwrap());
            Run {
                v,
                backend,
                xv: xin.detach().into_variable(),
                x: xin,
                dy: y.ones_like().unwrap(),
                out_layout: y.layout(),
                fwd: f64::INFINITY,
                both: f64::INFINITY,
            }
        })
        .collect();
    for _ in 0..reps {
        for r in runs.iter_mut() {
            let t = {
                let _g = tensor::no_grad();
                time(|| {
                    finish(r.v, r.x.conv2d_on(&w, Some(&b), &opts, r.backend).unwrap());
                })
            };
            r.fwd = r.fwd.min(t);
            let t = time(|| {
                let y = finish(
                    r.v,
                    r.xv.conv2d_on(&wv, Some(&bv), &opts, r.backend).unwrap(),
                );
                let g = y.backward_with_grad(&r.dy).unwrap();
                assert_eq!(g.len(), 3);
            });
            r.both = r.both.min(t);
        }
    }
    for r in &runs {
        println!(
            "{name:<30} {:<19} fwd {:>6.1} GFLOP/s ({:>8.2} ms)  fwd+bwd {:>6.1} GFLOP/s ({:>8.2} ms)  out {:?}",
            format!("{:?}", r.v),
            flops / r.fwd / 1e9,
            r.fwd * 1e3,
            3.0 * flops / r.both / 1e9,
            r.both * 1e3,
            r.out_layout
        );
    }
}

fn dense(reps: usize, dnnl: bool, batches: &[usize]) {
    let variants: &[Variant] = if dnnl {
        &[
            Variant::OneDnnBlocked,
            Variant::OneDnnPlain,
            Variant::OneDnnPlainToPlain,
            Variant::Rust,
        ]
    } else {
        &[Variant::Rust]
    };
    for hw in [28, 14] {
        for c in [128, 256] {
            for &n in batches {
                let name = format!("dense 3x3 b{n} {c}->{c} {hw}x{hw}");
                conv_case(
                    reps,
                    &name,
                    [n, c, hw, hw],
                    c,
                    3,
                    Conv2dOpts::default(),
                    variants,
                );
            }
        }
    }
}

/// The dense convolutions of `rgc_shallow` at 96 px, batch 16, on every path that runs them.
fn rgc(reps: usize) {
    let all = [
        Variant::OneDnnBlocked,
        Variant::GemmBlocked,
        Variant::WinogradBlocked,
        Variant::Winograd4Blocked,
        Variant::AutoBlocked,
    ];
    let dflt = Conv2dOpts::default();
    for (c, o, hw) in [(64, 128, 24), (128, 256, 12), (256, 256, 12), (256, 256, 6)] {
        let name = format!("3x3 b16 {c}->{o} {hw}x{hw}");
        conv_case(reps, &name, [16, c, hw, hw], o, 3, dflt, &all);
    }
    for (c, o) in [(256, 512), (512, 512)] {
        let name = format!("3x3 b16 {c}->{o} 3x3");
        conv_case(reps, &name, [16, c, 3, 3], o, 3, dflt, &all);
    }
    let valid = dflt.with_padding(tensor::ops::Padding::Valid);
    conv_case(
        reps,
        "readout 2x2 b16 512->1000 2x2",
        [16, 512, 2, 2],
        1000,
        2,
        valid,
        &all,
    );
}

fn depthwise(reps: usize, dnnl: bool) {
    let variants: &[Variant] = if dnnl {
        &[
            Variant::OneDnnBlocked,
            Variant::OneDnnPlain,
            Variant::Rust,
            Variant::AutoBlocked,
        ]
    } else {
        &[Variant::Rust]
    };
    for hw in [14, 28] {
        let name = format!("depthwise 7x7 b16 128 {hw}x{hw}");
        let opts = Conv2dOpts::default().with_groups(128);
        conv_case(reps, &name, [16, 128, hw, hw], 128, 7, opts, variants);
    }
    let opts = Conv2dOpts::default().with_groups(128);
    conv_case(
        reps,
        "depthwise 3x3 b16 128 28x28",
        [16, 128, 28, 28],
        128,
        3,
        opts,
        variants,
    );
}

/// Per-call overhead on the tiny shapes of the unit tests, and what the first call of a new
/// shape costs on the oneDNN path (primitive creation, JIT).
fn tiny(reps: usize, dnnl: bool) {
    if dnnl {
        let mut rng = Rng::new(4);
        let x = rand_tensor(&mut rng, [16, 128, 14, 14]).into_variable();
        let w = rand_tensor(&mut rng, [128, 128, 3, 3]).into_variable();
        let opts = Conv2dOpts::default();
        let step = || {
            let y = x
                .conv2d_on(&w, None, &opts, CpuConvBackend::OneDnn)
                .unwrap();
            y.backward_with_grad(&y.ones_like().unwrap()).unwrap();
        };
        let first = time(step);
        let next = (0..reps).map(|_| time(step)).fold(f64::INFINITY, f64::min);
        println!(
            "oneDNN 3x3 b16 128->128 14x14 fwd+bwd: first call {:.1} ms, cached {:.1} ms",
            first * 1e3,
            next * 1e3
        );
    }
    let mut backends = vec![CpuConvBackend::Rust];
    if dnnl {
        backends.push(CpuConvBackend::OneDnn);
    }
    let mut rng = Rng::new(3);
    let x = rand_tensor(&mut rng, [2, 4, 7, 6]);
    for (groups, o) in [(1, 4), (4, 8)] {
        let w = rand_tensor(&mut rng, [o, 4 / groups, 3, 2]);
        let opts = Conv2dOpts::default().with_groups(groups);
        for &be in &backends {
            let _g = tensor::no_grad();
            let t = best_of(reps, || {
                for _ in 0..1000 {
                    x.conv2d_on(&w, None, &opts, be).unwrap();
                }
            });
            println!(
                "tiny [2,4,7,6] groups {groups} {be:?}: {:.1} µs per call",
                t * 1e3
            );
        }
    }
}

fn gemm(reps: usize, dnnl: bool) {
    let d = if dnnl { onednn::get().ok() } else { None };
    let mut rng = Rng::new(11);
    for (m, n, k) in [
        (128, 784, 1152),
        (256, 196, 2304),
        (1152, 784, 128),
        (512, 512, 512),
        (64, 64, 64),
    ] {
        let a = rand_tensor(&mut rng, [m, k]).to_vec().unwrap();
        let b = rand_tensor(&mut rng, [k, n]).to_vec().unwrap();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let g = Gemm::new(m, n, k);
        let t = best_of(reps, || {
            sgemm(
                g,
                MatRef::new(&a, k),
                MatRef::new(&b, n),
                MatMut::new(&mut c, n),
            )
        });
        let mut line = format!(
            "sgemm {m}x{n}x{k}: gemm crate {:>6.1} GFLOP/s",
            flops / t / 1e9
        );
        if let Some(d) = d {
            let t = best_of(reps, || {
                d.sgemm(
                    g,
                    MatRef::new(&a, k),
                    MatRef::new(&b, n),
                    MatMut::new(&mut c, n),
                )
                .unwrap()
            });
            line += &format!("   oneDNN {:>6.1} GFLOP/s", flops / t / 1e9);
        }
        println!("{line}");
    }
}

/// One convolution on one path in a loop, for `perf record`:
/// `profile rust|onednn|gemm|winograd|winograd4 C HW K GROUPS N ITERS [bwd]`.
fn profile(args: &[String]) {
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let be = match args.first().map(String::as_str) {
        Some("onednn") => CpuConvBackend::OneDnn,
        Some("gemm") => CpuConvBackend::Gemm,
        Some("winograd") => CpuConvBackend::Winograd,
        Some("winograd4") => CpuConvBackend::Winograd4,
        _ => CpuConvBackend::Rust,
    };
    let (c, hw, k, groups, n, iters) = (
        num(1, 128),
        num(2, 14),
        num(3, 7),
        num(4, 128),
        num(5, 16),
        num(6, 100),
    );
    let bwd = args.get(7).is_some();
    let mut rng = Rng::new(1);
    let x = rand_tensor(&mut rng, [n, c, hw, hw]).into_variable();
    let w = rand_tensor(&mut rng, [c, c / groups, k, k]).into_variable();
    let opts = Conv2dOpts::default().with_groups(groups);
    let t = Instant::now();
    for _ in 0..iters {
        let y = x.conv2d_on(&w, None, &opts, be).unwrap();
        if bwd {
            y.backward_with_grad(&y.ones_like().unwrap()).unwrap();
        }
    }
    println!(
        "{:.3} ms per iteration",
        t.elapsed().as_secs_f64() * 1e3 / iters as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let reps = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dnnl = match onednn::get() {
        Ok(d) => {
            println!(
                "{}; {} rayon threads",
                d.describe(),
                rayon::current_num_threads()
            );
            true
        }
        Err(e) => {
            println!("oneDNN unavailable, Rust path only: {e}");
            false
        }
    };
    if dnnl && matches!(what, "dense" | "dw" | "all") {
        if let Ok(d) = onednn::get() {
            use tensor::ops::conv::ConvGeom;
            let g = |c: usize, hw: usize, k: usize, groups: usize| {
                let opts = Conv2dOpts::default().with_groups(groups);
                let (x, w) = ([16, c, hw, hw], [c, c / groups, k, k]);
                ConvGeom::resolve(&x.into(), &w.into(), None, &opts).unwrap()
            };
            for (label, geom) in [
                ("dense 3x3", g(128, 28, 3, 1)),
                ("depthwise 7x7", g(128, 28, 7, 128)),
            ] {
                println!(
                    "oneDNN kernels for {label}: {:?}",
                    d.conv_impl_info(&geom, true)
                );
            }
        }
    }
    match what {
        "dense" => dense(reps, dnnl, &[16, 64]),
        "dense16" => dense(reps, dnnl, &[16]),
        "dense64" => dense(reps, dnnl, &[64]),
        "dw" => depthwise(reps, dnnl),
        "gemm" => gemm(reps, dnnl),
        "rgc" if dnnl => rgc(reps),
        "tiny" => tiny(reps, dnnl),
        "profile" => profile(&args[1..]),
        _ => {
            gemm(reps, dnnl);
            tiny(reps, dnnl);
            depthwise(reps, dnnl);
            dense(reps, dnnl, &[16, 64]);
        }
    }
}
