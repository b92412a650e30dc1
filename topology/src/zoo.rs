//! Named presets: the 224-px architectures of the released models (SPEC §5, REFERENCE-NOTES §4)
//! and compact 28×28 grey presets for the embedded Fashion-MNIST task.

use crate::decoders::Decoder;
use crate::regions::Depth;
use crate::spec::*;
use cell_zoo::{Activation, CellSpec, GeneralRgcSpec, RgcSpec, DEFAULT_LN_EPS, TF1_LN_EPS};

/// Every preset name, in display order.
pub fn names() -> Vec<&'static str> {
    let mut v = Vec::new();
    for cell in CELLS {
        v.push(leak(format!("{cell}_shallow")));
    }
    v.push("feedforward_shallow");
    for cell in CELLS.iter().filter(|c| **c != "rgc") {
        v.push(leak(format!("{cell}_intermediate")));
    }
    v.push("rgc_intermediate");
    v.extend(VARIANTS.iter().map(|v| v.0));
    v.push("feedforward_intermediate");
    v.push("compact_feedforward");
    for cell in CELLS {
        v.push(leak(format!("compact_{cell}")));
    }
    v.push("compact_rgc_median");
    v
}

/// The recurrent cells the presets come in (`{cell}_shallow`, `{cell}_intermediate`,
/// `compact_{cell}`), in the paper's order.
pub const CELLS: [&str; 7] = [
    "timedecay",
    "simplernn",
    "gru",
    "lstm",
    "ugrnn",
    "intersectionrnn",
    "rgc",
];

fn leak(s: String) -> &'static str {
    // The preset list is small and fixed; interning its names keeps the API `&'static str`.
    Box::leak(s.into_boxed_str())
}

/// The released models that share a base architecture and differ in how long they are unrolled
/// with the image shown at every step (`t22`, `t30`) and in their decoder (`dthresh`: `thresh`,
/// `tmaxconf`: `max_conf` with a trained temperature): name, base, steps of constant presentation.
const VARIANTS: [(&str, &str, Option<usize>); 6] = [
    ("ugrnn_intermediate_t30", "ugrnn_intermediate", Some(30)),
    (
        "ugrnn_intermediate_t30_dthresh",
        "ugrnn_intermediate",
        Some(30),
    ),
    (
        "ugrnn_intermediate_t30_tmaxconf",
        "ugrnn_intermediate",
        Some(30),
    ),
    ("rgc_intermediate_dthresh", "rgc_intermediate", None),
    ("rgc_intermediate_tmaxconf", "rgc_intermediate", None),
    (
        "rgc_intermediate_t22_tmaxconf",
        "rgc_intermediate",
        Some(22),
    ),
];

fn variant(name: &str) -> Option<ModelSpec> {
    let &(_, base, constant_steps) = VARIANTS.iter().find(|v| v.0 == name)?;
    let mut spec = get(base)?;
    spec.name = name.to_string();
    if let Some(t) = constant_steps {
        // The image stays on for the whole default unroll (the reference's `long_unroll`).
        spec.default_steps = t;
        spec.image_off = t;
    }
    // The decoders read steps [num_layers, T), num_layers counting the readout node.
    let from = spec.areas.len() + 1;
    spec.decoder = if name.ends_with("_dthresh") {
        Decoder::Thresh {
            from,
            threshold: 0.9,
            beta: 1.0,
        }
    } else if name.ends_with("_tmaxconf") {
        // The temperature is trained; a checkpoint import sets it.
        Decoder::MaxConf { from, beta: 1.0 }
    } else {
        Decoder::Last
    };
    Some(spec)
}

/// The preset called `name`, or `None`.
pub fn get(name: &str) -> Option<ModelSpec> {
    if let Some(spec) = variant(name) {
        return Some(spec);
    }
    if let Some(cell) = name.strip_suffix("_shallow") {
        return shallow(cell);
    }
    if let Some(cell) = name.strip_suffix("_intermediate") {
        return intermediate(cell);
    }
    if let Some(cell) = name.strip_prefix("compact_") {
        return compact(cell);
    }
    None
}

/// The depth of the released architecture `name` names: a released model (`{cell}_shallow`,
/// `{cell}_intermediate`), one of its variants (`rgc_intermediate_t22_tmaxconf`, ...) or a
/// feedforward base (`feedforward_shallow`, `feedforward_intermediate`); `None` for any other
/// name (the compact presets among them). [`crate::regions`] maps its areas to brain regions.
pub fn released_depth(name: &str) -> Option<Depth> {
    let base = VARIANTS.iter().find(|v| v.0 == name).map_or(name, |v| v.1);
    get(base)?;
    if base.ends_with("_shallow") {
        Some(Depth::Shallow)
    } else if base.ends_with("_intermediate") {
        Some(Depth::Intermediate)
    } else {
        None
    }
}

