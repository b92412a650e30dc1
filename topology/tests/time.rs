//! Time semantics of the unroll (SPEC §3) on tiny specs.
#![allow(clippy::unwrap_used)]

use cell_zoo::{Activation, CellSpec, GeneralRgcSpec};
use tensor::testing::rand_tensor;
use tensor::{no_grad, Rng, Tensor};
use topology::*;

fn conv(channels: usize) -> ConvSpec {
    ConvSpec {
        channels,
        kernel: 3,
        stride: 1,
        activation: Activation::Elu,
        bias: true,
    }
}

/// Three GRU areas at 8×8 → 4×4 → 2×2, feedback conv3 → conv2, 4 classes.
fn tiny(edges: Vec<EdgeSpec>) -> ModelSpec {
    let gru = CellSpec::Gru {
        out_channels: None,
        kernel: 3,
    };
    let area = |name: &str, c: usize, cell: CellSpec, pool: bool| AreaSpec {
        name: name.into(),
        conv: conv(c),
        cell,
        residual: None,
        pool: pool.then_some(PoolSpec::TWO_BY_TWO),
    };
    ModelSpec {
        name: "tiny".into(),
        input: InputSpec {
            channels: 2,
            height: 8,
            width: 8,
        },
        num_classes: 4,
        areas: vec![
            area("conv1", 4, CellSpec::Identity, true),
            area("conv2", 6, gru.clone(), true),
            area("conv3", 5, gru, false),
        ],
        edges,
        readout: ReadoutSpec {
            name: "imnetds".into(),
            kind: ReadoutKind::GapFc,
        },
        default_steps: 5,
        image_off: 3,
        decoder: Default::default(),
    }
}

fn feedback() -> Vec<EdgeSpec> {
    vec![EdgeSpec {
        from: "conv3".into(),
        to: "conv2".into(),
    }]
}

fn run(model: &Model, frames: &Frames, mode: TimingMode, steps: usize) -> Unrolled {
    let _g = no_grad();
    model
        .unroll(
            frames,
            &UnrollOptions {
                steps: Some(steps),
                mode,
                needed: Needed::Everything,
            },
        )
        .unwrap()
}

fn vals(u: &Unrolled, area: usize, t: usize) -> Vec<f32> {
    u.outputs[area][t].as_ref().unwrap().to_vec().unwrap()
}

fn constant(img: &Tensor) -> Frames {
    Frames::Image {
        image: img.clone(),
        presentation: Presentation::Constant,
        blank: DEFAULT_BLANK,
    }
}

#[test]
fn area_k_is_blind_to_the_image_before_step_k() {
    let model = Model::new(&tiny(feedback()), tensor::Device::Cpu, 3).unwrap();
    let mut rng = Rng::new(1);
    let (a, b) = (
        rand_tensor(&mut rng, [2, 2, 8, 8]),
        rand_tensor(&mut rng, [2, 2, 8, 8]),
    );
    let (ua, ub) = (
        run(&model, &constant(&a), TimingMode::Biological, 5),
        run(&model, &constant(&b), TimingMode::Biological, 5),
    );
    for k in 0..3 {
        for t in 0..5 {
            let same = vals(&ua, k, t) == vals(&ub, k, t);
            assert_eq!(same, t < k, "area {k} step {t}");
        }
    }
    // The readout (after 3 areas) first sees the image at step 3.
    let la: Vec<_> = ua
        .logits
        .iter()
        .map(|l| l.as_ref().unwrap().to_vec().unwrap())
        .collect();
    let lb: Vec<_> = ub
        .logits
        .iter()
        .map(|l| l.as_ref().unwrap().to_vec().unwrap())
        .collect();
    assert_eq!(la[2], lb[2]);
    assert_ne!(la[3], lb[3]);
}

#[test]
fn full_sweep_reaches_every_area_at_step_zero() {
    let model = Model::new(&tiny(feedback()), tensor::Device::Cpu, 3).unwrap();
    let mut rng = Rng::new(2);
    let (a, b) = (
        rand_tensor(&mut rng, [2, 2, 8, 8]),
        rand_tensor(&mut rng, [2, 2, 8, 8]),
    );
    let (ua, ub) = (
        run(&model, &constant(&a), TimingMode::FullSweep, 3),
        run(&model, &constant(&b), TimingMode::FullSweep, 3),
    );
    for k in 0..3 {
        assert_ne!(vals(&ua, k, 0), vals(&ub, k, 0), "area {k}");
    }
    assert_ne!(
        ua.logits[0].as_ref().unwrap().to_vec().unwrap(),
        ub.logits[0].as_ref().unwrap().to_vec().unwrap()
    );
}

