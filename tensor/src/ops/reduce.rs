//! Reductions: sums and means over all or some dimensions, and max along one dimension.
//!
//! Sums accumulate in f64 (see `crate::cpu::reduce`), so a mean over millions of elements is as
//! accurate as the f32 result can hold.

use crate::backend::BackendStorage;
use crate::layout::Layout;
use crate::storage::{dispatch, Storage};
use crate::{Error, Result, Shape, Tensor};

/// The validated form of a `dims` argument: which dimensions are reduced, the output shape, and
/// the shape of the output with the reduced dimensions kept as 1.
struct Reduction {
    reduce: Vec<bool>,
    out: Shape,
    count: usize,
}

impl Reduction {
    fn new(op: &'static str, shape: &Shape, dims: &[usize], keepdim: bool) -> Result<Self> {
        let rank = shape.rank();
        let mut reduce = vec![false; rank];
        for &d in dims {
            if d >= rank {
                return Err(Error::invalid(
                    op,
                    format!(
                        "dimension {d} is out of range for a rank-{rank} tensor of shape {shape}"
                    ),
                ));
            }
            if reduce[d] {
                return Err(Error::invalid(
                    op,
                    format!("dimension {d} is listed twice in {dims:?}"),
                ));
            }
            reduce[d] = true;
        }
        let mut out = Vec::with_capacity(rank);
        let mut count = 1;
        for (d, &size) in shape.dims().iter().enumerate() {
            if reduce[d] {
                count *= size;
                if keepdim {
                    out.push(1);
                }
            } else {
                out.push(size);
            }
        }
        Ok(Reduction {
            reduce,
            out: Shape::new(out),
            count,
        })
    }
}

