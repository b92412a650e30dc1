//! `--models DIR`: figures 4 to 6 on models the user already has instead of the ones the command
//! trains. Each subfolder of DIR that is a run folder (`config.json` and a checkpoint, as
//! `cargo xtask train` and `cargo xtask import` write them) is one model, named by its folder;
//! a model with any recurrent cell or feedback edge is a ConvRNN, the others feedforward nets.
//!
//! Models are found and loaded through the trainer's one model loader ([`trainer::locate_path`]
//! when the folder is read, [`trainer::ModelRef::load`] when a model is evaluated), as the
//! `neurofit` binary loads them for the neural stages.
//!
//! Every stage of a given model reads a *model key* that holds a fingerprint of its checkpoint
//! file (FNV-1a over its bytes), so replacing a model's weights recomputes exactly its stages;
//! the fingerprint is taken again before and after each use of the file (loading it, neurofit
//! scoring it), so a file replaced during the run is an error rather than a result stored under
//! the old weights' key.
//! Each folder is one trained network (one seed): the figures have no error bars and the tests
//! that need seeds cannot be made, which the report says.

use super::cache::StageKey;
use super::models::Family;
use super::training::{DecoderTop1, Trained};
use anyhow::{bail, Context, Result};
use cell_zoo::CellSpec;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use topology::{Decoder, ModelSpec};
use trainer::{DataSpec, TrainConfig};

/// A model found in the `--models` folder.
#[derive(Clone, Debug)]
pub struct Given {
    /// The folder's name.
    pub id: String,
    /// The run folder.
    pub dir: PathBuf,
    /// The checkpoint read (the best, else the latest).
    pub checkpoint: PathBuf,
    /// The run configuration stored in the checkpoint (model spec, data, seed).
    pub config: TrainConfig,
    /// The model as the trainer's loader located it; [`evaluate`] builds it from this.
    pub located: trainer::ModelRef,
    pub family: Family,
    pub params: usize,
    /// Where the weights came from, in words.
    pub source: String,
    /// FNV-1a 64 of the checkpoint file's bytes and its length.
    pub weights: String,
}

impl Given {
    pub fn spec(&self) -> &ModelSpec {
        &self.config.model
    }

    /// Whether the checkpoint still holds the weights fingerprinted when the folder was read:
    /// a file replaced since (other weights, even of the same spec) is an error, so that no
    /// stage stores results of other weights under this model's key.
    pub fn check_weights(&self) -> Result<()> {
        let now = file_fingerprint(&self.checkpoint)?;
        if now != self.weights {
            bail!(
                "--models: {} changed while this run used it (its fingerprint was {} when the \
                 folder was read, now {}): it was replaced by other weights; run the command \
                 again to use the new ones",
                self.checkpoint.display(),
                self.weights,
                now
            );
        }
        Ok(())
    }

    /// The key every stage of this model reads: its spec and its weights' fingerprint.
    pub fn key(&self) -> Result<StageKey> {
        StageKey::new(
            "model",
            &serde_json::json!({ "id": self.id, "spec": self.spec(), "weights": self.weights }),
            &[],
        )
    }
}

/// A ConvRNN when any area has a recurrent cell or an edge runs back to an area at or before its
/// source (feedback); otherwise a feedforward net.
pub fn family_of(spec: &ModelSpec) -> Family {
    let index = |name: &str| spec.areas.iter().position(|a| a.name == name);
    let cell = spec.areas.iter().any(|a| a.cell != CellSpec::Identity);
    let feedback = spec
        .edges
        .iter()
        .any(|e| matches!((index(&e.from), index(&e.to)), (Some(f), Some(t)) if t <= f));
    if cell || feedback {
        Family::Recurrent
    } else {
        Family::Feedforward
    }
}

/// FNV-1a 64 of a file's bytes (as [`datasets::cache::fnv1a64`] of its contents), read in
/// pieces so a large checkpoint is not held in memory, and its length.
pub fn file_fingerprint(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut len: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        len += n as u64;
    }
    Ok(format!("fnv1a64 {hash:016x}, {len} bytes"))
}

