//! Checks an assembly before fitting, and the policy for what is repaired rather than refused.
//!
//! Refused (an error naming the problem): coordinate lengths that differ from the data's axes,
//! malformed time bins (non-finite, `start >= end`, not increasing), a stimulus labelled with two
//! objects, a neuroid id given twice, and an assembly left with no usable neuroid.
//! Repaired and reported: a non-finite response (NaN/inf) is a missing trial. Repetitions are
//! averaged over the finite ones (Brain-Score averages with `mean(skipna=True)`), so a neuroid
//! keeps its stimuli as long as each stimulus has a finite repetition in each bin; a neuroid
//! where some stimulus has none in some bin (a dead channel, a stimulus never recorded) is dropped
//! whole and listed in [`Cleaned::dropped`].

use std::collections::HashMap;

use ndarray::Axis;
use serde::{Deserialize, Serialize};

use crate::assembly::Assembly;
use crate::error::{NeurofitError, Result};

/// A neuroid removed by the NaN policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroppedNeuroid {
    /// The neuroid's id.
    pub neuroid_id: String,
    /// Its region.
    pub region: String,
    /// How many of its responses (presentations × bins) were not finite.
    pub non_finite: usize,
}

/// An assembly after the NaN policy, and what it removed.
#[derive(Debug, Clone)]
pub struct Cleaned {
    /// The neuroids with a finite repetition of every stimulus in every bin; their missing trials
    /// (non-finite responses) are still in the data, for the averages to skip.
    pub assembly: Assembly,
    /// The neuroids removed.
    pub dropped: Vec<DroppedNeuroid>,
    /// Non-finite responses of the kept neuroids (missing trials the averages skip).
    pub skipped: usize,
}

/// Coordinate and time-bin checks that every reader and writer also applies.
pub fn check_shape(a: &Assembly) -> Result<()> {
    let (p, n, b) = a.data.dim();
    let coords = [
        (
            "stimulus_id",
            a.presentations.stimulus_id.len(),
            p,
            "presentation",
        ),
        (
            "object_name",
            a.presentations.object_name.len(),
            p,
            "presentation",
        ),
        (
            "repetition",
            a.presentations.repetition.len(),
            p,
            "presentation",
        ),
        ("neuroid_id", a.neuroids.neuroid_id.len(), n, "neuroid"),
        ("region", a.neuroids.region.len(), n, "neuroid"),
        ("time bins", a.bins.len(), b, "time_bin"),
    ];
    for (name, got, want, axis) in coords {
        if got != want {
            return Err(NeurofitError::shape(
                format!("coordinate `{name}`"),
                format!("{got} entries"),
                format!("{want}, the length of the data's {axis} axis"),
            ));
        }
    }
    if p == 0 || n == 0 || b == 0 {
        return Err(NeurofitError::Assembly(format!(
            "empty data of shape [{p}, {n}, {b}] (presentation × neuroid × time_bin)"
        )));
    }
    for (i, bin) in a.bins.iter().enumerate() {
        if !(bin.start_ms.is_finite() && bin.end_ms.is_finite() && bin.start_ms < bin.end_ms) {
            return Err(NeurofitError::Assembly(format!(
                "time bin {i} is [{}, {}) ms; expected finite start < end",
                bin.start_ms, bin.end_ms
            )));
        }
        if i > 0 && bin.start_ms <= a.bins[i - 1].start_ms {
            return Err(NeurofitError::Assembly(format!(
                "time bins must increase: bin {i} starts at {} ms, not after bin {} at {} ms",
                bin.start_ms,
                i - 1,
                a.bins[i - 1].start_ms
            )));
        }
    }
    // Reports list neuroids by id, and a site given twice would count twice in every median.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, id) in a.neuroids.neuroid_id.iter().enumerate() {
        if let Some(first) = seen.insert(id, j) {
            return Err(NeurofitError::Assembly(format!(
                "neuroid_id `{id}` names neuroids {first} and {j}; expected one id per neuroid"
            )));
        }
    }
    let mut object_of: HashMap<&str, &str> = HashMap::new();
    for (s, o) in a
        .presentations
        .stimulus_id
        .iter()
        .zip(&a.presentations.object_name)
    {
        match object_of.get(s.as_str()) {
            Some(&prev) if prev != o => {
                return Err(NeurofitError::InconsistentObject {
                    stimulus_id: s.clone(),
                    first: prev.to_string(),
                    second: o.clone(),
                })
            }
            _ => {
                object_of.insert(s, o);
            }
        }
    }
    Ok(())
}

