//! CPU-vs-CUDA parity: every op of the CUDA backend against the CPU engine (elementwise ops through
//! the tensor API, forward and gradients) or against straightforward f64 reference loops written
//! from the op specifications (conv, pooling, resize, layer norm, losses, reductions, copies,
//! GEMM). Each test first checks that a GPU is usable and otherwise returns with
//! `skipped: no CUDA device (<why>)`, so the suite passes on machines without one.
//!
//! Built only with `--features cuda` (see `required-features` in Cargo.toml).

use tensor::backend::BatchDims;
use tensor::cpu::gemm::Gemm;
use tensor::cuda::{self, Conv2dGeometry, CudaBuf, DevMat, DevMatMut, Pool2dGeometry};
use tensor::ops::{BinaryOp, UnaryOp};
use tensor::{Device, Rng, Shape, Tensor};

const GPU: Device = Device::Cuda(0);

fn gpu() -> bool {
    match cuda::probe(0) {
        Ok(()) => true,
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            false
        }
    }
}

macro_rules! require_gpu {
    () => {
        if !gpu() {
            return;
        }
    };
}

fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn up(v: &[f32]) -> CudaBuf {
    CudaBuf::from_host(0, v).expect("host to device copy")
}

fn down(b: &CudaBuf) -> Vec<f32> {
    b.to_host().expect("device to host copy")
}

/// `|got − want| ≤ tol·(1 + |want|)` everywhere, reporting the worst element.
fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - w).abs() / (1.0 + w.abs());
        if err.is_nan() || err > worst.1 {
            worst = (i, if err.is_nan() { f64::INFINITY } else { err });
        }
    }
    assert!(
        worst.1 <= tol,
        "{what}: element {} is {} where {} was expected (relative error {:.3e} > {tol:.1e})",
        worst.0,
        got[worst.0],
        want[worst.0],
        worst.1
    );
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Runs `f` on CPU variables and on their GPU copies, backpropagates the same random weights, and
/// compares the outputs and every input gradient.
fn parity<F>(inputs: &[Tensor], tol: f64, what: &str, f: F)
where
    F: Fn(&[Tensor]) -> tensor::Result<Tensor>,
{
    let cpu: Vec<Tensor> = inputs.iter().map(|t| t.detach().into_variable()).collect();
    let gpu: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_device(GPU).expect("to gpu").into_variable())
        .collect();
    let yc = f(&cpu).expect("cpu forward");
    let yg = f(&gpu).expect("gpu forward");
    assert_eq!(yg.device(), GPU, "{what}: result device");
    assert_eq!(yc.shape(), yg.shape(), "{what}: result shape");
    let yc_v = yc.to_vec().expect("cpu values");
    assert_close(&yg.to_vec().expect("gpu values"), &f64s(&yc_v), tol, what);
    let mut rng = Rng::new(99);
    let r = Tensor::from_vec(
        randn(&mut rng, yc.elem_count()),
        yc.shape().clone(),
        Device::Cpu,
    )
    .expect("weights");
    let gc = yc.backward_with_grad(&r).expect("cpu backward");
    let gg = yg
        .backward_with_grad(&r.to_device(GPU).expect("weights to gpu"))
        .expect("gpu backward");
    for (k, (vc, vg)) in cpu.iter().zip(&gpu).enumerate() {
        let a = gc.get(vc).map(|g| g.to_vec().expect("cpu grad"));
        let b = gg.get(vg).map(|g| g.to_vec().expect("gpu grad"));
        match (a, b) {
            (Some(a), Some(b)) => assert_close(
                &b,
                &f64s(&a),
                tol,
                &format!("{what}: gradient of input {k}"),
            ),
            (None, None) => {}
            _ => panic!("{what}: gradient of input {k} exists on one device only"),
        }
    }
}

fn t(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(randn(rng, n), shape, Device::Cpu).expect("tensor")
}

// ----- elementwise (wired into the tensor ops) ----------------------------------------------

#[test]
fn unary_ops_forward_and_backward() {
    require_gpu!();
    let mut rng = Rng::new(1);
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Elu,
        UnaryOp::Relu,
        UnaryOp::Sqr,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Affine {
            mul: -1.5,
            add: 0.25,
        },
    ];
    for op in ops {
        let positive = matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip);
        // Large enough to use many blocks; values away from the kinks at 0.
        let x = t(&mut rng, &[3, 5, 67, 41]).map_values(|v| {
            if positive {
                v.abs() + 0.5
            } else if v.abs() < 0.05 {
                v + 0.2
            } else {
                v
            }
        });
        parity(&[x], 2e-6, &format!("{op:?}"), |v| v[0].unary(op));
    }
}

#[test]
fn binary_ops_with_broadcasting_forward_and_backward() {
    require_gpu!();
    let mut rng = Rng::new(2);
    let shapes: [(&[usize], &[usize]); 7] = [
        (&[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[1, 3, 1, 1]),
        (&[2, 3, 4, 5], &[5]),
        (&[4, 1], &[1, 3]),
        (&[3, 1, 4, 2, 5], &[2, 1]),
        (&[1], &[7, 3]),
        (&[2, 16, 33, 17], &[2, 16, 1, 1]),
    ];
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        for (sa, sb) in shapes {
            let a = t(&mut rng, sa);
            let b = t(&mut rng, sb).map_values(|v| {
                if op == BinaryOp::Div {
                    v.abs() + 0.5
                } else {
                    v
                }
            });
            parity(&[a, b], 1e-5, &format!("{op:?} {sa:?} {sb:?}"), |v| {
                v[0].binary(op, &v[1])
            });
        }
    }
}

#[test]
fn sum_to_and_expand() {
    require_gpu!();
    let mut rng = Rng::new(3);
    let cases: [(&[usize], &[usize]); 5] = [
        (&[2, 3, 4, 5], &[1, 3, 1, 1]),
        (&[2, 3, 4, 5], &[5]),
        (&[2, 3, 4, 5], &[2, 1, 4, 1]),
        (&[64, 300], &[1]),
        (&[5, 2000], &[5, 1]),
    ];
    for (big, small) in cases {
        let x = t(&mut rng, big);
        let s = Shape::from(small);
        parity(&[x], 1e-5, &format!("sum_to {big:?} -> {small:?}"), |v| {
            v[0].sum_to(&s)
        });
        let y = t(&mut rng, small);
        let b = Shape::from(big);
        parity(&[y], 1e-5, &format!("expand {small:?} -> {big:?}"), |v| {
            v[0].expand(&b)
        });
    }
}

#[test]
fn a_composite_graph_backpropagates_on_the_gpu() {
    require_gpu!();
    let mut rng = Rng::new(4);
    let a = t(&mut rng, &[2, 8, 6, 6]);
    let b = t(&mut rng, &[1, 8, 1, 1]);
    let c = t(&mut rng, &[6]);
    parity(&[a, b, c], 1e-5, "composite", |v| {
        let z = v[0].mul(&v[1])?.add(&v[2])?;
        z.sigmoid()?.mul(&z.tanh()?)?.affine(2.0, -1.0)?.elu()
    });
}

#[test]
fn tensors_move_between_devices_and_keep_their_values() {
    require_gpu!();
    let mut rng = Rng::new(5);
    let x = t(&mut rng, &[3, 7, 11]);
    let g = x.to_device(GPU).expect("to gpu");
    assert_eq!(g.device(), GPU);
    assert_eq!(g.to_vec().expect("values"), x.to_vec().expect("values"));
    let back = g.to_device(Device::Cpu).expect("to cpu");
    assert_eq!(back.to_vec().expect("values"), x.to_vec().expect("values"));
    // assign across devices, and zeros / ones on the device
    let z = Tensor::zeros([3, 7, 11], GPU).expect("zeros");
    z.assign(&x).expect("assign");
    assert_eq!(z.to_vec().expect("values"), x.to_vec().expect("values"));
    let o = Tensor::ones([4], GPU).expect("ones");
    assert_eq!(o.to_vec().expect("values"), vec![1.0; 4]);
    // Mixed devices are an error, not a panic.
    let e = x.add(&g).expect_err("mixed devices");
    assert!(e.to_string().contains("different devices"), "{e}");
    // The blocked layout does not exist on the GPU.
    let e = Tensor::zeros([1, 16, 2, 2], GPU)
        .expect("zeros")
        .to_layout(tensor::Layout::Blocked16)
        .expect_err("no blocked layout on CUDA");
    assert!(e.to_string().contains("plain"), "{e}");
}

