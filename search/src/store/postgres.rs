//! PostgreSQL storage, for workers on many machines. Claims lock the study's row
//! (`SELECT … FOR UPDATE`), which serialises them per study while other studies proceed; the
//! schema is created under a transaction-scoped advisory lock so that workers starting together
//! do not race on `CREATE TABLE`.

use super::rows::{self, TrialRow};
use super::{
    check_existing, now_s, params_from_json, stale_verdict, to_json, ClaimedTrial, Direction,
    OwnerRow, SampleFn, StalePolicy, StaleVerdict, Storage, StudyInfo, TrialRecord, TrialState,
    WorkerInfo,
};
use crate::SearchError;
use postgres::{Client, GenericClient, NoTls};
use std::sync::{Mutex, MutexGuard};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS studies (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    direction TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id BIGSERIAL PRIMARY KEY,
    study_id BIGINT NOT NULL REFERENCES studies(id),
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    value DOUBLE PRECISION,
    reason TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    owner_host TEXT,
    owner_pid BIGINT,
    owner_start BIGINT,
    heartbeat DOUBLE PRECISION,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    UNIQUE (study_id, number)
);
CREATE INDEX IF NOT EXISTS trials_by_state ON trials (study_id, state);
CREATE TABLE IF NOT EXISTS intermediate_values (
    trial_id BIGINT NOT NULL REFERENCES trials(id),
    step BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (trial_id, step)
);
CREATE TABLE IF NOT EXISTS trial_user_attrs (
    trial_id BIGINT NOT NULL REFERENCES trials(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (trial_id, key)
);
";

/// Any fixed number: it names the advisory lock that guards schema creation.
const SCHEMA_LOCK: i64 = 0x0063_6f6e_7672_6e6e;

/// A study database on a PostgreSQL server.
pub struct PostgresStorage {
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStorage")
    }
}

fn pg(source: postgres::Error) -> SearchError {
    SearchError::Postgres {
        what: "a query failed".into(),
        source,
    }
}

