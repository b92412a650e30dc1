//! A check before training that the unroll can be held at all: backpropagation through time
//! keeps every area's output of every step, so a long unroll or a large batch can need more
//! memory than the machine has, and the process would end in the allocator (an abort) or by the
//! kernel's out-of-memory killer, with no word about why. The bound is deliberately low (the
//! area outputs alone, not the cells' states, gates and convolution inputs that training also
//! keeps), so only settings that cannot possibly fit are refused.

use crate::error::{Error, Result};
use topology::ModelShapes;

/// Bytes backpropagation keeps at least: `batch × steps` copies of every area's output, f32
/// (saturating: a size past `u128` is as impossible as one just under it).
pub fn lower_bound_bytes(shapes: &ModelShapes, batch: usize, steps: usize) -> u128 {
    let per_image_step = shapes.areas.iter().fold(0u128, |sum, a| {
        let area = a
            .output
            .iter()
            .fold(1u128, |p, &d| p.saturating_mul(d as u128));
        sum.saturating_add(area)
    });
    [batch as u128, steps as u128, 4]
        .iter()
        .fold(per_image_step, |p, &f| p.saturating_mul(f))
}

/// `MemAvailable` of `/proc/meminfo` in bytes (`None` where there is no such file or line).
pub fn available_bytes() -> Option<u128> {
    parse_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_available(meminfo: &str) -> Option<u128> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// An error when `batch × steps` of `shapes`, for each of `ranks` processes sharing this
/// machine's memory, cannot fit in `available` bytes.
pub fn check(
    shapes: &ModelShapes,
    batch: usize,
    steps: usize,
    ranks: usize,
    available: Option<u128>,
) -> Result<()> {
    let ranks = ranks.max(1);
    let need = lower_bound_bytes(shapes, batch, steps);
    let shared = if ranks > 1 {
        format!(", shared by the {ranks} ranks on it")
    } else {
        String::new()
    };
    match available {
        Some(have) if need.saturating_mul(ranks as u128) > have => Err(Error::Config(format!(
            "an unroll of {steps} steps at a batch of {batch} keeps at least {:.1} GB of area \
             outputs for backpropagation, and this machine has {:.1} GB available{shared}; use \
             fewer steps, a smaller batch{} or smaller images",
            need as f64 / 1e9,
            have as f64 / 1e9,
            if ranks > 1 {
                ", fewer ranks per node"
            } else {
                ""
            }
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor::Device;
    use topology::{zoo, Model};

    #[test]
    fn the_bound_counts_every_area_output_and_refuses_what_cannot_fit() {
        let spec = zoo::get("compact_rgc").expect("preset");
        let model = Model::new(&spec, Device::Cpu, 0).expect("builds");
        let per: u128 = model
            .shapes
            .areas
            .iter()
            .map(|a| (a.output[0] * a.output[1] * a.output[2]) as u128)
            .sum();
        assert_eq!(lower_bound_bytes(&model.shapes, 64, 8), per * 64 * 8 * 4);
        let need = lower_bound_bytes(&model.shapes, 64, 100_000);
        let e = check(&model.shapes, 64, 100_000, 1, Some(need - 1)).unwrap_err();
        assert!(
            e.to_string().contains("100000 steps at a batch of 64"),
            "{e}"
        );
        check(&model.shapes, 64, 100_000, 1, Some(need)).unwrap();
        check(&model.shapes, 64, 100_000, 1, None).unwrap();
        // Ranks on one machine share its memory: what fits one does not fit two.
        let e = check(&model.shapes, 64, 100_000, 2, Some(need)).unwrap_err();
        assert!(e.to_string().contains("shared by the 2 ranks on it"), "{e}");
        check(&model.shapes, 64, 100_000, 2, Some(2 * need)).unwrap();
        // Past u128 the bound saturates instead of overflowing.
        let mut huge = model.shapes.clone();
        huge.areas[0].output = [usize::MAX; 3];
        assert_eq!(lower_bound_bytes(&huge, usize::MAX, usize::MAX), u128::MAX);
        assert!(check(&huge, 1, 1, 1, Some(u128::MAX - 1)).is_err());
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24683720 kB\nMemFree: 1 kB\nMemAvailable:   22080532 kB\n";
        assert_eq!(parse_available(text), Some(22_080_532 * 1024));
        assert_eq!(parse_available("MemTotal: 5 kB\n"), None);
    }
}