// ----- GEMM ----------------------------------------------------------------------------------

#[test]
fn sgemm_matches_the_cpu_for_all_transposes() {
    require_gpu!();
    use tensor::cpu::gemm::{sgemm as cpu_sgemm, MatMut, MatRef};
    let mut rng = Rng::new(6);
    let (m, n, k) = (37, 29, 71);
    let a = randn(&mut rng, m * k + 5);
    let b = randn(&mut rng, k * n + 3);
    let (ga, gb) = (up(&a), up(&b));
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
        // Operands start a few elements in, C has a wider leading dimension and beta != 0.
        let (oa, ob) = (5, 3);
        let ldc = n + 4;
        let c0 = randn(&mut rng, m * ldc);
        let mut want = c0.clone();
        let am = MatRef::new(&a[oa..], lda);
        let bm = MatRef::new(&b[ob..], ldb);
        cpu_sgemm(
            Gemm::new(m, n, k).alpha(1.5).beta(0.5),
            if ta { am.t() } else { am },
            if tb { bm.t() } else { bm },
            MatMut::new(&mut want, ldc),
        );
        let mut gc = up(&c0);
        let da = DevMat::new(&ga, lda).at(oa);
        let db = DevMat::new(&gb, ldb).at(ob);
        cuda::sgemm(
            Gemm::new(m, n, k).alpha(1.5).beta(0.5),
            if ta { da.t() } else { da },
            if tb { db.t() } else { db },
            DevMatMut::new(&mut gc, ldc),
        )
        .expect("sgemm");
        assert_close(&down(&gc), &f64s(&want), 1e-5, &format!("sgemm {ta} {tb}"));
    }
}

#[test]
fn batched_matmul_matches_a_loop_of_products() {
    require_gpu!();
    let mut rng = Rng::new(7);
    let (batch, m, k, n) = (3, 5, 7, 4);
    let a = randn(&mut rng, batch * m * k);
    let b = randn(&mut rng, batch * k * n);
    let naive = |bi: usize, shared_b: bool| {
        let mut c = vec![0.0f64; m * n];
        let boff = if shared_b { 0 } else { bi * k * n };
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[bi * m * k + i * k + p] as f64 * b[boff + p * n + j] as f64;
                }
            }
        }
        c
    };
    for shared in [false, true] {
        let dims = BatchDims { batch, m, n, k };
        let c = cuda::matmul(&up(&a), &up(&b), dims, (false, false), !shared).expect("matmul");
        let want: Vec<f64> = (0..batch).flat_map(|bi| naive(bi, shared)).collect();
        assert_close(
            &down(&c),
            &want,
            1e-5,
            &format!("batched matmul (shared b: {shared})"),
        );
    }
    // a transposed: a^T stored as [k, m] per batch.
    let at: Vec<f32> = (0..batch)
        .flat_map(|bi| {
            let a = &a;
            (0..k).flat_map(move |p| (0..m).map(move |i| a[bi * m * k + i * k + p]))
        })
        .collect();
    let dims = BatchDims { batch, m, n, k };
    let c = cuda::matmul(&up(&at), &up(&b), dims, (true, false), true).expect("matmul");
    let want: Vec<f64> = (0..batch).flat_map(|bi| naive(bi, false)).collect();
    assert_close(&down(&c), &want, 1e-5, "batched matmul with a transposed");
}

// ----- convolution ---------------------------------------------------------------------------

struct ConvCase {
    x: [usize; 4],
    w: [usize; 4],
    g: Conv2dGeometry,
    bias: bool,
}

fn conv_out(c: &ConvCase) -> [usize; 4] {
    let (oh, ow) = cuda::conv2d_output_hw(c.x, c.w, &c.g).expect("geometry");
    [c.x[0], c.w[0], oh, ow]
}

