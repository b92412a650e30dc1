//! `cargo xtask bench loader`: decoded-and-augmented images per second, and per CPU-second, of
//! the input pipeline on a generated ImageNet-like JPEG set (2,000 images of about 500×375 at
//! quality 90, written once under `target/bench-loader/`). `benches/torchvision_loader.py` does
//! the same work with torchvision's DataLoader (PIL) on the same files.
//!
//! CPU time (user + system of every thread of the process, from /proc/self/stat) is the figure to
//! compare on a shared machine; wall-clock images/s need a quiet one.

use crate::machine::{self, Machine};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use datasets::folder_to_shards::{write_shards, ShardOptions};
use datasets::synthetic::{write_tree, SyntheticConfig};
use datasets::{
    Batcher, BatcherConfig, DecoderKind, EvalTransform, ImageFolder, Loader, ShardLoader,
    ShardLoaderConfig, ShardSet, TrainTransform, Transform,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceArg {
    /// The JPEG files of the ImageFolder tree.
    Folder,
    /// The same files in WebDataset shards (written once, unchanged bytes).
    Shards,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformArg {
    /// RandomResizedCrop(224) + horizontal flip + normalisation.
    Train,
    /// Resize(256) + CenterCrop(224) + normalisation.
    Eval,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecoderArg {
    Auto,
    LibjpegTurbo,
    Zune,
}

#[derive(Args, Debug, Clone)]
pub struct LoaderArgs {
    /// Where the generated set lives (DIR/folder, DIR/shards); default target/bench-loader.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images in the generated set.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    #[arg(long, value_enum, default_value = "folder")]
    pub source: SourceArg,
    #[arg(long, value_enum, default_value = "train")]
    pub transform: TransformArg,
    #[arg(long, value_enum, default_value = "auto")]
    pub decoder: DecoderArg,
    /// Decoding threads (1 measures one core).
    #[arg(long, default_value_t = 1, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub threads: usize,
    #[arg(long, default_value_t = 64, value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub batch: usize,
    /// Epochs over the set (each reads every image once).
    #[arg(long, default_value_t = 2, value_parser = trainer::count_arg::at_least_one::<u64>)]
    pub epochs: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct LoaderResult {
    source: SourceArg,
    transform: TransformArg,
    decoder: String,
    threads: usize,
    batch: usize,
    images: u64,
    skipped: u64,
    seconds: f64,
    cpu_seconds: f64,
    img_per_s: f64,
    img_per_s_per_thread: f64,
    img_per_cpu_s: f64,
    cpu_ms_per_image: f64,
    machine: Machine,
    date: String,
}

/// The generated set, written once.
fn ensure_folder(dir: &Path, images: usize) -> Result<PathBuf> {
    let folder = dir.join("folder");
    let config = SyntheticConfig::imagenet_like(images, 0);
    let want = config.classes * config.per_class;
    if folder.is_dir() {
        let have = ImageFolder::open(&folder, Transform::Eval(EvalTransform::imagenet(224)))?
            .samples()
            .len();
        if have != want {
            bail!(
                "{} holds {have} images, not {want}; remove it or pick another --data",
                folder.display()
            );
        }
        return Ok(folder);
    }
    eprintln!(
        "generating {want} JPEGs of about 500×375 in {} …",
        folder.display()
    );
    let tmp = dir.join("folder.partial");
    let _ = std::fs::remove_dir_all(&tmp);
    write_tree(&tmp, &config)?;
    std::fs::rename(&tmp, &folder).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(folder)
}

fn ensure_shards(dir: &Path, folder: &Path) -> Result<PathBuf> {
    let shards = dir.join("shards");
    if !shards.join(datasets::shards::INDEX_FILE).is_file() {
        eprintln!("writing the same files as shards in {} …", shards.display());
        let opts = ShardOptions {
            short_side: None,
            samples_per_shard: 250,
            ..ShardOptions::default()
        };
        // Written aside and renamed, like the folder: an interrupted write leaves no partial
        // set here, which the writer would refuse to write into.
        let tmp = dir.join("shards.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&shards);
        write_shards(folder, &tmp, &opts, &mut |_, _| {})?;
        std::fs::rename(&tmp, &shards).with_context(|| format!("renaming {}", tmp.display()))?;
    }
    Ok(shards)
}

pub fn run(args: &LoaderArgs) -> Result<()> {
    // The batcher decodes on rayon's global pool, so size that to --threads before anything
    // (the generator included) starts it.
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("sizing the decoding thread pool")?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("target/bench-loader"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let folder = ensure_folder(&dir, args.images)?;
    let transform = match args.transform {
        TransformArg::Train => Transform::Train(TrainTransform::imagenet(224)),
        TransformArg::Eval => Transform::Eval(EvalTransform::imagenet(224)),
    };
    let decoder = match args.decoder {
        DecoderArg::Auto => DecoderKind::Auto,
        DecoderArg::LibjpegTurbo => DecoderKind::LibjpegTurbo,
        DecoderArg::Zune => DecoderKind::Zune,
    };
    let batch = BatcherConfig {
        drop_last: false,
        ..BatcherConfig::train(args.batch, 0)
    };
    let loader: Box<dyn Loader> = match args.source {
        SourceArg::Folder => {
            let f = ImageFolder::open(&folder, transform)?.with_decoder(decoder);
            Box::new(Batcher::new(Arc::new(f), batch)?)
        }
        SourceArg::Shards => {
            let set = Arc::new(ShardSet::open(&ensure_shards(&dir, &folder)?)?);
            let config = ShardLoaderConfig {
                batch,
                decoder,
                threads: Some(args.threads),
                ..ShardLoaderConfig::train(args.batch, 0)
            };
            Box::new(ShardLoader::new(set, transform, config)?)
        }
    };
    let (cpu0, t0) = (machine::process_cpu_seconds()?, Instant::now());
    let mut images = 0u64;
    for epoch in 0..args.epochs {
        for b in loader.epoch(epoch) {
            images += b?.len() as u64;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = machine::process_cpu_seconds()? - cpu0;
    let r = LoaderResult {
        source: args.source,
        transform: args.transform,
        decoder: decoder.describe(),
        threads: args.threads,
        batch: args.batch,
        images,
        skipped: loader.skipped(),
        seconds,
        cpu_seconds: cpu,
        img_per_s: images as f64 / seconds,
        img_per_s_per_thread: images as f64 / seconds / args.threads as f64,
        img_per_cpu_s: images as f64 / cpu.max(1e-9),
        cpu_ms_per_image: 1e3 * cpu / images.max(1) as f64,
        machine: Machine::detect(),
        date: machine::today_utc(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{:?} {:?} ({}), {} thread(s): {} images in {:.2} s = {:.1} img/s ({:.1} per thread); \
             CPU {:.2} s = {:.2} ms per image = {:.1} img per CPU-second",
            r.source,
            r.transform,
            r.decoder,
            r.threads,
            r.images,
            r.seconds,
            r.img_per_s,
            r.img_per_s_per_thread,
            r.cpu_seconds,
            r.cpu_ms_per_image,
            r.img_per_cpu_s
        );
    }
    Ok(())
}
