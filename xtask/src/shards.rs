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
    #[arg(long, default_value_t = 1000, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub samples_per_shard: usize,
    /// Close a shard once it holds this many MiB.
    #[arg(long, default_value_t = 512, value_parser = trainer::count_arg::at_least_one::<u64>)]
    pub max_shard_mib: u64,
    /// Seeds the order in which samples are written (shuffled, so every shard mixes classes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: &ShardsCmd) -> Result<()> {
    let splits = splits(&cmd.from, &cmd.out)?;
    // Every output folder is checked before anything is written: `val/` refused only after
    // hours spent writing `train/` would leave a half-made set.
    for (_, out, _) in &splits {
        datasets::shards::refuse_existing_shards(out).context("--out")?;
    }
    for (src, out, name) in splits {
        write_one(cmd, &src, &out, name)?;
    }
    Ok(())
}

/// What to shard: `(source, output, name)` per split. A root holding `train/` and `val/`, or
/// only one of them and no other folder, is a split root (`OUT/train`, `OUT/val`); anything
/// else is one ImageFolder. A root with only `train/` was taken for an ImageFolder of one class
/// named `train`, every image under it labelled alike.
fn splits(from: &Path, out: &Path) -> Result<Vec<(PathBuf, PathBuf, &'static str)>> {
    let mut folders = Vec::new();
    for entry in
        std::fs::read_dir(from).with_context(|| format!("reading --from {}", from.display()))?
    {
        let path = entry
            .with_context(|| format!("reading --from {}", from.display()))?
            .path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if path.is_dir() && !hidden {
            folders.push(path);
        }
    }
    let named = |n: &str| {
        folders
            .iter()
            .any(|f| f.file_name().is_some_and(|f| f == n))
    };
    let split_names: Vec<&'static str> =
        ["train", "val"].into_iter().filter(|n| named(n)).collect();
    if split_names.len() == 2 || (split_names.len() == 1 && folders.len() == 1) {
        if split_names.len() == 1 {
            eprintln!(
                "{} holds only {}/: writing that split alone",
                from.display(),
                split_names[0]
            );
        }
        return Ok(split_names
            .into_iter()
            .map(|n| (from.join(n), out.join(n), n))
            .collect());
    }
    Ok(vec![(from.to_path_buf(), out.to_path_buf(), "shards")])
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
    if let [only] = i.classes.as_slice() {
        eprintln!(
            "warning: {name} has one class (`{only}`): a classification set needs one folder per \
             class under {}",
            src.display()
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path, names: &[&str]) {
        for n in names {
            std::fs::create_dir_all(root.join(n)).unwrap();
        }
    }

    fn names(v: &[(PathBuf, PathBuf, &str)]) -> Vec<String> {
        v.iter().map(|(_, _, n)| n.to_string()).collect()
    }

    #[test]
    fn split_roots_are_told_from_image_folders() {
        let out = Path::new("/out");
        let both = tempfile::tempdir().unwrap();
        dirs(both.path(), &["train/a", "val/a"]);
        let s = splits(both.path(), out).unwrap();
        assert_eq!(names(&s), ["train", "val"]);
        assert_eq!(s[1].0, both.path().join("val"));
        assert_eq!(s[1].1, out.join("val"));

        // Only train/: that split, not an ImageFolder whose one class is `train`.
        let train = tempfile::tempdir().unwrap();
        dirs(train.path(), &["train/a", "train/b", ".cache"]);
        let s = splits(train.path(), out).unwrap();
        assert_eq!(names(&s), ["train"]);
        assert_eq!(s[0].0, train.path().join("train"));

        // Class folders, one of them called `train` among others: an ImageFolder.
        let classes = tempfile::tempdir().unwrap();
        dirs(classes.path(), &["train", "car", "plane"]);
        let s = splits(classes.path(), out).unwrap();
        assert_eq!(names(&s), ["shards"]);
        assert_eq!((s[0].0.as_path(), s[0].1.as_path()), (classes.path(), out));

        let missing = classes.path().join("nope");
        let e = format!("{:#}", splits(&missing, out).unwrap_err());
        assert!(e.contains("reading --from"), "{e}");
    }

    #[test]
    fn an_output_that_holds_shards_is_refused_before_anything_is_written() {
        let from = tempfile::tempdir().unwrap();
        dirs(from.path(), &["train/a", "val/a"]);
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir(out.path().join("val")).unwrap();
        std::fs::write(out.path().join("val/val-000000.tar"), "").unwrap();
        let cmd = ShardsCmd {
            from: from.path().to_path_buf(),
            out: out.path().to_path_buf(),
            short_side: 320,
            quality: 90,
            samples_per_shard: 1000,
            max_shard_mib: 512,
            seed: 0,
        };
        let e = format!("{:#}", run(&cmd).unwrap_err());
        assert!(e.contains("already holds shards (1 .tar files)"), "{e}");
        assert!(
            !out.path().join("train").exists(),
            "train/ was written first"
        );
    }
}
