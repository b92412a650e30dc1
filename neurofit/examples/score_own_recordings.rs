//! Scores your own recordings against your own model's features with the neurofit library alone
//! (`default-features = false`: no tensor engine, model or training code).
//!
//! ```text
//! cargo run -p neurofit --no-default-features --example score_own_recordings -- \
//!     RECORDINGS FEATURES.csv [--components N] [--splits N] [--first-bin-ms MS] [--out REPORT.json]
//! ```
//!
//! - `RECORDINGS`: a Brain-Score / xarray netCDF-4 assembly (`.nc`) or neurofit's plain HDF5 layout
//!   (any other extension; see `neurofit::h5plain`): responses `[presentation, neuroid, time_bin]`
//!   with `stimulus_id`, `object_name` and `repetition` per presentation (at least 2 repetitions
//!   per stimulus, for the split-half ceiling) and `region` per neuroid.
//! - `FEATURES.csv`: your model's activity, one row per (stimulus, area, step) with the header
//!   `stimulus_id,area,step,f0,f1,…`; every row of an area holds the same number of values, and
//!   every stimulus has a row for each of its area's steps. Step `k` predicts the bin that starts
//!   at `first-bin-ms + 10·k` ms (default 70).
//!
//! Per area, region and time bin it fits a PLS map (`--components`, default 25) on stratified
//! train/test splits of the stimuli (`--splits`, default 10, 10 % of each object's stimuli held
//! out), correlates held-out predictions with the trial-averaged responses, divides by the
//! split-half ceiling and prints the medians over each region's neuroids.
//!
//! Without arguments it writes planted data to a temporary folder (recordings as plain HDF5,
//! features as CSV: one area that drives the responses and one that does not), reads both back
//! through the same path as your files, scores them and checks the planted answer; `cargo test`
//! runs that check.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use ndarray::Array3;
use neurofit::{
    h5plain, netcdf, score, AreaFeatures, Assembly, FitConfig, ModelFeatures, Neuroids,
    Presentations, Regression, Report, StepToBin, TimeBin,
};
use seeded_rng::Rng;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&args)
}

/// The whole program; `args` are the command-line arguments after the program name.
fn run(args: &[String]) -> Result<()> {
    if args.is_empty() {
        return demo();
    }
    let opts = Options::parse(args)?;
    let recordings = read_recordings(&opts.recordings)?;
    let features = read_features_csv(&opts.features)?;
    let report = score(&features, &recordings, &opts.config())?;
    print_report(&report);
    if let Some(out) = &opts.out {
        report.write(Path::new(out))?;
        println!("report written to {out}");
    }
    Ok(())
}

/// What the command line asks for.
struct Options {
    recordings: String,
    features: String,
    components: usize,
    splits: usize,
    first_bin_ms: f64,
    out: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut positional = Vec::new();
        let (mut components, mut splits, mut first_bin_ms, mut out) = (25, 10, 70.0, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--components" => components = value(a)?.parse()?,
                "--splits" => splits = value(a)?.parse()?,
                "--first-bin-ms" => first_bin_ms = value(a)?.parse()?,
                "--out" => out = Some(value(a)?),
                flag if flag.starts_with("--") => {
                    return Err(format!("unknown option {flag}").into())
                }
                _ => positional.push(a.clone()),
            }
        }
        let [recordings, features] = <[String; 2]>::try_from(positional).map_err(|p| {
            format!(
                "expected RECORDINGS and FEATURES.csv, got {} positional argument(s)",
                p.len()
            )
        })?;
        Ok(Options {
            recordings,
            features,
            components,
            splits,
            first_bin_ms,
            out,
        })
    }

    fn config(&self) -> FitConfig {
        FitConfig {
            regression: Regression::Pls {
                components: self.components,
            },
            splits: self.splits,
            time_map: StepToBin::OneToOne {
                first_bin_ms: self.first_bin_ms,
            },
            ..FitConfig::default()
        }
    }
}

/// A netCDF-4 assembly (`.nc`) or neurofit's plain HDF5 layout (anything else).
fn read_recordings(path: &str) -> Result<Assembly> {
    let path = Path::new(path);
    Ok(if path.extension().is_some_and(|e| e == "nc") {
        netcdf::read(path)?
    } else {
        h5plain::read(path)?
    })
}

