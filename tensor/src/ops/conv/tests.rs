//! Tests of the convolution op: outputs against a direct loop, gradients against finite
//! differences, every CPU implementation against the others (plain and blocked layouts), and the
//! shape errors.

use super::*;
use crate::cpu::onednn;
use crate::layout::BLOCK;
use crate::testing::{check_grad, check_grad_with, rand_tensor, GradCheck};
use crate::{Device, Rng};

/// The implementations to test: Rust always, oneDNN's convolution, the batched sgemm and
/// both Winograd schemes where the library loads (skipped with a message elsewhere).
fn backends() -> Vec<CpuConvBackend> {
    match onednn::get() {
        Ok(_) => vec![
            CpuConvBackend::Rust,
            CpuConvBackend::OneDnn,
            CpuConvBackend::Gemm,
            CpuConvBackend::Winograd,
            CpuConvBackend::Winograd4,
        ],
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("skipping the oneDNN cases: {e}"));
            vec![CpuConvBackend::Rust]
        }
    }
}

/// Direct evaluation of the definition, the reference for both implementations.
fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, g: &ConvGeom) -> Vec<f32> {
    let (cg, og) = (g.cg(), g.og());
    let mut out = vec![0.0; g.out_len()];
    for n in 0..g.n {
        for o in 0..g.o {
            let grp = o / og;
            for ho in 0..g.ho {
                for wo in 0..g.wo {
                    let mut s = b.map_or(0.0, |b| b[o] as f64);
                    for ci in 0..cg {
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let hi = (ho * g.sh + ki * g.dh) as isize - g.pt as isize;
                                let wi = (wo * g.sw + kj * g.dw) as isize - g.pl as isize;
                                if hi < 0 || wi < 0 || hi >= g.h as isize || wi >= g.w as isize {
                                    continue;
                                }
                                let c = grp * cg + ci;
                                let xv = x[((n * g.c + c) * g.h + hi as usize) * g.w + wi as usize];
                                let wv = w[((o * cg + ci) * g.kh + ki) * g.kw + kj];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((n * g.o + o) * g.ho + ho) * g.wo + wo] = s as f32;
                }
            }
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

/// Finite differences for `be`'s gradients: the default tolerances, or for F(4×4, 3×3) a step
/// 2.5× larger and twice the absolute tolerance. Its forward rounds more than a direct
/// convolution (its transforms scale by up to 8 and 1/24: 3e-6 of the largest output on one
/// tile, `winograd::tests`), which at the default step moved the numerical derivative by up to
/// 3e-3; at 1e-2 that noise is ≲ 1.2e-3 and the truncation error (eps²·f'''/6, larger with the
/// tanh these tests put after the convolution) ≲ 1e-3, while a wrong backward errs by O(1).
fn grad_check_of(be: CpuConvBackend) -> GradCheck {
    match be {
        CpuConvBackend::Winograd4 => GradCheck {
            eps: 1e-2,
            atol: 4e-3,
            ..GradCheck::default()
        },
        _ => GradCheck::default(),
    }
}

#[derive(Clone, Copy)]
struct Case {
    x: [usize; 4],
    o: usize,
    k: (usize, usize),
    opts: Conv2dOpts,
    bias: bool,
}

fn case(x: [usize; 4], o: usize, k: (usize, usize), opts: Conv2dOpts, bias: bool) -> Case {
    Case {
        x,
        o,
        k,
        opts,
        bias,
    }
}

fn inputs(rng: &mut Rng, c: &Case) -> (Tensor, Tensor, Option<Tensor>) {
    let x = rand_tensor(rng, c.x);
    let w = rand_tensor(rng, [c.o, c.x[1] / c.opts.groups, c.k.0, c.k.1]).map_values(|v| v * 0.5);
    let b = c.bias.then(|| rand_tensor(rng, [c.o]));
    (x, w, b)
}

#[test]
fn same_padding_is_tensorflows_asymmetric_split() {
    // (in, kernel, stride) -> (out, before, after), from TensorFlow's documented rule.
    for (input, k, s, want) in [
        (5, 3, 2, (3, 1, 1)),
        (6, 3, 2, (3, 0, 1)),
        (4, 2, 1, (4, 0, 1)),
        (7, 1, 2, (4, 0, 0)),
        (224, 7, 2, (112, 2, 3)),
        (8, 4, 1, (8, 1, 2)),
    ] {
        let opts = Conv2dOpts::default().with_stride(s);
        let (out, (t, b, _, _)) = geom::output_and_padding((input, 3), (k, 1), &opts).unwrap();
        assert_eq!((out.0, t, b), want, "in {input} k {k} s {s}");
    }
    // dilation widens the window: k=3, d=2 spans 5.
    let opts = Conv2dOpts::default().with_dilation(2);
    let (_, (t, b, l, r)) = geom::output_and_padding((6, 6), (3, 3), &opts).unwrap();
    assert_eq!((t, b, l, r), (2, 2, 2, 2));
}

#[test]
fn output_sizes() {
    let o = |p: Padding, s: usize, d: usize| {
        conv2d_output_size(
            (28, 27),
            (3, 2),
            &Conv2dOpts::default()
                .with_padding(p)
                .with_stride(s)
                .with_dilation(d),
        )
        .unwrap()
    };
    assert_eq!(o(Padding::Same, 1, 1), (28, 27));
    assert_eq!(o(Padding::Same, 2, 1), (14, 14));
    assert_eq!(o(Padding::Valid, 1, 1), (26, 26));
    assert_eq!(o(Padding::Valid, 2, 2), (12, 13));
    assert_eq!(o(Padding::symmetric(1), 1, 1), (28, 28));
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 0,
        right: 1,
    };
    assert_eq!(o(asym, 1, 1), (28, 27));
}

#[test]
fn forward_matches_the_definition() {
    let dflt = Conv2dOpts::default();
    let asym = Padding::Explicit {
        top: 1,
        bottom: 0,
        left: 2,
        right: 1,
    };
    let cases = [
        case([2, 3, 8, 9], 5, (3, 3), dflt, true),
        case([2, 8, 5, 6], 6, (1, 1), dflt, true),
        case([2, 8, 5, 6], 6, (1, 1), dflt.with_stride(2), false),
        case([1, 3, 11, 10], 4, (7, 7), dflt.with_stride(2), true),
        case(
            [2, 4, 7, 7],
            3,
            (2, 2),
            dflt.with_padding(Padding::Valid).with_stride(2),
            false,
        ),
        case([2, 3, 9, 8], 4, (5, 1), dflt.with_padding(asym), true),
        case(
            [1, 3, 9, 8],
            4,
            (3, 3),
            Conv2dOpts {
                dilation: (2, 1),
                ..dflt
            },
            false,
        ),
        case([2, 6, 6, 7], 9, (3, 3), dflt.with_groups(3), true),
        case([2, 5, 6, 7], 5, (3, 3), dflt.with_groups(5), true),
        case(
            [2, 5, 9, 8],
            10,
            (7, 7),
            dflt.with_groups(5).with_stride(2),
            false,
        ),
        case(
            [1, 5, 9, 8],
            5,
            (3, 3),
            dflt.with_groups(5).with_dilation(2).with_padding(asym),
            true,
        ),
        case([2, 1, 8, 8], 4, (3, 3), dflt, true),
        case([2, 16, 6, 5], 32, (3, 3), dflt, true),
        case([2, 32, 6, 5], 32, (3, 3), dflt.with_groups(32), true),
        case([2, 16, 7, 7], 16, (3, 3), dflt.with_stride(2), false),
        // One image and enough work for the parallel-GEMM plan of the Rust path.
        case([1, 32, 16, 16], 32, (3, 3), dflt, true),
    ];
    let mut rng = Rng::new(1);
    for c in &cases {
        let (x, w, b) = inputs(&mut rng, c);
        let g = geometry(&x, &w, b.as_ref(), &c.opts).unwrap();
        let bv = b.as_ref().map(|b| b.to_vec().unwrap());
        let want = naive(
            &x.to_vec().unwrap(),
            &w.to_vec().unwrap(),
            bv.as_deref(),
            &g,
        );
        for be in backends() {
            let y = x.conv2d_on(&w, b.as_ref(), &c.opts, be).unwrap();
            assert_eq!(y.dims(), &[g.n, g.o, g.ho, g.wo]);
            assert_close(&y.to_vec().unwrap(), &want, 1e-4, &format!("{be:?} {g:?}"));
        }
    }
}

/// Finite-difference checks of every option combination: stride 1/2 × VALID/SAME/explicit
/// asymmetric × dilation 1/2 × groups 1/2/depthwise (multiplier 2) × bias or not, on both paths.
#[test]
fn gradients_for_every_option_combination() {
    let asym = Padding::Explicit {
        top: 1,
        bottom: 0,
        left: 2,
        right: 1,
    };
    for be in backends() {
        let mut rng = Rng::new(2);
        let mut checked = 0;
        for stride in [1, 2] {
            for padding in [Padding::Valid, Padding::Same, asym] {
                for dilation in [1, 2] {
                    for (groups, o) in [(1, 4), (2, 4), (4, 8)] {
                        for bias in [false, true] {
                            let opts = Conv2dOpts {
                                stride: (stride, stride),
                                padding,
                                dilation: (dilation, dilation),
                                groups,
                            };
                            let c = case([2, 4, 7, 6], o, (3, 2), opts, bias);
                            let (x, w, b) = inputs(&mut rng, &c);
                            let mut ins = vec![x, w];
                            ins.extend(b);
                            check_grad(&ins, |t| t[0].conv2d_on(&t[1], t.get(2), &opts, be))
                                .unwrap_or_else(|e| panic!("{be:?} {opts:?} bias {bias}: {e}"));
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 72);
    }
}

/// The gradient reaches inputs and parameters when only some of them are variables.
#[test]
fn partial_gradients() {
    let mut rng = Rng::new(3);
    let opts = Conv2dOpts::default();
    let x = rand_tensor(&mut rng, [2, 4, 5, 5]);
    let w = rand_tensor(&mut rng, [4, 4, 3, 3]).into_variable();
    let b = rand_tensor(&mut rng, [4]);
    for be in backends() {
        let y = x.conv2d_on(&w, Some(&b), &opts, be).unwrap();
        let g = y.sum_to(&crate::Shape::new(vec![1, 1, 1, 1])).unwrap();
        let grads = g.backward().unwrap();
        assert!(grads.get(&w).is_some());
        assert_eq!(grads.len(), 1);
    }
}

#[test]
fn every_backend_agrees_with_rust_on_larger_shapes() {
    let Ok(_) = onednn::get() else {
        eprintln!("skipping: oneDNN is not available");
        return;
    };
    let dflt = Conv2dOpts::default();
    let cases = [
        case([3, 32, 9, 9], 48, (3, 3), dflt, true),
        case(
            [3, 32, 9, 9],
            48,
            (3, 3),
            dflt.with_stride(2).with_groups(4),
            false,
        ),
        case([2, 32, 10, 9], 32, (7, 7), dflt.with_groups(32), true),
        case(
            [2, 32, 10, 9],
            64,
            (3, 3),
            dflt.with_groups(32).with_stride(2),
            true,
        ),
        case([2, 24, 8, 8], 16, (1, 1), dflt, true),
        case([2, 3, 16, 16], 16, (7, 7), dflt.with_stride(2), true),
        case([1, 32, 16, 16], 32, (3, 3), dflt.with_groups(2), true),
        // Small maps, where `Auto` runs the batched sgemm: an RGC area at 3×3 and a readout.
        case([16, 64, 3, 3], 64, (3, 3), dflt, true),
        case(
            [4, 32, 2, 2],
            40,
            (2, 2),
            dflt.with_padding(Padding::Valid),
            true,
        ),
        // Where `Auto` runs Winograd: odd sizes leave partial tiles at the bottom and right.
        case([2, 128, 7, 5], 128, (3, 3), dflt, true),
    ];
    let mut rng = Rng::new(4);
    for c in &cases {
        let (x, w, b) = inputs(&mut rng, c);
        let (x, w) = (x.into_variable(), w.into_variable());
        let b = b.map(Tensor::into_variable);
        let run = |be| {
            let y = x.conv2d_on(&w, b.as_ref(), &c.opts, be).unwrap();
            let r = rand_tensor(&mut Rng::new(9), y.shape().clone());
            let grads = y.backward_with_grad(&r).unwrap();
            let mut v = vec![y.to_vec().unwrap()];
            v.push(grads.get(&x).unwrap().to_vec().unwrap());
            v.push(grads.get(&w).unwrap().to_vec().unwrap());
            if let Some(b) = &b {
                v.push(grads.get(b).unwrap().to_vec().unwrap());
            }
            v
        };
        let r = run(CpuConvBackend::Rust);
        for be in [
            CpuConvBackend::OneDnn,
            CpuConvBackend::Gemm,
            CpuConvBackend::Winograd,
            CpuConvBackend::Winograd4,
            CpuConvBackend::Auto,
        ] {
            for (i, (a, b)) in r.iter().zip(&run(be)).enumerate() {
                assert_close(b, a, 2e-4, &format!("{be:?} {:?} result {i}", c.opts));
            }
        }
    }
}

#[test]
fn blocked_input_and_output_equal_plain() {
    let Ok(_) = onednn::get() else {
        eprintln!("skipping: oneDNN is not available");
        return;
    };
    let dflt = Conv2dOpts::default();
    let mut rng = Rng::new(5);
    for (c, be) in [
        case([2, 16, 6, 5], 32, (3, 3), dflt, true),
        case(
            [2, 32, 6, 5],
            16,
            (3, 3),
            dflt.with_stride(2).with_groups(2),
            false,
        ),
        case([2, 16, 7, 7], 16, (7, 7), dflt.with_groups(16), true),
        case([2, 16, 7, 7], 24, (1, 1), dflt, true),
    ]
    .into_iter()
    .flat_map(|c| {
        [
            CpuConvBackend::OneDnn,
            CpuConvBackend::Gemm,
            CpuConvBackend::Winograd,
            CpuConvBackend::Winograd4,
        ]
        .map(|be| (c, be))
    }) {
        let (x, w, b) = inputs(&mut rng, &c);
        let plain = x
            .conv2d_on(&w, b.as_ref(), &c.opts, CpuConvBackend::Rust)
            .unwrap();
        let xb = x.to_layout(Layout::Blocked16).unwrap();
        let y = xb.conv2d_on(&w, b.as_ref(), &c.opts, be).unwrap();
        let want_layout = if c.o % BLOCK == 0 {
            Layout::Blocked16
        } else {
            Layout::Plain
        };
        assert_eq!(y.layout(), want_layout);
        assert_close(
            &y.to_vec().unwrap(),
            &plain.to_vec().unwrap(),
            1e-4,
            &format!("{be:?} blocked"),
        );
        // A plain input on the oneDNN path gives the same values.
        let yp = x.conv2d_on(&w, b.as_ref(), &c.opts, be).unwrap();
        assert_close(
            &yp.to_vec().unwrap(),
            &plain.to_vec().unwrap(),
            1e-4,
            "plain in",
        );
        // Gradients through a blocked input come back blocked and match finite differences.
        let mut ins = vec![x, w];
        ins.extend(b);
        let opts = c.opts;
        check_grad_with(grad_check_of(be), &ins, |t| {
            let y = t[0]
                .to_layout(Layout::Blocked16)?
                .conv2d_on(&t[1], t.get(2), &opts, be)?;
            y.tanh()
        })
        .unwrap_or_else(|e| panic!("{be:?}: {e}"));
        let xv = ins[0].to_layout(Layout::Blocked16).unwrap().into_variable();
        let y = xv.conv2d_on(&ins[1], ins.get(2), &opts, be).unwrap();
        let grads = y.backward_with_grad(&y.ones_like().unwrap()).unwrap();
        assert_eq!(grads.get(&xv).unwrap().layout(), Layout::Blocked16);
    }
}

/// Winograd's tiles cover the map in 2×2 (F(2×2, 3×3)) or 4×4 blocks (F(4×4, 3×3)): even and odd
/// sizes, maps smaller than a tile, and channel counts that are not a multiple of the 8-lane
/// transforms, against finite differences (gradients of input and weights both come from the
/// Winograd path here).
#[test]
fn winograd_gradients_on_partial_tiles() {
    let Ok(_) = onednn::get() else {
        eprintln!("skipping: oneDNN is not available");
        return;
    };
    let dflt = Conv2dOpts::default();
    let mut rng = Rng::new(12);
    for (x, o) in [
        ([2, 16, 4, 6], 16),
        ([1, 12, 5, 3], 20),
        ([2, 3, 1, 1], 9),
        ([1, 16, 2, 7], 32),
    ] {
        let c = case(x, o, (3, 3), dflt, true);
        let (x, w, b) = inputs(&mut rng, &c);
        let mut ins = vec![x, w];
        ins.extend(b);
        for layout in [Layout::Plain, Layout::Blocked16] {
            for be in [CpuConvBackend::Winograd, CpuConvBackend::Winograd4] {
                check_grad_with(grad_check_of(be), &ins, |t| {
                    let x = if t[0].dims()[1] % BLOCK == 0 {
                        t[0].to_layout(layout)?
                    } else {
                        t[0].clone()
                    };
                    x.conv2d_on(&t[1], t.get(2), &dflt, be)?.tanh()
                })
                .unwrap_or_else(|e| panic!("{be:?} {:?} {layout:?}: {e}", c.x));
            }
        }
    }
}

/// Winograd reads blocked inputs and output gradients in place and writes blocked results (+
/// bias) in place, block by block: several blocks of 16 channels on both sides, partial tiles,
/// against the Rust path on plain tensors (forward, both gradients, bias gradient; f32 results
/// within 2e-4 relative, the transforms reorder the sums).
#[test]
fn winograd_in_the_blocked_layout_equals_rust_in_the_plain_one() {
    let Ok(_) = onednn::get() else {
        eprintln!("skipping: oneDNN is not available");
        return;
    };
    let c = case([2, 48, 7, 5], 32, (3, 3), Conv2dOpts::default(), true);
    let (x, w, b) = inputs(&mut Rng::new(21), &c);
    let (w, b) = (w.into_variable(), b.map(Tensor::into_variable));
    let run = |x: &Tensor, be| {
        let y = x.conv2d_on(&w, b.as_ref(), &c.opts, be).unwrap();
        let r = rand_tensor(&mut Rng::new(22), y.shape().clone()).to_layout(y.layout());
        let grads = y.backward_with_grad(&r.unwrap()).unwrap();
        let dx = grads.get(x).unwrap();
        (
            y.layout(),
            dx.layout(),
            [
                y.to_vec().unwrap(),
                dx.to_vec().unwrap(),
                grads.get(&w).unwrap().to_vec().unwrap(),
                grads.get(b.as_ref().unwrap()).unwrap().to_vec().unwrap(),
            ],
        )
    };
    let (_, _, want) = run(&x.clone().into_variable(), CpuConvBackend::Rust);
    let xb = x.to_layout(Layout::Blocked16).unwrap().into_variable();
    for be in [CpuConvBackend::Winograd, CpuConvBackend::Winograd4] {
        let (y_layout, dx_layout, got) = run(&xb, be);
        assert_eq!(
            (y_layout, dx_layout),
            (Layout::Blocked16, Layout::Blocked16)
        );
        for (i, what) in ["y", "dx", "dw", "db"].iter().enumerate() {
            assert_close(&got[i], &want[i], 2e-4, &format!("{be:?} {what}"));
        }
    }
}

#[test]
fn a_blocked_input_works_on_the_rust_path() {
    let mut rng = Rng::new(6);
    let c = case([1, 16, 5, 5], 8, (3, 3), Conv2dOpts::default(), true);
    let (x, w, b) = inputs(&mut rng, &c);
    let want = x
        .conv2d_on(&w, b.as_ref(), &c.opts, CpuConvBackend::Rust)
        .unwrap();
    let xb = x.to_layout(Layout::Blocked16).unwrap();
    let got = xb
        .conv2d_on(&w, b.as_ref(), &c.opts, CpuConvBackend::Rust)
        .unwrap();
    assert_eq!(got.layout(), Layout::Plain);
    assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());
}

#[test]
fn empty_batch() {
    let x = Tensor::zeros([0, 4, 5, 5], Device::Cpu).unwrap();
    let w = Tensor::ones([8, 4, 3, 3], Device::Cpu).unwrap();
    for be in backends() {
        let y = x.conv2d_on(&w, None, &Conv2dOpts::default(), be).unwrap();
        assert_eq!(y.dims(), &[0, 8, 5, 5]);
    }
}

#[test]
fn shape_errors_are_clear() {
    let t = |s: &[usize]| Tensor::zeros(s.to_vec(), Device::Cpu).unwrap();
    let d = Conv2dOpts::default();
    let msg = |r: Result<Tensor>| r.unwrap_err().to_string();
    let e = msg(t(&[1, 5, 8, 8]).conv2d(&t(&[4, 2, 3, 3]), None, &d.with_groups(2)));
    assert!(e.contains("not divisible by groups"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[4, 4, 3]), None, &d));
    assert!(e.contains("weight [O, 4, kh, kw]"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[4, 3, 3, 3]), None, &d));
    assert!(e.contains("weight [O, 4, kh, kw]"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[3, 2, 3, 3]), None, &d.with_groups(2)));
    assert!(e.contains("multiple of groups"), "{e}");
    let e = msg(t(&[1, 4, 2, 2]).conv2d(&t(&[4, 4, 3, 3]), None, &d.with_padding(Padding::Valid)));
    assert!(e.contains("smaller than"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[4, 4, 3, 3]), None, &d.with_stride(0)));
    assert!(e.contains("stride must be at least 1"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[4, 4, 3, 3]), None, &d.with_dilation(0)));
    assert!(e.contains("dilation"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[4, 4, 3, 3]), Some(&t(&[3])), &d));
    assert!(e.contains("bias [4]"), "{e}");
    let e = msg(t(&[4, 8, 8]).conv2d(&t(&[4, 4, 3, 3]), None, &d));
    assert!(e.contains("rank-4"), "{e}");
    let e = msg(t(&[1, 4, 8, 8]).conv2d(&t(&[4, 4, 3, 3]), None, &d.with_groups(0)));
    assert!(e.contains("groups must be at least 1"), "{e}");
}

