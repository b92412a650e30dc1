//! `ModelSpec`: a ConvRNN as data — a feedforward chain of areas, extra (feedback and skip) edges,
//! and a readout. Validated once; every error names the offending area or edge.

use crate::decoders::Decoder;
use cell_zoo::{Activation, CellSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Input images: channels and spatial size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Channels (1 grey, 3 colour).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// The area's feedforward ("pre-memory") convolution, TF "SAME" padded.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// Output channels (the cell's drive `x`).
    pub channels: usize,
    /// Kernel size (`kernel`×`kernel`).
    pub kernel: usize,
    /// Stride (default 1).
    #[serde(default = "one")]
    pub stride: usize,
    /// Applied to the conv output (default identity).
    #[serde(default)]
    pub activation: Activation,
    /// Whether the conv has a bias (default yes).
    #[serde(default = "yes")]
    pub bias: bool,
}

/// Max pooling after the cell, TF "SAME" (7 → 4 for 2×2/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Window size (`kernel`×`kernel`).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl PoolSpec {
    /// 2×2 windows with stride 2, the pooling of the zoo.
    pub const TWO_BY_TWO: PoolSpec = PoolSpec {
        kernel: 2,
        stride: 2,
    };
}

/// The ResNet-style tail of an intermediate-zoo block: `k×k` conv → + residual(u) → ELU, where the
/// residual is `u` itself or its 1×1 no-bias projection when channels differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    /// Kernel size of the tail's conv.
    pub kernel: usize,
}

/// One area: harbor → conv → cell → (residual tail) → (pool), the parenthesised steps optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaSpec {
    /// Unique name; edges and parameter names use it.
    pub name: String,
    /// The feedforward convolution.
    pub conv: ConvSpec,
    /// The recurrent cell (default identity: a feedforward area).
    #[serde(default = "identity_cell")]
    pub cell: CellSpec,
    /// The ResNet-style tail after the cell, if any.
    #[serde(default)]
    pub residual: Option<ResidualSpec>,
    /// Pooling after the cell (and tail), if any.
    #[serde(default)]
    pub pool: Option<PoolSpec>,
}

/// An extra edge with a one-step delay: feedback (to an earlier area) or skip (to a later one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The area whose output the edge carries.
    pub from: String,
    /// The area that receives it.
    pub to: String,
}

/// How the last area's maps become class logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReadoutKind {
    /// Global average pool, then a fully connected layer.
    GapFc,
    /// A `kernel×kernel` VALID conv to the classes, then a global average (shallow zoo).
    ConvGap {
        /// Kernel size of the VALID conv.
        kernel: usize,
    },
}

/// The readout: its node name and how it computes logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadoutSpec {
    /// Name of the readout node (the reference calls it `imnetds`).
    #[serde(default = "imnetds")]
    pub name: String,
    /// How the logits are computed.
    pub kind: ReadoutKind,
}

/// A whole ConvRNN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The model's name (zoo presets are looked up by it).
    pub name: String,
    /// The images it reads.
    pub input: InputSpec,
    /// Classes of the logits.
    pub num_classes: usize,
    /// The feedforward chain, first area first; area i reads area i−1 (the first reads the image).
    pub areas: Vec<AreaSpec>,
    /// Feedback and skip edges beyond the chain (default none).
    #[serde(default)]
    pub edges: Vec<EdgeSpec>,
    /// How the last area's maps become logits.
    pub readout: ReadoutSpec,
    /// Default unroll length (SPEC §3: 16 shallow, 17 intermediate).
    pub default_steps: usize,
    /// Default first blank step of the `default` presentation (12 in the zoo; equal to
    /// `default_steps` for the models trained with the image shown at every step).
    #[serde(default = "twelve")]
    pub image_off: usize,
    /// The decoder the model was trained with (the reference's `decoder_type`, implied by its
    /// name): `last` for most models; `max_conf` (with its trained temperature) or `thresh` over
    /// steps `[num_layers, T)` for the `*_tmaxconf` and `*_dthresh` models.
    #[serde(default)]
    pub decoder: Decoder,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn twelve() -> usize {
    12
}
fn identity_cell() -> CellSpec {
    CellSpec::Identity
}
fn imnetds() -> String {
    "imnetds".into()
}

/// What is wrong with a spec, naming the area, edge or field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The chain is empty.
    #[error("model `{model}` has no areas; expected at least one")]
    NoAreas {
        /// The model's name.
        model: String,
    },
    #[error(
        "area name `{0}` is used twice; area names must be unique (and differ from the readout)"
    )]
    /// Two areas (or an area and the readout) share the name.
    DuplicateArea(String),
    /// An edge names an area that does not exist.
    #[error("edge {from} -> {to}: {which} area `{name}` does not exist (areas: {known})")]
    UnknownArea {
        /// The edge's source, as written.
        from: String,
        /// The edge's target, as written.
        to: String,
        /// Which end is unknown (`source` or `target`).
        which: &'static str,
        /// The unknown name.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// An edge that is not allowed: a self-edge, the chain's own feedforward edge, an edge into
    /// the first area, a duplicate.
    #[error("edge {from} -> {to}: {msg}")]
    BadEdge {
        /// The edge's source.
        from: String,
        /// The edge's target.
        to: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An area whose settings do not fit together or its input.
    #[error("area `{area}`: {msg}")]
    BadArea {
        /// The area's name.
        area: String,
        /// What is wrong with it.
        msg: String,
    },
    #[error(
        "area `{area}`: input of {got}×{got_w} is too small for {what} (needs at least {need})"
    )]
    /// Maps too small for a pooling window or the VALID readout conv.
    TooSmall {
        /// The area (or readout) name.
        area: String,
        /// The layer that does not fit.
        what: String,
        /// Height of its input.
        got: usize,
        /// Width of its input.
        got_w: usize,
        /// The least height and width it needs.
        need: usize,
    },
    /// A model-level field with an invalid value.
    #[error("field `{field}`: {msg}")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        msg: String,
    },
}

