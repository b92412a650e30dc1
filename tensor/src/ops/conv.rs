//! 2-D convolution (cross-correlation, as in every deep-learning framework) with stride, padding
//! (TensorFlow "SAME" with its asymmetric split, "VALID", or explicit amounts), dilation, groups
//! (depthwise included) and an optional bias; forward and backward for input, weights and bias.
//!
//! Two CPU implementations, chosen per call (see [`CpuConvBackend`]):
//! * oneDNN (Debian's `libdnnl-dev`), loaded at run time ([`crate::cpu::onednn`]). It runs in its
//!   blocked layout; with channel counts that are multiples of 16 the result stays in
//!   [`Layout::Blocked16`] so an unroll never converts between steps (callers convert at the
//!   edges with [`Tensor::plain`]).
//! * pure Rust ([`crate::cpu::conv`]): im2col + GEMM, and direct kernels for depthwise
//!   convolutions. Always available; plain layout in and out, except that a stride-1 depthwise
//!   convolution (one output per channel) of a blocked input runs blocked and stays blocked.

use crate::backprop::no_grad;
use crate::cpu::conv as kernels;
use crate::cpu::depthwise;
use crate::cpu::onednn::gemm_conv::{self, Job};
use crate::cpu::onednn::small_map::{self, SmallMap};
use crate::cpu::onednn::winograd::{self, Winograd};
use crate::cpu::onednn::{self, OneDnn};
use crate::layout::{Layout, BLOCK};
use crate::storage::{CpuBuf, Storage};
use crate::{Error, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

pub mod geom;

pub use super::padding::Padding;
pub(crate) use geom::valid_range;
pub use geom::{conv2d_output_size, Activation, Conv2dOpts, ConvGeom, Stage, Weights};

/// Which CPU implementation runs a convolution.
///
/// [`Tensor::conv2d`] reads it from the environment variable `CONVRNN_CPU_CONV` once per process:
/// `auto` (the default: where oneDNN loads, its sgemm over the whole batch for dense convolutions
/// on small output maps ([`small_map`]), its direct convolution where that is measured faster,
/// else Rust), `rust` (always the pure-Rust kernels), `onednn` (always oneDNN's convolution; an
/// error naming the library file and the install command when it cannot be loaded) or `gemm` (the
/// batched sgemm for every dense convolution). [`Tensor::conv2d_on`] takes it as an argument, for
/// tests and benchmarks that compare them in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CpuConvBackend {
    #[default]
    Auto,
    Rust,
    OneDnn,
    /// im2col over the whole batch and one oneDNN sgemm for every dense convolution (grouped
    /// ones are placed as under `Auto`); `Auto` uses it for small output maps.
    Gemm,
    /// Winograd F(2×2, 3×3) for every 3×3 "same" convolution it supports (see
    /// [`winograd::supports`]); everything else as under `Auto`, which uses it for those with
    /// enough channels ([`winograd::suits`]) that do not go to the small-map GEMM.
    Winograd,
}

impl CpuConvBackend {
    /// The environment variable read by [`CpuConvBackend::from_env`].
    pub const ENV: &'static str = "CONVRNN_CPU_CONV";

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(CpuConvBackend::Auto),
            "rust" => Some(CpuConvBackend::Rust),
            "onednn" | "dnnl" => Some(CpuConvBackend::OneDnn),
            "gemm" => Some(CpuConvBackend::Gemm),
            "winograd" => Some(CpuConvBackend::Winograd),
            _ => None,
        }
    }

    /// The backend named by `CONVRNN_CPU_CONV` (read once per process), `Auto` when unset.
    pub fn from_env() -> Result<Self> {
        static FROM_ENV: OnceLock<std::result::Result<CpuConvBackend, String>> = OnceLock::new();
        FROM_ENV
            .get_or_init(|| match std::env::var(Self::ENV) {
                Err(_) => Ok(CpuConvBackend::Auto),
                Ok(v) => Self::parse(&v).ok_or_else(|| {
                    format!(
                        "{} must be `auto`, `rust`, `onednn`, `gemm` or `winograd`, got `{v}`",
                        Self::ENV
                    )
                }),
            })
            .clone()
            .map_err(|msg| Error::invalid("conv2d", msg))
    }
}

