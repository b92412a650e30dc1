//! `topology`: ConvRNN graphs as data (`ModelSpec`), their shapes, the built model, the time
//! unroll, presentation schedules, temporal decoders and the model zoo.

pub mod count;
pub mod decoders;
pub mod model;
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
