//! 2-D max and average pooling, and global average pooling.
//!
//! Output sizes follow PyTorch's rule on the resolved padding (`floor` or, with `ceil_mode`,
//! `ceil` of `(in + before + after - k) / stride + 1`, dropping a last window that would start in
//! the right/bottom padding). With [`Padding::Same`] this gives TensorFlow's `ceil(in / stride)`
//! and TensorFlow's asymmetric windows; e.g. 2×2/2 on 7 cells gives 4 outputs, the last window
//! covering cell 6 and one padded cell. Padded cells never win a max and are not counted by the
//! average.

use super::padding::Padding;
use crate::backend::BackendStorage;
use crate::backprop::is_grad_enabled;
use crate::layout::Layout;
use crate::storage::{dispatch, Storage};
use crate::{Error, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Options of [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool2dOpts {
    /// Window `(height, width)`.
    pub kernel: (usize, usize),
    /// Step `(vertical, horizontal)`.
    pub stride: (usize, usize),
    /// Cells added around the input; padded cells never win a max and are not averaged.
    pub padding: Padding,
    /// Round the output size up (PyTorch's `ceil_mode`): a partial last window is kept when it
    /// starts inside the input or the top/left padding.
    pub ceil_mode: bool,
}

impl Default for Pool2dOpts {
    /// The ConvRNN pooling: 2×2, stride 2, TensorFlow "SAME" (7 → 4).
    fn default() -> Self {
        Pool2dOpts {
            kernel: (2, 2),
            stride: (2, 2),
            padding: Padding::Same,
            ceil_mode: false,
        }
    }
}

impl Pool2dOpts {
    /// A square `kernel × kernel` window moved by `stride` in both directions.
    pub fn new(kernel: usize, stride: usize, padding: Padding) -> Self {
        Pool2dOpts {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding,
            ceil_mode: false,
        }
    }

    /// The same options with `ceil_mode` (round the output size up).
    pub fn with_ceil_mode(self, ceil_mode: bool) -> Self {
        Pool2dOpts { ceil_mode, ..self }
    }
}

/// Output length of one dimension, after checking that every window holds at least one input
/// cell (each side's padding must be smaller than the window).
fn pool_dim(
    op: &'static str,
    axis: &str,
    len: usize,
    k: usize,
    s: usize,
    (before, after): (usize, usize),
    ceil_mode: bool,
) -> Result<usize> {
    if len == 0 {
        return Err(Error::invalid(op, format!("the input {axis} is 0")));
    }
    if before >= k || after >= k {
        return Err(Error::invalid(
            op,
            format!(
                "{axis} padding ({before} before, {after} after) must be smaller than the \
                 {k}-cell window, or some windows would hold only padding"
            ),
        ));
    }
    let padded = len + before + after;
    if padded < k {
        return Err(Error::invalid(
            op,
            format!(
                "the {k}-cell window is larger than the input {axis} {len} (padded: {padded}); \
                 use a smaller kernel or Padding::Same"
            ),
        ));
    }
    let span = padded - k;
    let mut out = if ceil_mode {
        span.div_ceil(s) + 1
    } else {
        span / s + 1
    };
    if ceil_mode && (out - 1) * s >= len + before {
        out -= 1;
    }
    Ok(out)
}

fn check_opts(op: &'static str, opts: &Pool2dOpts) -> Result<()> {
    let (kh, kw) = opts.kernel;
    let (sh, sw) = opts.stride;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err(Error::invalid(
            op,
            format!(
                "kernel and stride must be positive, got kernel {:?} and stride {:?}",
                opts.kernel, opts.stride
            ),
        ));
    }
    Ok(())
}

/// Output size and top/left padding for an input of `in_hw`.
fn resolve(
    op: &'static str,
    in_hw: (usize, usize),
    opts: &Pool2dOpts,
) -> Result<((usize, usize), (usize, usize))> {
    check_opts(op, opts)?;
    let (ph, pw) = opts
        .padding
        .resolve(in_hw, opts.kernel, opts.stride, (1, 1));
    let oh = pool_dim(
        op,
        "height",
        in_hw.0,
        opts.kernel.0,
        opts.stride.0,
        ph,
        opts.ceil_mode,
    )?;
    let ow = pool_dim(
        op,
        "width",
        in_hw.1,
        opts.kernel.1,
        opts.stride.1,
        pw,
        opts.ceil_mode,
    )?;
    Ok(((oh, ow), (ph.0, pw.0)))
}

/// The `(height, width)` a 2-D pooling with `opts` produces from an input of `in_hw`.
pub fn pool2d_output_size(in_hw: (usize, usize), opts: &Pool2dOpts) -> Result<(usize, usize)> {
    resolve("pool2d_output_size", in_hw, opts).map(|(o, _)| o)
}

/// The geometry of one 2-D pooling: `n·c` planes of `h × w` into `oh × ow`, windows of
/// `kh × kw` moved by `(sh, sw)`, offset by the top/left padding (the bottom/right padding only
/// decides the output size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Padding rows above the input (window `i` starts at input row `i·sh − pad_top`).
    pub pad_top: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
}

