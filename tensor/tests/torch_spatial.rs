//! Pooling and bilinear resizing against PyTorch (CPU): forward values and input gradients.
//! Fixtures come from tests/fixtures/make_spatial_fixtures.py.
#![allow(clippy::unwrap_used)]

use serde::Deserialize;
use std::collections::HashMap;
use tensor::ops::{Padding, Pool2dOpts};
use tensor::{Device, Layout, Tensor};

const TOL: f32 = 1e-5;

#[derive(Deserialize)]
struct Input {
    shape: Vec<usize>,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct PoolCase {
    name: String,
    op: String,
    input: String,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
    ceil_mode: bool,
    output_shape: Vec<usize>,
    output: Vec<f32>,
    grad_input: Vec<f32>,
}

#[derive(Deserialize)]
struct ResizeCase {
    name: String,
    input: String,
    out_hw: [usize; 2],
    align_corners: bool,
    output: Vec<f32>,
    grad_input: Vec<f32>,
}

#[derive(Deserialize)]
struct Fixture<C> {
    inputs: HashMap<String, Input>,
    cases: Vec<C>,
}

/// The weights the script used: the loss is sum(out * w).
fn weights(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL,
            "{what}, element {i}: got {g}, PyTorch {w}"
        );
    }
}

/// Runs `f` on the input as a variable and returns the output values and the input gradient of
/// sum(out * w).
fn forward_backward(
    input: &Input,
    layout: Layout,
    f: impl Fn(&Tensor) -> tensor::Result<Tensor>,
) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
    let x = Tensor::from_vec(input.data.clone(), input.shape.clone(), Device::Cpu)
        .unwrap()
        .into_variable();
    let y = f(&x.to_layout(layout).unwrap()).unwrap();
    let w = Tensor::from_vec(weights(y.elem_count()), y.shape().clone(), Device::Cpu).unwrap();
    let grads = y.backward_with_grad(&w).unwrap();
    (
        y.dims().to_vec(),
        y.to_vec().unwrap(),
        grads.get(&x).unwrap().to_vec().unwrap(),
    )
}

#[test]
fn pooling_matches_pytorch() {
    let fx: Fixture<PoolCase> = serde_json::from_str(include_str!("fixtures/pool.json")).unwrap();
    assert_eq!(fx.cases.len(), 64);
    for c in &fx.cases {
        let [top, bottom, left, right] = c.padding;
        let opts = Pool2dOpts {
            kernel: (c.kernel[0], c.kernel[1]),
            stride: (c.stride[0], c.stride[1]),
            padding: Padding::Explicit {
                top,
                bottom,
                left,
                right,
            },
            ceil_mode: c.ceil_mode,
        };
        let (dims, out, grad) = forward_backward(&fx.inputs[&c.input], Layout::Plain, |x| match c
            .op
            .as_str()
        {
            "max" => x.max_pool2d(&opts),
            _ => x.avg_pool2d(&opts),
        });
        assert_eq!(dims, c.output_shape, "{}: output shape", c.name);
        assert_eq!(
            tensor::ops::pool2d_output_size(
                (fx.inputs[&c.input].shape[2], fx.inputs[&c.input].shape[3]),
                &opts
            )
            .unwrap(),
            (c.output_shape[2], c.output_shape[3]),
            "{}: pool2d_output_size",
            c.name
        );
        assert_close(&format!("{} output", c.name), &out, &c.output);
        assert_close(&format!("{} input gradient", c.name), &grad, &c.grad_input);
    }
}

#[test]
fn resize_matches_pytorch() {
    let fx: Fixture<ResizeCase> =
        serde_json::from_str(include_str!("fixtures/resize.json")).unwrap();
    assert!(fx.cases.len() >= 20);
    for c in &fx.cases {
        let [oh, ow] = c.out_hw;
        let (dims, out, grad) = forward_backward(&fx.inputs[&c.input], Layout::Plain, |x| {
            x.resize_bilinear(oh, ow, c.align_corners)
        });
        assert_eq!(&dims[2..], &[oh, ow], "{}: output shape", c.name);
        assert_close(&format!("{} output", c.name), &out, &c.output);
        assert_close(&format!("{} input gradient", c.name), &grad, &c.grad_input);
    }
}
