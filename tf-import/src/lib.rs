//! Loads the released neuroailab/convrnns checkpoints (TensorFlow 1.13 tensor bundles,
//! `model.ckpt.{index,data-00000-of-00001}`) into the zoo's models, without TensorFlow.
//!
//! [`import`] builds the model of a spec (a reference name's preset, `topology::zoo`), maps every
//! one of its parameters onto the checkpoint variable the reference stores it in ([`names`]),
//! converts TensorFlow's layouts into ours ([`layout`]), checks that the reference's constants
//! hold their values, reads the decoder's temperature and threshold into the spec, and skips the
//! optimiser's momentum slots and the step counter. Anything that does not line up — a variable
//! missing, renamed, of the wrong shape, or left over — fails the import with an error naming
//! every such variable; so does a NaN or infinite value. Nothing is loaded unless everything
//! matches.
//!
//! `tests/parity.rs` runs imported models against what the reference code computes
//! (`tests/reference/`, made by running the official code under TensorFlow 2).
//!
//! Importing a downloaded checkpoint (its prefix, `.index` file or folder) as the released
//! architecture it belongs to (`cargo xtask import` does this and writes a run folder):
//!
//! ```no_run
//! use std::path::Path;
//! use tensor::Device;
//!
//! let spec = topology::zoo::get("rgc_intermediate").expect("a released architecture");
//! let ckpt = Path::new("ckpts/rgc_intermediate/model.ckpt");
//! let imported = tf_import::import_path(ckpt, &spec, Device::Cpu)?;
//! let r = &imported.report;
//! println!("{} constants checked; skipped {:?}", r.constants_checked, r.training_state_skipped);
//! # Ok::<(), tf_import::ImportError>(())
//! ```
#![warn(missing_docs)]

mod error;
pub mod layout;
pub mod names;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use error::{ImportError, Mismatch, ShapeMismatch};
use names::DecoderField;
use tensor::{Device, Tensor};
use tf_checkpoint::Checkpoint;
use topology::{Decoder, Model, ModelSpec};

/// A model filled from a checkpoint.
#[derive(Debug)]
pub struct Imported {
    /// The model; its spec's decoder carries the checkpoint's temperature and threshold.
    pub model: Model,
    /// What the import read, checked and skipped.
    pub report: Report,
}

/// What an import read and what it left alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The index file read.
    pub checkpoint: PathBuf,
    /// Variables loaded into parameters or the decoder.
    pub variables_read: usize,
    /// Scalars loaded into the model's parameters.
    pub values_loaded: usize,
    /// Constants of the reference checked (`memory_decay` of areas without a cell, the decoders'
    /// fixed temperatures).
    pub constants_checked: usize,
    /// Training state skipped (momentum slots, `global_step`).
    pub training_state_skipped: Vec<String>,
}

/// Opens the checkpoint at `path` (prefix, `.index` file or directory) and imports it as `spec`.
pub fn import_path(path: &Path, spec: &ModelSpec, device: Device) -> Result<Imported, ImportError> {
    import(&Checkpoint::open(path)?, spec, device)
}

