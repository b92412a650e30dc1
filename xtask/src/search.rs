//! `cargo xtask search` (workers over a shared study), `search report` and `search median`.

use crate::train::TrainArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use search::convrnn::{ModelStudy, ModelStudyConfig, ModelTrial, RgcSpace};
use search::{redact_url, storage_from_url, TrialFailure};
use std::path::{Path, PathBuf};
use std::process::Command;
use trainer::{Control, FitOptions, TrainConfig};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SearchCmd {
    #[command(subcommand)]
    pub action: Option<SearchAction>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum SearchAction {
    /// Best trials, parameter importance, the accuracy-vs-parameters Pareto front, plots.
    Report(ReportArgs),
    /// Writes the "median model" spec of the top K trials (for `cargo xtask train --spec`).
    Median(MedianArgs),
}

/// The variable that names the storage when `--storage` is not given. `--workers` hands the
/// storage to its worker processes this way: a command line is readable by every user of the
/// machine (`ps`), a process's environment only by its owner, and a PostgreSQL URL may carry a
/// password.
const STORAGE_ENV: &str = "CONVRNN_SEARCH_STORAGE";

/// The storage when neither `--storage` nor the variable names one.
const DEFAULT_STORAGE: &str = "sqlite://runs/search/study.db";

#[derive(Args, Debug, Clone)]
pub struct StudyArgs {
    /// `sqlite:///abs/path/study.db`, a file path, or `postgresql://user@host/db` [default:
    /// $CONVRNN_SEARCH_STORAGE, else sqlite://runs/search/study.db]. A password is better given
    /// in the variable than on the command line, which other users can read.
    #[arg(long)]
    pub storage: Option<String>,
    /// The study's name: its key in the storage and its folder under runs/search.
    #[arg(long, default_value = "compact_rgc-clutter", value_parser = study_name)]
    pub study: String,
}

/// A study name, refused where it cannot be one folder name (the default run folder is
/// runs/search/STUDY): empty, a path separator, a control character, or a leading dot.
fn study_name(s: &str) -> Result<String, String> {
    let bad = s.trim().is_empty()
        || s.starts_with('.')
        || s.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        Err(format!(
            "a study name is one folder name (its runs go to runs/search/STUDY): not empty, \
             without `/`, `\\` or control characters, not starting with `.`; got `{}`",
            s.escape_debug()
        ))
    } else {
        Ok(s.to_string())
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub study: StudyArgs,
    /// A search-space JSON file, or the base preset whose default space to use.
    #[arg(long)]
    pub space: Option<String>,
    /// Trials the study should hold in total (shared by every worker).
    #[arg(long, default_value_t = 30, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub trials: usize,
    /// Worker processes to run on this machine (more can join from elsewhere).
    #[arg(long, default_value_t = 1, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub workers: usize,
    /// Where trial runs are written (default: runs/search/STUDY).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The training budget of each trial: the flags of `cargo xtask train`. The model comes from
    /// the space's base (--model names the base when --space is not given).
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub study: StudyArgs,
    #[arg(long)]
    pub json: bool,
    /// Where report.json and the plots go (default: runs/search/STUDY).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 5, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub top_k: usize,
}

#[derive(Args, Debug)]
pub struct MedianArgs {
    #[command(flatten)]
    pub study: StudyArgs,
    #[arg(long, default_value_t = 5, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub top_k: usize,
    /// Output spec file (default: runs/search/STUDY/median_spec.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What a trial's value is: the plots' value axis.
const OBJECTIVE: &str = "objective (validation top-1)";

/// The storage asked for: `--storage`, else the variable's value, else the default.
fn storage_given(flag: Option<&str>, env: Option<String>) -> String {
    flag.map(str::to_string)
        .or(env.filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_STORAGE.to_string())
}

/// Whether a command writes a study (a missing SQLite file and its folder are created) or only
/// reads one (`search report`, `search median`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Access {
    Write,
    Read,
}

/// The storage URL to open. Relative SQLite paths are taken from the workspace root, like every
/// other default path. Reading needs the SQLite file to exist: opening creates it, so a report
/// on a mistyped path wrote an empty database there and said only that the study was missing.
fn storage_url(s: &StudyArgs, access: Access) -> Result<String> {
    let given = storage_given(s.storage.as_deref(), std::env::var(STORAGE_ENV).ok());
    let (url, file) = if let Some(path) = given.strip_prefix("sqlite://") {
        let p = PathBuf::from(path);
        let abs = if p.is_absolute() {
            p
        } else {
            crate::workspace_root().join(p)
        };
        (format!("sqlite://{}", abs.display()), Some(abs))
    } else if given.contains("://") {
        (given, None)
    } else {
        (given.clone(), Some(PathBuf::from(given)))
    };
    match (access, file) {
        (Access::Write, Some(f)) => {
            if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        (Access::Read, Some(f)) => anyhow::ensure!(
            f.is_file(),
            "study storage {}: no such file; `search report` and `search median` read the \
             storage a search wrote (its --storage, or ${STORAGE_ENV})",
            f.display()
        ),
        (_, None) => {}
    }
    Ok(url)
}

fn study_dir(s: &StudyArgs, out: &Option<PathBuf>) -> PathBuf {
    out.clone().unwrap_or_else(|| {
        crate::workspace_root()
            .join("runs")
            .join("search")
            .join(&s.study)
    })
}

pub fn run(cmd: &SearchCmd) -> Result<()> {
    match &cmd.action {
        Some(SearchAction::Report(a)) => report(a),
        Some(SearchAction::Median(a)) => median(a),
        None => search(&cmd.run),
    }
}

/// What `--space` names.
#[derive(Debug, PartialEq)]
enum SpaceArg<'a> {
    File(&'a Path),
    Preset(&'a str),
    /// A path (it ends in `.json` or has a folder in it) that is not there: not a preset name
    /// either, so saying "unknown model" would mislead.
    Missing(&'a Path),
}

impl<'a> SpaceArg<'a> {
    fn of(arg: &'a str) -> Self {
        let path = Path::new(arg);
        if path.is_file() {
            SpaceArg::File(path)
        } else if path.extension().is_some_and(|e| e == "json") || arg.contains('/') {
            SpaceArg::Missing(path)
        } else {
            SpaceArg::Preset(arg)
        }
    }
}

fn search(a: &RunArgs) -> Result<()> {
    if a.workers > 1 {
        return spawn_workers(a);
    }
    crate::doctor::install_missing_if_root();
    let url = storage_url(&a.study, Access::Write)?;
    let template = a.train.to_config()?;
    crate::train::check_device(template.device)?;
    let storage = storage_from_url(&url)?;
    let base_name = a.train.model_name().to_string();
    let seed = a.train.seed.unwrap_or(0);
    let mut config = ModelStudyConfig::default_for(&base_name, seed)?;
    match a.space.as_deref().map(SpaceArg::of) {
        Some(SpaceArg::File(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            config.space.rgc = RgcSpace::from_json(&text)
                .with_context(|| format!("--space {}", path.display()))?;
        }
        Some(SpaceArg::Preset(name)) => config = ModelStudyConfig::default_for(name, seed)?,
        Some(SpaceArg::Missing(path)) => anyhow::bail!(
            "--space {}: no such file (expected a search-space JSON file, or the name of the \
             base preset whose default space to use)",
            path.display()
        ),
        None => {}
    }
    let study = ModelStudy::open(storage, &a.study.study, config)?;
    let dir = study_dir(&a.study, &a.out);
    eprintln!(
        "study `{}` in {}: {} trials in total, base {}, runs under {}",
        a.study.study,
        redact_url(&url),
        a.trials,
        study.config().space.base.name,
        dir.display()
    );
    let summary = study.run_worker(a.trials, &mut |t| {
        let number = t.number();
        let outcome = train_trial(t, &template, &dir);
        if let Some(line) = failure_line(number, &outcome) {
            eprintln!("{line}");
        }
        outcome
    })?;
    eprintln!("{}", summary_line(&summary));
    Ok(())
}

/// A failed trial's reason goes to the store, where only `search report --json` showed it: a
/// user watching a worker saw `failed: 2` and nothing about why.
fn failure_line(number: u64, outcome: &Result<f64, TrialFailure>) -> Option<String> {
    match outcome {
        Err(TrialFailure::Failed(why)) => Some(format!("trial {number}: failed: {why}")),
        _ => None,
    }
}

fn summary_line(s: &search::WorkerSummary) -> String {
    let mut line = format!(
        "worker done: {} complete, {} pruned, {} failed, {} lost",
        s.complete, s.pruned, s.failed, s.lost
    );
    if s.failed > 0 {
        line.push_str(" (the reasons: above, and in `search report --json`)");
    }
    if s.lost > 0 {
        line.push_str(" (lost: taken over by another worker that presumed this one dead)");
    }
    line
}

/// Trains one trial of a ConvRNN study: `template` with the trial's model, learning rate and
/// weight decay, in `dir/trial-NNNN-attempt-A`, reporting each epoch's validation top-1 to the
/// pruner. Returns the last epoch's validation top-1.
pub fn train_trial(
    t: &mut ModelTrial<'_>,
    template: &TrainConfig,
    dir: &Path,
) -> Result<f64, TrialFailure> {
    let (spec, hp) = t.model()?;
    let mut cfg = template.clone();
    cfg.model = spec;
    cfg.lr.base = hp.lr as f32;
    cfg.optimizer = cfg.optimizer.with_weight_decay(hp.weight_decay as f32);
    let params = topology::count::cost(&cfg.model)
        .map_err(|e| TrialFailure::Failed(format!("cannot build the model: {e}")))?
        .params;
    t.set_params_count(params)?;
    let run_dir = dir.join(format!("trial-{:04}-attempt-{}", t.number(), t.attempt()));
    if run_dir.exists() {
        // A re-queued trial restarts from scratch: the dead attempt's partial run is stale.
        std::fs::remove_dir_all(&run_dir)
            .map_err(|e| TrialFailure::Failed(format!("{}: {e}", run_dir.display())))?;
    }
    let number = t.number();
    let mut pruned = false;
    let mut report_err = None;
    let mut on_epoch = |m: &trainer::EpochMetrics| match t.report(m.epoch, m.val_top1) {
        Ok(p) if p.0 => {
            pruned = true;
            Control::Stop
        }
        Ok(_) => Control::Continue,
        Err(e) => {
            report_err = Some(e);
            Control::Stop
        }
    };
    let mut opts = FitOptions::new(&run_dir);
    opts.on_epoch = Some(&mut on_epoch);
    let result = trainer::fit(cfg, opts);
    if let Some(e) = report_err {
        return Err(e.into());
    }
    if pruned {
        eprintln!("trial {number}: pruned");
        return Err(TrialFailure::Pruned);
    }
    let r = result.map_err(|e| TrialFailure::Failed(e.to_string()))?;
    let value = r
        .last()
        .map(|m| m.val_top1)
        .ok_or_else(|| TrialFailure::Failed("no epoch finished".into()))?;
    eprintln!(
        "trial {number}: val top-1 {:.2}% ({params} parameters)",
        100.0 * value
    );
    Ok(value)
}

/// The arguments of one worker process: this command's, with `--workers K` replaced by
/// `--workers 1` and without `--storage` (the workers get the storage in [`STORAGE_ENV`], so no
/// password appears on a command line).
fn worker_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--workers" | "--storage" => {
                it.next();
            }
            a if a.starts_with("--workers=") || a.starts_with("--storage=") => {}
            _ => out.push(arg.clone()),
        }
    }
    out.extend(["--workers".into(), "1".into()]);
    out
}

/// The command that starts one worker: `exe` with `args` (already through [`worker_args`]) and
/// the storage URL in [`STORAGE_ENV`], never on the command line.
fn worker_command(exe: &std::path::Path, args: &[String], url: &str) -> Command {
    let mut c = Command::new(exe);
    c.args(args).env(STORAGE_ENV, url);
    c
}

/// Runs `workers` copies of this command, each a single worker on the shared study.
fn spawn_workers(a: &RunArgs) -> Result<()> {
    let exe = std::env::current_exe().context("finding the xtask executable")?;
    let args = worker_args(&std::env::args().skip(1).collect::<Vec<_>>());
    let url = storage_url(&a.study, Access::Write)?;
    crate::train::check_device(a.train.to_config()?.device)?;
    // Create the study once, so concurrent workers only ever join it.
    let storage = storage_from_url(&url)?;
    let seed = a.train.seed.unwrap_or(0);
    let base = a
        .space
        .clone()
        .unwrap_or_else(|| a.train.model_name().to_string());
    if !PathBuf::from(&base).is_file() {
        ModelStudy::open(
            storage,
            &a.study.study,
            ModelStudyConfig::default_for(&base, seed)?,
        )?;
    }
    let children: Vec<_> = (0..a.workers)
        .map(|_| worker_command(&exe, &args, &url).spawn())
        .collect::<std::io::Result<_>>()
        .context("starting the worker processes")?;
    let mut failed = 0;
    for mut c in children {
        if !c.wait().map(|s| s.success()).unwrap_or(false) {
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} workers failed", a.workers);
    Ok(())
}

fn report(a: &ReportArgs) -> Result<()> {
    let study = ModelStudy::load(
        storage_from_url(&storage_url(&a.study, Access::Read)?)?,
        &a.study.study,
    )?;
    let r = study.report(a.top_k)?;
    let dir = study_dir(&a.study, &a.out);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = r.write(&dir, OBJECTIVE)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "study `{}` (base {}): {} trials {:?}",
        r.study, r.base, r.n_trials, r.states
    );
    println!("{:>6} {:>10} {:>10}", "trial", "val top-1", "params");
    for n in &r.top {
        if let Some(t) = r.trials.iter().find(|t| t.number == *n) {
            println!(
                "{:>6} {:>10} {:>10}",
                t.number,
                t.value.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
                t.params_count.map_or("-".into(), |p| p.to_string())
            );
        }
    }
    println!(
        "Pareto front (accuracy vs parameters): {:?}",
        r.pareto_front.iter().map(|p| p.number).collect::<Vec<_>>()
    );
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn median(a: &MedianArgs) -> Result<()> {
    let study = ModelStudy::load(
        storage_from_url(&storage_url(&a.study, Access::Read)?)?,
        &a.study.study,
    )?;
    let m = study.median(a.top_k)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| study_dir(&a.study, &None).join("median_spec.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&m.spec)?;
    tensor::io::write_file_atomically(&out, json.as_bytes())?;
    println!("{}", median_summary(a.top_k, &m));
    println!(
        "wrote {}; train it with `cargo xtask train --spec {}`",
        out.display(),
        out.display()
    );
    Ok(())
}

/// What `search median` built from: the trials it used, which are fewer than `--top-k` when the
/// study has fewer complete trials (it used to claim "the top 50" of a study with one).
fn median_summary(top_k: usize, m: &search::convrnn::MedianModel) -> String {
    let shortfall = if m.trials.len() < top_k {
        format!(" (--top-k {top_k}, but the study has only that many complete trials)")
    } else {
        String::new()
    };
    format!(
        "median of the top {} trials {:?}{shortfall}: lr {:.3e}, weight decay {:.3e}",
        m.trials.len(),
        m.trials,
        m.hparams.lr,
        m.hparams.weight_decay
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device this build or machine lacks stops the search before it creates the study (it
    /// used to record a failed trial and report the worker done).
    #[test]
    fn an_unusable_device_stops_before_the_study_is_created() {
        if tensor::Tensor::zeros([1], tensor::Device::Cuda(0)).is_ok() {
            eprintln!("skipped: cuda:0 is usable here");
            return;
        }
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            cmd: SearchCmd,
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("study.db");
        for workers in ["1", "2"] {
            let argv = [
                "search",
                "--device",
                "cuda:0",
                "--trials",
                "1",
                "--workers",
                workers,
            ];
            let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            argv.extend(["--storage".into(), db.display().to_string()]);
            let cli = <Cli as clap::Parser>::try_parse_from(&argv).unwrap();
            let err = format!("{:#}", run(&cli.cmd).unwrap_err());
            assert!(err.contains("--device cuda:0"), "{err}");
            assert!(!db.exists(), "the study was created");
        }
    }

    /// A study name is one folder under runs/search: an empty one put the trial runs in
    /// runs/search itself, and `../x` outside it.
    #[test]
    fn study_names_that_are_not_one_folder_are_refused() {
        for ok in ["compact_rgc-clutter", "rgc study 2", "a.b"] {
            assert_eq!(study_name(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "  ", "../x", "a/b", "a\\b", ".hidden", "a\tb"] {
            let e = study_name(bad).unwrap_err();
            assert!(e.contains("one folder name"), "{bad:?}: {e}");
        }
    }

    /// A --space path that is not there is reported as a missing file (it was taken for a preset
    /// name: "unknown model `runs/space.json`; known presets: ...").
    #[test]
    fn a_missing_space_file_is_not_taken_for_a_preset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("space.json");
        std::fs::write(&file, "{}").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(SpaceArg::of(f), SpaceArg::File(&file));
        assert_eq!(SpaceArg::of("compact_rgc"), SpaceArg::Preset("compact_rgc"));
        for missing in ["space2.json", "runs/space"] {
            assert_eq!(SpaceArg::of(missing), SpaceArg::Missing(Path::new(missing)));
        }
    }
    use clap::Parser;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reading_a_missing_sqlite_file_is_an_error_that_creates_nothing() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("sub/none.db");
        for storage in [
            format!("sqlite://{}", missing.display()),
            missing.display().to_string(),
        ] {
            let args = StudyArgs {
                storage: Some(storage),
                study: "s".into(),
            };
            let e = storage_url(&args, Access::Read).unwrap_err().to_string();
            assert!(e.contains("none.db: no such file"), "{e}");
            assert!(!d.path().join("sub").exists(), "reading created the folder");
            storage_url(&args, Access::Write).unwrap();
            assert!(d.path().join("sub").is_dir());
            std::fs::remove_dir(d.path().join("sub")).unwrap();
        }
        let pg = StudyArgs {
            storage: Some("postgresql://ann@db/studies".into()),
            study: "s".into(),
        };
        assert_eq!(
            storage_url(&pg, Access::Read).unwrap(),
            "postgresql://ann@db/studies"
        );
    }

    /// Issue 20: the workers' command lines (readable by every user through `ps`) carried the
    /// storage URL with its password.
    #[test]
    fn worker_command_lines_carry_no_storage_url() {
        let argv = strings(&[
            "search",
            "--storage",
            "postgresql://ann:s3cret@db/studies",
            "--workers",
            "3",
            "--trials",
            "5",
            "--storage=postgresql://ann:s3cret@db/other",
            "--workers=2",
            "--model",
            "compact_rgc",
        ]);
        let w = worker_args(&argv);
        assert!(!w.join(" ").contains("s3cret"), "{w:?}");
        assert_eq!(
            w,
            strings(&[
                "search",
                "--trials",
                "5",
                "--model",
                "compact_rgc",
                "--workers",
                "1"
            ])
        );
        // What the worker parses: one worker, the storage left to the environment.
        let cli = crate::Cli::try_parse_from(std::iter::once("cargo xtask".to_string()).chain(w))
            .unwrap_or_else(|e| panic!("{e}"));
        let crate::Cmd::Search(cmd) = cli.command else {
            panic!("the worker's arguments parse to another command");
        };
        assert_eq!(cmd.run.workers, 1);
        assert_eq!(cmd.run.study.storage, None);
    }

    /// The command a worker is started with: the URL (password included) only in its
    /// environment, which only its owner can read; nothing of it among the arguments.
    #[test]
    fn the_worker_command_passes_the_storage_in_the_environment() {
        let url = "postgresql://ann:s3cret@db/studies";
        let argv = strings(&["search", "--storage", url, "--workers", "2"]);
        let c = worker_command(std::path::Path::new("/bin/xtask"), &worker_args(&argv), url);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, strings(&["search", "--workers", "1"]));
        assert!(
            args.iter()
                .all(|a| !a.contains("s3cret") && !a.contains("postgresql")),
            "{args:?}"
        );
        let envs: Vec<_> = c.get_envs().collect();
        assert_eq!(
            envs,
            [(
                std::ffi::OsStr::new(STORAGE_ENV),
                Some(std::ffi::OsStr::new(url))
            )]
        );
    }

    #[test]
    fn the_storage_is_the_flag_else_the_environment_else_the_default() {
        let pg = "postgresql://ann:s3cret@db/studies";
        assert_eq!(storage_given(None, Some(pg.into())), pg);
        assert_eq!(
            storage_given(Some("sqlite://a.db"), Some(pg.into())),
            "sqlite://a.db"
        );
        assert_eq!(storage_given(None, Some(String::new())), DEFAULT_STORAGE);
        assert_eq!(storage_given(None, None), DEFAULT_STORAGE);
    }

    #[test]
    fn a_worker_says_why_a_trial_failed() {
        let failed = Err(TrialFailure::Failed(
            "cannot build the model: kernel 0".into(),
        ));
        assert_eq!(
            failure_line(3, &failed).as_deref(),
            Some("trial 3: failed: cannot build the model: kernel 0")
        );
        assert_eq!(failure_line(4, &Err(TrialFailure::Pruned)), None);
        assert_eq!(failure_line(5, &Ok(0.5)), None);
        let summary = search::WorkerSummary {
            complete: 1,
            pruned: 0,
            failed: 2,
            lost: 0,
        };
        let line = summary_line(&summary);
        assert!(
            line.starts_with("worker done: 1 complete, 0 pruned, 2 failed, 0 lost")
                && line.contains("search report --json"),
            "{line}"
        );
    }

    #[test]
    fn the_median_summary_counts_the_trials_it_used() {
        let m = search::convrnn::MedianModel {
            spec: topology::zoo::get("compact_rgc").unwrap(),
            hparams: search::convrnn::TrainHparams {
                lr: 1e-3,
                weight_decay: 1e-4,
            },
            params: search::Params::new(),
            trials: vec![4],
        };
        let short = median_summary(50, &m);
        assert!(
            short.starts_with("median of the top 1 trials [4] (--top-k 50, but the study has only"),
            "{short}"
        );
        assert_eq!(
            median_summary(1, &m),
            "median of the top 1 trials [4]: lr 1.000e-3, weight decay 1.000e-4"
        );
    }
}