/// The run folders of `dir`, sorted by name. A subfolder with neither `config.json` nor a
/// checkpoint is not a run folder and is skipped (and named on stderr); one with `config.json`
/// but no checkpoint is an error.
pub fn discover(dir: &Path) -> Result<Vec<Given>> {
    if !dir.is_dir() {
        bail!(
            "--models {}: {} (it should be a folder holding one run folder per model, as `cargo \
             xtask import --out` or `cargo xtask train --out` write them)",
            dir.display(),
            if dir.exists() {
                "is a file"
            } else {
                "no such folder"
            }
        );
    }
    // Hidden folders are not runs: an interrupted `xtask import` leaves its half-written run in
    // `.NAME.import-PID`, which must not be read as a model.
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    subdirs.sort();
    let mut found = Vec::new();
    for sub in subdirs {
        let has = |name: &str| sub.join(name).is_file();
        let has_checkpoint = has(trainer::checkpoint::BEST) || has(trainer::checkpoint::LATEST);
        if !has("config.json") && !has_checkpoint {
            eprintln!(
                "--models: {} is not a run folder (no config.json, no checkpoint); skipped",
                sub.display()
            );
            continue;
        }
        if !has_checkpoint {
            bail!(
                "--models: {} has config.json but no checkpoint ({} or {})",
                sub.display(),
                trainer::checkpoint::BEST,
                trainer::checkpoint::LATEST
            );
        }
        found.push(read(&sub)?);
    }
    if found.is_empty() {
        bail!(
            "--models {}: no run folder in it (a subfolder with config.json and {} or {}, as \
             `cargo xtask import --out` or `cargo xtask train --out` write them)",
            dir.display(),
            trainer::checkpoint::BEST,
            trainer::checkpoint::LATEST
        );
    }
    Ok(found)
}

/// One run folder.
fn read(dir: &Path) -> Result<Given> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no folder name", dir.display()))?;
    let located = trainer::locate_path(dir)
        .with_context(|| format!("--models: reading the run folder {}", dir.display()))?;
    let (trainer::ModelSource::Checkpoint(checkpoint), Some(config)) =
        (located.source.clone(), located.config.clone())
    else {
        bail!(
            "--models: {} was not read as a run folder with a checkpoint",
            dir.display()
        );
    };
    let params = topology::count::cost(&config.model)
        .with_context(|| format!("--models: the model of {}", dir.display()))?
        .params;
    let source = match std::fs::read_to_string(dir.join("import.json")) {
        Ok(text) => {
            let j: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", dir.join("import.json").display()))?;
            format!(
                "`{}`, imported by `cargo xtask import` as `{}` from the TensorFlow checkpoint \
                 `{}`",
                dir.display(),
                j["model"].as_str().unwrap_or("?"),
                j["checkpoint_index"].as_str().unwrap_or("?")
            )
        }
        Err(_) => format!(
            "`{}`, a run folder trained on `{}` (seed {})",
            dir.display(),
            config.data.name(),
            config.seed
        ),
    };
    Ok(Given {
        family: family_of(&config.model),
        weights: file_fingerprint(&checkpoint)?,
        id,
        dir: dir.to_path_buf(),
        checkpoint,
        config,
        located,
        params,
        source,
    })
}

