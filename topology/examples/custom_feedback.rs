//! A feedback model of your own, written as a `ModelSpec` in Rust: three areas (V1 → V2 → V4) on
//! 32×32 colour images, a feedback edge from V4 back to V2 whose cell (the general RGC) routes the
//! feedback itself, validation that names a bad edge, the inferred shapes (including the step at
//! which the image first reaches each area), and an unroll with the per-step logits.
//!
//! Run with `cargo run -p topology --example custom_feedback`.

use cell_zoo::{Activation, CellSpec, GeneralRgcSpec};
use tensor::testing::rand_tensor;
use tensor::{no_grad, Device, Rng};
use topology::{
    AreaSpec, ConvSpec, Decoder, EdgeSpec, Frames, InputSpec, Model, ModelSpec, Needed, PoolSpec,
    ReadoutKind, ReadoutSpec, TimingMode, UnrollOptions,
};

fn area(name: &str, channels: usize, cell: CellSpec) -> AreaSpec {
    AreaSpec {
        name: name.into(),
        conv: ConvSpec {
            channels,
            kernel: 3,
            stride: 1,
            activation: Activation::Elu,
            bias: true,
        },
        cell,
        residual: None,
        pool: Some(PoolSpec::TWO_BY_TWO),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rgc = GeneralRgcSpec {
        cell_depth: 16,
        ..GeneralRgcSpec::median()
    };
    let mut spec = ModelSpec {
        name: "v1_v2_v4_feedback".into(),
        input: InputSpec {
            channels: 3,
            height: 32,
            width: 32,
        },
        num_classes: 5,
        areas: vec![
            area("v1", 16, CellSpec::Identity),
            area("v2", 24, CellSpec::GeneralRgc(Box::new(rgc))),
            area(
                "v4",
                32,
                CellSpec::Gru {
                    out_channels: None,
                    kernel: 3,
                },
            ),
        ],
        edges: vec![EdgeSpec {
            from: "v4".into(),
            to: "v3".into(),
        }],
        readout: ReadoutSpec {
            name: "readout".into(),
            kind: ReadoutKind::GapFc,
        },
        default_steps: 6,
        image_off: 6,
        decoder: Decoder::Last,
    };
    // A typo in an edge is caught before anything is built.
    match Model::new(&spec, Device::Cpu, 0) {
        Err(e) => println!("rejected: {e}"),
        Ok(_) => return Err("the misnamed edge was accepted".into()),
    }
    spec.edges[0].to = "v2".into();
    println!("{}", serde_json::to_string(&spec)?);

    let model = Model::new(&spec, Device::Cpu, 0)?;
    println!("{} parameters", model.num_params());
    for a in &model.shapes.areas {
        println!(
            "{:>3}: input {:?} → output {:?}, feedback into the cell: {} channels, image first at step {}",
            a.name, a.input, a.output, a.cell_feedback_channels, a.first_step
        );
    }

    println!(
        "the image reaches the readout at step {}",
        model.shapes.readout_first_step
    );

    let images = rand_tensor(&mut Rng::new(1), [2, 3, 32, 32]);
    let _inference = no_grad();
    let unrolled = model.unroll(
        &Frames::image(images),
        &UnrollOptions {
            steps: None,
            mode: TimingMode::Biological,
            needed: Needed::AllLogits,
        },
    )?;
    for (t, logits) in unrolled.all_logits()?.iter().enumerate() {
        let first = &logits.to_vec()?[..spec.num_classes];
        println!("step {t}: logits of image 0 {first:+.5?}");
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
