//! Bilinear resize, layer norm, softmax / log-softmax and cross-entropy on NVRTC kernels.

use super::buffer::{alloc, CudaBuf};
use super::device::{cuda_err, guarded};
use super::elementwise::{check_len, reduce_sum, same_device};
use super::kernels::{cfg_1d, cfg_rows, i, launch, Arg};
use crate::{Error, Result};

// ----- bilinear resize ------------------------------------------------------------------------

/// Bilinear resize of `x` (`[n, c, h, w]`) to `[n, c, out_h, out_w]`, as PyTorch's
/// `interpolate(mode="bilinear")`: with `align_corners` the corner pixels map onto each other
/// (`src = dst·(in−1)/(out−1)`, 0 when `out == 1`); without, half-pixel centres
/// (`src = (dst+0.5)·in/out − 0.5`, clamped at 0).
pub fn resize_bilinear_forward(
    x: &CudaBuf,
    x_shape: [usize; 4],
    out_h: usize,
    out_w: usize,
    align_corners: bool,
) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    check_len("resize_bilinear", "the input", x, n * c * h * w)?;
    if (h == 0 || w == 0) && n * c * out_h * out_w > 0 {
        return Err(Error::invalid(
            "resize_bilinear",
            format!("cannot resize an empty {h}×{w} image to {out_h}×{out_w}"),
        ));
    }
    let dev = x.dev().clone();
    let total = n * c * out_h * out_w;
    let y = alloc(&dev, total)?;
    if total > 0 {
        launch(
            &dev,
            "resize_fwd",
            cfg_1d(total),
            &[
                Arg::P(x.ptr()),
                Arg::P(y.ptr()),
                i(n * c),
                i(h),
                i(w),
                i(out_h),
                i(out_w),
                i(align_corners as usize),
            ],
        )?;
    }
    Ok(y)
}

/// The input gradient (`x_shape`) of [`resize_bilinear_forward`] from the output gradient `dy`
/// (`[n, c, out_h, out_w]`).
pub fn resize_bilinear_backward(
    dy: &CudaBuf,
    x_shape: [usize; 4],
    out_h: usize,
    out_w: usize,
    align_corners: bool,
) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    let total = n * c * out_h * out_w;
    check_len("resize_bilinear backward", "the output gradient", dy, total)?;
    let dev = dy.dev().clone();
    let mut dx = alloc(&dev, n * c * h * w)?;
    dx.fill_zero()?;
    if total > 0 && h > 0 && w > 0 {
        launch(
            &dev,
            "resize_bwd",
            cfg_1d(total),
            &[
                Arg::P(dy.ptr()),
                Arg::P(dx.ptr()),
                i(n * c),
                i(h),
                i(w),
                i(out_h),
                i(out_w),
                i(align_corners as usize),
            ],
        )?;
    }
    Ok(dx)
}

// ----- layer norm ------------------------------------------------------------------------------

/// Values per sample in the statistics buffer of [`layer_norm_forward`]: `(mean, 0, rstd)`, the
/// layout of the CPU kernel's `(mean, mean_lo, rstd)` (`crate::cpu::norm::STATS`).
pub const LN_STATS: usize = 3;

/// Layer norm of `x` viewed as `[n, c, s]` (`s` = product of the dims after the channel, 1 for
/// `[n, f]` inputs with `c = f`): each sample normalised over its `c·s` values with the biased
/// variance, then `· gamma[c] + beta[c]` when given. Returns the output and the per-sample
/// statistics `[n, LN_STATS]` = `(mean, 0, 1/sqrt(var + eps))` for the backward pass.
pub fn layer_norm_forward(
    x: &CudaBuf,
    n: usize,
    c: usize,
    s: usize,
    gamma: Option<&CudaBuf>,
    beta: Option<&CudaBuf>,
    eps: f32,
) -> Result<(CudaBuf, CudaBuf)> {
    let dev = x.dev().clone();
    check_len("layer_norm", "the input", x, n * c * s)?;
    for (what, p) in [("gamma", gamma), ("beta", beta)] {
        if let Some(p) = p {
            same_device("layer_norm", &[x, p])?;
            check_len("layer_norm", what, p, c)?;
        }
    }
    let m = c * s;
    let mut stats = alloc(&dev, n * LN_STATS)?;
    let y = alloc(&dev, n * m)?;
    if n > 0 && m == 0 {
        stats.fill_zero()?;
    }
    if n > 0 && m > 0 {
        launch(
            &dev,
            "ln_stats",
            cfg_rows(n),
            &[
                Arg::P(x.ptr()),
                Arg::P(stats.ptr()),
                i(n),
                i(m),
                Arg::F(eps),
            ],
        )?;
        launch(
            &dev,
            "ln_fwd",
            cfg_1d(n * m),
            &[
                Arg::P(x.ptr()),
                Arg::P(stats.ptr()),
                Arg::P(gamma.map_or(0, |g| g.ptr())),
                Arg::P(beta.map_or(0, |b| b.ptr())),
                Arg::P(y.ptr()),
                i(n),
                i(c),
                i(s),
                i(gamma.is_some() as usize),
                i(beta.is_some() as usize),
            ],
        )?;
    }
    Ok((y, stats))
}

