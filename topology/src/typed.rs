//! Models written in Rust with compile-time shapes ([`cell_zoo::typed`]): a typed readout and the
//! compact RGC of the zoo as a typed model.
//!
//! [`CompactRgc`] is `compact_rgc` (see [`crate::zoo`]) with every area's channels and map size in
//! its types. It registers the same parameter names in the same order as [`crate::Model::new`] on
//! that preset, so the same seed gives the same weights, it loads a spec-built model's parameters
//! ([`CompactRgc::load`]), and its unroll computes what [`crate::Model::unroll`] computes (a test
//! holds the two equal). The spec-built model remains the general path (JSON specs, the search,
//! schedules with blank frames, dead-work and repeated-work savings); the typed one shows the
//! same network written so that the compiler checks every connection.

use cell_zoo::typed::{Conv, Map, Rgc, State};
use cell_zoo::{Activation, BuildCtx, ConvInit, RgcCell, RgcSpec};
use tensor::{Device, Error, ParamStore, Result, Rng, Tensor};

/// Class scores `[N, K]` with the class count in the type.
#[derive(Clone, Debug)]
pub struct Logits<const K: usize> {
    tensor: Tensor,
}

impl<const K: usize> Logits<K> {
    /// Wraps `tensor`, which must be `[N, K]` for some `N ≥ 1`.
    pub fn new(tensor: Tensor) -> Result<Self> {
        let d = tensor.dims();
        if d.len() != 2 || d[0] == 0 || d[1] != K {
            return Err(Error::ShapeMismatch {
                op: "Logits::new",
                expected: format!("[N ≥ 1, {K}]"),
                got: tensor.shape().clone(),
            });
        }
        Ok(Logits { tensor })
    }

    /// The tensor.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
}

/// The `gap_fc` readout from `C` channels to `K` classes: global average pooling, then a fully
/// connected layer (weight N(0, 0.01), bias 0, as every readout of the zoo).
#[derive(Clone, Debug)]
pub struct GapFc<const C: usize, const K: usize> {
    weight: Tensor,
    bias: Tensor,
}

impl<const C: usize, const K: usize> GapFc<C, K> {
    /// Registers `weight` `[K, C]` and `bias` `[K]` under `ctx.prefix`.
    pub fn new(ctx: &mut BuildCtx<'_>) -> Result<Self> {
        Ok(GapFc {
            weight: ctx.normal("weight", &[K, C], 0.01)?,
            bias: ctx.constant("bias", &[K], 0.0)?,
        })
    }

    /// The logits of `x`.
    pub fn forward<const H: usize, const W: usize>(&self, x: &Map<C, H, W>) -> Result<Logits<K>> {
        Logits::new(
            x.tensor()
                .global_avg_pool()?
                .linear(&self.weight, Some(&self.bias))?,
        )
    }
}

/// The name of the compact RGC's readout (the reference's).
const READOUT: &str = "imnetds";

/// `compact_rgc` with compile-time shapes: 28×28 grey images, conv1 5×5 (32) → pool → 14×14,
/// conv2 3×3 (32) → RGC → pool → 7×7, conv3 3×3 (64) → RGC → pool → 4×4, GAP → FC (10). Every
/// conv is followed by ELU.
pub struct CompactRgc {
    params: ParamStore,
    conv1: Conv<1, 32>,
    conv2: Conv<32, 32>,
    cell2: Rgc<32, 32, 14, 14>,
    conv3: Conv<32, 64>,
    cell3: Rgc<32, 64, 7, 7>,
    readout: GapFc<64, 10>,
}

impl std::fmt::Debug for CompactRgc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompactRgc({} parameters)", self.params.num_elements())
    }
}

/// The image the compact RGC reads: one grey 28×28 channel.
pub type Image = Map<1, 28, 28>;