#[test]
fn feedback_acts_one_step_after_its_source_changes() {
    // Perturb conv3's parameters: conv3 first changes at step 2 (when the image reaches it);
    // through the feedback edge conv2 must first change at step 3, not before.
    let spec = tiny(feedback());
    let m1 = Model::new(&spec, tensor::Device::Cpu, 3).unwrap();
    let m2 = Model::new(&spec, tensor::Device::Cpu, 3).unwrap();
    let w = m2.params.get("conv3/conv/bias").unwrap();
    w.assign(&w.add_scalar(0.5).unwrap()).unwrap();
    let img = rand_tensor(&mut Rng::new(3), [1, 2, 8, 8]);
    let (u1, u2) = (
        run(&m1, &constant(&img), TimingMode::Biological, 5),
        run(&m2, &constant(&img), TimingMode::Biological, 5),
    );
    let first_change = |area: usize| (0..5).find(|&t| vals(&u1, area, t) != vals(&u2, area, t));
    let src = first_change(2).unwrap();
    assert_eq!(first_change(1), Some(src + 1));
    assert_eq!(first_change(0), None);
}

#[test]
fn the_blank_reaches_area_k_at_image_off_plus_k() {
    let model = Model::new(&tiny(vec![]), tensor::Device::Cpu, 4).unwrap();
    let img = rand_tensor(&mut Rng::new(5), [2, 2, 8, 8]);
    let shown = Frames::Image {
        image: img.clone(),
        presentation: Presentation::OnOff { image_off: 2 },
        blank: 0.25,
    };
    let (u_off, u_on) = (
        run(&model, &shown, TimingMode::Biological, 6),
        run(&model, &constant(&img), TimingMode::Biological, 6),
    );
    for k in 0..3 {
        for t in 0..6 {
            let same = vals(&u_off, k, t) == vals(&u_on, k, t);
            assert_eq!(same, t < 2 + k, "area {k} step {t}");
        }
    }
}

#[test]
fn a_frame_sequence_equals_the_same_schedule() {
    let model = Model::new(&tiny(feedback()), tensor::Device::Cpu, 4).unwrap();
    let img = rand_tensor(&mut Rng::new(6), [2, 2, 8, 8]);
    let blank = Tensor::full(DEFAULT_BLANK, [2, 2, 8, 8], tensor::Device::Cpu).unwrap();
    let seq = Frames::Sequence(vec![
        img.clone(),
        img.clone(),
        img.clone(),
        blank.clone(),
        blank,
    ]);
    let sched = Frames::image(img);
    let (a, b) = (
        run(&model, &seq, TimingMode::Biological, 5),
        run(&model, &sched, TimingMode::Biological, 5),
    );
    for t in 0..5 {
        assert_eq!(vals(&a, 2, t), vals(&b, 2, t), "step {t}");
    }
}

#[test]
fn skipping_dead_work_gives_the_plain_loops_logits_and_gradients() {
    let spec = tiny(feedback());
    let model = Model::new(&spec, tensor::Device::Cpu, 8).unwrap();
    let img = rand_tensor(&mut Rng::new(9), [2, 2, 8, 8]);
    for mode in [TimingMode::Biological, TimingMode::FullSweep] {
        let opts = |needed| UnrollOptions {
            steps: Some(6),
            mode,
            needed,
        };
        let plain = model
            .unroll(&Frames::image(img.clone()), &opts(Needed::Everything))
            .unwrap();
        let fast = model
            .unroll(&Frames::image(img.clone()), &opts(Needed::LastLogits))
            .unwrap();
        let (lp, lf) = (plain.last_logits().unwrap(), fast.last_logits().unwrap());
        assert_eq!(lp.to_vec().unwrap(), lf.to_vec().unwrap(), "{mode:?}");
        // Every step's logits, with the same work skipped as for the last step's.
        let per_step = model
            .unroll(&Frames::image(img.clone()), &opts(Needed::AllLogits))
            .unwrap();
        let (all_plain, all_fast) = (plain.all_logits().unwrap(), per_step.all_logits().unwrap());
        for (t, (p, f)) in all_plain.iter().zip(&all_fast).enumerate() {
            assert_eq!(
                p.to_vec().unwrap(),
                f.to_vec().unwrap(),
                "{mode:?}: step {t}"
            );
        }
        let skipped_per_step =
            |u: &topology::Unrolled| u.outputs.iter().flatten().filter(|o| o.is_none()).count();
        assert_eq!(
            skipped_per_step(&per_step),
            skipped_per_step(&fast),
            "{mode:?}"
        );
        let skipped = fast
            .outputs
            .iter()
            .flatten()
            .filter(|o| o.is_none())
            .count();
        if mode == TimingMode::Biological {
            assert!(skipped > 0, "nothing skipped");
        }
        let gp = lp.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gf = lf.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, p) in model.params.iter() {
            let a = gp.get(p).map(|g| g.to_vec().unwrap());
            let b = gf.get(p).map(|g| g.to_vec().unwrap());
            assert_eq!(a, b, "{mode:?}: gradient of {name}");
        }
    }
}

