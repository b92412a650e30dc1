//! Finite-difference gradient checking and random test tensors, public so that every crate that
//! writes a backward (cells, fused ops) checks it the same way.

use crate::backprop::no_grad;
use crate::{Device, Result, Rng, Shape, Tensor};

/// A CPU tensor of standard-normal values.
pub fn rand_tensor(rng: &mut Rng, shape: impl Into<Shape>) -> Tensor {
    let shape = shape.into();
    let data = (0..shape.elem_count())
        .map(|_| rng.normal() as f32)
        .collect();
    Tensor::from_vec(data, shape, Device::Cpu).expect("length matches shape by construction")
}

impl Tensor {
    /// A new plain CPU tensor with `f` applied to every value (host-side; not recorded). For
    /// preparing test inputs and data, not for model code.
    pub fn map_values(&self, f: impl Fn(f32) -> f32) -> Tensor {
        let data = self
            .to_vec()
            .map(|v| v.into_iter().map(f).collect())
            .unwrap_or_default();
        Tensor::from_vec(data, self.shape().clone(), Device::Cpu)
            .expect("length matches shape by construction")
    }
}

/// Tolerances of [`check_grad_with`].
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Central-difference step.
    pub eps: f32,
    /// Absolute tolerance: analytic and numeric derivatives agree when they differ by at most
    /// `atol + rtol · |numeric|`.
    pub atol: f64,
    /// Relative tolerance (see `atol`).
    pub rtol: f64,
    /// Largest number of elements perturbed per input (spread evenly over the tensor).
    pub max_elems: usize,
}

impl Default for GradCheck {
    /// The engine computes in f32. With inputs of order 1 and a step of 4e-3, the truncation error
    /// of a central difference is ~eps²·f'''/6 ≈ 3e-6, and f32 rounding of the outputs (relative
    /// 6e-8 per element, summed with random weights over ≤ a few thousand elements) contributes
    /// ≲ 3e-6 / (2·eps) ≈ 4e-4 to the numerical derivative. `atol = 2e-3` and `rtol = 1e-2` sit
    /// above both with margin, and far below the O(1) errors a wrong backward produces.
    fn default() -> Self {
        GradCheck {
            eps: 4e-3,
            atol: 2e-3,
            rtol: 1e-2,
            max_elems: 96,
        }
    }
}

/// Checks the recorded backward of `f` against central finite differences at `inputs`, with the
/// default tolerances. Returns a description of the first mismatch.
pub fn check_grad<F>(inputs: &[Tensor], f: F) -> std::result::Result<(), String>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    check_grad_with(GradCheck::default(), inputs, f)
}

/// [`check_grad`] with explicit tolerances.
pub fn check_grad_with<F>(
    cfg: GradCheck,
    inputs: &[Tensor],
    f: F,
) -> std::result::Result<(), String>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let err = |e: crate::Error| e.to_string();
    let vars: Vec<Tensor> = inputs.iter().map(|t| t.detach().into_variable()).collect();
    let y = f(&vars).map_err(err)?;
    // L = Σ r ∘ y with fixed random weights r, so every output element matters.
    let mut rng = Rng::new(0x5eed);
    let r: Vec<f32> = (0..y.elem_count()).map(|_| rng.normal() as f32).collect();
    let r_t = Tensor::from_vec(r.clone(), y.shape().clone(), y.device()).map_err(err)?;
    let grads = y.backward_with_grad(&r_t).map_err(err)?;
    let loss = |xs: &[Tensor]| -> std::result::Result<f64, String> {
        let _g = no_grad();
        let y = f(xs).map_err(err)?.to_vec().map_err(err)?;
        Ok(y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum())
    };
    for (i, v) in vars.iter().enumerate() {
        let analytic = match grads.get(v) {
            Some(g) => g.to_vec().map_err(err)?,
            None => vec![0.0; v.elem_count()],
        };
        let base = v.to_vec().map_err(err)?;
        let n = base.len();
        let step = (n / cfg.max_elems.max(1)).max(1);
        for j in (0..n).step_by(step) {
            let probe = |delta: f32| {
                let mut d = base.clone();
                d[j] += delta;
                let mut xs: Vec<Tensor> = vars.iter().map(|t| t.detach()).collect();
                xs[i] = Tensor::from_vec(d, v.shape().clone(), v.device())
                    .and_then(|t| t.to_layout(v.layout()))
                    .map_err(err)?;
                loss(&xs)
            };
            let numeric = (probe(cfg.eps)? - probe(-cfg.eps)?) / (2.0 * cfg.eps as f64);
            let a = analytic[j] as f64;
            if (a - numeric).abs() > cfg.atol + cfg.rtol * numeric.abs() {
                return Err(format!(
                    "input {i} element {j} of shape {}: analytic {a:.6} vs numeric {numeric:.6}",
                    v.shape()
                ));
            }
        }
    }
    Ok(())
}
