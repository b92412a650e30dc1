//! `cargo xtask shards --from DIR --out DIR`: an ImageFolder tree (or an ImageNet-style root with
//! `train/` and `val/` class folders) written as WebDataset shards, with progress.

use anyhow::{Context, Result};
use clap::Args;
use datasets::folder_to_shards::{write_shards, ShardOptions};
use std::path::{Path, PathBuf};
use trainer::{Progress, ProgressMode};

#[derive(Args, Debug, Clone)]
pub struct ShardsCmd {
    /// An ImageFolder (class folders of JPEG/PNG), or a root holding train/ and val/ ones.
    #[arg(long)]
    pub from: PathBuf,
    /// Where the shards go (OUT/train and OUT/val for a train/val root).
    #[arg(long)]
    pub out: PathBuf,
    /// Shrink images whose shorter side is longer than this; 0 keeps every image's size.
    #[arg(long, default_value_t = 320)]
    pub short_side: usize,
    /// JPEG quality of the images that are re-encoded (shrunk, or not JPEG).
    #[arg(long, default_value_t = 90)]
    pub quality: u8,
    #[arg(long, default_value_t = 1000)]
    pub samples_per_shard: usize,
    /// Close a shard once it holds this many MiB.
    #[arg(long, default_value_t = 512)]
    pub max_shard_mib: u64,
    /// Seeds the order in which samples are written (shuffled, so every shard mixes classes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: &ShardsCmd) -> Result<()> {
    let splits: Vec<(PathBuf, PathBuf, &str)> =
        if cmd.from.join("train").is_dir() && cmd.from.join("val").is_dir() {
            vec![
                (cmd.from.join("train"), cmd.out.join("train"), "train"),
                (cmd.from.join("val"), cmd.out.join("val"), "val"),
            ]
        } else {
            vec![(cmd.from.clone(), cmd.out.clone(), "shards")]
        };
    for (src, out, name) in splits {
        write_one(cmd, &src, &out, name)?;
    }
    Ok(())
}

fn write_one(cmd: &ShardsCmd, src: &Path, out: &Path, name: &str) -> Result<()> {
    let opts = ShardOptions {
        short_side: (cmd.short_side > 0).then_some(cmd.short_side),
        quality: cmd.quality,
        samples_per_shard: cmd.samples_per_shard,
        max_shard_bytes: cmd.max_shard_mib << 20,
        prefix: if name == "shards" { "shard" } else { name }.to_string(),
        seed: cmd.seed,
    };
    eprintln!("{} → {}", src.display(), out.display());
    let mut progress: Option<Progress> = None;
    let report = write_shards(src, out, &opts, &mut |done, total| {
        let p = progress.get_or_insert_with(|| {
            Progress::new(name, total as u64, ProgressMode::Auto)
                .with_interval(std::time::Duration::from_secs(10))
        });
        p.set(done as u64, "images");
    })
    .with_context(|| format!("writing shards of {} into {}", src.display(), out.display()))?;
    if let Some(p) = progress {
        p.finish();
    }
    let i = &report.index;
    eprintln!(
        "{}: {} images in {} shards ({} classes; {} copied as they were, {} re-encoded at \
         quality {}{}), index {}",
        name,
        i.len(),
        i.shards.len(),
        i.classes.len(),
        report.copied,
        report.reencoded,
        cmd.quality,
        opts.short_side.map_or(String::new(), |s| format!(
            " with the shorter side at most {s}"
        )),
        out.join(datasets::shards::INDEX_FILE).display()
    );
    if !report.skipped.is_empty() {
        eprintln!(
            "warning: {} unreadable images were left out:",
            report.skipped.len()
        );
        for (path, why) in report.skipped.iter().take(20) {
            eprintln!("  {}: {why}", path.display());
        }
    }
    Ok(())
}
