//! Samplers: uniform random, and the Tree-structured Parzen Estimator (Bergstra et al. 2011) in its
//! univariate form. For each parameter TPE splits the finished trials that have it into the best
//! `γ(n) = min(⌈0.1·n⌉, 25)` ("below") and the rest, fits a Parzen density to each — a truncated
//! Gaussian per observation plus a broad prior for ranges, smoothed counts for choices — draws
//! candidates from the good density `l` and keeps the one maximising `l(x)/g(x)`. Conditional
//! parameters are handled by construction: a parameter's densities use only the trials in which it
//! existed, and it is only drawn when its condition holds. Pruned trials count as worse than every
//! complete one.

use crate::params::{Domain, ParamDef, ParamValue, Params};
use crate::space::ParamSampler;
use seeded_rng::Rng;
use serde::{Deserialize, Serialize};

/// A finished trial as the sampler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The parameters the trial was run with.
    pub params: Params,
    /// Higher is better (the study negates minimised objectives); `None` for a pruned trial.
    pub score: Option<f64>,
}

/// Uniform sampling over every domain (log-uniform for log ranges).
#[derive(Debug)]
pub struct RandomSampler {
    rng: Rng,
}

impl RandomSampler {
    /// A sampler whose draws are fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        RandomSampler {
            rng: Rng::new(seed),
        }
    }
}

impl ParamSampler for RandomSampler {
    fn sample(&mut self, def: &ParamDef, _so_far: &Params) -> ParamValue {
        random_value(&def.domain, &mut self.rng)
    }
}

fn random_value(d: &Domain, rng: &mut Rng) -> ParamValue {
    match d {
        Domain::Float { .. } | Domain::Int { .. } => {
            let (lo, hi) = internal_bounds(d);
            from_internal(d, lo + rng.uniform() * (hi - lo))
        }
        _ => {
            let n = d.n_choices().unwrap_or(1).max(1);
            d.choice(rng.below(n)).unwrap_or(ParamValue::Bool(false))
        }
    }
}

/// Settings of the TPE sampler.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpeConfig {
    /// Trials drawn uniformly before TPE takes over.
    pub n_startup: usize,
    /// Candidates drawn from `l` per parameter.
    pub n_candidates: usize,
    /// Weight of the prior component (ranges) or of each choice's pseudo-count (choices).
    pub prior_weight: f64,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            n_startup: 10,
            n_candidates: 24,
            prior_weight: 1.0,
        }
    }
}

/// TPE for one trial: built from the history and a per-trial seed, then asked for each parameter.
#[derive(Debug)]
pub struct TpeSampler<'h> {
    cfg: TpeConfig,
    rng: Rng,
    history: &'h [Observation],
}

impl<'h> TpeSampler<'h> {
    /// The sampler of one trial: `history` is every finished trial of the study (scores with higher
    /// better), `seed` fixes its draws (a study derives it from its seed and the trial number).
    pub fn new(cfg: TpeConfig, seed: u64, history: &'h [Observation]) -> Self {
        TpeSampler {
            cfg,
            rng: Rng::new(seed),
            history,
        }
    }
}

/// Size of the "below" (good) group for `n` observations.
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

impl ParamSampler for TpeSampler<'_> {
    fn sample(&mut self, def: &ParamDef, _so_far: &Params) -> ParamValue {
        if self.history.len() < self.cfg.n_startup {
            return random_value(&def.domain, &mut self.rng);
        }
        let mut obs: Vec<(&ParamValue, f64)> = self
            .history
            .iter()
            .filter_map(|o| {
                let v = o.params.get(&def.name)?;
                def.domain
                    .contains(v)
                    .then_some((v, o.score.unwrap_or(f64::NEG_INFINITY)))
            })
            .collect();
        if obs.len() < 2 {
            return random_value(&def.domain, &mut self.rng);
        }
        // Stable sort, best first; equal scores keep trial order so results are reproducible.
        obs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let n_below = gamma(obs.len());
        let (below, above) = obs.split_at(n_below);
        match def.domain.n_choices() {
            Some(k) => self.sample_choice(&def.domain, k, below, above),
            None => self.sample_range(&def.domain, below, above),
        }
    }
}

