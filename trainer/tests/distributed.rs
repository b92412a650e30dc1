#![allow(clippy::unwrap_used)]
//! Data-parallel training across processes: two ranks at batch B against one rank at batch 2B
//! (MPI), a two-rank run interrupted and resumed on one rank and on two (TCP), and a rank that
//! is killed mid-run (both backends).
//!
//! On a GPU machine `scripts/gpu-check.sh` runs the first two with `CONVRNN_TEST_DEVICE=cuda:0`
//! (both ranks on the GPU), `CONVRNN_TEST_VIA=tcp` (no MPI there) and `CONVRNN_TEST_BACKEND`
//! (`tcp` with one GPU, `nccl` with two or more).
//!
//! The model is a compact ConvRNN with feedback (`compact_rgc_median`: searched RGC cells and a
//! conv3 → conv2 edge) at 4 time steps, on the first 64 Fashion-MNIST training images. Each
//! test re-runs this test binary as the ranks (under `mpiexec -n 2`, or as two processes given
//! torchrun-style variables), each rank pinned to one thread. Skipped with a message where
//! Fashion-MNIST or MPICH is missing (`cargo xtask doctor --install` installs both).

mod common;

use collective::{Launch, Options};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tensor::Device;
use trainer::checkpoint::{self, Checkpoint};
use trainer::{
    fit, DataSpec, FitOptions, FitReport, LrSchedule, OptimizerSpec, Outcome, TrainConfig,
};

/// The variable that tells a re-run test binary it is a rank, and what to do.
const CHILD: &str = "CONVRNN_TEST_DIST_CHILD";
/// The longest any rank of these tests may take (seconds); also the collectives' timeout.
const LIMIT: u64 = 240;

/// Parameters agree to this, absolutely, after the 8 steps of [`config`]. Two ranks average the
/// gradients of their half-batches where one rank sums over the whole batch, so f32 rounding
/// differs from the first step on; SGD with momentum carries that difference forward without
/// amplifying it. Measured: 2.2e-8 to 3.7e-8 (with AdamW instead, whose update divides by the
/// root of the squared gradients' average, 3.1e-6).
const PARAM_TOLERANCE: f32 = 1e-6;

/// The same on a GPU (`CONVRNN_TEST_DEVICE=cuda:0`, as `scripts/gpu-check.sh` runs it), where
/// cuDNN may pick other convolution algorithms, with other summation orders, for batch 8 than
/// for batch 16. Not yet measured on a GPU: the script prints the difference it finds.
const GPU_PARAM_TOLERANCE: f32 = 1e-4;

/// The run resumed on 2, then 1, then 2 ranks crosses more rounding paths (three launches, one
/// of them at the whole batch on two threads), and there a value that rounding moves across a
/// kink (a ReLU at 0, a tie in a max-pool) sends one image's gradient elsewhere, a jump of
/// about `lr × |g| / batch` in the weights it reaches. On an AMD EPYC (Zen 3, AVX2) it stayed
/// within 1.5e-8 of a 1 → 1 → 2 run for five steps and jumped to 5.5e-6 at the sixth (9.98e-6
/// at the end), where other machines stayed under 1e-6. This bound is above such jumps and
/// below what a real fault gives: gradients averaged 1 % too large made the parameters differ
/// by 8.2e-4 (0.1 % too large: 8.1e-5, which the per-epoch losses, compared to 1e-4, caught).
const RESUMED_PARAM_TOLERANCE: f32 = 1e-4;

/// The device the ranks train on: the CPU, or what `CONVRNN_TEST_DEVICE` names.
fn device() -> Device {
    std::env::var("CONVRNN_TEST_DEVICE")
        .ok()
        .map_or(Device::Cpu, |d| d.parse().unwrap())
}

fn tolerance() -> f32 {
    match device() {
        Device::Cpu => PARAM_TOLERANCE,
        Device::Cuda(_) => GPU_PARAM_TOLERANCE,
    }
}

