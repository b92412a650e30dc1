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
