//! The CPU backend's convolution: which implementation runs each of the three computations, and
//! in which layout its result comes back.
//!
//! The implementations ([`Path`]): oneDNN's direct convolution ([`super::onednn`]), the batched
//! sgemm for small maps ([`super::onednn::small_map`]), Winograd F(2×2, 3×3) and F(4×4, 3×3)
//! ([`super::onednn::winograd`]) and the pure-Rust kernels ([`super::conv`], with the direct
//! depthwise ones of [`super::depthwise`]). [`CpuConvBackend`] forces one; `Auto` picks per
//! convolution and per computation: by timing every eligible path on first use and remembering
//! the fastest per machine ([`super::conv_tune`]), or, with tuning off, from the measurements
//! documented on [`auto_prefers_onednn`] and on the `suits` functions of the sgemm convolutions.
//!
//! Layouts: the oneDNN-based paths read either layout, return the input gradient in the input's
//! layout and the forward result blocked when `O` is a multiple of 16 ([`onednn_out_layout`]);
//! the Rust kernels work in the plain layout, except the depthwise ones, which run blocked on a
//! blocked input and stay blocked.

use super::conv as kernels;
use super::conv_tune::{self, PathKind, TuneKey, Tuner};
use super::depthwise;
use super::onednn::gemm_conv::Checked;
use super::onednn::small_map::{self, SmallMap};
use super::onednn::winograd::{self, Winograd, Winograd4};
use super::onednn::{self, OneDnn, WeightProduct};
use crate::backend::ParamGrads;
use crate::layout::{Layout, BLOCK};
use crate::ops::conv::{Activation, ConvGeom, CpuConvBackend, Stage, Weights};
use crate::storage::CpuBuf;
use crate::{Error, Result};