#[test]
fn routed_feedback_is_resized_into_the_general_rgc() {
    let mut spec = tiny(feedback());
    let mut m = GeneralRgcSpec::median();
    m.cell_depth = 4;
    for a in &mut spec.areas[1..] {
        a.cell = CellSpec::GeneralRgc(Box::new(m.clone()));
        a.conv.activation = Activation::Identity;
    }
    let shapes = infer(&spec).unwrap();
    assert_eq!(shapes.area("conv2").unwrap().cell_feedback_channels, 5);
    let model = Model::new(&spec, tensor::Device::Cpu, 1).unwrap();
    let img = rand_tensor(&mut Rng::new(1), [2, 2, 8, 8]);
    let u = model
        .unroll(&Frames::image(img), &UnrollOptions::default())
        .unwrap();
    assert_eq!(u.steps(), 5);
    let grads = u
        .last_logits()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads
        .get(model.params.get("conv2/cell/feedback/weight").unwrap())
        .is_some());
}

#[test]
fn wrong_image_size_names_the_expected_size() {
    let model = Model::new(&tiny(vec![]), tensor::Device::Cpu, 1).unwrap();
    let img = Tensor::zeros([1, 2, 9, 8], tensor::Device::Cpu).unwrap();
    let e = model.forward(&img, None).unwrap_err().to_string();
    assert!(e.contains("[N, 2, 8, 8]"), "{e}");
}

#[test]
fn decoders_pick_the_documented_steps() {
    let d = tensor::Device::Cpu;
    // Two examples, three steps; example 0 is most confident at step 1, example 1 at step 2.
    let l = vec![
        Tensor::from_vec(vec![0.0, 0.0, 0.0, 0.0], [2, 2], d).unwrap(),
        Tensor::from_vec(vec![5.0, 0.0, 1.0, 0.0], [2, 2], d).unwrap(),
        Tensor::from_vec(vec![1.0, 0.0, 0.0, 9.0], [2, 2], d).unwrap(),
    ];
    let v = |dec: Decoder| dec.decode(&l).unwrap().to_vec().unwrap();
    assert_eq!(v(Decoder::Last), vec![1.0, 0.0, 0.0, 9.0]);
    assert_eq!(
        v(Decoder::MaxConf { from: 0, beta: 1.0 }),
        vec![5.0, 0.0, 0.0, 9.0]
    );
    // thresh 0.7: example 0 passes at step 1, example 1 (σ(1) = 0.73) at step 1 as well.
    assert_eq!(
        v(Decoder::Thresh {
            from: 0,
            threshold: 0.7,
            beta: 1.0,
        }),
        vec![5.0, 0.0, 1.0, 0.0]
    );
    assert_eq!(v(Decoder::Avg { from: 1, to: 3 }), vec![3.0, 0.0, 0.5, 4.5]);
    assert!(Decoder::Avg { from: 3, to: 3 }.decode(&l).is_err());
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5 * scale, "{what}: {x} vs {y}");
    }
}

