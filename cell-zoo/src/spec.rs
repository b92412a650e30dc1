//! `CellSpec`: the serde form of every recurrent cell (SPEC §4). A spec plus the channel count and
//! spatial size of the area's conv output is all it takes to build a cell or predict its shapes.

use serde::{Deserialize, Serialize};

/// A pointwise nonlinearity named in a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `f(x) = x`.
    #[default]
    Identity,
    /// `x` for `x > 0`, `eˣ − 1` otherwise.
    Elu,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// The squashing function inside an RGC gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateNonlinearity {
    /// `σ(z)`, in (0, 1).
    Sigmoid,
    /// `tanh(z)`, in (−1, 1).
    Tanh,
}

/// One of the recurrent cells of SPEC §4, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CellSpec {
    /// No recurrence: the area is feedforward (`h = x`).
    Identity,
    /// `s' = m·s + x`, `m` one trainable scalar initialised at 0.
    TimeDecay,
    /// `h' = ELU(LN(W_x*x + b_x + W_h*h + b_h))`: two convs, each with its bias, as the reference's
    /// `ConvNormBasicCell`.
    SimpleRnn {
        /// Output channels (default: the conv's channels).
        #[serde(default)]
        out_channels: Option<usize>,
        /// Kernel size of the cell's convs (default 3).
        #[serde(default = "three")]
        kernel: usize,
        /// Layer norm on the pre-activation (default off).
        #[serde(default)]
        layer_norm: bool,
        /// See [`DEFAULT_LN_EPS`].
        #[serde(default = "default_ln_eps")]
        layer_norm_epsilon: f32,
    },
    /// ConvGRU with gate biases initialised at 1 and an extra +1 on the reset gate.
    Gru {
        /// Output channels (default: the conv's channels).
        #[serde(default)]
        out_channels: Option<usize>,
        /// Kernel size of the cell's convs (default 3).
        #[serde(default = "three")]
        kernel: usize,
    },
    /// ConvLSTM: one conv over `[x, h]` gives i, j, f, o (TF order).
    Lstm {
        /// Output channels (default: the conv's channels).
        #[serde(default)]
        out_channels: Option<usize>,
        /// Kernel size of the cell's convs (default 3).
        #[serde(default = "three")]
        kernel: usize,
        /// Constant added to the forget gate's pre-activation (default 1).
        #[serde(default = "one")]
        forget_bias: f32,
        /// Peephole connections from the cell state into the gates (default off).
        #[serde(default)]
        peepholes: bool,
        /// Layer norm on the gates and the cell state (default off).
        #[serde(default)]
        layer_norm: bool,
        /// Variance-scaling scale of the gate conv (1 = LeCun).
        #[serde(default = "one")]
        init_scale: f32,
        /// Constant initial value of the gate biases.
        #[serde(default)]
        bias_init: f32,
        /// See [`DEFAULT_LN_EPS`].
        #[serde(default = "default_ln_eps")]
        layer_norm_epsilon: f32,
    },
    /// `g = σ(W_g*[x,h] + b + 1)`, `ĉ = tanh(W_c*[x,h] + b)`, `h' = g∘h + (1−g)∘ĉ`.
    Ugrnn {
        /// Output channels (default: the conv's channels).
        #[serde(default)]
        out_channels: Option<usize>,
        /// Kernel size of the cell's convs (default 3).
        #[serde(default = "three")]
        kernel: usize,
    },
    /// IntersectionRNN; its output mixes `x` in, so `x` channels must equal the output channels.
    IntersectionRnn {
        /// Kernel size of the cell's conv (default 3).
        #[serde(default = "three")]
        kernel: usize,
    },
    /// The hand-designed Reciprocal Gated Cell of the shallow zoo (SPEC §4.7).
    Rgc(RgcSpec),
    /// The general RGC of the architecture search (SPEC §4.8).
    GeneralRgc(Box<GeneralRgcSpec>),
}

fn three() -> usize {
    3
}

