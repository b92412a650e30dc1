//! `neurofit`: score a model's activity over time against recordings (`score`) and export a model's
//! activations as a Brain-Score netCDF-4 assembly (`export-activations`). `cargo xtask neurofit`
//! and `cargo xtask export-activations` run this binary after checking the system packages it links.

mod bench_fit;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ndarray::{Array3, Array4, Axis};
use neurofit::stimulus_images::{load_images, StimulusFit, StimulusGeometry};
use neurofit::stimulus_set::StimulusSet;
use neurofit::{
    extract_features, object_solution_times, Assembly, ExtractOptions, FitConfig, InsilicoConfig,
    ModelFeatures, Neuroids, OstOptions, Presentations, Reduction, Regression, Report, StepToBin,
    TimeBin,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tensor::Device;
use topology::{Model, ModelSpec, Presentation};
use trainer::count_arg::at_least_one;
use trainer::ModelSource;

#[derive(Parser)]
#[command(
    name = "neurofit",
    about = "Neural and behavioural comparison of ConvRNNs over time"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Neural predictivity per area per time bin (PLS/ridge, Brain-Score protocol) and object
    /// solution times; defaults to the in-silico HvM-like set.
    Score(ScoreArgs),
    /// Writes a model's activations over time as a Brain-Score netCDF-4 assembly.
    ExportActivations(ExportArgs),
    /// Times the fitting protocol (every bin and split) on synthetic data of a chosen size.
    BenchFit(bench_fit::BenchFitArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StimulusFitArg {
    /// Resize the short side to the model's input and centre-crop (torchvision's evaluation way).
    Crop,
    /// Stop with an error on a stimulus whose aspect ratio differs from the model's input.
    Refuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RegressionArg {
    Pls,
    Ridge,
}

/// How a feedforward net's features are mapped to the recording's time bins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FeedforwardMapArg {
    /// Each area's last step predicts every bin.
    Uniform,
    /// One track: successively deeper areas predict successively later bins.
    Graded,
}

/// Principal components kept per area when `--pca` is not given.
const DEFAULT_PCA: usize = 200;
/// PLS components when `--components` is not given.
const DEFAULT_COMPONENTS: usize = 25;
/// In-silico images per object at V0, V3 and V6 when `--insilico-images` is not given.
const DEFAULT_INSILICO_IMAGES: [usize; 3] = [2, 4, 4];
/// In-silico repetitions per image when `--insilico-repetitions` is not given.
const DEFAULT_INSILICO_REPETITIONS: usize = 10;

#[derive(clap::Args, Debug, Clone)]
struct ModelArgs {
    /// A zoo preset (random weights), a spec JSON file, a training run directory or a checkpoint.
    #[arg(long, default_value = "compact_rgc")]
    model: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Areas to record (default: every area).
    #[arg(long, value_delimiter = ',')]
    areas: Vec<String>,
    /// Unroll steps (default: 26, 260 ms, the image on for the first 100 ms).
    #[arg(long, default_value_t = 26, value_parser = at_least_one::<usize>)]
    steps: usize,
    /// Principal components kept per area (randomised SVD; default 200); 0 keeps the raw
    /// features. Not for export-activations, which writes every unit.
    #[arg(long)]
    pca: Option<usize>,
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    batch_size: usize,
    /// Stimuli whose aspect ratio differs from the model's input: crop (resize the short side,
    /// centre-crop) or refuse. Same-aspect stimuli are resized; what was done is reported.
    #[arg(long, value_enum, default_value = "crop")]
    stimulus_fit: StimulusFitArg,
}

impl ModelArgs {
    /// The components `--pca` asks for ([`DEFAULT_PCA`] when not given), `None` for raw features.
    fn pca_components(&self) -> Option<usize> {
        Some(self.pca.unwrap_or(DEFAULT_PCA)).filter(|&k| k > 0)
    }

    fn stimulus_fit(&self) -> StimulusFit {
        match self.stimulus_fit {
            StimulusFitArg::Crop => StimulusFit::Crop,
            StimulusFitArg::Refuse => StimulusFit::Refuse,
        }
    }
}

#[derive(clap::Args, Debug)]
struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A Brain-Score netCDF-4 assembly (.nc) or our plain HDF5 layout (.h5); default: the in-silico
    /// recordings, generated (and written under --out).
    #[arg(long, requires = "stimuli")]
    recordings: Option<PathBuf>,
    /// The stimulus set: its CSV (stimulus_id, filename, …; images beside it or in the zip of
    /// the same name, as Brain-Score publishes them) or a folder holding that one CSV.
    #[arg(long)]
    stimuli: Option<PathBuf>,
    /// Output directory (default: runs/neurofit/MODEL).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// The feedforward model to compare with (default: the base of the model's family; `none` to skip).
    #[arg(long)]
    base: Option<String>,
    /// Score --model itself as a feedforward net: the image stays on for every step and the
    /// features map to the bins uniformly or graded (default: a ConvRNN, the image on for the
    /// first 100 ms and step k predicting the bin at 70 + 10·k ms).
    #[arg(long, value_enum)]
    feedforward_map: Option<FeedforwardMapArg>,
    #[arg(long, value_enum, default_value = "pls")]
    regression: RegressionArg,
    /// PLS components (default 25); only with `--regression pls`.
    #[arg(long)]
    components: Option<usize>,
    #[arg(long, default_value_t = 10, value_parser = at_least_one::<usize>)]
    splits: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// In-silico set: images per object at V0, V3 and V6 (default 2,4,4; HvM: 10,40,40). Only
    /// without --recordings.
    #[arg(long, value_delimiter = ',')]
    insilico_images: Option<Vec<usize>>,
    /// In-silico set: repetitions per image (default 10). Only without --recordings.
    #[arg(long)]
    insilico_repetitions: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The stimulus set: its CSV (images beside it or in the zip of the same name) or a folder
    /// holding that one CSV.
    #[arg(long)]
    stimuli: PathBuf,
    /// The .nc file to write.
    #[arg(long)]
    out: PathBuf,
}

/// A model with a name and the normalisation its inputs need.
struct Loaded {
    name: String,
    model: Model,
}

/// The model `--model` names, through the loader every tool shares ([`trainer::load_model`]).
fn load_model(spec_or_run: &str, device: Device) -> Result<Loaded> {
    let loaded = trainer::load_model(spec_or_run, device).map_err(|e| match e {
        // It names what was given and lists what is accepted; a context would repeat the name.
        e @ trainer::Error::UnknownModel { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("--model {spec_or_run}")),
    })?;
    let name = match loaded.source {
        ModelSource::Preset => {
            eprintln!("note: {spec_or_run} is a preset with random weights; pass a training run to score a trained model");
            loaded.name
        }
        ModelSource::Checkpoint(_) => {
            format!("{} ({})", loaded.name, Path::new(spec_or_run).display())
        }
        ModelSource::SpecFile(_) => loaded.name,
    };
    Ok(Loaded {
        name,
        model: loaded.model,
    })
}

/// The feedforward model of a preset's family.
fn default_base(name: &str) -> Option<&'static str> {
    if name.starts_with("compact_") {
        Some("compact_feedforward")
    } else if name.ends_with("_shallow") {
        Some("feedforward_shallow")
    } else if name.ends_with("_intermediate") {
        Some("feedforward_intermediate")
    } else {
        None
    }
}