/// Calls `f(y_index, x_index, w_index)` for every product of the convolution whose input cell
/// lies inside the input (padding contributes zeros).
fn conv_for_each(c: &ConvCase, mut f: impl FnMut(usize, usize, usize)) {
    let [n, ch, h, w] = c.x;
    let [o, cg, kh, kw] = c.w;
    let [_, _, oh, ow] = conv_out(c);
    let og = o / c.g.groups;
    let [t, _, l, _] = c.g.pad;
    for b in 0..n {
        for oc in 0..o {
            let grp = oc / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((b * o + oc) * oh + oy) * ow + ox;
                    for ci in 0..cg {
                        let cin = grp * cg + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy =
                                    (oy * c.g.stride.0 + ky * c.g.dilation.0) as isize - t as isize;
                                let ix =
                                    (ox * c.g.stride.1 + kx * c.g.dilation.1) as isize - l as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * ch + cin) * h + iy as usize) * w + ix as usize;
                                let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                                f(yi, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn conv2d_forward_and_backward_match_reference_loops() {
    require_gpu!();
    let geo = |stride, pad, dilation, groups| Conv2dGeometry {
        stride,
        pad,
        dilation,
        groups,
    };
    let cases = [
        // 3x3, symmetric padding 1 (PyTorch style)
        ConvCase {
            x: [2, 3, 9, 8],
            w: [4, 3, 3, 3],
            g: geo((1, 1), [1, 1, 1, 1], (1, 1), 1),
            bias: true,
        },
        // TF SAME, stride 2, even total padding split top 0 / bottom 1
        ConvCase {
            x: [2, 3, 8, 8],
            w: [5, 3, 3, 3],
            g: geo((2, 2), [0, 1, 0, 1], (1, 1), 1),
            bias: false,
        },
        // TF SAME with total padding 3 (1 + 2), 4x4 kernel
        ConvCase {
            x: [1, 2, 7, 6],
            w: [3, 2, 4, 4],
            g: geo((1, 1), [1, 2, 1, 2], (1, 1), 1),
            bias: true,
        },
        // dilation 2, valid
        ConvCase {
            x: [2, 4, 9, 9],
            w: [3, 4, 3, 3],
            g: geo((1, 1), [0; 4], (2, 2), 1),
            bias: true,
        },
        // groups 2
        ConvCase {
            x: [2, 4, 6, 6],
            w: [6, 2, 3, 3],
            g: geo((1, 1), [1, 1, 1, 1], (1, 1), 2),
            bias: false,
        },
        // depthwise 5x5 with SAME padding
        ConvCase {
            x: [2, 6, 7, 7],
            w: [6, 1, 5, 5],
            g: geo((1, 1), [2, 2, 2, 2], (1, 1), 6),
            bias: true,
        },
        // 1x1, stride 2, non-square
        ConvCase {
            x: [3, 5, 6, 10],
            w: [7, 5, 1, 1],
            g: geo((2, 3), [0; 4], (1, 1), 1),
            bias: true,
        },
        // 7x7 stride 2 (stem), asymmetric SAME padding [2, 3]
        ConvCase {
            x: [1, 3, 16, 16],
            w: [4, 3, 7, 7],
            g: geo((2, 2), [2, 3, 2, 3], (1, 1), 1),
            bias: false,
        },
    ];
    let mut rng = Rng::new(8);
    for (ci, c) in cases.iter().enumerate() {
        let ys = conv_out(c);
        let x = randn(&mut rng, c.x.iter().product());
        let w = randn(&mut rng, c.w.iter().product());
        let b = randn(&mut rng, c.w[0]);
        let dy = randn(&mut rng, ys.iter().product());
        let (gx, gw, gb, gdy) = (up(&x), up(&w), up(&b), up(&dy));
        // forward
        let mut want = vec![0.0f64; ys.iter().product()];
        conv_for_each(c, |yi, xi, wi| want[yi] += x[xi] as f64 * w[wi] as f64);
        if c.bias {
            let hw = ys[2] * ys[3];
            for (i, v) in want.iter_mut().enumerate() {
                *v += b[(i / hw) % ys[1]] as f64;
            }
        }
        let y = cuda::conv2d_forward(&gx, c.x, &gw, c.w, c.bias.then_some(&gb), &c.g)
            .expect("conv forward");
        assert_close(&down(&y), &want, 1e-4, &format!("conv case {ci} forward"));
        // backward data and filter
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        conv_for_each(c, |yi, xi, wi| {
            dx[xi] += dy[yi] as f64 * w[wi] as f64;
            dw[wi] += dy[yi] as f64 * x[xi] as f64;
        });
        let got_dx = cuda::conv2d_backward_data(&gdy, &gw, c.w, c.x, &c.g).expect("backward data");
        assert_close(
            &down(&got_dx),
            &dx,
            1e-4,
            &format!("conv case {ci} backward data"),
        );
        let got_dw =
            cuda::conv2d_backward_filter(&gx, c.x, &gdy, c.w, &c.g).expect("backward filter");
        assert_close(
            &down(&got_dw),
            &dw,
            1e-4,
            &format!("conv case {ci} backward filter"),
        );
        // bias gradient
        let hw = ys[2] * ys[3];
        let mut db = vec![0.0f64; ys[1]];
        for (i, v) in dy.iter().enumerate() {
            db[(i / hw) % ys[1]] += *v as f64;
        }
        let got_db = cuda::conv2d_backward_bias(&gdy, ys).expect("bias gradient");
        assert_close(
            &down(&got_db),
            &db,
            1e-4,
            &format!("conv case {ci} bias gradient"),
        );
        // The second call uses the cached algorithm and gives the same result.
        let again = cuda::conv2d_forward(&gx, c.x, &gw, c.w, c.bias.then_some(&gb), &c.g)
            .expect("conv forward");
        assert_eq!(down(&again), down(&y), "conv case {ci}: cached algorithm");
    }
}

#[test]
fn conv2d_rejects_inconsistent_shapes() {
    require_gpu!();
    let g = Conv2dGeometry {
        stride: (1, 1),
        pad: [0; 4],
        dilation: (1, 1),
        groups: 1,
    };
    let x = up(&[0.0; 2 * 3 * 4 * 4]);
    let w = up(&[0.0; 4 * 2 * 3 * 3]);
    let e = cuda::conv2d_forward(&x, [2, 3, 4, 4], &w, [4, 2, 3, 3], None, &g)
        .expect_err("channel mismatch");
    assert!(e.to_string().contains("conv2d"), "{e}");
    let e = cuda::conv2d_forward(&x, [2, 3, 4, 5], &w, [4, 3, 3, 2], None, &g)
        .expect_err("buffer length mismatch");
    assert!(e.to_string().contains("holds"), "{e}");
}

// ----- pooling -------------------------------------------------------------------------------

/// `(kernel, stride, pad_top/left, out)` for a square case; the out size is what the ops'
/// `pool2d_output_size` gives (SAME, explicit padding, floor and ceil mode).
fn pool_cases() -> Vec<([usize; 4], Pool2dGeometry, &'static str)> {
    let g = |k: usize, s: usize, p: usize, oh: usize, ow: usize| Pool2dGeometry {
        kernel: (k, k),
        stride: (s, s),
        pad_top: p,
        pad_left: p,
        out: (oh, ow),
    };
    vec![
        ([2, 3, 8, 8], g(2, 2, 0, 4, 4), "2x2/2 valid"),
        (
            [2, 3, 8, 8],
            g(3, 2, 0, 4, 4),
            "3x3/2 TF SAME (pad 0 before, 1 after)",
        ),
        (
            [2, 3, 7, 7],
            g(3, 2, 1, 4, 4),
            "3x3/2 TF SAME on odd input (pad 1 and 1)",
        ),
        ([1, 2, 5, 5], g(2, 2, 0, 3, 3), "2x2/2 ceil mode"),
        (
            [1, 2, 5, 5],
            g(2, 2, 0, 2, 2),
            "2x2/2 floor mode (last row unused)",
        ),
        ([2, 2, 9, 6], g(3, 1, 1, 9, 6), "3x3/1 symmetric padding 1"),
        ([1, 4, 11, 11], g(3, 2, 1, 6, 6), "3x3/2 padding 1"),
    ]
}

/// Calls `f(y_index, [x_indices of the window inside the input])` per output cell.
fn pool_windows(xs: [usize; 4], g: &Pool2dGeometry, mut f: impl FnMut(usize, Vec<usize>)) {
    let [n, c, h, w] = xs;
    let (oh, ow) = g.out;
    for p in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut cells = Vec::new();
                for ky in 0..g.kernel.0 {
                    for kx in 0..g.kernel.1 {
                        let iy = (oy * g.stride.0 + ky) as isize - g.pad_top as isize;
                        let ix = (ox * g.stride.1 + kx) as isize - g.pad_left as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            cells.push((p * h + iy as usize) * w + ix as usize);
                        }
                    }
                }
                f((p * oh + oy) * ow + ox, cells);
            }
        }
    }
}

#[test]
fn max_pool_forward_and_backward_match_reference_loops() {
    require_gpu!();
    let mut rng = Rng::new(9);
    for (xs, g, name) in pool_cases() {
        let x = randn(&mut rng, xs.iter().product());
        let ylen = xs[0] * xs[1] * g.out.0 * g.out.1;
        let dy = randn(&mut rng, ylen);
        let mut want = vec![0.0f64; ylen];
        let mut dx = vec![0.0f64; x.len()];
        pool_windows(xs, &g, |yi, cells| {
            // First maximum in row-major window order (random data: no ties).
            let best = cells
                .iter()
                .copied()
                .fold(None, |b: Option<usize>, i| match b {
                    Some(j) if x[j] >= x[i] => Some(j),
                    _ => Some(i),
                })
                .expect("every window holds an input cell");
            want[yi] = x[best] as f64;
            dx[best] += dy[yi] as f64;
        });
        let gx = up(&x);
        let y = cuda::max_pool2d_forward(&gx, xs, &g).expect("max pool");
        assert_close(&down(&y), &want, 0.0, &format!("max pool {name}"));
        let got = cuda::max_pool2d_backward(&gx, xs, &y, &up(&dy), &g).expect("max pool backward");
        assert_close(&down(&got), &dx, 1e-6, &format!("max pool {name} backward"));
    }
}

#[test]
fn avg_pool_forward_and_backward_match_reference_loops() {
    require_gpu!();
    let mut rng = Rng::new(10);
    for (xs, g, name) in pool_cases() {
        let x = randn(&mut rng, xs.iter().product());
        let ylen = xs[0] * xs[1] * g.out.0 * g.out.1;
        let dy = randn(&mut rng, ylen);
        let mut want = vec![0.0f64; ylen];
        let mut dx = vec![0.0f64; x.len()];
        pool_windows(xs, &g, |yi, cells| {
            let cnt = cells.len() as f64;
            want[yi] = cells.iter().map(|&i| x[i] as f64).sum::<f64>() / cnt;
            for &i in &cells {
                dx[i] += dy[yi] as f64 / cnt;
            }
        });
        let y = cuda::avg_pool2d_forward(&up(&x), xs, &g).expect("avg pool");
        assert_close(&down(&y), &want, 1e-5, &format!("avg pool {name}"));
        let got = cuda::avg_pool2d_backward(&up(&dy), xs, &g).expect("avg pool backward");
        assert_close(&down(&got), &dx, 1e-5, &format!("avg pool {name} backward"));
    }
}

