//! The image transforms of ImageNet training and evaluation, torchvision's conventions and
//! defaults for PIL images, from 8-bit RGB straight to normalised CHW f32:
//! - [`TrainTransform`]: `RandomResizedCrop` (area fraction and log-uniform aspect ratio drawn
//!   from ranges, ten tries, then a centre crop at the nearest allowed ratio), a horizontal flip
//!   with probability ½, normalisation;
//! - [`EvalTransform`]: resize so the shorter side is `resize` (the longer side truncated, as
//!   torchvision does), centre-crop `crop × crop`, normalise (ImageNet's 256 → 224).
//!
//! Resizing is bilinear with antialiasing, as PIL's `BILINEAR` resize (torchvision's default):
//! a triangle filter widened by the scale factor when shrinking, separable, horizontal pass
//! first. Like PIL, a random crop reads only the pixels inside the crop, while the evaluation
//! resize reads the whole image, so its centre crop's edge pixels see their neighbours. Unlike
//! PIL, intermediate values stay in f32 instead of being rounded to 8 bits between the passes.
//!
//! One pass does crop, resize, flip and normalisation; and since the transform decides which
//! source pixels it reads before anything is decoded ([`Transform::plan`]), the JPEG decoder
//! only decodes that window ([`crate::decode::decode_window`]).

use crate::decode::{decode_window, DecoderKind, Rgb8, Window};
use crate::images::Normalize;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tensor::Rng;

/// Random resized crop + horizontal flip + normalisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTransform {
    /// Output side in pixels.
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f32, f32),
    /// Flip horizontally with probability ½.
    pub hflip: bool,
    /// How the cropped pixels are scaled (ImageNet's mean and std by default).
    pub normalize: Normalize,
}

impl TrainTransform {
    /// torchvision's ImageNet training defaults at `size` (224 for the zoo).
    pub fn imagenet(size: usize) -> Self {
        TrainTransform {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: true,
            normalize: Normalize::imagenet(),
        }
    }
}

/// Resize the shorter side, centre crop, normalise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalTransform {
    /// Shorter side after resizing.
    pub resize: usize,
    /// Output side (at most `resize`).
    pub crop: usize,
    /// How the cropped pixels are scaled.
    pub normalize: Normalize,
}

impl EvalTransform {
    /// ImageNet's evaluation standard scaled to `crop`: resize to `crop · 256/224`, centre crop.
    pub fn imagenet(crop: usize) -> Self {
        EvalTransform {
            resize: (crop as f64 * 256.0 / 224.0).round() as usize,
            crop,
            normalize: Normalize::imagenet(),
        }
    }
}

/// What is done to every image between decoding and the batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Random resized crop and flip, for training.
    Train(TrainTransform),
    /// Deterministic resize and centre crop, for evaluation.
    Eval(EvalTransform),
}

/// What a transform does to one image of a given size: the pixels it may read (`view`), the
/// rectangle of them that becomes the output (`region`, in image coordinates) and the flip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// The pixels the transform reads (what the decoder must produce).
    pub view: Window,
    /// The rectangle, in image coordinates, resampled to the output square.
    pub region: Region,
    /// Whether the output is mirrored left to right.
    pub flip: bool,
}

/// A rectangle of the source image in pixels (fractional edges allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    /// Left edge, in pixels.
    pub x: f64,
    /// Top edge, in pixels.
    pub y: f64,
    /// Width, in pixels.
    pub w: f64,
    /// Height, in pixels.
    pub h: f64,
}

impl Transform {
    /// Side of the square images the transform produces.
    pub fn output_side(&self) -> usize {
        match self {
            Transform::Train(t) => t.size,
            Transform::Eval(t) => t.crop,
        }
    }

    fn normalize(&self) -> &Normalize {
        match self {
            Transform::Train(t) => &t.normalize,
            Transform::Eval(t) => &t.normalize,
        }
    }

