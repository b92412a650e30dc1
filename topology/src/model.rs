//! A built network: parameters for every area and the readout, checked shapes, and the per-area
//! computation of one step (harbor → conv → cell → residual tail → pool).

use crate::shapes::{self, ModelShapes};
use crate::spec::{ModelSpec, ReadoutKind, SpecError};
use cell_zoo::{
    activate, Activation, AnyCell, AnyDrive, AnyState, BuildCtx, Cell, CellDims, CellInput, Conv,
    ConvInit,
};
use tensor::ops::{Conv2dOpts, Padding, Pool2dOpts};
use tensor::{Device, ParamStore, Result, Rng, Tensor};

/// Errors building a model.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec is invalid (names the area, edge or field).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Allocating or initialising a parameter failed.
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
}

/// The ResNet-style tail: conv → + residual → ELU.
#[derive(Clone, Debug)]
pub(crate) struct ResidualTail {
    pub conv: Conv,
    pub projection: Option<Conv>,
}

/// What an area computes from a step's inputs alone (see [`Model::area_drive`]).
#[derive(Clone)]
pub(crate) struct AreaDrive {
    x: Tensor,
    feedback: Option<Tensor>,
    cell: AnyDrive,
}

/// One built area.
#[derive(Clone, Debug)]
pub struct Area {
    /// The area's name in the spec.
    pub name: String,
    pub(crate) conv: Conv,
    pub(crate) activation: Activation,
    pub(crate) cell: AnyCell,
    pub(crate) residual: Option<ResidualTail>,
    pub(crate) pool: Option<Pool2dOpts>,
    /// Indices of extra sources, in harbor order.
    pub(crate) sources: Vec<usize>,
    /// Whether the cell takes the feedback itself (general RGC) instead of the conv.
    pub(crate) routes_feedback: bool,
    pub(crate) input_hw: (usize, usize),
    pub(crate) cell_hw: (usize, usize),
}

/// How logits are made from the last area.
#[derive(Clone, Debug)]
pub(crate) enum Readout {
    GapFc { weight: Tensor, bias: Tensor },
    ConvGap { conv: Conv },
}

/// A ConvRNN ready to unroll.
pub struct Model {
    /// The spec it was built from.
    pub spec: ModelSpec,
    /// The inferred shapes of every area and the readout.
    pub shapes: ModelShapes,
    /// Every parameter, named `area/conv/weight`, `area/cell/...`, `readout/...`.
    pub params: ParamStore,
    pub(crate) areas: Vec<Area>,
    pub(crate) readout: Readout,
    /// Where the parameters live and the unroll runs.
    pub device: Device,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model({}, {} parameters)",
            self.spec.name,
            self.params.num_elements()
        )
    }
}

fn hw(c: &[usize; 3]) -> (usize, usize) {
    (c[1], c[2])
}

