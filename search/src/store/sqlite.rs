//! SQLite storage: one file that several worker processes on one machine share. WAL journaling
//! lets readers run beside the writer; claims take the write lock up front (`BEGIN IMMEDIATE`) so
//! two claims never interleave, and a busy timeout makes workers wait for each other instead of
//! failing. A killed process loses nothing committed.

use super::rows::{self, TrialRow};
use super::{
    check_existing, now_s, params_from_json, stale_verdict, to_json, ClaimedTrial, Direction,
    OwnerRow, SampleFn, StalePolicy, StaleVerdict, Storage, StudyInfo, TrialRecord, TrialState,
    WorkerInfo,
};
use crate::SearchError;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    direction TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    value REAL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    owner_host TEXT,
    owner_pid INTEGER,
    owner_start INTEGER,
    heartbeat REAL,
    started_at REAL,
    finished_at REAL,
    UNIQUE (study_id, number)
);
CREATE INDEX IF NOT EXISTS trials_by_state ON trials (study_id, state);
CREATE TABLE IF NOT EXISTS intermediate_values (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (trial_id, step)
);
CREATE TABLE IF NOT EXISTS trial_user_attrs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (trial_id, key)
);
";

/// A study database in one SQLite file.
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    path: String,
}

/// How long a worker waits for another to release the database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

fn is_busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