#[test]
fn global_average_pool_is_a_spatial_mean() {
    require_gpu!();
    let mut rng = Rng::new(11);
    let (n, c, h, w) = (2, 5, 7, 9);
    let x = randn(&mut rng, n * c * h * w);
    let got = cuda::mean_dims(&up(&x), &Shape::from([n, c, h, w]), &[2, 3]).expect("mean");
    let want: Vec<f64> = x
        .chunks(h * w)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64)
        .collect();
    assert_close(&down(&got), &want, 1e-5, "global average pool");
}

// ----- resize --------------------------------------------------------------------------------

/// PyTorch's source index computation (in f32, as its kernels).
fn src_index(in_size: usize, out_size: usize, dst: usize, align: bool) -> (usize, usize, f32, f32) {
    let scale = if align {
        if out_size > 1 {
            (in_size - 1) as f32 / (out_size - 1) as f32
        } else {
            0.0
        }
    } else {
        in_size as f32 / out_size as f32
    };
    let src = if align {
        scale * dst as f32
    } else {
        (scale * (dst as f32 + 0.5) - 0.5).max(0.0)
    };
    let i0 = (src as usize).min(in_size - 1);
    let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

#[test]
fn bilinear_resize_forward_and_backward_match_pytorch_formulas() {
    require_gpu!();
    let mut rng = Rng::new(12);
    let cases = [
        ([2, 3, 5, 7], (9, 4)),
        ([1, 2, 8, 8], (4, 4)),
        ([1, 1, 3, 3], (1, 1)),
        ([2, 2, 4, 6], (13, 11)),
        ([1, 3, 6, 5], (6, 5)),
    ];
    for (xs, (oh, ow)) in cases {
        for align in [false, true] {
            let [n, c, h, w] = xs;
            let x = randn(&mut rng, n * c * h * w);
            let dy = randn(&mut rng, n * c * oh * ow);
            let mut want = vec![0.0f64; n * c * oh * ow];
            let mut dx = vec![0.0f64; x.len()];
            for p in 0..n * c {
                for oy in 0..oh {
                    let (y0, y1, ly0, ly1) = src_index(h, oh, oy, align);
                    for ox in 0..ow {
                        let (x0, x1, lx0, lx1) = src_index(w, ow, ox, align);
                        let at = |yy: usize, xx: usize| (p * h + yy) * w + xx;
                        let yi = (p * oh + oy) * ow + ox;
                        let terms = [
                            (at(y0, x0), ly0 * lx0),
                            (at(y0, x1), ly0 * lx1),
                            (at(y1, x0), ly1 * lx0),
                            (at(y1, x1), ly1 * lx1),
                        ];
                        for (i, wgt) in terms {
                            want[yi] += x[i] as f64 * wgt as f64;
                            dx[i] += dy[yi] as f64 * wgt as f64;
                        }
                    }
                }
            }
            let what = format!("resize {xs:?} -> {oh}x{ow} align_corners={align}");
            let y = cuda::resize_bilinear_forward(&up(&x), xs, oh, ow, align).expect("resize");
            assert_close(&down(&y), &want, 1e-5, &what);
            let got =
                cuda::resize_bilinear_backward(&up(&dy), xs, oh, ow, align).expect("backward");
            assert_close(&down(&got), &dx, 1e-5, &format!("{what} backward"));
        }
    }
}

// ----- layer norm ----------------------------------------------------------------------------

#[test]
fn layer_norm_forward_and_backward_match_reference_loops() {
    require_gpu!();
    let mut rng = Rng::new(13);
    for (n, c, s, affine) in [
        (3, 4, 25, true),
        (2, 16, 1, true),
        (4, 3, 300, false),
        (1, 2, 7, true),
    ] {
        let m = c * s;
        // An offset and scale so that the statistics matter.
        let x: Vec<f32> = randn(&mut rng, n * m)
            .iter()
            .map(|v| 3.0 + 2.0 * v)
            .collect();
        let gamma = randn(&mut rng, c);
        let beta = randn(&mut rng, c);
        let dy = randn(&mut rng, n * m);
        let eps = 1e-5f64;
        let mut y = vec![0.0f64; n * m];
        let mut dx = vec![0.0f64; n * m];
        let mut dg = vec![0.0f64; c];
        let mut dbeta = vec![0.0f64; c];
        for r in 0..n {
            let xr = &x[r * m..(r + 1) * m];
            let mu = xr.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
            let var = xr.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / m as f64;
            let rs = 1.0 / (var + eps).sqrt();
            let xh: Vec<f64> = xr.iter().map(|&v| (v as f64 - mu) * rs).collect();
            let g = |j: usize| if affine { gamma[j / s] as f64 } else { 1.0 };
            let dxh: Vec<f64> = (0..m).map(|j| dy[r * m + j] as f64 * g(j)).collect();
            let a = dxh.iter().sum::<f64>() / m as f64;
            let b = dxh.iter().zip(&xh).map(|(d, h)| d * h).sum::<f64>() / m as f64;
            for j in 0..m {
                y[r * m + j] = xh[j] * g(j) + if affine { beta[j / s] as f64 } else { 0.0 };
                dx[r * m + j] = rs * (dxh[j] - a - xh[j] * b);
                dg[j / s] += dy[r * m + j] as f64 * xh[j];
                dbeta[j / s] += dy[r * m + j] as f64;
            }
        }
        let what = format!("layer norm n={n} c={c} s={s} affine={affine}");
        let (gx, gg, gb) = (up(&x), up(&gamma), up(&beta));
        let (gy, stats) = cuda::layer_norm_forward(
            &gx,
            n,
            c,
            s,
            affine.then_some(&gg),
            affine.then_some(&gb),
            eps as f32,
        )
        .expect("layer norm");
        assert_close(&down(&gy), &y, 1e-5, &what);
        assert_eq!(stats.len(), n * cuda::LN_STATS);
        let (gdx, gdg, gdb) = cuda::layer_norm_backward(
            &gx,
            &up(&dy),
            &stats,
            (n, c, s),
            affine.then_some(&gg),
            [true, affine, affine],
        )
        .expect("layer norm backward");
        assert_close(&down(&gdx.expect("dx")), &dx, 1e-4, &format!("{what} dx"));
        if affine {
            assert_close(
                &down(&gdg.expect("dgamma")),
                &dg,
                1e-4,
                &format!("{what} dgamma"),
            );
            assert_close(
                &down(&gdb.expect("dbeta")),
                &dbeta,
                1e-4,
                &format!("{what} dbeta"),
            );
        } else {
            assert!(gdg.is_none() && gdb.is_none());
        }
        // Only the affine gradients.
        let (none, only_g, none_b) =
            cuda::layer_norm_backward(&gx, &up(&dy), &stats, (n, c, s), None, [false, true, false])
                .expect("dgamma only");
        assert!(none.is_none() && none_b.is_none());
        assert_close(
            &down(&only_g.expect("dgamma")),
            &dg,
            1e-4,
            &format!("{what} dgamma alone"),
        );
    }
}

// ----- softmax and cross-entropy -------------------------------------------------------------

fn log_softmax_ref(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
    let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

#[test]
fn softmax_and_log_softmax_forward_and_backward() {
    require_gpu!();
    let mut rng = Rng::new(14);
    for (rows, k) in [(4, 10), (3, 1000), (2, 1), (70_000, 3)] {
        let x: Vec<f32> = randn(&mut rng, rows * k).iter().map(|v| 4.0 * v).collect();
        let dy = randn(&mut rng, rows * k);
        let mut p = Vec::new();
        let mut lp = Vec::new();
        for r in x.chunks(k) {
            let l = log_softmax_ref(r);
            p.extend(l.iter().map(|v| v.exp()));
            lp.extend(l);
        }
        let mut dp = vec![0.0f64; rows * k];
        let mut dlp = vec![0.0f64; rows * k];
        for r in 0..rows {
            let range = r * k..(r + 1) * k;
            let dot: f64 = range.clone().map(|j| dy[j] as f64 * p[j]).sum();
            let sum: f64 = range.clone().map(|j| dy[j] as f64).sum();
            for j in range {
                dp[j] = p[j] * (dy[j] as f64 - dot);
                dlp[j] = dy[j] as f64 - p[j] * sum;
            }
        }
        let what = format!("softmax [{rows}, {k}]");
        let gx = up(&x);
        let y = cuda::softmax_forward(&gx, rows, k).expect("softmax");
        assert_close(&down(&y), &p, 1e-5, &what);
        let ly = cuda::log_softmax_forward(&gx, rows, k).expect("log_softmax");
        assert_close(&down(&ly), &lp, 1e-5, &format!("log_{what}"));
        let gdy = up(&dy);
        let d = cuda::softmax_backward(&y, &gdy, rows, k).expect("softmax backward");
        assert_close(&down(&d), &dp, 1e-5, &format!("{what} backward"));
        let d = cuda::log_softmax_backward(&ly, &gdy, rows, k).expect("log_softmax backward");
        assert_close(&down(&d), &dlp, 1e-4, &format!("log_{what} backward"));
    }
}

#[test]
fn cross_entropy_with_label_smoothing_forward_and_backward() {
    require_gpu!();
    let mut rng = Rng::new(15);
    for (rows, k, ls) in [(5, 10, 0.0f32), (8, 1000, 0.1), (3, 2, 1.0), (300, 7, 0.2)] {
        let x: Vec<f32> = randn(&mut rng, rows * k).iter().map(|v| 3.0 * v).collect();
        let targets: Vec<usize> = (0..rows).map(|_| rng.below(k)).collect();
        let g = 0.7f32;
        let mut loss = 0.0f64;
        let mut dx = vec![0.0f64; rows * k];
        for r in 0..rows {
            let l = log_softmax_ref(&x[r * k..(r + 1) * k]);
            for j in 0..k {
                let q = ls as f64 / k as f64
                    + if j == targets[r] {
                        1.0 - ls as f64
                    } else {
                        0.0
                    };
                loss -= q * l[j];
                dx[r * k + j] = g as f64 / rows as f64 * (l[j].exp() - q);
            }
        }
        loss /= rows as f64;
        let what = format!("cross entropy [{rows}, {k}] ls={ls}");
        let gx = up(&x);
        let got = cuda::cross_entropy_forward(&gx, rows, k, &targets, ls).expect("xent");
        assert_close(&down(&got), &[loss], 1e-5, &what);
        let d = cuda::cross_entropy_backward(&gx, rows, k, &targets, ls, &up(&[g]))
            .expect("xent backward");
        assert_close(&down(&d), &dx, 1e-5, &format!("{what} backward"));
    }
    let e = cuda::cross_entropy_forward(&up(&[0.0; 6]), 2, 3, &[0, 3], 0.0)
        .expect_err("target out of range");
    assert!(e.to_string().contains("out of range"), "{e}");
    let e =
        cuda::cross_entropy_forward(&up(&[0.0; 6]), 2, 3, &[0], 0.0).expect_err("length mismatch");
    assert!(e.to_string().contains("targets"), "{e}");
}

// ----- reductions ----------------------------------------------------------------------------

/// Sum of `x` (shape `dims`) over the flagged dims, in f64.
fn sum_ref(x: &[f32], dims: &[usize], reduce: &[bool]) -> Vec<f64> {
    let out_dims: Vec<usize> = dims
        .iter()
        .zip(reduce)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let mut out = vec![0.0f64; out_dims.iter().product()];
    let strides = Shape::from(dims.to_vec()).strides();
    let ostrides = Shape::from(out_dims.clone()).strides();
    for (i, v) in x.iter().enumerate() {
        let mut o = 0;
        for k in 0..dims.len() {
            let idx = (i / strides[k]) % dims[k];
            if !reduce[k] {
                o += idx * ostrides[k];
            }
        }
        out[o] += *v as f64;
    }
    out
}

#[test]
fn sums_means_and_max_over_dims() {
    require_gpu!();
    let mut rng = Rng::new(16);
    let dims = [3, 4, 5, 6];
    let x = randn(&mut rng, dims.iter().product());
    let gx = up(&x);
    let shape = Shape::from(dims);
    let sets: [&[usize]; 7] = [&[0], &[1], &[3], &[1, 2], &[0, 2], &[0, 1, 2, 3], &[]];
    for set in sets {
        let reduce: Vec<bool> = (0..4).map(|d| set.contains(&d)).collect();
        let want = sum_ref(&x, &dims, &reduce);
        let got = cuda::sum_dims(&gx, &shape, set, 1.0).expect("sum_dims");
        assert_close(&down(&got), &want, 1e-5, &format!("sum over {set:?}"));
        let count: usize = set.iter().map(|&d| dims[d]).product();
        let mean: Vec<f64> = want.iter().map(|v| v / count as f64).collect();
        let got = cuda::mean_dims(&gx, &shape, set).expect("mean_dims");
        assert_close(&down(&got), &mean, 1e-5, &format!("mean over {set:?}"));
    }
    // Long reductions take the block-per-output path.
    let big = randn(&mut rng, 3 * 100_000);
    let got = cuda::sum_dims(&up(&big), &Shape::from([3, 100_000]), &[1], 1.0).expect("sum");
    let want = sum_ref(&big, &[3, 100_000], &[false, true]);
    assert_close(&down(&got), &want, 1e-4, "long row sums");
    let all: f64 = big.iter().map(|&v| v as f64).sum();
    assert_close(
        &down(&cuda::sum_all(&up(&big)).expect("sum_all")),
        &[all],
        1e-4,
        "sum_all",
    );
    let mean = all / big.len() as f64;
    assert_close(
        &down(&cuda::mean_all(&up(&big)).expect("mean_all")),
        &[mean],
        1e-4,
        "mean_all",
    );
    // max over each dim, values and indices, and the backward scatter
    for dim in 0..4 {
        let (vals, idx) = cuda::max_dim(&gx, &shape, dim).expect("max_dim");
        let d = dims[dim];
        let inner: usize = dims[dim + 1..].iter().product();
        let outer: usize = dims[..dim].iter().product();
        let mut want_v = Vec::new();
        let mut want_i = Vec::new();
        for o in 0..outer {
            for i in 0..inner {
                let (mut best, mut bi) = (x[o * d * inner + i], 0);
                for j in 1..d {
                    let v = x[(o * d + j) * inner + i];
                    if v > best {
                        best = v;
                        bi = j;
                    }
                }
                want_v.push(best as f64);
                want_i.push(bi);
            }
        }
        assert_close(&down(&vals), &want_v, 0.0, &format!("max over {dim}"));
        assert_eq!(idx, want_i, "argmax over {dim}");
        let g = randn(&mut rng, outer * inner);
        let back = cuda::max_dim_backward(&up(&g), &idx, &shape, dim).expect("max backward");
        let mut want_b = vec![0.0f64; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                want_b[(o * d + idx[o * inner + i]) * inner + i] = g[o * inner + i] as f64;
            }
        }
        assert_close(
            &down(&back),
            &want_b,
            0.0,
            &format!("max over {dim} backward"),
        );
    }
}

// ----- copies --------------------------------------------------------------------------------

#[test]
fn cat_split_narrow_pad_and_crop() {
    require_gpu!();
    let mut rng = Rng::new(17);
    for dim in 0..4 {
        let mut shapes = vec![[2usize, 3, 4, 5]; 3];
        shapes[1][dim] = 1;
        shapes[2][dim] = 4;
        let datas: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| randn(&mut rng, s.iter().product()))
            .collect();
        let bufs: Vec<CudaBuf> = datas.iter().map(|d| up(d)).collect();
        let shp: Vec<Shape> = shapes.iter().map(|s| Shape::from(*s)).collect();
        let parts: Vec<(&CudaBuf, &Shape)> = bufs.iter().zip(&shp).collect();
        let (cat, cat_shape) = cuda::cat(&parts, dim).expect("cat");
        // reference: interleave along dim
        let outer: usize = shapes[0][..dim].iter().product();
        let inner: usize = shapes[0][dim + 1..].iter().product();
        let mut want = Vec::new();
        for o in 0..outer {
            for (d, s) in datas.iter().zip(&shapes) {
                let len = s[dim] * inner;
                want.extend(d[o * len..(o + 1) * len].iter().map(|&v| v as f64));
            }
        }
        // The first part keeps its size along `dim` (2, 3, 4 or 5); the others have 1 and 4.
        let first = shapes[0][dim];
        assert_eq!(cat_shape.dim(dim), first + 1 + 4);
        assert_close(&down(&cat), &want, 0.0, &format!("cat along {dim}"));
        let sizes: Vec<usize> = shapes.iter().map(|s| s[dim]).collect();
        let pieces = cuda::split(&cat, &cat_shape, &sizes, dim).expect("split");
        for (k, (p, d)) in pieces.iter().zip(&datas).enumerate() {
            assert_eq!(down(p), *d, "split along {dim}, piece {k}");
        }
        let mid = cuda::narrow(&cat, &cat_shape, dim, first, 1).expect("narrow");
        assert_eq!(down(&mid), datas[1], "narrow along {dim}");
    }
    // pad and its adjoint
    let xs = [2, 3, 4, 5];
    let x = randn(&mut rng, xs.iter().product());
    let pad = [1, 2, 0, 3];
    let p = cuda::pad2d(&up(&x), xs, pad, -7.0).expect("pad");
    let (hp, wp) = (4 + 3, 5 + 3);
    let pv = down(&p);
    for pl in 0..6 {
        for y in 0..hp {
            for xx in 0..wp {
                let v = pv[(pl * hp + y) * wp + xx];
                let inside = (1..5).contains(&y) && xx < 5;
                let want = if inside {
                    x[(pl * 4 + y - 1) * 5 + xx]
                } else {
                    -7.0
                };
                assert_eq!(v, want, "pad at plane {pl} ({y}, {xx})");
            }
        }
    }
    let back = cuda::crop2d(&p, xs, pad).expect("crop");
    assert_eq!(down(&back), x, "crop undoes pad");
}