impl Model {
    /// Validates `spec`, infers its shapes and initialises its parameters from `seed` (SPEC §5:
    /// variance scaling for convs, N(0, 0.01) for the readout).
    pub fn new(
        spec: &ModelSpec,
        device: Device,
        seed: u64,
    ) -> std::result::Result<Model, BuildError> {
        let shapes = shapes::infer(spec)?;
        let mut params = ParamStore::new();
        let mut rng = Rng::new(seed);
        let mut areas = Vec::with_capacity(spec.areas.len());
        for (a, sh) in spec.areas.iter().zip(&shapes.areas) {
            let mut ctx = BuildCtx {
                params: &mut params,
                prefix: a.name.clone(),
                rng: &mut rng,
                device,
            };
            let conv = Conv::new(
                &mut ctx,
                "conv",
                sh.conv_in_channels,
                a.conv.channels,
                a.conv.kernel,
                a.conv.stride,
                1,
                ConvInit::lecun(a.conv.bias),
            )?;
            let dims = CellDims {
                x_channels: a.conv.channels,
                u_channels: sh.input[0],
                feedback_channels: sh.cell_feedback_channels,
                hw: hw(&sh.conv_out),
                u_hw: hw(&sh.input),
            };
            let cell = {
                let mut cctx = ctx.sub("cell");
                a.cell.build(&mut cctx, &dims)?
            };
            let residual = match a.residual {
                Some(r) => Some(ResidualTail {
                    conv: Conv::new(
                        &mut ctx,
                        "post_conv",
                        sh.cell_out[0],
                        a.conv.channels,
                        r.kernel,
                        1,
                        1,
                        ConvInit::lecun(true),
                    )?,
                    projection: if sh.input[0] != a.conv.channels {
                        Some(Conv::new(
                            &mut ctx,
                            "projection",
                            sh.input[0],
                            a.conv.channels,
                            1,
                            1,
                            1,
                            ConvInit::lecun(false),
                        )?)
                    } else {
                        None
                    },
                }),
                None => None,
            };
            let pool = a.pool.map(|p| Pool2dOpts {
                kernel: (p.kernel, p.kernel),
                stride: (p.stride, p.stride),
                padding: Padding::Same,
                ceil_mode: false,
            });
            let sources = sh
                .sources
                .iter()
                .filter_map(|s| spec.areas.iter().position(|x| &x.name == s))
                .collect();
            areas.push(Area {
                name: a.name.clone(),
                conv,
                activation: a.conv.activation,
                cell,
                residual,
                pool,
                sources,
                routes_feedback: a.cell.routes_feedback(),
                input_hw: hw(&sh.input),
                cell_hw: hw(&sh.conv_out),
            });
        }
        let c = shapes.readout_input[0];
        let mut ctx = BuildCtx {
            params: &mut params,
            prefix: spec.readout.name.clone(),
            rng: &mut rng,
            device,
        };
        let readout = match spec.readout.kind {
            ReadoutKind::GapFc => Readout::GapFc {
                weight: ctx.normal("weight", &[spec.num_classes, c], 0.01)?,
                bias: ctx.constant("bias", &[spec.num_classes], 0.0)?,
            },
            ReadoutKind::ConvGap { kernel } => {
                let mut conv = Conv::new(
                    &mut ctx,
                    "conv",
                    c,
                    spec.num_classes,
                    kernel,
                    1,
                    1,
                    ConvInit::lecun(true),
                )?;
                conv.opts.padding = Padding::Valid;
                // N(0, 0.01) like every readout of the zoo.
                let w = ctx.unregistered_normal(&[spec.num_classes, c, kernel, kernel], 0.01)?;
                conv.weight.assign(&w)?;
                Readout::ConvGap { conv }
            }
        };
        Ok(Model {
            spec: spec.clone(),
            shapes,
            params,
            areas,
            readout,
            device,
        })
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params.num_elements()
    }

    /// The built areas, in feedforward order.
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// Index of the area called `name`.
    pub fn area_index(&self, name: &str) -> Option<usize> {
        self.areas.iter().position(|a| a.name == name)
    }

    /// One step of area `i`: `ff` is its feedforward input (image frame or previous area's
    /// output), `extra` the outputs of its extra sources (harbor order).
    pub(crate) fn area_step(
        &self,
        i: usize,
        ff: &Tensor,
        extra: &[Tensor],
        state: &AnyState,
    ) -> Result<(Tensor, AnyState)> {
        let d = self.area_drive(i, ff, extra)?;
        self.area_finish(i, ff, &d, state)
    }

