//! Contract tests over every cell of the zoo: build, forward and backward through 3 steps, finite
//! outputs, and a gradient for every parameter. Plus the gate offsets of SPEC §4, checked with all
//! weights at zero where the equations reduce to known constants.
#![allow(clippy::unwrap_used)]

use cell_zoo::*;
use tensor::testing::rand_tensor;
use tensor::{Device, ParamStore, Rng, Tensor};

fn every_cell() -> Vec<CellSpec> {
    let mut all_switches = GeneralRgcSpec::median();
    all_switches.cell_depth = 6;
    all_switches.tau.conv = ConvKnob::dense(3);
    all_switches.tau.bias = 0.5;
    all_switches.cell_to_out = true;
    all_switches.cell_residual = true;
    all_switches.residual_to_cell_tau = true;
    all_switches.residual_to_cell_gate = true;
    all_switches.residual_to_out_tau = true;
    all_switches.residual_to_out_gate = true;
    all_switches.layer_norm = true;
    all_switches.input_to_out = ConvKnob::separable(3);
    let mut no_cell = GeneralRgcSpec::median();
    no_cell.gate.conv = ConvKnob::OFF;
    no_cell.feedback_entry = FeedbackEntry::Input;
    let mut cell_entry = GeneralRgcSpec::median();
    cell_entry.feedback_entry = FeedbackEntry::Cell;
    cell_entry.feedback = ConvKnob::separable(3);
    cell_entry.input_to_cell = ConvKnob::OFF;
    cell_entry.cell_depth = 4;
    vec![
        CellSpec::Identity,
        CellSpec::TimeDecay,
        CellSpec::SimpleRnn {
            out_channels: Some(6),
            kernel: 3,
            layer_norm: true,
            layer_norm_epsilon: DEFAULT_LN_EPS,
        },
        CellSpec::Gru {
            out_channels: None,
            kernel: 3,
        },
        CellSpec::Lstm {
            out_channels: Some(5),
            kernel: 2,
            forget_bias: 1.356,
            peepholes: true,
            layer_norm: true,
            init_scale: 0.7,
            bias_init: 0.3,
            layer_norm_epsilon: DEFAULT_LN_EPS,
        },
        CellSpec::Ugrnn {
            out_channels: Some(3),
            kernel: 3,
        },
        CellSpec::IntersectionRnn { kernel: 3 },
        CellSpec::Rgc(RgcSpec::default()),
        CellSpec::Rgc(RgcSpec::reference()),
        CellSpec::GeneralRgc(Box::new(GeneralRgcSpec::median())),
        CellSpec::GeneralRgc(Box::new(all_switches)),
        CellSpec::GeneralRgc(Box::new(no_cell)),
        CellSpec::GeneralRgc(Box::new(cell_entry)),
    ]
}

fn build(spec: &CellSpec, params: &mut ParamStore, dims: &CellDims) -> AnyCell {
    let mut rng = Rng::new(7);
    let mut ctx = BuildCtx {
        params,
        prefix: "area/cell".into(),
        rng: &mut rng,
        device: Device::Cpu,
    };
    spec.build(&mut ctx, dims).unwrap()
}

#[test]
fn every_cell_steps_backpropagates_and_trains_every_parameter() {
    let mut rng = Rng::new(1);
    for spec in every_cell() {
        let routes = spec.routes_feedback();
        let dims = CellDims {
            x_channels: 4,
            u_channels: 3,
            feedback_channels: if routes { 5 } else { 0 },
            hw: (5, 5),
            u_hw: (6, 6),
        };
        let mut params = ParamStore::new();
        let cell = build(&spec, &mut params, &dims);
        let u = rand_tensor(&mut rng, [2, 3, 6, 6]);
        let fb = rand_tensor(&mut rng, [2, 5, 5, 5]);
        let mut state = cell
            .zero_state(&rand_tensor(&mut rng, [2, 4, 5, 5]))
            .unwrap();
        let mut outs = Vec::new();
        for _ in 0..3 {
            let x = rand_tensor(&mut rng, [2, 4, 5, 5]);
            let input = CellInput {
                x: &x,
                u: &u,
                feedback: routes.then_some(&fb),
            };
            let (y, next) = cell.step(&input, &state).unwrap();
            assert_eq!(
                y.dims(),
                &[2, spec.out_channels(4), 5, 5],
                "{}: output shape",
                spec.kind()
            );
            state = next;
            outs.push(y);
        }
        let y = outs.last().unwrap();
        let v = y.to_vec().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{}: non-finite output",
            spec.kind()
        );
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let missing = params.missing_grads(&grads);
        assert!(
            missing.is_empty(),
            "{:?}: no gradient for {missing:?}",
            spec
        );
        for (name, _, g) in params.grads_for(&grads) {
            let g = g.unwrap().to_vec().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
        }
    }
}

