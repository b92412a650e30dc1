//! Layer normalisation over every non-batch dimension with a per-channel affine.

use crate::backend::BackendStorage;
use crate::cpu::norm::STATS;
use crate::layout::Layout;
use crate::storage::{dispatch, same_backend, Storage};
use crate::{Error, Result, Shape, Tensor};

fn check_affine(
    op: &'static str,
    what: &str,
    p: Option<&Tensor>,
    x: &Tensor,
    c: usize,
) -> Result<()> {
    let Some(p) = p else { return Ok(()) };
    x.same_device(p, op)?;
    if p.dims() != [c] {
        return Err(Error::ShapeMismatch {
            op,
            expected: format!(
                "{what} of shape [{c}] (one per channel of input {})",
                x.shape()
            ),
            got: p.shape().clone(),
        });
    }
    Ok(())
}

impl Tensor {
    /// Layer norm of `[N, C, ...]` (e.g. `[N, C, H, W]` or `[N, F]`): each sample is normalised
    /// over all its elements with the biased variance, `(x − mean) / sqrt(var + eps)`, then scaled
    /// by `gamma[c]` and shifted by `beta[c]` (channel = dimension 1; either may be omitted).
    /// Forward and backward are fused kernels; the per-sample mean and `1/sqrt(var + eps)` are
    /// saved for the backward (statistics in f64, so large offsets do not cancel).
    pub fn layer_norm(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let x = self.plain()?;
        let dims = x.dims().to_vec();
        if dims.len() < 2 {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: "a tensor [N, C, ...] of rank ≥ 2 (batch first, channels second)".into(),
                got: x.shape().clone(),
            });
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                OP,
                format!("eps must be finite and ≥ 0, got {eps}"),
            ));
        }
        let (n, c) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        check_affine(OP, "gamma", gamma, &x, c)?;
        check_affine(OP, "beta", beta, &x, c)?;
        let gamma = gamma.map(Tensor::plain).transpose()?;
        let beta = beta.map(Tensor::plain).transpose()?;
        if x.elem_count() == 0 {
            return Tensor::zeros(x.shape().clone(), x.device());
        }

        let (y, stats) = {
            let (sg, sb) = (
                gamma.as_ref().map(|t| t.storage()),
                beta.as_ref().map(|t| t.storage()),
            );
            dispatch!(OP, (xv = &*x.storage()) => {
                let (g, b) = (same_backend(OP, sg.as_deref())?, same_backend(OP, sb.as_deref())?);
                let (y, stats) = xv.layer_norm((n, c, s), g, b, eps)?;
                Ok((Storage::from(y), Storage::from(stats)))
            })?
        };
        let dev = x.device();
        let out = Tensor::from_storage(y, x.shape().clone(), Layout::Plain, dev);
        // Saved for the backward: per sample [mean, mean_lo, rstd] (see `cpu::norm`).
        let stats = Tensor::from_storage(stats, Shape::from([n, STATS]), Layout::Plain, dev);

        // Inputs recorded: x, then gamma and beta when present.
        let mut inputs = vec![&x];
        inputs.extend(gamma.as_ref());
        inputs.extend(beta.as_ref());
        let (has_gamma, has_beta) = (gamma.is_some(), beta.is_some());
        Ok(out.with_history(OP, &inputs, move |ctx| {
            let x = &ctx.inputs[0];
            let gi = has_gamma.then_some(1);
            let bi = has_beta.then_some(1 + usize::from(has_gamma));
            let need_dx = ctx.needs_grad(0);
            let need_dg = gi.is_some_and(|i| ctx.needs_grad(i));
            let need_db = bi.is_some_and(|i| ctx.needs_grad(i));
            let g = ctx.grad.plain()?;
            let gamma_t = gi.map(|i| &ctx.inputs[i]);
            let grads = {
                let (sx, sg, ss) = (x.storage(), g.storage(), stats.storage());
                let sgm = gamma_t.map(|t| t.storage());
                let need = [need_dx, need_dg, need_db];
                dispatch!(OP, (xv = &*sx, gv = &*sg, sv = &*ss) => {
                    let gamma = same_backend(OP, sgm.as_deref())?;
                    let grads = xv.layer_norm_backward(gv, sv, (n, c, s), gamma, need)?;
                    Ok(grads.map(|t| t.map(Storage::from)))
                })?
            };
            let [dx, dg, db] = grads;
            let mut out =
                vec![dx.map(|st| {
                    Tensor::from_storage(st, x.shape().clone(), Layout::Plain, x.device())
                })];
            let param =
                |st: Storage| Tensor::from_storage(st, Shape::from([c]), Layout::Plain, x.device());
            if has_gamma {
                out.push(dg.map(param));
            }
            if has_beta {
                out.push(db.map(param));
            }
            Ok(out)
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Layout, Rng, Tensor};

    /// Layer norm in f64 straight from the definition.
    fn naive(
        x: &[f32],
        n: usize,
        c: usize,
        s: usize,
        g: Option<&[f32]>,
        b: Option<&[f32]>,
        eps: f64,
    ) -> Vec<f64> {
        let m = c * s;
        let mut out = Vec::with_capacity(x.len());
        for i in 0..n {
            let xs: Vec<f64> = x[i * m..(i + 1) * m].iter().map(|&v| v as f64).collect();
            let mu = xs.iter().sum::<f64>() / m as f64;
            let var = xs.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m as f64;
            for (j, v) in xs.iter().enumerate() {
                let ch = j / s;
                let gm = g.map_or(1.0, |g| g[ch] as f64);
                let bt = b.map_or(0.0, |b| b[ch] as f64);
                out.push((v - mu) / (var + eps).sqrt() * gm + bt);
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= tol * w.abs().max(1.0),
                "{i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn values_match_naive_for_every_option() {
        let mut rng = Rng::new(31);
        for dims in [vec![3, 5], vec![2, 3, 4, 5]] {
            let (n, c) = (dims[0], dims[1]);
            let s: usize = dims[2..].iter().product();
            let x = rand_tensor(&mut rng, dims.clone()).map_values(|v| 3.0 * v + 1.0);
            let g = rand_tensor(&mut rng, [c]);
            let b = rand_tensor(&mut rng, [c]);
            let (xv, gv, bv) = (
                x.to_vec().unwrap(),
                g.to_vec().unwrap(),
                b.to_vec().unwrap(),
            );
            for (use_g, use_b) in [(false, false), (true, false), (false, true), (true, true)] {
                let y = x
                    .layer_norm(use_g.then_some(&g), use_b.then_some(&b), 1e-5)
                    .unwrap();
                assert_eq!(y.dims(), &dims[..]);
                let want = naive(
                    &xv,
                    n,
                    c,
                    s,
                    use_g.then_some(&gv[..]),
                    use_b.then_some(&bv[..]),
                    1e-5,
                );
                close(&y.to_vec().unwrap(), &want, 2e-6);
            }
        }
    }

    #[test]
    fn large_offsets_do_not_cancel() {
        // A one-pass E[x²] − E[x]² in f32 would lose all precision here (variance 1e-2 on 1e4).
        let mut rng = Rng::new(32);
        let x = rand_tensor(&mut rng, [2, 4, 3, 3]).map_values(|v| 1e4 + 0.1 * v);
        let y = x.layer_norm(None, None, 0.0).unwrap().to_vec().unwrap();
        let want = naive(&x.to_vec().unwrap(), 2, 4, 9, None, None, 0.0);
        close(&y, &want, 1e-5);
    }

    #[test]
    fn gradients_for_every_option_and_rank() {
        let mut rng = Rng::new(33);
        for dims in [vec![3, 5], vec![2, 3, 2, 3]] {
            let c = dims[1];
            let x = rand_tensor(&mut rng, dims.clone());
            let g = rand_tensor(&mut rng, [c]).map_values(|v| v + 1.0);
            let b = rand_tensor(&mut rng, [c]);
            check_grad(std::slice::from_ref(&x), |t| {
                t[0].layer_norm(None, None, 1e-5)
            })
            .unwrap_or_else(|e| panic!("{dims:?} plain: {e}"));
            check_grad(&[x.clone(), g.clone()], |t| {
                t[0].layer_norm(Some(&t[1]), None, 1e-5)
            })
            .unwrap_or_else(|e| panic!("{dims:?} gamma: {e}"));
            check_grad(&[x.clone(), b.clone()], |t| {
                t[0].layer_norm(None, Some(&t[1]), 1e-5)
            })
            .unwrap_or_else(|e| panic!("{dims:?} beta: {e}"));
            check_grad(&[x.clone(), g.clone(), b.clone()], |t| {
                t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-3)
            })
            .unwrap_or_else(|e| panic!("{dims:?} both: {e}"));
            // Parameters only (x a constant), so the dx-free backward path runs too.
            let xc = x.clone();
            check_grad(&[g.clone(), b.clone()], move |t| {
                xc.layer_norm(Some(&t[0]), Some(&t[1]), 1e-5)
            })
            .unwrap_or_else(|e| panic!("{dims:?} params only: {e}"));
        }
    }

    #[test]
    fn large_inputs_take_the_parallel_path() {
        let mut rng = Rng::new(34);
        let (n, c, s) = (3, 16, 32 * 32);
        let x = rand_tensor(&mut rng, [n, c, 32, 32]);
        let g = rand_tensor(&mut rng, [c]);
        let y = x
            .layer_norm(Some(&g), None, 1e-5)
            .unwrap()
            .to_vec()
            .unwrap();
        let want = naive(
            &x.to_vec().unwrap(),
            n,
            c,
            s,
            Some(&g.to_vec().unwrap()),
            None,
            1e-5,
        );
        close(&y, &want, 2e-6);
        let xb = x.to_layout(Layout::Blocked16).unwrap();
        assert_eq!(
            xb.layer_norm(Some(&g), None, 1e-5)
                .unwrap()
                .to_vec()
                .unwrap(),
            y
        );
        // Σ dx = 0 per sample and dbeta = Σ g: cheap invariants on the big path.
        let (xv, gv) = (x.into_variable(), g.into_variable());
        let bv = Tensor::zeros([c], Device::Cpu).unwrap().into_variable();
        let up = rand_tensor(&mut rng, [n, c, 32, 32]);
        let grads = xv
            .layer_norm(Some(&gv), Some(&bv), 1e-5)
            .unwrap()
            .backward_with_grad(&up)
            .unwrap();
        let dx = grads.get(&xv).unwrap().to_vec().unwrap();
        for i in 0..n {
            let sdx: f64 = dx[i * c * s..(i + 1) * c * s]
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!(sdx.abs() < 1e-3, "{sdx}");
        }
        let db = grads.get(&bv).unwrap().to_vec().unwrap();
        let upv = up.to_vec().unwrap();
        for ch in 0..c {
            let want: f64 = (0..n)
                .flat_map(|i| upv[(i * c + ch) * s..(i * c + ch + 1) * s].iter())
                .map(|&v| v as f64)
                .sum();
            assert!((db[ch] as f64 - want).abs() < 1e-3, "{ch}");
        }
    }

    #[test]
    fn shape_and_argument_errors() {
        let x = Tensor::zeros([2, 3, 4], Device::Cpu).unwrap();
        let g4 = Tensor::ones([4], Device::Cpu).unwrap();
        let e = x.layer_norm(Some(&g4), None, 1e-5).unwrap_err().to_string();
        assert!(
            e.contains("layer_norm") && e.contains("gamma of shape [3]") && e.contains("[4]"),
            "{e}"
        );
        let e = x.layer_norm(None, Some(&g4), 1e-5).unwrap_err().to_string();
        assert!(e.contains("beta"), "{e}");
        let v = Tensor::zeros([5], Device::Cpu).unwrap();
        assert!(v
            .layer_norm(None, None, 1e-5)
            .unwrap_err()
            .to_string()
            .contains("rank"));
        assert!(x
            .layer_norm(None, None, -1.0)
            .unwrap_err()
            .to_string()
            .contains("eps"));
        assert!(x.layer_norm(None, None, f32::NAN).is_err());
        let empty = Tensor::zeros([0, 3], Device::Cpu).unwrap();
        assert_eq!(empty.layer_norm(None, None, 1e-5).unwrap().dims(), &[0, 3]);
    }
}
