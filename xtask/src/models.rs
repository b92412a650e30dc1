//! `cargo xtask models` (the zoo as a table or JSON) and `cargo xtask info NAME` (one model's areas,
//! shapes, first image-driven steps and edges).

use anyhow::{Context, Result};
use serde::Serialize;
use topology::{count, zoo};
use trainer::load_spec;

#[derive(Serialize)]
struct Row {
    name: String,
    input: [usize; 3],
    areas: usize,
    params: usize,
    flops_per_step: u64,
    gflops_per_step: f64,
}

pub fn models(json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for name in zoo::names() {
        let spec = zoo::get(name).context("zoo name without a preset")?;
        let c = count::cost(&spec).with_context(|| format!("building {name}"))?;
        rows.push(Row {
            name: name.to_string(),
            input: [spec.input.channels, spec.input.height, spec.input.width],
            areas: spec.areas.len(),
            params: c.params,
            flops_per_step: c.flops_per_step,
            gflops_per_step: c.flops_per_step as f64 / 1e9,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    // The released names run to 33 characters; size the column to the longest so rows stay aligned.
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(5);
    println!(
        "{:<w$} {:>13} {:>5} {:>12} {:>12}",
        "model", "input", "areas", "params", "GFLOPs/step"
    );
    for r in &rows {
        println!(
            "{:<w$} {:>13} {:>5} {:>12} {:>12.3}",
            r.name,
            format!("{}x{}x{}", r.input[0], r.input[1], r.input[2]),
            r.areas,
            r.params,
            r.gflops_per_step
        );
    }
    println!("\nFLOPs: 2 × multiply-adds of every conv and linear layer in one step with all areas active, one image.");
    Ok(())
}

#[derive(Serialize)]
struct AreaInfo {
    name: String,
    shape: [usize; 3],
    cell: String,
    first_step: usize,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct Info {
    name: String,
    input: [usize; 3],
    num_classes: usize,
    default_steps: usize,
    image_off: usize,
    areas: Vec<AreaInfo>,
    edges: Vec<[String; 2]>,
    params: usize,
}

pub fn info(name: &str, json: bool) -> Result<()> {
    let spec = load_spec(name)?;
    let shapes = topology::infer(&spec)?;
    let model = topology::Model::new(&spec, tensor::Device::Cpu, 0)?;
    let mut areas: Vec<AreaInfo> = spec
        .areas
        .iter()
        .zip(&shapes.areas)
        .map(|(a, s)| AreaInfo {
            name: a.name.clone(),
            shape: s.output,
            cell: a.cell.kind().to_string(),
            first_step: s.first_step,
            sources: s.sources.clone(),
        })
        .collect();
    areas.push(AreaInfo {
        name: spec.readout.name.clone(),
        shape: [spec.num_classes, 1, 1],
        cell: "readout".into(),
        first_step: shapes.readout_first_step,
        sources: vec![],
    });
    let info = Info {
        name: spec.name.clone(),
        input: [spec.input.channels, spec.input.height, spec.input.width],
        num_classes: spec.num_classes,
        default_steps: spec.default_steps,
        image_off: spec.image_off,
        areas,
        edges: spec
            .edges
            .iter()
            .map(|e| [e.from.clone(), e.to.clone()])
            .collect(),
        // Counted as `models` counts them: the trained max_conf temperature is a parameter.
        params: model.num_params() + spec.decoder.trained_scalars(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!(
        "{}: input {}x{}x{}, {} classes, {} parameters, {} steps by default (image off at {})",
        info.name,
        info.input[0],
        info.input[1],
        info.input[2],
        info.num_classes,
        info.params,
        info.default_steps,
        info.image_off
    );
    println!(
        "\n{:<10} {:<14} {:>15} {:>10}  extra inputs",
        "area", "cell", "output (CxHxW)", "first step"
    );
    for a in &info.areas {
        println!(
            "{:<10} {:<14} {:>15} {:>10}  {}",
            a.name,
            a.cell,
            format!("{}x{}x{}", a.shape[0], a.shape[1], a.shape[2]),
            a.first_step,
            a.sources.join(", ")
        );
    }
    if info.edges.is_empty() {
        println!("\nno feedback or skip edges");
    } else {
        println!("\nedges (one-step delay each):");
        for [f, t] in &info.edges {
            println!("  {f} -> {t}");
        }
    }
    Ok(())
}
