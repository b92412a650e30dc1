//! Process-level fault injection for the workspace's tests (docs/RELIABILITY.md).
//!
//! A suite re-runs its own test binary on one `#[test]` function (the "child" test, by convention
//! [`CHILD_TEST`], which does nothing unless [`ROLE_VAR`] is set: see [`child_role`]), times an
//! uninterrupted child, then SIGKILLs children at chosen moments and checks what they left
//! behind. Killing a real process (not a thread, not a simulated error) is the point: it is the
//! only way to test what a crash leaves on disk.
//!
//! ```no_run
//! use fault_inject::{child, child_role, duration_of, kill_after};
//! use std::path::Path;
//!
//! /// The child side: does nothing in an ordinary test run.
//! #[test]
//! fn fault_child() {
//!     let Some(role) = child_role() else { return };
//!     match role.name() {
//!         "write" => std::fs::write(role.path("FAULT_OUT"), b"...").unwrap(),
//!         other => panic!("unknown fault child role {other}"),
//!     }
//! }
//!
//! let out = Path::new("/tmp/out");
//! let full = duration_of(child("write", &[("FAULT_OUT", out)]));
//! let killed = kill_after(child("write", &[("FAULT_OUT", out)]), full / 2);
//! ```
#![warn(missing_docs)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that tells the child test which role to play.
pub const ROLE_VAR: &str = "CONVRNN_FAULT_CHILD";

/// The name the suites give their child test function, which [`child`] re-runs.
pub const CHILD_TEST: &str = "fault_child";

/// The role this process plays as a fault-injection child, as its parent set it with [`child`]
/// or [`self_child`]; `None` in an ordinary test run, where the child test returns at once.
pub fn child_role() -> Option<Role> {
    std::env::var(ROLE_VAR).ok().map(|name| Role { name })
}

/// A child's role, and the settings its parent passed in its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    name: String,
}

impl Role {
    /// The role's name (what the child is to do).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path the parent passed in the variable `var`.
    ///
    /// # Panics
    /// If `var` is not set: the parent and the child test disagree, a bug in the suite.
    pub fn path(&self, var: &str) -> PathBuf {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("fault child `{}`: its parent did not set {var}", self.name))
    }

    /// Whether the parent set the variable `var` (a switch such as "resume").
    pub fn flag(&self, var: &str) -> bool {
        std::env::var_os(var).is_some()
    }
}

/// This test binary re-run on [`CHILD_TEST`] in `role` ([`self_child`]).
pub fn child(role: &str, env: &[(&str, &Path)]) -> Command {
    self_child(CHILD_TEST, role, env)
}

/// `cmd` started through `bash -c`, after the shell commands `setup` (a resource limit such as
/// `ulimit -f 64`, a signal disposition such as `trap '' XFSZ`), which the child inherits: the
/// same program, arguments and environment, its output discarded.
pub fn under_shell(cmd: &Command, setup: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!("{setup}\nexec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// A command that re-runs the current test binary on exactly the test `test_name`, with
/// [`ROLE_VAR`] set to `role` and each `(key, path)` of `env` in its environment; its output is
/// discarded so that a killed child cannot garble the parent's.
///
/// # Panics
/// If the path of the current executable cannot be read (a test harness without `/proc`).
pub fn self_child(test_name: &str, role: &str, env: &[(&str, &Path)]) -> Command {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut c = Command::new(exe);
    c.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Starts `cmd`, sends SIGKILL after `delay` if it is still running, and reaps it. Returns whether
/// the kill came before the child finished (`false`: it ended on its own first, so nothing was
/// interrupted and the caller should retry with a shorter delay).
///
/// # Errors
/// If the child cannot be started or waited for.
pub fn try_kill_after(mut cmd: Command, delay: Duration) -> io::Result<bool> {
    let mut child = cmd.spawn()?;
    let t0 = Instant::now();
    while t0.elapsed() < delay {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed = child.try_wait()?.is_none();
    // SIGKILL; an error here only means it exited between the check and the kill.
    let _ = child.kill();
    child.wait()?;
    Ok(killed)
}

/// [`try_kill_after`] for tests.
///
/// # Panics
/// If the child cannot be started or waited for.
pub fn kill_after(cmd: Command, delay: Duration) -> bool {
    try_kill_after(cmd, delay).expect("starting or reaping the fault-injection child")
}

/// How long `cmd` takes to run to the end, start-up included.
///
/// # Panics
/// If it cannot be started or does not exit successfully (the uninterrupted run is the yardstick,
/// so it must work).
pub fn duration_of(mut cmd: Command) -> Duration {
    let t0 = Instant::now();
    let status = cmd.status().expect("starting the fault-injection child");
    assert!(status.success(), "the uninterrupted child failed: {status}");
    t0.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(secs: &str) -> Command {
        let mut c = Command::new("sleep");
        c.arg(secs);
        c
    }

    #[test]
    fn a_child_still_running_is_killed() {
        assert!(kill_after(sleeper("5"), Duration::from_millis(50)));
    }

    #[test]
    fn a_child_that_ends_first_is_not_counted_as_killed() {
        assert!(!kill_after(sleeper("0"), Duration::from_secs(5)));
    }

    #[test]
    fn a_child_that_cannot_start_is_an_error() {
        let cmd = Command::new("/nonexistent/fault-inject-child");
        assert!(try_kill_after(cmd, Duration::from_millis(1)).is_err());
    }

    #[test]
    #[should_panic(expected = "the uninterrupted child failed")]
    fn a_failing_yardstick_run_fails_the_test() {
        duration_of(Command::new("false"));
    }

    #[test]
    fn a_shell_setup_applies_to_the_child() {
        let mut c = Command::new("bash");
        c.args(["-c", "test \"$(ulimit -f)\" = 64 && test \"$FAULT_X\" = y"])
            .env("FAULT_X", "y");
        let wrapped = under_shell(&c, "ulimit -f 64");
        assert!(duration_of(wrapped) > Duration::ZERO);
        let mut other = under_shell(&c, "ulimit -f 32");
        assert!(!other.status().map(|s| s.success()).unwrap_or(true));
    }

    #[test]
    fn outside_a_child_there_is_no_role() {
        // The suite's own process is never started as a child.
        assert_eq!(child_role(), None);
        let role = Role {
            name: "train".into(),
        };
        assert_eq!(role.name(), "train");
        assert!(!role.flag("FAULT_INJECT_UNSET_VARIABLE"));
    }

    #[test]
    #[should_panic(expected = "did not set FAULT_INJECT_UNSET_VARIABLE")]
    fn a_path_the_parent_did_not_pass_is_named() {
        let role = Role {
            name: "train".into(),
        };
        role.path("FAULT_INJECT_UNSET_VARIABLE");
    }

    #[test]
    fn self_child_runs_one_test_with_its_role() {
        let d = Path::new("/tmp");
        let c = self_child("fault_child", "train", &[("FAULT_OUT", d)]);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[..2], ["--exact", "fault_child"]);
        assert_eq!(
            child("train", &[]).get_args().nth(1),
            Some(CHILD_TEST.as_ref())
        );
        let envs: Vec<_> = c.get_envs().collect();
        assert!(envs.contains(&(ROLE_VAR.as_ref(), Some("train".as_ref()))));
        assert!(envs.contains(&("FAULT_OUT".as_ref(), Some(d.as_os_str()))));
    }
}
