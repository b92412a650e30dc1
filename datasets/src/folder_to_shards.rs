//! ImageFolder tree → WebDataset shards (what `cargo xtask shards` runs).
//!
//! The samples are shuffled once (seeded) before writing, so that every shard holds a mix of
//! classes and shard-level shuffling plus a modest shuffle buffer mixes well. Images whose shorter
//! side exceeds `short_side` are shrunk to it (antialiased bilinear, as torchvision's `Resize`)
//! and re-encoded at `quality`; JPEGs already small enough are copied byte for byte, and other
//! formats are re-encoded as JPEG. Unreadable images are left out and listed in the report.
//! Work is done in parallel (rayon) in chunks, and written in order.

use crate::decode::{decode, DecoderKind};
use crate::shards::{ImageExt, ShardIndex, ShardWriter};
use crate::synthetic::encode_jpeg;
use crate::transforms::resize_short_side;
use crate::{derive_seed, Error, ImageFolder, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tensor::Rng;

/// How `write_shards` prepares and groups the images.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardOptions {
    /// Shrink images whose shorter side is longer than this (none: keep every size).
    pub short_side: Option<usize>,
    /// JPEG quality of re-encoded images (1–100).
    pub quality: u8,
    /// A shard is closed once it holds this many samples.
    pub samples_per_shard: usize,
    /// A shard is closed once it reaches this many bytes, even if not full.
    pub max_shard_bytes: u64,
    /// File name prefix: `PREFIX-000000.tar`.
    pub prefix: String,
    /// Seeds the order in which samples are written.
    pub seed: u64,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            short_side: Some(320),
            quality: 90,
            samples_per_shard: 1000,
            max_shard_bytes: 512 << 20,
            prefix: "shard".into(),
            seed: 0,
        }
    }
}

/// What `write_shards` did.
#[derive(Clone, Debug)]
pub struct ShardReport {
    /// The index written beside the shards (class names, shard files and their sample counts).
    pub index: ShardIndex,
    /// Images copied unchanged.
    pub copied: usize,
    /// Images decoded and re-encoded (shrunk, or not JPEG).
    pub reencoded: usize,
    /// Images left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

enum Prepared {
    Copied(Vec<u8>),
    Reencoded(Vec<u8>),
}

fn prepare(path: &Path, opts: &ShardOptions) -> Result<Prepared> {
    let bytes = std::fs::read(path).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Decoding also proves the file is readable, so nothing unreadable reaches a shard.
    let img = decode(&bytes, path, DecoderKind::Auto)?;
    let is_jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    let short = img.width().min(img.height());
    let img = match opts.short_side {
        Some(s) if short > s => resize_short_side(&img, s)?,
        _ if is_jpeg => return Ok(Prepared::Copied(bytes)),
        _ => img,
    };
    Ok(Prepared::Reencoded(encode_jpeg(
        img.data(),
        img.width(),
        img.height(),
        opts.quality,
    )?))
}

/// A sample key: its place in the written order, then the file's stem with the characters
/// WebDataset gives a meaning to ('.', '/') replaced.
fn key(n: usize, path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['.', '/', '\\', ' '], "_"))
        .unwrap_or_default();
    format!("{n:08}_{stem}")
}

/// Writes the ImageFolder at `src` as shards into `out`; `progress(done, total)` is called after
/// each chunk.
pub fn write_shards(
    src: &Path,
    out: &Path,
    opts: &ShardOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ShardReport> {
    if !(1..=100).contains(&opts.quality) {
        return Err(Error::invalid(
            "shards",
            format!("quality {} must be between 1 and 100", opts.quality),
        ));
    }
    if opts.short_side == Some(0) {
        return Err(Error::invalid("shards", "short side must be at least 1"));
    }
    // Only the file list is needed; the transform is never applied.
    let folder = ImageFolder::open(
        src,
        crate::Transform::Eval(crate::EvalTransform::imagenet(1)),
    )?;
    let mut samples: Vec<(PathBuf, usize)> = folder.samples().to_vec();
    let mut rng = Rng::new(derive_seed(&[opts.seed, 0x5348_5244]));
    rng.shuffle(&mut samples);
    let mut writer = ShardWriter::create(
        out,
        &opts.prefix,
        folder.classes().to_vec(),
        opts.samples_per_shard,
        opts.max_shard_bytes,
    )?;
    writer.set_preparation(opts.short_side, Some(opts.quality));
    let total = samples.len();
    let (mut copied, mut reencoded, mut skipped) = (0, 0, Vec::new());
    let chunk = (rayon::current_num_threads() * 16).max(16);
    let mut written = 0;
    for (c, part) in samples.chunks(chunk).enumerate() {
        let prepared: Vec<Result<Prepared>> =
            part.par_iter().map(|(p, _)| prepare(p, opts)).collect();
        for ((path, label), result) in part.iter().zip(prepared) {
            match result {
                Ok(p) => {
                    let bytes = match p {
                        Prepared::Copied(b) => {
                            copied += 1;
                            b
                        }
                        Prepared::Reencoded(b) => {
                            reencoded += 1;
                            b
                        }
                    };
                    writer.add(&key(written, path), ImageExt::Jpeg, &bytes, *label)?;
                    written += 1;
                }
                Err(e @ Error::Image { .. }) => skipped.push((path.clone(), e.to_string())),
                Err(e) => return Err(e),
            }
        }
        progress(((c + 1) * chunk).min(total), total);
    }
    if written == 0 {
        return Err(Error::invalid(
            "shards",
            format!(
                "none of the {total} images in {} could be read",
                src.display()
            ),
        ));
    }
    Ok(ShardReport {
        index: writer.finish()?,
        copied,
        reencoded,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{write_tree, SyntheticConfig};
    use crate::ShardSet;

    #[test]
    fn a_folder_becomes_shards_with_small_jpegs_copied_and_large_ones_shrunk() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        write_tree(
            &src,
            &SyntheticConfig {
                classes: 3,
                per_class: 4,
                sizes: vec![(40, 30), (16, 12)],
                quality: 85,
                seed: 2,
            },
        )
        .unwrap();
        std::fs::write(src.join("class_001/broken.jpg"), b"\xFF\xD8\xFFnot really").unwrap();
        let out = dir.path().join("shards");
        let opts = ShardOptions {
            short_side: Some(20),
            samples_per_shard: 5,
            ..ShardOptions::default()
        };
        let mut calls = Vec::new();
        let report = write_shards(&src, &out, &opts, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
        assert!(report.skipped[0].0.ends_with("broken.jpg"));
        // 40×30 images are shrunk to 26×20, 16×12 ones copied.
        assert_eq!((report.copied, report.reencoded), (6, 6));
        assert_eq!(calls.last(), Some(&(13, 13)));
        let set = ShardSet::open(&out).unwrap();
        assert_eq!(set.len(), 12);
        assert_eq!(set.num_shards(), 3);
        assert_eq!(set.classes(), ["class_000", "class_001", "class_002"]);
        assert_eq!(set.index().short_side, Some(20));
        let mut sizes = Vec::new();
        set.read_shard(0, &mut |_| true, &mut |_, r| {
            let r = r.unwrap();
            let img =
                crate::decode::decode(&r.image, Path::new(&r.key), DecoderKind::Zune).unwrap();
            sizes.push((img.width(), img.height()));
            true
        })
        .unwrap();
        assert!(
            sizes.iter().all(|s| *s == (26, 20) || *s == (16, 12)),
            "{sizes:?}"
        );
    }
}
