//! Data-parallel training written once for any number of processes: each rank holds a shard of
//! a least-squares problem, rank 0's initial weights are broadcast to all, and every step the
//! ranks' gradient sums and example counts are all-reduced, so each rank takes the same step the
//! whole data set would give one process.
//!
//! ```text
//! cargo run -p collective --example data_parallel                 # one process (Single)
//! cargo run -p collective --example data_parallel -- --threads 3  # 3 ranks over TCP, as threads
//! cargo build --release -p collective --example data_parallel
//! mpiexec -n 2 target/release/examples/data_parallel              # 2 processes over MPI
//! RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 target/release/examples/data_parallel &
//! RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 target/release/examples/data_parallel
//! ```
//!
//! Whatever the launch, the weights printed at the end are the same (up to rounding: the sums
//! are added in another order).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use collective::tcp::{TcpComm, JOB_VAR};
use collective::{
    connect, Collective, CollectiveExt, Launch, Launcher, Options, ReduceOp, Rendezvous,
};
use tensor::Rng;

/// The weights the data is made from.
const TRUE_W: [f32; 3] = [1.0, -2.0, 0.5];
/// Examples in the whole data set.
const EXAMPLES: usize = 96;

/// Example `i` of the data set: three features and a target `x·TRUE_W` plus a little noise. A
/// function of `i` alone, so a rank makes its own shard without any file.
fn example(i: usize) -> ([f32; 3], f32) {
    let mut rng = Rng::new(i as u64);
    let x = [0; 3].map(|_| rng.normal() as f32);
    let y = x.iter().zip(TRUE_W).map(|(a, w)| a * w).sum::<f32>() + 0.01 * rng.normal() as f32;
    (x, y)
}

/// Gradient descent on the mean squared error over every rank's examples; returns the final
/// weights and mean squared error.
fn train(comm: &dyn Collective, steps: usize) -> collective::Result<([f32; 3], f64)> {
    let (rank, world) = (comm.rank(), comm.world_size());
    // Rank r holds examples r, r + world, r + 2·world, ...
    let shard: Vec<([f32; 3], f32)> = (rank..EXAMPLES).step_by(world).map(example).collect();

    // Only rank 0's initialisation counts; the others receive it.
    let mut w = if rank == 0 {
        let mut rng = Rng::new(42);
        [0; 3].map(|_| rng.normal() as f32)
    } else {
        [0.0; 3]
    };
    comm.broadcast_f32(&mut w, 0)?;

    let mut mse = 0.0;
    for step in 0..steps {
        // The gradient's sum over this shard, and this shard's squared error and size.
        let mut grad = [0f32; 3];
        let mut totals = [0f64; 2];
        for (x, y) in &shard {
            let err = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() - y;
            for (g, a) in grad.iter_mut().zip(x) {
                *g += 2.0 * err * a;
            }
            totals[0] += f64::from(err * err);
            totals[1] += 1.0;
        }
        comm.all_reduce_f32(&mut grad, ReduceOp::Sum)?;
        comm.all_reduce_f64(&mut totals, ReduceOp::Sum)?;
        mse = totals[0] / totals[1];
        for (wi, g) in w.iter_mut().zip(grad) {
            *wi -= 0.1 * g / totals[1] as f32;
        }
        if comm.is_root() && step % 10 == 0 {
            println!(
                "step {step:>2}: mean squared error {mse:.5} over {} ranks",
                world
            );
        }
    }
    comm.barrier()?;
    Ok((w, mse))
}

/// `world` ranks as threads of this process, joined over TCP on the loopback interface (rank 0
/// listens on a free port); each runs [`train`]. Returns every rank's result.
fn on_threads(world: usize, steps: usize) -> collective::Result<Vec<([f32; 3], f64)>> {
    let timeout = Duration::from_secs(60);
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|e| collective::Error::Rendezvous {
            addr: "127.0.0.1:0".into(),
            detail: e.to_string(),
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let launch = |rank| Launch {
        launcher: Launcher::Torchrun,
        rank,
        world_size: world,
        local_rank: Some(rank),
        local_world_size: Some(world),
        rendezvous: Some(Rendezvous {
            host: "127.0.0.1".into(),
            port,
        }),
        mpi_job: false,
    };
    std::thread::scope(|s| {
        let others: Vec<_> = (1..world)
            .map(|rank| {
                let launch = launch(rank);
                s.spawn(move || train(&TcpComm::connect(&launch, timeout)?, steps))
            })
            .collect();
        // `TcpComm::connect` on rank 0 would bind MASTER_PORT itself; the socket is bound already.
        let token = std::env::var(JOB_VAR).unwrap_or_default();
        let root = TcpComm::serve(
            listener,
            &launch(0),
            &token,
            Instant::now() + timeout,
            timeout,
            &format!("127.0.0.1:{port}"),
        )
        .and_then(|comm| train(&comm, steps));
        let mut all = vec![root?];
        for h in others {
            all.push(h.join().map_err(|_| collective::Error::Invalid {
                op: "thread",
                msg: "a rank's thread panicked".into(),
            })??);
        }
        Ok(all)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let results = match args.as_slice() {
        [flag, n] if flag == "--threads" => on_threads(n.parse()?, 40)?,
        [] => {
            // Whatever launched this process: mpiexec, srun, torchrun-style variables, or nothing.
            let launch = Launch::from_env()?;
            let comm = connect(&launch, &Options::from_env()?)?;
            println!(
                "rank {} of {} ({})",
                comm.rank(),
                comm.world_size(),
                launch.launcher
            );
            vec![train(comm.as_ref(), 40)?]
        }
        _ => return Err("usage: data_parallel [--threads N]".into()),
    };
    for (w, mse) in &results {
        println!("weights {w:.4?} (made from {TRUE_W:?}), mean squared error {mse:.2e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml): one process and
    /// three ranks over TCP reach the same weights, close to those the data was made from.
    #[test]
    fn runs() -> collective::Result<()> {
        let (alone, _) = train(&collective::Single, 40)?;
        let ranks = on_threads(3, 40)?;
        assert_eq!(ranks.len(), 3);
        for (w, mse) in ranks {
            for ((a, b), t) in w.iter().zip(alone).zip(TRUE_W) {
                assert!((a - b).abs() < 1e-4, "{w:?} vs {alone:?}");
                assert!((a - t).abs() < 0.05, "{w:?} vs {TRUE_W:?}");
            }
            assert!(mse < 1e-2, "{mse}");
        }
        Ok(())
    }
}