/// The preset called `name`, or an error listing the known names.
pub fn get_or_err(name: &str) -> Result<ModelSpec, String> {
    get(name).ok_or_else(|| {
        format!(
            "unknown model `{name}`; known presets: {}",
            names().join(", ")
        )
    })
}

/// `spec` with every channel width divided by `divisor` (at least 1 channel each): conv outputs,
/// cell output and state depths, and the number of classes. Everything else (kernels, strides,
/// map sizes, steps, edges, decoder) is unchanged, so a narrowed preset computes the same kind of
/// function as the preset, far faster: the parity tests against the reference code run the
/// released architectures narrowed this way (`tf-import/tests/reference/make_reference.py`
/// narrows the reference's model files by the same rule).
pub fn narrowed(spec: &ModelSpec, divisor: usize) -> ModelSpec {
    let d = divisor.max(1);
    let n = |c: usize| (c / d).max(1);
    let mut s = spec.clone();
    s.num_classes = n(s.num_classes);
    for a in &mut s.areas {
        a.conv.channels = n(a.conv.channels);
        a.cell = a.cell.map_widths(n);
    }
    s
}

/// `compact_timedecay` for 16×16 colour images and `classes` classes, unrolled `steps` steps
/// with the image shown throughout: the smallest recurrent model that trains on a JPEG folder
/// (such as `datasets::synthetic::write_splits` writes), for tests and smoke runs. Not a preset
/// (not in [`names`]): it is the compact preset with its input and readout changed.
pub fn tiny_colour(classes: usize, steps: usize) -> ModelSpec {
    let mut spec = compact("timedecay").unwrap_or_else(|| unreachable!("a fixed preset"));
    spec.input = InputSpec {
        channels: 3,
        height: 16,
        width: 16,
    };
    spec.num_classes = classes;
    spec.default_steps = steps;
    spec.image_off = steps;
    spec
}

fn conv(channels: usize, kernel: usize, activation: Activation) -> ConvSpec {
    ConvSpec {
        channels,
        kernel,
        stride: 1,
        activation,
        bias: true,
    }
}

fn area(name: &str, conv: ConvSpec, cell: CellSpec, pool: bool) -> AreaSpec {
    AreaSpec {
        name: name.into(),
        conv,
        cell,
        residual: None,
        pool: pool.then_some(PoolSpec::TWO_BY_TWO),
    }
}

/// A SimpleRNN cell; `layer_norm` with its epsilon.
fn simple(out: Option<usize>, layer_norm: Option<f32>) -> CellSpec {
    CellSpec::SimpleRnn {
        out_channels: out,
        kernel: 3,
        layer_norm: layer_norm.is_some(),
        layer_norm_epsilon: layer_norm.unwrap_or(DEFAULT_LN_EPS),
    }
}

fn plain_lstm(out: Option<usize>) -> CellSpec {
    CellSpec::Lstm {
        out_channels: out,
        kernel: 3,
        forget_bias: 1.0,
        peepholes: false,
        layer_norm: false,
        init_scale: 1.0,
        bias_init: 0.0,
        layer_norm_epsilon: TF1_LN_EPS,
    }
}

/// The cell of `kind` for shallow area `idx` (0 = conv3, 1 = conv4, 2 = conv5), with the tuned
/// per-area settings of the released shallow models.
fn shallow_cell(kind: &str, idx: usize) -> Option<CellSpec> {
    const LSTM_OUT: [usize; 3] = [128, 256, 256];
    Some(match kind {
        "timedecay" => CellSpec::TimeDecay,
        "simplernn" => simple(Some(LSTM_OUT[idx]), Some(TF1_LN_EPS)),
        "gru" => CellSpec::Gru {
            out_channels: None,
            kernel: 3,
        },
        "lstm" => CellSpec::Lstm {
            out_channels: Some(LSTM_OUT[idx]),
            kernel: [2, 3, 4][idx],
            // The tuned values of `configs/lstm_shallow.npz` to f32 precision: the forget bias
            // enters every step, so three decimals would change the outputs at 1e-4.
            forget_bias: [1.356_175_5, 0.977_962_9, 0.924_928][idx],
            peepholes: idx == 1,
            layer_norm: true,
            init_scale: [0.700_884_3, 1.831_456_1, 0.893_763_66][idx],
            bias_init: [1.642_768_9, -1.166_019, -1.349_501_6][idx],
            layer_norm_epsilon: TF1_LN_EPS,
        },
        "ugrnn" => CellSpec::Ugrnn {
            out_channels: None,
            kernel: 3,
        },
        "intersectionrnn" => CellSpec::IntersectionRnn { kernel: 3 },
        "rgc" => CellSpec::Rgc(RgcSpec::default()),
        "feedforward" => CellSpec::Identity,
        _ => return None,
    })
}

