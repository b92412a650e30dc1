//! `CellSpec::build`: from data to a cell with registered parameters.

use crate::any::AnyCell;
use crate::cell::CellDims;
use crate::cells::*;
use crate::layers::BuildCtx;
use crate::rgc::RgcCell;
use crate::spec::CellSpec;
use tensor::Result;

impl CellSpec {
    /// Builds the cell for an area whose conv output has `dims.x_channels` channels at `dims.hw`,
    /// registering its parameters under `ctx.prefix`.
    pub fn build(&self, ctx: &mut BuildCtx<'_>, dims: &CellDims) -> Result<AnyCell> {
        let x = dims.x_channels;
        let out = self.out_channels(x);
        Ok(match self {
            CellSpec::Identity => AnyCell::Identity(IdentityCell),
            CellSpec::TimeDecay => AnyCell::TimeDecay(TimeDecayCell::new(ctx)?),
            CellSpec::SimpleRnn {
                kernel,
                layer_norm,
                layer_norm_epsilon,
                ..
            } => AnyCell::SimpleRnn(SimpleRnnCell::new(
                ctx,
                x,
                out,
                *kernel,
                layer_norm.then_some(*layer_norm_epsilon),
            )?),
            CellSpec::Gru { kernel, .. } => AnyCell::Gru(GruCell::new(ctx, x, out, *kernel)?),
            CellSpec::Lstm {
                kernel,
                forget_bias,
                peepholes,
                layer_norm,
                init_scale,
                bias_init,
                layer_norm_epsilon,
                ..
            } => AnyCell::Lstm(LstmCell::new(
                ctx,
                x,
                out,
                dims.hw,
                LstmOptions {
                    kernel: *kernel,
                    forget_bias: *forget_bias,
                    peepholes: *peepholes,
                    layer_norm: layer_norm.then_some(*layer_norm_epsilon),
                    init_scale: *init_scale,
                    bias_init: *bias_init,
                },
            )?),
            CellSpec::Ugrnn { kernel, .. } => AnyCell::Ugrnn(UgrnnCell::new(ctx, x, out, *kernel)?),
            CellSpec::IntersectionRnn { kernel } => {
                AnyCell::IntersectionRnn(IntersectionRnnCell::new(ctx, x, *kernel)?)
            }
            CellSpec::Rgc(r) => AnyCell::Rgc(Box::new(RgcCell::new(ctx, &r.to_general(x), dims)?)),
            CellSpec::GeneralRgc(g) => AnyCell::Rgc(Box::new(RgcCell::new(ctx, g, dims)?)),
        })
    }
}
