//! Typed convolutions: a [`Conv`] from `C_IN` to `C_OUT` channels whose stride is in its type, so
//! that its output size is known: stride 1 keeps the map size, stride 2 halves it ("SAME").

use super::map::{Dim, Halve, Map};
use crate::layers::{self, BuildCtx, ConvInit};
use tensor::Result;

/// A "SAME"-padded convolution from `C_IN` to `C_OUT` channels with stride `STRIDE` (1 or 2 can
/// run: those are the strides whose output size the types express); the same parameters and
/// kernels as [`layers::Conv`], which [`Conv::inner`] exposes.
#[derive(Clone, Debug)]
pub struct Conv<const C_IN: usize, const C_OUT: usize, const STRIDE: usize = 1> {
    conv: layers::Conv,
}

impl<const C_IN: usize, const C_OUT: usize, const STRIDE: usize> Conv<C_IN, C_OUT, STRIDE> {
    /// A `kernel×kernel` conv registered under `ctx.prefix/leaf` (`weight`, and `bias` when `init`
    /// has one).
    pub fn new(ctx: &mut BuildCtx<'_>, leaf: &str, kernel: usize, init: ConvInit) -> Result<Self> {
        Ok(Conv {
            conv: layers::Conv::new(ctx, leaf, C_IN, C_OUT, kernel, STRIDE, 1, init)?,
        })
    }

    /// The untyped conv (its weight and bias tensors are the registered parameters).
    pub fn inner(&self) -> &layers::Conv {
        &self.conv
    }
}

impl<const C_IN: usize, const C_OUT: usize> Conv<C_IN, C_OUT, 1> {
    /// The convolution of `x`; the map keeps its size.
    pub fn forward<const H: usize, const W: usize>(
        &self,
        x: &Map<C_IN, H, W>,
    ) -> Result<Map<C_OUT, H, W>> {
        Map::new(self.conv.forward(x.tensor())?)
    }
}

impl<const C_IN: usize, const C_OUT: usize> Conv<C_IN, C_OUT, 2> {
    /// The convolution of `x`; the size is halved, rounded up.
    pub fn forward<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &self,
        x: &Map<C_IN, H, W>,
    ) -> Result<Map<C_OUT, HO, WO>>
    where
        Dim<H>: Halve<HO>,
        Dim<W>: Halve<WO>,
    {
        Map::new(self.conv.forward(x.tensor())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::{Device, ParamStore, Rng};

    #[test]
    fn convs_keep_or_halve_the_size() {
        let mut params = ParamStore::new();
        let mut rng = Rng::new(3);
        let mut ctx = BuildCtx {
            params: &mut params,
            prefix: "area".into(),
            rng: &mut rng,
            device: Device::Cpu,
        };
        let same = Conv::<2, 3>::new(&mut ctx, "same", 3, ConvInit::lecun(true)).unwrap();
        let half = Conv::<2, 4, 2>::new(&mut ctx, "half", 3, ConvInit::lecun(false)).unwrap();
        let x = Map::<2, 7, 5>::zeros(2, Device::Cpu).unwrap();
        assert_eq!(same.forward(&x).unwrap().tensor().dims(), &[2, 3, 7, 5]);
        let y: Map<4, 4, 3> = half.forward(&x).unwrap();
        assert_eq!(y.batch(), 2);
        assert_eq!(half.inner().weight.dims(), &[4, 2, 3, 3]);
        assert!(params.get("area/same/bias").is_some() && params.get("area/half/bias").is_none());
    }
}
