//! The Reciprocal Gated Cell in its general, search-space form (SPEC §4.8). The hand-designed
//! shallow RGC (§4.7) is one setting of its knobs ([`RgcSpec::to_general`]).
//!
//! With gates `G(z) = offset + multiplier·f(z + bias)`:
//! ```text
//! x̂  = input_activation(x)            (+ feedback when it enters at the input)
//! c' = cell_act( G_τ(W_cc*c)∘c + G_g(W_hc*h)∘a_c ),  a_c = W_xc*x̂ or x̂ (+ R(u)) (+ feedback)
//! o  = W_xo*x̂ or x̂ (+ R(u)) (+ W_fb*fb) (+ W_co*c)
//! h' = out_act( G_τ(W_hh*h)∘h + G_g(W_ch*c)∘o )
//! ```
//! Gates read the previous `c` and `h` (both states update in parallel). `R(u)` is `u` itself, its
//! 1×1 no-bias projection when channels differ, resized (bilinear, align corners) when the spatial
//! size differs. Residual-to-gate switches add a conv of `R`-resized `u` inside a gate. Without a
//! cell state (gate size 0) `h' = out_act(G_τ(W_hh*h)∘h + o)`.

use crate::cell::{Cell, CellDims, CellInput, PairState};
use crate::layers::{activate, BuildCtx, Conv, ConvInit, LayerNorm, TemporalConv};
use crate::spec::{
    Activation, ConvKnob, FeedbackEntry, GateNonlinearity, GateSpec, GeneralRgcSpec, RgcSpec,
};
use tensor::ops::Squash;
use tensor::{Result, Tensor};

impl RgcSpec {
    /// The general-RGC knobs equal to this hand-designed cell with `out` output channels:
    /// sigmoid gates `1 − σ(·)`, a 3×3 input→cell conv, the identity bypass of `x` into `h`, and
    /// the bypassed input `u` entering the output gate.
    pub fn to_general(&self, out: usize) -> GeneralRgcSpec {
        let gate = GateSpec {
            conv: ConvKnob::dense(self.kernel),
            nonlinearity: GateNonlinearity::Sigmoid,
            offset: 1.0,
            multiplier: -1.0,
            bias: 0.0,
        };
        GeneralRgcSpec {
            cell_depth: out,
            tau: gate,
            gate,
            input_to_cell: ConvKnob::dense(self.kernel),
            input_to_out: ConvKnob::OFF,
            feedback: ConvKnob::dense(self.kernel),
            feedback_entry: FeedbackEntry::Out,
            feedback_activation: Activation::Identity,
            input_activation: Activation::Identity,
            cell_activation: Activation::Elu,
            out_activation: Activation::Elu,
            cell_to_out: false,
            cell_residual: false,
            out_residual: false,
            residual_to_cell_tau: false,
            residual_to_cell_gate: false,
            residual_to_out_tau: false,
            residual_to_out_gate: true,
            layer_norm: false,
            weight_decay: 1e-4,
            init_scale: 1.0,
            compat_ignore_separable_bias: false,
            compat_bias_free_convs: self.bias_free_gates,
            compat_clip_dense_kernels: self.clip_kernels,
            layer_norm_epsilon: crate::spec::DEFAULT_LN_EPS,
        }
    }
}

/// A gate conv and its squashing: `offset + multiplier·f(conv(state) + bias [+ extra])`.
#[derive(Clone, Debug)]
struct Gate {
    conv: TemporalConv,
    spec: GateSpec,
    /// The constant inside `f` (zero when the compat switch drops it on separable convs).
    bias: f32,
}

impl Gate {
    // A gate conv's hyper-parameters as the RGC spec lists them (see `Conv::new`).
    #[allow(clippy::too_many_arguments)]
    fn new(
        ctx: &mut BuildCtx<'_>,
        leaf: &str,
        spec: GateSpec,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        init: ConvInit,
        ignore_sep_bias: bool,
    ) -> Result<Gate> {
        let bias = if ignore_sep_bias && spec.conv.depth_separable {
            0.0
        } else {
            spec.bias
        };
        Ok(Gate {
            conv: TemporalConv::new(ctx, leaf, spec.conv, c_in, c_out, hw, init)?,
            spec,
            bias,
        })
    }

    /// The gate at the batch of `state`, or at `extra`'s when that is wider (a batch-1 state is
    /// the same for every example, see [`Cell::reads_batch_one_state`]).
    fn apply(&self, state: &Tensor, extra: Option<Tensor>) -> Result<Tensor> {
        let mut z = self.conv.forward(state)?;
        if let Some(e) = extra {
            z = widen(z, e.dims()[0])?.add(&e)?;
        }
        let f = match self.spec.nonlinearity {
            GateNonlinearity::Sigmoid => Squash::Sigmoid,
            GateNonlinearity::Tanh => Squash::Tanh,
        };
        // One pass for `offset + multiplier·f(z + bias)`.
        z.squash(f, self.bias, self.spec.multiplier, self.spec.offset)
    }
}

