//! Study storage: trials, their parameters, intermediate values, states and results in a real
//! database, so that any number of worker processes can share a study and any of them can be
//! killed without losing or duplicating work.
//!
//! Claiming is one transaction: it first recovers trials whose worker died, then hands out the
//! lowest-numbered re-queued trial or samples and inserts a new one. Two workers therefore never
//! hold the same trial. A running trial's worker is taken for dead when
//! - it ran on this host and its process is gone (its pid is not alive, or the pid now belongs to
//!   a process with another start time), or
//! - its heartbeat (refreshed every few seconds by the worker while the trial runs, and on every
//!   report) is older than [`StalePolicy::heartbeat_timeout_s`] — the rule for other hosts.
//!
//! A dead worker's trial goes back to `waiting` (its intermediate values are dropped; it keeps
//! its number and parameters) and is run again by the next worker that claims, until it has
//! been attempted [`StalePolicy::max_attempts`] times; then it is marked `failed` with the reason.
//! Every write of a trial's progress checks that the writer still owns it, so a worker that was
//! wrongly presumed dead cannot overwrite the new owner's results.

pub mod postgres;
mod rows;
pub mod sqlite;

use crate::params::Params;
use crate::SearchError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use self::postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

/// Whether larger objective values are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger values are better (accuracy; the default).
    #[default]
    Maximize,
    /// Smaller values are better (a loss, an error rate).
    Minimize,
}

impl Direction {
    /// The name stored in the database and in reports: `maximize` or `minimize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Maximize => "maximize",
            Direction::Minimize => "minimize",
        }
    }
    /// The direction named `s` as [`Direction::as_str`] writes it.
    ///
    /// # Errors
    /// [`SearchError::Storage`] for any other text (a database written by something else).
    pub fn parse(s: &str) -> Result<Direction, SearchError> {
        match s {
            "maximize" => Ok(Direction::Maximize),
            "minimize" => Ok(Direction::Minimize),
            other => Err(SearchError::Storage(format!(
                "unknown study direction `{other}` in the database; expected maximize or minimize"
            ))),
        }
    }
    /// `value` turned into a higher-is-better score.
    pub fn score(self, value: f64) -> f64 {
        match self {
            Direction::Maximize => value,
            Direction::Minimize => -value,
        }
    }
}

/// Life cycle of a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Re-queued after its worker died; the next claim takes it.
    Waiting,
    /// A worker holds it (or held it and has not yet been found dead).
    #[default]
    Running,
    /// Finished with a value.
    Complete,
    /// Stopped early by the pruner; its intermediate values are kept.
    Pruned,
    /// The objective returned an error or a non-finite value or panicked, or the trial's workers
    /// died [`StalePolicy::max_attempts`] times.
    Failed,
}

impl TrialState {
    /// The name stored in the database and in reports (`waiting`, `running`, `complete`,
    /// `pruned`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Waiting => "waiting",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
        }
    }
    /// The state named `s` as [`TrialState::as_str`] writes it.
    ///
    /// # Errors
    /// [`SearchError::Storage`] for any other text.
    pub fn parse(s: &str) -> Result<TrialState, SearchError> {
        Ok(match s {
            "waiting" => TrialState::Waiting,
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "pruned" => TrialState::Pruned,
            "failed" => TrialState::Failed,
            other => {
                return Err(SearchError::Storage(format!(
                    "unknown trial state `{other}` in the database"
                )))
            }
        })
    }
    /// Whether the trial is over for good (complete, pruned or failed): it will not run again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TrialState::Complete | TrialState::Pruned | TrialState::Failed
        )
    }
}

/// A trial as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TrialRecord {
    /// Database id (unique across studies).
    pub id: i64,
    /// Number within the study, from 0.
    pub number: u64,
    /// Where it is in its life cycle.
    pub state: TrialState,
    /// The parameters it was sampled with.
    pub params: Params,
    /// Final objective value (complete trials; the last reported value for pruned ones).
    pub value: Option<f64>,
    /// Step (epoch) → reported value.
    pub intermediate: BTreeMap<u64, f64>,
    /// Values the objective attached to it (e.g. `params_count`, the model's parameter count, which
    /// the report's Pareto front uses).
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    /// Why it failed.
    pub reason: Option<String>,
    /// How many times a worker has started it.
    pub attempts: u32,
    /// The worker that holds or last held it.
    pub owner: Option<String>,
    /// Unix seconds.
    pub started_at: Option<f64>,
    /// Unix seconds, once finished.
    pub finished_at: Option<f64>,
    /// A running trial's worker (host, pid, start time) and last heartbeat: what tells a live
    /// worker from a dead one ([`stale_verdict`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<OwnerRow>,
}