/// Features from a CSV of rows `stimulus_id,area,step,f0,f1,…` (after one header row) into one
/// `[stimulus, feature, step]` array per area, stimuli in order of first appearance.
fn read_features_csv(path: &str) -> Result<ModelFeatures> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let mut stimulus_id: Vec<String> = Vec::new();
    let mut stimulus_index: BTreeMap<String, usize> = BTreeMap::new();
    // Areas in order of first appearance, each with its rows: (step, stimulus) → values.
    type Rows = BTreeMap<(usize, usize), Vec<f32>>;
    let mut areas: Vec<(String, Rows)> = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{path}: {e}"))?;
        let line = row + 2;
        if record.len() < 4 {
            return Err(format!(
                "{path}: line {line}: expected stimulus_id,area,step and at least one feature, got {} field(s)",
                record.len()
            )
            .into());
        }
        let step: usize = record[2]
            .trim()
            .parse()
            .map_err(|e| format!("{path}: line {line}: step `{}`: {e}", &record[2]))?;
        let values = record
            .iter()
            .skip(3)
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<Vec<f32>, _>>()
            .map_err(|e| format!("{path}: line {line}: feature value: {e}"))?;
        let next = stimulus_id.len();
        let s = *stimulus_index.entry(record[0].to_string()).or_insert(next);
        if s == next {
            stimulus_id.push(record[0].to_string());
        }
        let area = match areas.iter().position(|(a, _)| a == &record[1]) {
            Some(i) => i,
            None => {
                areas.push((record[1].to_string(), BTreeMap::new()));
                areas.len() - 1
            }
        };
        if areas[area].1.insert((step, s), values).is_some() {
            return Err(format!(
                "{path}: line {line}: a second row for stimulus `{}`, area `{}`, step {step}",
                &record[0], &record[1]
            )
            .into());
        }
    }
    let n = stimulus_id.len();
    let mut out = Vec::with_capacity(areas.len());
    for (area, rows) in areas {
        let steps = rows.keys().map(|&(k, _)| k + 1).max().unwrap_or(0);
        let width = rows.values().next().map_or(0, Vec::len);
        let mut data = Array3::<f32>::zeros((n, width, steps));
        for k in 0..steps {
            for (s, id) in stimulus_id.iter().enumerate() {
                let values = rows.get(&(k, s)).ok_or_else(|| {
                    format!("{path}: area `{area}` has no row for stimulus `{id}` at step {k}")
                })?;
                if values.len() != width {
                    return Err(format!(
                        "{path}: area `{area}`, stimulus `{id}`, step {k}: {} values, but the area's \
                         other rows have {width}",
                        values.len()
                    )
                    .into());
                }
                for (f, &v) in values.iter().enumerate() {
                    data[[s, f, k]] = v;
                }
            }
        }
        out.push(AreaFeatures { area, data });
    }
    Ok(ModelFeatures {
        model: Path::new(path)
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
        stimulus_id,
        areas: out,
    })
}

/// One line per (area, region, bin): the ceiling, the held-out r and the noise-corrected score
/// (medians over the region's neuroids).
fn print_report(report: &Report) {
    for w in &report.warnings {
        println!("warning: {w}");
    }
    println!("area      region  bin (ms)   ceiling  raw r   score (r²/ceiling)");
    let show = |v: Option<f64>| v.map_or_else(|| "   -   ".into(), |v| format!("{v:7.3}"));
    for (area, regions) in &report.scores {
        for (region, scores) in regions {
            for (b, bin) in report.bins.iter().enumerate() {
                let ceiling = report.ceiling.get(region).and_then(|c| c[b]);
                let raw = report.raw_r[area][region][b];
                println!(
                    "{area:<9} {region:<7} {:>4}-{:<4} {} {} {}",
                    bin[0],
                    bin[1],
                    show(ceiling),
                    show(raw),
                    show(scores[b])
                );
            }
        }
    }
}