fn db(path: &str) -> impl Fn(rusqlite::Error) -> SearchError + '_ {
    move |source| SearchError::Sqlite {
        path: path.to_string(),
        source,
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, SearchError> {
        let p = path.as_ref();
        let name = p.display().to_string();
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(SearchError::io("creating the folder", dir))?;
        }
        let conn = Connection::open(p).map_err(db(&name))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db(&name))?;
        // The pragma answers with a row; WAL persists in the file once set. Two workers switching
        // a fresh file at once each hold a shared lock and want an exclusive one: SQLite breaks
        // that deadlock by failing one of them with SQLITE_BUSY without calling the busy
        // handler, so the wait is ours to do.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())) {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                r => break r.map_err(db(&name))?,
            }
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(db(&name))?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE;{SCHEMA}COMMIT;"))
            .map_err(db(&name))?;
        Ok(SqliteStorage {
            conn: Mutex::new(conn),
            path: name,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, SearchError> {
        self.conn.lock().map_err(|_| {
            SearchError::Storage(format!("SQLite `{}`: connection poisoned", self.path))
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> SearchError + '_ {
        db(&self.path)
    }
}

fn study_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<(i64, String, String)>> {
    conn.query_row(
        "SELECT id, direction, config FROM studies WHERE name = ?1",
        params![name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
}

fn info(name: &str, row: (i64, String, String)) -> Result<StudyInfo, SearchError> {
    Ok(StudyInfo {
        id: row.0,
        name: name.to_string(),
        direction: Direction::parse(&row.1)?,
        config: row.2,
    })
}

fn load_trials(
    conn: &Connection,
    study: i64,
    err: &dyn Fn(rusqlite::Error) -> SearchError,
) -> Result<Vec<TrialRecord>, SearchError> {
    let mut stmt = conn.prepare(&rows::trials_query("?1")).map_err(err)?;
    let trials = stmt
        .query_map(params![study], |r| {
            Ok(TrialRow {
                id: r.get(0)?,
                number: r.get(1)?,
                state: r.get(2)?,
                params: r.get(3)?,
                value: r.get(4)?,
                reason: r.get(5)?,
                attempts: r.get(6)?,
                owner: r.get(7)?,
                started_at: r.get(8)?,
                finished_at: r.get(9)?,
                owner_host: r.get(10)?,
                owner_pid: r.get(11)?,
                owner_start: r.get(12)?,
                heartbeat: r.get(13)?,
            })
        })
        .map_err(err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(err)?;
    let mut stmt = conn.prepare(&rows::intermediate_query("?1")).map_err(err)?;
    let intermediate = stmt
        .query_map(params![study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(err)?;
    let mut stmt = conn.prepare(&rows::user_attrs_query("?1")).map_err(err)?;
    let user_attrs = stmt
        .query_map(params![study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(err)?;
    rows::assemble(trials, intermediate, user_attrs)
}

impl Storage for SqliteStorage {
    fn open_study(
        &self,
        name: &str,
        direction: Direction,
        config: &str,
    ) -> Result<StudyInfo, SearchError> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let found = match study_row(&tx, name).map_err(self.err())? {
            Some(row) => {
                let i = info(name, row)?;
                check_existing(&i, direction, config)?;
                i
            }
            None => {
                tx.execute(
                    "INSERT INTO studies (name, direction, config, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![name, direction.as_str(), config, now_s()],
                )
                .map_err(self.err())?;
                StudyInfo {
                    id: tx.last_insert_rowid(),
                    name: name.into(),
                    direction,
                    config: config.into(),
                }
            }
        };
        tx.commit().map_err(self.err())?;
        Ok(found)
    }

    fn find_study(&self, name: &str) -> Result<Option<StudyInfo>, SearchError> {
        let conn = self.lock()?;
        study_row(&conn, name)
            .map_err(self.err())?
            .map(|r| info(name, r))
            .transpose()
    }

    fn claim(
        &self,
        study: i64,
        n_total: usize,
        worker: &WorkerInfo,
        policy: &StalePolicy,
        sample: &mut SampleFn<'_>,
    ) -> Result<Option<ClaimedTrial>, SearchError> {
        let err = self.err();
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let now = now_s();
        let running: Vec<(i64, OwnerRow)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, owner_host, owner_pid, owner_start, heartbeat, attempts FROM trials
                     WHERE study_id = ?1 AND state = 'running'",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map(params![study], |r| {
                    Ok((
                        r.get(0)?,
                        OwnerRow {
                            host: r.get(1)?,
                            pid: r.get(2)?,
                            start_ticks: r.get(3)?,
                            heartbeat: r.get(4)?,
                            attempts: r.get::<_, i64>(5)?.clamp(0, u32::MAX as i64) as u32,
                        },
                    ))
                })
                .map_err(&err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(&err)?
        };
        for (id, row) in running {
            match stale_verdict(&row, worker, now, policy) {
                StaleVerdict::Alive => {}
                StaleVerdict::Requeue(why) => {
                    tx.execute(
                        "UPDATE trials SET state = 'waiting', owner = NULL, owner_host = NULL,
                         owner_pid = NULL, owner_start = NULL, heartbeat = NULL, reason = ?2
                         WHERE id = ?1",
                        params![id, format!("re-queued: {why}")],
                    )
                    .map_err(&err)?;
                    tx.execute(
                        "DELETE FROM intermediate_values WHERE trial_id = ?1",
                        params![id],
                    )
                    .map_err(&err)?;
                }
                StaleVerdict::Fail(why) => {
                    tx.execute(
                        "UPDATE trials SET state = 'failed', reason = ?2, finished_at = ?3
                         WHERE id = ?1",
                        params![id, why, now],
                    )
                    .map_err(&err)?;
                }
            }
        }
        let waiting: Option<(i64, i64, String, i64)> = tx
            .query_row(
                "SELECT id, number, params, attempts FROM trials
                 WHERE study_id = ?1 AND state = 'waiting' ORDER BY number LIMIT 1",
                params![study],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&err)?;
        let claimed = if let Some((id, number, params_json, attempts)) = waiting {
            tx.execute(
                "UPDATE trials SET state = 'running', owner = ?1, owner_host = ?2, owner_pid = ?3,
                 owner_start = ?4, heartbeat = ?5, started_at = ?5, attempts = attempts + 1
                 WHERE id = ?6",
                params![
                    worker.id,
                    worker.host,
                    worker.pid as i64,
                    worker.start_ticks as i64,
                    now,
                    id
                ],
            )
            .map_err(&err)?;
            Some(ClaimedTrial {
                id,
                number: number.max(0) as u64,
                params: params_from_json(&params_json)?,
                attempt: (attempts + 1).clamp(0, u32::MAX as i64) as u32,
            })
        } else {
            let count: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM trials WHERE study_id = ?1",
                    params![study],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            if count as usize >= n_total {
                None
            } else {
                let history = load_trials(&tx, study, &err)?;
                let number = count as u64;
                let p = sample(&history, number)?;
                tx.execute(
                    "INSERT INTO trials (study_id, number, state, params, attempts, owner,
                     owner_host, owner_pid, owner_start, heartbeat, started_at)
                     VALUES (?1, ?2, 'running', ?3, 1, ?4, ?5, ?6, ?7, ?8, ?8)",
                    params![
                        study,
                        count,
                        to_json(&p)?,
                        worker.id,
                        worker.host,
                        worker.pid as i64,
                        worker.start_ticks as i64,
                        now
                    ],
                )
                .map_err(&err)?;
                Some(ClaimedTrial {
                    id: tx.last_insert_rowid(),
                    number,
                    params: p,
                    attempt: 1,
                })
            }
        };
        tx.commit().map_err(&err)?;
        Ok(claimed)
    }

    fn report(&self, trial: i64, worker: &str, step: u64, value: f64) -> Result<bool, SearchError> {
        let err = self.err();
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let n = tx
            .execute(
                "UPDATE trials SET heartbeat = ?3 WHERE id = ?1 AND owner = ?2 AND state = 'running'",
                params![trial, worker, now_s()],
            )
            .map_err(&err)?;
        if n == 1 {
            tx.execute(
                "INSERT OR REPLACE INTO intermediate_values (trial_id, step, value) VALUES (?1, ?2, ?3)",
                params![trial, step as i64, value],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(n == 1)
    }

    fn heartbeat(&self, trial: i64, worker: &str) -> Result<bool, SearchError> {
        let conn = self.lock()?;
        let n = conn
            .execute(
                "UPDATE trials SET heartbeat = ?3 WHERE id = ?1 AND owner = ?2 AND state = 'running'",
                params![trial, worker, now_s()],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn finish(
        &self,
        trial: i64,
        worker: &str,
        state: TrialState,
        value: Option<f64>,
        reason: Option<&str>,
    ) -> Result<bool, SearchError> {
        let conn = self.lock()?;
        let now = now_s();
        let n = conn
            .execute(
                "UPDATE trials SET state = ?3, value = ?4, reason = ?5, finished_at = ?6, heartbeat = ?6
                 WHERE id = ?1 AND owner = ?2 AND state = 'running'",
                params![trial, worker, state.as_str(), value, reason, now],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn set_user_attr(
        &self,
        trial: i64,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), SearchError> {
        let conn = self.lock()?;
        conn.execute(
            "INSERT OR REPLACE INTO trial_user_attrs (trial_id, key, value) VALUES (?1, ?2, ?3)",
            params![trial, key, to_json(value)?],
        )
        .map_err(self.err())?;
        Ok(())
    }

    fn trials(&self, study: i64) -> Result<Vec<TrialRecord>, SearchError> {
        let conn = self.lock()?;
        load_trials(&conn, study, &self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Workers started together all open a database file that none has created yet. Switching a
    /// fresh file to WAL needs an exclusive lock while the pragma already holds a shared one, so
    /// two openers can deadlock; SQLite then answers `SQLITE_BUSY` at once, without the busy
    /// handler, and a worker died with "database is locked" (CI on bad96f2).
    #[test]
    fn workers_opening_a_new_file_together_all_succeed() {
        for round in 0..25 {
            let dir = tempfile::tempdir().unwrap();
            let path = Arc::new(dir.path().join("study.db"));
            let n = 6;
            let barrier = Arc::new(Barrier::new(n));
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteStorage::open(path.as_path()).map(|_| ())
                    })
                })
                .collect();
            for h in handles {
                if let Err(e) = h.join().unwrap() {
                    panic!("round {round}: {e}");
                }
            }
        }
    }
}