    /// Checks the settings: a non-empty output, crop scale in (0, 1] and ratio in (0, ∞) ordered
    /// min ≤ max, a crop no larger than the resize, three-channel normalisation.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("image transform", msg));
        match self {
            Transform::Train(t) => {
                if t.size == 0 {
                    return bad("size must be at least 1".into());
                }
                let (s0, s1) = t.scale;
                if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
                    return bad(format!(
                        "scale ({s0}, {s1}) must satisfy 0 < min <= max <= 1"
                    ));
                }
                let (r0, r1) = t.ratio;
                if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
                    return bad(format!(
                        "ratio ({r0}, {r1}) must satisfy 0 < min <= max < inf"
                    ));
                }
                t.normalize.validate(3)
            }
            Transform::Eval(t) => {
                if t.crop == 0 || t.crop > t.resize {
                    return bad(format!(
                        "crop {} must be between 1 and resize {}",
                        t.crop, t.resize
                    ));
                }
                t.normalize.validate(3)
            }
        }
    }

    /// Draws what the transform does to a `w × h` image (the random crop and flip of training;
    /// nothing random for evaluation).
    pub fn plan(&self, w: usize, h: usize, rng: &mut Rng) -> Plan {
        match self {
            Transform::Train(t) => {
                let view = random_resized_crop(w, h, t, rng);
                let flip = t.hflip && rng.uniform() < 0.5;
                Plan {
                    view,
                    region: Region {
                        x: view.x as f64,
                        y: view.y as f64,
                        w: view.w as f64,
                        h: view.h as f64,
                    },
                    flip,
                }
            }
            Transform::Eval(t) => Plan {
                view: Window::full(w, h),
                region: eval_region(w, h, t),
                flip: false,
            },
        }
    }

    /// Decodes `bytes` (JPEG or PNG; only the window the transform reads, where the decoder can)
    /// and writes the transformed CHW image into `out` (`3 × side × side` values).
    pub fn apply_bytes(
        &self,
        bytes: &[u8],
        name: &Path,
        decoder: DecoderKind,
        rng: &mut Rng,
        out: &mut [f32],
    ) -> Result<()> {
        let side = self.output_side();
        let mut resampler = None;
        let (img, at) = decode_window(bytes, name, decoder, &mut |w, h| {
            let plan = self.plan(w, h, rng);
            let r = Resampler::new(&plan, side, side);
            let window = r.source_window();
            resampler = Some(r);
            window
        })?;
        let r = resampler.ok_or_else(|| Error::Image {
            path: name.to_path_buf(),
            reason: "the decoder never reported the image size".into(),
        })?;
        r.run(&img, at, self.normalize(), out)
    }

    /// Transforms an already decoded image into `out` (`3 × side × side` values).
    pub fn apply(&self, img: &Rgb8, rng: &mut Rng, out: &mut [f32]) -> Result<()> {
        let side = self.output_side();
        let plan = self.plan(img.width(), img.height(), rng);
        Resampler::new(&plan, side, side).run(
            img,
            Window::full(img.width(), img.height()),
            self.normalize(),
            out,
        )
    }
}

