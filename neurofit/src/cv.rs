//! Seeded stratified shuffle splits over stimuli: every split holds out about `test_fraction` of each
//! object's stimuli, so every object is seen in training and (object size permitting) in testing.
//!
//! When the test share of an object is fractional (48 objects × 5 stimuli with 24 test places:
//! half a place each), the leftover places go to the objects with the largest remainders, ties
//! broken at random anew in every split, as scikit-learn's `StratifiedShuffleSplit`
//! (`_approximate_mode`) does. Breaking ties by object order instead would test the same objects
//! in every split and for every seed, and bias the scores towards those objects.
//! [`stratification_warnings`] says when splits cannot be stratified exactly.

use std::collections::BTreeMap;

use seeded_rng::Rng;

use crate::error::{NeurofitError, Result};

/// Indices (into the stimulus list) used to fit and to score one split; both sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Stimuli the map is fitted on.
    pub train: Vec<usize>,
    /// Held-out stimuli the map is scored on.
    pub test: Vec<usize>,
}

/// `n_splits` stratified splits of the stimuli labelled by `labels` (one per stimulus).
///
/// The test set has `ceil(test_fraction · n)` stimuli, shared among objects in proportion to their
/// size (largest remainders get the leftovers, ties drawn at random per split). Each object needs
/// at least 2 stimuli, and no object gives up all of its stimuli to the test set.
pub fn stratified_splits<L: Ord + Clone + std::fmt::Debug>(
    labels: &[L],
    n_splits: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<Vec<Split>> {
    let n = labels.len();
    if n_splits == 0 {
        return Err(NeurofitError::Config {
            field: "splits",
            reason: "need at least 1 split".into(),
        });
    }
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(NeurofitError::Config {
            field: "test_fraction",
            reason: format!("must lie strictly between 0 and 1, got {test_fraction}"),
        });
    }
    let mut groups: BTreeMap<L, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        groups.entry(l.clone()).or_default().push(i);
    }
    if let Some((l, g)) = groups.iter().find(|(_, g)| g.len() < 2) {
        return Err(NeurofitError::Splits(format!(
            "object {l:?} has {} stimulus; each object needs at least 2 to appear in both train and test",
            g.len()
        )));
    }
    let n_test = ((test_fraction * n as f64).ceil() as usize).max(1);
    if n_test >= n {
        return Err(NeurofitError::Splits(format!(
            "test fraction {test_fraction} of {n} stimuli leaves nothing to train on"
        )));
    }
    let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    let mut rng = Rng::new(seed);
    let mut splits = Vec::with_capacity(n_splits);
    for _ in 0..n_splits {
        let quotas = allocate(&sizes, n_test, &mut rng);
        let (mut train, mut test) = (Vec::with_capacity(n - n_test), Vec::with_capacity(n_test));
        for (g, &q) in groups.values().zip(&quotas) {
            let mut members = g.clone();
            rng.shuffle(&mut members);
            test.extend_from_slice(&members[..q]);
            train.extend_from_slice(&members[q..]);
        }
        train.sort_unstable();
        test.sort_unstable();
        splits.push(Split { train, test });
    }
    Ok(splits)
}