// ----- helpers the op modules dispatch to -----------------------------------------------------

#[test]
fn sum_over_broadcast_back_linear_strided_matmul_copy_rows_and_transpose() {
    require_gpu!();
    let mut rng = Rng::new(18);
    // sum_over / broadcast_back with a reduce mask
    let dims = [4usize, 3, 5];
    let reduce = [true, false, true];
    let x = randn(&mut rng, 60);
    let got = cuda::sum_over(&up(&x), &dims, &reduce, 0.5).expect("sum_over");
    let want: Vec<f64> = sum_ref(&x, &dims, &reduce)
        .iter()
        .map(|v| v * 0.5)
        .collect();
    assert_close(&down(&got), &want, 1e-5, "sum_over");
    let g = randn(&mut rng, 3);
    let back = cuda::broadcast_back(&up(&g), &dims, &reduce, 0.25).expect("broadcast_back");
    let want: Vec<f64> = (0..60).map(|i| 0.25 * g[(i / 5) % 3] as f64).collect();
    assert_close(&down(&back), &want, 1e-6, "broadcast_back");
    // linear: x [n, i] · wᵀ + b
    let (n, i, o) = (5, 7, 3);
    let (xv, wv, bv) = (
        randn(&mut rng, n * i),
        randn(&mut rng, o * i),
        randn(&mut rng, o),
    );
    let y = cuda::linear_forward(&up(&xv), &up(&wv), Some(&up(&bv)), n, i, o).expect("linear");
    let mut want = vec![0.0f64; n * o];
    for r in 0..n {
        for c in 0..o {
            want[r * o + c] = bv[c] as f64
                + (0..i)
                    .map(|k| xv[r * i + k] as f64 * wv[c * i + k] as f64)
                    .sum::<f64>();
        }
    }
    assert_close(&down(&y), &want, 1e-5, "linear");
    // matmul_strided with a shared right-hand side read transposed: [2, n, i] · wᵀ
    let xb = randn(&mut rng, 2 * n * i);
    let dims = BatchDims {
        batch: 2,
        m: n,
        n: o,
        k: i,
    };
    let (gx, gw) = (up(&xb), up(&wv));
    let y = cuda::matmul_strided(
        dims,
        (DevMat::new(&gx, i), n * i),
        (DevMat::new(&gw, i).t(), 0),
    )
    .expect("matmul_strided");
    let mut want = vec![0.0f64; 2 * n * o];
    for b in 0..2 {
        for r in 0..n {
            for c in 0..o {
                want[(b * n + r) * o + c] = (0..i)
                    .map(|k| xb[(b * n + r) * i + k] as f64 * wv[c * i + k] as f64)
                    .sum::<f64>();
            }
        }
    }
    assert_close(&down(&y), &want, 1e-5, "matmul_strided");
    // copy_rows: columns 2..5 of a [4, 6] matrix into columns 1..4 of a zeroed [4, 5] one
    let src = randn(&mut rng, 24);
    let mut dst = CudaBuf::zeros(0, 20).expect("zeros");
    cuda::copy_rows(&up(&src), (6, 2), &mut dst, (5, 1), 3).expect("copy_rows");
    let want: Vec<f64> = (0..20)
        .map(|k| {
            let (r, c) = (k / 5, k % 5);
            if (1..4).contains(&c) {
                src[r * 6 + c + 1] as f64
            } else {
                0.0
            }
        })
        .collect();
    assert_close(&down(&dst), &want, 0.0, "copy_rows");
    // transpose2d
    let m = randn(&mut rng, 35);
    let tr = cuda::transpose2d(&up(&m), 5, 7).expect("transpose2d");
    let want: Vec<f64> = (0..35).map(|k| m[(k % 5) * 7 + k / 5] as f64).collect();
    assert_close(&down(&tr), &want, 0.0, "transpose2d");
}

