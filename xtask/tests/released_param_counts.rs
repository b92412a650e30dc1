//! `cargo xtask models --json` reports, for each of the 20 released names, the trainable parameter
//! count of its checkpoint (and `info` counts the same way), and the README's parameter table says
//! what `models` reports.
//!
//! The checkpoints' counts are the ones the fixture script recorded by building each reference
//! graph at full width (`full_width_trainable_parameters` in
//! `tf-import/tests/reference/manifest.json`; optimiser slots and the reference's constants are
//! not parameters; the `*_tmaxconf` models' trained softmax temperature is).

use std::collections::BTreeMap;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo xtask ARGS`'s JSON output.
fn xtask_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("runs xtask");
    assert!(
        out.status.success(),
        "xtask {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// `models --json` as name → params.
fn reported() -> BTreeMap<String, u64> {
    let rows = xtask_json(&["models", "--json"]);
    rows.as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name").to_string(),
                r["params"].as_u64().expect("params"),
            )
        })
        .collect()
}

/// `info NAME --json`'s params.
fn info_params(name: &str) -> u64 {
    xtask_json(&["info", name, "--json"])["params"]
        .as_u64()
        .expect("params")
}

/// The README's parameter table (`| model | parameters | | model | parameters |`): each
/// `| name | 1,234 |` cell pair, a cell listing variants (`rgc_intermediate (and `_dthresh`)`)
/// by its first name.
fn readme_table() -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let rows = text
        .lines()
        .skip_while(|l| !l.starts_with("| model | parameters |"))
        .take_while(|l| l.starts_with('|'));
    let mut out = Vec::new();
    for line in rows {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        for pair in cells.windows(2) {
            let name = pair[0]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(|c| c == '*' || c == ',');
            let count = pair[1].trim_matches('*').replace(',', "");
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if let (true, Ok(n)) = (is_name, count.parse::<u64>()) {
                out.push((name.to_string(), n));
            }
        }
    }
    out
}

#[test]
fn models_reports_the_released_checkpoints_parameter_counts_and_the_readme_agrees() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tf-import/tests/reference/manifest.json"))
            .expect("manifest.json"),
    )
    .expect("JSON");
    let released = manifest["models"].as_object().expect("models");
    assert_eq!(released.len(), 20, "the 20 released names");
    let reported = reported();
    let mut wrong = Vec::new();
    for (name, entry) in released {
        let want = entry["full_width_trainable_parameters"]
            .as_u64()
            .expect("count");
        match reported.get(name) {
            Some(&got) if got == want => {}
            got => wrong.push(format!("{name}: models says {got:?}, checkpoint {want}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // info counts as models does, the trained max_conf temperature included.
    let name = "rgc_intermediate_tmaxconf";
    assert_eq!(
        info_params(name),
        released[name]["full_width_trainable_parameters"]
            .as_u64()
            .expect("count"),
        "info {name}"
    );

    let table = readme_table();
    assert!(
        table.len() >= 20,
        "README's parameter table not found ({table:?})"
    );
    for (name, n) in table {
        let got = reported
            .get(&name)
            .unwrap_or_else(|| panic!("README lists {name}, which models does not"));
        assert_eq!(*got, n, "README's count of {name}");
    }
}
