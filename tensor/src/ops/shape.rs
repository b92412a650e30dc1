//! Shape ops: concatenation, splitting, narrowing, reshaping and 2-D transposition.
//!
//! All results are fresh copies (no views), so a result never aliases its input's storage.
//! Channel (dim 1) cuts at multiples of 16 keep [`Layout::Blocked16`]: in nChw16c such a cut
//! is a per-image range of contiguous blocks, so the copy is as cheap as in the plain layout and
//! the blocked convolution pipeline is not interrupted by layout conversions.

use crate::backend::{BackendStorage, Rows};
use crate::layout::{Layout, BLOCK};
use crate::storage::{dispatch, Storage};
use crate::{Error, Result, Shape, Tensor};

/// `(outer, inner)` of a cut along `dim`: the number of rows, and the values per index of `dim`
/// within one row. In the blocked layout only channel cuts are valid and the rows are images.
fn rows_of(shape: &Shape, dim: usize, layout: Layout) -> (usize, usize) {
    let d = shape.dims();
    match layout {
        Layout::Plain => (d[..dim].iter().product(), d[dim + 1..].iter().product()),
        Layout::Blocked16 => (d[0], d[2] * d[3]),
    }
}

fn check_dim(op: &'static str, shape: &Shape, dim: usize) -> Result<()> {
    if dim >= shape.rank() {
        return Err(Error::invalid(
            op,
            format!(
                "dimension {dim} is out of range for a rank-{} tensor of shape {shape}",
                shape.rank()
            ),
        ));
    }
    Ok(())
}

/// [`BackendStorage::copy_rows`] between two storages of one backend.
fn copy_rows(
    op: &'static str,
    src: &Storage,
    src_rows: Rows,
    dst: &mut Storage,
    dst_rows: Rows,
    chunk: usize,
) -> Result<()> {
    dispatch!(op, (s = src, d = dst) => s.copy_rows(src_rows, d, dst_rows, chunk))
}

/// A tensor of `shape` in `layout`, zero except for `grad` placed at `start..start+len` along
/// `dim` (the adjoint of [`Tensor::narrow`]). Not recorded.
fn unnarrow(
    grad: &Tensor,
    shape: &Shape,
    layout: Layout,
    dim: usize,
    start: usize,
) -> Result<Tensor> {
    let g = grad.to_layout(layout)?;
    let (outer, inner) = rows_of(shape, dim, layout);
    let len = g.dims()[dim];
    debug_assert_eq!(shape.elem_count(), outer * shape.dim(dim) * inner);
    let mut dst = Storage::zeros(g.device(), shape.elem_count())?;
    copy_rows(
        "narrow backward",
        &g.storage(),
        Rows {
            row: len * inner,
            off: 0,
        },
        &mut dst,
        Rows {
            row: shape.dim(dim) * inner,
            off: start * inner,
        },
        len * inner,
    )?;
    Ok(Tensor::from_storage(dst, shape.clone(), layout, g.device()))
}

