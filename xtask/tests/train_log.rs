#![allow(clippy::unwrap_used)]
//! `cargo xtask train` as a batch job runs it: stderr redirected to a log. Progress must come as
//! plain lines (no bar redrawn with carriage returns), and `--log-every` must reach `steps.jsonl`.
//! A scheduler stops a job with SIGTERM (preemption, `scancel`, the time limit without
//! `--signal`), and a closed SSH session with SIGHUP: both must act as Ctrl-C does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tiny JPEG ImageFolder (3 classes) under `dir` and a spec file for a model that takes it.
fn tiny_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    datasets::synthetic::write_splits(&data, &datasets::synthetic::SyntheticConfig::tiny(3, 8, 7))
        .unwrap();
    let spec = dir.join("tiny.json");
    let model = topology::zoo::tiny_colour(3, 3);
    std::fs::write(&spec, serde_json::to_string(&model).unwrap()).unwrap();
    (data, spec)
}

/// `xtask train` on those inputs in batches of 4, into `out`.
fn train(data: &Path, spec: &Path, out: &Path, epochs: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    // As root, `xtask train` would otherwise install missing packages (apt-get, network)
    // before training; a test must never do that.
    c.env("CONVRNN_NO_INSTALL", "1")
        .args(["train", "--dataset", "folder", "--batch-size", "4"])
        .arg("--epochs")
        .arg(epochs.to_string())
        .arg("--spec")
        .arg(spec)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn a_run_on_jpeg_folders_logs_plain_progress_lines_and_step_records_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (data, spec) = tiny_inputs(dir.path());
    let out = dir.path().join("run");

    let run = train(&data, &spec, &out, 1)
        .args(["--log-every", "2", "--seed", "3"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "xtask train failed:\n{log}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        !log.contains("apt-get") && !stdout.contains("apt-get"),
        "the run tried to install packages:\n{stdout}\n{log}"
    );

    // 24 images in batches of 4: the first batch and the epoch's end each get a line (the
    // 30 s between lines is never reached here).
    assert!(
        !log.contains('\r'),
        "a bar was drawn into the log:\n{log:?}"
    );
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("epoch 1/1 "))
        .collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("epoch 1/1 1/6 (16.7%) loss ")),
        "{log}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("epoch 1/1 6/6 (100.0%) loss ") && last.contains(" img/s ["),
        "{log}"
    );
    assert!(last.contains(" elapsed, ~0:00 left]"), "{last}");

    let steps = std::fs::read_to_string(out.join("steps.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = steps
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at: Vec<u64> = records
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [2, 4, 6]);
    for r in &records {
        for field in ["loss", "lr", "grad_norm", "img_per_s", "data_wait"] {
            let v = r[field].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{field} = {v} in {r}");
        }
    }
}

/// Each signal: finish the batch, write a checkpoint, exit 130 — not die with the steps since
/// the last checkpoint lost.
#[test]
fn sigterm_sighup_and_sigusr1_checkpoint_and_stop_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let (data, spec) = tiny_inputs(dir.path());
    for (name, signal) in [
        ("SIGTERM", libc::SIGTERM),
        ("SIGHUP", libc::SIGHUP),
        ("SIGUSR1", libc::SIGUSR1),
    ] {
        let out = dir.path().join(name);
        let child = train(&data, &spec, &out, 100_000);
        let (status, log) = signal_once_started(child, |pid| vec![pid], signal);
        assert_eq!(status.code(), Some(130), "{name}: {status}\n{log}");
        assert!(log.contains("stop signal"), "{name}: {log}");
        assert_checkpointed(&out, name, &log);
    }
}

/// `--nproc 2`: a signal to the parent alone (`kill PID`) is passed on to the ranks, and a
/// terminal's Ctrl-C, which reaches the parent and the ranks (one process group), still ends
/// with a checkpoint although each rank then hears of it twice; so does a SIGUSR1 to every
/// process (SLURM's `--signal=USR1@N`), which used to end the parent at once.
#[test]
fn a_local_multi_rank_run_checkpoints_when_its_parent_or_its_process_group_is_signalled() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (data, spec) = tiny_inputs(dir.path());
    for (name, group, signal) in [
        ("parent", false, libc::SIGTERM),
        ("group", true, libc::SIGINT),
        ("usr1", true, libc::SIGUSR1),
    ] {
        let out = dir.path().join(name);
        let mut child = train(&data, &spec, &out, 100_000);
        child.args(["--nproc", "2"]).process_group(0);
        let targets = move |pid: i32| if group { vec![-pid] } else { vec![pid] };
        let (status, log) = signal_once_started(child, targets, signal);
        assert_eq!(status.code(), Some(130), "{name}: {status}\n{log}");
        assert!(!log.contains("without a checkpoint"), "{name}: {log}");
        assert_checkpointed(&out, name, &log);
    }
}

/// Starts `command`, waits for its first progress line, sends `signal` to each of
/// `targets(pid)` (a negative id is a process group) and waits for it to end.
fn signal_once_started(
    mut command: Command,
    targets: impl Fn(i32) -> Vec<i32>,
    signal: i32,
) -> (std::process::ExitStatus, String) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    // Training has begun once the first progress line is out.
    let started = rx
        .iter()
        .find(|l| l.starts_with("epoch 1/100000 "))
        .is_some();
    assert!(started, "the run ended before its first batch");
    for target in targets(child.id() as i32) {
        // SAFETY: the child is alive (its stderr is open) and is our own process (or the
        // group it leads).
        assert_eq!(unsafe { libc::kill(target, signal) }, 0);
    }
    let status = wait(&mut child, Duration::from_secs(120));
    (status, reader.join().unwrap())
}

fn assert_checkpointed(out: &Path, name: &str, log: &str) {
    let ck = out.join(trainer::checkpoint::LATEST);
    let read = trainer::checkpoint::Checkpoint::read(&ck)
        .unwrap_or_else(|e| panic!("{name}: no usable checkpoint after the signal: {e}\n{log}"));
    assert!(
        read.progress.global_step >= 1,
        "{name}: {:?}",
        read.progress
    );
}

fn wait(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            // The ranks of `--nproc` lead no group of their own: end them with their parent.
            // SAFETY: kill(2) on our own child's group has no memory effects.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            panic!("the run did not stop within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A warm-up the user asked for is cut to a tenth of a short run with a warning; the default
/// warm-up is cut without one (every short run would warn).
#[test]
fn a_warm_up_given_on_the_command_line_and_cut_to_a_tenth_of_the_run_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (data, spec) = tiny_inputs(dir.path());
    let asked = train(&data, &spec, &dir.path().join("asked"), 1)
        .args(["--warmup-steps", "50", "--quiet"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&asked.stderr);
    assert!(asked.status.success(), "{log}");
    // 24 images in batches of 4: 6 optimiser steps, so at most 1 of warm-up.
    assert!(
        log.contains("warning: the warm-up of 50 steps was cut to 1, a tenth of this run's 6"),
        "{log}"
    );
    let default = train(&data, &spec, &dir.path().join("default"), 1)
        .arg("--quiet")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&default.stderr);
    assert!(default.status.success(), "{log}");
    assert!(!log.contains("warm-up"), "{log}");
}
