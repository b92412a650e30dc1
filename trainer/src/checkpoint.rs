//! Checkpoints: one safetensors file holding the model's parameters (`model/<name>`), the
//! optimiser's state (`optim/<name>/<slot>`) and, in the header, the run's configuration (with the
//! model spec) and progress. Files are written atomically, so a crash mid-write leaves the previous
//! checkpoint intact.
//!
//! Integrity (format 2): the header record holds a CRC-32 of every tensor's bytes, and a second
//! header entry holds the CRC-32 of the record itself, so a flipped bit anywhere in the weights,
//! the optimiser state or the configuration is an error on load that names what is damaged, never
//! a model that silently computes something else. CRC-32 because the threat is accidental damage
//! (bad disks, truncated copies, bit rot), not tampering: it detects every burst of up to 32 bits
//! and misses random damage with probability 2⁻³², and crc32fast (already built for flate2 and
//! png) checks several GB/s, so verifying costs far less than reading the file. Files of format 1
//! (no checksums) still load, with a warning on stderr that they cannot be verified.
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
/// Header key of the CRC-32 (8 hex digits) of the `META_KEY` record.
const META_CRC_KEY: &str = "convrnn_checkpoint_crc32";
/// Header key of the model spec alone, for tools that only want to rebuild the model.
const SPEC_KEY: &str = "spec";
/// 2: per-tensor and record checksums. 1: none (still read, unverified).
const FORMAT: u32 = 2;
const FIRST_CHECKSUMMED_FORMAT: u32 = 2;

/// The file name of a run's most recent checkpoint, rewritten at every checkpoint interval.
pub const LATEST: &str = "checkpoint-latest.safetensors";
/// The file name of the checkpoint with the best validation top-1 so far.
pub const BEST: &str = "checkpoint-best.safetensors";

/// Running sums of the current epoch's training metrics (so a resumed epoch reports the same
/// numbers as an uninterrupted one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochAccum {
    /// Sum over the epoch's batches so far of the mean training loss times the batch's images.
    pub loss_sum: f64,
    /// Training images classified correctly (top-1) so far this epoch.
    pub correct: u64,
    /// Training images seen so far this epoch.
    pub seen: u64,
    /// Wall-clock seconds spent training in this epoch so far (over resumes).
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
    /// The best validation top-1 accuracy (0..=1) of any epoch so far, if one was evaluated.
    pub best_val_top1: Option<f64>,
    /// The epoch's running training metrics.
    pub accum: EpochAccum,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    config: TrainConfig,
    progress: Progress,
    /// CRC-32 of every tensor's little-endian bytes, by its name in the file (format 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksums: Option<BTreeMap<String, u32>>,
}

/// Just the format number, read before the rest so a newer file gets a clear message.
#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

/// CRC-32 of a tensor's values as stored (f32, little-endian).
fn tensor_crc(t: &Tensor) -> Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = Vec::with_capacity(4 * 4096);
    for block in t.to_vec()?.chunks(4096) {
        buf.clear();
        buf.extend(block.iter().flat_map(|x| x.to_le_bytes()));
        h.update(&buf);
    }
    Ok(h.finalize())
}

/// Tensors with their names in the file.
pub(crate) type NamedTensors = [(String, Tensor)];

/// A checkpoint read back: configuration, progress, and the tensors to load.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file read.
    pub path: PathBuf,
    /// The run's settings, model spec included.
    pub config: TrainConfig,
    /// Where the run stood when the checkpoint was written.
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
    let checksums = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), tensor_crc(t)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let meta = json(&Meta {
        format: FORMAT,
        config: config.clone(),
        progress: progress.clone(),
        checksums: Some(checksums),
    })?;
    let mut header = BTreeMap::new();
    header.insert(
        META_CRC_KEY.to_string(),
        format!("{:08x}", crc32fast::hash(meta.as_bytes())),
    );
    header.insert(META_KEY.to_string(), meta);
    header.insert(SPEC_KEY.to_string(), json(&config.model)?);
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

/// The checkpoint's header record, verified against its checksum (format 2 on), and its format.
fn read_meta(path: &Path) -> Result<(Meta, u32)> {
    let bad = |msg: String| Error::checkpoint(path, msg);
    sniff(path)?;
    let header = tensor::read_metadata(path).map_err(|e| bad(e.to_string()))?;
    let raw = header.get(META_KEY).ok_or_else(|| {
        bad(format!(
            "is a safetensors file but not a convrnn training checkpoint (no `{META_KEY}` \
             record in its header)"
        ))
    })?;
    let format = serde_json::from_str::<FormatOnly>(raw)
        .map_err(|e| bad(format!("its `{META_KEY}` record is unreadable: {e}")))?
        .format;
    if format > FORMAT || format == 0 {
        return Err(bad(format!(
            "was written in checkpoint format {format}, this build reads formats 1 to {FORMAT}"
        )));
    }
    if format >= FIRST_CHECKSUMMED_FORMAT {
        let stored = header.get(META_CRC_KEY).ok_or_else(|| {
            bad(format!(
                "has no `{META_CRC_KEY}` entry; the header is damaged (format {format} \
                 checkpoints always carry one)"
            ))
        })?;
        let actual = format!("{:08x}", crc32fast::hash(raw.as_bytes()));
        if *stored != actual {
            return Err(bad(format!(
                "its `{META_KEY}` record (configuration and progress) does not match its \
                 checksum (stored {stored}, computed {actual}); the file is corrupt"
            )));
        }
    }
    let meta: Meta = serde_json::from_str(raw)
        .map_err(|e| bad(format!("its `{META_KEY}` record is unreadable: {e}")))?;
    Ok((meta, format))
}

