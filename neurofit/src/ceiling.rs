//! Split-half reliability ceilings: split each stimulus's repetitions into two random halves, average
//! each half, correlate the two half-means over stimuli per neuroid, correct with Spearman–Brown
//! (`2r / (1 + r)`), and average over several random halvings.

use ndarray::{Array2, ArrayView2, Axis};
use seeded_rng::Rng;

use crate::error::{NeurofitError, Result};
use crate::stats::{pearson_columns, spearman_brown};

/// Per-neuroid Spearman–Brown-corrected split-half reliability of one time bin.
///
/// `responses` is `[presentation, neuroid]`; `by_stimulus[s]` lists the presentations (rows) of
/// stimulus `s`, each needing at least 2. The result is the mean over `halvings` random halvings
/// (NaN where a neuroid's halves never vary). A stimulus whose half has no finite trial is left
/// out of that halving's correlation for that neuroid.
pub fn split_half_ceiling(
    responses: ArrayView2<'_, f32>,
    by_stimulus: &[Vec<usize>],
    stimulus_ids: &[String],
    halvings: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let (n_pres, n_neur) = responses.dim();
    if halvings == 0 {
        return Err(NeurofitError::Config {
            field: "ceiling halvings",
            reason: "need at least 1".into(),
        });
    }
    for (s, rows) in by_stimulus.iter().enumerate() {
        if rows.len() < 2 {
            return Err(NeurofitError::TooFewRepetitions {
                stimulus_id: stimulus_ids
                    .get(s)
                    .cloned()
                    .unwrap_or_else(|| format!("#{s}")),
                count: rows.len(),
            });
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= n_pres) {
            return Err(NeurofitError::shape(
                "ceiling presentation index",
                bad.to_string(),
                format!("< {n_pres}"),
            ));
        }
    }
    let mut rng = Rng::new(seed);
    let mut sum = vec![0.0; n_neur];
    let mut count = vec![0usize; n_neur];
    let n_stim = by_stimulus.len();
    for _ in 0..halvings {
        let mut a = Array2::<f64>::zeros((n_stim, n_neur));
        let mut b = Array2::<f64>::zeros((n_stim, n_neur));
        for (s, rows) in by_stimulus.iter().enumerate() {
            let mut rows = rows.clone();
            rng.shuffle(&mut rows);
            let half = rows.len() / 2;
            mean_rows_into(responses, &rows[..half], a.row_mut(s));
            mean_rows_into(responses, &rows[half..], b.row_mut(s));
        }
        for (j, mut r) in pearson_columns(a.view(), b.view()).into_iter().enumerate() {
            // A half without a finite trial of some stimulus (a missing trial, which the NaN
            // policy keeps) would cost the neuroid this halving, and with two repetitions every
            // halving: correlate over the stimuli both halves have instead.
            if r.is_nan() {
                let both: Vec<usize> = (0..n_stim)
                    .filter(|&s| a[[s, j]].is_finite() && b[[s, j]].is_finite())
                    .collect();
                if both.len() < n_stim {
                    let (ha, hb) = (
                        a.column(j).select(Axis(0), &both),
                        b.column(j).select(Axis(0), &both),
                    );
                    r = pearson_columns(
                        ha.view().insert_axis(Axis(1)),
                        hb.view().insert_axis(Axis(1)),
                    )[0];
                }
            }
            let c = spearman_brown(r, 2.0);
            if c.is_finite() {
                sum[j] += c;
                count[j] += 1;
            }
        }
    }
    Ok(sum
        .into_iter()
        .zip(count)
        .map(|(s, c)| if c > 0 { s / c as f64 } else { f64::NAN })
        .collect())
}

