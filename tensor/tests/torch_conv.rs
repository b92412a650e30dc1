//! conv2d forward values against PyTorch (fixtures from tests/fixtures/make_conv_fixtures.py).
#![allow(clippy::unwrap_used)]

use serde::Deserialize;
use tensor::ops::{Conv2dOpts, Padding};
use tensor::{Device, Layout, Tensor};

#[derive(Deserialize)]
struct Case {
    name: String,
    padding_kind: String,
    input_shape: Vec<usize>,
    weight_shape: Vec<usize>,
    stride: [usize; 2],
    padding: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
    input: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    output_shape: Vec<usize>,
    output: Vec<f32>,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn padding_of(c: &Case) -> Padding {
    let [top, bottom, left, right] = c.padding;
    match c.padding_kind.as_str() {
        // TF "SAME": our Same must reproduce the explicit asymmetric amounts the script computed.
        "same" => Padding::Same,
        "valid" => Padding::Valid,
        _ => Padding::Explicit {
            top,
            bottom,
            left,
            right,
        },
    }
}

fn run(c: &Case, layout: Layout) -> Vec<f32> {
    let x = Tensor::from_vec(c.input.clone(), c.input_shape.clone(), Device::Cpu).unwrap();
    let x = if Tensor::can_block(x.shape()) {
        x.to_layout(layout).unwrap()
    } else {
        x
    };
    let w = Tensor::from_vec(c.weight.clone(), c.weight_shape.clone(), Device::Cpu).unwrap();
    let b = c
        .bias
        .as_ref()
        .map(|b| Tensor::from_vec(b.clone(), [b.len()], Device::Cpu).unwrap());
    let opts = Conv2dOpts {
        stride: (c.stride[0], c.stride[1]),
        padding: padding_of(c),
        dilation: (c.dilation[0], c.dilation[1]),
        groups: c.groups,
    };
    let y = x.conv2d(&w, b.as_ref(), &opts).unwrap();
    assert_eq!(
        y.dims(),
        c.output_shape.as_slice(),
        "{}: output shape",
        c.name
    );
    y.to_vec().unwrap()
}

#[test]
fn conv2d_matches_pytorch() {
    let fx: Fixture = serde_json::from_str(include_str!("fixtures/conv.json")).unwrap();
    assert!(fx.cases.len() >= 10);
    for c in &fx.cases {
        for layout in [Layout::Plain, Layout::Blocked16] {
            let got = run(c, layout);
            for (i, (g, w)) in got.iter().zip(&c.output).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
                    "{} ({layout:?}) element {i}: got {g}, PyTorch {w}",
                    c.name
                );
            }
        }
    }
}
