//! Named f32 tensors in safetensors files, and atomic file writes.
//!
//! A checkpoint is one safetensors file: every parameter under its [`ParamStore`] name, plus an
//! optional string map in the header (`__metadata__`), where the model spec is kept as JSON so a
//! checkpoint alone rebuilds its model. Files are always written to a temporary name in the target
//! directory, synced and renamed, so a crash or a failed write never leaves a half-written
//! checkpoint where a good one was. Reading validates the whole file before any tensor is made, and
//! every problem — truncation, a corrupt header, a dtype other than F32, a missing or unexpected
//! name, a shape mismatch — is an [`Error`], never a panic.

use crate::param::{check_name, ParamStore};
use crate::{Device, Error, Result, Tensor};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The header key safetensors reserves for the free-form string map.
pub(crate) const RESERVED_KEY: &str = "__metadata__";

/// Bytes of the little-endian header-length prefix of a safetensors file.
const LEN_PREFIX: usize = 8;

/// One tensor's host bytes, in the form `safetensors::serialize` takes.
struct F32Bytes {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32Bytes {
    fn of(t: &Tensor) -> Result<Self> {
        let bytes = t.to_vec()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(F32Bytes {
            shape: t.dims().to_vec(),
            bytes,
        })
    }
}

impl View for F32Bytes {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn file_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Safetensors {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        error: source,
    }
}

/// Writes `tensors` (any device or layout; stored as plain row-major F32) to a safetensors file.
pub fn save_tensors<N: AsRef<str>>(path: impl AsRef<Path>, tensors: &[(N, &Tensor)]) -> Result<()> {
    save_tensors_with_metadata(path, tensors, &BTreeMap::new())
}

/// [`save_tensors`] with a string map stored in the file header (e.g. `"spec"` → the model spec
/// as JSON); read it back with [`read_metadata`].
pub fn save_tensors_with_metadata<N: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: &[(N, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        let name = name.as_ref();
        check_name(name)?;
        if !seen.insert(name) {
            return Err(file_error(
                path,
                format!("cannot save two tensors under the same name `{name}`"),
            ));
        }
    }
    let views = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_ref(), F32Bytes::of(t)?)))
        .collect::<Result<Vec<_>>>()?;
    let header: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect());
    let bytes = safetensors::serialize(views, header)
        .map_err(|e| file_error(path, format!("cannot serialise: {e}")))?;
    write_file_atomically(path, &bytes)
}

/// A parsed safetensors file held in memory.
struct Parsed {
    bytes: Vec<u8>,
    header_len: usize,
    meta: Metadata,
}

impl Parsed {
    fn read(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
        // `read_metadata` checks the header length, the JSON, that the tensors' byte ranges are
        // contiguous and sized by their shapes and dtypes, and that they end exactly at the end
        // of the file, so a truncated or padded file is caught here.
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            file_error(
                path,
                format!("cannot be parsed ({e}); it may be truncated or corrupt"),
            )
        })?;
        Ok(Parsed {
            bytes,
            header_len,
            meta,
        })
    }

    /// Tensor names in file order.
    fn names(&self) -> Vec<String> {
        self.meta.offset_keys()
    }

    fn info(&self, path: &Path, name: &str) -> Result<&TensorInfo> {
        self.meta
            .info(name)
            .ok_or_else(|| file_error(path, format!("has no tensor `{name}`")))
    }

    /// The tensor `name` as a CPU tensor.
    fn tensor(&self, path: &Path, name: &str) -> Result<Tensor> {
        let info = self.info(path, name)?;
        if info.dtype != Dtype::F32 {
            return Err(file_error(
                path,
                format!(
                    "tensor `{name}` has dtype {}; only F32 tensors can be loaded",
                    info.dtype
                ),
            ));
        }
        let (start, end) = info.data_offsets;
        let base = LEN_PREFIX + self.header_len;
        let data = self
            .bytes
            .get(base + start..base + end)
            .ok_or_else(|| file_error(path, format!("tensor `{name}` lies outside the file")))?;
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_vec(values, info.shape.clone(), Device::Cpu)
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        self.meta
            .metadata()
            .as_ref()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default()
    }
}

