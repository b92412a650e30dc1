//! An HvM-like stimulus set (after Majaj et al. 2015) built from Fashion-MNIST objects: a few
//! specific objects per category, each re-rendered at three variation levels on textured
//! backgrounds, as the stand-in for the real HvM images (SPEC §9).
//!
//! Layout: `categories × objects_per_category` objects; each object appears
//! `images_per_object_per_level[v]` times at level `v` (HvM: 10 at V0, 40 at V3 and V6, 5,760
//! images in all with 8 × 8 objects). Image order is category, object, level, repeat.
//!
//! - **Categories**: by default 8 of Fashion-MNIST's 10 classes, T-shirt/top, Trouser, Dress,
//!   Coat, Sandal, Sneaker, Bag, Ankle boot. Pullover and Shirt are left out because they are near
//!   duplicates of Coat and T-shirt/top at this resolution, and HvM's categories are distinct.
//! - **Objects**: `objects_per_category` specific images per category from Fashion-MNIST's *test*
//!   split (so models trained on the training split never saw them), chosen by the seed.
//! - **Variation** (HvM's V0/V3/V6; `t` is the object centre's offset as a fraction of the image
//!   side, `s` the size relative to the base size of 0.55 × side, `r` in-plane rotation, `c` the
//!   object's contrast against the background; HvM varied 3-D pose, a flat object only rotates
//!   in the plane):
//!   - V0: `t = 0`, `s = 1`, `r = 0`, `c = 1`;
//!   - V3: `|t| ≤ 0.15` per axis, `s ∈ [0.8, 1.25]` (log-uniform), `|r| ≤ 30°`, `c ∈ [0.7, 1]`;
//!   - V6: `|t| ≤ 0.3` per axis, `s ∈ [0.6, 1.6]` (log-uniform), `|r| ≤ 90°`, `c ∈ [0.4, 1]`.
//! - **Background**: three random oriented gratings (2–8 cycles per image) plus smooth noise,
//!   mean 0.35 and about ±0.15, new for every image, as HvM placed objects on random natural
//!   scenes. The object composites over it with alpha `min(1, 4·v)` (a Fashion-MNIST image is an
//!   object on black), its intensity pulled towards the background mean by the contrast `c`.
//! - **Size**: `size_px` (default 64). Models take the set at their input size: 28 for the compact
//!   presets, 224 for the zoo.
//!
//! Image `i` depends only on `(config, source, i)`, rendered in parallel; the set is cached on disk
//! like [`crate::clutter`] (atomic write, key and checksum checked on read).
//! [`StimulusSet::write_brainscore`] writes it out Brain-Score style: PNGs and `stimulus_set.csv`.

use crate::batcher::{Dataset, ImageDims};
use crate::cache::{atomic_write, fnv1a64};
use crate::clutter::{source_fingerprint, CacheStatus};
use crate::images::U8Images;
use crate::{derive_seed, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tensor::Rng;

/// Bumped whenever the generator or the file layout changes, so old caches are never reused.
pub const HVM_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CVRNHVM\0";
const ALPHA_GAIN: f32 = 4.0;
const BASE_SIZE: f64 = 0.55;
const BACKGROUND_MEAN: f32 = 0.35;

/// The default categories, as Fashion-MNIST labels (see the module documentation).
pub const DEFAULT_CATEGORIES: [usize; 8] = [0, 1, 3, 4, 5, 7, 8, 9];

/// Short names of Fashion-MNIST's classes, used in object names and file names.
pub const FMNIST_SLUGS: [&str; 10] = [
    "tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot",
];

/// HvM's variation levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VariationLevel {
    /// No variation: the object centred, at base size, upright, full contrast.
    V0,
    /// Medium variation: offsets up to 0.15 of the side, scale 0.8–1.25, rotation up to 30°,
    /// contrast 0.7–1.
    V3,
    /// High variation: offsets up to 0.3 of the side, scale 0.6–1.6, rotation up to 90°, contrast
    /// 0.4–1.
    V6,
}

