//! The resume policy: what a resumed run takes from the configuration it is given, and what it
//! refuses, so `--resume` never silently trains something other than what was asked.
//!
//! - **The budget** (`epochs`, `max_steps`) is always taken from the request: raising it extends
//!   a finished run (as PyTorch Lightning's `max_epochs` and torchvision's `--epochs` do), lowering
//!   it ends the run sooner. A cosine schedule that spanned the old run is stretched to span the
//!   new one (its rate rises again for the added steps); other schedules are pure functions of the
//!   step and need nothing.
//! - **Operational settings** (`device`, `checkpoint_every`, `eval_batch_size`) change how the run
//!   is computed or saved, not what it computes, and are taken from the request.
//! - **Everything else** (model, data, batch size, optimiser, learning rate, clipping, loss, seed,
//!   …) must match the stored run; every field that differs is named in one error. With
//!   `allow_changes` (`--allow-changes`) the request's values are taken instead: the run continues
//!   from its step count and position, and is no longer a reproduction of an uninterrupted run.
//!   The model must still hold the checkpoint's parameters (same names and shapes).

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::lr::Decay;
use serde_json::Value;
use std::path::Path;

/// One setting whose requested value differs from the stored run's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    /// The field's path in `config.json`, e.g. `batch_size` or `lr.base`.
    pub field: String,
    /// The stored run's value, as the message shows it (JSON text, or a variant's name).
    pub stored: String,
    /// The value asked for now, shown the same way.
    pub requested: String,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (run: {}, requested: {})",
            self.field, self.stored, self.requested
        )
    }
}

/// The configuration a resumed run continues with, given the stored one and the request (see the
/// module documentation). `batches_per_epoch` resolves the data-dependent parts of the schedule.
pub fn reconcile(
    out: &Path,
    stored: &TrainConfig,
    requested: &TrainConfig,
    batches_per_epoch: u64,
    allow_changes: bool,
) -> Result<TrainConfig> {
    // The request as it would have been finalised for the stored budget: a request that repeats
    // the original flags, or the stored config itself, compares equal.
    let mut probe = with_stored_budget(requested, stored);
    probe.finalise(batches_per_epoch);
    let changes = differences(stored, &probe)?;
    let mut next = if changes.is_empty() {
        stored.clone()
    } else if allow_changes {
        probe
    } else {
        return Err(Error::ResumeConflict {
            out: out.to_path_buf(),
            changes,
        });
    };
    next.device = requested.device;
    next.checkpoint_every = requested.checkpoint_every;
    next.eval_batch_size = requested.eval_batch_size;
    let old_run = next.run_length(batches_per_epoch);
    next.epochs = requested.epochs;
    next.max_steps = requested.max_steps;
    let new_run = next.run_length(batches_per_epoch);
    if let Decay::Cosine { total_steps, .. } = &mut next.lr.decay {
        if *total_steps == old_run {
            *total_steps = new_run;
        }
    }
    next.validate()?;
    Ok(next)
}

/// The part of [`reconcile`]'s check that needs no data, so a contradicting request fails before
/// any data is loaded: everything but the budget, the operational settings and the lengths of the
/// learning-rate schedule (its warm-up and cosine span depend on the data's size).
pub fn precheck(out: &Path, stored: &TrainConfig, requested: &TrainConfig) -> Result<()> {
    let mut probe = with_stored_budget(requested, stored);
    probe.lr.warmup_steps = stored.lr.warmup_steps;
    if let (
        Decay::Cosine { total_steps, .. },
        Decay::Cosine {
            total_steps: stored_total,
            ..
        },
    ) = (&mut probe.lr.decay, &stored.lr.decay)
    {
        *total_steps = *stored_total;
    }
    let changes = differences(stored, &probe)?;
    if changes.is_empty() {
        Ok(())
    } else {
        Err(Error::ResumeConflict {
            out: out.to_path_buf(),
            changes,
        })
    }
}

/// `requested` with the settings a resume may always change (budget, operational) set to the
/// stored run's, so that what remains compares like with like.
fn with_stored_budget(requested: &TrainConfig, stored: &TrainConfig) -> TrainConfig {
    TrainConfig {
        epochs: stored.epochs,
        max_steps: stored.max_steps,
        device: stored.device,
        checkpoint_every: stored.checkpoint_every,
        eval_batch_size: stored.eval_batch_size,
        ..requested.clone()
    }
}

