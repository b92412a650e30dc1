//! Temporal decoders: one set of logits per example from the logits of every step (SPEC §3).

use serde::{Deserialize, Serialize};
use tensor::{Device, Error, Result, Tensor};

/// How the logits of every step become one answer per example.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decoder {
    /// The logits of the last step.
    Last,
    /// The mean logits over steps `from..to` (`to` exclusive, clamped to the unroll).
    Avg {
        /// First step averaged.
        from: usize,
        /// One past the last step averaged.
        to: usize,
    },
    /// Per example, the step (from `from` on) with the highest top-class softmax probability.
    MaxConf {
        /// First step considered.
        from: usize,
    },
    /// Per example, the first step (from `from` on) whose top-class probability reaches
    /// `threshold`, else the most confident step.
    Thresh {
        /// First step considered.
        from: usize,
        /// Top-class softmax probability that stops the search.
        threshold: f32,
    },
}

impl Decoder {
    /// The decoder's name in specs and reports (`last`, `avg`, `max_conf`, `thresh`).
    pub fn name(&self) -> &'static str {
        match self {
            Decoder::Last => "last",
            Decoder::Avg { .. } => "avg",
            Decoder::MaxConf { .. } => "max_conf",
            Decoder::Thresh { .. } => "thresh",
        }
    }

    /// `[N, K]` logits from `logits[step]`.
    pub fn decode(&self, logits: &[Tensor]) -> Result<Tensor> {
        let steps = logits.len();
        let bad = |msg: String| Error::InvalidArgument { op: "decode", msg };
        let last = logits
            .last()
            .ok_or_else(|| bad("no steps to decode".into()))?;
        match *self {
            Decoder::Last => Ok(last.clone()),
            Decoder::Avg { from, to } => {
                let to = to.min(steps);
                if from >= to {
                    return Err(bad(format!("empty window {from}..{to} over {steps} steps")));
                }
                let mut acc = logits[from].clone();
                for l in &logits[from + 1..to] {
                    acc = acc.add(l)?;
                }
                acc.mul_scalar(1.0 / (to - from) as f32)
            }
            Decoder::MaxConf { from } | Decoder::Thresh { from, .. } => {
                if from >= steps {
                    return Err(bad(format!(
                        "window starts at {from} but there are {steps} steps"
                    )));
                }
                let (n, _) = last.shape().dims2("decode")?;
                // Top-class probability per example and step, on the host.
                let mut conf = vec![vec![0f32; steps]; n];
                for (t, l) in logits.iter().enumerate().skip(from) {
                    let p = l.softmax()?.to_vec()?;
                    let k = p.len() / n;
                    for (i, row) in p.chunks(k).enumerate() {
                        conf[i][t] = row.iter().cloned().fold(f32::MIN, f32::max);
                    }
                }
                let pick: Vec<usize> = conf
                    .iter()
                    .map(|c| {
                        let best = (from..steps)
                            .max_by(|a, b| c[*a].total_cmp(&c[*b]).then(b.cmp(a)))
                            .unwrap_or(steps - 1);
                        match *self {
                            Decoder::Thresh { threshold, .. } => {
                                (from..steps).find(|&t| c[t] >= threshold).unwrap_or(best)
                            }
                            _ => best,
                        }
                    })
                    .collect();
                select_per_example(logits, &pick)
            }
        }
    }
}

/// `out[i] = logits[pick[i]][i]`, differentiable in the selected logits.
fn select_per_example(logits: &[Tensor], pick: &[usize]) -> Result<Tensor> {
    let n = pick.len();
    let device: Device = logits[0].device();
    let mut acc: Option<Tensor> = None;
    for (t, l) in logits.iter().enumerate() {
        if !pick.contains(&t) {
            continue;
        }
        let mask: Vec<f32> = pick
            .iter()
            .map(|&p| if p == t { 1.0 } else { 0.0 })
            .collect();
        let m = Tensor::from_vec(mask, [n, 1], device)?;
        let term = l.mul(&m)?;
        acc = Some(match acc {
            Some(a) => a.add(&term)?,
            None => term,
        });
    }
    acc.ok_or_else(|| Error::InvalidArgument {
        op: "decode",
        msg: "no step selected".into(),
    })
}