/// Planted data through the files a user would bring: area `drives` determines the responses
/// (plus trial noise), area `unrelated` does not.
fn demo() -> Result<()> {
    const STIMULI: usize = 48;
    const OBJECTS: usize = 6;
    const FEATURES: usize = 6;
    const STEPS: usize = 3;
    const REPETITIONS: usize = 4;
    const NEUROIDS: usize = 6;
    let dir = tempfile::tempdir()?;
    let mut rng = Rng::new(2026);
    let mut features = |_| -> Vec<f32> { (0..FEATURES).map(|_| rng.normal() as f32).collect() };
    // [area][step][stimulus] → values
    let planted: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
        .map(|_| {
            (0..STEPS)
                .map(|_| (0..STIMULI).map(&mut features).collect())
                .collect()
        })
        .collect();
    let mut rng = Rng::new(7);
    let weights: Vec<f64> = (0..FEATURES * NEUROIDS).map(|_| rng.normal()).collect();

    let csv_path = dir.path().join("my_model.csv");
    let mut csv = String::from("stimulus_id,area,step");
    csv.extend((0..FEATURES).map(|f| format!(",f{f}")));
    csv.push('\n');
    for (a, area) in ["drives", "unrelated"].iter().enumerate() {
        for (k, step) in planted[a].iter().enumerate() {
            for (s, values) in step.iter().enumerate() {
                csv.push_str(&format!("im{s:02},{area},{k}"));
                csv.extend(values.iter().map(|v| format!(",{v}")));
                csv.push('\n');
            }
        }
    }
    std::fs::write(&csv_path, csv)?;

    let mut data = Array3::<f32>::zeros((STIMULI * REPETITIONS, NEUROIDS, STEPS));
    let mut presentations = Presentations::default();
    for r in 0..REPETITIONS {
        for s in 0..STIMULI {
            let row = r * STIMULI + s;
            presentations.stimulus_id.push(format!("im{s:02}"));
            presentations
                .object_name
                .push(format!("object{}", s % OBJECTS));
            presentations.repetition.push(r as u32);
            for j in 0..NEUROIDS {
                for k in 0..STEPS {
                    let signal: f64 = (0..FEATURES)
                        .map(|f| f64::from(planted[0][k][s][f]) * weights[f * NEUROIDS + j])
                        .sum();
                    data[[row, j, k]] = (signal + 0.5 * rng.normal()) as f32;
                }
            }
        }
    }
    let recordings = Assembly {
        data,
        presentations,
        neuroids: Neuroids {
            neuroid_id: (0..NEUROIDS).map(|j| format!("site{j}")).collect(),
            region: (0..NEUROIDS)
                .map(|j| if j < NEUROIDS / 2 { "V4" } else { "IT" }.to_string())
                .collect(),
        },
        bins: TimeBin::uniform(70.0, 70.0 + 10.0 * STEPS as f64, 10.0),
    };
    let h5_path = dir.path().join("my_recordings.h5");
    h5plain::write(&h5_path, &recordings)?;

    let as_arg = |p: &Path| p.to_string_lossy().into_owned();
    let opts = Options::parse(&[
        as_arg(&h5_path),
        as_arg(&csv_path),
        "--components".into(),
        "6".into(),
    ])?;
    let report = score(
        &read_features_csv(&opts.features)?,
        &read_recordings(&opts.recordings)?,
        &opts.config(),
    )?;
    print_report(&report);
    for region in ["V4", "IT"] {
        for (area, wanted) in [("drives", 0.8..1.2), ("unrelated", -1.0..0.2)] {
            for s in &report.scores[area][region] {
                let s = s.ok_or_else(|| format!("{area} {region}: no score"))?;
                if !wanted.contains(&s) {
                    return Err(format!("{area} {region}: score {s}, planted {wanted:?}").into());
                }
            }
        }
    }
    println!("planted answer recovered: `drives` scores near 1, `unrelated` near 0");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_recovers_the_planted_answer() {
        super::run(&[]).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::Options::parse(&args(&["only_one.nc"])).is_err());
        assert!(super::Options::parse(&args(&["a.nc", "b.csv", "--splits"])).is_err());
        assert!(super::Options::parse(&args(&["a.nc", "b.csv", "--bogus", "1"])).is_err());
        let ok = super::Options::parse(&args(&["a.nc", "b.csv", "--components", "5"]));
        assert!(ok.is_ok_and(|o| o.components == 5 && o.splits == 10));
    }
}