/// Pixels in [0, 1] → the model's input normalisation (Fashion-MNIST statistics for grey models,
/// ImageNet's for colour ones), `[N, C, H, W]`.
fn normalise(mut images: Array4<f32>) -> Array4<f32> {
    let c = images.dim().1;
    let (mean, std) = if c == 1 {
        (
            vec![datasets::idx::FASHION_MNIST_MEAN],
            vec![datasets::idx::FASHION_MNIST_STD],
        )
    } else {
        (
            datasets::IMAGENET_MEAN.to_vec(),
            datasets::IMAGENET_STD.to_vec(),
        )
    };
    for (ci, mut plane) in images.axis_iter_mut(Axis(1)).enumerate() {
        let (m, s) = (mean[ci % mean.len()], std[ci % std.len()]);
        plane.mapv_inplace(|v| (v - m) / s);
    }
    images
}

/// The stimulus set's images at the model's input size, `[N, C, H, W]` in [0, 1], under the
/// `--stimulus-fit` policy (see `neurofit::stimulus_images`), which is reported on stderr.
fn read_stimuli(
    set: &StimulusSet,
    spec: &ModelSpec,
    args: &ModelArgs,
) -> Result<(Array4<f32>, StimulusGeometry)> {
    let (c, h, w) = (spec.input.channels, spec.input.height, spec.input.width);
    let (images, geometry) = load_images(set, c, h, w, args.stimulus_fit())?;
    eprintln!("{}", geometry.summary());
    Ok((images, geometry))
}

