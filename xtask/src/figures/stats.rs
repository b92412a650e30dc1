//! The statistics the report states: mean and sample standard deviation over seeds, Welch's and
//! the paired t-test (two-sided), and Holm's correction for testing several claims at once.
//!
//! A value that could not be computed stays NaN through every helper here (a NaN accuracy gives a
//! NaN p-value, a NaN p-value a NaN adjusted one), so a verdict can see that a test is missing
//! instead of reading it as "not significant".

/// Mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Median of `xs` (NaN when empty or when a value is NaN).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Sample standard deviation (n − 1); 0 for fewer than two values (NaN when that value is not
/// finite).
pub fn sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return if xs.iter().all(|x| x.is_finite()) {
            0.0
        } else {
            f64::NAN
        };
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// A table cell for the mean and sd of `n` values, scaled by `scale`, to `decimals` places:
/// `mean ± sd`, or with one value the mean alone and `(n = 1)` (one value has no spread: a
/// `± 0.000` would read as a measured one); `-` with none.
pub fn mean_sd_cell(mean: f64, sd: f64, n: usize, scale: f64, decimals: usize) -> String {
    match n {
        0 => "-".into(),
        1 => format!("{:.*} (n = 1)", decimals, scale * mean),
        _ => format!(
            "{:.*} ± {:.*}",
            decimals,
            scale * mean,
            decimals,
            scale * sd
        ),
    }
}

/// A table's sd column for `n` values, like [`mean_sd_cell`]: `none (n = 1)` where there is no
/// spread.
pub fn sd_cell(sd: f64, n: usize, scale: f64, decimals: usize) -> String {
    if n < 2 {
        format!("none (n = {n})")
    } else {
        format!("{:.*}", decimals, scale * sd)
    }
}

use serde::{Deserialize, Serialize};

/// One comparison of a figure's tests: Welch's t-test and its Holm-adjusted p-value (the
/// columns every test table of the report ends with). Flattened into the figures' comparison
/// rows, so their JSON keeps the fields `diff`, `t`, `df`, `p`, `p_holm`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tested {
    /// Mean of the first sample minus mean of the second.
    pub diff: f64,
    pub t: f64,
    pub df: f64,
    pub p: f64,
    /// NaN until [`holm_tested`] adjusts the comparisons together.
    pub p_holm: f64,
}

/// The header cells of [`Tested::cells`], after the difference's own.
pub const TESTED_HEADER: &str = "t | df | p | p (Holm) |";

impl Tested {
    /// Welch's test of `a` against `b`, not yet adjusted; `None` as [`welch`].
    pub fn welch(a: &[f64], b: &[f64]) -> Option<Tested> {
        welch(a, b).map(|w| Tested {
            diff: w.diff,
            t: w.t,
            df: w.df,
            p: w.p,
            p_holm: f64::NAN,
        })
    }

    /// Significantly above at level `alpha` (after Holm).
    pub fn above(&self, alpha: f64) -> bool {
        self.p_holm < alpha && self.diff > 0.0
    }

    /// Significantly below at level `alpha` (after Holm).
    pub fn below(&self, alpha: f64) -> bool {
        self.p_holm < alpha && self.diff < 0.0
    }

    /// Whether the test could not be computed (a NaN difference or p-value), which is not the
    /// same as a test that is not significant.
    pub fn untested(&self) -> bool {
        self.p_holm.is_nan() || self.diff.is_nan()
    }

    /// The table cells `difference | t | df | p | p (Holm) |`, the difference multiplied by
    /// `scale` (100 for points) with `decimals` decimals.
    pub fn cells(&self, scale: f64, decimals: usize) -> String {
        format!(
            "{:+.*} | {:.2} | {:.1} | {:.3} | {:.3} |",
            decimals,
            scale * self.diff,
            self.t,
            self.df,
            self.p,
            self.p_holm
        )
    }
}

