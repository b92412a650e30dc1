//! `cargo xtask`: the project's command-line entry point (the cargo-xtask convention). Each
//! subcommand lives in its own module; set-up checks live in `doctor`.

mod bench_extract;
mod bench_loader;
mod bench_ops;
mod bench_unroll;
mod benchmarks_md;
mod dist;
mod doctor;
mod figures;
mod import;
mod machine;
mod models;
mod search;
mod shards;
mod stop;
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
    /// Writes an ImageFolder tree (or a train/ + val/ root) as WebDataset tar shards, images
    /// shrunk to a shorter side and re-encoded where needed.
    Shards(shards::ShardsCmd),
    /// Trains a model (default: compact_rgc on Fashion-MNIST) and reports accuracy per time step.
    Train(Box<train::TrainCmd>),
    /// Imports a released neuroailab/convrnns checkpoint (TensorFlow) into a run directory.
    Import(import::ImportCmd),
    /// Evaluates a checkpoint (or a run directory): accuracy per time step and per decoder.
    Eval(train::EvalCmd),
    /// Trains the compact feedforward and the compact RGC model on the clutter variant and
    /// compares them side by side.
    Demo(train::DemoCmd),
    /// Architecture search over cells and feedback (TPE, pruning, a shared SQLite/PostgreSQL
    /// study); `search report` and `search median` summarise a study.
    Search(Box<search::SearchCmd>),
    /// The paper's figures regenerated in one command: trains what they need (cached under
    /// --out, so a rerun computes only what is missing) and writes REPORT.md. See
    /// docs/FIGURES.md.
    Figures(figures::FiguresCmd),
    /// Neural predictivity over time (V4/IT, PLS on HDF5 / netCDF-4 recordings; default: the
    /// in-silico set) and object solution times. Flags: `cargo xtask neurofit --help`.
    // Its flags belong to the neurofit binary: `--help` too is passed on to it.
    #[command(disable_help_flag = true)]
    Neurofit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Writes a model's activations over time as a Brain-Score netCDF-4 assembly. Flags:
    /// `cargo xtask export-activations --help`.
    #[command(disable_help_flag = true)]
    ExportActivations {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    /// Feature extraction (every area at every step of the 26-step neural presentation, no
    /// gradients) in stimuli/s; `benches/tf_reference_extract.py` times the reference code.
    Extract(bench_extract::ExtractArgs),
    /// Decoded-and-augmented images/s of the input pipeline (ImageFolder or shards) on a generated
    /// ImageNet-like JPEG set; benches/torchvision_loader.py is its torchvision peer.
    Loader(bench_loader::LoaderArgs),
    /// Seconds for the whole neural-fitting protocol (PLS, every bin and split) on synthetic data
    /// (default 2,560 stimuli × 10,000 features × 256 neuroids × 20 bins × 10 splits). Flags:
    /// `cargo xtask bench fit --help`.
    #[command(disable_help_flag = true)]
    Fit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> Result<()> {
    // Before any thread starts, so every engine thread inherits the mode.
    tensor::cpu::denormals::configure_main_thread().map_err(anyhow::Error::msg)?;
    match Cli::parse().command {
        Cmd::Bench {
            what: BenchCmd::Ops(args),
        } => bench_ops::run(&args),
        Cmd::Bench {
            what: BenchCmd::Unroll(args),
        } => bench_unroll::run(&args),
        Cmd::Bench {
            what: BenchCmd::Extract(args),
        } => bench_extract::run(&args),
        Cmd::Bench {
            what: BenchCmd::Loader(args),
        } => bench_loader::run(&args),
        Cmd::Bench {
            what: BenchCmd::Fit { args },
        } => neurofit_bin("bench-fit", &args),
        Cmd::Doctor { install } => doctor::run(install),
        Cmd::Test { args } => test(&args),
        Cmd::Shards(cmd) => shards::run(&cmd),
        Cmd::Train(cmd) => train::train(&cmd),
        Cmd::Import(cmd) => import::run(&cmd),
        Cmd::Eval(cmd) => train::eval(&cmd),
        Cmd::Demo(cmd) => train::demo(&cmd),
        Cmd::Search(cmd) => search::run(&cmd),
        Cmd::Figures(cmd) => figures::run(&cmd),
        Cmd::Neurofit { args } => neurofit_bin("score", &args),
        Cmd::ExportActivations { args } => neurofit_bin("export-activations", &args),
        Cmd::Models { json } => models::models(json),
        Cmd::Info { name, json } => models::info(&name, json),
    }
}

/// Installs missing Debian packages when root, then fails, naming the apt command, if a package
/// that `what` needs to build is still missing.
fn require_build_packages(what: &str) -> Result<()> {
    doctor::install_missing_if_root();
    let missing = doctor::Report::gather().missing_build_packages();
    anyhow::ensure!(
        missing.is_empty(),
        "{what} cannot be built without {}; install as root:\n  apt-get update && apt-get install -y {}",
        missing.join(", "),
        missing.join(" ")
    );
    Ok(())
}

/// Runs the `neurofit` binary. It links HDF5 and OpenBLAS, so it is built only after the doctor
/// has installed them (xtask itself must build on a bare machine).
fn neurofit_bin(sub: &str, args: &[String]) -> Result<()> {
    let status = neurofit_command(sub)?
        .args(args)
        .status()
        .context("could not run `cargo run -p neurofit`")?;
    anyhow::ensure!(status.success(), "neurofit {sub} failed ({status})");
    Ok(())
}

/// The command that runs `neurofit SUB` (release build, one BLAS thread unless set), after
/// checking the system packages it links; the caller adds the arguments.
pub fn neurofit_command(sub: &str) -> Result<Command> {
    require_build_packages("neurofit")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "neurofit",
        "--bin",
        "neurofit",
        "--",
    ])
    .arg(sub)
    .current_dir(workspace_root())
    .env(
        "OPENBLAS_NUM_THREADS",
        std::env::var("OPENBLAS_NUM_THREADS").unwrap_or_else(|_| "1".into()),
    );
    Ok(cmd)
}

