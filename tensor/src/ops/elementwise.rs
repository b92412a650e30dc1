//! Elementwise unary and binary ops with NumPy-style broadcasting, and the reductions that undo a
//! broadcast in backward (`sum_to`) or perform one (`expand`).

use crate::backend::BackendStorage;
use crate::cpu::fastmath;
use crate::layout::Layout;
use crate::storage::{dispatch, Storage};
use crate::{Error, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};

/// A pointwise function of one tensor. The CUDA backend compiles one kernel per variant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `eˣ` (Cephes' polynomial, ≤ 2 ulp on the reduced range): infinity above 88.72 and 0
    /// below −87.34, where `f32::exp` would give subnormals.
    Exp,
    /// The natural logarithm; `-inf` at 0 and NaN below, like `f32::ln`.
    Log,
    /// The logistic function `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// The hyperbolic tangent.
    Tanh,
    /// ELU with alpha = 1.
    Elu,
    /// `max(x, 0)`; the derivative at 0 is taken as 0.
    Relu,
    /// `x²`.
    Sqr,
    /// `√x`; NaN below 0, and an infinite derivative at 0.
    Sqrt,
    /// `1 / x`; infinite at 0.
    Recip,
    /// `mul * x + add`.
    Affine {
        /// The factor.
        mul: f32,
        /// The offset.
        add: f32,
    },
}

impl UnaryOp {
    /// The function at one value (what every backend computes per element).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => fastmath::exp(x),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Tanh => fastmath::tanh(x),
            UnaryOp::Elu => {
                if x > 0.0 {
                    x
                } else {
                    fastmath::exp_m1(x)
                }
            }
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sqr => x * x,
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Affine { mul, add } => mul * x + add,
        }
    }

    /// d(loss)/dx from the input `x`, the output `y` and d(loss)/dy `g`.
    #[inline(always)]
    pub fn derivative(self, x: f32, y: f32, g: f32) -> f32 {
        match self {
            UnaryOp::Neg => -g,
            UnaryOp::Exp => g * y,
            UnaryOp::Log => g / x,
            UnaryOp::Sigmoid => g * y * (1.0 - y),
            UnaryOp::Tanh => g * (1.0 - y * y),
            UnaryOp::Elu => {
                if x > 0.0 {
                    g
                } else {
                    g * (y + 1.0)
                }
            }
            UnaryOp::Relu => {
                if x > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            UnaryOp::Sqr => 2.0 * x * g,
            UnaryOp::Sqrt => g / (2.0 * y),
            UnaryOp::Recip => -g * y * y,
            UnaryOp::Affine { mul, .. } => mul * g,
        }
    }

    /// The op's name, as recorded on the tape and used in error messages (`"sigmoid"`).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Elu => "elu",
            UnaryOp::Relu => "relu",
            UnaryOp::Sqr => "sqr",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Affine { .. } => "affine",
        }
    }
}

/// The logistic function `1 / (1 + e⁻ˣ)` at one value, as the engine computes it.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    fastmath::sigmoid(x)
}

/// A pointwise function of two (broadcast) tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b` (IEEE: infinite or NaN where `b` is 0).
    Div,
}

impl BinaryOp {
    /// The function at one pair of values.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
    /// The op's name, as recorded on the tape and used in error messages (`"mul"`).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

/// The NumPy broadcast of two shapes, or an error naming both.
pub fn broadcast_shape(op: &'static str, a: &Shape, b: &Shape) -> Result<Shape> {
    let rank = a.rank().max(b.rank());
    let mut dims = vec![0; rank];
    for i in 0..rank {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        dims[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::ShapeMismatch {
                    op,
                    expected: format!("a shape that broadcasts with {a}"),
                    got: b.clone(),
                })
            }
        };
    }
    Ok(Shape::new(dims))
}

fn dim_from_right(s: &Shape, k: usize) -> usize {
    if k < s.rank() {
        s.dim(s.rank() - 1 - k)
    } else {
        1
    }
}