/// `u` brought to a target's channels (1×1 no-bias projection) and size (bilinear resize).
#[derive(Clone, Debug)]
struct Residual {
    projection: Option<Conv>,
    hw: (usize, usize),
    resize: bool,
}

impl Residual {
    fn new(
        ctx: &mut BuildCtx<'_>,
        leaf: &str,
        dims: &CellDims,
        c_out: usize,
        scale: f32,
    ) -> Result<Self> {
        let projection = if dims.u_channels != c_out {
            let init = ConvInit { scale, bias: None };
            Some(Conv::new(ctx, leaf, dims.u_channels, c_out, 1, 1, 1, init)?)
        } else {
            None
        };
        Ok(Residual {
            projection,
            hw: dims.hw,
            resize: dims.u_hw != dims.hw,
        })
    }

    fn apply(&self, u: &Tensor) -> Result<Tensor> {
        let u = if self.resize {
            u.resize_bilinear(self.hw.0, self.hw.1, true)?
        } else {
            u.clone()
        };
        match &self.projection {
            Some(p) => p.forward(&u),
            None => Ok(u),
        }
    }
}

/// A conv of the (resized) input `u` added inside a gate.
#[derive(Clone, Debug)]
struct GateResidual {
    conv: Conv,
    resize: Option<(usize, usize)>,
}

impl GateResidual {
    fn new(
        ctx: &mut BuildCtx<'_>,
        leaf: &str,
        dims: &CellDims,
        c_out: usize,
        k: usize,
        init: ConvInit,
    ) -> Result<Self> {
        Ok(GateResidual {
            conv: Conv::new(ctx, leaf, dims.u_channels, c_out, k.max(1), 1, 1, init)?,
            resize: (dims.u_hw != dims.hw).then_some(dims.hw),
        })
    }
    fn apply(&self, u: &Tensor) -> Result<Tensor> {
        match self.resize {
            Some((h, w)) => self.conv.forward(&u.resize_bilinear(h, w, true)?),
            None => self.conv.forward(u),
        }
    }
}

/// The built general RGC.
#[derive(Clone, Debug)]
pub struct RgcCell {
    spec: GeneralRgcSpec,
    out: usize,
    /// `(W_cc, W_hc, W_xc)`: present when the cell state is used.
    cell: Option<CellPath>,
    tau_h: Gate,
    gate_h: Option<Gate>,
    input_to_out: Option<TemporalConv>,
    cell_to_out: Option<Conv>,
    cell_residual: Option<Residual>,
    out_residual: Option<Residual>,
    res_gates: [Option<GateResidual>; 4],
    feedback: Option<TemporalConv>,
    norms: Option<(LayerNorm, LayerNorm)>,
}

#[derive(Clone, Debug)]
struct CellPath {
    tau: Gate,
    gate: Gate,
    input: Option<TemporalConv>,
}

/// `spec` with its dense temporal kernels clipped to an `hw` map when it asks for that
/// (separable ones always are, by [`TemporalConv`]).
fn fitted(spec: &GeneralRgcSpec, hw: (usize, usize)) -> GeneralRgcSpec {
    let mut s = spec.clone();
    if s.compat_clip_dense_kernels {
        let fit = |k: &mut ConvKnob| {
            if k.is_on() && !k.depth_separable {
                k.size = k.size.min(hw.0).min(hw.1).max(1);
            }
        };
        fit(&mut s.tau.conv);
        fit(&mut s.gate.conv);
        fit(&mut s.input_to_cell);
        fit(&mut s.input_to_out);
        fit(&mut s.feedback);
    }
    s
}