fn extract(
    m: &Loaded,
    images: &Array4<f32>,
    ids: &[String],
    args: &ModelArgs,
    presentation: Presentation,
    steps: usize,
) -> Result<ModelFeatures> {
    let areas: Vec<String> = if args.areas.is_empty() {
        m.model.areas().iter().map(|a| a.name.clone()).collect()
    } else {
        args.areas.clone()
    };
    let opts = ExtractOptions {
        batch_size: args.batch_size,
        presentation,
        reduction: Reduction::Auto,
        pca_components: args.pca_components(),
        ..ExtractOptions::default()
    };
    let mut f = extract_features(&m.model, images.view(), ids, &areas, steps, &opts)?;
    f.model = m.name.clone();
    Ok(f)
}

/// The object-solution-time comparison on the in-silico set.
#[derive(Serialize)]
struct Behaviour {
    area: String,
    spearman: Option<f32>,
    solved_by_both: usize,
    solved_by_model: usize,
    images: usize,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    model: &'a Report,
    /// The feedforward comparison model's report.
    base: Option<&'a Report>,
    /// Object solution times of the model's last area against the reference (in-silico only).
    behaviour: Option<Behaviour>,
    /// What a perfect model scores under the same protocol (in-silico only): the generator's
    /// noise-free rates used as the features.
    perfect: Option<&'a Report>,
    /// The recordings scored against.
    recordings: String,
    /// How the stimuli were brought to the model's input size (recorded stimuli only).
    stimuli: Option<StimulusGeometry>,
}

/// Flags `score` would ignore in the configuration given, refused rather than silently dropped.
fn check_score_flags(a: &ScoreArgs) -> Result<()> {
    if let (Some(k), RegressionArg::Ridge) = (a.components, a.regression) {
        bail!("--components {k} sets PLS's components; --regression ridge has none (it chooses its penalty by GCV)");
    }
    if a.recordings.is_some() {
        for (flag, given) in [
            ("--insilico-images", a.insilico_images.is_some()),
            ("--insilico-repetitions", a.insilico_repetitions.is_some()),
        ] {
            if given {
                bail!("{flag} sizes the generated in-silico set, which --recordings replaces; drop one of them");
            }
        }
    }
    Ok(())
}

