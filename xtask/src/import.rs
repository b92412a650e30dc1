//! `cargo xtask import`: a released neuroailab/convrnns checkpoint (TensorFlow tensor bundle)
//! into a run directory that `eval`, `neurofit`, `export-activations` and `info` take like a
//! training run's: `spec.json`, `config.json`, `checkpoint-best.safetensors`, and `import.json`
//! recording where the weights came from.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tensor::Device;
use topology::{Decoder, ModelSpec};
use trainer::checkpoint::{self, Progress};
use trainer::{DataSpec, LrSchedule, Optimizer, OptimizerSpec, TrainConfig};

#[derive(Args)]
pub struct ImportCmd {
    /// The checkpoint: its prefix (`ckpts/rgc_intermediate/model.ckpt`), its `.index` file, or the
    /// directory holding it.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The released model it holds (e.g. `rgc_intermediate`; `cargo xtask models` lists them),
    /// or a spec JSON file of the same architecture.
    #[arg(long)]
    pub model: String,
    /// The run directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// ImageNet-style class folders (`train/`, `val/`) recorded for `cargo xtask eval`.
    #[arg(long, default_value = "imagenet")]
    pub data_dir: PathBuf,
}

/// Where the weights of an imported run came from (`import.json`).
#[derive(Serialize)]
struct Provenance<'a> {
    source: &'static str,
    model: &'a str,
    checkpoint_index: String,
    checkpoint_shards: Vec<String>,
    checkpoint_bytes: u64,
    variables_read: usize,
    values_loaded: usize,
    constants_checked: usize,
    training_state_skipped: usize,
    decoder: Decoder,
    importer: String,
}

/// The files of a run directory that an import writes or that a training run leaves there:
/// an import into a folder holding any of them would replace a model, or mix two.
const RUN_FILES: [&str; 6] = [
    checkpoint::BEST,
    checkpoint::LATEST,
    "spec.json",
    "config.json",
    "import.json",
    "metrics.jsonl",
];

/// Refuses an `--out` that is a file or already holds a run: importing over a training run
/// replaced its best checkpoint, spec and configuration and left its latest checkpoint and
/// metrics behind, for `--resume` to pick up under the imported spec.
fn check_out(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        anyhow::bail!(
            "--out {} is a file; give a directory for the imported run",
            out.display()
        );
    }
    let held: Vec<&str> = RUN_FILES
        .into_iter()
        .filter(|f| out.join(f).exists())
        .collect();
    if !held.is_empty() {
        anyhow::bail!(
            "--out {} already holds a run ({}); import into a new directory, or remove it first",
            out.display(),
            held.join(", ")
        );
    }
    Ok(())
}

pub fn run(cmd: &ImportCmd) -> Result<()> {
    check_out(&cmd.out)?;
    let spec = trainer::load_spec(&cmd.model)?;
    let ckpt = tf_checkpoint::Checkpoint::open(&cmd.checkpoint)
        .with_context(|| format!("opening checkpoint {}", cmd.checkpoint.display()))?;
    let imported = tf_import::import(&ckpt, &spec, Device::Cpu)
        .with_context(|| format!("importing {} as {}", cmd.checkpoint.display(), spec.name))?;
    let model = imported.model;
    let report = imported.report;
    std::fs::create_dir_all(&cmd.out).with_context(|| format!("creating {}", cmd.out.display()))?;

    let config = config_for(&model.spec, &cmd.data_dir);
    // Marked finished: there is nothing to resume.
    let progress = Progress {
        epoch: config.epochs,
        ..Default::default()
    };
    let optimizer = Optimizer::new(config.optimizer.clone())?;
    let best = cmd.out.join(checkpoint::BEST);
    checkpoint::save(&best, &config, &progress, &model, &optimizer)
        .with_context(|| format!("writing {}", best.display()))?;
    write_json(&cmd.out.join("spec.json"), &model.spec)?;
    write_json(&cmd.out.join("config.json"), &config)?;
    let shards: Vec<String> = ckpt.shard_paths().iter().map(|p| absolute(p)).collect();
    let bytes = std::iter::once(ckpt.index_path().to_path_buf())
        .chain(ckpt.shard_paths().iter().cloned())
        .map(|p| std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0))
        .sum();
    write_json(
        &cmd.out.join("import.json"),
        &Provenance {
            source: "neuroailab/convrnns released checkpoint (TensorFlow tensor bundle)",
            model: &model.spec.name,
            checkpoint_index: absolute(ckpt.index_path()),
            checkpoint_shards: shards,
            checkpoint_bytes: bytes,
            variables_read: report.variables_read,
            values_loaded: report.values_loaded,
            constants_checked: report.constants_checked,
            training_state_skipped: report.training_state_skipped.len(),
            decoder: model.spec.decoder,
            importer: format!("convrnn tf-import {}", env!("CARGO_PKG_VERSION")),
        },
    )?;
    println!(
        "imported {} ({} parameters from {} variables; {} momentum slots and counters skipped) into {}",
        model.spec.name,
        report.values_loaded,
        report.variables_read,
        report.training_state_skipped.len(),
        cmd.out.display()
    );
    Ok(())
}

/// The configuration recorded with an imported model: the reference's training recipe (SGD with
/// Nesterov momentum, weight decay 1e-4; SPEC §6) on ImageNet-style folders, the model's own
/// decoder first.
fn config_for(spec: &ModelSpec, data_dir: &Path) -> TrainConfig {
    let mut config = TrainConfig::for_model(
        spec.clone(),
        DataSpec::Folder {
            root: data_dir.to_path_buf(),
        },
    );
    config.optimizer = OptimizerSpec::sgd_nesterov(1e-4);
    config.lr = LrSchedule::constant(0.01);
    config.batch_size = 256;
    config.eval_batch_size = 64;
    config.decoders = vec![spec.decoder];
    if spec.decoder != Decoder::Last {
        config.decoders.push(Decoder::Last);
    }
    config
}

fn absolute(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    tensor::io::write_file_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
