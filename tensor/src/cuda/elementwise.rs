//! Elementwise ops, broadcasting, `sum_to`/`expand` and sum/mean/max reductions on CUDA.
//! Same semantics as `crate::cpu::elementwise` (the reference the parity tests compare with).

use super::buffer::{alloc, CudaBuf};
use super::device::Dev;
use super::kernels::{self, cfg_1d, cfg_rows, i, launch, Arg, Bcast, Reduce, MAX_RANK};
use crate::ops::{BinaryOp, UnaryOp};
use crate::{Error, Result, Shape};
use std::sync::Arc;

/// Errors unless all buffers live on the device of the first.
pub(crate) fn same_device(op: &'static str, bufs: &[&CudaBuf]) -> Result<Arc<Dev>> {
    let dev = bufs[0].dev().clone();
    for b in &bufs[1..] {
        if b.ordinal() != dev.ordinal {
            return Err(Error::DeviceMismatch {
                op,
                lhs: crate::Device::Cuda(dev.ordinal),
                rhs: crate::Device::Cuda(b.ordinal()),
            });
        }
    }
    Ok(dev)
}

/// Errors unless `buf` holds exactly `n` values.
pub(crate) fn check_len(op: &'static str, what: &str, buf: &CudaBuf, n: usize) -> Result<()> {
    if buf.len() != n {
        return Err(Error::invalid(
            op,
            format!("{what} holds {} values, expected {n}", buf.len()),
        ));
    }
    Ok(())
}

fn unary_params(op: UnaryOp) -> (f32, f32) {
    match op {
        UnaryOp::Affine { mul, add } => (mul, add),
        _ => (0.0, 0.0),
    }
}

/// `op` applied to every element.
pub fn unary(op: UnaryOp, x: &CudaBuf) -> Result<CudaBuf> {
    let dev = x.dev().clone();
    let n = x.len();
    let out = alloc(&dev, n)?;
    if n > 0 {
        let (p0, p1) = unary_params(op);
        launch(
            &dev,
            kernels::unary_name(op),
            cfg_1d(n),
            &[
                Arg::P(x.ptr()),
                Arg::P(out.ptr()),
                i(n),
                Arg::F(p0),
                Arg::F(p1),
            ],
        )?;
    }
    Ok(out)
}

/// The input gradient of `op` from its input `x`, output `y` and output gradient `g`.
pub fn unary_backward(op: UnaryOp, x: &CudaBuf, y: &CudaBuf, g: &CudaBuf) -> Result<CudaBuf> {
    let dev = same_device(op.name(), &[x, y, g])?;
    let n = x.len();
    check_len(op.name(), "the output", y, n)?;
    check_len(op.name(), "the gradient", g, n)?;
    let out = alloc(&dev, n)?;
    if n > 0 {
        let (p0, p1) = unary_params(op);
        launch(
            &dev,
            kernels::unary_bwd_name(op),
            cfg_1d(n),
            &[
                Arg::P(x.ptr()),
                Arg::P(y.ptr()),
                Arg::P(g.ptr()),
                Arg::P(out.ptr()),
                i(n),
                Arg::F(p0),
                Arg::F(p1),
            ],
        )?;
    }
    Ok(out)
}

/// Strides of `s` seen from the broadcast shape `out` (0 along broadcast dimensions).
fn broadcast_strides(s: &Shape, out: &Shape) -> Vec<i64> {
    let own = s.strides();
    let off = out.rank() - s.rank();
    (0..out.rank())
        .map(|d| {
            if d < off || s.dim(d - off) == 1 {
                0
            } else {
                own[d - off] as i64
            }
        })
        .collect()
}

/// Drops size-1 dimensions and merges neighbours that every operand walks contiguously (or
/// broadcasts along together), so most broadcasts become rank 1–3.
fn collapse(dims: &[usize], strides: &[Vec<i64>]) -> (Vec<i64>, Vec<Vec<i64>>) {
    let mut d_out: Vec<i64> = Vec::new();
    let mut s_out: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for (k, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let d = d as i64;
        let mergeable = !d_out.is_empty()
            && strides.iter().enumerate().all(|(o, s)| {
                let prev = *s_out[o].last().unwrap_or(&0);
                prev == s[k] * d
            });
        if mergeable {
            let last = d_out.len() - 1;
            d_out[last] *= d;
            for (o, s) in strides.iter().enumerate() {
                s_out[o][last] = s[k];
            }
        } else {
            d_out.push(d);
            for (o, s) in strides.iter().enumerate() {
                s_out[o].push(s[k]);
            }
        }
    }
    (d_out, s_out)
}

