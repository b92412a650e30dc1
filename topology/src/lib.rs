//! `topology`: ConvRNN graphs as data (`ModelSpec`), their shapes, and the model zoo.

pub mod shapes;
pub mod spec;
pub mod zoo;

pub use shapes::{infer, AreaShapes, ModelShapes};
pub use spec::{
    AreaSpec, ConvSpec, EdgeSpec, InputSpec, ModelSpec, PoolSpec, ReadoutKind, ReadoutSpec,
    ResidualSpec, SpecError,
};
