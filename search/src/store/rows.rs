//! The study store's rows turned into [`TrialRecord`]s, written once for both databases: each
//! backend only reads its columns into the plain rows below (their SQL differs in placeholders
//! and types), so a change to what a trial holds is made here, not twice.

use super::{params_from_json, OwnerRow, TrialRecord, TrialState};
use crate::SearchError;
use std::collections::HashMap;

/// The `trials` columns [`TrialRow`] reads, in its field order.
pub(crate) const TRIAL_COLUMNS: &str = "id, number, state, params, value, reason, attempts, \
     owner, started_at, finished_at, owner_host, owner_pid, owner_start, heartbeat";

/// The study's trials, by number; `{p}` is the backend's placeholder for the study id.
pub(crate) fn trials_query(p: &str) -> String {
    format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = {p} ORDER BY number")
}

/// The study's intermediate values as (trial id, step, value).
pub(crate) fn intermediate_query(p: &str) -> String {
    format!(
        "SELECT v.trial_id, v.step, v.value FROM intermediate_values v \
         JOIN trials t ON t.id = v.trial_id WHERE t.study_id = {p}"
    )
}

/// The study's user attributes as (trial id, key, JSON text).
pub(crate) fn user_attrs_query(p: &str) -> String {
    format!(
        "SELECT a.trial_id, a.key, a.value FROM trial_user_attrs a \
         JOIN trials t ON t.id = a.trial_id WHERE t.study_id = {p}"
    )
}

/// One row of [`trials_query`], as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TrialRow {
    pub id: i64,
    pub number: i64,
    pub state: String,
    pub params: String,
    pub value: Option<f64>,
    pub reason: Option<String>,
    pub attempts: i64,
    pub owner: Option<String>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub owner_host: Option<String>,
    pub owner_pid: Option<i64>,
    pub owner_start: Option<i64>,
    pub heartbeat: Option<f64>,
}

/// The trials with their intermediate values and user attributes attached (rows of trials
/// not in `trials` are ignored: they belong to a trial deleted between the queries).
pub(crate) fn assemble(
    trials: Vec<TrialRow>,
    intermediate: impl IntoIterator<Item = (i64, i64, f64)>,
    user_attrs: impl IntoIterator<Item = (i64, String, String)>,
) -> Result<Vec<TrialRecord>, SearchError> {
    let mut out = Vec::with_capacity(trials.len());
    let mut index = HashMap::new();
    for row in trials {
        index.insert(row.id, out.len());
        let state = TrialState::parse(&row.state)?;
        // Negative counts cannot be written by this crate; a hand-edited row is read as 0.
        let attempts = row.attempts.clamp(0, u32::MAX as i64) as u32;
        out.push(TrialRecord {
            id: row.id,
            number: row.number.max(0) as u64,
            state,
            params: params_from_json(&row.params)?,
            value: row.value,
            reason: row.reason,
            attempts,
            owner: row.owner,
            started_at: row.started_at,
            finished_at: row.finished_at,
            lease: (state == TrialState::Running).then_some(OwnerRow {
                host: row.owner_host,
                pid: row.owner_pid,
                start_ticks: row.owner_start,
                heartbeat: row.heartbeat,
                attempts,
            }),
            ..TrialRecord::default()
        });
    }
    for (trial, step, value) in intermediate {
        if let Some(&i) = index.get(&trial) {
            out[i].intermediate.insert(step.max(0) as u64, value);
        }
    }
    for (trial, key, text) in user_attrs {
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(SearchError::json(format!("reading user attribute `{key}`")))?;
        if let Some(&i) = index.get(&trial) {
            out[i].user_attrs.insert(key, value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, number: i64, state: &str) -> TrialRow {
        TrialRow {
            id,
            number,
            state: state.into(),
            params: "{}".into(),
            attempts: 1,
            owner_host: Some("h".into()),
            owner_pid: Some(7),
            ..TrialRow::default()
        }
    }

    #[test]
    fn values_and_attributes_reach_their_trials_and_only_running_trials_have_a_lease() {
        let trials = assemble(
            vec![row(10, 0, "complete"), row(11, 1, "running")],
            [(11, 3, 0.5), (10, 1, 0.25), (99, 1, 1.0)],
            [(10, "params".to_string(), "123".to_string())],
        )
        .unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].intermediate.get(&1), Some(&0.25));
        assert_eq!(trials[1].intermediate.get(&3), Some(&0.5));
        assert_eq!(trials[0].user_attrs["params"], serde_json::json!(123));
        assert!(trials[0].lease.is_none());
        let lease = trials[1].lease.as_ref().unwrap();
        assert_eq!((lease.pid, lease.attempts), (Some(7), 1));
    }

    #[test]
    fn a_bad_state_or_attribute_names_what_was_wrong() {
        let err = assemble(vec![row(1, 0, "exploded")], [], []).unwrap_err();
        assert!(err.to_string().contains("exploded"), "{err}");
        let err = assemble(
            vec![row(1, 0, "complete")],
            [],
            [(1, "note".to_string(), "{not json".to_string())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("user attribute `note`"), "{err}");
    }
}
