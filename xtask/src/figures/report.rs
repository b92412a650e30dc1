//! `REPORT.md`: how the run was made (scale, data, device, machine), a section per figure (the
//! paper's claim, our figure and table, the verdict with its statistics), the trained models and
//! every stage with whether it was computed now or read from the cache. Every number in it comes
//! from the run's results.

use super::cache::Status;
use super::training::{ScaleConfig, Trained};
use super::{scale_name, Scale, StageLine};
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tensor::Device;
use trainer::DataSpec;

pub const REPORT_FILE: &str = "REPORT.md";

/// What our run says about one of the paper's claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Supports,
    Contradicts,
    /// The test ran but did not resolve the claim either way.
    Inconclusive,
    /// The run lacks what the test needs (a model, seeds).
    CannotTest,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Supports => "supports",
            Verdict::Contradicts => "contradicts",
            Verdict::Inconclusive => "inconclusive",
            Verdict::CannotTest => "cannot test",
        }
    }
}

/// The section's closing line: the verdict and why.
pub fn verdict_line(verdict: Verdict, reason: &str) -> String {
    format!("\n**Verdict: {}.** {reason}.\n", verdict.words())
}

/// The Markdown that shows a figure: the SVG inline, and the PNG or why there is none.
pub fn image_lines(figure: &plots::Written, alt: &str) -> String {
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let png = match &figure.png {
        Ok(p) => format!("PNG: [{0}]({0})", name(p)),
        Err(why) => format!("no PNG: {why}"),
    };
    format!("![{alt}]({})\n\n{png}", name(&figure.svg))
}

/// What a figure's error bars are, from the most seeds any of its models has.
pub fn spread_words(max_seeds: usize) -> &'static str {
    if max_seeds >= 2 {
        "Error bars ±1 sd over seeds."
    } else {
        "One seed per model: no error bars (a spread over seeds needs at least two)."
    }
}

/// How the run was made.
pub struct Context<'a> {
    /// The command line as given.
    pub command: String,
    pub scale: Scale,
    pub scale_config: &'a ScaleConfig,
    pub data: &'a DataSpec,
    pub data_fingerprint: &'a str,
    pub device: Device,
}

