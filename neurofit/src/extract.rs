//! Model features over time: every requested area at every unroll step, for a set of stimuli,
//! batched, without gradients ([`extract_features`]).
//!
//! Per area and step the `[C, H, W]` output of a stimulus becomes one feature vector:
//! - [`Reduction::Flatten`]: all `C·H·W` values (Brain-Score's convention, usually with PCA);
//! - [`Reduction::GlobalAverage`]: the `C` channel means;
//! - [`Reduction::Auto`] (default): flatten when compressing with PCA or when `C·H·W` is at most
//!   [`ExtractOptions::max_flat_features`], otherwise the global average, so a 224-px model
//!   without PCA still fits in memory.
//!
//! With `pca_components = Some(k)`, each area gets one basis shared by all steps (so features at
//! different steps live in the same space): a randomised SVD ([`pca::Pca`]) fitted on up to
//! `pca_fit_rows` (stimulus, step) rows drawn from up to `pca_fit_stimuli` stimuli, then applied to
//! every stimulus at every step. That costs one extra forward pass over the fit stimuli.
//!
//! Stimuli are shown on the `neural` presentation by default (image for 100 ms, 26 steps; SPEC §3).
//! Images must already be normalised as the model expects and match its input size (an error
//! otherwise; generate the stimuli at the model's size). One-channel images given to a
//! three-channel model are repeated over the channels.

pub mod pca;

use crate::features::{AreaFeatures, ModelFeatures};
use ndarray::{s, Array2, Array3, ArrayView4};
use pca::Pca;
use serde::{Deserialize, Serialize};
use tensor::{no_grad, Rng, Tensor};
use topology::{Frames, Model, Needed, Presentation, TimingMode, UnrollOptions, DEFAULT_BLANK};

/// Why features could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An option or input is out of range (the message says which).
    #[error("feature extraction: {0}")]
    Invalid(String),
    /// An area asked for is not in the model.
    #[error(
        "feature extraction: area `{area}` is not in model `{model}`; its areas are {known:?}"
    )]
    UnknownArea {
        /// The area asked for.
        area: String,
        /// The model's name.
        model: String,
        /// The model's areas.
        known: Vec<String>,
    },
    /// The images are not the size the model takes.
    #[error("feature extraction: images are {got:?} ([N, C, H, W]) but model `{model}` takes {expected:?} ([C, H, W]); render or resize the stimuli at the model's input size")]
    ImageShape {
        /// The model's name.
        model: String,
        /// The images' shape, `[N, C, H, W]`.
        got: [usize; 4],
        /// The model's input, `[C, H, W]`.
        expected: [usize; 3],
    },
    /// The unroll failed.
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
}

/// How an area's `[C, H, W]` map becomes a feature vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Flatten areas of up to [`ExtractOptions::max_flat_features`] values, average larger ones.
    #[default]
    Auto,
    /// Every `C·H·W` value is a feature.
    Flatten,
    /// The mean of each channel over the map: `C` features.
    GlobalAverage,
}

/// How features are extracted; `Default` is the neural protocol (SPEC §3, §7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractOptions {
    /// Stimuli unrolled together.
    pub batch_size: usize,
    /// When the image is on and when the blank follows (`neural`: 100 ms on, 26 steps).
    pub presentation: Presentation,
    /// The blank frame's value (normalised input space).
    pub blank: f32,
    /// How edges are delayed in the unroll (the reference's `unroll` by default).
    pub mode: TimingMode,
    /// How an area's map becomes a feature vector.
    pub reduction: Reduction,
    /// `Auto` flattens up to this many values per area, else averages.
    pub max_flat_features: usize,
    /// Compress each area to this many principal components (one basis for all steps).
    pub pca_components: Option<usize>,
    /// At most this many stimuli, drawn at random, fit the PCA basis.
    pub pca_fit_stimuli: usize,
    /// At most this many (stimulus, step) rows fit the PCA basis.
    pub pca_fit_rows: usize,
    /// Seeds the choice of fit stimuli and the randomised SVD.
    pub seed: u64,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch_size: 64,
            presentation: Presentation::Neural,
            blank: DEFAULT_BLANK,
            mode: TimingMode::Biological,
            reduction: Reduction::Auto,
            max_flat_features: 4096,
            pca_components: None,
            pca_fit_stimuli: 1000,
            pca_fit_rows: 2000,
            seed: 0,
        }
    }
}