#[test]
fn backend_names_parse() {
    assert_eq!(CpuConvBackend::parse("rust"), Some(CpuConvBackend::Rust));
    assert_eq!(
        CpuConvBackend::parse("oneDNN"),
        Some(CpuConvBackend::OneDnn)
    );
    assert_eq!(CpuConvBackend::parse(" auto "), Some(CpuConvBackend::Auto));
    assert_eq!(CpuConvBackend::parse("GEMM"), Some(CpuConvBackend::Gemm));
    assert_eq!(
        CpuConvBackend::parse("winograd"),
        Some(CpuConvBackend::Winograd)
    );
    assert_eq!(
        CpuConvBackend::parse("Winograd4"),
        Some(CpuConvBackend::Winograd4)
    );
    assert_eq!(CpuConvBackend::parse("cudnn"), None);
}

#[test]
fn opts_round_trip_through_json() {
    let o = Conv2dOpts {
        stride: (2, 1),
        padding: Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 0,
            right: 3,
        },
        dilation: (1, 2),
        groups: 4,
    };
    let s = serde_json::to_string(&o).unwrap();
    assert_eq!(serde_json::from_str::<Conv2dOpts>(&s).unwrap(), o);
    let partial: Conv2dOpts = serde_json::from_str(r#"{"stride":[2,2]}"#).unwrap();
    assert_eq!(partial, Conv2dOpts::default().with_stride(2));
}

