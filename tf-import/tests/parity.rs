//! The released architectures, imported from checkpoints the reference code itself wrote, compute
//! what the reference code computes: every area at every step, the logits of every step and the
//! model's decoder output, for the default presentation and the `neural` one (26 steps, image off
//! at step 10), within 1e-4 relative in f32.
//!
//! What the fixtures are (`tests/reference/make_reference.py`, which runs the official
//! neuroailab/convrnns code unmodified under TensorFlow 2.21 through `tf1_shim.py`): every
//! released architecture at 224 px and batch 2, with its channel widths divided by 32 (the
//! manifest's `divisor`), seeded random values in every trainable variable, saved as a TF
//! checkpoint, and the reference's outputs for two fixed images. Full-width checkpoints would be
//! 60–340 MB each; the narrowed ones are all the released graphs at once in ~3 MB, with every
//! kernel size, stride, map size (and so every SAME-padding asymmetry, the median cell's kernel
//! clipping, the LSTM's per-position peepholes), edge, step count and decoder of the originals.
//! The same narrowing of our presets (`topology::zoo::narrowed`) must then read those checkpoints
//! with nothing left over and reproduce the outputs.
//!
//! What is compared, per area, step and image: the map's mean, standard deviation, minimum and
//! maximum, and its values at 12 fixed positions (the fixtures keep samples and statistics, not
//! whole maps); the logits of every step and the decoder's output in full.
//!
//! Tolerance: `|ours − reference| ≤ 1e-4 · (|reference| + rms)`, `rms` the root mean square of the
//! reference map it belongs to. The relative part covers f32 rounding of the two libraries'
//! different summation orders (oneDNN or our kernels against Eigen), compounded over up to 30
//! steps of recurrence and 11 areas; the `rms` part keeps values that happen to lie near zero
//! (cancellation in a sum of larger terms) from demanding more than f32 offers. A wrong weight
//! layout, gate order, padding side or step offset changes outputs by far more.
//!
//! With `--features cuda`, `cuda::*` runs every comparison again with the model on `cuda:0`
//! (skipped, with a message, where no GPU is usable; `scripts/gpu-check.sh` runs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde_json::Value;
use tensor::{Device, Tensor};
use topology::{zoo, Frames, Presentation, UnrollOptions};

const RTOL: f64 = 1e-4;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The fixtures: `tests/reference`, or the directory in `CONVRNN_PARITY_FIXTURES` (fixtures
/// made with other settings, e.g. `make_reference.py --divisor 1` for full width).
fn reference_dir() -> PathBuf {
    match std::env::var_os("CONVRNN_PARITY_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference"),
    }
}

