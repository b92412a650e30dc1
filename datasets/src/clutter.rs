//! The clutter variant: one target object, small or large, somewhere on a larger canvas, partly
//! hidden behind fragments of other objects and set among more fragments — images where a single
//! feedforward glance is less reliable and recurrence has something to do.
//!
//! Image `i` of a set is a pure function of `(config, source, i)`: its generator is seeded with
//! `derive_seed([seed, i])`, so the set is identical whatever the thread count, and it is rendered
//! in parallel with rayon. A generated set is cached on disk under a key covering every generation
//! parameter, the source images' fingerprint and [`CLUTTER_FORMAT_VERSION`]; the file is written
//! atomically and carries its payload length and checksum, so a file cut short by a killed writer
//! or a bad disk is never read back as valid: it is regenerated.
//!
//! What `difficulty` (0..=1, written `d`) does:
//! - target side, as a fraction of the canvas side: uniform in `[0.5 − 0.2d, 0.6 + 0.15d]`
//!   (a 28-px object on the default 56-px canvas is at its native size at 0.5);
//! - occluders in front of the target: `1 + round(4d)`, each a rectangular fragment of another
//!   class's object covering `0.3..0.3 + 0.4d` of that object per side, centred inside the target's
//!   box, scaled like the target (±20 %);
//! - background fragments behind the target: `round(3d)`, anywhere on the canvas;
//! - at least `0.7 − 0.3d` of the target's ink stays visible: an occluder that would hide more is
//!   redrawn (up to four tries) or left out.
//!
//! Pixels composite with an alpha of `min(1, 4·v)`, so bright parts of a fragment hide what lies
//! behind them and dark parts let it through, as an object on a black background would.
//! The canvas is finally resampled (antialiased) to `output × output`.

use crate::batcher::{Dataset, ImageDims};
use crate::cache::{atomic_write, fnv1a64, fnv1a64_extend};
use crate::images::U8Images;
use crate::resample::{resample_plane, Region};
use crate::{derive_seed, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tensor::Rng;

/// Bumped whenever the generator or the file layout changes, so old caches are never reused.
pub const CLUTTER_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CVRNCLT\0";
const ALPHA_GAIN: f32 = 4.0;
const INFO_BYTES: usize = 5 * 4;

/// Every parameter of a generated clutter set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClutterConfig {
    /// Images to generate.
    pub count: usize,
    /// Side of the square canvas the scene is composed on, in pixels.
    pub canvas: usize,
    /// Side of the square images handed out (the canvas is resampled to it).
    pub output: usize,
    /// 0 (mild) to 1 (hard); see the module documentation.
    pub difficulty: f32,
    /// Seeds every placement and occluder, so a configuration always yields the same images.
    pub seed: u64,
}

impl ClutterConfig {
    /// `count` images at difficulty 0.5 on a 56-px canvas, handed out at 28×28 so the compact
    /// Fashion-MNIST models take them unchanged.
    pub fn new(count: usize, seed: u64) -> Self {
        ClutterConfig {
            count,
            canvas: 56,
            output: 28,
            difficulty: 0.5,
            seed,
        }
    }

    /// Checks every setting's range (count ≥ 1, canvas and output 8–4096 and 1–4096 px,
    /// difficulty in 0..=1, the whole set addressable) before anything is generated.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("clutter config", msg));
        if self.count == 0 {
            return bad("count must be at least 1".into());
        }
        if !(8..=4096).contains(&self.canvas) {
            return bad(format!("canvas {} must be in 8..=4096 pixels", self.canvas));
        }
        if !(1..=4096).contains(&self.output) {
            return bad(format!("output {} must be in 1..=4096 pixels", self.output));
        }
        if !(0.0..=1.0).contains(&self.difficulty) {
            return bad(format!("difficulty {} must be in [0, 1]", self.difficulty));
        }
        if self.count.checked_mul(self.output * self.output).is_none() {
            return bad(format!(
                "{} images of {}² pixels do not fit in memory",
                self.count, self.output
            ));
        }
        Ok(())
    }
}

/// Where each target ended up, in output pixels, and how much of it stayed visible.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClutterInfo {
    /// Index of the target image in the source set.
    pub source_index: u32,
    /// Fraction of the target's ink not covered by occluders (0..=1).
    pub visible: f32,
    /// Left edge of the target's box.
    pub x: f32,
    /// Top edge of the target's box.
    pub y: f32,
    /// Side of the target's (square) box.
    pub side: f32,
}