/// Every field of `b` that differs from `a`, one level into nested settings (`lr.base`); the
/// model is one item, named by its preset name when the names differ.
pub fn differences(a: &TrainConfig, b: &TrainConfig) -> Result<Vec<ConfigChange>> {
    let to_value = |c: &TrainConfig| {
        serde_json::to_value(c).map_err(|e| Error::Config(format!("cannot serialise: {e}")))
    };
    let (va, vb) = (to_value(a)?, to_value(b)?);
    let (Value::Object(ma), Value::Object(mb)) = (&va, &vb) else {
        return Err(Error::Config("a configuration is not a JSON object".into()));
    };
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for key in keys {
        let (x, y) = (ma.get(key), mb.get(key));
        if x == y {
            continue;
        }
        if key == "model" {
            let (na, nb) = (&a.model.name, &b.model.name);
            out.push(ConfigChange {
                field: "model".into(),
                stored: na.clone(),
                requested: if na == nb {
                    format!("{nb} with another spec")
                } else {
                    nb.clone()
                },
            });
            continue;
        }
        match (x, y) {
            (Some(Value::Object(ox)), Some(Value::Object(oy))) if x_tag(ox) == x_tag(oy) => {
                let sub: std::collections::BTreeSet<&String> = ox.keys().chain(oy.keys()).collect();
                for k in sub {
                    if ox.get(k) != oy.get(k) {
                        out.push(ConfigChange {
                            field: format!("{key}.{k}"),
                            stored: show(ox.get(k)),
                            requested: show(oy.get(k)),
                        });
                    }
                }
            }
            _ => out.push(ConfigChange {
                field: key.clone(),
                stored: show(x),
                requested: show(y),
            }),
        }
    }
    Ok(out)
}

/// The variant tag of a serde-tagged enum (objects of different variants are shown whole).
fn x_tag(o: &serde_json::Map<String, Value>) -> Option<&Value> {
    o.get("type")
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "unset".into(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataSpec;
    use crate::lr::LrSchedule;

    fn stored() -> TrainConfig {
        let mut c = TrainConfig::for_model(
            topology::zoo::get("compact_timedecay").expect("preset"),
            DataSpec::FashionMnist { dir: None },
        );
        c.finalise(100);
        c
    }

    #[test]
    fn the_same_request_resumes_the_stored_run() {
        let s = stored();
        let raw = TrainConfig::for_model(s.model.clone(), s.data.clone());
        let next = reconcile(Path::new("o"), &s, &raw, 100, false).expect("same request");
        assert_eq!(next, s);
        assert_eq!(
            reconcile(Path::new("o"), &s, &s, 100, false).expect("stored"),
            s
        );
    }

    #[test]
    fn contradicting_settings_are_named_each() {
        let s = stored();
        let mut r = s.clone();
        r.batch_size = 32;
        r.lr.base = 0.01;
        r.model = topology::zoo::get("compact_feedforward").expect("preset");
        let err = reconcile(Path::new("runs/x"), &s, &r, 100, false).unwrap_err();
        let Error::ResumeConflict { changes, .. } = &err else {
            panic!("{err}");
        };
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["batch_size", "lr.base", "model"]);
        let msg = err.to_string();
        assert!(
            msg.contains("batch_size (run: 64, requested: 32)")
                && msg.contains("model (run: compact_timedecay, requested: compact_feedforward)"),
            "{msg}"
        );
        // Deliberately allowed: the request wins.
        let next = reconcile(Path::new("o"), &s, &r, 100, true).expect("allowed");
        assert_eq!((next.batch_size, next.lr.base), (32, 0.01));
    }

    #[test]
    fn the_budget_may_grow_and_a_whole_run_cosine_grows_with_it() {
        let s = stored();
        assert_eq!(
            s.lr.decay,
            Decay::Cosine {
                total_steps: 100,
                min_lr: 0.0
            }
        );
        let mut r = s.clone();
        r.epochs = 3;
        r.checkpoint_every = 7;
        let next = reconcile(Path::new("o"), &s, &r, 100, false).expect("extension");
        assert_eq!((next.epochs, next.checkpoint_every), (3, 7));
        assert_eq!(
            next.lr.decay,
            Decay::Cosine {
                total_steps: 300,
                min_lr: 0.0
            }
        );
        assert_eq!(next.lr.warmup_steps, s.lr.warmup_steps);
        // A cosine of its own length is left as it was.
        let mut fixed = s.clone();
        fixed.lr = LrSchedule::cosine(2e-3, 0, 50);
        let mut r = fixed.clone();
        r.max_steps = Some(1000);
        r.epochs = 20;
        let next = reconcile(Path::new("o"), &fixed, &r, 100, false).expect("extension");
        assert_eq!(next.lr, fixed.lr);
        assert_eq!(next.max_steps, Some(1000));
    }
}
