//! Temporal decoders: one set of logits per example from the logits of every step (SPEC §3).
//!
//! The confidence-based decoders follow the reference's `decoders.py`: the class probabilities
//! are `softmax(β·logits)` with a temperature `β` (the `*_tmaxconf` models trained theirs; it is 1
//! elsewhere), and only steps from `from` on are considered (the released models read steps
//! `[num_layers, T)`: 11 onward for the intermediate models, 6 for the shallow ones). Ties go to
//! the earliest step, as TensorFlow's `argmax` does.

use serde::{Deserialize, Serialize};
use tensor::{Device, Error, Result, Tensor};

/// How the logits of every step become one answer per example.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decoder {
    /// The logits of the last step.
    #[default]
    Last,
    /// The mean logits over steps `from..to` (`to` exclusive, clamped to the unroll).
    Avg {
        /// First step averaged.
        from: usize,
        /// One past the last step averaged.
        to: usize,
    },
    /// Per example, the step (from `from` on) with the highest top-class probability of
    /// `softmax(beta·logits)`.
    MaxConf {
        /// First step considered.
        from: usize,
        /// Softmax temperature (1 unless trained, as in the `*_tmaxconf` checkpoints).
        #[serde(default = "one")]
        beta: f32,
    },
    /// Per example, the first step (from `from` on) whose top-class probability of
    /// `softmax(beta·logits)` reaches `threshold`, else the most confident step.
    Thresh {
        /// First step considered.
        from: usize,
        /// Top-class softmax probability that stops the search.
        threshold: f32,
        /// Softmax temperature.
        #[serde(default = "one")]
        beta: f32,
    },
}

fn one() -> f32 {
    1.0
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

    /// Scalars of this decoder that the reference trains and stores in its checkpoints: the
    /// softmax temperature of `max_conf` (every released `*_tmaxconf` model trains it), counted
    /// with the model's parameters. `thresh`'s temperature and threshold are constants there.
    pub fn trained_scalars(&self) -> usize {
        match self {
            Decoder::MaxConf { .. } => 1,
            _ => 0,
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
            Decoder::MaxConf { from, beta } | Decoder::Thresh { from, beta, .. } => {
                if from >= steps {
                    return Err(bad(format!(
                        "window starts at {from} but there are {steps} steps"
                    )));
                }
                let (n, _) = last.shape().dims2("decode")?;
                // Top-class probability per example and step, on the host.
                let mut conf = vec![vec![0f32; steps]; n];
                for (t, l) in logits.iter().enumerate().skip(from) {
                    let p = if beta == 1.0 {
                        l.softmax()?
                    } else {
                        l.mul_scalar(beta)?.softmax()?
                    };
                    let p = p.to_vec()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(rows: &[[f32; 3]]) -> Tensor {
        let v: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(v, [rows.len(), 3], Device::Cpu).expect("tensor")
    }

    /// Step 0 wins on margin (p = 0.79 against 0.62 at β = 1); at β = 0.1 the flatter step-1
    /// distribution is the more confident one, as `softmax(β·logits)` says.
    #[test]
    fn the_temperature_changes_which_step_max_conf_picks() {
        let l = vec![logits(&[[2.0, 0.0, 0.0]]), logits(&[[3.0, 2.5, -10.0]])];
        let pick = |beta| {
            Decoder::MaxConf { from: 0, beta }
                .decode(&l)
                .and_then(|t| t.to_vec())
                .expect("decodes")
        };
        assert_eq!(pick(1.0), vec![2.0, 0.0, 0.0]);
        assert_eq!(pick(0.1), vec![3.0, 2.5, -10.0]);
        // thresh with β: at 0.1 no step reaches 0.9, so the most confident (step 1) is taken.
        let t = Decoder::Thresh {
            from: 0,
            threshold: 0.9,
            beta: 0.1,
        };
        assert_eq!(
            t.decode(&l).and_then(|t| t.to_vec()).expect("decodes"),
            vec![3.0, 2.5, -10.0]
        );
        assert_eq!(Decoder::MaxConf { from: 0, beta: 2.0 }.trained_scalars(), 1);
        assert_eq!(t.trained_scalars(), 0);
    }

    /// Steps before `from` are never picked, however confident.
    #[test]
    fn the_window_excludes_early_steps() {
        let l = vec![
            logits(&[[9.0, 0.0, 0.0]]),
            logits(&[[1.0, 0.0, 0.0]]),
            logits(&[[0.5, 0.0, 0.0]]),
        ];
        let d = Decoder::MaxConf { from: 1, beta: 1.0 };
        assert_eq!(
            d.decode(&l).and_then(|t| t.to_vec()).expect("decodes"),
            vec![1.0, 0.0, 0.0]
        );
        assert!(Decoder::MaxConf { from: 3, beta: 1.0 }.decode(&l).is_err());
    }

    #[test]
    fn beta_defaults_to_one_in_json() {
        let d: Decoder = serde_json::from_str(r#"{"type":"max_conf","from":11}"#).expect("json");
        assert_eq!(
            d,
            Decoder::MaxConf {
                from: 11,
                beta: 1.0
            }
        );
    }
}
