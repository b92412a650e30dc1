//! The driver's tests, run for both schemes; the 1-D transforms of F(4×4, 3×3) are checked
//! against its matrices in [`super::f4`].

use super::f2::{self, F2};
use super::f4::{self, F4};
use super::*;

/// Test values in [-2, 2), spread over many residues.
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i + seed) * 7919) % 1000) as f32 / 250.0 - 2.0)
        .collect()
}

/// One tile through `s`'s input, filter and output transforms against the direct correlation
/// of its (m+2)×(m+2) inputs with a 3×3 filter; the largest error relative to the largest output.
fn one_tile<const P: usize, const Q: usize>(s: &Scheme<P, Q>, d: &[f32], g: &[f32]) -> f32 {
    let (side, step) = (s.step + 2, s.step);
    let dl: [Lanes; P] = std::array::from_fn(|k| [d[k], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let v = (s.input.scalar)(&dl);
    let mut u = vec![f32::NAN; P];
    (s.filters)(g, 1, 1, false, &mut u);
    let m: [Lanes; P] = std::array::from_fn(|k| {
        let mut l = [0.0; LANES];
        l[0] = v[k][0] * u[k];
        l
    });
    let y = (s.output.scalar)(&m);
    let (mut err, mut big) = (0.0f32, 0.0f32);
    for r in 0..step {
        for c in 0..step {
            let mut want = 0.0;
            for ki in 0..3 {
                for kj in 0..3 {
                    want += d[(r + ki) * side + c + kj] * g[ki * 3 + kj];
                }
            }
            err = err.max((y[r * step + c][0] - want).abs());
            big = big.max(want.abs());
        }
    }
    err / big
}

/// F(2×2, 3×3) reproduces a direct correlation exactly on small integers, F(4×4, 3×3) to
/// rounding (its filter transform divides by 6 and 24).
#[test]
fn one_tile_equals_the_direct_correlation() {
    let ints = |len, a, b| -> Vec<f32> { (0..len).map(|i| ((i * a) % b) as f32 - 3.0).collect() };
    assert_eq!(one_tile(&F2, &ints(16, 5, 7), &ints(9, 3, 5)), 0.0);
    // Measured: 2.8e-6 (the f32 rounding of transforms that scale by up to 8 and 1/24).
    let err = one_tile(&F4, &ints(36, 5, 7), &ints(9, 3, 5));
    assert!(err < 1e-5, "F(4×4, 3×3) on integers: relative error {err}");
    let err = one_tile(&F4, &values(36, 1), &values(9, 2));
    assert!(err < 1e-5, "F(4×4, 3×3): relative error {err}");
}

/// `Σ a·b` in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// The gradient transforms are the adjoints of the forward ones: ⟨output(m), y⟩ = ⟨m,
/// gradient(y)⟩ for the tile transforms, and ⟨filters(w), dU⟩ = ⟨w, filter_gradients(dU)⟩.
fn adjoints<const P: usize, const Q: usize>(s: &Scheme<P, Q>) {
    let flat = |x: &[Lanes]| -> Vec<f32> { x.iter().flatten().copied().collect() };
    let m: [Lanes; P] =
        std::array::from_fn(|k| std::array::from_fn(|l| values(P * LANES, 3)[k * LANES + l]));
    let y: [Lanes; Q] =
        std::array::from_fn(|k| std::array::from_fn(|l| values(Q * LANES, 4)[k * LANES + l]));
    let (lhs, rhs) = (
        dot(&flat(&(s.output.scalar)(&m)), &flat(&y)),
        dot(&flat(&m), &flat(&(s.gradient.scalar)(&y))),
    );
    assert!(
        (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
        "tiles: {lhs} vs {rhs}"
    );
    let (o, c) = (3, FILTER_LANES + 2);
    let w = values(o * c * 9, 5);
    let du = values(P * o * c, 6);
    let mut u = vec![f32::NAN; P * o * c];
    (s.filters)(&w, o, c, false, &mut u);
    let dw = (s.filter_gradients)(&du, o, c);
    let (lhs, rhs) = (dot(&u, &du), dot(&w, &dw));
    assert!(
        (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
        "filters: {lhs} vs {rhs}"
    );
}

#[test]
fn gradient_transforms_are_the_adjoints() {
    adjoints(&F2);
    adjoints(&F4);
}

/// `[n, width, h·w]` test values of `rows` `[n·h·w, width]` in the blocked layout.
fn blocked(rows: &[f32], n: usize, width: usize, (h, w): (usize, usize)) -> Vec<f32> {
    from_rows(rows, None, Layout::Blocked16, [n, width, h, w])
        .as_slice()
        .to_vec()
}

/// [`transform_tiles`] of `src` (`n` maps of `hw`, `width` channels) into a new buffer.
fn transformed<const K: usize, const P: usize>(
    src: Map<'_>,
    (n, hw, width): (usize, (usize, usize), usize),
    t: (&Transform<K, P>, usize),
    isa: Isa,
) -> Vec<f32> {
    let tiles = n * hw.0.div_ceil(t.1) * hw.1.div_ceil(t.1);
    let mut out = vec![f32::NAN; P * tiles * width];
    transform_tiles(src, n, hw, width, &mut out, t, isa);
    out
}

/// The vectorised copies of `s`'s tile transforms compute what the scalar ones do (on an AVX2
/// machine the scalar ones otherwise run only on the last channels), bit for bit, on whole
/// registers and a tail, with partial tiles at the bottom and right, with and without a bias.
fn fast_equals_scalar<const P: usize, const Q: usize>(s: &Scheme<P, Q>) {
    let (n, hw, width): (usize, (usize, usize), usize) = (2, (5, 3), 2 * LANES + 4);
    let tiles = s.tiles(n, hw);
    let src = values(n * hw.0 * hw.1 * width, 0);
    let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.25 - 1.5).collect();
    let input = |isa| transformed(Map::Rows(&src), (n, hw, width), (&s.input, s.step), isa);
    let gradient = |isa| transformed(Map::Rows(&src), (n, hw, width), (&s.gradient, s.step), isa);
    let products = input(Isa::Baseline);
    let output = |isa| {
        let mut yr = vec![f32::NAN; src.len()];
        output_tiles(s, &products, n, hw, width, Dest::Rows(&mut yr), isa);
        yr
    };
    // With a bias, through `output_tile` directly (the blocked destination takes whole blocks of
    // 16 only): every tile of image 0.
    let biased = |isa| {
        let mut yr = vec![MaybeUninit::new(f32::NAN); src.len()];
        let (per_image, tw) = (tiles / n, hw.1.div_ceil(s.step));
        for t in 0..per_image {
            let tile: [&[f32]; P] =
                std::array::from_fn(|k| &products[(k * tiles + t) * width..][..width]);
            let (y0, x0) = (s.step * (t / tw), s.step * (t % tw));
            let at = std::array::from_fn(|k| {
                let (yy, xx) = (y0 + k / s.step, x0 + k % s.step);
                (yy < hw.0 && xx < hw.1).then_some((yy * hw.1 + xx) * width)
            });
            output_tile(&s.output, &tile, &mut yr, &at, Some(&bias), width, isa);
        }
        // SAFETY: initialised above (NaN or written).
        yr.iter()
            .map(|v| unsafe { v.assume_init() })
            .collect::<Vec<f32>>()
    };
    let want = [
        products.clone(),
        gradient(Isa::Baseline),
        output(Isa::Baseline),
        biased(Isa::Baseline),
    ];
    assert!(want[..3].iter().flatten().all(|v| v.is_finite()));
    let got = [
        input(Isa::Avx2Fma),
        gradient(Isa::Avx2Fma),
        output(Isa::Avx2Fma),
        biased(Isa::Avx2Fma),
    ];
    for (what, (g, w)) in ["input", "gradient", "output", "biased output"]
        .iter()
        .zip(got.iter().zip(&want))
    {
        // Equal as numbers: the AVX2 gradient negates by 0 − y, the scalar one by −y, so a
        // zero may differ in sign. (NaN ≠ NaN: image 1 of the biased output is compared
        // through its bits.)
        let bits = |v: &[f32]| {
            v.iter()
                .map(|x| if *x == 0.0 { 0 } else { x.to_bits() })
                .collect::<Vec<u32>>()
        };
        assert_eq!(bits(g), bits(w), "F({0}×{0}, 3×3) {what} transform", s.step);
    }
    // The bias is the only difference between the biased and the plain output.
    let plain = output(Isa::Baseline);
    let (y, yb) = (&plain[..src.len() / n], &want[3][..src.len() / n]);
    for (i, (a, b)) in y.iter().zip(yb).enumerate() {
        assert_eq!(a + bias[i % width], *b, "element {i}");
    }
}

#[test]
fn vectorised_transforms_equal_the_scalar_ones() {
    if !Isa::Avx2Fma.available() {
        eprintln!("skipping: this CPU has no AVX2, only the scalar transforms run");
        return;
    }
    fast_equals_scalar(&F2);
    fast_equals_scalar(&F4);
}

/// Reading a blocked map in place, and writing a blocked output (+ bias) in place, give exactly
/// what the row layout gives after converting (on every ISA this CPU has).
fn blocked_equals_rows<const P: usize, const Q: usize>(s: &Scheme<P, Q>) {
    let (n, hw, width): (usize, (usize, usize), usize) = (2, (5, 7), 2 * BLOCK);
    let tiles = s.tiles(n, hw);
    let rows_in = values(n * hw.0 * hw.1 * width, 0);
    let blocked_in = blocked(&rows_in, n, width, hw);
    let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.25 - 3.5).collect();
    for isa in [Isa::Baseline, Isa::Avx2Fma]
        .into_iter()
        .filter(|i| i.available())
    {
        let both = |t: &dyn Fn(Map<'_>, &mut [f32])| {
            let mut a = vec![f32::NAN; P * tiles * width];
            let mut b = vec![f32::NAN; P * tiles * width];
            t(Map::Rows(&rows_in), &mut a);
            t(Map::Blocked(&blocked_in), &mut b);
            (a, b)
        };
        let step = s.step;
        let (a, b) = both(&|m, out| transform_tiles(m, n, hw, width, out, (&s.input, step), isa));
        assert!(a.iter().all(|v| v.is_finite()));
        assert_eq!(a, b, "F({step}) {isa:?} input transform");
        let (a, b) =
            both(&|m, out| transform_tiles(m, n, hw, width, out, (&s.gradient, step), isa));
        assert_eq!(a, b, "F({step}) {isa:?} gradient transform");

        let products = a;
        let mut yr = vec![f32::NAN; rows_in.len()];
        output_tiles(s, &products, n, hw, width, Dest::Rows(&mut yr), isa);
        let want = from_rows(&yr, Some(&bias), Layout::Blocked16, [n, width, hw.0, hw.1]);
        let mut out = Vec::with_capacity(rows_in.len());
        let dest = Dest::Blocked(&mut out.spare_capacity_mut()[..rows_in.len()], Some(&bias));
        output_tiles(s, &products, n, hw, width, dest, isa);
        // SAFETY: output_tiles writes every element (what this test checks against `want`).
        unsafe { out.set_len(rows_in.len()) };
        assert_eq!(out, want.as_slice(), "F({step}) {isa:?} output transform");
    }
}

#[test]
fn blocked_maps_equal_rows() {
    blocked_equals_rows(&F2);
    blocked_equals_rows(&F4);
}

/// The schemes' sizes.
#[test]
fn schemes_have_their_tile_sizes() {
    assert_eq!((F2.step, f2::P, f2::Q), (2, 16, 4));
    assert_eq!((F4.step, f4::P, f4::Q), (4, 36, 16));
    assert_ne!(F2.tags.0, F4.tags.0);
    assert_ne!(F2.tags.1, F4.tags.1);
    // A 6×6 map: 9 tiles of 2×2, 4 of 4×4 (the last row and column of tiles half outside).
    assert_eq!((F2.tiles(1, (6, 6)), F4.tiles(1, (6, 6))), (9, 4));
}

/// F(2×2, 3×3)'s filter transforms, vectorised over [`FILTER_LANES`] filters, compute exactly what the
/// per-filter formulas do: whole groups of lanes and a tail, forward and transposed.
#[test]
fn filter_transforms_equal_the_per_filter_formulas() {
    let (o, c) = (3, FILTER_LANES + 5);
    let w: Vec<f32> = (0..o * c * 9)
        .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    // G g Gᵀ of one 3×3 filter, row-major.
    let transform = |g: [f32; 9]| -> [f32; 16] {
        let mut gg = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = a;
            gg[1][j] = 0.5 * (a + b + cc);
            gg[2][j] = 0.5 * (a - b + cc);
            gg[3][j] = cc;
        }
        let mut u = [0.0f32; 16];
        for (r, [a, b, cc]) in gg.into_iter().enumerate() {
            u[r * 4..][..4].copy_from_slice(&[a, 0.5 * (a + b + cc), 0.5 * (a - b + cc), cc]);
        }
        u
    };
    for transpose in [false, true] {
        let (outs, ins) = if transpose { (c, o) } else { (o, c) };
        let mut got = vec![f32::NAN; outs * f2::P * ins];
        (F2.filters)(&w, o, c, transpose, &mut got);
        for oo in 0..outs {
            for ii in 0..ins {
                let g = std::array::from_fn(|k| {
                    if transpose {
                        w[(ii * c + oo) * 9 + (8 - k)]
                    } else {
                        w[(oo * c + ii) * 9 + k]
                    }
                });
                for (k, v) in transform(g).into_iter().enumerate() {
                    assert_eq!(
                        got[(k * outs + oo) * ins + ii],
                        v,
                        "{transpose} {oo} {ii} {k}"
                    );
                }
            }
        }
    }
    // Gᵀ dU G of every (o, c) of dU [16][O][C].
    let du: Vec<f32> = (0..f2::P * o * c)
        .map(|i| ((i * 6007) % 1000) as f32 / 125.0 - 4.0)
        .collect();
    let dw = (F2.filter_gradients)(&du, o, c);
    assert_eq!(dw.len(), o * c * 9);
    for oo in 0..o {
        for ii in 0..c {
            let u = |k: usize| du[(k * o + oo) * c + ii];
            let mut t = [[0.0f32; 4]; 3];
            for s in 0..4 {
                let (u0, u1, u2, u3) = (u(s), u(4 + s), u(8 + s), u(12 + s));
                t[0][s] = u0 + 0.5 * (u1 + u2);
                t[1][s] = 0.5 * (u1 - u2);
                t[2][s] = 0.5 * (u1 + u2) + u3;
            }
            for (r, [a0, a1, a2, a3]) in t.into_iter().enumerate() {
                let want = [a0 + 0.5 * (a1 + a2), 0.5 * (a1 - a2), 0.5 * (a1 + a2) + a3];
                assert_eq!(
                    dw[(oo * c + ii) * 9 + 3 * r..][..3],
                    want,
                    "{oo} {ii} row {r}"
                );
            }
        }
    }
    assert!((F2.filter_gradients)(&[], 0, c).is_empty());
}

#[test]
fn supports_only_same_3x3_stride_1() {
    let g = ConvGeom {
        n: 2,
        c: 16,
        h: 6,
        w: 5,
        o: 32,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        dh: 1,
        dw: 1,
        pt: 1,
        pb: 1,
        pl: 1,
        pr: 1,
        ho: 6,
        wo: 5,
        groups: 1,
    };
    assert!(supports(&g));
    assert!(!supports(&ConvGeom {
        sh: 2,
        ho: 3,
        wo: 3,
        ..g
    }));
    assert!(!supports(&ConvGeom { groups: 2, ..g }));
    assert!(supports(&ConvGeom { c: 8, ..g }) && !suits(&ConvGeom { c: 8, ..g }));
    // F(4×4, 3×3) by the thresholds: ≥ 64 channels and maps of ≥ 12 a side.
    let big = ConvGeom {
        c: 64,
        o: 128,
        h: 12,
        w: 13,
        ho: 12,
        wo: 13,
        ..g
    };
    assert!(suits_f4(&big) && !suits(&big));
    assert!(!suits_f4(&ConvGeom { c: 32, ..big }));
    assert!(!suits_f4(&ConvGeom {
        w: 11,
        wo: 11,
        ..big
    }));
    assert!(!suits_f4(&ConvGeom { groups: 2, ..big }));
    assert!(suits(&ConvGeom {
        c: 128,
        o: 256,
        ..g
    }));
    assert!(!supports(&ConvGeom { pt: 0, ho: 5, ..g }));
    assert!(!supports(&ConvGeom {
        kh: 1,
        kw: 1,
        pt: 0,
        pb: 0,
        pl: 0,
        pr: 0,
        ..g
    }));
}
