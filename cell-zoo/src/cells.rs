//! Time-decay, SimpleRNN, GRU, LSTM, UGRNN and IntersectionRNN (SPEC §4.1–4.6). Every gated cell
//! convolves the channel concatenation `[x, h]` once and splits the result into its gates.

use crate::cell::{mix, zeros_with_channels, Cell, CellInput, PairState};
use crate::layers::{BuildCtx, Conv, ConvInit, LayerNorm};
use tensor::{Result, Tensor};

/// The [`Cell`] items of a cell that splits no input-only work out of its step: its drive is `()`
/// and [`Cell::step_driven`] does the whole step.
macro_rules! no_drive {
    () => {
        type Drive = ();
        fn drive(&self, _input: &CellInput<'_>) -> Result<()> {
            Ok(())
        }
    };
}

/// No recurrence: `h = x`.
#[derive(Clone, Debug)]
pub struct IdentityCell;

impl Cell for IdentityCell {
    type State = ();
    no_drive!();
    fn zero_state(&self, _x: &Tensor) -> Result<()> {
        Ok(())
    }
    fn step_driven(&self, input: &CellInput<'_>, _drive: &(), _state: &()) -> Result<(Tensor, ())> {
        Ok((input.x.clone(), ()))
    }
    fn is_stateless(&self) -> bool {
        true
    }
}

/// `s' = m·s + x`, one trainable scalar `m` initialised at 0.
#[derive(Clone, Debug)]
pub struct TimeDecayCell {
    /// The decay `m`, shape `[1]`.
    pub decay: Tensor,
}

impl TimeDecayCell {
    /// Registers the decay `m` (initialised at 0) under `ctx.prefix`.
    pub fn new(ctx: &mut BuildCtx<'_>) -> Result<Self> {
        Ok(TimeDecayCell {
            decay: ctx.constant("decay", &[1], 0.0)?,
        })
    }
}

impl Cell for TimeDecayCell {
    type State = Tensor;
    no_drive!();
    fn zero_state(&self, x: &Tensor) -> Result<Tensor> {
        x.zeros_like()
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        _drive: &(),
        s: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let next = s.mul(&self.decay)?.add(input.x)?;
        Ok((next.clone(), next))
    }
}

/// `h' = ELU(LN(W_x*x + b_x + W_h*h + b_h))`: the reference's `ConvNormBasicCell`, whose input
/// and state convs each carry a bias.
#[derive(Clone, Debug)]
pub struct SimpleRnnCell {
    /// `W_x`, from the `x_ch` input channels to `out` (the reference's input conv).
    pub input: Conv,
    /// `W_h`, from the `out` state channels to `out`.
    pub state: Conv,
    /// The layer norm `LN`, when the cell has one.
    pub norm: Option<LayerNorm>,
    /// Output (and state) channels.
    pub out: usize,
}

impl SimpleRnnCell {
    /// A `k`×`k` SimpleRNN from `x_ch` to `out` channels, with layer norm when `ln`.
    pub fn new(
        ctx: &mut BuildCtx<'_>,
        x_ch: usize,
        out: usize,
        k: usize,
        ln: Option<f32>,
    ) -> Result<Self> {
        Ok(SimpleRnnCell {
            input: Conv::new(ctx, "input", x_ch, out, k, 1, 1, ConvInit::lecun(true))?,
            state: Conv::new(ctx, "state", out, out, k, 1, 1, ConvInit::lecun(true))?,
            norm: match ln {
                Some(eps) => Some(LayerNorm::new(ctx, "ln", out, eps)?),
                None => None,
            },
            out,
        })
    }
}

impl Cell for SimpleRnnCell {
    type State = Tensor;
    type Drive = Tensor;
    fn zero_state(&self, x: &Tensor) -> Result<Tensor> {
        zeros_with_channels(x, self.out)
    }
    /// The input conv reads only `x`, so the unroll reuses it while `x` repeats.
    fn drive(&self, input: &CellInput<'_>) -> Result<Tensor> {
        self.input.forward(input.x)
    }
    fn step_driven(
        &self,
        _input: &CellInput<'_>,
        drive: &Tensor,
        h: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let mut z = drive.add(&self.state.forward(h)?)?;
        if let Some(n) = &self.norm {
            z = n.forward(&z)?;
        }
        let h = z.elu()?;
        Ok((h.clone(), h))
    }
}

/// ConvGRU: `r = σ(W_r*[x,h] + b_r + 1)`, `z = σ(W_z*[x,h] + b_z)` (gate biases initialised at
/// 1), `ĥ = tanh(W*[x, r∘h] + b)`, `h' = z∘h + (1−z)∘ĥ`.
#[derive(Clone, Debug)]
pub struct GruCell {
    /// `W_r` and `W_z` as one conv from `[x, h]` to `2·out` channels.
    pub gates: Conv,
    /// `W`, from `[x, r∘h]` to `out` channels.
    pub candidate: Conv,
    /// Output (and state) channels.
    pub out: usize,
}

