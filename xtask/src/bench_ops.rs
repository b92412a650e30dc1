//! `cargo xtask bench ops`: forward and forward+backward throughput of the engine's ops on the
//! ConvRNN-typical shapes of `benches/ops_shapes.json`, the list `benches/torch_ops.py` times
//! PyTorch on. The FLOP and byte formulas are documented in that file's `doc` field and
//! implemented once, in [`Case::work`].

mod conv;

use crate::benchmarks_md;
use crate::machine::{self, Machine};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;
use tensor::{Device, Rng, Tensor};

#[derive(clap::Args)]
pub struct OpsArgs {
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Print the results as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// One warm-up run and three timed runs per case instead of two and seven.
    #[arg(long)]
    quick: bool,
    /// Only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Rewrite the bench-ops section of BENCHMARKS.md with the table.
    #[arg(long)]
    write_benchmarks: bool,
    /// The shape list (default: benches/ops_shapes.json in the workspace).
    #[arg(long)]
    shapes: Option<PathBuf>,
}

// ----- the shape list -----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShapeFile {
    /// The formulas and conventions, for people reading the file.
    #[allow(dead_code)]
    doc: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Case {
    Conv2d {
        name: String,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        o: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        /// `[top, bottom, left, right]`.
        padding: [usize; 4],
        groups: usize,
    },
    Matmul {
        name: String,
        m: usize,
        k: usize,
        n: usize,
    },
    Unary {
        name: String,
        op: UnaryKind,
        shape: Vec<usize>,
    },
    Binary {
        name: String,
        op: BinaryKind,
        shape: Vec<usize>,
    },
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryKind {
    Sigmoid,
    Tanh,
    Elu,
    Relu,
    Exp,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Unit {
    #[serde(rename = "GFLOP/s")]
    Gflops,
    #[serde(rename = "GB/s")]
    Gbytes,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Gflops => "GFLOP/s",
            Unit::Gbytes => "GB/s",
        }
    }
}

/// The work one forward and one forward+backward pass does, in FLOPs or bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Work {
    pub unit: Unit,
    pub fwd: f64,
    pub fwd_bwd: f64,
}

impl Case {
    pub fn name(&self) -> &str {
        match self {
            Case::Conv2d { name, .. }
            | Case::Matmul { name, .. }
            | Case::Unary { name, .. }
            | Case::Binary { name, .. } => name,
        }
    }