impl TpeSampler<'_> {
    fn sample_choice(
        &mut self,
        d: &Domain,
        k: usize,
        below: &[(&ParamValue, f64)],
        above: &[(&ParamValue, f64)],
    ) -> ParamValue {
        let weights = |group: &[(&ParamValue, f64)]| {
            let mut w = vec![self.cfg.prior_weight; k];
            for (v, _) in group {
                if let Some(i) = d.index_of(v) {
                    w[i] += 1.0;
                }
            }
            let s: f64 = w.iter().sum();
            w.into_iter().map(|x| x / s).collect::<Vec<_>>()
        };
        let l = weights(below);
        let g = weights(above);
        let mut best = (f64::NEG_INFINITY, 0);
        for _ in 0..self.cfg.n_candidates.max(1) {
            let i = draw_index(&l, &mut self.rng);
            let ratio = l[i].ln() - g[i].ln();
            if ratio > best.0 {
                best = (ratio, i);
            }
        }
        d.choice(best.1).unwrap_or(ParamValue::Bool(false))
    }

    fn sample_range(
        &mut self,
        d: &Domain,
        below: &[(&ParamValue, f64)],
        above: &[(&ParamValue, f64)],
    ) -> ParamValue {
        let (lo, hi) = internal_bounds(d);
        let xs = |g: &[(&ParamValue, f64)]| {
            g.iter()
                .filter_map(|(v, _)| v.as_f64().map(|x| to_internal(d, x)))
                .collect::<Vec<_>>()
        };
        let l = Parzen::fit(&xs(below), lo, hi, self.cfg.prior_weight);
        let g = Parzen::fit(&xs(above), lo, hi, self.cfg.prior_weight);
        let mut best = (f64::NEG_INFINITY, (lo + hi) / 2.0);
        for _ in 0..self.cfg.n_candidates.max(1) {
            let x = l.draw(&mut self.rng);
            let ratio = l.log_pdf(x) - g.log_pdf(x);
            if ratio > best.0 {
                best = (ratio, x);
            }
        }
        from_internal(d, best.1)
    }
}

fn draw_index(w: &[f64], rng: &mut Rng) -> usize {
    let mut u = rng.uniform();
    for (i, &p) in w.iter().enumerate() {
        if u < p {
            return i;
        }
        u -= p;
    }
    w.len().saturating_sub(1)
}

/// Sampling space of a range: log for log domains, ±0.5 around integer bounds.
fn internal_bounds(d: &Domain) -> (f64, f64) {
    match d {
        Domain::Float { low, high, log } => {
            if *log {
                (low.ln(), high.ln())
            } else {
                (*low, *high)
            }
        }
        Domain::Int { low, high, log } => {
            let (l, h) = (*low as f64 - 0.5, *high as f64 + 0.5);
            if *log {
                (l.max(0.5).ln(), h.ln())
            } else {
                (l, h)
            }
        }
        _ => (0.0, 1.0),
    }
}

fn to_internal(d: &Domain, x: f64) -> f64 {
    match d {
        Domain::Float { log: true, .. } | Domain::Int { log: true, .. } => x.ln(),
        _ => x,
    }
}

fn from_internal(d: &Domain, x: f64) -> ParamValue {
    match d {
        Domain::Float { low, high, log } => {
            let v = if *log { x.exp() } else { x };
            ParamValue::Float(v.clamp(*low, *high))
        }
        Domain::Int { low, high, log } => {
            let v = if *log { x.exp() } else { x };
            ParamValue::Int((v.round() as i64).clamp(*low, *high))
        }
        _ => ParamValue::Bool(false),
    }
}

/// A mixture of Gaussians truncated to `[lo, hi]`, equal weights per observation plus a prior
/// centred on the range with the range's width as its spread.
#[derive(Debug)]
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    weights: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Parzen {
    fn fit(xs: &[f64], lo: f64, hi: f64, prior_weight: f64) -> Parzen {
        let width = (hi - lo).max(1e-12);
        let mut mus: Vec<f64> = xs.to_vec();
        mus.push((lo + hi) / 2.0);
        let n = mus.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sigmas = vec![width; n];
        // Each kernel is as wide as the larger gap to its neighbours (the range ends count as
        // neighbours), clipped so that few points give broad kernels and many give narrow ones.
        let min_sigma = width / (1.0 + n as f64).min(100.0);
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 { lo } else { mus[order[rank - 1]] };
            let right = if rank + 1 == n {
                hi
            } else {
                mus[order[rank + 1]]
            };
            sigmas[i] = (mus[i] - left).max(right - mus[i]).clamp(min_sigma, width);
        }
        sigmas[n - 1] = width;
        let mut weights = vec![1.0; n];
        weights[n - 1] = prior_weight;
        let s: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= s);
        Parzen {
            mus,
            sigmas,
            weights,
            lo,
            hi,
        }
    }

    fn draw(&self, rng: &mut Rng) -> f64 {
        let i = draw_index(&self.weights, rng);
        for _ in 0..100 {
            let x = self.mus[i] + self.sigmas[i] * rng.normal();
            if (self.lo..=self.hi).contains(&x) {
                return x;
            }
        }
        self.mus[i].clamp(self.lo, self.hi)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let mut p = 0.0;
        for ((&mu, &s), &w) in self.mus.iter().zip(&self.sigmas).zip(&self.weights) {
            let mass = norm_cdf((self.hi - mu) / s) - norm_cdf((self.lo - mu) / s);
            let z = (x - mu) / s;
            let dens = (-0.5 * z * z).exp() / (s * (2.0 * std::f64::consts::PI).sqrt());
            p += w * dens / mass.max(1e-12);
        }
        p.max(1e-300).ln()
    }
}