/// [`check_shape`], then apply the NaN policy (see the module doc).
pub fn clean(a: &Assembly) -> Result<Cleaned> {
    check_shape(a)?;
    let by_stimulus = crate::fit::StimulusIndex::new(a).presentations;
    let mut keep = Vec::new();
    let mut dropped = Vec::new();
    let mut skipped = 0;
    for (j, col) in a.data.axis_iter(Axis(1)).enumerate() {
        let bad = col.iter().filter(|v| !v.is_finite()).count();
        let uncovered = bad > 0
            && col.axis_iter(Axis(1)).any(|bin| {
                by_stimulus
                    .iter()
                    .any(|rows| rows.iter().all(|&r| !bin[r].is_finite()))
            });
        if uncovered {
            dropped.push(DroppedNeuroid {
                neuroid_id: a.neuroids.neuroid_id[j].clone(),
                region: a.neuroids.region[j].clone(),
                non_finite: bad,
            });
        } else {
            keep.push(j);
            skipped += bad;
        }
    }
    if keep.is_empty() {
        return Err(NeurofitError::Assembly(format!(
            "every one of the {} neuroids has a stimulus without any finite response in some \
             bin; nothing left to fit",
            a.num_neuroids()
        )));
    }
    let assembly = if dropped.is_empty() {
        a.clone()
    } else {
        let mut out = a.clone();
        out.data = a.data.select(Axis(1), &keep);
        out.neuroids.neuroid_id = keep
            .iter()
            .map(|&j| a.neuroids.neuroid_id[j].clone())
            .collect();
        out.neuroids.region = keep.iter().map(|&j| a.neuroids.region[j].clone()).collect();
        out
    };
    Ok(Cleaned {
        assembly,
        dropped,
        skipped,
    })
}

/// A report warning about the neuroids [`clean`] removed (`None` when it removed none), which the
/// binary prints with the other warnings, so that a user sees them without opening the report: up
/// to five are named with how many of their responses were not finite.
pub fn dropped_warning(dropped: &[DroppedNeuroid]) -> Option<String> {
    const NAMED: usize = 5;
    if dropped.is_empty() {
        return None;
    }
    let mut names: Vec<String> = dropped
        .iter()
        .take(NAMED)
        .map(|d| {
            format!(
                "{} ({}, {} non-finite)",
                d.neuroid_id, d.region, d.non_finite
            )
        })
        .collect();
    if dropped.len() > NAMED {
        names.push(format!("and {} more", dropped.len() - NAMED));
    }
    Some(format!(
        "{} neuroid{} left out of the fits, each with a stimulus that has no finite response in \
         some bin: {}; the report lists them under `dropped`",
        dropped.len(),
        if dropped.len() == 1 { "" } else { "s" },
        names.join(", ")
    ))
}

