//! `cargo xtask figures` (issue 17): the paper's figures regenerated in one command, with a
//! `REPORT.md` that states each claim beside our numbers.
//!
//! - [`cache`]: the stage cache (every trained model and table is a stage keyed by a hash of its
//!   configuration and inputs; reruns reuse it, interrupted stages continue);
//! - [`models`]: the models compared (every cell on the compact backbone, feedforward nets made
//!   wider and deeper);
//! - [`training`]: the scales and the training stages;
//! - [`neural`]: the neural stages (a trained model scored by the `neurofit` binary: predictivity
//!   over time and object solution times);
//! - [`study`]: the search stage of figure 3 (a small architecture search, its median model);
//! - [`fig1`], [`fig2`], [`fig3`], [`fig4`], [`fig5`], [`fig6`]: the figures' tables, tests of
//!   the paper's claims, charts (drawn by the `plots` crate) and report sections; [`stats`]: the
//!   statistics they use; [`accuracy`]: the rows and comparisons figures 1 to 3 share;
//! - [`report`]: writes `REPORT.md`;
//! - [`given`]: `--models DIR`, figures 4 to 6 on models the user already has.
//!
//! docs/FIGURES.md describes what each figure uses and what is not built yet.

mod accuracy;
mod cache;
mod fig1;
mod fig2;
mod fig3;
mod fig4;
mod fig5;
mod fig6;
mod given;
mod models;
mod neural;
mod report;
mod stats;
mod study;
mod training;

use anyhow::{Context, Result};
use cache::{Cache, StageKey, Status};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tensor::Device;
use trainer::{Progress, ProgressMode};
pub use training::Scale;
use training::Trained;

#[derive(Args, Debug)]
pub struct FiguresCmd {
    /// micro (a smoke test), quick (about half an hour on 2 cores) or full (to publish).
    #[arg(long, value_enum, default_value = "quick")]
    pub scale: Scale,
    /// Output folder: figures, tables, REPORT.md and the stage cache [default:
    /// runs/figures-SCALE].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// cpu, cuda or cuda:N (not part of the cache keys: a model trained on a GPU is reused on
    /// the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Where Fashion-MNIST is (default: the standard places, see `cargo xtask doctor`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Train with seeds 0..N instead of the scale's (not with --models: nothing is trained).
    #[arg(long, conflicts_with = "models", value_parser = trainer::count_arg::at_least_one::<u64>)]
    pub seeds: Option<u64>,
    /// Clutter images to train on instead of the scale's (not with --models).
    #[arg(long, conflicts_with = "models", value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub train_images: Option<usize>,
    /// Clutter images to validate on instead of the scale's.
    #[arg(long, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub eval_images: Option<usize>,
    /// Figures 4 and 5 against this Brain-Score assembly (.nc, or neurofit's plain .h5) instead
    /// of the in-silico recordings.
    #[arg(long, requires = "stimuli", conflicts_with = "no_neural")]
    pub recordings: Option<PathBuf>,
    /// The assembly's stimulus set (its CSV, or the folder holding it).
    #[arg(long, requires = "recordings")]
    pub stimuli: Option<PathBuf>,
    /// Leave out figures 4 and 5 (they run the neurofit binary, which needs HDF5 and OpenBLAS).
    #[arg(long)]
    pub no_neural: bool,
    /// Figures 4 to 6 on the models in this folder instead of training any: each subfolder that
    /// is a run folder (config.json and a checkpoint, as `cargo xtask import --out` and `cargo
    /// xtask train --out` write them) is one model, named by its folder [default output:
    /// runs/figures-models].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// With --models: ImageNet-style class folders (train/ and val/) to evaluate imported
    /// ImageNet models on for figure 6 (default: the folder their config.json names).
    #[arg(long, requires = "models")]
    pub models_data: Option<PathBuf>,
}

impl FiguresCmd {
    /// The scale's settings with the overrides given.
    fn scale_config(&self) -> anyhow::Result<training::ScaleConfig> {
        let mut c = self.scale.config();
        if let Some(n) = self.seeds {
            c.seeds = (0..n).collect();
        }
        if let Some(n) = self.train_images {
            c.train_images = n;
        }
        if let Some(n) = self.eval_images {
            c.eval_images = n;
        }
        Ok(c)
    }

