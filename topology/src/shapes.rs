//! Shape inference for a whole spec, before any data flows.

use crate::spec::{ModelSpec, ReadoutKind, SpecError};
use cell_zoo::CellSpec;
use serde::{Deserialize, Serialize};

/// `[channels, height, width]` of one image's maps.
pub type Chw = [usize; 3];

/// Shapes of one area.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaShapes {
    /// The area's name.
    pub name: String,
    /// The feedforward input `u` (image or previous area's output).
    pub input: Chw,
    /// Channels entering the conv after harbor concatenation.
    pub conv_in_channels: usize,
    /// Channels of the feedback handed to the cell (cells that route feedback themselves).
    pub cell_feedback_channels: usize,
    /// Extra sources in harbor order.
    pub sources: Vec<String>,
    /// The conv output `x`.
    pub conv_out: Chw,
    /// The cell output `h`.
    pub cell_out: Chw,
    /// The area's output (after residual tail and pooling).
    pub output: Chw,
    /// First step whose output depends on the image (biological timing).
    pub first_step: usize,
}

/// Shapes of a whole model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShapes {
    /// Every area, in feedforward order.
    pub areas: Vec<AreaShapes>,
    /// Maps entering the readout.
    pub readout_input: Chw,
    /// First step whose logits depend on the image (biological timing).
    pub readout_first_step: usize,
    /// Classes of the logits.
    pub num_classes: usize,
}

impl ModelShapes {
    /// The shapes of the area called `name`.
    pub fn area(&self, name: &str) -> Option<&AreaShapes> {
        self.areas.iter().find(|a| a.name == name)
    }
}

/// TF "SAME" output length.
pub fn same_out(len: usize, stride: usize) -> usize {
    len.div_ceil(stride)
}

/// Validates `spec` and infers every shape.
pub fn infer(spec: &ModelSpec) -> Result<ModelShapes, SpecError> {
    spec.validate()?;
    let mut areas: Vec<AreaShapes> = Vec::with_capacity(spec.areas.len());
    // Output shapes are needed for edges from later areas (feedback); the feedforward chain never
    // depends on feedback shapes, so a first pass computes outputs, a second fills the harbors.
    let mut input: Chw = [spec.input.channels, spec.input.height, spec.input.width];
    for a in &spec.areas {
        let bad = |msg: String| SpecError::BadArea {
            area: a.name.clone(),
            msg,
        };
        let [c_in, h, w] = input;
        let conv_out = [
            a.conv.channels,
            same_out(h, a.conv.stride),
            same_out(w, a.conv.stride),
        ];
        let cell_c = a.cell.out_channels(a.conv.channels);
        check_cell(&a.cell, a.conv.channels).map_err(bad)?;
        let cell_out = [cell_c, conv_out[1], conv_out[2]];
        let mut out = cell_out;
        if a.residual.is_some() {
            if [h, w] != [cell_out[1], cell_out[2]] {
                return Err(bad(format!(
                    "a residual tail needs the conv to keep the spatial size, but {h}×{w} becomes {}×{}",
                    cell_out[1], cell_out[2]
                )));
            }
            out = [a.conv.channels, h, w];
        }
        if let Some(p) = a.pool {
            if out[1] < p.kernel || out[2] < p.kernel {
                return Err(SpecError::TooSmall {
                    area: a.name.clone(),
                    what: format!("its {}×{} pooling", p.kernel, p.kernel),
                    got: out[1],
                    got_w: out[2],
                    need: p.kernel,
                });
            }
            out = [
                out[0],
                same_out(out[1], p.stride),
                same_out(out[2], p.stride),
            ];
        }
        areas.push(AreaShapes {
            name: a.name.clone(),
            input,
            conv_in_channels: c_in,
            cell_feedback_channels: 0,
            sources: vec![],
            conv_out,
            cell_out,
            output: out,
            first_step: 0,
        });
        input = out;
    }
    for (i, a) in spec.areas.iter().enumerate() {
        let sources: Vec<String> = spec
            .extra_sources(&a.name)
            .into_iter()
            .map(String::from)
            .collect();
        let extra: usize = sources
            .iter()
            .filter_map(|s| areas.iter().find(|x| &x.name == s))
            .map(|x| x.output[0])
            .sum();
        let ff = areas[i].input[0];
        if a.cell.routes_feedback() {
            areas[i].cell_feedback_channels = extra;
        } else {
            areas[i].conv_in_channels = ff + extra;
        }
        areas[i].sources = sources;
    }
    // First image-driven step: the shortest path in steps from the image (every edge costs one).
    let n = areas.len();
    let mut first = vec![usize::MAX; n];
    first[0] = 0;
    for _ in 0..=n {
        for i in 1..n {
            let mut best = first[i - 1].saturating_add(1);
            for s in &areas[i].sources {
                if let Some(j) = spec.areas.iter().position(|x| &x.name == s) {
                    best = best.min(first[j].saturating_add(1));
                }
            }
            first[i] = first[i].min(best);
        }
    }
    for (a, f) in areas.iter_mut().zip(&first) {
        a.first_step = *f;
    }
    let readout_input = input;
    if let ReadoutKind::ConvGap { kernel } = spec.readout.kind {
        if readout_input[1] < kernel || readout_input[2] < kernel {
            return Err(SpecError::TooSmall {
                area: spec.readout.name.clone(),
                what: format!("the {kernel}×{kernel} VALID readout conv"),
                got: readout_input[1],
                got_w: readout_input[2],
                need: kernel,
            });
        }
    }
    Ok(ModelShapes {
        readout_first_step: first[n - 1] + 1,
        areas,
        readout_input,
        num_classes: spec.num_classes,
    })
}

