//! Builds cells from their JSON specs and steps each over time on a constant drive, printing how
//! far the output moves from one step to the next: the identity cell's output never moves, the
//! recurrent cells' keeps changing as their state builds up.
//!
//! Run with `cargo run -p cell-zoo --example cell_over_time`.

use cell_zoo::{BuildCtx, Cell, CellDims, CellInput, CellSpec};
use tensor::testing::rand_tensor;
use tensor::{no_grad, Device, ParamStore, Rng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let specs = [
        r#"{"type": "identity"}"#,
        r#"{"type": "gru", "out_channels": 8}"#,
        r#"{"type": "lstm", "kernel": 3, "layer_norm": true}"#,
        r#"{"type": "rgc"}"#,
    ];
    // An area whose conv outputs 8 channels on 6×6 maps, reading a 4-channel 6×6 input.
    let dims = CellDims {
        x_channels: 8,
        u_channels: 4,
        feedback_channels: 0,
        hw: (6, 6),
        u_hw: (6, 6),
    };
    let mut data = Rng::new(1);
    let x = rand_tensor(&mut data, [2, 8, 6, 6]);
    let u = rand_tensor(&mut data, [2, 4, 6, 6]);
    let _inference = no_grad();
    for json in specs {
        let spec: CellSpec = serde_json::from_str(json)?;
        let mut params = ParamStore::new();
        let mut rng = Rng::new(0);
        let mut ctx = BuildCtx {
            params: &mut params,
            prefix: "area/cell".into(),
            rng: &mut rng,
            device: Device::Cpu,
        };
        let cell = spec.build(&mut ctx, &dims)?;
        let input = CellInput {
            x: &x,
            u: &u,
            feedback: None,
        };
        let mut state = cell.zero_state(&x)?;
        let mut last: Option<Vec<f32>> = None;
        let mut moves = Vec::new();
        for _ in 0..6 {
            let (y, next) = cell.step(&input, &state)?;
            let y = y.to_vec()?;
            if let Some(prev) = &last {
                moves.push(largest_change(prev, &y));
            }
            (last, state) = (Some(y), next);
        }
        println!(
            "{:<9} {:>5} parameters, {} output channels; largest change per step: {}",
            spec.kind(),
            params.num_elements(),
            spec.out_channels(dims.x_channels),
            moves
                .iter()
                .map(|m| format!("{m:.4}"))
                .collect::<Vec<_>>()
                .join(" → ")
        );
    }
    Ok(())
}

fn largest_change(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example end to end (`test = true` in the crate's Cargo.toml).
    #[test]
    fn runs() {
        super::main().unwrap_or_else(|e| panic!("{e}"));
    }
}