fn score(a: &ScoreArgs) -> Result<()> {
    check_score_flags(a)?;
    let device: Device = a.model.device.parse().map_err(anyhow::Error::msg)?;
    let m = load_model(&a.model.model, device)?;
    let spec = m.model.spec.clone();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/neurofit").join(spec.name.replace(['/', ' '], "_")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // Recordings, stimulus ids and images in [0, 1].
    let (assembly, ids, images, recordings_path, insilico, geometry) = match (
        &a.recordings,
        &a.stimuli,
    ) {
        (Some(rec), Some(stim)) => {
            let assembly = match rec.extension().and_then(|e| e.to_str()) {
                Some("h5") | Some("hdf5") => neurofit::h5plain::read(rec)?,
                _ => neurofit::netcdf::read(rec)?,
            };
            let set = StimulusSet::open(stim)?;
            set.check_covers(&assembly)?;
            let (images, geometry) = read_stimuli(&set, &spec, &a.model)?;
            (
                assembly,
                set.stimulus_id.clone(),
                images,
                rec.clone(),
                None,
                Some(geometry),
            )
        }
        (None, None) => {
            let [v0, v3, v6] = <[usize; 3]>::try_from(
                a.insilico_images
                    .clone()
                    .unwrap_or(DEFAULT_INSILICO_IMAGES.to_vec()),
            )
            .map_err(|_| anyhow::anyhow!("--insilico-images takes three counts, e.g. 2,4,4"))?;
            if spec.input.height != spec.input.width {
                bail!(
                    "the in-silico stimuli are square; {} takes {}×{}",
                    spec.name,
                    spec.input.height,
                    spec.input.width
                );
            }
            let hvm = datasets::stimuli::HvmConfig {
                images_per_object_per_level: [v0, v3, v6],
                size_px: spec.input.height,
                seed: a.seed,
                ..Default::default()
            };
            let fm = datasets::FashionMnist::locate_and_load(None)?;
            let (set, _) = datasets::stimuli::StimulusSet::load_or_generate(
                &fm.test,
                &hvm,
                Some(&datasets::locate::cache_dir().join("stimuli")),
            )?;
            let repetitions = a
                .insilico_repetitions
                .unwrap_or(DEFAULT_INSILICO_REPETITIONS);
            let cfg = InsilicoConfig {
                repetitions,
                rate_scale: 30.0 / repetitions as f64,
                seed: a.seed,
                ..Default::default()
            };
            eprintln!(
                "generating in-silico V4/IT recordings for {} images…",
                set.len()
            );
            let rec = neurofit::insilico::generate(&set, &cfg)?;
            let dir = out.join("insilico");
            set.write_brainscore(&dir.join("stimuli"))?;
            let path = dir.join("recordings.nc");
            neurofit::netcdf::write(&path, &rec.assembly, "insilico")?;
            let n = set.len();
            let px = spec.input.height;
            let pixels = set.pixels_f32();
            let gray = Array4::from_shape_vec((n, 1, px, px), pixels)
                .context("in-silico images have an unexpected size")?;
            let images = if spec.input.channels == 1 {
                gray
            } else {
                let mut rgb = Array4::zeros((n, spec.input.channels, px, px));
                for c in 0..spec.input.channels {
                    rgb.index_axis_mut(Axis(1), c)
                        .assign(&gray.index_axis(Axis(1), 0));
                }
                rgb
            };
            let ids = rec.stimulus_id.clone();
            (rec.assembly.clone(), ids, images, path, Some(rec), None)
        }
        _ => {
            bail!("--recordings and --stimuli go together (or give neither for the in-silico set)")
        }
    };
    let images = normalise(images);

    let fit = FitConfig {
        regression: match a.regression {
            RegressionArg::Pls => Regression::Pls {
                components: a.components.unwrap_or(DEFAULT_COMPONENTS),
            },
            RegressionArg::Ridge => Regression::Ridge {
                alphas: vec![1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4],
            },
        },
        splits: a.splits,
        seed: a.seed,
        time_map: match a.feedforward_map {
            None => FitConfig::default().time_map,
            Some(FeedforwardMapArg::Uniform) => StepToBin::Uniform,
            Some(FeedforwardMapArg::Graded) => StepToBin::Graded,
        },
        ..FitConfig::default()
    };
    let presentation = match a.feedforward_map {
        None => Presentation::Neural,
        Some(_) => Presentation::Constant,
    };
    eprintln!(
        "extracting {} over {} steps for {} stimuli…",
        m.name,
        a.model.steps,
        ids.len()
    );
    let features = extract(&m, &images, &ids, &a.model, presentation, a.model.steps)?;
    eprintln!("fitting…");
    let report = neurofit::score(&features, &assembly, &fit)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }

    let base_name = match a.base.as_deref() {
        Some("none") => None,
        Some(b) => Some(b.to_string()),
        None => default_base(&spec.name)
            .map(str::to_string)
            .filter(|b| *b != spec.name),
    };
    let base_report = match &base_name {
        Some(b) => {
            let base = load_model(b, device)?;
            // A feedforward model's features do not evolve: the image stays on and every bin uses
            // each area's last step (SPEC §7 "uniform").
            let steps = base.model.spec.default_steps.max(base.model.areas().len());
            let f = extract(
                &base,
                &images,
                &ids,
                &ModelArgs {
                    areas: vec![],
                    ..a.model.clone()
                },
                Presentation::Constant,
                steps,
            )?;
            let cfg = FitConfig {
                time_map: StepToBin::Uniform,
                ..fit.clone()
            };
            Some(neurofit::score(&f, &assembly, &cfg)?)
        }
        None => None,
    };

    let behaviour = match &insilico {
        Some(rec) => {
            let last = features.areas.last().context("no areas recorded")?;
            let steps = last.data.dim().2;
            let bins = TimeBin::uniform(0.0, 10.0 * steps as f64, 10.0);
            // Features are in the feature's stimulus order, the recording's per-image arrays in its own.
            let index: BTreeMap<&str, usize> = features
                .stimulus_id
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            let order: Vec<usize> = rec
                .stimulus_id
                .iter()
                .map(|s| {
                    index
                        .get(s.as_str())
                        .copied()
                        .context("stimulus missing from the features")
                })
                .collect::<Result<_>>()?;
            let data: Array3<f32> = last.data.select(Axis(0), &order);
            let o = object_solution_times(
                data.view(),
                &rec.category,
                &rec.reference_ost_ms,
                &rec.reference_dprime,
                &bins,
                &OstOptions {
                    seed: a.seed,
                    ..Default::default()
                },
            )?;
            Some(Behaviour {
                area: last.area.clone(),
                spearman: o.spearman.is_finite().then_some(o.spearman),
                solved_by_both: o.solved_by_both,
                solved_by_model: o.solved_by_model,
                images: o.model_ost_ms.len(),
            })
        }
        None => None,
    };

    // The yardstick: the generator's own noise-free rates as features, fitted and scored exactly
    // like the model (step k ↔ the bin starting at 10·k ms), so r²/ceiling near 1 is the best any
    // model can do on this set.
    let perfect_report = match &insilico {
        Some(rec) => {
            let f = ModelFeatures {
                model: "generator's noise-free rates".into(),
                stimulus_id: rec.stimulus_id.clone(),
                areas: vec![neurofit::AreaFeatures {
                    area: "true_rates".into(),
                    data: rec.true_rates.clone(),
                }],
            };
            let cfg = FitConfig {
                time_map: StepToBin::OneToOne { first_bin_ms: 0.0 },
                ..fit.clone()
            };
            Some(neurofit::score(&f, &assembly, &cfg)?)
        }
        None => None,
    };

    report.write(&out.join("report.json"))?;
    if let Some(b) = &base_report {
        b.write(&out.join("base_report.json"))?;
    }
    plot_predictivity(&out, &report, base_report.as_ref())?;
    let output = Output {
        model: &report,
        base: base_report.as_ref(),
        behaviour,
        perfect: perfect_report.as_ref(),
        recordings: recordings_path.display().to_string(),
        stimuli: geometry,
    };
    let json = serde_json::to_string_pretty(&output)?;
    tensor::io::write_file_atomically(out.join("neurofit.json"), json.as_bytes())?;
    if a.json {
        println!("{json}");
    } else {
        print_summary(
            &report,
            base_report.as_ref(),
            perfect_report.as_ref(),
            &output.behaviour,
        );
        println!(
            "wrote {}/neurofit.json, report.json and predictivity_*.svg",
            out.display()
        );
    }
    Ok(())
}

