//! The one function that owns time (SPEC §3).
//!
//! Biological timing (the default): at step `t` every area reads its inputs' outputs from step
//! `t−1` (zeros at `t = 0`), except the first area, which reads the frame of step `t` directly. So
//! area `l` (0-based) first sees the image at step `l`, and every extra edge costs one step too.
//! The full-sweep mode instead lets feedforward and skip edges read step `t` (a whole feedforward
//! pass per step), while feedback still reads `t−1`.
//!
//! When only the last step's logits are wanted (training with the loss on the last step), outputs
//! that can never reach them are not computed: area `i`'s output at step `t` reaches the readout at
//! `t + d(i)` at the earliest, `d` the shortest delay path to the readout, so steps with
//! `t + d(i) > T − 1` are skipped. Tests compare against the plain loop.
//!
//! Work done before the image reaches an area (it reads only zeros, biases and the blank frame) is
//! the same for every example of a batch, so it runs at batch 1 and is repeated to the batch
//! (`Tensor::repeat_batch`, whose backward sums the copies) where it meets image-driven work;
//! what the unroll returns always has the full batch.
//!
//! On a schedule, an area that reads the very same tensors as at its previous step (the static
//! image, the blank, zeros) reuses what it computed from them: its harbor and conv and the
//! cell's input paths ([`cell_zoo::Cell::drive`]), and its whole output when the cell keeps no state.
//! A frame sequence runs the plain loop, so the same schedule given as a sequence is the
//! reference the tests compare with.

use crate::model::{AreaDrive, Model};
use crate::schedule::Frames;
use cell_zoo::{Cell, StateTensors};
use serde::{Deserialize, Serialize};
use tensor::{Error, Result, Tensor, TensorId};

/// Which edges read the current step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimingMode {
    /// Every edge has a one-step delay (the reference's `unroll`).
    #[default]
    Biological,
    /// Feedforward and skip edges read the same step; feedback reads the previous one (the
    /// reference's `unroll_tf`).
    FullSweep,
}

/// What the caller will read from the unroll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Needed {
    /// Every area at every step (feature extraction, per-step evaluation).
    #[default]
    Everything,
    /// Only the logits of the last step: dead work is skipped.
    LastLogits,
    /// The logits of every step (per-step evaluation, window losses): work that reaches no
    /// step's logits is skipped. Whatever reaches an earlier step's logits also reaches the last
    /// step's (a later step only ever sees more), so the skipped set is the one of `LastLogits`.
    AllLogits,
}

/// How to unroll: for how long, with which timing, and which logits are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UnrollOptions {
    /// Number of steps (default: what the frames imply, else the model's `default_steps`).
    pub steps: Option<usize>,
    /// Biological (every edge one step) or full-sweep timing.
    pub mode: TimingMode,
    /// Which logits the caller reads, so that work reaching none of them is skipped.
    pub needed: Needed,
}

/// Every area's output and the logits at every step (`None` where skipped as dead work).
#[derive(Clone, Debug)]
pub struct Unrolled {
    /// `outputs[area][step]`.
    pub outputs: Vec<Vec<Option<Tensor>>>,
    /// `logits[step]`, each `[N, classes]`.
    pub logits: Vec<Option<Tensor>>,
}

impl Unrolled {
    /// Steps unrolled.
    pub fn steps(&self) -> usize {
        self.logits.len()
    }

    /// The logits of the last step.
    pub fn last_logits(&self) -> Result<&Tensor> {
        self.logits
            .last()
            .and_then(|l| l.as_ref())
            .ok_or_else(|| Error::InvalidArgument {
                op: "unroll",
                msg: "no logits at the last step".into(),
            })
    }

    /// Logits of every step; errors if dead-work skipping dropped some.
    pub fn all_logits(&self) -> Result<Vec<Tensor>> {
        self.logits
            .iter()
            .enumerate()
            .map(|(t, l)| {
                l.clone().ok_or_else(|| Error::InvalidArgument {
                    op: "unroll",
                    msg: format!("logits of step {t} were skipped; unroll with Needed::AllLogits"),
                })
            })
            .collect()
    }
}

/// One area's output at one step inside the unroll: computed at batch 1 when `uniform` (the same
/// for every example), with its copy widened to the batch made at most once, on first need.
#[derive(Clone)]
struct StepOut {
    x: Tensor,
    uniform: bool,
    wide: std::rc::Rc<std::cell::OnceCell<Tensor>>,
}

impl StepOut {
    fn new(x: Tensor, uniform: bool) -> StepOut {
        StepOut {
            x,
            uniform,
            wide: Default::default(),
        }
    }

    fn uniform(x: Tensor) -> StepOut {
        StepOut::new(x, true)
    }