/// Refuses, with a message that says what the file is, a file that cannot be a checkpoint: a
/// safetensors file starts with the 8-byte length of a JSON header that follows it.
fn sniff(path: &Path) -> Result<()> {
    use std::io::Read;
    let bad = |msg: String| Error::checkpoint(path, msg);
    let mut head = Vec::with_capacity(9);
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    std::fs::File::open(path)
        .and_then(|f| f.take(9).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if matches!(first, Some(b'{') | Some(b'[')) {
        return Err(bad(
            "is a JSON file, not a checkpoint; give a checkpoint (.safetensors) or a training \
             run's directory"
                .into(),
        ));
    }
    if head.len() < 9 {
        return Err(bad(format!(
            "is {len} bytes long, too short to be a checkpoint; it may be truncated"
        )));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[..8]);
    let header_len = u64::from_le_bytes(n);
    if head[8] != b'{' || header_len > len - 8 {
        return Err(bad(
            "is not a safetensors checkpoint (it does not start with a header length and a JSON \
             header); give a checkpoint (.safetensors) or a training run's directory"
                .into(),
        ));
    }
    Ok(())
}

/// Every tensor must have a stored CRC-32 that matches its bytes, and every stored CRC-32 a tensor.
fn verify(tensors: &[(String, Tensor)], sums: &BTreeMap<String, u32>) -> Result<(), String> {
    for (name, t) in tensors {
        let stored = sums.get(name).ok_or_else(|| {
            format!("tensor `{name}` has no stored checksum; the file is corrupt")
        })?;
        let actual = tensor_crc(t).map_err(|e| e.to_string())?;
        if actual != *stored {
            return Err(format!(
                "tensor `{name}` does not match its checksum (stored {stored:08x}, computed \
                 {actual:08x}); the file is corrupt"
            ));
        }
    }
    if let Some(name) = sums.keys().find(|n| !tensors.iter().any(|(t, _)| t == *n)) {
        return Err(format!(
            "tensor `{name}` is listed in the header but missing from the file; the file is corrupt"
        ));
    }
    Ok(())
}

impl Checkpoint {
    /// Reads and validates a checkpoint file: the whole file is parsed, and (format 2 on) the
    /// header record and every tensor are checked against their CRC-32s. A truncated, corrupt or
    /// foreign file is an error naming what is wrong, never a panic.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let bad = |msg: String| Error::checkpoint(path, msg);
        let (meta, format) = read_meta(path)?;
        let tensors = tensor::load_tensors(path).map_err(|e| bad(e.to_string()))?;
        match &meta.checksums {
            Some(sums) => verify(&tensors, sums).map_err(bad)?,
            None if format >= FIRST_CHECKSUMMED_FORMAT => {
                return Err(bad(format!(
                    "format {format} record without tensor checksums; the header is damaged"
                )))
            }
            None => eprintln!(
                "warning: {} was written before checkpoints carried checksums (format {format}); \
                 its tensors cannot be verified",
                path.display()
            ),
        }
        let mut params = Vec::new();
        let mut optim = Vec::new();
        for (name, t) in tensors {
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

    /// The run configuration stored in a checkpoint (its header verified, its tensors not read).
    pub fn read_config(path: &Path) -> Result<TrainConfig> {
        Ok(read_meta(path)?.0.config)
    }

    /// Parameters and optimiser state as read (for sending a checkpoint to the other ranks of a
    /// data-parallel job).
    pub(crate) fn tensors(&self) -> (&NamedTensors, &NamedTensors) {
        (&self.params, &self.optim)
    }

    /// A checkpoint received from another rank instead of read from a file.
    pub(crate) fn from_parts(
        path: PathBuf,
        config: TrainConfig,
        progress: Progress,
        params: Vec<(String, Tensor)>,
        optim: Vec<(String, Tensor)>,
    ) -> Checkpoint {
        Checkpoint {
            path,
            config,
            progress,
            params,
            optim,
        }
    }

    /// Builds the model the checkpoint was made from, with its weights, on `device`.
    pub fn model(&self, device: Device) -> Result<Model> {
        let model = Model::new(&self.config.model, device, self.config.seed)?;
        self.load_params_into(&model.params)?;
        Ok(model)
    }

    /// Overwrites `params` with the checkpoint's weights; names and shapes must match exactly,
    /// every value must be finite, and nothing is assigned unless all of it holds.
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
            // Training never saves such weights (`fit` stops first), so this is a foreign or
            // edited file; loaded, its NaN logits would score as an accuracy of 0, not an error.
            if let Some(x) = t.to_vec()?.into_iter().find(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "parameter `{name}` holds {x}; a usable model has only finite weights (was it \
                     saved after training diverged?)"
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

    /// The byte range of tensor `name`'s data in a safetensors file.
    fn data_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let off = &header[name]["data_offsets"];
        let (a, b) = (off[0].as_u64().unwrap(), off[1].as_u64().unwrap());
        8 + n + a as usize..8 + n + b as usize
    }

    #[test]
    fn a_flipped_bit_in_a_tensor_is_an_error_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let (config, model, opt) = setup();
        let path = dir.path().join(LATEST);
        save(&path, &config, &Progress::default(), &model, &opt).unwrap();
        let clean = std::fs::read(&path).unwrap();
        let (name, _) = model.params.iter().nth(1).unwrap();
        let range = data_range(&clean, &format!("model/{name}"));
        let mut bytes = clean.clone();
        // A low mantissa bit: the weight changes by one part in millions, still finite.
        bytes[range.start + 4] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = Checkpoint::read(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "tensor `model/{name}` does not match its checksum"
            )),
            "{err}"
        );
    }

    #[test]
    fn a_changed_configuration_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, model, opt) = setup();
        config.seed = 7;
        let path = dir.path().join(LATEST);
        save(&path, &config, &Progress::default(), &model, &opt).unwrap();
        let text = std::fs::read(&path).unwrap();
        let at = text
            .windows(8)
            .position(|w| w == br#"seed\":7"#)
            .expect("the seed is in the header");
        let mut bytes = text.clone();
        bytes[at + 7] = b'8';
        std::fs::write(&path, &bytes).unwrap();
        let err = Checkpoint::read(&path).unwrap_err().to_string();
        assert!(err.contains("does not match its checksum"), "{err}");
    }

    #[test]
    fn format_1_checkpoints_without_checksums_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let (config, model, opt) = setup();
        let path = dir.path().join(LATEST);
        #[derive(Serialize)]
        struct OldMeta<'a> {
            format: u32,
            config: &'a TrainConfig,
            progress: Progress,
        }
        let mut header = BTreeMap::new();
        let old = OldMeta {
            format: 1,
            config: &config,
            progress: Progress::default(),
        };
        header.insert(META_KEY.to_string(), serde_json::to_string(&old).unwrap());
        let named: Vec<(String, Tensor)> = model
            .params
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t.clone()))
            .collect();
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tensor::save_tensors_with_metadata(&path, &refs, &header).unwrap();
        let ck = Checkpoint::read(&path).unwrap();
        assert_eq!(ck.config, config);
        let _ = opt;
        // A newer format is refused with a clear message.
        header.insert(
            META_KEY.to_string(),
            serde_json::to_string(&OldMeta { format: 9, ..old }).unwrap(),
        );
        tensor::save_tensors_with_metadata(&path, &refs, &header).unwrap();
        let err = Checkpoint::read(&path).unwrap_err().to_string();
        assert!(err.contains("format 9"), "{err}");
    }

    #[test]
    fn files_that_are_not_checkpoints_say_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("config.json");
        std::fs::write(&json, b"{\n  \"epochs\": 1\n}\n").unwrap();
        let err = Checkpoint::read(&json).unwrap_err().to_string();
        assert!(err.contains("is a JSON file, not a checkpoint"), "{err}");
        let short = dir.path().join("short.safetensors");
        std::fs::write(&short, b"abc").unwrap();
        let err = Checkpoint::read(&short).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
        let text = dir.path().join("notes.safetensors");
        std::fs::write(&text, b"hello, this is some text").unwrap();
        let err = Checkpoint::read(&text).unwrap_err().to_string();
        assert!(err.contains("not a safetensors checkpoint"), "{err}");
    }

    #[test]
    fn non_finite_weights_are_refused_naming_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let (config, model, opt) = setup();
        let (name, p) = model.params.iter().nth(1).unwrap();
        let mut values = p.to_vec().unwrap();
        values[0] = f32::NAN;
        p.assign(&Tensor::from_vec(values, p.dims().to_vec(), Device::Cpu).unwrap())
            .unwrap();
        let path = dir.path().join(LATEST);
        save(&path, &config, &Progress::default(), &model, &opt).unwrap();
        let ck = Checkpoint::read(&path).unwrap();
        let err = ck.model(Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains(&format!("parameter `{name}` holds NaN")),
            "{err}"
        );
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
