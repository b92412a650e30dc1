//! The models the figures train: every cell of the zoo on the compact backbone (the `compact_*`
//! presets: conv1 → conv2+cell → conv3+cell → GAP → FC, 28×28 grey input), and the feedforward
//! base of that backbone with wider and deeper variants, so that each cell can be compared with a
//! feedforward net of at least its size (figure 1); the feedforward base made deeper step by step
//! (figure 2); and what a model's size is counted in (parameters, [`units`]).

use anyhow::{anyhow, Context, Result};
use cell_zoo::CellSpec;
use serde::{Deserialize, Serialize};
use topology::{AreaSpec, ModelSpec};

/// The cells compared in figure 1: every cell of the zoo, in the paper's order.
pub use topology::zoo::CELLS;

/// Cells the paper finds to help (gating and a bypass).
pub const GATED_BYPASS: [&str; 3] = ["rgc", "ugrnn", "intersectionrnn"];
/// Cells the paper finds not to help.
pub const VANILLA: [&str; 2] = ["simplernn", "lstm"];

/// Whether a model is a cell on the backbone or a feedforward net.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Recurrent,
    Feedforward,
}

/// A model of the figures: its short name (`rgc`, `ff_wide2`, ...), family and spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub family: Family,
    pub spec: ModelSpec,
}

/// Every model of figure 1: the seven cells, then the feedforward nets (base, wider, deeper).
pub fn matched_size_set() -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for cell in CELLS {
        let name = format!("compact_{cell}");
        let spec = topology::zoo::get_or_err(&name).map_err(|e| anyhow!(e))?;
        out.push(Candidate {
            id: cell.to_string(),
            family: Family::Recurrent,
            spec,
        });
    }
    let base = feedforward_base()?;
    for (id, width, deeper) in [
        ("ff_base", 1, false),
        ("ff_wide2", 2, false),
        ("ff_wide5", 5, false),
        ("ff_deep", 1, true),
        ("ff_deep_wide2", 2, true),
    ] {
        let mut spec = widen(&base, width);
        if deeper {
            spec = deepen(&spec, 1);
        }
        spec.name = id.to_string();
        spec.validate()
            .with_context(|| format!("the feedforward variant {id}"))?;
        out.push(Candidate {
            id: id.to_string(),
            family: Family::Feedforward,
            spec,
        });
    }
    Ok(out)
}

/// The backbone of the compact cells without any cell: `compact_rgc` with identity cells (the
/// same convolutions, ELU after each).
pub fn feedforward_base() -> Result<ModelSpec> {
    let mut spec = topology::zoo::get_or_err("compact_rgc").map_err(|e| anyhow!(e))?;
    for a in &mut spec.areas {
        a.cell = CellSpec::Identity;
    }
    spec.name = "ff_base".into();
    Ok(spec)
}

/// Every area after the first with `factor` times its channels.
fn widen(spec: &ModelSpec, factor: usize) -> ModelSpec {
    let mut s = spec.clone();
    for a in s.areas.iter_mut().skip(1) {
        a.conv.channels *= factor;
    }
    s
}

/// Extra 3×3 convs per area of the deeper feedforward nets of figure 2 (`ff_deep{k}`; k = 0 is
/// `ff_base`, k = 1 `ff_deep` of figure 1, which both figures share).
pub const EXTRA_DEPTHS: [usize; 3] = [2, 3, 4];

/// The deeper feedforward nets of figure 2 that figure 1 does not train: the base with
/// [`EXTRA_DEPTHS`] extra convs after conv2 and after conv3 (7, 9 and 11 areas).
pub fn depth_series() -> Result<Vec<Candidate>> {
    let base = feedforward_base()?;
    EXTRA_DEPTHS
        .iter()
        .map(|&k| {
            let id = format!("ff_deep{k}");
            let mut spec = deepen(&base, k);
            spec.name = id.clone();
            spec.validate()
                .with_context(|| format!("the feedforward variant {id}"))?;
            Ok(Candidate {
                id,
                family: Family::Feedforward,
                spec,
            })
        })
        .collect()
}

/// The size of a model in *units*: the number of neurons its areas emit at each time step, the
/// sum over areas of the cell output's channels × height × width (before pooling; for a
/// feedforward area the conv's output). A cell's hidden memory beside its output (an LSTM's `c`,
/// an RGC's cell state) is not counted: a unit is what the next area and the readout see.
pub fn units(spec: &ModelSpec) -> Result<usize> {
    let shapes = topology::infer(spec).with_context(|| format!("the shapes of {}", spec.name))?;
    Ok(shapes
        .areas
        .iter()
        .map(|a| a.cell_out.iter().product::<usize>())
        .sum())
}