impl VariationLevel {
    /// The three levels, in image order.
    pub const ALL: [VariationLevel; 3] =
        [VariationLevel::V0, VariationLevel::V3, VariationLevel::V6];

    /// 0, 3 or 6, as HvM writes it.
    pub fn number(self) -> u32 {
        match self {
            VariationLevel::V0 => 0,
            VariationLevel::V3 => 3,
            VariationLevel::V6 => 6,
        }
    }

    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        match self {
            VariationLevel::V0 => 0,
            VariationLevel::V3 => 1,
            VariationLevel::V6 => 2,
        }
    }

    /// Maximum |offset| per axis (fraction of the side), scale range, maximum |rotation| (degrees)
    /// and contrast range.
    fn ranges(self) -> (f64, (f64, f64), f64, (f64, f64)) {
        match self {
            VariationLevel::V0 => (0.0, (1.0, 1.0), 0.0, (1.0, 1.0)),
            VariationLevel::V3 => (0.15, (0.8, 1.25), 30.0, (0.7, 1.0)),
            VariationLevel::V6 => (0.3, (0.6, 1.6), 90.0, (0.4, 1.0)),
        }
    }
}

/// Every parameter of a generated HvM-like set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HvmConfig {
    /// Fashion-MNIST labels of the categories, distinct, each below 10.
    pub categories: Vec<usize>,
    /// Specific objects (source images) per category.
    pub objects_per_category: usize,
    /// Images of each object at V0, V3 and V6.
    pub images_per_object_per_level: [usize; 3],
    /// Side of the square images.
    pub size_px: usize,
    /// Seeds the choice of objects and every image's variation and background.
    pub seed: u64,
}

impl Default for HvmConfig {
    /// HvM's design: 8 categories × 8 objects, 10/40/40 images per object at V0/V3/V6 (5,760), 64 px.
    fn default() -> Self {
        HvmConfig {
            categories: DEFAULT_CATEGORIES.to_vec(),
            objects_per_category: 8,
            images_per_object_per_level: [10, 40, 40],
            size_px: 64,
            seed: 0,
        }
    }
}

impl HvmConfig {
    /// Images in the set: categories × objects × the images per object over the three levels.
    pub fn num_images(&self) -> usize {
        self.categories.len()
            * self.objects_per_category
            * self.images_per_object_per_level.iter().sum::<usize>()
    }

    /// Checks the settings before anything is rendered: known, distinct categories, at least one
    /// object and one image, `size_px` in 8..=1024, a set that fits in memory.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("HvM-like stimulus config", msg));
        if self.categories.is_empty() {
            return bad("at least one category is needed".into());
        }
        for (i, &c) in self.categories.iter().enumerate() {
            if c >= FMNIST_SLUGS.len() {
                return bad(format!("category {c} is not a Fashion-MNIST label (0..=9)"));
            }
            if self.categories[..i].contains(&c) {
                return bad(format!("category {c} is listed twice"));
            }
        }
        if self.objects_per_category == 0 {
            return bad("objects_per_category must be at least 1".into());
        }
        if self.images_per_object_per_level.iter().sum::<usize>() == 0 {
            return bad("images_per_object_per_level are all zero: no images".into());
        }
        if !(8..=1024).contains(&self.size_px) {
            return bad(format!("size_px {} must be in 8..=1024", self.size_px));
        }
        if self
            .num_images()
            .checked_mul(self.size_px * self.size_px)
            .is_none_or(|n| n > (1usize << 34))
        {
            return bad(format!(
                "{} images of {}² pixels are too many to hold in memory",
                self.num_images(),
                self.size_px
            ));
        }
        Ok(())
    }
}

