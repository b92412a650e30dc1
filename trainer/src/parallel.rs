//! Data parallelism: what [`crate::fit()`] does differently when several ranks train one model.
//!
//! Every rank holds a full copy of the model and the optimiser. Rank 0 decides how the run
//! starts (fresh, or resumed from its latest checkpoint) and sends the others its start record
//! and its parameters (and, when resuming, the optimiser's state), so all copies start equal.
//! Each rank then trains on its own shard of every global batch (`datasets::Shard`); per step
//! the ranks first sum the step's statistics — loss, hits, images, a non-finite-loss flag, a stop
//! request, which parameters got a gradient — so that a non-finite loss or a Ctrl-C on any rank
//! stops every rank at the same step, then average their gradients in buckets of at most
//! [`BUCKET_ELEMS`] values. With equal gradients and equal optimiser states the copies stay equal
//! without ever sending parameters again. Evaluation is sharded
//! ([`crate::evaluate::evaluate_on`]); rank 0 alone writes files.
//!
//! Why the gradient exchange is not overlapped with the backward pass: a parameter's gradient
//! is final only when the backward walk has passed its earliest use, and a ConvRNN uses every
//! area's weights at every time step, so all but the readout's gradients become final in the
//! last steps of the walk (the unroll's step 0 is processed last). A hook in
//! `tensor::backprop` could start the readout's bucket early, but that is a few percent of the
//! parameters; the exchange itself is small next to a ConvRNN step (BENCHMARKS.md).

use crate::checkpoint::{Checkpoint, NamedTensors, Progress};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use collective::{Collective, CollectiveExt, ReduceOp};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tensor::{Gradients, ParamStore, Tensor};

/// Most values averaged in one collective (16 MiB of f32): large enough that per-call latency
/// does not matter, small enough that the flattened copy stays modest beside the model.
pub const BUCKET_ELEMS: usize = 1 << 22;

/// What one step contributes to the epoch's statistics, summed over ranks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Sum over the step's images of the training loss.
    pub loss_sum: f64,
    /// Images whose last-step logits put the label first.
    pub hits: u64,
    /// Images the step trained on.
    pub seen: u64,
    /// Some rank's loss was not finite.
    pub non_finite: bool,
    /// Some rank was asked to stop (Ctrl-C): every rank checkpoints and stops after this step.
    pub stop: bool,
}

/// Sums `local` over the ranks, together with which parameters have a gradient on any rank
/// (`present`, one flag per parameter in [`ParamStore`] order, turned into counts).
pub fn reduce_step(
    comm: &dyn Collective,
    local: &StepStats,
    present: &mut [f64],
) -> Result<StepStats> {
    let mut v = vec![
        local.loss_sum,
        local.hits as f64,
        local.seen as f64,
        f64::from(u8::from(local.non_finite)),
        f64::from(u8::from(local.stop)),
    ];
    v.extend_from_slice(present);
    comm.all_reduce_f64(&mut v, ReduceOp::Sum)?;
    present.copy_from_slice(&v[5..]);
    Ok(StepStats {
        loss_sum: v[0],
        // Counts below 2^53 are exact in f64.
        hits: v[1] as u64,
        seen: v[2] as u64,
        non_finite: v[3] > 0.0,
        stop: v[4] > 0.0,
    })
}

