//! `cell-zoo`: the recurrent cells of SPEC §4 with typed states and shape rules.
//!
//! A cell is parameters plus a typed [`Cell::State`]; it knows nothing of time, other areas or
//! devices. [`CellSpec`] is the serde form; [`CellSpec::build`] makes the cell and registers its
//! parameters; [`CellSpec::out_channels`] is its shape rule.

pub mod any;
mod build;
pub mod cell;
pub mod cells;
pub mod layers;
pub mod rgc;
pub mod spec;
pub mod typed;

pub use any::{AnyCell, AnyDrive, AnyState};
pub use cell::{Cell, CellDims, CellInput, PairState, StateTensors};
pub use layers::{activate, BuildCtx, Conv, ConvInit, LayerNorm, TemporalConv};
pub use rgc::RgcCell;
pub use spec::{
    Activation, CellSpec, ConvKnob, FeedbackEntry, GateNonlinearity, GateSpec, GeneralRgcSpec,
    RgcSpec,
};
