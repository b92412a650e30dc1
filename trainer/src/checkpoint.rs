//! Checkpoints: one safetensors file holding the model's parameters (`model/<name>`), the
//! optimiser's state (`optim/<name>/<slot>`) and, in the header, the run's configuration (with the
//! model spec) and progress. Files are written atomically, so a crash mid-write leaves the previous
//! checkpoint intact.
//!
//! The data order and augmentation are pure functions of `(seed, epoch, index)` (see
//! `datasets::batcher`), so `(epoch, position)` is the whole random state of a run: resuming at the
//! same position replays exactly the batches the uninterrupted run would have seen.

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tensor::{Device, ParamStore, Tensor};
use topology::Model;

/// Header key of the checkpoint record.
const META_KEY: &str = "convrnn_checkpoint";
/// Header key of the model spec alone, for tools that only want to rebuild the model.
const SPEC_KEY: &str = "spec";
const FORMAT: u32 = 1;

pub const LATEST: &str = "checkpoint-latest.safetensors";
pub const BEST: &str = "checkpoint-best.safetensors";

/// Running sums of the current epoch's training metrics (so a resumed epoch reports the same
/// numbers as an uninterrupted one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochAccum {
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub seconds: f64,
}

/// Where a run stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The epoch in progress (0-based); equals `epochs` when the run has finished.
    pub epoch: u64,
    /// Batches of `epoch` already trained on.
    pub position: usize,
    /// Optimiser steps taken in the whole run.
    pub global_step: u64,
    pub best_val_top1: Option<f64>,
    pub accum: EpochAccum,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    config: TrainConfig,
    progress: Progress,
}

/// A checkpoint read back: configuration, progress, and the tensors to load.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: TrainConfig,
    pub progress: Progress,
    params: Vec<(String, Tensor)>,
    optim: Vec<(String, Tensor)>,
}

/// Writes a checkpoint of `model` and `optimizer` to `path` (atomically).
pub fn save(
    path: &Path,
    config: &TrainConfig,
    progress: &Progress,
    model: &Model,
    optimizer: &Optimizer,
) -> Result<()> {
    let meta = Meta {
        format: FORMAT,
        config: config.clone(),
        progress: progress.clone(),
    };
    let mut header = BTreeMap::new();
    header.insert(META_KEY.to_string(), json(&meta)?);
    header.insert(SPEC_KEY.to_string(), json(&config.model)?);
    let mut tensors: Vec<(String, Tensor)> = model
        .params
        .iter()
        .map(|(n, t)| (format!("model/{n}"), t.clone()))
        .collect();
    tensors.extend(
        optimizer
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (format!("optim/{n}"), t)),
    );
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tensor::save_tensors_with_metadata(path, &refs, &header)?;
    Ok(())
}

fn json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Config(format!("cannot serialise: {e}")))
}

/// The checkpoint file a user meant: a file itself, or a run directory (its best checkpoint, else
/// its latest).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        for name in [BEST, LATEST] {
            let p = path.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        return Err(Error::checkpoint(
            path,
            format!("is a directory without {BEST} or {LATEST}; is it a training run's --out?"),
        ));
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Error::checkpoint(path, "does not exist"))
}

