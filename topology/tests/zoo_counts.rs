//! Parameter counts of the zoo, measured on built models.
#![allow(clippy::unwrap_used)]

use topology::{count, zoo, Model};

#[test]
fn the_plain_shallow_base_has_the_published_parameter_count() {
    let spec = zoo::get("feedforward_shallow").unwrap();
    let m = Model::new(&spec, tensor::Device::Cpu, 0).unwrap();
    assert_eq!(m.num_params(), 4_197_736);
}

#[test]
fn compact_presets_are_cheap_and_comparable() {
    let ff = count::cost(&zoo::get("compact_feedforward").unwrap()).unwrap();
    let rgc = count::cost(&zoo::get("compact_rgc").unwrap()).unwrap();
    let ratio = ff.params as f64 / rgc.params as f64;
    assert!(
        (0.8..1.25).contains(&ratio),
        "ff {} vs rgc {}",
        ff.params,
        rgc.params
    );
    for name in zoo::names()
        .into_iter()
        .filter(|n| n.starts_with("compact_"))
    {
        let c = count::cost(&zoo::get(name).unwrap()).unwrap();
        assert!(
            c.flops_per_step > 0 && c.flops_per_step < 200_000_000,
            "{name}: {c:?}"
        );
    }
}

/// `benches/torch_unroll.py` builds these presets in PyTorch and refuses to time one whose
/// parameter count differs from its `ZOO_PARAMS`; this reads that table and checks it against the
/// zoo, so the two sides of every comparison stay one model.
#[test]
fn the_pytorch_peers_models_have_the_zoo_parameter_counts() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/torch_unroll.py");
    let text = std::fs::read_to_string(&script).unwrap();
    let table = text
        .split("ZOO_PARAMS = {")
        .nth(1)
        .and_then(|t| t.split('}').next())
        .unwrap();
    let mut checked = Vec::new();
    for line in table.lines().filter(|l| l.contains(':')) {
        let (name, count) = line.split_once(':').unwrap();
        let name = name.trim().trim_matches('"');
        let count: usize = count
            .trim()
            .trim_end_matches(',')
            .replace('_', "")
            .parse()
            .unwrap();
        let spec = zoo::get(name).unwrap_or_else(|| panic!("{name} is not a zoo preset"));
        // Built, not run (one step of the 224-px presets is slow in a debug build).
        let built = Model::new(&spec, tensor::Device::Cpu, 0).unwrap();
        assert_eq!(built.num_params(), count, "{name}");
        checked.push(name.to_string());
    }
    assert!(
        checked.contains(&"feedforward_intermediate".to_string()),
        "{checked:?}"
    );
    assert!(checked.contains(&"rgc_shallow".to_string()), "{checked:?}");
}
