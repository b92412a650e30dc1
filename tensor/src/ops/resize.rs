//! Bilinear resizing of NCHW tensors, with the semantics of
//! `torch.nn.functional.interpolate(mode="bilinear", align_corners=...)` (no antialiasing).

use crate::backend::BackendStorage;
use crate::layout::Layout;
use crate::storage::{dispatch, Storage};
use crate::{Error, Result, Shape, Tensor};

impl Tensor {
    /// Resizes the spatial dimensions of an `[N, C, H, W]` tensor to `out_h × out_w` by bilinear
    /// interpolation.
    ///
    /// `align_corners = true` maps the corner cells onto each other: `src = dst·(in-1)/(out-1)`
    /// (0 when `out == 1`). `false` uses the half-pixel mapping `src = (dst+0.5)·in/out - 0.5`,
    /// clamped at 0. Both match PyTorch; the ConvRNN input combination uses `true`.
    pub fn resize_bilinear(
        &self,
        out_h: usize,
        out_w: usize,
        align_corners: bool,
    ) -> Result<Tensor> {
        const OP: &str = "resize_bilinear";
        let x = self.plain()?;
        let (n, c, h, w) = x.shape().dims4(OP)?;
        if out_h == 0 || out_w == 0 {
            return Err(Error::invalid(
                OP,
                format!("the output size must be positive, got {out_h}×{out_w}"),
            ));
        }
        if h == 0 || w == 0 {
            return Err(Error::ShapeMismatch {
                op: OP,
                expected: "an input with a non-empty spatial extent".into(),
                got: x.shape().clone(),
            });
        }
        if (out_h, out_w) == (h, w) {
            // Both mappings are the identity at equal sizes.
            return Ok(x);
        }
        let (x_shape, out_hw) = ([n, c, h, w], (out_h, out_w));
        let storage = dispatch!(OP, (b = &*x.storage()) => {
            b.resize_bilinear(x_shape, out_hw, align_corners)
                .map(Storage::from)
        })?;
        let out = Tensor::from_storage(
            storage,
            Shape::from([n, c, out_h, out_w]),
            Layout::Plain,
            x.device(),
        );
        let in_shape = x.shape().clone();
        Ok(out.with_history(OP, &[&x], move |ctx| {
            let gy = ctx.grad.plain()?;
            let storage = dispatch!(OP, (b = &*gy.storage()) => {
                b.resize_bilinear_backward(x_shape, out_hw, align_corners)
                    .map(Storage::from)
            })?;
            Ok(vec![Some(Tensor::from_storage(
                storage,
                in_shape.clone(),
                Layout::Plain,
                gy.device(),
            ))])
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, rand_tensor};
    use crate::{Device, Layout, Rng, Tensor};

    fn t(data: Vec<f32>, shape: [usize; 4]) -> Tensor {
        Tensor::from_vec(data, shape, Device::Cpu).unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn align_corners_2x2_to_3x3() {
        let x = t(vec![0., 1., 2., 3.], [1, 1, 2, 2]);
        let y = x.resize_bilinear(3, 3, true).unwrap();
        assert_eq!(y.dims(), &[1, 1, 3, 3]);
        close(
            &y.to_vec().unwrap(),
            &[0., 0.5, 1., 1., 1.5, 2., 2., 2.5, 3.],
        );
    }

    #[test]
    fn half_pixel_up_and_down() {
        // Row [0, 1] to 4 columns: positions 0 (clamped), 0.25, 0.75, 1 (clamped).
        let x = t(vec![0., 1.], [1, 1, 1, 2]);
        close(
            &x.resize_bilinear(1, 4, false).unwrap().to_vec().unwrap(),
            &[0., 0.25, 0.75, 1.],
        );
        // 4 -> 2 averages neighbouring pairs (positions 0.5 and 2.5).
        let x = t(vec![1., 3., 10., 20.], [1, 1, 1, 4]);
        close(
            &x.resize_bilinear(1, 2, false).unwrap().to_vec().unwrap(),
            &[2., 15.],
        );
        // The same with align_corners samples positions 0 and 3.
        close(
            &x.resize_bilinear(1, 2, true).unwrap().to_vec().unwrap(),
            &[1., 20.],
        );
        // A single output with align_corners is the top-left cell.
        close(
            &x.resize_bilinear(1, 1, true).unwrap().to_vec().unwrap(),
            &[1.],
        );
    }

    #[test]
    fn equal_size_is_the_identity() {
        let mut rng = Rng::new(20);
        let x = rand_tensor(&mut rng, [1, 2, 3, 4]);
        for ac in [false, true] {
            assert_eq!(
                x.resize_bilinear(3, 4, ac).unwrap().to_vec().unwrap(),
                x.to_vec().unwrap()
            );
        }
        check_grad(&[x], |v| v[0].resize_bilinear(3, 4, false)).unwrap();
    }

    #[test]
    fn gradients_up_down_and_both_mappings() {
        let mut rng = Rng::new(21);
        let cases: [([usize; 4], (usize, usize)); 6] = [
            ([1, 2, 3, 4], (5, 7)),
            ([2, 1, 5, 7], (2, 3)),
            ([1, 2, 3, 5], (6, 2)),
            ([1, 1, 4, 4], (1, 1)),
            ([1, 1, 1, 1], (3, 3)),
            ([1, 1, 2, 6], (7, 3)),
        ];
        for (shape, (oh, ow)) in cases {
            for ac in [false, true] {
                let x = rand_tensor(&mut rng, shape);
                check_grad(&[x], |v| v[0].resize_bilinear(oh, ow, ac))
                    .unwrap_or_else(|e| panic!("{shape:?} -> {oh}x{ow} ac={ac}: {e}"));
            }
        }
    }

    #[test]
    fn backward_is_the_adjoint_on_larger_planes() {
        // <R x, y> = <x, Rᵀ y> on planes big enough for the parallel path.
        let mut rng = Rng::new(22);
        for ac in [false, true] {
            let x = rand_tensor(&mut rng, [2, 3, 40, 50]).into_variable();
            let y = x.resize_bilinear(61, 23, ac).unwrap();
            let r = rand_tensor(&mut rng, [2, 3, 61, 23]);
            let g = y.backward_with_grad(&r).unwrap();
            let lhs: f64 = y
                .to_vec()
                .unwrap()
                .iter()
                .zip(r.to_vec().unwrap())
                .map(|(a, b)| *a as f64 * b as f64)
                .sum();
            let rhs: f64 = x
                .to_vec()
                .unwrap()
                .iter()
                .zip(g.get(&x).unwrap().to_vec().unwrap())
                .map(|(a, b)| *a as f64 * b as f64)
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn blocked_input_works() {
        let mut rng = Rng::new(23);
        let x = rand_tensor(&mut rng, [1, 16, 3, 3]);
        let want = x.resize_bilinear(5, 4, true).unwrap().to_vec().unwrap();
        let got = x
            .to_layout(Layout::Blocked16)
            .unwrap()
            .resize_bilinear(5, 4, true)
            .unwrap();
        assert_eq!(got.layout(), Layout::Plain);
        assert_eq!(got.to_vec().unwrap(), want);
    }

    #[test]
    fn errors() {
        let x = Tensor::zeros([1, 1, 2, 2], Device::Cpu).unwrap();
        let e = x.resize_bilinear(0, 3, true).unwrap_err();
        assert!(
            e.to_string().contains("resize_bilinear") && e.to_string().contains("0×3"),
            "{e}"
        );
        let e = Tensor::zeros([2, 2], Device::Cpu)
            .unwrap()
            .resize_bilinear(3, 3, false)
            .unwrap_err();
        assert!(e.to_string().contains("rank-4"), "{e}");
        let e = Tensor::zeros([1, 1, 0, 2], Device::Cpu)
            .unwrap()
            .resize_bilinear(3, 3, false)
            .unwrap_err();
        assert!(e.to_string().contains("non-empty"), "{e}");
    }
}
