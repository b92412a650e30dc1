//! Parameterised building blocks shared by cells and areas: convolutions (dense and
//! depthwise-separable), layer norm, and the context that names and initialises parameters.

use crate::spec::{Activation, ConvKnob};
use tensor::ops::{Conv2dOpts, Padding};
use tensor::{Device, ParamStore, Result, Rng, Tensor};

/// TF's truncated normal (±2σ) has a standard deviation of 0.8796 of its σ argument; variance
/// scaling divides by it so the realised variance is `scale / fan_in`.
const TRUNC_STD: f64 = 0.879_625_661_034_239_8;

/// Where new parameters go: a store, a name prefix, a generator and a device.
pub struct BuildCtx<'a> {
    /// The store new parameters are registered in.
    pub params: &'a mut ParamStore,
    /// The name prefix (`conv2/cell`); empty at the root.
    pub prefix: String,
    /// The generator of initial values: building in the same order from the same seed gives the
    /// same parameters.
    pub rng: &'a mut Rng,
    /// Where the parameters live.
    pub device: Device,
}

impl BuildCtx<'_> {
    /// A context whose names are `prefix/sub/...`.
    pub fn sub(&mut self, sub: &str) -> BuildCtx<'_> {
        BuildCtx {
            params: self.params,
            prefix: if self.prefix.is_empty() {
                sub.to_string()
            } else {
                format!("{}/{sub}", self.prefix)
            },
            rng: self.rng,
            device: self.device,
        }
    }

    fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}/{leaf}", self.prefix)
        }
    }

    /// A variable filled by `f`, registered under `prefix/leaf`.
    pub fn param(
        &mut self,
        leaf: &str,
        dims: &[usize],
        mut f: impl FnMut(&mut Rng) -> f32,
    ) -> Result<Tensor> {
        let name = self.name(leaf);
        // An absurd kernel or width (a hand-written spec, a search knob's range) used to end the
        // process in the allocator with no word about which parameter; refused here, it is an
        // error the run or the search trial reports.
        let n = dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
        let mut data: Vec<f32> = Vec::new();
        let Some(n) = n.filter(|&n| data.try_reserve_exact(n).is_ok()) else {
            return Err(tensor::Error::Param {
                name,
                msg: format!(
                    "its shape {dims:?} needs {:.1} GB, more memory than can be allocated; use \
                     a smaller kernel or fewer channels",
                    dims.iter().map(|&d| d as f64).product::<f64>() * 4.0 / 1e9
                ),
            });
        };
        data.extend((0..n).map(|_| f(self.rng)));
        let t = Tensor::from_vec(data, dims.to_vec(), self.device)?;
        self.params.insert(name, t)
    }

    /// Variance scaling (fan-in, truncated normal) with `scale` (1 = LeCun), SPEC §5.
    pub fn variance_scaling(
        &mut self,
        leaf: &str,
        dims: &[usize],
        fan_in: usize,
        scale: f32,
    ) -> Result<Tensor> {
        let std = (scale as f64 / fan_in.max(1) as f64).sqrt() / TRUNC_STD;
        self.param(leaf, dims, |r| (r.truncated_normal() * std) as f32)
    }

    /// A normal initialiser (the readout's N(0, 0.01)).
    pub fn normal(&mut self, leaf: &str, dims: &[usize], std: f32) -> Result<Tensor> {
        self.param(leaf, dims, |r| (r.normal() * std as f64) as f32)
    }

    /// Normal values on the context's device, not registered (to re-initialise a parameter).
    pub fn unregistered_normal(&mut self, dims: &[usize], std: f32) -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| (self.rng.normal() * std as f64) as f32)
            .collect();
        Tensor::from_vec(data, dims.to_vec(), self.device)
    }

    /// A variable filled with `value`, registered under `prefix/leaf`.
    pub fn constant(&mut self, leaf: &str, dims: &[usize], value: f32) -> Result<Tensor> {
        self.param(leaf, dims, |_| value)
    }
}