#[derive(Clone, Copy)]
enum Path {
    Rust,
    OneDnn(&'static OneDnn),
    /// [`small_map`]: im2col over the whole batch and one oneDNN sgemm.
    SmallMap(&'static OneDnn),
    /// [`winograd`]: F(2×2, 3×3) with oneDNN sgemms.
    Winograd(&'static OneDnn),
}

/// Where `Auto` sends a computation when oneDNN is loaded and neither [`small_map::suits`] (dense,
/// output map ≤ 16 positions: the batched sgemm) nor [`winograd::suits`] (dense 3×3 "same" with
/// ≥ 128 channels) claimed it first. Measured with examples/conv_bench.rs
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
        CpuConvBackend::Auto => match onednn::get() {
            Ok(d) if small_map::suits(g) => Ok(Path::SmallMap(d)),
            Ok(d) if winograd::suits(g) => Ok(Path::Winograd(d)),
            Ok(d) if auto_prefers_onednn(d, g, stage, input, bias) => Ok(Path::OneDnn(d)),
            _ => Ok(Path::Rust),
        },
    }
}

/// Runs `f` on `path`; under `Auto`, a oneDNN failure (a shape its build does not implement)
/// falls back to the Rust kernels instead of failing the op. A forced backend reports the error.
fn with_fallback<T>(
    backend: CpuConvBackend,
    path: Path,
    f: impl Fn(Path) -> Result<T>,
) -> Result<T> {
    match (f(path), path, backend) {
        (
            Err(Error::OneDnn(_)),
            Path::OneDnn(_) | Path::SmallMap(_) | Path::Winograd(_),
            CpuConvBackend::Auto,
        ) => f(Path::Rust),
        (r, _, _) => r,
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

/// Checks devices, shapes and options and resolves the geometry.
fn geometry(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, opts: &Conv2dOpts) -> Result<ConvGeom> {
    const OP: &str = "conv2d";
    x.same_device(w, OP)?;
    if let Some(b) = bias {
        x.same_device(b, OP)?;
    }
    ConvGeom::resolve(x.shape(), w.shape(), bias.map(Tensor::shape), opts)
}

fn cpu_tensor(buf: CpuBuf, shape: [usize; 4], layout: Layout, like: &Tensor) -> Tensor {
    Tensor::from_storage(Storage::Cpu(buf), Shape::new(shape), layout, like.device())
}

/// `t` in the plain layout, without recording (the op records itself).
fn plain_untracked(t: &Tensor) -> Result<Tensor> {
    let _g = no_grad();
    t.plain()
}

/// The host data of an operand of the CPU path (the CUDA path returns before any of these run).
fn host(s: &Storage) -> Result<&[f32]> {
    match s {
        Storage::Cpu(b) => Ok(b),
        #[cfg(feature = "cuda")]
        Storage::Cuda(_) => Err(Error::invalid(
            "conv2d",
            "a CUDA buffer reached the CPU convolution (operands on mixed devices)",
        )),
    }
}

fn act(data: &[f32], layout: Layout) -> Activation<'_> {
    Activation { data, layout }
}

fn weights<'a>(data: &'a [f32], stamp: &'a crate::StorageStamp) -> Weights<'a> {
    Weights { data, stamp }
}

/// The host data of an optional bias.
fn host_opt(s: Option<&Storage>) -> Result<Option<&[f32]>> {
    s.map(host).transpose()
}

fn forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
    path: Path,
) -> Result<Tensor> {
    let w = plain_untracked(w)?;
    let shape = [g.n, g.o, g.ho, g.wo];
    match path {
        Path::OneDnn(d) => {
            let out_layout = onednn_out_layout(x.layout(), g.o);
            let (xs, ws) = (x.storage(), w.storage());
            let bs = bias.map(|b| b.storage());
            let (xd, wd, bd) = (host(&xs)?, host(&ws)?, host_opt(bs.as_deref())?);
            let stamp = w.storage_stamp();
            let (xa, wa) = (act(xd, x.layout()), weights(wd, &stamp));
            let buf = d.conv_forward(g, xa, wa, bd, out_layout)?;
            Ok(cpu_tensor(buf, shape, out_layout, x))
        }
        Path::SmallMap(d) => {
            let out_layout = onednn_out_layout(x.layout(), g.o);
            let (xs, ws) = (x.storage(), w.storage());
            let bs = bias.map(|b| b.storage());
            let (xd, wd, bd) = (host(&xs)?, host(&ws)?, host_opt(bs.as_deref())?);
            let stamp = w.storage_stamp();
            let (xa, wa) = (act(xd, x.layout()), weights(wd, &stamp));
            let buf = gemm_conv::forward::<SmallMap>(Job { d, g }, xa, wa, bd, out_layout)?;
            Ok(cpu_tensor(buf, shape, out_layout, x))
        }
        Path::Winograd(d) => {
            let out_layout = onednn_out_layout(x.layout(), g.o);
            let (xs, ws) = (x.storage(), w.storage());
            let bs = bias.map(|b| b.storage());
            let (xd, wd, bd) = (host(&xs)?, host(&ws)?, host_opt(bs.as_deref())?);
            let stamp = w.storage_stamp();
            let (xa, wa) = (act(xd, x.layout()), weights(wd, &stamp));
            let buf = gemm_conv::forward::<Winograd>(Job { d, g }, xa, wa, bd, out_layout)?;
            Ok(cpu_tensor(buf, shape, out_layout, x))
        }
        Path::Rust if x.layout() == Layout::Blocked16 && depthwise::blocked_supported(g) => {
            let (xs, ws) = (x.storage(), w.storage());
            let bs = bias.map(|b| b.storage());
            let (xd, wd, bd) = (host(&xs)?, host(&ws)?, host_opt(bs.as_deref())?);
            let buf = depthwise::forward_blocked(xd, wd, bd, g);
            Ok(cpu_tensor(buf, shape, Layout::Blocked16, x))
        }
        Path::Rust => {
            let x = plain_untracked(x)?;
            let (xs, ws) = (x.storage(), w.storage());
            let bs = bias.map(|b| b.storage());
            let (xd, wd, bd) = (host(&xs)?, host(&ws)?, host_opt(bs.as_deref())?);
            let buf = kernels::forward(xd, wd, bd, g);
            Ok(cpu_tensor(buf, shape, Layout::Plain, &x))
        }
    }
}

/// Gradient of the input, in `x_layout` on the oneDNN path (plain on the Rust path; the tape
/// converts).
fn backward_data(
    dy: &Tensor,
    w: &Tensor,
    x_layout: Layout,
    g: &ConvGeom,
    has_bias: bool,
    path: Path,
) -> Result<Tensor> {
    let w = plain_untracked(w)?;
    let shape = [g.n, g.c, g.h, g.w];
    match path {
        Path::OneDnn(d) => {
            let (ds, ws) = (dy.storage(), w.storage());
            let (dd, wd) = (host(&ds)?, host(&ws)?);
            let stamp = w.storage_stamp();
            let (da, wa) = (act(dd, dy.layout()), weights(wd, &stamp));
            let buf = d.conv_backward_data(g, has_bias, da, wa, x_layout)?;
            Ok(cpu_tensor(buf, shape, x_layout, dy))
        }
        Path::SmallMap(d) => {
            let (ds, ws) = (dy.storage(), w.storage());
            let (dd, wd) = (host(&ds)?, host(&ws)?);
            let stamp = w.storage_stamp();
            let (da, wa) = (act(dd, dy.layout()), weights(wd, &stamp));
            let buf = gemm_conv::backward_data::<SmallMap>(Job { d, g }, da, wa, x_layout)?;
            Ok(cpu_tensor(buf, shape, x_layout, dy))
        }
        Path::Winograd(d) => {
            let (ds, ws) = (dy.storage(), w.storage());
            let (dd, wd) = (host(&ds)?, host(&ws)?);
            let stamp = w.storage_stamp();
            let (da, wa) = (act(dd, dy.layout()), weights(wd, &stamp));
            let buf = gemm_conv::backward_data::<Winograd>(Job { d, g }, da, wa, x_layout)?;
            Ok(cpu_tensor(buf, shape, x_layout, dy))
        }
        Path::Rust if dy.layout() == Layout::Blocked16 && depthwise::blocked_supported(g) => {
            let (ds, ws) = (dy.storage(), w.storage());
            let buf = depthwise::backward_data_blocked(host(&ds)?, host(&ws)?, g);
            Ok(cpu_tensor(buf, shape, Layout::Blocked16, dy))
        }
        Path::Rust => {
            let dy = plain_untracked(dy)?;
            let (ds, ws) = (dy.storage(), w.storage());
            let buf = kernels::backward_data(host(&ds)?, host(&ws)?, g);
            Ok(cpu_tensor(buf, shape, Layout::Plain, &dy))
        }
    }
}

/// Gradients of the weights (when `want_w`) and the bias (when `want_b`).
fn backward_params(
    x: &Tensor,
    dy: &Tensor,
    g: &ConvGeom,
    has_bias: bool,
    want_w: bool,
    want_b: bool,
    path: Path,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let w_shape = [g.o, g.cg(), g.kh, g.kw];
    let to_bias = |buf: CpuBuf| {
        Tensor::from_storage(
            Storage::Cpu(buf),
            Shape::new([g.o]),
            Layout::Plain,
            x.device(),
        )
    };
    let bias_only = |dy: &Tensor| -> Result<Tensor> {
        let s = dy.storage();
        let dd = host(&s)?;
        let buf = match dy.layout() {
            Layout::Blocked16 => kernels::backward_bias_blocked(dd, g.n, g.o, g.out_plane()),
            Layout::Plain => kernels::backward_bias(dd, g.n, g.o, g.out_plane()),
        };
        Ok(to_bias(buf))
    };
    match path {
        Path::OneDnn(d) if want_w => {
            let (xs, ds) = (x.storage(), dy.storage());
            let (xd, dd) = (host(&xs)?, host(&ds)?);
            let (xa, da) = (act(xd, x.layout()), act(dd, dy.layout()));
            let (dw, db) = d.conv_backward_weights(g, has_bias, xa, da)?;
            let dw = cpu_tensor(dw, w_shape, Layout::Plain, x);
            let db = if want_b { db.map(to_bias) } else { None };
            Ok((Some(dw), db))
        }
        Path::SmallMap(d) if want_w => {
            let (xs, ds) = (x.storage(), dy.storage());
            let (xd, dd) = (host(&xs)?, host(&ds)?);
            let (dw, db) = gemm_conv::backward_weights::<SmallMap>(
                Job { d, g },
                act(xd, x.layout()),
                act(dd, dy.layout()),
                want_b,
            )?;
            Ok((
                Some(cpu_tensor(dw, w_shape, Layout::Plain, x)),
                db.map(to_bias),
            ))
        }
        Path::Winograd(d) if want_w => {
            let (xs, ds) = (x.storage(), dy.storage());
            let (xd, dd) = (host(&xs)?, host(&ds)?);
            let (dw, db) = gemm_conv::backward_weights::<Winograd>(
                Job { d, g },
                act(xd, x.layout()),
                act(dd, dy.layout()),
                want_b,
            )?;
            Ok((
                Some(cpu_tensor(dw, w_shape, Layout::Plain, x)),
                db.map(to_bias),
            ))
        }
        Path::OneDnn(_) | Path::SmallMap(_) | Path::Winograd(_) => {
            Ok((None, if want_b { Some(bias_only(dy)?) } else { None }))
        }
        Path::Rust => {
            let db = if want_b { Some(bias_only(dy)?) } else { None };
            if !want_w {
                return Ok((None, db));
            }
            let blocked = Layout::Blocked16;
            if x.layout() == blocked && dy.layout() == blocked && depthwise::blocked_supported(g) {
                let (xs, ds) = (x.storage(), dy.storage());
                let dw = depthwise::backward_weights_blocked(host(&xs)?, host(&ds)?, g);
                return Ok((Some(cpu_tensor(dw, w_shape, Layout::Plain, x)), db));
            }
            let (x, dy) = (plain_untracked(x)?, plain_untracked(dy)?);
            let (xs, ds) = (x.storage(), dy.storage());
            let dw = kernels::backward_weights(host(&xs)?, host(&ds)?, g);
            Ok((Some(cpu_tensor(dw, w_shape, Layout::Plain, &x)), db))
        }
    }
}

impl Tensor {
    /// 2-D convolution of `self` `[N, C, H, W]` with `weight` `[O, C/groups, kh, kw]` and an
    /// optional `bias` `[O]`, giving `[N, O, Ho, Wo]`.
    ///
    /// The CPU implementation is chosen by `CONVRNN_CPU_CONV` (see [`CpuConvBackend`]). On the
    /// oneDNN path, an input in [`Layout::Blocked16`] is used as is, and when `O` is a multiple of
    /// 16 the result is blocked (convert with [`Tensor::plain`] where plain data is needed).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOpts,
    ) -> Result<Tensor> {
        // CUDA convolutions do not choose a CPU implementation, so the variable is not read
        // (nor validated) for them.
        let backend = if self.device().is_cpu() {
            CpuConvBackend::from_env()?
        } else {
            CpuConvBackend::Auto
        };
        self.conv2d_on(weight, bias, opts, backend)
    }

