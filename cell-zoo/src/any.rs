//! `AnyCell`, `AnyState` and `AnyDrive`: one enum each over the zoo's cells, generated side by side
//! from a single list, so that a topology can hold a heterogeneous list of cells. Adding a cell
//! means one line in that list; the [`Cell`] trait itself knows no cell.

use crate::cell::{Cell, CellInput, StateTensors};
use tensor::{Error, Result, Tensor};

/// The error of a state or drive handed to a cell of another kind.
fn mismatch(what: &str) -> Error {
    Error::InvalidArgument {
        op: "cell step",
        msg: format!("{what} belongs to a different cell type"),
    }
}

macro_rules! any_cell {
    ($( $(#[$doc:meta])* $variant:ident($cell:ty) ),* $(,)?) => {
        /// Any cell of the zoo.
        #[derive(Clone, Debug)]
        pub enum AnyCell { $( $(#[$doc])* $variant($cell), )* }

        /// The state of any cell; each variant pairs with the cell variant of the same name.
        #[derive(Clone, Debug)]
        pub enum AnyState { $( $(#[$doc])* $variant(<$cell as Cell>::State), )* }

        /// The drive of any cell ([`Cell::drive`]); each variant pairs with the cell variant of
        /// the same name.
        #[derive(Clone)]
        pub enum AnyDrive { $( $(#[$doc])* $variant(<$cell as Cell>::Drive), )* }

        impl StateTensors for AnyState {
            fn try_map(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
                Ok(match self { $( AnyState::$variant(s) => AnyState::$variant(s.try_map(f)?), )* })
            }
        }

        /// Dispatches to the cell of the variant; a state or drive of another variant is an
        /// error, not a panic.
        impl Cell for AnyCell {
            type State = AnyState;
            type Drive = AnyDrive;

            fn zero_state(&self, x: &Tensor) -> Result<AnyState> {
                Ok(match self { $( AnyCell::$variant(c) => AnyState::$variant(c.zero_state(x)?), )* })
            }

            fn drive(&self, input: &CellInput<'_>) -> Result<AnyDrive> {
                Ok(match self { $( AnyCell::$variant(c) => AnyDrive::$variant(c.drive(input)?), )* })
            }

            fn step_driven(
                &self,
                input: &CellInput<'_>,
                drive: &AnyDrive,
                state: &AnyState,
            ) -> Result<(Tensor, AnyState)> {
                match (self, state) {
                    $( (AnyCell::$variant(c), AnyState::$variant(s)) => {
                        let AnyDrive::$variant(d) = drive else {
                            return Err(mismatch("drive"));
                        };
                        let (y, s) = c.step_driven(input, d, s)?;
                        Ok((y, AnyState::$variant(s)))
                    } )*
                    #[allow(unreachable_patterns)]
                    _ => Err(mismatch("state")),
                }
            }

            fn step(&self, input: &CellInput<'_>, state: &AnyState) -> Result<(Tensor, AnyState)> {
                match (self, state) {
                    $( (AnyCell::$variant(c), AnyState::$variant(s)) => {
                        let (y, s) = c.step(input, s)?;
                        Ok((y, AnyState::$variant(s)))
                    } )*
                    #[allow(unreachable_patterns)]
                    _ => Err(mismatch("state")),
                }
            }

            fn reads_batch_one_state(&self) -> bool {
                match self { $( AnyCell::$variant(c) => c.reads_batch_one_state(), )* }
            }

            fn is_stateless(&self) -> bool {
                match self { $( AnyCell::$variant(c) => c.is_stateless(), )* }
            }
        }
    };
}

any_cell! {
    /// No recurrence.
    Identity(crate::cells::IdentityCell),
    /// `s' = m·s + x`.
    TimeDecay(crate::cells::TimeDecayCell),
    /// ELU of a conv of `[x, h]`.
    SimpleRnn(crate::cells::SimpleRnnCell),
    /// ConvGRU.
    Gru(crate::cells::GruCell),
    /// ConvLSTM.
    Lstm(crate::cells::LstmCell),
    /// Update-gate RNN.
    Ugrnn(crate::cells::UgrnnCell),
    /// IntersectionRNN.
    IntersectionRnn(crate::cells::IntersectionRnnCell),
    /// The (general) Reciprocal Gated Cell, boxed: it carries many optional paths.
    Rgc(Box<crate::rgc::RgcCell>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::{GruCell, IdentityCell};
    use crate::layers::BuildCtx;
    use tensor::{Device, ParamStore, Rng};

    #[test]
    fn a_state_or_drive_of_another_cell_is_an_error() {
        let mut params = ParamStore::new();
        let mut rng = Rng::new(0);
        let mut ctx = BuildCtx {
            params: &mut params,
            prefix: String::new(),
            rng: &mut rng,
            device: Device::Cpu,
        };
        let gru = AnyCell::Gru(GruCell::new(&mut ctx, 2, 2, 3).unwrap());
        let identity = AnyCell::Identity(IdentityCell);
        let x = Tensor::zeros([1, 2, 3, 3], Device::Cpu).unwrap();
        let input = CellInput {
            x: &x,
            u: &x,
            feedback: None,
        };
        let gru_state = gru.zero_state(&x).unwrap();
        let identity_drive = identity.drive(&input).unwrap();
        let e = identity.step(&input, &gru_state).unwrap_err();
        assert!(e.to_string().contains("state belongs"), "{e}");
        let e = gru
            .step_driven(&input, &identity_drive, &gru_state)
            .unwrap_err();
        assert!(e.to_string().contains("drive belongs"), "{e}");
        let gru_drive = gru.drive(&input).unwrap();
        assert!(gru.step_driven(&input, &gru_drive, &gru_state).is_ok());
        assert!(identity.is_stateless() && !gru.is_stateless());
    }
}
