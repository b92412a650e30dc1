//! Strided copies: concatenation and splitting along a dimension, narrowing, and spatial
//! padding/cropping of NCHW tensors.

use super::buffer::{alloc, CudaBuf};
use super::device::Dev;
use super::elementwise::{check_len, same_device};
use super::kernels::{cfg_1d, i, launch, Arg};
use crate::{Error, Result, Shape};
use std::sync::Arc;

/// `(outer, inner)` of `shape` around `dim`: the products of the dimensions before and after it.
fn outer_inner(shape: &Shape, dim: usize) -> (usize, usize) {
    (
        shape.dims()[..dim].iter().product(),
        shape.dims()[dim + 1..].iter().product(),
    )
}

/// Copies a `rows × cols` block from `src` (starting at element `src_off`, rows `src_stride`
/// apart) to `dst` (starting at `dst_off`, rows `dst_stride` apart).
pub(crate) fn copy_block(
    dev: &Arc<Dev>,
    (src, src_off, src_stride): (&CudaBuf, usize, usize),
    (dst, dst_off, dst_stride): (&mut CudaBuf, usize, usize),
    (rows, cols): (usize, usize),
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let src_end = src_off + (rows - 1) * src_stride + cols;
    let dst_end = dst_off + (rows - 1) * dst_stride + cols;
    if src_end > src.len() || dst_end > dst.len() {
        return Err(Error::Cuda(format!(
            "copy_block out of bounds ({src_end} > {} or {dst_end} > {}): a backend bug",
            src.len(),
            dst.len()
        )));
    }
    launch(
        dev,
        "copy_rows",
        cfg_1d(rows * cols),
        &[
            Arg::P(src.ptr_at(src_off)),
            Arg::P(dst.ptr_at(dst_off)),
            i(rows),
            i(cols),
            i(src_stride),
            i(dst_stride),
        ],
    )
}

/// Copies `chunk` elements from every row of `src` into the matching row of `dst`, as
/// `cpu::shape::copy_rows`: rows of `src` are `src_rows.0` long and the chunk starts at
/// `src_rows.1` within each; likewise for `dst`, whose length fixes the number of rows.
pub fn copy_rows(
    src: &CudaBuf,
    src_rows: (usize, usize),
    dst: &mut CudaBuf,
    dst_rows: (usize, usize),
    chunk: usize,
) -> Result<()> {
    let dev = same_device("copy_rows", &[src, &*dst])?;
    if chunk == 0 || dst.is_empty() {
        return Ok(());
    }
    if dst_rows.0 == 0 || !dst.len().is_multiple_of(dst_rows.0) {
        return Err(Error::invalid(
            "copy_rows",
            format!(
                "a destination of {} values is not a whole number of {}-value rows",
                dst.len(),
                dst_rows.0
            ),
        ));
    }
    let rows = dst.len() / dst_rows.0;
    copy_block(
        &dev,
        (src, src_rows.1, src_rows.0),
        (dst, dst_rows.1, dst_rows.0),
        (rows, chunk),
    )
}

/// The transpose of a row-major `[r, c]` matrix.
pub fn transpose2d(x: &CudaBuf, r: usize, c: usize) -> Result<CudaBuf> {
    check_len("transpose2d", "the input", x, r * c)?;
    let dev = x.dev().clone();
    let out = alloc(&dev, r * c)?;
    if r * c > 0 {
        launch(
            &dev,
            "transpose2d",
            cfg_1d(r * c),
            &[Arg::P(x.ptr()), Arg::P(out.ptr()), i(r), i(c)],
        )?;
    }
    Ok(out)
}

/// Concatenates `parts` (buffers with their shapes, equal except along `dim`) along `dim`.
pub fn cat(parts: &[(&CudaBuf, &Shape)], dim: usize) -> Result<(CudaBuf, Shape)> {
    let Some((_, s0)) = parts.first() else {
        return Err(Error::invalid("cat", "no tensors to concatenate"));
    };
    if dim >= s0.rank() {
        return Err(Error::invalid(
            "cat",
            format!("dimension {dim} out of range for shape {s0}"),
        ));
    }
    let bufs: Vec<&CudaBuf> = parts.iter().map(|(b, _)| *b).collect();
    let dev = same_device("cat", &bufs)?;
    let mut total = 0;
    for (b, s) in parts {
        let same_rest =
            s.rank() == s0.rank() && (0..s0.rank()).all(|d| d == dim || s.dim(d) == s0.dim(d));
        if !same_rest {
            return Err(Error::ShapeMismatch {
                op: "cat",
                expected: format!("a shape equal to {s0} except along dimension {dim}"),
                got: (*s).clone(),
            });
        }
        check_len("cat", "a part", b, s.elem_count())?;
        total += s.dim(dim);
    }
    let mut dims = s0.dims().to_vec();
    dims[dim] = total;
    let out_shape = Shape::new(dims);
    let (outer, inner) = outer_inner(&out_shape, dim);
    let mut out = alloc(&dev, out_shape.elem_count())?;
    let mut off = 0;
    for (b, s) in parts {
        let d = s.dim(dim);
        copy_block(
            &dev,
            (b, 0, d * inner),
            (&mut out, off * inner, total * inner),
            (outer, d * inner),
        )?;
        off += d;
    }
    Ok((out, out_shape))
}