/// Gradients of [`layer_norm_forward`] from the output gradient `dy` and the saved statistics:
/// `(dx, dgamma, dbeta)`, each computed only when `need` asks for it (`dgamma`/`dbeta` are
/// `[c]`). The samples are `(n, c, s)`, as for the forward.
pub fn layer_norm_backward(
    x: &CudaBuf,
    dy: &CudaBuf,
    stats: &CudaBuf,
    (n, c, s): (usize, usize, usize),
    gamma: Option<&CudaBuf>,
    need: [bool; 3],
) -> Result<(Option<CudaBuf>, Option<CudaBuf>, Option<CudaBuf>)> {
    const OP: &str = "layer_norm backward";
    let [need_dx, need_dgamma, need_dbeta] = need;
    let dev = same_device(OP, &[x, dy, stats])?;
    let m = c * s;
    check_len(OP, "the input", x, n * m)?;
    check_len(OP, "the output gradient", dy, n * m)?;
    check_len(OP, "the saved statistics", stats, n * LN_STATS)?;
    if let Some(g) = gamma {
        same_device(OP, &[x, g])?;
        check_len(OP, "gamma", g, c)?;
    }
    let dx = if need_dx {
        let dx = alloc(&dev, n * m)?;
        if n > 0 && m > 0 {
            launch(
                &dev,
                "ln_bwd_dx",
                cfg_rows(n),
                &[
                    Arg::P(x.ptr()),
                    Arg::P(dy.ptr()),
                    Arg::P(stats.ptr()),
                    Arg::P(gamma.map_or(0, |g| g.ptr())),
                    Arg::P(dx.ptr()),
                    i(n),
                    i(c),
                    i(s),
                    i(gamma.is_some() as usize),
                ],
            )?;
        }
        Some(dx)
    } else {
        None
    };
    if !(need_dgamma || need_dbeta) {
        return Ok((dx, None, None));
    }
    let mut dgamma = need_dgamma.then(|| alloc(&dev, c)).transpose()?;
    let mut dbeta = need_dbeta.then(|| alloc(&dev, c)).transpose()?;
    if c > 0 && n * s == 0 {
        for b in dgamma.iter_mut().chain(dbeta.iter_mut()) {
            b.fill_zero()?;
        }
    } else if c > 0 {
        launch(
            &dev,
            "ln_bwd_affine",
            cfg_rows(c),
            &[
                Arg::P(x.ptr()),
                Arg::P(dy.ptr()),
                Arg::P(stats.ptr()),
                Arg::P(dgamma.as_ref().map_or(0, |b| b.ptr())),
                Arg::P(dbeta.as_ref().map_or(0, |b| b.ptr())),
                i(n),
                i(c),
                i(s),
            ],
        )?;
    }
    Ok((dx, dgamma, dbeta))
}

// ----- softmax family --------------------------------------------------------------------------

fn softmax_fwd(x: &CudaBuf, rows: usize, k: usize, log: bool) -> Result<CudaBuf> {
    let op = if log { "log_softmax" } else { "softmax" };
    check_len(op, "the input", x, rows * k)?;
    let dev = x.dev().clone();
    let y = alloc(&dev, rows * k)?;
    if rows * k > 0 {
        launch(
            &dev,
            "softmax_fwd",
            cfg_rows(rows),
            &[
                Arg::P(x.ptr()),
                Arg::P(y.ptr()),
                i(rows),
                i(k),
                i(log as usize),
            ],
        )?;
    }
    Ok(y)
}

fn softmax_bwd(y: &CudaBuf, dy: &CudaBuf, rows: usize, k: usize, log: bool) -> Result<CudaBuf> {
    let op = if log {
        "log_softmax backward"
    } else {
        "softmax backward"
    };
    let dev = same_device(op, &[y, dy])?;
    check_len(op, "the output", y, rows * k)?;
    check_len(op, "the output gradient", dy, rows * k)?;
    let dx = alloc(&dev, rows * k)?;
    if rows * k > 0 {
        launch(
            &dev,
            "softmax_bwd",
            cfg_rows(rows),
            &[
                Arg::P(y.ptr()),
                Arg::P(dy.ptr()),
                Arg::P(dx.ptr()),
                i(rows),
                i(k),
                i(log as usize),
            ],
        )?;
    }
    Ok(dx)
}

