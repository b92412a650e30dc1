//! Data-parallel `cargo xtask train`: the flags, joining the job a launcher started (`mpiexec`,
//! `srun`, torchrun-style variables), and `--nproc N`, which starts N local ranks itself.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use collective::{BackendChoice, Collective, CollectiveExt, Launch, Options};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tensor::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum BackendArg {
    /// NCCL for CUDA runs; MPI under MPICH's mpiexec or `srun --mpi=pmi2`; TCP otherwise.
    #[default]
    Auto,
    Mpi,
    Tcp,
    Nccl,
    /// Ignore launcher variables and train as one process.
    Single,
}

/// How a training run spreads over processes.
#[derive(Args, Debug, Clone, Default)]
pub struct DistArgs {
    /// Start N ranks on this machine and train data-parallel over them (each CPU rank gets
    /// cores/N threads unless RAYON_NUM_THREADS says otherwise; CUDA rank i uses GPU i). Not
    /// needed under mpiexec, srun or torchrun-style variables: their ranks are used as they are.
    #[arg(long, value_name = "N", value_parser = trainer::count_arg::at_least_one::<usize>)]
    pub nproc: Option<usize>,
    /// Collective backend.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendArg,
    /// Seconds any collective may wait for the other ranks before the run stops with an error
    /// [default: CONVRNN_DIST_TIMEOUT, else 600].
    #[arg(long, value_name = "SECONDS")]
    pub dist_timeout: Option<f64>,
}

impl DistArgs {
    fn choice(&self) -> BackendChoice {
        match self.backend {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Mpi => BackendChoice::Mpi,
            BackendArg::Tcp => BackendChoice::Tcp,
            BackendArg::Nccl => BackendChoice::Nccl,
            BackendArg::Single => BackendChoice::Single,
        }
    }

    /// The launch this process belongs to (one process under `--backend single`).
    pub fn launch(&self) -> Result<Launch> {
        if self.backend == BackendArg::Single {
            return Ok(Launch::single());
        }
        Launch::from_env().context("reading the launcher's variables")
    }

    /// `Some(N)` when this process must start N ranks itself: `--nproc N` given and no launcher
    /// has made this process a rank already.
    pub fn ranks_to_start(&self, launch: &Launch) -> Option<usize> {
        self.nproc.filter(|&n| n > 1 && launch.world_size == 1)
    }

    fn options(&self, device: Device) -> Result<Options> {
        let mut opts = Options::from_env()?;
        opts.backend = self.choice();
        opts.device = device;
        if let Some(s) = self.dist_timeout {
            anyhow::ensure!(s > 0.0, "--dist-timeout must be positive, got {s}");
            opts.timeout = Duration::from_secs_f64(s);
        }
        Ok(opts)
    }

    /// Joins the other ranks of `launch` on the host (MPI or TCP; nothing for one rank).
    pub fn connect_host(&self, launch: &Launch) -> Result<Box<dyn Collective>> {
        let opts = self.options(Device::Cpu)?;
        collective::connect_host(launch, opts.backend, opts.timeout).with_context(|| {
            format!(
                "joining as rank {} of {} ({})",
                launch.rank, launch.world_size, launch.launcher
            )
        })
    }

    /// `host`, with NCCL in front when the run is on CUDA (see `collective::for_device`).
    pub fn for_device(
        &self,
        host: Box<dyn Collective>,
        device: Device,
    ) -> Result<Box<dyn Collective>> {
        Ok(collective::for_device(host, &self.options(device)?)?)
    }
}

/// Rank 0's `planned` value on every rank (`planned` is only read on rank 0). An error on rank
/// 0 reaches the others too, so that no rank waits for a run that will not start.
pub fn share<T: Serialize + DeserializeOwned>(
    comm: &dyn Collective,
    planned: Result<T>,
) -> Result<T> {
    if comm.world_size() == 1 {
        return planned;
    }
    let record: std::result::Result<&T, String> = match &planned {
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{e:#}")),
    };
    let root = comm.rank() == 0;
    let bytes = if root {
        serde_json::to_vec(&record).context("encoding the run's plan")?
    } else {
        Vec::new()
    };
    let bytes = comm.broadcast_bytes(&bytes, 0)?;
    if root {
        return planned;
    }
    match serde_json::from_slice::<std::result::Result<T, String>>(&bytes)
        .context("reading rank 0's plan")?
    {
        Ok(v) => Ok(v),
        Err(msg) => bail!("rank 0 cannot start the run: {msg}"),
    }
}

/// The global batch of a data-parallel run: `--batch-size` is per rank, as is the preset's
/// default; a `--config` file or a resumed run already holds the global batch.
pub fn global_batch(
    per_rank_flag: Option<usize>,
    config_batch: usize,
    from_defaults: bool,
    world: usize,
) -> usize {
    match per_rank_flag {
        Some(b) => b * world,
        None if from_defaults => config_batch * world,
        None => config_batch,
    }
}

/// A job token, so that ranks of two `--nproc` runs that picked the same port never mix.
fn job_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("nproc-{}-{nanos:x}", std::process::id())
}