/// Splits `x` (shape `shape`) along `dim` into pieces of `sizes` (which must sum to the
/// dimension).
pub fn split(x: &CudaBuf, shape: &Shape, sizes: &[usize], dim: usize) -> Result<Vec<CudaBuf>> {
    if dim >= shape.rank() {
        return Err(Error::invalid(
            "split",
            format!("dimension {dim} out of range for shape {shape}"),
        ));
    }
    check_len("split", "the input", x, shape.elem_count())?;
    if sizes.iter().sum::<usize>() != shape.dim(dim) {
        return Err(Error::invalid(
            "split",
            format!(
                "sizes {sizes:?} do not add up to dimension {dim} of {shape} ({})",
                shape.dim(dim)
            ),
        ));
    }
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &len in sizes {
        out.push(narrow(x, shape, dim, start, len)?);
        start += len;
    }
    Ok(out)
}

/// Elements `start..start + len` of `x` (shape `shape`) along `dim`, as a new buffer.
pub fn narrow(x: &CudaBuf, shape: &Shape, dim: usize, start: usize, len: usize) -> Result<CudaBuf> {
    if dim >= shape.rank() || start + len > shape.dim(dim) {
        return Err(Error::invalid(
            "narrow",
            format!(
                "range {start}..{} of dimension {dim} is outside {shape}",
                start + len
            ),
        ));
    }
    check_len("narrow", "the input", x, shape.elem_count())?;
    let dev = x.dev().clone();
    let (outer, inner) = outer_inner(shape, dim);
    let d = shape.dim(dim);
    let mut out = alloc(&dev, outer * len * inner)?;
    copy_block(
        &dev,
        (x, start * inner, d * inner),
        (&mut out, 0, len * inner),
        (outer, len * inner),
    )?;
    Ok(out)
}

/// `[n, c, h, w]` padded to `[n, c, h + top + bottom, w + left + right]` with `value` (the
/// explicit padding in front of cuDNN, which pads symmetrically only).
pub fn pad2d(x: &CudaBuf, x_shape: [usize; 4], pad: [usize; 4], value: f32) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    let [top, bottom, left, right] = pad;
    check_len("pad2d", "the input", x, n * c * h * w)?;
    let (hp, wp) = (h + top + bottom, w + left + right);
    let dev = x.dev().clone();
    let out = alloc(&dev, n * c * hp * wp)?;
    let total = n * c * hp * wp;
    if total > 0 {
        launch(
            &dev,
            "pad2d",
            cfg_1d(total),
            &[
                Arg::P(x.ptr()),
                Arg::P(out.ptr()),
                i(n * c),
                i(h),
                i(w),
                i(hp),
                i(wp),
                i(top),
                i(left),
                Arg::F(value),
            ],
        )?;
    }
    Ok(out)
}

/// The adjoint of [`pad2d`]: the `[n, c, h, w]` window at `(top, left)` of the padded
/// `[n, c, h + top + bottom, w + left + right]` tensor.
pub fn crop2d(xp: &CudaBuf, x_shape: [usize; 4], pad: [usize; 4]) -> Result<CudaBuf> {
    let [n, c, h, w] = x_shape;
    let [top, bottom, left, right] = pad;
    let (hp, wp) = (h + top + bottom, w + left + right);
    check_len("crop2d", "the padded input", xp, n * c * hp * wp)?;
    let dev = xp.dev().clone();
    let out = alloc(&dev, n * c * h * w)?;
    let total = n * c * h * w;
    if total > 0 {
        launch(
            &dev,
            "crop2d",
            cfg_1d(total),
            &[
                Arg::P(xp.ptr()),
                Arg::P(out.ptr()),
                i(n * c),
                i(h),
                i(w),
                i(hp),
                i(wp),
                i(top),
                i(left),
            ],
        )?;
    }
    Ok(out)
}