impl Tensor {
    /// Concatenates `parts` along `dim`; every other dimension must agree. A channel concat
    /// (`dim == 1` of rank-4 parts) where some part is blocked and every part's channel count is
    /// a multiple of 16 gives a blocked result; otherwise the result is plain.
    pub fn cat(parts: &[&Tensor], dim: usize) -> Result<Tensor> {
        const OP: &str = "cat";
        let Some(first) = parts.first() else {
            return Err(Error::invalid(OP, "needs at least one part"));
        };
        let s0 = first.shape().clone();
        check_dim(OP, &s0, dim)?;
        let mut total = 0;
        for (i, p) in parts.iter().enumerate() {
            first.same_device(p, OP)?;
            let ps = p.shape();
            let agrees = ps.rank() == s0.rank()
                && (0..s0.rank()).all(|d| d == dim || ps.dim(d) == s0.dim(d));
            if !agrees {
                let pattern: Vec<String> = (0..s0.rank())
                    .map(|d| {
                        if d == dim {
                            "*".to_string()
                        } else {
                            s0.dim(d).to_string()
                        }
                    })
                    .collect();
                return Err(Error::ShapeMismatch {
                    op: OP,
                    expected: format!(
                        "part {i} to have shape [{}] (part 0's in every dimension but {dim})",
                        pattern.join(", ")
                    ),
                    got: ps.clone(),
                });
            }
            total += ps.dim(dim);
        }
        let blocked = dim == 1
            && parts.iter().any(|p| p.layout() == Layout::Blocked16)
            && parts.iter().all(|p| Tensor::can_block(p.shape()));
        let layout = if blocked {
            Layout::Blocked16
        } else {
            Layout::Plain
        };
        let parts: Vec<Tensor> = parts
            .iter()
            .map(|p| p.to_layout(layout))
            .collect::<Result<_>>()?;
        if parts.len() == 1 {
            return Ok(parts[0].clone());
        }
        let mut dims = s0.dims().to_vec();
        dims[dim] = total;
        let out_shape = Shape::new(dims);
        let (_, inner) = rows_of(&out_shape, dim, layout);
        let mut dst = Storage::zeros(first.device(), out_shape.elem_count())?;
        let mut starts = Vec::with_capacity(parts.len());
        let mut off = 0;
        // One part at a time, so that no two storage locks are held together (parts may share
        // storage).
        for p in &parts {
            let len = p.dims()[dim];
            copy_rows(
                OP,
                &p.storage(),
                Rows {
                    row: len * inner,
                    off: 0,
                },
                &mut dst,
                Rows {
                    row: total * inner,
                    off: off * inner,
                },
                len * inner,
            )?;
            starts.push((off, len));
            off += len;
        }
        let out = Tensor::from_storage(dst, out_shape, layout, first.device());
        let inputs: Vec<&Tensor> = parts.iter().collect();
        Ok(out.with_history(OP, &inputs, move |ctx| {
            let g = ctx.grad.to_layout(layout)?;
            starts
                .iter()
                .enumerate()
                .map(|(i, &(start, len))| {
                    ctx.needs_grad(i)
                        .then(|| g.narrow(dim, start, len))
                        .transpose()
                })
                .collect()
        }))
    }

    /// Splits along `dim` into consecutive pieces of the given `sizes`, which must add up to the
    /// length of `dim`. Channel pieces at multiples of 16 of a blocked tensor stay blocked.
    pub fn split(&self, sizes: &[usize], dim: usize) -> Result<Vec<Tensor>> {
        const OP: &str = "split";
        check_dim(OP, self.shape(), dim)?;
        let sum: usize = sizes.iter().sum();
        if sum != self.dims()[dim] {
            return Err(Error::invalid(
                OP,
                format!(
                    "sizes {sizes:?} add up to {sum}, but dimension {dim} of {} has length {}",
                    self.shape(),
                    self.dims()[dim]
                ),
            ));
        }
        // A blocked tensor cut anywhere but at channel multiples of 16 is converted once here
        // rather than once per piece.
        let aligned = dim == 1 && sizes.iter().all(|s| s.is_multiple_of(BLOCK));
        let x = if aligned { self.clone() } else { self.plain()? };
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &len in sizes {
            out.push(x.narrow(dim, start, len)?);
            start += len;
        }
        Ok(out)
    }