/// Layer-norm epsilon of specs that do not name one. TensorFlow 1's `contrib.layers.layer_norm`,
/// which the released models use, has 1e-12 (their presets set it); 1e-5 (PyTorch's default) is
/// the default for everything else, because in f32 an epsilon of 1e-12 turns the nearly
/// constant maps of the first steps into huge gradients when training from scratch.
pub const DEFAULT_LN_EPS: f32 = 1e-5;

/// TensorFlow 1's layer-norm epsilon (the released models').
pub const TF1_LN_EPS: f32 = 1e-12;

fn default_ln_eps() -> f32 {
    DEFAULT_LN_EPS
}
fn one() -> f32 {
    1.0
}

/// Hand-designed RGC: all 3×3, `cell_depth` = output depth, `x = ELU(conv(u))` comes from the area.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RgcSpec {
    /// Kernel size of the gate and input convs (default 3).
    #[serde(default = "three")]
    pub kernel: usize,
    /// Reference quirk: the reference's non-separable gate convs carry no bias. Default: with bias.
    #[serde(default)]
    pub bias_free_gates: bool,
    /// Reference quirk: the reference clips every temporal conv's kernel to the map size (a 3×3
    /// kernel on a 2×2 map becomes 2×2). Default: kernels as given.
    #[serde(default)]
    pub clip_kernels: bool,
}

impl RgcSpec {
    /// The cell of the released `rgc_shallow`: bias-free temporal convs, kernels clipped to the
    /// map, as the reference's `cells.ReciprocalGateCell` builds them.
    pub fn reference() -> Self {
        RgcSpec {
            kernel: 3,
            bias_free_gates: true,
            clip_kernels: true,
        }
    }
}

impl Default for RgcSpec {
    fn default() -> Self {
        RgcSpec {
            kernel: 3,
            bias_free_gates: false,
            clip_kernels: false,
        }
    }
}

/// A temporal conv of the general RGC: `size` 0 switches the path off.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvKnob {
    /// Kernel size (`size`×`size`); 0 means no conv.
    pub size: usize,
    /// Depthwise k×k (multiplier 1) then pointwise 1×1 with one bias.
    #[serde(default)]
    pub depth_separable: bool,
}

impl ConvKnob {
    /// The path switched off.
    pub const OFF: ConvKnob = ConvKnob {
        size: 0,
        depth_separable: false,
    };
    /// A dense `size`×`size` conv.
    pub fn dense(size: usize) -> Self {
        ConvKnob {
            size,
            depth_separable: false,
        }
    }
    /// A depthwise-separable `size`×`size` conv.
    pub fn separable(size: usize) -> Self {
        ConvKnob {
            size,
            depth_separable: true,
        }
    }
    /// Whether the path exists (`size > 0`).
    pub fn is_on(&self) -> bool {
        self.size > 0
    }
}

/// A gate `offset + multiplier·f(W*state + bias)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// The conv `W` over the state the gate reads.
    pub conv: ConvKnob,
    /// The squashing function `f`.
    pub nonlinearity: GateNonlinearity,
    /// Constant added to the squashed value.
    pub offset: f32,
    /// Factor on the squashed value (−1 with offset 1 gives the `1 − σ` gates of the shallow RGC).
    pub multiplier: f32,
    /// Constant added inside `f`.
    #[serde(default)]
    pub bias: f32,
}

/// Where feedback enters the general RGC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackEntry {
    /// Added to `x` before the cell.
    Input,
    /// Added to the cell-state input.
    Cell,
    /// Added to the output-state input.
    Out,
}

