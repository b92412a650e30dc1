//! Loads a released neuroailab/convrnns checkpoint into the zoo's model of the same architecture
//! and runs it: what was read, checked and skipped, then the model's five most likely ImageNet
//! classes for an image at every time step and after its decoder.
//!
//! ```text
//! cargo run --release -p tf-import --example import_released -- MODEL CHECKPOINT
//! cargo run --release -p tf-import --example import_released -- rgc_intermediate ckpts/rgc_intermediate/model.ckpt
//! ```
//!
//! MODEL is a released architecture (`cargo xtask models` lists them) and CHECKPOINT the
//! checkpoint's prefix, `.index` file or folder. Without arguments it imports the narrowed
//! `gru_shallow` checkpoint the parity tests use (`tests/reference/gru_shallow/`: every channel
//! count divided by 32, written by the reference code under TensorFlow), so it runs in about a
//! second. The image is seeded noise standing in for a photo (ImageNet-normalised, 224×224).

use std::path::{Path, PathBuf};

use tensor::testing::rand_tensor;
use tensor::{no_grad, Device, Rng, Tensor};
use tf_import::Imported;
use topology::{Frames, ModelSpec, Needed, TimingMode, UnrollOptions};

/// The five largest entries of row 0 of `[N, classes]` scores, best first.
fn top5(scores: &Tensor) -> tensor::Result<Vec<usize>> {
    let classes = scores.dims()[1];
    let row = scores.to_vec()?;
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    order.truncate(5);
    Ok(order)
}

/// Imports `checkpoint` as `spec`, reports the import, and returns the model with its top five
/// classes after the decoder.
fn run(
    spec: &ModelSpec,
    checkpoint: &Path,
) -> Result<(Imported, Vec<usize>), Box<dyn std::error::Error>> {
    let imported = tf_import::import_path(checkpoint, spec, Device::Cpu)?;
    let (model, r) = (&imported.model, &imported.report);
    println!(
        "{}: {} variables read into {} parameters ({} values); {} constants checked; \
         training state skipped: {:?}",
        r.checkpoint.display(),
        r.variables_read,
        model.params.names().count(),
        r.values_loaded,
        r.constants_checked,
        r.training_state_skipped
    );
    println!("decoder from the checkpoint: {:?}", model.spec.decoder);

    let image = rand_tensor(&mut Rng::new(0), [1, 3, 224, 224]);
    let _inference = no_grad();
    let out = model.unroll(
        &Frames::image(image),
        &UnrollOptions {
            steps: None,
            mode: TimingMode::Biological,
            needed: Needed::AllLogits,
        },
    )?;
    let logits = out.all_logits()?;
    for (t, l) in logits.iter().enumerate() {
        println!("step {t:>2}: top-5 classes {:?}", top5(l)?);
    }
    let decoded = top5(&model.spec.decoder.decode(&logits)?)?;
    println!(
        "{} decoder: top-5 classes {decoded:?}",
        model.spec.decoder.name()
    );
    Ok((imported, decoded))
}

/// The narrowed `gru_shallow` the parity tests import, and its checkpoint.
fn fixture() -> Result<(ModelSpec, PathBuf), String> {
    let spec = topology::zoo::get("gru_shallow").ok_or("gru_shallow is not a preset")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/gru_shallow");
    Ok((topology::zoo::narrowed(&spec, 32), dir.join("model.ckpt")))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (spec, checkpoint) = match args.as_slice() {
        [] => fixture()?,
        [model, checkpoint] => (topology::zoo::get_or_err(model)?, PathBuf::from(checkpoint)),
        _ => return Err("usage: import_released [MODEL CHECKPOINT]".into()),
    };
    run(&spec, &checkpoint)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml) on the narrowed
    /// fixture: every parameter filled from the checkpoint, and five distinct classes.
    #[test]
    fn runs() -> Result<(), Box<dyn std::error::Error>> {
        let (spec, checkpoint) = super::fixture()?;
        let (imported, top5) = super::run(&spec, &checkpoint)?;
        assert_eq!(imported.report.values_loaded, imported.model.num_params());
        let mut distinct = top5.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "{top5:?}");
        Ok(())
    }
}
