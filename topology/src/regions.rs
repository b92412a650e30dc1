//! Which areas of the released architectures stand for which regions of the ventral stream: the
//! map the authors found for the released models (the release's README; SPEC §5), for tools that
//! compare a model with recordings area by area.
//!
//! The authors fitted every layer to the responses of each region and name the layers that
//! matched best: for the shallow models conv3 → V4, conv4 → pIT, conv5 → cIT/aIT; for the
//! intermediate models conv5 and conv6 → V4, conv7 and conv8 → pIT, conv9 and conv10 → cIT/aIT.
//! A model that is not one of the released architectures (the compact presets, a searched or
//! hand-written spec) has no map here; a tool then needs its own rule.

use serde::{Deserialize, Serialize};

use crate::spec::ModelSpec;
use crate::zoo;

/// A region of the ventral stream the released models were mapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Region {
    /// Visual area V4.
    V4,
    /// Posterior inferior temporal cortex.
    #[serde(rename = "pIT")]
    Pit,
    /// Central and anterior inferior temporal cortex.
    #[serde(rename = "cIT/aIT")]
    CitAit,
}

impl Region {
    /// Every region, from V4 on.
    pub const ALL: [Region; 3] = [Region::V4, Region::Pit, Region::CitAit];

    /// The region's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Region::V4 => "V4",
            Region::Pit => "pIT",
            Region::CitAit => "cIT/aIT",
        }
    }
}

/// The two feedforward depths of the released architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Depth {
    /// `*_shallow`: five areas (conv1–conv5) and the readout.
    Shallow,
    /// `*_intermediate`: ten areas (conv1–conv10) and the readout.
    Intermediate,
}

impl Depth {
    /// The areas the authors found to match `region` best in an architecture of this depth.
    pub fn areas(self, region: Region) -> &'static [&'static str] {
        match (self, region) {
            (Depth::Shallow, Region::V4) => &["conv3"],
            (Depth::Shallow, Region::Pit) => &["conv4"],
            (Depth::Shallow, Region::CitAit) => &["conv5"],
            (Depth::Intermediate, Region::V4) => &["conv5", "conv6"],
            (Depth::Intermediate, Region::Pit) => &["conv7", "conv8"],
            (Depth::Intermediate, Region::CitAit) => &["conv9", "conv10"],
        }
    }

    /// The map of an architecture of this depth.
    pub fn area_map(self) -> AreaMap {
        let names = |r| self.areas(r).iter().map(|a| a.to_string()).collect();
        AreaMap {
            depth: self,
            v4: names(Region::V4),
            pit: names(Region::Pit),
            cit_ait: names(Region::CitAit),
        }
    }
}

/// Per region, the areas of one model that stand for it (in order, at least one each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaMap {
    /// The released architecture's depth the map is of.
    pub depth: Depth,
    /// The areas standing for V4.
    pub v4: Vec<String>,
    /// The areas standing for pIT.
    pub pit: Vec<String>,
    /// The areas standing for cIT/aIT.
    pub cit_ait: Vec<String>,
}

impl AreaMap {
    /// The map of `spec` when it is one of the released architectures: its name is a released
    /// model, a variant of one or its feedforward base (as `cargo xtask import` and `cargo xtask
    /// train --model` name a spec), and its areas are that preset's, by name and in order. A
    /// spec renamed or rebuilt with other areas has no map.
    pub fn of(spec: &ModelSpec) -> Option<AreaMap> {
        let depth = zoo::released_depth(&spec.name)?;
        let preset = zoo::get(&spec.name)?;
        let names = |s: &ModelSpec| s.areas.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        (names(spec) == names(&preset)).then(|| depth.area_map())
    }

    /// The areas standing for `region`.
    pub fn areas(&self, region: Region) -> &[String] {
        match region {
            Region::V4 => &self.v4,
            Region::Pit => &self.pit,
            Region::CitAit => &self.cit_ait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_of(name: &str) -> Option<AreaMap> {
        AreaMap::of(&zoo::get(name).unwrap())
    }

    #[test]
    fn the_released_intermediate_architectures_have_the_authors_map() {
        for name in [
            "rgc_intermediate",
            "ugrnn_intermediate",
            "timedecay_intermediate",
            "rgc_intermediate_t22_tmaxconf",
            "ugrnn_intermediate_t30",
            "feedforward_intermediate",
        ] {
            let m = map_of(name).unwrap_or_else(|| panic!("{name} has no map"));
            assert_eq!(m.depth, Depth::Intermediate, "{name}");
            assert_eq!(m.v4, ["conv5", "conv6"], "{name}");
            assert_eq!(m.pit, ["conv7", "conv8"], "{name}");
            assert_eq!(m.cit_ait, ["conv9", "conv10"], "{name}");
        }
    }

    #[test]
    fn the_released_shallow_architectures_have_the_authors_map() {
        for cell in zoo::CELLS.iter().chain(&["feedforward"]) {
            let name = format!("{cell}_shallow");
            let m = map_of(&name).unwrap_or_else(|| panic!("{name} has no map"));
            assert_eq!(m.depth, Depth::Shallow, "{name}");
            assert_eq!(
                (m.v4.as_slice(), m.pit.as_slice(), m.cit_ait.as_slice()),
                (
                    &["conv3".to_string()][..],
                    &["conv4".into()][..],
                    &["conv5".into()][..]
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn every_mapped_area_is_an_area_of_the_architecture() {
        for name in zoo::names() {
            let spec = zoo::get(name).unwrap();
            let Some(m) = AreaMap::of(&spec) else {
                continue;
            };
            for r in Region::ALL {
                assert!(!m.areas(r).is_empty(), "{name}: {}", r.name());
                for a in m.areas(r) {
                    assert!(spec.areas.iter().any(|x| &x.name == a), "{name}: {a}");
                }
            }
        }
    }

    #[test]
    fn other_models_have_no_map() {
        for name in ["compact_rgc", "compact_feedforward", "compact_rgc_median"] {
            assert_eq!(map_of(name), None, "{name}");
        }
        // A released name on other areas (a spec edited by hand) is not the released model.
        let mut spec = zoo::get("rgc_shallow").unwrap();
        spec.areas.pop();
        assert_eq!(AreaMap::of(&spec), None);
        // Narrowed for tests, the architecture keeps its areas and so its map.
        let narrow = zoo::narrowed(&zoo::get("rgc_intermediate").unwrap(), 16);
        assert_eq!(
            AreaMap::of(&narrow).map(|m| m.depth),
            Some(Depth::Intermediate)
        );
    }

    #[test]
    fn a_map_round_trips_through_json() {
        let m = Depth::Intermediate.area_map();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<AreaMap>(&text).unwrap(), m);
        assert_eq!(
            serde_json::to_string(&Region::CitAit).unwrap(),
            "\"cIT/aIT\""
        );
    }
}