impl Tensor {
    /// Applies `op` to every element (layout preserved).
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let out = {
            let s = self.storage();
            let storage = dispatch!(op.name(), (x = &*s) => x.unary(op).map(Storage::from))?;
            Tensor::from_storage(storage, self.shape().clone(), self.layout(), self.device())
        };
        Ok(out.with_history(op.name(), &[self], move |ctx| {
            let (x, y, g) = (&ctx.inputs[0], ctx.output, ctx.grad);
            Ok(vec![Some(unary_backward(op, x, y, g)?)])
        }))
    }

    /// `-self`, elementwise ([`UnaryOp::Neg`]; the same shape, layout and device, recorded for
    /// autodiff like every op here).
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    /// `eˣ` elementwise ([`UnaryOp::Exp`]).
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    /// The natural logarithm elementwise ([`UnaryOp::Log`]; NaN for negative values, not an error).
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    /// The logistic function elementwise ([`UnaryOp::Sigmoid`]).
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// The hyperbolic tangent elementwise ([`UnaryOp::Tanh`]).
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// ELU with alpha 1 elementwise: `x` above 0, `eˣ - 1` below ([`UnaryOp::Elu`]).
    pub fn elu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Elu)
    }
    /// `max(x, 0)` elementwise ([`UnaryOp::Relu`]).
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    /// `x²` elementwise ([`UnaryOp::Sqr`]).
    pub fn sqr(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqr)
    }
    /// `√x` elementwise ([`UnaryOp::Sqrt`]; NaN for negative values, not an error).
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    /// `1 / x` elementwise ([`UnaryOp::Recip`]).
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip)
    }
    /// `mul * self + add`.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add })
    }
    /// `self + v` elementwise (an [`UnaryOp::Affine`]).
    pub fn add_scalar(&self, v: f32) -> Result<Tensor> {
        self.affine(1.0, v)
    }
    /// `self · v` elementwise (an [`UnaryOp::Affine`]).
    pub fn mul_scalar(&self, v: f32) -> Result<Tensor> {
        self.affine(v, 0.0)
    }

    /// `self op rhs` with broadcasting. Equal shapes keep the layout of `self`; broadcasting works
    /// in the plain layout.
    pub fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        self.same_device(rhs, op.name())?;
        let out_shape = broadcast_shape(op.name(), self.shape(), rhs.shape())?;
        let (a, b) = if self.shape() == rhs.shape() {
            (self.clone(), rhs.to_layout(self.layout())?)
        } else {
            (self.plain()?, rhs.plain()?)
        };
        let out = {
            let (sa, sb) = (a.storage(), b.storage());
            let storage = dispatch!(op.name(), (x = &*sa, y = &*sb) => {
                x.binary(op, a.shape(), y, b.shape(), &out_shape)
                    .map(Storage::from)
            })?;
            Tensor::from_storage(storage, out_shape, a.layout(), a.device())
        };
        let (sa, sb) = (self.shape().clone(), rhs.shape().clone());
        Ok(out.with_history(op.name(), &[&a, &b], move |ctx| {
            let (x, y, g) = (&ctx.inputs[0], &ctx.inputs[1], ctx.grad);
            let (gx, gy) = match op {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.neg()?),
                BinaryOp::Mul => (
                    if ctx.needs_grad(0) {
                        g.mul(y)?
                    } else {
                        g.clone()
                    },
                    if ctx.needs_grad(1) {
                        g.mul(x)?
                    } else {
                        g.clone()
                    },
                ),
                BinaryOp::Div => (
                    if ctx.needs_grad(0) {
                        g.div(y)?
                    } else {
                        g.clone()
                    },
                    if ctx.needs_grad(1) {
                        // d(x/y)/dy = -(x/y)/y
                        g.mul(ctx.output)?.div(y)?.neg()?
                    } else {
                        g.clone()
                    },
                ),
            };
            Ok(vec![
                ctx.needs_grad(0).then(|| gx.sum_to(&sa)).transpose()?,
                ctx.needs_grad(1).then(|| gy.sum_to(&sb)).transpose()?,
            ])
        }))
    }

    /// `self + rhs` with NumPy broadcasting ([`Tensor::binary`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes do not broadcast, [`Error::DeviceMismatch`] when
    /// the tensors live on different devices.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, rhs)
    }
    /// `self - rhs` with broadcasting (errors as [`Tensor::add`]).
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, rhs)
    }
    /// `self · rhs` elementwise with broadcasting (errors as [`Tensor::add`]).
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, rhs)
    }
    /// `self / rhs` elementwise with broadcasting (errors as [`Tensor::add`]).
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, rhs)
    }

    /// Sums over the dimensions that broadcasting from `shape` expanded, giving a tensor of
    /// `shape` (the adjoint of [`Tensor::expand`]).
    pub fn sum_to(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let full = broadcast_shape("sum_to", shape, self.shape())?;
        if &full != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "sum_to",
                expected: format!("a shape that {} broadcasts to", shape),
                got: self.shape().clone(),
            });
        }
        let x = self.plain()?;
        let out = {
            let s = x.storage();
            let storage = dispatch!("sum_to", (v = &*s) => {
                v.sum_to(x.shape(), shape).map(Storage::from)
            })?;
            Tensor::from_storage(storage, shape.clone(), Layout::Plain, x.device())
        };
        let from = self.shape().clone();
        Ok(out.with_history("sum_to", &[&x], move |ctx| {
            Ok(vec![Some(ctx.grad.expand(&from)?)])
        }))
    }

    /// Broadcasts to `shape` (materialised; the adjoint of [`Tensor::sum_to`]).
    pub fn expand(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let full = broadcast_shape("expand", self.shape(), shape)?;
        if &full != shape {
            return Err(Error::ShapeMismatch {
                op: "expand",
                expected: format!("a shape that {} broadcasts to", self.shape()),
                got: shape.clone(),
            });
        }
        let x = self.plain()?;
        let out = {
            let s = x.storage();
            let storage = dispatch!("expand", (v = &*s) => {
                v.expand(x.shape(), shape).map(Storage::from)
            })?;
            Tensor::from_storage(storage, shape.clone(), Layout::Plain, x.device())
        };
        let from = self.shape().clone();
        Ok(out.with_history("expand", &[&x], move |ctx| {
            Ok(vec![Some(ctx.grad.sum_to(&from)?)])
        }))
    }
}