impl RgcCell {
    /// The general RGC with the knobs of `spec` for an area of `dims`, parameters under
    /// `ctx.prefix`.
    pub fn new(ctx: &mut BuildCtx<'_>, spec: &GeneralRgcSpec, dims: &CellDims) -> Result<RgcCell> {
        let spec = &fitted(spec, dims.hw);
        let out = dims.x_channels;
        let cd = spec.cell_depth;
        let hw = dims.hw;
        let init = ConvInit {
            scale: spec.init_scale,
            bias: (!spec.compat_bias_free_convs).then_some(0.0),
        };
        let ignore = spec.compat_ignore_separable_bias;
        let uses_cell = spec.uses_cell();
        let cell = if uses_cell {
            Some(CellPath {
                tau: Gate::new(ctx, "tau_cc", spec.tau, cd, cd, hw, init, ignore)?,
                gate: Gate::new(ctx, "gate_hc", spec.gate, out, cd, hw, init, ignore)?,
                input: if spec.input_to_cell.is_on() {
                    Some(TemporalConv::new(
                        ctx,
                        "input_to_cell",
                        spec.input_to_cell,
                        out,
                        cd,
                        hw,
                        init,
                    )?)
                } else {
                    None
                },
            })
        } else {
            None
        };
        let tau_h = Gate::new(ctx, "tau_hh", spec.tau, out, out, hw, init, ignore)?;
        let gate_h = if uses_cell {
            Some(Gate::new(
                ctx, "gate_ch", spec.gate, cd, out, hw, init, ignore,
            )?)
        } else {
            None
        };
        let input_to_out = if spec.input_to_out.is_on() {
            Some(TemporalConv::new(
                ctx,
                "input_to_out",
                spec.input_to_out,
                out,
                out,
                hw,
                init,
            )?)
        } else {
            None
        };
        let cell_to_out = if spec.cell_to_out && uses_cell {
            Some(Conv::new(
                ctx,
                "cell_to_out",
                cd,
                out,
                spec.tau.conv.size.max(1),
                1,
                1,
                init,
            )?)
        } else {
            None
        };
        let no_bias_scale = spec.init_scale;
        let cell_residual = if spec.cell_residual && uses_cell {
            Some(Residual::new(
                ctx,
                "cell_residual",
                dims,
                cd,
                no_bias_scale,
            )?)
        } else {
            None
        };
        let out_residual = if spec.out_residual {
            Some(Residual::new(
                ctx,
                "out_residual",
                dims,
                out,
                no_bias_scale,
            )?)
        } else {
            None
        };
        let gk = |g: &GateSpec| TemporalConv::effective_kernel(g.conv, hw);
        let mut res_gates: [Option<GateResidual>; 4] = [None, None, None, None];
        let wanted = [
            (
                spec.residual_to_cell_tau && uses_cell,
                "residual_to_cell_tau",
                cd,
                gk(&spec.tau),
            ),
            (
                spec.residual_to_cell_gate && uses_cell,
                "residual_to_cell_gate",
                cd,
                gk(&spec.gate),
            ),
            (
                spec.residual_to_out_tau,
                "residual_to_out_tau",
                out,
                gk(&spec.tau),
            ),
            (
                spec.residual_to_out_gate && uses_cell,
                "residual_to_out_gate",
                out,
                gk(&spec.gate),
            ),
        ];
        for (slot, (on, leaf, c, k)) in res_gates.iter_mut().zip(wanted) {
            if on {
                *slot = Some(GateResidual::new(ctx, leaf, dims, c, k, init)?);
            }
        }
        let feedback = if dims.feedback_channels > 0 {
            let target = match spec.feedback_entry {
                FeedbackEntry::Input | FeedbackEntry::Out => out,
                FeedbackEntry::Cell => cd,
            };
            let knob = if spec.feedback.is_on() {
                spec.feedback
            } else {
                ConvKnob::dense(1)
            };
            Some(TemporalConv::new(
                ctx,
                "feedback",
                knob,
                dims.feedback_channels,
                target,
                hw,
                init,
            )?)
        } else {
            None
        };
        let norms = if spec.layer_norm {
            let eps = spec.layer_norm_epsilon;
            Some((
                LayerNorm::new(ctx, "ln_c", cd, eps)?,
                LayerNorm::new(ctx, "ln_h", out, eps)?,
            ))
        } else {
            None
        };
        Ok(RgcCell {
            spec: spec.clone(),
            out,
            cell,
            tau_h,
            gate_h,
            input_to_out,
            cell_to_out,
            cell_residual,
            out_residual,
            res_gates,
            feedback,
            norms,
        })
    }

    fn residual_gate(&self, i: usize, u: &Tensor) -> Result<Option<Tensor>> {
        self.res_gates[i].as_ref().map(|r| r.apply(u)).transpose()
    }
}

/// `t` repeated to batch `n` when it is a batch-1 tensor and `n` is larger.
fn widen(t: Tensor, n: usize) -> Result<Tensor> {
    if t.dims()[0] < n {
        t.repeat_batch(n)
    } else {
        Ok(t)
    }
}

fn add_opt(a: Tensor, b: Option<Tensor>) -> Result<Tensor> {
    match b {
        Some(b) => a.add(&b),
        None => Ok(a),
    }
}

impl Cell for RgcCell {
    type State = PairState;
    type Drive = RgcDrive;

