//! Softmax, log-softmax (over the last dimension) and softmax cross-entropy with label smoothing.

use crate::backend::BackendStorage;
use crate::layout::Layout;
use crate::storage::{dispatch, Storage};
use crate::{Error, Result, Shape, Tensor};

impl Tensor {
    /// Softmax over the last dimension (numerically stable: each row is shifted by its max).
    pub fn softmax(&self) -> Result<Tensor> {
        self.softmax_impl("softmax", false)
    }

    /// Log-softmax over the last dimension, `x − max − ln Σ exp(x − max)`.
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.softmax_impl("log_softmax", true)
    }

    fn softmax_impl(&self, op: &'static str, log: bool) -> Result<Tensor> {
        let x = self.plain()?;
        let Some(&k) = x.dims().last() else {
            return Err(Error::ShapeMismatch {
                op,
                expected: "a tensor of rank ≥ 1 (softmax runs over the last dimension)".into(),
                got: x.shape().clone(),
            });
        };
        if x.elem_count() == 0 {
            return Tensor::zeros(x.shape().clone(), x.device());
        }
        let storage = dispatch!(op, (v = &*x.storage()) => v.softmax(k, log).map(Storage::from))?;
        let out = Tensor::from_storage(storage, x.shape().clone(), Layout::Plain, x.device());
        Ok(out.with_history(op, &[&x], move |ctx| {
            let g = ctx.grad.plain()?;
            let y = ctx.output;
            let storage = dispatch!(op, (yv = &*y.storage(), gv = &*g.storage()) => {
                yv.softmax_backward(gv, k, log).map(Storage::from)
            })?;
            Ok(vec![Some(Tensor::from_storage(
                storage,
                y.shape().clone(),
                Layout::Plain,
                y.device(),
            ))])
        }))
    }

    /// Softmax cross-entropy of logits `[N, K]` against class indices, averaged over the batch
    /// (a scalar). With label smoothing `ls ∈ [0, 1]` the target distribution is
    /// `(1 − ls)·onehot + ls/K`, as `torch.nn.functional.cross_entropy(label_smoothing=ls)`.
    /// The backward is fused: `(softmax(x) − q) / N`.
    pub fn cross_entropy(&self, targets: &[usize], label_smoothing: f32) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        let x = self.plain()?;
        let (n, k) = x.shape().dims2(OP)?;
        if targets.len() != n {
            return Err(Error::invalid(
                OP,
                format!(
                    "{} targets for a batch of {n} logit rows (shape {})",
                    targets.len(),
                    x.shape()
                ),
            ));
        }
        if n == 0 || k == 0 {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: "logits [N, K] with N ≥ 1 and K ≥ 1".into(),
                got: x.shape().clone(),
            });
        }
        if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| t >= k) {
            return Err(Error::invalid(
                OP,
                format!("target {t} at position {i} is out of range for {k} classes"),
            ));
        }
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(Error::invalid(
                OP,
                format!("label_smoothing must lie in [0, 1], got {label_smoothing}"),
            ));
        }
        let loss = dispatch!(OP, (v = &*x.storage()) => {
            v.cross_entropy(k, targets, label_smoothing).map(Storage::from)
        })?;
        let out = Tensor::from_storage(loss, Shape::scalar(), Layout::Plain, x.device());
        let targets = targets.to_vec();
        Ok(out.with_history(OP, &[&x], move |ctx| {
            let x = &ctx.inputs[0];
            let g = ctx.grad;
            let storage = dispatch!(OP, (xv = &*x.storage(), gv = &*g.storage()) => {
                xv.cross_entropy_backward(k, &targets, label_smoothing, gv)
                    .map(Storage::from)
            })?;
            Ok(vec![Some(Tensor::from_storage(
                storage,
                Shape::from([n, k]),
                Layout::Plain,
                x.device(),
            ))])
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Rng, Tensor};

    fn naive_log_softmax(row: &[f32]) -> Vec<f64> {
        let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
        row.iter().map(|&v| v as f64 - lse).collect()
    }

    #[test]
    fn softmax_values_and_stability() {
        let x =
            Tensor::from_vec(vec![1., 2., 3., 1000., 1001., 999.], [2, 3], Device::Cpu).unwrap();
        let p = x.softmax().unwrap().to_vec().unwrap();
        let lp = x.log_softmax().unwrap().to_vec().unwrap();
        let want = naive_log_softmax(&[1., 2., 3.]);
        let want2 = naive_log_softmax(&[1., 2., 0.]); // shift invariance: the 1000s row
        for (j, w) in want.iter().chain(&want2).enumerate() {
            assert!((lp[j] as f64 - w).abs() < 1e-6, "{j}: {} vs {w}", lp[j]);
            assert!((p[j] as f64 - w.exp()).abs() < 1e-6, "{j}");
        }
    }

    #[test]
    fn softmax_gradients() {
        let mut rng = Rng::new(21);
        for shape in [&[5][..], &[3, 7], &[2, 3, 4]] {
            let x = rand_tensor(&mut rng, shape);
            check_grad(std::slice::from_ref(&x), |t| t[0].softmax())
                .unwrap_or_else(|e| panic!("{shape:?} {e}"));
            check_grad(&[x], |t| t[0].log_softmax()).unwrap_or_else(|e| panic!("{shape:?} {e}"));
        }
        let s = Tensor::scalar(1.0, Device::Cpu).unwrap();
        assert!(s.softmax().unwrap_err().to_string().contains("rank"));
    }

    #[test]
    fn cross_entropy_matches_naive_and_checks_gradients() {
        let mut rng = Rng::new(22);
        let (n, k) = (4, 6);
        let x = rand_tensor(&mut rng, [n, k]).map_values(|v| 2.0 * v);
        let targets = [0, 5, 2, 2];
        let xv = x.to_vec().unwrap();
        for ls in [0.0f32, 0.1] {
            let mut want = 0.0;
            for (r, &t) in targets.iter().enumerate() {
                let lp = naive_log_softmax(&xv[r * k..(r + 1) * k]);
                for (j, l) in lp.iter().enumerate() {
                    let q = (1.0 - ls as f64) * f64::from(u8::from(j == t)) + ls as f64 / k as f64;
                    want -= q * l;
                }
            }
            want /= n as f64;
            let got = x.cross_entropy(&targets, ls).unwrap();
            assert_eq!(got.dims(), &[] as &[usize]);
            let got = got.to_scalar().unwrap() as f64;
            assert!(
                (got - want).abs() < 1e-6 * want.abs().max(1.0),
                "{ls}: {got} vs {want}"
            );
            check_grad(std::slice::from_ref(&x), |t| {
                t[0].cross_entropy(&targets, ls)
            })
            .unwrap_or_else(|e| panic!("ls {ls}: {e}"));
            // Through a further op, so the upstream gradient is not 1.
            check_grad(std::slice::from_ref(&x), |t| {
                t[0].cross_entropy(&targets, ls)?.mul_scalar(-2.5)
            })
            .unwrap_or_else(|e| panic!("ls {ls}: {e}"));
        }
    }

    #[test]
    fn cross_entropy_errors() {
        let x = Tensor::zeros([2, 3], Device::Cpu).unwrap();
        let e = x.cross_entropy(&[0, 3], 0.0).unwrap_err().to_string();
        assert!(e.contains("out of range") && e.contains("3 classes"), "{e}");
        let e = x.cross_entropy(&[0], 0.0).unwrap_err().to_string();
        assert!(e.contains("1 targets") && e.contains("batch of 2"), "{e}");
        let e = x.cross_entropy(&[0, 1], 1.5).unwrap_err().to_string();
        assert!(e.contains("label_smoothing"), "{e}");
        assert!(x.cross_entropy(&[0, 1], f32::NAN).is_err());
        let e = Tensor::zeros([2, 3, 1], Device::Cpu)
            .unwrap()
            .cross_entropy(&[0, 1], 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank-2"), "{e}");
        let empty = Tensor::zeros([0, 3], Device::Cpu).unwrap();
        assert!(empty.cross_entropy(&[], 0.0).is_err());
        // Uniform logits: the loss is ln K whatever the smoothing.
        let l = x.cross_entropy(&[0, 2], 0.3).unwrap().to_scalar().unwrap();
        assert!((l - 3f32.ln()).abs() < 1e-6);
    }
}
