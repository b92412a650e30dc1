//! The models the figures train: every cell of the zoo on the compact backbone (the `compact_*`
//! presets: conv1 → conv2+cell → conv3+cell → GAP → FC, 28×28 grey input), and the feedforward
//! base of that backbone with wider and deeper variants, so that each cell can be compared with a
//! feedforward net of at least its size.

use anyhow::{anyhow, Context, Result};
use cell_zoo::CellSpec;
use serde::{Deserialize, Serialize};
use topology::{AreaSpec, ModelSpec};

/// The cells compared in figure 1, in the paper's order.
pub const CELLS: [&str; 7] = [
    "timedecay",
    "simplernn",
    "gru",
    "lstm",
    "ugrnn",
    "intersectionrnn",
    "rgc",
];

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
            spec = deepen(&spec);
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

/// Every area after the first doubled: a copy of it (same channels, 3×3) follows it, and the
/// pool moves to the copy.
fn deepen(spec: &ModelSpec) -> ModelSpec {
    let mut s = spec.clone();
    let mut areas: Vec<AreaSpec> = Vec::new();
    for (i, a) in spec.areas.iter().enumerate() {
        if i == 0 {
            areas.push(a.clone());
            continue;
        }
        let mut first = a.clone();
        first.pool = None;
        let mut second = a.clone();
        second.name = format!("{}b", a.name);
        second.conv.kernel = 3;
        areas.push(first);
        areas.push(second);
    }
    s.areas = areas;
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
    }
}
