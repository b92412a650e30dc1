//! Memory behaviour of the tape. The counters are per process, so this binary holds one test.
#![allow(clippy::unwrap_used)]

use tensor::{memory, no_grad, Device, Tensor};

const N: usize = 1 << 16; // 256 KiB per tensor

fn chain(x: &Tensor, steps: usize) -> Tensor {
    let mut h = x.clone();
    for _ in 0..steps {
        h = h.mul(x).unwrap().tanh().unwrap().add(x).unwrap();
    }
    h
}

#[test]
fn no_grad_chains_stay_flat_and_tapes_are_released() {
    let x = Tensor::full(0.5, [N], Device::Cpu).unwrap().into_variable();

    // 1. Under no-grad, a long chain keeps only the current intermediates alive.
    let before = memory::cpu_live_bytes();
    memory::reset_cpu_peak();
    {
        let _g = no_grad();
        let y = chain(&x, 200);
        assert!(!y.tracks_grad());
        drop(y);
    }
    let peak = memory::cpu_peak_bytes() - before;
    assert!(
        peak <= 4 * N * 4,
        "no-grad chain of 600 ops peaked at {peak} bytes above baseline; expected ≤ 4 tensors"
    );

    // 2. With gradients, the tape holds the intermediates (it must, for backward) ...
    let base = memory::cpu_live_bytes();
    let y = chain(&x, 50).sum_to(&tensor::Shape::from([1])).unwrap();
    let held = memory::cpu_live_bytes() - base;
    assert!(
        held >= 50 * N * 4,
        "the tape should hold the saved activations, held {held}"
    );
    // ... and everything is released once the graph and gradients are dropped.
    let grads = y.backward().unwrap();
    assert!(grads.get(&x).is_some());
    drop(grads);
    drop(y);
    let after = memory::cpu_live_bytes();
    assert_eq!(
        after,
        base,
        "the tape of 50 steps leaked {} bytes",
        after as i64 - base as i64
    );
}