/// Imports `ckpt` as a model of `spec` on `device`.
pub fn import(
    ckpt: &Checkpoint,
    spec: &ModelSpec,
    device: Device,
) -> Result<Imported, ImportError> {
    let mut model = Model::new(spec, device, 0)?;
    let plan = names::plan(spec, &model.shapes)?;

    let mut bound = HashSet::new();
    for b in &plan.bindings {
        if model.params.get(&b.ours).is_none() {
            return Err(ImportError::NoSuchParameter(b.ours.clone()));
        }
        bound.insert(b.ours.as_str());
    }
    let unfilled: Vec<String> = model
        .params
        .names()
        .filter(|n| !bound.contains(n))
        .map(str::to_string)
        .collect();
    if !unfilled.is_empty() {
        return Err(ImportError::Unfilled(unfilled));
    }

    // Account for every variable before loading anything.
    let mut mismatch = Mismatch::default();
    let mut used: HashSet<&str> = HashSet::new();
    for b in &plan.bindings {
        let ours = model
            .params
            .get(&b.ours)
            .ok_or_else(|| ImportError::NoSuchParameter(b.ours.clone()))?;
        let expected = b
            .layout
            .tf_shape(ours.dims())
            .ok_or_else(|| ImportError::NoSuchParameter(b.ours.clone()))?;
        let mut shapes = Vec::new();
        for v in &b.tf {
            used.insert(v);
            match ckpt.info(v) {
                Some(info) => shapes.push(
                    info.shape
                        .iter()
                        .map(|&d| d.max(0) as usize)
                        .collect::<Vec<_>>(),
                ),
                None => mismatch.missing.push((v.clone(), b.ours.clone())),
            }
        }
        if shapes.len() == b.tf.len() {
            let found = concat_channels(&shapes).unwrap_or_else(|| shapes.concat());
            if found != expected {
                mismatch.wrong_shape.push(ShapeMismatch {
                    variable: b.tf.join(" + "),
                    parameter: b.ours.clone(),
                    expected,
                    found,
                });
            }
        }
    }
    let decoder = format!("the `{}` decoder", spec.decoder.name());
    let scalars = plan
        .constants
        .iter()
        .map(|(v, _)| (v, "a constant of the reference"))
        .chain(plan.decoder.iter().map(|(v, _)| (v, decoder.as_str())));
    for (v, fills) in scalars {
        used.insert(v);
        match ckpt.info(v) {
            // The reference stores these as shape [1]; an empty one would check nothing (or set
            // the decoder to NaN) and a longer one would have all but its first value ignored.
            Some(info) if info.numel() != Some(1) => mismatch.wrong_shape.push(ShapeMismatch {
                variable: v.clone(),
                parameter: fills.to_string(),
                expected: vec![1],
                found: info.shape.iter().map(|&d| d.max(0) as usize).collect(),
            }),
            Some(_) => {}
            None => mismatch.missing.push((v.clone(), fills.to_string())),
        }
    }
    let mut skipped = Vec::new();
    for (name, _) in ckpt.tensors() {
        if names::is_training_state(name) {
            skipped.push(name.to_string());
        } else if !used.contains(name) {
            mismatch.unexpected.push(name.to_string());
        }
    }
    if !mismatch.is_empty() {
        return Err(ImportError::Mismatch {
            model: spec.name.clone(),
            mismatch,
        });
    }

    let mut values_loaded = 0;
    let mut loaded = Vec::with_capacity(plan.bindings.len());
    for b in &plan.bindings {
        let ours = model
            .params
            .get(&b.ours)
            .ok_or_else(|| ImportError::NoSuchParameter(b.ours.clone()))?;
        let mut blocks = Vec::with_capacity(b.tf.len());
        for v in &b.tf {
            let t = ckpt.read(v)?;
            blocks.push((t.shape().to_vec(), finite(v, t.to_f32()?)?));
        }
        let data = join_channels(blocks);
        let dims = ours.dims().to_vec();
        values_loaded += data.len();
        loaded.push((
            ours.clone(),
            Tensor::from_vec(b.layout.to_ours(&data, &dims), dims, device)?,
        ));
    }
    for (v, expected) in &plan.constants {
        let values = ckpt.read(v)?.to_f32()?;
        if let Some(&found) = values.iter().find(|&&x| x != *expected) {
            let why = if v.ends_with("memory_decay") {
                "the decay of an area without a recurrent cell is not trainable"
            } else {
                "the decoders' auxiliary softmaxes are not trainable"
            };
            return Err(ImportError::Constant {
                variable: v.clone(),
                expected: *expected,
                found,
                why,
            });
        }
    }
    for (v, field) in &plan.decoder {
        let value = finite(v, ckpt.read(v)?.to_f32()?)?[0];
        set_decoder(&mut model.spec.decoder, *field, value);
    }
    for (param, value) in loaded {
        param.assign(&value)?;
    }
    Ok(Imported {
        model,
        report: Report {
            checkpoint: ckpt.index_path().to_path_buf(),
            variables_read: used.len(),
            values_loaded,
            constants_checked: plan.constants.len(),
            training_state_skipped: skipped,
        },
    })
}

/// `values` of `variable`, refused if any is NaN or infinite.
fn finite(variable: &str, values: Vec<f32>) -> Result<Vec<f32>, ImportError> {
    match values.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(ImportError::NonFinite {
            variable: variable.to_string(),
            index,
            value: values[index],
        }),
        None => Ok(values),
    }
}

fn set_decoder(d: &mut Decoder, field: DecoderField, value: f32) {
    match (d, field) {
        (Decoder::MaxConf { beta, .. } | Decoder::Thresh { beta, .. }, DecoderField::Beta) => {
            *beta = value
        }
        (Decoder::Thresh { threshold, .. }, DecoderField::Threshold) => *threshold = value,
        _ => {}
    }
}

/// The shape of HWIO kernels concatenated along their input channels (axis 2), if they agree
/// on every other axis.
fn concat_channels(shapes: &[Vec<usize>]) -> Option<Vec<usize>> {
    let first = shapes.first()?;
    if shapes.len() == 1 {
        return Some(first.clone());
    }
    let mut out = first.clone();
    if out.len() != 4 {
        return None;
    }
    out[2] = 0;
    for s in shapes {
        if s.len() != 4 || s[0] != first[0] || s[1] != first[1] || s[3] != first[3] {
            return None;
        }
        out[2] += s[2];
    }
    Some(out)
}

/// HWIO kernel blocks (shape, data) joined along their input channels.
fn join_channels(mut blocks: Vec<(Vec<usize>, Vec<f32>)>) -> Vec<f32> {
    if blocks.len() == 1 {
        return blocks.pop().map(|b| b.1).unwrap_or_default();
    }
    let positions: usize = blocks[0].0[..2].iter().product();
    let total: usize = blocks.iter().map(|b| b.1.len()).sum();
    let mut out = Vec::with_capacity(total);
    for p in 0..positions {
        for (shape, data) in &blocks {
            let run = shape[2] * shape[3];
            out.extend_from_slice(&data[p * run..(p + 1) * run]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_blocks_join_along_input_channels() {
        // Two 1×2 kernels with 1 and 2 input channels, 1 output: [1, 2, 1, 1] and [1, 2, 2, 1].
        let a = (vec![1, 2, 1, 1], vec![1.0, 2.0]);
        let b = (vec![1, 2, 2, 1], vec![10.0, 11.0, 20.0, 21.0]);
        assert_eq!(
            concat_channels(&[a.0.clone(), b.0.clone()]),
            Some(vec![1, 2, 3, 1])
        );
        assert_eq!(
            join_channels(vec![a, b]),
            vec![1.0, 10.0, 11.0, 2.0, 20.0, 21.0]
        );
        assert_eq!(concat_channels(&[vec![1, 2, 1, 1], vec![3, 2, 1, 1]]), None);
    }
}
