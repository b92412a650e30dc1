//! `neurofit bench-fit`: times the whole fitting protocol (`neurofit::score`: every bin, every
//! split) on synthetic data of a chosen size, and one fit alone, and can dump one fit's inputs and
//! our predictions as `.npy` files so `benches/sklearn_pls.py` times scikit-learn on the same data
//! and compares the predictions.

use anyhow::{ensure, Context, Result};
use ndarray::{Array2, Array3, Axis};
use neurofit::cv::stratified_splits;
use neurofit::linalg::Kernel;
use neurofit::regression::kernel_pls::centred_gram;
use neurofit::{
    score, AreaFeatures, Assembly, FitConfig, ModelFeatures, Neuroids, Presentations, Regression,
    TimeBin,
};
use rayon::prelude::*;
use seeded_rng::Rng;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use trainer::count_arg::at_least_one;

#[derive(clap::Args, Debug)]
pub struct BenchFitArgs {
    #[arg(long, default_value_t = 2560, value_parser = at_least_one::<usize>)]
    stimuli: usize,
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one::<usize>)]
    features: usize,
    #[arg(long, default_value_t = 256, value_parser = at_least_one::<usize>)]
    neuroids: usize,
    /// 10 ms bins from 70 ms, one model step each.
    #[arg(long, default_value_t = 20, value_parser = at_least_one::<usize>)]
    bins: usize,
    #[arg(long, default_value_t = 10, value_parser = at_least_one::<usize>)]
    splits: usize,
    #[arg(long, default_value_t = 25, value_parser = at_least_one::<usize>)]
    components: usize,
    /// Objects the stimuli are stratified by (stimulus s shows object s mod objects).
    #[arg(long, default_value_t = 64)]
    objects: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write x.npy, y.npy, train.npy, test.npy and pred.npy (bin 0, split 0) into this directory
    /// for `python3 benches/sklearn_pls.py DIR`.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BenchFitResult {
    stimuli: usize,
    features: usize,
    neuroids: usize,
    bins: usize,
    splits: usize,
    components: usize,
    /// Seconds for `score` over every bin and split (ceilings included).
    protocol_s: f64,
    /// CPU seconds (user + system, every thread) the process spent in `score`: on a busy machine
    /// this, not `protocol_s`, says how much work the protocol is.
    protocol_cpu_s: f64,
    /// Seconds for one fit alone: the Gram matrix of one bin's features, then split 0's fit and
    /// prediction.
    one_fit_s: f64,
    /// Median over bins of the mean held-out r (a sanity check that the maps predict).
    median_r: f64,
    threads: usize,
    /// The CPU (`model name` of /proc/cpuinfo) and the kernel family the fits' products ran on.
    cpu: String,
    gemm_kernel: String,
}

