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

/// A temp copy of the checkpoint files of reference fixture `name`.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(reference().join(name)).expect("fixture dir") {
        let p = entry.expect("entry").path();
        let file = p.file_name().expect("name").to_string_lossy().to_string();
        if file.starts_with("model.ckpt") {
            std::fs::copy(&p, dir.path().join(&file)).expect("copy");
        }
    }
    let prefix = dir.path().join("model.ckpt");
    (dir, prefix)
}

/// CRC-32C as TensorFlow stores it (masked).
fn masked_crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    let crc = !crc;
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(buf: &[u8], pos: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = buf[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return v;
        }
    }
}

/// Replaces the one occurrence of `old` in the index by `new` (as long) and re-checksums the
/// table block holding it, so that the edit reads as what a writer stored, not as damage.
fn patch_index(prefix: &Path, old: &[u8], new: &[u8]) {
    let path = prefix.with_extension("ckpt.index");
    let mut bytes = std::fs::read(&path).expect("index");
    let at: Vec<usize> = (0..=bytes.len() - old.len())
        .filter(|&i| bytes[i..i + old.len()] == *old)
        .collect();
    assert_eq!(at.len(), 1, "{old:02x?} must occur once in the index");
    bytes[at[0]..at[0] + new.len()].copy_from_slice(new);
    // Footer: meta-index handle, index handle; each index entry's value is a data block's handle.
    let mut pos = bytes.len() - 48;
    let handles: Vec<usize> = (0..4).map(|_| varint(&bytes, &mut pos) as usize).collect();
    let (index_at, index_len) = (handles[2], handles[3]);
    let block = &bytes[index_at..index_at + index_len];
    let restarts = u32::from_le_bytes(block[index_len - 4..].try_into().expect("u32")) as usize;
    let end = index_len - 4 - 4 * restarts;
    let mut handles = Vec::new();
    let mut p = 0;
    while p < end {
        let _shared = varint(block, &mut p);
        let key_len = varint(block, &mut p) as usize;
        let value_len = varint(block, &mut p) as usize;
        let mut v = p + key_len;
        let offset = varint(block, &mut v) as usize;
        handles.push((offset, varint(block, &mut v) as usize));
        p += key_len + value_len;
    }
    let (start, len) = handles
        .into_iter()
        .find(|&(o, n)| (o..o + n).contains(&at[0]))
        .expect("the patch lies in a data block");
    let crc = masked_crc32c(&bytes[start..start + len + 1]);
    bytes[start + len + 1..start + len + 5].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, bytes).expect("write index");
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The last fields of an index entry (offset, size, crc32c; in number order, zeros left out, as
/// TensorFlow writes them) for `bytes` stored at `offset`: unique to a tensor, by its offset.
fn entry_tail(offset: u64, bytes: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    if offset > 0 {
        e.push(0x20);
        put_varint(offset, &mut e);
    }
    if !bytes.is_empty() {
        e.push(0x28);
        put_varint(bytes.len() as u64, &mut e);
    }
    e.push(0x35);
    e.extend(masked_crc32c(bytes).to_le_bytes());
    e
}

/// Sets element `index` of float32 variable `name` to `value`, its stored checksum updated.
fn poison(prefix: &Path, name: &str, index: usize, value: f32) {
    let ckpt = tf_checkpoint::Checkpoint::open(prefix).expect("opens");
    let info = ckpt.info(name).expect("present").clone();
    let shard = &ckpt.shard_paths()[info.shard_id as usize];
    let mut data = std::fs::read(shard).expect("shard");
    let range = info.offset as usize..(info.offset + info.size) as usize;
    let old = entry_tail(info.offset as u64, &data[range.clone()]);
    data[range.start + 4 * index..range.start + 4 * index + 4]
        .copy_from_slice(&value.to_le_bytes());
    let new = entry_tail(info.offset as u64, &data[range]);
    std::fs::write(shard, data).expect("write shard");
    patch_index(prefix, &old, &new);
    tf_checkpoint::Checkpoint::open(prefix)
        .and_then(|c| c.read(name))
        .expect("the poisoned tensor still passes its checksum");
}

#[test]
fn nan_or_infinite_weights_are_refused_by_name() {
    for (value, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let (_dir, prefix) = copy_of("timedecay_shallow");
        poison(&prefix, "tnn_model/conv2/pre_0/bias", 3, value);
        let e = import_err(&prefix, "timedecay_shallow");
        let ImportError::NonFinite {
            variable, index, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(
            (variable.as_str(), *index),
            ("tnn_model/conv2/pre_0/bias", 3)
        );
        assert!(e.to_string().contains(shown), "{e}");
    }
}

#[test]
fn a_nan_decoder_temperature_is_refused() {
    let (_dir, prefix) = copy_of("rgc_intermediate_dthresh");
    poison(&prefix, "tnn_model/normalize/softmax_beta", 0, f32::NAN);
    let e = import_err(&prefix, "rgc_intermediate_dthresh");
    assert!(
        matches!(&e, ImportError::NonFinite { variable, .. } if variable == "tnn_model/normalize/softmax_beta"),
        "{e}"
    );
}

/// The index entry TensorFlow writes for a float32 variable of shape `[1]` holding `bytes` at
/// `offset` of shard 0.
fn f32_entry(offset: u64, bytes: &[u8; 4]) -> Vec<u8> {
    [
        &[0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x01][..],
        &entry_tail(offset, bytes),
    ]
    .concat()
}

#[test]
fn an_empty_decoder_threshold_is_a_wrong_shape() {
    let (_dir, prefix) = copy_of("rgc_intermediate_dthresh");
    let name = "tnn_model/decoder_threshold";
    let ckpt = tf_checkpoint::Checkpoint::open(&prefix).expect("opens");
    let info = ckpt.info(name).expect("present").clone();
    let value: [u8; 4] = ckpt
        .read(name)
        .expect("reads")
        .bytes()
        .try_into()
        .expect("4 bytes");
    let old = f32_entry(info.offset as u64, &value);
    // Shape [0] and size 0 (written out, so that the entry keeps its length), and the empty
    // tensor's checksum: a consistent entry, which the reader alone accepts.
    let mut new = old.clone();
    let n = new.len();
    new[7] = 0;
    new[n - 6] = 0;
    new[n - 4..].copy_from_slice(&masked_crc32c(&[]).to_le_bytes());
    patch_index(&prefix, &old, &new);
    let e = import_err(&prefix, "rgc_intermediate_dthresh");
    let ImportError::Mismatch { mismatch, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(mismatch.wrong_shape.len(), 1, "{e}");
    let w = &mismatch.wrong_shape[0];
    assert_eq!(
        (w.variable.as_str(), w.found.clone(), w.expected.clone()),
        (name, vec![0], vec![1])
    );
}
