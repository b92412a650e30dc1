//! 2-D convolution (cross-correlation, as in every deep-learning framework) with stride, padding
//! (TensorFlow "SAME" with its asymmetric split, "VALID", or explicit amounts), dilation, groups
//! (depthwise included) and an optional bias; forward and backward for input, weights and bias.
//!
//! The op resolves the geometry ([`geom`]), records the backward pass and hands each of the three
//! computations to the backend of its operands ([`BackendStorage::conv2d`] and the two backward
//! methods): cuDNN on CUDA; on the CPU the implementation [`CpuConvBackend`] selects, among
//! oneDNN's direct convolution, the batched sgemm for small maps, Winograd and the pure-Rust
//! kernels (`cpu/conv_choice.rs`). A CPU result may come back in [`Layout::Blocked16`] (oneDNN's
//! layout, kept so that an unroll never converts between steps; callers convert at the edges
//! with [`Tensor::plain`]).

use crate::backend::{BackendStorage, ParamGrads};
use crate::backprop::no_grad;
use crate::layout::Layout;
use crate::storage::{dispatch, same_backend, Storage};
use crate::{Error, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

pub mod geom;

pub use super::padding::Padding;
pub(crate) use geom::valid_range;
pub use geom::{conv2d_output_size, Activation, Conv2dOpts, ConvGeom, Stage, Weights};

const OP: &str = "conv2d";

/// Which CPU implementation runs a convolution.
///
/// [`Tensor::conv2d`] reads it from the environment variable `CONVRNN_CPU_CONV` once per process:
/// `auto` (the default: the path measured fastest for each convolution on this machine, see
/// [`conv_tune`](crate::cpu::conv_tune); with tuning off, where oneDNN loads, its sgemm over the whole batch for dense convolutions
/// on small output maps ([`small_map`](crate::cpu::onednn::small_map)), its direct convolution where that is measured faster,
/// else Rust), `rust` (always the pure-Rust kernels), `onednn` (always oneDNN's convolution; an
/// error naming the library file and the install command when it cannot be loaded), `gemm` (the
/// batched sgemm for every dense convolution), `winograd` or `winograd4` (Winograd F(2×2, 3×3) or
/// F(4×4, 3×3) for every 3×3 "same" convolution). [`Tensor::conv2d_on`] takes it as an argument, for
/// tests and benchmarks that compare them in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CpuConvBackend {
    /// The path measured fastest for each convolution on this machine (or the measured thresholds
    /// when tuning is off); see the type's docs.
    #[default]
    Auto,
    /// The pure-Rust kernels (im2col + the `gemm` crate; direct kernels for depthwise convolutions).
    /// Always available.
    Rust,
    /// oneDNN's direct convolution for every convolution; an error when the library cannot be loaded.
    OneDnn,
    /// im2col over the whole batch and one oneDNN sgemm for every dense convolution (grouped
    /// ones are placed as under `Auto`); `Auto` uses it for small output maps.
    Gemm,
    /// Winograd F(2×2, 3×3) for every 3×3 "same" convolution it supports (see
    /// [`winograd::supports`](crate::cpu::onednn::winograd::supports)); everything else as under `Auto`, which uses it for those with
    /// enough channels ([`winograd::suits`](crate::cpu::onednn::winograd::suits)) that go neither to the small-map GEMM
    /// nor to F(4×4, 3×3).
    Winograd,
    /// Winograd F(4×4, 3×3) for every 3×3 "same" convolution it supports (the convolutions
    /// `Winograd` supports); everything else as under `Auto`, which uses it where it was measured
    /// fastest on this machine, or with tuning off on maps of ≥ 12 a side with ≥ 64 channels
    /// ([`winograd::suits_f4`](crate::cpu::onednn::winograd::suits_f4)).
    Winograd4,
}

impl CpuConvBackend {
    /// The environment variable read by [`CpuConvBackend::from_env`].
    pub const ENV: &'static str = "CONVRNN_CPU_CONV";

    /// The backend named by `s` (`auto` or empty, `rust`, `onednn` or `dnnl`, `gemm`, `winograd`,
    /// `winograd4`; case-insensitive), or `None` for any other name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(CpuConvBackend::Auto),
            "rust" => Some(CpuConvBackend::Rust),
            "onednn" | "dnnl" => Some(CpuConvBackend::OneDnn),
            "gemm" => Some(CpuConvBackend::Gemm),
            "winograd" => Some(CpuConvBackend::Winograd),
            "winograd4" => Some(CpuConvBackend::Winograd4),
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
                        "{} must be `auto`, `rust`, `onednn`, `gemm`, `winograd` or `winograd4`, \
                         got `{v}`",
                        Self::ENV
                    )
                }),
            })
            .clone()
            .map_err(|msg| Error::invalid("conv2d", msg))
    }
}