/// Holm-adjusts the tests of `items` together (see [`holm`]).
pub fn holm_tested<T>(items: &mut [T], tested: impl Fn(&mut T) -> &mut Tested) {
    let ps: Vec<f64> = items.iter_mut().map(|i| tested(i).p).collect();
    for (item, a) in items.iter_mut().zip(holm(&ps)) {
        tested(item).p_holm = a;
    }
}

/// A two-sided t-test's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TTest {
    /// Mean of the first sample minus mean of the second (or the mean difference, paired).
    pub diff: f64,
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

/// Welch's t-test of `a` against `b` (unequal variances). `None` with fewer than two values in
/// either sample. Two samples without any spread give p = 0 when their means differ, 1 when not.
pub fn welch(a: &[f64], b: &[f64]) -> Option<TTest> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sd(a).powi(2) / na, sd(b).powi(2) / nb);
    let diff = mean(a) - mean(b);
    let se2 = va + vb;
    if se2 == 0.0 {
        return Some(degenerate(diff, na + nb - 2.0));
    }
    let df = se2.powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    let t = diff / se2.sqrt();
    Some(TTest {
        diff,
        t,
        df,
        p: two_sided_p(t, df),
    })
}

/// The paired t-test of `a[i] − b[i]` against 0. `None` for unequal lengths or fewer than two
/// pairs.
pub fn paired(a: &[f64], b: &[f64]) -> Option<TTest> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len() as f64;
    let diff = mean(&d);
    let se = sd(&d) / n.sqrt();
    if se == 0.0 {
        return Some(degenerate(diff, n - 1.0));
    }
    let t = diff / se;
    Some(TTest {
        diff,
        t,
        df: n - 1.0,
        p: two_sided_p(t, n - 1.0),
    })
}

fn degenerate(diff: f64, df: f64) -> TTest {
    let (t, p) = if diff.is_nan() {
        (f64::NAN, f64::NAN)
    } else if diff == 0.0 {
        (0.0, 1.0)
    } else {
        (diff.signum() * f64::INFINITY, 0.0)
    };
    TTest { diff, t, df, p }
}

/// Holm's step-down adjustment of p-values (same order as given; each at most 1). A NaN p-value
/// (a test that could not be computed) stays NaN and still counts in the number of tests, so the
/// others are adjusted as if it had been made (`f64::min(NaN, 1.0)` is 1.0, which would have
/// turned it into "not significant").
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).filter(|&i| !ps[i].is_nan()).collect();
    order.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
    let mut out = vec![f64::NAN; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_x(df/2, 1/2), x = df/(df+t²).
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return if t.is_nan() { f64::NAN } else { 0.0 };
    }
    reg_inc_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz), on
