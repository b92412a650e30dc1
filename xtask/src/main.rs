//! `cargo xtask`: the project's command-line entry point (the cargo-xtask convention). Each
//! subcommand lives in its own module; set-up checks live in `doctor`.

mod bench_ops;
mod bench_unroll;
mod benchmarks_md;
mod doctor;
mod machine;
mod models;
mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "convrnn tasks: the model zoo, benchmarks, set-up checks, tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Reports the toolchain, the optional system libraries and data, and how to install what is
    /// missing.
    Doctor {
        /// Install the missing Debian packages (needs root): apt-get update && apt-get install -y ...
        #[arg(long)]
        install: bool,
    },
    /// Lists the model zoo: input, areas, parameters, GFLOPs per step.
    Models {
        /// A JSON array of objects (name, input, areas, params, flops_per_step).
        #[arg(long)]
        json: bool,
    },
    /// Shows one model (preset name or spec JSON file): areas, output shapes, first image-driven
    /// step, edges.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Trains a model (default: compact_rgc on Fashion-MNIST) and reports accuracy per time step.
    Train(Box<train::TrainCmd>),
    /// Evaluates a checkpoint (or a run directory): accuracy per time step and per decoder.
    Eval(train::EvalCmd),
    /// Trains the compact feedforward and the compact RGC model on the clutter variant and
    /// compares them side by side.
    Demo(train::DemoCmd),
    /// Runs the doctor (installing missing packages when run as root), then
    /// `cargo test --workspace` with any extra arguments.
    Test {
        /// Passed on to `cargo test --workspace`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Times the engine's ops (forward and forward+backward) on the shapes of benches/ops_shapes.json.
    Ops(bench_ops::OpsArgs),
    /// Forward and training images/s and peak memory of whole models unrolled in time.
    Unroll(bench_unroll::UnrollArgs),
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Bench {
            what: BenchCmd::Ops(args),
        } => bench_ops::run(&args),
        Cmd::Bench {
            what: BenchCmd::Unroll(args),
        } => bench_unroll::run(&args),
        Cmd::Doctor { install } => doctor::run(install),
        Cmd::Test { args } => test(&args),
        Cmd::Train(cmd) => train::train(&cmd),
        Cmd::Eval(cmd) => train::eval(&cmd),
        Cmd::Demo(cmd) => train::demo(&cmd),
        Cmd::Models { json } => models::models(json),
        Cmd::Info { name, json } => models::info(&name, json),
    }
}

fn test(args: &[String]) -> Result<()> {
    doctor::Report::gather().print();
    doctor::install_missing_if_root();
    let missing = doctor::Report::gather().missing_build_packages();
    anyhow::ensure!(
        missing.is_empty(),
        "the workspace cannot be built without {}; install as root:\n  apt-get update && apt-get install -y {}",
        missing.join(", "),
        missing.join(" ")
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["test", "--workspace"])
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("could not run `{cargo} test`"))?;
    anyhow::ensure!(status.success(), "cargo test --workspace failed ({status})");
    Ok(())
}