    /// Checks what can be checked before anything runs: the recordings are read only after
    /// every model has trained, so a mistyped path would otherwise fail hours in.
    fn check_paths(&self) -> anyhow::Result<()> {
        if let Some(r) = &self.recordings {
            anyhow::ensure!(
                r.is_file(),
                "--recordings {}: no such file (expected a Brain-Score assembly .nc, or \
                 neurofit's plain .h5)",
                r.display()
            );
        }
        if let Some(s) = &self.stimuli {
            anyhow::ensure!(
                s.exists(),
                "--stimuli {}: no such file or folder (expected the stimulus set's CSV, or the \
                 folder holding it)",
                s.display()
            );
        }
        if let Some(d) = &self.data_dir {
            anyhow::ensure!(
                d.is_dir(),
                "--data-dir {}: no such folder (expected the folder holding Fashion-MNIST's IDX \
                 files)",
                d.display()
            );
        }
        if let Some(out) = &self.out {
            anyhow::ensure!(
                !out.exists() || out.is_dir(),
                "--out {}: is a file (expected a folder, created if missing)",
                out.display()
            );
        }
        Ok(())
    }
}

/// One stage as the report lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct StageLine {
    pub label: String,
    pub id: String,
    pub status: Status,
}

/// Runs stages through the cache and shows progress per stage (a bar on a terminal, a line per
/// stage otherwise).
struct Runner<'c> {
    cache: &'c Cache,
    progress: Progress,
    done: u64,
    lines: Vec<StageLine>,
    /// Raised by a stop signal: no further stage is started.
    stop: Option<Arc<AtomicBool>>,
}

impl<'c> Runner<'c> {
    fn new(cache: &'c Cache, total: u64, mode: ProgressMode) -> Self {
        Runner {
            cache,
            progress: Progress::new("figures", total, mode).with_interval(Default::default()),
            done: 0,
            lines: Vec::new(),
            stop: None,
        }
    }

    fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn run<T: Serialize + DeserializeOwned>(
        &mut self,
        key: &StageKey,
        label: &str,
        compute: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        if self.cache.get::<T>(key)?.is_none() {
            if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                anyhow::bail!("stopped before {label}");
            }
            self.progress.set(self.done, format!("{label}: running"));
        }
        let (value, status) = self.cache.run(key, compute)?;
        self.done += 1;
        match status {
            Status::Cached => self.progress.skip_to(self.done, format!("{label}: cached")),
            Status::Computed => self.progress.set(self.done, format!("{label}: done")),
        }
        self.lines.push(StageLine {
            label: label.to_string(),
            id: key.id(),
            status,
        });
        Ok(value)
    }

    fn finish(self) -> Vec<StageLine> {
        self.progress.finish();
        self.lines
    }
}

/// Runs the command; a stop signal (Ctrl-C, SIGTERM, SIGHUP, SIGUSR1) ends it with status 130
/// once the running stage has stopped (a training stage writes its checkpoint; the search and
/// the neural stages finish first), and the same command continues from there.
pub fn run(cmd: &FiguresCmd) -> Result<()> {
    // With --models nothing is trained and no stage checks the flag: a signal ends the command
    // at once, as by default (a stage's result is written atomically, so only the running
    // stage is lost).
    let stop = match cmd.models {
        None => Some(crate::stop::stop_flag()?),
        Some(_) => None,
    };
    match run_stages(cmd, stop.clone().unwrap_or_default()) {
        Err(e) if stop.is_some_and(|s| s.load(Ordering::SeqCst)) => {
            eprintln!(
                "stopped ({e:#}); the stages done are cached, and the same command continues \
                 from there (a training stage from its checkpoint)"
            );
            std::process::exit(crate::stop::STOPPED)
        }
        r => r,
    }
}

