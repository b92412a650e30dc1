//! Why an import failed, naming the variables and parameters involved.

use std::fmt;

/// A TensorFlow variable whose shape disagrees with the parameter it should fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The checkpoint variable(s).
    pub variable: String,
    /// Our parameter.
    pub parameter: String,
    /// The TensorFlow shape the parameter needs.
    pub expected: Vec<usize>,
    /// The shape in the checkpoint.
    pub found: Vec<usize>,
}

/// Everything that did not line up between a checkpoint and a model, reported together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Variables the model needs that the checkpoint lacks (with the parameter each fills).
    pub missing: Vec<(String, String)>,
    /// Checkpoint variables nothing reads (training state excluded).
    pub unexpected: Vec<String>,
    /// Variables present under the expected name but with a shape the parameter cannot take.
    pub wrong_shape: Vec<ShapeMismatch>,
}

impl Mismatch {
    /// Whether everything lined up (nothing missing, left over or misshapen).
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (var, param) in &self.missing {
            writeln!(f, "  missing from the checkpoint: {var} (fills {param})")?;
        }
        for var in &self.unexpected {
            writeln!(f, "  in the checkpoint but not in the model: {var}")?;
        }
        for s in &self.wrong_shape {
            writeln!(
                f,
                "  wrong shape: {} is {:?}, but {} needs {:?}",
                s.variable, s.found, s.parameter, s.expected
            )?;
        }
        Ok(())
    }
}

/// Errors of [`crate::import`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The checkpoint files could not be read or failed their checksums.
    #[error(transparent)]
    Checkpoint(#[from] tf_checkpoint::Error),
    /// The spec does not build into a model.
    #[error(transparent)]
    Build(#[from] topology::BuildError),
    /// A tensor operation failed while converting or loading a variable.
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
    /// The checkpoint does not fit the model.
    #[error("the checkpoint does not match model `{model}`:\n{mismatch}(is it a checkpoint of `{model}`? see `cargo xtask models` for the released names)")]
    Mismatch {
        /// The name of the model (spec) the checkpoint was loaded into.
        model: String,
        /// Every variable that did not line up.
        mismatch: Mismatch,
    },
    /// A variable the reference never changes holds another value.
    #[error("checkpoint variable {variable} holds {found}, but the released models keep it at {expected} ({why})")]
    Constant {
        /// The checkpoint variable.
        variable: String,
        /// The value the released models keep it at.
        expected: f32,
        /// The value in the checkpoint.
        found: f32,
        /// Why our model relies on that value.
        why: &'static str,
    },
    /// A variable holds NaN or an infinity: a diverged or damaged model, whose every output would
    /// be NaN (and every evaluation a silent 0 %).
    #[error("checkpoint variable {variable} holds {value} at element {index}; a usable model has only finite weights (was it saved after training diverged?)")]
    NonFinite {
        /// The checkpoint variable.
        variable: String,
        /// The first non-finite element (flat, in TensorFlow's layout).
        index: usize,
        /// Its value.
        value: f32,
    },
    /// A spec feature with no counterpart in the released checkpoints.
    #[error("area `{area}`: {what} has no counterpart in the released checkpoints")]
    Unsupported {
        /// The area of the spec.
        area: String,
        /// The setting that has no counterpart.
        what: String,
    },
    /// The plan names a parameter the built model does not have (a bug in the name map).
    #[error("internal: the name map fills `{0}`, which the built model does not have")]
    NoSuchParameter(String),
    /// Parameters of the built model that nothing fills (a bug in the name map).
    #[error("internal: the name map leaves these parameters unfilled: {0:?}")]
    Unfilled(Vec<String>),
}
