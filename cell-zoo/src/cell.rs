//! The `Cell` trait: parameters plus a typed state and a typed drive, with no knowledge of time,
//! other areas or devices, and of no particular cell ([`crate::any`] lists the zoo's cells).

use tensor::{Result, Tensor};

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

/// A recurrent cell with a typed state and a typed drive.
///
/// A step is split in two: [`Cell::drive`], the work that reads only the step's inputs (`x`, `u`,
/// feedback) and never the state, and [`Cell::step_driven`], the rest. An unroll that hands a cell
/// the very same input tensors at consecutive steps (a static image, the blank, zeros before the
/// image arrives) computes the drive once and reuses it: the outputs are bit-identical, and the
/// gradients flowing into the drive are summed before its backward instead of after. Cells that
/// split nothing out use `()` as their drive.
pub trait Cell {
    /// What the cell carries from one step to the next.
    type State: StateTensors;
    /// The input-only part of a step (`()` when the cell splits nothing out).
    type Drive: Clone;
    /// The all-zero state for a drive shaped like `x`.
    fn zero_state(&self, x: &Tensor) -> Result<Self::State>;
    /// The input-only work of a step.
    fn drive(&self, input: &CellInput<'_>) -> Result<Self::Drive>;
    /// The rest of a step, given the [`Cell::drive`] of the same inputs: the output and the next
    /// state.
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        drive: &Self::Drive,
        state: &Self::State,
    ) -> Result<(Tensor, Self::State)>;
    /// One whole step: the output and the next state.
    fn step(&self, input: &CellInput<'_>, state: &Self::State) -> Result<(Tensor, Self::State)> {
        let drive = self.drive(input)?;
        self.step_driven(input, &drive, state)
    }
    /// Whether [`Cell::step`] accepts a batch-1 state with a wider input, the state standing for
    /// every example (it is the same for all of them before the image arrives). Such a cell runs
    /// its state convs once at the first image-driven step; the others get the state repeated to
    /// the batch first.
    fn reads_batch_one_state(&self) -> bool {
        false
    }
    /// Whether the cell keeps no state, so that its output is a function of the step's inputs
    /// alone (the unroll then reuses whole outputs, not only drives).
    fn is_stateless(&self) -> bool {
        false
    }
}

/// A boxed cell is a cell (`AnyCell` boxes the general RGC, which carries many optional paths, to
/// stay small).
impl<C: Cell> Cell for Box<C> {
    type State = C::State;
    type Drive = C::Drive;
    fn zero_state(&self, x: &Tensor) -> Result<Self::State> {
        (**self).zero_state(x)
    }
    fn drive(&self, input: &CellInput<'_>) -> Result<Self::Drive> {
        (**self).drive(input)
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        drive: &Self::Drive,
        state: &Self::State,
    ) -> Result<(Tensor, Self::State)> {
        (**self).step_driven(input, drive, state)
    }
    fn step(&self, input: &CellInput<'_>, state: &Self::State) -> Result<(Tensor, Self::State)> {
        (**self).step(input, state)
    }
    fn reads_batch_one_state(&self) -> bool {
        (**self).reads_batch_one_state()
    }
    fn is_stateless(&self) -> bool {
        (**self).is_stateless()
    }
}

/// States of an LSTM (and any two-state cell).
#[derive(Clone, Debug)]
pub struct PairState {
    /// The cell state (the LSTM's `c`, the RGC's `c`).
    pub c: Tensor,
    /// The output state, which is also the cell's output.
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