/// Identity of a worker process, precise enough to tell whether it is still alive on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// `host:pid:start_ticks`, the owner name written into the trials it holds.
    pub id: String,
    /// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`).
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// Process start time in clock ticks since boot (Linux `/proc/<pid>/stat` field 22); 0 when
    /// unknown. It tells a dead worker from a new process that reused its pid.
    pub start_ticks: u64,
}

impl WorkerInfo {
    /// This process.
    pub fn current() -> WorkerInfo {
        let pid = std::process::id();
        let host = hostname();
        let start_ticks = process_start_ticks(pid).unwrap_or(0);
        WorkerInfo {
            id: format!("{host}:{pid}:{start_ticks}"),
            host,
            pid,
            start_ticks,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Start time of `pid` and whether it is a zombie, from `/proc`.
fn proc_stat(pid: u32) -> Option<(u64, bool)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may contain spaces: split after it.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first().is_some_and(|st| *st == "Z" || *st == "X");
    let start = fields.get(19)?.parse().ok()?;
    Some((start, zombie))
}

fn process_start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(s, _)| s)
}

/// Whether the process `pid` that started at `start_ticks` still runs on this host. Where `/proc`
/// is missing the answer is "alive", leaving the heartbeat rule to decide.
pub fn pid_alive(pid: u32, start_ticks: u64) -> bool {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return true;
    }
    match proc_stat(pid) {
        None => false,
        Some((_, true)) => false,
        Some((start, false)) => start_ticks == 0 || start == start_ticks,
    }
}

/// When a running trial's worker is presumed dead, and how often a trial may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StalePolicy {
    /// Seconds without a heartbeat after which a trial's worker counts as dead.
    pub heartbeat_timeout_s: f64,
    /// Seconds between heartbeats of a running trial.
    pub heartbeat_interval_s: f64,
    /// Attempts after which a trial whose worker died is failed instead of re-queued.
    pub max_attempts: u32,
}

impl Default for StalePolicy {
    fn default() -> Self {
        StalePolicy {
            heartbeat_timeout_s: 600.0,
            heartbeat_interval_s: 20.0,
            max_attempts: 3,
        }
    }
}

/// The owner columns of a running trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerRow {
    /// The host of the worker holding the trial.
    pub host: Option<String>,
    /// Its process id.
    pub pid: Option<i64>,
    /// Its process start time, in clock ticks since boot (see [`WorkerInfo::start_ticks`]).
    pub start_ticks: Option<i64>,
    /// Its last heartbeat, Unix seconds.
    pub heartbeat: Option<f64>,
    /// How many times the trial has been started.
    pub attempts: u32,
}

/// What to do with a running trial found during a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum StaleVerdict {
    /// The worker is alive: leave the trial running.
    Alive,
    /// The worker is dead (the reason given): put the trial back to `waiting` for another attempt.
    Requeue(String),
    /// The worker is dead and the trial has used up its attempts: mark it failed with the reason.
    Fail(String),
}

/// Decides whether a running trial's worker is dead (see the module docs).
pub fn stale_verdict(
    row: &OwnerRow,
    me: &WorkerInfo,
    now: f64,
    policy: &StalePolicy,
) -> StaleVerdict {
    let same_host = row.host.as_deref() == Some(me.host.as_str());
    let dead_pid = same_host
        && match row.pid.and_then(|p| u32::try_from(p).ok()) {
            Some(pid) => !pid_alive(
                pid,
                row.start_ticks
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            ),
            None => true,
        };
    let silent = row
        .heartbeat
        .is_none_or(|h| now - h > policy.heartbeat_timeout_s);
    if !(dead_pid || silent) {
        return StaleVerdict::Alive;
    }
    let why = if dead_pid {
        format!(
            "worker process {} on {} died",
            row.pid.unwrap_or(-1),
            row.host.as_deref().unwrap_or("?")
        )
    } else {
        format!(
            "worker on {} sent no heartbeat for over {} s",
            row.host.as_deref().unwrap_or("?"),
            policy.heartbeat_timeout_s
        )
    };
    if row.attempts >= policy.max_attempts {
        StaleVerdict::Fail(format!("{why}; gave up after {} attempts", row.attempts))
    } else {
        StaleVerdict::Requeue(why)
    }
}

/// The current time in Unix seconds, as heartbeats and start/finish times are stored (0 if the
/// clock is before 1970).
pub fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A trial handed to a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedTrial {
    /// The trial's database id.
    pub id: i64,
    /// The trial's number in the study.
    pub number: u64,
    /// The parameters to run it with.
    pub params: Params,
    /// 1 for a fresh trial, more for a re-run after a dead worker.
    pub attempt: u32,
}