impl GruCell {
    /// A `k`×`k` ConvGRU from `x_ch` to `out` channels.
    pub fn new(ctx: &mut BuildCtx<'_>, x_ch: usize, out: usize, k: usize) -> Result<Self> {
        let gate_init = ConvInit {
            scale: 1.0,
            bias: Some(1.0),
        };
        Ok(GruCell {
            gates: Conv::new(ctx, "gates", x_ch + out, 2 * out, k, 1, 1, gate_init)?,
            candidate: Conv::new(
                ctx,
                "candidate",
                x_ch + out,
                out,
                k,
                1,
                1,
                ConvInit::lecun(true),
            )?,
            out,
        })
    }
}

impl Cell for GruCell {
    type State = Tensor;
    no_drive!();
    fn zero_state(&self, x: &Tensor) -> Result<Tensor> {
        zeros_with_channels(x, self.out)
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        _drive: &(),
        h: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let g = self.gates.forward(&Tensor::cat(&[input.x, h], 1)?)?;
        let parts = g.split(&[self.out, self.out], 1)?;
        let r = parts[0].add_scalar(1.0)?.sigmoid()?;
        let z = parts[1].sigmoid()?;
        let cand = self
            .candidate
            .forward(&Tensor::cat(&[input.x, &r.mul(h)?], 1)?)?
            .tanh()?;
        let h = mix(&z, h, &cand)?;
        Ok((h.clone(), h))
    }
}

/// Settings of an [`LstmCell`].
#[derive(Clone, Copy, Debug)]
pub struct LstmOptions {
    /// Kernel size of the gate conv.
    pub kernel: usize,
    /// Constant added to the forget gate's pre-activation.
    pub forget_bias: f32,
    /// Per-position peephole weights from the cell state into the gates.
    pub peepholes: bool,
    /// Layer norm on each gate and on the cell state with this epsilon, or none.
    pub layer_norm: Option<f32>,
    /// Variance-scaling scale of the gate conv (1 = LeCun).
    pub init_scale: f32,
    /// Constant initial value of the gate biases.
    pub bias_init: f32,
}

/// ConvLSTM: one conv over `[x, h]` gives i, j, f, o (TF order);
/// `c' = c∘σ(f + forget_bias) + σ(i)∘tanh(j)`, `h' = tanh(c')∘σ(o)`. Layer norm normalises each
/// gate's pre-activation and `c'`. Peepholes are per-position weights (C×H×W) added after the
/// norm, all three reading the previous `c`: `σ(LN(i) + w_i∘c)`, `σ(LN(f) + forget_bias +
/// w_f∘c)`, `σ(LN(o) + w_o∘c)`, as the reference's `ConvLSTMCell` computes them.
#[derive(Clone, Debug)]
pub struct LstmCell {
    /// The gate conv, from `[x, h]` to `4·out` channels (i, j, f, o).
    pub conv: Conv,
    /// Constant added to the forget gate's pre-activation.
    pub forget_bias: f32,
    /// `(w_ci, w_cf, w_co)`, each `[1, C, H, W]`.
    pub peepholes: Option<[Tensor; 3]>,
    /// `(i, j, f, o, c)` norms.
    pub norms: Option<[LayerNorm; 5]>,
    /// Output (and state) channels.
    pub out: usize,
}

impl LstmCell {
    /// A ConvLSTM from `x_ch` to `out` channels on `hw` maps (the peepholes' size).
    pub fn new(
        ctx: &mut BuildCtx<'_>,
        x_ch: usize,
        out: usize,
        hw: (usize, usize),
        o: LstmOptions,
    ) -> Result<Self> {
        let init = ConvInit {
            scale: o.init_scale,
            bias: Some(o.bias_init),
        };
        let conv = Conv::new(ctx, "conv", x_ch + out, 4 * out, o.kernel, 1, 1, init)?;
        let peepholes = if o.peepholes {
            let dims = [1, out, hw.0, hw.1];
            Some([
                ctx.constant("peephole_i", &dims, 0.0)?,
                ctx.constant("peephole_f", &dims, 0.0)?,
                ctx.constant("peephole_o", &dims, 0.0)?,
            ])
        } else {
            None
        };
        let norms = match o.layer_norm {
            Some(eps) => Some([
                LayerNorm::new(ctx, "ln_i", out, eps)?,
                LayerNorm::new(ctx, "ln_j", out, eps)?,
                LayerNorm::new(ctx, "ln_f", out, eps)?,
                LayerNorm::new(ctx, "ln_o", out, eps)?,
                LayerNorm::new(ctx, "ln_c", out, eps)?,
            ]),
            None => None,
        };
        Ok(LstmCell {
            conv,
            forget_bias: o.forget_bias,
            peepholes,
            norms,
            out,
        })
    }
}

