//! The contract between the op layer and the backends.
//!
//! Every computation the op layer runs on a device is a method of [`BackendStorage`], which each
//! backend's buffer implements: [`CpuBuf`](crate::storage::CpuBuf) in `cpu/backend.rs` and the
//! CUDA buffer in `cuda/backend.rs` (without the `cuda` feature, a stub whose buffer type has no
//! values). A kernel missing from a backend is therefore a compile error, not a table to keep in
//! step by hand. The op layer reaches the methods through `storage::dispatch`, which
//! picks the backend that holds the operands, so no op names a backend or a cargo feature.
//!
//! The op layer has checked shapes, options and devices before it calls a method; the methods
//! take buffers of one backend plus sizes. They return `Result` because a CUDA call can fail at
//! run time (a library missing, a launch error); the CPU kernels do not fail, except where a
//! forced convolution path (oneDNN) is unavailable.
//!
//! What stays outside the contract, on purpose: the fused gate ops ([`crate::ops::fused`]) have a
//! CPU kernel and are composed from the plain ops on other devices; blocked layouts exist only on
//! the CPU (other backends report an error from [`BackendStorage::relayout`]).

use crate::ops::conv::{Activation, ConvGeom, CpuConvBackend, Weights};
use crate::ops::pool::PoolGeom;
use crate::ops::{BinaryOp, UnaryOp};
use crate::storage::Storage;
use crate::{Device, Layout, Result, Shape};

/// One side of a [`BackendStorage::copy_rows`]: a buffer viewed as rows of `row` values, with the
/// copied chunk starting `off` values into each row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// Values per row of the buffer.
    pub row: usize,
    /// Where in each row the copied chunk starts (in values).
    pub off: usize,
}

/// How the matrices of one operand of a batched product lie in its buffer: row-major with `cols`
/// columns as stored (the leading dimension), read transposed when `trans`, one every `stride`
/// values (0: one matrix shared by the whole batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatLayout {
    /// Values from one matrix of the batch to the next (0: the same matrix for every product).
    pub stride: usize,
    /// Columns of each matrix as stored (its leading dimension), before any transposition.
    pub cols: usize,
    /// Whether the product reads the stored matrix transposed.
    pub trans: bool,
}

/// The sizes of a batched product: `batch` products of `op(A)` `[m, k]` by `op(B)` `[k, n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDims {
    /// Number of products.
    pub batch: usize,
    /// Rows of `op(A)` and of the result.
    pub m: usize,
    /// Columns of `op(B)` and of the result.
    pub n: usize,
    /// Columns of `op(A)` = rows of `op(B)`: the reduction length.
    pub k: usize,
}

/// The shape and scalars of one product `C = alpha·op(A)·op(B) + beta·C`: `op(A)` is `m × k`,
/// `op(B)` is `k × n` and `C` is `m × n`. Every backend's GEMM takes it (the host ones in
/// [`crate::cpu::gemm`] and oneDNN's, cuBLAS's in the CUDA backend).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    /// Rows of `op(A)` and of `C`.
    pub m: usize,
    /// Columns of `op(B)` and of `C`.
    pub n: usize,
    /// Columns of `op(A)` = rows of `op(B)`: the reduction length.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of `C`'s previous values (0: `C` is overwritten).
    pub beta: f32,
}

impl Gemm {
    /// `C = op(A)·op(B)`: alpha 1, beta 0.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
        }
    }
    /// The same product scaled by `alpha`.
    pub fn alpha(self, alpha: f32) -> Self {
        Gemm { alpha, ..self }
    }
    /// The same product added to `beta·C`.
    pub fn beta(self, beta: f32) -> Self {
        Gemm { beta, ..self }
    }
}

/// What a convolution's parameter pass computes: the weight gradient (`weights`) and the bias
/// gradient (`bias`), for a convolution that has a bias (`has_bias`) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamGrads {
    /// Whether the convolution has a bias (so a bias gradient is part of the computation).
    pub has_bias: bool,
    /// Whether the weight gradient is wanted.
    pub weights: bool,
    /// Whether the bias gradient is wanted (only when `has_bias`).
    pub bias: bool,
}