fn bcast_info(op: &'static str, dims: &[usize], sa: &[i64], sb: &[i64]) -> Result<Bcast> {
    let (d, s) = collapse(dims, &[sa.to_vec(), sb.to_vec()]);
    if d.len() > MAX_RANK {
        return Err(Error::invalid(
            op,
            format!(
                "the CUDA backend broadcasts over at most {MAX_RANK} non-contiguous dimensions, \
                 got {} (shape {dims:?})",
                d.len()
            ),
        ));
    }
    let mut b = Bcast {
        rank: d.len() as i64,
        ..Default::default()
    };
    for k in 0..d.len() {
        b.dims[k] = d[k];
        b.sa[k] = s[0][k];
        b.sb[k] = s[1][k];
    }
    Ok(b)
}

fn binary_name(op: BinaryOp, bcast: bool) -> &'static str {
    match (op, bcast) {
        (BinaryOp::Add, false) => "binary_add",
        (BinaryOp::Sub, false) => "binary_sub",
        (BinaryOp::Mul, false) => "binary_mul",
        (BinaryOp::Div, false) => "binary_div",
        (BinaryOp::Add, true) => "binary_bcast_add",
        (BinaryOp::Sub, true) => "binary_bcast_sub",
        (BinaryOp::Mul, true) => "binary_bcast_mul",
        (BinaryOp::Div, true) => "binary_bcast_div",
    }
}

/// `a op b` broadcast to `out` (the NumPy broadcast of `sa` and `sb`).
pub fn binary(
    op: BinaryOp,
    a: &CudaBuf,
    sa: &Shape,
    b: &CudaBuf,
    sb: &Shape,
    out: &Shape,
) -> Result<CudaBuf> {
    let dev = same_device(op.name(), &[a, b])?;
    check_len(op.name(), "the left operand", a, sa.elem_count())?;
    check_len(op.name(), "the right operand", b, sb.elem_count())?;
    if sa.rank() > out.rank() || sb.rank() > out.rank() {
        return Err(Error::invalid(
            op.name(),
            format!("operands {sa} and {sb} do not broadcast to {out}"),
        ));
    }
    let n = out.elem_count();
    let res = alloc(&dev, n)?;
    if n == 0 {
        return Ok(res);
    }
    if sa == out && sb == out {
        launch(
            &dev,
            binary_name(op, false),
            cfg_1d(n),
            &[Arg::P(a.ptr()), Arg::P(b.ptr()), Arg::P(res.ptr()), i(n)],
        )?;
    } else {
        let info = bcast_info(
            op.name(),
            out.dims(),
            &broadcast_strides(sa, out),
            &broadcast_strides(sb, out),
        )?;
        launch(
            &dev,
            binary_name(op, true),
            cfg_1d(n),
            &[
                Arg::P(a.ptr()),
                Arg::P(b.ptr()),
                Arg::P(res.ptr()),
                i(n),
                Arg::B(info),
            ],
        )?;
    }
    Ok(res)
}

/// Materialises the broadcast of `x` (shape `from`) to `to`.
pub fn expand(x: &CudaBuf, from: &Shape, to: &Shape) -> Result<CudaBuf> {
    let dev = x.dev().clone();
    check_len("expand", "the input", x, from.elem_count())?;
    if from.rank() > to.rank() {
        return Err(Error::invalid(
            "expand",
            format!("{from} does not broadcast to {to}"),
        ));
    }
    let n = to.elem_count();
    let out = alloc(&dev, n)?;
    if n == 0 {
        return Ok(out);
    }
    let zeros = vec![0i64; to.rank()];
    let info = bcast_info("expand", to.dims(), &broadcast_strides(from, to), &zeros)?;
    launch(
        &dev,
        "expand",
        cfg_1d(n),
        &[Arg::P(x.ptr()), Arg::P(out.ptr()), i(n), Arg::B(info)],
    )?;
    Ok(out)
}

