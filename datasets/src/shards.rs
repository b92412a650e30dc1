//! Image shards in the WebDataset layout: plain tar files in which each sample is a run of
//! consecutive members sharing a key (`KEY.jpg` or `.jpeg`/`.png`, and `KEY.cls` holding the
//! class number as ASCII), the key being the member's path up to the first dot of its file name.
//! Shards written by WebDataset's own tools read here, and ours read there.
//!
//! A directory of shards may carry `index.json` ([`ShardIndex`]: class names, each shard's sample
//! count, how the images were prepared), which [`ShardWriter`] writes; without one,
//! [`ShardSet::open`] counts the samples by walking the tar headers (seeking past the image data)
//! and reads only the small `.cls` members, so foreign shards work as they are.
//!
//! Shards are read front to back ([`ShardSet::read_shard`]), the access pattern tar files and
//! network file systems serve well; random order comes from shuffling shards and a shuffle buffer
//! ([`crate::pipeline`]). Samples a reader does not need (before a resume point) are passed over
//! by seeking, without reading their bytes.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The index file's name inside a shard directory.
pub const INDEX_FILE: &str = "index.json";
const FORMAT: &str = "webdataset";

/// The largest class count [`ShardSet::scan`] infers from labels. Without an index the classes are
/// `0..=max label`, so a single corrupt or hostile `.cls` ("99999999999", `u64::MAX`) would
/// otherwise allocate a name for billions of classes or wrap the count to zero; labels above this
/// stay per-sample errors (out of range), skipped and counted like any bad sample.
const MAX_SCANNED_CLASSES: usize = 1 << 20;

/// One shard file and how many samples it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// File name relative to the shard directory.
    pub file: String,
    /// Samples (image + label pairs) in the shard.
    pub samples: usize,
}

/// What `index.json` records about a shard directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardIndex {
    /// Always "webdataset".
    pub format: String,
    /// Class names by label (for foreign shards without an index: "0", "1", …).
    pub classes: Vec<String>,
    /// The shard files in reading order.
    pub shards: Vec<ShardInfo>,
    /// The shorter side images were shrunk to when written (none: kept as they were).
    #[serde(default)]
    pub short_side: Option<usize>,
    /// JPEG quality of re-encoded images.
    #[serde(default)]
    pub quality: Option<u8>,
}

impl ShardIndex {
    /// Samples in all shards together.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.samples).sum()
    }

    /// Whether the shards hold no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The image format of a sample's image member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageExt {
    /// A `.jpg` / `.jpeg` member.
    Jpeg,
    /// A `.png` member.
    Png,
}

impl ImageExt {
    fn parse(ext: &str) -> Option<Self> {
        match ext {
            "jpg" | "jpeg" => Some(ImageExt::Jpeg),
            "png" => Some(ImageExt::Png),
            _ => None,
        }
    }

    /// The extension written for this format (`jpg` or `png`).
    pub fn extension(self) -> &'static str {
        match self {
            ImageExt::Jpeg => "jpg",
            ImageExt::Png => "png",
        }
    }
}

/// One sample as stored: its key, image bytes and label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// WebDataset's sample key: the member name up to its first dot.
    pub key: String,
    /// The encoded image file's bytes.
    pub image: Vec<u8>,
    /// The class index (the `.cls` member).
    pub label: usize,
}

/// Splits a member path into WebDataset's key and extension: the key runs to the first dot of
/// the file name, the (lower-cased) extension is the rest.
fn split_key(path: &str) -> Option<(&str, String)> {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[name_start..].find('.')? + name_start;
    Some((&path[..dot], path[dot + 1..].to_ascii_lowercase()))
}

fn parse_label(bytes: &[u8]) -> Option<usize> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// A sample as it is being assembled from its members.
#[derive(Default)]
struct Pending {
    key: String,
    image: Option<Vec<u8>>,
    label: Option<std::result::Result<usize, String>>,
}