    /// [`Tensor::conv2d`] on an explicitly chosen CPU implementation (tests, benchmarks). On a
    /// CUDA device `backend` is ignored: cuDNN runs the convolution.
    pub fn conv2d_on(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOpts,
        backend: CpuConvBackend,
    ) -> Result<Tensor> {
        let g = geometry(self, weight, bias, opts)?;
        crate::flops::add(2 * (g.n * g.o * g.cg() * g.kh * g.kw * g.ho * g.wo) as u64);
        if !self.device().is_cpu() {
            return self.conv2d_device(weight, bias, g);
        }
        let path = choose(backend, &g, Stage::Forward, self.layout(), bias.is_some())?;
        let out = with_fallback(backend, path, |p| forward(self, weight, bias, &g, p))?;
        let has_bias = bias.is_some();
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(out.with_history("conv2d", &inputs, move |ctx| {
            let (x, w, dy) = (&ctx.inputs[0], &ctx.inputs[1], ctx.grad);
            let dx = if ctx.needs_grad(0) {
                let path = choose(backend, &g, Stage::BackwardData, dy.layout(), has_bias)?;
                Some(with_fallback(backend, path, |p| {
                    backward_data(dy, w, x.layout(), &g, has_bias, p)
                })?)
            } else {
                None
            };
            let (want_w, want_b) = (ctx.needs_grad(1), has_bias && ctx.needs_grad(2));
            let (dw, db) = if want_w || want_b {
                let path = choose(backend, &g, Stage::BackwardWeights, dy.layout(), has_bias)?;
                with_fallback(backend, path, |p| {
                    backward_params(x, dy, &g, has_bias, want_w, want_b, p)
                })?
            } else {
                (None, None)
            };
            let mut grads = vec![dx, dw];
            if has_bias {
                grads.push(db);
            }
            Ok(grads)
        }))
    }
}

impl Tensor {
    #[cfg(feature = "cuda")]
    fn conv2d_device(&self, weight: &Tensor, bias: Option<&Tensor>, g: ConvGeom) -> Result<Tensor> {
        cuda::conv2d(self, weight, bias, g)
    }

    #[cfg(not(feature = "cuda"))]
    fn conv2d_device(
        &self,
        _weight: &Tensor,
        _bias: Option<&Tensor>,
        _g: ConvGeom,
    ) -> Result<Tensor> {
        Err(Error::CudaNotCompiled(self.device()))
    }
}

#[cfg(feature = "cuda")]
mod cuda;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