/// Runs `model` over `images` (`[N, C, H, W]`, one per entry of `stimulus_id`) for `steps` steps
/// and returns `areas`' features as `[stimulus, feature, step]`.
pub fn extract_features(
    model: &Model,
    images: ArrayView4<'_, f32>,
    stimulus_id: &[String],
    areas: &[String],
    steps: usize,
    opts: &ExtractOptions,
) -> Result<ModelFeatures, ExtractError> {
    let n = images.dim().0;
    let plan = Plan::new(model, images, stimulus_id, areas, steps, opts)?;
    let _guard = no_grad();

    let bases: Option<Vec<Pca>> = match opts.pca_components {
        None => None,
        Some(k) => Some(fit_bases(model, images, &plan, steps, k, opts)?),
    };
    let widths: Vec<usize> = match &bases {
        Some(b) => b.iter().map(Pca::num_components).collect(),
        None => plan.areas.iter().map(|a| a.width).collect(),
    };
    let mut out: Vec<Array3<f32>> = widths
        .iter()
        .map(|&w| zeroed_features((n, w, steps)))
        .collect::<Result<_, _>>()?;
    let all: Vec<usize> = (0..n).collect();
    for batch in all.chunks(opts.batch_size) {
        run_batch(model, images, &plan, batch, steps, opts, |a, t, rows| {
            let rows = match &bases {
                Some(b) => b[a].project(rows.view()),
                None => rows,
            };
            out[a]
                .slice_mut(s![batch[0]..batch[0] + batch.len(), .., t])
                .assign(&rows);
        })?;
    }
    Ok(ModelFeatures {
        model: model.spec.name.clone(),
        stimulus_id: stimulus_id.to_vec(),
        areas: plan
            .areas
            .iter()
            .zip(out)
            .map(|(a, data)| AreaFeatures {
                area: a.name.clone(),
                data,
            })
            .collect(),
    })
}

/// `[stimuli, features, steps]` zeros, or an error naming the size when they cannot be
/// allocated (`--steps 1000000` aborted the process inside the allocator).
fn zeroed_features(shape: (usize, usize, usize)) -> Result<Array3<f32>, ExtractError> {
    let (n, w, steps) = shape;
    let v = crate::alloc::zeros(&[n, w, steps]).map_err(|e| {
        ExtractError::Invalid(format!(
            "the features of {n} stimuli × {w} units × {steps} steps {e}; record fewer steps \
             or areas, or reduce them (PCA)"
        ))
    })?;
    Array3::from_shape_vec(shape, v).map_err(|e| ExtractError::Invalid(e.to_string()))
}

struct AreaPlan {
    name: String,
    index: usize,
    flatten: bool,
    width: usize,
}

struct Plan {
    areas: Vec<AreaPlan>,
    /// Repeat one-channel images over the model's channels.
    repeat_channels: usize,
}

impl Plan {
    fn new(
        model: &Model,
        images: ArrayView4<'_, f32>,
        stimulus_id: &[String],
        areas: &[String],
        steps: usize,
        opts: &ExtractOptions,
    ) -> Result<Plan, ExtractError> {
        let bad = |m: String| Err(ExtractError::Invalid(m));
        let (n, c, h, w) = images.dim();
        if n == 0 {
            return bad("no images".into());
        }
        if stimulus_id.len() != n {
            return bad(format!("{} stimulus ids for {n} images", stimulus_id.len()));
        }
        if areas.is_empty() {
            return bad("no areas requested".into());
        }
        if steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if opts.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if let Some(k) = opts.pca_components {
            if k == 0 || opts.pca_fit_rows < k || opts.pca_fit_stimuli == 0 {
                return bad(format!(
                    "PCA with {k} components needs k ≥ 1, pca_fit_rows ({}) ≥ k and pca_fit_stimuli ≥ 1",
                    opts.pca_fit_rows
                ));
            }
        }
        let inp = model.spec.input;
        let expected = [inp.channels, inp.height, inp.width];
        if (c != inp.channels && c != 1) || h != inp.height || w != inp.width {
            return Err(ExtractError::ImageShape {
                model: model.spec.name.clone(),
                got: [n, c, h, w],
                expected,
            });
        }
        let known = || model.spec.areas.iter().map(|a| a.name.clone()).collect();
        let mut plans = Vec::with_capacity(areas.len());
        for (i, name) in areas.iter().enumerate() {
            if areas[..i].contains(name) {
                // Recorded twice, the area would enter an assembly or a fit as two regions.
                return Err(ExtractError::Invalid(format!(
                    "area `{name}` is asked for twice in {areas:?}; name each area once"
                )));
            }
            let index = model
                .area_index(name)
                .ok_or_else(|| ExtractError::UnknownArea {
                    area: name.clone(),
                    model: model.spec.name.clone(),
                    known: known(),
                })?;
            let [ch, ah, aw] = model.shapes.areas[index].output;
            let flat = ch * ah * aw;
            let flatten = match opts.reduction {
                Reduction::Flatten => true,
                Reduction::GlobalAverage => false,
                Reduction::Auto => opts.pca_components.is_some() || flat <= opts.max_flat_features,
            };
            plans.push(AreaPlan {
                name: name.clone(),
                index,
                flatten,
                width: if flatten { flat } else { ch },
            });
        }
        Ok(Plan {
            areas: plans,
            repeat_channels: if c == 1 { inp.channels } else { 1 },
        })
    }
}