/// Writes `out/REPORT.md` atomically and returns its path.
pub fn write(
    out: &Path,
    cx: &Context<'_>,
    trained: &[Trained],
    stages: &[StageLine],
    sections: &[String],
) -> Result<PathBuf> {
    let text = render(cx, trained, stages, sections);
    let path = out.join(REPORT_FILE);
    tensor::io::write_file_atomically(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

/// The command line as given.
pub fn command_line() -> String {
    std::iter::once("cargo xtask".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The report's first line: the command, scale, device and machine.
pub fn run_line(command: &str, scale: Scale, device: &str) -> String {
    let machine = crate::machine::Machine::detect();
    format!(
        "`{command}` (scale {}, device {device}) on {} ({} logical CPUs, {} engine threads).\n",
        scale_name(scale),
        machine.cpu,
        machine.cores,
        machine.threads
    )
}

/// Where the models were trained or evaluated, when that is not only the machine of the run
/// line (`current`): a long run continued on other machines, or cached stages from one. Each
/// machine with its number of models, in order of first appearance.
pub fn machines_line(trained: &[Trained], current: &str) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for t in trained {
        let m = t.machine.as_deref().unwrap_or("not recorded");
        match counts.iter_mut().find(|(name, _)| *name == m) {
            Some((_, n)) => *n += 1,
            None => counts.push((m, 1)),
        }
    }
    if counts.is_empty() || (counts.len() == 1 && counts[0].0 == current) {
        return None;
    }
    let list: Vec<String> = counts
        .iter()
        .map(|(m, n)| format!("{m}: {n} model{}", if *n == 1 { "" } else { "s" }))
        .collect();
    Some(format!(
        "**Machines**: the models were trained (or evaluated) on {}. Kernels and their rounding \
         differ between processors, so a stage computed elsewhere can differ in the last digits.\n",
        list.join("; ")
    ))
}

/// How many stages there were and how many this run computed.
pub fn stages_summary(stages: &[StageLine]) -> String {
    let computed = stages
        .iter()
        .filter(|l| l.status == Status::Computed)
        .count();
    format!(
        "**Stages**: {} in all, {} computed by this run, {} read from the cache (`stages/`).\n",
        stages.len(),
        computed,
        stages.len() - computed
    )
}

/// The `## Stages` section: every stage, its folder and whether this run computed it.
pub fn stages_table(stages: &[StageLine]) -> String {
    let mut s = String::from("## Stages\n\n| stage | folder | this run |\n|---|---|---|\n");
    for l in stages {
        let how = match l.status {
            Status::Cached => "cached",
            Status::Computed => "computed",
        };
        let _ = writeln!(s, "| {} | `stages/{}` | {how} |", l.label, l.id);
    }
    s
}

/// A section listing `runs`: parameters, top-1, optimiser steps (0 for a model only
/// evaluated), CPU and wall seconds, device.
pub fn models_table(title: &str, runs: &[Trained]) -> String {
    let mut s = format!("## {title}\n\n");
    let _ = writeln!(
        s,
        "| model | seed | parameters | top-1 % (last step) | optimiser steps | CPU s | wall s | \
         device | machine |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for t in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            t.id,
            t.seed,
            t.params,
            t.top1_per_step.last().map_or("-".into(), |v| pct(*v)),
            t.optimiser_steps,
            t.cpu_seconds.map_or("-".into(), |c| format!("{c:.1}")),
            t.wall_seconds,
            t.device,
            t.machine.as_deref().unwrap_or("-")
        );
    }
    s
}

/// The report's text.
pub fn render(
    cx: &Context<'_>,
    trained: &[Trained],
    stages: &[StageLine],
    sections: &[String],
) -> String {
    let mut s = String::new();
    let sc = cx.scale_config;
    let _ = writeln!(s, "# Figures of the paper, regenerated\n");
    let _ = writeln!(
        s,
        "{}",
        run_line(&cx.command, cx.scale, &cx.device.to_string())
    );
    let _ = writeln!(
        s,
        "**Data**: the clutter variant of Fashion-MNIST (`{}`), {} training and {} validation \
         images at difficulty {}; source {}.\n",
        cx.data.name(),
        sc.train_images,
        sc.eval_images,
        sc.difficulty,
        cx.data_fingerprint
    );
    let _ = writeln!(
        s,
        "**Training**: {} epoch(s), batch {}, AdamW with a cosine schedule peaking at {} after \
         {} warm-up steps, loss on the last step; seeds {:?}.\n",
        sc.epochs, sc.batch_size, sc.lr, sc.warmup_steps, sc.seeds
    );
    let _ = writeln!(s, "{}", stages_summary(stages));
    if let Some(line) = machines_line(trained, &crate::machine::Machine::detect().label()) {
        let _ = writeln!(s, "{line}");
    }
    for sec in sections {
        let _ = writeln!(s, "{sec}");
    }
    let _ = writeln!(s, "{}", models_table("Trained models", trained));
    let _ = writeln!(s, "\n{}", stages_table(stages));
    let _ = writeln!(
        s,
        "\n## Not built yet\n\nOf issue 17: the full scale's run with its report committed under \
         docs/figures/. See docs/FIGURES.md."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::models::Family;
    use crate::figures::training::DecoderTop1;

    #[test]
    fn lists_every_model_and_stage_with_numbers_from_the_results() {
        let sc = Scale::Micro.config();
        let data = super::super::training::data_spec(&sc, None);
        let cx = Context {
            command: "cargo xtask figures --scale micro".into(),
            scale: Scale::Micro,
            scale_config: &sc,
            data: &data,
            data_fingerprint: "fp",
            device: Device::Cpu,
        };
        let t = Trained {
            id: "rgc".into(),
            family: Family::Recurrent,
            seed: 2,
            params: 287_850,
            first_readout_step: 3,
            top1_per_step: vec![0.1, 0.4321],
            decoders: vec![DecoderTop1 {
                name: "last".into(),
                top1: 0.4321,
            }],
            optimiser_steps: 4,
            wall_seconds: 1.0,
            cpu_seconds: Some(1.5),
            device: "cpu".into(),
            machine: Some("CPU A (AVX2+FMA, 2 threads)".into()),
            run_dir: "stages/x/work/run".into(),
        };
        let stages = [StageLine {
            label: "train rgc (seed 2)".into(),
            id: "train-00".into(),
            status: Status::Cached,
        }];
        let text = render(&cx, &[t], &stages, &["## Figure X\n".into()]);
        assert!(
            text.contains("| rgc | 2 | 287850 | 43.2 | 4 | 1.5 |"),
            "{text}"
        );
        assert!(text.contains("1 in all, 0 computed by this run, 1 read from the cache"));
        assert!(text.contains("`stages/train-00` | cached"));
        assert!(text.contains("`cargo xtask figures --scale micro` (scale micro, device cpu)"));
        assert!(text.find("## Figure X") < text.find("## Trained models"));
        assert!(
            text.contains("| cpu | CPU A (AVX2+FMA, 2 threads) |"),
            "{text}"
        );
    }

    #[test]
    fn the_machines_line_appears_only_when_models_came_from_elsewhere() {
        let on = |m: Option<&str>| Trained {
            machine: m.map(String::from),
            ..crate::figures::fig1::tests::run("rgc", Family::Recurrent, 1, 0, 0.5)
        };
        let here = "CPU A (AVX2+FMA, 2 threads)";
        assert_eq!(machines_line(&[on(Some(here)), on(Some(here))], here), None);
        assert_eq!(machines_line(&[], here), None);
        let line = machines_line(
            &[
                on(Some(here)),
                on(Some("CPU B (AVX-512F, 2 threads)")),
                on(None),
                on(Some(here)),
            ],
            here,
        )
        .unwrap();
        assert!(
            line.contains(
                "on CPU A (AVX2+FMA, 2 threads): 2 models; CPU B (AVX-512F, 2 threads): 1 model; \
                 not recorded: 1 model."
            ),
            "{line}"
        );
        let elsewhere = machines_line(&[on(Some(here))], "CPU B (AVX-512F, 2 threads)").unwrap();
        assert!(
            elsewhere.contains("CPU A (AVX2+FMA, 2 threads): 1 model."),
            "{elsewhere}"
        );
    }
}