/// Synthetic features and recordings with a shared latent: features `[stimulus, feature, step]`
/// and responses `[presentation, neuroid, bin]` (two repetitions) are both linear in 40 latent
/// variables per stimulus, plus noise.
fn synthetic(a: &BenchFitArgs) -> Result<(ModelFeatures, Assembly)> {
    const LATENT: usize = 40;
    const REPS: usize = 2;
    ensure!(
        a.stimuli >= 2 * a.objects && a.objects >= 2,
        "--stimuli must be at least twice --objects (and --objects at least 2)"
    );
    ensure!(
        a.features > 0 && a.neuroids > 0 && a.bins > 0,
        "sizes must be positive"
    );
    let mut rng = Rng::new(a.seed);
    let z = Array2::from_shape_simple_fn((a.stimuli, LATENT), || rng.normal() as f32);
    let mut data = Array3::<f32>::zeros((a.stimuli, a.features, a.bins));
    // One slab per step, generated in parallel from its own seed.
    let slabs: Vec<Array2<f32>> = (0..a.bins)
        .into_par_iter()
        .map(|k| {
            let mut rng = Rng::new(a.seed ^ (0x9e37_79b9 + k as u64));
            let load = Array2::from_shape_simple_fn((LATENT, a.features), || rng.normal() as f32);
            let mut x = z.dot(&load);
            x.mapv_inplace(|v| v + 2.0 * (rng.uniform() as f32 - 0.5));
            x
        })
        .collect();
    for (k, x) in slabs.iter().enumerate() {
        data.index_axis_mut(Axis(2), k).assign(x);
    }
    let load = Array2::from_shape_simple_fn((LATENT, a.neuroids), || rng.normal() as f32);
    let clean = z.dot(&load);
    let mut resp = Array3::<f32>::zeros((a.stimuli * REPS, a.neuroids, a.bins));
    let mut pres = Presentations::default();
    for r in 0..REPS {
        for s in 0..a.stimuli {
            pres.stimulus_id.push(format!("im{s}"));
            pres.object_name.push(format!("obj{}", s % a.objects));
            pres.repetition.push(r as u32);
            for j in 0..a.neuroids {
                for k in 0..a.bins {
                    resp[[r * a.stimuli + s, j, k]] = clean[[s, j]] + 3.0 * rng.normal() as f32;
                }
            }
        }
    }
    let features = ModelFeatures {
        model: "bench-fit".into(),
        stimulus_id: (0..a.stimuli).map(|s| format!("im{s}")).collect(),
        areas: vec![AreaFeatures {
            area: "area".into(),
            data,
        }],
    };
    let assembly = Assembly {
        data: resp,
        presentations: pres,
        neuroids: Neuroids {
            neuroid_id: (0..a.neuroids).map(|j| format!("n{j}")).collect(),
            region: vec!["IT".into(); a.neuroids],
        },
        bins: TimeBin::uniform(70.0, 70.0 + 10.0 * a.bins as f64, 10.0),
    };
    Ok((features, assembly))
}