    /// Output height and width of a convolution.
    fn conv_out(
        h: usize,
        w: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 4],
    ) -> Option<(usize, usize)> {
        let ph = (h + pad[0] + pad[1]).checked_sub(kernel[0])?;
        let pw = (w + pad[2] + pad[3]).checked_sub(kernel[1])?;
        Some((ph / stride[0] + 1, pw / stride[1] + 1))
    }

    fn validate(&self) -> Result<()> {
        let ok = match self {
            Case::Conv2d {
                n,
                c,
                h,
                w,
                o,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                *n > 0
                    && *groups > 0
                    && *c > 0
                    && c % groups == 0
                    && o % groups == 0
                    && *o > 0
                    && kernel.iter().all(|&k| k > 0)
                    && stride.iter().all(|&s| s > 0)
                    && Self::conv_out(*h, *w, *kernel, *stride, *padding).is_some()
            }
            Case::Matmul { m, k, n, .. } => *m > 0 && *k > 0 && *n > 0,
            Case::Unary { shape, .. } | Case::Binary { shape, .. } => {
                !shape.is_empty() && shape.iter().all(|&d| d > 0)
            }
        };
        if !ok {
            bail!("case `{}` has an impossible shape: {self:?}", self.name());
        }
        Ok(())
    }

    /// FLOPs (conv2d, matmul) or bytes of minimal f32 traffic (elementwise); see the `doc` field
    /// of benches/ops_shapes.json.
    pub fn work(&self) -> Work {
        let flops = |fwd: f64| Work {
            unit: Unit::Gflops,
            fwd,
            fwd_bwd: 3.0 * fwd,
        };
        let bytes = |numel: usize, fwd_tensors: f64, bwd_tensors: f64| {
            let b = 4.0 * numel as f64;
            Work {
                unit: Unit::Gbytes,
                fwd: b * fwd_tensors,
                fwd_bwd: b * (fwd_tensors + bwd_tensors),
            }
        };
        match self {
            Case::Conv2d {
                n,
                c,
                h,
                w,
                o,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                let (ho, wo) = Self::conv_out(*h, *w, *kernel, *stride, *padding).unwrap_or((0, 0));
                flops(2.0 * (*n * *o * (c / groups) * kernel[0] * kernel[1] * ho * wo) as f64)
            }
            Case::Matmul { m, k, n, .. } => flops(2.0 * (*m * *k * *n) as f64),
            Case::Unary { shape, .. } => bytes(shape.iter().product(), 2.0, 3.0),
            Case::Binary { op, shape, .. } => {
                let bwd = match op {
                    BinaryKind::Add | BinaryKind::Sub => 3.0,
                    BinaryKind::Mul | BinaryKind::Div => 5.0,
                };
                bytes(shape.iter().product(), 3.0, bwd)
            }
        }
    }

    /// A one-line description of the shapes.
    fn describe(&self) -> String {
        let dims = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        match self {
            Case::Conv2d {
                n,
                c,
                h,
                w,
                o,
                kernel,
                stride,
                groups,
                ..
            } => {
                let g = if *groups == 1 {
                    String::new()
                } else if groups == c && groups == o {
                    " depthwise".into()
                } else {
                    format!(" g{groups}")
                };
                format!(
                    "{}→{o} {}x{} s{}{g}",
                    dims(&[*n, *c, *h, *w]),
                    kernel[0],
                    kernel[1],
                    stride[0]
                )
            }
            Case::Matmul { m, k, n, .. } => format!("{m}x{k} · {k}x{n}"),
            Case::Unary { op, shape, .. } => format!("{op:?} {}", dims(shape)).to_lowercase(),
            Case::Binary { op, shape, .. } => format!("{op:?} {}", dims(shape)).to_lowercase(),
        }
    }
}

fn load_cases(args: &OpsArgs) -> Result<Vec<Case>> {
    let path = args
        .shapes
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("benches/ops_shapes.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: ShapeFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut names = HashSet::new();
    for case in &file.cases {
        case.validate()
            .with_context(|| path.display().to_string())?;
        if !names.insert(case.name()) {
            bail!(
                "{}: case name `{}` appears twice",
                path.display(),
                case.name()
            );
        }
    }
    let cases: Vec<Case> = file
        .cases
        .into_iter()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.name().contains(f)))
        .collect();
    if cases.is_empty() {
        bail!("no case of {} matches the filter", path.display());
    }
    Ok(cases)
}

// ----- timing -------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    warmup: usize,
    reps: usize,
}

impl Timing {
    fn new(quick: bool) -> Self {
        if quick {
            Timing { warmup: 1, reps: 3 }
        } else {
            Timing { warmup: 2, reps: 7 }
        }
    }
}

/// A case whose single run takes longer than this is timed with at most three repetitions, so
/// the slow cases of a slow engine do not take minutes.
const SLOW_RUN_S: f64 = 1.0;

/// Waits for the device's queued work. The CPU backend is synchronous. On CUDA, a one-element
/// round trip through the device's stream finishes after everything queued before it.
fn sync(device: Device) -> Result<()> {
    if !device.is_cpu() {
        Tensor::zeros([1], device)?.to_vec()?;
    }
    Ok(())
}