/// How a set was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Read from a valid cache file.
    Hit(PathBuf),
    /// Generated and written to the cache (there was no file).
    Generated(PathBuf),
    /// A cache file existed but failed validation (the reason says how); regenerated and replaced.
    Regenerated {
        /// The cache file replaced.
        path: PathBuf,
        /// Why it failed validation.
        reason: String,
    },
    /// Generated in memory; no cache directory was given.
    Uncached,
}

/// A generated clutter set: the images (a [`Dataset`]) and each target's placement.
#[derive(Clone, Debug)]
pub struct Clutter {
    /// The images as 8-bit pixels, with the target's class as label.
    pub images: U8Images,
    /// Where each image's target was placed, in image order.
    pub info: Vec<ClutterInfo>,
    /// The configuration the set was generated from.
    pub config: ClutterConfig,
}

impl Dataset for Clutter {
    fn len(&self) -> usize {
        self.images.len()
    }
    fn dims(&self) -> ImageDims {
        self.images.dims()
    }
    fn num_classes(&self) -> usize {
        self.images.num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.images.class_names()
    }
    fn get_into(&self, index: usize, rng: &mut Rng, out: &mut [f32]) -> Result<usize> {
        self.images.get_into(index, rng, out)
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.images.label(index)
    }
}

/// The identity of the source images, part of the cache key.
pub fn source_fingerprint(source: &U8Images) -> u64 {
    let d = source.dims();
    let mut h = fnv1a64(b"u8images");
    for v in [
        d.channels,
        d.height,
        d.width,
        source.len(),
        source.num_classes(),
    ] {
        h = fnv1a64_extend(h, &(v as u64).to_le_bytes());
    }
    for &l in source.labels() {
        h = fnv1a64_extend(h, &(l as u32).to_le_bytes());
    }
    fnv1a64_extend(h, source.pixels())
}

/// The canonical description that keys the cache and is stored in the file's header.
fn key_text(config: &ClutterConfig, fingerprint: u64) -> String {
    format!(
        "clutter format={CLUTTER_FORMAT_VERSION} count={} canvas={} output={} difficulty={:08x} seed={} source={fingerprint:016x}",
        config.count,
        config.canvas,
        config.output,
        config.difficulty.to_bits(),
        config.seed
    )
}

/// The cache file for `config` over `source` inside `dir`.
pub fn cache_path(dir: &Path, config: &ClutterConfig, source: &U8Images) -> PathBuf {
    let key = fnv1a64(key_text(config, source_fingerprint(source)).as_bytes());
    dir.join(format!("clutter-v{CLUTTER_FORMAT_VERSION}-{key:016x}.bin"))
}

impl Clutter {
    /// Generates the set in memory.
    pub fn generate(source: &U8Images, config: &ClutterConfig) -> Result<Self> {
        config.validate()?;
        let d = source.dims();
        if d.channels != 1 {
            return Err(Error::invalid(
                "clutter",
                format!(
                    "the source images must have one channel, not {}",
                    d.channels
                ),
            ));
        }
        if source.is_empty() {
            return Err(Error::invalid("clutter", "the source set is empty"));
        }
        let rendered: Vec<(Vec<u8>, usize, ClutterInfo)> = (0..config.count)
            .into_par_iter()
            .map(|i| render(source, config, i))
            .collect();
        let out = config.output;
        let mut pixels = Vec::with_capacity(config.count * out * out);
        let mut labels = Vec::with_capacity(config.count);
        let mut info = Vec::with_capacity(config.count);
        for (p, l, inf) in rendered {
            pixels.extend_from_slice(&p);
            labels.push(l);
            info.push(inf);
        }
        Ok(Clutter {
            images: U8Images::new(
                ImageDims::new(1, out, out),
                pixels,
                labels,
                source.class_names(),
            )?,
            info,
            config: config.clone(),
        })
    }

    /// Reads the set from `cache_dir` when a valid file for exactly this `(config, source)` is
    /// there, otherwise generates it and writes the file atomically. `None` skips the cache;
    /// [`crate::locate::clutter_cache_dir`] is the standard place.
    pub fn load_or_generate(
        source: &U8Images,
        config: &ClutterConfig,
        cache_dir: Option<&Path>,
    ) -> Result<(Self, CacheStatus)> {
        config.validate()?;
        let Some(dir) = cache_dir else {
            return Ok((Self::generate(source, config)?, CacheStatus::Uncached));
        };
        let fingerprint = source_fingerprint(source);
        let key = key_text(config, fingerprint);
        let path = cache_path(dir, config, source);
        let stale = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes, &key, config, source) {
                Ok(set) => return Ok((set, CacheStatus::Hit(path))),
                Err(reason) => Some(reason),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let set = Self::generate(source, config)?;
        atomic_write(&path, &encode(&set, &key))?;
        let status = match stale {
            None => CacheStatus::Generated(path),
            Some(reason) => CacheStatus::Regenerated { path, reason },
        };
        Ok((set, status))
    }