fn manifest() -> Value {
    let text =
        std::fs::read_to_string(reference_dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// The fixture script's two 224×224 images, NCHW: pixel `(hash >> 24) / 255` with
/// `hash = (((b·224 + h)·224 + w)·3 + c) · 2654435761 mod 2³²`, then ImageNet-normalised.
fn images(batch: usize) -> Tensor {
    let side = 224;
    let mut v = vec![0f32; batch * 3 * side * side];
    for b in 0..batch {
        for c in 0..3 {
            for h in 0..side {
                for w in 0..side {
                    let flat = (((b * side + h) * side + w) * 3 + c) as u64;
                    let hash = (flat * 2_654_435_761) % (1 << 32);
                    let x = (hash >> 24) as f32 / 255.0;
                    v[((b * 3 + c) * side + h) * side + w] = (x - MEAN[c]) / STD[c];
                }
            }
        }
    }
    Tensor::from_vec(v, [batch, 3, side, side], Device::Cpu).expect("images")
}

/// One fixture file's tensors as f32 (positions as integers stored in f32 are exact).
struct Fixture {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    steps: usize,
}

fn load_fixture(path: &Path) -> Fixture {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("header");
    let steps = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("steps"))
        .and_then(|s| s.parse().ok())
        .expect("steps in the metadata");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            safetensors::Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Fixture { tensors, steps }
}

impl Fixture {
    fn get(&self, name: &str) -> &(Vec<usize>, Vec<f64>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no {name}"))
    }
}

/// Mismatches found, reported together.
#[derive(Default)]
struct Report {
    /// The first 40 failures, for the message.
    failures: Vec<String>,
    failed: usize,
    compared: usize,
    worst: f64,
}

impl Report {
    fn check(&mut self, what: impl FnOnce() -> String, ours: f64, reference: f64, scale: f64) {
        self.compared += 1;
        let allowed = RTOL * (reference.abs() + scale) + 1e-30;
        let err = (ours - reference).abs();
        self.worst = self.worst.max(err / allowed * RTOL);
        if (err.is_nan() || err > allowed) && self.failures.len() < 40 {
            self.failures.push(format!(
                "{}: ours {ours:.7e}, reference {reference:.7e}",
                what()
            ));
        }
    }
}

/// Compares one map `[B, C, H, W]` (or `[B, K]`) of ours with the fixture's statistics and samples
/// of `area` at `step`. With `PARITY_TRACE` set, prints the worst error of each area and step (to
/// tell rounding that grows with the steps from a term that is wrong from some step on).
fn compare_map(r: &mut Report, fx: &Fixture, area: &str, step: usize, ours: &Tensor) {
    let before = r.worst;
    r.worst = 0.0;
    compare_map_inner(r, fx, area, step, ours);
    if std::env::var_os("PARITY_TRACE").is_some() {
        eprintln!("trace {area} step {step}: worst {:.2e}", r.worst);
    }
    r.worst = r.worst.max(before);
}

fn compare_map_inner(r: &mut Report, fx: &Fixture, area: &str, step: usize, ours: &Tensor) {
    let dims = ours.dims().to_vec();
    let values = ours.to_vec().expect("to_vec");
    let batch = dims[0];
    let per = values.len() / batch;
    let (_, stats) = fx.get(&format!("{area}/stats"));
    let (sshape, samples) = fx.get(&format!("{area}/samples"));
    let (_, positions) = fx.get(&format!("{area}/positions"));
    let k = sshape[2];
    for b in 0..batch {
        let map = &values[b * per..(b + 1) * per];
        let n = map.len() as f64;
        let mean = map.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = map.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let min = map.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
        let max = map.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let s = &stats[(step * batch + b) * 4..(step * batch + b) * 4 + 4];
        let rms = (s[0] * s[0] + s[1] * s[1]).sqrt();
        for (name, ours, reference) in [
            ("mean", mean, s[0]),
            ("std", var.sqrt(), s[1]),
            ("min", min, s[2]),
            ("max", max, s[3]),
        ] {
            r.check(
                || format!("{area} step {step} image {b} {name}"),
                ours,
                reference,
                rms,
            );
        }
        for j in 0..k {
            // NHWC positions (h, w, c) of the reference; c alone for [B, K] outputs.
            let index = if dims.len() == 4 {
                let (h, w, c) = (
                    positions[j * 3] as usize,
                    positions[j * 3 + 1] as usize,
                    positions[j * 3 + 2] as usize,
                );
                (c * dims[2] + h) * dims[3] + w
            } else {
                positions[j] as usize
            };
            let reference = samples[(step * batch + b) * k + j];
            r.check(
                || format!("{area} step {step} image {b} sample {j}"),
                map[index] as f64,
                reference,
                rms,
            );
        }
    }
}

/// Compares a `[B, K]` tensor of ours with a full one of the fixture (`rows` = B·K values).
fn compare_full(r: &mut Report, what: &str, ours: &Tensor, reference: &[f64]) {
    let values = ours.to_vec().expect("to_vec");
    assert_eq!(values.len(), reference.len(), "{what}: sizes differ");
    let batch = ours.dims()[0];
    let per = values.len() / batch;
    for b in 0..batch {
        let row = &reference[b * per..(b + 1) * per];
        let rms = (row.iter().map(|v| v * v).sum::<f64>() / per as f64).sqrt();
        for j in 0..per {
            r.check(
                || format!("{what} image {b} class {j}"),
                values[b * per + j] as f64,
                row[j],
                rms,
            );
        }
    }
}

fn parity(name: &str, device: Device) {
    let manifest = manifest();
    let entry = &manifest["models"][name];
    let divisor = entry["divisor"].as_u64().expect("divisor") as usize;
    let ckpt_model = entry["checkpoint"].as_str().expect("checkpoint");
    let spec = zoo::narrowed(
        &zoo::get(name).expect("a preset of every released name"),
        divisor,
    );
    let prefix = reference_dir().join(ckpt_model).join("model.ckpt");
    let imported =
        tf_import::import_path(&prefix, &spec, device).unwrap_or_else(|e| panic!("{name}: {e}"));
    let model = imported.model;
    assert_eq!(
        model.num_params() + model.spec.decoder.trained_scalars(),
        entry["trainable_parameters"].as_u64().expect("count") as usize,
        "{name}: narrowed parameter count"
    );
    let batch = manifest["batch"].as_u64().expect("batch") as usize;
    let image = images(batch)
        .to_device(device)
        .expect("images to the device");
    let areas: Vec<String> = model.spec.areas.iter().map(|a| a.name.clone()).collect();
    let mut report = Report::default();
    for (presentation, file) in [
        (Presentation::Default, "default"),
        (Presentation::Neural, "neural"),
    ] {
        let fx = load_fixture(
            &reference_dir()
                .join(name)
                .join(format!("{file}.safetensors")),
        );
        let frames = Frames::Image {
            image: image.clone(),
            presentation,
            blank: topology::DEFAULT_BLANK,
        };
        let _guard = tensor::no_grad();
        let out = model
            .unroll(
                &frames,
                &UnrollOptions {
                    steps: Some(fx.steps),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{name} {file}: {e}"));
        assert_eq!(out.steps(), fx.steps, "{name} {file}: steps");
        for (i, area) in areas.iter().enumerate() {
            for t in 0..fx.steps {
                let y = out.outputs[i][t].as_ref().expect("every output kept");
                compare_map(&mut report, &fx, area, t, y);
            }
        }
        let logits = out.all_logits().expect("logits");
        let (_, full) = fx.get("imnetds/full");
        let per_step = full.len() / fx.steps;
        for (t, l) in logits.iter().enumerate() {
            compare_full(
                &mut report,
                &format!("{file} logits step {t}"),
                l,
                &full[t * per_step..(t + 1) * per_step],
            );
        }
        let decoded = model.spec.decoder.decode(&logits).expect("decode");
        compare_full(
            &mut report,
            &format!("{file} {} decoder", model.spec.decoder.name()),
            &decoded,
            &fx.get("logits").1,
        );
    }
    assert!(
        report.failed == 0,
        "{name}: {} of {} values outside 1e-4 (worst {:.2e} relative; the first 40:)\n{}",
        report.failed,
        report.compared,
        report.worst,
        report.failures.join("\n")
    );
    eprintln!(
        "{name} on {device}: {} values within tolerance (worst {:.2e} of the 1e-4 allowed)",
        report.compared, report.worst
    );
}

macro_rules! parity_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                parity(stringify!($name), Device::Cpu);
            }
        )*

        /// The same checkpoints imported onto `cuda:0`, against the same reference outputs and
        /// within the same tolerance: cuDNN's convolutions (TF32 off, the default) and our CUDA
        /// kernels differ from Eigen's summation order no more than our CPU kernels do. Built
        /// with `--features cuda` (`scripts/gpu-check.sh build`), run by `scripts/gpu-check.sh
        /// run` (`CONVRNN_PARITY_FIXTURES` points at the fixtures there); where no GPU is
        /// usable each test prints `skipped: no CUDA device (…)` and passes.
        #[cfg(feature = "cuda")]
        mod cuda {
            use super::*;
            $(
                #[test]
                fn $name() {
                    if let Err(e) = tensor::cuda::probe(0) {
                        println!("skipped: no CUDA device ({e})");
                        return;
                    }
                    parity(stringify!($name), Device::Cuda(0));
                }
            )*
        }
    };
}