impl CompactRgc {
    /// Initialises the parameters from `seed`, exactly as [`crate::Model::new`] does for the
    /// `compact_rgc` preset.
    pub fn new(device: Device, seed: u64) -> Result<Self> {
        let mut params = ParamStore::new();
        let mut rng = Rng::new(seed);
        let mut root = BuildCtx {
            params: &mut params,
            prefix: String::new(),
            rng: &mut rng,
            device,
        };
        let bias = ConvInit::lecun(true);
        let conv1 = Conv::new(&mut root.sub("conv1"), "conv", 5, bias)?;
        let mut a2 = root.sub("conv2");
        let conv2 = Conv::new(&mut a2, "conv", 3, bias)?;
        let cell2 = Rgc::new(&mut a2.sub("cell"), &RgcSpec::default())?;
        let mut a3 = root.sub("conv3");
        let conv3 = Conv::new(&mut a3, "conv", 3, bias)?;
        let cell3 = Rgc::new(&mut a3.sub("cell"), &RgcSpec::default())?;
        let readout = GapFc::new(&mut root.sub(READOUT))?;
        Ok(CompactRgc {
            params,
            conv1,
            conv2,
            cell2,
            conv3,
            cell3,
            readout,
        })
    }

    /// The parameters, named as in the spec-built model (`conv2/cell/tau_hh/weight`, …).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Overwrites every parameter with the one of the same name in `from` (a spec-built model's
    /// store or a loaded checkpoint's); a missing name or a shape mismatch is an error.
    pub fn load(&self, from: &ParamStore) -> Result<()> {
        for (name, p) in self.params.iter() {
            let src = from.get(name).ok_or_else(|| Error::Param {
                name: name.to_string(),
                msg: "missing from the parameters to load".into(),
            })?;
            p.assign(src)?;
        }
        Ok(())
    }

    /// The logits of every step for `image` shown at every step, with biological timing: at step
    /// `t` each area reads the previous area's output of step `t − 1` (zeros at `t = 0`) and the
    /// readout reads conv3's output of step `t − 1`.
    pub fn unroll(&self, image: &Image, steps: usize) -> Result<Vec<Logits<10>>> {
        let n = image.batch();
        let device = image.tensor().device();
        let elu = Activation::Elu;
        let mut out1 = Map::<32, 14, 14>::zeros(n, device)?;
        let mut out2 = Map::<32, 7, 7>::zeros(n, device)?;
        let mut out3 = Map::<64, 4, 4>::zeros(n, device)?;
        let mut s2: State<RgcCell, 32, 14, 14> = self.cell2.zero_state(n, device)?;
        let mut s3: State<RgcCell, 64, 7, 7> = self.cell3.zero_state(n, device)?;
        let mut logits = Vec::with_capacity(steps);
        for _ in 0..steps {
            logits.push(self.readout.forward(&out3)?);
            let x3 = self.conv3.forward(&out2)?.activate(elu)?;
            let (h3, next3) = self.cell3.step(&x3, &out2, &s3)?;
            let x2 = self.conv2.forward(&out1)?.activate(elu)?;
            let (h2, next2) = self.cell2.step(&x2, &out1, &s2)?;
            out1 = self.conv1.forward(image)?.activate(elu)?.max_pool_2x2()?;
            (out2, s2) = (h2.max_pool_2x2()?, next2);
            (out3, s3) = (h3.max_pool_2x2()?, next3);
        }
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_are_checked_when_made() {
        let t = Tensor::zeros([3, 10], Device::Cpu).unwrap();
        assert!(Logits::<10>::new(t.clone()).is_ok());
        let e = Logits::<9>::new(t).unwrap_err().to_string();
        assert!(e.contains("[N ≥ 1, 9]"), "{e}");
    }

    #[test]
    fn loading_names_the_missing_parameter() {
        let m = CompactRgc::new(Device::Cpu, 0).unwrap();
        let e = m.load(&ParamStore::new()).unwrap_err().to_string();
        assert!(e.contains("conv1/conv/weight"), "{e}");
    }
}