fn zero_params(params: &ParamStore) {
    for (_, t) in params.iter() {
        t.assign(&t.zeros_like().unwrap()).unwrap();
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One step from state `h0 = c0 = s` with every weight and bias at zero and `x = 0`.
fn zero_weight_step(spec: CellSpec, s: f32) -> (Vec<f32>, AnyState) {
    let dims = CellDims {
        x_channels: 2,
        u_channels: 2,
        feedback_channels: 0,
        hw: (3, 3),
        u_hw: (3, 3),
    };
    let mut params = ParamStore::new();
    let cell = build(&spec, &mut params, &dims);
    zero_params(&params);
    let x = Tensor::zeros([1, 2, 3, 3], Device::Cpu).unwrap();
    let h = Tensor::full(s, [1, 2, 3, 3], Device::Cpu).unwrap();
    let state = match cell.zero_state(&x).unwrap() {
        AnyState::Lstm(_) => AnyState::Lstm(PairState {
            c: h.clone(),
            h: h.clone(),
        }),
        AnyState::Gru(_) => AnyState::Gru(h.clone()),
        AnyState::Ugrnn(_) => AnyState::Ugrnn(h.clone()),
        AnyState::TimeDecay(_) => AnyState::TimeDecay(h.clone()),
        other => other,
    };
    let (y, next) = cell
        .step(
            &CellInput {
                x: &x,
                u: &x,
                feedback: None,
            },
            &state,
        )
        .unwrap();
    (y.to_vec().unwrap(), next)
}

#[test]
fn gate_offsets_match_the_equations() {
    let s = 0.8f32;
    // GRU: r = σ(0 + 1), z = σ(0) = ½, ĥ = tanh(0) = 0 → h' = ½·h.
    let (y, _) = zero_weight_step(
        CellSpec::Gru {
            out_channels: None,
            kernel: 3,
        },
        s,
    );
    assert!((y[0] - 0.5 * s).abs() < 1e-6, "gru {}", y[0]);
    // UGRNN: g = σ(1) → h' = σ(1)·h.
    let (y, _) = zero_weight_step(
        CellSpec::Ugrnn {
            out_channels: None,
            kernel: 3,
        },
        s,
    );
    assert!((y[0] - sigmoid(1.0) * s).abs() < 1e-6, "ugrnn {}", y[0]);
    // LSTM: c' = c·σ(0 + forget_bias), h' = tanh(c')·σ(0).
    let (y, next) = zero_weight_step(
        CellSpec::Lstm {
            out_channels: None,
            kernel: 3,
            forget_bias: 1.5,
            peepholes: false,
            layer_norm: false,
            init_scale: 1.0,
            bias_init: 0.0,
            layer_norm_epsilon: DEFAULT_LN_EPS,
        },
        s,
    );
    let c = s * sigmoid(1.5);
    assert!((y[0] - c.tanh() * 0.5).abs() < 1e-6, "lstm {}", y[0]);
    let AnyState::Lstm(st) = next else {
        panic!("lstm state")
    };
    assert!((st.c.to_vec().unwrap()[0] - c).abs() < 1e-6);
    // Time decay with m = 0: s' = x = 0.
    let (y, _) = zero_weight_step(CellSpec::TimeDecay, s);
    assert_eq!(y[0], 0.0);
}

#[test]
fn median_cell_matches_its_equation_with_zero_weights() {
    // With every conv at zero and x = u = 0: c' = ELU(0.922·(1 − σ(0))·c),
    // h' = ELU(0.922·(1 − σ(0))·h + 0.701·(1 − tanh(0))·0).
    let mut m = GeneralRgcSpec::median();
    m.cell_depth = 2;
    let (y, next) = zero_weight_step(CellSpec::GeneralRgc(Box::new(m)), 0.0);
    assert!(y.iter().all(|v| *v == 0.0));
    let AnyState::Rgc(st) = next else {
        panic!("rgc state")
    };
    assert_eq!(st.c.dims(), &[1, 2, 3, 3]);
    let tau = 0.921_934_8 * (1.0 - 0.5);
    let dims = CellDims {
        x_channels: 2,
        u_channels: 2,
        feedback_channels: 0,
        hw: (3, 3),
        u_hw: (3, 3),
    };
    let mut params = ParamStore::new();
    let cell = build(
        &CellSpec::GeneralRgc(Box::new(GeneralRgcSpec {
            cell_depth: 2,
            ..GeneralRgcSpec::median()
        })),
        &mut params,
        &dims,
    );
    zero_params(&params);
    let z = Tensor::zeros([1, 2, 3, 3], Device::Cpu).unwrap();
    let h = Tensor::full(0.6, [1, 2, 3, 3], Device::Cpu).unwrap();
    let (y, _) = cell
        .step(
            &CellInput {
                x: &z,
                u: &z,
                feedback: None,
            },
            &AnyState::Rgc(PairState { c: h.clone(), h }),
        )
        .unwrap();
    assert!((y.to_vec().unwrap()[0] - tau * 0.6).abs() < 1e-6);
}

#[test]
fn separable_kernels_are_capped_at_the_map_size() {
    let dims = CellDims {
        x_channels: 4,
        u_channels: 4,
        feedback_channels: 0,
        hw: (4, 4),
        u_hw: (4, 4),
    };
    let mut params = ParamStore::new();
    build(
        &CellSpec::GeneralRgc(Box::new(GeneralRgcSpec {
            cell_depth: 4,
            ..GeneralRgcSpec::median()
        })),
        &mut params,
        &dims,
    );
    let dw = params.get("area/cell/tau_hh/depthwise/weight").unwrap();
    assert_eq!(
        dw.dims(),
        &[4, 1, 4, 4],
        "7×7 depthwise capped to the 4×4 map"
    );
}

/// The released rgc_shallow's cell (`RgcSpec::reference`) clips its dense kernels to the map,
/// as the reference's `_conv` does, and has no conv biases.
#[test]
fn reference_rgc_clips_dense_kernels_and_has_no_biases() {
    let dims = CellDims {
        x_channels: 3,
        u_channels: 2,
        feedback_channels: 0,
        hw: (2, 2),
        u_hw: (2, 2),
    };
    let mut params = ParamStore::new();
    build(&CellSpec::Rgc(RgcSpec::reference()), &mut params, &dims);
    for leaf in ["tau_cc", "gate_hc", "input_to_cell", "tau_hh", "gate_ch"] {
        let w = params.get(&format!("area/cell/{leaf}/weight")).unwrap();
        assert_eq!(
            w.dims(),
            &[3, 3, 2, 2],
            "{leaf}: 3×3 clipped to the 2×2 map"
        );
        assert!(
            params.get(&format!("area/cell/{leaf}/bias")).is_none(),
            "{leaf}"
        );
    }
    let r = params.get("area/cell/residual_to_out_gate/weight").unwrap();
    assert_eq!(r.dims(), &[3, 2, 2, 2]);
    // The default keeps 3×3 kernels and biases.
    let mut params = ParamStore::new();
    build(&CellSpec::Rgc(RgcSpec::default()), &mut params, &dims);
    assert_eq!(
        params.get("area/cell/tau_cc/weight").unwrap().dims(),
        &[3, 3, 3, 3]
    );
    assert!(params.get("area/cell/tau_cc/bias").is_some());
}

/// The reference's ConvLSTM with layer norm and peepholes (`cells.py`): each gate's
/// pre-activation is normalised first and the peephole term added after, and the output gate's
/// peephole reads the previous `c`. With zero conv weights and biases the normalised gates are 0,
/// so on a 1×3 map with `c = [2, −1, 0.5]` and every peephole weight 1:
/// `c' = c∘σ(fb + c)`, `h = tanh(LN(c'))∘σ(c)`.
#[test]
fn lstm_peepholes_come_after_the_norm_and_read_the_previous_cell() {
    let dims = CellDims {
        x_channels: 1,
        u_channels: 1,
        feedback_channels: 0,
        hw: (1, 3),
        u_hw: (1, 3),
    };
    let fb = 0.5f64;
    let spec = CellSpec::Lstm {
        out_channels: None,
        kernel: 1,
        forget_bias: fb as f32,
        peepholes: true,
        layer_norm: true,
        init_scale: 1.0,
        bias_init: 0.0,
        layer_norm_epsilon: TF1_LN_EPS,
    };
    let mut params = ParamStore::new();
    let cell = build(&spec, &mut params, &dims);
    for (name, t) in params.iter() {
        let v = if name.contains("peephole") || name.ends_with("gamma") {
            1.0
        } else {
            0.0
        };
        t.assign(&Tensor::full(v, t.dims().to_vec(), Device::Cpu).unwrap())
            .unwrap();
    }
    let c0 = [2.0f64, -1.0, 0.5];
    let c = Tensor::from_vec(
        c0.iter().map(|&v| v as f32).collect(),
        [1, 1, 1, 3],
        Device::Cpu,
    )
    .unwrap();
    let z = Tensor::zeros([1, 1, 1, 3], Device::Cpu).unwrap();
    let (y, _) = cell
        .step(
            &CellInput {
                x: &z,
                u: &z,
                feedback: None,
            },
            &AnyState::Lstm(PairState { c, h: z.clone() }),
        )
        .unwrap();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let next: Vec<f64> = c0.iter().map(|&c| c * sig(fb + c)).collect();
    let mean = next.iter().sum::<f64>() / 3.0;
    let std = (next.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
    let want: Vec<f64> = next
        .iter()
        .zip(c0)
        .map(|(n, c)| ((n - mean) / std).tanh() * sig(c))
        .collect();
    let got = y.to_vec().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-5, "got {got:?}, want {want:?}");
    }
}