/// The buffer of one backend, and every computation the op layer runs on it.
///
/// Tensors are `[…]` row-major in the plain layout unless a method says otherwise; "`self`" is
/// the op's first operand.
pub trait BackendStorage: Sized + Send + Sync + 'static {
    /// The buffer of this backend inside `s`, if `s` is one.
    fn of(s: &Storage) -> Option<&Self>;
    /// The device the buffer lives on.
    fn device(&self) -> Device;
    /// The number of values.
    fn len(&self) -> usize;
    /// Whether the buffer holds no values.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values, copied to the host.
    fn to_host(&self) -> Result<Vec<f32>>;
    /// Overwrites the values with those of `src` (as many).
    fn copy_from(&mut self, src: &Self) -> Result<()>;
    /// A copy.
    fn duplicate(&self) -> Result<Self>;
    /// The values of an `[n, c, h, w]` tensor (`c` a multiple of the block size), converted from
    /// layout `from` to `to`.
    fn relayout(&self, dims: [usize; 4], from: Layout, to: Layout) -> Result<Self>;

    // ----- elementwise ---------------------------------------------------------------------

    /// `op` on every value (any layout).
    fn unary(&self, op: UnaryOp) -> Result<Self>;
    /// The input gradient of `op` at input `self`, output `y`, output gradient `g`.
    fn unary_backward(&self, op: UnaryOp, y: &Self, g: &Self) -> Result<Self>;
    /// `self op b` with NumPy broadcasting of `sa` and `sb` to `out`.
    fn binary(&self, op: BinaryOp, sa: &Shape, b: &Self, sb: &Shape, out: &Shape) -> Result<Self>;
    /// Sums over the dimensions that broadcasting `to` up to `from` expanded.
    fn sum_to(&self, from: &Shape, to: &Shape) -> Result<Self>;
    /// Broadcasts `from` to `to`.
    fn expand(&self, from: &Shape, to: &Shape) -> Result<Self>;

    // ----- reductions ----------------------------------------------------------------------

    /// `scale` times the sum over the dimensions flagged in `reduce` of a tensor `dims`.
    fn sum_over(&self, dims: &[usize], reduce: &[bool], scale: f64) -> Result<Self>;
    /// The adjoint of [`Self::sum_over`]: the reduced gradient `self`, times `scale`, repeated
    /// over the reduced dimensions of `dims`.
    fn broadcast_back(&self, dims: &[usize], reduce: &[bool], scale: f32) -> Result<Self>;
    /// The maximum along `dim` of a tensor of `shape`, and the index of each maximum.
    fn max_dim(&self, shape: &Shape, dim: usize) -> Result<(Self, Vec<usize>)>;
    /// The adjoint of [`Self::max_dim`]: the gradient `self` placed at the indices `idx`.
    fn max_dim_backward(&self, idx: &[usize], shape: &Shape, dim: usize) -> Result<Self>;

    // ----- products ------------------------------------------------------------------------

    /// `op(A)·op(B)` for each of a batch of products, `A` = `self`, `B` = `b`: `[batch, m, n]`.
    fn matmul(&self, a: MatLayout, b: &Self, bl: MatLayout, dims: BatchDims) -> Result<Self>;
    /// `x·wᵀ + bias` for `x` = `self` `[n, i]`, `w` `[o, i]`; `dims` = `(n, i, o)`.
    fn linear(&self, w: &Self, bias: Option<&Self>, dims: (usize, usize, usize)) -> Result<Self>;

    // ----- losses --------------------------------------------------------------------------

    /// (Log-)softmax over rows of `k` values.
    fn softmax(&self, k: usize, log: bool) -> Result<Self>;
    /// The input gradient of [`Self::softmax`] from its output `self` and output gradient `g`.
    fn softmax_backward(&self, g: &Self, k: usize, log: bool) -> Result<Self>;
    /// The mean softmax cross-entropy of logit rows of `k` values against `targets`, with label
    /// smoothing: one value.
    fn cross_entropy(&self, k: usize, targets: &[usize], smoothing: f32) -> Result<Self>;
    /// The logits' gradient of [`Self::cross_entropy`] for a loss gradient `g` (one value).
    fn cross_entropy_backward(
        &self,
        k: usize,
        targets: &[usize],
        smoothing: f32,
        g: &Self,
    ) -> Result<Self>;

    // ----- normalisation -------------------------------------------------------------------

    /// Layer norm of `[n, c, s]` with the per-channel affine: the output and the per-sample
    /// statistics `[n, LN_STATS]` the backward pass reads.
    fn layer_norm(
        &self,
        ncs: (usize, usize, usize),
        gamma: Option<&Self>,
        beta: Option<&Self>,
        eps: f32,
    ) -> Result<(Self, Self)>;
    /// The gradients `[dx, dgamma, dbeta]` of [`Self::layer_norm`] at input `self`, those flagged
    /// in `need`.
    fn layer_norm_backward(
        &self,
        g: &Self,
        stats: &Self,
        ncs: (usize, usize, usize),
        gamma: Option<&Self>,
        need: [bool; 3],
    ) -> Result<[Option<Self>; 3]>;

    // ----- spatial -------------------------------------------------------------------------

    /// Bilinear resizing of a tensor `x_shape` `[n, c, h, w]` to `out` = `(oh, ow)`.
    fn resize_bilinear(
        &self,
        x_shape: [usize; 4],
        out: (usize, usize),
        align: bool,
    ) -> Result<Self>;
    /// The adjoint of [`Self::resize_bilinear`], from the output gradient `self`.
    fn resize_bilinear_backward(
        &self,
        x_shape: [usize; 4],
        out: (usize, usize),
        align: bool,
    ) -> Result<Self>;
    /// Max pooling, and (when `keep_argmax`, on backends that use one) each window's winner.
    fn max_pool2d(&self, g: &PoolGeom, keep_argmax: bool) -> Result<(Self, Vec<u32>)>;
    /// The input gradient of max pooling from the output gradient `self`, the input `x`, the
    /// output `y` and the winners [`Self::max_pool2d`] kept (each backend reads what it needs).
    fn max_pool2d_backward(&self, x: &Self, y: &Self, argmax: &[u32], g: &PoolGeom)
        -> Result<Self>;
    /// Average pooling over the non-padded cells of each window.
    fn avg_pool2d(&self, g: &PoolGeom) -> Result<Self>;
    /// The input gradient of [`Self::avg_pool2d`] from the output gradient `self`.
    fn avg_pool2d_backward(&self, g: &PoolGeom) -> Result<Self>;
    /// The mean of each of `planes` planes of `hw` values.
    fn global_avg_pool(&self, planes: usize, hw: usize) -> Result<Self>;
    /// The adjoint of [`Self::global_avg_pool`].
    fn global_avg_pool_backward(&self, planes: usize, hw: usize) -> Result<Self>;

    // ----- shape ---------------------------------------------------------------------------

    /// Copies a `chunk` from every row of `self` (rows `s`) into the matching row of `dst`
    /// (rows `d`).
    fn copy_rows(&self, s: Rows, dst: &mut Self, d: Rows, chunk: usize) -> Result<()>;
    /// The transpose of an `r × c` matrix.
    fn transpose2d(&self, r: usize, c: usize) -> Result<Self>;

    // ----- convolution ---------------------------------------------------------------------

    /// The forward convolution `g` of `x` with `w` (+ `bias`): the output and its layout.
    /// `cpu` chooses among the CPU implementations; other backends have one.
    fn conv2d(
        x: Activation<'_, Self>,
        w: Weights<'_, Self>,
        bias: Option<&Self>,
        g: &ConvGeom,
        cpu: CpuConvBackend,
    ) -> Result<(Self, Layout)>;
    /// The input gradient of [`Self::conv2d`] from the output gradient `dy`, preferably in
    /// `x_layout` (the input's): the gradient and its layout.
    fn conv2d_backward_data(
        dy: Activation<'_, Self>,
        w: Weights<'_, Self>,
        x_layout: Layout,
        g: &ConvGeom,
        has_bias: bool,
        cpu: CpuConvBackend,
    ) -> Result<(Self, Layout)>;
    /// The weight gradient (plain `[O, C/groups, kh, kw]`) and the bias gradient `[O]`, those
    /// `want` asks for.
    fn conv2d_backward_params(
        x: Activation<'_, Self>,
        dy: Activation<'_, Self>,
        g: &ConvGeom,
        want: ParamGrads,
        cpu: CpuConvBackend,
    ) -> Result<(Option<Self>, Option<Self>)>;
}
