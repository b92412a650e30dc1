//! Matrix products: `matmul` (plain and batched) and `linear` (`x·Wᵀ + b`). Every product, forward
//! and backward, is one call per matrix to the GEMM with transposed operands read in place.

use crate::backend::{BackendStorage, BatchDims, MatLayout};
use crate::layout::Layout;
use crate::storage::{dispatch, same_backend, Storage};
use crate::{Error, Result, Shape, Tensor};

/// `c[b] = op(a[b])·op(b[b])`, `c: [batch, m, n]`, as a plain tensor of `shape` on `a`'s
/// device; `a` and `b` are `batch` contiguous matrices with `cols` columns as stored, read
/// transposed when flagged.
fn product(
    a: &Tensor,
    (a_cols, a_trans): (usize, bool),
    b: &Tensor,
    (b_cols, b_trans): (usize, bool),
    dims: BatchDims,
    shape: Shape,
) -> Result<Tensor> {
    let per = |t: &Tensor| t.elem_count() / dims.batch.max(1);
    let la = MatLayout {
        stride: per(a),
        cols: a_cols,
        trans: a_trans,
    };
    let lb = MatLayout {
        stride: per(b),
        cols: b_cols,
        trans: b_trans,
    };
    let storage = dispatch!("matmul", (av = &*a.storage(), bv = &*b.storage()) => {
        av.matmul(la, bv, lb, dims).map(Storage::from)
    })?;
    Ok(Tensor::from_storage(
        storage,
        shape,
        Layout::Plain,
        a.device(),
    ))
}

fn dims(batch: usize, (m, n, k): (usize, usize, usize)) -> BatchDims {
    BatchDims { batch, m, n, k }
}