impl ModelSpec {
    /// Index of the area called `name` (the readout is index `areas.len()`).
    pub fn area_index(&self, name: &str) -> Option<usize> {
        if name == self.readout.name {
            return Some(self.areas.len());
        }
        self.areas.iter().position(|a| a.name == name)
    }

    /// Extra sources of area `name`, in harbor order: string-sorted by source name, as the
    /// reference orders predecessors (so `conv10` precedes `conv7`). The feedforward input always
    /// comes first and is not listed here.
    pub fn extra_sources(&self, name: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .edges
            .iter()
            .filter(|e| e.to == name)
            .map(|e| e.from.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Checks names, edges and parameters; shapes are checked by [`crate::shapes::infer`].
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.areas.is_empty() {
            return Err(SpecError::NoAreas {
                model: self.name.clone(),
            });
        }
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(SpecError::BadField {
                    field,
                    msg: "must be positive".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("input.channels", self.input.channels)?;
        positive("input.height", self.input.height)?;
        positive("input.width", self.input.width)?;
        positive("num_classes", self.num_classes)?;
        positive("default_steps", self.default_steps)?;
        let mut names = HashSet::new();
        for a in &self.areas {
            if !names.insert(a.name.as_str()) || a.name == self.readout.name {
                return Err(SpecError::DuplicateArea(a.name.clone()));
            }
            let bad = |msg: String| SpecError::BadArea {
                area: a.name.clone(),
                msg,
            };
            if a.conv.channels == 0 || a.conv.kernel == 0 || a.conv.stride == 0 {
                return Err(bad(format!(
                    "conv channels, kernel and stride must be positive, got {:?}",
                    a.conv
                )));
            }
            if let Some(p) = a.pool {
                if p.kernel == 0 || p.stride == 0 {
                    return Err(bad(format!(
                        "pool kernel and stride must be positive, got {p:?}"
                    )));
                }
            }
            if let Some(r) = a.residual {
                if r.kernel == 0 {
                    return Err(bad("residual kernel must be positive".into()));
                }
            }
        }
        if let ReadoutKind::ConvGap { kernel: 0 } = self.readout.kind {
            return Err(SpecError::BadField {
                field: "readout.kind.kernel",
                msg: "must be positive".into(),
            });
        }
        let known = || {
            self.areas
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut seen = HashSet::new();
        for e in &self.edges {
            let unknown = |which, name: &str| SpecError::UnknownArea {
                from: e.from.clone(),
                to: e.to.clone(),
                which,
                name: name.to_string(),
                known: known(),
            };
            let from = self
                .areas
                .iter()
                .position(|a| a.name == e.from)
                .ok_or_else(|| unknown("source", &e.from))?;
            let to = self
                .areas
                .iter()
                .position(|a| a.name == e.to)
                .ok_or_else(|| unknown("target", &e.to))?;
            let bad = |msg: &str| SpecError::BadEdge {
                from: e.from.clone(),
                to: e.to.clone(),
                msg: msg.into(),
            };
            if from == to {
                return Err(bad(
                    "an area already feeds itself through its cell; self-edges are not allowed",
                ));
            }
            if to == from + 1 {
                return Err(bad(
                    "this is the feedforward edge, which every chain already has",
                ));
            }
            if to == 0 {
                return Err(bad(
                    "the first area reads the image; route feedback to a later area",
                ));
            }
            if !seen.insert((e.from.as_str(), e.to.as_str())) {
                return Err(bad("duplicate edge"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    #[test]
    fn zoo_specs_round_trip_through_json() {
        for name in zoo::names() {
            let spec = zoo::get(name).unwrap();
            let json = serde_json::to_string_pretty(&spec).unwrap();
            let back: ModelSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec, "{name}");
            spec.validate().unwrap();
        }
    }

    #[test]
    fn validation_names_the_offender() {
        let base = zoo::get("rgc_intermediate").unwrap();
        let mut s = base.clone();
        s.edges.push(EdgeSpec {
            from: "conv12".into(),
            to: "conv5".into(),
        });
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("conv12") && e.contains("does not exist"), "{e}");

        let mut s = base.clone();
        s.edges.push(EdgeSpec {
            from: "conv9".into(),
            to: "conv9".into(),
        });
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("conv9 -> conv9"));

        let mut s = base.clone();
        s.areas[3].name = "conv2".into();
        assert_eq!(
            s.validate().unwrap_err(),
            SpecError::DuplicateArea("conv2".into())
        );

        let mut s = base;
        s.areas.clear();
        assert!(matches!(s.validate(), Err(SpecError::NoAreas { .. })));
    }

    #[test]
    fn harbor_order_is_string_sorted() {
        let s = zoo::get("rgc_intermediate").unwrap();
        assert_eq!(s.extra_sources("conv6"), vec!["conv7", "conv9"]);
        assert_eq!(s.extra_sources("conv7"), vec!["conv10"]);
        assert!(s.extra_sources("conv4").is_empty());
    }
}