/// A "SAME"-padded 2-D convolution with optional bias.
#[derive(Clone, Debug)]
pub struct Conv {
    /// `[C_out, C_in / groups, k, k]`.
    pub weight: Tensor,
    /// `[C_out]`, when the conv has one.
    pub bias: Option<Tensor>,
    /// Stride, groups and "SAME" padding.
    pub opts: Conv2dOpts,
}

/// How a [`Conv`] is initialised.
#[derive(Clone, Copy, Debug)]
pub struct ConvInit {
    /// Variance-scaling scale of the weight (1 = LeCun).
    pub scale: f32,
    /// The bias's constant initial value; `None` for a conv without bias.
    pub bias: Option<f32>,
}

impl ConvInit {
    /// LeCun initialisation (scale 1), with a zero bias when `bias`.
    pub fn lecun(bias: bool) -> Self {
        ConvInit {
            scale: 1.0,
            bias: bias.then_some(0.0),
        }
    }
}

impl Conv {
    /// A `kernel`×`kernel` conv from `c_in` to `c_out` channels with `stride` and `groups`,
    /// registered under `ctx.prefix/leaf` (`weight`, and `bias` when `init` has one).
    // The hyper-parameters as the specs list them; a struct for them would repeat the spec types.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &mut BuildCtx<'_>,
        leaf: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        init: ConvInit,
    ) -> Result<Conv> {
        let mut ctx = ctx.sub(leaf);
        let fan_in = c_in / groups.max(1) * kernel * kernel;
        let weight = ctx.variance_scaling(
            "weight",
            &[c_out, c_in / groups.max(1), kernel, kernel],
            fan_in,
            init.scale,
        )?;
        let bias = match init.bias {
            Some(v) => Some(ctx.constant("bias", &[c_out], v)?),
            None => None,
        };
        Ok(Conv {
            weight,
            bias,
            opts: Conv2dOpts {
                stride: (stride, stride),
                padding: Padding::Same,
                dilation: (1, 1),
                groups,
            },
        })
    }

    /// The convolution of `x` (`[N, C_in, H, W]`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.opts)
    }

    /// `C_out`.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Parameters of a conv with these settings.
    pub fn param_count(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        groups: usize,
        bias: bool,
    ) -> usize {
        c_out * (c_in / groups.max(1)) * kernel * kernel + if bias { c_out } else { 0 }
    }
}

/// A temporal conv of a cell: dense, or depthwise k×k (multiplier 1, no bias) then pointwise 1×1
/// with bias. Depthwise kernels are capped at the feature-map size, as the reference does.
#[derive(Clone, Debug)]
pub enum TemporalConv {
    /// One dense conv.
    Dense(Conv),
    /// Depthwise then pointwise.
    Separable {
        /// The depthwise k×k conv (`groups = C_in`, no bias).
        depthwise: Conv,
        /// The pointwise 1×1 conv, with bias.
        pointwise: Conv,
    },
}

impl TemporalConv {
    /// Kernel size actually used on an `h×w` map.
    pub fn effective_kernel(knob: ConvKnob, hw: (usize, usize)) -> usize {
        if knob.depth_separable {
            knob.size.min(hw.0).min(hw.1).max(1)
        } else {
            knob.size
        }
    }

    /// The conv `knob` describes from `c_in` to `c_out` channels on `hw` maps, registered under
    /// `ctx.prefix/leaf` (a separable one as `leaf/depthwise` and `leaf/pointwise`).
    pub fn new(
        ctx: &mut BuildCtx<'_>,
        leaf: &str,
        knob: ConvKnob,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        init: ConvInit,
    ) -> Result<TemporalConv> {
        let k = Self::effective_kernel(knob, hw);
        if knob.depth_separable {
            let mut ctx = ctx.sub(leaf);
            let depthwise = Conv::new(
                &mut ctx,
                "depthwise",
                c_in,
                c_in,
                k,
                1,
                c_in,
                ConvInit {
                    scale: init.scale,
                    bias: None,
                },
            )?;
            let pointwise = Conv::new(&mut ctx, "pointwise", c_in, c_out, 1, 1, 1, init)?;
            Ok(TemporalConv::Separable {
                depthwise,
                pointwise,
            })
        } else {
            Ok(TemporalConv::Dense(Conv::new(
                ctx, leaf, c_in, c_out, k, 1, 1, init,
            )?))
        }
    }

