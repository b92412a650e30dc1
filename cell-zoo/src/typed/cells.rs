//! Typed cells: the zoo's cells with their channel counts and map size as const generics, whose
//! `step` takes and returns [`Map`]s of those shapes. They wrap the runtime cells (same parameters,
//! same names, same kernels), so a typed model and a spec-built one compute the same thing.

use super::map::Map;
use crate::cell::{Cell, CellDims, CellInput};
use crate::cells::{
    GruCell, IntersectionRnnCell, LstmCell, LstmOptions, SimpleRnnCell, TimeDecayCell, UgrnnCell,
};
use crate::layers::BuildCtx;
use crate::rgc::RgcCell;
use crate::spec::{GeneralRgcSpec, RgcSpec};
use tensor::{Device, Result, Tensor};

/// The state of a typed cell of kind `K` whose output is `C`×`H`×`W`: only that cell kind at that
/// shape accepts it.
pub struct State<K: Cell, const C: usize, const H: usize, const W: usize> {
    inner: K::State,
}

impl<K: Cell, const C: usize, const H: usize, const W: usize> Clone for State<K, C, H, W> {
    fn clone(&self) -> Self {
        State {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Cell, const C: usize, const H: usize, const W: usize> std::fmt::Debug
    for State<K, C, H, W>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "State<{}, {C}, {H}, {W}>", std::any::type_name::<K>())
    }
}

impl<K: Cell, const C: usize, const H: usize, const W: usize> State<K, C, H, W> {
    /// The runtime state (`Tensor`, `PairState`, …).
    pub fn inner(&self) -> &K::State {
        &self.inner
    }
}

/// The zero state of `cell` for drives of `C_X` channels at `H`×`W` and batch `batch`.
fn zero_state<K: Cell, const C_X: usize, const C: usize, const H: usize, const W: usize>(
    cell: &K,
    batch: usize,
    device: Device,
) -> Result<State<K, C, H, W>> {
    let x = Tensor::zeros([batch, C_X, H, W], device)?;
    Ok(State {
        inner: cell.zero_state(&x)?,
    })
}

/// One step of `cell` on the drive `x` and the area input `u` (no feedback).
fn step<K: Cell, const C_X: usize, const C: usize, const H: usize, const W: usize>(
    cell: &K,
    x: &Map<C_X, H, W>,
    u: &Tensor,
    state: &State<K, C, H, W>,
) -> Result<(Map<C, H, W>, State<K, C, H, W>)> {
    let input = CellInput {
        x: x.tensor(),
        u,
        feedback: None,
    };
    let (y, next) = cell.step(&input, &state.inner)?;
    Ok((Map::new(y)?, State { inner: next }))
}

/// A cell that reads only its drive `x` (`C_X`×`H`×`W`) and outputs `C`×`H`×`W`: the time-decay,
/// SimpleRNN, GRU, LSTM, UGRNN and IntersectionRNN cells (see the aliases [`TimeDecay`],
/// [`SimpleRnn`], [`Gru`], [`Lstm`], [`Ugrnn`], [`IntersectionRnn`]).
#[derive(Clone, Debug)]
pub struct Recurrent<K, const C_X: usize, const C: usize, const H: usize, const W: usize> {
    cell: K,
}

impl<K: Cell, const C_X: usize, const C: usize, const H: usize, const W: usize>
    Recurrent<K, C_X, C, H, W>
{
    /// The all-zero state at batch `batch`.
    pub fn zero_state(&self, batch: usize, device: Device) -> Result<State<K, C, H, W>> {
        zero_state::<K, C_X, C, H, W>(&self.cell, batch, device)
    }

    /// One step: the output and the next state.
    pub fn step(
        &self,
        x: &Map<C_X, H, W>,
        state: &State<K, C, H, W>,
    ) -> Result<(Map<C, H, W>, State<K, C, H, W>)> {
        step(&self.cell, x, x.tensor(), state)
    }

    /// The runtime cell.
    pub fn inner(&self) -> &K {
        &self.cell
    }
}

