//! What a user names on a command line as "the model" — a zoo preset, a spec JSON file, a training
//! run's folder or one of its checkpoints — turned into a built model. The `neurofit` binary and
//! `cargo xtask` load models through [`load_model`] (or [`locate_model`] then [`ModelRef::load`],
//! to know what a model is before reading its weights), so every tool accepts the same names;
//! where only the architecture is wanted (a new run's model, `info`, `bench unroll`, `import`)
//! they read it with [`load_spec`] or, for a path that must be a file, [`read_spec_file`].

use std::path::{Path, PathBuf};

use tensor::Device;
use topology::{zoo, Model, ModelSpec};

use crate::checkpoint::{self, Checkpoint};
use crate::{Error, Result, TrainConfig};

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

/// What a name or path names, before any weights are read: the spec, where it comes from and,
/// for a checkpoint, the training run's configuration (its header read and verified, its tensors
/// not). [`locate_model`] finds one, [`ModelRef::load`] builds it; [`load_model`] does both. A
/// caller that must know what a model is before paying for its weights (`cargo xtask figures
/// --models` lists, keys and filters models first) locates now and loads later.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRef {
    /// The model's spec (a checkpoint's: the run's).
    pub spec: ModelSpec,
    /// Where spec and weights come from.
    pub source: ModelSource,
    /// The run's settings (data, seed, steps, ...) when the source is a checkpoint.
    pub config: Option<TrainConfig>,
}