fn median_over_bins(v: &[Option<f64>]) -> Option<f64> {
    let mut x: Vec<f64> = v
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if x.is_empty() {
        return None;
    }
    x.sort_by(f64::total_cmp);
    Some(x[x.len() / 2])
}

fn print_summary(
    r: &Report,
    base: Option<&Report>,
    perfect: Option<&Report>,
    behaviour: &Option<Behaviour>,
) {
    println!("median over time bins of the median noise-corrected score (r²/ceiling):");
    let rows = std::iter::once(("model", r))
        .chain(base.map(|b| ("base", b)))
        .chain(perfect.map(|p| ("perfect", p)));
    for (label, rep) in rows {
        for (track, regions) in &rep.scores {
            let cells: Vec<String> = regions
                .iter()
                .map(|(reg, v)| {
                    format!(
                        "{reg} {}",
                        median_over_bins(v).map_or("-".into(), |x| format!("{x:.3}"))
                    )
                })
                .collect();
            println!("  {label:<7} {track:<10} {}", cells.join("  "));
        }
    }
    if let Some(b) = behaviour {
        println!(
            "object solution times ({}): Spearman {} over {} images solved by both (model solved {} of {})",
            b.area,
            b.spearman.map_or("-".into(), |s| format!("{s:.3}")),
            b.solved_by_both,
            b.solved_by_model,
            b.images
        );
    }
}