impl Pending {
    fn finish(self, shard: &Path, num_classes: usize) -> Result<Record> {
        let bad = |reason: String| Error::Image {
            path: PathBuf::from(format!("{}:{}", shard.display(), self.key)),
            reason,
        };
        let label = match &self.label {
            None => return Err(bad("the sample has no .cls member".into())),
            Some(Err(e)) => return Err(bad(e.clone())),
            Some(Ok(l)) => *l,
        };
        if label >= num_classes {
            return Err(bad(format!(
                "class {label} is out of range for {num_classes} classes"
            )));
        }
        let Some(image) = self.image else {
            return Err(bad("the sample has no .jpg/.jpeg/.png member".into()));
        };
        Ok(Record {
            key: self.key,
            image,
            label,
        })
    }
}

/// A directory of shards, opened: see the module documentation.
#[derive(Clone, Debug)]
pub struct ShardSet {
    dir: PathBuf,
    index: ShardIndex,
}

impl ShardSet {
    /// Opens `dir`: its `index.json`, or else every `*.tar` in it (sorted by name), counted.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "shard directory".into(),
                tried: vec![dir.to_path_buf()],
                hint: "Expected a directory of WebDataset .tar shards (write them with \
                       `cargo xtask shards --from IMAGEFOLDER --out DIR`)."
                    .into(),
            });
        }
        let index_path = dir.join(INDEX_FILE);
        let index = if index_path.is_file() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let index: ShardIndex = serde_json::from_str(&text)
                .map_err(|e| Error::corrupt(&index_path, e.to_string()))?;
            if index.format != FORMAT {
                return Err(Error::Unexpected {
                    path: index_path,
                    expected: format!("format \"{FORMAT}\""),
                    found: format!("\"{}\"", index.format),
                });
            }
            index
        } else {
            Self::scan(dir)?
        };
        if index.is_empty() {
            return Err(Error::invalid(
                "shard directory",
                format!("{} holds no samples", dir.display()),
            ));
        }
        if index.classes.is_empty() {
            return Err(Error::invalid(
                "shard directory",
                format!(
                    "{} holds {} samples but no classes: no {INDEX_FILE} names them and no \
                     sample has a .cls member holding a class number 0..{MAX_SCANNED_CLASSES}",
                    dir.display(),
                    index.len()
                ),
            ));
        }
        Ok(ShardSet {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// Builds an index for shards that have none: every `*.tar` in `dir`, samples counted from
    /// the tar headers, classes `0..=max label`.
    pub fn scan(dir: &Path) -> Result<ShardIndex> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar") && !n.starts_with('.'))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::invalid(
                "shard directory",
                format!("{} has no {INDEX_FILE} and no .tar files", dir.display()),
            ));
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut max_label = None;
        for file in files {
            let path = dir.join(&file);
            let mut samples = 0;
            let mut last_key: Option<String> = None;
            walk(&path, &mut |key, ext, entry| {
                if last_key.as_deref() != Some(key) {
                    samples += 1;
                    last_key = Some(key.to_string());
                }
                if ext == "cls" {
                    let mut buf = Vec::new();
                    entry.read_to_end(&mut buf)?;
                    if let Some(l) = parse_label(&buf).filter(|&l| l < MAX_SCANNED_CLASSES) {
                        max_label = max_label.max(Some(l));
                    }
                }
                Ok(true)
            })?;
            shards.push(ShardInfo { file, samples });
        }
        let classes = (0..max_label.map_or(0, |m| m + 1))
            .map(|c| c.to_string())
            .collect();
        Ok(ShardIndex {
            format: FORMAT.into(),
            classes,
            shards,
            short_side: None,
            quality: None,
        })
    }

    /// The directory holding the shards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index read from `index.json`, or built by walking the tar headers.
    pub fn index(&self) -> &ShardIndex {
        &self.index
    }

    /// Samples in all shards together.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the shards hold no sample.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Class names by label.
    pub fn classes(&self) -> &[String] {
        &self.index.classes
    }

    /// Number of shard files.
    pub fn num_shards(&self) -> usize {
        self.index.shards.len()
    }

    /// The path of shard number `shard` (panics if `shard >= num_shards()`).
    pub fn shard_path(&self, shard: usize) -> PathBuf {
        self.dir.join(&self.index.shards[shard].file)
    }

    /// Reads shard `shard` front to back. For each sample (numbered from 0 within the shard)
    /// `want` says whether it is needed; needed ones are passed to `got` (a sample with a missing
    /// or bad member as an [`Error::Image`] naming it), the others are skipped by seeking. `got`
    /// returns `false` to stop early. Returns how many samples the shard held up to where reading
    /// stopped; an unreadable or truncated shard is an error (what was passed on stays passed).
    pub fn read_shard(
        &self,
        shard: usize,
        want: &mut dyn FnMut(usize) -> bool,
        got: &mut dyn FnMut(usize, Result<Record>) -> bool,
    ) -> Result<usize> {
        let path = self.shard_path(shard);
        // A member's size field is only a claim (a crafted or damaged header can say a
        // petabyte); no member holds more than the file, so no buffer is reserved beyond it.
        let file_len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let classes = self.index.classes.len();
        let mut current: Option<String> = None;
        let mut started = 0usize;
        let mut pending: Option<Pending> = None;
        let mut stopped = false;
        walk(&path, &mut |key, ext, entry| {
            if current.as_deref() != Some(key) {
                if let Some(p) = pending.take() {
                    if !got(started - 1, p.finish(&path, classes)) {
                        stopped = true;
                        return Ok(false);
                    }
                }
                current = Some(key.to_string());
                started += 1;
                if want(started - 1) {
                    pending = Some(Pending {
                        key: key.to_string(),
                        ..Pending::default()
                    });
                }
            }
            let Some(p) = pending.as_mut() else {
                return Ok(true);
            };
            if ext == "cls" {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf)?;
                p.label = Some(parse_label(&buf).ok_or_else(|| {
                    format!(
                        ".cls holds {:?}, not a class number",
                        String::from_utf8_lossy(&buf[..buf.len().min(32)])
                    )
                }));
            } else if ImageExt::parse(&ext).is_some() && p.image.is_none() {
                let mut buf = Vec::with_capacity(entry.size().min(file_len) as usize);
                entry.read_to_end(&mut buf)?;
                p.image = Some(buf);
            }
            Ok(true)
        })?;
        if let Some(p) = pending.take() {
            if !stopped {
                got(started - 1, p.finish(&path, classes));
            }
        }
        Ok(started)
    }
}