/// Median seconds of `f` after warm-up.
fn median_secs(timing: Timing, device: Device, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut once = || -> Result<f64> {
        sync(device)?;
        let t0 = Instant::now();
        f()?;
        sync(device)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let mut slowest_warmup = 0.0f64;
    for _ in 0..timing.warmup.max(1) {
        slowest_warmup = slowest_warmup.max(once()?);
    }
    let reps = if slowest_warmup > SLOW_RUN_S {
        timing.reps.min(3)
    } else {
        timing.reps
    };
    let mut times = (0..reps.max(1))
        .map(|_| once())
        .collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Seconds per forward and per forward+backward.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    fwd_s: f64,
    fwd_bwd_s: f64,
}

/// Times `f(inputs)` (forward, recorded for autodiff) and `f(inputs)` followed by a backward pass
/// from a ones gradient. `inputs` should be variables.
pub fn measure(
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> tensor::Result<Tensor>,
    device: Device,
    timing: Timing,
) -> Result<Measured> {
    let ones = Tensor::ones(f(inputs)?.shape().clone(), device)?;
    let fwd_s = median_secs(timing, device, || {
        f(inputs)?;
        Ok(())
    })?;
    let fwd_bwd_s = median_secs(timing, device, || {
        f(inputs)?.backward_with_grad(&ones)?;
        Ok(())
    })?;
    Ok(Measured { fwd_s, fwd_bwd_s })
}

/// A standard-normal variable of `shape` on `device`, with `f` applied to every value.
pub fn random_variable(
    rng: &mut Rng,
    shape: &[usize],
    device: Device,
    f: impl Fn(f32) -> f32,
) -> Result<Tensor> {
    let t = tensor::testing::rand_tensor(rng, shape).map_values(f);
    Ok(t.to_device(device)?.into_variable())
}

fn elementwise(case: &Case, device: Device, timing: Timing) -> Result<Measured> {
    let mut rng = Rng::new(7);
    match case {
        Case::Unary { op, shape, .. } => {
            let x = random_variable(&mut rng, shape, device, |v| v)?;
            let op = match op {
                UnaryKind::Sigmoid => tensor::ops::UnaryOp::Sigmoid,
                UnaryKind::Tanh => tensor::ops::UnaryOp::Tanh,
                UnaryKind::Elu => tensor::ops::UnaryOp::Elu,
                UnaryKind::Relu => tensor::ops::UnaryOp::Relu,
                UnaryKind::Exp => tensor::ops::UnaryOp::Exp,
            };
            measure(&[x], |xs| xs[0].unary(op), device, timing)
        }
        Case::Binary { op, shape, .. } => {
            let a = random_variable(&mut rng, shape, device, |v| v)?;
            // Keeps a divisor away from zero.
            let b = random_variable(&mut rng, shape, device, |v| v.abs() + 0.5)?;
            let op = match op {
                BinaryKind::Add => tensor::ops::BinaryOp::Add,
                BinaryKind::Sub => tensor::ops::BinaryOp::Sub,
                BinaryKind::Mul => tensor::ops::BinaryOp::Mul,
                BinaryKind::Div => tensor::ops::BinaryOp::Div,
            };
            measure(&[a, b], |xs| xs[0].binary(op, &xs[1]), device, timing)
        }
        _ => bail!("`{}` is not an elementwise case", case.name()),
    }
}

fn matmul(m: usize, k: usize, n: usize, device: Device, timing: Timing) -> Result<Measured> {
    let mut rng = Rng::new(11);
    let a = random_variable(&mut rng, &[m, k], device, |v| v)?;
    let b = random_variable(&mut rng, &[k, n], device, |v| v)?;
    measure(&[a, b], |t| t[0].matmul(&t[1]), device, timing)
}

fn conv2d(case: &Case, device: Device, timing: Timing) -> Result<Option<Measured>> {
    conv::run(case, device, timing).map(Some)
}

/// `None` when the case's op is not built into this binary.
fn run_case(case: &Case, device: Device, timing: Timing) -> Result<Option<Measured>> {
    match case {
        Case::Conv2d { .. } => conv2d(case, device, timing),
        Case::Matmul { m, k, n, .. } => matmul(*m, *k, *n, device, timing).map(Some),
        Case::Unary { .. } | Case::Binary { .. } => elementwise(case, device, timing).map(Some),
    }
}

// ----- reporting ----------------------------------------------------------------------------

#[derive(Serialize)]
struct Row {
    name: String,
    kind: &'static str,
    shape: String,
    unit: Unit,
    /// FLOPs or bytes.
    fwd_work: f64,
    fwd_bwd_work: f64,
    fwd_ms: Option<f64>,
    fwd_bwd_ms: Option<f64>,
    fwd_rate: Option<f64>,
    fwd_bwd_rate: Option<f64>,
    /// Why the case was not timed.
    skipped: Option<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    implementation: &'static str,
    command: &'a str,
    device: String,
    date: String,
    quick: bool,
    machine: &'a Machine,
    results: &'a [Row],
}

fn row(case: &Case, m: Option<Measured>) -> Row {
    let work = case.work();
    let kind = match case {
        Case::Conv2d { .. } => "conv2d",
        Case::Matmul { .. } => "matmul",
        Case::Unary { .. } => "unary",
        Case::Binary { .. } => "binary",
    };
    let rate = |w: f64, s: f64| w / s / 1e9;
    Row {
        name: case.name().to_string(),
        kind,
        shape: case.describe(),
        unit: work.unit,
        fwd_work: work.fwd,
        fwd_bwd_work: work.fwd_bwd,
        fwd_ms: m.map(|m| m.fwd_s * 1e3),
        fwd_bwd_ms: m.map(|m| m.fwd_bwd_s * 1e3),
        fwd_rate: m.map(|m| rate(work.fwd, m.fwd_s)),
        fwd_bwd_rate: m.map(|m| rate(work.fwd_bwd, m.fwd_bwd_s)),
        skipped: m
            .is_none()
            .then(|| "this op is not built into this binary".into()),
    }
}

fn cells(r: &Row) -> [String; 6] {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} {}", r.unit.label()));
    [
        r.name.clone(),
        r.shape.clone(),
        ms(r.fwd_ms),
        rate(r.fwd_rate),
        ms(r.fwd_bwd_ms),
        rate(r.fwd_bwd_rate),
    ]
}