    /// The `len` entries of `dim` starting at `start`, as a new tensor. A blocked tensor cut along
    /// channels at multiples of 16 stays blocked.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        const OP: &str = "narrow";
        check_dim(OP, self.shape(), dim)?;
        let full = self.dims()[dim];
        if start.checked_add(len).is_none_or(|end| end > full) {
            return Err(Error::invalid(
                OP,
                format!(
                    "range {start}..{} is outside dimension {dim} of {} (length {full})",
                    start.saturating_add(len),
                    self.shape()
                ),
            ));
        }
        if start == 0 && len == full {
            return Ok(self.clone());
        }
        let layout = if self.layout() == Layout::Blocked16
            && dim == 1
            && start.is_multiple_of(BLOCK)
            && len.is_multiple_of(BLOCK)
        {
            Layout::Blocked16
        } else {
            Layout::Plain
        };
        let x = self.to_layout(layout)?;
        let (outer, inner) = rows_of(x.shape(), dim, layout);
        let mut dims = x.dims().to_vec();
        dims[dim] = len;
        let mut dst = Storage::zeros(x.device(), outer * len * inner)?;
        copy_rows(
            OP,
            &x.storage(),
            Rows {
                row: full * inner,
                off: start * inner,
            },
            &mut dst,
            Rows {
                row: len * inner,
                off: 0,
            },
            len * inner,
        )?;
        let out = Tensor::from_storage(dst, Shape::new(dims), layout, x.device());
        let in_shape = x.shape().clone();
        Ok(out.with_history(OP, &[&x], move |ctx| {
            Ok(vec![Some(unnarrow(
                ctx.grad, &in_shape, layout, dim, start,
            )?)])
        }))
    }

    /// The same values (row-major order) under a new shape with as many elements. A blocked
    /// tensor is converted to plain first.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        const OP: &str = "reshape";
        let shape = shape.into();
        if shape.elem_count() != self.elem_count() {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: format!(
                    "a shape with {} elements, as {}",
                    self.elem_count(),
                    self.shape()
                ),
                got: shape,
            });
        }
        let x = self.plain()?;
        if &shape == x.shape() {
            return Ok(x);
        }
        let storage = dispatch!(OP, (b = &*x.storage()) => b.duplicate().map(Storage::from))?;
        let out = Tensor::from_storage(storage, shape, Layout::Plain, x.device());
        let in_shape = x.shape().clone();
        Ok(out.with_history(OP, &[&x], move |ctx| {
            Ok(vec![Some(ctx.grad.reshape(in_shape.clone())?)])
        }))
    }

    /// Merges dimensions `dim..` into one: `[N, C, H, W].flatten_from(1)` is `[N, C·H·W]`.
    pub fn flatten_from(&self, dim: usize) -> Result<Tensor> {
        check_dim("flatten_from", self.shape(), dim)?;
        let d = self.dims();
        let mut dims = d[..dim].to_vec();
        dims.push(d[dim..].iter().product());
        self.reshape(dims)
    }

    /// The transpose of a matrix: `[R, C] -> [C, R]`.
    pub fn transpose2d(&self) -> Result<Tensor> {
        const OP: &str = "transpose2d";
        let (r, c) = self.shape().dims2(OP)?;
        let x = self.plain()?;
        let storage = dispatch!(OP, (b = &*x.storage()) => b.transpose2d(r, c).map(Storage::from))?;
        let out = Tensor::from_storage(storage, Shape::from([c, r]), Layout::Plain, x.device());
        Ok(out.with_history(OP, &[&x], |ctx| Ok(vec![Some(ctx.grad.transpose2d()?)])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Rng};

    fn iota(shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        Tensor::from_vec(
            (0..shape.elem_count()).map(|v| v as f32).collect(),
            shape,
            Device::Cpu,
        )
        .unwrap()
    }

    /// Reference concat through per-element index arithmetic.
    fn naive_cat(parts: &[Tensor], dim: usize) -> Vec<f32> {
        let mut dims = parts[0].dims().to_vec();
        dims[dim] = parts.iter().map(|p| p.dims()[dim]).sum();
        let out_shape = Shape::new(dims.clone());
        let strides = out_shape.strides();
        let mut out = vec![f32::NAN; out_shape.elem_count()];
        let mut base = 0;
        for p in parts {
            let v = p.to_vec().unwrap();
            let ps = p.shape().strides();
            for (flat, val) in v.iter().enumerate() {
                let mut o = 0;
                for d in 0..dims.len() {
                    let mut idx = flat / ps[d] % p.dims()[d];
                    if d == dim {
                        idx += base;
                    }
                    o += idx * strides[d];
                }
                out[o] = *val;
            }
            base += p.dims()[dim];
        }
        out
    }

    #[test]
    fn cat_and_split_on_every_dim() {
        let mut rng = Rng::new(30);
        for dim in 0..4 {
            let mut sa = vec![2, 3, 2, 3];
            let mut sb = sa.clone();
            let mut sc = sa.clone();
            sa[dim] = 1;
            sb[dim] = 2;
            sc[dim] = 3;
            let parts = [
                rand_tensor(&mut rng, sa),
                rand_tensor(&mut rng, sb),
                rand_tensor(&mut rng, sc),
            ];
            let refs: Vec<&Tensor> = parts.iter().collect();
            let y = Tensor::cat(&refs, dim).unwrap();
            assert_eq!(y.dims()[dim], 6);
            assert_eq!(y.to_vec().unwrap(), naive_cat(&parts, dim), "dim {dim}");
            let back = y.split(&[1, 2, 3], dim).unwrap();
            for (b, p) in back.iter().zip(&parts) {
                assert_eq!(b.dims(), p.dims());
                assert_eq!(b.to_vec().unwrap(), p.to_vec().unwrap());
            }
            check_grad(&parts, |t| {
                let refs: Vec<&Tensor> = t.iter().collect();
                Tensor::cat(&refs, dim)
            })
            .unwrap_or_else(|e| panic!("cat dim {dim}: {e}"));
            let x = rand_tensor(&mut rng, y.shape().clone());
            for piece in 0..3 {
                check_grad(std::slice::from_ref(&x), |t| {
                    Ok(t[0].split(&[1, 2, 3], dim)?[piece].clone())
                })
                .unwrap_or_else(|e| panic!("split dim {dim} piece {piece}: {e}"));
            }
            // All pieces together: their gradients accumulate into one input gradient.
            check_grad(&[x], |t| {
                let p = t[0].split(&[1, 2, 3], dim)?;
                p[0].sum_to(&Shape::from([1, 1, 1, 1]))?
                    .add(&p[1].sqr()?.sum_to(&Shape::from([1, 1, 1, 1]))?)?
                    .add(&p[2].tanh()?.sum_to(&Shape::from([1, 1, 1, 1]))?)
            })
            .unwrap_or_else(|e| panic!("split dim {dim} all pieces: {e}"));
        }
    }

    #[test]
    fn rank_one_and_rank_three() {
        let a = iota([3]);
        let b = iota([2]);
        assert_eq!(
            Tensor::cat(&[&a, &b], 0).unwrap().to_vec().unwrap(),
            vec![0., 1., 2., 0., 1.]
        );
        let x = iota([2, 3, 4]);
        let n = x.narrow(2, 1, 2).unwrap();
        assert_eq!(n.dims(), &[2, 3, 2]);
        assert_eq!(&n.to_vec().unwrap()[..4], &[1., 2., 5., 6.]);
        let mut rng = Rng::new(31);
        check_grad(&[rand_tensor(&mut rng, [2, 3, 4])], |t| {
            t[0].narrow(1, 1, 1)
        })
        .unwrap();
    }

    #[test]
    fn blocked_channel_cat_stays_blocked() {
        let mut rng = Rng::new(32);
        let a = rand_tensor(&mut rng, [2, 16, 2, 3]);
        let b = rand_tensor(&mut rng, [2, 32, 2, 3]);
        let want = Tensor::cat(&[&a, &b], 1).unwrap();
        assert_eq!(want.layout(), Layout::Plain);
        let (ab, bb) = (
            a.to_layout(Layout::Blocked16).unwrap(),
            b.to_layout(Layout::Blocked16).unwrap(),
        );
        let y = Tensor::cat(&[&ab, &bb], 1).unwrap();
        assert_eq!(y.layout(), Layout::Blocked16);
        assert_eq!(y.to_vec().unwrap(), want.to_vec().unwrap());
        // Mixed layouts with aligned channel counts also stay blocked.
        let y2 = Tensor::cat(&[&a, &bb], 1).unwrap();
        assert_eq!(y2.layout(), Layout::Blocked16);
        assert_eq!(y2.to_vec().unwrap(), want.to_vec().unwrap());
        // Split at multiples of 16 keeps the blocks; elsewhere it goes plain.
        let parts = y.split(&[32, 16], 1).unwrap();
        assert!(parts.iter().all(|p| p.layout() == Layout::Blocked16));
        assert_eq!(
            parts[1].to_vec().unwrap(),
            b.narrow(1, 16, 16).unwrap().to_vec().unwrap()
        );
        let odd = y.split(&[8, 40], 1).unwrap();
        assert!(odd.iter().all(|p| p.layout() == Layout::Plain));
        assert_eq!(
            odd[0].to_vec().unwrap(),
            a.narrow(1, 0, 8).unwrap().to_vec().unwrap()
        );
        // Gradients through the blocked path.
        check_grad(&[a.clone(), b.clone()], |t| {
            let (x, y) = (
                t[0].to_layout(Layout::Blocked16)?,
                t[1].to_layout(Layout::Blocked16)?,
            );
            let c = Tensor::cat(&[&x, &y], 1)?;
            assert_eq!(c.layout(), Layout::Blocked16);
            c.mul(&c)
        })
        .unwrap();
        check_grad(std::slice::from_ref(&b), |t| {
            let p = t[0].to_layout(Layout::Blocked16)?.split(&[16, 16], 1)?;
            assert_eq!(p[1].layout(), Layout::Blocked16);
            p[1].tanh()
        })
        .unwrap();
        // A plain part joining a blocked one is converted, and its gradient converted back.
        check_grad(&[a.clone(), b.clone()], |t| {
            let y = t[1].to_layout(Layout::Blocked16)?;
            let c = Tensor::cat(&[&t[0], &y], 1)?;
            assert_eq!(c.layout(), Layout::Blocked16);
            c.tanh()
        })
        .unwrap();
        // Unaligned channel counts fall back to plain.
        let c = rand_tensor(&mut rng, [2, 3, 2, 3]);
        let y3 = Tensor::cat(&[&ab, &c], 1).unwrap();
        assert_eq!(y3.layout(), Layout::Plain);
        assert_eq!(y3.to_vec().unwrap(), naive_cat(&[a, c], 1));
    }

    #[test]
    fn cat_of_one_tensor_with_itself() {
        let x = iota([1, 2]).into_variable();
        let y = Tensor::cat(&[&x, &x.detach(), &x], 1).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![0., 1., 0., 1., 0., 1.]);
        let g = y.backward_with_grad(&y.ones_like().unwrap()).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![2., 2.]);
    }

    #[test]
    fn reshape_flatten_transpose() {
        let x = iota([2, 3, 2, 2]);
        let f = x.flatten_from(1).unwrap();
        assert_eq!(f.dims(), &[2, 12]);
        assert_eq!(f.to_vec().unwrap(), x.to_vec().unwrap());
        assert_eq!(x.flatten_from(0).unwrap().dims(), &[24]);
        assert_eq!(x.flatten_from(3).unwrap().dims(), &[2, 3, 2, 2]);
        let t = iota([2, 3]).transpose2d().unwrap();
        assert_eq!(t.dims(), &[3, 2]);
        assert_eq!(t.to_vec().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
        let mut rng = Rng::new(33);
        check_grad(&[rand_tensor(&mut rng, [2, 3, 2, 2])], |v| {
            v[0].reshape([4, 6])?.tanh()
        })
        .unwrap();
        check_grad(&[rand_tensor(&mut rng, [2, 16, 1, 2])], |v| {
            let y = v[0].to_layout(Layout::Blocked16)?.flatten_from(1)?;
            assert_eq!(y.layout(), Layout::Plain);
            y.sqr()
        })
        .unwrap();
        check_grad(&[rand_tensor(&mut rng, [5, 3])], |v| {
            v[0].transpose2d()?.sqr()
        })
        .unwrap();
        // Blocked reshape goes through plain: values follow the logical order.
        let b = iota([1, 16, 1, 2]);
        let r = b
            .to_layout(Layout::Blocked16)
            .unwrap()
            .reshape([16, 2])
            .unwrap();
        assert_eq!(r.to_vec().unwrap(), b.to_vec().unwrap());
    }

    #[test]
    fn errors_name_the_problem() {
        let a = Tensor::zeros([2, 3, 4, 4], Device::Cpu).unwrap();
        let b = Tensor::zeros([2, 5, 4, 4], Device::Cpu).unwrap();
        let c = Tensor::zeros([2, 3, 5, 4], Device::Cpu).unwrap();
        let e = Tensor::cat(&[&a, &b, &c], 1).unwrap_err().to_string();
        assert!(
            e.contains("cat")
                && e.contains("part 2")
                && e.contains("[2, *, 4, 4]")
                && e.contains("[2, 3, 5, 4]"),
            "{e}"
        );
        let e = Tensor::cat(&[&a, &Tensor::zeros([2, 3], Device::Cpu).unwrap()], 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("part 1"), "{e}");
        assert!(Tensor::cat(&[], 0)
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        assert!(Tensor::cat(&[&a], 4)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        let e = a.split(&[1, 1], 1).unwrap_err().to_string();
        assert!(e.contains("split") && e.contains("add up to 2"), "{e}");
        let e = a.narrow(2, 3, 2).unwrap_err().to_string();
        assert!(e.contains("narrow") && e.contains("3..5"), "{e}");
        assert!(a.narrow(2, usize::MAX, 2).is_err());
        let e = a.reshape([5, 5]).unwrap_err().to_string();
        assert!(e.contains("reshape") && e.contains("96"), "{e}");
        assert!(a.transpose2d().unwrap_err().to_string().contains("rank-2"));
        assert!(a.flatten_from(4).is_err());
    }
}
