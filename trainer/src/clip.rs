//! Gradient clipping by value (the tuned LSTM's recipe, SPEC §6) and by global norm.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tensor::{Gradients, ParamStore, Tensor};

/// How gradients are clipped before each optimiser update.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GradClip {
    /// No clipping.
    #[default]
    None,
    /// Every gradient component clamped to `[-max, max]`.
    Value {
        /// The largest magnitude a component keeps.
        max: f32,
    },
    /// All gradients scaled by `max / norm` when their joint L2 norm exceeds `max`.
    Norm {
        /// The largest joint L2 norm the gradients keep.
        max: f32,
    },
}

impl GradClip {
    /// Checks that a threshold is positive and finite.
    pub fn validate(&self) -> Result<()> {
        match *self {
            GradClip::None => Ok(()),
            GradClip::Value { max } | GradClip::Norm { max } if max > 0.0 && max.is_finite() => {
                Ok(())
            }
            GradClip::Value { max } | GradClip::Norm { max } => Err(Error::Config(format!(
                "gradient clipping threshold must be > 0, got {max}"
            ))),
        }
    }

    /// Clips `grads` of `params` in place and returns the global gradient norm before clipping.
    pub fn apply(&self, params: &ParamStore, grads: &mut Gradients) -> Result<f32> {
        let _guard = tensor::no_grad();
        let present: Vec<Tensor> = params
            .iter()
            .filter(|(_, p)| grads.get(p).is_some())
            .map(|(_, p)| p.clone())
            .collect();
        let mut sq = 0f64;
        for p in &present {
            if let Some(g) = grads.get(p) {
                sq += g.sqr()?.sum_all()?.to_scalar()? as f64;
            }
        }
        let norm = sq.sqrt() as f32;
        match *self {
            GradClip::None => {}
            GradClip::Value { max } => {
                for p in &present {
                    if let Some(g) = grads.remove(p) {
                        // The engine has no clamp op: min(m, g) = m − relu(m − g) and
                        // max(−m, y) = relu(y + m) − m, both differentiable tensor ops.
                        let upper = g.affine(-1.0, max)?.relu()?.affine(-1.0, max)?;
                        let clipped = upper.add_scalar(max)?.relu()?.add_scalar(-max)?;
                        grads.insert(p, clipped);
                    }
                }
            }
            GradClip::Norm { max } => {
                if norm.is_finite() && norm > max {
                    let scale = max / (norm + 1e-6);
                    for p in &present {
                        if let Some(g) = grads.remove(p) {
                            grads.insert(p, g.mul_scalar(scale)?);
                        }
                    }
                }
            }
        }
        Ok(norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::Device;

    fn setup(c: &[f32]) -> (ParamStore, Tensor, Gradients) {
        let mut ps = ParamStore::new();
        let p = ps
            .insert("w", Tensor::zeros([c.len()], Device::Cpu).unwrap())
            .unwrap();
        let ct = Tensor::from_vec(c.to_vec(), [c.len()], Device::Cpu).unwrap();
        let g = p.mul(&ct).unwrap().sum_all().unwrap().backward().unwrap();
        (ps, p, g)
    }

    #[test]
    fn value_clipping_clamps_each_component() {
        let (ps, p, mut g) = setup(&[3.0, -0.2, -5.0, 0.5]);
        let norm = GradClip::Value { max: 0.32 }.apply(&ps, &mut g).unwrap();
        assert!((norm - (9.0f32 + 0.04 + 25.0 + 0.25).sqrt()).abs() < 1e-5);
        let v = g.get(&p).unwrap().to_vec().unwrap();
        let want = [0.32, -0.2, -0.32, 0.32];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn norm_clipping_rescales_only_above_the_threshold() {
        let (ps, p, mut g) = setup(&[3.0, 4.0]);
        let norm = GradClip::Norm { max: 1.0 }.apply(&ps, &mut g).unwrap();
        assert!((norm - 5.0).abs() < 1e-5);
        let v = g.get(&p).unwrap().to_vec().unwrap();
        assert!(
            (v[0] - 0.6).abs() < 1e-5 && (v[1] - 0.8).abs() < 1e-5,
            "{v:?}"
        );
        let (ps, p, mut g) = setup(&[0.3, 0.4]);
        GradClip::Norm { max: 1.0 }.apply(&ps, &mut g).unwrap();
        assert_eq!(g.get(&p).unwrap().to_vec().unwrap(), vec![0.3, 0.4]);
    }

    #[test]
    fn bad_thresholds_are_rejected() {
        assert!(GradClip::Norm { max: 0.0 }.validate().is_err());
        assert!(GradClip::Value { max: f32::NAN }.validate().is_err());
        assert!(GradClip::None.validate().is_ok());
    }
}