/// A port nobody listens on now (rank 0 binds it a moment later).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Runs this same command as `n` ranks on this machine (torchrun-style variables, a TCP
/// rendezvous on 127.0.0.1) and waits for them. When a rank fails the others are given a moment
/// to stop on their own (they see its connection drop) and are then killed.
pub fn start_local_ranks(n: usize) -> Result<()> {
    let exe = std::env::current_exe().context("locating this program")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let port = free_port()?.to_string();
    let token = job_token();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .unwrap_or_else(|| (cores / n).max(1).to_string());
    eprintln!(
        "starting {n} ranks on this machine ({threads} thread(s) each, rendezvous 127.0.0.1:{port})"
    );
    // A terminal's Ctrl-C reaches every rank (one process group), and a scheduler's SIGTERM
    // every process of the job, but `kill PID` of this parent reaches only it: it passes its
    // first stop signal on as SIGUSR1, which stops a rank as SIGTERM does but never makes it
    // exit without a checkpoint (`stop.rs`), so a rank reached both ways still checkpoints. A
    // second signal to this parent kills the ranks, as a second Ctrl-C ends a single run; a
    // SIGUSR1 (SLURM's `--signal`) is passed on as it is and never kills.
    let signals = crate::stop::count_stop_signals()?;
    let mut children: Vec<Child> = Vec::with_capacity(n);
    for rank in 0..n {
        let child = Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env(collective::tcp::JOB_VAR, &token)
            .env("RAYON_NUM_THREADS", &threads)
            .spawn()
            .with_context(|| format!("starting rank {rank}"));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                for c in &mut children {
                    let _ = c.kill();
                }
                return Err(e);
            }
        }
    }
    let mut codes: Vec<Option<std::process::ExitStatus>> = vec![None; n];
    // When the first rank failed: the others get a grace period to stop on their own.
    let mut failed_at: Option<Instant> = None;
    let (mut escalating_seen, mut forwarded_seen) = (0, 0);
    while codes.iter().any(Option::is_none) {
        let escalating = signals.escalating.load(Ordering::SeqCst);
        let forwarded = signals.forwarded.load(Ordering::SeqCst);
        let signal = if escalating > escalating_seen && escalating > 1 {
            eprintln!("second stop signal: killing the ranks");
            Some(libc::SIGKILL)
        } else if escalating > escalating_seen || forwarded > forwarded_seen {
            eprintln!("stop signal: passing it on to the ranks (SIGUSR1)");
            Some(crate::stop::FORWARDED)
        } else {
            None
        };
        (escalating_seen, forwarded_seen) = (escalating, forwarded);
        for (child, code) in children.iter().zip(&codes) {
            if let (Some(signal), None) = (signal, code) {
                crate::stop::send(child.id(), signal);
            }
        }
        for (child, code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                if let Some(status) = child.try_wait()? {
                    *code = Some(status);
                    if !status.success() && failed_at.is_none() {
                        failed_at = Some(Instant::now());
                    }
                }
            }
        }
        if let Some(at) = failed_at {
            if at.elapsed() > Duration::from_secs(30) {
                for (child, code) in children.iter_mut().zip(&codes) {
                    if code.is_none() {
                        let _ = child.kill();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let interrupted = codes
        .iter()
        .all(|c| c.is_some_and(|s| s.code() == Some(crate::stop::STOPPED)));
    if interrupted || escalating_seen > 1 {
        std::process::exit(crate::stop::STOPPED);
    }
    if failed_at.is_some() {
        let failed: Vec<String> = codes
            .iter()
            .enumerate()
            .filter_map(|(rank, c)| {
                let s = (*c)?;
                (!s.success()).then(|| format!("rank {rank}: {s}"))
            })
            .collect();
        bail!(
            "{} of {n} ranks failed ({}); the others were stopped",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_flag_is_per_rank_and_stored_batches_are_global() {
        assert_eq!(global_batch(Some(32), 64, true, 4), 128);
        assert_eq!(global_batch(Some(32), 64, false, 4), 128);
        assert_eq!(
            global_batch(None, 64, true, 4),
            256,
            "the preset default is per rank"
        );
        assert_eq!(
            global_batch(None, 256, false, 4),
            256,
            "a stored run keeps its batch"
        );
        assert_eq!(global_batch(None, 64, true, 1), 64);
    }

    #[test]
    fn nproc_starts_ranks_only_outside_a_launch() {
        let args = DistArgs {
            nproc: Some(2),
            ..DistArgs::default()
        };
        assert_eq!(args.ranks_to_start(&Launch::single()), Some(2));
        let rank = Launch {
            world_size: 2,
            rank: 1,
            ..Launch::single()
        };
        assert_eq!(args.ranks_to_start(&rank), None, "already a rank");
        let one = DistArgs {
            nproc: Some(1),
            ..DistArgs::default()
        };
        assert_eq!(one.ranks_to_start(&Launch::single()), None);
    }
}
