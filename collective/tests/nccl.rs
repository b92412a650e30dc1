//! NCCL with a world of one on `cuda:0`: loading, the unique id over the TCP bootstrap, the
//! communicator, all-reduce and broadcast on device memory, host collectives beside them, and
//! the time of an all-reduce of rgc_shallow's gradient size. Built only with `--features cuda`;
//! skipped with a message where no GPU is usable. `scripts/gpu-check.sh` runs it.
#![cfg(feature = "cuda")]
#![allow(clippy::unwrap_used)]

use collective::{Backend, BackendChoice, CollectiveExt, Launch, Options, ReduceOp};
use tensor::{Device, Tensor};

#[test]
fn a_world_of_one_reduces_and_broadcasts_on_the_device() {
    if let Err(e) = tensor::cuda::probe(0) {
        println!("skipped: no CUDA device ({e})");
        return;
    }
    let opts = Options {
        backend: BackendChoice::Nccl,
        device: Device::Cuda(0),
        ..Options::default()
    };
    let comm = collective::connect(&Launch::single(), &opts).unwrap();
    assert_eq!(comm.backend(), Backend::Nccl);
    assert_eq!(
        (comm.rank(), comm.world_size(), comm.local_rank()),
        (0, 1, 0)
    );

    let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
    let t = Tensor::from_vec(values.clone(), [10, 100], Device::Cuda(0)).unwrap();
    for op in [
        ReduceOp::Sum,
        ReduceOp::Average,
        ReduceOp::Max,
        ReduceOp::Min,
    ] {
        comm.all_reduce_tensor(&t, op).unwrap();
        assert_eq!(t.to_vec().unwrap(), values, "{op:?} over one rank");
    }
    comm.broadcast_tensor(&t, 0).unwrap();
    assert_eq!(t.to_vec().unwrap(), values);
    assert!(
        comm.broadcast_tensor(&t, 1).is_err(),
        "rank 1 does not exist"
    );
    // Host buffers and CPU tensors go through the bootstrap communicator.
    let mut host = [1.5f64, 2.5];
    comm.all_reduce_f64(&mut host, ReduceOp::Sum).unwrap();
    assert_eq!(host, [1.5, 2.5]);
    let cpu = Tensor::from_vec(vec![3.0, 4.0], [2], Device::Cpu).unwrap();
    comm.all_reduce_tensor(&cpu, ReduceOp::Average).unwrap();
    assert_eq!(cpu.to_vec().unwrap(), [3.0, 4.0]);
    comm.barrier().unwrap();

    // rgc_shallow's 23,962,984 parameters as one buffer: what a step's gradient exchange costs
    // on this card with one rank (NCCL still runs its kernel).
    let n = 23_962_984;
    let big = Tensor::zeros([n], Device::Cuda(0)).unwrap();
    comm.all_reduce_tensor(&big, ReduceOp::Average).unwrap();
    let t0 = std::time::Instant::now();
    let reps = 10;
    for _ in 0..reps {
        comm.all_reduce_tensor(&big, ReduceOp::Average).unwrap();
    }
    let each = t0.elapsed().as_secs_f64() / reps as f64;
    println!(
        "NCCL all-reduce of {n} floats, one rank: {:.3} ms ({:.1} GB/s through the buffer)",
        each * 1e3,
        n as f64 * 4.0 / each / 1e9
    );
}
