//! Evaluation: top-1/top-5 at every time step and for every decoder.

use crate::data::Source;
use crate::error::{Error, Result};
use datasets::BatcherConfig;
use serde::{Deserialize, Serialize};
use tensor::Tensor;
use topology::{Decoder, Frames, Model, Needed, Presentation, UnrollOptions, DEFAULT_BLANK};

/// How to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    pub batch_size: usize,
    pub steps: usize,
    pub presentation: Presentation,
    /// The first decoder's accuracy is the report's `top1`/`top5`.
    pub decoders: Vec<Decoder>,
    /// Use only the first `limit` images.
    pub limit: Option<usize>,
}

/// One decoder's accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderScore {
    pub name: String,
    pub decoder: Decoder,
    pub top1: f64,
    pub top5: f64,
}

/// Accuracy (fractions in [0, 1]) over an evaluation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub images: usize,
    pub steps: usize,
    /// Mean cross-entropy of the last step's logits.
    pub loss: f64,
    /// `top1_per_step[t]`: accuracy of the logits of step `t` alone.
    pub top1_per_step: Vec<f64>,
    pub top5_per_step: Vec<f64>,
    pub decoders: Vec<DecoderScore>,
    /// The first decoder's top-1 / top-5.
    pub top1: f64,
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

/// Evaluates `model` on `data` (images that cannot be read are left out and not counted).
pub fn evaluate(model: &Model, data: &Source, opts: &EvalOptions) -> Result<EvalReport> {
    let _guard = tensor::no_grad();
    if opts.limit.map_or(data.len(), |l| l.min(data.len())) == 0 {
        return Err(Error::Config("the evaluation set is empty".into()));
    }
    if opts.decoders.is_empty() {
        return Err(Error::Config(
            "evaluation needs at least one decoder".into(),
        ));
    }
    let loader = data.loader(BatcherConfig::eval(opts.batch_size), opts.limit)?;
    let mut len = 0usize;
    let steps = opts.steps;
    let mut hits1 = vec![0usize; steps];
    let mut hits5 = vec![0usize; steps];
    let mut dec_hits = vec![(0usize, 0usize); opts.decoders.len()];
    let mut loss_sum = 0f64;
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
        len += batch.len();
        let (images, labels) = batch.into_tensor(model.device)?;
        let frames = Frames::Image {
            image: images,
            presentation: opts.presentation,
            blank: DEFAULT_BLANK,
        };
        let logits = model.unroll(&frames, &unroll)?.all_logits()?;
        for (t, l) in logits.iter().enumerate() {
            let (a, b) = topk_hits(l, &labels)?;
            hits1[t] += a;
            hits5[t] += b;
        }
        for (d, acc) in opts.decoders.iter().zip(&mut dec_hits) {
            let (a, b) = topk_hits(&d.decode(&logits)?, &labels)?;
            acc.0 += a;
            acc.1 += b;
        }
        if let Some(last) = logits.last() {
            loss_sum += last.cross_entropy(&labels, 0.0)?.to_scalar()? as f64 * labels.len() as f64;
        }
    }
    if len == 0 {
        return Err(Error::Config(
            "no image of the evaluation set could be read".into(),
        ));
    }
    let frac = |h: usize| h as f64 / len as f64;
    let decoders: Vec<DecoderScore> = opts
        .decoders
        .iter()
        .zip(&dec_hits)
        .map(|(d, &(a, b))| DecoderScore {
            name: d.name().to_string(),
            decoder: *d,
            top1: frac(a),
            top5: frac(b),
        })
        .collect();
    Ok(EvalReport {
        images: len,
        steps,
        loss: loss_sum / len as f64,
        top1_per_step: hits1.into_iter().map(frac).collect(),
        top5_per_step: hits5.into_iter().map(frac).collect(),
        top1: decoders[0].top1,
        top5: decoders[0].top5,
        decoders,
    })
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
