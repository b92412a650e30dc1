//! The architecture search space as data: which areas get a searched general-RGC cell, which of
//! its knobs are searched (and over what), which feedback edges are candidates, and the training
//! hyperparameters. [`Space::param_defs`] flattens it into named parameters with conditions;
//! [`RgcSpace::apply`] turns sampled parameters into a [`ModelSpec`].
//!
//! Parameter names: `cell.<knob>` when knobs are shared by all cell areas, `<area>.<knob>` when
//! each area has its own; `edge:<from>-><to>` for a candidate edge (on/off); `lr`, `weight_decay`.

use crate::params::{Condition, Domain, ParamDef, ParamValue, Params};
use crate::space::Space;
use crate::SearchError;
use cell_zoo::{Activation, CellSpec, FeedbackEntry, GateNonlinearity, GeneralRgcSpec};
use serde::{Deserialize, Serialize};
use topology::{EdgeSpec, ModelSpec};

/// One searchable knob of the general RGC (SPEC §4.8). The order of the variants is the order of
/// sampling: every path size comes before the knobs that exist only when that path is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKnob {
    /// Kernel size of the input gates' conv (`gate.conv.size`); 0 removes the cell state.
    GateSize,
    /// Kernel size of the conv from the drive `x` into the cell state; 0: identity.
    InputToCellSize,
    /// Kernel size of the conv from `x` into the output state; 0: the identity bypass.
    InputToOutSize,
    /// Kernel size of the conv applied to incoming feedback (at least 1).
    FeedbackSize,
    /// Kernel size of the self-decay gates' conv (at least 1).
    TauSize,
    /// Whether the decay conv is depth-separable.
    TauSeparable,
    /// The decay gates' squashing function (`sigmoid` or `tanh`).
    TauNonlinearity,
    /// Constant added to the squashed decay value.
    TauOffset,
    /// Factor on the squashed decay value.
    TauMultiplier,
    /// Constant added inside the decay gates' squashing.
    TauBias,
    /// Whether the input gates' conv is depth-separable.
    GateSeparable,
    /// The input gates' squashing function.
    GateNonlinearity,
    /// Constant added to the squashed input-gate value.
    GateOffset,
    /// Factor on the squashed input-gate value.
    GateMultiplier,
    /// Constant added inside the input gates' squashing.
    GateBias,
    /// Whether the `x` → cell-state conv is depth-separable.
    InputToCellSeparable,
    /// Whether the `x` → output-state conv is depth-separable.
    InputToOutSeparable,
    /// Whether the feedback conv is depth-separable.
    FeedbackSeparable,
    /// Where feedback is added: to the input, the cell-state input or the output-state input.
    FeedbackEntry,
    /// The activation applied to the feedback after its conv.
    FeedbackActivation,
    /// The activation applied to the drive `x` before it enters the cell.
    InputActivation,
    /// The activation of the new cell state.
    CellActivation,
    /// The activation of the new output state.
    OutActivation,
    /// Channels of the cell state.
    CellDepth,
    /// Whether a conv of the cell state feeds the output state.
    CellToOut,
    /// Whether the area's input is added to the cell-state input.
    CellResidual,
    /// Whether the area's input is added to the output-state input.
    OutResidual,
    /// Whether a conv of the area's input enters the cell state's decay gate.
    ResidualToCellTau,
    /// Whether a conv of the area's input enters the cell state's input gate.
    ResidualToCellGate,
    /// Whether a conv of the area's input enters the output state's decay gate.
    ResidualToOutTau,
    /// Whether a conv of the area's input enters the output state's input gate.
    ResidualToOutGate,
    /// Whether both states are layer-normalised before their activations.
    LayerNorm,
    /// The variance-scaling scale of the cell's conv initialisation.
    InitScale,
}

/// The value type a knob takes, used to check a space's domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KnobKind {
    /// A path size; `zero_ok` when 0 switches the path off.
    Size {
        zero_ok: bool,
    },
    Positive,
    Flag,
    Real,
    Gate,
    Act,
    Entry,
}