/// Every knob of the search-space RGC (SPEC §4.8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralRgcSpec {
    /// Channels of the cell state `c`.
    pub cell_depth: usize,
    /// Self-decay of `c` (reads `c`) and of `h` (reads `h`).
    pub tau: GateSpec,
    /// Input gate of `c` (reads `h`) and of `h` (reads `c`). `gate.conv.size == 0` disables the cell
    /// state entirely.
    pub gate: GateSpec,
    /// Conv from `x` into the cell state; off = identity (needs `cell_depth` = x channels).
    pub input_to_cell: ConvKnob,
    /// Conv from `x` into the output state; off = the identity bypass.
    pub input_to_out: ConvKnob,
    /// Conv applied to the (resized, concatenated) feedback before it enters.
    pub feedback: ConvKnob,
    /// Where the (convolved) feedback is added.
    pub feedback_entry: FeedbackEntry,
    /// Applied to the feedback after its conv.
    pub feedback_activation: Activation,
    /// Applied to the drive `x` before it enters the cell.
    pub input_activation: Activation,
    /// Applied to the new cell state `c'`.
    pub cell_activation: Activation,
    /// Applied to the new output state `h'`.
    pub out_activation: Activation,
    /// Adds a conv of `c` to the output-state input.
    pub cell_to_out: bool,
    /// Adds the area input `u` (projected/resized as needed) to the cell-state input.
    pub cell_residual: bool,
    /// Adds the area input `u` (projected/resized as needed) to the output-state input.
    pub out_residual: bool,
    /// Adds a conv of the resized area input `u` inside the cell state's decay gate.
    pub residual_to_cell_tau: bool,
    /// Adds a conv of the resized area input `u` inside the cell state's input gate.
    pub residual_to_cell_gate: bool,
    /// Adds a conv of the resized area input `u` inside the output state's decay gate.
    pub residual_to_out_tau: bool,
    /// Adds a conv of the resized area input `u` inside the output state's input gate.
    pub residual_to_out_gate: bool,
    /// Layer norm on `c'` and `h'` before their activations.
    pub layer_norm: bool,
    /// L2 weight decay recorded with the cell (the search writes its sampled value here); the
    /// cell's computation does not read it.
    pub weight_decay: f32,
    /// Variance-scaling scale of the cell's convs.
    pub init_scale: f32,
    /// Reference quirk: the separable path ignores `tau.bias`/`gate.bias`. Default false (clean form).
    #[serde(default)]
    pub compat_ignore_separable_bias: bool,
    /// Reference quirk of the shallow RGC: its non-separable temporal convs carry no bias.
    #[serde(default)]
    pub compat_bias_free_convs: bool,
    /// Reference quirk of the shallow RGC: its dense temporal convs' kernels are clipped to the
    /// map size too (separable ones always are).
    #[serde(default)]
    pub compat_clip_dense_kernels: bool,
    /// See [`DEFAULT_LN_EPS`].
    #[serde(default = "default_ln_eps")]
    pub layer_norm_epsilon: f32,
}

impl GeneralRgcSpec {
    /// The searched "median" cell of rgc_intermediate (conv4–conv10), SPEC §4.8, with the
    /// reference's values to f32 precision (`configs/median_rgcell_cfg.py`: the offsets enter every
    /// gate, so the 5-digit values of the papers would change the outputs at 1e-5).
    pub fn median() -> Self {
        GeneralRgcSpec {
            cell_depth: 64,
            tau: GateSpec {
                conv: ConvKnob::separable(7),
                nonlinearity: GateNonlinearity::Sigmoid,
                offset: 0.921_934_8,
                multiplier: -0.921_934_8,
                bias: 0.0,
            },
            gate: GateSpec {
                conv: ConvKnob::separable(7),
                nonlinearity: GateNonlinearity::Tanh,
                offset: 0.700_656_65,
                multiplier: -0.700_656_65,
                bias: 0.0,
            },
            input_to_cell: ConvKnob::dense(2),
            input_to_out: ConvKnob::dense(3),
            feedback: ConvKnob::dense(1),
            feedback_entry: FeedbackEntry::Out,
            feedback_activation: Activation::Identity,
            input_activation: Activation::Elu,
            cell_activation: Activation::Elu,
            out_activation: Activation::Elu,
            cell_to_out: false,
            cell_residual: false,
            out_residual: true,
            residual_to_cell_tau: false,
            residual_to_cell_gate: false,
            residual_to_out_tau: false,
            residual_to_out_gate: false,
            layer_norm: false,
            weight_decay: 2.033_999_2e-4,
            init_scale: 0.639_337_84,
            compat_ignore_separable_bias: false,
            compat_bias_free_convs: false,
            compat_clip_dense_kernels: false,
            layer_norm_epsilon: DEFAULT_LN_EPS,
        }
    }