/// Sums `x` (of shape `from`) down to `to`, which broadcasts to `from`.
pub fn sum_to(x: &CudaBuf, from: &Shape, to: &Shape) -> Result<CudaBuf> {
    if to.rank() > from.rank() {
        return Err(Error::invalid(
            "sum_to",
            format!("{to} does not broadcast to {from}"),
        ));
    }
    let off = from.rank() - to.rank();
    let reduce: Vec<bool> = (0..from.rank())
        .map(|d| d < off || (to.dim(d - off) == 1 && from.dim(d) != 1))
        .collect();
    reduce_sum(x, from.dims(), &reduce, 1.0, "sum_to")
}

/// Sums over `dims` of `x` (shape `shape`), times `scale`. The result holds the kept dimensions
/// in order (the same values with or without `keepdim`).
pub fn sum_dims(x: &CudaBuf, shape: &Shape, dims: &[usize], scale: f32) -> Result<CudaBuf> {
    let mut reduce = vec![false; shape.rank()];
    for &d in dims {
        if d >= shape.rank() {
            return Err(Error::invalid(
                "sum_dims",
                format!("dimension {d} out of range for shape {shape}"),
            ));
        }
        reduce[d] = true;
    }
    reduce_sum(x, shape.dims(), &reduce, scale, "sum_dims")
}

/// The mean over `dims` (see [`sum_dims`]).
pub fn mean_dims(x: &CudaBuf, shape: &Shape, dims: &[usize]) -> Result<CudaBuf> {
    let count: usize = dims
        .iter()
        .filter_map(|&d| shape.dims().get(d))
        .product::<usize>()
        .max(1);
    sum_dims(x, shape, dims, 1.0 / count as f32)
}

/// The sum of all elements as a one-element buffer.
pub fn sum_all(x: &CudaBuf) -> Result<CudaBuf> {
    reduce_sum(x, &[x.len()], &[true], 1.0, "sum_all")
}

/// The mean of all elements as a one-element buffer.
pub fn mean_all(x: &CudaBuf) -> Result<CudaBuf> {
    reduce_sum(
        x,
        &[x.len()],
        &[true],
        1.0 / x.len().max(1) as f32,
        "mean_all",
    )
}

/// Sum of `x` (shape `dims`) over the dimensions flagged in `reduce`, times `scale` (the CUDA
/// counterpart of `cpu::reduce::sum` with a `ReducePlan` of the same `dims`/`reduce`). The result
/// holds the kept dimensions in order.
pub fn sum_over(x: &CudaBuf, dims: &[usize], reduce: &[bool], scale: f32) -> Result<CudaBuf> {
    if dims.len() != reduce.len() {
        return Err(Error::invalid(
            "sum",
            format!("{} flags for {} dimensions", reduce.len(), dims.len()),
        ));
    }
    reduce_sum(x, dims, reduce, scale, "sum")
}

/// The adjoint of [`sum_over`]: every input position (of `dims`) receives `scale ·` the value of
/// the output it was summed into.
pub fn broadcast_back(g: &CudaBuf, dims: &[usize], reduce: &[bool], scale: f32) -> Result<CudaBuf> {
    if dims.len() != reduce.len() {
        return Err(Error::invalid(
            "sum backward",
            format!("{} flags for {} dimensions", reduce.len(), dims.len()),
        ));
    }
    let kept: Vec<usize> = dims
        .iter()
        .zip(reduce)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let full = expand(g, &Shape::new(kept), &Shape::new(dims.to_vec()))?;
    if scale == 1.0 {
        Ok(full)
    } else {
        unary(
            UnaryOp::Affine {
                mul: scale,
                add: 0.0,
            },
            &full,
        )
    }
}