/// `s' = m·s + x` on `C`×`H`×`W` maps.
pub type TimeDecay<const C: usize, const H: usize, const W: usize> =
    Recurrent<TimeDecayCell, C, C, H, W>;
/// `h' = ELU(LN(W_x*x + b_x + W_h*h + b_h))` from `C_X` to `C` channels.
pub type SimpleRnn<const C_X: usize, const C: usize, const H: usize, const W: usize> =
    Recurrent<SimpleRnnCell, C_X, C, H, W>;
/// ConvGRU from `C_X` to `C` channels.
pub type Gru<const C_X: usize, const C: usize, const H: usize, const W: usize> =
    Recurrent<GruCell, C_X, C, H, W>;
/// ConvLSTM from `C_X` to `C` channels (peepholes are `C`×`H`×`W`).
pub type Lstm<const C_X: usize, const C: usize, const H: usize, const W: usize> =
    Recurrent<LstmCell, C_X, C, H, W>;
/// UGRNN from `C_X` to `C` channels.
pub type Ugrnn<const C_X: usize, const C: usize, const H: usize, const W: usize> =
    Recurrent<UgrnnCell, C_X, C, H, W>;
/// IntersectionRNN on `C`×`H`×`W` maps (its output mixes `x` in, so channels are kept).
pub type IntersectionRnn<const C: usize, const H: usize, const W: usize> =
    Recurrent<IntersectionRnnCell, C, C, H, W>;

impl<const C: usize, const H: usize, const W: usize> Recurrent<TimeDecayCell, C, C, H, W> {
    /// Registers the decay `m` under `ctx.prefix`.
    pub fn new(ctx: &mut BuildCtx<'_>) -> Result<Self> {
        Ok(Recurrent {
            cell: TimeDecayCell::new(ctx)?,
        })
    }
}

impl<const C_X: usize, const C: usize, const H: usize, const W: usize>
    Recurrent<SimpleRnnCell, C_X, C, H, W>
{
    /// A `kernel×kernel` SimpleRNN, with layer norm of epsilon `eps` when `layer_norm` is
    /// `Some(eps)` ([`crate::DEFAULT_LN_EPS`], or TF1's [`crate::TF1_LN_EPS`]).
    pub fn new(ctx: &mut BuildCtx<'_>, kernel: usize, layer_norm: Option<f32>) -> Result<Self> {
        Ok(Recurrent {
            cell: SimpleRnnCell::new(ctx, C_X, C, kernel, layer_norm)?,
        })
    }
}

impl<const C_X: usize, const C: usize, const H: usize, const W: usize>
    Recurrent<GruCell, C_X, C, H, W>
{
    /// A `kernel×kernel` ConvGRU.
    pub fn new(ctx: &mut BuildCtx<'_>, kernel: usize) -> Result<Self> {
        Ok(Recurrent {
            cell: GruCell::new(ctx, C_X, C, kernel)?,
        })
    }
}

impl<const C_X: usize, const C: usize, const H: usize, const W: usize>
    Recurrent<LstmCell, C_X, C, H, W>
{
    /// A ConvLSTM with `options`.
    pub fn new(ctx: &mut BuildCtx<'_>, options: LstmOptions) -> Result<Self> {
        Ok(Recurrent {
            cell: LstmCell::new(ctx, C_X, C, (H, W), options)?,
        })
    }
}

impl<const C_X: usize, const C: usize, const H: usize, const W: usize>
    Recurrent<UgrnnCell, C_X, C, H, W>
{
    /// A `kernel×kernel` UGRNN.
    pub fn new(ctx: &mut BuildCtx<'_>, kernel: usize) -> Result<Self> {
        Ok(Recurrent {
            cell: UgrnnCell::new(ctx, C_X, C, kernel)?,
        })
    }
}

impl<const C: usize, const H: usize, const W: usize> Recurrent<IntersectionRnnCell, C, C, H, W> {
    /// A `kernel×kernel` IntersectionRNN.
    pub fn new(ctx: &mut BuildCtx<'_>, kernel: usize) -> Result<Self> {
        Ok(Recurrent {
            cell: IntersectionRnnCell::new(ctx, C, kernel)?,
        })
    }
}

