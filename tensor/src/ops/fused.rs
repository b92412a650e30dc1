//! Fused elementwise ops for gated recurrent cells: one pass over memory where the composed ops
//! take several (a gate's squashing, a gated state update). On the CPU each is one kernel; on other
//! devices they are composed from the plain ops, with the same results.

use crate::cpu::elementwise as cpu;
use crate::storage::Storage;
use crate::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The squashing function of a gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Squash {
    /// The logistic function, into (0, 1): gates that scale.
    Sigmoid,
    /// The hyperbolic tangent, into (−1, 1): candidate states.
    Tanh,
}

impl Tensor {
    /// `mul · f(self + shift) + add`, elementwise, in one pass (layout preserved).
    pub fn squash(&self, f: Squash, shift: f32, mul: f32, add: f32) -> Result<Tensor> {
        if !self.device().is_cpu() {
            let z = if shift != 0.0 {
                self.add_scalar(shift)?
            } else {
                self.clone()
            };
            let s = match f {
                Squash::Sigmoid => z.sigmoid()?,
                Squash::Tanh => z.tanh()?,
            };
            return if (mul, add) == (1.0, 0.0) {
                Ok(s)
            } else {
                s.affine(mul, add)
            };
        }
        let tanh = f == Squash::Tanh;
        let x = self.storage();
        let storage = Storage::Cpu(cpu::squash(x.host("squash")?, tanh, shift, mul, add));
        let out = Tensor::from_storage(storage, self.shape().clone(), self.layout(), self.device());
        Ok(out.with_history("squash", &[self], move |ctx| {
            const OP: &str = "squash backward";
            let x = &ctx.inputs[0];
            let g = ctx.grad.to_layout(x.layout())?;
            let (sx, sg) = (x.storage(), g.storage());
            let (xv, gv) = (sx.host(OP)?, sg.host(OP)?);
            let storage = Storage::Cpu(cpu::squash_backward(xv, gv, tanh, shift, mul));
            Ok(vec![Some(Tensor::from_storage(
                storage,
                x.shape().clone(),
                x.layout(),
                x.device(),
            ))])
        }))
    }

    /// `self·b + c·d`, elementwise, in one pass: the update of a gated state (`τ·s + g·a`). Four
    /// tensors of one shape on the CPU take the fused kernel (in `self`'s layout); anything else
    /// is composed from `mul` and `add` (broadcasting as they do).
    pub fn mul_add_mul(&self, b: &Tensor, c: &Tensor, d: &Tensor) -> Result<Tensor> {
        let same = [b, c, d]
            .iter()
            .all(|t| t.shape() == self.shape() && t.device() == self.device());
        if !(same && self.device().is_cpu()) {
            return self.mul(b)?.add(&c.mul(d)?);
        }
        let layout = self.layout();
        let (b, c, d) = (
            b.to_layout(layout)?,
            c.to_layout(layout)?,
            d.to_layout(layout)?,
        );
        let storage = {
            const OP: &str = "mul_add_mul";
            let (sa, sb, sc, sd) = (self.storage(), b.storage(), c.storage(), d.storage());
            let (av, bv) = (sa.host(OP)?, sb.host(OP)?);
            Storage::Cpu(cpu::mul_add_mul(av, bv, sc.host(OP)?, sd.host(OP)?))
        };
        let out = Tensor::from_storage(storage, self.shape().clone(), layout, self.device());
        Ok(
            out.with_history("mul_add_mul", &[self, &b, &c, &d], move |ctx| {
                const OP: &str = "mul_add_mul backward";
                let g = ctx.grad.to_layout(layout)?;
                let sg = g.storage();
                let gv = sg.host(OP)?;
                // d/da = g·b, d/db = g·a, d/dc = g·d, d/dd = g·c.
                let partner = [1, 0, 3, 2];
                (0..4)
                    .map(|i| {
                        if !ctx.needs_grad(i) {
                            return Ok(None);
                        }
                        let other = &ctx.inputs[partner[i]];
                        let so = other.storage();
                        let ov = so.host(OP)?;
                        Ok(Some(Tensor::from_storage(
                            Storage::Cpu(cpu::mul_same(gv, ov)),
                            other.shape().clone(),
                            layout,
                            other.device(),
                        )))
                    })
                    .collect()
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::testing::{check_grad, rand_tensor};
    use crate::Rng;

    #[test]
    fn squash_equals_the_composed_ops_exactly() {
        let x = rand_tensor(&mut Rng::new(1), [2, 16, 3, 3])
            .mul_scalar(3.0)
            .unwrap();
        for (f, shift, mul, add) in [
            (Squash::Sigmoid, 0.0, -1.0, 1.0),
            (Squash::Sigmoid, 0.5, 1.0, 0.0),
            (Squash::Tanh, -1.0, 0.5, 0.25),
        ] {
            let z = x.add_scalar(shift).unwrap();
            let s = match f {
                Squash::Sigmoid => z.sigmoid().unwrap(),
                Squash::Tanh => z.tanh().unwrap(),
            };
            let want = s.affine(mul, add).unwrap().to_vec().unwrap();
            assert_eq!(
                x.squash(f, shift, mul, add).unwrap().to_vec().unwrap(),
                want
            );
            let blocked = x.to_layout(Layout::Blocked16).unwrap();
            let got = blocked.squash(f, shift, mul, add).unwrap();
            assert_eq!(got.layout(), Layout::Blocked16);
            assert_eq!(got.to_vec().unwrap(), want);
        }
    }

    #[test]
    fn squash_gradients() {
        let mut rng = Rng::new(2);
        for f in [Squash::Sigmoid, Squash::Tanh] {
            let x = rand_tensor(&mut rng, [2, 3, 4]);
            check_grad(&[x], |t| t[0].squash(f, 0.3, -1.5, 1.0)).unwrap();
        }
    }

    #[test]
    fn mul_add_mul_equals_the_composed_ops_and_has_their_gradients() {
        let mut rng = Rng::new(3);
        let t: Vec<Tensor> = (0..4)
            .map(|_| rand_tensor(&mut rng, [2, 16, 2, 3]))
            .collect();
        let want = t[0]
            .mul(&t[1])
            .unwrap()
            .add(&t[2].mul(&t[3]).unwrap())
            .unwrap()
            .to_vec()
            .unwrap();
        let got = t[0].mul_add_mul(&t[1], &t[2], &t[3]).unwrap();
        assert_eq!(got.to_vec().unwrap(), want);
        // Mixed layouts: the result takes the first operand's.
        let b = t[1].to_layout(Layout::Blocked16).unwrap();
        let a = t[0].to_layout(Layout::Blocked16).unwrap();
        let mixed = a.mul_add_mul(&t[1], &t[2], &b).unwrap();
        assert_eq!(mixed.layout(), Layout::Blocked16);
        check_grad(&t, |v| v[0].mul_add_mul(&v[1], &v[2], &v[3])).unwrap();
        check_grad(&t, |v| {
            v[0].to_layout(Layout::Blocked16)?.mul_add_mul(
                &v[1],
                &v[2].to_layout(Layout::Blocked16)?,
                &v[3],
            )
        })
        .unwrap();
        // Broadcasting falls back to the composed ops.
        let s = rand_tensor(&mut rng, [1, 16, 1, 1]);
        let composed = t[0]
            .mul(&s)
            .unwrap()
            .add(&t[2].mul(&t[3]).unwrap())
            .unwrap();
        let fused = t[0].mul_add_mul(&s, &t[2], &t[3]).unwrap();
        assert_eq!(fused.to_vec().unwrap(), composed.to_vec().unwrap());
    }
}
