//! Evaluation: top-1/top-5 at every time step and for every decoder, on one process or shared
//! between the ranks of a data-parallel job.

use crate::data::Source;
use crate::error::{Error, Result};
use collective::{Collective, CollectiveExt, ReduceOp, Single};
use datasets::BatcherConfig;
use serde::{Deserialize, Serialize};
use tensor::Tensor;
use topology::{Decoder, Frames, Model, Needed, Presentation, UnrollOptions, DEFAULT_BLANK};

/// How to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    /// Images per evaluation batch.
    pub batch_size: usize,
    /// Unroll steps per image.
    pub steps: usize,
    /// When the image is shown during the unroll (steps on, then blank).
    pub presentation: Presentation,
    /// The first decoder's accuracy is the report's `top1`/`top5`.
    pub decoders: Vec<Decoder>,
    /// Use only the first `limit` images.
    pub limit: Option<usize>,
}

/// One decoder's accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderScore {
    /// The decoder's name (`last`, `avg`, `max_conf`, `thresh`).
    pub name: String,
    /// The decoder and its settings.
    pub decoder: Decoder,
    /// Fraction of images whose label the decoder ranks first.
    pub top1: f64,
    /// Fraction of images whose label the decoder ranks among the first five.
    pub top5: f64,
}

/// Accuracy (fractions in [0, 1]) over an evaluation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Unroll steps per image.
    pub steps: usize,
    /// Mean cross-entropy of the last step's logits.
    pub loss: f64,
    /// `top1_per_step[t]`: accuracy of the logits of step `t` alone.
    pub top1_per_step: Vec<f64>,
    /// `top5_per_step[t]`: top-5 accuracy of the logits of step `t` alone.
    pub top5_per_step: Vec<f64>,
    /// Every decoder's accuracy, in the order of the options.
    pub decoders: Vec<DecoderScore>,
    /// The first decoder's top-1.
    pub top1: f64,
    /// The first decoder's top-5.
    pub top5: f64,
}

/// Where class `target` ranks in one row of logits: how many classes come before it, with ties
/// going to the lower class index (the convention of `argmax` and `torch.topk`). `None` when the
/// row holds a NaN (or `target` is out of range): such a prediction has no rank and is a miss at
/// every k. Without this rule a NaN row would be a hit, since every comparison with NaN is false.
pub fn target_rank(row: &[f32], target: usize) -> Option<usize> {
    let t = *row.get(target)?;
    if row.iter().any(|x| x.is_nan()) {
        return None;
    }
    let above = row.iter().filter(|&&x| x > t).count();
    let tied_before = row[..target].iter().filter(|&&x| x == t).count();
    Some(above + tied_before)
}

/// Counts, per row of `[N, K]` logits, whether the target ranks within the top 1 and top 5
/// (see [`target_rank`]).
pub(crate) fn topk_hits(logits: &Tensor, labels: &[usize]) -> Result<(usize, usize)> {
    let (n, k) = logits.shape().dims2("evaluate")?;
    if labels.len() != n {
        return Err(Error::Config(format!(
            "{n} rows of logits for {} labels",
            labels.len()
        )));
    }
    let v = logits.to_vec()?;
    let (mut h1, mut h5) = (0, 0);
    for (row, &y) in v.chunks_exact(k).zip(labels) {
        if let Some(rank) = target_rank(row, y) {
            h1 += usize::from(rank < 1);
            h5 += usize::from(rank < 5);
        }
    }
    Ok((h1, h5))
}

/// What an evaluation counts before dividing: what the ranks of a data-parallel job add up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalCounts {
    /// Images read (unreadable ones are left out).
    pub images: u64,
    /// Per step: hits within the top 1.
    pub hits1: Vec<u64>,
    /// Per step: hits within the top 5.
    pub hits5: Vec<u64>,
    /// Per decoder: hits within the top 1.
    pub decoder_hits1: Vec<u64>,
    /// Per decoder: hits within the top 5.
    pub decoder_hits5: Vec<u64>,
    /// Sum over images of the last step's cross-entropy.
    pub loss_sum: f64,
}