/// What [`walk`] calls for each member: `(key, extension, entry)`, `false` to stop.
type Visit<'v> = dyn FnMut(&str, String, &mut tar::Entry<'_, File>) -> std::io::Result<bool> + 'v;

/// Calls `visit(key, extension, entry)` for every regular member of the tar file at `path`, in
/// order, until it returns `false`. Members whose data `visit` does not read are skipped by
/// seeking.
fn walk(path: &Path, visit: &mut Visit<'_>) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    let bad = |e: std::io::Error| Error::corrupt(path, format!("not a readable tar file: {e}"));
    for entry in archive.entries_with_seek().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some((key, ext)) = split_key(&name) else {
            continue;
        };
        if !visit(key, ext, &mut entry).map_err(bad)? {
            break;
        }
    }
    Ok(())
}

/// A shard being written.
struct OpenShard {
    builder: tar::Builder<BufWriter<File>>,
    tmp: PathBuf,
    file: String,
    samples: usize,
    bytes: u64,
}

/// Writes samples into shards `PREFIX-000000.tar`, `PREFIX-000001.tar`, … of at most
/// `max_samples` samples or about `max_bytes` bytes each, and `index.json` when finished. Each
/// shard is written under a temporary name and renamed once complete, so a directory never holds
/// a half-written shard under a shard's name; the index is written last, atomically.
pub struct ShardWriter {
    dir: PathBuf,
    prefix: String,
    max_samples: usize,
    max_bytes: u64,
    index: ShardIndex,
    open: Option<OpenShard>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("dir", &self.dir)
            .field("shards", &self.index.shards.len())
            .finish()
    }
}

