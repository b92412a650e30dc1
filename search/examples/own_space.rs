//! A search over your own space, with no ConvRNN in sight: tune the learning rate and the update
//! rule of gradient descent on an ill-conditioned quadratic. Each trial "trains" for a few epochs,
//! reports its loss after each so poor trials are pruned, and the study (in a temporary SQLite
//! file; several processes could share it) ends with a report of the best trials.
//!
//! `cargo run -p search --example own_space`

use std::sync::Arc;

use search::{Direction, Domain, ParamSpace, SqliteStorage, Study, StudyConfig, TrialFailure};

/// Minimises `x² + 25 y²` from (1, 1) for `epochs` × 10 steps; the loss after each epoch.
fn descend(lr: f64, momentum: bool, epochs: u64) -> Vec<f64> {
    let (mut x, mut y, mut vx, mut vy) = (1.0f64, 1.0f64, 0.0, 0.0);
    let beta = if momentum { 0.9 } else { 0.0 };
    (0..epochs)
        .map(|_| {
            for _ in 0..10 {
                vx = beta * vx + 2.0 * x;
                vy = beta * vy + 50.0 * y;
                x -= lr * vx;
                y -= lr * vy;
            }
            x * x + 25.0 * y * y
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let space = ParamSpace::new()
        .with(
            "lr",
            Domain::Float {
                low: 1e-4,
                high: 0.1,
                log: true,
            },
        )
        .with(
            "rule",
            Domain::Categorical {
                choices: vec!["plain".into(), "momentum".into()],
            },
        );
    let mut config = StudyConfig::new(space);
    config.direction = Direction::Minimize;
    config.seed = 7;
    let dir = tempfile::tempdir()?;
    let storage = Arc::new(SqliteStorage::open(dir.path().join("study.db"))?);
    let study = Study::open(storage, "quadratic", config)?;
    let summary = study.run_worker(24, &mut |trial| {
        let p = trial.params();
        let lr = p.get("lr").and_then(|v| v.as_f64()).unwrap_or(1e-3);
        let momentum = p.get("rule").and_then(|v| v.as_str()) == Some("momentum");
        let losses = descend(lr, momentum, 5);
        for (epoch, &loss) in losses.iter().enumerate() {
            if !loss.is_finite() {
                return Err(TrialFailure::Failed(format!("diverged at epoch {epoch}")));
            }
            if trial.report(epoch as u64, loss)?.0 {
                return Err(TrialFailure::Pruned);
            }
        }
        Ok(losses.last().copied().unwrap_or(f64::INFINITY))
    })?;
    println!("{summary:?}");
    let report = study.report(3)?;
    println!("trials by state: {:?}", report.states);
    for n in &report.top {
        if let Some(t) = report.trials.iter().find(|t| t.number == *n) {
            println!(
                "trial {:>2}: loss {:.3e}  lr {:.2e}  rule {}",
                t.number,
                t.value.unwrap_or(f64::NAN),
                t.params
                    .get("lr")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(f64::NAN),
                t.params.get("rule").and_then(|v| v.as_str()).unwrap_or("?")
            );
        }
    }
    for i in &report.importance {
        println!("importance of {}: {:.2}", i.param, i.score);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example end to end (`test = true` in the crate's Cargo.toml).
    #[test]
    fn runs() {
        super::main().unwrap_or_else(|e| panic!("{e}"));
    }
}
