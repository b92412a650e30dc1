#![allow(clippy::unwrap_used)]
//! The MPI backend with two ranks under `mpiexec`: values of every collective, a rank that stops
//! answering (timeout → the job is aborted), a rank that is killed (the job ends).
//!
//! Each test re-runs this test binary under `mpiexec -n 2` with a variable naming the scenario;
//! the ranks check their own values and print a line, the parent checks the job's outcome and
//! output. Skipped with a message where MPICH is not installed (`cargo xtask doctor --install`).

use collective::{mpi, Collective, CollectiveExt, Launch, ReduceOp};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = "CONVRNN_TEST_MPI_SCENARIO";

fn mpiexec() -> Option<PathBuf> {
    if !mpi::available() {
        return None;
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mpiexec"))
            .find(|p| p.is_file())
    })
}

/// Runs `test` of this binary as a 2-rank MPI job in `scenario`; `None` when MPI is missing.
/// Fails the test if the job runs longer than `limit`.
fn run_job(test: &str, scenario: &str, limit: Duration, env: &[(&str, &str)]) -> Option<Output> {
    let Some(mpiexec) = mpiexec() else {
        eprintln!("skipped: MPICH is not installed (cargo xtask doctor --install)");
        return None;
    };
    let mut cmd = Command::new(mpiexec);
    cmd.args(["-n", "2"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the MPI job ran past {limit:?}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The rank side: connect through the launcher's variables, as the trainer does.
fn rank_comm() -> Box<dyn Collective> {
    let launch = Launch::from_env().unwrap();
    assert_eq!(launch.world_size, 2, "{launch:?}");
    let opts = collective::Options::from_env().unwrap();
    let comm = collective::connect(&launch, &opts).unwrap();
    assert_eq!(comm.backend(), collective::Backend::Mpi);
    assert_eq!(comm.rank(), launch.rank);
    assert_eq!(
        comm.local_rank(),
        launch.rank,
        "both ranks run on this machine"
    );
    comm
}

#[test]
fn two_ranks_reduce_and_broadcast_the_right_values() {
    if std::env::var(SCENARIO).as_deref() == Ok("values") {
        let c = rank_comm();
        let r = c.rank();
        let mut v: Vec<f32> = (0..1000).map(|i| (i * (r + 1)) as f32).collect();
        c.all_reduce_f32(&mut v, ReduceOp::Sum).unwrap();
        assert!(v.iter().enumerate().all(|(i, x)| *x == (3 * i) as f32));
        let mut a = [r as f64 + 1.0, 10.0];
        c.all_reduce_f64(&mut a, ReduceOp::Average).unwrap();
        assert_eq!(a, [1.5, 10.0]);
        let mut n = [r as u64 * 7, 100 + r as u64];
        c.all_reduce_u64(&mut n, ReduceOp::Max).unwrap();
        assert_eq!(n, [7, 101]);
        let mut m = [r as f32 - 5.0];
        c.all_reduce_f32(&mut m, ReduceOp::Min).unwrap();
        assert_eq!(m, [-5.0]);
        let mut b = vec![r as f32; 5];
        c.broadcast_f32(&mut b, 1).unwrap();
        assert_eq!(b, [1.0; 5]);
        let bytes = c
            .broadcast_bytes(format!("hello from {r}").as_bytes(), 0)
            .unwrap();
        assert_eq!(bytes, b"hello from 0");
        let t = tensor::Tensor::from_vec(vec![r as f32, 2.0], [2], tensor::Device::Cpu).unwrap();
        c.all_reduce_tensor(&t, ReduceOp::Average).unwrap();
        assert_eq!(t.to_vec().unwrap(), [0.5, 2.0]);
        c.barrier().unwrap();
        println!("rank {r}: all values right");
        return;
    }
    let Some(out) = run_job(
        "two_ranks_reduce_and_broadcast_the_right_values",
        "values",
        Duration::from_secs(120),
        &[],
    ) else {
        return;
    };
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for r in 0..2 {
        assert!(t.contains(&format!("rank {r}: all values right")), "{t}");
    }
}

#[test]
fn a_rank_that_stops_answering_times_out_and_ends_the_job() {
    if std::env::var(SCENARIO).as_deref() == Ok("silent") {
        let c = rank_comm();
        if c.rank() == 1 {
            // Alive but stuck (a deadlocked data loader, a hung file system): never arrives.
            std::thread::sleep(Duration::from_secs(600));
        }
        let err = c.all_reduce_f32(&mut [1.0], ReduceOp::Sum).unwrap_err();
        eprintln!("rank 0 error: {err}");
        // Also in a file: under load the process manager has lost the rank's stderr when the
        // abort came first, and the error's text is what this test checks.
        std::fs::write(std::env::var(ERROR_FILE).unwrap(), err.to_string()).unwrap();
        return; // dropping the poisoned communicator aborts the job
    }
    let dir = tempfile::tempdir().unwrap();
    let error_file = dir.path().join("rank0-error.txt");
    let Some(out) = run_job(
        "a_rank_that_stops_answering_times_out_and_ends_the_job",
        "silent",
        Duration::from_secs(120),
        &[
            (collective::TIMEOUT_VAR, "2"),
            (ERROR_FILE, error_file.to_str().unwrap()),
        ],
    ) else {
        return;
    };
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let err = std::fs::read_to_string(&error_file).unwrap_or_else(|e| panic!("{e}: {t}"));
    assert!(err.starts_with("rank 0: all-reduce"), "{err}");
    assert!(err.contains("did not complete within 2 s"), "{err}");
}

/// Where rank 0 of the `silent` scenario writes its error.
const ERROR_FILE: &str = "CONVRNN_TEST_MPI_ERROR_FILE";

#[test]
fn a_killed_rank_ends_the_job() {
    if std::env::var(SCENARIO).as_deref() == Ok("killed") {
        let c = rank_comm();
        if c.rank() == 1 {
            let pid = std::process::id().to_string();
            let _ = Command::new("kill").args(["-9", &pid]).status();
            std::thread::sleep(Duration::from_secs(600));
        }
        let _ = c.all_reduce_f32(&mut [1.0], ReduceOp::Sum);
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    // A generous limit: the process manager, not our timeout (600 s), must end the job.
    let Some(out) = run_job(
        "a_killed_rank_ends_the_job",
        "killed",
        Duration::from_secs(120),
        &[],
    ) else {
        return;
    };
    assert!(!out.status.success(), "{}", text(&out));
}