/// Shallow zoo: conv1 7×7/2 64 → pool; conv2 3×3 128 → pool; conv3–conv5 (256, 256, 512) conv →
/// cell → pool; readout 2×2 VALID conv → global mean. 224 px, 1000 classes, 16 steps.
fn shallow(kind: &str) -> Option<ModelSpec> {
    let cells: Vec<CellSpec> = (0..3)
        .map(|i| shallow_cell(kind, i))
        .map(|c| match c {
            // The released rgc_shallow's temporal convs carry no bias (the reference's `_conv`
            // never creates one: 23,956,840 parameters, as its checkpoint holds) and clip their
            // kernels to the map.
            Some(CellSpec::Rgc(r)) => Some(CellSpec::Rgc(RgcSpec {
                kernel: r.kernel,
                ..RgcSpec::reference()
            })),
            other => other,
        })
        .collect::<Option<_>>()?;
    // Non-RGC cells supply the nonlinearity themselves; the RGC and the feedforward base apply
    // ELU after the conv; time-decay has no nonlinearity in conv3–conv5 at all.
    let act = match kind {
        "rgc" | "feedforward" => Activation::Elu,
        _ => Activation::Identity,
    };
    let mut c1 = conv(64, 7, Activation::Elu);
    c1.stride = 2;
    Some(ModelSpec {
        name: format!("{kind}_shallow"),
        input: InputSpec {
            channels: 3,
            height: 224,
            width: 224,
        },
        num_classes: 1000,
        areas: vec![
            area("conv1", c1, CellSpec::Identity, true),
            area(
                "conv2",
                conv(128, 3, Activation::Elu),
                CellSpec::Identity,
                true,
            ),
            area("conv3", conv(256, 3, act), cells[0].clone(), true),
            area("conv4", conv(256, 3, act), cells[1].clone(), true),
            area("conv5", conv(512, 3, act), cells[2].clone(), true),
        ],
        edges: vec![],
        readout: ReadoutSpec {
            name: "imnetds".into(),
            kind: ReadoutKind::ConvGap { kernel: 2 },
        },
        default_steps: 16,
        image_off: 12,
        decoder: Default::default(),
    })
}

fn intermediate_cell(kind: &str) -> Option<CellSpec> {
    Some(match kind {
        "timedecay" => CellSpec::TimeDecay,
        "simplernn" => simple(None, None),
        "gru" => CellSpec::Gru {
            out_channels: None,
            kernel: 3,
        },
        "lstm" => plain_lstm(None),
        "ugrnn" => CellSpec::Ugrnn {
            out_channels: None,
            kernel: 3,
        },
        "intersectionrnn" => CellSpec::IntersectionRnn { kernel: 3 },
        "feedforward" => CellSpec::Identity,
        _ => return None,
    })
}

fn c1_intermediate() -> AreaSpec {
    let mut c1 = conv(64, 7, Activation::Elu);
    c1.stride = 2;
    area("conv1", c1, CellSpec::Identity, true)
}

