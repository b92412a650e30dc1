//! Multi-process studies: worker processes sharing one study through SQLite (and PostgreSQL,
//! where a server can be started) complete N distinct trials, and a worker killed mid-trial
//! leaves a study that a new worker finishes.
//!
//! The workers are this test binary itself, re-run on the `worker_entry` test with
//! `CONVRNN_SEARCH_WORKER` set; without that variable `worker_entry` does nothing.
#![allow(clippy::unwrap_used)]

use search::convrnn::{ModelStudy, ModelStudyConfig};
use search::{storage_from_url, Pruner, ShouldPrune, Space, TrialFailure, TrialState};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "CONVRNN_SEARCH_WORKER";

fn config() -> ModelStudyConfig {
    let mut c = ModelStudyConfig::default_for("compact_rgc", 7).unwrap();
    c.sampler.n_startup = 3;
    c.pruner = Pruner::None;
    c
}

/// Synthetic objective: three "epochs" of a value that depends on the learning rate.
#[test]
fn worker_entry() {
    let Ok(url) = std::env::var(ROLE) else {
        return;
    };
    let study_name = std::env::var("STUDY").unwrap();
    let n: usize = std::env::var("N_TRIALS").unwrap().parse().unwrap();
    let log = PathBuf::from(std::env::var("TRIAL_LOG").unwrap());
    let hang_at: Option<u64> = std::env::var("HANG_AT").ok().map(|s| s.parse().unwrap());
    let storage = storage_from_url(&url).unwrap();
    let study = ModelStudy::open(storage, &study_name, config()).unwrap();
    study
        .run_worker(n, &mut |trial| {
            let (_spec, hp) = trial.model()?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            writeln!(f, "{} {}", trial.number(), std::process::id()).unwrap();
            drop(f);
            if hang_at == Some(trial.number()) {
                let _ = trial.report(1, 0.1)?;
                // Stand still until the parent kills this process.
                std::thread::sleep(Duration::from_secs(600));
            }
            let mut v = 0.0;
            for epoch in 1..=3u64 {
                std::thread::sleep(Duration::from_millis(20));
                v = 1.0 / (1.0 + (hp.lr.ln() - 0.01f64.ln()).powi(2)) * epoch as f64 / 3.0;
                if trial.report(epoch, v)? == ShouldPrune(true) {
                    return Err(TrialFailure::Pruned);
                }
            }
            Ok(v)
        })
        .unwrap();
}

fn spawn(url: &str, study: &str, n: usize, log: &Path, hang_at: Option<u64>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, url)
        .env("STUDY", study)
        .env("N_TRIALS", n.to_string())
        .env("TRIAL_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(h) = hang_at {
        c.env("HANG_AT", h.to_string());
    }
    c.spawn().unwrap()
}

fn log_lines(log: &Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn two_workers_share(url: &str, dir: &Path) {
    let n = 12;
    let log = dir.join("two.log");
    let mut a = spawn(url, "two", n, &log, None);
    let mut b = spawn(url, "two", n, &log, None);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let runs = log_lines(&log);
    let numbers: BTreeSet<u64> = runs.iter().map(|r| r.0).collect();
    assert_eq!(runs.len(), n, "each trial runs exactly once: {runs:?}");
    assert_eq!(numbers, (0..n as u64).collect());
    let pids: BTreeSet<u32> = runs.iter().map(|r| r.1).collect();
    assert_eq!(pids.len(), 2, "both workers took trials: {runs:?}");
    let study = ModelStudy::load(storage_from_url(url).unwrap(), "two").unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(trials.len(), n);
    for t in &trials {
        assert_eq!(t.state, TrialState::Complete, "{t:?}");
        assert_eq!(t.intermediate.len(), 3);
        assert_eq!(t.attempts, 1);
        study.config().space.check_params(&t.params).unwrap();
    }
    // A third worker finds nothing left to do.
    let mut c = spawn(url, "two", n, &log, None);
    assert!(c.wait().unwrap().success());
    assert_eq!(log_lines(&log).len(), n);
}

fn killed_worker_recovers(url: &str, dir: &Path) {
    let n = 5;
    let log = dir.join("kill.log");
    let mut w = spawn(url, "kill", n, &log, Some(2));
    let t0 = Instant::now();
    while !log_lines(&log).iter().any(|r| r.0 == 2) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "worker never reached trial 2"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the hanging trial's first report land, then kill the worker mid-trial.
    std::thread::sleep(Duration::from_millis(300));
    w.kill().unwrap();
    w.wait().unwrap();
    let study = ModelStudy::load(storage_from_url(url).unwrap(), "kill").unwrap();
    let before = study.trials().unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(before[2].state, TrialState::Running);
    assert_eq!(before[2].intermediate.len(), 1);
    assert!(before[..2].iter().all(|t| t.state == TrialState::Complete));

    let mut fresh = spawn(url, "kill", n, &log, None);
    assert!(fresh.wait().unwrap().success());
    let after = study.trials().unwrap();
    assert_eq!(after.len(), n);
    for t in &after {
        assert_eq!(t.state, TrialState::Complete, "{t:?}");
        assert_eq!(t.intermediate.len(), 3, "stale values were dropped: {t:?}");
    }
    assert_eq!(after[2].attempts, 2);
    assert_eq!(
        after[2].params, before[2].params,
        "a re-queued trial keeps its parameters"
    );
    let runs = log_lines(&log);
    assert_eq!(runs.iter().filter(|r| r.0 == 2).count(), 2);
    assert_eq!(runs.len(), n + 1);
}

#[test]
fn two_sqlite_workers_complete_distinct_trials() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("study.db").display());
    two_workers_share(&url, dir.path());
}

#[test]
fn killed_sqlite_worker_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("study.db").display());
    killed_worker_recovers(&url, dir.path());
}

/// A throw-away PostgreSQL server in a temporary folder, run as the `postgres` user when this
/// process is root (the server refuses to run as root).
struct TempPostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_user: Option<String>,
    port: u16,
}

fn cmd(bin: &Path, as_user: &Option<String>) -> Command {
    match as_user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TempPostgres {
    fn start() -> Result<TempPostgres, String> {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| {
                "no /usr/lib/postgresql (install Debian's `postgresql` package)".to_string()
            })?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
            .collect();
        bins.sort();
        let bin = bins.pop().ok_or(
            "no initdb under /usr/lib/postgresql/*/bin (install Debian's `postgresql` package)",
        )?;
        let as_user = is_root().then(|| "postgres".to_string());
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let out = cmd(&bin.join("initdb"), &as_user)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let out = cmd(&bin.join("pg_ctl"), &as_user)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.path().display()
            ))
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|e| format!("running pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(TempPostgres {
            _dir: dir,
            data,
            bin,
            as_user,
            port,
        })
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = cmd(&self.bin.join("pg_ctl"), &self.as_user)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[test]
fn postgres_workers_share_and_recover() {
    let pg = match TempPostgres::start() {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("SKIPPED postgres_workers_share_and_recover: cannot start a PostgreSQL server: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    two_workers_share(&pg.url(), dir.path());
    killed_worker_recovers(&pg.url(), dir.path());
}