/// The Reciprocal Gated Cell of an area whose input `u` has `C_IN` channels and whose conv output
/// `x` (the cell's drive) and output have `C`, all at `H`×`W` (a stride-1 area conv). Feedback
/// routed into the cell is not part of the typed API; specs with feedback edges build through
/// [`crate::CellSpec`].
#[derive(Clone, Debug)]
pub struct Rgc<const C_IN: usize, const C: usize, const H: usize, const W: usize> {
    cell: RgcCell,
}

impl<const C_IN: usize, const C: usize, const H: usize, const W: usize> Rgc<C_IN, C, H, W> {
    fn dims() -> CellDims {
        CellDims {
            x_channels: C,
            u_channels: C_IN,
            feedback_channels: 0,
            hw: (H, W),
            u_hw: (H, W),
        }
    }

    /// The hand-designed RGC (SPEC §4.7), parameters under `ctx.prefix`.
    pub fn new(ctx: &mut BuildCtx<'_>, spec: &RgcSpec) -> Result<Self> {
        Self::general(ctx, &spec.to_general(C))
    }

    /// The general, search-space RGC (SPEC §4.8) with the knobs of `spec`.
    pub fn general(ctx: &mut BuildCtx<'_>, spec: &GeneralRgcSpec) -> Result<Self> {
        Ok(Rgc {
            cell: RgcCell::new(ctx, spec, &Self::dims())?,
        })
    }

    /// The all-zero state at batch `batch`.
    pub fn zero_state(&self, batch: usize, device: Device) -> Result<State<RgcCell, C, H, W>> {
        zero_state::<RgcCell, C, C, H, W>(&self.cell, batch, device)
    }

    /// One step from the drive `x` and the area input `u`: the output and the next state. The
    /// state may be at batch 1 while `x` and `u` have the whole batch
    /// ([`Cell::reads_batch_one_state`]).
    pub fn step(
        &self,
        x: &Map<C, H, W>,
        u: &Map<C_IN, H, W>,
        state: &State<RgcCell, C, H, W>,
    ) -> Result<(Map<C, H, W>, State<RgcCell, C, H, W>)> {
        step(&self.cell, x, u.tensor(), state)
    }