fn run_stages(cmd: &FiguresCmd, stop: Arc<AtomicBool>) -> Result<()> {
    let device: Device = cmd.device.parse().map_err(anyhow::Error::msg)?;
    crate::train::check_device(device)?;
    let scale = cmd.scale_config()?;
    cmd.check_paths()?;
    let out = cmd.out.clone().unwrap_or_else(|| {
        let name = match cmd.models {
            Some(_) => "figures-models".to_string(),
            None => format!("figures-{}", scale_name(cmd.scale)),
        };
        crate::workspace_root().join("runs").join(name)
    });
    // Every input is checked before the output folder is made, so a mistyped path leaves no
    // empty folder behind: a bad --models folder, or training data that cannot be read.
    let create_out = || -> Result<()> {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        crate::doctor::install_missing_if_root();
        Ok(())
    };
    if let Some(dir) = &cmd.models {
        let models = given::discover(dir)?;
        create_out()?;
        let path = given::run(cmd, dir, models, &out, device, &scale)?;
        println!("{}", path.display());
        return Ok(());
    }
    let fingerprint = training::data_fingerprint(cmd.data_dir.as_deref())?;
    create_out()?;
    let data = training::data_spec(&scale, cmd.data_dir.as_deref());
    let matched = models::matched_size_set()?;
    let fig1_ids: Vec<String> = matched.iter().map(|m| m.id.clone()).collect();
    let mut models = matched;
    models.extend(models::depth_series()?);
    let fig2_ids: Vec<String> = models
        .iter()
        .filter(|m| fig2::in_figure(&m.id))
        .map(|m| m.id.clone())
        .collect();
    let fig2_sizes = models
        .iter()
        .filter(|m| fig2_ids.contains(&m.id))
        .map(|m| {
            Ok(fig2::ModelSize {
                model: m.id.clone(),
                units: models::units(&m.spec)?,
                areas: m.spec.areas.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut plan = Vec::new();
    for m in &models {
        for &seed in &scale.seeds {
            let (config, key) = train_key(m, seed, &scale, &data, device, &fingerprint)?;
            plan.push((m, seed, config, key));
        }
    }
    let search_plan = SearchPlan::new(
        study::SearchScale::of(cmd.scale),
        &scale,
        cmd.data_dir.as_deref(),
        device,
        &fingerprint,
    )?;
    let cache = Cache::new(&out);
    // A full-scale stage trains for up to an hour: a log (a batch job's stderr) gets the
    // trainer's progress lines between the stage lines; a terminal keeps the one stage bar.
    let log_lines = !std::io::stderr().is_terminal();
    let neural_stages: u64 = if cmd.no_neural {
        0
    } else {
        let ns = neural::NeuralScale::of(cmd.scale);
        plan.iter()
            .filter(|(m, ..)| ns.models.contains(&m.id))
            .map(|(m, ..)| neural::stages_of(m.family, &neural::AreaRule::of(&m.spec)))
            .sum::<u64>()
            + 2
    };
    let mut runner = Runner::new(
        &cache,
        plan.len() as u64 + 5 + scale.seeds.len() as u64 + neural_stages,
        ProgressMode::Auto,
    )
    .with_stop(Arc::clone(&stop));
    let mut trained = Vec::new();
    let mut trained_models = Vec::new();
    let mut train_keys = Vec::new();
    for (m, seed, config, key) in plan {
        let label = format!("train {} (seed {seed})", m.id);
        let t = runner.run(&key, &label, |work| {
            training::train(m, config, work, &out, Some(stop.clone()), log_lines)
        })?;
        trained.push(t);
        trained_models.push(m);
        train_keys.push(key);
    }
    let references: Vec<(Trained, &StageKey)> = trained
        .iter()
        .zip(&train_keys)
        .filter(|(t, _)| fig3::REFERENCES.contains(&t.id.as_str()))
        .map(|(t, k)| (t.clone(), k))
        .collect();
    let (searched, median_runs, t3) = figure3(
        &mut runner,
        &search_plan,
        &references,
        &scale.seeds,
        |m, seed| train_key(m, seed, &scale, &data, device, &fingerprint),
        |work| {
            study::run(
                &search_plan.scale,
                search_plan.config.clone(),
                &search_plan.template,
                work,
            )
        },
        |m, config, work| training::train(m, config, work, &out, Some(stop.clone()), log_lines),
    )?;
    let recordings = recordings_of(cmd);
    let neural_scale = neural::NeuralScale::of(cmd.scale);
    let mut scored = Vec::new();
    let mut neural_keys = Vec::new();
    if !cmd.no_neural {
        for ((t, key), m) in trained.iter().zip(&train_keys).zip(trained_models.iter()) {
            if !neural_scale.models.contains(&t.id) {
                continue;
            }
            let rule = neural::AreaRule::of(&m.spec);
            for &mapping in neural::Mapping::for_family(t.family) {
                let config = neural::stage_config(&neural_scale, mapping, &recordings)?;
                let nkey = StageKey::new("neural", &config, &[key])?;
                let what = format!("{} (seed {}, {})", t.id, t.seed, mapping.words());
                let subject = neural::Subject {
                    id: &t.id,
                    family: t.family,
                    seed: t.seed,
                    params: t.params,
                    areas: m.spec.areas.iter().map(|a| a.name.clone()).collect(),
                };
                let run_dir = out.join(&t.run_dir);
                let (s, k) = neural_stage(
                    &mut runner,
                    &subject,
                    &rule,
                    mapping,
                    &nkey,
                    &what,
                    |work| {
                        neural::score(
                            &subject,
                            &run_dir,
                            work,
                            &neural_scale,
                            mapping,
                            &recordings,
                        )
                    },
                )?;
                scored.push(s);
                neural_keys.push(k);
            }
        }
    }
    // Each table reads the runs of its own models (figure 1's keys are those it had before
    // figure 2's deeper nets joined the plan, so its cached table stays valid).
    let runs_of = |ids: &[String]| -> (Vec<Trained>, Vec<&StageKey>) {
        trained
            .iter()
            .zip(&train_keys)
            .filter(|(t, _)| ids.contains(&t.id))
            .map(|(t, k)| (t.clone(), k))
            .unzip()
    };
    let (fig1_runs, inputs) = runs_of(&fig1_ids);
    let key = StageKey::new("table-fig1", &TABLES_VERSION, &inputs)?;
    let t1 = runner.run(&key, "table: figure 1", |_| fig1::table(&fig1_runs))?;
    let (fig2_runs, inputs2) = runs_of(&fig2_ids);
    let key = StageKey::new("table-fig2", &(TABLES_VERSION, &fig2_sizes), &inputs2)?;
    let t2 = runner.run(&key, "table: figure 2", |_| {
        fig2::table(&fig2_runs, &fig2_sizes)
    })?;
    let key = StageKey::new("table-fig6", &TABLES_VERSION, &inputs)?;
    let t6 = runner.run(&key, "table: figure 6", |_| fig6::table(&fig1_runs))?;
    let neural_tables = neural_tables(&mut runner, &scored, &neural_keys, cmd.no_neural)?;
    let stages = runner.finish();
    let data_words = format!(
        "clutter variant of Fashion-MNIST (difficulty {}), {} training and {} validation images",
        scale.difficulty, scale.train_images, scale.eval_images
    );
    write_json(&out.join(format!("{}.json", fig1::STEM)), &t1)?;
    write_text(&out.join(format!("{}.csv", fig1::STEM)), &fig1::csv(&t1))?;
    let w1 = fig1::draw(&t1, &out, &data_words)?;
    no_png_note(&w1);
    write_json(&out.join(format!("{}.json", fig2::STEM)), &t2)?;
    write_text(&out.join(format!("{}.csv", fig2::STEM)), &fig2::csv(&t2))?;
    let w2 = fig2::draw(&t2, &out)?;
    w2.iter().for_each(no_png_note);
    write_json(&out.join(format!("{}.json", fig3::STEM)), &t3)?;
    let (trials_csv, models_csv) = fig3::csv(&t3);
    write_text(&out.join(format!("{}.csv", fig3::STEM)), &trials_csv)?;
    write_text(&out.join(format!("{}_models.csv", fig3::STEM)), &models_csv)?;
    let w3 = fig3::draw(&t3, &out)?;
    w3.iter()
        .filter_map(|w| w.as_ref().ok())
        .for_each(no_png_note);
    let search_words = search_plan.words(&searched);
    let mut sections = vec![
        fig1::section(&t1, &w1, &data_words),
        fig2::section(&t2, &w2, &data_words),
        fig3::section(&t3, &w3, &data_words, &search_words),
    ];
    if let Some((t4, t5)) = &neural_tables {
        let neural_words = format!("{}; models trained on the {data_words}", recordings.words());
        sections.extend(neural_sections(
            &out,
            t4,
            t5,
            &recordings,
            &neural_words,
            None,
        )?);
    }
    sections.push(fig6_section(&out, &t6, &data_words, None)?);
    let path = report::write(
        &out,
        &report::Context {
            command: report::command_line(),
            scale: cmd.scale,
            scale_config: &scale,
            data: &data,
            data_fingerprint: &fingerprint,
            device,
        },
        &trained
            .iter()
            .chain(&median_runs)
            .cloned()
            .collect::<Vec<_>>(),
        &stages,
        &sections,
    )?;
    println!("{}", path.display());
    Ok(())
}

/// Width and height of the figures' SVGs (the PNGs are twice that).
const CHART_SIZE: (u32, u32) = (860, 520);

/// The recordings figures 4 and 5 score against.
fn recordings_of(cmd: &FiguresCmd) -> neural::Recordings {
    match (&cmd.recordings, &cmd.stimuli) {
        (Some(r), Some(s)) => neural::Recordings::Given {
            recordings: r.clone(),
            stimuli: s.clone(),
        },
        _ => neural::Recordings::InSilico,
    }
}

/// A model's neural stage `key` for `mapping` (`score` runs neurofit in its work folder) and,
/// for a model whose `rule` is a known area map, the regions stage over it, which reads the
/// neural stage's neurofit output again with the map: the scores the tables read and the key of
/// the stage that holds them. `what` names the model and mapping in the stages' labels.
fn neural_stage(
    runner: &mut Runner<'_>,
    subject: &neural::Subject<'_>,
    rule: &neural::AreaRule,
    mapping: neural::Mapping,
    key: &StageKey,
    what: &str,
    score: impl FnOnce(&Path) -> Result<neural::Scored>,
) -> Result<(neural::Scored, StageKey)> {
    let fit = runner.run(key, &format!("neural {what}"), score)?;
    let map = match (rule, mapping) {
        (neural::AreaRule::Known(map), m) if m.reads_areas() => map,
        _ => return Ok((fit, key.clone())),
    };
    let regions = neural::regions_key(map, key)?;
    let work = runner.cache.work_dir(key);
    let scored = runner.run(&regions, &format!("regions {what}"), |_| {
        neural::rescore(subject, mapping, map, &fit, &work)
    })?;
    Ok((scored, regions))
}

/// The table stages of figures 4 and 5 over the neural stages `keys` (none with --no-neural).
fn neural_tables(
    runner: &mut Runner<'_>,
    scored: &[neural::Scored],
    keys: &[StageKey],
    no_neural: bool,
) -> Result<Option<(fig4::Table, fig5::Table)>> {
    if no_neural {
        return Ok(None);
    }
    let inputs: Vec<&StageKey> = keys.iter().collect();
    let key = StageKey::new("table-fig4", &TABLES_VERSION, &inputs)?;
    let t4 = runner.run(&key, "table: figure 4", |_| fig4::table(scored))?;
    let key = StageKey::new("table-fig5", &TABLES_VERSION, &inputs)?;
    let t5 = runner.run(&key, "table: figure 5", |_| fig5::table(scored))?;
    Ok(Some((t4, t5)))
}

fn no_png_note(w: &plots::Written) {
    if let Err(why) = &w.png {
        eprintln!("{}: no PNG: {why}", w.svg.display());
    }
}

/// Writes figures 4 and 5 (JSON, CSV, charts) and returns their report sections; `who` names
/// the models (default: those of figure 1).
fn neural_sections(
    out: &Path,
    t4: &fig4::Table,
    t5: &fig5::Table,
    recordings: &neural::Recordings,
    words: &str,
    who: Option<&str>,
) -> Result<Vec<String>> {
    write_json(&out.join(format!("{}.json", fig4::STEM)), t4)?;
    write_text(&out.join(format!("{}.csv", fig4::STEM)), &fig4::csv(t4))?;
    let w4 = fig4::draw(t4, out, &recordings.words())?;
    w4.iter().for_each(|(_, w)| no_png_note(w));
    write_json(&out.join(format!("{}.json", fig5::STEM)), t5)?;
    write_text(&out.join(format!("{}.csv", fig5::STEM)), &fig5::csv(t5))?;
    let w5 = if t5.rows.iter().any(|r| r.spearman_mean.is_finite()) {
        Some(fig5::draw(t5, out, &recordings.words())?)
    } else {
        None
    };
    w5.iter().for_each(no_png_note);
    Ok(vec![
        fig4::section(t4, &w4, words, who),
        fig5::section(t5, w5.as_ref(), words, who),
    ])
}

/// Writes figure 6 (JSON, CSVs, chart) and returns its report section.
fn fig6_section(out: &Path, t6: &fig6::Table, data: &str, who: Option<&str>) -> Result<String> {
    write_json(&out.join(format!("{}.json", fig6::STEM)), t6)?;
    let (steps_csv, decoders_csv) = fig6::csv(t6);
    write_text(&out.join(format!("{}.csv", fig6::STEM)), &steps_csv)?;
    write_text(
        &out.join(format!("{}_decoders.csv", fig6::STEM)),
        &decoders_csv,
    )?;
    let w6 = fig6::draw(t6, out, data)?;
    no_png_note(&w6);
    Ok(fig6::section(t6, &w6, data, who))
}

/// Part of every table stage's key: bumped when a table's computation or stored form changes
/// (2: figures 1 to 3 share one comparison record, `model`/`size`/`reference_size`).
const TABLES_VERSION: u32 = 2;

/// The configuration and stage key of training `m` with `seed`.
fn train_key(
    m: &models::Candidate,
    seed: u64,
    scale: &training::ScaleConfig,
    data: &trainer::DataSpec,
    device: Device,
    fingerprint: &str,
) -> Result<(trainer::TrainConfig, StageKey)> {
    let config = training::train_config(m, seed, scale, data, device)?;
    let key = StageKey::new("train", &training::stage_config(&config, fingerprint), &[])?;
    Ok((config, key))
}

/// Figure 3's search: its scale, the study's configuration, the trials' training and the stage's
/// key.
struct SearchPlan {
    scale: study::SearchScale,
    config: search::convrnn::ModelStudyConfig,
    template: trainer::TrainConfig,
    key: StageKey,
}

impl SearchPlan {
    fn new(
        scale: study::SearchScale,
        figures: &training::ScaleConfig,
        data_dir: Option<&Path>,
        device: Device,
        fingerprint: &str,
    ) -> Result<Self> {
        let config = study::study_config(&scale)?;
        let template = study::trial_template(&scale, figures, data_dir, device)?;
        let key = StageKey::new(
            "search",
            &study::stage_config(&scale, &config, &template, fingerprint)?,
            &[],
        )?;
        Ok(SearchPlan {
            scale,
            config,
            template,
            key,
        })
    }

    /// What the report says the search was.
    fn words(&self, searched: &study::Searched) -> String {
        let s = &self.scale;
        format!(
            "A search over `{}`'s general-RGC space (`search`'s default space: every knob of the \
             general RGC in conv2 and conv3, the conv3 → conv2 feedback edge, learning rate and \
             weight decay), TPE after {} random trials, no pruning, {} trials each trained one \
             epoch on {} clutter images and validated on {} (seed {}, batch {}); the search took \
             {} CPU s",
            study::BASE,
            s.startup_trials,
            s.trials,
            s.train_images,
            s.eval_images,
            s.seed,
            self.template.batch_size,
            searched
                .cpu_seconds
                .map_or("an unknown number of".into(), |c| format!("{c:.0}"))
        )
    }
}

/// Figure 3's stages: the search (`search` computes it in the stage's work folder), the median
/// model of its top k trained with every seed (`train_key` gives each stage's configuration and
/// key, `train` trains it), and the table over them and the `references`' runs. The median
/// model's stages are keyed by its configuration (its spec), so a changed search recomputes the
/// search and the table, and the median model only where its spec changed.
fn figure3(
    runner: &mut Runner<'_>,
    plan: &SearchPlan,
    references: &[(Trained, &StageKey)],
    seeds: &[u64],
    train_key: impl Fn(&models::Candidate, u64) -> Result<(trainer::TrainConfig, StageKey)>,
    search: impl FnOnce(&Path) -> Result<study::Searched>,
    mut train: impl FnMut(&models::Candidate, trainer::TrainConfig, &Path) -> Result<Trained>,
) -> Result<(study::Searched, Vec<Trained>, fig3::Table)> {
    let label = format!("search: {} trials over {}", plan.scale.trials, study::BASE);
    let searched = runner.run(&plan.key, &label, search)?;
    let mut runs: Vec<Trained> = references.iter().map(|(t, _)| t.clone()).collect();
    let mut keys: Vec<StageKey> = vec![plan.key.clone()];
    keys.extend(references.iter().map(|(_, k)| (*k).clone()));
    let mut median_runs = Vec::new();
    if let Ok(m) = &searched.median {
        let median = models::Candidate {
            id: study::MEDIAN_ID.into(),
            family: models::Family::Recurrent,
            spec: m.spec.clone(),
        };
        for &seed in seeds {
            let (config, key) = train_key(&median, seed)?;
            let label = format!("train {} (seed {seed})", median.id);
            let t = runner.run(&key, &label, |work| train(&median, config, work))?;
            median_runs.push(t);
            keys.push(key);
        }
    }
    runs.extend(median_runs.iter().cloned());
    let inputs: Vec<&StageKey> = keys.iter().collect();
    let key = StageKey::new("table-fig3", &TABLES_VERSION, &inputs)?;
    let table = runner.run(&key, "table: figure 3", |_| fig3::table(&searched, &runs))?;
    Ok((searched, median_runs, table))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    tensor::io::write_file_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    write_text(path, &serde_json::to_string_pretty(value)?)
}

pub fn scale_name(s: Scale) -> &'static str {
    match s {
        Scale::Micro => "micro",
        Scale::Quick => "quick",
        Scale::Full => "full",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::Verdict;

    fn parse(args: &[&str]) -> Result<FiguresCmd, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            cmd: FiguresCmd,
        }
        let argv = std::iter::once("figures").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.cmd)
    }

    /// Flags that would be ignored are refused, naming the flag they clash with: nothing trains
    /// with --models, and --no-neural reads no recordings.
    #[test]
    fn flags_that_would_be_ignored_are_refused() {
        for (args, clash) in [
            (&["--models", "m", "--seeds", "3"][..], "--models"),
            (&["--models", "m", "--train-images", "10"][..], "--models"),
            (
                &["--no-neural", "--recordings", "r.nc", "--stimuli", "s"][..],
                "--no-neural",
            ),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(
                err.contains("cannot be used with") && err.contains(clash),
                "{err}"
            );
        }
        assert!(parse(&["--models", "m", "--eval-images", "10"]).is_ok());
        let bad = parse(&["--scale", "bogus"]).unwrap_err().to_string();
        assert!(bad.contains("micro") && bad.contains("full"), "{bad}");
    }

    /// Recordings that are not there and an --out that is a file fail before anything runs.
    #[test]
    fn missing_recordings_and_a_file_as_out_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let (f, missing) = (file.to_str().unwrap(), dir.path().join("nope.nc"));
        let missing = missing.to_str().unwrap();
        let err = |args: &[&str]| parse(args).unwrap().check_paths().unwrap_err().to_string();
        let e = err(&["--recordings", missing, "--stimuli", f]);
        assert!(
            e.contains("--recordings") && e.contains("no such file"),
            "{e}"
        );
        let e = err(&["--recordings", f, "--stimuli", missing]);
        assert!(e.contains("--stimuli") && e.contains("no such file"), "{e}");
        let e = err(&["--out", f]);
        assert!(
            e.contains("--out") && e.contains("expected a folder"),
            "{e}"
        );
        let d = dir.path().to_str().unwrap();
        parse(&["--recordings", f, "--stimuli", d, "--out", d])
            .unwrap()
            .check_paths()
            .unwrap();
    }

    /// Data that is not there or cannot be read fails before the output folder is made.
    #[test]
    fn bad_data_leaves_no_output_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let missing = dir.path().join("nope");
        let o = out.to_str().unwrap();
        for (args, says) in [
            (
                vec!["--data-dir", missing.to_str().unwrap(), "--out", o],
                "--data-dir",
            ),
            // A folder without Fashion-MNIST in it: read, and refused, before --out is made.
            (
                vec!["--data-dir", empty.to_str().unwrap(), "--out", o],
                "Fashion-MNIST",
            ),
            (
                vec!["--models", missing.to_str().unwrap(), "--out", o],
                "--models",
            ),
        ] {
            let mut args = args;
            args.extend(["--scale", "micro", "--no-neural"]);
            let e = format!("{:#}", run(&parse(&args).unwrap()).unwrap_err());
            assert!(e.contains(says), "{args:?}: {e}");
            assert!(!out.exists(), "{args:?} created {}", out.display());
        }
    }

    #[test]
    fn the_runner_counts_and_labels_stages() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = StageKey::new("table", &1, &[]).unwrap();
        let mut r = Runner::new(&cache, 2, ProgressMode::Hidden);
        assert_eq!(r.run(&key, "t", |_| Ok(5u8)).unwrap(), 5);
        assert_eq!(r.run(&key, "t again", |_| Ok(6u8)).unwrap(), 5);
        let lines = r.finish();
        assert_eq!(
            lines.iter().map(|l| l.status).collect::<Vec<_>>(),
            [Status::Computed, Status::Cached]
        );
        assert_eq!(lines[1].label, "t again");
    }

    /// A released model whose neural stage was computed before the area map (its result read by
    /// position, its neurofit output in its work folder): the tables now read a regions stage
    /// under another key, computed from that output without running neurofit again; a compact
    /// model keeps its neural stage's key and result.
    #[test]
    fn a_released_models_positional_neural_stage_is_read_again_with_its_map() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let ns = neural::NeuralScale::of(Scale::Micro);
        let mapping = neural::Mapping::Recurrent;
        let config = neural::stage_config(&ns, mapping, &neural::Recordings::InSilico).unwrap();
        let spec = topology::zoo::get("rgc_intermediate").unwrap();
        let model_key = StageKey::new("model", &"rgc_intermediate", &[]).unwrap();
        let nkey = StageKey::new("neural", &config, &[&model_key]).unwrap();
        let subject = neural::Subject {
            id: "rgc_intermediate",
            family: models::Family::Recurrent,
            seed: 0,
            params: 1,
            areas: spec.areas.iter().map(|a| a.name.clone()).collect(),
        };
        // conv9 predicts V4 best of all, conv6 best of the mapped conv5–6.
        let json = neural::tests::intermediate_json(|a, r| match (a, r) {
            (9, "V4") => 0.8,
            (6, "V4") => 0.5,
            (10, "IT") => 0.3,
            _ => 0.1,
        });
        let fake_neurofit = |work: &Path| -> Result<neural::Scored> {
            let path = neural::neurofit_output(work);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(&path, json.to_string())?;
            neural::parse(&subject, mapping, &neural::AreaRule::Positional, &json)
        };
        // The earlier run: the neural stage alone, V4 read from conv9.
        let mut r = Runner::new(&cache, 1, ProgressMode::Hidden);
        let old = r.run(&nkey, "neural", fake_neurofit).unwrap();
        let v4 = |s: &neural::Scored| {
            s.regions
                .iter()
                .find(|x| x.region == "V4")
                .unwrap()
                .track
                .clone()
        };
        assert_eq!(v4(&old), "conv9");
        let rule = neural::AreaRule::of(&spec);
        let run = || {
            let mut r = Runner::new(&cache, 2, ProgressMode::Hidden);
            let (s, k) = neural_stage(&mut r, &subject, &rule, mapping, &nkey, "m", |_| {
                anyhow::bail!("neurofit ran again")
            })
            .unwrap();
            let lines: Vec<(String, Status)> = r
                .finish()
                .into_iter()
                .map(|l| (l.label, l.status))
                .collect();
            (s, k, lines)
        };
        let (s, k, lines) = run();
        assert_eq!(v4(&s), "conv6");
        assert_ne!(k, nkey, "the tables read another key than before");
        assert_eq!(
            lines,
            [
                ("neural m".to_string(), Status::Cached),
                ("regions m".to_string(), Status::Computed)
            ]
        );
        let (again, k2, lines) = run();
        assert_eq!((again, k2), (s, k));
        assert!(
            lines.iter().all(|(_, st)| *st == Status::Cached),
            "{lines:?}"
        );
        // A compact model: the positional rule, its neural stage's key and result as before.
        let compact = topology::zoo::get("compact_rgc").unwrap();
        let rule = neural::AreaRule::of(&compact);
        let mut r = Runner::new(&cache, 1, ProgressMode::Hidden);
        let (s, k) = neural_stage(&mut r, &subject, &rule, mapping, &nkey, "c", |_| {
            anyhow::bail!("not run: cached")
        })
        .unwrap();
        assert_eq!((v4(&s), k), ("conv9".to_string(), nkey));
        assert_eq!(r.finish().len(), 1);
    }

    /// Runs figure 3's stages with a fake search and fake training, returning which stages
    /// computed (by label) and the table.
    fn figure3_once(
        cache: &Cache,
        trials: usize,
        median: &str,
        searches: &std::cell::Cell<u32>,
    ) -> (Vec<(String, Status)>, fig3::Table) {
        let scale = Scale::Micro.config();
        let data = training::data_spec(&scale, None);
        let plan = SearchPlan::new(
            study::SearchScale {
                trials,
                ..study::SearchScale::of(Scale::Micro)
            },
            &scale,
            None,
            Device::Cpu,
            "fp",
        )
        .unwrap();
        let ref_keys: Vec<StageKey> = ["rgc", "ff_base"]
            .iter()
            .map(|id| StageKey::new("train", id, &[]).unwrap())
            .collect();
        let references: Vec<(Trained, &StageKey)> = fig3::tests::runs(0.6)
            .into_iter()
            .filter(|t| t.id != study::MEDIAN_ID)
            .map(|t| {
                let k = &ref_keys[usize::from(t.id == "ff_base")];
                (t, k)
            })
            .collect();
        let mut runner = Runner::new(cache, 5, ProgressMode::Hidden);
        let (_, median_runs, table) = figure3(
            &mut runner,
            &plan,
            &references,
            &scale.seeds,
            |m, seed| train_key(m, seed, &scale, &data, Device::Cpu, "fp"),
            |_| {
                searches.set(searches.get() + 1);
                let mut s = fig3::tests::searched();
                if let Ok(m) = &mut s.median {
                    m.spec = topology::zoo::get_or_err(median).unwrap();
                }
                Ok(s)
            },
            |m, config, _| {
                Ok(fig1::tests::run(
                    &m.id,
                    m.family,
                    200_000,
                    config.seed,
                    0.6 + 0.004 * config.seed as f64,
                ))
            },
        )
        .unwrap();
        assert_eq!(median_runs.len(), scale.seeds.len());
        let lines = runner
            .finish()
            .into_iter()
            .map(|l| (l.label, l.status))
            .collect();
        (lines, table)
    }

    #[test]
    fn a_changed_search_recomputes_the_search_and_what_depends_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let searches = std::cell::Cell::new(0);
        let computed = |lines: &[(String, Status)]| -> Vec<String> {
            lines
                .iter()
                .filter(|(_, s)| *s == Status::Computed)
                .map(|(l, _)| l.clone())
                .collect()
        };
        let (lines, table) = figure3_once(&cache, 3, "compact_rgc", &searches);
        assert_eq!(computed(&lines).len(), 1 + 3 + 1, "{lines:?}");
        assert_eq!(table.verdict, Verdict::Supports, "{}", table.reason);
        assert_eq!(searches.get(), 1);
        // A rerun reads everything back.
        let (lines, again) = figure3_once(&cache, 3, "compact_rgc", &searches);
        assert!(computed(&lines).is_empty(), "{lines:?}");
        assert_eq!((again, searches.get()), (table, 1));
        // More trials: the search and the table again; the median model, the same spec, is
        // read back.
        let (lines, _) = figure3_once(&cache, 4, "compact_rgc", &searches);
        assert_eq!(
            computed(&lines),
            ["search: 4 trials over compact_rgc", "table: figure 3"]
        );
        // A search whose median is another model trains that model with every seed.
        let (lines, _) = figure3_once(&cache, 5, "compact_gru", &searches);
        assert_eq!(computed(&lines).len(), 1 + 3 + 1, "{lines:?}");
        assert_eq!(searches.get(), 3);
    }
}