/// The markdown list of the models, for the report and every figure's section.
pub fn list(models: &[Given]) -> String {
    models
        .iter()
        .map(|g| {
            format!(
                "- **{}** ({}, {} parameters): {}; checkpoint `{}` ({}).",
                g.id,
                super::accuracy::family_name(g.family),
                g.params,
                g.source,
                g.checkpoint
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                g.weights
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What figure 6 evaluates a given model on: the data of its run configuration, with an
/// ImageNet-style folder (`--models-data`) in place of an imported model's, and Fashion-MNIST
/// from `--data-dir` where given. `Err` says why there is none.
pub fn eval_data(
    g: &Given,
    folder: Option<&Path>,
    fashion_mnist: Option<&Path>,
) -> std::result::Result<DataSpec, String> {
    let mut data = g.config.data.clone();
    match &mut data {
        DataSpec::Folder { root } => {
            if let Some(f) = folder {
                *root = f.to_path_buf();
            }
            for split in ["train", "val"] {
                if !root.join(split).is_dir() {
                    return Err(format!(
                        "its validation data (an ImageNet-style folder with train/ and val/ \
                         class folders) is not at {}: give one with --models-data DIR",
                        root.display()
                    ));
                }
            }
        }
        DataSpec::FashionMnist { dir } | DataSpec::Clutter { dir, .. } => {
            if let Some(d) = fashion_mnist {
                *dir = Some(d.to_path_buf());
            }
        }
        DataSpec::Shards { root, .. } => {
            if !root.join("val").is_dir() {
                return Err(format!(
                    "its validation shards are not at {}",
                    root.join("val").display()
                ));
            }
        }
    }
    Ok(data)
}

/// The identity of an evaluation: the data (paths included: a folder is not hashed), the
/// images and the decoders.
#[derive(Serialize)]
pub struct EvalConfig<'a> {
    pub data: &'a DataSpec,
    pub images: usize,
    pub decoders: &'a [Decoder],
}

/// The decoders figure 6 reports, reading the steps from the first one the image reaches the
/// readout (as the training stages do).
pub fn decoders(spec: &ModelSpec) -> Result<Vec<Decoder>> {
    Ok(super::training::decoders(
        topology::infer(spec)?.readout_first_step,
    ))
}

/// Evaluates a given model on `data` (its first `images` validation images), per step and with
/// `decoders`: figure 6's record of it.
pub fn evaluate(
    g: &Given,
    data: &DataSpec,
    images: usize,
    decoders: Vec<Decoder>,
    device: tensor::Device,
) -> Result<Trained> {
    let (wall, cpu) = (std::time::Instant::now(), super::training::cpu_seconds());
    // The loader checks the spec; the fingerprint, taken before and after it reads the file,
    // checks the weights are those of this model's key.
    g.check_weights()?;
    let model = g
        .located
        .load(device)
        .with_context(|| format!("--models: loading {}", g.checkpoint.display()))?
        .model;
    g.check_weights()?;
    let spec = g.spec();
    let splits = trainer::data::load(data, spec.input.height)
        .with_context(|| format!("loading the validation data of {}", g.id))?;
    trainer::data::check_fits(spec, &splits.val)?;
    let report = trainer::evaluate(
        &model,
        &splits.val,
        &trainer::EvalOptions {
            batch_size: g.config.eval_batch_size,
            steps: g.config.steps(),
            presentation: g.config.presentation,
            decoders,
            limit: Some(images),
        },
    )?;
    Ok(Trained {
        id: g.id.clone(),
        family: g.family,
        seed: g.config.seed,
        params: g.params,
        first_readout_step: topology::infer(spec)?.readout_first_step,
        top1_per_step: report.top1_per_step,
        decoders: report
            .decoders
            .iter()
            .map(|d| DecoderTop1 {
                name: d.name.clone(),
                top1: d.top1,
            })
            .collect(),
        optimiser_steps: 0,
        wall_seconds: wall.elapsed().as_secs_f64(),
        cpu_seconds: cpu.zip(super::training::cpu_seconds()).map(|(a, b)| b - a),
        device: device.to_string(),
        machine: Some(crate::machine::Machine::detect().label()),
        run_dir: g.dir.clone(),
    })
}

/// `cargo xtask figures --models DIR`: scores and evaluates `models`, those [`discover`] found in
/// `dir` (no training), and writes figures 4 to 6 and `REPORT.md` into `out`.
pub fn run(
    cmd: &super::FiguresCmd,
    dir: &Path,
    models: Vec<Given>,
    out: &Path,
    device: tensor::Device,
    scale: &super::training::ScaleConfig,
) -> Result<PathBuf> {
    use super::neural::{self, Mapping};
    let keys: Vec<StageKey> = models.iter().map(Given::key).collect::<Result<_>>()?;
    let recordings = super::recordings_of(cmd);
    let ns = neural::NeuralScale::of(cmd.scale);
    let plans: Vec<std::result::Result<DataSpec, String>> = models
        .iter()
        .map(|g| eval_data(g, cmd.models_data.as_deref(), cmd.data_dir.as_deref()))
        .collect();
    let neural_stages: u64 = if cmd.no_neural {
        0
    } else {
        models
            .iter()
            .map(|g| neural::stages_of(g.family, &neural::AreaRule::of(g.spec())))
            .sum::<u64>()
            + 2
    };
    let evals = plans.iter().filter(|p| p.is_ok()).count() as u64;
    let cache = super::Cache::new(out);
    let mut runner = super::Runner::new(
        &cache,
        neural_stages + evals + u64::from(evals > 0),
        trainer::ProgressMode::Auto,
    );
    let (mut scored, mut neural_keys) = (Vec::new(), Vec::new());
    if !cmd.no_neural {
        for (g, key) in models.iter().zip(&keys) {
            let rule = neural::AreaRule::of(g.spec());
            for &mapping in Mapping::for_family(g.family) {
                let config = neural::stage_config(&ns, mapping, &recordings)?;
                let nkey = StageKey::new("neural", &config, &[key])?;
                let subject = neural::Subject {
                    id: &g.id,
                    family: g.family,
                    seed: g.config.seed,
                    params: g.params,
                    areas: g.spec().areas.iter().map(|a| a.name.clone()).collect(),
                };
                let what = format!("{} ({})", g.id, mapping.words());
                let (s, k) = super::neural_stage(
                    &mut runner,
                    &subject,
                    &rule,
                    mapping,
                    &nkey,
                    &what,
                    |work| {
                        // neurofit reads the checkpoint itself: the weights it scored must be
                        // the ones this model's key holds, before and after.
                        g.check_weights()?;
                        let s = neural::score(&subject, &g.dir, work, &ns, mapping, &recordings)?;
                        g.check_weights()?;
                        Ok(s)
                    },
                )?;
                scored.push(s);
                neural_keys.push(k);
            }
        }
    }
    let (mut evaluated, mut eval_keys, mut no_data) = (Vec::new(), Vec::new(), Vec::new());
    for ((g, key), plan) in models.iter().zip(&keys).zip(&plans) {
        let data = match plan {
            Ok(d) => d,
            Err(why) => {
                no_data.push(format!("{}: {why}", g.id));
                continue;
            }
        };
        let decoders = decoders(g.spec())?;
        let ekey = StageKey::new(
            "eval",
            &EvalConfig {
                data,
                images: scale.eval_images,
                decoders: &decoders,
            },
            &[key],
        )?;
        let label = format!("evaluate {}", g.id);
        evaluated.push(runner.run(&ekey, &label, |_| {
            evaluate(g, data, scale.eval_images, decoders.clone(), device)
        })?);
        eval_keys.push(ekey);
    }
    let neural_tables = super::neural_tables(&mut runner, &scored, &neural_keys, cmd.no_neural)?;
    let t6 = if evaluated.is_empty() {
        None
    } else {
        // The claim is about a ConvRNN: the first one given (the first model otherwise).
        let claim = evaluated
            .iter()
            .find(|t| t.family == Family::Recurrent)
            .unwrap_or(&evaluated[0])
            .id
            .clone();
        let inputs: Vec<&StageKey> = eval_keys.iter().collect();
        let key = StageKey::new("table-fig6", &super::TABLES_VERSION, &inputs)?;
        Some(runner.run(&key, "table: figure 6", |_| {
            super::fig6::table_on(&evaluated, &claim)
        })?)
    };
    let stages = runner.finish();
    let who = format!(
        "The models of `--models {}` listed below (one trained network each: one seed)",
        dir.display()
    );
    let mut sections = Vec::new();
    if let Some((t4, t5)) = &neural_tables {
        let words = format!("{}; the models of `--models`", recordings.words());
        sections.extend(super::neural_sections(
            out,
            t4,
            t5,
            &recordings,
            &words,
            Some(&who),
        )?);
    }
    match &t6 {
        Some(t6) => {
            let data_words = "each model's own validation data (the first images of it)";
            sections.push(super::fig6_section(
                out,
                t6,
                &format!("{data_words}, at most {} images", scale.eval_images),
                Some(&who),
            )?);
        }
        None => sections.push(format!(
            "## Figure 6: accuracy over time and decoders\n\n**The paper's claim.** {}\n\n\
             **Verdict: cannot test.** No given model could be evaluated: {}.\n",
            super::fig6::CLAIM,
            no_data.join("; ")
        )),
    }
    if t6.is_some() && !no_data.is_empty() {
        if let Some(last) = sections.last_mut() {
            last.push_str(&format!(
                "\nNot evaluated (no data): {}.\n",
                no_data.join("; ")
            ));
        }
    }
    let text = render(cmd, dir, &models, &stages, &sections, &evaluated);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(super::report::REPORT_FILE);
    tensor::io::write_file_atomically(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `REPORT.md` of a `--models` run.
fn render(
    cmd: &super::FiguresCmd,
    dir: &Path,
    models: &[Given],
    stages: &[super::StageLine],
    sections: &[String],
    evaluated: &[Trained],
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# Figures of the paper, on given models\n");
    let _ = writeln!(
        s,
        "{}",
        super::report::run_line(&super::report::command_line(), cmd.scale, &cmd.device)
    );
    let _ = writeln!(
        s,
        "**Models**: the {} run folders of `{}` (figures 1 to 3 are about the models the \
         command trains and are not drawn in this mode). Each is one trained network, so every \
         model has one seed: the figures have **no error bars**, and a test over seeds cannot \
         be made (figure 6 says so); the ConvRNN against feedforward tests of figures 4 and 5 \
         take the models themselves as their samples.\n\n{}\n",
        models.len(),
        dir.display(),
        list(models)
    );
    let _ = writeln!(s, "{}", super::report::stages_summary(stages));
    for sec in sections {
        let _ = writeln!(s, "{sec}");
    }
    if !evaluated.is_empty() {
        let _ = writeln!(
            s,
            "{}",
            super::report::models_table("Evaluated models (figure 6)", evaluated)
        );
    }
    let _ = writeln!(s, "{}", super::report::stages_table(stages));
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run folder of `preset` with random weights, written by the trainer's checkpoint writer
    /// (as `cargo xtask import` writes one), plus its config.json.
    pub(crate) fn write_run(dir: &Path, preset: &str, seed: u64) {
        let spec = topology::zoo::get(preset).unwrap();
        let mut config = TrainConfig::for_model(spec.clone(), DataSpec::FashionMnist { dir: None });
        config.seed = seed;
        let model = topology::Model::new(&spec, tensor::Device::Cpu, seed).unwrap();
        let optimizer = trainer::Optimizer::new(config.optimizer.clone()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        trainer::checkpoint::save(
            &dir.join(trainer::checkpoint::BEST),
            &config,
            &trainer::checkpoint::Progress::default(),
            &model,
            &optimizer,
        )
        .unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string(&config).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn finds_run_folders_by_name_with_family_and_provenance() {
        let d = tempfile::tempdir().unwrap();
        write_run(&d.path().join("b_rgc"), "compact_rgc", 0);
        write_run(&d.path().join("a_ff"), "compact_feedforward", 1);
        std::fs::create_dir(d.path().join("notes")).unwrap();
        std::fs::write(
            d.path().join("b_rgc").join("import.json"),
            r#"{"model": "rgc_intermediate", "checkpoint_index": "/ckpts/model.ckpt.index"}"#,
        )
        .unwrap();
        // A killed import's hidden staging folder holds a checkpoint but is not a model.
        write_run(&d.path().join(".c_rgc.import-42"), "compact_rgc", 0);
        let found = discover(d.path()).unwrap();
        let ids: Vec<&str> = found.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a_ff", "b_rgc"],
            "sorted, `notes` and the hidden folder skipped"
        );
        assert_eq!(found[0].family, Family::Feedforward);
        assert_eq!(found[1].family, Family::Recurrent);
        assert_eq!(found[0].config.seed, 1);
        assert!(found[1].source.contains("rgc_intermediate"));
        assert!(found[1].source.contains("/ckpts/model.ckpt.index"));
        assert!(found[0].source.contains("a run folder trained on"));
        let rgc = topology::zoo::get("compact_rgc").unwrap();
        assert_eq!(found[1].params, topology::count::cost(&rgc).unwrap().params);
        let text = list(&found);
        assert!(text.contains("**a_ff** (feedforward") && text.contains("**b_rgc** (recurrent"));
    }

    #[test]
    fn bad_folders_are_errors_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nowhere");
        let e = format!("{:#}", discover(&missing).unwrap_err());
        assert!(e.contains("nowhere") && e.contains("no such folder"), "{e}");
        let e = format!("{:#}", discover(d.path()).unwrap_err());
        assert!(e.contains("no run folder"), "{e}");
        let file = d.path().join("models.txt");
        std::fs::write(&file, "").unwrap();
        let e = format!("{:#}", discover(&file).unwrap_err());
        assert!(e.contains("models.txt: is a file"), "{e}");
        std::fs::remove_file(&file).unwrap();
        let half = d.path().join("half");
        std::fs::create_dir(&half).unwrap();
        std::fs::write(half.join("config.json"), "{}").unwrap();
        let e = format!("{:#}", discover(d.path()).unwrap_err());
        assert!(e.contains("half") && e.contains("no checkpoint"), "{e}");
    }

    #[test]
    fn a_broken_or_replaced_checkpoint_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("m");
        write_run(&run, "compact_rgc", 0);
        let g = discover(d.path()).unwrap().remove(0);
        let data = DataSpec::FashionMnist { dir: None };
        // Another model written over the checkpoint after the folder was read: refused rather
        // than evaluated under this model's key.
        write_run(&run, "compact_feedforward", 0);
        let e = format!(
            "{:#}",
            evaluate(&g, &data, 1, Vec::new(), tensor::Device::Cpu).unwrap_err()
        );
        assert!(
            e.contains(trainer::checkpoint::BEST) && e.contains("replaced by other weights"),
            "{e}"
        );
        // The same model with other weights (another seed) written over it: the spec matches,
        // the fingerprint does not.
        let g = discover(d.path()).unwrap().remove(0);
        write_run(&run, "compact_feedforward", 3);
        let e = format!(
            "{:#}",
            evaluate(&g, &data, 1, Vec::new(), tensor::Device::Cpu).unwrap_err()
        );
        assert!(
            e.contains(trainer::checkpoint::BEST) && e.contains("replaced by other weights"),
            "{e}"
        );
        // A file that is not a checkpoint: the error names the folder and the file.
        std::fs::write(run.join(trainer::checkpoint::BEST), b"not a checkpoint").unwrap();
        let e = format!("{:#}", discover(d.path()).unwrap_err());
        assert!(
            e.contains(&run.display().to_string()) && e.contains(trainer::checkpoint::BEST),
            "{e}"
        );
    }

    #[test]
    fn the_model_key_follows_the_weights() {
        let d = tempfile::tempdir().unwrap();
        write_run(&d.path().join("m"), "compact_rgc", 0);
        let key = |d: &Path| discover(d).unwrap()[0].key().unwrap().id();
        let first = key(d.path());
        assert_eq!(first, key(d.path()), "the same weights, the same key");
        // Other weights in the same folder under the same name: another key.
        write_run(&d.path().join("m"), "compact_rgc", 7);
        assert_ne!(first, key(d.path()));
        // The streamed hash is the workspace's FNV-1a of the whole file.
        let file = d.path().join("m").join(trainer::checkpoint::BEST);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(
            file_fingerprint(&file).unwrap(),
            format!(
                "fnv1a64 {:016x}, {} bytes",
                datasets::cache::fnv1a64(&bytes),
                bytes.len()
            )
        );
    }

    #[test]
    fn figure_6_data_is_the_runs_own_or_says_why_not() {
        let d = tempfile::tempdir().unwrap();
        write_run(&d.path().join("m"), "compact_rgc", 0);
        let mut g = discover(d.path()).unwrap().remove(0);
        let fm = eval_data(&g, None, Some(Path::new("/fm"))).unwrap();
        assert_eq!(
            fm,
            DataSpec::FashionMnist {
                dir: Some("/fm".into())
            }
        );
        g.config.data = DataSpec::Folder {
            root: d.path().join("imagenet"),
        };
        let why = eval_data(&g, None, None).unwrap_err();
        assert!(
            why.contains("--models-data") && why.contains("imagenet"),
            "{why}"
        );
        let given = d.path().join("in");
        for s in ["train", "val"] {
            std::fs::create_dir_all(given.join(s)).unwrap();
        }
        assert_eq!(
            eval_data(&g, Some(&given), None).unwrap(),
            DataSpec::Folder { root: given }
        );
    }

    #[test]
    fn recurrence_from_cells_or_feedback() {
        let rgc = topology::zoo::get("compact_rgc").unwrap();
        assert_eq!(family_of(&rgc), Family::Recurrent);
        let mut ff = super::super::models::feedforward_base().unwrap();
        assert_eq!(family_of(&ff), Family::Feedforward);
        let (first, last) = (ff.areas[0].name.clone(), ff.areas[2].name.clone());
        ff.edges.push(topology::EdgeSpec {
            from: last,
            to: first,
        });
        assert_eq!(family_of(&ff), Family::Recurrent);
    }

    /// A Fashion-MNIST-like folder of a few images: figure 6's data in the runs below.
    pub(crate) fn tiny_fashion(dir: &Path) {
        let img = |n: usize| -> Vec<u8> { (0..n * 784).map(|i| (i * 7 % 256) as u8).collect() };
        let lab = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 10) as u8).collect() };
        datasets::idx::write_fashion_mnist_like(dir, (&img(4), &lab(4)), (&img(6), &lab(6)))
            .unwrap();
    }

    fn cmd(models: &Path, fm: &Path) -> super::super::FiguresCmd {
        super::super::FiguresCmd {
            scale: super::super::Scale::Micro,
            out: None,
            device: "cpu".into(),
            data_dir: Some(fm.into()),
            seeds: None,
            train_images: None,
            eval_images: Some(6),
            recordings: None,
            stimuli: None,
            no_neural: true,
            models: Some(models.into()),
            models_data: None,
        }
    }

    #[test]
    fn a_models_run_evaluates_each_model_once_and_names_them_in_the_report() {
        let d = tempfile::tempdir().unwrap();
        let (models, fm, out) = (
            d.path().join("models"),
            d.path().join("fm"),
            d.path().join("out"),
        );
        write_run(&models.join("rgc"), "compact_rgc", 0);
        write_run(&models.join("ff"), "compact_feedforward", 0);
        tiny_fashion(&fm);
        let c = cmd(&models, &fm);
        let scale = c.scale_config().unwrap();
        let go = || {
            let found = discover(&models).unwrap();
            let path = run(&c, &models, found, &out, tensor::Device::Cpu, &scale).unwrap();
            std::fs::read_to_string(path).unwrap()
        };
        let text = go();
        assert!(
            text.contains("**rgc** (recurrent") && text.contains("**ff** (feedforward"),
            "{text}"
        );
        assert!(
            text.contains(&models.display().to_string()),
            "the source folder"
        );
        assert!(text.contains("no error bars"), "{text}");
        assert!(text.contains("One seed per model: no error bars"), "{text}");
        // Figure 6's test is over seeds: it cannot be made, and the report says why.
        assert!(text.contains("rgc has one seed"), "{text}");
        assert!(text.contains("**Verdict: cannot test.**"), "{text}");
        assert!(out.join("fig6_accuracy_over_time.svg").is_file());
        let svg = std::fs::read_to_string(out.join("fig6_accuracy_over_time.svg")).unwrap();
        assert!(
            svg.lines().any(|l| l.trim() == "rgc") && svg.lines().any(|l| l.trim() == "ff"),
            "both models drawn: {svg}"
        );
        // Two evaluations and the table.
        assert!(text.contains("3 in all, 3 computed"), "{text}");
        assert!(
            go().contains("3 in all, 0 computed"),
            "a rerun reuses every stage"
        );
        // Other weights under the same name: that model's evaluation and the table again.
        write_run(&models.join("rgc"), "compact_rgc", 5);
        let text = go();
        assert!(text.contains("3 in all, 2 computed"), "{text}");
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("| {label} |")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("evaluate ff").ends_with("| cached |"), "{text}");
        assert!(line("evaluate rgc").ends_with("| computed |"), "{text}");
    }

    #[test]
    fn without_data_figure_6_cannot_test_and_says_why() {
        let d = tempfile::tempdir().unwrap();
        let models = d.path().join("models");
        write_run(&models.join("m"), "compact_rgc", 0);
        // An imported model's data: an ImageNet-style folder that is not there.
        let cfg = models.join("m").join("config.json");
        let mut g = discover(&models).unwrap().remove(0);
        g.config.data = DataSpec::Folder {
            root: d.path().join("imagenet"),
        };
        let model = topology::Model::new(g.spec(), tensor::Device::Cpu, 0).unwrap();
        trainer::checkpoint::save(
            &g.checkpoint,
            &g.config,
            &trainer::checkpoint::Progress::default(),
            &model,
            &trainer::Optimizer::new(g.config.optimizer.clone()).unwrap(),
        )
        .unwrap();
        std::fs::write(cfg, serde_json::to_string(&g.config).unwrap()).unwrap();
        let c = cmd(&models, d.path());
        let out = d.path().join("out");
        let scale = c.scale_config().unwrap();
        let found = discover(&models).unwrap();
        let path = run(&c, &models, found, &out, tensor::Device::Cpu, &scale).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("**Verdict: cannot test.** No given model could be evaluated: m:"));
        assert!(text.contains("--models-data"), "{text}");
    }
}