    /// The same set with its pixels normalised as `normalize` (they come out in [0, 1] by default).
    pub fn with_normalize(self, normalize: crate::Normalize) -> Result<Self> {
        Ok(Clutter {
            images: self.images.with_normalize(normalize)?,
            ..self
        })
    }

    /// A training set from Fashion-MNIST's training images and a test set from its test images
    /// (same canvas, output and difficulty; the test set's seed is derived from `train.seed`).
    pub fn fashion_mnist_pair(
        fm: &crate::idx::FashionMnist,
        train: &ClutterConfig,
        test_count: usize,
        cache_dir: Option<&Path>,
    ) -> Result<(Self, Self)> {
        let test = ClutterConfig {
            count: test_count,
            seed: derive_seed(&[train.seed, 0x7465_7374]),
            ..train.clone()
        };
        let (a, _) = Self::load_or_generate(&fm.train, train, cache_dir)?;
        let (b, _) = Self::load_or_generate(&fm.test, &test, cache_dir)?;
        Ok((a, b))
    }
}

/// File layout (little-endian): magic, format version (u32), key length (u32), key text, image
/// count (u64), output side (u32), payload length (u64), payload FNV-1a checksum (u64), payload.
/// Payload: pixels (count·output² bytes), labels (count × u32), info (count × 5 × f32/u32).
fn encode(set: &Clutter, key: &str) -> Vec<u8> {
    let mut payload =
        Vec::with_capacity(set.images.pixels().len() + set.info.len() * (4 + INFO_BYTES));
    payload.extend_from_slice(set.images.pixels());
    for &l in set.images.labels() {
        payload.extend_from_slice(&(l as u32).to_le_bytes());
    }
    for inf in &set.info {
        payload.extend_from_slice(&inf.source_index.to_le_bytes());
        for v in [inf.visible, inf.x, inf.y, inf.side] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(payload.len() + key.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CLUTTER_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(set.info.len() as u64).to_le_bytes());
    out.extend_from_slice(&(set.config.output as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Splits fixed-size fields off the front of a byte slice, failing (not panicking) when short.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("the file ends inside the {what}"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn decode(
    bytes: &[u8],
    key: &str,
    config: &ClutterConfig,
    source: &U8Images,
) -> std::result::Result<Clutter, String> {
    let mut c = Cursor(bytes);
    if c.take(8, "magic number")? != MAGIC {
        return Err("not a clutter cache file (wrong magic number)".into());
    }
    let version = c.u32("format version")?;
    if version != CLUTTER_FORMAT_VERSION {
        return Err(format!(
            "format version {version}, expected {CLUTTER_FORMAT_VERSION}"
        ));
    }
    let key_len = c.u32("key length")? as usize;
    if c.take(key_len, "key")? != key.as_bytes() {
        return Err("generated with other parameters (key mismatch)".into());
    }
    let count = c.u64("image count")? as usize;
    let out = c.u32("output size")? as usize;
    if count != config.count || out != config.output {
        return Err(format!(
            "header says {count} images of {out}², expected {} of {}²",
            config.count, config.output
        ));
    }
    let payload_len = c.u64("payload length")? as usize;
    let checksum = c.u64("checksum")?;
    let expected_len = count * out * out + count * (4 + INFO_BYTES);
    if payload_len != expected_len {
        return Err(format!(
            "header declares a {payload_len}-byte payload, expected {expected_len}"
        ));
    }
    if c.0.len() != payload_len {
        return Err(format!(
            "payload is {} bytes, header says {payload_len} (truncated or padded file)",
            c.0.len()
        ));
    }
    if fnv1a64(c.0) != checksum {
        return Err("payload checksum mismatch (corrupt file)".into());
    }
    let pixels = c.take(count * out * out, "pixels")?.to_vec();
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        labels.push(c.u32("labels")? as usize);
    }
    let mut info = Vec::with_capacity(count);
    for _ in 0..count {
        let source_index = c.u32("info")?;
        let mut f = [0f32; 4];
        for v in &mut f {
            *v = f32::from_bits(c.u32("info")?);
        }
        info.push(ClutterInfo {
            source_index,
            visible: f[0],
            x: f[1],
            y: f[2],
            side: f[3],
        });
    }
    let images = U8Images::new(
        ImageDims::new(1, out, out),
        pixels,
        labels,
        source.class_names(),
    )
    .map_err(|e| format!("invalid contents: {e}"))?;
    Ok(Clutter {
        images,
        info,
        config: config.clone(),
    })
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

fn alpha(v: f32) -> f32 {
    (v * ALPHA_GAIN).min(1.0)
}

/// A rendered piece of an object, ready to place.
struct Patch {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

fn source_plane(source: &U8Images, index: usize) -> Vec<f32> {
    source
        .image(index)
        .map(|p| p.iter().map(|&v| v as f32 / 255.0).collect())
        .unwrap_or_default()
}

fn render_region(source: &U8Images, index: usize, region: Region, w: usize, h: usize) -> Patch {
    let d = source.dims();
    let mut data = vec![0f32; w * h];
    resample_plane(
        &source_plane(source, index),
        d.width,
        d.height,
        region,
        &mut data,
        w,
        h,
    );
    Patch { w, h, data }
}

/// Calls `f(canvas_index, patch_value)` for every patch pixel that lands on the canvas.
fn for_each_on_canvas(patch: &Patch, x: i64, y: i64, side: usize, mut f: impl FnMut(usize, f32)) {
    for py in 0..patch.h {
        let cy = y + py as i64;
        if cy < 0 || cy >= side as i64 {
            continue;
        }
        for px in 0..patch.w {
            let cx = x + px as i64;
            if cx < 0 || cx >= side as i64 {
                continue;
            }
            f(
                cy as usize * side + cx as usize,
                patch.data[py * patch.w + px],
            );
        }
    }
}

fn composite(canvas: &mut [f32], side: usize, patch: &Patch, x: i64, y: i64) {
    for_each_on_canvas(patch, x, y, side, |i, v| {
        let a = alpha(v);
        canvas[i] = canvas[i] * (1.0 - a) + v * a;
    });
}

/// A random rectangular piece of a random object of another class than `avoid_label`, scaled by
/// `scale` output-per-source pixels.
fn fragment(
    source: &U8Images,
    rng: &mut Rng,
    avoid_label: usize,
    size_range: (f64, f64),
    scale: f64,
) -> Patch {
    let d = source.dims();
    let labels = source.labels();
    let mut j = rng.below(source.len());
    for _ in 0..8 {
        if labels[j] != avoid_label {
            break;
        }
        j = rng.below(source.len());
    }
    let cw = (uniform(rng, size_range.0, size_range.1) * d.width as f64).max(1.0);
    let ch = (uniform(rng, size_range.0, size_range.1) * d.height as f64).max(1.0);
    let region = Region {
        x: uniform(rng, 0.0, d.width as f64 - cw),
        y: uniform(rng, 0.0, d.height as f64 - ch),
        w: cw,
        h: ch,
    };
    let w = ((cw * scale).round() as usize).max(1);
    let h = ((ch * scale).round() as usize).max(1);
    render_region(source, j, region, w, h)
}

fn render(
    source: &U8Images,
    config: &ClutterConfig,
    index: usize,
) -> (Vec<u8>, usize, ClutterInfo) {
    let mut rng = Rng::new(derive_seed(&[config.seed, index as u64, 0x434c_5554]));
    let d = config.difficulty as f64;
    let side = config.canvas;
    let src = source.dims();
    let src_side = src.width.max(src.height) as f64;
    let mut canvas = vec![0f32; side * side];

    let target_index = rng.below(source.len());
    let label = source.labels()[target_index];
    let frac = uniform(&mut rng, 0.5 - 0.2 * d, 0.6 + 0.15 * d);
    let t_side = ((frac * side as f64).round() as usize).clamp(4, side);
    let scale = t_side as f64 / src_side;
    let tw = ((src.width as f64 * scale).round() as usize).max(1);
    let th = ((src.height as f64 * scale).round() as usize).max(1);
    let tx = rng.below(side - tw + 1) as i64;
    let ty = rng.below(side - th + 1) as i64;
    let target = render_region(
        source,
        target_index,
        Region::full(src.width, src.height),
        tw,
        th,
    );

    let frag_range = (0.3, 0.3 + 0.4 * d);
    let n_back = (3.0 * d).round() as usize;
    for _ in 0..n_back {
        let s = scale * uniform(&mut rng, 0.8, 1.2);
        let p = fragment(source, &mut rng, label, frag_range, s);
        let cx = rng.below(side) as i64;
        let cy = rng.below(side) as i64;
        composite(
            &mut canvas,
            side,
            &p,
            cx - p.w as i64 / 2,
            cy - p.h as i64 / 2,
        );
    }

    composite(&mut canvas, side, &target, tx, ty);
    // Target ink per canvas pixel and how much of it each pixel still shows.
    let mut ink = vec![0f32; side * side];
    for_each_on_canvas(&target, tx, ty, side, |i, v| ink[i] = v);
    let total: f64 = ink.iter().map(|&v| v as f64).sum();
    let mut cover = vec![1f32; side * side];
    let mut visible = 1.0f64;
    let min_visible = 0.7 - 0.3 * d;

    let n_front = 1 + (4.0 * d).round() as usize;
    for _ in 0..n_front {
        for _attempt in 0..4 {
            let s = scale * uniform(&mut rng, 0.8, 1.2);
            let p = fragment(source, &mut rng, label, frag_range, s);
            let cx = tx + rng.below(tw) as i64;
            let cy = ty + rng.below(th) as i64;
            let (x, y) = (cx - p.w as i64 / 2, cy - p.h as i64 / 2);
            let mut hidden = 0f64;
            for_each_on_canvas(&p, x, y, side, |i, v| {
                hidden += (ink[i] * cover[i] * alpha(v)) as f64;
            });
            let after = if total > 0.0 {
                visible - hidden / total
            } else {
                1.0
            };
            if after >= min_visible {
                visible = after;
                for_each_on_canvas(&p, x, y, side, |i, v| cover[i] *= 1.0 - alpha(v));
                composite(&mut canvas, side, &p, x, y);
                break;
            }
        }
    }

    let out = config.output;
    let mut small = vec![0f32; out * out];
    if out == side {
        small.copy_from_slice(&canvas);
    } else {
        resample_plane(
            &canvas,
            side,
            side,
            Region::full(side, side),
            &mut small,
            out,
            out,
        );
    }
    let pixels = small
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let k = out as f32 / side as f32;
    let info = ClutterInfo {
        source_index: target_index as u32,
        visible: visible.clamp(0.0, 1.0) as f32,
        x: tx as f32 * k,
        y: ty as f32 * k,
        side: tw.max(th) as f32 * k,
    };
    (pixels, label, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twenty 28×28 "objects": filled rectangles whose size depends on the class.
    pub(crate) fn toy_source() -> U8Images {
        let n = 20;
        let mut pixels = vec![0u8; n * 784];
        let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
        for (i, img) in pixels.chunks_exact_mut(784).enumerate() {
            let half = 4 + labels[i];
            for y in 14 - half..14 + half {
                for x in 14 - half / 2..14 + half / 2 {
                    img[y * 28 + x] = 100 + (i * 7) as u8;
                }
            }
        }
        let names = (0..10).map(|c| format!("class{c}")).collect();
        U8Images::new(ImageDims::new(1, 28, 28), pixels, labels, names).unwrap()
    }

    #[test]
    fn deterministic_for_a_seed_and_thread_count_independent() {
        let src = toy_source();
        let cfg = ClutterConfig::new(24, 7);
        let a = Clutter::generate(&src, &cfg).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| Clutter::generate(&src, &cfg)).unwrap();
        assert_eq!(a.images, b.images);
        assert_eq!(a.info, b.info);
        let c = Clutter::generate(
            &src,
            &ClutterConfig {
                seed: 8,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(a.images.pixels(), c.images.pixels());
        // A prefix of a larger set is the smaller set: images depend on their index only.
        let big = Clutter::generate(&src, &ClutterConfig { count: 30, ..cfg }).unwrap();
        assert_eq!(&big.images.pixels()[..24 * 784], a.images.pixels());
    }

    #[test]
    fn images_hold_the_labelled_target_and_respect_visibility() {
        let src = toy_source();
        for difficulty in [0.0, 0.5, 1.0] {
            let cfg = ClutterConfig {
                difficulty,
                ..ClutterConfig::new(40, 3)
            };
            let set = Clutter::generate(&src, &cfg).unwrap();
            assert_eq!(set.dims(), ImageDims::new(1, 28, 28));
            for (i, inf) in set.info.iter().enumerate() {
                assert_eq!(
                    set.images.labels()[i],
                    src.labels()[inf.source_index as usize]
                );
                assert!(inf.visible >= 0.7 - 0.3 * difficulty - 1e-4, "{inf:?}");
                assert!(inf.x >= 0.0 && inf.x + inf.side <= 28.0 + 1e-3, "{inf:?}");
            }
            let ink: u64 = set.images.pixels().iter().map(|&p| p as u64).sum();
            assert!(ink > 0);
        }
        // Harder sets hide more of their targets on average.
        let mean_visible = |d: f32| {
            let cfg = ClutterConfig {
                difficulty: d,
                ..ClutterConfig::new(60, 5)
            };
            let set = Clutter::generate(&src, &cfg).unwrap();
            set.info.iter().map(|i| i.visible).sum::<f32>() / 60.0
        };
        assert!(mean_visible(1.0) < mean_visible(0.0));
    }

    #[test]
    fn output_and_canvas_sizes_are_configurable() {
        let src = toy_source();
        let cfg = ClutterConfig {
            canvas: 40,
            output: 40,
            ..ClutterConfig::new(3, 1)
        };
        let set = Clutter::generate(&src, &cfg).unwrap();
        assert_eq!(set.dims(), ImageDims::new(1, 40, 40));
        for bad in [
            ClutterConfig {
                difficulty: 1.5,
                ..cfg.clone()
            },
            ClutterConfig {
                difficulty: f32::NAN,
                ..cfg.clone()
            },
            ClutterConfig {
                canvas: 2,
                ..cfg.clone()
            },
            ClutterConfig {
                count: 0,
                ..cfg.clone()
            },
        ] {
            assert!(Clutter::generate(&src, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_hit_miss_and_parameter_sensitivity() {
        let dir = tempfile::tempdir().unwrap();
        let src = toy_source();
        let cfg = ClutterConfig::new(10, 11);
        let (a, s1) = Clutter::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
        assert!(matches!(s1, CacheStatus::Generated(_)), "{s1:?}");
        let (b, s2) = Clutter::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
        assert!(matches!(s2, CacheStatus::Hit(_)), "{s2:?}");
        assert_eq!(a.images, b.images);
        assert_eq!(a.info, b.info);
        // Every parameter and the source are in the key.
        let other = [
            ClutterConfig {
                difficulty: 0.25,
                ..cfg.clone()
            },
            ClutterConfig {
                seed: 12,
                ..cfg.clone()
            },
            ClutterConfig {
                count: 11,
                ..cfg.clone()
            },
            ClutterConfig {
                canvas: 64,
                ..cfg.clone()
            },
            ClutterConfig {
                output: 32,
                ..cfg.clone()
            },
        ];
        let base = cache_path(dir.path(), &cfg, &src);
        for o in &other {
            assert_ne!(cache_path(dir.path(), o, &src), base, "{o:?}");
        }
        let src2 = src.truncated(19);
        assert_ne!(cache_path(dir.path(), &cfg, &src2), base);
    }

    #[test]
    fn killed_writer_leaves_nothing_read_as_valid() {
        let dir = tempfile::tempdir().unwrap();
        let src = toy_source();
        let cfg = ClutterConfig::new(12, 4);
        let (good, _) = Clutter::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
        let path = cache_path(dir.path(), &cfg, &src);
        let bytes = std::fs::read(&path).unwrap();
        // A writer killed at any point of a non-atomic write leaves a prefix of the file; a
        // flipped byte stands for a bad disk. Each must be rejected and replaced.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut padded = bytes.clone();
        padded.push(0);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (bytes[..bytes.len() - 1].to_vec(), "truncated"),
            (bytes[..bytes.len() / 2].to_vec(), "truncated"),
            (bytes[..20].to_vec(), "ends inside"),
            (Vec::new(), "ends inside"),
            (padded, "padded"),
            (flipped, "checksum"),
        ];
        for (content, why) in cases {
            std::fs::write(&path, &content).unwrap();
            let (set, status) = Clutter::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
            match status {
                CacheStatus::Regenerated { reason, .. } => {
                    assert!(reason.contains(why), "{reason:?} should say {why:?}")
                }
                other => panic!("expected a regeneration, got {other:?}"),
            }
            assert_eq!(set.images, good.images);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "the cache is repaired"
            );
        }
        // A temporary file left by a writer killed before its rename is ignored.
        std::fs::write(dir.path().join(".stale.tmp-1-0"), &bytes[..100]).unwrap();
        let (_, status) = Clutter::load_or_generate(&src, &cfg, Some(dir.path())).unwrap();
        assert!(matches!(status, CacheStatus::Hit(_)), "{status:?}");
    }
}
