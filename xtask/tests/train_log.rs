//! `cargo xtask train` as a batch job runs it: stderr redirected to a log. Progress must come as
//! plain lines (no bar redrawn with carriage returns), and `--log-every` must reach `steps.jsonl`.

use std::process::Command;

#[test]
fn a_run_on_jpeg_folders_logs_plain_progress_lines_and_step_records_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    datasets::synthetic::write_splits(&data, &datasets::synthetic::SyntheticConfig::tiny(3, 8, 7))
        .unwrap();
    let model = topology::zoo::tiny_colour(3, 3);
    let spec = dir.path().join("tiny.json");
    std::fs::write(&spec, serde_json::to_string(&model).unwrap()).unwrap();
    let out = dir.path().join("run");

    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        // As root, `xtask train` would otherwise install missing packages (apt-get, network)
        // before training; a test must never do that.
        .env("CONVRNN_NO_INSTALL", "1")
        .args(["train", "--dataset", "folder", "--epochs", "1"])
        .args(["--batch-size", "4", "--log-every", "2", "--seed", "3"])
        .arg("--spec")
        .arg(&spec)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
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
