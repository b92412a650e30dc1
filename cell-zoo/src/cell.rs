//! The `Cell` trait: parameters plus a typed state, with no knowledge of time, other areas or
//! devices. `AnyCell`/`AnyState` hold a heterogeneous list of cells for the topology.

use tensor::{Error, Result, Tensor};

/// What a cell reads at one step.
#[derive(Clone, Copy)]
pub struct CellInput<'a> {
    /// The area's conv output (the cell's drive).
    pub x: &'a Tensor,
    /// The area's input before its conv (RGC bypass and residual paths read it).
    pub u: &'a Tensor,
    /// Feedback already resized to the cell's spatial size and concatenated (cells that route
    /// feedback themselves; `None` when the area has no feedback sources).
    pub feedback: Option<&'a Tensor>,
}

/// Sizes a cell is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellDims {
    /// Channels of `x`.
    pub x_channels: usize,
    /// Channels of `u`.
    pub u_channels: usize,
    /// Channels of the feedback input (0 = none).
    pub feedback_channels: usize,
    /// Spatial size of `x` (and of the cell's states).
    pub hw: (usize, usize),
    /// Spatial size of `u`.
    pub u_hw: (usize, usize),
}

/// The part of a step's work that reads only the step's inputs (`x`, `u`, feedback), never the
/// state. An unroll that hands a cell the very same input tensors at consecutive steps (a static
/// image, the blank, zeros before the image arrives) computes it once and reuses it: the outputs
/// are bit-identical, and the gradients flowing into it are summed before its backward instead of
/// after.
#[derive(Clone, Default)]
pub enum Drive {
    /// Nothing split out: [`Cell::step_driven`] does all the work.
    #[default]
    Inline,
    /// The general RGC's input paths.
    Rgc(Box<crate::rgc::RgcDrive>),
}

/// A recurrent cell with a typed state.
pub trait Cell {
    type State: StateTensors;
    /// The all-zero state for a drive shaped like `x`.
    fn zero_state(&self, x: &Tensor) -> Result<Self::State>;
    /// One step: the output and the next state.
    fn step(&self, input: &CellInput<'_>, state: &Self::State) -> Result<(Tensor, Self::State)>;
    /// The input-only work of a step (see [`Drive`]); cells that split none out return
    /// [`Drive::Inline`].
    fn drive(&self, _input: &CellInput<'_>) -> Result<Drive> {
        Ok(Drive::Inline)
    }
    /// Whether [`Cell::step`] accepts a batch-1 state with a wider input, the state standing for
    /// every example (it is the same for all of them before the image arrives). Such a cell runs
    /// its state convs once at the first image-driven step; the others get the state repeated to
    /// the batch first.
    fn reads_batch_one_state(&self) -> bool {
        false
    }
    /// [`Cell::step`] given the [`Cell::drive`] of the same inputs.
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        _drive: &Drive,
        state: &Self::State,
    ) -> Result<(Tensor, Self::State)> {
        self.step(input, state)
    }
}

/// A boxed cell is a cell (`AnyCell` boxes the general RGC, which carries many optional paths, to
/// stay small).
impl<C: Cell> Cell for Box<C> {
    type State = C::State;
    fn zero_state(&self, x: &Tensor) -> Result<Self::State> {
        (**self).zero_state(x)
    }
    fn step(&self, input: &CellInput<'_>, state: &Self::State) -> Result<(Tensor, Self::State)> {
        (**self).step(input, state)
    }
    fn drive(&self, input: &CellInput<'_>) -> Result<Drive> {
        (**self).drive(input)
    }
    fn reads_batch_one_state(&self) -> bool {
        (**self).reads_batch_one_state()
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        drive: &Drive,
        state: &Self::State,
    ) -> Result<(Tensor, Self::State)> {
        (**self).step_driven(input, drive, state)
    }
}

/// States of an LSTM (and any two-state cell).
#[derive(Clone, Debug)]
pub struct PairState {
    pub c: Tensor,
    pub h: Tensor,
}