/// Unrolls the stimuli `batch` (indices into `images`) and hands each (area, step)'s
/// `[batch, features]` rows to `sink`.
fn run_batch(
    model: &Model,
    images: ArrayView4<'_, f32>,
    plan: &Plan,
    batch: &[usize],
    steps: usize,
    opts: &ExtractOptions,
    mut sink: impl FnMut(usize, usize, Array2<f32>),
) -> Result<(), ExtractError> {
    let (_, c, h, w) = images.dim();
    let cm = c * plan.repeat_channels;
    let mut host = Vec::with_capacity(batch.len() * cm * h * w);
    for &i in batch {
        for _ in 0..plan.repeat_channels {
            host.extend(images.slice(s![i, .., .., ..]).iter().copied());
        }
    }
    let image = Tensor::from_vec(host, vec![batch.len(), cm, h, w], model.device)?;
    let frames = Frames::Image {
        image,
        presentation: opts.presentation,
        blank: opts.blank,
    };
    let unrolled = model.unroll(
        &frames,
        &UnrollOptions {
            steps: Some(steps),
            mode: opts.mode,
            needed: Needed::Everything,
        },
    )?;
    for (a, ap) in plan.areas.iter().enumerate() {
        for t in 0..steps {
            let out = unrolled.outputs[ap.index][t].as_ref().ok_or_else(|| {
                ExtractError::Invalid(format!("area {} at step {t} was not computed", ap.name))
            })?;
            let dims = out.dims().to_vec();
            let values = out.to_vec()?;
            let per: usize = dims[1..].iter().product();
            let rows = Array2::from_shape_vec((batch.len(), per), values)
                .map_err(|e| ExtractError::Invalid(format!("area {} output: {e}", ap.name)))?;
            let rows = if ap.flatten {
                rows
            } else {
                let ch = dims[1];
                let plane = per / ch.max(1);
                rows.into_shape_with_order((batch.len(), ch, plane))
                    .map_err(|e| ExtractError::Invalid(format!("area {} output: {e}", ap.name)))?
                    .mean_axis(ndarray::Axis(2))
                    .ok_or_else(|| {
                        ExtractError::Invalid(format!("area {} has empty maps", ap.name))
                    })?
            };
            sink(a, t, rows);
        }
    }
    Ok(())
}