#[test]
fn without_a_gpu_cuda_tensors_are_a_clear_error() {
    // The complement of every other test: runs only where no GPU is usable.
    let Err(why) = cuda::probe(0) else {
        return;
    };
    let e = Tensor::zeros([2], GPU).expect_err("no device");
    assert_eq!(e.to_string(), why.to_string());
    assert!(e.to_string().starts_with("CUDA: "), "{e}");
    assert!(e.to_string().contains("To fix"), "{e}");
}

// ----- allocator ------------------------------------------------------------------------------

#[test]
fn the_caching_allocator_reports_live_and_cached_bytes() {
    require_gpu!();
    // Other tests of this binary allocate concurrently, so only monotone facts are checked here;
    // exact reuse is checked by the unit test `cuda::buffer::tests` in the library.
    let n = 3_333_331; // an odd size no other test uses
    let b = CudaBuf::zeros(0, n).expect("alloc");
    assert!(cuda::live_bytes(0) >= n * 4);
    assert!(cuda::peak_bytes(0) >= cuda::live_bytes(0).min(n * 4));
    drop(b);
    assert!(cuda::cached_bytes(0) >= n * 4 || cuda::live_bytes(0) >= n * 4);
    let again = CudaBuf::zeros(0, n).expect("alloc");
    assert_eq!(down(&again).iter().filter(|v| **v != 0.0).count(), 0);
}

// ----- every op through the Tensor API: CPU engine vs CUDA, forward and gradients -------------
//
// These go through the op modules' dispatch to the CUDA backend (`BackendStorage for CudaBuf`),
// so they check the wiring as
// well as the kernels: shapes, saved state, the recorded backward and the layout bookkeeping (the
// CPU convolution may return a blocked result, the CUDA one never does).

use tensor::ops::{Conv2dOpts, Padding, Pool2dOpts};