impl CellKnob {
    /// The knob's name in parameter names (`cell.<name>` or `<area>.<name>`): snake case,
    /// e.g. `input_to_cell_size`.
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{self:?}"),
        }
    }

    fn kind(self) -> KnobKind {
        use CellKnob::*;
        match self {
            GateSize | InputToCellSize | InputToOutSize => KnobKind::Size { zero_ok: true },
            // A tau conv always exists; a feedback conv of size 0 would silently become 1×1.
            TauSize | FeedbackSize => KnobKind::Size { zero_ok: false },
            CellDepth => KnobKind::Positive,
            TauSeparable | GateSeparable | InputToCellSeparable | InputToOutSeparable
            | FeedbackSeparable | CellToOut | CellResidual | OutResidual | ResidualToCellTau
            | ResidualToCellGate | ResidualToOutTau | ResidualToOutGate | LayerNorm => {
                KnobKind::Flag
            }
            TauOffset | TauMultiplier | TauBias | GateOffset | GateMultiplier | GateBias
            | InitScale => KnobKind::Real,
            TauNonlinearity | GateNonlinearity => KnobKind::Gate,
            FeedbackActivation | InputActivation | CellActivation | OutActivation => KnobKind::Act,
            FeedbackEntry => KnobKind::Entry,
        }
    }

    /// The knobs this one needs switched on (path sizes non-zero), and whether it needs feedback
    /// into the area.
    fn needs(self) -> (Vec<CellKnob>, bool) {
        use CellKnob::*;
        match self {
            GateSeparable | GateNonlinearity | GateOffset | GateMultiplier | GateBias
            | InputToCellSize | CellActivation | CellToOut | CellResidual | ResidualToCellTau
            | ResidualToCellGate | ResidualToOutGate => (vec![GateSize], false),
            // Without an input→cell conv the cell depth must equal the area's channels.
            CellDepth | InputToCellSeparable => (vec![GateSize, InputToCellSize], false),
            InputToOutSeparable => (vec![InputToOutSize], false),
            FeedbackSize | FeedbackSeparable | FeedbackEntry | FeedbackActivation => (vec![], true),
            _ => (vec![], false),
        }
    }
}

/// A searched knob and its domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobDomain {
    /// The knob.
    pub knob: CellKnob,
    /// The values it is searched over (of the knob's type: sizes are integers, flags booleans,
    /// functions names, the rest reals).
    pub domain: Domain,
}

/// Training hyperparameters a trial samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainHparams {
    /// The learning rate.
    pub lr: f64,
    /// The L2 weight decay.
    pub weight_decay: f64,
}

/// The whole search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RgcSpace {
    /// Areas whose cell is replaced by a searched general RGC (their conv loses its activation, the
    /// cell's `input_activation` takes its place, as in rgc_intermediate).
    pub cell_areas: Vec<String>,
    /// One set of knobs for every cell area (`true`) or one per area (`false`).
    pub shared: bool,
    /// Values of the knobs that are not searched (and of knobs switched off by a condition).
    pub template: GeneralRgcSpec,
    /// The knobs searched and their domains; every other knob keeps the template's value.
    pub knobs: Vec<KnobDomain>,
    /// Candidate extra edges, each on or off. Edges of the base spec are kept as they are.
    pub feedback_candidates: Vec<EdgeSpec>,
    /// The learning rates searched.
    pub lr: Domain,
    /// The weight decays searched.
    pub weight_decay: Domain,
}

fn sizes(v: &[i64]) -> Domain {
    Domain::IntChoice {
        choices: v.to_vec(),
    }
}
fn names(v: &[&str]) -> Domain {
    Domain::Categorical {
        choices: v.iter().map(|s| s.to_string()).collect(),
    }
}
fn real(low: f64, high: f64) -> Domain {
    Domain::Float {
        low,
        high,
        log: false,
    }
}

fn edge_param(e: &EdgeSpec) -> String {
    format!("edge:{}->{}", e.from, e.to)
}