    /// The part of area `i`'s step that reads only its inputs: harbor, conv and the cell's
    /// [`Cell::drive`].
    pub(crate) fn area_drive(&self, i: usize, ff: &Tensor, extra: &[Tensor]) -> Result<AreaDrive> {
        let a = &self.areas[i];
        let (conv_in, feedback) = if extra.is_empty() {
            (ff.clone(), None)
        } else if a.routes_feedback {
            let resized: Vec<Tensor> = extra
                .iter()
                .map(|e| resize_to(e, a.cell_hw))
                .collect::<Result<_>>()?;
            let refs: Vec<&Tensor> = resized.iter().collect();
            (ff.clone(), Some(Tensor::cat(&refs, 1)?))
        } else {
            let mut parts = vec![ff.clone()];
            for e in extra {
                parts.push(resize_to(e, a.input_hw)?);
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            (Tensor::cat(&refs, 1)?, None)
        };
        let x = activate(&a.conv.forward(&conv_in)?, a.activation)?;
        let cell = a.cell.drive(&CellInput {
            x: &x,
            u: ff,
            feedback: feedback.as_ref(),
        })?;
        Ok(AreaDrive { x, feedback, cell })
    }

    /// The rest of area `i`'s step: the cell's recurrent part, the residual tail and pooling.
    pub(crate) fn area_finish(
        &self,
        i: usize,
        ff: &Tensor,
        d: &AreaDrive,
        state: &AnyState,
    ) -> Result<(Tensor, AnyState)> {
        let a = &self.areas[i];
        let (mut y, next) = a.cell.step_driven(
            &CellInput {
                x: &d.x,
                u: ff,
                feedback: d.feedback.as_ref(),
            },
            &d.cell,
            state,
        )?;
        if let Some(r) = &a.residual {
            let skip = match &r.projection {
                Some(p) => p.forward(ff)?,
                None => ff.clone(),
            };
            y = r.conv.forward(&y)?.add(&skip)?.elu()?;
        }
        if let Some(p) = &a.pool {
            y = y.max_pool2d(p)?;
        }
        Ok((y, next))
    }

    /// Logits `[N, classes]` from the last area's output.
    pub(crate) fn readout_step(&self, last: &Tensor) -> Result<Tensor> {
        match &self.readout {
            Readout::GapFc { weight, bias } => last.global_avg_pool()?.linear(weight, Some(bias)),
            Readout::ConvGap { conv } => conv.forward(last)?.global_avg_pool(),
        }
    }
}

/// Bilinear resize with align_corners (the harbor's rule), a no-op at the right size.
fn resize_to(t: &Tensor, hw: (usize, usize)) -> Result<Tensor> {
    let d = t.dims();
    if (d[2], d[3]) == hw {
        Ok(t.clone())
    } else {
        t.resize_bilinear(hw.0, hw.1, true)
    }
}

/// Convolution options of a SAME conv with `stride`.
pub fn same_conv(stride: usize) -> Conv2dOpts {
    Conv2dOpts {
        stride: (stride, stride),
        padding: Padding::Same,
        dilation: (1, 1),
        groups: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;
    use cell_zoo::CellSpec;
    use tensor::Device;

    /// The harbor concatenates `[ff, extras in string-sorted source order]`, each extra resized to
    /// the feedforward size: a 1×1 conv that sums one input slice per output channel reads back
    /// which slice holds which source.
    #[test]
    fn harbor_puts_the_feedforward_input_first_then_sorted_sources() {
        let area = |name: &str, c: usize, pool: bool| AreaSpec {
            name: name.into(),
            conv: ConvSpec {
                channels: c,
                kernel: 1,
                stride: 1,
                activation: Activation::Identity,
                bias: false,
            },
            cell: CellSpec::Identity,
            residual: None,
            pool: pool.then_some(PoolSpec::TWO_BY_TWO),
        };
        let spec = ModelSpec {
            name: "harbor".into(),
            input: InputSpec {
                channels: 1,
                height: 8,
                width: 8,
            },
            num_classes: 2,
            areas: vec![
                area("v1", 2, false),
                area("v2", 3, false),
                area("v4", 4, true),
                area("it", 5, false),
            ],
            // Listed in the opposite of sorted order on purpose.
            edges: vec![
                EdgeSpec {
                    from: "v4".into(),
                    to: "v2".into(),
                },
                EdgeSpec {
                    from: "it".into(),
                    to: "v2".into(),
                },
            ],
            readout: ReadoutSpec {
                name: "imnetds".into(),
                kind: ReadoutKind::GapFc,
            },
            default_steps: 3,
            image_off: 3,
            decoder: Default::default(),
        };
        let m = Model::new(&spec, Device::Cpu, 0).unwrap();
        // v2's conv input: ff (2 ch) | it (5 ch) | v4 (4 ch): "it" < "v4".
        let a = &m.areas[1];
        assert_eq!(a.conv.weight.dims(), &[3, 11, 1, 1]);
        let mut w = vec![0f32; 3 * 11];
        for (o, range) in [(0usize, 0..2usize), (1, 2..7), (2, 7..11)] {
            for c in range {
                w[o * 11 + c] = 1.0;
            }
        }
        a.conv
            .weight
            .assign(&Tensor::from_vec(w, [3, 11, 1, 1], Device::Cpu).unwrap())
            .unwrap();
        let ff = Tensor::full(1.0, [1, 2, 8, 8], Device::Cpu).unwrap();
        let v4 = Tensor::full(3.0, [1, 4, 4, 4], Device::Cpu).unwrap(); // pooled: resized up
        let it = Tensor::full(2.0, [1, 5, 4, 4], Device::Cpu).unwrap();
        let x = Tensor::zeros([1, 3, 8, 8], Device::Cpu).unwrap();
        let state = a.cell.zero_state(&x).unwrap();
        let extras = [it, v4]; // harbor order, as the unroll passes them
        assert_eq!(a.sources, vec![3, 2]);
        let (y, _) = m.area_step(1, &ff, &extras, &state).unwrap();
        let y = y.to_vec().unwrap();
        assert_eq!((y[0], y[64], y[128]), (2.0, 10.0, 12.0));
    }
}
