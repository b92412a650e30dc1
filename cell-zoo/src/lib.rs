//! `cell-zoo`: the convolutional recurrent cells of task-driven ConvRNN models of the ventral
//! visual stream (SPEC §4) — time-decay, SimpleRNN, GRU, LSTM, UGRNN, IntersectionRNN, the
//! hand-designed Reciprocal Gated Cell and the general RGC of the architecture search — with
//! typed states and shape rules.
//!
//! A cell is parameters plus a typed [`Cell::State`]; it knows nothing of time, other areas or
//! devices (the `topology` crate wires cells into areas and unrolls them). There are two ways to
//! build one:
//!
//! - **from data**: [`CellSpec`] is the serde form (it round-trips through JSON);
//!   [`CellSpec::build`] makes the cell ([`AnyCell`]) and registers its parameters through a
//!   [`BuildCtx`]; [`CellSpec::out_channels`] is its shape rule. Specs, the model zoo and the
//!   architecture search build cells this way.
//! - **in Rust with compile-time shapes**: [`typed`] wraps the same cells so that channel counts
//!   and map sizes are const generics, and wiring maps of one shape into a cell built for another
//!   does not compile.
//!
//! ```
//! use cell_zoo::{BuildCtx, Cell, CellDims, CellInput, CellSpec};
//! use tensor::{Device, ParamStore, Rng, Tensor};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A ConvGRU with 4 output channels, for an area whose conv outputs 8 channels on 6×6 maps.
//! let spec: CellSpec = serde_json::from_str(r#"{"type": "gru", "out_channels": 4}"#)?;
//! let dims = CellDims {
//!     x_channels: 8,
//!     u_channels: 3,
//!     feedback_channels: 0,
//!     hw: (6, 6),
//!     u_hw: (6, 6),
//! };
//! let (mut params, mut rng) = (ParamStore::new(), Rng::new(0));
//! let mut ctx = BuildCtx {
//!     params: &mut params,
//!     prefix: "v1/cell".into(),
//!     rng: &mut rng,
//!     device: Device::Cpu,
//! };
//! let cell = spec.build(&mut ctx, &dims)?;
//! assert_eq!(spec.out_channels(dims.x_channels), 4);
//! assert!(params.get("v1/cell/gates/weight").is_some());
//!
//! // Two steps on the same drive: the state carries the first into the second.
//! let x = Tensor::ones([2, 8, 6, 6], Device::Cpu)?;
//! let u = Tensor::zeros([2, 3, 6, 6], Device::Cpu)?;
//! let input = CellInput { x: &x, u: &u, feedback: None };
//! let (h1, state) = cell.step(&input, &cell.zero_state(&x)?)?;
//! let (h2, _) = cell.step(&input, &state)?;
//! assert_eq!(h2.dims(), &[2, 4, 6, 6]);
//! assert_ne!(h1.to_vec()?, h2.to_vec()?);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

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
    RgcSpec, DEFAULT_LN_EPS, TF1_LN_EPS,
};