/// Tensors grouped into buckets of at most [`BUCKET_ELEMS`] values (a tensor larger than that
/// is a bucket of its own), in order.
fn buckets(tensors: &[Tensor]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, t) in tensors.iter().enumerate() {
        if size > 0 && size + t.elem_count() > BUCKET_ELEMS {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += t.elem_count();
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

/// Runs `f` on each bucket of `tensors` flattened into one fresh 1-D tensor, and returns the
/// tensors cut back out of the buckets `f` changed (same shapes, plain layout).
fn through_buckets(
    tensors: &[Tensor],
    mut f: impl FnMut(&Tensor) -> Result<()>,
) -> Result<Vec<Tensor>> {
    let _guard = tensor::no_grad();
    let mut out = Vec::with_capacity(tensors.len());
    for range in buckets(tensors) {
        let part = &tensors[range];
        let flat: Vec<Tensor> = part
            .iter()
            .map(|t| t.plain()?.reshape([t.elem_count()]))
            .collect::<tensor::Result<_>>()?;
        let refs: Vec<&Tensor> = flat.iter().collect();
        let bucket = Tensor::cat(&refs, 0)?;
        f(&bucket)?;
        let sizes: Vec<usize> = part.iter().map(Tensor::elem_count).collect();
        for (piece, t) in bucket.split(&sizes, 0)?.into_iter().zip(part) {
            out.push(piece.reshape(t.shape().clone())?);
        }
    }
    Ok(out)
}

/// Replaces `grads` by their average over the ranks, this rank's counting `weight` times (its
/// images × ranks / the step's images, so that the average is the mean over all images even
/// when the ranks' batches differ in size; 1 when they do not). `present[i]` (from
/// [`reduce_step`]) says whether parameter `i` got a gradient on any rank; one that got none
/// anywhere stays without one (the optimiser skips it, as on one process), one missing on this
/// rank only counts as zeros.
pub fn average_gradients(
    comm: &dyn Collective,
    params: &ParamStore,
    grads: &mut Gradients,
    present: &[f64],
    weight: f64,
) -> Result<()> {
    let _guard = tensor::no_grad();
    let mut vars = Vec::new();
    let mut values = Vec::new();
    for ((_, p), &n) in params.iter().zip(present) {
        if n == 0.0 {
            continue;
        }
        let g = match grads.get(p) {
            Some(g) if weight != 1.0 => g.mul_scalar(weight as f32)?,
            Some(g) => g.clone(),
            None => p.zeros_like()?,
        };
        values.push(g);
        vars.push(p.clone());
    }
    let averaged = through_buckets(&values, |b| {
        comm.all_reduce_tensor(b, ReduceOp::Average)
            .map_err(Error::from)
    })?;
    for (p, g) in vars.iter().zip(averaged) {
        grads.insert(p, g.to_layout(p.layout())?);
    }
    Ok(())
}

/// Makes every rank's `tensors` equal to rank 0's.
pub fn broadcast_tensors(comm: &dyn Collective, tensors: &[Tensor]) -> Result<()> {
    let _guard = tensor::no_grad();
    let received = through_buckets(tensors, |b| {
        comm.broadcast_tensor(b, 0).map_err(Error::from)
    })?;
    for (t, r) in tensors.iter().zip(received) {
        t.assign(&r)?;
    }
    Ok(())
}

/// The batch each rank trains on when `global` is split over the ranks of `comm`.
pub fn per_rank_batch(global: usize, comm: &dyn Collective) -> Result<usize> {
    let world = comm.world_size();
    if !global.is_multiple_of(world) {
        return Err(Error::Config(format!(
            "the global batch of {global} does not split evenly over {world} ranks; choose a \
             batch size that {world} divides (the run's batch_size is the global batch: \
             per-rank batch × ranks)"
        )));
    }
    Ok(global / world)
}

/// Whether `flag` is raised on any rank.
pub fn any(comm: &dyn Collective, flag: bool) -> Result<bool> {
    if comm.world_size() == 1 {
        return Ok(flag);
    }
    let mut v = [u64::from(flag)];
    comm.all_reduce_u64(&mut v, ReduceOp::Sum)?;
    Ok(v[0] > 0)
}

/// The sum of `value` over the ranks (every rank calls it at the same point; one rank alone
/// gets its own value without a message).
pub fn sum(comm: &dyn Collective, value: u64) -> Result<u64> {
    reduce_one(comm, value, ReduceOp::Sum)
}

/// The largest `value` over the ranks (every rank calls it at the same point).
pub fn max(comm: &dyn Collective, value: u64) -> Result<u64> {
    reduce_one(comm, value, ReduceOp::Max)
}

fn reduce_one(comm: &dyn Collective, value: u64, op: ReduceOp) -> Result<u64> {
    if comm.world_size() == 1 {
        return Ok(value);
    }
    let mut v = [value];
    comm.all_reduce_u64(&mut v, op)?;
    Ok(v[0])
}

/// How many ranks share the busiest node's memory: one more than the largest local rank (the
/// nodes of a job usually run the same number of ranks, and where they do not, the node with
/// the most bounds what each rank may use).
pub fn ranks_per_node(comm: &dyn Collective) -> Result<usize> {
    Ok(max(comm, comm.local_rank() as u64)? as usize + 1)
}

/// What rank 0 sends about the checkpoint it read.
#[derive(Serialize, Deserialize)]
struct SharedCheckpoint {
    path: PathBuf,
    config: TrainConfig,
    progress: Progress,
    /// Names and shapes, in order, of the parameters and then the optimiser's state.
    params: Vec<(String, Vec<usize>)>,
    optim: Vec<(String, Vec<usize>)>,
}

/// Gives every rank rank 0's view of how the run starts: `local` is what rank 0 found in the
/// run directory (no checkpoint, a checkpoint, or an error); the other ranks' `local` is
/// ignored. A checkpoint travels whole — header, parameters, optimiser state — so the other
/// ranks need not see rank 0's file system.
pub fn share_checkpoint(
    comm: &dyn Collective,
    local: Result<Option<Checkpoint>>,
) -> Result<Option<Checkpoint>> {
    if comm.world_size() == 1 {
        return local;
    }
    let root = comm.rank() == 0;
    let record: std::result::Result<Option<SharedCheckpoint>, String> = match &local {
        Ok(Some(ck)) if root => {
            let (params, optim) = ck.tensors();
            let shapes = |v: &NamedTensors| -> Vec<(String, Vec<usize>)> {
                v.iter()
                    .map(|(n, t)| (n.clone(), t.dims().to_vec()))
                    .collect()
            };
            Ok(Some(SharedCheckpoint {
                path: ck.path.clone(),
                config: ck.config.clone(),
                progress: ck.progress.clone(),
                params: shapes(params),
                optim: shapes(optim),
            }))
        }
        Err(e) if root => Err(e.to_string()),
        _ => Ok(None),
    };
    let text = serde_json::to_vec(&record)
        .map_err(|e| Error::Config(format!("cannot serialise the start record: {e}")))?;
    let text = comm.broadcast_bytes(&text, 0)?;
    let record: std::result::Result<Option<SharedCheckpoint>, String> =
        serde_json::from_slice(&text)
            .map_err(|e| Error::Config(format!("rank 0 sent an unreadable start record: {e}")))?;
    let shared = match record {
        Err(_) if root => return local,
        Err(msg) => return Err(Error::Config(format!("rank 0 cannot start the run: {msg}"))),
        Ok(None) => return if root { local } else { Ok(None) },
        Ok(Some(s)) => s,
    };
    if root {
        let ck = local?.ok_or_else(|| Error::Config("rank 0 lost its checkpoint".into()))?;
        let (params, optim) = ck.tensors();
        let all: Vec<Tensor> = params.iter().chain(optim).map(|(_, t)| t.clone()).collect();
        broadcast_tensors(comm, &all)?;
        return Ok(Some(ck));
    }
    let zeros = |v: Vec<(String, Vec<usize>)>| -> Result<Vec<(String, Tensor)>> {
        v.into_iter()
            .map(|(n, dims)| Ok((n, Tensor::zeros(dims, tensor::Device::Cpu)?)))
            .collect()
    };
    let params = zeros(shared.params)?;
    let optim = zeros(shared.optim)?;
    let all: Vec<Tensor> = params
        .iter()
        .chain(&optim)
        .map(|(_, t)| t.clone())
        .collect();
    broadcast_tensors(comm, &all)?;
    Ok(Some(Checkpoint::from_parts(
        shared.path,
        shared.config,
        shared.progress,
        params,
        optim,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::Device;

    #[test]
    fn buckets_respect_the_limit_and_keep_order() {
        let t = |n: usize| Tensor::zeros([n], Device::Cpu).unwrap();
        let ts = vec![t(3), t(BUCKET_ELEMS - 3), t(1), t(BUCKET_ELEMS + 5), t(2)];
        assert_eq!(buckets(&ts), vec![0..2, 2..3, 3..4, 4..5]);
        assert!(buckets(&[]).is_empty());
    }

    #[test]
    fn a_bucket_round_trip_keeps_shapes_and_values() {
        let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![7.0], [1], Device::Cpu).unwrap();
        let out = through_buckets(&[a.clone(), b], |bucket| {
            assert_eq!(bucket.dims(), &[7]);
            Ok(())
        })
        .unwrap();
        assert_eq!(out[0].dims(), &[2, 3]);
        assert_eq!(out[0].to_vec().unwrap(), a.to_vec().unwrap());
        assert_eq!(out[1].to_vec().unwrap(), [7.0]);
    }

    /// Two ranks as threads of this process over TCP; `f(rank, comm)` runs on each.
    fn two_ranks<T: Send + 'static>(
        f: impl Fn(usize, &dyn Collective) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        use collective::{tcp::TcpComm, Launch, Launcher, Rendezvous};
        use std::time::{Duration, Instant};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let launch = move |rank| Launch {
            launcher: Launcher::Torchrun,
            rank,
            world_size: 2,
            local_rank: Some(rank),
            local_world_size: Some(2),
            rendezvous: Some(Rendezvous {
                host: "127.0.0.1".into(),
                port,
            }),
            mpi_job: false,
        };
        let timeout = Duration::from_secs(60);
        let f = std::sync::Arc::new(f);
        let g = std::sync::Arc::clone(&f);
        let other = std::thread::spawn(move || {
            let comm = TcpComm::connect(&launch(1), timeout).unwrap();
            g(1, &comm)
        });
        let deadline = Instant::now() + timeout;
        let comm = TcpComm::serve(listener, &launch(0), "", deadline, timeout, "test").unwrap();
        let first = f(0, &comm);
        vec![first, other.join().unwrap()]
    }

    #[test]
    fn two_ranks_on_one_node_count_as_two_and_a_lone_rank_as_one() {
        assert_eq!(two_ranks(|_, comm| ranks_per_node(comm).unwrap()), [2, 2]);
        assert_eq!(
            two_ranks(|rank, comm| max(comm, 10 - rank as u64).unwrap()),
            [10, 10]
        );
        assert_eq!(ranks_per_node(&collective::Single).unwrap(), 1);
    }

    #[test]
    fn gradients_average_by_each_ranks_share_of_the_images() {
        // Rank 0 read 1 image, rank 1 read 2: the mean over the 3 is (1·g₀ + 2·g₁) / 3.
        let out = two_ranks(|rank, comm| {
            let mut params = ParamStore::new();
            let w = params
                .insert("w", Tensor::zeros([2], Device::Cpu).unwrap())
                .unwrap();
            let c = if rank == 0 { [3.0, 0.0] } else { [0.0, 6.0] };
            let c = Tensor::from_vec(c.to_vec(), [2], Device::Cpu).unwrap();
            let mut grads = w.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
            let seen = rank as u64 + 1;
            let mut present = [1.0];
            let step = reduce_step(
                comm,
                &StepStats {
                    seen,
                    ..Default::default()
                },
                &mut present,
            )
            .unwrap();
            assert_eq!((step.seen, present), (3, [2.0]));
            let weight = (seen * 2) as f64 / step.seen as f64;
            average_gradients(comm, &params, &mut grads, &present, weight).unwrap();
            grads.get(&w).unwrap().to_vec().unwrap()
        });
        for g in out {
            assert!(
                (g[0] - 1.0).abs() < 1e-6 && (g[1] - 4.0).abs() < 1e-6,
                "{g:?}"
            );
        }
    }

    #[test]
    fn a_checkpoint_reaches_every_rank_and_an_error_names_rank_0() {
        use crate::config::DataSpec;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::checkpoint::LATEST);
        let spec = topology::zoo::get("compact_timedecay").unwrap();
        let config = TrainConfig::for_model(spec.clone(), DataSpec::FashionMnist { dir: None });
        let model = topology::Model::new(&spec, Device::Cpu, 4).unwrap();
        let opt = crate::optim::Optimizer::new(config.optimizer.clone()).unwrap();
        let progress = Progress {
            global_step: 9,
            ..Progress::default()
        };
        crate::checkpoint::save(&path, &config, &progress, &model, &opt).unwrap();
        let expected: Vec<Vec<f32>> = model
            .params
            .iter()
            .map(|(_, t)| t.to_vec().unwrap())
            .collect();
        let out = two_ranks(move |rank, comm| {
            let local = if rank == 0 {
                Checkpoint::read(&path).map(Some)
            } else {
                Ok(None)
            };
            let ck = share_checkpoint(comm, local).unwrap().unwrap();
            let other = topology::Model::new(&ck.config.model, Device::Cpu, 99).unwrap();
            ck.load_params_into(&other.params).unwrap();
            let got: Vec<Vec<f32>> = other
                .params
                .iter()
                .map(|(_, t)| t.to_vec().unwrap())
                .collect();
            let failed = share_checkpoint(
                comm,
                if rank == 0 {
                    Err(Error::Config("disk on fire".into()))
                } else {
                    Ok(None)
                },
            )
            .unwrap_err()
            .to_string();
            (ck.progress.global_step, got, failed)
        });
        for (rank, (step, got, failed)) in out.into_iter().enumerate() {
            assert_eq!(step, 9);
            assert_eq!(got, expected, "rank {rank}");
            assert!(failed.contains("disk on fire"), "{failed}");
        }
    }

    /// A two-rank run logs like one process: rank 0 writes `steps.jsonl` (every step here) and
    /// the plots, counting the unreadable images of both ranks' shards; rank 1 writes nothing.
    #[test]
    fn rank_0_alone_writes_the_step_log_and_it_counts_every_ranks_skipped_images() {
        use crate::config::DataSpec;
        use crate::fit::{fit, FitOptions};
        let data = tempfile::tempdir().unwrap();
        datasets::synthetic::write_splits(
            data.path(),
            &datasets::synthetic::SyntheticConfig::tiny(2, 6, 5),
        )
        .unwrap();
        // 12 training images in 3 global batches of 4 (2 per rank): every one is read once, and
        // one that rank 1 reads is not a JPEG, so the count is only right if rank 0 adds rank
        // 1's skips to its own. Rank 1's part of the epoch is found as the fit below finds it.
        let train = datasets::ImageFolder::open(
            &data.path().join("train"),
            datasets::Transform::Train(datasets::TrainTransform::imagenet(16)),
        )
        .unwrap();
        let samples = train.samples().to_vec();
        let rank_1_reads = datasets::Batcher::new(
            std::sync::Arc::new(train),
            datasets::BatcherConfig::train(2, 2),
        )
        .unwrap()
        .sharded(datasets::Shard { index: 1, count: 2 })
        .unwrap()
        .order(0);
        assert_eq!(rank_1_reads.len(), 6);
        std::fs::write(&samples[rank_1_reads[0]].0, b"not a jpeg").unwrap();
        let mut config = TrainConfig::for_model(
            topology::zoo::tiny_colour(2, 2),
            DataSpec::Folder {
                root: data.path().to_path_buf(),
            },
        );
        config.epochs = 1;
        config.batch_size = 4;
        config.eval_batch_size = 6;
        config.seed = 2;
        let runs = tempfile::tempdir().unwrap();
        let outs = [runs.path().join("rank0"), runs.path().join("rank1")];
        let reports = two_ranks({
            let outs = outs.clone();
            move |rank, comm| {
                let mut opts = FitOptions::new(&outs[rank]);
                opts.log_every = 1;
                opts.collective = Some(comm);
                fit(config.clone(), opts).unwrap()
            }
        });
        assert!(reports.iter().all(|r| r.steps == 3));
        let records = crate::steps::read(&outs[0]).unwrap();
        assert_eq!(
            records.iter().map(|r| r.step).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(records
            .iter()
            .all(|r| r.loss.is_finite() && r.grad_norm > 0.0));
        // Skipped images are counted as they are read, so only the last record has them all.
        assert_eq!(records.last().map(|r| r.skipped_images), Some(1));
        assert!(outs[0].join("plots/training.svg").is_file());
        assert!(!outs[1].exists(), "rank 1 wrote files");
    }

    #[test]
    fn one_rank_keeps_its_gradients_and_drops_none() {
        let mut params = ParamStore::new();
        let w = params
            .insert(
                "w",
                Tensor::from_vec(vec![1.0, 2.0], [2], Device::Cpu).unwrap(),
            )
            .unwrap();
        let unused = params
            .insert("unused", Tensor::zeros([3], Device::Cpu).unwrap())
            .unwrap();
        let mut grads = w.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let mut present = [1.0, 0.0];
        let stats = reduce_step(
            &collective::Single,
            &StepStats {
                loss_sum: 2.5,
                hits: 1,
                seen: 2,
                ..Default::default()
            },
            &mut present,
        )
        .unwrap();
        assert_eq!((stats.loss_sum, stats.hits, stats.seen), (2.5, 1, 2));
        average_gradients(&collective::Single, &params, &mut grads, &present, 1.0).unwrap();
        assert_eq!(grads.get(&w).unwrap().to_vec().unwrap(), [2.0, 4.0]);
        assert!(grads.get(&unused).is_none());
    }
}