/// Constraints a cell puts on its area's channels.
fn check_cell(cell: &CellSpec, x_channels: usize) -> Result<(), String> {
    match cell {
        CellSpec::GeneralRgc(g) => {
            if !g.input_to_cell.is_on() && g.uses_cell() && g.cell_depth != x_channels {
                return Err(format!(
                    "the general RGC without an input→cell conv needs cell_depth ({}) equal to the conv channels ({x_channels})",
                    g.cell_depth
                ));
            }
            if g.cell_depth == 0 {
                return Err("the general RGC needs cell_depth > 0".into());
            }
            Ok(())
        }
        CellSpec::SimpleRnn { kernel, .. }
        | CellSpec::Gru { kernel, .. }
        | CellSpec::Lstm { kernel, .. }
        | CellSpec::Ugrnn { kernel, .. }
        | CellSpec::IntersectionRnn { kernel }
        | CellSpec::Rgc(cell_zoo::RgcSpec { kernel, .. })
            if *kernel == 0 =>
        {
            Err(format!("{} kernel must be positive", cell.kind()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    #[test]
    fn rgc_intermediate_shapes_and_first_steps() {
        let s = infer(&zoo::get("rgc_intermediate").unwrap()).unwrap();
        let cell_hw: Vec<usize> = s.areas[3..].iter().map(|a| a.cell_out[1]).collect();
        assert_eq!(cell_hw, vec![56, 28, 28, 14, 7, 7, 7]);
        let firsts: Vec<usize> = s.areas.iter().map(|a| a.first_step).collect();
        assert_eq!(firsts, (0..10).collect::<Vec<_>>());
        assert_eq!(s.readout_first_step, 10);
        assert_eq!(s.readout_input, [512, 4, 4]);
        let c6 = s.area("conv6").unwrap();
        assert_eq!(c6.sources, vec!["conv7", "conv9"]);
        assert_eq!(c6.cell_feedback_channels, 256 + 512);
        assert_eq!(c6.conv_in_channels, 128);
    }

    #[test]
    fn shallow_pools_same_7_to_4() {
        let s = infer(&zoo::get("rgc_shallow").unwrap()).unwrap();
        let outs: Vec<usize> = s.areas.iter().map(|a| a.output[1]).collect();
        assert_eq!(outs, vec![56, 28, 14, 7, 4]);
        assert_eq!(s.readout_first_step, 5);
    }

    #[test]
    fn every_preset_infers() {
        for n in zoo::names() {
            infer(&zoo::get(n).unwrap()).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn too_small_input_is_reported() {
        let mut s = zoo::get("rgc_shallow").unwrap();
        s.input.height = 16;
        s.input.width = 16;
        let e = infer(&s).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }

    #[test]
    fn feedback_concatenates_into_the_conv_of_non_rgc_cells() {
        let mut s = zoo::get("gru_intermediate").unwrap();
        s.edges.push(crate::spec::EdgeSpec {
            from: "conv8".into(),
            to: "conv5".into(),
        });
        let sh = infer(&s).unwrap();
        assert_eq!(sh.area("conv5").unwrap().conv_in_channels, 128 + 512);
        // a skip edge shortens the path of the image
        let mut s = zoo::get("gru_intermediate").unwrap();
        s.edges.push(crate::spec::EdgeSpec {
            from: "conv2".into(),
            to: "conv5".into(),
        });
        assert_eq!(infer(&s).unwrap().area("conv5").unwrap().first_step, 2);
    }
}