/// Share `total` among groups of the given sizes in proportion, never taking a whole group: each
/// group gets the floor of its share, then the leftovers go by largest remainder, groups with
/// equal remainders drawn at random (scikit-learn's `_approximate_mode`). Remainders are exact
/// integers (`total · size mod n`), so equal shares tie exactly.
fn allocate(sizes: &[usize], total: usize, rng: &mut Rng) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return vec![0; sizes.len()];
    }
    let mut q: Vec<usize> = sizes
        .iter()
        .map(|&s| (total * s / n).min(s.saturating_sub(1)))
        .collect();
    let rem: Vec<usize> = sizes.iter().map(|&s| total * s % n).collect();
    let mut left = total.saturating_sub(q.iter().sum());
    let mut values: Vec<usize> = rem.clone();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values.dedup();
    for v in values {
        if left == 0 {
            break;
        }
        let mut tied: Vec<usize> = (0..sizes.len())
            .filter(|&g| rem[g] == v && q[g] + 1 < sizes[g])
            .collect();
        rng.shuffle(&mut tied);
        for g in tied.into_iter().take(left) {
            q[g] += 1;
            left -= 1;
        }
    }
    if left == 0 {
        // Exact shares draw nothing, so their splits are those of a plain per-object shuffle.
        return q;
    }
    // Groups capped below their share leave places over: hand them round-robin, in random order,
    // to groups that can still spare a stimulus.
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    rng.shuffle(&mut order);
    while left > 0 {
        let mut progressed = false;
        for &g in &order {
            if left > 0 && q[g] + 1 < sizes[g] {
                q[g] += 1;
                left -= 1;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    q
}

/// Why splits of these stimuli (labelled by object) cannot be exactly stratified, if they cannot:
/// a test set smaller than the number of objects (each split then tests a random subset of the
/// objects), or objects too small for their share (capped so that they keep a training stimulus).
pub fn stratification_warnings<L: Ord + Clone + std::fmt::Debug>(
    labels: &[L],
    test_fraction: f64,
) -> Vec<String> {
    let n = labels.len();
    if n == 0 || !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Vec::new();
    }
    let mut sizes: BTreeMap<&L, usize> = BTreeMap::new();
    for l in labels {
        *sizes.entry(l).or_default() += 1;
    }
    let n_test = ((test_fraction * n as f64).ceil() as usize).max(1);
    let mut out = Vec::new();
    if n_test < sizes.len() {
        out.push(format!(
            "the test set of {n_test} stimuli cannot hold one stimulus of each of the {} \
             objects: each split tests a random subset of the objects (stratified in \
             expectation only; scikit-learn's StratifiedShuffleSplit refuses this case)",
            sizes.len()
        ));
    }
    let capped: Vec<String> = sizes
        .iter()
        .filter(|(_, &s)| n_test * s > (s - 1) * n && s >= 1)
        .map(|(l, s)| format!("{l:?} ({s} stimuli)"))
        .collect();
    if !capped.is_empty() {
        out.push(format!(
            "{} object(s) are too small for their test share of {:.0} % and keep one stimulus \
             for training: {}",
            capped.len(),
            100.0 * test_fraction,
            capped
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
                + if capped.len() > 5 { ", …" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(objects: usize, per: usize) -> Vec<String> {
        (0..objects * per)
            .map(|i| format!("obj{}", i % objects))
            .collect()
    }

    #[test]
    fn splits_are_disjoint_complete_and_stratified() {
        let l = labels(8, 10);
        let splits = stratified_splits(&l, 10, 0.1, 7).unwrap();
        assert_eq!(splits.len(), 10);
        for s in &splits {
            assert_eq!(s.test.len(), 8);
            assert_eq!(s.train.len(), 72);
            let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..80).collect::<Vec<_>>());
            let mut objs: Vec<&String> = s.test.iter().map(|&i| &l[i]).collect();
            objs.sort();
            objs.dedup();
            assert_eq!(objs.len(), 8, "one test stimulus per object");
        }
        assert_ne!(splits[0].test, splits[1].test, "splits differ");
    }

    #[test]
    fn same_seed_same_splits_other_seed_other_splits() {
        let l = labels(4, 10);
        let a = stratified_splits(&l, 3, 0.1, 1).unwrap();
        assert_eq!(a, stratified_splits(&l, 3, 0.1, 1).unwrap());
        assert_ne!(a, stratified_splits(&l, 3, 0.1, 2).unwrap());
    }

    #[test]
    fn unequal_objects_get_proportional_test_shares() {
        let mut l = vec!["a"; 30];
        l.extend(vec!["b"; 10]);
        let s = &stratified_splits(&l, 1, 0.2, 0).unwrap()[0];
        let a = s.test.iter().filter(|&&i| l[i] == "a").count();
        assert_eq!((a, s.test.len() - a), (6, 2));
    }

    /// 48 objects × 5 stimuli, 24 test places: half a place per object. Every split and every
    /// seed must test a different random half, not the first 24 objects in sorted order.
    #[test]
    fn fractional_shares_test_different_objects_in_every_split_and_seed() {
        let l = labels(48, 5);
        let tested = |s: &Split| {
            let mut o: Vec<&String> = s.test.iter().map(|&i| &l[i]).collect();
            o.sort();
            let all = o.len();
            o.dedup();
            assert_eq!(all, o.len(), "at most one test stimulus per object");
            o
        };
        let mut union = std::collections::BTreeSet::new();
        let mut firsts = Vec::new();
        for seed in 0..3 {
            let splits = stratified_splits(&l, 10, 0.1, seed).unwrap();
            for s in &splits {
                assert_eq!(s.test.len(), 24);
                union.extend(tested(s));
            }
            assert_ne!(tested(&splits[0]), tested(&splits[1]), "seed {seed}");
            firsts.push(tested(&splits[0]));
        }
        assert_ne!(firsts[0], firsts[1], "seeds test other objects");
        assert_eq!(union.len(), 48, "every object is tested in some split");
        let w = stratification_warnings(&l, 0.1);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("24 stimuli") && w[0].contains("48"), "{w:?}");
        assert!(stratification_warnings(&labels(8, 10), 0.1).is_empty());
    }

    #[test]
    fn small_objects_are_capped_and_said_to_be() {
        let mut l = vec!["big"; 20];
        l.extend(["tiny"; 2]);
        let w = stratification_warnings(&l, 0.6);
        assert!(w.iter().any(|m| m.contains("\"tiny\"")), "{w:?}");
        for s in stratified_splits(&l, 5, 0.6, 3).unwrap() {
            let tiny_test = s.test.iter().filter(|&&i| l[i] == "tiny").count();
            assert!(tiny_test <= 1, "tiny keeps a training stimulus");
            assert_eq!(s.test.len(), 14);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(
            stratified_splits(&["a", "a", "b"], 2, 0.1, 0).is_err(),
            "singleton object"
        );
        assert!(
            stratified_splits(&labels(2, 5), 0, 0.1, 0).is_err(),
            "no splits"
        );
        assert!(
            stratified_splits(&labels(2, 5), 2, 1.0, 0).is_err(),
            "fraction 1"
        );
        assert!(
            stratified_splits(&labels(2, 5), 2, 0.0, 0).is_err(),
            "fraction 0"
        );
    }
}