/// Sum over the dimensions flagged in `reduce`, times `scale`.
pub(crate) fn reduce_sum(
    x: &CudaBuf,
    dims: &[usize],
    reduce: &[bool],
    scale: f32,
    op: &'static str,
) -> Result<CudaBuf> {
    let dev = x.dev().clone();
    let total: usize = dims.iter().product();
    check_len(op, "the input", x, total)?;
    let n_out: usize = dims
        .iter()
        .zip(reduce)
        .filter(|(_, r)| !**r)
        .map(|(d, _)| *d)
        .product();
    let mut out = alloc(&dev, n_out)?;
    if n_out == 0 {
        return Ok(out);
    }
    if total == 0 {
        out.fill_zero()?;
        return Ok(out);
    }
    let r = reduce_geometry(dims, reduce, scale, op)?;
    let count = r.red_count as usize;
    let (name, cfg) = if count >= 1024 || (count >= 64 && n_out < 4096) {
        ("reduce_sum_block", cfg_rows(n_out))
    } else {
        ("reduce_sum_thread", cfg_1d(n_out))
    };
    launch(
        &dev,
        name,
        cfg,
        &[Arg::P(x.ptr()), Arg::P(out.ptr()), i(n_out), Arg::R(r)],
    )?;
    Ok(out)
}

/// The kernel geometry of a sum over the dims flagged in `reduce`: row-major strides, size-1
/// dims dropped, and runs of neighbouring dims of the same kind merged into one.
pub(crate) fn reduce_geometry(
    dims: &[usize],
    reduce: &[bool],
    scale: f32,
    op: &'static str,
) -> Result<Reduce> {
    let strides = Shape::new(dims.to_vec()).strides();
    let mut r = Reduce {
        scale,
        red_count: 1,
        ..Default::default()
    };
    let mut last_kind: Option<bool> = None;
    for k in 0..dims.len() {
        if dims[k] == 1 {
            continue;
        }
        let (rank, ds, ss) = if reduce[k] {
            (&mut r.red_rank, &mut r.red_dims, &mut r.red_strides)
        } else {
            (&mut r.out_rank, &mut r.out_dims, &mut r.out_strides)
        };
        if last_kind == Some(reduce[k]) {
            let j = (*rank - 1) as usize;
            ds[j] *= dims[k] as i64;
            ss[j] = strides[k] as i64;
        } else {
            if *rank as usize == MAX_RANK {
                return Err(Error::invalid(
                    op,
                    format!(
                        "the CUDA backend reduces shapes with at most {MAX_RANK} alternating \
                         runs of kept and reduced dimensions, got {dims:?}"
                    ),
                ));
            }
            let j = *rank as usize;
            ds[j] = dims[k] as i64;
            ss[j] = strides[k] as i64;
            *rank += 1;
        }
        last_kind = Some(reduce[k]);
    }
    r.red_count = (0..r.red_rank as usize).map(|k| r.red_dims[k]).product();
    Ok(r)
}

/// The maximum over `dim` of `x` (shape `shape`) and, on the host, the index of the first
/// maximum along `dim` for every output element (a NaN counts as the maximum, as on the CPU).
pub fn max_dim(x: &CudaBuf, shape: &Shape, dim: usize) -> Result<(CudaBuf, Vec<usize>)> {
    if dim >= shape.rank() {
        return Err(Error::invalid(
            "max_dim",
            format!("dimension {dim} out of range for shape {shape}"),
        ));
    }
    check_len("max_dim", "the input", x, shape.elem_count())?;
    let d = shape.dim(dim);
    let outer: usize = shape.dims()[..dim].iter().product();
    let inner: usize = shape.dims()[dim + 1..].iter().product();
    let n = outer * inner;
    if d == 0 && n > 0 {
        return Err(Error::invalid(
            "max_dim",
            format!("cannot take the maximum over an empty dimension {dim} of {shape}"),
        ));
    }
    let dev = x.dev().clone();
    let vals = alloc(&dev, n)?;
    if n == 0 {
        return Ok((vals, Vec::new()));
    }
    let idx = super::device::guarded("allocating argmax indices", || {
        dev.stream
            .alloc_zeros::<i64>(n)
            .map_err(|e| super::device::cuda_err("allocating argmax indices", e))
    })?;
    let idx_ptr = {
        use cudarc::driver::DevicePtr;
        let (p, _no_event) = idx.device_ptr(&dev.stream);
        p
    };
    launch(
        &dev,
        "max_dim",
        cfg_1d(n),
        &[
            Arg::P(x.ptr()),
            Arg::P(vals.ptr()),
            Arg::P(idx_ptr),
            i(outer),
            i(d),
            i(inner),
        ],
    )?;
    let host = super::device::guarded("copying argmax indices", || {
        let v = dev
            .stream
            .clone_dtoh(&idx)
            .map_err(|e| super::device::cuda_err("copying argmax indices", e))?;
        dev.sync()?;
        Ok(v)
    })?;
    Ok((vals, host.into_iter().map(|v| v as usize).collect()))
}