/// torchvision's `RandomResizedCrop.get_params`: the crop in source pixels.
fn random_resized_crop(w: usize, h: usize, t: &TrainTransform, rng: &mut Rng) -> Window {
    let area = (w * h) as f64;
    let (lr0, lr1) = ((t.ratio.0 as f64).ln(), (t.ratio.1 as f64).ln());
    for _ in 0..10 {
        let target = area * (t.scale.0 as f64 + (t.scale.1 - t.scale.0) as f64 * rng.uniform());
        let aspect = (lr0 + (lr1 - lr0) * rng.uniform()).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let y = rng.below(h - ch + 1);
            let x = rng.below(w - cw + 1);
            return Window { x, y, w: cw, h: ch };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < t.ratio.0 as f64 {
        (
            w,
            ((w as f64 / t.ratio.0 as f64).round() as usize).clamp(1, h),
        )
    } else if in_ratio > t.ratio.1 as f64 {
        (
            ((h as f64 * t.ratio.1 as f64).round() as usize).clamp(1, w),
            h,
        )
    } else {
        (w, h)
    };
    Window {
        x: (w - cw) / 2,
        y: (h - ch) / 2,
        w: cw,
        h: ch,
    }
}

/// The source region that resizing the shorter side to `resize` and centre-cropping `crop` keeps.
fn eval_region(w: usize, h: usize, t: &EvalTransform) -> Region {
    // torchvision truncates the longer side.
    let (ow, oh) = if w <= h {
        (t.resize, (t.resize as f64 * h as f64 / w as f64) as usize)
    } else {
        ((t.resize as f64 * w as f64 / h as f64) as usize, t.resize)
    };
    // Python's round(), which torchvision's CenterCrop calls, rounds halves to even.
    let left = ((ow - t.crop) as f64 / 2.0).round_ties_even();
    let top = ((oh - t.crop) as f64 / 2.0).round_ties_even();
    let (sx, sy) = (w as f64 / ow as f64, h as f64 / oh as f64);
    Region {
        x: left * sx,
        y: top * sy,
        w: t.crop as f64 * sx,
        h: t.crop as f64 * sy,
    }
}

/// The filter weights along one axis: output `i` reads source pixels `first[i] ..
/// first[i] + taps` with `weights[i * taps ..]` (zero-padded to the same count for every output,
/// so the inner loops have a fixed length).
#[derive(Clone, Debug)]
struct Axis {
    first: Vec<usize>,
    taps: usize,
    weights: Vec<f32>,
}

impl Axis {
    /// PIL's antialiased bilinear weights for resampling `start .. start + len` into `out_len`
    /// pixels, reading only source pixels in `lo .. hi`.
    fn new(lo: usize, hi: usize, start: f64, len: f64, out_len: usize) -> Axis {
        let scale = len / out_len as f64;
        let support = scale.max(1.0);
        let mut spans = Vec::with_capacity(out_len);
        for i in 0..out_len {
            let centre = start + (i as f64 + 0.5) * scale;
            let j0 = ((centre - support + 0.5).floor().max(lo as f64) as usize).min(hi - 1);
            let j1 = ((centre + support + 0.5).floor().max(0.0) as usize).clamp(j0 + 1, hi);
            let mut ws: Vec<f64> = (j0..j1)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let total: f64 = ws.iter().sum();
            if total > 0.0 {
                ws.iter_mut().for_each(|w| *w /= total);
                spans.push((j0, ws));
            } else {
                // The centre lies outside the readable pixels: take the nearest one.
                let nearest = (centre.floor().max(lo as f64) as usize).min(hi - 1);
                spans.push((nearest, vec![1.0]));
            }
        }
        let taps = spans.iter().map(|(_, w)| w.len()).max().unwrap_or(1);
        let mut first = Vec::with_capacity(out_len);
        let mut weights = vec![0f32; out_len * taps];
        for (i, (j0, ws)) in spans.into_iter().enumerate() {
            // Pad after the real taps, or before them where that would read past `hi`.
            let start = j0.min(hi.saturating_sub(taps).max(lo));
            let shift = j0 - start;
            for (k, w) in ws.into_iter().enumerate() {
                weights[i * taps + shift + k] = w as f32;
            }
            first.push(start);
        }
        Axis {
            first,
            taps,
            weights,
        }
    }

    /// The source pixels read: `lo .. hi`.
    fn span(&self) -> (usize, usize) {
        let lo = self.first.iter().copied().min().unwrap_or(0);
        let hi = self.first.iter().copied().max().unwrap_or(0) + self.taps;
        (lo, hi)
    }
}

/// Crop + antialiased resize + flip + normalisation of 8-bit RGB into CHW f32.
#[derive(Clone, Debug)]
struct Resampler {
    x: Axis,
    y: Axis,
    out_w: usize,
    out_h: usize,
    flip: bool,
}

impl Resampler {
    fn new(plan: &Plan, out_w: usize, out_h: usize) -> Self {
        let v = plan.view;
        let r = plan.region;
        Resampler {
            x: Axis::new(v.x, v.x + v.w, r.x, r.w, out_w),
            y: Axis::new(v.y, v.y + v.h, r.y, r.h, out_h),
            out_w,
            out_h,
            flip: plan.flip,
        }
    }

    /// The source pixels the resampler reads.
    fn source_window(&self) -> Window {
        let (x0, x1) = self.x.span();
        let (y0, y1) = self.y.span();
        Window {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }

    /// Runs both passes over `img` (the source pixels of window `at`, which must cover
    /// [`Self::source_window`]) and hands each output row, channels interleaved (`[r, g, b]` per
    /// pixel), to `emit`.
    ///
    /// The vertical pass comes first, on 8-bit rows (contiguous, so it vectorises), and leaves
    /// only `out_h` rows for the horizontal pass, which gathers a few taps per output pixel and
    /// handles a pixel's three channels as one four-lane vector (hence a padding value per row).
    /// PIL runs the horizontal pass first; the result is the same up to f32 rounding.
    fn passes(&self, img: &Rgb8, at: Window, mut emit: impl FnMut(usize, &[f32])) -> Result<()> {
        let need = self.source_window();
        if need.x < at.x
            || need.y < at.y
            || need.x + need.w > at.x + img.width()
            || need.y + need.h > at.y + img.height()
        {
            return Err(Error::invalid(
                "resample",
                format!("decoded window {at:?} does not cover the pixels needed, {need:?}"),
            ));
        }
        let mid_w = need.w * 3 + 1;
        let cols = (need.x - at.x) * 3..(need.x - at.x + need.w) * 3;
        let mut mid = vec![0f32; mid_w];
        let mut row = vec![0f32; self.out_w * 3];
        let (tx, ty) = (self.x.taps, self.y.taps);
        for (oy, (first, ws)) in self
            .y
            .first
            .iter()
            .zip(self.y.weights.chunks_exact(ty))
            .enumerate()
        {
            let acc = &mut mid[..need.w * 3];
            acc.fill(0.0);
            for (k, w) in ws.iter().enumerate() {
                let src = &img.row(first + k - at.y)[cols.clone()];
                for (a, p) in acc.iter_mut().zip(src) {
                    *a += w * *p as f32;
                }
            }
            for (o, (first, ws)) in row
                .chunks_exact_mut(3)
                .zip(self.x.first.iter().zip(self.x.weights.chunks_exact(tx)))
            {
                let base = (first - need.x) * 3;
                let mut a = [0f32; 4];
                for (k, w) in ws.iter().enumerate() {
                    let p = &mid[base + 3 * k..base + 3 * k + 4];
                    for i in 0..4 {
                        a[i] += w * p[i];
                    }
                }
                o.copy_from_slice(&a[..3]);
            }
            emit(oy, &row);
        }
        Ok(())
    }

    /// Resamples into CHW planes, flipping and normalising on the way.
    fn run(&self, img: &Rgb8, at: Window, normalize: &Normalize, out: &mut [f32]) -> Result<()> {
        let plane = self.out_w * self.out_h;
        if out.len() != 3 * plane {
            return Err(Error::invalid(
                "resample",
                format!("output holds {} values, expected {}", out.len(), 3 * plane),
            ));
        }
        let affine = [
            normalize.affine(0),
            normalize.affine(1),
            normalize.affine(2),
        ];
        let (planes_r, rest) = out.split_at_mut(plane);
        let (planes_g, planes_b) = rest.split_at_mut(plane);
        let w = self.out_w;
        let flip = self.flip;
        self.passes(img, at, |oy, acc| {
            let row = oy * w;
            let dst = [
                &mut planes_r[row..row + w],
                &mut planes_g[row..row + w],
                &mut planes_b[row..row + w],
            ];
            for (c, d) in dst.into_iter().enumerate() {
                let (scale, shift) = affine[c];
                let src = acc.iter().skip(c).step_by(3);
                if flip {
                    for (v, s) in d.iter_mut().rev().zip(src) {
                        *v = s * scale + shift;
                    }
                } else {
                    for (v, s) in d.iter_mut().zip(src) {
                        *v = s * scale + shift;
                    }
                }
            }
        })
    }
}

/// `img` with its shorter side resized to `short` (antialiased bilinear, the longer side
/// truncated, as torchvision's `Resize(short)`), rounded back to 8 bits.
pub fn resize_short_side(img: &Rgb8, short: usize) -> Result<Rgb8> {
    let (w, h) = (img.width(), img.height());
    let short = short.max(1);
    let (ow, oh) = if w <= h {
        (
            short,
            ((short as f64 * h as f64 / w as f64) as usize).max(1),
        )
    } else {
        (
            ((short as f64 * w as f64 / h as f64) as usize).max(1),
            short,
        )
    };
    let plan = Plan {
        view: Window::full(w, h),
        region: Region {
            x: 0.0,
            y: 0.0,
            w: w as f64,
            h: h as f64,
        },
        flip: false,
    };
    let mut data = vec![0u8; ow * oh * 3];
    Resampler::new(&plan, ow, oh).passes(img, Window::full(w, h), |oy, acc| {
        for (d, v) in data[oy * ow * 3..(oy + 1) * ow * 3].iter_mut().zip(acc) {
            *d = v.round().clamp(0.0, 255.0) as u8;
        }
    })?;
    Rgb8::new(ow, oh, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_resized_crop_stays_inside_and_respects_ranges() {
        let t = TrainTransform::imagenet(8);
        let mut rng = Rng::new(1);
        for (w, h) in [(100, 60), (7, 300), (1, 1), (640, 480)] {
            for _ in 0..200 {
                let c = random_resized_crop(w, h, &t, &mut rng);
                assert!(
                    c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h,
                    "{w}x{h}: {c:?}"
                );
            }
        }
        // On a large image the ten tries nearly always succeed, so ratios stay in range.
        for _ in 0..200 {
            let c = random_resized_crop(1000, 1000, &t, &mut rng);
            let r = c.w as f32 / c.h as f32;
            assert!(r > 0.7 && r < 1.4, "{r}");
        }
        // A 7×300 strip never fits a crop of ratio ≥ 3/4: centre crop at the smallest ratio.
        let c = random_resized_crop(7, 300, &t, &mut rng);
        assert_eq!((c.w, c.h), (7, 9));
    }

    #[test]
    fn eval_region_matches_resize_then_centre_crop() {
        let t = EvalTransform {
            resize: 256,
            crop: 224,
            normalize: Normalize::Unit,
        };
        // 500×375 → 341×256 (truncated), crop left = round(117/2) = 58 (Python rounds halves
        // to even), top = 16, scale 375/256.
        let r = eval_region(500, 375, &t);
        let s = 375.0 / 256.0;
        assert!((r.y - 16.0 * s).abs() < 1e-9);
        assert!((r.x - 58.0 * (500.0 / 341.0)).abs() < 1e-9, "{r:?}");
        assert!((r.h - 224.0 * s).abs() < 1e-9);
    }

    fn gradient(w: usize, h: usize) -> Rgb8 {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 3) as u8, (y * 2) as u8, ((x + y) % 256) as u8]);
            }
        }
        Rgb8::new(w, h, data).unwrap()
    }

    #[test]
    fn identity_resize_is_exact_and_flip_mirrors() {
        let img = gradient(9, 7);
        let t = Transform::Eval(EvalTransform {
            resize: 7,
            crop: 7,
            normalize: Normalize::Unit,
        });
        // 9×7 → 9×7 (shorter side 7 kept), centre crop 7×7 starting at x = 1.
        let mut out = vec![0f32; 3 * 49];
        t.apply(&img, &mut Rng::new(0), &mut out).unwrap();
        for y in 0..7 {
            for x in 0..7 {
                for c in 0..3 {
                    let want = img.row(y)[(x + 1) * 3 + c] as f32 / 255.0;
                    let got = out[c * 49 + y * 7 + x];
                    assert!((got - want).abs() < 1e-6, "({x},{y},{c}): {got} vs {want}");
                }
            }
        }
        let plan = Plan {
            view: Window::full(9, 7),
            region: Region {
                x: 0.0,
                y: 0.0,
                w: 9.0,
                h: 7.0,
            },
            flip: true,
        };
        let mut flipped = vec![0f32; 3 * 63];
        Resampler::new(&plan, 9, 7)
            .run(&img, Window::full(9, 7), &Normalize::Unit, &mut flipped)
            .unwrap();
        for y in 0..7 {
            for x in 0..9 {
                let want = img.row(y)[(8 - x) * 3] as f32 / 255.0;
                assert!((flipped[y * 9 + x] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn shrinking_by_two_weights_like_pil() {
        // PIL's bilinear reduce by 2: a triangle of radius 2 gives the inner pair 3/8 each and
        // the outer neighbours 1/8 each, renormalised at the edges.
        let a = Axis::new(0, 6, 0.0, 6.0, 3);
        assert_eq!(a.taps, 4);
        let row = |i: usize| &a.weights[i * 4..(i + 1) * 4];
        assert_eq!(a.first[1], 1);
        let w1 = row(1);
        for (got, want) in w1.iter().zip([0.125, 0.375, 0.375, 0.125]) {
            assert!((got - want).abs() < 1e-6, "{w1:?}");
        }
        // The first output's window is padded after its three real taps.
        assert_eq!(a.first[0], 0);
        assert!((row(0).iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // The last output's window would run past the edge, so it is padded before.
        assert_eq!(a.first[2], 2);
        assert_eq!(row(2)[0], 0.0);
    }

    #[test]
    fn a_crop_reads_only_its_own_pixels() {
        // A bright column just outside the crop must not bleed into the output.
        let (w, h) = (12, 8);
        let mut data = vec![10u8; w * h * 3];
        for y in 0..h {
            data[(y * w + 2) * 3..(y * w + 3) * 3].fill(250);
        }
        let img = Rgb8::new(w, h, data).unwrap();
        let plan = Plan {
            view: Window {
                x: 3,
                y: 0,
                w: 6,
                h: 8,
            },
            region: Region {
                x: 3.0,
                y: 0.0,
                w: 6.0,
                h: 8.0,
            },
            flip: false,
        };
        let r = Resampler::new(&plan, 4, 4);
        assert_eq!(r.source_window().x, 3);
        let mut out = vec![0f32; 48];
        r.run(&img, Window::full(w, h), &Normalize::Unit, &mut out)
            .unwrap();
        assert!(
            out.iter().all(|v| (v - 10.0 / 255.0).abs() < 1e-6),
            "{out:?}"
        );
    }

    #[test]
    fn resize_short_side_keeps_the_aspect_and_constant_colours() {
        let img = Rgb8::new(30, 20, [7u8, 100, 250].repeat(600)).unwrap();
        let small = resize_short_side(&img, 8).unwrap();
        // 30×20 → 12×8 (the longer side truncated from 12.0).
        assert_eq!((small.width(), small.height()), (12, 8));
        assert!(small.data().chunks_exact(3).all(|p| p == [7, 100, 250]));
        let tall = resize_short_side(&Rgb8::new(5, 9, vec![1; 135]).unwrap(), 3).unwrap();
        assert_eq!((tall.width(), tall.height()), (3, 5));
    }

    #[test]
    fn a_window_too_small_is_an_error_not_a_panic() {
        let img = gradient(4, 4);
        let t = Transform::Eval(EvalTransform {
            resize: 8,
            crop: 8,
            normalize: Normalize::Unit,
        });
        let plan = t.plan(16, 16, &mut Rng::new(0));
        let err = Resampler::new(&plan, 8, 8)
            .run(&img, Window::full(4, 4), &Normalize::Unit, &mut [0.0; 192])
            .unwrap_err();
        assert!(err.to_string().contains("does not cover"), "{err}");
    }
}