impl PoolGeom {
    /// The number of independent planes, `n·c`.
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    /// The input's shape `[n, c, h, w]`.
    pub fn in_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    /// The output's shape `[n, c, oh, ow]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.oh, self.ow]
    }
}

fn geometry(op: &'static str, shape: &Shape, opts: &Pool2dOpts) -> Result<PoolGeom> {
    let (n, c, h, w) = shape.dims4(op)?;
    let ((oh, ow), (pad_top, pad_left)) = resolve(op, (h, w), opts)?;
    Ok(PoolGeom {
        n,
        c,
        h,
        w,
        oh,
        ow,
        kh: opts.kernel.0,
        kw: opts.kernel.1,
        sh: opts.stride.0,
        sw: opts.stride.1,
        pad_top,
        pad_left,
    })
}

/// A plain tensor of `shape` on `like`'s device.
fn plain_tensor(s: Storage, shape: impl Into<Shape>, like: &Tensor) -> Tensor {
    Tensor::from_storage(s, shape.into(), Layout::Plain, like.device())
}

impl Tensor {
    /// Max pooling of an `[N, C, H, W]` tensor. Padded cells never win. The gradient goes to the
    /// winning cell of each window; on ties that is the first maximum in row-major window order.
    pub fn max_pool2d(&self, opts: &Pool2dOpts) -> Result<Tensor> {
        const OP: &str = "max_pool2d";
        let x = self.plain()?;
        let g = geometry(OP, x.shape(), opts)?;
        if g.h * g.w > u32::MAX as usize {
            return Err(Error::invalid(
                OP,
                format!("planes of {}×{} are too large to index", g.h, g.w),
            ));
        }
        // The argmax is only needed, and only kept, when a backward pass can happen. A backend
        // that keeps none (CUDA) recomputes the winners from the input and the output
        // (`ctx.inputs[0]`, `ctx.output`), which the tape keeps anyway.
        let track = is_grad_enabled() && x.tracks_grad();
        let (storage, argmax) = dispatch!(OP, (b = &*x.storage()) => {
            let (y, argmax) = b.max_pool2d(&g, track)?;
            Ok((Storage::from(y), argmax))
        })?;
        let out = plain_tensor(storage, g.out_shape(), &x);
        let argmax = Arc::new(argmax);
        Ok(out.with_history(OP, &[&x], move |ctx| {
            let gy = ctx.grad.plain()?;
            let (gs, xs, ys) = (gy.storage(), ctx.inputs[0].storage(), ctx.output.storage());
            let storage = dispatch!(OP, (b = &*gs, xb = &*xs, yb = &*ys) => {
                b.max_pool2d_backward(xb, yb, &argmax, &g).map(Storage::from)
            })?;
            Ok(vec![Some(plain_tensor(storage, g.in_shape(), &gy))])
        }))
    }

    /// Average pooling of an `[N, C, H, W]` tensor over the non-padded cells of each window
    /// (TensorFlow "SAME" semantics; PyTorch's `count_include_pad=False`).
    pub fn avg_pool2d(&self, opts: &Pool2dOpts) -> Result<Tensor> {
        const OP: &str = "avg_pool2d";
        let x = self.plain()?;
        let g = geometry(OP, x.shape(), opts)?;
        let storage = dispatch!(OP, (b = &*x.storage()) => b.avg_pool2d(&g).map(Storage::from))?;
        let out = plain_tensor(storage, g.out_shape(), &x);
        Ok(out.with_history(OP, &[&x], move |ctx| {
            let gy = ctx.grad.plain()?;
            let storage = dispatch!(OP, (b = &*gy.storage()) => {
                b.avg_pool2d_backward(&g).map(Storage::from)
            })?;
            Ok(vec![Some(plain_tensor(storage, g.in_shape(), &gy))])
        }))
    }