/// A study as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyInfo {
    /// The study's database id.
    pub id: i64,
    /// The study's name (unique in the database).
    pub name: String,
    /// Whether its objective is maximised or minimised.
    pub direction: Direction,
    /// The study's configuration (space, sampler, pruner) as JSON.
    pub config: String,
}

/// Draws the parameters of trial `number` from the trials so far.
pub type SampleFn<'a> = dyn FnMut(&[TrialRecord], u64) -> Result<Params, SearchError> + 'a;

/// A database that holds studies. Implementations serialise claims per study.
pub trait Storage: Send + Sync {
    /// Creates the study, or returns the existing one after checking its direction and config.
    fn open_study(
        &self,
        name: &str,
        direction: Direction,
        config: &str,
    ) -> Result<StudyInfo, SearchError>;
    /// The study called `name`, if any.
    fn find_study(&self, name: &str) -> Result<Option<StudyInfo>, SearchError>;
    /// Recovers dead workers' trials, then claims a re-queued trial or creates trial number
    /// `count` while fewer than `n_total` trials exist. `None`: nothing left to do.
    fn claim(
        &self,
        study: i64,
        n_total: usize,
        worker: &WorkerInfo,
        policy: &StalePolicy,
        sample: &mut SampleFn<'_>,
    ) -> Result<Option<ClaimedTrial>, SearchError>;
    /// Stores an intermediate value and refreshes the heartbeat; `false` if `worker` no longer
    /// owns the trial.
    fn report(&self, trial: i64, worker: &str, step: u64, value: f64) -> Result<bool, SearchError>;
    /// Refreshes the heartbeat of a running trial; `false` if `worker` no longer owns it (it was
    /// presumed dead and the trial re-queued).
    fn heartbeat(&self, trial: i64, worker: &str) -> Result<bool, SearchError>;
    /// Moves an owned running trial to a final state.
    fn finish(
        &self,
        trial: i64,
        worker: &str,
        state: TrialState,
        value: Option<f64>,
        reason: Option<&str>,
    ) -> Result<bool, SearchError>;
    /// Attaches `value` to the trial under `key`, replacing any previous value.
    fn set_user_attr(
        &self,
        trial: i64,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), SearchError>;
    /// Every trial of the study, by number.
    fn trials(&self, study: i64) -> Result<Vec<TrialRecord>, SearchError>;
}

/// Opens a storage from a URL: `sqlite:///abs/path.db` (or `sqlite://rel/path.db`, or a bare file
/// path), `postgresql://…` / `postgres://…`.
pub fn storage_from_url(url: &str) -> Result<Arc<dyn Storage>, SearchError> {
    if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        return Ok(Arc::new(PostgresStorage::connect(url)?));
    }
    let path = if let Some(p) = url.strip_prefix("sqlite://") {
        p
    } else if url.contains("://") {
        return Err(SearchError::Storage(format!(
            "unknown storage URL `{}`; expected sqlite:///path/to/study.db or postgresql://user@host/db",
            redact_url(url)
        )));
    } else {
        url
    };
    if path.is_empty() {
        return Err(SearchError::Storage(format!(
            "storage URL `{}` names no file; expected sqlite:///path/to/study.db",
            redact_url(url)
        )));
    }
    Ok(Arc::new(SqliteStorage::open(path)?))
}