/// What each image shows and how it was rendered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StimulusMeta {
    /// A unique id of the image (Brain-Score's `stimulus_id`).
    pub stimulus_id: String,
    /// e.g. `bag_03`: the category slug and the object's number within the category.
    pub object_name: String,
    /// The category slug, e.g. `bag`.
    pub category: String,
    /// Index into [`HvmConfig::categories`] (the image's label in [`StimulusSet::images`]).
    pub category_index: usize,
    /// Index of the object within its category.
    pub object_index: usize,
    /// The variation level it was rendered at.
    pub variation: VariationLevel,
    /// Horizontal offset of the object centre from the image centre, as a fraction of the side
    /// (right is positive).
    pub tx: f32,
    /// Vertical offset of the object centre from the image centre, as a fraction of the side (down
    /// is positive).
    pub ty: f32,
    /// Size relative to the base size (0.55 × side).
    pub scale: f32,
    /// In-plane rotation, degrees, counter-clockwise.
    pub rotation_deg: f32,
    /// Object contrast against the background, 0..=1.
    pub contrast: f32,
    /// Index of the object's image in the source (Fashion-MNIST test) set.
    pub source_index: usize,
}

/// A generated set: images labelled by category index, and each image's metadata.
#[derive(Clone, Debug)]
pub struct StimulusSet {
    /// `[N, 1, size_px, size_px]`, labels = category index, class names = category slugs.
    pub images: U8Images,
    /// What each image shows, in image order.
    pub meta: Vec<StimulusMeta>,
    /// The configuration the set was generated from.
    pub config: HvmConfig,
}

/// The canonical description that keys the cache and is stored in the file.
fn key_text(config: &HvmConfig, fingerprint: u64) -> String {
    format!(
        "hvm format={HVM_FORMAT_VERSION} categories={:?} objects={} per_level={:?} size={} seed={} source={fingerprint:016x}",
        config.categories,
        config.objects_per_category,
        config.images_per_object_per_level,
        config.size_px,
        config.seed
    )
}

/// The cache file for `config` over `source` inside `dir`.
pub fn cache_path(dir: &Path, config: &HvmConfig, source: &U8Images) -> PathBuf {
    let key = fnv1a64(key_text(config, source_fingerprint(source)).as_bytes());
    dir.join(format!("hvm-v{HVM_FORMAT_VERSION}-{key:016x}.bin"))
}

/// One planned image: which object at which level.
#[derive(Clone, Copy)]
struct Plan {
    category_index: usize,
    object_index: usize,
    level: VariationLevel,
    repeat: usize,
}

fn plans(config: &HvmConfig) -> Vec<Plan> {
    let mut v = Vec::with_capacity(config.num_images());
    for category_index in 0..config.categories.len() {
        for object_index in 0..config.objects_per_category {
            for level in VariationLevel::ALL {
                for repeat in 0..config.images_per_object_per_level[level.index()] {
                    v.push(Plan {
                        category_index,
                        object_index,
                        level,
                        repeat,
                    });
                }
            }
        }
    }
    v
}

/// The source indices of the objects, `[category][object]`, drawn without replacement.
fn choose_objects(source: &U8Images, config: &HvmConfig) -> Result<Vec<Vec<usize>>> {
    let mut rng = Rng::new(derive_seed(&[config.seed, 0x4f42_4a45_4354]));
    config
        .categories
        .iter()
        .map(|&c| {
            let mut pool: Vec<usize> = source
                .labels()
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == c)
                .map(|(i, _)| i)
                .collect();
            if pool.len() < config.objects_per_category {
                return Err(Error::invalid(
                    "HvM-like stimuli",
                    format!(
                        "the source has {} images of class {c}, fewer than the {} objects per category asked for",
                        pool.len(),
                        config.objects_per_category
                    ),
                ));
            }
            // Partial Fisher–Yates: the first `objects_per_category` entries become the sample.
            for i in 0..config.objects_per_category {
                let j = i + rng.below(pool.len() - i);
                pool.swap(i, j);
            }
            pool.truncate(config.objects_per_category);
            Ok(pool)
        })
        .collect()
}