impl Tensor {
    /// `n` copies of a tensor whose first dimension is 1, stacked along that dimension, kept in the
    /// tensor's own layout (the batch is the outermost dimension of every layout). The unroll uses
    /// it to widen work done once for a whole batch; backward sums the copies ([`Tensor::sum_batch`]).
    pub fn repeat_batch(&self, n: usize) -> Result<Tensor> {
        let dims = self.dims().to_vec();
        if dims.first() != Some(&1) || n == 0 {
            return Err(Error::InvalidArgument {
                op: "repeat_batch",
                msg: format!(
                    "needs a tensor with a leading dimension of 1 and n ≥ 1, got {} and n = {n}",
                    self.shape()
                ),
            });
        }
        if n == 1 {
            return Ok(self.clone());
        }
        let m = self.shape().elem_count();
        let (one, many) = (Shape::from([1, m]), Shape::from([n, m]));
        let storage = dispatch!("repeat_batch", (v = &*self.storage()) => {
            v.expand(&one, &many).map(Storage::from)
        })?;
        let mut out_dims = dims;
        out_dims[0] = n;
        let layout = self.layout();
        let out = Tensor::from_storage(storage, Shape::new(out_dims), layout, self.device());
        Ok(out.with_history("repeat_batch", &[self], move |ctx| {
            Ok(vec![Some(ctx.grad.to_layout(layout)?.sum_batch()?)])
        }))
    }

    /// The sum over the first dimension, keeping it as a dimension of 1, in the tensor's own
    /// layout (the adjoint of [`Tensor::repeat_batch`]).
    pub fn sum_batch(&self) -> Result<Tensor> {
        let dims = self.dims().to_vec();
        let Some(&n) = dims.first() else {
            return Err(Error::InvalidArgument {
                op: "sum_batch",
                msg: "needs a tensor of rank ≥ 1, got a scalar".into(),
            });
        };
        if n == 1 {
            return Ok(self.clone());
        }
        let m = self.shape().elem_count() / n.max(1);
        let (many, one) = (Shape::from([n, m]), Shape::from([1, m]));
        let storage = dispatch!("sum_batch", (v = &*self.storage()) => {
            v.sum_to(&many, &one).map(Storage::from)
        })?;
        let mut out_dims = dims;
        out_dims[0] = 1;
        let layout = self.layout();
        let out = Tensor::from_storage(storage, Shape::new(out_dims), layout, self.device());
        Ok(out.with_history("sum_batch", &[self], move |ctx| {
            Ok(vec![Some(ctx.grad.to_layout(layout)?.repeat_batch(n)?)])
        }))
    }
}

