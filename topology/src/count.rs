//! Parameter and FLOP counts of a spec, measured on the built model rather than estimated: the
//! parameters are those registered, the FLOPs those the convolutions and matrix products of one
//! step of every area (and the readout) perform for one image.

use crate::model::{BuildError, Model};
use crate::spec::ModelSpec;
use cell_zoo::Cell;
use serde::{Deserialize, Serialize};
use tensor::{no_grad, Device, Tensor};

/// What a model costs: its size and the work of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCost {
    /// Trainable scalars: the model's parameters and its decoder's trained scalars (the
    /// `*_tmaxconf` models' softmax temperature), as the reference's checkpoints count their
    /// trainable variables.
    pub params: usize,
    /// FLOPs (2 × multiply-adds of convs and linear layers) of one step, all areas active, one image.
    pub flops_per_step: u64,
}

/// Parameters and per-step FLOPs of `spec`.
pub fn cost(spec: &ModelSpec) -> Result<ModelCost, BuildError> {
    let model = Model::new(spec, Device::Cpu, 0)?;
    let flops = step_flops(&model)?;
    Ok(ModelCost {
        params: model.num_params() + spec.decoder.trained_scalars(),
        flops_per_step: flops,
    })
}

/// FLOPs of one step with every area computing, for one image.
pub fn step_flops(model: &Model) -> Result<u64, BuildError> {
    let _g = no_grad();
    let (r, flops) = tensor::flops::count(|| -> tensor::Result<()> {
        let inp = model.spec.input;
        let image = Tensor::zeros([1, inp.channels, inp.height, inp.width], model.device)?;
        for (i, (a, s)) in model.areas().iter().zip(&model.shapes.areas).enumerate() {
            let ff = if i == 0 {
                image.clone()
            } else {
                Tensor::zeros([1, s.input[0], s.input[1], s.input[2]], model.device)?
            };
            let extra: Vec<Tensor> = a
                .sources
                .iter()
                .map(|&j| {
                    let o = model.shapes.areas[j].output;
                    Tensor::zeros([1, o[0], o[1], o[2]], model.device)
                })
                .collect::<tensor::Result<_>>()?;
            let x = Tensor::zeros(
                [1, s.conv_out[0], s.conv_out[1], s.conv_out[2]],
                model.device,
            )?;
            let state = a.cell.zero_state(&x)?;
            model.area_step(i, &ff, &extra, &state)?;
        }
        let r = model.shapes.readout_input;
        model.readout_step(&Tensor::zeros([1, r[0], r[1], r[2]], model.device)?)?;
        Ok(())
    });
    r?;
    Ok(flops)
}
