//! A scheduler stops a job with SIGTERM (preemption, `scancel`, the time limit without
//! `--signal`), and a closed SSH session with SIGHUP: `cargo xtask train` must treat both as
//! Ctrl-C — finish the batch, write a checkpoint, exit 130 — not die with the steps since the
//! last checkpoint lost.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigterm_and_sighup_checkpoint_and_stop_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    datasets::synthetic::write_splits(&data, &datasets::synthetic::SyntheticConfig::tiny(3, 8, 7))
        .unwrap();
    let spec = dir.path().join("tiny.json");
    let model = topology::zoo::tiny_colour(3, 3);
    std::fs::write(&spec, serde_json::to_string(&model).unwrap()).unwrap();
    for (name, signal) in [("SIGTERM", libc::SIGTERM), ("SIGHUP", libc::SIGHUP)] {
        let out = dir.path().join(name);
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .env("CONVRNN_NO_INSTALL", "1")
            .args(["train", "--dataset", "folder", "--epochs", "100000"])
            .args(["--batch-size", "4"])
            .arg("--spec")
            .arg(&spec)
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&out)
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
        assert!(started, "{name}: the run ended before its first batch");
        // SAFETY: the child is alive (its stderr is open) and is our own process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = wait(&mut child, Duration::from_secs(120));
        let log = reader.join().unwrap();
        assert_eq!(status.code(), Some(130), "{name}: {status}\n{log}");
        assert!(log.contains("stop signal"), "{name}: {log}");
        let ck = out.join(trainer::checkpoint::LATEST);
        let read = trainer::checkpoint::Checkpoint::read(&ck).unwrap_or_else(|e| {
            panic!("{name}: no usable checkpoint after the signal: {e}\n{log}")
        });
        assert!(
            read.progress.global_step >= 1,
            "{name}: {:?}",
            read.progress
        );
    }
}

fn wait(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not stop within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