    /// The runtime cell.
    pub fn inner(&self) -> &RgcCell {
        &self.cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CellSpec;
    use crate::AnyCell;
    use tensor::testing::rand_tensor;
    use tensor::{ParamStore, Rng};

    fn ctx<'a>(params: &'a mut ParamStore, rng: &'a mut Rng) -> BuildCtx<'a> {
        BuildCtx {
            params,
            prefix: "area/cell".into(),
            rng,
            device: Device::Cpu,
        }
    }

    /// A typed cell and the spec-built cell from the same seed have the same parameters and
    /// compute the same outputs.
    #[test]
    fn typed_cells_step_like_their_spec_built_twins() {
        let mut data = Rng::new(11);
        let u = Map::<3, 5, 4>::new(rand_tensor(&mut data, [2, 3, 5, 4])).unwrap();
        let x = Map::<6, 5, 4>::new(rand_tensor(&mut data, [2, 6, 5, 4])).unwrap();
        let dims = CellDims {
            x_channels: 6,
            u_channels: 3,
            feedback_channels: 0,
            hw: (5, 4),
            u_hw: (5, 4),
        };
        let runtime = |spec: &CellSpec| {
            let mut params = ParamStore::new();
            let mut rng = Rng::new(5);
            let cell = spec.build(&mut ctx(&mut params, &mut rng), &dims).unwrap();
            let input = CellInput {
                x: x.tensor(),
                u: u.tensor(),
                feedback: None,
            };
            let mut s = cell.zero_state(x.tensor()).unwrap();
            let mut y = None;
            for _ in 0..2 {
                let (out, next) = cell.step(&input, &s).unwrap();
                (y, s) = (Some(out.to_vec().unwrap()), next);
            }
            (y.unwrap(), params.len(), matches!(cell, AnyCell::Rgc(_)))
        };

        let mut params = ParamStore::new();
        let mut rng = Rng::new(5);
        let rgc =
            Rgc::<3, 6, 5, 4>::new(&mut ctx(&mut params, &mut rng), &RgcSpec::default()).unwrap();
        let mut s = rgc.zero_state(1, Device::Cpu).unwrap();
        let mut y = None;
        for _ in 0..2 {
            let (out, next) = rgc.step(&x, &u, &s).unwrap();
            (y, s) = (Some(out), next);
        }
        let (want, n, is_rgc) = runtime(&CellSpec::Rgc(RgcSpec::default()));
        assert!(is_rgc && n == params.len());
        assert_eq!(y.unwrap().tensor().to_vec().unwrap(), want);

        let mut params = ParamStore::new();
        let mut rng = Rng::new(5);
        let gru = Gru::<6, 4, 5, 4>::new(&mut ctx(&mut params, &mut rng), 3).unwrap();
        let mut s = gru.zero_state(2, Device::Cpu).unwrap();
        let mut y = None;
        for _ in 0..2 {
            let (out, next) = gru.step(&x, &s).unwrap();
            (y, s) = (Some(out), next);
        }
        let (want, n, _) = runtime(&CellSpec::Gru {
            out_channels: Some(4),
            kernel: 3,
        });
        assert_eq!(n, params.len());
        assert_eq!(y.unwrap().tensor().to_vec().unwrap(), want);
    }

    #[test]
    fn every_typed_cell_builds_and_steps() {
        let mut params = ParamStore::new();
        let mut rng = Rng::new(2);
        let mut c = ctx(&mut params, &mut rng);
        let x = Map::<4, 3, 3>::new(rand_tensor(&mut Rng::new(1), [2, 4, 3, 3])).unwrap();
        let options = LstmOptions {
            kernel: 3,
            forget_bias: 1.0,
            peepholes: true,
            layer_norm: Some(crate::DEFAULT_LN_EPS),
            init_scale: 1.0,
            bias_init: 0.0,
        };
        let td = TimeDecay::<4, 3, 3>::new(&mut c.sub("td")).unwrap();
        let sr =
            SimpleRnn::<4, 5, 3, 3>::new(&mut c.sub("sr"), 3, Some(crate::DEFAULT_LN_EPS)).unwrap();
        let lstm = Lstm::<4, 2, 3, 3>::new(&mut c.sub("lstm"), options).unwrap();
        let ug = Ugrnn::<4, 6, 3, 3>::new(&mut c.sub("ug"), 3).unwrap();
        let ir = IntersectionRnn::<4, 3, 3>::new(&mut c.sub("ir"), 3).unwrap();
        let general = Rgc::<4, 4, 3, 3>::general(
            &mut c.sub("rgc"),
            &GeneralRgcSpec {
                cell_depth: 3,
                ..GeneralRgcSpec::median()
            },
        )
        .unwrap();
        let d = Device::Cpu;
        let (y, _) = td.step(&x, &td.zero_state(2, d).unwrap()).unwrap();
        assert_eq!(y.batch(), 2);
        let (y, _) = sr.step(&x, &sr.zero_state(2, d).unwrap()).unwrap();
        assert_eq!(y.tensor().dims(), &[2, 5, 3, 3]);
        let (y, s) = lstm.step(&x, &lstm.zero_state(2, d).unwrap()).unwrap();
        assert_eq!((y.tensor().dims()[1], s.inner().c.dims()[1]), (2, 2));
        let (y, _) = ug.step(&x, &ug.zero_state(2, d).unwrap()).unwrap();
        assert_eq!(y.tensor().dims()[1], 6);
        let (y, _) = ir.step(&x, &ir.zero_state(2, d).unwrap()).unwrap();
        assert_eq!(y.tensor().dims()[1], 4);
        let (y, s) = general
            .step(&x, &x, &general.zero_state(1, d).unwrap())
            .unwrap();
        assert_eq!((y.batch(), s.inner().c.dims()), (2, &[2, 3, 3, 3][..]));
    }
}