/// The blocked Rust depthwise kernels (stride 1, one output per channel) against the plain ones,
/// and their gradients against finite differences.
#[test]
fn blocked_depthwise_on_the_rust_path() {
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    let dflt = Conv2dOpts::default().with_groups(32);
    let mut rng = Rng::new(8);
    for (opts, k, bias) in [
        (dflt, (3, 3), true),
        (dflt, (7, 7), false),
        (dflt.with_padding(asym).with_dilation(2), (3, 2), true),
        (dflt.with_padding(Padding::Valid), (2, 3), true),
    ] {
        let c = case([2, 32, 9, 7], 32, k, opts, bias);
        let (x, w, b) = inputs(&mut rng, &c);
        let plain = x
            .conv2d_on(&w, b.as_ref(), &opts, CpuConvBackend::Rust)
            .unwrap();
        let xb = x.to_layout(Layout::Blocked16).unwrap();
        let y = xb
            .conv2d_on(&w, b.as_ref(), &opts, CpuConvBackend::Rust)
            .unwrap();
        assert_eq!(y.layout(), Layout::Blocked16);
        assert_close(
            &y.to_vec().unwrap(),
            &plain.to_vec().unwrap(),
            1e-5,
            "blocked dw",
        );
        let mut ins = vec![x, w];
        ins.extend(b);
        check_grad(&ins, |t| {
            t[0].to_layout(Layout::Blocked16)?
                .conv2d_on(&t[1], t.get(2), &opts, CpuConvBackend::Rust)?
                .tanh()
        })
        .unwrap_or_else(|e| panic!("{opts:?}: {e}"));
    }
    // A channel multiplier (here 2) falls back to the plain kernels.
    let c = case(
        [1, 16, 6, 6],
        32,
        (3, 3),
        Conv2dOpts::default().with_groups(16),
        true,
    );
    let (x, w, b) = inputs(&mut rng, &c);
    let xb = x.to_layout(Layout::Blocked16).unwrap();
    let y = xb
        .conv2d_on(&w, b.as_ref(), &c.opts, CpuConvBackend::Rust)
        .unwrap();
    assert_eq!(y.layout(), Layout::Plain);
}