fn fashion_mnist_missing() -> bool {
    if datasets::Locator::from_env(None).fashion_mnist().is_err() {
        eprintln!("skipped: Fashion-MNIST is not installed (cargo xtask doctor --install)");
        return true;
    }
    false
}

/// 64 images at a global batch of 16: 4 steps per epoch, 2 epochs.
fn config() -> TrainConfig {
    let mut model = topology::zoo::get("compact_rgc_median").unwrap();
    assert!(!model.edges.is_empty(), "the test model has feedback");
    model.default_steps = 4;
    model.image_off = 4;
    let mut c = TrainConfig::for_model(model, DataSpec::FashionMnist { dir: None });
    c.epochs = 2;
    c.batch_size = 16;
    c.eval_batch_size = 20;
    c.train_limit = Some(64);
    c.eval_limit = Some(40);
    c.optimizer = OptimizerSpec::sgd_nesterov(1e-4);
    c.lr = LrSchedule::constant(0.05);
    c.checkpoint_every = 2;
    c.seed = 3;
    c.device = device();
    c
}

/// What a rank is asked to do.
#[derive(Serialize, Deserialize)]
struct ChildSpec {
    out: PathBuf,
    resume: bool,
    /// Raise the stop flag at once: the run stops after its first step.
    stop: bool,
}

/// The rank side of every test: joins the job its launcher describes and trains.
fn run_child_if_asked() -> bool {
    let Ok(text) = std::env::var(CHILD) else {
        return false;
    };
    let spec: ChildSpec = serde_json::from_str(&text).unwrap();
    let launch = Launch::from_env().unwrap();
    let mut opts = Options::from_env().unwrap();
    opts.device = device();
    if let Ok(b) = std::env::var("CONVRNN_TEST_BACKEND") {
        opts.backend = b.parse().unwrap();
    }
    let comm = collective::connect(&launch, &opts).unwrap();
    let mut opts = FitOptions::new(&spec.out);
    opts.resume = spec.resume;
    opts.stop = Some(Arc::new(AtomicBool::new(spec.stop)));
    opts.collective = Some(comm.as_ref());
    match fit(config(), opts) {
        Ok(r) => println!(
            "REPORT rank {} {}",
            comm.rank(),
            serde_json::to_string(&r).unwrap()
        ),
        Err(e) => {
            eprintln!("rank {} failed: {e}", comm.rank());
            comm.abort(1);
        }
    }
    true
}

#[derive(Clone, Copy, Debug)]
enum Via {
    /// `mpiexec -n 2` (MPICH).
    Mpi,
    /// Two processes with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT.
    Tcp,
}