/// Refuses a folder that already holds shards (a missing folder is fine): a rewrite with fewer
/// shards left the old ones beside the new (read by anything that lists `*.tar`, as
/// [`ShardSet::open`] does without an index), and one interrupted part-way left the old
/// `index.json` describing files it had half overwritten.
pub fn refuse_existing_shards(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut tars = 0usize;
    let mut index = false;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        index |= name == INDEX_FILE;
        tars += usize::from(name.ends_with(".tar"));
    }
    if index || tars > 0 {
        let what = match (index, tars) {
            (true, 0) => INDEX_FILE.to_string(),
            (true, n) => format!("{INDEX_FILE} and {n} .tar files"),
            (false, n) => format!("{n} .tar files"),
        };
        return Err(Error::invalid(
            "shard writer",
            format!(
                "{} already holds shards ({what}); write into a new folder, or remove them first",
                dir.display()
            ),
        ));
    }
    Ok(())
}

impl ShardWriter {
    /// Starts writing into `dir` (created if missing); a folder that already holds shards is
    /// refused ([`refuse_existing_shards`]).
    pub fn create(
        dir: &Path,
        prefix: &str,
        classes: Vec<String>,
        max_samples: usize,
        max_bytes: u64,
    ) -> Result<Self> {
        if prefix.is_empty() || prefix.contains(['/', '.']) {
            return Err(Error::invalid(
                "shard writer",
                format!("prefix {prefix:?} must be non-empty, without '/' or '.'"),
            ));
        }
        if classes.is_empty() || max_samples == 0 || max_bytes == 0 {
            return Err(Error::invalid(
                "shard writer",
                "needs at least one class, and shard limits of at least 1",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        refuse_existing_shards(dir)?;
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            max_samples,
            max_bytes,
            index: ShardIndex {
                format: FORMAT.into(),
                classes,
                shards: Vec::new(),
                short_side: None,
                quality: None,
            },
            open: None,
        })
    }

    /// Records how the images were prepared, in the index.
    pub fn set_preparation(&mut self, short_side: Option<usize>, quality: Option<u8>) {
        self.index.short_side = short_side;
        self.index.quality = quality;
    }

    /// Appends one sample. `key` must be unique within the shard, non-empty and free of '.'.
    pub fn add(&mut self, key: &str, ext: ImageExt, image: &[u8], label: usize) -> Result<()> {
        if key.is_empty() || key.contains('.') || key.starts_with('/') {
            return Err(Error::invalid(
                "shard writer",
                format!("key {key:?} must be non-empty, relative and free of '.'"),
            ));
        }
        if label >= self.index.classes.len() {
            return Err(Error::invalid(
                "shard writer",
                format!(
                    "label {label} is out of range for {} classes",
                    self.index.classes.len()
                ),
            ));
        }
        if self.open.is_none() {
            self.open = Some(self.start_shard()?);
        }
        let cls = label.to_string();
        let members = [
            (format!("{key}.{}", ext.extension()), image),
            (format!("{key}.cls"), cls.as_bytes()),
        ];
        let full = {
            let shard = self.open.as_mut().ok_or_else(|| {
                Error::invalid("shard writer", "no open shard (an earlier write failed)")
            })?;
            for (name, data) in members {
                let mut header = tar::Header::new_ustar();
                header.set_path(&name).map_err(|e| {
                    Error::invalid("shard writer", format!("member name {name:?}: {e}"))
                })?;
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_cksum();
                shard
                    .builder
                    .append(&header, data)
                    .map_err(|e| Error::io(&shard.tmp, e))?;
                shard.bytes += 512 + (data.len() as u64).div_ceil(512) * 512;
            }
            shard.samples += 1;
            shard.samples >= self.max_samples || shard.bytes >= self.max_bytes
        };
        if full {
            self.close_shard()?;
        }
        Ok(())
    }

    fn start_shard(&self) -> Result<OpenShard> {
        let file = format!("{}-{:06}.tar", self.prefix, self.index.shards.len());
        let tmp = self.dir.join(format!(".{file}.tmp-{}", std::process::id()));
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(OpenShard {
            builder,
            tmp,
            file,
            samples: 0,
            bytes: 0,
        })
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some(shard) = self.open.take() else {
            return Ok(());
        };
        let tmp = shard.tmp.clone();
        let finished = (|| -> std::io::Result<()> {
            let mut writer = shard.builder.into_inner()?;
            writer.flush()?;
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&shard.tmp, self.dir.join(&shard.file))
        })();
        if let Err(e) = finished {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        self.index.shards.push(ShardInfo {
            file: shard.file,
            samples: shard.samples,
        });
        Ok(())
    }

    /// Shards completed so far.
    pub fn shards_written(&self) -> usize {
        self.index.shards.len()
    }

    /// Completes the last shard and writes `index.json`; returns the index.
    pub fn finish(mut self) -> Result<ShardIndex> {
        self.close_shard()?;
        let text = serde_json::to_string_pretty(&self.index)
            .map_err(|e| Error::invalid("shard index", e.to_string()))?;
        crate::cache::atomic_write(&self.dir.join(INDEX_FILE), text.as_bytes())?;
        Ok(std::mem::replace(
            &mut self.index,
            ShardIndex {
                format: FORMAT.into(),
                classes: Vec::new(),
                shards: Vec::new(),
                short_side: None,
                quality: None,
            },
        ))
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // An unfinished shard is not a shard: leave no temporary file behind.
        if let Some(shard) = self.open.take() {
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_dot_of_the_file_name() {
        assert_eq!(
            split_key("a/b.c/n01_1.jpg"),
            Some(("a/b.c/n01_1", "jpg".into()))
        );
        assert_eq!(split_key("x.seg.PNG"), Some(("x", "seg.png".into())));
        assert_eq!(split_key("noext"), None);
    }

    #[test]
    fn written_shards_read_back_in_order_with_labels_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec!["cat".to_string(), "dog".to_string()];
        let mut w = ShardWriter::create(dir.path(), "train", classes.clone(), 3, 1 << 30).unwrap();
        for i in 0..7 {
            let img = vec![i as u8; 10 + i];
            w.add(&format!("{i:04}_img"), ImageExt::Jpeg, &img, i % 2)
                .unwrap();
        }
        let index = w.finish().unwrap();
        assert_eq!(
            index.shards.iter().map(|s| s.samples).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        let set = ShardSet::open(dir.path()).unwrap();
        assert_eq!(set.len(), 7);
        assert_eq!(set.classes(), classes);
        // The same counts come from the tar headers alone.
        let scanned = ShardSet::scan(dir.path()).unwrap();
        assert_eq!(scanned.shards, index.shards);
        assert_eq!(scanned.classes, ["0", "1"]);
        let mut seen = Vec::new();
        let n = set
            .read_shard(1, &mut |o| o != 1, &mut |o, r| {
                seen.push((o, r.unwrap()));
                true
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, 0);
        assert_eq!(seen[0].1.key, "0003_img");
        assert_eq!(seen[0].1.image, vec![3u8; 13]);
        assert_eq!(seen[0].1.label, 1);
        assert_eq!((seen[1].0, seen[1].1.label), (2, 1));
        // No temporary files are left.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        // Writing again into the same folder would leave stale shards beside the new ones.
        let e = ShardWriter::create(dir.path(), "train", classes.clone(), 10, 1 << 30)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("already holds shards (index.json and 3 .tar files)"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
        let e = ShardWriter::create(dir.path(), "val", classes, 10, 1 << 30)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("already holds shards (3 .tar files)"), "{e}");
    }

    #[test]
    fn bad_samples_are_errors_naming_them_and_bad_shards_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(dir.path(), "s", vec!["a".into()], 10, 1 << 30).unwrap();
        w.add("ok", ImageExt::Png, b"png", 0).unwrap();
        assert!(w.add("bad.key", ImageExt::Png, b"x", 0).is_err());
        assert!(w.add("k", ImageExt::Png, b"x", 5).is_err());
        w.finish().unwrap();
        // A hand-made shard: a sample without .cls, one with a non-number, one out of range.
        let path = dir.path().join("s-000000.tar");
        hand_made_shard(
            &path,
            &[
                ("nolabel.jpg", b"j"),
                ("word.jpg", b"j"),
                ("word.cls", b"cat"),
                ("far.jpg", b"j"),
                ("far.cls", b"7"),
                ("good.jpg", b"j"),
                ("good.cls", b" 0\n"),
            ],
        );
        let set = ShardSet::open(dir.path()).unwrap();
        let mut results = Vec::new();
        let n = set
            .read_shard(0, &mut |_| true, &mut |_, r| {
                results.push(r.map(|r| r.label).map_err(|e| e.to_string()));
                true
            })
            .unwrap();
        assert_eq!(n, 4);
        assert!(results[0]
            .as_ref()
            .unwrap_err()
            .contains("s-000000.tar:nolabel"));
        assert!(results[1]
            .as_ref()
            .unwrap_err()
            .contains("not a class number"));
        assert!(results[2].as_ref().unwrap_err().contains("out of range"));
        assert_eq!(results[3], Ok(0));
        // A truncated shard is an error naming the file, after what could be read.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..1100]).unwrap();
        let mut count = 0;
        let err = set
            .read_shard(0, &mut |_| true, &mut |_, _| {
                count += 1;
                true
            })
            .unwrap_err();
        assert!(err.to_string().contains("s-000000.tar"), "{err}");
    }

    fn hand_made_shard(path: &Path, members: &[(&str, &[u8])]) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        for (name, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
    }

    #[test]
    fn a_member_claiming_more_bytes_than_its_shard_holds_is_read_as_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        for (name, size, data) in [("a.cls", 1, &b"0"[..]), ("a.png", 1 << 50, b"\x89PNG")] {
            // The size field is taken as written: a petabyte, in GNU's base-256 form.
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(size);
            h.set_cksum();
            tar.extend_from_slice(h.as_bytes());
            tar.extend_from_slice(data);
            tar.resize(tar.len().next_multiple_of(512), 0);
        }
        std::fs::write(dir.path().join("s-000000.tar"), &tar).unwrap();
        let index = ShardIndex {
            format: FORMAT.into(),
            classes: vec!["a".into()],
            shards: vec![ShardInfo {
                file: "s-000000.tar".into(),
                samples: 1,
            }],
            short_side: None,
            quality: None,
        };
        std::fs::write(
            dir.path().join(INDEX_FILE),
            serde_json::to_string(&index).unwrap(),
        )
        .unwrap();
        let set = ShardSet::open(dir.path()).unwrap();
        let mut images = Vec::new();
        // This used to abort the process: the reader reserved the claimed petabyte up front.
        let read = set.read_shard(0, &mut |_| true, &mut |_, r| {
            images.push(r.unwrap().image);
            true
        });
        // Where seeking past the end fails the shard is corrupt; elsewhere the member is as long
        // as the file lets it be.
        match read {
            Err(e) => assert!(e.to_string().contains("s-000000.tar"), "{e}"),
            Ok(_) => assert!(images.iter().all(|i| i.len() <= tar.len())),
        }
    }

    #[test]
    fn scanned_classes_survive_huge_and_missing_labels() {
        let dir = tempfile::tempdir().unwrap();
        // u64::MAX + 1 used to wrap the class count to 0 ("holds no samples"); 99999999999 would
        // have named 10^11 classes.
        let max = u64::MAX.to_string();
        hand_made_shard(
            &dir.path().join("s-000000.tar"),
            &[
                ("a.jpg", b"j"),
                ("a.cls", b"1"),
                ("b.jpg", b"j"),
                ("b.cls", max.as_bytes()),
                ("c.jpg", b"j"),
                ("c.cls", b"99999999999"),
            ],
        );
        let set = ShardSet::open(dir.path()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.classes(), ["0", "1"]);
        let mut labels = Vec::new();
        set.read_shard(0, &mut |_| true, &mut |_, r| {
            labels.push(r.map(|r| r.label).map_err(|e| e.to_string()));
            true
        })
        .unwrap();
        assert_eq!(labels[0], Ok(1));
        assert!(labels[1].as_ref().unwrap_err().contains("out of range"));
        assert!(labels[2].as_ref().unwrap_err().contains("out of range"));

        // Samples whose labels are all unusable ("-1" marks unlabelled images in some sets).
        let unlabelled = tempfile::tempdir().unwrap();
        hand_made_shard(
            &unlabelled.path().join("s-000000.tar"),
            &[("a.jpg", b"j"), ("a.cls", b"-1"), ("b.jpg", b"j")],
        );
        let err = ShardSet::open(unlabelled.path()).unwrap_err().to_string();
        assert!(
            err.contains("holds 2 samples but no classes") && err.contains(".cls"),
            "{err}"
        );
    }
}
