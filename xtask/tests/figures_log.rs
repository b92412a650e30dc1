#![allow(clippy::unwrap_used)]
//! `cargo xtask figures` as a batch job runs it (stderr redirected to a log): a line per stage,
//! and between them the trainer's own progress, so a stage that trains for an hour at the full
//! scale still shows where it is; no bar redrawn with carriage returns. A stop signal ends the
//! run with status 130 and the same command continues it. Needs Fashion-MNIST
//! (`cargo xtask test` installs it); skipped with a message otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_figures_run_logs_its_stages_and_their_training_as_plain_lines_and_continues_after_a_stop() {
    if !datasets::locate::has_fashion_mnist(std::path::Path::new(
        datasets::locate::DEBIAN_FASHION_MNIST_DIR,
    )) {
        eprintln!(
            "skipped: Fashion-MNIST is not installed at {}",
            datasets::locate::DEBIAN_FASHION_MNIST_DIR
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("figures");
    let figures = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.env("CONVRNN_NO_INSTALL", "1")
            .args(["figures", "--scale", "micro", "--no-neural", "--seeds", "1"])
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };

    // Stopped by SIGTERM once the second stage has begun: exit 130, saying how to continue.
    let mut child = figures().spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut signalled = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if !signalled && line.starts_with("training compact_simplernn (") {
            // SAFETY: the child is alive (its stderr is open) and is our own process.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
            signalled = true;
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(signalled, "the second stage never started:\n{log}");
    assert_eq!(status.code(), Some(130), "{status}\n{log}");
    assert!(
        log.contains("stopped (") && log.contains("the same command continues"),
        "{log}"
    );
    assert!(
        !log.contains('\r'),
        "a bar was drawn into the log:\n{log:?}"
    );

    // The first stage: its start, the trainer's lines, its end.
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            l.starts_with("figures 0/") && l.contains("train timedecay (seed 0): running")
        })
        .unwrap_or_else(|| panic!("no line for the first stage's start:\n{log}"));
    let end = lines
        .iter()
        .position(|l| l.starts_with("figures 1/") && l.contains("train timedecay (seed 0): done"))
        .unwrap_or_else(|| panic!("no line for the first stage's end:\n{log}"));
    let between = &lines[start + 1..end];
    assert!(
        between
            .first()
            .is_some_and(|l| l.starts_with("training compact_timedecay (")),
        "{between:#?}"
    );
    assert!(
        between
            .iter()
            .any(|l| l.starts_with("epoch 1/1 ") && l.contains(" img/s [")),
        "{between:#?}"
    );
    assert!(
        between
            .last()
            .is_some_and(|l| l.starts_with("epoch 1: train loss ") && l.contains("val top-1")),
        "{between:#?}"
    );

    // The same command continues: the first stage from the cache, then to the end.
    let run = figures().output().unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the continued run failed:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("train timedecay (seed 0): cached")),
        "{log}"
    );
    assert!(out.join("REPORT.md").is_file());
}
