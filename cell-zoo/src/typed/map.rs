//! `Map<C, H, W>`: a batch of feature maps whose channel count and size are part of its type, and
//! the type-level rule of stride-2 "SAME" layers (`Dim<H>: Halve<HO>`).

use crate::layers::activate;
use crate::spec::Activation;
use tensor::ops::{Padding, Pool2dOpts};
use tensor::{Device, Error, Result, Tensor};

/// A batch of feature maps `[N, C, H, W]` with `C`, `H` and `W` in its type, so that wiring maps
/// of one shape into a layer or cell built for another does not compile. The batch `N` is a run
/// time value: an unroll runs work that is the same for every example at batch 1.
///
/// A `Map` is checked once, when it is made from a [`Tensor`] ([`Map::new`]); the typed layers
/// and cells take and return `Map`s.
#[derive(Clone, Debug)]
pub struct Map<const C: usize, const H: usize, const W: usize> {
    tensor: Tensor,
}

impl<const C: usize, const H: usize, const W: usize> Map<C, H, W> {
    /// Wraps `tensor`, which must be `[N, C, H, W]` for some batch `N ≥ 1`.
    pub fn new(tensor: Tensor) -> Result<Self> {
        let d = tensor.dims();
        if d.len() != 4 || d[0] == 0 || d[1..] != [C, H, W] {
            return Err(Error::ShapeMismatch {
                op: "Map::new",
                expected: format!("[N ≥ 1, {C}, {H}, {W}]"),
                got: tensor.shape().clone(),
            });
        }
        Ok(Map { tensor })
    }

    /// All zeros at batch `batch`.
    pub fn zeros(batch: usize, device: Device) -> Result<Self> {
        Map::new(Tensor::zeros([batch, C, H, W], device)?)
    }

    /// The tensor.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// The tensor, unwrapped.
    pub fn into_tensor(self) -> Tensor {
        self.tensor
    }

    /// The batch size `N`.
    pub fn batch(&self) -> usize {
        self.tensor.dims()[0]
    }

    /// The map with `a` applied to every element.
    pub fn activate(&self, a: Activation) -> Result<Self> {
        Map::new(activate(&self.tensor, a)?)
    }

    /// The map repeated to batch `n` (a batch-1 map standing for every example).
    pub fn repeat_batch(&self, n: usize) -> Result<Self> {
        Map::new(self.tensor.repeat_batch(n)?)
    }

    /// 2×2 max pooling with stride 2 and "SAME" padding, the pooling of the model zoo. The output
    /// size is half the input size rounded up; any other `HO`×`WO` does not compile.
    pub fn max_pool_2x2<const HO: usize, const WO: usize>(&self) -> Result<Map<C, HO, WO>>
    where
        Dim<H>: Halve<HO>,
        Dim<W>: Halve<WO>,
    {
        let opts = Pool2dOpts {
            kernel: (2, 2),
            stride: (2, 2),
            padding: Padding::Same,
            ceil_mode: false,
        };
        Map::new(self.tensor.max_pool2d(&opts)?)
    }
}

/// A spatial size as a type, for the size rules of [`Halve`].
#[derive(Clone, Copy, Debug)]
pub struct Dim<const N: usize>;

/// `Dim<N>: Halve<M>` holds when a stride-2 "SAME" layer maps size `N` to `M = ⌈N/2⌉`.
///
/// Stable Rust cannot compute `⌈N/2⌉` in a type, so the rule is a table of impls, one per size
/// up to 1099; a wrong size is then a type error that `cargo check` reports, not a failure after
/// monomorphisation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not halve to {M}: a stride-2 \"SAME\" layer maps size N to ⌈N/2⌉",
    label = "not the halved size",
    note = "`Dim<N>: Halve<M>` holds only for M = ⌈N/2⌉, for sizes up to 1099"
)]
pub trait Halve<const M: usize> {}

macro_rules! halve_ones {
    ($h:literal $t:literal; $($o:literal)*) => {
        $( impl Halve<{ usize::div_ceil($h * 100 + $t * 10 + $o, 2) }> for Dim<{ $h * 100 + $t * 10 + $o }> {} )*
    };
}
macro_rules! halve_tens {
    ($h:literal; $($t:literal)*) => { $( halve_ones!($h $t; 0 1 2 3 4 5 6 7 8 9); )* };
}
macro_rules! halve_hundreds {
    ($($h:literal)*) => { $( halve_tens!($h; 0 1 2 3 4 5 6 7 8 9); )* };
}
halve_hundreds!(0 1 2 3 4 5 6 7 8 9 10);

#[cfg(test)]
mod tests {
    use super::*;

    fn halves<const N: usize, const M: usize>() -> bool
    where
        Dim<N>: Halve<M>,
    {
        true
    }

    #[test]
    fn the_halving_table_rounds_up() {
        assert!(halves::<1, 1>() && halves::<7, 4>() && halves::<28, 14>());
        assert!(halves::<224, 112>() && halves::<1099, 550>());
    }

    #[test]
    fn a_map_is_checked_when_made() {
        let t = Tensor::zeros([2, 3, 4, 5], Device::Cpu).unwrap();
        assert_eq!(Map::<3, 4, 5>::new(t.clone()).unwrap().batch(), 2);
        let e = Map::<3, 5, 4>::new(t).unwrap_err().to_string();
        assert!(
            e.contains("[N ≥ 1, 3, 5, 4]") && e.contains("[2, 3, 4, 5]"),
            "{e}"
        );
        let flat = Tensor::zeros([2, 60], Device::Cpu).unwrap();
        assert!(Map::<3, 4, 5>::new(flat).is_err());
        let empty = Tensor::zeros([0, 3, 4, 5], Device::Cpu).unwrap();
        assert!(Map::<3, 4, 5>::new(empty).is_err());
    }

    #[test]
    fn pooling_halves_the_size_rounding_up() {
        let x = Map::<2, 7, 6>::zeros(1, Device::Cpu).unwrap();
        let y: Map<2, 4, 3> = x.max_pool_2x2().unwrap();
        assert_eq!(y.tensor().dims(), &[1, 2, 4, 3]);
    }
}
