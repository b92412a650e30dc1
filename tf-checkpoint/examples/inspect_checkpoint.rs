//! Looks inside a TensorFlow checkpoint without TensorFlow: every tensor's name, type and shape
//! from the index, then each tensor read from its shard (its checksum verified) and summarised —
//! the range and mean of a float tensor, the first values of an integer or boolean one. A tensor
//! this reader refuses (a string, a partitioned variable) is listed with the reason.
//!
//! `cargo run -p tf-checkpoint --example inspect_checkpoint [CHECKPOINT]`, where CHECKPOINT is a
//! prefix (`dir/model.ckpt`), its `.index` file or a folder holding one; by default the two-shard
//! checkpoint TensorFlow wrote for the tests (`tests/fixtures/sharded/`).

use std::path::{Path, PathBuf};

use tf_checkpoint::{Checkpoint, DType, TensorData};

/// One tensor's line of the listing.
#[derive(Debug)]
struct Row {
    name: String,
    dtype: String,
    shape: Vec<i64>,
    /// A summary of the values, or why they cannot be read.
    values: Result<String, String>,
}

/// The range and mean of a float tensor, the first values of any other.
fn summarise(t: &TensorData) -> tf_checkpoint::Result<String> {
    Ok(match t.dtype() {
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 => {
            let v: Vec<f64> = match t.dtype() {
                DType::F64 => t.to_f64()?,
                _ => t.to_f32()?.into_iter().map(f64::from).collect(),
            };
            if v.is_empty() {
                return Ok("no values".into());
            }
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            format!("{} values in [{min:.4}, {max:.4}], mean {mean:.4}", v.len())
        }
        DType::Bool => format!("{:?}", first(&t.to_bool()?)),
        _ => format!("{:?}", first(&t.to_i64()?)),
    })
}

/// At most the first six values.
fn first<T: Clone>(v: &[T]) -> Vec<T> {
    v.iter().take(6).cloned().collect()
}

/// Opens the checkpoint at `path` and lists its tensors.
fn inspect(path: &Path) -> tf_checkpoint::Result<Vec<Row>> {
    let ckpt = Checkpoint::open(path)?;
    println!(
        "{}: {} tensors in {} shard(s)",
        ckpt.index_path().display(),
        ckpt.len(),
        ckpt.shard_paths().len()
    );
    let rows: Vec<Row> = ckpt
        .tensors()
        .map(|(name, info)| Row {
            name: name.to_string(),
            dtype: info
                .dtype()
                .map_or_else(|| format!("code {}", info.dtype_code), |d| d.name().into()),
            shape: info.shape.clone(),
            values: ckpt
                .read(name)
                .and_then(|t| summarise(&t))
                .map_err(|e| e.to_string()),
        })
        .collect();
    for r in &rows {
        let values = match &r.values {
            Ok(s) => s.clone(),
            Err(e) => format!("not read: {e}"),
        };
        println!(
            "{:<32} {:<8} {:<12} {values}",
            r.name,
            r.dtype,
            format!("{:?}", r.shape)
        );
    }
    Ok(rows)
}

/// The test fixtures folder.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| fixtures().join("sharded/model.ckpt"), PathBuf::from);
    inspect(&path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml) on the fixtures:
    /// every tensor listed, the readable ones summarised, the string one refused by name.
    #[test]
    fn runs() -> tf_checkpoint::Result<()> {
        let sharded = inspect(&fixtures().join("sharded/model.ckpt"))?;
        assert_eq!(sharded.len(), 4);
        assert!(sharded.iter().all(|r| r.values.is_ok()), "{sharded:?}");
        let dtypes = inspect(&fixtures().join("dtypes"))?;
        let refused: Vec<&str> = dtypes
            .iter()
            .filter(|r| r.values.is_err())
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(refused, ["str/vector"]);
        let scalar = dtypes.iter().find(|r| r.name == "f32/scalar");
        assert_eq!(
            scalar.map(|r| r.values.clone()),
            Some(Ok(
                "1 values in [-1.2500, -1.2500], mean -1.2500".to_string()
            ))
        );
        Ok(())
    }
}
