//! Seeded stratified shuffle splits over stimuli: every split holds out about `test_fraction` of each
//! object's stimuli, so every object is seen in training and (object size permitting) in testing.

use std::collections::BTreeMap;

use crate::error::{NeurofitError, Result};

/// Indices (into the stimulus list) used to fit and to score one split; both sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// A small, seeded generator (SplitMix64): the splits depend only on the seed, on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller), for tests and synthetic data.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// `n_splits` stratified splits of the stimuli labelled by `labels` (one per stimulus).
///
/// The test set has `ceil(test_fraction · n)` stimuli, shared among objects in proportion to their
/// size (largest remainders get the leftovers). Each object needs at least 2 stimuli, and no object
/// gives up all of its stimuli to the test set.
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
    let quotas = allocate(&groups.values().map(Vec::len).collect::<Vec<_>>(), n_test);
    let mut rng = SplitMix64::new(seed);
    let mut splits = Vec::with_capacity(n_splits);
    for _ in 0..n_splits {
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

/// Share `total` among groups of the given sizes in proportion, by largest remainder, never taking a
/// whole group.
fn allocate(sizes: &[usize], total: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    let exact: Vec<f64> = sizes
        .iter()
        .map(|&s| total as f64 * s as f64 / n as f64)
        .collect();
    let mut q: Vec<usize> = exact
        .iter()
        .zip(sizes)
        .map(|(e, &s)| (e.floor() as usize).min(s - 1))
        .collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = total.saturating_sub(q.iter().sum());
    // Round-robin over groups by remainder until the total is met or every group is full.
    while left > 0 {
        let mut progressed = false;
        for &g in &order {
            if left == 0 {
                break;
            }
            if q[g] + 1 < sizes[g] {
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

    #[test]
    fn rng_normal_has_unit_variance() {
        let mut r = SplitMix64::new(3);
        let x: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let m = x.iter().sum::<f64>() / x.len() as f64;
        let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / x.len() as f64;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "mean {m} var {v}");
    }
}
