//! Shapes: row-major dimension lists with the helpers ops need.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The dimensions of a tensor, outermost first (row-major: the last dimension is contiguous in a
/// [`Layout::Plain`](crate::Layout::Plain) tensor). A scalar has no dimensions. Converts from
/// arrays, slices, vectors and `()` (the scalar), so constructors take `impl Into<Shape>`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// The shape with these dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    /// The shape of a scalar: no dimensions, one element.
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }
    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// The number of dimensions (0 for a scalar).
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// The number of elements: the product of the dimensions (1 for a scalar, 0 if any is 0).
    pub fn elem_count(&self) -> usize {
        self.0.iter().product()
    }
    /// The length of dimension `i`.
    ///
    /// # Panics
    /// If `i` is not below the rank.
    pub fn dim(&self, i: usize) -> usize {
        self.0[i]
    }
    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }
    /// `(outer, d, inner)`: the product of the dimensions before `dim`, its length and the
    /// product of those after it (`dim` < rank).
    pub fn around(&self, dim: usize) -> (usize, usize, usize) {
        let d = self.dims();
        (
            d[..dim].iter().product(),
            d[dim],
            d[dim + 1..].iter().product(),
        )
    }
    /// `(n, c, h, w)` of a rank-4 shape; `op` names the caller in the error.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for any other rank.
    pub fn dims4(&self, op: &'static str) -> Result<(usize, usize, usize, usize)> {
        match self.0.as_slice() {
            &[n, c, h, w] => Ok((n, c, h, w)),
            _ => Err(Error::ShapeMismatch {
                op,
                expected: "a rank-4 NCHW tensor".into(),
                got: self.clone(),
            }),
        }
    }
    /// `(rows, cols)` of a rank-2 shape.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.0.as_slice() {
            &[r, c] => Ok((r, c)),
            _ => Err(Error::ShapeMismatch {
                op,
                expected: "a rank-2 tensor".into(),
                got: self.clone(),
            }),
        }
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape::scalar()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn around_splits_the_dimensions_at_one() {
        let s = Shape::from([2, 3, 4, 5]);
        assert_eq!(s.around(0), (1, 2, 60));
        assert_eq!(s.around(2), (6, 4, 5));
        assert_eq!(s.around(3), (24, 5, 1));
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(Shape::from([2, 3, 4]).strides(), vec![12, 4, 1]);
        assert_eq!(Shape::scalar().elem_count(), 1);
    }

    #[test]
    fn dims4_rejects_other_ranks() {
        let err = Shape::from([2, 3]).dims4("conv2d").unwrap_err();
        assert!(err.to_string().contains("rank-4"), "{err}");
    }
}