impl StimulusSet {
    /// Generates the set in memory from `source` (Fashion-MNIST's test split, or any 1-channel set
    /// whose labels are Fashion-MNIST classes).
    pub fn generate(source: &U8Images, config: &HvmConfig) -> Result<Self> {
        config.validate()?;
        let d = source.dims();
        if d.channels != 1 {
            return Err(Error::invalid(
                "HvM-like stimuli",
                format!(
                    "the source images must have one channel, not {}",
                    d.channels
                ),
            ));
        }
        let objects = choose_objects(source, config)?;
        let plans = plans(config);
        let rendered: Vec<(Vec<u8>, StimulusMeta)> = plans
            .par_iter()
            .enumerate()
            .map(|(i, p)| render(source, config, &objects, i, *p))
            .collect();
        let s = config.size_px;
        let mut pixels = Vec::with_capacity(plans.len() * s * s);
        let mut labels = Vec::with_capacity(plans.len());
        let mut meta = Vec::with_capacity(plans.len());
        for (px, m) in rendered {
            pixels.extend_from_slice(&px);
            labels.push(m.category_index);
            meta.push(m);
        }
        let names = config
            .categories
            .iter()
            .map(|&c| FMNIST_SLUGS[c].to_string())
            .collect();
        Ok(StimulusSet {
            images: U8Images::new(ImageDims::new(1, s, s), pixels, labels, names)?,
            meta,
            config: config.clone(),
        })
    }