/// The adjoint of [`max_dim`]: a tensor of `shape` that is zero except for `g` (the gradient of
/// the maxima, `shape` without `dim`) at the positions `idx` returned by the forward pass.
pub fn max_dim_backward(g: &CudaBuf, idx: &[usize], shape: &Shape, dim: usize) -> Result<CudaBuf> {
    if dim >= shape.rank() {
        return Err(Error::invalid(
            "max_dim backward",
            format!("dimension {dim} out of range for shape {shape}"),
        ));
    }
    let d = shape.dim(dim);
    let outer: usize = shape.dims()[..dim].iter().product();
    let inner: usize = shape.dims()[dim + 1..].iter().product();
    let n = outer * inner;
    check_len("max_dim backward", "the gradient", g, n)?;
    if idx.len() != n || idx.iter().any(|&k| k >= d) {
        return Err(Error::invalid(
            "max_dim backward",
            format!("expected {n} indices below {d}"),
        ));
    }
    let dev = g.dev().clone();
    let mut out = alloc(&dev, shape.elem_count())?;
    out.fill_zero()?;
    if n == 0 {
        return Ok(out);
    }
    let host: Vec<i64> = idx.iter().map(|&k| k as i64).collect();
    let dev_idx = super::device::guarded("copying argmax indices", || {
        dev.stream
            .clone_htod(&host)
            .map_err(|e| super::device::cuda_err("copying argmax indices", e))
    })?;
    let idx_ptr = {
        use cudarc::driver::DevicePtr;
        let (p, _no_event) = dev_idx.device_ptr(&dev.stream);
        p
    };
    // `dev_idx` is freed in stream order after the kernel.
    launch(
        &dev,
        "scatter_dim",
        cfg_1d(n),
        &[
            Arg::P(g.ptr()),
            Arg::P(idx_ptr),
            Arg::P(out.ptr()),
            i(outer),
            i(d),
            i(inner),
        ],
    )?;
    Ok(out)
}

/// A buffer of `n` copies of `value` on `dev`.
pub(crate) fn filled(dev: &Arc<Dev>, n: usize, value: f32) -> Result<CudaBuf> {
    let out = alloc(dev, n)?;
    if n > 0 {
        launch(
            dev,
            "fill",
            cfg_1d(n),
            &[Arg::P(out.ptr()), i(n), Arg::F(value)],
        )?;
    }
    Ok(out)
}

