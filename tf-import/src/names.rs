//! Which TensorFlow variable of a released checkpoint fills which of our parameters.
//!
//! The reference builds every model under the variable scope `tnn_model/<area>/`: the area's
//! convolution is `pre_0/weights_basenet` and `pre_0/bias` (`component_conv`), the ResNet tail of
//! the intermediate models `post_0/{weights,bias}` and `post_1/residual_add_weights`, the readout
//! `imnetds/pre_1/...` (shallow: dropout, then a 2×2 conv) or `imnetds/pre_3/...` (intermediate:
//! pool, dropout, flatten, then the fc), and each cell its own scope (`ConvLSTMCell/...`,
//! `ReciprocalGateCell/...`). Areas without a cell keep the `memory_decay` scalar of TF's
//! trivial memory, never trained and 0; the decoders keep their temperatures and threshold at the
//! top of `tnn_model/`. A plan lists all of it for one spec, so that an import can fill every
//! parameter and account for every variable.

use crate::layout::Layout;
use crate::ImportError;
use cell_zoo::{CellSpec, ConvKnob, FeedbackEntry, GeneralRgcSpec};
use topology::{Decoder, ModelShapes, ModelSpec, ReadoutKind};

const ROOT: &str = "tnn_model";

/// One of our parameters and the TensorFlow variable(s) that fill it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Our parameter's name in the model's `ParamStore`.
    pub ours: String,
    /// TensorFlow variable names; several are concatenated along the kernel's input-channel
    /// axis (a harbor conv whose inputs each have their own kernel block).
    pub tf: Vec<String>,
    /// How the TensorFlow array's axes map onto our parameter's.
    pub layout: Layout,
}

/// A decoder setting read from the checkpoint into the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderField {
    /// The softmax temperature of `max_conf` / `thresh`.
    Beta,
    /// `thresh`'s confidence threshold.
    Threshold,
}

/// Everything an import of one spec reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Every parameter of the model with the variable(s) that fill it.
    pub bindings: Vec<Binding>,
    /// Variables the reference stores but never changes: they must hold these values.
    pub constants: Vec<(String, f32)>,
    /// Variables read into the spec's decoder settings.
    pub decoder: Vec<(String, DecoderField)>,
}

/// Whether a checkpoint variable is training state rather than model: momentum slots and the
/// step counter.
pub fn is_training_state(name: &str) -> bool {
    name == "global_step" || name.ends_with("/Momentum")
}

fn tf(parts: &[&str]) -> String {
    let mut s = ROOT.to_string();
    for p in parts {
        s.push('/');
        s.push_str(p);
    }
    s
}

impl Plan {
    fn bind(&mut self, ours: String, tf: String, layout: Layout) {
        self.bindings.push(Binding {
            ours,
            tf: vec![tf],
            layout,
        });
    }

    /// A conv (`weight` HWIO, optional `bias`) stored as `<w>` and `<b>`.
    fn conv(&mut self, ours: &str, w: String, b: Option<String>) {
        self.bind(format!("{ours}/weight"), w, Layout::ConvHwio);
        if let Some(b) = b {
            self.bind(format!("{ours}/bias"), b, Layout::Same);
        }
    }

    fn norm(&mut self, ours: &str, scope: String) {
        self.bind(
            format!("{ours}/gamma"),
            format!("{scope}/gamma"),
            Layout::Same,
        );
        self.bind(
            format!("{ours}/beta"),
            format!("{scope}/beta"),
            Layout::Same,
        );
    }

    /// A temporal conv of the median cell: dense (`<dense>_weights`, `<dense>_bias`) or depthwise
    /// separable (scope `<sep>`: `depthwise_weights`, `pointwise_weights`, `bias`).
    fn temporal(&mut self, ours: &str, knob: ConvKnob, dense: &str, sep: &str, bias: bool) {
        if knob.depth_separable {
            self.bind(
                format!("{ours}/depthwise/weight"),
                format!("{sep}/depthwise_weights"),
                Layout::Depthwise,
            );
            self.conv(
                &format!("{ours}/pointwise"),
                format!("{sep}/pointwise_weights"),
                Some(format!("{sep}/bias")),
            );
        } else {
            self.conv(
                ours,
                format!("{dense}_weights"),
                bias.then(|| format!("{dense}_bias")),
            );
        }
    }
}