impl EvalCounts {
    fn new(steps: usize, decoders: usize) -> Self {
        EvalCounts {
            images: 0,
            hits1: vec![0; steps],
            hits5: vec![0; steps],
            decoder_hits1: vec![0; decoders],
            decoder_hits5: vec![0; decoders],
            loss_sum: 0.0,
        }
    }

    /// Replaces the counts by their sums over every rank.
    pub fn all_reduce(&mut self, comm: &dyn Collective) -> Result<()> {
        let mut ints: Vec<u64> = std::iter::once(self.images)
            .chain(self.hits1.iter().copied())
            .chain(self.hits5.iter().copied())
            .chain(self.decoder_hits1.iter().copied())
            .chain(self.decoder_hits5.iter().copied())
            .collect();
        comm.all_reduce_u64(&mut ints, ReduceOp::Sum)?;
        let mut loss = [self.loss_sum];
        comm.all_reduce_f64(&mut loss, ReduceOp::Sum)?;
        self.loss_sum = loss[0];
        let mut it = ints.into_iter();
        self.images = it.next().unwrap_or(0);
        for v in [
            &mut self.hits1,
            &mut self.hits5,
            &mut self.decoder_hits1,
            &mut self.decoder_hits5,
        ] {
            for x in v.iter_mut() {
                *x = it.next().unwrap_or(0);
            }
        }
        Ok(())
    }

    /// The fractions these counts make.
    pub fn report(&self, decoders: &[Decoder]) -> EvalReport {
        let frac = |h: u64| h as f64 / self.images.max(1) as f64;
        let decoders: Vec<DecoderScore> = decoders
            .iter()
            .zip(self.decoder_hits1.iter().zip(&self.decoder_hits5))
            .map(|(d, (&a, &b))| DecoderScore {
                name: d.name().to_string(),
                decoder: *d,
                top1: frac(a),
                top5: frac(b),
            })
            .collect();
        EvalReport {
            images: self.images as usize,
            steps: self.hits1.len(),
            loss: self.loss_sum / self.images.max(1) as f64,
            top1_per_step: self.hits1.iter().map(|&h| frac(h)).collect(),
            top5_per_step: self.hits5.iter().map(|&h| frac(h)).collect(),
            top1: decoders.first().map_or(0.0, |d| d.top1),
            top5: decoders.first().map_or(0.0, |d| d.top5),
            decoders,
        }
    }
}

/// Evaluates `model` on `data` (images that cannot be read are left out and not counted).
pub fn evaluate(model: &Model, data: &Source, opts: &EvalOptions) -> Result<EvalReport> {
    evaluate_on(model, data, opts, &Single)
}

/// Evaluates `model` on `data` with the ranks of `comm` sharing the work: each rank counts a
/// contiguous part of the images and the counts are summed, so every rank gets the report of
/// the whole set. Shards are read as one stream, so there every rank evaluates all of them.
pub fn evaluate_on(
    model: &Model,
    data: &Source,
    opts: &EvalOptions,
    comm: &dyn Collective,
) -> Result<EvalReport> {
    if opts.limit.map_or(data.len(), |l| l.min(data.len())) == 0 {
        return Err(Error::Config("the evaluation set is empty".into()));
    }
    if opts.decoders.is_empty() {
        return Err(Error::Config(
            "evaluation needs at least one decoder".into(),
        ));
    }
    tensor::cpu::denormals::configure_process().map_err(Error::Config)?;
    let (rank, world) = (comm.rank(), comm.world_size());
    let part = if world > 1 {
        data.part(opts.limit, rank, world)
    } else {
        None
    };
    let counts = match part {
        Some(part) => {
            let mut c = count(model, &part, None, opts)?;
            c.all_reduce(comm)?;
            c
        }
        None => count(model, data, opts.limit, opts)?,
    };
    if counts.images == 0 {
        return Err(Error::Config(
            "no image of the evaluation set could be read".into(),
        ));
    }
    Ok(counts.report(&opts.decoders))
}