    /// Whether the cell state `c` exists.
    pub fn uses_cell(&self) -> bool {
        self.gate.conv.is_on()
    }
}

impl CellSpec {
    /// Channels of the cell's output given the channels of its drive `x`.
    pub fn out_channels(&self, x_channels: usize) -> usize {
        match self {
            CellSpec::Identity
            | CellSpec::TimeDecay
            | CellSpec::IntersectionRnn { .. }
            | CellSpec::Rgc(_)
            | CellSpec::GeneralRgc(_) => x_channels,
            CellSpec::SimpleRnn { out_channels, .. }
            | CellSpec::Gru { out_channels, .. }
            | CellSpec::Lstm { out_channels, .. }
            | CellSpec::Ugrnn { out_channels, .. } => out_channels.unwrap_or(x_channels),
        }
    }

    /// The same cell with its output and state widths mapped by `f` (for narrowed copies of a
    /// model, `topology::zoo::narrowed`).
    pub fn map_widths(&self, f: impl Fn(usize) -> usize) -> CellSpec {
        let mut s = self.clone();
        match &mut s {
            CellSpec::SimpleRnn { out_channels, .. }
            | CellSpec::Gru { out_channels, .. }
            | CellSpec::Lstm { out_channels, .. }
            | CellSpec::Ugrnn { out_channels, .. } => *out_channels = out_channels.map(&f),
            CellSpec::GeneralRgc(g) => g.cell_depth = f(g.cell_depth),
            CellSpec::Identity
            | CellSpec::TimeDecay
            | CellSpec::IntersectionRnn { .. }
            | CellSpec::Rgc(_) => {}
        }
        s
    }

    /// A short name for tables and parameter paths.
    pub fn kind(&self) -> &'static str {
        match self {
            CellSpec::Identity => "identity",
            CellSpec::TimeDecay => "timedecay",
            CellSpec::SimpleRnn { .. } => "simplernn",
            CellSpec::Gru { .. } => "gru",
            CellSpec::Lstm { .. } => "lstm",
            CellSpec::Ugrnn { .. } => "ugrnn",
            CellSpec::IntersectionRnn { .. } => "intersectionrnn",
            CellSpec::Rgc(_) => "rgc",
            CellSpec::GeneralRgc(_) => "general_rgc",
        }
    }

    /// Whether the cell takes a feedback input of its own (only the general RGC routes feedback
    /// itself; elsewhere the area concatenates feedback into the conv input).
    pub fn routes_feedback(&self) -> bool {
        matches!(self, CellSpec::GeneralRgc(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let specs = vec![
            CellSpec::Identity,
            CellSpec::TimeDecay,
            CellSpec::Lstm {
                out_channels: Some(128),
                kernel: 2,
                forget_bias: 1.356,
                peepholes: false,
                layer_norm: true,
                init_scale: 0.701,
                bias_init: 1.643,
                layer_norm_epsilon: TF1_LN_EPS,
            },
            CellSpec::Rgc(RgcSpec::default()),
            CellSpec::GeneralRgc(Box::new(GeneralRgcSpec::median())),
        ];
        for s in specs {
            let j = serde_json::to_string(&s).unwrap();
            let back: CellSpec = serde_json::from_str(&j).unwrap();
            assert_eq!(back, s, "{j}");
        }
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let s: CellSpec = serde_json::from_str(r#"{"type":"gru"}"#).unwrap();
        assert_eq!(
            s,
            CellSpec::Gru {
                out_channels: None,
                kernel: 3
            }
        );
        let e = serde_json::from_str::<CellSpec>(r#"{"type":"gru","kernal":3}"#).unwrap_err();
        assert!(e.to_string().contains("kernal"), "{e}");
    }
}