    /// The convolution of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            TemporalConv::Dense(c) => c.forward(x),
            TemporalConv::Separable {
                depthwise,
                pointwise,
            } => pointwise.forward(&depthwise.forward(x)?),
        }
    }

    /// Parameters of the conv `knob` describes (0 when it is off).
    pub fn param_count(
        knob: ConvKnob,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        bias: bool,
    ) -> usize {
        if !knob.is_on() {
            return 0;
        }
        let k = Self::effective_kernel(knob, hw);
        if knob.depth_separable {
            Conv::param_count(c_in, c_in, k, c_in, false)
                + Conv::param_count(c_in, c_out, 1, 1, bias)
        } else {
            Conv::param_count(c_in, c_out, k, 1, bias)
        }
    }

    /// Multiply-adds ×2 per image on an `h×w` map.
    pub fn flops(knob: ConvKnob, c_in: usize, c_out: usize, hw: (usize, usize)) -> u64 {
        if !knob.is_on() {
            return 0;
        }
        let k = Self::effective_kernel(knob, hw) as u64;
        let area = (hw.0 * hw.1) as u64;
        if knob.depth_separable {
            2 * area * (c_in as u64 * k * k + c_in as u64 * c_out as u64)
        } else {
            2 * area * c_in as u64 * c_out as u64 * k * k
        }
    }
}

/// Layer norm over (C, H, W) with per-channel affine.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Per-channel scale `[C]`, initialised at 1.
    pub gamma: Tensor,
    /// Per-channel shift `[C]`, initialised at 0.
    pub beta: Tensor,
    /// Added to the variance ([`crate::DEFAULT_LN_EPS`], or TF1's [`crate::TF1_LN_EPS`]).
    pub eps: f32,
}

impl LayerNorm {
    /// A layer norm of `channels` channels under `ctx.prefix/leaf` (`gamma`, `beta`), adding
    /// `eps` to the variance.
    pub fn new(ctx: &mut BuildCtx<'_>, leaf: &str, channels: usize, eps: f32) -> Result<LayerNorm> {
        let mut ctx = ctx.sub(leaf);
        Ok(LayerNorm {
            gamma: ctx.constant("gamma", &[channels], 1.0)?,
            beta: ctx.constant("beta", &[channels], 0.0)?,
            eps,
        })
    }

    /// `x` normalised over (C, H, W), then scaled and shifted per channel.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(Some(&self.gamma), Some(&self.beta), self.eps)
    }
}

/// Applies a spec activation.
pub fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Identity => Ok(x.clone()),
        Activation::Elu => x.elu(),
        Activation::Relu => x.relu(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_too_large_to_allocate_is_an_error_naming_it() {
        let mut params = ParamStore::new();
        let mut rng = Rng::new(0);
        let mut ctx = BuildCtx {
            params: &mut params,
            prefix: "conv1".into(),
            rng: &mut rng,
            device: Device::Cpu,
        };
        // 2^62 values are past isize::MAX bytes, which no allocator grants on any machine.
        let err = ctx
            .constant("weight", &[1 << 31, 1 << 31], 0.0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("conv1/weight") && err.contains("more memory than can be allocated"),
            "{err}"
        );
        // A shape whose element count overflows usize.
        let err = ctx
            .normal("kernel", &[usize::MAX, 3], 1.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("conv1/kernel"), "{err}");
        let bias = ctx.constant("bias", &[4], 1.0).unwrap();
        assert_eq!(bias.to_vec().unwrap(), [1.0; 4]);
        assert_eq!(params.len(), 1);
    }
}