/// Normal values spread so that no two are within `gap` of each other: max pooling and max_dim
/// have no ties on either device, so the winner (and the gradient) is the same.
fn distinct(rng: &mut Rng, shape: &[usize], gap: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * gap).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    Tensor::from_vec(v, shape, Device::Cpu).expect("tensor")
}

/// Input shape, weight shape, whether there is a bias, the options, and a description.
type ConvOpCase = ([usize; 4], [usize; 4], bool, Conv2dOpts, &'static str);

#[test]
fn tensor_conv2d_matches_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(30);
    let explicit = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    let cases: Vec<ConvOpCase> = vec![
        (
            [2, 3, 9, 8],
            [4, 3, 3, 3],
            true,
            Conv2dOpts::default(),
            "3x3 SAME",
        ),
        (
            [2, 3, 8, 8],
            [5, 3, 3, 3],
            false,
            Conv2dOpts::default().with_stride(2),
            "3x3 stride 2 SAME (padding 0 before, 1 after)",
        ),
        (
            [1, 2, 7, 6],
            [3, 2, 4, 4],
            true,
            Conv2dOpts::default(),
            "4x4 SAME (padding 1 before, 2 after)",
        ),
        (
            [1, 3, 16, 16],
            [4, 3, 7, 7],
            true,
            Conv2dOpts::default().with_stride(2),
            "7x7 stride 2 SAME stem",
        ),
        (
            [2, 4, 9, 9],
            [3, 4, 3, 3],
            true,
            Conv2dOpts::default()
                .with_padding(Padding::Valid)
                .with_dilation(2),
            "dilation 2 VALID",
        ),
        (
            [2, 3, 7, 9],
            [2, 3, 3, 2],
            true,
            Conv2dOpts::default().with_padding(explicit),
            "explicit asymmetric padding",
        ),
        (
            [2, 4, 6, 6],
            [6, 2, 3, 3],
            false,
            Conv2dOpts::default().with_groups(2),
            "groups 2",
        ),
        (
            [2, 6, 7, 7],
            [6, 1, 5, 5],
            true,
            Conv2dOpts::default().with_groups(6),
            "depthwise 5x5",
        ),
        (
            [2, 4, 8, 8],
            [8, 1, 3, 3],
            true,
            Conv2dOpts::default().with_groups(4).with_stride(2),
            "depthwise multiplier 2 stride 2",
        ),
        (
            [3, 5, 6, 10],
            [7, 5, 1, 1],
            true,
            Conv2dOpts {
                stride: (2, 3),
                padding: Padding::Valid,
                ..Conv2dOpts::default()
            },
            "1x1 stride (2, 3)",
        ),
        (
            [2, 16, 6, 6],
            [32, 16, 3, 3],
            true,
            Conv2dOpts::default(),
            "16 -> 32 channels (a blocked result on the CPU)",
        ),
        (
            [1, 16, 7, 7],
            [16, 1, 3, 3],
            false,
            Conv2dOpts::default().with_groups(16),
            "depthwise 16 channels",
        ),
    ];
    for (xs, ws, bias, opts, what) in cases {
        let x = t(&mut rng, &xs);
        let w = t(&mut rng, &ws).map_values(|v| v * 0.3);
        let mut inputs = vec![x, w];
        if bias {
            inputs.push(t(&mut rng, &[ws[0]]));
        }
        parity(&inputs, 1e-4, &format!("conv2d {what}"), |v| {
            v[0].conv2d(&v[1], v.get(2), &opts)
        });
    }
    // The CPU backend choice is ignored on the GPU.
    let x = t(&mut rng, &[1, 2, 5, 5]);
    let w = t(&mut rng, &[3, 2, 3, 3]);
    parity(&[x, w], 1e-4, "conv2d_on(Rust) on the GPU", |v| {
        v[0].conv2d_on(
            &v[1],
            None,
            &Conv2dOpts::default(),
            tensor::ops::CpuConvBackend::Rust,
        )
    });
}

#[test]
fn tensor_pooling_matches_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(31);
    let explicit = Padding::Explicit {
        top: 1,
        bottom: 0,
        left: 0,
        right: 2,
    };
    let cases: [(&[usize], Pool2dOpts, &str); 7] = [
        (&[2, 3, 7, 7], Pool2dOpts::default(), "2x2/2 SAME on 7x7"),
        (&[2, 3, 8, 8], Pool2dOpts::default(), "2x2/2 SAME on 8x8"),
        (
            &[1, 4, 9, 10],
            Pool2dOpts::new(3, 2, Padding::Same),
            "3x3/2 SAME",
        ),
        (
            &[2, 2, 7, 9],
            Pool2dOpts::new(3, 2, Padding::Valid).with_ceil_mode(true),
            "3x3/2 VALID ceil",
        ),
        (
            &[1, 3, 6, 7],
            Pool2dOpts::new(2, 2, Padding::symmetric(1)).with_ceil_mode(true),
            "2x2/2 padding 1 ceil",
        ),
        (
            &[1, 2, 6, 6],
            Pool2dOpts {
                kernel: (3, 3),
                stride: (1, 2),
                padding: explicit,
                ceil_mode: false,
            },
            "3x3 stride (1, 2) explicit asymmetric padding",
        ),
        (
            &[2, 3, 5, 5],
            Pool2dOpts::new(5, 1, Padding::Valid),
            "window = input",
        ),
    ];
    for (shape, opts, what) in cases {
        let x = distinct(&mut rng, shape, 0.01);
        parity(
            std::slice::from_ref(&x),
            1e-6,
            &format!("max_pool2d {what}"),
            |v| v[0].max_pool2d(&opts),
        );
        parity(&[x], 1e-5, &format!("avg_pool2d {what}"), |v| {
            v[0].avg_pool2d(&opts)
        });
    }
    let x = t(&mut rng, &[3, 5, 6, 7]);
    parity(&[x], 1e-5, "global_avg_pool", |v| v[0].global_avg_pool());
    // Max pooling without a tape keeps no saved state and still runs on the GPU.
    let x = distinct(&mut rng, &[1, 2, 5, 5], 0.01);
    let _g = tensor::no_grad();
    let yc = x.max_pool2d(&Pool2dOpts::default()).expect("cpu");
    let yg = x
        .to_device(GPU)
        .expect("to gpu")
        .max_pool2d(&Pool2dOpts::default())
        .expect("gpu");
    assert_close(
        &yg.to_vec().expect("values"),
        &f64s(&yc.to_vec().expect("values")),
        0.0,
        "max_pool2d without grad",
    );
}

#[test]
fn tensor_resize_matches_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(32);
    for (shape, out, align) in [
        ([2, 3, 4, 5], (7, 9), true),
        ([2, 3, 4, 5], (7, 9), false),
        ([1, 2, 9, 8], (4, 3), true),
        ([1, 2, 9, 8], (4, 3), false),
        ([1, 1, 1, 3], (5, 1), true),
        ([1, 1, 1, 3], (5, 1), false),
    ] {
        let x = t(&mut rng, &shape);
        parity(
            &[x],
            1e-5,
            &format!("resize_bilinear {shape:?} -> {out:?} align_corners={align}"),
            |v| v[0].resize_bilinear(out.0, out.1, align),
        );
    }
}