impl Tensor {
    /// Matrix product. `[M, K]·[K, N] → [M, N]`; batched `[B, M, K]·[B, K, N] → [B, M, N]`; and
    /// `[B, M, K]·[K, N] → [B, M, N]` (one right-hand matrix shared by the batch).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        const OP: &str = "matmul";
        self.same_device(rhs, OP)?;
        let (a, b) = (self.plain()?, rhs.plain()?);
        let mismatch = |expected: String| Error::ShapeMismatch {
            op: OP,
            expected,
            got: b.shape().clone(),
        };
        let (d, out_shape) = match (a.dims(), b.dims()) {
            (&[m, k], &[k2, n]) => {
                if k != k2 {
                    return Err(mismatch(format!(
                        "a right-hand side [{k}, N] for a left-hand side {}",
                        a.shape()
                    )));
                }
                (dims(1, (m, n, k)), vec![m, n])
            }
            (&[bt, m, k], &[k2, n]) => {
                if k != k2 {
                    return Err(mismatch(format!(
                        "a right-hand side [{k}, N] for a left-hand side {}",
                        a.shape()
                    )));
                }
                // The shared right-hand side makes this one product of [B·M, K] by [K, N].
                (dims(1, (bt * m, n, k)), vec![bt, m, n])
            }
            (&[bt, m, k], &[bt2, k2, n]) => {
                if bt != bt2 || k != k2 {
                    return Err(mismatch(format!(
                        "a right-hand side [{bt}, {k}, N] for a left-hand side {}",
                        a.shape()
                    )));
                }
                (dims(bt, (m, n, k)), vec![bt, m, n])
            }
            _ => {
                return Err(Error::invalid(
                    OP,
                    format!(
                    "expected [M, K]·[K, N], [B, M, K]·[B, K, N] or [B, M, K]·[K, N], got {}·{}",
                    a.shape(),
                    b.shape()
                ),
                ))
            }
        };
        let BatchDims { batch, m, n, k } = d;
        crate::flops::add(2 * (batch * m * n * k) as u64);
        let out = product(&a, (k, false), &b, (n, false), d, Shape::new(out_shape))?;
        Ok(out.with_history(OP, &[&a, &b], move |ctx| {
            let (a, b) = (&ctx.inputs[0], &ctx.inputs[1]);
            let g = ctx.grad.plain()?;
            // dA = G·Bᵀ and dB = Aᵀ·G, per batch (or over the flattened batch for a shared B).
            let da = ctx.needs_grad(0).then(|| {
                let shape = a.shape().clone();
                product(&g, (n, false), b, (n, true), dims(batch, (m, k, n)), shape)
            });
            let da = da.transpose()?;
            let db = ctx.needs_grad(1).then(|| {
                let shape = b.shape().clone();
                product(a, (k, true), &g, (n, false), dims(batch, (k, n, m)), shape)
            });
            Ok(vec![da, db.transpose()?])
        }))
    }

    /// A fully connected layer: `x·Wᵀ + bias` for `x: [N, in]`, `weight: [out, in]`,
    /// `bias: [out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "linear";
        self.same_device(weight, OP)?;
        let x = self.plain()?;
        let w = weight.plain()?;
        let (n, i) = x.shape().dims2(OP)?;
        let (o, wi) = w.shape().dims2(OP)?;
        if wi != i {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: format!("a weight [out, {i}] for an input {}", x.shape()),
                got: w.shape().clone(),
            });
        }
        let bias = match bias {
            Some(b) => {
                x.same_device(b, OP)?;
                if b.dims() != [o] {
                    return Err(Error::ShapeMismatch {
                        op: OP,
                        expected: format!("a bias of shape [{o}] for a weight {}", w.shape()),
                        got: b.shape().clone(),
                    });
                }
                Some(b.plain()?)
            }
            None => None,
        };
        crate::flops::add(2 * (n * i * o) as u64);
        let storage = {
            let sb = bias.as_ref().map(|b| b.storage());
            dispatch!(OP, (xv = &*x.storage(), wv = &*w.storage()) => {
                let bv = same_backend(OP, sb.as_deref())?;
                xv.linear(wv, bv, (n, i, o)).map(Storage::from)
            })?
        };
        let out = Tensor::from_storage(storage, Shape::from([n, o]), Layout::Plain, x.device());
        let mut inputs = vec![&x, &w];
        inputs.extend(bias.as_ref());
        Ok(out.with_history(OP, &inputs, move |ctx| {
            let (x, w) = (&ctx.inputs[0], &ctx.inputs[1]);
            let g = ctx.grad.plain()?;
            let dev = x.device();
            let grads = [
                // dx = G·W, dW = Gᵀ·x.
                ctx.needs_grad(0).then(|| {
                    let shape = x.shape().clone();
                    product(&g, (o, false), w, (i, false), dims(1, (n, i, o)), shape)
                }),
                ctx.needs_grad(1).then(|| {
                    let shape = w.shape().clone();
                    product(&g, (o, true), x, (i, false), dims(1, (o, i, n)), shape)
                }),
            ];
            let mut grads = grads
                .into_iter()
                .map(Option::transpose)
                .collect::<Result<Vec<_>>>()?;
            if ctx.inputs.len() == 3 {
                grads.push(if ctx.needs_grad(2) {
                    let storage = dispatch!(OP, (gv = &*g.storage()) => {
                        gv.sum_over(&[n, o], &[true, false], 1.0).map(Storage::from)
                    })?;
                    Some(Tensor::from_storage(
                        storage,
                        Shape::from([o]),
                        Layout::Plain,
                        dev,
                    ))
                } else {
                    None
                });
            }
            Ok(grads)
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Rng, Tensor};

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() < 1e-4 * w.abs().max(1.0),
                "{i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn matmul_values_plain_batched_and_shared() {
        let mut rng = Rng::new(41);
        let (bt, m, k, n) = (3, 4, 5, 6);
        let a = rand_tensor(&mut rng, [bt, m, k]);
        let b = rand_tensor(&mut rng, [bt, k, n]);
        let b2 = rand_tensor(&mut rng, [k, n]);
        let (av, bv, b2v) = (
            a.to_vec().unwrap(),
            b.to_vec().unwrap(),
            b2.to_vec().unwrap(),
        );
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.dims(), &[bt, m, n]);
        let cs = a.matmul(&b2).unwrap();
        assert_eq!(cs.dims(), &[bt, m, n]);
        let (cv, csv) = (c.to_vec().unwrap(), cs.to_vec().unwrap());
        for i in 0..bt {
            let aa = &av[i * m * k..(i + 1) * m * k];
            close(
                &cv[i * m * n..(i + 1) * m * n],
                &naive(aa, &bv[i * k * n..(i + 1) * k * n], m, k, n),
            );
            close(&csv[i * m * n..(i + 1) * m * n], &naive(aa, &b2v, m, k, n));
        }
        let a2 = rand_tensor(&mut rng, [m, k]);
        let c2 = a2.matmul(&b2).unwrap();
        assert_eq!(c2.dims(), &[m, n]);
        close(
            &c2.to_vec().unwrap(),
            &naive(&a2.to_vec().unwrap(), &b2v, m, k, n),
        );
    }

    #[test]
    fn matmul_gradients() {
        let mut rng = Rng::new(42);
        let cases: [(&[usize], &[usize]); 4] = [
            (&[4, 5], &[5, 3]),
            (&[1, 7], &[7, 1]),
            (&[3, 4, 5], &[3, 5, 2]),
            (&[2, 3, 4], &[4, 5]),
        ];
        for (sa, sb) in cases {
            let a = rand_tensor(&mut rng, sa);
            let b = rand_tensor(&mut rng, sb);
            check_grad(&[a, b], |t| t[0].matmul(&t[1]))
                .unwrap_or_else(|e| panic!("{sa:?}·{sb:?}: {e}"));
        }
    }

    #[test]
    fn large_products_match_naive() {
        // Above sgemm's threading threshold, with a batch of large products.
        let mut rng = Rng::new(43);
        let (bt, m, k, n) = (2, 70, 90, 80);
        let a = rand_tensor(&mut rng, [bt, m, k]);
        let b = rand_tensor(&mut rng, [bt, k, n]);
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let c = a.matmul(&b).unwrap().to_vec().unwrap();
        for i in 0..bt {
            close(
                &c[i * m * n..(i + 1) * m * n],
                &naive(
                    &av[i * m * k..(i + 1) * m * k],
                    &bv[i * k * n..(i + 1) * k * n],
                    m,
                    k,
                    n,
                ),
            );
        }
    }

    #[test]
    fn linear_values_and_gradients() {
        let mut rng = Rng::new(44);
        let (n, i, o) = (3, 5, 4);
        let x = rand_tensor(&mut rng, [n, i]);
        let w = rand_tensor(&mut rng, [o, i]);
        let b = rand_tensor(&mut rng, [o]);
        let (xv, wv, bv) = (
            x.to_vec().unwrap(),
            w.to_vec().unwrap(),
            b.to_vec().unwrap(),
        );
        let y = x.linear(&w, Some(&b)).unwrap();
        assert_eq!(y.dims(), &[n, o]);
        let y0 = x.linear(&w, None).unwrap().to_vec().unwrap();
        let y = y.to_vec().unwrap();
        for r in 0..n {
            for c in 0..o {
                let dot: f64 = (0..i)
                    .map(|p| xv[r * i + p] as f64 * wv[c * i + p] as f64)
                    .sum();
                assert!((y0[r * o + c] as f64 - dot).abs() < 1e-5);
                assert!((y[r * o + c] as f64 - dot - bv[c] as f64).abs() < 1e-5);
            }
        }
        check_grad(&[x.clone(), w.clone(), b.clone()], |t| {
            t[0].linear(&t[1], Some(&t[2]))
        })
        .unwrap();
        check_grad(&[x.clone(), w.clone()], |t| t[0].linear(&t[1], None)).unwrap();
        // Bias only tracked: the weight and input are constants.
        let (xc, wc) = (x.clone(), w.clone());
        check_grad(&[b], move |t| xc.linear(&wc, Some(&t[0]))).unwrap();
    }

    #[test]
    fn forward_flops_are_counted() {
        let z = |s: &[usize]| Tensor::zeros(s, Device::Cpu).unwrap();
        let (_, f) = crate::flops::count(|| z(&[2, 3, 4]).matmul(&z(&[2, 4, 5])));
        assert_eq!(f, 2 * 2 * 3 * 4 * 5);
        let (_, f) = crate::flops::count(|| z(&[6, 4]).linear(&z(&[3, 4]), None));
        assert_eq!(f, 2 * 6 * 4 * 3);
    }

    #[test]
    fn shape_errors_name_the_op() {
        let z = |s: &[usize]| Tensor::zeros(s, Device::Cpu).unwrap();
        let e = z(&[2, 3]).matmul(&z(&[4, 5])).unwrap_err().to_string();
        assert!(
            e.contains("matmul") && e.contains("[3, N]") && e.contains("[4, 5]"),
            "{e}"
        );
        let e = z(&[2, 2, 3])
            .matmul(&z(&[3, 3, 4]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, 3, N]"), "{e}");
        let e = z(&[3]).matmul(&z(&[3, 1])).unwrap_err().to_string();
        assert!(e.contains("matmul") && e.contains("expected"), "{e}");
        assert!(z(&[2, 3]).matmul(&z(&[2, 3, 4])).is_err());
        let e = z(&[2, 3])
            .linear(&z(&[4, 5]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("linear") && e.contains("[out, 3]"), "{e}");
        let e = z(&[2, 3])
            .linear(&z(&[4, 3]), Some(&z(&[3])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bias of shape [4]"), "{e}");
        assert!(z(&[2, 3, 1])
            .linear(&z(&[4, 3]), None)
            .unwrap_err()
            .to_string()
            .contains("rank-2"));
        // Empty dimensions are legal and give zeros.
        assert_eq!(
            z(&[2, 0]).matmul(&z(&[0, 3])).unwrap().to_vec().unwrap(),
            vec![0.; 6]
        );
    }
}
