//! A pure-Rust reader for TensorFlow's V2 checkpoints (tensor bundles): `PREFIX.index`, a
//! LevelDB-format table mapping each variable name to where its bytes live, and the data shards
//! `PREFIX.data-NNNNN-of-MMMMM`. No TensorFlow is needed at run time.
//!
//! What is checked: the table's magic, every index block's CRC-32C, that each entry decodes and
//! that its byte size agrees with its dtype and shape, and each tensor's CRC-32C (TensorFlow stores
//! it masked) as it is read. Partitioned (sliced) variables and string tensors are refused with an
//! error naming the tensor. Each failure is its own [`Error`] variant.
//!
//! ```no_run
//! let ckpt = tf_checkpoint::Checkpoint::open("ckpts/rgc_intermediate/model.ckpt")?;
//! for (name, info) in ckpt.tensors() {
//!     println!("{name} {:?} {:?}", info.dtype(), info.shape);
//! }
//! let w = ckpt.read("tnn_model/conv1/pre_0/weights_basenet")?.to_f32()?;
//! # Ok::<(), tf_checkpoint::Error>(())
//! ```

#![warn(missing_docs)]

mod crc32c;
mod dtype;
mod error;
mod proto;
mod table;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use dtype::DType;
pub use error::{DecodeError, Error, Result};

/// What the index says about one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The raw `DataType` code; [`TensorInfo::dtype`] decodes it.
    pub dtype_code: i32,
    /// Dimensions (empty for a scalar); negative or unknown-rank shapes make [`Checkpoint::read`]
    /// fail with [`Error::BadEntry`].
    pub shape: Vec<i64>,
    /// The shard holding the bytes.
    pub shard_id: i32,
    /// Byte offset within the shard.
    pub offset: i64,
    /// Byte length.
    pub size: i64,
    /// Partitioned slices recorded for the tensor (0 for an ordinary variable).
    pub num_slices: usize,
    unknown_rank: bool,
    crc32c_masked: u32,
}

impl TensorInfo {
    /// The tensor's data type, `None` for a code this reader does not know.
    pub fn dtype(&self) -> Option<DType> {
        DType::from_code(self.dtype_code)
    }

    /// Number of elements (product of the dimensions), `None` for an invalid shape.
    pub fn numel(&self) -> Option<usize> {
        if self.unknown_rank {
            return None;
        }
        self.shape.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
    }
}

/// One tensor's values as stored (little-endian bytes) with its type and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl TensorData {
    /// The tensor's name in the checkpoint.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its data type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Its dimensions (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The raw little-endian element bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn wrong(&self, wanted: &'static str) -> Error {
        Error::WrongDtype {
            name: self.name.clone(),
            wanted,
            actual: self.dtype,
        }
    }

    fn chunks<const N: usize>(&self) -> impl Iterator<Item = [u8; N]> + '_ {
        self.bytes.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }

    /// The values as `f32`: float32 as stored, float16 and bfloat16 widened (exactly).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            DType::F32 => self.chunks::<4>().map(f32::from_le_bytes).collect(),
            DType::BF16 => self
                .chunks::<2>()
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16))
                .collect(),
            DType::F16 => self
                .chunks::<2>()
                .map(|b| f16_to_f32(u16::from_le_bytes(b)))
                .collect(),
            _ => return Err(self.wrong("f32")),
        })
    }

    /// The values as `f64`: float64 as stored, the narrower float types widened (exactly).
    pub fn to_f64(&self) -> Result<Vec<f64>> {
        match self.dtype {
            DType::F64 => Ok(self.chunks::<8>().map(f64::from_le_bytes).collect()),
            DType::F32 | DType::BF16 | DType::F16 => {
                Ok(self.to_f32()?.into_iter().map(f64::from).collect())
            }
            _ => Err(self.wrong("f64")),
        }
    }

    /// The values as `i64`: every signed integer type and the unsigned ones up to 32 bits (exactly).
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        Ok(match self.dtype {
            DType::I64 => self.chunks::<8>().map(i64::from_le_bytes).collect(),
            DType::I32 => self
                .chunks::<4>()
                .map(|b| i64::from(i32::from_le_bytes(b)))
                .collect(),
            DType::U32 => self
                .chunks::<4>()
                .map(|b| i64::from(u32::from_le_bytes(b)))
                .collect(),
            DType::I16 => self
                .chunks::<2>()
                .map(|b| i64::from(i16::from_le_bytes(b)))
                .collect(),
            DType::U16 => self
                .chunks::<2>()
                .map(|b| i64::from(u16::from_le_bytes(b)))
                .collect(),
            DType::I8 => self.bytes.iter().map(|&b| i64::from(b as i8)).collect(),
            DType::U8 => self.bytes.iter().map(|&b| i64::from(b)).collect(),
            _ => return Err(self.wrong("i64")),
        })
    }

    /// The values of a bool tensor.
    pub fn to_bool(&self) -> Result<Vec<bool>> {
        match self.dtype {
            DType::Bool => Ok(self.bytes.iter().map(|&b| b != 0).collect()),
            _ => Err(self.wrong("bool")),
        }
    }
}

