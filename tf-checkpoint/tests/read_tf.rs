//! Reads checkpoints written by TensorFlow itself (`tests/fixtures/make_checkpoints.py`, TF 2.21's
//! `tf.compat.v1.train.Saver`) and checks every value against what TensorFlow read back
//! (`expected.json`); then corrupts temp copies byte by byte and checks each failure's error.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tf_checkpoint::{Checkpoint, DType, Error};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

fn open(name: &str) -> Checkpoint {
    Checkpoint::open(fixtures().join(name).join("model.ckpt")).expect("opens")
}

/// Compares one tensor with TensorFlow's values (exactly: every value is representable).
fn check_tensor(ckpt: &Checkpoint, name: &str, want: &Value) {
    let t = ckpt.read(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(t.shape(), shape.as_slice(), "{name} shape");
    assert_eq!(
        t.dtype().name(),
        want["dtype"].as_str().expect("dtype"),
        "{name} dtype"
    );
    let values = want["values"].as_array().expect("values");
    match t.dtype() {
        DType::F32 | DType::F16 | DType::BF16 => {
            let got = t.to_f32().expect("f32");
            let want: Vec<f32> = values
                .iter()
                .map(|v| v.as_f64().expect("num") as f32)
                .collect();
            assert_eq!(got, want, "{name}");
        }
        DType::F64 => {
            let want: Vec<f64> = values.iter().map(|v| v.as_f64().expect("num")).collect();
            assert_eq!(t.to_f64().expect("f64"), want, "{name}");
        }
        DType::Bool => {
            let want: Vec<bool> = values.iter().map(|v| v.as_bool().expect("bool")).collect();
            assert_eq!(t.to_bool().expect("bool"), want, "{name}");
        }
        _ => {
            let want: Vec<i64> = values.iter().map(|v| v.as_i64().expect("int")).collect();
            assert_eq!(t.to_i64().expect("i64"), want, "{name}");
        }
    }
}

#[test]
fn every_dtype_reads_as_tensorflow_wrote_it() {
    let exp = expected();
    let ckpt = open("dtypes");
    let want = exp["dtypes"].as_object().expect("dtypes");
    assert_eq!(ckpt.len(), want.len());
    for (name, w) in want {
        if w["dtype"] == "string" {
            assert!(
                matches!(
                    ckpt.read(name),
                    Err(Error::UnsupportedDtype {
                        dtype: DType::String,
                        ..
                    })
                ),
                "{name} must be refused"
            );
            continue;
        }
        check_tensor(&ckpt, name, w);
    }
    // Conversions refuse other element types by name.
    let err = ckpt
        .read("global_step")
        .expect("reads")
        .to_f32()
        .expect_err("int64 is not f32");
    assert!(
        err.to_string().contains("global_step") && err.to_string().contains("int64"),
        "{err}"
    );
    assert!(matches!(
        ckpt.read("no/such/var"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn prefix_index_path_and_directory_all_open() {
    let dir = fixtures().join("dtypes");
    let a = Checkpoint::open(dir.join("model.ckpt")).expect("prefix");
    let b = Checkpoint::open(dir.join("model.ckpt.index")).expect("index path");
    let c = Checkpoint::open(&dir).expect("directory");
    assert_eq!(a.len(), b.len());
    assert_eq!(a.index_path(), c.index_path());
    assert!(matches!(
        Checkpoint::open(dir.join("nope.ckpt")),
        Err(Error::MissingIndex { .. })
    ));
}

#[test]
fn sharded_bundles_read_from_every_shard() {
    let exp = expected();
    let ckpt = open("sharded");
    assert_eq!(ckpt.shard_paths().len(), 2);
    let shards: std::collections::BTreeSet<i32> = ckpt.tensors().map(|(_, i)| i.shard_id).collect();
    assert_eq!(
        shards.len(),
        2,
        "the fixture spreads its variables over both shards"
    );
    for (name, w) in exp["sharded"].as_object().expect("sharded") {
        check_tensor(&ckpt, name, w);
    }
}

#[test]
fn partitioned_variables_are_refused_by_name() {
    let ckpt = open("sliced");
    let err = ckpt.read("partitioned").expect_err("sliced");
    assert!(matches!(err, Error::Sliced { slices: 3, .. }), "{err}");
    assert!(err.to_string().contains("partitioned"));
    check_tensor(&ckpt, "plain", &expected()["sliced"]["plain"]);
}

#[test]
fn a_directory_of_several_checkpoints_names_them_instead_of_picking_or_denying() {
    let (dir, prefix) = copy_of("dtypes");
    let index = prefix.with_extension("ckpt.index");
    std::fs::copy(&index, dir.path().join("model.ckpt-500.index")).expect("copy");
    let err = Checkpoint::open(dir.path()).expect_err("two checkpoints");
    let Error::AmbiguousIndex { found, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(found, &[prefix.clone(), dir.path().join("model.ckpt-500")]);
    let text = err.to_string();
    assert!(
        text.contains("model.ckpt, model.ckpt-500") && text.contains("2 checkpoint indexes"),
        "{text}"
    );
    Checkpoint::open(&prefix).expect("a prefix still picks one");
}

/// A temp copy of one fixture checkpoint.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixtures().join(name)).expect("fixture dir") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copy");
    }
    let prefix = dir.path().join("model.ckpt");
    (dir, prefix)
}

fn mutate(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    f(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_corrupted_tensor_fails_its_checksum_and_only_it() {
    let (_dir, prefix) = copy_of("dtypes");
    let ckpt = Checkpoint::open(&prefix).expect("opens");
    let info = ckpt.info("f32/random").expect("present").clone();
    let data = ckpt.shard_paths()[0].clone();
    mutate(&data, |b| b[info.offset as usize + 9] ^= 0x01);
    let err = ckpt.read("f32/random").expect_err("corrupt");
    assert!(
        matches!(&err, Error::DataChecksum { name, .. } if name == "f32/random"),
        "{err}"
    );
    ckpt.read("f32/matrix").expect("other tensors still read");
}

#[test]
fn a_truncated_shard_names_the_tensor_past_its_end() {
    let (_dir, prefix) = copy_of("dtypes");
    let ckpt = Checkpoint::open(&prefix).expect("opens");
    let (last, info) = ckpt
        .tensors()
        .filter(|(_, i)| i.size > 0)
        .max_by_key(|(_, i)| i.offset)
        .expect("tensors");
    let (last, info) = (last.to_string(), info.clone());
    mutate(&ckpt.shard_paths()[0], |b| {
        b.truncate(info.offset as usize + 1)
    });
    let err = ckpt.read(&last).expect_err("truncated");
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert!(err.to_string().contains(&last), "{err}");
}

#[test]
fn a_missing_shard_is_named() {
    let (_dir, prefix) = copy_of("sharded");
    std::fs::remove_file(prefix.with_extension("ckpt.data-00001-of-00002")).expect("remove");
    let err = Checkpoint::open(&prefix).expect_err("missing shard");
    assert!(
        matches!(
            err,
            Error::MissingShard {
                shard: 1,
                num_shards: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("data-00001-of-00002"), "{err}");
}

#[test]
fn a_corrupted_or_truncated_index_is_refused() {
    let (_dir, prefix) = copy_of("dtypes");
    let index = prefix.with_extension("ckpt.index");
    let pristine = std::fs::read(&index).expect("index");
    mutate(&index, |b| b[20] ^= 0x10);
    assert!(matches!(
        Checkpoint::open(&prefix),
        Err(Error::BlockChecksum { .. })
    ));
    std::fs::write(&index, &pristine[..pristine.len() - 10]).expect("write");
    assert!(matches!(
        Checkpoint::open(&prefix),
        Err(Error::BadMagic { .. })
    ));
    std::fs::write(&index, &pristine[..20]).expect("write");
    assert!(matches!(
        Checkpoint::open(&prefix),
        Err(Error::Truncated { .. })
    ));
    // Any flipped bit in the part of the table the reader uses is caught: run over every byte.
    // Unused: the meta-index block (TensorFlow writes an empty one), its handle (the footer's
    // first varints) and the footer's zero padding.
    let footer = pristine.len() - 48;
    let (handles, handles_end) = varints(&pristine, footer, 4);
    let (meta_offset, meta_size) = (handles[0] as usize, handles[1] as usize);
    let (_, meta_handle_end) = varints(&pristine, footer, 2);
    let unused = |i: usize| {
        (meta_offset..meta_offset + meta_size + 5).contains(&i)
            || (footer..meta_handle_end).contains(&i)
            || (handles_end..footer + 40).contains(&i)
    };
    for i in 0..pristine.len() {
        let mut bad = pristine.clone();
        bad[i] ^= 0x04;
        std::fs::write(&index, &bad).expect("write");
        if let Ok(c) = Checkpoint::open(&prefix) {
            assert!(unused(i), "byte {i} of the index flipped unnoticed");
            assert_eq!(c.len(), 55);
        }
    }
}

/// `n` varints from `buf[pos..]`, and the position after them.
fn varints(buf: &[u8], mut pos: usize, n: usize) -> (Vec<u64>, usize) {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[pos];
            pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push(v);
    }
    (out, pos)
}
