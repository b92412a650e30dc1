//! Imports that must fail name what is wrong; the training state of a real checkpoint is skipped.
//! The checkpoints are `tests/reference/import_cases/` (written by TensorFlow from the narrowed
//! `timedecay_shallow`, see `make_reference.py --import-cases`) and the parity fixtures.

use std::path::{Path, PathBuf};

use tensor::Device;
use tf_import::{import_path, ImportError};
use topology::{zoo, Decoder, ModelSpec};

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

fn narrowed(name: &str) -> ModelSpec {
    zoo::narrowed(&zoo::get(name).expect("preset"), 32)
}

fn case(name: &str) -> PathBuf {
    reference()
        .join("import_cases")
        .join(name)
        .join("model.ckpt")
}

fn import_err(path: &Path, model: &str) -> ImportError {
    import_path(path, &narrowed(model), Device::Cpu).expect_err("the import must fail")
}

#[test]
fn a_renamed_variable_is_named_both_ways() {
    let e = import_err(&case("renamed"), "timedecay_shallow");
    let ImportError::Mismatch { mismatch, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(mismatch.missing.len(), 1, "{e}");
    assert_eq!(mismatch.missing[0].0, "tnn_model/conv3/pre_0/bias");
    assert_eq!(mismatch.missing[0].1, "conv3/conv/bias");
    assert_eq!(
        mismatch.unexpected,
        vec!["tnn_model/conv3/pre_0/biases".to_string()]
    );
    let text = e.to_string();
    assert!(
        text.contains("tnn_model/conv3/pre_0/biases") && text.contains("conv3/conv/bias"),
        "{text}"
    );
}

#[test]
fn a_missing_variable_is_named() {
    let e = import_err(&case("missing"), "timedecay_shallow");
    let ImportError::Mismatch { mismatch, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(
        mismatch.missing,
        vec![(
            "tnn_model/conv2/pre_0/weights_basenet".to_string(),
            "conv2/conv/weight".to_string()
        )]
    );
    assert!(
        mismatch.unexpected.is_empty() && mismatch.wrong_shape.is_empty(),
        "{e}"
    );
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let e = import_err(&case("wrong_shape"), "timedecay_shallow");
    let ImportError::Mismatch { mismatch, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(mismatch.wrong_shape.len(), 1, "{e}");
    let w = &mismatch.wrong_shape[0];
    assert_eq!(
        (w.variable.as_str(), w.parameter.as_str()),
        ("tnn_model/conv4/pre_0/bias", "conv4/conv/bias")
    );
    assert_eq!((w.found.clone(), w.expected.clone()), (vec![16], vec![8]));
    assert!(
        e.to_string().contains("[16]") && e.to_string().contains("[8]"),
        "{e}"
    );
}

#[test]
fn momentum_slots_and_the_step_counter_are_skipped() {
    let imported = import_path(
        &case("training_state"),
        &narrowed("timedecay_shallow"),
        Device::Cpu,
    )
    .expect("imports");
    let skipped = &imported.report.training_state_skipped;
    assert!(skipped.contains(&"global_step".to_string()));
    let slots = skipped.iter().filter(|n| n.ends_with("/Momentum")).count();
    // One slot per trainable variable: 5 areas' kernels and biases, 3 decays, the readout's 2.
    assert_eq!(slots, 5 * 2 + 3 + 2, "{skipped:?}");
    assert_eq!(
        imported.report.constants_checked, 3,
        "memory_decay of conv1, conv2, imnetds"
    );
}

#[test]
fn another_models_checkpoint_lists_what_does_not_fit() {
    let e = import_err(&reference().join("rgc_shallow/model.ckpt"), "gru_shallow");
    let ImportError::Mismatch { mismatch, model } = &e else {
        panic!("{e}")
    };
    assert_eq!(model, "gru_shallow");
    assert!(
        mismatch
            .missing
            .iter()
            .any(|(v, _)| v == "tnn_model/conv3/ConvGRUCell/gates/weights"),
        "{e}"
    );
    assert!(
        mismatch
            .unexpected
            .iter()
            .any(|v| v == "tnn_model/conv3/ReciprocalGateCell/cell/tau/weights"),
        "{e}"
    );
}

#[test]
fn a_trained_decay_where_the_model_has_none_is_refused() {
    // feedforward_shallow keeps TF's non-trainable memory_decay = 0 in conv3–conv5, which the
    // time-decay checkpoint trained; its kernels and biases fit.
    let e = import_err(
        &reference().join("timedecay_shallow/model.ckpt"),
        "feedforward_shallow",
    );
    let ImportError::Constant {
        variable,
        expected,
        found,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert!(
        variable.starts_with("tnn_model/conv3/memory_decay") || variable.contains("/memory_decay"),
        "{e}"
    );
    assert_eq!(*expected, 0.0);
    assert!(*found > 0.1, "{e}");
}

#[test]
fn decoder_settings_come_from_the_checkpoint() {
    let tmaxconf = import_path(
        &reference().join("rgc_intermediate_tmaxconf/model.ckpt"),
        &narrowed("rgc_intermediate_tmaxconf"),
        Device::Cpu,
    )
    .expect("imports");
    let Decoder::MaxConf { from, beta } = tmaxconf.model.spec.decoder else {
        panic!("max_conf")
    };
    assert_eq!(from, 11);
    assert!(
        (0.5..2.0).contains(&beta) && beta != 1.0,
        "the fixture's trained temperature, got {beta}"
    );
    let dthresh = import_path(
        &reference().join("rgc_intermediate_dthresh/model.ckpt"),
        &narrowed("rgc_intermediate_dthresh"),
        Device::Cpu,
    )
    .expect("imports");
    assert_eq!(
        dthresh.model.spec.decoder,
        Decoder::Thresh {
            from: 11,
            threshold: 0.9,
            beta: 1.0
        }
    );
    // A max_conf checkpoint does not load as the plain model: its decoder variables are left over.
    let e = import_err(
        &reference().join("rgc_intermediate_tmaxconf/model.ckpt"),
        "rgc_intermediate",
    );
    assert!(
        e.to_string().contains("tnn_model/normalize/softmax_beta"),
        "{e}"
    );
}