    /// The output at the full batch `n`.
    fn full(&self, n: usize) -> Result<Tensor> {
        if !self.uniform {
            return Ok(self.x.clone());
        }
        if let Some(w) = self.wide.get() {
            return Ok(w.clone());
        }
        let w = self.x.repeat_batch(n)?;
        Ok(self.wide.get_or_init(|| w).clone())
    }
}

/// An area's reusable work at its last computed step, keyed by the identity of the inputs it
/// read.
#[derive(Clone)]
struct Memo {
    key: Vec<TensorId>,
    uniform: bool,
    drive: AreaDrive,
    /// The whole output, for an area whose cell keeps no state.
    out: Option<StepOut>,
}

impl Model {
    /// The shortest delay from each area's output to the readout, in steps.
    fn delays_to_readout(&self, mode: TimingMode) -> Vec<usize> {
        let l = self.areas.len();
        let ff_delay = match mode {
            TimingMode::Biological => 1,
            TimingMode::FullSweep => 0,
        };
        let mut d = vec![usize::MAX; l];
        d[l - 1] = ff_delay;
        // Relax over the chain and the extra edges until nothing changes (≤ l rounds).
        for _ in 0..=l {
            for i in 0..l {
                let mut best = d[i];
                if i + 1 < l {
                    best = best.min(d[i + 1].saturating_add(ff_delay));
                }
                for (j, a) in self.areas.iter().enumerate() {
                    if a.sources.contains(&i) {
                        let delay = if j > i { ff_delay } else { 1 };
                        best = best.min(d[j].saturating_add(delay));
                    }
                }
                d[i] = best;
            }
        }
        d
    }

