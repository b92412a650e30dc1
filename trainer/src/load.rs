//! What a user names on a command line as "the model" — a zoo preset, a spec JSON file, a training
//! run's folder or one of its checkpoints — turned into a built model. The `neurofit` binary and
//! `cargo xtask` load models through [`load_model`], so every tool accepts the same names.

use std::path::{Path, PathBuf};

use tensor::Device;
use topology::{zoo, BuildError, Model, ModelSpec};

use crate::checkpoint::{self, Checkpoint};
use crate::{Error, Result};

/// Where a loaded model's spec and weights came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A zoo preset, built with freshly initialised weights (seed 0).
    Preset,
    /// A spec JSON file, built with freshly initialised weights (seed 0).
    SpecFile(PathBuf),
    /// A training checkpoint (the file itself, or the one [`checkpoint::resolve`] picked in a run
    /// folder): the run's spec with its trained weights.
    Checkpoint(PathBuf),
}

/// A built model and what it was built from.
#[derive(Debug)]
pub struct LoadedModel {
    /// The model, on the requested device.
    pub model: Model,
    /// The spec's name (`ModelSpec::name`).
    pub name: String,
    /// Where spec and weights came from.
    pub source: ModelSource,
}

impl LoadedModel {
    /// Whether the weights were trained (read from a checkpoint) rather than freshly initialised.
    pub fn is_trained(&self) -> bool {
        matches!(self.source, ModelSource::Checkpoint(_))
    }
}

/// Builds the model `name_or_path` names on `device`, trying in turn:
/// a zoo preset (`topology::zoo`); a folder or a `.safetensors` file, read as a training run's
/// checkpoint (the folder's best, else its latest); any other existing file, read as a spec JSON
/// file and validated. Presets and spec files get freshly initialised weights (seed 0).
///
/// Errors say which of these failed and why; a name that is none of them gets
/// [`Error::UnknownModel`], listing the presets.
pub fn load_model(name_or_path: &str, device: Device) -> Result<LoadedModel> {
    if let Some(spec) = zoo::get(name_or_path) {
        return Ok(LoadedModel {
            model: Model::new(&spec, device, 0)?,
            name: spec.name,
            source: ModelSource::Preset,
        });
    }
    let path = Path::new(name_or_path);
    if path.is_dir() || path.extension().is_some_and(|e| e == "safetensors") {
        let file = checkpoint::resolve(path)?;
        let ck = Checkpoint::read(&file)?;
        return Ok(LoadedModel {
            model: ck.model(device)?,
            name: ck.config.model.name.clone(),
            source: ModelSource::Checkpoint(file),
        });
    }
    if path.is_file() {
        let spec = read_spec(path)?;
        return Ok(LoadedModel {
            model: Model::new(&spec, device, 0)?,
            name: spec.name,
            source: ModelSource::SpecFile(path.to_path_buf()),
        });
    }
    Err(Error::UnknownModel {
        given: name_or_path.to_string(),
        presets: zoo::names().into_iter().map(String::from).collect(),
    })
}

/// A spec JSON file, parsed and validated.
fn read_spec(path: &Path) -> Result<ModelSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let spec: ModelSpec = serde_json::from_str(&text).map_err(|e| Error::SpecFile {
        path: path.to_path_buf(),
        msg: format!("not a model spec: {e}"),
    })?;
    spec.validate().map_err(BuildError::from)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{save, Progress, LATEST};
    use crate::{DataSpec, Optimizer, OptimizerSpec, TrainConfig};

    const PRESET: &str = "compact_feedforward";

    fn values(m: &Model) -> Vec<Vec<f32>> {
        m.params.iter().map(|(_, t)| t.to_vec().unwrap()).collect()
    }

    #[test]
    fn presets_and_spec_files_build_fresh_models() {
        let preset = load_model(PRESET, Device::Cpu).unwrap();
        assert_eq!(
            (preset.name.as_str(), &preset.source),
            (PRESET, &ModelSource::Preset)
        );
        assert!(!preset.is_trained());
        let spec = zoo::get(PRESET).unwrap();
        let fresh = Model::new(&spec, Device::Cpu, 0).unwrap();
        assert_eq!(values(&preset.model), values(&fresh), "seed 0, as before");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("my_spec.json");
        std::fs::write(&file, serde_json::to_string(&spec).unwrap()).unwrap();
        let from_file = load_model(file.to_str().unwrap(), Device::Cpu).unwrap();
        assert_eq!(from_file.source, ModelSource::SpecFile(file.clone()));
        assert_eq!(values(&from_file.model), values(&fresh));
    }

    #[test]
    fn run_folders_and_checkpoint_files_load_the_trained_weights() {
        let dir = tempfile::tempdir().unwrap();
        let spec = zoo::get(PRESET).unwrap();
        let config = TrainConfig::for_model(spec.clone(), DataSpec::FashionMnist { dir: None });
        let trained = Model::new(&spec, Device::Cpu, 7).unwrap();
        let opt = Optimizer::new(OptimizerSpec::sgd_nesterov(0.0)).unwrap();
        let file = dir.path().join(LATEST);
        save(&file, &config, &Progress::default(), &trained, &opt).unwrap();
        for given in [dir.path(), file.as_path()] {
            let loaded = load_model(given.to_str().unwrap(), Device::Cpu).unwrap();
            assert_eq!(loaded.source, ModelSource::Checkpoint(file.clone()));
            assert!(loaded.is_trained());
            assert_eq!(loaded.name, spec.name);
            assert_eq!(values(&loaded.model), values(&trained));
        }
    }

    #[test]
    fn what_is_not_a_model_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_model("no_such_preset_or_path", Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownModel { presets, .. } if presets.iter().any(|p| p == PRESET)),
            "{err}"
        );
        // Named once (the zoo's own "unknown model" message used to repeat it), with what is
        // accepted instead.
        let msg = err.to_string();
        assert_eq!(msg.matches("no_such_preset_or_path").count(), 1, "{msg}");
        for expected in [PRESET, "spec JSON file", "run's folder", "checkpoint"] {
            assert!(msg.contains(expected), "{msg} should mention {expected}");
        }
        let empty_run = load_model(dir.path().to_str().unwrap(), Device::Cpu).unwrap_err();
        assert!(matches!(empty_run, Error::Checkpoint { .. }), "{empty_run}");
        let not_json = dir.path().join("notes.txt");
        std::fs::write(&not_json, "hello").unwrap();
        let err = load_model(not_json.to_str().unwrap(), Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::SpecFile { .. }), "{err}");
        let mut bad = zoo::get(PRESET).unwrap();
        bad.areas.clear();
        let invalid = dir.path().join("invalid.json");
        std::fs::write(&invalid, serde_json::to_string(&bad).unwrap()).unwrap();
        let err = load_model(invalid.to_str().unwrap(), Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::Build(_)), "{err}");
    }
}