/// the side where it converges fast.
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = C[0];
    for (i, &c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_has_no_spread_in_a_table() {
        assert_eq!(mean_sd_cell(0.125, 0.0, 1, 1.0, 3), "0.125 (n = 1)");
        assert_eq!(mean_sd_cell(0.5, 0.25, 3, 100.0, 1), "50.0 ± 25.0");
        assert_eq!(mean_sd_cell(f64::NAN, f64::NAN, 0, 1.0, 3), "-");
        assert_eq!(sd_cell(0.0, 1, 1.0, 3), "none (n = 1)");
        assert_eq!(sd_cell(0.01234, 2, 1.0, 3), "0.012");
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_distribution_matches_tables() {
        // Two-sided critical values from standard t tables.
        for (t, df, p) in [
            (12.706, 1.0, 0.05),
            (4.303, 2.0, 0.05),
            (2.776, 4.0, 0.05),
            (2.228, 10.0, 0.05),
            (3.169, 10.0, 0.01),
            (1.960, 1e6, 0.05),
        ] {
            let got = two_sided_p(t, df);
            assert!(close(got, p, 2e-4), "t={t} df={df}: {got} vs {p}");
        }
        assert_eq!(two_sided_p(0.0, 3.0), 1.0);
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
    }

    #[test]
    fn welch_and_paired_tests() {
        // Worked by hand: means 2 and 5, variances 1 and 1, n = 3 each: t = -3/sqrt(2/3), df 4.
        let w = welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!(close(w.diff, -3.0, 1e-12));
        assert!(close(w.t, -3.0 / (2.0f64 / 3.0).sqrt(), 1e-12));
        assert!(close(w.df, 4.0, 1e-12));
        assert!(close(w.p, 0.021_311, 1e-5), "{}", w.p);
        let p = paired(&[2.0, 3.0, 5.0], &[1.0, 1.0, 2.0]).unwrap();
        assert!(close(p.diff, 2.0, 1e-12) && close(p.df, 2.0, 0.0));
        assert!(p.p > 0.0 && p.p < 0.1, "{}", p.p);
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
        assert!(paired(&[1.0, 2.0], &[1.0]).is_none());
        let flat = welch(&[1.0, 1.0], &[2.0, 2.0]).unwrap();
        assert_eq!(flat.p, 0.0);
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0]).unwrap().p, 1.0);
    }

    #[test]
    fn tested_rows_adjust_together_and_format_their_cells() {
        let mut v = vec![
            Tested::welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap(),
            Tested::welch(&[0.5, 0.6], &[0.5, f64::NAN]).unwrap(),
        ];
        assert!(v[0].p_holm.is_nan(), "not adjusted before holm_tested");
        holm_tested(&mut v, |t| t);
        assert!(close(v[0].p_holm, 2.0 * v[0].p, 1e-12), "{v:?}");
        assert!(v[1].untested() && !v[0].untested());
        assert!(v[0].below(0.05) && !v[0].above(0.05));
        assert_eq!(
            v[0].cells(100.0, 1),
            format!(
                "-300.0 | -3.67 | 4.0 | {:.3} | {:.3} |",
                v[0].p, v[0].p_holm
            )
        );
        let j = serde_json::to_value(v[0]).unwrap();
        for k in ["diff", "t", "df", "p", "p_holm"] {
            assert!(j.get(k).is_some(), "{k} missing from {j}");
        }
    }

    #[test]
    fn holm_adjusts_in_order() {
        let adj = holm(&[0.01, 0.04, 0.03]);
        assert!(close(adj[0], 0.03, 1e-12));
        assert!(close(adj[2], 0.06, 1e-12));
        assert!(close(adj[1], 0.06, 1e-12), "monotone: {adj:?}");
        assert!(holm(&[0.9, 0.8]).iter().all(|&p| p <= 1.0));
        assert_eq!(sd(&[2.0]), 0.0);
        assert!(close(sd(&[1.0, 2.0, 3.0]), 1.0, 1e-12));
    }

    #[test]
    fn a_test_that_could_not_be_computed_stays_nan() {
        let adj = holm(&[f64::NAN, 0.01, 0.02]);
        assert!(adj[0].is_nan(), "{adj:?}");
        // The NaN still counts as one of the three tests.
        assert!(
            close(adj[1], 0.03, 1e-12) && close(adj[2], 0.04, 1e-12),
            "{adj:?}"
        );
        assert!(holm(&[f64::NAN]).iter().all(|p| p.is_nan()));
        let w = welch(&[0.5, f64::NAN, 0.6], &[0.4, 0.5]).unwrap();
        assert!(w.p.is_nan() && w.t.is_nan(), "{w:?}");
        assert!(paired(&[f64::NAN, 1.0], &[0.0, 0.0]).unwrap().p.is_nan());
        assert!(paired(&[f64::INFINITY, 1.0], &[0.0, 0.0])
            .unwrap()
            .p
            .is_nan());
        assert!(sd(&[f64::NAN]).is_nan() && sd(&[]) == 0.0);
        assert!(median(&[1.0, f64::NAN]).is_nan() && median(&[]).is_nan());
        assert_eq!((median(&[3.0, 1.0, 2.0]), median(&[4.0, 1.0])), (2.0, 2.5));
        assert!(degenerate(f64::NAN, 2.0).p.is_nan());
    }
}
