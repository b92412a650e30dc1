//! Reproducible randomness for an experiment: one seed on the command line decides every random
//! number of the run, whatever the platform, the thread count or the dependency versions.
//!
//! - the data order of each epoch comes from its own generator, seeded by the run's seed and the
//!   epoch, so epoch 3 is shuffled the same way whether or not epochs 1 and 2 ran in this process;
//! - each worker [`fork`](Rng::fork)s an independent stream, so work can be split among threads
//!   in any order and gives the same numbers;
//! - a generator's state is one `u64` that serialises (serde), so a run saved mid-stream
//!   continues exactly where it stopped.
//!
//! `cargo run -p seeded-rng --example reproducible_streams [SEED]` (default 7).

use seeded_rng::Rng;

/// The order in which an epoch visits `n` samples: a function of the run's seed and the epoch
/// alone.
fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    // Mixing through one draw keeps neighbouring (seed, epoch) pairs from giving related streams.
    let mut rng = Rng::new(Rng::new(seed).next_u64() ^ epoch);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order
}

/// Weight initialisation split over `workers` threads, one forked stream per layer: the same
/// weights for any number of workers.
fn init_layers(seed: u64, layers: usize, per_layer: usize, workers: usize) -> Vec<Vec<f64>> {
    let mut root = Rng::new(seed);
    let streams: Vec<Rng> = (0..layers).map(|_| root.fork()).collect();
    let mut out = vec![Vec::new(); layers];
    std::thread::scope(|s| {
        let chunk = layers.div_ceil(workers.max(1));
        for (outs, rngs) in out.chunks_mut(chunk).zip(streams.chunks(chunk)) {
            s.spawn(move || {
                for (o, rng) in outs.iter_mut().zip(rngs) {
                    let mut rng = rng.clone();
                    *o = (0..per_layer)
                        .map(|_| 0.1 * rng.truncated_normal())
                        .collect();
                }
            });
        }
    });
    out
}

/// What one seed gives: the first epochs' orders, initial weights and a resumed stream.
#[derive(Debug, PartialEq)]
struct Run {
    orders: Vec<Vec<usize>>,
    weights: Vec<Vec<f64>>,
    resumed: Vec<u64>,
}

fn run(seed: u64) -> Result<Run, serde_json::Error> {
    let orders: Vec<Vec<usize>> = (0..3).map(|e| epoch_order(seed, e, 8)).collect();
    for (e, o) in orders.iter().enumerate() {
        println!("epoch {e}: data order {o:?}");
    }

    let weights = init_layers(seed, 4, 3, 1);
    assert_eq!(
        weights,
        init_layers(seed, 4, 3, 3),
        "the split over workers changes nothing"
    );
    for (i, w) in weights.iter().enumerate() {
        println!("layer {i}: initial weights {w:.4?}");
    }

    // A stream saved half-way (with the rest of a checkpoint) and continued after a restart.
    let mut rng = Rng::new(seed);
    let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
    let saved = serde_json::to_string(&rng)?;
    let uninterrupted: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
    let mut restored: Rng = serde_json::from_str(&saved)?;
    let resumed: Vec<u64> = (0..3).map(|_| restored.next_u64()).collect();
    assert_eq!(
        resumed, uninterrupted,
        "a restored stream goes on unchanged"
    );
    println!("saved state {saved}; draws {first:x?} then, after restoring, {resumed:x?}");

    Ok(Run {
        orders,
        weights,
        resumed,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = std::env::args().nth(1).map_or(Ok(7), |s| s.parse())?;
    run(seed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml): a seed gives the
    /// same run twice, another seed another run, and every epoch is a permutation.
    #[test]
    fn runs() -> Result<(), serde_json::Error> {
        let a = run(7)?;
        assert_eq!(a, run(7)?);
        assert_ne!(a, run(8)?);
        for order in &a.orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        }
        assert_ne!(a.orders[0], a.orders[1], "each epoch has its own order");
        Ok(())
    }
}