/// The counts of one pass over the first `limit` images of `data`.
fn count(
    model: &Model,
    data: &Source,
    limit: Option<usize>,
    opts: &EvalOptions,
) -> Result<EvalCounts> {
    let _guard = tensor::no_grad();
    let steps = opts.steps;
    let mut counts = EvalCounts::new(steps, opts.decoders.len());
    if data.is_empty() {
        return Ok(counts);
    }
    let loader = data.loader(BatcherConfig::eval(opts.batch_size), limit)?;
    let unroll = UnrollOptions {
        steps: Some(steps),
        needed: Needed::AllLogits,
        ..Default::default()
    };
    for batch in loader.epoch(0) {
        let batch = batch?;
        if batch.is_empty() {
            continue;
        }
        counts.images += batch.len() as u64;
        let (images, labels) = batch.into_tensor(model.device)?;
        let frames = Frames::Image {
            image: images,
            presentation: opts.presentation,
            blank: DEFAULT_BLANK,
        };
        let logits = model.unroll(&frames, &unroll)?.all_logits()?;
        for (t, l) in logits.iter().enumerate() {
            let (a, b) = topk_hits(l, &labels)?;
            counts.hits1[t] += a as u64;
            counts.hits5[t] += b as u64;
        }
        for (i, d) in opts.decoders.iter().enumerate() {
            let (a, b) = topk_hits(&d.decode(&logits)?, &labels)?;
            counts.decoder_hits1[i] += a as u64;
            counts.decoder_hits5[i] += b as u64;
        }
        if let Some(last) = logits.last() {
            counts.loss_sum +=
                last.cross_entropy(&labels, 0.0)?.to_scalar()? as f64 * labels.len() as f64;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::Device;

    #[test]
    fn topk_counts_ranks() {
        let l = Tensor::from_vec(
            vec![
                0.1, 0.9, 0.0, 0.0, 0.0, 0.0, // target 1: top-1
                0.5, 0.4, 0.3, 0.2, 0.1, 0.0, // target 4: rank 4 → top-5 only
                0.5, 0.4, 0.3, 0.2, 0.1, 0.0, // target 5: rank 5 → neither
            ],
            [3, 6],
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(topk_hits(&l, &[1, 4, 5]).unwrap(), (1, 2));
    }

    #[test]
    fn nan_rows_are_misses_at_every_k() {
        let nan = f32::NAN;
        let l = Tensor::from_vec(
            vec![
                nan, nan, nan, nan, nan, nan, // a diverged model: no prediction
                0.1, nan, 0.9, 0.0, 0.0, 0.0, // one NaN poisons the row
                0.0, 0.0, nan, 0.0, 0.0, 0.0, // a NaN target
            ],
            [3, 6],
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(topk_hits(&l, &[0, 2, 2]).unwrap(), (0, 0));
        assert_eq!(target_rank(&[1.0, f32::NAN], 0), None);
        assert_eq!(target_rank(&[1.0, 2.0], 5), None, "out of range");
    }

    #[test]
    fn ties_go_to_the_lower_class_index() {
        // Constant logits (a dead network) score chance, not 100 %.
        let l = Tensor::from_vec(vec![0.0; 4 * 10], [4, 10], Device::Cpu).unwrap();
        assert_eq!(topk_hits(&l, &[0, 3, 4, 9]).unwrap(), (1, 3));
        assert_eq!(target_rank(&[2.0, 1.0, 2.0], 2), Some(1));
        assert_eq!(target_rank(&[f32::INFINITY, 1.0], 0), Some(0));
    }
}
