//! What can go wrong reading a checkpoint, each case its own variant naming the file or tensor.

use std::path::PathBuf;

/// A malformed protobuf message (the index's header or a tensor's entry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ended inside a field.
    #[error("message ends inside a {0}")]
    Truncated(&'static str),
    /// A field has an impossible encoding.
    #[error("{0}")]
    Malformed(String),
}

/// Errors of [`crate::Checkpoint`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The `.index` file is absent: the prefix names no checkpoint.
    #[error("no checkpoint index at {path} (expected the prefix of model.ckpt.index, e.g. ckpts/rgc_intermediate/model.ckpt)")]
    MissingIndex {
        /// The index path tried.
        path: PathBuf,
    },
    /// A directory was given that holds several `.index` files: which checkpoint is meant?
    #[error("{dir} holds {} checkpoint indexes ({}); give the prefix of the one to read (the path without .index)", .found.len(), list(.found))]
    AmbiguousIndex {
        /// The directory.
        dir: PathBuf,
        /// The prefixes of the checkpoints found, sorted.
        found: Vec<PathBuf>,
    },
    /// A data shard the index refers to is absent.
    #[error("checkpoint data shard {shard} of {num_shards} is missing: {path}")]
    MissingShard {
        /// The shard path expected.
        path: PathBuf,
        /// 0-based shard number.
        shard: u32,
        /// Shards in the bundle.
        num_shards: u32,
    },
    /// A file is shorter than its structure says.
    #[error("{path} is truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Which structure.
        what: String,
        /// First byte needed.
        start: u64,
        /// One past the last byte needed.
        end: u64,
        /// File length.
        len: u64,
    },
    /// The index file does not end with the table magic number.
    #[error("{path} is not a TensorFlow checkpoint index: table magic {found:#018x}, expected {expected:#018x}")]
    BadMagic {
        /// The index file.
        path: PathBuf,
        /// Magic found.
        found: u64,
        /// Magic expected.
        expected: u64,
    },
    /// An index block's stored checksum does not match its bytes.
    #[error("{path}: block at byte {offset} fails its checksum (stored {stored:#010x}, computed {computed:#010x}): the index is corrupt")]
    BlockChecksum {
        /// The index file.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// Unmasked CRC stored.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// An index block is compressed; TensorFlow writes bundles uncompressed.
    #[error("{path}: block at byte {offset} uses compression type {kind} (1 = snappy); only uncompressed tables (type 0) are supported")]
    Compressed {
        /// The index file.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// Compression byte.
        kind: u8,
    },
    /// An index block's internal structure is inconsistent.
    #[error("{path}: corrupt table block at byte {offset}: {reason}")]
    CorruptBlock {
        /// The index file.
        path: PathBuf,
        /// Block offset.
        offset: u64,
        /// What was inconsistent.
        reason: String,
    },
    /// The index has no header entry (the empty key).
    #[error("{path}: the index has no bundle header (empty key)")]
    MissingHeader {
        /// The index file.
        path: PathBuf,
    },
    /// The header or an entry is not a valid protobuf message.
    #[error("{path}: cannot decode the {what}: {source}")]
    Proto {
        /// The index file.
        path: PathBuf,
        /// `bundle header` or `entry of tensor NAME`.
        what: String,
        /// Decoder error.
        source: DecodeError,
    },
    /// The bundle stores big-endian data.
    #[error(
        "{path}: the bundle stores big-endian tensors; only little-endian bundles are supported"
    )]
    BigEndian {
        /// The index file.
        path: PathBuf,
    },
    /// No tensor of that name.
    #[error("no tensor named {name:?} in the checkpoint")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// The tensor's dtype code is not a TensorFlow data type this reader knows.
    #[error("tensor {name:?} has unknown dtype code {code}")]
    UnknownDtype {
        /// Tensor name.
        name: String,
        /// Raw `DataType` enum value.
        code: i32,
    },
    /// The dtype is known but has no fixed-size element encoding (strings, resources, variants).
    #[error("tensor {name:?} has dtype {dtype}, which this reader does not decode (numeric and bool tensors only)")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// The dtype.
        dtype: crate::DType,
    },
    /// The tensor was saved as partitioned slices.
    #[error("tensor {name:?} is stored as {slices} partitioned slice(s); sliced (partitioned) variables are not supported, save the full variable instead")]
    Sliced {
        /// Tensor name.
        name: String,
        /// Slices recorded.
        slices: usize,
    },
    /// The entry's shard number is outside the bundle.
    #[error("tensor {name:?} lives in shard {shard_id}, but the bundle has {num_shards} shard(s)")]
    ShardOutOfRange {
        /// Tensor name.
        name: String,
        /// Shard in the entry.
        shard_id: i32,
        /// Shards in the header.
        num_shards: u32,
    },
    /// The entry's byte size disagrees with its shape and dtype, or its shape is invalid.
    #[error("tensor {name:?}: {reason}")]
    BadEntry {
        /// Tensor name.
        name: String,
        /// What disagreed.
        reason: String,
    },
    /// A tensor's bytes do not match their stored checksum.
    #[error("tensor {name:?} fails its checksum (stored {stored:#010x}, computed {computed:#010x}): the data shard is corrupt")]
    DataChecksum {
        /// Tensor name.
        name: String,
        /// Unmasked CRC stored in the entry.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// A conversion asked for another element type than the tensor has.
    #[error("tensor {name:?} has dtype {actual}, cannot read it as {wanted}")]
    WrongDtype {
        /// Tensor name.
        name: String,
        /// What the caller asked for.
        wanted: &'static str,
        /// What the tensor holds.
        actual: crate::DType,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or(p.as_os_str())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.join(", ")
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