impl PostgresStorage {
    /// Connects to `url` (`postgresql://user[:password]@host[:port]/db`, or the key=value form)
    /// and creates the schema if it is missing.
    pub fn connect(url: &str) -> Result<PostgresStorage, SearchError> {
        let mut client = Client::connect(url, NoTls).map_err(|source| SearchError::Postgres {
            what: format!("connecting to `{}`", super::redact_url(url)),
            source,
        })?;
        let mut tx = client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg)?;
        tx.batch_execute(SCHEMA).map_err(pg)?;
        tx.commit().map_err(pg)?;
        Ok(PostgresStorage {
            client: Mutex::new(client),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Client>, SearchError> {
        self.client
            .lock()
            .map_err(|_| SearchError::Storage("PostgreSQL: connection poisoned".into()))
    }
}

fn study_row<C: GenericClient>(c: &mut C, name: &str) -> Result<Option<StudyInfo>, SearchError> {
    let row = c
        .query_opt(
            "SELECT id, direction, config FROM studies WHERE name = $1",
            &[&name],
        )
        .map_err(pg)?;
    row.map(|r| {
        Ok(StudyInfo {
            id: r.get(0),
            name: name.into(),
            direction: Direction::parse(r.get::<_, &str>(1))?,
            config: r.get(2),
        })
    })
    .transpose()
}

fn load_trials<C: GenericClient>(c: &mut C, study: i64) -> Result<Vec<TrialRecord>, SearchError> {
    let trials = c
        .query(&rows::trials_query("$1"), &[&study])
        .map_err(pg)?
        .iter()
        .map(|r| TrialRow {
            id: r.get(0),
            number: r.get(1),
            state: r.get(2),
            params: r.get(3),
            value: r.get(4),
            reason: r.get(5),
            attempts: r.get(6),
            owner: r.get(7),
            started_at: r.get(8),
            finished_at: r.get(9),
            owner_host: r.get(10),
            owner_pid: r.get(11),
            owner_start: r.get(12),
            heartbeat: r.get(13),
        })
        .collect();
    let intermediate: Vec<(i64, i64, f64)> = c
        .query(&rows::intermediate_query("$1"), &[&study])
        .map_err(pg)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let user_attrs: Vec<(i64, String, String)> = c
        .query(&rows::user_attrs_query("$1"), &[&study])
        .map_err(pg)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    rows::assemble(trials, intermediate, user_attrs)
}

impl Storage for PostgresStorage {
    fn open_study(
        &self,
        name: &str,
        direction: Direction,
        config: &str,
    ) -> Result<StudyInfo, SearchError> {
        let mut client = self.lock()?;
        let mut tx = client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg)?;
        let found = match study_row(&mut tx, name)? {
            Some(i) => {
                check_existing(&i, direction, config)?;
                i
            }
            None => {
                let row = tx
                    .query_one(
                        "INSERT INTO studies (name, direction, config, created_at)
                         VALUES ($1, $2, $3, $4) RETURNING id",
                        &[&name, &direction.as_str(), &config, &now_s()],
                    )
                    .map_err(pg)?;
                StudyInfo {
                    id: row.get(0),
                    name: name.into(),
                    direction,
                    config: config.into(),
                }
            }
        };
        tx.commit().map_err(pg)?;
        Ok(found)
    }

    fn find_study(&self, name: &str) -> Result<Option<StudyInfo>, SearchError> {
        let mut client = self.lock()?;
        study_row(&mut *client, name)
    }

    fn claim(
        &self,
        study: i64,
        n_total: usize,
        worker: &WorkerInfo,
        policy: &StalePolicy,
        sample: &mut SampleFn<'_>,
    ) -> Result<Option<ClaimedTrial>, SearchError> {
        let mut client = self.lock()?;
        let mut tx = client.transaction().map_err(pg)?;
        tx.query("SELECT id FROM studies WHERE id = $1 FOR UPDATE", &[&study])
            .map_err(pg)?;
        let now = now_s();
        let running = tx
            .query(
                "SELECT id, owner_host, owner_pid, owner_start, heartbeat, attempts FROM trials
                 WHERE study_id = $1 AND state = 'running'",
                &[&study],
            )
            .map_err(pg)?;
        for r in running {
            let id: i64 = r.get(0);
            let row = OwnerRow {
                host: r.get(1),
                pid: r.get(2),
                start_ticks: r.get(3),
                heartbeat: r.get(4),
                attempts: r.get::<_, i64>(5).clamp(0, u32::MAX as i64) as u32,
            };
            match stale_verdict(&row, worker, now, policy) {
                StaleVerdict::Alive => {}
                StaleVerdict::Requeue(why) => {
                    tx.execute(
                        "UPDATE trials SET state = 'waiting', owner = NULL, owner_host = NULL,
                         owner_pid = NULL, owner_start = NULL, heartbeat = NULL, reason = $2
                         WHERE id = $1",
                        &[&id, &format!("re-queued: {why}")],
                    )
                    .map_err(pg)?;
                    tx.execute(
                        "DELETE FROM intermediate_values WHERE trial_id = $1",
                        &[&id],
                    )
                    .map_err(pg)?;
                }
                StaleVerdict::Fail(why) => {
                    tx.execute(
                        "UPDATE trials SET state = 'failed', reason = $2, finished_at = $3
                         WHERE id = $1",
                        &[&id, &why, &now],
                    )
                    .map_err(pg)?;
                }
            }
        }
        let waiting = tx
            .query_opt(
                "SELECT id, number, params, attempts FROM trials
                 WHERE study_id = $1 AND state = 'waiting' ORDER BY number LIMIT 1",
                &[&study],
            )
            .map_err(pg)?;
        let pid = worker.pid as i64;
        let start = worker.start_ticks as i64;
        let claimed = if let Some(r) = waiting {
            let id: i64 = r.get(0);
            let attempts: i64 = r.get(3);
            tx.execute(
                "UPDATE trials SET state = 'running', owner = $1, owner_host = $2, owner_pid = $3,
                 owner_start = $4, heartbeat = $5, started_at = $5, attempts = attempts + 1
                 WHERE id = $6",
                &[&worker.id, &worker.host, &pid, &start, &now, &id],
            )
            .map_err(pg)?;
            Some(ClaimedTrial {
                id,
                number: r.get::<_, i64>(1).max(0) as u64,
                params: params_from_json(r.get::<_, &str>(2))?,
                attempt: (attempts + 1).clamp(0, u32::MAX as i64) as u32,
            })
        } else {
            let count: i64 = tx
                .query_one("SELECT COUNT(*) FROM trials WHERE study_id = $1", &[&study])
                .map_err(pg)?
                .get(0);
            if count as usize >= n_total {
                None
            } else {
                let history = load_trials(&mut tx, study)?;
                let number = count as u64;
                let p = sample(&history, number)?;
                let row = tx
                    .query_one(
                        "INSERT INTO trials (study_id, number, state, params, attempts, owner,
                         owner_host, owner_pid, owner_start, heartbeat, started_at)
                         VALUES ($1, $2, 'running', $3, 1, $4, $5, $6, $7, $8, $8) RETURNING id",
                        &[
                            &study,
                            &count,
                            &to_json(&p)?,
                            &worker.id,
                            &worker.host,
                            &pid,
                            &start,
                            &now,
                        ],
                    )
                    .map_err(pg)?;
                Some(ClaimedTrial {
                    id: row.get(0),
                    number,
                    params: p,
                    attempt: 1,
                })
            }
        };
        tx.commit().map_err(pg)?;
        Ok(claimed)
    }