/// The input gradient of a unary op, computed by one fused kernel.
fn unary_backward(op: UnaryOp, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let g = g.to_layout(x.layout())?;
    let (sx, sy, sg) = (x.storage(), y.storage(), g.storage());
    let storage = dispatch!(op.name(), (xb = &*sx, yb = &*sy, gb = &*sg) => {
        xb.unary_backward(op, yb, gb).map(Storage::from)
    })?;
    Ok(Tensor::from_storage(
        storage,
        x.shape().clone(),
        x.layout(),
        x.device(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Rng};

    #[test]
    fn repeat_batch_copies_in_any_layout_and_sums_back() {
        let mut rng = Rng::new(11);
        let x = rand_tensor(&mut rng, [1, 16, 3, 2]);
        let blocked = x.to_layout(Layout::Blocked16).unwrap();
        let xv = x.to_vec().unwrap();
        for t in [&x, &blocked] {
            let r = t.repeat_batch(4).unwrap();
            assert_eq!(r.dims(), &[4, 16, 3, 2]);
            assert_eq!(r.layout(), t.layout());
            let rv = r.plain().unwrap().to_vec().unwrap();
            for k in 0..4 {
                assert_eq!(&rv[k * xv.len()..(k + 1) * xv.len()], &xv[..]);
            }
            let s = r.sum_batch().unwrap();
            assert_eq!(s.layout(), t.layout());
            let sv = s.plain().unwrap().to_vec().unwrap();
            for (a, b) in sv.iter().zip(&xv) {
                assert!((a - 4.0 * b).abs() < 1e-5);
            }
        }
        assert!(rand_tensor(&mut rng, [2, 3]).repeat_batch(3).is_err());
        assert!(x.repeat_batch(0).is_err());
    }

    #[test]
    fn repeat_batch_and_sum_batch_gradients() {
        let mut rng = Rng::new(12);
        let x = rand_tensor(&mut rng, [1, 3, 2]);
        check_grad(&[x], |t| t[0].repeat_batch(3)?.tanh()).unwrap();
        let y = rand_tensor(&mut rng, [3, 2, 2]);
        check_grad(&[y], |t| t[0].sum_batch()?.tanh()).unwrap();
        let z = rand_tensor(&mut rng, [1, 16, 2, 2]);
        check_grad(&[z], |t| {
            t[0].to_layout(Layout::Blocked16)?.repeat_batch(2)?.tanh()
        })
        .unwrap();
    }

    #[test]
    fn broadcast_shapes() {
        let s = broadcast_shape("t", &Shape::from([2, 1, 4]), &Shape::from([3, 1])).unwrap();
        assert_eq!(s, Shape::from([2, 3, 4]));
        let e = broadcast_shape("add", &Shape::from([2, 3]), &Shape::from([4])).unwrap_err();
        assert!(e.to_string().contains("add"), "{e}");
    }

    #[test]
    fn binary_values_with_broadcast() {
        let a = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], [2, 3], Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![10., 20., 30.], [3], Device::Cpu).unwrap();
        assert_eq!(
            a.add(&b).unwrap().to_vec().unwrap(),
            vec![11., 22., 33., 14., 25., 36.]
        );
        let c = Tensor::from_vec(vec![2., 4.], [2, 1], Device::Cpu).unwrap();
        assert_eq!(
            a.div(&c).unwrap().to_vec().unwrap(),
            vec![0.5, 1., 1.5, 1., 1.25, 1.5]
        );
        assert_eq!(
            a.sum_to(&Shape::from([1, 3])).unwrap().to_vec().unwrap(),
            vec![5., 7., 9.]
        );
    }

    #[test]
    fn unary_gradients() {
        let mut rng = Rng::new(1);
        for op in [
            UnaryOp::Neg,
            UnaryOp::Exp,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Elu,
            UnaryOp::Relu,
            UnaryOp::Sqr,
            UnaryOp::Affine {
                mul: -1.5,
                add: 0.3,
            },
        ] {
            // Values kept away from the kinks of relu/elu at 0, where differences are undefined.
            let x = rand_tensor(&mut rng, [2, 3, 4]).map_values(|v| {
                if v.abs() < 0.05 {
                    v + 0.2
                } else {
                    v
                }
            });
            check_grad(&[x], |t| t[0].unary(op)).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
        for op in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Recip] {
            let x = rand_tensor(&mut rng, [3, 4]).map_values(|v| v.abs() + 0.5);
            check_grad(&[x], |t| t[0].unary(op)).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
    }

    #[test]
    fn binary_gradients_with_broadcasting() {
        let mut rng = Rng::new(2);
        let shapes: [(&[usize], &[usize]); 4] = [
            (&[2, 3, 4, 5], &[2, 3, 4, 5]),
            (&[2, 3, 4, 5], &[1, 3, 1, 1]),
            (&[2, 3, 4, 5], &[5]),
            (&[4, 1], &[1, 3]),
        ];
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            for (sa, sb) in shapes {
                let a = rand_tensor(&mut rng, sa);
                let b = rand_tensor(&mut rng, sb).map_values(|v| {
                    if op == BinaryOp::Div {
                        v.abs() + 0.5
                    } else {
                        v
                    }
                });
                check_grad(&[a, b], |t| t[0].binary(op, &t[1]))
                    .unwrap_or_else(|e| panic!("{op:?} {sa:?} {sb:?}: {e}"));
            }
        }
    }

    #[test]
    fn blocked_layout_is_transparent_to_elementwise_ops() {
        let mut rng = Rng::new(3);
        let a = rand_tensor(&mut rng, [2, 32, 3, 3]);
        let b = rand_tensor(&mut rng, [2, 32, 3, 3]);
        let plain = a.mul(&b).unwrap().sigmoid().unwrap().to_vec().unwrap();
        let ab = a.to_layout(Layout::Blocked16).unwrap();
        let blocked = ab.mul(&b).unwrap().sigmoid().unwrap();
        assert_eq!(blocked.layout(), Layout::Blocked16);
        assert_eq!(blocked.to_vec().unwrap(), plain);
        check_grad(&[a, b], |t| {
            t[0].to_layout(Layout::Blocked16)?.mul(&t[1])?.tanh()
        })
        .unwrap();
    }
}
