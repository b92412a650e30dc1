//! `cargo xtask import` turns a released-format checkpoint into a run directory that the tools
//! taking runs read, as the README's "The paper's models" says: `info`, `eval`, and the feature
//! extraction behind `neurofit` and `export-activations`.
//!
//! The checkpoint is the narrowed `rgc_shallow` parity fixture (every width divided by 32, seeded
//! random weights, 23,731 parameters, 130 kB), written by TensorFlow's own `Saver` through the
//! reference code (`tf-import/tests/reference/make_reference.py`): a real tensor bundle, small
//! enough for the default suite, instead of the 5 GB of released checkpoints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array4;
use neurofit::{extract_features, ExtractOptions, Reduction};
use tensor::{Device, Rng};
use topology::{zoo, ModelSpec, Presentation};

const NARROWED_PARAMS: u64 = 23_731;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("runs xtask")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tf-import/tests/reference")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn narrowed_rgc_shallow() -> ModelSpec {
    zoo::narrowed(&zoo::get("rgc_shallow").expect("preset"), 32)
}

/// An ImageNet-shaped tree for `eval`: `classes` classes (the run's data must have the model's)
/// of one small JPEG each in `val/`, and `train/` the same folder.
fn tiny_imagenet(root: &Path, classes: usize) {
    let config = datasets::synthetic::SyntheticConfig {
        classes,
        per_class: 1,
        sizes: vec![(20, 16)],
        quality: 80,
        seed: 3,
    };
    datasets::synthetic::write_tree(&root.join("val"), &config).expect("writes images");
    std::os::unix::fs::symlink(root.join("val"), root.join("train")).expect("symlink");
}

/// Imports the fixture into `run`, recording `data` for `eval`.
fn import(run: &Path, spec_path: &Path, data: &Path) {
    let ckpt = reference_dir().join("rgc_shallow/model.ckpt");
    ok(
        xtask(&[
            "import",
            "--checkpoint",
            s(&ckpt),
            "--model",
            s(spec_path),
            "--out",
            s(run),
            "--data-dir",
            s(data),
        ]),
        "import",
    );
}

#[test]
fn an_imported_checkpoint_is_a_run_directory_for_info_eval_and_extraction() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = narrowed_rgc_shallow();
    let spec_path = tmp.path().join("rgc_shallow_narrow.json");
    std::fs::write(&spec_path, serde_json::to_string(&spec).expect("json")).expect("write spec");
    let data = tmp.path().join("imagenet");
    tiny_imagenet(&data, spec.num_classes);
    let run = tmp.path().join("run");
    import(&run, &spec_path, &data);

    for f in [
        "spec.json",
        "config.json",
        "checkpoint-best.safetensors",
        "import.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing from the run directory");
    }
    // A second import into the same folder is refused and changes nothing there: over a
    // training run it replaced the best checkpoint and left the latest one for `--resume`.
    let best = std::fs::read(run.join("checkpoint-best.safetensors")).expect("read best");
    let again = xtask(&[
        "import",
        "--checkpoint",
        s(&reference_dir().join("rgc_shallow/model.ckpt")),
        "--model",
        s(&spec_path),
        "--out",
        s(&run),
    ]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("already holds a run (checkpoint-best"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(run.join("checkpoint-best.safetensors")).expect("read best"),
        best
    );
    let provenance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("import.json")).expect("read"))
            .expect("json");
    assert_eq!(provenance["values_loaded"], NARROWED_PARAMS);
    assert!(provenance["checkpoint_index"]
        .as_str()
        .expect("path")
        .ends_with("rgc_shallow/model.ckpt.index"));

    // The run's checkpoint holds exactly the imported weights.
    let ckpt = reference_dir().join("rgc_shallow/model.ckpt");
    let file = trainer::checkpoint::resolve(&run).expect("a checkpoint in the run");
    let from_run = trainer::checkpoint::Checkpoint::read(&file)
        .expect("reads")
        .model(Device::Cpu)
        .expect("model");
    let direct = tf_import::import_path(&ckpt, &spec, Device::Cpu)
        .expect("imports")
        .model;
    for (name, p) in from_run.params.iter() {
        let q = direct.params.get(name).expect("same parameters");
        assert_eq!(p.to_vec().expect("vec"), q.to_vec().expect("vec"), "{name}");
    }

    // info: the run's architecture.
    let info = ok(xtask(&["info", s(&run), "--json"]), "info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info json");
    assert_eq!(info["params"], NARROWED_PARAMS);
    assert_eq!(info["default_steps"], 16);
    assert_eq!(info["areas"].as_array().expect("areas").len(), 6);

    // eval: accuracy per step and per decoder on the run's recorded data.
    let eval = ok(xtask(&["eval", s(&run), "--limit", "3", "--json"]), "eval");
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).expect("eval json");
    assert_eq!(eval["images"], 3);
    assert_eq!(eval["steps"], 16);
    assert_eq!(
        eval["top1_per_step"].as_array().expect("per step").len(),
        16
    );
    assert!(eval["loss"].as_f64().expect("loss").is_finite());

    // neurofit and export-activations load a run directory this way and extract every area at
    // every step of the neural presentation; the run's features are the imported model's.
    let mut rng = Rng::new(7);
    let n = 3;
    let mut pixels = Vec::with_capacity(n * 3 * 224 * 224);
    for _ in 0..n {
        let rgb = datasets::synthetic::image(224, 224, &mut rng);
        for c in 0..3 {
            pixels.extend((0..224 * 224).map(|i| {
                (rgb[i * 3 + c] as f32 / 255.0 - datasets::IMAGENET_MEAN[c])
                    / datasets::IMAGENET_STD[c]
            }));
        }
    }
    let images = Array4::from_shape_vec((n, 3, 224, 224), pixels).expect("images");
    let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let areas: Vec<String> = spec.areas.iter().map(|a| a.name.clone()).collect();
    let opts = ExtractOptions {
        batch_size: 2,
        presentation: Presentation::Neural,
        reduction: Reduction::Auto,
        ..ExtractOptions::default()
    };
    let ours = extract_features(&from_run, images.view(), &ids, &areas, 26, &opts)
        .expect("extracts from the run");
    let want = extract_features(&direct, images.view(), &ids, &areas, 26, &opts)
        .expect("extracts from the import");
    assert_eq!(ours.areas.len(), areas.len());
    for (a, b) in ours.areas.iter().zip(&want.areas) {
        assert_eq!(a.data.dim().0, n, "{}", a.area);
        assert_eq!(a.data.dim().2, 26, "{}: 26 steps", a.area);
        assert!(a.data.iter().all(|v| v.is_finite()), "{}", a.area);
        assert_eq!(a.data, b.data, "{}", a.area);
    }
    // The image is on for steps 0..10: the last area's features change over time.
    let last = &ours.areas.last().expect("areas").data;
    assert_ne!(
        last.slice(ndarray::s![.., .., 12]),
        last.slice(ndarray::s![.., .., 25])
    );
}

#[test]
fn importing_into_another_architecture_fails_naming_a_variable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = reference_dir().join("rgc_shallow/model.ckpt");
    // The fixture is rgc_shallow at 1/32 of its widths; the full-width preset does not fit it.
    let bad = xtask(&[
        "import",
        "--checkpoint",
        s(&ckpt),
        "--model",
        "rgc_shallow",
        "--out",
        s(&tmp.path().join("bad")),
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("wrong shape") && err.contains("tnn_model/conv1/pre_0/weights_basenet"),
        "{err}"
    );
    assert!(
        !tmp.path().join("bad/checkpoint-best.safetensors").exists(),
        "a failed import writes no checkpoint"
    );
}