/// Softmax over the last dimension of `x` viewed as `[rows, k]`.
pub fn softmax_forward(x: &CudaBuf, rows: usize, k: usize) -> Result<CudaBuf> {
    softmax_fwd(x, rows, k, false)
}

/// Input gradient of softmax from its output `y`: `y·(dy − Σ dy·y)` per row.
pub fn softmax_backward(y: &CudaBuf, dy: &CudaBuf, rows: usize, k: usize) -> Result<CudaBuf> {
    softmax_bwd(y, dy, rows, k, false)
}

/// Log-softmax over the last dimension of `x` viewed as `[rows, k]`.
pub fn log_softmax_forward(x: &CudaBuf, rows: usize, k: usize) -> Result<CudaBuf> {
    softmax_fwd(x, rows, k, true)
}

/// Input gradient of log-softmax from its output `y`: `dy − exp(y)·Σ dy` per row.
pub fn log_softmax_backward(y: &CudaBuf, dy: &CudaBuf, rows: usize, k: usize) -> Result<CudaBuf> {
    softmax_bwd(y, dy, rows, k, true)
}

// ----- cross-entropy ---------------------------------------------------------------------------

/// Checks targets and copies them to the device as i64.
fn upload_targets(
    x: &CudaBuf,
    rows: usize,
    k: usize,
    targets: &[usize],
    label_smoothing: f32,
) -> Result<cudarc::driver::CudaSlice<i64>> {
    if targets.len() != rows {
        return Err(Error::invalid(
            "cross_entropy",
            format!("{} targets for {rows} rows of logits", targets.len()),
        ));
    }
    if let Some((r, t)) = targets.iter().enumerate().find(|(_, t)| **t >= k) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("target {t} of row {r} is out of range for {k} classes"),
        ));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("label smoothing {label_smoothing} is outside [0, 1]"),
        ));
    }
    check_len("cross_entropy", "the logits", x, rows * k)?;
    let host: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let dev = x.dev();
    guarded("copying targets to the device", || {
        dev.stream
            .clone_htod(&host)
            .map_err(|e| cuda_err("copying targets to the device", e))
    })
}

fn slice_ptr(dev: &super::device::Dev, s: &cudarc::driver::CudaSlice<i64>) -> u64 {
    use cudarc::driver::DevicePtr;
    let (p, _no_event) = s.device_ptr(&dev.stream);
    p
}

/// Mean cross-entropy of `logits` (`[rows, k]`) against `targets` with label smoothing, as
/// `torch.nn.functional.cross_entropy(label_smoothing=ls)`: the target distribution is
/// `(1 − ls)·onehot + ls / k`. Returns a one-element buffer.
pub fn cross_entropy_forward(
    logits: &CudaBuf,
    rows: usize,
    k: usize,
    targets: &[usize],
    label_smoothing: f32,
) -> Result<CudaBuf> {
    if rows == 0 || k == 0 {
        return Err(Error::invalid(
            "cross_entropy",
            format!("needs at least one row and one class, got [{rows}, {k}]"),
        ));
    }
    let t = upload_targets(logits, rows, k, targets, label_smoothing)?;
    let dev = logits.dev().clone();
    let per_row = alloc(&dev, rows)?;
    launch(
        &dev,
        "xent_fwd",
        cfg_rows(rows),
        &[
            Arg::P(logits.ptr()),
            Arg::P(slice_ptr(&dev, &t)),
            Arg::P(per_row.ptr()),
            i(rows),
            i(k),
            Arg::F(label_smoothing),
        ],
    )?;
    // Dropping `t` frees it in stream order, after the kernel has read it.
    reduce_sum(
        &per_row,
        &[rows],
        &[true],
        1.0 / rows as f32,
        "cross_entropy",
    )
}

/// Gradient of [`cross_entropy_forward`] with respect to the logits, scaled by the loss gradient
/// `grad` (a one-element device buffer): `grad / rows · (softmax(logits) − target)`.
pub fn cross_entropy_backward(
    logits: &CudaBuf,
    rows: usize,
    k: usize,
    targets: &[usize],
    label_smoothing: f32,
    grad: &CudaBuf,
) -> Result<CudaBuf> {
    let dev = same_device("cross_entropy backward", &[logits, grad])?;
    check_len("cross_entropy backward", "the loss gradient", grad, 1)?;
    if rows == 0 || k == 0 {
        return alloc(&dev, rows * k);
    }
    let t = upload_targets(logits, rows, k, targets, label_smoothing)?;
    let dx = alloc(&dev, rows * k)?;
    launch(
        &dev,
        "xent_bwd",
        cfg_rows(rows),
        &[
            Arg::P(logits.ptr()),
            Arg::P(slice_ptr(&dev, &t)),
            Arg::P(grad.ptr()),
            Arg::P(dx.ptr()),
            i(rows),
            i(k),
            Arg::F(label_smoothing),
        ],
    )?;
    Ok(dx)
}