/// Checks devices, shapes and options and resolves the geometry.
fn geometry(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, opts: &Conv2dOpts) -> Result<ConvGeom> {
    x.same_device(w, OP)?;
    if let Some(b) = bias {
        x.same_device(b, OP)?;
    }
    ConvGeom::resolve(x.shape(), w.shape(), bias.map(Tensor::shape), opts)
}

/// `t` in the plain layout, without recording (the op records itself).
fn plain_untracked(t: &Tensor) -> Result<Tensor> {
    let _g = no_grad();
    t.plain()
}

/// A tensor of `shape` in `layout` on `like`'s device.
fn tensor(s: Storage, shape: [usize; 4], layout: Layout, like: &Tensor) -> Tensor {
    Tensor::from_storage(s, Shape::new(shape), layout, like.device())
}

/// The forward convolution, unrecorded.
fn forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
    backend: CpuConvBackend,
) -> Result<Tensor> {
    let w = plain_untracked(w)?;
    let (xs, ws) = (x.storage(), w.storage());
    let bs = bias.map(|b| b.storage());
    // Taken under the read guard, so it names the data the backend reads.
    let stamp = w.storage_stamp();
    let (y, layout) = dispatch!(OP, (xb = &*xs, wb = &*ws) => {
        let bias = same_backend(OP, bs.as_deref())?;
        let xa = Activation { data: xb, layout: x.layout() };
        let wa = Weights { data: wb, stamp: &stamp };
        let (y, layout) = BackendStorage::conv2d(xa, wa, bias, g, backend)?;
        Ok((Storage::from(y), layout))
    })?;
    Ok(tensor(y, g.out_shape(), layout, x))
}

/// The input gradient from the output gradient `dy`, in the layout the backend returns it in
/// (the tape converts).
fn backward_data(
    dy: &Tensor,
    w: &Tensor,
    x_layout: Layout,
    g: &ConvGeom,
    (has_bias, backend): (bool, CpuConvBackend),
) -> Result<Tensor> {
    let w = plain_untracked(w)?;
    let (ds, ws) = (dy.storage(), w.storage());
    let stamp = w.storage_stamp();
    let (dx, layout) = dispatch!(OP, (db = &*ds, wb = &*ws) => {
        let da = Activation { data: db, layout: dy.layout() };
        let wa = Weights { data: wb, stamp: &stamp };
        let (dx, layout) =
            BackendStorage::conv2d_backward_data(da, wa, x_layout, g, has_bias, backend)?;
        Ok((Storage::from(dx), layout))
    })?;
    Ok(tensor(dx, g.in_shape(), layout, dy))
}

/// The gradients of the weights and the bias that `want` asks for.
fn backward_params(
    x: &Tensor,
    dy: &Tensor,
    g: &ConvGeom,
    want: ParamGrads,
    backend: CpuConvBackend,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (xs, ds) = (x.storage(), dy.storage());
    let (dw, db) = dispatch!(OP, (xb = &*xs, db = &*ds) => {
        let xa = Activation { data: xb, layout: x.layout() };
        let da = Activation { data: db, layout: dy.layout() };
        let (dw, db) = BackendStorage::conv2d_backward_params(xa, da, g, want, backend)?;
        Ok((dw.map(Storage::from), db.map(Storage::from)))
    })?;
    let plain =
        |s, shape: &[usize]| Tensor::from_storage(s, Shape::from(shape), Layout::Plain, x.device());
    Ok((
        dw.map(|s| plain(s, &g.weight_shape())),
        db.map(|s| plain(s, &[g.o])),
    ))
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
        let out = forward(self, weight, bias, &g, backend)?;
        let has_bias = bias.is_some();
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(out.with_history(OP, &inputs, move |ctx| {
            let (x, w, dy) = (&ctx.inputs[0], &ctx.inputs[1], ctx.grad);
            let dx = ctx
                .needs_grad(0)
                .then(|| backward_data(dy, w, x.layout(), &g, (has_bias, backend)))
                .transpose()?;
            let want = ParamGrads {
                has_bias,
                weights: ctx.needs_grad(1),
                bias: has_bias && ctx.needs_grad(2),
            };
            let (dw, db) = if want.weights || want.bias {
                backward_params(x, dy, &g, want, backend)?
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