/// Work before the image reaches an area runs at batch 1 (it is the same for every example), and
/// an area that reads the same tensors as at its previous step reuses its input-only work (its
/// whole output when stateless). A frame sequence gets neither, so the same schedule given as a
/// sequence is the plain loop: outputs, logits and gradients must agree.
#[test]
fn batch_uniform_and_repeated_work_give_the_plain_loops_outputs_and_gradients() {
    let model = Model::new(&tiny(feedback()), tensor::Device::Cpu, 5).unwrap();
    assert_schedule_matches_plain_loop(&model);
}

/// The same with RGC cells: the hand-designed one (its output gate reads a conv of the bypassed
/// input) and a general one with conv3's feedback entering its cell state and every residual
/// path on.
#[test]
fn rgc_input_paths_reused_across_steps_match_the_plain_loop() {
    let mut spec = tiny(feedback());
    spec.areas[2].cell = CellSpec::Rgc(Default::default());
    let mut g = GeneralRgcSpec::median();
    g.feedback_entry = cell_zoo::FeedbackEntry::Cell;
    g.cell_residual = true;
    g.residual_to_cell_tau = true;
    g.residual_to_cell_gate = true;
    g.residual_to_out_tau = true;
    g.residual_to_out_gate = true;
    g.cell_to_out = true;
    spec.areas[1].cell = CellSpec::GeneralRgc(Box::new(g));
    let model = Model::new(&spec, tensor::Device::Cpu, 8).unwrap();
    assert_schedule_matches_plain_loop(&model);
}

fn assert_schedule_matches_plain_loop(model: &Model) {
    let img = rand_tensor(&mut Rng::new(10), [3, 2, 8, 8]);
    let blank = Tensor::full(DEFAULT_BLANK, [3, 2, 8, 8], tensor::Device::Cpu).unwrap();
    let mut frames = vec![img.clone(); 3];
    frames.extend(vec![blank; 4]);
    let seq = Frames::Sequence(frames);
    let sched = Frames::image(img);
    for needed in [Needed::Everything, Needed::LastLogits] {
        let opts = UnrollOptions {
            steps: Some(7),
            mode: TimingMode::Biological,
            needed,
        };
        let (plain, fast) = (
            model.unroll(&seq, &opts).unwrap(),
            model.unroll(&sched, &opts).unwrap(),
        );
        for (i, (pa, fa)) in plain.outputs.iter().zip(&fast.outputs).enumerate() {
            for (t, (p, f)) in pa.iter().zip(fa).enumerate() {
                match (p, f) {
                    (Some(p), Some(f)) => {
                        assert_eq!(p.dims(), f.dims());
                        assert_close(
                            &f.to_vec().unwrap(),
                            &p.to_vec().unwrap(),
                            &format!("{needed:?}: area {i} step {t}"),
                        );
                    }
                    (None, None) => {}
                    _ => panic!("{needed:?}: area {i} step {t} computed in one unroll only"),
                }
            }
        }
        // conv1 keeps no state and reads the same image at steps 0–2: computed once on the
        // schedule, three times in the plain loop.
        if needed == Needed::Everything {
            let id = |u: &Unrolled, t: usize| u.outputs[0][t].as_ref().unwrap().id();
            assert_eq!(id(&fast, 0), id(&fast, 2), "conv1 reused on the schedule");
            assert_ne!(
                id(&plain, 0),
                id(&plain, 1),
                "the plain loop recomputes conv1"
            );
        }
        let loss = |u: &Unrolled| {
            let mut total: Option<Tensor> = None;
            for l in u.logits.iter().flatten() {
                let s = l.sqr().unwrap().sum_all().unwrap();
                total = Some(match total {
                    Some(t) => t.add(&s).unwrap(),
                    None => s,
                });
            }
            total.unwrap()
        };
        let (lp, lf) = (loss(&plain), loss(&fast));
        assert_close(
            &lf.to_vec().unwrap(),
            &lp.to_vec().unwrap(),
            &format!("{needed:?}: loss"),
        );
        let (gp, gf) = (lp.backward().unwrap(), lf.backward().unwrap());
        for (name, p) in model.params.iter() {
            match (gp.get(p), gf.get(p)) {
                (Some(a), Some(b)) => assert_close(
                    &b.to_vec().unwrap(),
                    &a.to_vec().unwrap(),
                    &format!("{needed:?}: gradient of {name}"),
                ),
                (None, None) => {}
                _ => panic!("{needed:?}: {name} has a gradient in one unroll only"),
            }
        }
    }
}