/// One PCA basis per area, fitted on (stimulus, step) rows from a seeded subset of stimuli.
fn fit_bases(
    model: &Model,
    images: ArrayView4<'_, f32>,
    plan: &Plan,
    steps: usize,
    k: usize,
    opts: &ExtractOptions,
) -> Result<Vec<Pca>, ExtractError> {
    let n = images.dim().0;
    let mut rng = Rng::new(opts.seed ^ 0x5043_4146_4954);
    let mut idx: Vec<usize> = (0..n).collect();
    let m = opts.pca_fit_stimuli.min(n);
    for i in 0..m {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(m);
    idx.sort_unstable();
    // Keep every `stride`-th (stimulus, step) pair, staggered so every step is represented.
    let stride = (m * steps).div_ceil(opts.pca_fit_rows).max(1);
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); plan.areas.len()];
    let mut counts = vec![0usize; plan.areas.len()];
    for (b, batch) in idx.chunks(opts.batch_size).enumerate() {
        let offset = b * opts.batch_size;
        run_batch(model, images, plan, batch, steps, opts, |a, t, r| {
            for (q, row) in r.rows().into_iter().enumerate() {
                if (offset + q + t).is_multiple_of(stride) {
                    rows[a].extend(row.iter().copied());
                    counts[a] += 1;
                }
            }
        })?;
    }
    plan.areas
        .iter()
        .enumerate()
        .map(|(a, ap)| {
            let x = Array2::from_shape_vec((counts[a], ap.width), std::mem::take(&mut rows[a]))
                .map_err(|e| ExtractError::Invalid(format!("PCA fit rows of {}: {e}", ap.name)))?;
            Ok(Pca::fit(x.view(), k, opts.seed.wrapping_add(a as u64)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cell_zoo::{Activation, CellSpec};
    use ndarray::Array4;
    use tensor::Device;
    use topology::*;

    fn tiny() -> Model {
        let conv = |channels| ConvSpec {
            channels,
            kernel: 3,
            stride: 1,
            activation: Activation::Elu,
            bias: true,
        };
        let gru = CellSpec::Gru {
            out_channels: None,
            kernel: 3,
        };
        let area = |name: &str, c, cell, pool: bool| AreaSpec {
            name: name.into(),
            conv: conv(c),
            cell,
            residual: None,
            pool: pool.then_some(PoolSpec::TWO_BY_TWO),
        };
        let spec = ModelSpec {
            name: "tiny".into(),
            input: InputSpec {
                channels: 1,
                height: 8,
                width: 8,
            },
            num_classes: 4,
            areas: vec![
                area("conv1", 4, CellSpec::Identity, true),
                area("conv2", 5, gru, true),
            ],
            edges: vec![],
            readout: ReadoutSpec {
                name: "imnetds".into(),
                kind: ReadoutKind::GapFc,
            },
            default_steps: 4,
            image_off: 3,
            decoder: Default::default(),
        };
        Model::new(&spec, Device::Cpu, 1).unwrap()
    }

    fn images(n: usize) -> Array4<f32> {
        let mut rng = Rng::new(9);
        Array4::from_shape_fn((n, 1, 8, 8), |_| rng.uniform() as f32)
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    fn areas() -> Vec<String> {
        vec!["conv1".into(), "conv2".into()]
    }

    #[test]
    fn shapes_batching_and_reductions() {
        let model = tiny();
        let x = images(5);
        let opts = |batch_size, reduction| ExtractOptions {
            batch_size,
            reduction,
            ..ExtractOptions::default()
        };
        let flat = extract_features(
            &model,
            x.view(),
            &ids(5),
            &areas(),
            6,
            &opts(2, Reduction::Flatten),
        )
        .unwrap();
        let whole = extract_features(
            &model,
            x.view(),
            &ids(5),
            &areas(),
            6,
            &opts(5, Reduction::Flatten),
        )
        .unwrap();
        assert_eq!(flat.areas[0].data.dim(), (5, 4 * 4 * 4, 6));
        assert_eq!(flat.areas[1].data.dim(), (5, 5 * 2 * 2, 6));
        for (a, b) in flat.areas.iter().zip(&whole.areas) {
            let err = (&a.data - &b.data)
                .iter()
                .map(|v| v.abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-5, "batching changes features by {err}");
        }
        let gap = extract_features(
            &model,
            x.view(),
            &ids(5),
            &areas(),
            6,
            &opts(3, Reduction::GlobalAverage),
        )
        .unwrap();
        assert_eq!(gap.areas[1].data.dim(), (5, 5, 6));
        // The channel mean of the flattened map is the pooled feature.
        let f = flat.areas[1].data.slice(s![2, .., 4]).to_owned();
        let mean0 = f.slice(s![0..4]).sum() / 4.0;
        assert!((mean0 - gap.areas[1].data[[2, 0, 4]]).abs() < 1e-5);
        let auto = extract_features(
            &model,
            x.view(),
            &ids(5),
            &areas(),
            6,
            &ExtractOptions {
                max_flat_features: 30,
                ..opts(5, Reduction::Auto)
            },
        )
        .unwrap();
        assert_eq!(auto.areas[0].data.dim().1, 4, "64 values > 30: pooled");
        assert_eq!(auto.areas[1].data.dim().1, 20, "20 values ≤ 30: flattened");
        assert_eq!(flat.stimulus_id, ids(5));
        assert_eq!(flat.model, "tiny");
    }

    #[test]
    fn pca_preserves_distances_when_it_keeps_the_rank() {
        let model = tiny();
        let n = 5;
        let x = images(n);
        let steps = 4;
        let base = ExtractOptions {
            batch_size: 2,
            reduction: Reduction::Flatten,
            ..ExtractOptions::default()
        };
        let flat = extract_features(&model, x.view(), &ids(n), &areas(), steps, &base).unwrap();
        // 20 fitted rows span at most 19 centred dimensions: 19 components lose nothing.
        let pca = extract_features(
            &model,
            x.view(),
            &ids(n),
            &areas(),
            steps,
            &ExtractOptions {
                pca_components: Some(19),
                ..base.clone()
            },
        )
        .unwrap();
        for (f, p) in flat.areas.iter().zip(&pca.areas) {
            assert_eq!(p.data.dim(), (n, 19, steps));
            let dist = |d: &Array3<f32>, (i, t): (usize, usize), (j, u): (usize, usize)| {
                let a = d.slice(s![i, .., t]);
                let b = d.slice(s![j, .., u]);
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f32>()
                    .sqrt()
            };
            for (i, t, j, u) in [(0, 3, 1, 3), (2, 1, 4, 2), (3, 0, 3, 3)] {
                let (a, b) = (dist(&f.data, (i, t), (j, u)), dist(&p.data, (i, t), (j, u)));
                assert!((a - b).abs() < 1e-3 * (1.0 + a), "{}: {a} vs {b}", f.area);
            }
        }
        // Compressing harder keeps the requested number of components.
        let small = extract_features(
            &model,
            x.view(),
            &ids(n),
            &areas(),
            steps,
            &ExtractOptions {
                pca_components: Some(3),
                ..base
            },
        )
        .unwrap();
        assert_eq!(small.areas[0].data.dim(), (n, 3, steps));
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let model = tiny();
        let x = images(3);
        let o = ExtractOptions::default();
        let wrong = Array4::<f32>::zeros((3, 1, 6, 6));
        assert!(matches!(
            extract_features(&model, wrong.view(), &ids(3), &areas(), 2, &o),
            Err(ExtractError::ImageShape { .. })
        ));
        let e =
            extract_features(&model, x.view(), &ids(3), &["v9".to_string()], 2, &o).unwrap_err();
        assert!(e.to_string().contains("conv2"), "{e}");
        let e = zeroed_features((1 << 22, 1 << 22, 1 << 22)).unwrap_err();
        assert!(e.to_string().contains("more floats"), "{e}");
        let e = zeroed_features((1 << 14, 1 << 14, 1 << 14)).unwrap_err();
        assert!(e.to_string().contains("cannot be allocated"), "{e}");
        assert_eq!(zeroed_features((2, 3, 4)).unwrap().dim(), (2, 3, 4));
        // An area named twice would be recorded as two regions.
        let twice = [
            "conv2".to_string(),
            "conv1".to_string(),
            "conv2".to_string(),
        ];
        let e = extract_features(&model, x.view(), &ids(3), &twice, 2, &o).unwrap_err();
        assert!(e.to_string().contains("`conv2` is asked for twice"), "{e}");
        assert!(extract_features(&model, x.view(), &ids(2), &areas(), 2, &o).is_err());
        assert!(extract_features(&model, x.view(), &ids(3), &areas(), 0, &o).is_err());
        let p = ExtractOptions {
            pca_components: Some(0),
            ..o
        };
        assert!(extract_features(&model, x.view(), &ids(3), &areas(), 2, &p).is_err());
    }
}

/// A compact zoo model over the real HvM-like set at 28 px:
/// `cargo test -p neurofit -- --ignored compact_model_over_hvm --nocapture` (needs Fashion-MNIST).
#[cfg(test)]
mod real_data {
    use super::*;
    use datasets::{FashionMnist, HvmConfig, StimulusSet};
    use ndarray::Array4;
    use tensor::Device;

    #[test]
    #[ignore = "needs Fashion-MNIST on disk; slow"]
    fn compact_model_over_hvm() {
        let fm = FashionMnist::locate_and_load(None).unwrap();
        let cfg = HvmConfig {
            images_per_object_per_level: [1, 2, 2],
            size_px: 28,
            ..HvmConfig::default()
        };
        let stim = StimulusSet::generate(&fm.test, &cfg).unwrap();
        let n = stim.len();
        let images = Array4::from_shape_vec((n, 1, 28, 28), stim.pixels_f32()).unwrap();
        let ids: Vec<String> = stim.meta.iter().map(|m| m.stimulus_id.clone()).collect();
        let spec = topology::zoo::get("compact_gru").unwrap();
        let model = Model::new(&spec, Device::Cpu, 0).unwrap();
        let areas: Vec<String> = spec.areas.iter().map(|a| a.name.clone()).collect();
        let t = std::time::Instant::now();
        let f = extract_features(
            &model,
            images.view(),
            &ids,
            &areas,
            26,
            &ExtractOptions {
                pca_components: Some(100),
                pca_fit_stimuli: 200,
                ..ExtractOptions::default()
            },
        )
        .unwrap();
        eprintln!("{n} stimuli × 26 steps, PCA 100, in {:.1?}", t.elapsed());
        for a in &f.areas {
            eprintln!("{}: {:?}", a.area, a.data.dim());
            assert_eq!(a.data.dim(), (n, 100, 26));
            assert!(a.data.iter().all(|v| v.is_finite()));
        }
    }
}