/// One CPU implementation of a convolution.
#[derive(Clone, Copy)]
enum Path {
    Rust,
    OneDnn(&'static OneDnn),
    /// [`small_map`]: im2col over the whole batch and one oneDNN sgemm.
    SmallMap(&'static OneDnn),
    /// [`winograd`]: F(2×2, 3×3) with oneDNN sgemms.
    Winograd(&'static OneDnn),
    /// [`winograd`]: F(4×4, 3×3) with oneDNN sgemms.
    Winograd4(&'static OneDnn),
}

/// Where `Auto` sends a computation when oneDNN is loaded and neither [`small_map::suits`] (dense,
/// output map ≤ 16 positions: the batched sgemm) nor [`winograd::suits_f4`] (dense 3×3 "same"
/// with ≥ 64 channels on maps of ≥ 12 a side) nor [`winograd::suits`] (the same with ≥ 128
/// channels) claimed it first. Measured with examples/conv_bench.rs
/// on 2 AVX2 cores (per core, by CPU time, because the machine was shared):
/// * dense and grouped convolutions: oneDNN, 56–81 GFLOP/s forward against 43–66 for
///   im2col+GEMM on the 3×3 shapes of the ConvRNNs;
/// * depthwise: the direct Rust kernels (blocked ones for a blocked input), except where oneDNN
///   runs natively in the blocked layout of an already blocked input. On AVX2 oneDNN blocks by 8,
///   so a `Blocked16` tensor is reordered on the way in and out, and for a memory-bound
///   depthwise convolution those reorders cost more than the convolution (7×7 at 14×14 and 28×28,
///   3×3 at 28×28: Rust 10–31 GFLOP/s forward and 12–25 forward+backward, oneDNN 7–20 and 3–7).
///   oneDNN's depthwise weight gradient is a generic GEMM in the plain layout, 5–8× slower.
///
/// `input` is the tensor the stage reads in its own layout: x forward, dy backward-data.
fn auto_prefers_onednn(d: &OneDnn, g: &ConvGeom, stage: Stage, input: Layout, bias: bool) -> bool {
    if !g.is_depthwise() {
        return true;
    }
    stage != Stage::BackwardWeights
        && input == Layout::Blocked16
        && d.runs_blocked_natively(g, bias).unwrap_or(false)
}

fn choose(
    backend: CpuConvBackend,
    g: &ConvGeom,
    stage: Stage,
    input: Layout,
    bias: bool,
) -> Result<Path> {
    if g.in_len() == 0 || g.out_len() == 0 {
        // Nothing to compute; oneDNN rejects zero-sized dimensions.
        return Ok(Path::Rust);
    }
    match backend {
        CpuConvBackend::Rust => Ok(Path::Rust),
        CpuConvBackend::OneDnn => Ok(Path::OneDnn(onednn::get()?)),
        CpuConvBackend::Gemm if g.groups == 1 => Ok(Path::SmallMap(onednn::get()?)),
        CpuConvBackend::Gemm => choose(CpuConvBackend::Auto, g, stage, input, bias),
        CpuConvBackend::Winograd if winograd::supports(g) => Ok(Path::Winograd(onednn::get()?)),
        CpuConvBackend::Winograd => choose(CpuConvBackend::Auto, g, stage, input, bias),
        CpuConvBackend::Winograd4 if winograd::supports(g) => Ok(Path::Winograd4(onednn::get()?)),
        CpuConvBackend::Winograd4 => choose(CpuConvBackend::Auto, g, stage, input, bias),
        CpuConvBackend::Auto => match onednn::get() {
            Ok(d) if small_map::suits(g) => Ok(Path::SmallMap(d)),
            Ok(d) if winograd::suits_f4(g) => Ok(Path::Winograd4(d)),
            Ok(d) if winograd::suits(g) => Ok(Path::Winograd(d)),
            Ok(d) if auto_prefers_onednn(d, g, stage, input, bias) => Ok(Path::OneDnn(d)),
            _ => Ok(Path::Rust),
        },
    }
}

/// Runs `stage` on the path [`choose`] picks, or under `Auto` with tuning on ([`conv_tune`]) on
/// the path measured fastest; under `Auto`, a oneDNN failure (a shape its build does not
/// implement) falls back to the Rust kernels instead of failing the op. A forced backend reports
/// the error.
fn run<T>(
    backend: CpuConvBackend,
    problem: (&ConvGeom, Stage),
    sel: (Layout, bool),
    f: impl Fn(Path) -> Result<T>,
) -> Result<T> {
    run_with(conv_tune::global(), backend, problem, sel, f)
}

/// [`run`] with the tuner (`None`: tuning off) as an argument.
fn run_with<T>(
    tuner: Option<&Tuner>,
    backend: CpuConvBackend,
    (g, stage): (&ConvGeom, Stage),
    (input, bias): (Layout, bool),
    f: impl Fn(Path) -> Result<T>,
) -> Result<T> {
    let tuned = match tuner {
        Some(t) if backend == CpuConvBackend::Auto && g.in_len() > 0 && g.out_len() > 0 => {
            let key = TuneKey {
                geom: *g,
                stage,
                input,
                bias,
                threads: onednn::thread_budget(),
            };
            tuned(t, key, &f)
        }
        _ => None,
    };
    let (path, first) = match tuned {
        Some((path, r)) => (path, r),
        None => (choose(backend, g, stage, input, bias)?, None),
    };
    let r = match first {
        Some(r) => Ok(r),
        None => f(path),
    };
    match (r, path, backend) {
        (
            Err(Error::OneDnn(_)),
            Path::OneDnn(_) | Path::SmallMap(_) | Path::Winograd(_) | Path::Winograd4(_),
            CpuConvBackend::Auto,
        ) => f(Path::Rust),
        (r, _, _) => r,
    }
}

/// The paths that can compute `g` on this machine: the Rust kernels always, the oneDNN-based ones
/// where oneDNN loads and they support the convolution.
fn eligible(d: Option<&'static OneDnn>, g: &ConvGeom) -> Vec<Path> {
    let mut v = vec![Path::Rust];
    if let Some(d) = d {
        v.push(Path::OneDnn(d));
        if g.groups == 1 {
            v.push(Path::SmallMap(d));
        }
        if winograd::supports(g) {
            v.push(Path::Winograd(d));
            v.push(Path::Winograd4(d));
        }
    }
    v
}

/// The tuned path of `key`, and the result of its last run when the paths were timed now (this
/// call's result: the paths agree to rounding). The threshold choice of [`choose`] is the default
/// the timings must beat by [`conv_tune::MARGIN`]. `None` when no path ran.
fn tuned<T>(
    tuner: &Tuner,
    key: TuneKey,
    f: &impl Fn(Path) -> Result<T>,
) -> Option<(Path, Option<T>)> {
    let paths = eligible(onednn::get().ok(), &key.geom);
    let kinds: Vec<PathKind> = paths.iter().map(|p| p.kind()).collect();
    let default = choose(
        CpuConvBackend::Auto,
        &key.geom,
        key.stage,
        key.input,
        key.bias,
    )
    .ok()
    .map(Path::kind);
    // Each path's latest result.
    let mut results: Vec<Option<T>> = paths.iter().map(|_| None).collect();
    let chosen = tuner.choose(key, &kinds, default, |kind| {
        let Some(i) = kinds.iter().position(|&k| k == kind) else {
            return false;
        };
        match f(paths[i]) {
            Ok(r) => {
                results[i] = Some(r);
                true
            }
            Err(_) => false,
        }
    })?;
    let i = kinds.iter().position(|&k| k == chosen)?;
    Some((paths[i], results[i].take()))
}

impl Path {
    fn kind(self) -> PathKind {
        match self {
            Path::Rust => PathKind::Rust,
            Path::OneDnn(_) => PathKind::OneDnn,
            Path::SmallMap(_) => PathKind::SmallMap,
            Path::Winograd(_) => PathKind::Winograd,
            Path::Winograd4(_) => PathKind::Winograd4,
        }
    }
}

/// Whether oneDNN's result is returned blocked when the input is plain. oneDNN computes in its
/// blocked layout either way; handing the result back blocked saves the reorder to plain, worth
/// 5–25 % of a 3×3 convolution on 2 AVX2 cores (conv_bench: plain→blocked 62–75 GFLOP/s per
/// core, plain→plain 49–60), and the elementwise ops that follow accept either layout.
const BLOCK_PLAIN_INPUTS: bool = true;

fn onednn_out_layout(x_layout: Layout, o: usize) -> Layout {
    if o.is_multiple_of(BLOCK) && (x_layout == Layout::Blocked16 || BLOCK_PLAIN_INPUTS) {
        Layout::Blocked16
    } else {
        Layout::Plain
    }
}

/// The values of `a` (a tensor of `shape`) in the plain layout: its own, or a converted copy
/// kept in `tmp`.
fn plain<'a>(a: Activation<'a>, shape: [usize; 4], tmp: &'a mut Option<CpuBuf>) -> &'a [f32] {
    match a.layout {
        Layout::Plain => a.data,
        Layout::Blocked16 => tmp.insert(super::backend::relayout(a.data, shape, Layout::Plain)),
    }
}

/// The forward convolution of `x` with `w` (+ `bias`): the output and its layout.
pub(crate) fn forward(
    x: Activation<'_>,
    w: Weights<'_>,
    bias: Option<&[f32]>,
    g: &ConvGeom,
    backend: CpuConvBackend,
) -> Result<(CpuBuf, Layout)> {
    let sel = (x.layout, bias.is_some());
    run(backend, (g, Stage::Forward), sel, |path| {
        let out = onednn_out_layout(x.layout, g.o);
        let y = match path {
            Path::OneDnn(d) => d.conv_product(g, WeightProduct::Forward(bias), x, w, out)?,
            Path::SmallMap(d) => Checked::<SmallMap>::new(d, g)?.forward(x, w, bias, out)?,
            Path::Winograd(d) => Checked::<Winograd>::new(d, g)?.forward(x, w, bias, out)?,
            Path::Winograd4(d) => Checked::<Winograd4>::new(d, g)?.forward(x, w, bias, out)?,
            Path::Rust if x.layout == Layout::Blocked16 && depthwise::blocked_supported(g) => {
                return Ok((
                    depthwise::forward_blocked(x.data, w.data, bias, g),
                    x.layout,
                ));
            }
            Path::Rust => {
                let mut tmp = None;
                let xp = plain(x, g.in_shape(), &mut tmp);
                return Ok((kernels::forward(xp, w.data, bias, g), Layout::Plain));
            }
        };
        Ok((y, out))
    })
}

/// The input gradient from the output gradient `dy`: in `x_layout` on the oneDNN-based paths,
/// plain on the Rust path (blocked for a blocked depthwise one); the layout comes with it.
pub(crate) fn backward_data(
    dy: Activation<'_>,
    w: Weights<'_>,
    x_layout: Layout,
    g: &ConvGeom,
    (has_bias, backend): (bool, CpuConvBackend),
) -> Result<(CpuBuf, Layout)> {
    run(
        backend,
        (g, Stage::BackwardData),
        (dy.layout, has_bias),
        |path| {
            let dx = match path {
                Path::OneDnn(d) => {
                    let which = WeightProduct::BackwardData { has_bias };
                    d.conv_product(g, which, dy, w, x_layout)?
                }
                Path::SmallMap(d) => {
                    Checked::<SmallMap>::new(d, g)?.backward_data(dy, w, x_layout)?
                }
                Path::Winograd(d) => {
                    Checked::<Winograd>::new(d, g)?.backward_data(dy, w, x_layout)?
                }
                Path::Winograd4(d) => {
                    Checked::<Winograd4>::new(d, g)?.backward_data(dy, w, x_layout)?
                }
                Path::Rust if dy.layout == Layout::Blocked16 && depthwise::blocked_supported(g) => {
                    let dx = depthwise::backward_data_blocked(dy.data, w.data, g);
                    return Ok((dx, dy.layout));
                }
                Path::Rust => {
                    let mut tmp = None;
                    let dyp = plain(dy, g.out_shape(), &mut tmp);
                    return Ok((kernels::backward_data(dyp, w.data, g), Layout::Plain));
                }
            };
            Ok((dx, x_layout))
        },
    )
}

/// The bias gradient: `dy` summed over the batch and the map.
fn bias_gradient(dy: Activation<'_>, g: &ConvGeom) -> CpuBuf {
    match dy.layout {
        Layout::Blocked16 => kernels::backward_bias_blocked(dy.data, g.n, g.o, g.out_plane()),
        Layout::Plain => kernels::backward_bias(dy.data, g.n, g.o, g.out_plane()),
    }
}

/// The weight gradient (plain `[O, C/groups, kh, kw]`) and the bias gradient, those `want` asks
/// for.
pub(crate) fn backward_params(
    x: Activation<'_>,
    dy: Activation<'_>,
    g: &ConvGeom,
    want: ParamGrads,
    backend: CpuConvBackend,
) -> Result<(Option<CpuBuf>, Option<CpuBuf>)> {
    let bias_only = || want.bias.then(|| bias_gradient(dy, g));
    if !want.weights {
        // No path to choose (nor to time): the bias gradient is one sum.
        return Ok((None, bias_only()));
    }
    let sel = (dy.layout, want.has_bias);
    run(backend, (g, Stage::BackwardWeights), sel, |path| {
        let (dw, db) = match path {
            Path::OneDnn(d) => {
                let (dw, db) = d.conv_backward_weights(g, want.has_bias, x, dy)?;
                (dw, db.filter(|_| want.bias))
            }
            Path::SmallMap(d) => {
                Checked::<SmallMap>::new(d, g)?.backward_weights(x, dy, want.bias)?
            }
            Path::Winograd(d) => {
                Checked::<Winograd>::new(d, g)?.backward_weights(x, dy, want.bias)?
            }
            Path::Winograd4(d) => {
                Checked::<Winograd4>::new(d, g)?.backward_weights(x, dy, want.bias)?
            }
            Path::Rust => {
                let blocked = x.layout == Layout::Blocked16 && dy.layout == Layout::Blocked16;
                let dw = if blocked && depthwise::blocked_supported(g) {
                    depthwise::backward_weights_blocked(x.data, dy.data, g)
                } else {
                    let (mut xt, mut dyt) = (None, None);
                    let xp = plain(x, g.in_shape(), &mut xt);
                    let dyp = plain(dy, g.out_shape(), &mut dyt);
                    kernels::backward_weights(xp, dyp, g)
                };
                (dw, bias_only())
            }
        };
        Ok((Some(dw), db))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Shape;
    use std::cell::RefCell;

    /// A dense 3×3 "same" convolution of a 1×4×6×6 input to 4 channels.
    fn geom() -> ConvGeom {
        let (x, w) = (Shape::new([1, 4, 6, 6]), Shape::new([4, 4, 3, 3]));
        ConvGeom::resolve(&x, &w, None, &Default::default()).unwrap()
    }

    fn tuner() -> Tuner {
        let machine = conv_tune::Machine {
            cpu: "test CPU".into(),
            isa: "test".into(),
        };
        Tuner::new(None, machine)
    }

    /// A computation that records the paths it ran on and returns which one it was.
    fn recorder(calls: &RefCell<Vec<PathKind>>) -> impl Fn(Path) -> Result<PathKind> + '_ {
        |p| {
            calls.borrow_mut().push(p.kind());
            Ok(p.kind())
        }
    }

    #[test]
    fn auto_times_every_eligible_path_once_then_reuses_the_choice() {
        let (t, g) = (tuner(), geom());
        let calls = RefCell::new(Vec::new());
        let sel = (Layout::Plain, false);
        let auto = || {
            let problem = (&g, Stage::Forward);
            run_with(
                Some(&t),
                CpuConvBackend::Auto,
                problem,
                sel,
                recorder(&calls),
            )
            .unwrap()
        };
        let first = auto();
        let n_paths = eligible(onednn::get().ok(), &g).len();
        let timed = calls.borrow().len();
        if n_paths == 1 {
            // Only the Rust kernels (no oneDNN here): nothing to time, one run.
            assert_eq!(*calls.borrow(), vec![PathKind::Rust]);
        } else {
            // A warm-up and at least one timed run each, at most all rounds and the retimes.
            let most =
                n_paths * (1 + conv_tune::ROUNDS) + 2 * conv_tune::ROUNDS * conv_tune::RETIMES;
            assert!(timed >= 2 * n_paths && timed <= most, "{calls:?}");
            let choice = t.choices();
            assert_eq!(choice.len(), 1);
            assert_eq!(choice[0].path, first);
        }
        // The first call returned the chosen path's own result.
        calls.borrow_mut().clear();
        let second = auto();
        assert_eq!(second, first);
        assert_eq!(
            *calls.borrow(),
            vec![first],
            "the second call timed paths again"
        );
    }

    #[test]
    fn a_forced_path_wins_over_the_tuned_one() {
        let (t, g) = (tuner(), geom());
        let calls = RefCell::new(Vec::new());
        let sel = (Layout::Plain, false);
        let key = TuneKey {
            geom: g,
            stage: Stage::BackwardData,
            input: Layout::Plain,
            bias: false,
            threads: onednn::thread_budget(),
        };
        // Remembered: the oneDNN path (whether or not oneDNN loads here).
        let remembered = |p| p == PathKind::OneDnn;
        let two = [PathKind::Rust, PathKind::OneDnn];
        assert_eq!(
            t.choose(key, &two, Some(PathKind::OneDnn), remembered),
            Some(PathKind::OneDnn)
        );
        let stage = (&g, Stage::BackwardData);
        let got = run_with(Some(&t), CpuConvBackend::Rust, stage, sel, recorder(&calls)).unwrap();
        assert_eq!(got, PathKind::Rust);
        assert_eq!(*calls.borrow(), vec![PathKind::Rust]);
        // Every forced path runs once, untimed (an error where oneDNN does not load here), and
        // the tuner learns nothing from it.
        let forced = [
            CpuConvBackend::OneDnn,
            CpuConvBackend::Gemm,
            CpuConvBackend::Winograd,
            CpuConvBackend::Winograd4,
        ];
        for backend in forced {
            calls.borrow_mut().clear();
            let fwd = (&g, Stage::Forward);
            if let Ok(got) = run_with(Some(&t), backend, fwd, sel, recorder(&calls)) {
                assert_eq!(*calls.borrow(), vec![got], "{backend:?}");
            }
            assert!(calls.borrow().len() <= 1, "{backend:?}: {calls:?}");
        }
        assert_eq!(t.choices().len(), 1, "a forced run was tuned");
    }

    #[test]
    fn tuning_off_keeps_the_threshold_choice() {
        let g = geom();
        let calls = RefCell::new(Vec::new());
        let sel = (Layout::Plain, false);
        let stage = (&g, Stage::Forward);
        let want = choose(CpuConvBackend::Auto, &g, Stage::Forward, sel.0, sel.1)
            .unwrap()
            .kind();
        let got = run_with(None, CpuConvBackend::Auto, stage, sel, recorder(&calls)).unwrap();
        assert_eq!(got, want);
        assert_eq!(calls.borrow().len(), 1);
    }
}