parity_tests!(
    timedecay_shallow,
    simplernn_shallow,
    gru_shallow,
    lstm_shallow,
    intersectionrnn_shallow,
    ugrnn_shallow,
    rgc_shallow,
    timedecay_intermediate,
    simplernn_intermediate,
    gru_intermediate,
    lstm_intermediate,
    intersectionrnn_intermediate,
    ugrnn_intermediate,
    ugrnn_intermediate_t30,
    ugrnn_intermediate_t30_dthresh,
    ugrnn_intermediate_t30_tmaxconf,
    rgc_intermediate,
    rgc_intermediate_dthresh,
    rgc_intermediate_tmaxconf,
    rgc_intermediate_t22_tmaxconf,
);

/// Checks that the presets of `names` have exactly the trainable parameters of the reference's
/// full-width graphs (the fixture script builds each one and counts them; optimiser slots and the
/// reference's constants are not parameters), the `*_tmaxconf` models' trained softmax temperature
/// included.
fn full_width_counts(names: &[&str]) {
    let manifest = manifest();
    for name in names {
        let entry = &manifest["models"][name];
        let spec = zoo::get(name).unwrap_or_else(|| panic!("no preset {name}"));
        let model = topology::Model::new(&spec, Device::Cpu, 0).expect("builds");
        let ours = model.num_params() + spec.decoder.trained_scalars();
        let reference = entry["full_width_trainable_parameters"]
            .as_u64()
            .expect("count") as usize;
        assert_eq!(ours, reference, "{name}");
    }
}

/// The counts that the reference's structure decides beyond the cell equations: SimpleRNN's two
/// biases, the trained max_conf temperature. (Building full-width models is the slow part: these
/// two hold 22 M parameters.)
#[test]
fn released_presets_have_the_checkpoints_parameter_counts() {
    full_width_counts(&["simplernn_shallow", "rgc_intermediate_tmaxconf"]);
}

/// All 20 released names (about 100 s on 2 cores: 480 M parameters are initialised):
/// `cargo test -p tf-import --test parity -- --ignored every_released_preset`.
#[test]
#[ignore = "builds every full-width released model (~100 s); run with --ignored"]
fn every_released_preset_has_its_checkpoints_parameter_count() {
    let manifest = manifest();
    let names: Vec<&str> = manifest["models"]
        .as_object()
        .expect("models")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names.len(), 20, "every released name has a fixture");
    full_width_counts(&names);
}