impl ModelRef {
    /// Builds the model on `device`: a checkpoint's trained weights, read and verified now, or
    /// freshly initialised weights (seed 0). A checkpoint that no longer holds the located spec
    /// (replaced in between) is an error, not another model.
    pub fn load(&self, device: Device) -> Result<LoadedModel> {
        let model = match &self.source {
            ModelSource::Checkpoint(file) => {
                let ck = Checkpoint::read(file)?;
                if ck.config.model != self.spec {
                    return Err(Error::checkpoint(
                        file,
                        "holds another model than when it was first read (replaced in between?)",
                    ));
                }
                ck.model(device)?
            }
            ModelSource::Preset | ModelSource::SpecFile(_) => Model::new(&self.spec, device, 0)?,
        };
        Ok(LoadedModel {
            model,
            name: self.spec.name.clone(),
            source: self.source.clone(),
        })
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
    locate_model(name_or_path)?.load(device)
}

/// What [`load_model`] would build from `name_or_path`, found as it finds it, without reading
/// weights.
pub fn locate_model(name_or_path: &str) -> Result<ModelRef> {
    if let Some(spec) = zoo::get(name_or_path) {
        return Ok(ModelRef {
            spec,
            source: ModelSource::Preset,
            config: None,
        });
    }
    let path = Path::new(name_or_path);
    if names_checkpoint(path) || path.is_file() {
        return locate_path(path);
    }
    Err(unknown_model(name_or_path))
}

/// A path (any bytes, not only UTF-8) as [`locate_model`] reads one that is not a preset: a
/// folder or a `.safetensors` file is a training run's checkpoint, anything else a spec file.
pub fn locate_path(path: &Path) -> Result<ModelRef> {
    if names_checkpoint(path) {
        let file = checkpoint::resolve(path)?;
        let config = Checkpoint::read_config(&file)?;
        return Ok(ModelRef {
            spec: config.model.clone(),
            source: ModelSource::Checkpoint(file),
            config: Some(config),
        });
    }
    Ok(ModelRef {
        spec: read_spec_file(path)?,
        source: ModelSource::SpecFile(path.to_path_buf()),
        config: None,
    })
}

/// Whether `path` is read as a checkpoint: a folder (a run's) or a `.safetensors` file.
fn names_checkpoint(path: &Path) -> bool {
    path.is_dir() || is_safetensors(path)
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// The architecture `name_or_path` names, without building a model: a zoo preset; a
/// `.safetensors` checkpoint's spec (its header read and verified, its tensors not); a spec JSON
/// file or a run folder's `spec.json` ([`read_spec_file`]) for a path ending in `.json` or one
/// that exists. A missing `.json` path is reported as a missing file; a name that is none of
/// these gets [`Error::UnknownModel`], listing the presets.
pub fn load_spec(name_or_path: &str) -> Result<ModelSpec> {
    if let Some(spec) = zoo::get(name_or_path) {
        return Ok(spec);
    }
    let path = Path::new(name_or_path);
    if is_safetensors(path) {
        return Ok(locate_path(path)?.spec);
    }
    if path.extension().is_some_and(|e| e == "json") || path.exists() {
        return read_spec_file(path);
    }
    Err(unknown_model(name_or_path))
}

/// A spec JSON file, or a run folder's `spec.json`, parsed and validated (`--spec`: a path,
/// never a preset name, so a mistyped path is reported as a missing file, not as an unknown
/// preset); a run folder's must describe the model its checkpoint holds, if it has one. Every
/// failure is an [`Error::SpecFile`] naming the file.
pub fn read_spec_file(path: &Path) -> Result<ModelSpec> {
    let file = if path.is_dir() {
        path.join("spec.json")
    } else {
        path.to_path_buf()
    };
    let bad = |msg: String| Error::SpecFile {
        path: file.clone(),
        msg,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        bad(format!(
            "cannot be read ({e}); expected a model spec JSON file, or a run folder holding \
             spec.json"
        ))
    })?;
    let spec: ModelSpec =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a model spec: {e}")))?;
    spec.validate()
        .map_err(|e| bad(format!("not a valid model: {e}")))?;
    // Every other tool reads a run folder's model from its checkpoint, so an edited or replaced
    // spec.json would describe here another model than the one they evaluate.
    if path.is_dir() {
        if let Ok(ck) = checkpoint::resolve(path) {
            let held = Checkpoint::read_config(&ck)
                .map_err(|e| {
                    bad(format!(
                        "cannot be checked against the run's checkpoint: {e}"
                    ))
                })?
                .model;
            if held != spec {
                return Err(bad(format!(
                    "describes model `{}`, but the run's checkpoint {} holds `{}` with \
                     another spec; one of them was edited or replaced (eval and neurofit use \
                     the checkpoint's; name the file itself to take it as a new spec)",
                    spec.name,
                    ck.display(),
                    held.name
                )));
            }
        }
    }
    Ok(spec)
}

fn unknown_model(given: &str) -> Error {
    Error::UnknownModel {
        given: given.to_string(),
        presets: zoo::names().into_iter().map(String::from).collect(),
    }
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
    fn located_models_say_what_they_are_and_load_as_load_model_does() {
        let dir = tempfile::tempdir().unwrap();
        let spec = zoo::get(PRESET).unwrap();
        let mut config = TrainConfig::for_model(spec.clone(), DataSpec::FashionMnist { dir: None });
        config.seed = 3;
        let trained = Model::new(&spec, Device::Cpu, 7).unwrap();
        let opt = Optimizer::new(OptimizerSpec::sgd_nesterov(0.0)).unwrap();
        let file = dir.path().join(LATEST);
        save(&file, &config, &Progress::default(), &trained, &opt).unwrap();
        let run = locate_path(dir.path()).unwrap();
        assert_eq!(run.source, ModelSource::Checkpoint(file.clone()));
        assert_eq!(
            run.config.as_ref(),
            Some(&config),
            "the run's settings, seed included"
        );
        assert_eq!(run.spec, spec);
        assert_eq!(locate_model(dir.path().to_str().unwrap()).unwrap(), run);
        assert_eq!(
            values(&run.load(Device::Cpu).unwrap().model),
            values(&trained)
        );
        let preset = locate_model(PRESET).unwrap();
        assert_eq!(
            (&preset.source, &preset.config),
            (&ModelSource::Preset, &None)
        );
        let fresh = Model::new(&spec, Device::Cpu, 0).unwrap();
        assert_eq!(
            values(&preset.load(Device::Cpu).unwrap().model),
            values(&fresh)
        );
        // Another model written over the checkpoint after it was located: an error naming it.
        let other = zoo::get("compact_rgc").unwrap();
        let config = TrainConfig::for_model(other.clone(), DataSpec::FashionMnist { dir: None });
        let replaced = Model::new(&other, Device::Cpu, 0).unwrap();
        save(&file, &config, &Progress::default(), &replaced, &opt).unwrap();
        let err = run.load(Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, Error::Checkpoint { .. }) && err.to_string().contains(LATEST),
            "{err}"
        );
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
        assert!(
            matches!(&err, Error::SpecFile { path, .. } if *path == invalid)
                && err.to_string().contains("not a valid model"),
            "{err}"
        );
    }

