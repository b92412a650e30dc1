//! Named model parameters: an ordered map from unique names (`"conv3/cell/w_hh"`) to variables.
//!
//! The order is the order of insertion, so a model that inserts its parameters deterministically
//! gets a deterministic parameter list for optimisers, gradient all-reduce and printing. Names are
//! what checkpoints are keyed by (see [`crate::io`]).

use crate::backprop::Gradients;
use crate::{Error, Result, Tensor};
use std::collections::HashMap;

/// An ordered set of named variable tensors.
#[derive(Default)]
pub struct ParamStore {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, t)| (n, t.shape())))
            .finish()
    }
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `tensor` under `name` and returns the variable to compute with. A tensor that is
    /// not yet a variable becomes one (sharing its data); a variable is kept as it is, so gradients
    /// already keyed by it stay valid. Errors on an empty, reserved or already used name.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Result<Tensor> {
        let name = name.into();
        check_name(&name)?;
        if self.index.contains_key(&name) {
            return Err(Error::Param {
                name,
                msg: "a parameter of this name is already registered".into(),
            });
        }
        let var = if tensor.is_variable() {
            tensor
        } else {
            tensor.into_variable()
        };
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, var.clone()));
        Ok(var)
    }

    /// The variable registered under `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    /// `(name, variable)` pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Tensor)> + '_ {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Names in insertion order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no parameter is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// `(name, variable, gradient)` in insertion order; the gradient is `None` where the loss did
    /// not depend on the parameter.
    pub fn grads_for<'a>(
        &'a self,
        grads: &'a Gradients,
    ) -> impl ExactSizeIterator<Item = (&'a str, &'a Tensor, Option<&'a Tensor>)> + 'a {
        self.entries
            .iter()
            .map(move |(n, t)| (n.as_str(), t, grads.get(t)))
    }

    /// Names of the parameters that `grads` has no gradient for (a parameter the loss never
    /// reached usually means a wiring bug).
    pub fn missing_grads(&self, grads: &Gradients) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, t)| grads.get(t).is_none())
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

impl<'a> IntoIterator for &'a ParamStore {
    type Item = (&'a str, &'a Tensor);
    type IntoIter = Box<dyn ExactSizeIterator<Item = (&'a str, &'a Tensor)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Names must survive a safetensors round trip: non-empty and not the header's reserved key.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "names must not be empty"
    } else if name == crate::io::RESERVED_KEY {
        "this name is reserved for the safetensors header metadata"
    } else {
        return Ok(());
    };
    Err(Error::Param {
        name: name.to_string(),
        msg: problem.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn t(shape: &[usize]) -> Tensor {
        Tensor::ones(shape, Device::Cpu).unwrap()
    }

    #[test]
    fn keeps_insertion_order_and_counts() {
        let mut ps = ParamStore::new();
        for name in ["z/w", "a/w", "m/b"] {
            ps.insert(name, t(&[2, 3])).unwrap();
        }
        assert_eq!(ps.names().collect::<Vec<_>>(), ["z/w", "a/w", "m/b"]);
        assert_eq!(ps.len(), 3);
        assert_eq!(ps.num_elements(), 18);
        assert!(ps.get("a/w").is_some_and(|t| t.is_variable()));
        assert!(ps.get("nope").is_none());
        assert_eq!((&ps).into_iter().count(), 3);
    }

    #[test]
    fn rejects_duplicate_and_reserved_names() {
        let mut ps = ParamStore::new();
        ps.insert("w", t(&[1])).unwrap();
        let err = ps.insert("w", t(&[1])).unwrap_err().to_string();
        assert!(err.contains("`w`") && err.contains("already"), "{err}");
        assert!(ps.insert("", t(&[1])).is_err());
        assert!(ps.insert("__metadata__", t(&[1])).is_err());
        assert_eq!(ps.len(), 1);
    }

    #[test]
    fn insert_returns_the_variable_gradients_are_keyed_by() {
        let mut ps = ParamStore::new();
        let w = ps.insert("w", t(&[3])).unwrap();
        let unused = ps.insert("unused", t(&[3])).unwrap();
        assert!(unused.is_variable());
        // An existing variable keeps its identity.
        let v = t(&[3]).into_variable();
        assert_eq!(ps.insert("v", v.clone()).unwrap().id(), v.id());

        let loss = w.mul(&v).unwrap().sum_to(&crate::Shape::scalar()).unwrap();
        let grads = loss.backward().unwrap();
        let got: Vec<_> = ps
            .grads_for(&grads)
            .map(|(n, _, g)| (n, g.is_some()))
            .collect();
        assert_eq!(got, [("w", true), ("unused", false), ("v", true)]);
        assert_eq!(ps.missing_grads(&grads), ["unused"]);
    }
}