    fn zero_state(&self, x: &Tensor) -> Result<PairState> {
        let (n, _, h, w) = x.shape().dims4("rgc zero_state")?;
        let cd = if self.cell.is_some() {
            self.spec.cell_depth
        } else {
            0
        };
        Ok(PairState {
            c: Tensor::zeros([n, cd.max(1), h, w], x.device())?,
            h: Tensor::zeros([n, self.out, h, w], x.device())?,
        })
    }

    fn drive(&self, input: &CellInput<'_>) -> Result<RgcDrive> {
        self.input_paths(input)
    }

    fn reads_batch_one_state(&self) -> bool {
        true
    }

    fn step_driven(
        &self,
        _input: &CellInput<'_>,
        drive: &RgcDrive,
        s: &PairState,
    ) -> Result<(Tensor, PairState)> {
        self.step_with(drive, s)
    }
}

/// What an RGC step computes from its inputs alone: the cell drive `a_c`, the output drive `o`
/// (before `W_co*c`) and the residual terms of the four gates.
#[derive(Clone)]
pub struct RgcDrive {
    a: Option<Tensor>,
    o: Tensor,
    res_gates: [Option<Tensor>; 4],
}

impl RgcCell {
    fn input_paths(&self, input: &CellInput<'_>) -> Result<RgcDrive> {
        let fb = match (&self.feedback, input.feedback) {
            (Some(conv), Some(f)) => {
                Some(activate(&conv.forward(f)?, self.spec.feedback_activation)?)
            }
            _ => None,
        };
        let entry = self.spec.feedback_entry;
        let mut x = activate(input.x, self.spec.input_activation)?;
        if entry == FeedbackEntry::Input {
            x = add_opt(x, fb.clone())?;
        }
        let a = match &self.cell {
            Some(cp) => {
                let mut a = match &cp.input {
                    Some(conv) => conv.forward(&x)?,
                    None => x.clone(),
                };
                if let Some(r) = &self.cell_residual {
                    a = a.add(&r.apply(input.u)?)?;
                }
                if entry == FeedbackEntry::Cell {
                    a = add_opt(a, fb.clone())?;
                }
                Some(a)
            }
            None => None,
        };
        let mut o = match &self.input_to_out {
            Some(conv) => conv.forward(&x)?,
            None => x.clone(),
        };
        if let Some(r) = &self.out_residual {
            o = o.add(&r.apply(input.u)?)?;
        }
        if entry == FeedbackEntry::Out {
            o = add_opt(o, fb)?;
        }
        let mut res_gates: [Option<Tensor>; 4] = Default::default();
        for (i, g) in res_gates.iter_mut().enumerate() {
            *g = self.residual_gate(i, input.u)?;
        }
        Ok(RgcDrive { a, o, res_gates })
    }

    /// One step from the drive. The state may be at batch 1 while the drive has the whole
    /// batch (the first step with the image): the state's convs then run once and their results
    /// are repeated to the batch where they meet the drive.
    fn step_with(&self, d: &RgcDrive, s: &PairState) -> Result<(Tensor, PairState)> {
        let n = d.o.dims()[0];
        let c_next = match (&self.cell, &d.a) {
            (Some(cp), Some(a)) => {
                let tau = widen(cp.tau.apply(&s.c, d.res_gates[0].clone())?, n)?;
                let gate = widen(cp.gate.apply(&s.h, d.res_gates[1].clone())?, n)?;
                let mut c = tau.mul_add_mul(&widen(s.c.clone(), n)?, &gate, a)?;
                if let Some((ln, _)) = &self.norms {
                    c = ln.forward(&c)?;
                }
                Some(activate(&c, self.spec.cell_activation)?)
            }
            _ => None,
        };
        let mut o = d.o.clone();
        if let Some(conv) = &self.cell_to_out {
            o = o.add(&widen(conv.forward(&s.c)?, n)?)?;
        }
        let tau = widen(self.tau_h.apply(&s.h, d.res_gates[2].clone())?, n)?;
        let s_h = widen(s.h.clone(), n)?;
        let mut h = match &self.gate_h {
            Some(g) => {
                let gate = widen(g.apply(&s.c, d.res_gates[3].clone())?, n)?;
                tau.mul_add_mul(&s_h, &gate, &o)?
            }
            None => tau.mul(&s_h)?.add(&o)?,
        };
        if let Some((_, ln)) = &self.norms {
            h = ln.forward(&h)?;
        }
        let h = activate(&h, self.spec.out_activation)?;
        let c = c_next.unwrap_or_else(|| s.c.clone());
        Ok((h.clone(), PairState { c, h }))
    }
}