/// oneDNN primitives are shared between threads, and Winograd runs its products as rayon tasks
/// of their own; concurrent calls (from rayon tasks and plain threads), forward and both
/// gradients, must give the same results as one call at a time.
#[test]
fn concurrent_onednn_calls() {
    use rayon::prelude::*;
    let Ok(_) = onednn::get() else {
        eprintln!("skipping: oneDNN is not available");
        return;
    };
    let mut rng = Rng::new(10);
    let c = case([2, 16, 12, 12], 32, (3, 3), Conv2dOpts::default(), true);
    let (x, w, b) = inputs(&mut rng, &c);
    let (x, w) = (x.into_variable(), w.into_variable());
    let results = |be| {
        let y = x.conv2d_on(&w, b.as_ref(), &c.opts, be).unwrap();
        let grads = y.backward_with_grad(&y.ones_like().unwrap()).unwrap();
        [&y, grads.get(&x).unwrap(), grads.get(&w).unwrap()].map(|t| t.to_vec().unwrap())
    };
    let want = results(CpuConvBackend::Rust);
    for be in [
        CpuConvBackend::OneDnn,
        CpuConvBackend::Gemm,
        CpuConvBackend::Winograd,
        CpuConvBackend::Winograd4,
    ] {
        let run = || {
            for (i, (got, want)) in results(be).iter().zip(&want).enumerate() {
                assert_close(got, want, 1e-4, &format!("concurrent {be:?} result {i}"));
            }
        };
        (0..16).into_par_iter().for_each(|_| run());
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| (0..5).for_each(|_| run()));
            }
        });
    }
}