#[test]
fn tensor_shape_ops_match_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(33);
    for dim in 0..4 {
        let mut shapes = [[2usize, 3, 4, 5]; 3];
        shapes[1][dim] = 1;
        shapes[2][dim] = 4;
        let parts: Vec<Tensor> = shapes.iter().map(|s| t(&mut rng, s)).collect();
        parity(&parts, 0.0, &format!("cat along {dim}"), |v| {
            Tensor::cat(&v.iter().collect::<Vec<_>>(), dim)
        });
        let x = t(&mut rng, &[2, 6, 4, 5]);
        let sizes: Vec<usize> = match dim {
            0 => vec![1, 1],
            1 => vec![2, 1, 3],
            2 => vec![1, 3],
            _ => vec![2, 2, 1],
        };
        for (k, _) in sizes.iter().enumerate() {
            let sizes = sizes.clone();
            parity(
                std::slice::from_ref(&x),
                0.0,
                &format!("split along {dim}, piece {k}"),
                move |v| Ok(v[0].split(&sizes, dim)?.swap_remove(k)),
            );
        }
        parity(
            std::slice::from_ref(&x),
            0.0,
            &format!("narrow along {dim}"),
            |v| v[0].narrow(dim, 1, 1),
        );
    }
    // The same tensor twice in one concat (shared storage).
    let a = t(&mut rng, &[2, 3, 2, 2]);
    parity(&[a], 0.0, "cat of a tensor with itself", |v| {
        Tensor::cat(&[&v[0], &v[0]], 1)
    });
    let x = t(&mut rng, &[2, 3, 4, 5]);
    parity(std::slice::from_ref(&x), 0.0, "reshape", |v| {
        v[0].reshape([6, 20])
    });
    parity(&[x], 0.0, "flatten_from(1)", |v| v[0].flatten_from(1));
    let m = t(&mut rng, &[7, 13]);
    parity(&[m], 0.0, "transpose2d", |v| v[0].transpose2d());
}

#[test]
fn tensor_layer_norm_matches_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(34);
    for shape in [vec![2usize, 4, 3, 5], vec![3, 10], vec![2, 16, 7, 7]] {
        let c = shape[1];
        // An offset, so that the mean is far from 0 (the statistics must not cancel).
        let x = t(&mut rng, &shape).map_values(|v| v + 3.0);
        let g = t(&mut rng, &[c]).map_values(|v| 1.0 + 0.3 * v);
        let b = t(&mut rng, &[c]);
        let what = format!("layer_norm {shape:?}");
        parity(&[x.clone(), g.clone(), b.clone()], 1e-4, &what, |v| {
            v[0].layer_norm(Some(&v[1]), Some(&v[2]), 1e-5)
        });
        parity(&[x.clone(), g], 1e-4, &format!("{what} gamma only"), |v| {
            v[0].layer_norm(Some(&v[1]), None, 1e-5)
        });
        parity(&[x.clone(), b], 1e-4, &format!("{what} beta only"), |v| {
            v[0].layer_norm(None, Some(&v[1]), 1e-5)
        });
        parity(&[x], 1e-4, &format!("{what} no affine"), |v| {
            v[0].layer_norm(None, None, 1e-5)
        });
    }
}

#[test]
fn tensor_matmul_and_linear_match_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(35);
    let cases: [(&[usize], &[usize], &str); 3] = [
        (&[5, 7], &[7, 4], "[M, K]·[K, N]"),
        (&[3, 5, 7], &[3, 7, 4], "batched"),
        (&[3, 5, 7], &[7, 4], "shared right-hand side"),
    ];
    for (sa, sb, what) in cases {
        let (a, b) = (t(&mut rng, sa), t(&mut rng, sb));
        parity(&[a, b], 1e-5, &format!("matmul {what}"), |v| {
            v[0].matmul(&v[1])
        });
    }
    let (x, w, b) = (
        t(&mut rng, &[6, 9]),
        t(&mut rng, &[5, 9]),
        t(&mut rng, &[5]),
    );
    parity(&[x.clone(), w.clone(), b], 1e-5, "linear with bias", |v| {
        v[0].linear(&v[1], Some(&v[2]))
    });
    parity(&[x, w], 1e-5, "linear without bias", |v| {
        v[0].linear(&v[1], None)
    });
}

#[test]
fn tensor_reductions_match_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(36);
    let x = t(&mut rng, &[3, 4, 5, 6]);
    parity(std::slice::from_ref(&x), 1e-5, "sum_all", |v| {
        v[0].sum_all()
    });
    parity(std::slice::from_ref(&x), 1e-5, "mean_all", |v| {
        v[0].mean_all()
    });
    let sets: [&[usize]; 6] = [&[0], &[1], &[3], &[1, 2], &[2, 0], &[0, 1, 2, 3]];
    for set in sets {
        for keep in [false, true] {
            parity(
                std::slice::from_ref(&x),
                1e-5,
                &format!("sum_dims {set:?} keepdim={keep}"),
                |v| v[0].sum_dims(set, keep),
            );
            parity(
                std::slice::from_ref(&x),
                1e-5,
                &format!("mean_dims {set:?} keepdim={keep}"),
                |v| v[0].mean_dims(set, keep),
            );
        }
    }
    let xd = distinct(&mut rng, &[3, 4, 5], 0.01);
    for dim in 0..3 {
        parity(
            std::slice::from_ref(&xd),
            0.0,
            &format!("max_dim {dim}"),
            |v| Ok(v[0].max_dim(dim)?.0),
        );
        let (_, ic) = xd.max_dim(dim).expect("cpu");
        let (_, ig) = xd
            .to_device(GPU)
            .expect("to gpu")
            .max_dim(dim)
            .expect("gpu");
        assert_eq!(ic, ig, "max_dim {dim}: indices");
    }
}

#[test]
fn tensor_softmax_and_cross_entropy_match_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(37);
    for shape in [vec![4usize, 10], vec![2, 3, 7], vec![5, 1]] {
        let x = t(&mut rng, &shape).map_values(|v| 3.0 * v);
        parity(
            std::slice::from_ref(&x),
            1e-5,
            &format!("softmax {shape:?}"),
            |v| v[0].softmax(),
        );
        parity(&[x], 1e-5, &format!("log_softmax {shape:?}"), |v| {
            v[0].log_softmax()
        });
    }
    for (n, k, ls) in [(5, 10, 0.0f32), (8, 100, 0.1), (3, 2, 1.0)] {
        let x = t(&mut rng, &[n, k]).map_values(|v| 3.0 * v);
        let targets: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
        parity(
            &[x],
            1e-5,
            &format!("cross_entropy [{n}, {k}] ls={ls}"),
            |v| v[0].cross_entropy(&targets, ls),
        );
    }
}

#[test]
fn tensor_elementwise_scalar_helpers_match_the_cpu_engine() {
    require_gpu!();
    let mut rng = Rng::new(38);
    let x = t(&mut rng, &[4, 6]);
    parity(std::slice::from_ref(&x), 1e-6, "add_scalar", |v| {
        v[0].add_scalar(0.5)
    });
    parity(std::slice::from_ref(&x), 1e-6, "mul_scalar", |v| {
        v[0].mul_scalar(-2.0)
    });
    let y = t(&mut rng, &[4, 6]);
    parity(&[x, y], 1e-5, "a small chain", |v| {
        v[0].mul(&v[1])?.relu()?.sub(&v[1].exp()?)?.sqr()
    });
}

#[test]
fn flops_are_counted_the_same_on_both_devices() {
    require_gpu!();
    let mut rng = Rng::new(39);
    let x = t(&mut rng, &[2, 3, 8, 8]);
    let w = t(&mut rng, &[4, 3, 3, 3]);
    let a = t(&mut rng, &[3, 5, 7]);
    let b = t(&mut rng, &[7, 2]);
    let lw = t(&mut rng, &[6, 7]);
    let run = |dev: Device| {
        let d = |t: &Tensor| t.to_device(dev).expect("to device");
        let (x, w, a, b, lw) = (d(&x), d(&w), d(&a), d(&b), d(&lw));
        let opts = Conv2dOpts::default().with_stride(2);
        [
            tensor::flops::count(|| x.conv2d(&w, None, &opts).expect("conv")).1,
            tensor::flops::count(|| a.matmul(&b).expect("matmul")).1,
            tensor::flops::count(|| a.reshape([15, 7])?.linear(&lw, None)).1,
        ]
    };
    let (cpu, gpu) = (run(Device::Cpu), run(GPU));
    assert_eq!(cpu, gpu);
    assert_eq!(
        cpu,
        [2 * 2 * 4 * 3 * 9 * 4 * 4, 2 * 15 * 7 * 2, 2 * 15 * 7 * 6]
    );
}