fn test(args: &[String]) -> Result<()> {
    doctor::Report::gather().print();
    require_build_packages("the workspace")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        // Every test binary runs even after one fails, so a report names all the failures
        // instead of hiding the crates after the first.
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(args)
        .current_dir(workspace_root())
        // Tests compare runs number for number across processes and batch sizes; timed path
        // choices would depend on the machine's load and write to the user's cache, so the suite
        // uses the fixed thresholds unless the caller says otherwise (conv_tune tests make their
        // own tuners).
        .env(
            "CONVRNN_CONV_CACHE",
            std::env::var("CONVRNN_CONV_CACHE").unwrap_or_else(|_| "off".into()),
        )
        // The packages were installed above; tests that run `xtask` never install anything.
        .env(doctor::NO_INSTALL_VAR, "1")
        .status()
        .with_context(|| format!("could not run `{cargo} test`"))?;
    anyhow::ensure!(status.success(), "cargo test --workspace failed ({status})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` after a subcommand that runs another binary reaches that binary, whose flags
    /// are the ones the user asks about.
    #[test]
    fn help_of_forwarding_subcommands_is_forwarded() {
        for (argv, want) in [
            (vec!["cargo xtask", "neurofit", "--help"], vec!["--help"]),
            (vec!["cargo xtask", "neurofit", "-h"], vec!["-h"]),
            (
                vec!["cargo xtask", "export-activations", "--help"],
                vec!["--help"],
            ),
            (
                vec!["cargo xtask", "bench", "fit", "--help"],
                vec!["--help"],
            ),
        ] {
            let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let args = match cli.command {
                Cmd::Neurofit { args } | Cmd::ExportActivations { args } => args,
                Cmd::Bench {
                    what: BenchCmd::Fit { args },
                } => args,
                _ => panic!("{argv:?} parsed to another command"),
            };
            assert_eq!(args, want, "{argv:?}");
        }
    }

    /// A count of 0 is refused by name: `train --nproc 0` used to train as one process and
    /// `bench unroll --batch 0` to fail inside the engine, `--iters 0` to time one iteration,
    /// `train --eval-limit 0` only after writing the run's configuration.
    #[test]
    fn zero_counts_are_refused_with_the_flag() {
        for argv in [
            vec!["cargo xtask", "train", "--nproc", "0"],
            vec!["cargo xtask", "bench", "unroll", "--batch", "0"],
            vec!["cargo xtask", "bench", "unroll", "--iters", "0"],
            vec!["cargo xtask", "bench", "unroll", "--size", "0"],
            vec!["cargo xtask", "bench", "unroll", "--steps", "0"],
            vec!["cargo xtask", "bench", "loader", "--threads", "0"],
            vec!["cargo xtask", "bench", "loader", "--batch", "0"],
            vec!["cargo xtask", "bench", "loader", "--epochs", "0"],
            vec!["cargo xtask", "bench", "extract", "--batch", "0"],
            vec!["cargo xtask", "bench", "extract", "--batches", "0"],
            vec!["cargo xtask", "search", "--trials", "0"],
            vec!["cargo xtask", "search", "--workers", "0"],
            vec!["cargo xtask", "figures", "--seeds", "0"],
            vec!["cargo xtask", "figures", "--train-images", "0"],
            vec!["cargo xtask", "figures", "--eval-images", "0"],
            vec!["cargo xtask", "train", "--train-limit", "0"],
            vec!["cargo xtask", "train", "--eval-limit", "0"],
            vec!["cargo xtask", "search", "--eval-limit", "0"],
            vec!["cargo xtask", "eval", "run", "--limit", "0"],
            vec!["cargo xtask", "demo", "--train-images", "0"],
            vec!["cargo xtask", "demo", "--eval-images", "0"],
        ] {
            let Err(err) = Cli::try_parse_from(&argv) else {
                panic!("{argv:?} parsed");
            };
            let msg = err.to_string();
            assert!(
                msg.contains(argv[argv.len() - 2]) && msg.contains("at least 1"),
                "{argv:?}: {msg}"
            );
        }
        assert!(Cli::try_parse_from(["cargo xtask", "train", "--nproc", "2"]).is_ok());
        assert!(Cli::try_parse_from(["cargo xtask", "bench", "unroll", "--iters", "1"]).is_ok());
    }
}
