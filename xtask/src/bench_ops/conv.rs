//! The conv2d cases (dense, strided, depthwise, pointwise) of `benches/ops_shapes.json`.

use super::{measure, random_variable, Case, Measured, Timing};
use anyhow::{bail, Result};
use tensor::ops::{Conv2dOpts, Padding};
use tensor::{Device, Rng};

pub fn run(case: &Case, device: Device, timing: Timing) -> Result<Measured> {
    let mut rng = Rng::new(11);
    match case {
        Case::Conv2d {
            n,
            c,
            h,
            w,
            o,
            kernel,
            stride,
            padding,
            groups,
            ..
        } => {
            let x = random_variable(&mut rng, &[*n, *c, *h, *w], device, |v| v)?;
            // Variance-scaled weights keep the outputs of order one.
            let fan_in = (c / groups * kernel[0] * kernel[1]) as f32;
            let scale = fan_in.sqrt().recip();
            let wt = random_variable(
                &mut rng,
                &[*o, c / groups, kernel[0], kernel[1]],
                device,
                |v| v * scale,
            )?;
            let b = random_variable(&mut rng, &[*o], device, |v| v * 0.1)?;
            let opts = Conv2dOpts {
                stride: (stride[0], stride[1]),
                padding: Padding::Explicit {
                    top: padding[0],
                    bottom: padding[1],
                    left: padding[2],
                    right: padding[3],
                },
                dilation: (1, 1),
                groups: *groups,
            };
            measure(
                &[x, wt, b],
                |t| t[0].conv2d(&t[1], Some(&t[2]), &opts),
                device,
                timing,
            )
        }
        _ => bail!("`{}` is not a conv2d case", case.name()),
    }
}