/// A report warning about the missing trials [`clean`] kept for the averages to skip (`None`
/// when there were none).
pub fn skipped_warning(c: &Cleaned) -> Option<String> {
    (c.skipped > 0).then(|| {
        format!(
            "{} non-finite responses (missing trials) were skipped when averaging repetitions, \
             as Brain-Score's mean(skipna=True) does",
            c.skipped
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::assembly::{Neuroids, Presentations, TimeBin};
    use ndarray::Array3;

    pub(crate) fn tiny() -> Assembly {
        let p = 4;
        Assembly {
            data: Array3::from_shape_fn((p, 3, 2), |(i, j, k)| (i + 2 * j + 3 * k) as f32),
            presentations: Presentations {
                stimulus_id: vec!["a".into(), "b".into(), "a".into(), "b".into()],
                object_name: vec!["car".into(), "dog".into(), "car".into(), "dog".into()],
                repetition: vec![0, 0, 1, 1],
            },
            neuroids: Neuroids {
                neuroid_id: vec!["n0".into(), "n1".into(), "n2".into()],
                region: vec!["IT".into(), "IT".into(), "V4".into()],
            },
            bins: TimeBin::uniform(70.0, 90.0, 10.0),
        }
    }

    #[test]
    fn a_well_formed_assembly_passes_unchanged() {
        let a = tiny();
        let c = clean(&a).unwrap();
        assert_eq!(c.assembly, a);
        assert!(c.dropped.is_empty());
    }

    #[test]
    fn mismatched_coordinate_lengths_are_errors_naming_the_coord() {
        let mut a = tiny();
        a.presentations.object_name.pop();
        let e = check_shape(&a).unwrap_err().to_string();
        assert!(
            e.contains("object_name") && e.contains("presentation"),
            "{e}"
        );
        let mut a = tiny();
        a.neuroids.region.push("V1".into());
        assert!(check_shape(&a).unwrap_err().to_string().contains("region"));
        let mut a = tiny();
        a.bins.pop();
        assert!(check_shape(&a)
            .unwrap_err()
            .to_string()
            .contains("time bins"));
    }

    #[test]
    fn bad_bins_and_two_objects_per_stimulus_are_errors() {
        let mut a = tiny();
        a.bins[1].start_ms = 60.0;
        a.bins[1].end_ms = 65.0;
        assert!(check_shape(&a).is_err());
        let mut a = tiny();
        a.bins[0].end_ms = a.bins[0].start_ms;
        assert!(check_shape(&a).is_err());
        let mut a = tiny();
        a.presentations.object_name[2] = "cat".into();
        assert!(matches!(
            check_shape(&a),
            Err(NeurofitError::InconsistentObject { .. })
        ));
    }

    #[test]
    fn a_repeated_neuroid_id_is_an_error_naming_it() {
        let mut a = tiny();
        a.neuroids.neuroid_id[2] = "n0".into();
        let e = check_shape(&a).unwrap_err().to_string();
        assert!(e.contains("`n0`") && e.contains("0 and 2"), "{e}");
    }

    #[test]
    fn missing_trials_are_kept_and_a_stimulus_without_any_drops_the_neuroid() {
        // tiny(): stimulus a is rows 0 and 2, b rows 1 and 3.
        let mut a = tiny();
        a.data[[1, 1, 0]] = f32::NAN; // n1: b's first repetition in bin 0; row 3 remains
        a.data[[0, 2, 1]] = f32::NAN; // n2: both repetitions of a in bin 1
        a.data[[2, 2, 1]] = f32::INFINITY;
        a.data[[1, 2, 0]] = f32::NAN;
        let c = clean(&a).unwrap();
        assert_eq!(c.assembly.neuroids.neuroid_id, vec!["n0", "n1"]);
        assert_eq!(c.assembly.data.dim(), (4, 2, 2));
        assert!(
            c.assembly.data[[1, 1, 0]].is_nan(),
            "the missing trial stays for the mean"
        );
        assert_eq!(c.skipped, 1);
        assert_eq!(
            c.dropped,
            vec![DroppedNeuroid {
                neuroid_id: "n2".into(),
                region: "V4".into(),
                non_finite: 3
            }]
        );
        assert!(skipped_warning(&c).unwrap().contains("1 non-finite"));
        assert_eq!(skipped_warning(&clean(&tiny()).unwrap()), None);
        a.data.fill(f32::NAN);
        assert!(clean(&a).is_err());
    }

    #[test]
    fn dropped_neuroids_are_named_in_a_warning() {
        assert_eq!(dropped_warning(&[]), None);
        let d = |i: usize| DroppedNeuroid {
            neuroid_id: format!("V4_{i:03}"),
            region: "V4".into(),
            non_finite: 10 * i,
        };
        let one = dropped_warning(&[d(5)]).unwrap();
        assert!(
            one.contains("1 neuroid left") && one.contains("V4_005 (V4, 50 non-finite)"),
            "{one}"
        );
        let many: Vec<_> = (1..=7).map(d).collect();
        let msg = dropped_warning(&many).unwrap();
        assert!(
            msg.contains("7 neuroids") && msg.contains("V4_005") && msg.contains("and 2 more"),
            "{msg}"
        );
        assert!(!msg.contains("V4_006"), "{msg}");
    }
}