/// A state as a set of tensors that can be transformed together: the unroll computes an area at
/// batch 1 until the image reaches it and then widens its state to the whole batch.
pub trait StateTensors: Clone + Sized {
    /// The state with `f` applied to each of its tensors.
    fn try_map(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self>;
}

impl StateTensors for () {
    fn try_map(&self, _: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(())
    }
}

impl StateTensors for Tensor {
    fn try_map(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        f(self)
    }
}

impl StateTensors for PairState {
    fn try_map(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(PairState {
            c: f(&self.c)?,
            h: f(&self.h)?,
        })
    }
}

/// Zeros shaped like `x` but with `channels` channels, on `x`'s device.
pub fn zeros_with_channels(x: &Tensor, channels: usize) -> Result<Tensor> {
    let (n, _, h, w) = x.shape().dims4("zero_state")?;
    Tensor::zeros([n, channels, h, w], x.device())
}

/// `a∘p + (1−a)∘q`, written as `q + a∘(p − q)` (three ops instead of four).
pub fn mix(a: &Tensor, p: &Tensor, q: &Tensor) -> Result<Tensor> {
    q.add(&a.mul(&p.sub(q)?)?)
}

macro_rules! any_cell {
    ($( $variant:ident($cell:ty) ),* $(,)?) => {
        /// Any cell of the zoo.
        #[derive(Clone, Debug)]
        pub enum AnyCell { $( $variant($cell), )* }

        /// The state of any cell; each variant pairs with the cell variant of the same name.
        #[derive(Clone, Debug)]
        pub enum AnyState { $( $variant(<$cell as Cell>::State), )* }

        impl StateTensors for AnyState {
            fn try_map(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
                Ok(match self { $( AnyState::$variant(s) => AnyState::$variant(s.try_map(f)?), )* })
            }
        }

        impl AnyCell {
            pub fn zero_state(&self, x: &Tensor) -> Result<AnyState> {
                Ok(match self { $( AnyCell::$variant(c) => AnyState::$variant(c.zero_state(x)?), )* })
            }

            pub fn step(&self, input: &CellInput<'_>, state: &AnyState) -> Result<(Tensor, AnyState)> {
                self.step_driven(input, &Drive::Inline, state)
            }

            /// See [`Cell::reads_batch_one_state`].
            pub fn reads_batch_one_state(&self) -> bool {
                match self { $( AnyCell::$variant(c) => c.reads_batch_one_state(), )* }
            }

            /// See [`Cell::drive`].
            pub fn drive(&self, input: &CellInput<'_>) -> Result<Drive> {
                match self { $( AnyCell::$variant(c) => c.drive(input), )* }
            }

            /// See [`Cell::step_driven`]; with [`Drive::Inline`] it is [`AnyCell::step`].
            pub fn step_driven(
                &self,
                input: &CellInput<'_>,
                drive: &Drive,
                state: &AnyState,
            ) -> Result<(Tensor, AnyState)> {
                match (self, state) {
                    $( (AnyCell::$variant(c), AnyState::$variant(s)) => {
                        let (y, s) = c.step_driven(input, drive, s)?;
                        Ok((y, AnyState::$variant(s)))
                    } )*
                    #[allow(unreachable_patterns)]
                    _ => Err(Error::InvalidArgument {
                        op: "cell step",
                        msg: "state belongs to a different cell type".into(),
                    }),
                }
            }
        }
    };
}

impl AnyCell {
    /// Whether the cell keeps no state, so that its output is a function of the step's inputs
    /// alone.
    pub fn is_stateless(&self) -> bool {
        matches!(self, AnyCell::Identity(_))
    }
}

any_cell! {
    Identity(crate::cells::IdentityCell),
    TimeDecay(crate::cells::TimeDecayCell),
    SimpleRnn(crate::cells::SimpleRnnCell),
    Gru(crate::cells::GruCell),
    Lstm(crate::cells::LstmCell),
    Ugrnn(crate::cells::UgrnnCell),
    IntersectionRnn(crate::cells::IntersectionRnnCell),
    Rgc(Box<crate::rgc::RgcCell>),
}