    fn report(&self, trial: i64, worker: &str, step: u64, value: f64) -> Result<bool, SearchError> {
        let mut client = self.lock()?;
        let mut tx = client.transaction().map_err(pg)?;
        let n = tx
            .execute(
                "UPDATE trials SET heartbeat = $3 WHERE id = $1 AND owner = $2 AND state = 'running'",
                &[&trial, &worker, &now_s()],
            )
            .map_err(pg)?;
        if n == 1 {
            tx.execute(
                "INSERT INTO intermediate_values (trial_id, step, value) VALUES ($1, $2, $3)
                 ON CONFLICT (trial_id, step) DO UPDATE SET value = EXCLUDED.value",
                &[&trial, &(step as i64), &value],
            )
            .map_err(pg)?;
        }
        tx.commit().map_err(pg)?;
        Ok(n == 1)
    }

    fn heartbeat(&self, trial: i64, worker: &str) -> Result<bool, SearchError> {
        let mut client = self.lock()?;
        let n = client
            .execute(
                "UPDATE trials SET heartbeat = $3 WHERE id = $1 AND owner = $2 AND state = 'running'",
                &[&trial, &worker, &now_s()],
            )
            .map_err(pg)?;
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
        let mut client = self.lock()?;
        let now = now_s();
        let n = client
            .execute(
                "UPDATE trials SET state = $3, value = $4, reason = $5, finished_at = $6, heartbeat = $6
                 WHERE id = $1 AND owner = $2 AND state = 'running'",
                &[&trial, &worker, &state.as_str(), &value, &reason, &now],
            )
            .map_err(pg)?;
        Ok(n == 1)
    }

    fn set_user_attr(
        &self,
        trial: i64,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), SearchError> {
        let mut client = self.lock()?;
        client
            .execute(
                "INSERT INTO trial_user_attrs (trial_id, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (trial_id, key) DO UPDATE SET value = EXCLUDED.value",
                &[&trial, &key, &to_json(value)?],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn trials(&self, study: i64) -> Result<Vec<TrialRecord>, SearchError> {
        let mut client = self.lock()?;
        load_trials(&mut *client, study)
    }
}
