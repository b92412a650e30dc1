#![allow(clippy::unwrap_used)]
//! `cargo xtask figures` as a batch job runs it (stderr redirected to a log): a line per stage,
//! and between them the trainer's own progress, so a stage that trains for an hour at the full
//! scale still shows where it is; no bar redrawn with carriage returns. Needs Fashion-MNIST
//! (`cargo xtask test` installs it); skipped with a message otherwise.

use std::process::Command;

#[test]
fn a_figures_run_logs_its_stages_and_their_training_as_plain_lines() {
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
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .env("CONVRNN_NO_INSTALL", "1")
        .args(["figures", "--scale", "micro", "--no-neural", "--seeds", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "xtask figures failed:\n{log}");
    assert!(
        !log.contains('\r'),
        "a bar was drawn into the log:\n{log:?}"
    );
    assert!(out.join("REPORT.md").is_file());

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
}