/// Intermediate zoo (ResNet-18-like): conv1 7×7/2 64 → pool; blocks conv2..conv10 (64, 64, 128,
/// 128, 256, 256, 512, 512, 512) of 3×3 conv + ELU → cell → 3×3 conv → + residual → ELU, cells in
/// conv4–conv10, pools after conv4, conv6, conv7, conv10; readout GAP → FC. 17 steps.
/// `rgc_intermediate` is the searched model with the median cell and five feedback edges.
fn intermediate(kind: &str) -> Option<ModelSpec> {
    if kind == "rgc" {
        return Some(rgc_intermediate());
    }
    let cell = intermediate_cell(kind)?;
    let channels = [64, 64, 128, 128, 256, 256, 512, 512, 512];
    let pools = [false, false, true, false, true, true, false, false, true];
    let mut areas = vec![c1_intermediate()];
    for (i, (&ch, &pool)) in channels.iter().zip(&pools).enumerate() {
        let n = i + 2;
        let mut a = area(
            &format!("conv{n}"),
            conv(ch, 3, Activation::Elu),
            if n >= 4 {
                cell.clone()
            } else {
                CellSpec::Identity
            },
            pool,
        );
        a.residual = Some(ResidualSpec { kernel: 3 });
        areas.push(a);
    }
    Some(ModelSpec {
        name: format!("{kind}_intermediate"),
        input: InputSpec {
            channels: 3,
            height: 224,
            width: 224,
        },
        num_classes: 1000,
        areas,
        edges: vec![],
        readout: ReadoutSpec {
            name: "imnetds".into(),
            kind: ReadoutKind::GapFc,
        },
        default_steps: 17,
        image_off: 12,
        decoder: Default::default(),
    })
}

fn edge(from: &str, to: &str) -> EdgeSpec {
    EdgeSpec {
        from: from.into(),
        to: to.into(),
    }
}

/// rgc_intermediate: conv1 64 (+pool), conv2 128, conv3 128 (conv + ELU); conv4..conv10 = conv
/// (no activation) → median RGC, channels 128, 128, 256, 256, 256, 512, 512; pools after conv1,
/// conv4, conv6, conv7, conv10; feedback conv8→conv5, conv9→conv6, conv10→conv7, conv7→conv6,
/// conv10→conv9.
fn rgc_intermediate() -> ModelSpec {
    let median = CellSpec::GeneralRgc(Box::new(GeneralRgcSpec::median()));
    let mut areas = vec![
        c1_intermediate(),
        area(
            "conv2",
            conv(128, 3, Activation::Elu),
            CellSpec::Identity,
            false,
        ),
        area(
            "conv3",
            conv(128, 3, Activation::Elu),
            CellSpec::Identity,
            false,
        ),
    ];
    let channels = [128, 128, 256, 256, 256, 512, 512];
    let pools = [true, false, true, true, false, false, true];
    for (i, (&ch, &pool)) in channels.iter().zip(&pools).enumerate() {
        areas.push(area(
            &format!("conv{}", i + 4),
            conv(ch, 3, Activation::Identity),
            median.clone(),
            pool,
        ));
    }
    ModelSpec {
        name: "rgc_intermediate".into(),
        input: InputSpec {
            channels: 3,
            height: 224,
            width: 224,
        },
        num_classes: 1000,
        areas,
        edges: vec![
            edge("conv8", "conv5"),
            edge("conv9", "conv6"),
            edge("conv10", "conv7"),
            edge("conv7", "conv6"),
            edge("conv10", "conv9"),
        ],
        readout: ReadoutSpec {
            name: "imnetds".into(),
            kind: ReadoutKind::GapFc,
        },
        default_steps: 17,
        image_off: 12,
        decoder: Default::default(),
    }
}

