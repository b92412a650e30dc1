//! `datasets`: the data the convrnn tools train and evaluate on.
//!
//! - [`idx`]: IDX files and Fashion-MNIST ([`FashionMnist`]);
//! - [`locate`]: where the data is looked for and what to do when it is missing;
//! - [`clutter`]: a seeded, cached variant with occluded targets at varied positions and scales;
//! - [`stimuli`]: an HvM-like stimulus set (objects at three variation levels) for neural fitting;
//! - [`folder`]: ImageNet-style class folders of JPEG/PNG with the standard transforms;
//! - [`batcher`]: the [`Dataset`] trait and a prefetching, deterministic [`Batcher`].
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

pub mod batcher;
pub mod cache;
pub mod clutter;
mod error;
pub mod folder;
pub mod idx;
mod images;
pub mod locate;
mod resample;
pub mod stimuli;

pub use batcher::{Batch, Batcher, BatcherConfig, Dataset, EpochIter, ImageDims};
pub use clutter::{CacheStatus, Clutter, ClutterConfig, ClutterInfo};
pub use error::{Error, Result};
pub use folder::{EvalTransform, ImageFolder, TrainTransform, Transform};
pub use idx::{FashionMnist, IdxArray};
pub use images::{Normalize, U8Images, IMAGENET_MEAN, IMAGENET_STD};
pub use locate::Locator;
pub use stimuli::{HvmConfig, StimulusMeta, StimulusSet, VariationLevel};

/// Mixes several values into one seed; per-epoch and per-sample generators are seeded with it so
/// each draws an independent stream that depends on nothing but its parts.
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h = tensor::Rng::new(h ^ p).next_u64();
    }
    h
}