impl Tensor {
    /// The sum of all elements, as a scalar (shape `[]`).
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.reduce_sum("sum_all", &dims, false, false)
    }

    /// The mean of all elements, as a scalar. NaN for an empty tensor (0/0, as PyTorch).
    pub fn mean_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.reduce_sum("mean_all", &dims, false, true)
    }

    /// Sums over `dims` (any subset, in any order, no repeats). With `keepdim` the reduced
    /// dimensions stay as size 1, otherwise they are removed. An empty `dims` reduces nothing and
    /// returns a copy (unlike PyTorch's legacy meaning of "all").
    pub fn sum_dims(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_sum("sum_dims", dims, keepdim, false)
    }

    /// Means over `dims`; see [`Tensor::sum_dims`]. Reducing an empty dimension gives NaN.
    pub fn mean_dims(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_sum("mean_dims", dims, keepdim, true)
    }

    fn reduce_sum(
        &self,
        op: &'static str,
        dims: &[usize],
        keepdim: bool,
        mean: bool,
    ) -> Result<Tensor> {
        let x = self.plain()?;
        let red = Reduction::new(op, x.shape(), dims, keepdim)?;
        let scale = if mean { 1.0 / red.count as f64 } else { 1.0 };
        let n = x.elem_count();
        let out = if n == 0 {
            // Nothing to walk: empty sums are 0, empty means 0/0.
            let fill = if mean { f32::NAN } else { 0.0 };
            Tensor::full(fill, red.out.clone(), x.device())?
        } else {
            let storage = dispatch!(op, (v = &*x.storage()) => {
                v.sum_over(x.dims(), &red.reduce, scale).map(Storage::from)
            })?;
            Tensor::from_storage(storage, red.out.clone(), Layout::Plain, x.device())
        };
        let in_shape = x.shape().clone();
        let reduce = red.reduce;
        Ok(out.with_history(op, &[&x], move |ctx| {
            let g = ctx.grad.plain()?;
            let n = in_shape.elem_count();
            if n == 0 {
                return Ok(vec![Some(Tensor::zeros(in_shape.clone(), g.device())?)]);
            }
            let storage = dispatch!(op, (gv = &*g.storage()) => {
                gv.broadcast_back(in_shape.dims(), &reduce, scale as f32)
                    .map(Storage::from)
            })?;
            Ok(vec![Some(Tensor::from_storage(
                storage,
                in_shape.clone(),
                Layout::Plain,
                g.device(),
            ))])
        }))
    }

    /// The maximum along `dim` (removed from the shape) and, on the host, the index of the first
    /// maximum of each slice in row-major order of the values. NaN wins over numbers, as in
    /// PyTorch. The gradient flows to the chosen element only.
    pub fn max_dim(&self, dim: usize) -> Result<(Tensor, Vec<usize>)> {
        let x = self.plain()?;
        let dims = x.dims();
        if dim >= dims.len() {
            return Err(Error::invalid(
                "max_dim",
                format!(
                    "dimension {dim} is out of range for a rank-{} tensor of shape {}",
                    dims.len(),
                    x.shape()
                ),
            ));
        }
        let d = dims[dim];
        if d == 0 {
            return Err(Error::invalid(
                "max_dim",
                format!(
                    "dimension {dim} of shape {} is empty; its maximum is undefined",
                    x.shape()
                ),
            ));
        }
        let out_shape: Vec<usize> = dims
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != dim)
            .map(|(_, &s)| s)
            .collect();
        let (storage, idx) = dispatch!("max_dim", (v = &*x.storage()) => {
            let (vals, idx) = v.max_dim(x.shape(), dim)?;
            Ok((Storage::from(vals), idx))
        })?;
        let out = Tensor::from_storage(storage, Shape::new(out_shape), Layout::Plain, x.device());
        let in_shape = x.shape().clone();
        let saved = idx.clone();
        let out = out.with_history("max_dim", &[&x], move |ctx| {
            let g = ctx.grad.plain()?;
            let storage = dispatch!("max_dim", (gv = &*g.storage()) => {
                gv.max_dim_backward(&saved, &in_shape, dim).map(Storage::from)
            })?;
            Ok(vec![Some(Tensor::from_storage(
                storage,
                in_shape.clone(),
                Layout::Plain,
                g.device(),
            ))])
        });
        Ok((out, idx))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Layout, Rng, Tensor};

    #[test]
    fn values_on_a_small_matrix() {
        let x = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], [2, 3], Device::Cpu).unwrap();
        assert_eq!(x.sum_all().unwrap().to_vec().unwrap(), vec![21.]);
        assert_eq!(x.sum_all().unwrap().dims(), &[] as &[usize]);
        assert_eq!(x.mean_all().unwrap().to_scalar().unwrap(), 3.5);
        let s0 = x.sum_dims(&[0], false).unwrap();
        assert_eq!(
            (s0.dims(), s0.to_vec().unwrap()),
            (&[3][..], vec![5., 7., 9.])
        );
        let m1 = x.mean_dims(&[1], true).unwrap();
        assert_eq!(
            (m1.dims(), m1.to_vec().unwrap()),
            (&[2, 1][..], vec![2., 5.])
        );
        let all = x.sum_dims(&[1, 0], true).unwrap();
        assert_eq!(
            (all.dims(), all.to_vec().unwrap()),
            (&[1, 1][..], vec![21.])
        );
        let none = x.sum_dims(&[], false).unwrap();
        assert_eq!(none.to_vec().unwrap(), x.to_vec().unwrap());
    }

    /// Every subset of dims of a rank-4 tensor, against a direct index computation.
    #[test]
    fn every_dim_subset_matches_naive_and_gradients_check() {
        let mut rng = Rng::new(11);
        let dims = [2, 3, 4, 5];
        let x = rand_tensor(&mut rng, dims);
        let xv = x.to_vec().unwrap();
        for mask in 0u32..16 {
            let sel: Vec<usize> = (0..4).filter(|d| mask & (1 << d) != 0).collect();
            let count: usize = sel.iter().map(|&d| dims[d]).product();
            for keepdim in [false, true] {
                let want_shape: Vec<usize> = (0..4)
                    .filter_map(|d| match (sel.contains(&d), keepdim) {
                        (true, true) => Some(1),
                        (true, false) => None,
                        (false, _) => Some(dims[d]),
                    })
                    .collect();
                let kept_strides = {
                    let kd: Vec<usize> = (0..4)
                        .map(|d| if sel.contains(&d) { 1 } else { dims[d] })
                        .collect();
                    crate::Shape::new(kd).strides()
                };
                let mut want = vec![0f64; x.elem_count() / count];
                for (i, v) in xv.iter().enumerate() {
                    let idx = [i / 60, i / 20 % 3, i / 5 % 4, i % 5];
                    let o: usize = (0..4)
                        .filter(|d| !sel.contains(d))
                        .map(|d| idx[d] * kept_strides[d])
                        .sum();
                    want[o] += *v as f64;
                }
                let s = x.sum_dims(&sel, keepdim).unwrap();
                let m = x.mean_dims(&sel, keepdim).unwrap();
                assert_eq!(s.dims(), &want_shape[..], "{sel:?} {keepdim}");
                assert_eq!(m.dims(), &want_shape[..], "{sel:?} {keepdim}");
                for ((a, b), w) in s
                    .to_vec()
                    .unwrap()
                    .iter()
                    .zip(m.to_vec().unwrap())
                    .zip(&want)
                {
                    assert!((*a as f64 - w).abs() < 1e-5, "{sel:?}: {a} vs {w}");
                    assert!((b as f64 - w / count as f64).abs() < 1e-5, "{sel:?}: {b}");
                }
                check_grad(std::slice::from_ref(&x), |t| t[0].sum_dims(&sel, keepdim))
                    .unwrap_or_else(|e| panic!("sum {sel:?} {keepdim}: {e}"));
                check_grad(std::slice::from_ref(&x), |t| t[0].mean_dims(&sel, keepdim))
                    .unwrap_or_else(|e| panic!("mean {sel:?} {keepdim}: {e}"));
            }
        }
        check_grad(std::slice::from_ref(&x), |t| t[0].sum_all()).unwrap();
        check_grad(&[x], |t| t[0].mean_all()).unwrap();
    }

    #[test]
    fn blocked_inputs_are_reduced_in_logical_order() {
        let mut rng = Rng::new(12);
        let x = rand_tensor(&mut rng, [2, 16, 2, 3]);
        let want = x.sum_dims(&[0, 2], false).unwrap().to_vec().unwrap();
        let xb = x.to_layout(Layout::Blocked16).unwrap();
        assert_eq!(xb.sum_dims(&[0, 2], false).unwrap().to_vec().unwrap(), want);
        check_grad(&[x], |t| {
            t[0].to_layout(Layout::Blocked16)?.mean_dims(&[1, 3], true)
        })
        .unwrap();
    }

    #[test]
    fn max_dim_values_indices_and_gradient() {
        let x = Tensor::from_vec(vec![1., 9., 3., 4., 0., 6.], [2, 3], Device::Cpu).unwrap();
        let (v, i) = x.max_dim(1).unwrap();
        assert_eq!((v.to_vec().unwrap(), i), (vec![9., 6.], vec![1, 2]));
        let (v, i) = x.max_dim(0).unwrap();
        assert_eq!((v.to_vec().unwrap(), i), (vec![4., 9., 6.], vec![1, 0, 1]));
        let mut rng = Rng::new(13);
        for dim in 0..4 {
            // Distinct random normals: no ties, so the max is differentiable.
            let x = rand_tensor(&mut rng, [2, 3, 4, 5]);
            check_grad(&[x], |t| Ok(t[0].max_dim(dim)?.0)).unwrap_or_else(|e| panic!("{dim}: {e}"));
        }
    }

    #[test]
    fn empty_tensors_and_bad_dims() {
        let e = Tensor::zeros([0, 3], Device::Cpu).unwrap();
        assert_eq!(
            e.sum_dims(&[0], false).unwrap().to_vec().unwrap(),
            vec![0.; 3]
        );
        assert!(e.mean_all().unwrap().to_scalar().unwrap().is_nan());
        assert!(e.max_dim(0).unwrap_err().to_string().contains("empty"));
        let x = Tensor::zeros([2, 3], Device::Cpu).unwrap();
        let err = x.sum_dims(&[2], false).unwrap_err().to_string();
        assert!(
            err.contains("sum_dims") && err.contains("out of range"),
            "{err}"
        );
        let err = x.mean_dims(&[1, 1], true).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(x.max_dim(2).is_err());
    }
}