fn plot_predictivity(out: &Path, r: &Report, base: Option<&Report>) -> Result<()> {
    for region in r.ceiling.keys() {
        let mut chart = plots::Chart::new(
            format!("{region}: predictivity over time ({})", r.model),
            "time bin start (ms)",
            "median r² / ceiling",
        );
        for (label, rep) in std::iter::once(("", r)).chain(base.map(|b| ("base ", b))) {
            for (track, per_region) in &rep.scores {
                if let Some(v) = per_region.get(region) {
                    // An unscored bin (None) is left out like a non-finite one.
                    let points = rep
                        .bins
                        .iter()
                        .zip(v)
                        .map(|(b, s)| (b[0], s.unwrap_or(f64::NAN)));
                    chart = chart.with(plots::Series::line(format!("{label}{track}"), points));
                }
            }
        }
        if chart.is_empty() {
            continue;
        }
        let path = out.join(format!("predictivity_{region}.svg"));
        tensor::io::write_file_atomically(&path, chart.to_svg()?.as_bytes())?;
    }
    Ok(())
}

fn export(a: &ExportArgs) -> Result<()> {
    if let Some(k) = a.model.pca {
        bail!(
            "--pca {k} does not apply to export-activations: the assembly holds every unit of each \
             area as a neuroid, as Brain-Score expects of a model's activations; reduce them \
             downstream, or use `neurofit` (which fits on {DEFAULT_PCA} components by default)"
        );
    }
    prepare_out_file(&a.out)?;
    let device: Device = a.model.device.parse().map_err(anyhow::Error::msg)?;
    let m = load_model(&a.model.model, device)?;
    let set = StimulusSet::open(&a.stimuli)?;
    let images = normalise(read_stimuli(&set, &m.model.spec, &a.model)?.0);
    let mut args = a.model.clone();
    args.pca = Some(0);
    let f = extract(
        &m,
        &images,
        &set.stimulus_id,
        &args,
        Presentation::Neural,
        a.model.steps,
    )?;
    let n = set.len();
    let steps = f.areas.first().map_or(0, |x| x.data.dim().2);
    let total: usize = f.areas.iter().map(|x| x.data.dim().1).sum();
    let mut data = Array3::<f32>::zeros((n, total, steps));
    let mut neuroid_id = Vec::with_capacity(total);
    let mut region = Vec::with_capacity(total);
    let mut at = 0;
    for area in &f.areas {
        let k = area.data.dim().1;
        data.slice_mut(ndarray::s![.., at..at + k, ..])
            .assign(&area.data);
        for j in 0..k {
            neuroid_id.push(format!("{}.{j}", area.area));
            region.push(area.area.clone());
        }
        at += k;
    }
    let object_name = set
        .metadata
        .get("object_name")
        .cloned()
        .unwrap_or_else(|| vec![String::new(); n]);
    let assembly = Assembly {
        data,
        presentations: Presentations {
            stimulus_id: set.stimulus_id.clone(),
            object_name,
            repetition: vec![0; n],
        },
        neuroids: Neuroids { neuroid_id, region },
        bins: TimeBin::uniform(0.0, 10.0 * steps as f64, 10.0),
    };
    neurofit::netcdf::write(&a.out, &assembly, "activations")?;
    println!(
        "wrote {}: {n} stimuli × {total} units × {steps} bins of 10 ms ({} areas) from {}",
        a.out.display(),
        f.areas.len(),
        m.name
    );
    Ok(())
}

/// Checks `--out` before the extraction, which can take hours: a folder is refused, and a
/// missing parent folder is created (the write used to fail at the end, naming its temporary
/// file).
fn prepare_out_file(out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--out {} is a folder; give the .nc file to write",
            out.display()
        );
    }
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: creating {}", out.display(), dir.display())),
        _ => Ok(()),
    }
}

