//! `cell-zoo`: the recurrent cells of SPEC §4 with typed states and shape rules.

pub mod spec;

pub use spec::{
    Activation, CellSpec, ConvKnob, FeedbackEntry, GateNonlinearity, GateSpec, GeneralRgcSpec,
    RgcSpec,
};