fn mpiexec() -> Option<PathBuf> {
    if !collective::mpi::available() {
        return None;
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mpiexec"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the two ranks of `test` with `spec`; `None` (after a message) without MPI.
fn start(via: Via, test: &str, spec: &ChildSpec) -> Option<Vec<Child>> {
    let exe = std::env::current_exe().unwrap();
    let spec = serde_json::to_string(spec).unwrap();
    let base = |cmd: &mut Command| {
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, &spec)
            .env(collective::TIMEOUT_VAR, LIMIT.to_string())
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    };
    match via {
        Via::Mpi => {
            let Some(mpiexec) = mpiexec() else {
                eprintln!("skipped: MPICH is not installed (cargo xtask doctor --install)");
                return None;
            };
            let mut cmd = Command::new(mpiexec);
            cmd.args(["-n", "2"]).arg(&exe);
            base(&mut cmd);
            Some(vec![cmd.spawn().unwrap()])
        }
        Via::Tcp => {
            let port = free_port().to_string();
            Some(
                (0..2)
                    .map(|rank| {
                        let mut cmd = Command::new(&exe);
                        base(&mut cmd);
                        cmd.env("RANK", rank.to_string())
                            .env("WORLD_SIZE", "2")
                            .env("LOCAL_RANK", rank.to_string())
                            .env("MASTER_ADDR", "127.0.0.1")
                            .env("MASTER_PORT", &port)
                            .spawn()
                            .unwrap()
                    })
                    .collect(),
            )
        }
    }
}

/// Waits for every process, failing the test past [`LIMIT`]; their outputs in order.
fn wait_all(children: Vec<Child>) -> Vec<Output> {
    let t0 = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<Output>> = children.iter().map(|_| None).collect();
    while outputs.iter().any(Option::is_none) {
        for (c, o) in children.iter_mut().zip(outputs.iter_mut()) {
            if o.is_none() && c.as_mut().unwrap().try_wait().unwrap().is_some() {
                *o = Some(c.take().unwrap().wait_with_output().unwrap());
            }
        }
        if t0.elapsed() > Duration::from_secs(LIMIT) {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            panic!("the ranks ran past {LIMIT} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    outputs.into_iter().map(Option::unwrap).collect()
}

fn text(outputs: &[Output]) -> String {
    outputs
        .iter()
        .map(|o| {
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the two ranks to the end and returns rank 0's report.
fn run_ranks(via: Via, test: &str, spec: &ChildSpec) -> Option<FitReport> {
    let outputs = wait_all(start(via, test, spec)?);
    let all = text(&outputs);
    assert!(outputs.iter().all(|o| o.status.success()), "{all}");
    let line = all
        .lines()
        .find_map(|l| l.split_once("REPORT rank 0 ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report from rank 0:\n{all}"));
    assert!(all.contains("REPORT rank 1 "), "{all}");
    Some(serde_json::from_str(line).unwrap())
}

/// One process, as the reference: the same run at the same global batch.
fn reference(out: &Path) -> FitReport {
    fit(config(), FitOptions::new(out)).unwrap()
}

fn params_of(run: &Path) -> Vec<(String, Vec<f32>)> {
    let model = Checkpoint::read(&run.join(checkpoint::LATEST))
        .unwrap()
        .model(Device::Cpu)
        .unwrap();
    model
        .params
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_vec().unwrap()))
        .collect()
}

/// The largest absolute difference between two runs' parameters.
fn max_param_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (params_of(a), params_of(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn assert_same_metrics(a: &FitReport, b: &FitReport) {
    assert_eq!(a.steps, b.steps);
    common::assert_metrics_close(&a.metrics, &b.metrics, 1e-4);
}

#[test]
fn two_mpi_ranks_at_batch_b_match_one_rank_at_2b() {
    if run_child_if_asked() || fashion_mnist_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let spec = ChildSpec {
        out: two.clone(),
        resume: false,
        stop: false,
    };
    // Over TCP instead where MPI is not installed, such as the GPU machine.
    let via = match std::env::var("CONVRNN_TEST_VIA").as_deref() {
        Ok("tcp") => Via::Tcp,
        _ => Via::Mpi,
    };
    let Some(dist) = run_ranks(via, "two_mpi_ranks_at_batch_b_match_one_rank_at_2b", &spec) else {
        return;
    };
    let single = reference(&one);
    assert_eq!(dist.outcome, Outcome::Finished);
    assert_eq!(dist.steps, 8);
    assert_same_metrics(&dist, &single);
    let diff = max_param_difference(&one, &two);
    eprintln!(
        "largest parameter difference after 8 steps on {}: {diff:e}",
        device()
    );
    assert!(diff <= tolerance(), "{diff:e}");
    // The comparison can fail: training moved the parameters far more than the tolerance.
    let init = topology::Model::new(&config().model, Device::Cpu, config().seed).unwrap();
    let trained = params_of(&one);
    let moved = init
        .params
        .iter()
        .zip(&trained)
        .flat_map(|((_, t), (_, v))| {
            t.to_vec()
                .unwrap()
                .into_iter()
                .zip(v.clone())
                .map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max);
    assert!(moved > 100.0 * tolerance(), "moved only {moved:e}");
}

#[test]
fn a_two_rank_run_resumes_on_one_rank_and_on_two() {
    if run_child_if_asked() || fashion_mnist_missing() {
        return;
    }
    let test = "a_two_rank_run_resumes_on_one_rank_and_on_two";
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let parts = dir.path().join("parts");
    let single = reference(&one);

    // Two ranks (TCP), stopped after the first step.
    let spec = ChildSpec {
        out: parts.clone(),
        resume: false,
        stop: true,
    };
    let first = run_ranks(Via::Tcp, test, &spec).unwrap();
    assert_eq!((first.outcome, first.steps), (Outcome::Interrupted, 1));
    // One rank continues it for one step ...
    let mut opts = FitOptions::new(&parts);
    opts.resume = true;
    opts.stop = Some(Arc::new(AtomicBool::new(true)));
    let second = fit(config(), opts).unwrap();
    assert_eq!((second.outcome, second.steps), (Outcome::Interrupted, 2));
    // ... and two ranks finish it.
    let spec = ChildSpec {
        out: parts.clone(),
        resume: true,
        stop: false,
    };
    let last = run_ranks(Via::Tcp, test, &spec).unwrap();
    assert_eq!(last.outcome, Outcome::Finished);
    assert_same_metrics(&last, &single);
    assert_same_metrics(
        &FitReport {
            metrics: trainer::metrics::read(&parts).unwrap(),
            ..last.clone()
        },
        &single,
    );
    let diff = max_param_difference(&one, &parts);
    assert!(diff <= tolerance().max(RESUMED_PARAM_TOLERANCE), "{diff:e}");
}

/// Starts two ranks, kills rank 1 once the run has written its first checkpoint, and returns
/// the outputs and how long the others took to end after the kill.
fn kill_rank_one(via: Via, test: &str) -> Option<(Vec<Output>, Duration)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let spec = ChildSpec {
        out: out.clone(),
        resume: false,
        stop: false,
    };
    let mut children = start(via, test, &spec)?;
    let latest = out.join(checkpoint::LATEST);
    let t0 = Instant::now();
    while !latest.exists() {
        assert!(t0.elapsed() < Duration::from_secs(LIMIT), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    match via {
        Via::Tcp => children[1].kill().unwrap(),
        Via::Mpi => {
            // mpiexec's children: kill the rank whose PMI_RANK is 1.
            let pid = rank_one_pid(children[0].id()).expect("rank 1's process");
            let status = Command::new("kill").args(["-9", &pid.to_string()]).status();
            assert!(status.unwrap().success());
        }
    }
    let killed = Instant::now();
    let outputs = wait_all(children);
    Some((outputs, killed.elapsed()))
}

/// The process below `ancestor` whose environment says PMI_RANK=1.
fn rank_one_pid(ancestor: u32) -> Option<u32> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let is_rank_one = env.split(|b| *b == 0).any(|kv| kv == b"PMI_RANK=1");
            if is_rank_one && descends_from(pid, ancestor) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..16 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // The parent pid is the second field after the parenthesised command name.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            return false;
        };
        if ppid == ancestor {
            return true;
        }
        pid = ppid;
    }
    false
}

#[test]
fn a_killed_tcp_rank_ends_the_run_with_an_error() {
    if run_child_if_asked() || fashion_mnist_missing() {
        return;
    }
    let (outputs, after) =
        kill_rank_one(Via::Tcp, "a_killed_tcp_rank_ends_the_run_with_an_error").unwrap();
    let rank0 = &outputs[0];
    let t = text(&outputs[..1]);
    assert!(!rank0.status.success(), "{t}");
    assert!(t.contains("lost rank 1"), "{t}");
    eprintln!("rank 0 stopped {after:?} after rank 1 was killed");
}

#[test]
fn a_killed_mpi_rank_ends_the_job() {
    if run_child_if_asked() || fashion_mnist_missing() {
        return;
    }
    let Some((outputs, after)) = kill_rank_one(Via::Mpi, "a_killed_mpi_rank_ends_the_job") else {
        return;
    };
    assert!(!outputs[0].status.success(), "{}", text(&outputs));
    eprintln!("the job ended {after:?} after rank 1 was killed");
}