impl Checkpoint {
    /// Reads and validates a checkpoint file (the whole file is checked; a truncated or corrupt
    /// file is an error, never a panic).
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let bad = |msg: String| Error::checkpoint(path, msg);
        let header = tensor::read_metadata(path).map_err(|e| bad(e.to_string()))?;
        let raw = header.get(META_KEY).ok_or_else(|| {
            bad(format!(
                "is a safetensors file but not a convrnn training checkpoint (no `{META_KEY}` \
                 record in its header)"
            ))
        })?;
        let meta: Meta = serde_json::from_str(raw)
            .map_err(|e| bad(format!("its `{META_KEY}` record is unreadable: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "was written in checkpoint format {}, this build reads format {FORMAT}",
                meta.format
            )));
        }
        let mut params = Vec::new();
        let mut optim = Vec::new();
        for (name, t) in tensor::load_tensors(path).map_err(|e| bad(e.to_string()))? {
            if let Some(n) = name.strip_prefix("model/") {
                params.push((n.to_string(), t));
            } else if let Some(n) = name.strip_prefix("optim/") {
                optim.push((n.to_string(), t));
            } else {
                return Err(bad(format!(
                    "holds a tensor `{name}` that is neither model/ nor optim/"
                )));
            }
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            config: meta.config,
            progress: meta.progress,
            params,
            optim,
        })
    }

    /// Builds the model the checkpoint was made from, with its weights, on `device`.
    pub fn model(&self, device: Device) -> Result<Model> {
        let model = Model::new(&self.config.model, device, self.config.seed)?;
        self.load_params_into(&model.params)?;
        Ok(model)
    }

    /// Overwrites `params` with the checkpoint's weights; names and shapes must match exactly and
    /// nothing is assigned unless everything matches.
    pub fn load_params_into(&self, params: &ParamStore) -> Result<()> {
        let bad = |msg: String| Error::checkpoint(&self.path, msg);
        let in_file: BTreeMap<&str, &Tensor> =
            self.params.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let missing: Vec<&str> = params
            .names()
            .filter(|n| !in_file.contains_key(n))
            .collect();
        let extra: Vec<&str> = in_file
            .keys()
            .copied()
            .filter(|n| params.get(n).is_none())
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(bad(format!(
                "does not match the model: missing {missing:?}, unexpected {extra:?}"
            )));
        }
        for (name, p) in params.iter() {
            let t = in_file[name];
            if t.dims() != p.dims() {
                return Err(bad(format!(
                    "parameter `{name}` has shape {} in the file but {} in the model",
                    t.shape(),
                    p.shape()
                )));
            }
        }
        for (name, p) in params.iter() {
            p.assign(in_file[name])?;
        }
        Ok(())
    }

    /// Restores the optimiser's state (the step count comes from the progress record).
    pub fn load_optimizer_into(
        &self,
        params: &ParamStore,
        optimizer: &mut Optimizer,
    ) -> Result<()> {
        optimizer
            .load_state(params, self.optim.clone(), self.progress.global_step)
            .map_err(|e| Error::checkpoint(&self.path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataSpec;
    use crate::optim::OptimizerSpec;

    fn setup() -> (TrainConfig, Model, Optimizer) {
        let spec = topology::zoo::get("compact_timedecay").unwrap();
        let config = TrainConfig::for_model(spec.clone(), DataSpec::FashionMnist { dir: None });
        let model = Model::new(&spec, Device::Cpu, 3).unwrap();
        let opt = Optimizer::new(OptimizerSpec::sgd_nesterov(0.0)).unwrap();
        (config, model, opt)
    }

    #[test]
    fn round_trip_restores_weights_and_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (config, model, opt) = setup();
        let progress = Progress {
            epoch: 2,
            position: 7,
            global_step: 31,
            best_val_top1: Some(0.5),
            accum: EpochAccum {
                loss_sum: 1.5,
                correct: 3,
                seen: 9,
                seconds: 0.25,
            },
        };
        let path = dir.path().join(LATEST);
        save(&path, &config, &progress, &model, &opt).unwrap();
        let ck = Checkpoint::read(&resolve(dir.path()).unwrap()).unwrap();
        assert_eq!(ck.progress, progress);
        assert_eq!(ck.config, config);
        let other = Model::new(&config.model, Device::Cpu, 99).unwrap();
        ck.load_params_into(&other.params).unwrap();
        for ((_, a), (_, b)) in model.params.iter().zip(other.params.iter()) {
            assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
        }
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (config, model, opt) = setup();
        let path = dir.path().join(LATEST);
        save(&path, &config, &Progress::default(), &model, &opt).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = Checkpoint::read(&path).unwrap_err().to_string();
        assert!(err.contains(LATEST), "{err}");
        std::fs::write(&path, b"not a checkpoint").unwrap();
        assert!(Checkpoint::read(&path).is_err());
        let foreign = dir.path().join("weights.safetensors");
        model.params.save_safetensors(&foreign).unwrap();
        let err = Checkpoint::read(&foreign).unwrap_err().to_string();
        assert!(err.contains("not a convrnn training checkpoint"), "{err}");
        let err = resolve(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_checkpoint_of_another_model_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (config, model, opt) = setup();
        let path = dir.path().join(LATEST);
        save(&path, &config, &Progress::default(), &model, &opt).unwrap();
        let ck = Checkpoint::read(&path).unwrap();
        let other = Model::new(
            &topology::zoo::get("compact_feedforward").unwrap(),
            Device::Cpu,
            0,
        )
        .unwrap();
        let err = ck.load_params_into(&other.params).unwrap_err().to_string();
        assert!(err.contains("does not match the model"), "{err}");
    }
}
