//! Reverse-mode autodiff.
//!
//! Every op result that depends on a variable carries a [`Node`]: its inputs and a closure that maps
//! the output gradient to input gradients. The graph is the tape; it lives exactly as long as the
//! tensors that hold it, so dropping the loss after `backward` releases every saved activation.
//! Backward closures run with gradients disabled, so they are written with ordinary tensor ops.

use crate::{Error, Result, Tensor, TensorId};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record themselves for autodiff.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Disables recording on this thread until the guard is dropped (inference, feature extraction,
/// optimiser updates).
#[must_use = "recording resumes as soon as the guard is dropped"]
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        let previous = self.previous;
        GRAD_ENABLED.with(|g| g.set(previous));
    }
}

/// Turns off gradient recording on this thread while the returned guard lives.
pub fn no_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

type BackwardFn = dyn Fn(&BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync;

/// The record of one op on the tape.
pub struct Node {
    name: &'static str,
    inputs: Vec<Tensor>,
    backward: Box<BackwardFn>,
}

impl Node {
    pub(crate) fn new<F>(name: &'static str, inputs: &[&Tensor], backward: F) -> Node
    where
        F: Fn(&BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    {
        Node {
            name,
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            backward: Box::new(backward),
        }
    }
    /// The op's name as recorded (`"conv2d"`, `"add"`…), for error messages and debugging.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// What a backward closure sees.
pub struct BackwardCtx<'a> {
    /// The op's inputs, in the order the op was recorded with.
    pub inputs: &'a [Tensor],
    /// The op's output (saved activations such as sigmoid(x) can be read from it).
    pub output: &'a Tensor,
    /// Gradient of the loss with respect to `output`.
    pub grad: &'a Tensor,
}

impl BackwardCtx<'_> {
    /// Whether input `i` needs a gradient (skip expensive work when it does not).
    pub fn needs_grad(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(|t| t.tracks_grad())
    }
}

/// Gradients of one backward pass, keyed by variable.
#[derive(Default)]
pub struct Gradients {
    map: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// The gradient of `var`, if the loss depends on it.
    pub fn get(&self, var: &Tensor) -> Option<&Tensor> {
        self.map.get(&var.id())
    }
    /// Takes the gradient of `var` out of the set, if there is one.
    pub fn remove(&mut self, var: &Tensor) -> Option<Tensor> {
        self.map.remove(&var.id())
    }
    /// Sets the gradient of `var`, replacing any there was (for gradients computed elsewhere, e.g.
    /// averaged over the ranks of a data-parallel job).
    pub fn insert(&mut self, var: &Tensor, grad: Tensor) {
        self.map.insert(var.id(), grad);
    }
    /// The number of variables with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether no variable has a gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Tensors reachable from `root` through recorded nodes, inputs before the ops that use them.
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative DFS: graphs of long unrolls are deep enough to overflow a recursive walk.
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.node() {
            for input in &node.inputs {
                if input.tracks_grad() && !seen.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

pub(crate) fn backward(root: &Tensor, grad: Option<&Tensor>) -> Result<Gradients> {
    let seed = match grad {
        Some(g) => {
            if g.shape() != root.shape() {
                return Err(Error::ShapeMismatch {
                    op: "backward",
                    expected: root.shape().to_string(),
                    got: g.shape().clone(),
                });
            }
            g.clone()
        }
        None => {
            if root.elem_count() != 1 {
                return Err(Error::NonScalarBackward(root.shape().clone()));
            }
            root.ones_like()?
        }
    };
    let _guard = no_grad();
    let order = topo_order(root);
    let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
    pending.insert(root.id(), seed);
    let mut out = Gradients::default();
    for t in order.iter().rev() {
        let Some(g) = pending.remove(&t.id()) else {
            continue;
        };
        match t.node() {
            None => {
                if t.is_variable() {
                    out.map.insert(t.id(), g);
                }
            }
            Some(node) => {
                let ctx = BackwardCtx {
                    inputs: &node.inputs,
                    output: t,
                    grad: &g,
                };
                let grads = (node.backward)(&ctx)?;
                if grads.len() != node.inputs.len() {
                    return Err(Error::invalid(
                        node.name,
                        format!(
                            "backward returned {} gradients for {} inputs",
                            grads.len(),
                            node.inputs.len()
                        ),
                    ));
                }
                for (input, gi) in node.inputs.iter().zip(grads) {
                    let Some(gi) = gi else { continue };
                    if !input.tracks_grad() {
                        continue;
                    }
                    if gi.shape() != input.shape() {
                        return Err(Error::invalid(
                            node.name,
                            format!(
                                "backward produced a gradient of shape {} for an input of shape {}",
                                gi.shape(),
                                input.shape()
                            ),
                        ));
                    }
                    let gi = gi.to_layout(input.layout())?;
                    let acc = match pending.remove(&input.id()) {
                        Some(prev) => prev.add(&gi)?,
                        None => gi,
                    };
                    pending.insert(input.id(), acc);
                }
            }
        }
    }
    Ok(out)
}