impl Cell for LstmCell {
    type State = PairState;
    no_drive!();
    fn zero_state(&self, x: &Tensor) -> Result<PairState> {
        let z = zeros_with_channels(x, self.out)?;
        Ok(PairState { c: z.clone(), h: z })
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        _drive: &(),
        s: &PairState,
    ) -> Result<(Tensor, PairState)> {
        let g = self.conv.forward(&Tensor::cat(&[input.x, &s.h], 1)?)?;
        let mut p = g.split(&[self.out; 4], 1)?;
        if let Some(n) = &self.norms {
            for k in 0..4 {
                p[k] = n[k].forward(&p[k])?;
            }
        }
        if let Some([wi, wf, wo]) = &self.peepholes {
            p[0] = p[0].add(&s.c.mul(wi)?)?;
            p[2] = p[2].add(&s.c.mul(wf)?)?;
            p[3] = p[3].add(&s.c.mul(wo)?)?;
        }
        let keep = p[2].add_scalar(self.forget_bias)?.sigmoid()?;
        let write = p[0].sigmoid()?.mul(&p[1].tanh()?)?;
        let mut c = s.c.mul(&keep)?.add(&write)?;
        if let Some(n) = &self.norms {
            c = n[4].forward(&c)?;
        }
        let o = &p[3];
        let h = c.tanh()?.mul(&o.sigmoid()?)?;
        Ok((h.clone(), PairState { c, h }))
    }
}

/// UGRNN: `g = σ(W_g*[x,h] + b + 1)`, `ĉ = tanh(W_c*[x,h] + b)`, `h' = g∘h + (1−g)∘ĉ`.
#[derive(Clone, Debug)]
pub struct UgrnnCell {
    /// `W_g` and `W_c` as one conv from `[x, h]` to `2·out` channels.
    pub conv: Conv,
    /// Output (and state) channels.
    pub out: usize,
}

impl UgrnnCell {
    /// A `k`×`k` UGRNN from `x_ch` to `out` channels.
    pub fn new(ctx: &mut BuildCtx<'_>, x_ch: usize, out: usize, k: usize) -> Result<Self> {
        Ok(UgrnnCell {
            conv: Conv::new(
                ctx,
                "conv",
                x_ch + out,
                2 * out,
                k,
                1,
                1,
                ConvInit::lecun(true),
            )?,
            out,
        })
    }
}

impl Cell for UgrnnCell {
    type State = Tensor;
    no_drive!();
    fn zero_state(&self, x: &Tensor) -> Result<Tensor> {
        zeros_with_channels(x, self.out)
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        _drive: &(),
        h: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let p = self
            .conv
            .forward(&Tensor::cat(&[input.x, h], 1)?)?
            .split(&[self.out, self.out], 1)?;
        let g = p[0].add_scalar(1.0)?.sigmoid()?;
        let h = mix(&g, h, &p[1].tanh()?)?;
        Ok((h.clone(), h))
    }
}

/// IntersectionRNN: one conv over `[x,h]` gives gh, h̃, gy, ỹ;
/// state `h' = σ(gh+1)∘h + (1−σ(gh+1))∘tanh(h̃)`, output `y = σ(gy+1)∘x + (1−σ(gy+1))∘ReLU(ỹ)`.
#[derive(Clone, Debug)]
pub struct IntersectionRnnCell {
    /// One conv from `[x, h]` to the four `x_ch`-channel maps gh, h̃, gy, ỹ.
    pub conv: Conv,
    /// Output (and state) channels, equal to the drive's.
    pub out: usize,
}

impl IntersectionRnnCell {
    /// A `k`×`k` IntersectionRNN on `x_ch`-channel maps.
    pub fn new(ctx: &mut BuildCtx<'_>, x_ch: usize, k: usize) -> Result<Self> {
        Ok(IntersectionRnnCell {
            conv: Conv::new(
                ctx,
                "conv",
                2 * x_ch,
                4 * x_ch,
                k,
                1,
                1,
                ConvInit::lecun(true),
            )?,
            out: x_ch,
        })
    }
}

impl Cell for IntersectionRnnCell {
    type State = Tensor;
    no_drive!();
    fn zero_state(&self, x: &Tensor) -> Result<Tensor> {
        zeros_with_channels(x, self.out)
    }
    fn step_driven(
        &self,
        input: &CellInput<'_>,
        _drive: &(),
        h: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let p = self
            .conv
            .forward(&Tensor::cat(&[input.x, h], 1)?)?
            .split(&[self.out; 4], 1)?;
        let gh = p[0].add_scalar(1.0)?.sigmoid()?;
        let next = mix(&gh, h, &p[1].tanh()?)?;
        let gy = p[2].add_scalar(1.0)?.sigmoid()?;
        let y = mix(&gy, input.x, &p[3].relu()?)?;
        Ok((y, next))
    }
}