    /// The spatial mean of each channel: `[N, C, H, W] -> [N, C]`.
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        const OP: &str = "global_avg_pool";
        let x = self.plain()?;
        let (n, c, h, w) = x.shape().dims4(OP)?;
        if h * w == 0 {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: "a non-empty spatial extent".into(),
                got: x.shape().clone(),
            });
        }
        let (planes, hw) = (n * c, h * w);
        let storage = dispatch!(OP, (b = &*x.storage()) => {
            b.global_avg_pool(planes, hw).map(Storage::from)
        })?;
        let out = plain_tensor(storage, [n, c], &x);
        let in_shape = x.shape().clone();
        Ok(out.with_history(OP, &[&x], move |ctx| {
            let gy = ctx.grad.plain()?;
            let storage = dispatch!(OP, (b = &*gy.storage()) => {
                b.global_avg_pool_backward(planes, hw).map(Storage::from)
            })?;
            Ok(vec![Some(plain_tensor(storage, in_shape.clone(), &gy))])
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Rng};

    fn t(data: Vec<f32>, shape: impl Into<Shape>) -> Tensor {
        Tensor::from_vec(data, shape, Device::Cpu).unwrap()
    }

    /// Distinct values 0.05 apart in shuffled order: no ties, and no two values within the
    /// finite-difference step of each other, so max pooling is differentiable at the point.
    fn distinct(rng: &mut Rng, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        let n = shape.elem_count();
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
        for i in (1..n).rev() {
            v.swap(i, rng.below(i + 1));
        }
        t(v, shape)
    }

    /// A direct reference: visits every padded window position and skips padding.
    fn naive(x: &[f32], h: usize, w: usize, opts: &Pool2dOpts, max: bool) -> Vec<f32> {
        let ((oh, ow), _) = resolve("naive", (h, w), opts).unwrap();
        let ((pt, _), (pl, _)) = opts
            .padding
            .resolve((h, w), opts.kernel, opts.stride, (1, 1));
        let mut out = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                let mut vals = Vec::new();
                for ky in 0..opts.kernel.0 {
                    for kx in 0..opts.kernel.1 {
                        let y = (oy * opts.stride.0 + ky) as isize - pt as isize;
                        let xx = (ox * opts.stride.1 + kx) as isize - pl as isize;
                        if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                            vals.push(x[y as usize * w + xx as usize]);
                        }
                    }
                }
                out.push(if max {
                    vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
                } else {
                    vals.iter().sum::<f32>() / vals.len() as f32
                });
            }
        }
        out
    }

    fn paddings() -> Vec<Padding> {
        vec![
            Padding::Valid,
            Padding::Same,
            Padding::symmetric(1),
            Padding::Explicit {
                top: 1,
                bottom: 0,
                left: 0,
                right: 1,
            },
        ]
    }

    fn all_opts() -> Vec<Pool2dOpts> {
        let mut v = Vec::new();
        for kernel in [(2, 2), (3, 3), (2, 3)] {
            for stride in [(1, 1), (2, 2), (1, 2), (3, 2)] {
                for padding in paddings() {
                    for ceil_mode in [false, true] {
                        v.push(Pool2dOpts {
                            kernel,
                            stride,
                            padding,
                            ceil_mode,
                        });
                    }
                }
            }
        }
        v
    }

    #[test]
    fn output_sizes() {
        let o = |k, s, p, ceil| Pool2dOpts::new(k, s, p).with_ceil_mode(ceil);
        // TF "SAME" 2×2/2: 7 -> 4, 8 -> 4; also 3×3/2 on 7 -> 4.
        assert_eq!(
            pool2d_output_size((7, 8), &o(2, 2, Padding::Same, false)).unwrap(),
            (4, 4)
        );
        assert_eq!(
            pool2d_output_size((7, 7), &o(3, 2, Padding::Same, false)).unwrap(),
            (4, 4)
        );
        assert_eq!(
            pool2d_output_size((7, 7), &Pool2dOpts::default()).unwrap(),
            (4, 4)
        );
        // VALID floors, ceil_mode rounds up.
        assert_eq!(
            pool2d_output_size((7, 7), &o(2, 2, Padding::Valid, false)).unwrap(),
            (3, 3)
        );
        assert_eq!(
            pool2d_output_size((7, 7), &o(2, 2, Padding::Valid, true)).unwrap(),
            (4, 4)
        );
        // PyTorch drops a ceil-mode window that would start in the right padding:
        // 5 cells, pad 1+1, 2/2 -> ceil((7-2)/2)+1 = 4, but window 3 starts at padded cell 6.
        assert_eq!(
            pool2d_output_size((5, 5), &o(2, 2, Padding::symmetric(1), true)).unwrap(),
            (3, 3)
        );
        assert_eq!(
            pool2d_output_size((5, 5), &o(2, 2, Padding::symmetric(1), false)).unwrap(),
            (3, 3)
        );
        // ... and keeps one that starts inside: 6 cells, 3/2, no padding -> 3 (floor 2).
        assert_eq!(
            pool2d_output_size((6, 6), &o(3, 2, Padding::Valid, true)).unwrap(),
            (3, 3)
        );
        assert_eq!(
            pool2d_output_size((6, 6), &o(3, 2, Padding::Valid, false)).unwrap(),
            (2, 2)
        );
    }

    #[test]
    fn tf_same_7_to_4_windows() {
        // x[r][c] = 7r + c; SAME 2×2/2 windows are rows/cols {0,1}, {2,3}, {4,5}, {6}.
        let x = t((0..49).map(|v| v as f32).collect(), [1, 1, 7, 7]);
        let opts = Pool2dOpts::default();
        let m = x.max_pool2d(&opts).unwrap();
        assert_eq!(m.dims(), &[1, 1, 4, 4]);
        let m = m.to_vec().unwrap();
        assert_eq!(&m[..4], &[8., 10., 12., 13.]);
        assert_eq!(&m[12..], &[43., 45., 47., 48.]);
        let a = x.avg_pool2d(&opts).unwrap().to_vec().unwrap();
        // (0+1+7+8)/4, (6+13)/2, (42+43)/2, 48 alone.
        assert_eq!((a[0], a[3], a[12], a[15]), (4.0, 9.5, 42.5, 48.0));
        // SAME 3×3/2 pads one cell each side: first window rows/cols {0,1}, last {5,6}.
        let a3 = x
            .avg_pool2d(&Pool2dOpts::new(3, 2, Padding::Same))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(a3[0], (0. + 1. + 7. + 8.) / 4.);
        assert_eq!(a3[15], (40. + 41. + 47. + 48.) / 4.);
        assert_eq!(
            a3[5],
            (8. + 9. + 10. + 15. + 16. + 17. + 22. + 23. + 24.) / 9.
        );
    }

    #[test]
    fn forward_matches_naive_reference() {
        let mut rng = Rng::new(11);
        let x = rand_tensor(&mut rng, [2, 3, 5, 6]);
        let xs = x.to_vec().unwrap();
        for opts in all_opts() {
            for max in [true, false] {
                let y = if max {
                    x.max_pool2d(&opts)
                } else {
                    x.avg_pool2d(&opts)
                }
                .unwrap();
                let got = y.to_vec().unwrap();
                let plane = y.dims()[2] * y.dims()[3];
                for p in 0..6 {
                    let want = naive(&xs[p * 30..][..30], 5, 6, &opts, max);
                    for (a, b) in got[p * plane..][..plane].iter().zip(&want) {
                        assert!((a - b).abs() < 1e-5, "{opts:?} max={max}: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn parallel_path_matches_naive_reference() {
        // 2·8 planes of 48×48: above the kernels' one-thread threshold.
        let mut rng = Rng::new(15);
        let x = rand_tensor(&mut rng, [2, 8, 48, 48]);
        let xs = x.to_vec().unwrap();
        let opts = Pool2dOpts::new(3, 2, Padding::Same);
        for max in [true, false] {
            let y = if max {
                x.max_pool2d(&opts)
            } else {
                x.avg_pool2d(&opts)
            }
            .unwrap();
            assert_eq!(y.dims(), &[2, 8, 24, 24]);
            let got = y.to_vec().unwrap();
            for p in [0, 7, 15] {
                let want = naive(&xs[p * 2304..][..2304], 48, 48, &opts, max);
                for (a, b) in got[p * 576..][..576].iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "plane {p} max={max}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn gradients_for_every_option() {
        let mut rng = Rng::new(12);
        for opts in all_opts() {
            let x = distinct(&mut rng, [1, 2, 5, 6]);
            check_grad(std::slice::from_ref(&x), |v| v[0].max_pool2d(&opts))
                .unwrap_or_else(|e| panic!("max {opts:?}: {e}"));
            check_grad(&[x], |v| v[0].avg_pool2d(&opts))
                .unwrap_or_else(|e| panic!("avg {opts:?}: {e}"));
        }
    }

    #[test]
    fn max_gradient_goes_to_the_first_of_tied_maxima() {
        let x = t(vec![1., 5., 5., 2.], [1, 1, 2, 2]).into_variable();
        let y = x
            .max_pool2d(&Pool2dOpts::new(2, 2, Padding::Valid))
            .unwrap();
        let g = y.backward_with_grad(&y.ones_like().unwrap()).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0., 1., 0., 0.]);
    }

    #[test]
    fn blocked_input_is_pooled_in_plain_layout() {
        let mut rng = Rng::new(13);
        let x = distinct(&mut rng, [1, 16, 3, 3]);
        let opts = Pool2dOpts::default();
        let want = x.max_pool2d(&opts).unwrap().to_vec().unwrap();
        let xb = x.to_layout(Layout::Blocked16).unwrap();
        assert_eq!(xb.max_pool2d(&opts).unwrap().to_vec().unwrap(), want);
        check_grad(&[x], |v| {
            v[0].to_layout(Layout::Blocked16)?.avg_pool2d(&opts)
        })
        .unwrap();
    }

    #[test]
    fn no_argmax_is_kept_without_grad() {
        let x = t(vec![1., 2., 3., 4.], [1, 1, 2, 2]);
        let y = x
            .max_pool2d(&Pool2dOpts::new(2, 2, Padding::Valid))
            .unwrap();
        assert!(!y.tracks_grad());
        assert_eq!(y.to_vec().unwrap(), vec![4.]);
    }

    #[test]
    fn global_average() {
        let x = t((0..12).map(|v| v as f32).collect(), [2, 3, 2, 1]);
        let y = x.global_avg_pool().unwrap();
        assert_eq!(y.dims(), &[2, 3]);
        assert_eq!(y.to_vec().unwrap(), vec![0.5, 2.5, 4.5, 6.5, 8.5, 10.5]);
        let mut rng = Rng::new(14);
        check_grad(&[rand_tensor(&mut rng, [2, 3, 4, 5])], |v| {
            v[0].global_avg_pool()
        })
        .unwrap();
    }

    #[test]
    fn errors_are_clear() {
        let x = Tensor::zeros([1, 1, 2, 2], Device::Cpu).unwrap();
        let e = x
            .max_pool2d(&Pool2dOpts::new(3, 1, Padding::Valid))
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("max_pool2d") && s.contains("larger than the input"),
            "{s}"
        );
        // Same padding always fits.
        assert_eq!(
            x.max_pool2d(&Pool2dOpts::new(3, 1, Padding::Same))
                .unwrap()
                .dims(),
            &[1, 1, 2, 2]
        );
        let e = x
            .avg_pool2d(&Pool2dOpts::new(2, 0, Padding::Valid))
            .unwrap_err();
        assert!(e.to_string().contains("stride"), "{e}");
        let e = x
            .avg_pool2d(&Pool2dOpts::new(2, 1, Padding::symmetric(2)))
            .unwrap_err();
        assert!(e.to_string().contains("only padding"), "{e}");
        let e = Tensor::zeros([2, 2], Device::Cpu)
            .unwrap()
            .global_avg_pool()
            .unwrap_err();
        assert!(e.to_string().contains("rank-4"), "{e}");
        let e = Tensor::zeros([1, 1, 0, 3], Device::Cpu)
            .unwrap()
            .max_pool2d(&Pool2dOpts::default())
            .unwrap_err();
        assert!(e.to_string().contains("height is 0"), "{e}");
    }
}