const HEADER: [&str; 6] = ["case", "shape", "fwd ms", "fwd", "fwd+bwd ms", "fwd+bwd"];

fn text_table(rows: &[Row]) -> String {
    let body: Vec<[String; 6]> = rows.iter().map(cells).collect();
    let mut width = HEADER.map(str::len);
    for r in &body {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cs: &[String]| {
        cs.iter()
            .zip(width)
            .enumerate()
            .map(|(i, (c, w))| {
                // Names and shapes left-aligned, numbers right-aligned.
                let pad = " ".repeat(w - c.chars().count());
                if i < 2 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&HEADER.map(String::from));
    out.push('\n');
    for r in &body {
        out.push_str(line(r).trim_end());
        out.push('\n');
    }
    if let Some(why) = rows.iter().find_map(|r| r.skipped.as_ref()) {
        out.push_str(&format!("- : not timed; {why}\n"));
    }
    out
}

fn markdown(
    rows: &[Row],
    command: &str,
    device: Device,
    machine: &Machine,
    date: &str,
    quick: bool,
) -> String {
    let mut s = format!(
        "`{command}` on {date}: {}, {} ({} logical CPUs, {} engine threads), device {device}{}.\n\n",
        machine.cpu,
        machine.isa,
        machine.cores,
        machine.threads,
        if quick {
            ", quick mode (1 warm-up, median of 3)"
        } else {
            ", median of 7 after 2 warm-ups"
        }
    );
    s.push_str("Formulas and conventions: the `doc` field of `benches/ops_shapes.json` (conv2d forward \
                2·N·O·(C/g)·kh·kw·Ho·Wo FLOPs, backward twice that; elementwise in GB/s of minimal f32 traffic).\n\n");
    s.push_str(&format!("| {} |\n", HEADER.join(" | ")));
    s.push_str("|---|---|---:|---:|---:|---:|\n");
    for r in rows {
        s.push_str(&format!("| {} |\n", cells(r).join(" | ")));
    }
    if let Some(why) = rows.iter().find_map(|r| r.skipped.as_ref()) {
        s.push_str(&format!("\n`-`: not timed; {why}.\n"));
    }
    s
}

pub fn run(args: &OpsArgs) -> Result<()> {
    let cases = load_cases(args)?;
    let timing = Timing::new(args.quick);
    let machine = Machine::detect();
    let device = args.device;
    // Fails early, with the rebuild hint, when the device is not available.
    sync(device).with_context(|| format!("cannot use device {device}"))?;

    let mut rows = Vec::with_capacity(cases.len());
    for case in &cases {
        eprint!("{:<24} ", case.name());
        let t0 = Instant::now();
        let m =
            run_case(case, device, timing).with_context(|| format!("case `{}`", case.name()))?;
        eprintln!(
            "{}",
            if m.is_some() {
                format!("{:.1} s", t0.elapsed().as_secs_f64())
            } else {
                "skipped".into()
            }
        );
        rows.push(row(case, m));
    }

    let table = text_table(&rows);
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let date = machine::today_utc();
    if args.json {
        eprint!("\n{table}");
        let report = JsonReport {
            implementation: "convrnn-tensor",
            command: &command,
            device: device.to_string(),
            date: date.clone(),
            quick: args.quick,
            machine: &machine,
            results: &rows,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "\n{} ({} logical CPUs, {} engine threads), device {device}\n\n{table}",
            machine.cpu, machine.cores, machine.threads
        );
    }
    if args.write_benchmarks {
        let path = crate::workspace_root().join("BENCHMARKS.md");
        let body = markdown(&rows, &command, device, &machine, &date, args.quick);
        benchmarks_md::write_section(&path, "bench-ops", &body)?;
        eprintln!("updated {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_cases() -> Vec<Case> {
        let path = crate::workspace_root().join("benches/ops_shapes.json");
        let file: ShapeFile =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        file.cases
    }

    #[test]
    fn shipped_shape_list_is_valid_and_covers_every_kind() {
        let cases = shipped_cases();
        let mut names = HashSet::new();
        for c in &cases {
            c.validate().unwrap();
            assert!(names.insert(c.name().to_string()), "{}", c.name());
        }
        for kind in ["conv2d", "matmul", "unary", "binary"] {
            assert!(cases.iter().any(|c| row(c, None).kind == kind), "{kind}");
        }
    }

    #[test]
    fn work_formulas() {
        let conv = Case::Conv2d {
            name: "c".into(),
            n: 2,
            c: 4,
            h: 9,
            w: 9,
            o: 6,
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1, 1, 1],
            groups: 2,
        };
        // Ho = Wo = (9 + 2 - 3) / 2 + 1 = 5.
        let w = conv.work();
        assert_eq!(w.fwd, 2.0 * (2 * 6 * 2 * 9 * 25) as f64);
        assert_eq!(w.fwd_bwd, 3.0 * w.fwd);
        let mm = Case::Matmul {
            name: "m".into(),
            m: 3,
            k: 4,
            n: 5,
        };
        assert_eq!(mm.work().fwd, 120.0);
        let mul = Case::Binary {
            name: "b".into(),
            op: BinaryKind::Mul,
            shape: vec![10],
        };
        assert_eq!((mul.work().fwd, mul.work().fwd_bwd), (120.0, 320.0));
        let sig = Case::Unary {
            name: "u".into(),
            op: UnaryKind::Sigmoid,
            shape: vec![10],
        };
        assert_eq!(
            (sig.work().fwd, sig.work().fwd_bwd, sig.work().unit),
            (80.0, 200.0, Unit::Gbytes)
        );
    }

    #[test]
    fn impossible_cases_are_rejected() {
        let bad = Case::Conv2d {
            name: "c".into(),
            n: 1,
            c: 3,
            h: 2,
            w: 2,
            o: 4,
            kernel: [5, 5],
            stride: [1, 1],
            padding: [0, 0, 0, 0],
            groups: 1,
        };
        assert!(bad.validate().is_err());
        let bad_groups = Case::Conv2d {
            name: "g".into(),
            n: 1,
            c: 3,
            h: 8,
            w: 8,
            o: 4,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0, 0, 0],
            groups: 2,
        };
        assert!(bad_groups.validate().is_err());
        let unknown =
            r#"{"doc": [], "cases": [{"name": "x", "kind": "unary", "op": "gelu", "shape": [2]}]}"#;
        assert!(serde_json::from_str::<ShapeFile>(unknown).is_err());
    }

    #[test]
    fn elementwise_and_matmul_cases_run() {
        let timing = Timing { warmup: 1, reps: 1 };
        for case in [
            Case::Unary {
                name: "u".into(),
                op: UnaryKind::Elu,
                shape: vec![2, 3],
            },
            Case::Binary {
                name: "b".into(),
                op: BinaryKind::Div,
                shape: vec![4],
            },
            Case::Matmul {
                name: "m".into(),
                m: 3,
                k: 4,
                n: 5,
            },
        ] {
            let m = run_case(&case, Device::Cpu, timing).unwrap().unwrap();
            assert!(m.fwd_s > 0.0 && m.fwd_bwd_s > 0.0);
            let r = row(&case, Some(m));
            assert!(text_table(&[r]).contains(case.name()));
        }
    }
}