fn main() -> Result<()> {
    // Before any thread starts, so every engine thread inherits the mode.
    tensor::cpu::denormals::configure_main_thread().map_err(anyhow::Error::msg)?;
    match Cli::parse().command {
        Cmd::Score(a) => score(&a),
        Cmd::ExportActivations(a) => export(&a),
        Cmd::BenchFit(a) => bench_fit::run(&a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_out_is_checked_before_the_extraction() {
        let d = tempfile::tempdir().unwrap();
        let e = prepare_out_file(d.path()).unwrap_err().to_string();
        assert!(e.contains("is a folder; give the .nc file"), "{e}");
        let nested = d.path().join("a/b/acts.nc");
        prepare_out_file(&nested).unwrap();
        assert!(d.path().join("a/b").is_dir());
        let blocked = d.path().join("a/b/acts.nc/x.nc");
        std::fs::write(&nested, "").unwrap();
        let e = format!("{:#}", prepare_out_file(&blocked).unwrap_err());
        assert!(e.contains("creating") && e.contains("acts.nc"), "{e}");
    }

    /// `--pca` is a fitting option: export-activations refuses it (before loading anything)
    /// instead of writing raw activations while the user believes they were reduced.
    #[test]
    fn export_refuses_pca_and_fits_default_to_it() {
        let parse = |args: &[&str]| {
            let argv = [
                "neurofit",
                "export-activations",
                "--stimuli",
                "s",
                "--out",
                "o",
            ];
            match Cli::try_parse_from(argv.iter().chain(args))
                .unwrap()
                .command
            {
                Cmd::ExportActivations(a) => a,
                _ => unreachable!("parsed export-activations"),
            }
        };
        let err = format!("{:#}", export(&parse(&["--pca", "3"])).unwrap_err());
        assert!(err.contains("--pca 3 does not apply"), "{err}");
        assert_eq!(parse(&[]).model.pca_components(), Some(DEFAULT_PCA));
        assert_eq!(parse(&["--pca", "0"]).model.pca_components(), None);
        assert_eq!(parse(&["--pca", "7"]).model.pca_components(), Some(7));
    }

    /// bench-fit's sizes of 0 are refused by flag name when parsed (`--splits 0` and
    /// `--components 0` were found only after generating the data, `--features 0` as "sizes must
    /// be positive").
    #[test]
    fn bench_fit_refuses_zero_sizes_by_name() {
        for flag in [
            "--stimuli",
            "--features",
            "--neuroids",
            "--bins",
            "--splits",
            "--components",
        ] {
            let Err(e) = Cli::try_parse_from(["neurofit", "bench-fit", flag, "0"]) else {
                panic!("{flag} 0 parsed");
            };
            let msg = e.to_string();
            assert!(msg.contains(flag) && msg.contains("at least 1"), "{msg}");
        }
        assert!(Cli::try_parse_from(["neurofit", "bench-fit", "--splits", "1"]).is_ok());
    }

    /// Flags that the chosen regression or recordings would ignore are refused.
    #[test]
    fn score_refuses_flags_it_would_ignore() {
        let parse =
            |args: &[&str]| match Cli::try_parse_from(["neurofit", "score"].iter().chain(args))
                .unwrap()
                .command
            {
                Cmd::Score(a) => a,
                _ => unreachable!("parsed score"),
            };
        let refused = |args: &[&str], want: &str| {
            let err = format!("{:#}", check_score_flags(&parse(args)).unwrap_err());
            assert!(err.contains(want), "{args:?}: {err}");
        };
        refused(
            &["--regression", "ridge", "--components", "5"],
            "--components 5",
        );
        let given = ["--recordings", "r.nc", "--stimuli", "s"];
        refused(
            &[&given[..], &["--insilico-images", "1,1,1"]].concat(),
            "--insilico-images",
        );
        refused(
            &[&given[..], &["--insilico-repetitions", "4"]].concat(),
            "--insilico-repetitions",
        );
        for ok in [
            &["--components", "5"][..],
            &["--regression", "ridge"],
            &["--insilico-images", "1,1,1", "--insilico-repetitions", "4"],
            &given,
        ] {
            check_score_flags(&parse(ok)).unwrap();
        }
    }

    #[test]
    fn an_unknown_model_is_named_once_with_what_is_accepted() {
        let err = match load_model("no_such_model", Device::Cpu) {
            Ok(_) => panic!("`no_such_model` loaded"),
            Err(e) => format!("{e:#}"),
        };
        assert_eq!(err.matches("no_such_model").count(), 1, "{err}");
        for accepted in [
            "compact_rgc",
            "spec JSON file",
            "run's folder",
            "checkpoint",
        ] {
            assert!(err.contains(accepted), "{err} should mention {accepted}");
        }
    }
}