    /// Runs the model over time. Returns every area's output at every step (and the logits).
    pub fn unroll(&self, frames: &Frames, opts: &UnrollOptions) -> Result<Unrolled> {
        let steps = opts
            .steps
            .or_else(|| frames.steps())
            .unwrap_or(self.spec.default_steps);
        if steps == 0 {
            return Err(Error::InvalidArgument {
                op: "unroll",
                msg: "need at least one step".into(),
            });
        }
        let dims = frames.frame_dims()?;
        let inp = self.spec.input;
        if dims.len() != 4 || dims[1..] != [inp.channels, inp.height, inp.width] {
            return Err(Error::InvalidArgument {
                op: "unroll",
                msg: format!(
                    "model `{}` expects frames of [N, {}, {}, {}], got {:?}",
                    self.spec.name, inp.channels, inp.height, inp.width, dims
                ),
            });
        }
        if let Frames::Sequence(v) = frames {
            if v.len() < steps {
                return Err(Error::InvalidArgument {
                    op: "unroll",
                    msg: format!("{steps} steps requested but only {} frames given", v.len()),
                });
            }
        }
        let n = dims[0];
        let device = self.device;
        let l = self.areas.len();
        let last_needed: Vec<usize> = match opts.needed {
            Needed::Everything => vec![steps - 1; l],
            Needed::LastLogits | Needed::AllLogits => self
                .delays_to_readout(opts.mode)
                .iter()
                .map(|d| (steps - 1).checked_sub(*d).unwrap_or(usize::MAX))
                .collect(),
        };
        let is_needed = |i: usize, t: usize| last_needed[i] != usize::MAX && t <= last_needed[i];

        // Batch-uniform work: until the image reaches an area, everything it computes comes from
        // zeros, biases and the blank frame, the same for every example. Such work runs once, at
        // batch 1, and is repeated to the batch only where it meets image-driven work (and for
        // what the unroll returns). Exact: the per-example arithmetic is unchanged.
        let zeros_out: Vec<StepOut> = self
            .shapes
            .areas
            .iter()
            .map(|s| {
                Tensor::zeros([1, s.output[0], s.output[1], s.output[2]], device)
                    .map(StepOut::uniform)
            })
            .collect::<Result<_>>()?;
        let mut states = Vec::with_capacity(l);
        for (a, s) in self.areas.iter().zip(&self.shapes.areas) {
            let x = Tensor::zeros([1, s.conv_out[0], s.conv_out[1], s.conv_out[2]], device)?;
            states.push(a.cell.zero_state(&x)?);
        }
        let mut state_uniform = vec![true; l];
        // The frame of step `t`; the blank is the same for every example.
        let blank = match frames {
            Frames::Image { image, blank, .. } => {
                let d = image.dims();
                Some(StepOut::uniform(Tensor::full(
                    *blank,
                    [1, d[1], d[2], d[3]],
                    device,
                )?))
            }
            Frames::Sequence(_) => None,
        };
        let frame = |t: usize| -> StepOut {
            match (frames, &blank) {
                (Frames::Sequence(v), _) => StepOut::new(v[t].clone(), false),
                (Frames::Image { image, .. }, Some(b)) => {
                    if frames.is_blank(t, self.spec.image_off) {
                        b.clone()
                    } else {
                        StepOut::new(image.clone(), false)
                    }
                }
                _ => unreachable!("image frames always have a blank"),
            }
        };

        // Repeated work: on a schedule, an area often reads the very same tensors at consecutive
        // steps (the static image, the blank, zeros before the image arrives). What it computes
        // from its inputs alone (harbor, conv, the cell's drive) is then reused, and so is its
        // whole output when its cell keeps no state. Outputs are bit-identical; gradients into
        // the reused work are summed before its backward instead of after. A frame sequence runs
        // the plain loop.
        let reuse = matches!(frames, Frames::Image { .. });
        let mut memo: Vec<Option<Memo>> = vec![None; l];

        let mut outs: Vec<Vec<Option<StepOut>>> = vec![vec![None; steps]; l];
        let mut logits: Vec<Option<StepOut>> = vec![None; steps];
        for t in 0..steps {
            for i in 0..l {
                if !is_needed(i, t) {
                    continue;
                }
                // Output of area `j` as read by area `i` at step `t`.
                let read = |j: usize| -> StepOut {
                    let same_step = opts.mode == TimingMode::FullSweep && j < i;
                    let at = if same_step { Some(t) } else { t.checked_sub(1) };
                    at.and_then(|s| outs[j][s].clone())
                        .unwrap_or_else(|| zeros_out[j].clone())
                };
                let ff = if i == 0 { frame(t) } else { read(i - 1) };
                let extra: Vec<StepOut> = self.areas[i].sources.iter().map(|&j| read(j)).collect();
                let uniform = state_uniform[i] && ff.uniform && extra.iter().all(|e| e.uniform);
                let key: Vec<TensorId> = std::iter::once(&ff)
                    .chain(&extra)
                    .map(|o| o.x.id())
                    .collect();
                let hit = memo[i]
                    .as_ref()
                    .filter(|m| m.key == key && m.uniform == uniform);
                if let Some(out) = hit.and_then(|m| m.out.clone()) {
                    outs[i][t] = Some(out);
                    continue;
                }
                let hit_drive = hit.map(|m| m.drive.clone());
                let (ff, extra) = if uniform {
                    (ff.x.clone(), extra.iter().map(|e| e.x.clone()).collect())
                } else {
                    if state_uniform[i] {
                        if !self.areas[i].cell.reads_batch_one_state() {
                            states[i] = states[i].try_map(&mut |s| s.repeat_batch(n))?;
                        }
                        state_uniform[i] = false;
                    }
                    (
                        ff.full(n)?,
                        extra
                            .iter()
                            .map(|e| e.full(n))
                            .collect::<Result<Vec<_>>>()?,
                    )
                };
                let drive = match hit_drive {
                    Some(d) => d,
                    None => self.area_drive(i, &ff, &extra)?,
                };
                let (y, next) = self.area_finish(i, &ff, &drive, &states[i])?;
                states[i] = next;
                let out = StepOut::new(y, uniform);
                outs[i][t] = Some(out.clone());
                if reuse {
                    let stateless = self.areas[i].cell.is_stateless();
                    memo[i] = Some(Memo {
                        key,
                        uniform,
                        drive,
                        out: stateless.then_some(out),
                    });
                }
            }
            let readout_needed = match opts.needed {
                Needed::Everything | Needed::AllLogits => true,
                Needed::LastLogits => t == steps - 1,
            };
            if readout_needed {
                let last = match opts.mode {
                    TimingMode::FullSweep => outs[l - 1][t].clone(),
                    TimingMode::Biological => t.checked_sub(1).and_then(|s| outs[l - 1][s].clone()),
                }
                .unwrap_or_else(|| zeros_out[l - 1].clone());
                logits[t] = Some(StepOut::new(self.readout_step(&last.x)?, last.uniform));
            }
        }
        let full = |v: Option<StepOut>| v.map(|o| o.full(n)).transpose();
        let outputs = outs
            .into_iter()
            .map(|area| area.into_iter().map(full).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let logits = logits.into_iter().map(full).collect::<Result<Vec<_>>>()?;
        Ok(Unrolled { outputs, logits })
    }

    /// The logits of the last step for `image` on the default schedule, skipping dead work.
    pub fn forward(&self, image: &Tensor, steps: Option<usize>) -> Result<Tensor> {
        let u = self.unroll(
            &Frames::image(image.clone()),
            &UnrollOptions {
                steps,
                mode: TimingMode::Biological,
                needed: Needed::LastLogits,
            },
        )?;
        u.last_logits().cloned()
    }
}