/// Every tensor of a safetensors file as a CPU tensor, in file order (safetensors orders tensors by
/// name within a dtype). Errors on any tensor that is not F32.
pub fn load_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let file = Parsed::read(path)?;
    file.names()
        .into_iter()
        .map(|name| {
            let t = file.tensor(path, &name)?;
            Ok((name, t))
        })
        .collect()
}

/// The header's string map (empty if the file has none). The whole file is validated.
pub fn read_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    Ok(Parsed::read(path.as_ref())?.metadata())
}

/// Lists up to a few names for an error message.
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

impl ParamStore {
    /// Saves every parameter under its name.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_safetensors_with_metadata(path, &BTreeMap::new())
    }

    /// Saves every parameter under its name, with `metadata` in the header.
    pub fn save_safetensors_with_metadata(
        &self,
        path: impl AsRef<Path>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        let tensors: Vec<(&str, &Tensor)> = self.iter().collect();
        save_tensors_with_metadata(path, &tensors, metadata)
    }

    /// Overwrites every parameter with the tensor of the same name in `path`. The file must hold
    /// exactly this store's names, each F32 with the parameter's shape. Everything is checked
    /// before anything is assigned, so on error the parameters are unchanged.
    pub fn load_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = Parsed::read(path)?;
        let in_file = file.names();
        let missing: Vec<&str> = self
            .names()
            .filter(|n| file.meta.info(n).is_none())
            .collect();
        let unexpected: Vec<&str> = in_file
            .iter()
            .map(String::as_str)
            .filter(|n| self.get(n).is_none())
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            let mut msg = format!(
                "does not match the model's parameters ({} in the model, {} in the file)",
                self.len(),
                in_file.len()
            );
            if !missing.is_empty() {
                msg.push_str(&format!("; missing from the file: {}", name_list(&missing)));
            }
            if !unexpected.is_empty() {
                msg.push_str(&format!(
                    "; in the file but not in the model: {}",
                    name_list(&unexpected)
                ));
            }
            return Err(file_error(path, msg));
        }
        let mut loaded = Vec::with_capacity(self.len());
        for (name, param) in self.iter() {
            let info = file.info(path, name)?;
            if info.shape != param.dims() {
                return Err(Error::Param {
                    name: name.to_string(),
                    msg: format!(
                        "{} holds shape {:?}, but the parameter has shape {}",
                        path.display(),
                        info.shape,
                        param.shape()
                    ),
                });
            }
            loaded.push((param, file.tensor(path, name)?));
        }
        for (param, value) in loaded {
            param.assign(&value)?;
        }
        Ok(())
    }
}

/// Replaces `path` with `contents` atomically: the bytes go to a temporary file in the same
/// directory, which is synced and then renamed over `path`. Readers see the old file or the new
/// one, never a mixture; on error the old file is untouched and the temporary file is removed.
pub fn write_file_atomically(path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
    write_atomically_with(path.as_ref(), |f| f.write_all(contents))
}

fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    atomic_file::write_with(path, write).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_tensor;
    use crate::Rng;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "tensor-io-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
        fn entries(&self) -> Vec<String> {
            let mut v: Vec<_> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn store(seed: u64) -> ParamStore {
        let mut rng = Rng::new(seed);
        let mut ps = ParamStore::new();
        ps.insert("conv1/w", rand_tensor(&mut rng, [4, 3, 3, 3]))
            .unwrap();
        ps.insert("conv1/b", rand_tensor(&mut rng, [4])).unwrap();
        ps.insert("conv2/cell/w_hh", rand_tensor(&mut rng, [16, 16, 1, 1]))
            .unwrap();
        ps.insert("scale", rand_tensor(&mut rng, crate::Shape::scalar()))
            .unwrap();
        ps
    }

    fn values(ps: &ParamStore) -> Vec<(String, Vec<f32>)> {
        ps.iter()
            .map(|(n, t)| (n.to_string(), t.to_vec().unwrap()))
            .collect()
    }

    fn err_of(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn param_store_round_trip_with_metadata() {
        let dir = TempDir::new("rt");
        let path = dir.file("model.safetensors");
        let src = store(1);
        let meta = BTreeMap::from([("spec".to_string(), r#"{"areas":[1,2]}"#.to_string())]);
        src.save_safetensors_with_metadata(&path, &meta).unwrap();

        let dst = store(2);
        assert_ne!(values(&src), values(&dst));
        let w_before = dst.get("conv1/w").unwrap().clone();
        dst.load_safetensors(&path).unwrap();
        assert_eq!(values(&src), values(&dst));
        // Loading writes into the existing variables, so handles held by a model see the values.
        assert_eq!(
            w_before.to_vec().unwrap(),
            src.get("conv1/w").unwrap().to_vec().unwrap()
        );
        assert_eq!(read_metadata(&path).unwrap(), meta);
        // Only the file itself is left: no temporary files.
        assert_eq!(dir.entries(), ["model.safetensors"]);
    }

    #[test]
    fn blocked_tensors_are_saved_in_plain_order() {
        let dir = TempDir::new("blocked");
        let path = dir.file("b.safetensors");
        let mut rng = Rng::new(3);
        let x = rand_tensor(&mut rng, [2, 16, 3, 2]);
        let xb = x.to_layout(crate::Layout::Blocked16).unwrap();
        save_tensors(&path, &[("x", &xb)]).unwrap();
        let back = load_tensors(&path).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.dims(), &[2, 16, 3, 2]);
        assert_eq!(back[0].1.to_vec().unwrap(), x.to_vec().unwrap());
        assert!(read_metadata(&path).unwrap().is_empty());
    }

    #[test]
    fn free_functions_round_trip_in_file_order() {
        let dir = TempDir::new("free");
        let path = dir.file("t.safetensors");
        let mut rng = Rng::new(4);
        let (a, b) = (rand_tensor(&mut rng, [3, 2]), rand_tensor(&mut rng, [5]));
        save_tensors(&path, &[("b", &b), (String::from("a").as_str(), &a)]).unwrap();
        let back = load_tensors(&path).unwrap();
        let names: Vec<_> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(back[0].1.to_vec().unwrap(), a.to_vec().unwrap());
        assert_eq!(back[1].1.to_vec().unwrap(), b.to_vec().unwrap());
    }

    #[test]
    fn save_rejects_duplicate_and_reserved_names() {
        let dir = TempDir::new("names");
        let path = dir.file("t.safetensors");
        let a = Tensor::ones([2], Device::Cpu).unwrap();
        let err = err_of(save_tensors(&path, &[("a", &a), ("a", &a)]));
        assert!(err.contains("same name `a`"), "{err}");
        assert!(save_tensors(&path, &[("__metadata__", &a)]).is_err());
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn truncated_file_is_an_error() {
        let dir = TempDir::new("trunc");
        let path = dir.file("m.safetensors");
        store(1).save_safetensors(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        // Cut inside the data, inside the header, and inside the length prefix.
        for keep in [bytes.len() - 1, bytes.len() / 2, 20, 3, 0] {
            fs::write(&path, &bytes[..keep]).unwrap();
            let err = err_of(store(2).load_safetensors(&path));
            assert!(err.contains("truncated or corrupt"), "{keep}: {err}");
            assert!(load_tensors(&path).is_err());
            assert!(read_metadata(&path).is_err());
        }
    }

    #[test]
    fn corrupt_header_is_an_error() {
        let dir = TempDir::new("corrupt");
        let path = dir.file("m.safetensors");
        store(1).save_safetensors(&path).unwrap();
        let good = fs::read(&path).unwrap();

        // Broken JSON.
        let mut bad = good.clone();
        bad[LEN_PREFIX] = b'#';
        fs::write(&path, &bad).unwrap();
        let err = err_of(store(2).load_safetensors(&path));
        assert!(err.contains("truncated or corrupt"), "{err}");

        // A header length pointing far past the end of the file.
        let mut bad = good.clone();
        bad[..LEN_PREFIX].copy_from_slice(&(1u64 << 40).to_le_bytes());
        fs::write(&path, &bad).unwrap();
        assert!(store(2).load_safetensors(&path).is_err());

        // Valid JSON whose byte ranges disagree with the shapes.
        let header = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        let mut bad = (header.len() as u64).to_le_bytes().to_vec();
        bad.extend_from_slice(header.as_bytes());
        bad.extend_from_slice(&[0; 8]);
        fs::write(&path, &bad).unwrap();
        assert!(load_tensors(&path).is_err());

        // Not a file at all.
        let err = err_of(load_tensors(dir.file("absent.safetensors")));
        assert!(err.contains("absent.safetensors"), "{err}");
    }

    #[test]
    fn non_f32_dtype_is_an_error() {
        let dir = TempDir::new("dtype");
        let path = dir.file("m.safetensors");
        let header = r#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 4]);
        fs::write(&path, &bytes).unwrap();
        let err = err_of(load_tensors(&path));
        assert!(err.contains("`w`") && err.contains("F16"), "{err}");

        let mut ps = ParamStore::new();
        ps.insert("w", Tensor::ones([2], Device::Cpu).unwrap())
            .unwrap();
        let err = err_of(ps.load_safetensors(&path));
        assert!(err.contains("F16"), "{err}");
        assert_eq!(ps.get("w").unwrap().to_vec().unwrap(), [1.0, 1.0]);
    }

    #[test]
    fn missing_and_unexpected_names_are_errors_and_change_nothing() {
        let dir = TempDir::new("names2");
        let path = dir.file("m.safetensors");
        let mut rng = Rng::new(5);
        let (w, b) = (
            rand_tensor(&mut rng, [4, 3, 3, 3]),
            rand_tensor(&mut rng, [4]),
        );
        save_tensors(&path, &[("conv1/w", &w), ("conv1/b", &b), ("extra", &b)]).unwrap();

        let ps = store(2);
        let before = values(&ps);
        let err = err_of(ps.load_safetensors(&path));
        assert!(
            err.contains("missing from the file: `conv2/cell/w_hh`, `scale`")
                && err.contains("in the file but not in the model: `extra`"),
            "{err}"
        );
        // conv1/w and conv1/b matched, but nothing is assigned when the file does not fit.
        assert_eq!(values(&ps), before);
    }

    #[test]
    fn shape_mismatch_is_an_error_and_changes_nothing() {
        let dir = TempDir::new("shape");
        let path = dir.file("m.safetensors");
        let src = store(1);
        src.save_safetensors(&path).unwrap();

        let mut rng = Rng::new(6);
        let mut dst = ParamStore::new();
        dst.insert("conv1/w", rand_tensor(&mut rng, [4, 3, 3, 3]))
            .unwrap();
        dst.insert("conv1/b", rand_tensor(&mut rng, [4])).unwrap();
        dst.insert("conv2/cell/w_hh", rand_tensor(&mut rng, [16, 16, 3, 3]))
            .unwrap();
        dst.insert("scale", rand_tensor(&mut rng, crate::Shape::scalar()))
            .unwrap();
        let before = values(&dst);
        let err = err_of(dst.load_safetensors(&path));
        assert!(
            err.contains("`conv2/cell/w_hh`") && err.contains("[16, 16, 1, 1]"),
            "{err}"
        );
        assert_eq!(values(&dst), before);
    }

    #[test]
    fn failed_write_leaves_the_old_file_intact() {
        let dir = TempDir::new("atomic");
        let path = dir.file("m.safetensors");
        let old = store(1);
        old.save_safetensors(&path).unwrap();
        let old_bytes = fs::read(&path).unwrap();

        // A write that dies half-way (a full disk, a killed process) ...
        let err = write_atomically_with(&path, |f| {
            f.write_all(&[0xAB; 100])?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("disk full") && err.contains("m.safetensors"),
            "{err}"
        );
        // ... leaves the previous checkpoint byte-identical and no temporary file behind.
        assert_eq!(fs::read(&path).unwrap(), old_bytes);
        assert_eq!(dir.entries(), ["m.safetensors"]);
        let check = store(2);
        check.load_safetensors(&path).unwrap();
        assert_eq!(values(&check), values(&old));

        // A save that fails before writing (an invalid name) also leaves it alone.
        let a = Tensor::ones([1], Device::Cpu).unwrap();
        assert!(save_tensors(&path, &[("", &a)]).is_err());
        assert_eq!(fs::read(&path).unwrap(), old_bytes);

        // Saving into a directory that does not exist is an I/O error naming the path.
        let err = err_of(old.save_safetensors(dir.file("no/such/dir/m.safetensors")));
        assert!(err.contains("no/such/dir"), "{err}");

        // A successful save replaces the file completely.
        store(7).save_safetensors(&path).unwrap();
        assert_ne!(fs::read(&path).unwrap(), old_bytes);
        assert_eq!(dir.entries(), ["m.safetensors"]);
    }
}