    /// A `--spec` path that is not there says so (it used to be looked up as a preset name and
    /// reported as an unknown model, listing the presets).
    #[test]
    fn a_missing_spec_file_is_reported_as_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("my_model");
        let err = read_spec_file(&missing).unwrap_err().to_string();
        assert!(
            err.contains("cannot be read") && err.contains("my_model"),
            "{err}"
        );
        assert!(!err.contains("expected a preset"), "{err}");
        // Through load_spec too, when the path says it is a JSON file.
        let json = dir.path().join("my_model.json");
        let err = load_spec(json.to_str().unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::SpecFile { path, .. } if *path == json),
            "{err}"
        );
        // A run folder without spec.json names the file it looked for.
        let err = read_spec_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("spec.json"), "{err}");
        // A spec that does not parse names the file and the field.
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"name": "x"}"#).unwrap();
        let err = read_spec_file(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.json")
                && err.contains("not a model spec")
                && err.contains("missing field"),
            "{err}"
        );
    }

    #[test]
    fn specs_come_from_presets_files_run_folders_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let spec = zoo::get("compact_gru").unwrap();
        assert_eq!(load_spec("compact_gru").unwrap(), spec);
        std::fs::write(
            dir.path().join("spec.json"),
            serde_json::to_string(&spec).unwrap(),
        )
        .unwrap();
        assert_eq!(read_spec_file(dir.path()).unwrap(), spec);
        assert_eq!(load_spec(&dir.path().to_string_lossy()).unwrap(), spec);
        let file = dir.path().join("spec.json");
        assert_eq!(load_spec(&file.to_string_lossy()).unwrap(), spec);
        // A checkpoint holds its run's spec.
        let config = TrainConfig::for_model(spec.clone(), DataSpec::FashionMnist { dir: None });
        let model = Model::new(&spec, Device::Cpu, 0).unwrap();
        let opt = Optimizer::new(OptimizerSpec::sgd_nesterov(0.0)).unwrap();
        let ck = dir.path().join(LATEST);
        save(&ck, &config, &Progress::default(), &model, &opt).unwrap();
        assert_eq!(load_spec(&ck.to_string_lossy()).unwrap(), spec);
        assert_eq!(read_spec_file(dir.path()).unwrap(), spec, "they agree");
        // A spec.json that no longer describes the run's checkpoint is refused, naming both.
        let mut edited = spec.clone();
        edited.name = "compact_gru_edited".into();
        std::fs::write(
            dir.path().join("spec.json"),
            serde_json::to_string(&edited).unwrap(),
        )
        .unwrap();
        let err = load_spec(&dir.path().to_string_lossy())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("compact_gru_edited")
                && err.contains(LATEST)
                && err.contains("`compact_gru`"),
            "{err}"
        );
        // Anything else is an unknown model, named once, with the presets listed.
        let err = load_spec("no_such_preset").unwrap_err();
        assert!(
            matches!(&err, Error::UnknownModel { given, .. } if given == "no_such_preset"),
            "{err}"
        );
    }
}
