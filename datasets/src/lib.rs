//! `datasets`: the data the convrnn tools train and evaluate on.
//!
//! - [`idx`]: IDX files and Fashion-MNIST ([`FashionMnist`]);
//! - [`locate`]: where the data is looked for and what to do when it is missing;
//! - [`clutter`]: a seeded, cached variant with occluded targets at varied positions and scales;
//! - [`stimuli`]: an HvM-like stimulus set (objects at three variation levels) for neural fitting;
//! - [`folder`]: ImageNet-style class folders of JPEG/PNG;
//! - [`shards`]: the same images in WebDataset tar shards, written and indexed
//!   ([`folder_to_shards`] converts a tree);
//! - [`transforms`]: torchvision's ImageNet training and evaluation transforms, from 8-bit RGB;
//! - [`decode`]: JPEG/PNG decoding (libjpeg-turbo when present, [`libjpeg`]), only the window a
//!   transform reads;
//! - [`batcher`]: the [`Dataset`] trait and a prefetching, deterministic [`Batcher`];
//! - [`pipeline`]: the [`Loader`] trait both loaders implement, the sequential [`ShardLoader`]
//!   (shard shuffling, a shuffle buffer, parallel decoding), and the count of skipped images;
//! - [`synthetic`]: photo-like JPEG trees for tests and the loader benchmark.
//!
//! ```no_run
//! use datasets::{Batcher, BatcherConfig, FashionMnist};
//! use std::sync::Arc;
//! let fm = FashionMnist::locate_and_load(None)?;
//! let train = Batcher::new(Arc::new(fm.train), BatcherConfig::train(64, 0))?;
//! for batch in train.epoch(0) {
//!     let (images, labels) = batch?.into_tensor(tensor::Device::Cpu)?;
//!     assert_eq!(images.dims()[1..], [1, 28, 28]);
//!     # let _ = labels;
//! }
//! # Ok::<(), datasets::Error>(())
//! ```
#![warn(missing_docs)]

pub mod batcher;
pub mod cache;
pub mod clutter;
pub mod decode;
mod error;
pub mod folder;
pub mod folder_to_shards;
pub mod idx;
mod images;
pub mod libjpeg;
pub mod locate;
pub mod pipeline;
mod resample;
pub mod shards;
pub mod stimuli;
pub mod synthetic;
pub mod transforms;

pub use batcher::{Batch, Batcher, BatcherConfig, Dataset, EpochIter, ImageDims, Shard};
pub use clutter::{CacheStatus, Clutter, ClutterConfig, ClutterInfo};
pub use decode::{DecoderKind, Rgb8};
pub use error::{Error, Result};
pub use folder::ImageFolder;
pub use idx::{FashionMnist, IdxArray};
pub use images::{Normalize, U8Images, IMAGENET_MEAN, IMAGENET_STD};
pub use locate::Locator;
pub use pipeline::{Loader, ShardLoader, ShardLoaderConfig, Skipped};
pub use shards::{ShardIndex, ShardSet, ShardWriter};
pub use stimuli::{HvmConfig, StimulusMeta, StimulusSet, VariationLevel};
pub use transforms::{EvalTransform, TrainTransform, Transform};

/// Mixes several values into one seed; per-epoch and per-sample generators are seeded with it so
/// each draws an independent stream that depends on nothing but its parts.
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h = tensor::Rng::new(h ^ p).next_u64();
    }
    h
}