/// Every area after the first followed by `extra` copies of it (same channels, 3×3), the pool
/// moved to the last copy. Each area adds a step before the image reaches the readout, so the
/// unroll is lengthened where needed (image on throughout) for the last step's logits to see it:
/// a feedforward net's output no longer changes once the image has reached it.
fn deepen(spec: &ModelSpec, extra: usize) -> ModelSpec {
    let mut s = spec.clone();
    let mut areas: Vec<AreaSpec> = Vec::new();
    for (i, a) in spec.areas.iter().enumerate() {
        if i == 0 || extra == 0 {
            areas.push(a.clone());
            continue;
        }
        let mut first = a.clone();
        first.pool = None;
        areas.push(first);
        for j in 1..=extra {
            let mut copy = a.clone();
            // `conv2b` for the first copy (figure 1's ff_deep), then `conv2c`, `conv2d`, ...
            copy.name = format!("{}{}", a.name, char::from(b'a' + j as u8));
            copy.conv.kernel = 3;
            if j < extra {
                copy.pool = None;
            }
            areas.push(copy);
        }
    }
    s.areas = areas;
    let steps = s.default_steps.max(s.areas.len() + 1);
    if s.image_off >= s.default_steps {
        s.image_off = steps;
    }
    s.default_steps = steps;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_has_every_cell_and_feedforward_nets_spanning_their_sizes() {
        let set = matched_size_set().unwrap();
        let params = |id: &str| {
            let c = set.iter().find(|c| c.id == id).unwrap();
            topology::count::cost(&c.spec).unwrap().params
        };
        for cell in CELLS {
            assert!(set
                .iter()
                .any(|c| c.id == cell && c.family == Family::Recurrent));
        }
        let ff: Vec<usize> = set
            .iter()
            .filter(|c| c.family == Family::Feedforward)
            .map(|c| params(&c.id))
            .collect();
        assert_eq!(ff.len(), 5);
        // The base is the cells' backbone, so it is no larger than the smallest cell model.
        let smallest_cell = CELLS.iter().map(|c| params(c)).min().unwrap();
        let largest_cell = CELLS.iter().map(|c| params(c)).max().unwrap();
        assert!(params("ff_base") <= smallest_cell);
        assert!(params("ff_wide2") > params("ff_base"));
        assert!(params("ff_deep") > params("ff_base"));
        assert!(
            ff.iter().max().unwrap() >= &largest_cell,
            "a feedforward net at least as large as every cell: {ff:?} vs {largest_cell}"
        );
        let deep = &set.iter().find(|c| c.id == "ff_deep").unwrap().spec;
        assert_eq!(deep.areas.len(), 5);
        assert!(deep.areas.iter().all(|a| a.cell == CellSpec::Identity));
        // Figure 1's ff_deep is unchanged by the deeper nets' code: its cache key must not move.
        assert_eq!(deep.default_steps, 8);
        let names: Vec<&str> = deep.areas.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["conv1", "conv2", "conv2b", "conv3", "conv3b"]);
    }

    #[test]
    fn the_depth_series_grows_in_areas_parameters_and_units_and_reaches_the_readout() {
        let base = feedforward_base().unwrap();
        let series = depth_series().unwrap();
        assert_eq!(series.len(), EXTRA_DEPTHS.len());
        let (mut areas, mut params, mut u) = (
            base.areas.len(),
            topology::count::cost(&base).unwrap().params,
            units(&base).unwrap(),
        );
        for (c, k) in series.iter().zip(EXTRA_DEPTHS) {
            assert_eq!(c.id, format!("ff_deep{k}"));
            assert_eq!(c.family, Family::Feedforward);
            assert_eq!(c.spec.areas.len(), 3 + 2 * k);
            let p = topology::count::cost(&c.spec).unwrap().params;
            let v = units(&c.spec).unwrap();
            assert!(
                c.spec.areas.len() > areas && p > params && v > u,
                "{}",
                c.id
            );
            (areas, params, u) = (c.spec.areas.len(), p, v);
            // Pooled once per original area: the readout sees the base's 4×4 maps.
            let shapes = topology::infer(&c.spec).unwrap();
            assert_eq!(shapes.readout_input[1..], [4, 4]);
            assert!(shapes.readout_first_step < c.spec.default_steps);
            assert_eq!(
                c.spec.image_off, c.spec.default_steps,
                "image on throughout"
            );
        }
    }

    #[test]
    fn units_count_every_areas_output_before_pooling() {
        let base = feedforward_base().unwrap();
        // conv1 32×28×28, conv2 32×14×14, conv3 64×7×7.
        assert_eq!(units(&base).unwrap(), 32 * 784 + 32 * 196 + 64 * 49);
        // A cell emits maps of its area's shape: the compact cells have the base's units.
        let rgc = topology::zoo::get_or_err("compact_rgc").unwrap();
        assert_eq!(units(&rgc).unwrap(), units(&base).unwrap());
    }
}