/// `url` with its password replaced by `***`, for every message and log line that names a
/// storage: the `user:password@` of a URL (up to the last `@`, so an unescaped `/` or `@` in the
/// password cannot leak its tail) and any `password=` option (URL query or key=value form).
pub fn redact_url(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => {
                let (userinfo, host) = rest.split_at(at);
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***{host}"),
                    None => url.to_string(),
                }
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=") {
        let start = from + i + "password=".len();
        let end = out[start..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// An error and every cause under it, `outer: inner: …` (drivers keep the real reason, such as
/// "Connection refused", in `source()`, not in their own message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

pub(crate) fn params_from_json(text: &str) -> Result<Params, SearchError> {
    serde_json::from_str(text).map_err(SearchError::json("reading stored trial parameters"))
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String, SearchError> {
    serde_json::to_string(v).map_err(SearchError::json("serialising for the study store"))
}

/// Checks an existing study against what the caller asked for.
pub(crate) fn check_existing(
    info: &StudyInfo,
    direction: Direction,
    config: &str,
) -> Result<(), SearchError> {
    if info.direction != direction {
        return Err(SearchError::Storage(format!(
            "study `{}` exists with direction {}, not {}",
            info.name,
            info.direction.as_str(),
            direction.as_str()
        )));
    }
    if info.config != config {
        return Err(SearchError::Storage(format!(
            "study `{}` exists with another search configuration; use a new study name or the same space, sampler and pruner",
            info.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> WorkerInfo {
        WorkerInfo::current()
    }

    #[test]
    fn own_process_is_alive_and_a_reused_pid_is_not() {
        let w = me();
        assert!(pid_alive(w.pid, w.start_ticks));
        assert!(!pid_alive(w.pid, w.start_ticks + 1));
        assert!(!pid_alive(u32::MAX - 7, 0));
    }

    #[test]
    fn stale_rules() {
        let w = me();
        let pol = StalePolicy {
            heartbeat_timeout_s: 60.0,
            heartbeat_interval_s: 5.0,
            max_attempts: 2,
        };
        let alive = OwnerRow {
            host: Some(w.host.clone()),
            pid: Some(w.pid as i64),
            start_ticks: Some(w.start_ticks as i64),
            heartbeat: Some(1000.0),
            attempts: 1,
        };
        assert_eq!(stale_verdict(&alive, &w, 1010.0, &pol), StaleVerdict::Alive);
        // A silent heartbeat counts even for a live pid (it may be hung, or on another host).
        assert!(matches!(
            stale_verdict(&alive, &w, 1100.0, &pol),
            StaleVerdict::Requeue(_)
        ));
        let dead = OwnerRow {
            pid: Some(u32::MAX as i64 - 7),
            ..alive.clone()
        };
        assert!(matches!(
            stale_verdict(&dead, &w, 1010.0, &pol),
            StaleVerdict::Requeue(m) if m.contains("died")
        ));
        let tired = OwnerRow {
            attempts: 2,
            ..dead.clone()
        };
        assert!(matches!(
            stale_verdict(&tired, &w, 1010.0, &pol),
            StaleVerdict::Fail(m) if m.contains("2 attempts")
        ));
        // Another host's pid cannot be checked here: only the heartbeat decides.
        let remote = OwnerRow {
            host: Some("elsewhere".into()),
            ..dead
        };
        assert_eq!(
            stale_verdict(&remote, &w, 1010.0, &pol),
            StaleVerdict::Alive
        );
    }

    #[test]
    fn passwords_never_reach_a_message() {
        for (url, want) in [
            (
                "postgresql://ann:s3cret@db.example:5432/studies",
                "postgresql://ann:***@db.example:5432/studies",
            ),
            (
                "postgres://ann:p/a@ss@host/db",
                "postgres://ann:***@host/db",
            ),
            ("postgresql://ann@host/db", "postgresql://ann@host/db"),
            (
                "postgresql://host/db?user=ann&password=s3cret&sslmode=off",
                "postgresql://host/db?user=ann&password=***&sslmode=off",
            ),
            (
                "host=db user=ann PASSWORD=s3cret dbname=x",
                "host=db user=ann PASSWORD=*** dbname=x",
            ),
            ("sqlite:///tmp/s.db", "sqlite:///tmp/s.db"),
        ] {
            assert_eq!(redact_url(url), want);
        }
        let e = storage_from_url("mysql://ann:s3cret@host/db")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("ann:***@host"), "{e}");
    }

    #[test]
    fn a_refused_connection_names_the_cause_and_hides_the_password() {
        // A port on the loopback that nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgresql://ann:s3cret@127.0.0.1:{port}/studies?connect_timeout=5");
        let err = storage_from_url(&url).err().unwrap();
        assert!(
            matches!(err, SearchError::Postgres { .. })
                && std::error::Error::source(&err).is_some(),
            "the client's error is not kept as the source: {err:?}"
        );
        let e = error_chain(&err);
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("ann:***@127.0.0.1"), "{e}");
        assert!(
            e.to_lowercase().contains("refused"),
            "the cause is lost: {e}"
        );
    }

    #[test]
    fn a_database_failure_keeps_its_cause_as_the_source() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the database file should be.
        let err = SqliteStorage::open(dir.path()).err().unwrap();
        assert!(matches!(err, SearchError::Sqlite { .. }), "{err:?}");
        let cause = std::error::Error::source(&err).map(|c| c.to_string());
        assert!(cause.is_some_and(|c| !c.is_empty()), "{err:?}");
        assert!(error_chain(&err).contains(&dir.path().display().to_string()));
    }

    #[test]
    fn urls_pick_the_backend() {
        let e = storage_from_url("mysql://x").err().unwrap().to_string();
        assert!(e.contains("sqlite:///"), "{e}");
        assert!(storage_from_url("sqlite://").is_err());
    }
}