impl RgcSpace {
    /// The paper's space over `base`: every general-RGC knob of SPEC §4.8 searched per area,
    /// every later→earlier edge among the cell areas a candidate, learning rate and weight decay
    /// log-uniform. `base` is `rgc_intermediate` (cells in conv4–conv10) or a compact preset
    /// (`compact_rgc`, `compact_rgc_median`, any `compact_*`: cells in conv2–conv3).
    pub fn default_for(base: &str) -> Result<RgcSpace, SearchError> {
        let spec = topology::zoo::get_or_err(base).map_err(SearchError::Space)?;
        let cell_areas: Vec<String> = match base {
            "rgc_intermediate" => (4..=10).map(|i| format!("conv{i}")).collect(),
            b if b.starts_with("compact_") => vec!["conv2".into(), "conv3".into()],
            other => {
                return Err(SearchError::Space(format!(
                    "no default search space for base `{other}`; expected rgc_intermediate or a compact_* preset"
                )))
            }
        };
        let compact = base.starts_with("compact_");
        let mut feedback_candidates = Vec::new();
        for (j, to) in cell_areas.iter().enumerate() {
            for from in &cell_areas[j + 1..] {
                feedback_candidates.push(EdgeSpec {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
        let acts = ["identity", "elu", "relu", "sigmoid", "tanh"];
        let filters: &[i64] = &[1, 2, 3, 5, 7];
        let filters0: &[i64] = &[0, 1, 2, 3, 5, 7];
        let depths: &[i64] = if compact {
            &[8, 16, 32, 64]
        } else {
            &[16, 32, 64, 128, 256]
        };
        use CellKnob::*;
        let knobs = vec![
            (GateSize, sizes(filters0)),
            (InputToCellSize, sizes(filters0)),
            (InputToOutSize, sizes(filters0)),
            (FeedbackSize, sizes(filters)),
            (TauSize, sizes(filters)),
            (TauSeparable, Domain::Bool),
            (TauNonlinearity, names(&["sigmoid", "tanh"])),
            (TauOffset, real(0.0, 1.5)),
            (TauMultiplier, real(-1.5, 1.5)),
            (TauBias, real(-2.0, 2.0)),
            (GateSeparable, Domain::Bool),
            (GateNonlinearity, names(&["sigmoid", "tanh"])),
            (GateOffset, real(0.0, 1.5)),
            (GateMultiplier, real(-1.5, 1.5)),
            (GateBias, real(-2.0, 2.0)),
            (InputToCellSeparable, Domain::Bool),
            (InputToOutSeparable, Domain::Bool),
            (FeedbackSeparable, Domain::Bool),
            (FeedbackEntry, names(&["input", "cell", "out"])),
            (FeedbackActivation, names(&acts)),
            (InputActivation, names(&acts)),
            (CellActivation, names(&acts)),
            (OutActivation, names(&acts)),
            (CellDepth, sizes(depths)),
            (CellToOut, Domain::Bool),
            (CellResidual, Domain::Bool),
            (OutResidual, Domain::Bool),
            (ResidualToCellTau, Domain::Bool),
            (ResidualToCellGate, Domain::Bool),
            (ResidualToOutTau, Domain::Bool),
            (ResidualToOutGate, Domain::Bool),
            (LayerNorm, Domain::Bool),
            (
                InitScale,
                Domain::Float {
                    low: 0.1,
                    high: 2.0,
                    log: true,
                },
            ),
        ]
        .into_iter()
        .map(|(knob, domain)| KnobDomain { knob, domain })
        .collect();
        let space = RgcSpace {
            cell_areas,
            shared: false,
            template: GeneralRgcSpec::median(),
            knobs,
            feedback_candidates,
            // Around the default AdamW rate (2e-3): rates near 0.1 only stall AdamW in short
            // trials, which spends the random start-up trials on nothing.
            lr: Domain::Float {
                low: 3e-4,
                high: 1e-2,
                log: true,
            },
            weight_decay: Domain::Float {
                low: 1e-5,
                high: 1e-3,
                log: true,
            },
        };
        space.check_against(&spec)?;
        Ok(space)
    }

    /// Reads a space from JSON and checks it.
    pub fn from_json(text: &str) -> Result<RgcSpace, SearchError> {
        // A Json error, not a Space one: `SearchError::Space` already says "search space: ", and
        // serde's message stays the error's source.
        let s: RgcSpace = serde_json::from_str(text)
            .map_err(SearchError::json("reading a search space from JSON"))?;
        s.check()?;
        Ok(s)
    }

    /// Checks domains against the knobs they drive.
    pub fn check(&self) -> Result<(), SearchError> {
        let err = |m: String| Err(SearchError::Space(m));
        if self.cell_areas.is_empty() && self.feedback_candidates.is_empty() {
            return err("the space searches nothing: no cell areas and no candidate edges".into());
        }
        let mut seen = std::collections::HashSet::new();
        for k in &self.knobs {
            let name = k.knob.name();
            if !seen.insert(k.knob) {
                return err(format!("knob `{name}` is listed twice"));
            }
            k.domain.check(&name).map_err(SearchError::Space)?;
            let ok = match (k.knob.kind(), &k.domain) {
                (KnobKind::Size { zero_ok }, Domain::IntChoice { choices }) => {
                    choices.iter().all(|&c| c > 0 || (zero_ok && c == 0))
                }
                (KnobKind::Size { zero_ok }, Domain::Int { low, .. }) => {
                    *low > 0 || (zero_ok && *low == 0)
                }
                (KnobKind::Positive, Domain::IntChoice { choices }) => {
                    choices.iter().all(|&c| c > 0)
                }
                (KnobKind::Positive, Domain::Int { low, .. }) => *low > 0,
                (KnobKind::Flag, Domain::Bool) | (KnobKind::Real, Domain::Float { .. }) => true,
                (KnobKind::Gate, Domain::Categorical { choices }) => {
                    choices.iter().all(|c| parse::<GateNonlinearity>(c).is_ok())
                }
                (KnobKind::Act, Domain::Categorical { choices }) => {
                    choices.iter().all(|c| parse::<Activation>(c).is_ok())
                }
                (KnobKind::Entry, Domain::Categorical { choices }) => {
                    choices.iter().all(|c| parse::<FeedbackEntry>(c).is_ok())
                }
                _ => false,
            };
            if !ok {
                return err(format!(
                    "knob `{name}`: domain {:?} does not fit it (sizes: int choices or ranges, 0 only where it switches a path off; flags: bool; gains: float; nonlinearities, activations, feedback entry: their snake_case names)",
                    k.domain
                ));
            }
        }
        for (what, d) in [("lr", &self.lr), ("weight_decay", &self.weight_decay)] {
            d.check(what).map_err(SearchError::Space)?;
            if !matches!(d, Domain::Float { low, .. } if *low >= 0.0) {
                return err(format!(
                    "`{what}` must be a non-negative float range, got {d:?}"
                ));
            }
        }
        Ok(())
    }

    /// Checks the space and that its areas and edges exist in `base` and would be legal edges.
    pub fn check_against(&self, base: &ModelSpec) -> Result<(), SearchError> {
        self.check()?;
        for a in &self.cell_areas {
            if base.areas.iter().all(|x| &x.name != a) {
                return Err(SearchError::Space(format!(
                    "cell area `{a}` is not an area of `{}`",
                    base.name
                )));
            }
        }
        let mut probe = base.clone();
        probe.edges.retain(|e| {
            !self
                .feedback_candidates
                .iter()
                .any(|c| c.from == e.from && c.to == e.to)
        });
        probe.edges.extend(self.feedback_candidates.iter().cloned());
        probe
            .validate()
            .map_err(|e| SearchError::Space(format!("candidate edges on `{}`: {e}", base.name)))
    }

    /// Prefix of the knob parameters of `area`.
    fn prefix(&self, area: &str) -> String {
        if self.shared {
            "cell".into()
        } else {
            area.into()
        }
    }

    /// Areas whose knobs a prefix covers (all cell areas when shared).
    fn areas_of_group<'a>(&'a self, area: &'a str) -> Vec<&'a str> {
        if self.shared {
            self.cell_areas.iter().map(String::as_str).collect()
        } else {
            vec![area]
        }
    }

    /// The model and training hyperparameters that `params` select on `base`. The result has been
    /// validated and shape-checked.
    pub fn apply(
        &self,
        params: &Params,
        base: &ModelSpec,
    ) -> Result<(ModelSpec, TrainHparams), SearchError> {
        self.check_against(base)?;
        self.check_params(params)?;
        let mut spec = base.clone();
        spec.name = format!("{}_searched", base.name);
        let hp = TrainHparams {
            lr: float(params, "lr")?,
            weight_decay: float(params, "weight_decay")?,
        };
        spec.edges.retain(|e| {
            !self
                .feedback_candidates
                .iter()
                .any(|c| c.from == e.from && c.to == e.to)
        });
        for c in &self.feedback_candidates {
            if params.get(&edge_param(c)).and_then(ParamValue::as_bool) == Some(true) {
                spec.edges.push(c.clone());
            }
        }
        for area_name in &self.cell_areas {
            let area = spec
                .areas
                .iter_mut()
                .find(|a| &a.name == area_name)
                .ok_or_else(|| SearchError::Space(format!("cell area `{area_name}` is missing")))?;
            let prefix = self.prefix(area_name);
            let mut cell = self.template.clone();
            for k in &self.knobs {
                if let Some(v) = params.get(&format!("{prefix}.{}", k.knob.name())) {
                    set_knob(&mut cell, k.knob, v)?;
                }
            }
            if !cell.uses_cell() || !cell.input_to_cell.is_on() {
                cell.cell_depth = area.conv.channels;
            }
            if !cell.uses_cell() && cell.feedback_entry == FeedbackEntry::Cell {
                // Without a cell state the cell entry does not exist; the output state is where
                // the paper's median cell takes its feedback.
                cell.feedback_entry = FeedbackEntry::Out;
            }
            cell.weight_decay = hp.weight_decay as f32;
            area.conv.activation = Activation::Identity;
            area.cell = CellSpec::GeneralRgc(Box::new(cell));
        }
        spec.validate()
            .map_err(|e| SearchError::Invalid(e.to_string()))?;
        topology::infer(&spec).map_err(|e| SearchError::Invalid(e.to_string()))?;
        Ok((spec, hp))
    }
}

impl Space for RgcSpace {
    /// The flattened parameters in sampling order (parents first).
    fn param_defs(&self) -> Vec<ParamDef> {
        let mut defs: Vec<ParamDef> = self
            .feedback_candidates
            .iter()
            .map(|e| ParamDef {
                name: edge_param(e),
                domain: Domain::Bool,
                condition: Condition::Always,
            })
            .collect();
        let mut knobs = self.knobs.clone();
        knobs.sort_by_key(|k| k.knob);
        let groups: Vec<&str> = if self.shared {
            self.cell_areas
                .first()
                .map(String::as_str)
                .into_iter()
                .collect()
        } else {
            self.cell_areas.iter().map(String::as_str).collect()
        };
        for area in groups {
            let prefix = self.prefix(area);
            let fb_edges: Vec<Condition> = self
                .feedback_candidates
                .iter()
                .filter(|e| self.areas_of_group(area).contains(&e.to.as_str()))
                .map(|e| Condition::IsTrue {
                    param: edge_param(e),
                })
                .collect();
            for k in &knobs {
                let (parents, needs_fb) = k.knob.needs();
                let mut all: Vec<Condition> = parents
                    .iter()
                    .filter(|p| self.knobs.iter().any(|x| x.knob == **p))
                    .map(|p| Condition::NonZero {
                        param: format!("{prefix}.{}", p.name()),
                    })
                    .collect();
                // A path whose size is fixed to 0 by the template switches its children off too.
                let fixed_off = parents.iter().any(|p| {
                    !self.knobs.iter().any(|x| x.knob == *p) && !template_on(&self.template, *p)
                });
                if fixed_off {
                    continue;
                }
                // Feedback knobs exist when a candidate edge into the area is on. (An area fed
                // only by a base edge that is not a candidate keeps the template's feedback.)
                if needs_fb {
                    if fb_edges.is_empty() {
                        continue;
                    }
                    all.push(Condition::Any {
                        of: fb_edges.clone(),
                    });
                }
                let condition = match all.len() {
                    0 => Condition::Always,
                    1 => all.remove(0),
                    _ => Condition::All { of: all },
                };
                defs.push(ParamDef {
                    name: format!("{prefix}.{}", k.knob.name()),
                    domain: k.domain.clone(),
                    condition,
                });
            }
        }
        defs.push(ParamDef {
            name: "lr".into(),
            domain: self.lr.clone(),
            condition: Condition::Always,
        });
        defs.push(ParamDef {
            name: "weight_decay".into(),
            domain: self.weight_decay.clone(),
            condition: Condition::Always,
        });
        defs
    }

    fn check(&self) -> Result<(), SearchError> {
        RgcSpace::check(self)
    }
}

/// Whether the template has the path `knob` (a size) switched on.
fn template_on(t: &GeneralRgcSpec, knob: CellKnob) -> bool {
    match knob {
        CellKnob::GateSize => t.gate.conv.is_on(),
        CellKnob::InputToCellSize => t.input_to_cell.is_on(),
        CellKnob::InputToOutSize => t.input_to_out.is_on(),
        _ => true,
    }
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|e| e.to_string())
}

fn float(params: &Params, name: &str) -> Result<f64, SearchError> {
    params
        .get(name)
        .and_then(ParamValue::as_f64)
        .ok_or_else(|| SearchError::Params(format!("parameter `{name}` must be a number")))
}

fn set_knob(c: &mut GeneralRgcSpec, knob: CellKnob, v: &ParamValue) -> Result<(), SearchError> {
    let bad = || {
        SearchError::Params(format!(
            "knob `{}` cannot take the value {v:?}",
            knob.name()
        ))
    };
    let size = || {
        v.as_i64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(bad)
    };
    let flag = || v.as_bool().ok_or_else(bad);
    let real = || v.as_f64().map(|x| x as f32).ok_or_else(bad);
    let name = || v.as_str().ok_or_else(bad);
    use CellKnob::*;
    match knob {
        GateSize => c.gate.conv.size = size()?,
        InputToCellSize => c.input_to_cell.size = size()?,
        InputToOutSize => c.input_to_out.size = size()?,
        FeedbackSize => c.feedback.size = size()?,
        TauSize => c.tau.conv.size = size()?,
        TauSeparable => c.tau.conv.depth_separable = flag()?,
        TauNonlinearity => c.tau.nonlinearity = parse(name()?).map_err(|_| bad())?,
        TauOffset => c.tau.offset = real()?,
        TauMultiplier => c.tau.multiplier = real()?,
        TauBias => c.tau.bias = real()?,
        GateSeparable => c.gate.conv.depth_separable = flag()?,
        GateNonlinearity => c.gate.nonlinearity = parse(name()?).map_err(|_| bad())?,
        GateOffset => c.gate.offset = real()?,
        GateMultiplier => c.gate.multiplier = real()?,
        GateBias => c.gate.bias = real()?,
        InputToCellSeparable => c.input_to_cell.depth_separable = flag()?,
        InputToOutSeparable => c.input_to_out.depth_separable = flag()?,
        FeedbackSeparable => c.feedback.depth_separable = flag()?,
        FeedbackEntry => c.feedback_entry = parse(name()?).map_err(|_| bad())?,
        FeedbackActivation => c.feedback_activation = parse(name()?).map_err(|_| bad())?,
        InputActivation => c.input_activation = parse(name()?).map_err(|_| bad())?,
        CellActivation => c.cell_activation = parse(name()?).map_err(|_| bad())?,
        OutActivation => c.out_activation = parse(name()?).map_err(|_| bad())?,
        CellDepth => c.cell_depth = size()?,
        CellToOut => c.cell_to_out = flag()?,
        CellResidual => c.cell_residual = flag()?,
        OutResidual => c.out_residual = flag()?,
        ResidualToCellTau => c.residual_to_cell_tau = flag()?,
        ResidualToCellGate => c.residual_to_cell_gate = flag()?,
        ResidualToOutTau => c.residual_to_out_tau = flag()?,
        ResidualToOutGate => c.residual_to_out_gate = flag()?,
        LayerNorm => c.layer_norm = flag()?,
        InitScale => c.init_scale = real()?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_sampled_before_their_children() {
        for base in ["compact_rgc", "compact_rgc_median", "rgc_intermediate"] {
            let mut space = RgcSpace::default_for(base).unwrap();
            for shared in [false, true] {
                space.shared = shared;
                let defs = space.param_defs();
                for (i, d) in defs.iter().enumerate() {
                    for p in d.condition.parents() {
                        let j = defs.iter().position(|x| x.name == p);
                        assert!(
                            j.is_some_and(|j| j < i),
                            "{base}: `{}` reads `{p}`, which comes later or not at all",
                            d.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_template_path_that_is_off_removes_its_children() {
        let mut space = RgcSpace::default_for("compact_rgc").unwrap();
        space.knobs.retain(|k| k.knob != CellKnob::GateSize);
        space.template.gate.conv.size = 0;
        let names: Vec<String> = space.param_defs().into_iter().map(|d| d.name).collect();
        assert!(!names
            .iter()
            .any(|n| n.contains("gate_") || n.contains("cell_depth")));
        assert!(names.contains(&"conv2.tau_size".to_string()));
    }

    #[test]
    fn knob_names_are_snake_case() {
        assert_eq!(CellKnob::InputToCellSize.name(), "input_to_cell_size");
        assert_eq!(CellKnob::ResidualToOutGate.name(), "residual_to_out_gate");
    }
}