/// Compact presets for 28×28 grey input and 10 classes: conv1 5×5 (32) → pool (14), conv2 3×3 (32)
/// → cell → pool (7), conv3 3×3 (64) → cell → pool (4), readout GAP → FC. The image stays on (constant
/// presentation) for the 8 default steps. `compact_feedforward` is wider so that its parameter
/// count is close to `compact_rgc`'s; `compact_rgc_median` uses the searched cell with a
/// conv3 → conv2 feedback edge.
fn compact(kind: &str) -> Option<ModelSpec> {
    let (c1, c2, c3) = if kind == "feedforward" {
        (32, 128, 240)
    } else {
        (32, 32, 64)
    };
    let (cell2, cell3, act, edges) = match kind {
        "rgc_median" => {
            let mut m = GeneralRgcSpec::median();
            m.cell_depth = 32;
            m.tau.conv.size = 5;
            m.gate.conv.size = 5;
            let cell = CellSpec::GeneralRgc(Box::new(m));
            (
                cell.clone(),
                cell,
                Activation::Identity,
                vec![edge("conv3", "conv2")],
            )
        }
        "simplernn" => (
            simple(None, Some(DEFAULT_LN_EPS)),
            simple(None, Some(DEFAULT_LN_EPS)),
            Activation::Identity,
            vec![],
        ),
        "lstm" => (
            plain_lstm(None),
            plain_lstm(None),
            Activation::Identity,
            vec![],
        ),
        other => {
            let cell = intermediate_cell(other).or_else(|| shallow_cell(other, 0))?;
            let act = match other {
                "rgc" | "feedforward" => Activation::Elu,
                _ => Activation::Identity,
            };
            (cell.clone(), cell, act, vec![])
        }
    };
    Some(ModelSpec {
        name: format!("compact_{kind}"),
        input: InputSpec {
            channels: 1,
            height: 28,
            width: 28,
        },
        num_classes: 10,
        areas: vec![
            area(
                "conv1",
                conv(c1, 5, Activation::Elu),
                CellSpec::Identity,
                true,
            ),
            area("conv2", conv(c2, 3, act), cell2, true),
            area("conv3", conv(c3, 3, act), cell3, true),
        ],
        edges,
        readout: ReadoutSpec {
            name: "imnetds".into(),
            kind: ReadoutKind::GapFc,
        },
        default_steps: 8,
        image_off: 8,
        decoder: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_is_named_after_itself() {
        let names = names();
        assert!(names.len() >= 24, "{names:?}");
        for n in &names {
            let s = get(n).unwrap_or_else(|| panic!("{n} missing"));
            assert_eq!(&s.name, n);
        }
        assert!(get("resnet50").is_none());
        assert!(get_or_err("rgc_big")
            .unwrap_err()
            .contains("rgc_intermediate"));
    }

    #[test]
    fn reference_names_and_edges() {
        let s = get("rgc_intermediate").unwrap();
        let names: Vec<_> = s.areas.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            (1..=10).map(|i| format!("conv{i}")).collect::<Vec<_>>()
        );
        assert_eq!(s.readout.name, "imnetds");
        assert_eq!(s.edges.len(), 5);
        assert!(get("lstm_intermediate").is_some() && get("rgc_shallow").is_some());
    }

    /// The presentation defaults and decoders of the released variants (the reference's
    /// `MODEL_TO_KWARGS` and `set_imagepres`).
    #[test]
    fn released_variants_keep_their_base_and_change_time_and_decoder() {
        let base = get("rgc_intermediate").unwrap();
        let t22 = get("rgc_intermediate_t22_tmaxconf").unwrap();
        assert_eq!(t22.areas, base.areas);
        assert_eq!(t22.edges, base.edges);
        assert_eq!((t22.default_steps, t22.image_off), (22, 22));
        assert_eq!(
            t22.decoder,
            Decoder::MaxConf {
                from: 11,
                beta: 1.0
            }
        );
        let dthresh = get("rgc_intermediate_dthresh").unwrap();
        assert_eq!((dthresh.default_steps, dthresh.image_off), (17, 12));
        assert!(
            matches!(dthresh.decoder, Decoder::Thresh { from: 11, threshold, .. } if threshold == 0.9)
        );
        let t30 = get("ugrnn_intermediate_t30").unwrap();
        assert_eq!(
            (t30.default_steps, t30.image_off, t30.decoder),
            (30, 30, Decoder::Last)
        );
        assert_eq!(base.decoder, Decoder::Last);
        assert_eq!(get("rgc_shallow").unwrap().default_steps, 16);
        let released = names()
            .iter()
            .filter(|n| !n.starts_with("compact") && !n.starts_with("feedforward"))
            .count();
        assert_eq!(released, 20);
    }

    #[test]
    fn the_tiny_colour_model_takes_small_colour_images_and_builds() {
        let s = tiny_colour(3, 2);
        assert_eq!(
            (
                s.input.channels,
                s.input.height,
                s.input.width,
                s.num_classes
            ),
            (3, 16, 16, 3)
        );
        assert_eq!((s.default_steps, s.image_off), (2, 2));
        assert_eq!(s.areas, get("compact_timedecay").unwrap().areas);
        crate::infer(&s).unwrap();
    }

    #[test]
    fn narrowing_divides_every_width_and_keeps_the_rest() {
        let full = get("lstm_shallow").unwrap();
        let n = narrowed(&full, 32);
        assert_eq!(n.num_classes, 31);
        let widths: Vec<usize> = n.areas.iter().map(|a| a.conv.channels).collect();
        assert_eq!(widths, vec![2, 4, 8, 8, 16]);
        assert!(matches!(
            n.areas[2].cell,
            CellSpec::Lstm {
                out_channels: Some(4),
                kernel: 2,
                ..
            }
        ));
        let m = narrowed(&get("rgc_intermediate").unwrap(), 16);
        assert!(matches!(&m.areas[4].cell, CellSpec::GeneralRgc(g) if g.cell_depth == 4));
        assert_eq!(m.edges.len(), 5);
        m.validate().unwrap();
    }
}