    /// Reads the set from `cache_dir` when a valid file for exactly this `(config, source)` is
    /// there, otherwise generates it and writes the file atomically (`None`: no cache).
    pub fn load_or_generate(
        source: &U8Images,
        config: &HvmConfig,
        cache_dir: Option<&Path>,
    ) -> Result<(Self, CacheStatus)> {
        config.validate()?;
        let Some(dir) = cache_dir else {
            return Ok((Self::generate(source, config)?, CacheStatus::Uncached));
        };
        let key = key_text(config, source_fingerprint(source));
        let path = cache_path(dir, config, source);
        let stale = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes, &key, config) {
                Ok(set) => return Ok((set, CacheStatus::Hit(path))),
                Err(reason) => Some(reason),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let set = Self::generate(source, config)?;
        atomic_write(&path, &encode(&set, &key)?)?;
        let status = match stale {
            None => CacheStatus::Generated(path),
            Some(reason) => CacheStatus::Regenerated { path, reason },
        };
        Ok((set, status))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The images as f32 in [0, 1], `[N, 1, S, S]` flattened row-major.
    pub fn pixels_f32(&self) -> Vec<f32> {
        self.images
            .pixels()
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect()
    }

    /// Writes `dir/images/<stimulus_id>.png` for every image and `dir/stimulus_set.csv` with
    /// `stimulus_id,filename,object_name,category,variation,tx,ty,scale,rotation_deg,contrast,source_index`
    /// (the columns Brain-Score's stimulus sets carry, plus the rendering parameters). Every file is
    /// written atomically. Returns the CSV's path.
    pub fn write_brainscore(&self, dir: &Path) -> Result<PathBuf> {
        let s = self.config.size_px as u32;
        let img_dir = dir.join("images");
        self.meta
            .par_iter()
            .enumerate()
            .try_for_each(|(i, m)| -> Result<()> {
                let px = self.images.image(i).unwrap_or_default().to_vec();
                let path = img_dir.join(format!("{}.png", m.stimulus_id));
                let img = image::GrayImage::from_raw(s, s, px).ok_or_else(|| {
                    Error::invalid("HvM-like stimuli", format!("image {i} has the wrong size"))
                })?;
                let mut bytes = std::io::Cursor::new(Vec::new());
                img.write_to(&mut bytes, image::ImageFormat::Png)
                    .map_err(|e| Error::Image {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                atomic_write(&path, &bytes.into_inner())
            })?;
        let mut csv = String::from(
            "stimulus_id,filename,object_name,category,variation,tx,ty,scale,rotation_deg,contrast,source_index\n",
        );
        for m in &self.meta {
            csv.push_str(&format!(
                "{},images/{}.png,{},{},{},{},{},{},{},{},{}\n",
                m.stimulus_id,
                m.stimulus_id,
                m.object_name,
                m.category,
                m.variation.number(),
                m.tx,
                m.ty,
                m.scale,
                m.rotation_deg,
                m.contrast,
                m.source_index
            ));
        }
        let path = dir.join("stimulus_set.csv");
        atomic_write(&path, csv.as_bytes())?;
        Ok(path)
    }
}

/// File layout (little-endian): magic, format version (u32), key length (u32), key, payload length
/// (u64), payload FNV-1a checksum (u64), payload = pixels (N·S² bytes) then the metadata as JSON.
fn encode(set: &StimulusSet, key: &str) -> Result<Vec<u8>> {
    let mut payload = set.images.pixels().to_vec();
    let json = serde_json::to_vec(&set.meta)
        .map_err(|e| Error::invalid("HvM-like stimuli", format!("metadata to JSON: {e}")))?;
    payload.extend_from_slice(&json);
    let mut out = Vec::with_capacity(payload.len() + key.len() + 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&HVM_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
    if b.len() < n {
        return Err(format!("the file ends inside the {what}"));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn take_u64(b: &mut &[u8], what: &str) -> std::result::Result<u64, String> {
    let mut a = [0u8; 8];
    a.copy_from_slice(take(b, 8, what)?);
    Ok(u64::from_le_bytes(a))
}

fn take_u32(b: &mut &[u8], what: &str) -> std::result::Result<u32, String> {
    let mut a = [0u8; 4];
    a.copy_from_slice(take(b, 4, what)?);
    Ok(u32::from_le_bytes(a))
}

fn decode(bytes: &[u8], key: &str, config: &HvmConfig) -> std::result::Result<StimulusSet, String> {
    let mut b = bytes;
    if take(&mut b, 8, "magic")? != MAGIC {
        return Err("wrong magic: not an HvM-like stimulus cache".into());
    }
    let version = take_u32(&mut b, "version")?;
    if version != HVM_FORMAT_VERSION {
        return Err(format!(
            "format version {version}, expected {HVM_FORMAT_VERSION}"
        ));
    }
    let key_len = take_u32(&mut b, "key length")? as usize;
    if take(&mut b, key_len, "key")? != key.as_bytes() {
        return Err("the key does not match the configuration".into());
    }
    let len = take_u64(&mut b, "payload length")? as usize;
    let sum = take_u64(&mut b, "checksum")?;
    if b.len() < len {
        return Err(format!(
            "truncated: payload of {} bytes, expected {len}",
            b.len()
        ));
    }
    if b.len() > len {
        return Err(format!(
            "padded: payload of {} bytes, expected {len}",
            b.len()
        ));
    }
    if fnv1a64(b) != sum {
        return Err("checksum mismatch".into());
    }
    let s = config.size_px;
    let n = config.num_images();
    let pixels = take(&mut b, n * s * s, "pixels")?.to_vec();
    let meta: Vec<StimulusMeta> =
        serde_json::from_slice(b).map_err(|e| format!("invalid metadata: {e}"))?;
    if meta.len() != n {
        return Err(format!("{} metadata rows for {n} images", meta.len()));
    }
    let labels = meta.iter().map(|m| m.category_index).collect();
    let names = config
        .categories
        .iter()
        .map(|&c| FMNIST_SLUGS[c].to_string())
        .collect();
    let images = U8Images::new(ImageDims::new(1, s, s), pixels, labels, names)
        .map_err(|e| format!("invalid contents: {e}"))?;
    Ok(StimulusSet {
        images,
        meta,
        config: config.clone(),
    })
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

/// Gratings plus smooth noise, mean [`BACKGROUND_MEAN`].
fn background(rng: &mut Rng, side: usize) -> Vec<f32> {
    let mut bg = vec![BACKGROUND_MEAN; side * side];
    for _ in 0..3 {
        let theta = uniform(rng, 0.0, std::f64::consts::PI);
        let cycles = uniform(rng, 2.0, 8.0);
        let phase = uniform(rng, 0.0, std::f64::consts::TAU);
        let amp = uniform(rng, 0.02, 0.06);
        let k = std::f64::consts::TAU * cycles / side as f64;
        let (kx, ky) = (k * theta.cos(), k * theta.sin());
        for y in 0..side {
            for x in 0..side {
                bg[y * side + x] += (amp * (kx * x as f64 + ky * y as f64 + phase).sin()) as f32;
            }
        }
    }
    // Smooth noise: a coarse 6×6 grid upsampled bilinearly.
    const G: usize = 6;
    let grid: Vec<f64> = (0..G * G).map(|_| uniform(rng, -0.05, 0.05)).collect();
    for y in 0..side {
        let gy = y as f64 / side as f64 * (G - 1) as f64;
        let (y0, fy) = (gy.floor() as usize, gy.fract());
        let y1 = (y0 + 1).min(G - 1);
        for x in 0..side {
            let gx = x as f64 / side as f64 * (G - 1) as f64;
            let (x0, fx) = (gx.floor() as usize, gx.fract());
            let x1 = (x0 + 1).min(G - 1);
            let v = grid[y0 * G + x0] * (1.0 - fx) * (1.0 - fy)
                + grid[y0 * G + x1] * fx * (1.0 - fy)
                + grid[y1 * G + x0] * (1.0 - fx) * fy
                + grid[y1 * G + x1] * fx * fy;
            bg[y * side + x] += v as f32;
        }
    }
    bg
}

/// Bilinear sample of a `w × h` plane at continuous pixel coordinates (centres at `i + 0.5`),
/// zero outside.
fn sample(src: &[f32], w: usize, h: usize, x: f64, y: f64) -> f32 {
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (x0, y0) = (fx.floor(), fy.floor());
    let (ax, ay) = ((fx - x0) as f32, (fy - y0) as f32);
    let at = |xi: f64, yi: f64| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= w as f64 || yi >= h as f64 {
            0.0
        } else {
            src[yi as usize * w + xi as usize]
        }
    };
    at(x0, y0) * (1.0 - ax) * (1.0 - ay)
        + at(x0 + 1.0, y0) * ax * (1.0 - ay)
        + at(x0, y0 + 1.0) * (1.0 - ax) * ay
        + at(x0 + 1.0, y0 + 1.0) * ax * ay
}

fn render(
    source: &U8Images,
    config: &HvmConfig,
    objects: &[Vec<usize>],
    index: usize,
    plan: Plan,
) -> (Vec<u8>, StimulusMeta) {
    let mut rng = Rng::new(derive_seed(&[config.seed, index as u64, 0x4856_4d49_4d47]));
    let side = config.size_px;
    let (max_t, (s_lo, s_hi), max_r, (c_lo, c_hi)) = plan.level.ranges();
    let tx = uniform(&mut rng, -max_t, max_t);
    let ty = uniform(&mut rng, -max_t, max_t);
    let scale = uniform(&mut rng, s_lo.ln(), s_hi.ln()).exp();
    let rot = uniform(&mut rng, -max_r, max_r);
    let contrast = uniform(&mut rng, c_lo, c_hi);
    let bg = background(&mut rng, side);

    let src_index = objects[plan.category_index][plan.object_index];
    let d = source.dims();
    let src: Vec<f32> = source
        .image(src_index)
        .map(|p| p.iter().map(|&v| v as f32 / 255.0).collect())
        .unwrap_or_else(|| vec![0.0; d.width * d.height]);
    let src_side = d.width.max(d.height) as f64;
    // Output pixels per source pixel.
    let k = BASE_SIZE * scale * side as f64 / src_side;
    let (cx, cy) = (side as f64 * (0.5 + tx), side as f64 * (0.5 + ty));
    let (sin, cos) = rot.to_radians().sin_cos();
    let (scx, scy) = (d.width as f64 / 2.0, d.height as f64 / 2.0);
    let mean = BACKGROUND_MEAN;
    let c = contrast as f32;
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            // 2×2 supersampling keeps shrunken objects from aliasing.
            let mut v = 0f32;
            for (ox, oy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (dx, dy) = (x as f64 + ox - cx, y as f64 + oy - cy);
                // Inverse rotation (counter-clockwise on screen, y down) then inverse scaling.
                let (rx, ry) = (cos * dx - sin * dy, sin * dx + cos * dy);
                v += sample(&src, d.width, d.height, scx + rx / k, scy + ry / k);
            }
            let v = v / 4.0;
            let a = (v * ALPHA_GAIN).min(1.0);
            let ink = mean + c * (v - mean);
            let p = bg[y * side + x] * (1.0 - a) + ink * a;
            pixels.push((p.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    let slug = FMNIST_SLUGS[config.categories[plan.category_index]];
    let object_name = format!("{slug}_{:02}", plan.object_index);
    let meta = StimulusMeta {
        stimulus_id: format!("{object_name}_v{}_{:03}", plan.level.number(), plan.repeat),
        object_name,
        category: slug.to_string(),
        category_index: plan.category_index,
        object_index: plan.object_index,
        variation: plan.level,
        tx: tx as f32,
        ty: ty as f32,
        scale: scale as f32,
        rotation_deg: rot as f32,
        contrast: contrast as f32,
        source_index: src_index,
    };
    (pixels, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forty 28×28 "objects", four per class: a bright bar whose length depends on the class.
    fn toy_source() -> U8Images {
        let n = 40;
        let mut pixels = vec![0u8; n * 784];
        let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
        for (i, img) in pixels.chunks_exact_mut(784).enumerate() {
            let half = 3 + labels[i];
            for y in 14 - half..14 + half {
                for x in 10..18 {
                    img[y * 28 + x] = 150 + (i * 2) as u8;
                }
            }
        }
        let names = (0..10).map(|c| format!("class{c}")).collect();
        U8Images::new(ImageDims::new(1, 28, 28), pixels, labels, names).unwrap()
    }

    fn small() -> HvmConfig {
        HvmConfig {
            categories: vec![0, 3, 8],
            objects_per_category: 2,
            images_per_object_per_level: [1, 3, 3],
            size_px: 32,
            seed: 5,
        }
    }

    #[test]
    fn layout_ids_and_determinism() {
        let src = toy_source();
        let cfg = small();
        let a = StimulusSet::generate(&src, &cfg).unwrap();
        assert_eq!(a.len(), 3 * 2 * 7);
        assert_eq!(a.images.dims(), ImageDims::new(1, 32, 32));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| StimulusSet::generate(&src, &cfg)).unwrap();
        assert_eq!(a.images, b.images);
        assert_eq!(a.meta, b.meta);
        let c = StimulusSet::generate(
            &src,
            &HvmConfig {
                seed: 6,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(a.images.pixels(), c.images.pixels());

        let mut ids: Vec<&str> = a.meta.iter().map(|m| m.stimulus_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), a.len(), "stimulus ids are unique");
        for (i, m) in a.meta.iter().enumerate() {
            assert_eq!(a.images.labels()[i], m.category_index);
            assert_eq!(
                src.labels()[m.source_index],
                cfg.categories[m.category_index]
            );
            assert!(m.object_name.starts_with(&m.category));
        }
        // Each object keeps one source image across its levels; objects differ.
        let objs: std::collections::HashMap<&str, usize> = a
            .meta
            .iter()
            .map(|m| (m.object_name.as_str(), m.source_index))
            .collect();
        assert_eq!(objs.len(), 6);
        for m in &a.meta {
            assert_eq!(objs[m.object_name.as_str()], m.source_index);
        }
    }

    #[test]
    fn variation_grows_with_level() {
        let src = toy_source();
        let cfg = HvmConfig {
            images_per_object_per_level: [2, 10, 10],
            ..small()
        };
        let set = StimulusSet::generate(&src, &cfg).unwrap();
        let spread = |lvl: VariationLevel| {
            let ms: Vec<&StimulusMeta> = set.meta.iter().filter(|m| m.variation == lvl).collect();
            let n = ms.len() as f32;
            (
                ms.iter().map(|m| m.tx.abs() + m.ty.abs()).sum::<f32>() / n,
                ms.iter().map(|m| m.rotation_deg.abs()).sum::<f32>() / n,
                ms.iter().map(|m| m.scale.ln().abs()).sum::<f32>() / n,
                ms.iter().map(|m| 1.0 - m.contrast).sum::<f32>() / n,
            )
        };
        let (v0, v3, v6) = (
            spread(VariationLevel::V0),
            spread(VariationLevel::V3),
            spread(VariationLevel::V6),
        );
        assert_eq!(v0, (0.0, 0.0, 0.0, 0.0));
        assert!(
            v3.0 < v6.0 && v3.1 < v6.1 && v3.2 < v6.2 && v3.3 < v6.3,
            "{v3:?} {v6:?}"
        );
        assert!(v3.0 > 0.0 && v3.1 > 0.0);
        // V0 objects sit in the centre: the centre is brighter than the background mean there,
        // so the object is really drawn.
        let i = set
            .meta
            .iter()
            .position(|m| m.variation == VariationLevel::V0)
            .unwrap();
        let img = set.images.image(i).unwrap();
        assert!(img[16 * 32 + 14] as f32 / 255.0 > BACKGROUND_MEAN + 0.2);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let src = toy_source();
        for bad in [
            HvmConfig {
                categories: vec![],
                ..small()
            },
            HvmConfig {
                categories: vec![1, 1],
                ..small()
            },
            HvmConfig {
                categories: vec![10],
                ..small()
            },
            HvmConfig {
                objects_per_category: 0,
                ..small()
            },
            HvmConfig {
                images_per_object_per_level: [0, 0, 0],
                ..small()
            },
            HvmConfig {
                size_px: 4,
                ..small()
            },
            // Only four source images per class.
            HvmConfig {
                objects_per_category: 5,
                ..small()
            },
        ] {
            assert!(StimulusSet::generate(&src, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let src = toy_source();
        let cfg = small();
        let (a, s1) = StimulusSet::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
        assert!(matches!(s1, CacheStatus::Generated(_)), "{s1:?}");
        let (b, s2) = StimulusSet::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
        assert!(matches!(s2, CacheStatus::Hit(_)), "{s2:?}");
        assert_eq!(a.images, b.images);
        assert_eq!(a.meta, b.meta);
        let path = cache_path(dir.path(), &cfg, &src);
        assert_ne!(
            cache_path(
                dir.path(),
                &HvmConfig {
                    seed: 9,
                    ..cfg.clone()
                },
                &src
            ),
            path
        );
        let bytes = std::fs::read(&path).unwrap();
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        for (content, why) in [
            (bytes[..bytes.len() - 3].to_vec(), "truncated"),
            (flipped, "checksum"),
            (bytes[..10].to_vec(), "ends inside"),
        ] {
            std::fs::write(&path, &content).unwrap();
            let (set, status) =
                StimulusSet::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
            match status {
                CacheStatus::Regenerated { reason, .. } => {
                    assert!(reason.contains(why), "{reason:?} should say {why:?}")
                }
                other => panic!("expected a regeneration, got {other:?}"),
            }
            assert_eq!(set.meta, a.meta);
        }
    }

    #[test]
    fn brainscore_export_writes_pngs_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let set = StimulusSet::generate(&toy_source(), &small()).unwrap();
        let csv = set.write_brainscore(dir.path()).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("stimulus_id,filename,object_name,category,variation"));
        assert_eq!(lines.len(), set.len() + 1);
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first[0], set.meta[0].stimulus_id);
        let png = image::open(dir.path().join(first[1])).unwrap().to_luma8();
        assert_eq!(png.dimensions(), (32, 32));
        assert_eq!(png.as_raw().as_slice(), set.images.image(0).unwrap());
    }
}