pub fn run(a: &BenchFitArgs) -> Result<()> {
    let t = Instant::now();
    let (features, assembly) = synthetic(a)?;
    eprintln!(
        "generated {} stimuli × {} features × {} steps and {} neuroids in {:.1} s",
        a.stimuli,
        a.features,
        a.bins,
        a.neuroids,
        t.elapsed().as_secs_f64()
    );
    let cfg = FitConfig {
        regression: Regression::Pls {
            components: a.components,
        },
        splits: a.splits,
        seed: a.seed,
        ..FitConfig::default()
    };

    // One fit alone: bin 0's features and repetition-averaged responses, split 0.
    let splits = stratified_splits(
        &assembly.presentations.object_name[..a.stimuli],
        a.splits,
        cfg.test_fraction,
        a.seed,
    )?;
    let x = features.areas[0].data.index_axis(Axis(2), 0);
    let reps = assembly.data.len_of(Axis(0)) / a.stimuli;
    let mut y = Array2::<f64>::zeros((a.stimuli, a.neuroids));
    for r in 0..reps {
        let rows = assembly
            .data
            .slice(ndarray::s![r * a.stimuli..(r + 1) * a.stimuli, .., 0]);
        y.zip_mut_with(&rows, |o, &v| *o += v as f64 / reps as f64);
    }
    let (train, test) = (&splits[0].train, &splits[0].test);
    let t = Instant::now();
    // As the protocol does: the Gram matrix straight from the f32 features.
    let pred = if cfg.regression.prefers_gram(train.len(), a.features) {
        let g = centred_gram(x)?;
        cfg.regression
            .fit_predict_gram(g.view(), y.view(), &[&splits[0]], a.features)?
            .pop()
            .context("one split fitted, no prediction returned")?
    } else {
        let x = x.mapv(f64::from);
        cfg.regression.fit_predict(
            x.select(Axis(0), train).view(),
            y.select(Axis(0), train).view(),
            x.select(Axis(0), test).view(),
        )?
    };
    let one_fit_s = t.elapsed().as_secs_f64();
    eprintln!("one fit (Gram + split 0): {one_fit_s:.2} s");
    if let Some(dir) = &a.dump {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_npy_f64(&dir.join("x.npy"), &x.mapv(f64::from))?;
        write_npy_f64(&dir.join("y.npy"), &y)?;
        write_npy_f64(&dir.join("pred.npy"), &pred)?;
        write_npy_i64(&dir.join("train.npy"), train)?;
        write_npy_i64(&dir.join("test.npy"), test)?;
        eprintln!(
            "wrote bin 0 / split 0 inputs and predictions to {}",
            dir.display()
        );
    }

    let (t, cpu) = (Instant::now(), cpu_seconds());
    let report = score(&features, &assembly, &cfg)?;
    let protocol_s = t.elapsed().as_secs_f64();
    let protocol_cpu_s = cpu_seconds() - cpu;
    let mut r: Vec<f64> = report.raw_r["area"]["IT"]
        .iter()
        .flatten()
        .copied()
        .collect();
    r.sort_by(f64::total_cmp);
    let result = BenchFitResult {
        stimuli: a.stimuli,
        features: a.features,
        neuroids: a.neuroids,
        bins: a.bins,
        splits: a.splits,
        components: a.components,
        protocol_s,
        protocol_cpu_s,
        one_fit_s,
        median_r: r.get(r.len() / 2).copied().unwrap_or(f64::NAN),
        threads: rayon::current_num_threads(),
        cpu: cpu_model(),
        gemm_kernel: Kernel::detect().to_string(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "full protocol ({} bins × {} splits, PLS {}): {:.1} s ({:.1} CPU s); one fit {:.2} s; median r {:.3}; {} threads; {}, {} kernels",
            a.bins,
            a.splits,
            a.components,
            protocol_s,
            protocol_cpu_s,
            one_fit_s,
            result.median_r,
            result.threads,
            result.cpu,
            result.gemm_kernel
        );
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (every thread).
#[cfg(unix)]
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zero-initialised struct it is given and reads nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(not(unix))]
fn cpu_seconds() -> f64 {
    f64::NAN
}

/// The CPU's `model name` from /proc/cpuinfo (`unknown CPU` where there is none).
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A NumPy `.npy` (format 1.0) header for a little-endian C-order array.
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n' is padded to a multiple of 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

fn write_npy(path: &Path, header: Vec<u8>, body: Vec<u8>) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&header)?;
    f.write_all(&body)?;
    Ok(())
}

fn write_npy_f64(path: &Path, a: &Array2<f64>) -> Result<()> {
    let body = a.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(path, npy_header("<f8", &[a.nrows(), a.ncols()]), body)
}

fn write_npy_i64(path: &Path, v: &[usize]) -> Result<()> {
    let body = v.iter().flat_map(|&i| (i as i64).to_le_bytes()).collect();
    write_npy(path, npy_header("<i8", &[v.len()]), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_are_aligned_and_well_formed() {
        for shape in [vec![3usize], vec![2560, 10_000]] {
            let h = npy_header("<f8", &shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..6], b"\x93NUMPY");
            assert_eq!(*h.last().unwrap_or(&0), b'\n');
        }
    }

    #[test]
    fn small_protocol_runs_and_predicts() {
        let a = BenchFitArgs {
            stimuli: 128,
            features: 300,
            neuroids: 6,
            bins: 2,
            splits: 2,
            components: 5,
            objects: 8,
            seed: 1,
            dump: None,
            json: false,
        };
        let (f, asm) = synthetic(&a).unwrap();
        let report = score(
            &f,
            &asm,
            &FitConfig {
                regression: Regression::Pls { components: 5 },
                splits: 2,
                ..FitConfig::default()
            },
        )
        .unwrap();
        let r = &report.raw_r["area"]["IT"];
        assert!(r.iter().flatten().all(|&v| v > 0.3), "{r:?}");
    }
}