/// The mean of `rows` over their finite values (missing trials skipped, as Brain-Score's
/// `mean(skipna=True)`), NaN for a neuroid without any: its halving then yields no correlation.
fn mean_rows_into(
    x: ArrayView2<'_, f32>,
    rows: &[usize],
    mut out: ndarray::ArrayViewMut1<'_, f64>,
) {
    let mut count = vec![0u32; out.len()];
    for &r in rows {
        for ((o, k), &v) in out.iter_mut().zip(&mut count).zip(x.row(r).iter()) {
            if v.is_finite() {
                *o += v as f64;
                *k += 1;
            }
        }
    }
    for (o, k) in out.iter_mut().zip(count) {
        *o = if k > 0 { *o / k as f64 } else { f64::NAN };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stimuli with unit-variance signal plus noise of variance `noise_var` per trial: the mean of
    /// `reps` trials has reliability `1 / (1 + noise_var / reps)`, which the ceiling must estimate.
    fn synthetic(
        n_stim: usize,
        reps: usize,
        noise_var: &[f64],
        seed: u64,
    ) -> (Array2<f32>, Vec<Vec<usize>>) {
        let mut rng = Rng::new(seed);
        let n_neur = noise_var.len();
        let mut x = Array2::<f32>::zeros((n_stim * reps, n_neur));
        let mut by = vec![Vec::new(); n_stim];
        for s in 0..n_stim {
            let signal: Vec<f64> = (0..n_neur).map(|_| rng.normal()).collect();
            for r in 0..reps {
                let row = r * n_stim + s; // interleaved, as recordings are
                by[s].push(row);
                for j in 0..n_neur {
                    x[[row, j]] = (signal[j] + noise_var[j].sqrt() * rng.normal()) as f32;
                }
            }
        }
        (x, by)
    }

    #[test]
    fn ceiling_matches_spearman_brown_reliability() {
        let reps = 4;
        let noise = [0.5, 2.0, 4.0];
        let (x, by) = synthetic(4000, reps, &noise, 11);
        let ids: Vec<String> = (0..by.len()).map(|i| i.to_string()).collect();
        let c = split_half_ceiling(x.view(), &by, &ids, 10, 5).unwrap();
        for (j, nv) in noise.iter().enumerate() {
            let want = 1.0 / (1.0 + nv / reps as f64);
            // ~2.5 standard errors of the estimate at 4000 stimuli
            assert!(
                (c[j] - want).abs() < 0.04,
                "neuroid {j}: ceiling {} want {want}",
                c[j]
            );
        }
        assert!(
            c[0] > c[1] && c[1] > c[2],
            "noisier sites have lower ceilings: {c:?}"
        );
    }

    #[test]
    fn single_repetition_is_an_error_naming_the_stimulus() {
        let (x, mut by) = synthetic(5, 2, &[1.0], 1);
        by[3].truncate(1);
        let ids: Vec<String> = (0..5).map(|i| format!("im{i}")).collect();
        let err = split_half_ceiling(x.view(), &by, &ids, 2, 0).unwrap_err();
        assert!(
            matches!(err, NeurofitError::TooFewRepetitions { ref stimulus_id, count: 1 } if stimulus_id == "im3"),
            "{err}"
        );
    }

    /// With two repetitions every halving puts a missing trial alone in a half; the neuroid keeps
    /// a ceiling from the other stimuli instead of none.
    #[test]
    fn a_missing_trial_leaves_its_stimulus_out_of_the_correlation() {
        let (mut x, by) = synthetic(400, 2, &[0.5, 0.5], 3);
        let ids: Vec<String> = (0..by.len()).map(|i| i.to_string()).collect();
        let whole = split_half_ceiling(x.view(), &by, &ids, 4, 5).unwrap();
        x[[by[7][1], 0]] = f32::NAN;
        let c = split_half_ceiling(x.view(), &by, &ids, 4, 5).unwrap();
        assert!((c[0] - whole[0]).abs() < 0.02, "{c:?} vs {whole:?}");
        assert_eq!(c[1], whole[1]);
    }

    #[test]
    fn half_means_skip_missing_trials() {
        let x = ndarray::array![[1.0f32, f32::NAN], [3.0, f32::NAN], [f32::NAN, f32::NAN]];
        let mut out = ndarray::Array1::<f64>::zeros(2);
        mean_rows_into(x.view(), &[0, 1, 2], out.view_mut());
        assert_eq!(out[0], 2.0);
        assert!(out[1].is_nan());
    }
}
