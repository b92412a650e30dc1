//! `topology`: ConvRNN models of the primate ventral visual stream as data and as running
//! networks.
//!
//! - [`ModelSpec`] is a model as data (serde/JSON): a feedforward chain of areas (conv → cell →
//!   optional residual tail → optional pooling), extra feedback and skip edges, and a readout.
//! - [`infer`] checks a spec and infers every shape before anything is built; errors
//!   ([`SpecError`]) name the offending area, edge or field.
//! - [`Model`] is the built network; [`Model::unroll`] is the one loop over time, with biological
//!   timing by default (every edge costs one 10 ms step), presentation schedules ([`Frames`],
//!   [`Presentation`]) and temporal [`Decoder`]s of the per-step logits.
//! - [`zoo`] has the released shallow and intermediate architectures and compact 28×28 presets;
//!   [`count`] measures parameters and FLOPs of a spec on the built model; [`regions`] says which
//!   areas of the released architectures stand for V4, pIT and cIT/aIT (the authors' map).
//! - [`typed`] writes a model in Rust with compile-time shapes (the compact RGC, equal to the
//!   spec-built one).
//!
//! The cells come from `cell-zoo`.
//!
//! ```
//! use tensor::{no_grad, Device, Tensor};
//! use topology::{zoo, Frames, Model, Needed, TimingMode, UnrollOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = zoo::get("compact_gru").ok_or("no such preset")?;
//! let json = serde_json::to_string(&spec)?; // a spec round-trips through JSON
//! assert_eq!(serde_json::from_str::<topology::ModelSpec>(&json)?, spec);
//!
//! let model = Model::new(&spec, Device::Cpu, 0)?;
//! let last = &model.shapes.areas.last().ok_or("no areas")?;
//! println!(
//!     "{} parameters; the image first reaches {} at step {}",
//!     model.num_params(),
//!     last.name,
//!     last.first_step
//! );
//!
//! let _inference = no_grad();
//! let images = Tensor::zeros([2, 1, 28, 28], Device::Cpu)?;
//! let options = UnrollOptions {
//!     steps: Some(4),
//!     mode: TimingMode::Biological,
//!     needed: Needed::AllLogits,
//! };
//! let logits = model.unroll(&Frames::image(images), &options)?.all_logits()?;
//! assert_eq!(logits.len(), 4);
//! assert_eq!(logits[3].dims(), &[2, spec.num_classes]);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod count;
pub mod decoders;
pub mod model;
pub mod regions;
pub mod schedule;
pub mod shapes;
pub mod spec;
pub mod typed;
pub mod unroll;
pub mod zoo;

pub use decoders::Decoder;
pub use model::{BuildError, Model};
pub use schedule::{Frames, Presentation, DEFAULT_BLANK};
pub use shapes::{infer, AreaShapes, ModelShapes};
pub use spec::{
    AreaSpec, ConvSpec, EdgeSpec, InputSpec, ModelSpec, PoolSpec, ReadoutKind, ReadoutSpec,
    ResidualSpec, SpecError,
};
pub use unroll::{Needed, TimingMode, UnrollOptions, Unrolled};