/// The plan for `spec` (whose shapes are `shapes`).
pub fn plan(spec: &ModelSpec, shapes: &ModelShapes) -> Result<Plan, ImportError> {
    let mut p = Plan::default();
    for (i, (a, sh)) in spec.areas.iter().zip(&shapes.areas).enumerate() {
        let name = a.name.as_str();
        // The conv's kernel: one block per harbor input, in the order TensorFlow lists the
        // inputs (sorted predecessor names), `weights_basenet` for the feedforward one. The
        // harbor puts the feedforward data first, so when it is not first in that order the
        // reference's kernel blocks and data blocks do not line up; using its concatenated kernel
        // as it is computes exactly what it computes.
        let mut kernels = vec![tf(&[name, "pre_0", "weights_basenet"])];
        if !a.cell.routes_feedback() && !sh.sources.is_empty() {
            let ff = spec.areas[i - 1].name.as_str();
            let mut preds: Vec<&str> = sh.sources.iter().map(String::as_str).chain([ff]).collect();
            preds.sort_unstable();
            let mut k = 0;
            kernels = preds
                .iter()
                .map(|&s| {
                    if s == ff {
                        tf(&[name, "pre_0", "weights_basenet"])
                    } else {
                        k += 1;
                        tf(&[name, "pre_0", &format!("weights_{}", k - 1)])
                    }
                })
                .collect();
        }
        p.bindings.push(Binding {
            ours: format!("{name}/conv/weight"),
            tf: kernels,
            layout: Layout::ConvHwio,
        });
        if a.conv.bias {
            p.bind(
                format!("{name}/conv/bias"),
                tf(&[name, "pre_0", "bias"]),
                Layout::Same,
            );
        }
        cell(
            &mut p,
            name,
            &a.cell,
            sh.input[0] != a.conv.channels,
            sh.cell_feedback_channels > 0,
        )?;
        if a.residual.is_some() {
            p.conv(
                &format!("{name}/post_conv"),
                tf(&[name, "post_0", "weights"]),
                Some(tf(&[name, "post_0", "bias"])),
            );
            if sh.input[0] != a.conv.channels {
                p.bind(
                    format!("{name}/projection/weight"),
                    tf(&[name, "post_1", "residual_add_weights"]),
                    Layout::ConvHwio,
                );
            }
        }
    }
    let r = spec.readout.name.as_str();
    match spec.readout.kind {
        ReadoutKind::ConvGap { .. } => {
            p.conv(
                &format!("{r}/conv"),
                tf(&[r, "pre_1", "weights"]),
                Some(tf(&[r, "pre_1", "bias"])),
            );
        }
        ReadoutKind::GapFc => {
            p.bind(
                format!("{r}/weight"),
                tf(&[r, "pre_3", "weights"]),
                Layout::Dense,
            );
            p.bind(format!("{r}/bias"), tf(&[r, "pre_3", "bias"]), Layout::Same);
        }
    }
    p.constants.push((tf(&[r, "memory_decay"]), 0.0));
    match spec.decoder {
        Decoder::Last | Decoder::Avg { .. } => {}
        Decoder::MaxConf { .. } | Decoder::Thresh { .. } => {
            p.decoder
                .push((tf(&["normalize", "softmax_beta"]), DecoderField::Beta));
            // `compute_alpha` builds two more softmaxes whose temperatures stay 1.
            p.constants.push((tf(&["probs", "softmax_beta"]), 1.0));
            p.constants.push((tf(&["alpha", "softmax_beta"]), 1.0));
            if matches!(spec.decoder, Decoder::Thresh { .. }) {
                p.decoder
                    .push((tf(&["decoder_threshold"]), DecoderField::Threshold));
            }
        }
    }
    Ok(p)
}

/// The bindings of area `area`'s cell (ours under `<area>/cell/`).
fn cell(
    p: &mut Plan,
    area: &str,
    spec: &CellSpec,
    projects_residual: bool,
    has_feedback: bool,
) -> Result<(), ImportError> {
    let ours = |leaf: &str| format!("{area}/cell/{leaf}");
    match spec {
        CellSpec::Identity => p.constants.push((tf(&[area, "memory_decay"]), 0.0)),
        CellSpec::TimeDecay => p.bind(ours("decay"), tf(&[area, "memory_decay"]), Layout::Same),
        CellSpec::SimpleRnn { layer_norm, .. } => {
            let s = |leaf: &str| tf(&[area, "ConvNormBasicCell", leaf]);
            p.conv(
                &ours("input"),
                format!("{}/weights", s("i")),
                Some(format!("{}/bias", s("i"))),
            );
            p.conv(
                &ours("state"),
                format!("{}/weights", s("s")),
                Some(format!("{}/bias", s("s"))),
            );
            if *layer_norm {
                p.norm(&ours("ln"), s("layer_norm"));
            }
        }
        CellSpec::Gru { .. } => {
            let s = |leaf: &str| tf(&[area, "ConvGRUCell", leaf]);
            p.conv(
                &ours("gates"),
                format!("{}/weights", s("gates")),
                Some(format!("{}/bias", s("gates"))),
            );
            p.conv(
                &ours("candidate"),
                format!("{}/weights", s("candidates")),
                Some(format!("{}/bias", s("candidates"))),
            );
        }
        CellSpec::Lstm {
            peepholes,
            layer_norm,
            ..
        } => {
            let s = |leaf: &str| tf(&[area, "ConvLSTMCell", leaf]);
            p.conv(&ours("conv"), s("weights"), Some(s("bias")));
            if *layer_norm {
                for (gate, scope) in [
                    ("i", "input"),
                    ("j", "transform"),
                    ("f", "forget"),
                    ("o", "output"),
                    ("c", "state"),
                ] {
                    p.norm(&ours(&format!("ln_{gate}")), s(scope));
                }
            }
            if *peepholes {
                for gate in ["i", "f", "o"] {
                    p.bind(
                        ours(&format!("peephole_{gate}")),
                        s(&format!("peepholes/w_{gate}_diag")),
                        Layout::Hwc,
                    );
                }
            }
        }
        CellSpec::Ugrnn { .. } => p.conv(
            &ours("conv"),
            tf(&[area, "ConvUGRNNCell", "weights"]),
            Some(tf(&[area, "ConvUGRNNCell", "bias"])),
        ),
        CellSpec::IntersectionRnn { .. } => p.conv(
            &ours("conv"),
            tf(&[area, "ConvIntersectionRNNCell", "weights"]),
            Some(tf(&[area, "ConvIntersectionRNNCell", "bias"])),
        ),
        CellSpec::Rgc(r) => {
            // The shallow models' cell (`cells.py`): every temporal conv is `_conv`, which creates
            // no bias; with biases (our default outside the reference names) they cannot load.
            let s = |leaf: &str| tf(&[area, "ReciprocalGateCell", leaf]);
            let bias = !r.bias_free_gates;
            for (leaf, scope) in [
                ("input_to_cell", "cell/input_to_cell"),
                ("tau_cc", "cell/tau"),
                ("gate_hc", "cell/gate"),
                ("tau_hh", "out/tau"),
                ("gate_ch", "out/gate"),
                ("residual_to_out_gate", "out/residual_to_out_gate"),
            ] {
                p.conv(
                    &ours(leaf),
                    format!("{}/weights", s(scope)),
                    bias.then(|| format!("{}/bias", s(scope))),
                );
            }
        }
        CellSpec::GeneralRgc(g) => median(p, area, g, projects_residual, has_feedback)?,
    }
    Ok(())
}