/// A buffer of `n` copies of `value` on device `ordinal`.
pub fn full(ordinal: usize, n: usize, value: f32) -> Result<CudaBuf> {
    filled(&super::device::device(ordinal)?, n, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_runs() {
        // [2,3,4,5] + [1,3,1,1]: a contiguous, b broadcast except along dim 1.
        let out = Shape::from([2, 3, 4, 5]);
        let sa = broadcast_strides(&out, &out);
        let sb = broadcast_strides(&Shape::from([1, 3, 1, 1]), &out);
        let (d, s) = collapse(out.dims(), &[sa, sb]);
        assert_eq!(d, vec![2, 3, 20]);
        assert_eq!(s[0], vec![60, 20, 1]);
        assert_eq!(s[1], vec![0, 1, 0]);
        // Equal contiguous shapes collapse to one dimension.
        let (d, _) = collapse(
            out.dims(),
            &[out.strides().iter().map(|&v| v as i64).collect()],
        );
        assert_eq!(d, vec![120]);
        // [4,1] x [1,3] -> [4,3]
        let out = Shape::from([4, 3]);
        let (d, s) = collapse(
            out.dims(),
            &[
                broadcast_strides(&Shape::from([4, 1]), &out),
                broadcast_strides(&Shape::from([1, 3]), &out),
            ],
        );
        assert_eq!(d, vec![4, 3]);
        assert_eq!(s, vec![vec![1, 0], vec![0, 1]]);
    }

    /// The kernel's `unravel`.
    fn unravel(mut i: i64, rank: i64, dims: &[i64], strides: &[i64]) -> i64 {
        let mut off = 0;
        for d in (0..rank as usize).rev() {
            off += (i % dims[d]) * strides[d];
            i /= dims[d];
        }
        off
    }

    #[test]
    fn reduce_geometry_visits_every_element_once_in_output_order() {
        let cases: [(&[usize], &[usize]); 7] = [
            (&[3, 4, 5, 6], &[1, 2]),
            (&[3, 4, 5, 6], &[0, 2]),
            (&[3, 4, 5, 6], &[0, 1, 2, 3]),
            (&[3, 4, 5, 6], &[]),
            (&[2, 1, 3, 1, 4], &[1, 3, 4]),
            (&[5, 1, 7], &[0]),
            (&[2, 3, 2, 3, 2, 3, 2, 3, 2], &[1, 3, 5, 7]),
        ];
        for (dims, set) in cases {
            let reduce: Vec<bool> = (0..dims.len()).map(|d| set.contains(&d)).collect();
            let r = reduce_geometry(dims, &reduce, 1.0, "test").unwrap();
            let total: usize = dims.iter().product();
            let n_out: usize = dims
                .iter()
                .zip(&reduce)
                .filter(|(_, r)| !**r)
                .map(|(d, _)| *d)
                .product();
            // Every input offset is reached exactly once, and output o collects exactly the
            // inputs whose kept coordinates are those of o (row-major over the kept dims).
            let strides = Shape::new(dims.to_vec()).strides();
            let mut seen = vec![false; total];
            for o in 0..n_out as i64 {
                let base = unravel(o, r.out_rank, &r.out_dims, &r.out_strides);
                for j in 0..r.red_count {
                    let off = (base + unravel(j, r.red_rank, &r.red_dims, &r.red_strides)) as usize;
                    assert!(!seen[off], "{dims:?} {set:?}: offset {off} twice");
                    seen[off] = true;
                    let mut kept = 0;
                    for k in 0..dims.len() {
                        if !reduce[k] {
                            kept = kept * dims[k] + (off / strides[k]) % dims[k];
                        }
                    }
                    assert_eq!(kept as i64, o, "{dims:?} {set:?}: offset {off}");
                }
            }
            assert!(seen.iter().all(|s| *s), "{dims:?} {set:?}: offsets missed");
        }
        // More alternations than the kernel supports are an error, not a wrong answer.
        let dims = [2usize; 17];
        let reduce: Vec<bool> = (0..17).map(|d| d % 2 == 1).collect();
        assert!(reduce_geometry(&dims, &reduce, 1.0, "test").is_err());
    }

    #[test]
    fn collapse_keeps_offsets_consistent() {
        // Offsets computed from the collapsed geometry equal the ones from the full geometry.
        let out = Shape::from([3, 1, 4, 2, 5]);
        let a = Shape::from([3, 1, 4, 1, 5]);
        let b = Shape::from([2, 1]);
        let (sa, sb) = (broadcast_strides(&a, &out), broadcast_strides(&b, &out));
        let (d, s) = collapse(out.dims(), &[sa.clone(), sb.clone()]);
        let off = |mut idx: i64, dims: &[i64], st: &[i64]| {
            let mut o = 0;
            for k in (0..dims.len()).rev() {
                o += (idx % dims[k]) * st[k];
                idx /= dims[k];
            }
            o
        };
        let full: Vec<i64> = out.dims().iter().map(|&v| v as i64).collect();
        for idx in 0..out.elem_count() as i64 {
            assert_eq!(off(idx, &full, &sa), off(idx, &d, &s[0]), "a at {idx}");
            assert_eq!(off(idx, &full, &sb), off(idx, &d, &s[1]), "b at {idx}");
        }
    }
}
