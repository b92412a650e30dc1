//! `cargo xtask import`: a released neuroailab/convrnns checkpoint (TensorFlow tensor bundle)
//! into a run directory that `eval`, `neurofit`, `export-activations` and `info` take like a
//! training run's: `spec.json`, `config.json`, `checkpoint-best.safetensors`, and `import.json`
//! recording where the weights came from.

use anyhow::{Context, Result};
use clap::Args;
use search::store::WorkerInfo;
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
    // The finished run is renamed into place, which POSIX allows over an empty folder only.
    if out.is_dir() {
        let mut other: Vec<String> = std::fs::read_dir(out)
            .with_context(|| format!("reading --out {}", out.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !other.is_empty() {
            other.sort();
            other.truncate(5);
            anyhow::bail!(
                "--out {} is not empty (it holds {}); import into a new or empty directory",
                out.display(),
                other.join(", ")
            );
        }
    }
    Ok(())
}

/// A folder beside `--out` that the import writes into and then renames to `--out`, so a run
/// directory appears whole or not at all: an import killed between two files used to leave a
/// run folder with a checkpoint and no spec or provenance, which a later import then refused as
/// "already holds a run". Removed on drop unless [`Staging::commit`] moved it into place; a
/// kill leaves only this hidden `.NAME.import-HOST:PID:START` folder, which the next import to
/// the same `--out` removes once that process is gone.
struct Staging {
    dir: PathBuf,
    committed: bool,
}

/// The part of a staging folder's name before its owner.
fn staging_prefix(name: &std::ffi::OsStr) -> String {
    format!(".{}.import-", name.to_string_lossy())
}

/// Staging folders in `parent` for the run `name` left by imports on this host whose process
/// has ended (a process id reused since is told apart by its start time). Folders of other
/// hosts (a shared file system) and of running imports are never listed.
fn leftovers(parent: &Path, name: &std::ffi::OsStr, me: &WorkerInfo) -> Vec<PathBuf> {
    let prefix = staging_prefix(name);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let file_name = e.file_name();
            let Some(owner) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                return false;
            };
            let mut parts = owner.rsplitn(3, ':');
            let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else {
                return false;
            };
            host == me.host
                && pid != me.pid
                && !search::store::pid_alive(pid, start)
                && e.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|e| e.path())
        .collect()
}

impl Staging {
    fn beside(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .with_context(|| format!("--out {} names no folder", out.display()))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        // The process identity the search's workers use to tell a dead worker from a live one.
        let me = WorkerInfo::current();
        for old in leftovers(&parent, name, &me) {
            eprintln!(
                "removing {}, left by an import that did not finish",
                old.display()
            );
            let _ = std::fs::remove_dir_all(&old);
        }
        let dir = parent.join(format!(
            "{}{}:{}:{}",
            staging_prefix(name),
            me.host,
            me.pid,
            me.start_ticks
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            committed: false,
        })
    }

    fn commit(mut self, out: &Path) -> Result<()> {
        std::fs::rename(&self.dir, out).with_context(|| {
            format!(
                "moving the imported run from {} to {}",
                self.dir.display(),
                out.display()
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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
    let staging = Staging::beside(&cmd.out)?;
    let dir = staging.dir.clone();

    let config = config_for(&model.spec, &cmd.data_dir);
    // Marked finished: there is nothing to resume.
    let progress = Progress {
        epoch: config.epochs,
        ..Default::default()
    };
    let optimizer = Optimizer::new(config.optimizer.clone())?;
    let best = dir.join(checkpoint::BEST);
    checkpoint::save(&best, &config, &progress, &model, &optimizer)
        .with_context(|| format!("writing {}", best.display()))?;
    write_json(&dir.join("spec.json"), &model.spec)?;
    write_json(&dir.join("config.json"), &config)?;
    let shards: Vec<String> = ckpt.shard_paths().iter().map(|p| absolute(p)).collect();
    let bytes = std::iter::once(ckpt.index_path().to_path_buf())
        .chain(ckpt.shard_paths().iter().cloned())
        .map(|p| std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0))
        .sum();
    write_json(
        &dir.join("import.json"),
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
    staging.commit(&cmd.out)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_staged_run_appears_whole_in_a_new_or_empty_folder() {
        let tmp = tempfile::tempdir().unwrap();
        for (out, make) in [
            (tmp.path().join("new/run"), false),
            (tmp.path().join("empty"), true),
        ] {
            if make {
                std::fs::create_dir(&out).unwrap();
            }
            check_out(&out).unwrap();
            let staging = Staging::beside(&out).unwrap();
            std::fs::write(staging.dir.join("spec.json"), "{}").unwrap();
            assert!(!out.join("spec.json").exists(), "written before the commit");
            staging.commit(&out).unwrap();
            assert_eq!(names(&out), ["spec.json"]);
        }
        // No staging folder is left beside either run.
        assert_eq!(names(tmp.path()), ["empty", "new"]);
        assert_eq!(names(&tmp.path().join("new")), ["run"]);
    }

    #[test]
    fn a_failed_import_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        {
            let staging = Staging::beside(&out).unwrap();
            std::fs::write(staging.dir.join(checkpoint::BEST), "partial").unwrap();
            // Dropped without a commit, as when a later write fails.
        }
        assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
        check_out(&out).unwrap();
    }

    #[test]
    fn the_staging_folders_of_imports_that_died_on_this_host_are_removed_and_no_others() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let me = WorkerInfo::current();
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        ended.wait().unwrap();
        let mut running = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let owners = [
            // Dead: an ended process; a live pid whose start time is not the recorded one.
            format!("{}:{}:0", me.host, ended.id()),
            format!("{}:{}:1", me.host, running.id()),
            // Kept: a running import (start time unknown); another host's; another run's.
            format!("{}:{}:0", me.host, running.id()),
            format!("{}-other:{}:0", me.host, ended.id()),
        ];
        for owner in &owners {
            std::fs::create_dir(tmp.path().join(format!(".run.import-{owner}"))).unwrap();
        }
        let other_run = format!(".run2.import-{}:{}:0", me.host, ended.id());
        std::fs::create_dir(tmp.path().join(&other_run)).unwrap();
        let staging = Staging::beside(&out).unwrap();
        let own = staging
            .dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        drop(staging);
        running.kill().unwrap();
        running.wait().unwrap();
        let mut kept = vec![
            format!(".run.import-{}", owners[2]),
            format!(".run.import-{}", owners[3]),
            other_run,
        ];
        kept.sort();
        assert_eq!(names(tmp.path()), kept, "own staging folder: {own}");
        assert!(own.starts_with(".run.import-") && own.contains(&format!(":{}:", me.pid)));
    }

    #[test]
    fn a_folder_with_other_files_or_a_run_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let e = check_out(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("is not empty (it holds notes.txt)"), "{e}");
        std::fs::write(tmp.path().join("spec.json"), "{}").unwrap();
        let e = check_out(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("already holds a run (spec.json)"), "{e}");
        let e = check_out(&tmp.path().join("notes.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a file"), "{e}");
    }
}