/// The searched cell of `rgc_intermediate` (`median_rgcell.py`), for the knobs that cell uses.
fn median(
    p: &mut Plan,
    area: &str,
    g: &GeneralRgcSpec,
    projects_residual: bool,
    has_feedback: bool,
) -> Result<(), ImportError> {
    let unsupported = [
        (g.cell_to_out, "cell_to_out"),
        (g.cell_residual, "cell_residual"),
        (g.residual_to_cell_tau, "residual_to_cell_tau"),
        (g.residual_to_cell_gate, "residual_to_cell_gate"),
        (g.residual_to_out_tau, "residual_to_out_tau"),
        (g.residual_to_out_gate, "residual_to_out_gate"),
    ];
    if let Some((_, knob)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(ImportError::Unsupported {
            area: area.to_string(),
            what: format!(
                "the general RGC's `{knob}` path, which the released median cell does not use"
            ),
        });
    }
    let ours = |leaf: &str| format!("{area}/cell/{leaf}");
    let s = |leaf: &str| tf(&[area, "ReciprocalGateCell", leaf]);
    let bias = !g.compat_bias_free_convs;
    if g.uses_cell() {
        p.temporal(
            &ours("tau_cc"),
            g.tau.conv,
            &s("cell/cell_to_cell"),
            &s("cell/tau"),
            bias,
        );
        p.temporal(
            &ours("gate_hc"),
            g.gate.conv,
            &s("cell/out_to_cell"),
            &s("cell/out_to_cell"),
            bias,
        );
        if g.input_to_cell.is_on() {
            p.temporal(
                &ours("input_to_cell"),
                g.input_to_cell,
                &s("cell/input_to_cell"),
                &s("cell/input_to_cell"),
                bias,
            );
        }
        p.temporal(
            &ours("gate_ch"),
            g.gate.conv,
            &s("out/cell_to_out"),
            &s("out/gate"),
            bias,
        );
        if g.layer_norm {
            p.norm(&ours("ln_c"), s("cell/layer_norm"));
        }
    }
    p.temporal(
        &ours("tau_hh"),
        g.tau.conv,
        &s("out/out_to_out"),
        &s("out/tau"),
        bias,
    );
    if g.input_to_out.is_on() {
        p.temporal(
            &ours("input_to_out"),
            g.input_to_out,
            &s("out/input_to_out"),
            &s("out/input_to_out"),
            bias,
        );
    }
    if g.out_residual && projects_residual {
        p.bind(
            ours("out_residual/weight"),
            s("out/residual_add_weights"),
            Layout::ConvHwio,
        );
    }
    if g.layer_norm {
        p.norm(&ours("ln_h"), s("out/layer_norm"));
    }
    if !has_feedback {
        return Ok(());
    }
    let (scope, leaf) = match g.feedback_entry {
        FeedbackEntry::Input => ("input", "feedback_to_input"),
        FeedbackEntry::Cell => ("cell", "feedback_to_cell"),
        FeedbackEntry::Out => ("out", "feedback_to_out"),
    };
    let knob = if g.feedback.is_on() {
        g.feedback
    } else {
        ConvKnob::dense(1)
    };
    p.temporal(
        &ours("feedback"),
        knob,
        &s(&format!("{scope}/{leaf}")),
        &s(&format!("{scope}/feedback")),
        bias,
    );
    Ok(())
}