/// Special cases with their own code: 1×1 stride-1 (no im2col), 1×1 strided, multiplier-1
/// depthwise, and a one-channel input (direct kernels with groups = 1).
#[test]
fn gradients_of_special_shapes() {
    let dflt = Conv2dOpts::default();
    let mut rng = Rng::new(12);
    for c in [
        case([2, 6, 5, 4], 5, (1, 1), dflt, true),
        case([2, 6, 5, 4], 5, (1, 1), dflt.with_stride(2), true),
        case([2, 6, 5, 4], 6, (3, 3), dflt.with_groups(6), true),
        case(
            [2, 6, 5, 4],
            6,
            (3, 3),
            dflt.with_groups(6).with_stride(2),
            false,
        ),
        case([2, 1, 6, 5], 4, (3, 3), dflt, true),
    ] {
        for be in backends() {
            let (x, w, b) = inputs(&mut rng, &c);
            let mut ins = vec![x, w];
            ins.extend(b);
            let opts = c.opts;
            check_grad_with(grad_check_of(be), &ins, |t| {
                t[0].conv2d_on(&t[1], t.get(2), &opts, be)
            })
            .unwrap_or_else(|e| panic!("{be:?} {opts:?} {:?}: {e}", c.x));
        }
    }
}

/// oneDNN's reordered weights are cached per storage and write count: weights updated in place
/// (as an optimiser does) must be used as updated, forward and in the input gradient, and a
/// fresh tensor must never be served another's cached copy.
#[test]
fn weights_updated_in_place_are_not_served_from_the_cache() {
    let Ok(_) = onednn::get() else {
        eprintln!("skipping: oneDNN is not available");
        return;
    };
    let c = case([2, 16, 12, 12], 32, (3, 3), Conv2dOpts::default(), true);
    let mut rng = Rng::new(12);
    let (x, w, b) = inputs(&mut rng, &c);
    let (x, w) = (x.into_variable(), w.into_variable());
    let r = rand_tensor(&mut rng, [2, 32, 12, 12]);
    let run = |w: &Tensor, be| {
        let y = x.conv2d_on(w, b.as_ref(), &c.opts, be).unwrap();
        let grads = y.backward_with_grad(&r).unwrap();
        [
            y.to_vec().unwrap(),
            grads.get(&x).unwrap().to_vec().unwrap(),
        ]
    };
    // oneDNN caches reordered weights, Winograd transformed filters.
    for (round, be) in (0..3).flat_map(|r| {
        [
            (r, CpuConvBackend::OneDnn),
            (r, CpuConvBackend::Winograd),
            (r, CpuConvBackend::Winograd4),
        ]
    }) {
        // Twice per state: the second call is served from the cache.
        for _ in 0..2 {
            let (want, got) = (run(&w, CpuConvBackend::Rust), run(&w, be));
            assert_close(
                &got[0],
                &want[0],
                2e-4,
                &format!("{be:?} round {round}: output"),
            );
            assert_close(
                &got[1],
                &want[1],
                2e-4,
                &format!("{be:?} round {round}: input gradient"),
            );
        }
        w.update_cpu(|d| d.iter_mut().for_each(|v| *v = 0.1 - 0.7 * *v))
            .unwrap();
        let other = rand_tensor(&mut rng, w.shape().clone());
        let (want, got) = (run(&other, CpuConvBackend::Rust), run(&other, be));
        assert_close(&got[0], &want[0], 2e-4, "another weight tensor");
    }
}