/// IEEE half precision to single (exact for every value, subnormals and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24; normalise.
            let shift = m.leading_zeros() - 21; // bring the top bit to position 10
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// An opened checkpoint: the whole index parsed, the data shards located (read on demand).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    index_path: PathBuf,
    shards: Vec<PathBuf>,
    tensors: BTreeMap<String, TensorInfo>,
}

impl Checkpoint {
    /// Opens the checkpoint at `path`: its prefix (`dir/model.ckpt`), its `.index` file, or a
    /// directory holding exactly one `.index` file (several are [`Error::AmbiguousIndex`]). Every
    /// data shard must be present.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let prefix = resolve_prefix(path.as_ref())?;
        let index_path = with_suffix(&prefix, ".index");
        let bytes = std::fs::read(&index_path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::MissingIndex {
                    path: index_path.clone(),
                }
            } else {
                Error::Io {
                    path: index_path.clone(),
                    source,
                }
            }
        })?;
        let pairs = table::read_all(&index_path, &bytes)?;
        let mut pairs = pairs.into_iter();
        let header_value = match pairs.next() {
            Some((k, v)) if k.is_empty() => v,
            _ => return Err(Error::MissingHeader { path: index_path }),
        };
        let header = proto::BundleHeader::decode(&header_value).map_err(|source| Error::Proto {
            path: index_path.clone(),
            what: "bundle header".into(),
            source,
        })?;
        if header.big_endian {
            return Err(Error::BigEndian { path: index_path });
        }
        let mut tensors = BTreeMap::new();
        for (key, value) in pairs {
            // Keys of individual saved slices start with OrderedCode's encoding of 0 (a NUL byte);
            // the full tensor's own entry (with `slices` set) is what callers see.
            if key.first() == Some(&0) {
                continue;
            }
            let name = String::from_utf8(key).map_err(|e| Error::CorruptBlock {
                path: index_path.clone(),
                offset: 0,
                reason: format!(
                    "tensor name {:?} is not UTF-8",
                    String::from_utf8_lossy(e.as_bytes())
                ),
            })?;
            let e = proto::BundleEntry::decode(&value).map_err(|source| Error::Proto {
                path: index_path.clone(),
                what: format!("entry of tensor {name:?}"),
                source,
            })?;
            let info = TensorInfo {
                dtype_code: e.dtype,
                shape: e.shape,
                shard_id: e.shard_id,
                offset: e.offset,
                size: e.size,
                num_slices: e.num_slices,
                unknown_rank: e.unknown_rank,
                crc32c_masked: e.crc32c,
            };
            tensors.insert(name, info);
        }
        let num_shards = header.num_shards;
        // Checked as they are named, not after: a header claiming billions of shards (the count
        // is not bounded by anything else in the index) must fail on its first missing shard,
        // not first allocate a path for each.
        let mut shards = Vec::new();
        for i in 0..num_shards {
            let shard = with_suffix(&prefix, &format!(".data-{i:05}-of-{num_shards:05}"));
            if !shard.is_file() {
                return Err(Error::MissingShard {
                    path: shard,
                    shard: i,
                    num_shards,
                });
            }
            shards.push(shard);
        }
        Ok(Checkpoint {
            index_path,
            shards,
            tensors,
        })
    }

    /// The index file read.
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// The data shard files, in shard order.
    pub fn shard_paths(&self) -> &[PathBuf] {
        &self.shards
    }

    /// Every tensor, in name order.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorInfo)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// What the index says about `name`, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Whether the checkpoint holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Reads `name`'s bytes from its shard and verifies them against the stored checksum.
    pub fn read(&self, name: &str) -> Result<TensorData> {
        let info = self.tensors.get(name).ok_or_else(|| Error::NotFound {
            name: name.to_string(),
        })?;
        let named = || name.to_string();
        if info.num_slices > 0 {
            return Err(Error::Sliced {
                name: named(),
                slices: info.num_slices,
            });
        }
        let dtype = info.dtype().ok_or_else(|| Error::UnknownDtype {
            name: named(),
            code: info.dtype_code,
        })?;
        let elem = dtype.size().ok_or_else(|| Error::UnsupportedDtype {
            name: named(),
            dtype,
        })?;
        let bad = |reason: String| Error::BadEntry {
            name: named(),
            reason,
        };
        let numel = info
            .numel()
            .ok_or_else(|| bad(format!("invalid shape {:?}", info.shape)))?;
        let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
        let expected = numel
            .checked_mul(elem)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if info.size != expected as i64 {
            return Err(bad(format!(
                "the index records {} bytes, but a {dtype} tensor of shape {shape:?} has {expected}",
                info.size
            )));
        }
        if info.offset < 0 {
            return Err(bad(format!("negative offset {}", info.offset)));
        }
        let shard = usize::try_from(info.shard_id)
            .ok()
            .and_then(|s| self.shards.get(s))
            .ok_or_else(|| Error::ShardOutOfRange {
                name: named(),
                shard_id: info.shard_id,
                num_shards: self.shards.len() as u32,
            })?;
        let io = |source| Error::Io {
            path: shard.clone(),
            source,
        };
        let mut file = File::open(shard).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (start, end) = (info.offset as u64, info.offset as u64 + expected as u64);
        if end > len {
            return Err(Error::Truncated {
                path: shard.clone(),
                what: format!("tensor {name:?}"),
                start,
                end,
                len,
            });
        }
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut bytes = vec![0u8; expected];
        file.read_exact(&mut bytes).map_err(io)?;
        let stored = crc32c::unmask(info.crc32c_masked);
        let computed = crc32c::value(&bytes);
        if stored != computed {
            return Err(Error::DataChecksum {
                name: named(),
                stored,
                computed,
            });
        }
        Ok(TensorData {
            name: named(),
            dtype,
            shape,
            bytes,
        })
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The bundle prefix `path` designates (see [`Checkpoint::open`]).
fn resolve_prefix(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if p.extension().is_some_and(|e| e == "index") {
                found.push(p.with_extension(""));
            }
        }
        found.sort();
        return match found.len() {
            0 => Err(Error::MissingIndex {
                path: path.join("model.ckpt.index"),
            }),
            1 => Ok(found.remove(0)),
            _ => Err(Error::AmbiguousIndex {
                dir: path.to_path_buf(),
                found,
            }),
        };
    }
    if path.extension().is_some_and(|e| e == "index") {
        return Ok(path.with_extension(""));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    use crate::proto::tests::{encode_entry, encode_header};
    use crate::proto::BundleEntry;

    /// Writes a one-shard bundle whose index holds `header` and `entries` over `data`.
    fn bundle(
        header: Option<Vec<u8>>,
        entries: &[(&str, BundleEntry)],
        data: &[u8],
    ) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("model.ckpt");
        let mut kv: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if let Some(h) = header {
            kv.push((Vec::new(), h));
        }
        let mut sorted: Vec<_> = entries
            .iter()
            .map(|(k, e)| (k.as_bytes().to_vec(), encode_entry(e)))
            .collect();
        sorted.sort();
        kv.extend(sorted);
        std::fs::write(
            with_suffix(&prefix, ".index"),
            table::writer::table(&kv, 16, 16),
        )
        .expect("index");
        std::fs::write(with_suffix(&prefix, ".data-00000-of-00001"), data).expect("data");
        (dir, prefix)
    }

    fn f32_entry(values: &[f32], data: &mut Vec<u8>) -> BundleEntry {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = BundleEntry {
            dtype: 1,
            shape: vec![values.len() as i64],
            offset: data.len() as i64,
            size: bytes.len() as i64,
            crc32c: crc32c::mask(crc32c::value(&bytes)),
            ..Default::default()
        };
        data.extend(bytes);
        e
    }

    #[test]
    fn entry_level_errors_name_the_tensor() {
        let mut data = Vec::new();
        let good = f32_entry(&[1.0, 2.0], &mut data);
        let unknown = BundleEntry {
            dtype: 99,
            ..good.clone()
        };
        let short = BundleEntry {
            shape: vec![3],
            ..good.clone()
        };
        let far_shard = BundleEntry {
            shard_id: 4,
            ..good.clone()
        };
        let negative = BundleEntry {
            shape: vec![-1],
            ..good.clone()
        };
        let (_d, prefix) = bundle(
            Some(encode_header(1)),
            &[
                ("good", good),
                ("unknown", unknown),
                ("short", short),
                ("far", far_shard),
                ("neg", negative),
            ],
            &data,
        );
        let c = Checkpoint::open(&prefix).expect("opens");
        assert_eq!(
            c.read("good").expect("good").to_f32().expect("f32"),
            vec![1.0, 2.0]
        );
        assert!(matches!(
            c.read("unknown"),
            Err(Error::UnknownDtype { code: 99, .. })
        ));
        assert!(matches!(c.read("short"), Err(Error::BadEntry { .. })));
        assert!(matches!(
            c.read("far"),
            Err(Error::ShardOutOfRange {
                shard_id: 4,
                num_shards: 1,
                ..
            })
        ));
        assert!(matches!(c.read("neg"), Err(Error::BadEntry { .. })));
        let err = c.read("unknown").expect_err("unknown").to_string();
        assert!(err.contains("\"unknown\"") && err.contains("99"), "{err}");
    }

    #[test]
    fn header_problems_are_specific() {
        let (_d, p) = bundle(None, &[("x", BundleEntry::default())], &[]);
        assert!(matches!(
            Checkpoint::open(&p),
            Err(Error::MissingHeader { .. })
        ));
        // endianness = BIG (field 2 = 1)
        let mut big = encode_header(1);
        big.extend([0x10, 1]);
        let (_d, p) = bundle(Some(big), &[], &[]);
        assert!(matches!(Checkpoint::open(&p), Err(Error::BigEndian { .. })));
        let (_d, p) = bundle(Some(vec![0x08]), &[], &[]);
        assert!(matches!(Checkpoint::open(&p), Err(Error::Proto { .. })));
        let (_d, p) = bundle(
            Some(encode_header(1)),
            &[("bad", BundleEntry::default())],
            &[],
        );
        let index = with_suffix(&p, ".index");
        // A valid table whose entry is not a message: rebuild with raw garbage as the value.
        let kv = vec![
            (Vec::new(), encode_header(1)),
            (b"bad".to_vec(), vec![0x0a, 0x05]),
        ];
        std::fs::write(&index, table::writer::table(&kv, 16, 16)).expect("index");
        let err = Checkpoint::open(&p).expect_err("bad entry");
        assert!(
            matches!(&err, Error::Proto { what, .. } if what.contains("bad")),
            "{err}"
        );
    }

    #[test]
    fn a_header_claiming_billions_of_shards_fails_on_the_first_missing_one() {
        let (_d, p) = bundle(Some(encode_header(i32::MAX as u32)), &[], &[]);
        let err = Checkpoint::open(&p).expect_err("no such shards");
        assert!(
            matches!(
                &err,
                Error::MissingShard {
                    shard: 0,
                    num_shards: 0x7fff_ffff,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn prefixes_resolve_from_index_paths() {
        assert_eq!(
            resolve_prefix(Path::new("a/model.ckpt.index")).ok(),
            Some(PathBuf::from("a/model.ckpt"))
        );
        assert_eq!(
            resolve_prefix(Path::new("a/model.ckpt")).ok(),
            Some(PathBuf::from("a/model.ckpt"))
        );
    }
}
