//! Compile-time-shaped cells: a typed API over the same kernels and parameters as the runtime cells.
//!
//! Channel counts and map sizes are const generics: a [`Map<C, H, W>`](Map) is a batch of
//! `C`×`H`×`W` feature maps (the batch is a run-time value), a [`Conv<C_IN, C_OUT>`](Conv) maps
//! `Map<C_IN, H, W>` to `Map<C_OUT, H, W>`, and a cell such as [`Rgc<C_IN, C, H, W>`](Rgc) steps on
//! maps of exactly its shape. Wiring a 128-channel area into a 256-channel cell, a 14×14 map into
//! a 7×7 cell, or one cell's state into another's does not compile:
//!
//! ```compile_fail
//! use cell_zoo::typed::{Map, Rgc, State};
//! use cell_zoo::RgcCell;
//! fn wire(
//!     x: &Map<128, 8, 8>,
//!     rgc: &Rgc<256, 256, 8, 8>,
//!     s: &State<RgcCell, 256, 8, 8>,
//! ) {
//!     let _ = rgc.step(x, x, s); // expected `Map<256, 8, 8>`, found `Map<128, 8, 8>`
//! }
//! ```
//!
//! Tensors become `Map`s through [`Map::new`], which checks their shape once; everything after is
//! checked by the compiler. Sizes changed by a stride-2 layer (2×2 pooling, a stride-2 conv) are
//! checked through the [`Halve`] table, also at compile time. The typed cells wrap the runtime ones
//! and register the same parameter names, so a typed model loads the parameters of a spec-built
//! one and computes the same outputs (topology's `typed` module has the compact RGC written this
//! way, and a test holding it equal to the spec-built model). Runtime specs ([`crate::CellSpec`])
//! remain the way to build models from JSON or an architecture search.

mod cells;
mod layers;
mod map;

pub use cells::{Gru, IntersectionRnn, Lstm, Recurrent, Rgc, SimpleRnn, State, TimeDecay, Ugrnn};
pub use layers::Conv;
pub use map::{Dim, Halve, Map};