/// Standard normal CDF via the complementary error function (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere).
pub fn norm_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Condition;

    fn def(name: &str, domain: Domain) -> ParamDef {
        ParamDef {
            name: name.into(),
            domain,
            condition: Condition::Always,
        }
    }

    #[test]
    fn norm_cdf_matches_known_values() {
        // Φ(0) = 0.5, Φ(1) = 0.841344746, Φ(-1.96) = 0.0249979
        assert!((norm_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((norm_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((norm_cdf(-1.96) - 0.024_997_9).abs() < 1e-6);
    }

    #[test]
    fn gamma_follows_ten_percent_capped_at_25() {
        assert_eq!(gamma(1), 1);
        assert_eq!(gamma(10), 1);
        assert_eq!(gamma(11), 2);
        assert_eq!(gamma(1000), 25);
    }

    #[test]
    fn random_values_stay_in_their_domains() {
        let mut s = RandomSampler::new(3);
        let ds = [
            Domain::Float {
                low: 1e-4,
                high: 1e-1,
                log: true,
            },
            Domain::Int {
                low: -2,
                high: 4,
                log: false,
            },
            Domain::IntChoice {
                choices: vec![0, 3, 7],
            },
            Domain::Categorical {
                choices: vec!["a".into(), "b".into()],
            },
            Domain::Bool,
        ];
        for d in ds {
            let pd = def("x", d.clone());
            for _ in 0..200 {
                let v = s.sample(&pd, &Params::new());
                assert!(d.contains(&v), "{v:?} not in {d:?}");
            }
        }
    }

    fn history(points: &[(f64, f64)], name: &str) -> Vec<Observation> {
        points
            .iter()
            .map(|&(x, score)| Observation {
                params: [(name.to_string(), ParamValue::Float(x))].into(),
                score: Some(score),
            })
            .collect()
    }

    #[test]
    fn tpe_concentrates_near_the_good_region() {
        // Score peaks at x = 0.8 on [0, 1]: after 40 observations TPE's draws should cluster there
        // while uniform draws average 0.5.
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| {
                let x = (i as f64 + 0.5) / 40.0;
                (x, -(x - 0.8).powi(2))
            })
            .collect();
        let h = history(&pts, "x");
        let d = def(
            "x",
            Domain::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        );
        let mut near = 0;
        for seed in 0..50 {
            let mut s = TpeSampler::new(TpeConfig::default(), seed, &h);
            let v = s.sample(&d, &Params::new()).as_f64().unwrap();
            if (v - 0.8).abs() < 0.15 {
                near += 1;
            }
        }
        // Uniform sampling would land within ±0.15 of 0.8 in 30 % of draws.
        assert!(near >= 40, "only {near}/50 draws near the optimum");
    }

    #[test]
    fn tpe_prefers_the_winning_choice_and_ignores_absent_params() {
        let mut h = Vec::new();
        for i in 0..30 {
            let c = ["a", "b", "c"][i % 3];
            let score = if c == "b" { 1.0 + i as f64 * 0.01 } else { 0.0 };
            h.push(Observation {
                params: [("c".to_string(), ParamValue::Categorical(c.into()))].into(),
                score: Some(score),
            });
            // Trials without the parameter (its condition was off) must not disturb it.
            h.push(Observation {
                params: Params::new(),
                score: Some(10.0),
            });
        }
        let d = def(
            "c",
            Domain::Categorical {
                choices: vec!["a".into(), "b".into(), "c".into()],
            },
        );
        for seed in 0..20 {
            let mut s = TpeSampler::new(TpeConfig::default(), seed, &h);
            assert_eq!(
                s.sample(&d, &Params::new()),
                ParamValue::Categorical("b".into())
            );
        }
    }

    #[test]
    fn startup_trials_are_random_and_seeded() {
        let h = history(&[(0.9, 1.0), (0.1, 0.0)], "x");
        let d = def(
            "x",
            Domain::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        );
        let draw = |seed| {
            TpeSampler::new(TpeConfig::default(), seed, &h)
                .sample(&d, &Params::new())
                .as_f64()
                .unwrap()
        };
        assert_eq!(draw(7), draw(7));
        let distinct: std::collections::BTreeSet<u64> =
            (0..10).map(|s| draw(s).to_bits()).collect();
        assert!(distinct.len() > 5);
    }
}
