//! `collective`: what data-parallel training needs from the processes of a job — rank, world
//! size, local rank; all-reduce, broadcast and barrier — behind one trait, [`Collective`], on the
//! engines clusters already run.
//!
//! - [`launch`]: this process's rank and world, read from the variables `mpiexec`/`mpirun`
//!   (MPICH, Open MPI), SLURM's `srun` and torchrun-style launchers set;
//! - [`Single`]: one process; every collective is the identity (the default);
//! - [`mpi`]: MPI through the MPICH ABI (`libmpich.so.12`, loaded at run time: nothing to link,
//!   so the workspace builds without MPI);
//! - [`tcp`]: a small TCP star for launches without MPI (torchrun-style variables, `cargo xtask
//!   train --nproc N`) and for NCCL's bootstrap;
//! - `nccl` (feature `cuda`): NCCL on the tensors' CUDA stream, its unique id sent over MPI or
//!   TCP.
//!
//! [`connect`] picks the backend for a [`Launch`]. Every collective waits at most
//! [`Options::timeout`]: a dead or stuck rank becomes an error on the others (and, under MPI, an
//! abort of the whole job) instead of a hang.
//!
//! A process reads its place in the job from the launcher's variables, connects, and averages
//! its gradients with the other ranks' (here a job of one):
//!
//! ```
//! use collective::{connect, Collective, CollectiveExt, Launch, Launcher, Options, ReduceOp};
//!
//! // What `torchrun --nproc-per-node 4` gives its second process.
//! let vars = [("RANK", "1"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1")];
//! let launch = Launch::from_vars(|k| {
//!     vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
//! })?;
//! assert_eq!((launch.launcher, launch.rank, launch.world_size), (Launcher::Torchrun, 1, 4));
//!
//! // One process: every collective is the identity.
//! let comm = connect(&Launch::single(), &Options::default())?;
//! let mut grads = vec![0.5f32, -1.0];
//! comm.all_reduce_f32(&mut grads, ReduceOp::Average)?;
//! assert_eq!((comm.world_size(), grads), (1, vec![0.5, -1.0]));
//! # Ok::<(), collective::Error>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod launch;
pub mod mpi;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod tcp;

pub use error::{Error, Result};
pub use launch::{Launch, Launcher, Rendezvous};

use std::time::Duration;
use tensor::storage::Storage;
use tensor::{Device, Tensor};

/// How the values of all ranks are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// The sum over ranks.
    Sum,
    /// The sum divided by the world size (floating-point buffers only).
    Average,
    /// The largest value over ranks.
    Max,
    /// The smallest value over ranks.
    Min,
}

impl ReduceOp {
    fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Average => "average",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// A host buffer a collective reads and overwrites in place.
#[derive(Debug)]
pub enum Buf<'a> {
    /// Single-precision values (gradients, parameters).
    F32(&'a mut [f32]),
    /// Double-precision values (metrics summed over ranks).
    F64(&'a mut [f64]),
    /// Counts.
    U64(&'a mut [u64]),
    /// Bytes: broadcast only.
    U8(&'a mut [u8]),
}

/// The element type of a [`Buf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `u64`.
    U64,
    /// `u8`.
    U8,
}

impl Elem {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F64 | Elem::U64 => 8,
            Elem::U8 => 1,
        }
    }
}

impl Buf<'_> {
    /// The buffer's element type.
    pub fn elem(&self) -> Elem {
        match self {
            Buf::F32(_) => Elem::F32,
            Buf::F64(_) => Elem::F64,
            Buf::U64(_) => Elem::U64,
            Buf::U8(_) => Elem::U8,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buf::F32(b) => b.len(),
            Buf::F64(b) => b.len(),
            Buf::U64(b) => b.len(),
            Buf::U8(b) => b.len(),
        }
    }

    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that `op` can reduce this buffer's element type.
    pub fn check_reducible(&self, op: ReduceOp) -> Result<()> {
        match (self.elem(), op) {
            (Elem::U8, _) => Err(Error::Invalid {
                op: "all-reduce",
                msg: "byte buffers can only be broadcast".into(),
            }),
            (Elem::U64, ReduceOp::Average) => Err(Error::Invalid {
                op: "all-reduce",
                msg: "an average of integers is not an integer; sum them and divide".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Divides every element by `n` (the world size, after a sum).
    fn divide(&mut self, n: usize) {
        match self {
            Buf::F32(b) => b.iter_mut().for_each(|x| *x /= n as f32),
            Buf::F64(b) => b.iter_mut().for_each(|x| *x /= n as f64),
            Buf::U64(_) | Buf::U8(_) => {}
        }
    }
}

/// Which engine carries the collectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One process: every collective is the identity.
    Single,
    /// MPI through the MPICH ABI.
    Mpi,
    /// The TCP star.
    Tcp,
    /// NCCL on the tensors' CUDA stream.
    Nccl,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Single => "single",
            Backend::Mpi => "mpi",
            Backend::Tcp => "tcp",
            Backend::Nccl => "nccl",
        })
    }
}

/// The backend a user asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BackendChoice {
    /// NCCL for CUDA runs; MPI under an MPI process manager; TCP otherwise (see [`connect`]).
    #[default]
    Auto,
    /// Ignore launcher variables: this process trains alone.
    Single,
    /// MPI through the MPICH ABI.
    Mpi,
    /// The TCP star.
    Tcp,
    /// NCCL (feature `cuda`).
    Nccl,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" => BackendChoice::Auto,
            "single" | "none" => BackendChoice::Single,
            "mpi" => BackendChoice::Mpi,
            "tcp" => BackendChoice::Tcp,
            "nccl" => BackendChoice::Nccl,
            other => {
                return Err(Error::Invalid {
                    op: "backend",
                    msg: format!(
                        "unknown backend {other:?}; expected auto, single, mpi, tcp or nccl"
                    ),
                })
            }
        })
    }
}

/// The variable that sets [`Options::timeout`] in seconds.
pub const TIMEOUT_VAR: &str = "CONVRNN_DIST_TIMEOUT";
/// The default limit on any one collective (and on the rendezvous).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How to connect.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Which engine carries the collectives.
    pub backend: BackendChoice,
    /// The longest any collective may wait for the other ranks.
    pub timeout: Duration,
    /// The device training runs on (`Cuda` selects NCCL under [`BackendChoice::Auto`]; the
    /// ordinal is replaced by the rank's own GPU, see [`rank_device`]).
    pub device: Device,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: BackendChoice::Auto,
            timeout: DEFAULT_TIMEOUT,
            device: Device::Cpu,
        }
    }
}

impl Options {
    /// Defaults, with the timeout from `CONVRNN_DIST_TIMEOUT` when set.
    pub fn from_env() -> Result<Options> {
        let mut o = Options::default();
        if let Ok(v) = std::env::var(TIMEOUT_VAR) {
            let secs: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0)
                .ok_or_else(|| {
                    Error::Launch(format!(
                        "{TIMEOUT_VAR}={v:?} is not a positive number of seconds"
                    ))
                })?;
            o.timeout = Duration::from_secs_f64(secs);
        }
        Ok(o)
    }
}

/// The collectives data-parallel training uses. Every rank must call the same collectives in the
/// same order with buffers of the same length and type; each call returns once every rank's
/// contribution is in (or with an error after [`Options::timeout`]).
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// The number of processes in the job.
    fn world_size(&self) -> usize;
    /// Rank among the processes on this node (which GPU this rank drives).
    fn local_rank(&self) -> usize;
    /// The engine behind this handle.
    fn backend(&self) -> Backend;

    /// Replaces `buf` on every rank by the element-wise reduction over all ranks.
    fn all_reduce(&self, buf: Buf<'_>, op: ReduceOp) -> Result<()>;

    /// Replaces `buf` on every rank by `root`'s.
    fn broadcast(&self, buf: Buf<'_>, root: usize) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// All-reduces a tensor's data in place: a CPU tensor's own buffer, a CUDA tensor through
    /// host memory (NCCL reduces on the device instead). `t` must not share its storage with
    /// another tensor.
    fn all_reduce_tensor(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        {
            let mut storage = t.storage_mut();
            // Element-wise, so the layout does not matter as long as every rank has the same.
            #[allow(irrefutable_let_patterns)]
            if let Storage::Cpu(buf) = &mut *storage {
                return self.all_reduce(Buf::F32(buf.as_mut_slice()), op);
            }
        }
        let mut host = t.to_vec()?;
        self.all_reduce(Buf::F32(&mut host), op)?;
        // `to_vec` reads plain order; `assign` converts back to `t`'s layout.
        t.assign(&Tensor::from_vec(host, t.shape().clone(), t.device())?)?;
        Ok(())
    }

    /// Replaces a tensor's data on every rank by `root`'s.
    fn broadcast_tensor(&self, t: &Tensor, root: usize) -> Result<()> {
        {
            let mut storage = t.storage_mut();
            #[allow(irrefutable_let_patterns)]
            if let Storage::Cpu(buf) = &mut *storage {
                return self.broadcast(Buf::F32(buf.as_mut_slice()), root);
            }
        }
        let mut host = t.to_vec()?;
        self.broadcast(Buf::F32(&mut host), root)?;
        // `to_vec` reads plain order; `assign` converts back to `t`'s layout.
        t.assign(&Tensor::from_vec(host, t.shape().clone(), t.device())?)?;
        Ok(())
    }

    /// Ends this process after an unrecoverable error, taking the whole job down with it where
    /// the engine can (MPI_Abort); elsewhere the others see the connection drop.
    fn abort(&self, code: i32) -> !;
}

/// Typed conveniences over [`Collective`].
pub trait CollectiveExt: Collective {
    /// [`Collective::all_reduce`] of `f32`s.
    fn all_reduce_f32(&self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        self.all_reduce(Buf::F32(buf), op)
    }
    /// [`Collective::all_reduce`] of `f64`s.
    fn all_reduce_f64(&self, buf: &mut [f64], op: ReduceOp) -> Result<()> {
        self.all_reduce(Buf::F64(buf), op)
    }
    /// [`Collective::all_reduce`] of `u64`s.
    fn all_reduce_u64(&self, buf: &mut [u64], op: ReduceOp) -> Result<()> {
        self.all_reduce(Buf::U64(buf), op)
    }
    /// [`Collective::broadcast`] of `f32`s from `root`.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.broadcast(Buf::F32(buf), root)
    }
    /// `root`'s bytes on every rank (the others' `bytes` are ignored; lengths may differ).
    fn broadcast_bytes(&self, bytes: &[u8], root: usize) -> Result<Vec<u8>> {
        let mut len = [bytes.len() as u64];
        self.broadcast(Buf::U64(&mut len), root)?;
        let len = usize::try_from(len[0]).map_err(|_| Error::Invalid {
            op: "broadcast",
            msg: format!("{} bytes do not fit in memory", len[0]),
        })?;
        let mut out = if self.rank() == root {
            bytes.to_vec()
        } else {
            vec![0u8; len]
        };
        self.broadcast(Buf::U8(&mut out), root)?;
        Ok(out)
    }
    /// Whether this is rank 0, the rank that writes files and prints.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

impl<C: Collective + ?Sized> CollectiveExt for C {}

fn check_root(op: &'static str, root: usize, world: usize) -> Result<()> {
    if root >= world {
        return Err(Error::Invalid {
            op,
            msg: format!("root {root} is not a rank of a world of {world}"),
        });
    }
    Ok(())
}

/// Calls `done` until it says the operation finished, or fails with [`Error::Timeout`] once
/// `timeout` has passed. The first 50 ms spin (yielding the core), later polls are 1 ms apart:
/// a collective that lasts means a peer is late, and latency matters less than the core.
fn poll(
    timeout: Duration,
    rank: usize,
    what: &str,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited > timeout {
            return Err(Error::Timeout {
                rank,
                op: what.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        if waited > Duration::from_millis(50) {
            std::thread::sleep(Duration::from_millis(1));
        } else {
            std::thread::yield_now();
        }
    }
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn backend(&self) -> Backend {
        Backend::Single
    }
    fn all_reduce(&self, buf: Buf<'_>, op: ReduceOp) -> Result<()> {
        buf.check_reducible(op)
    }
    fn broadcast(&self, _buf: Buf<'_>, root: usize) -> Result<()> {
        check_root("broadcast", root, 1)
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn all_reduce_tensor(&self, _t: &Tensor, _op: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn broadcast_tensor(&self, _t: &Tensor, root: usize) -> Result<()> {
        check_root("broadcast", root, 1)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The device a rank trains on: a CUDA run uses the rank's own GPU, `cuda:<local rank>` (modulo
/// the GPUs this process sees, for launchers that give each rank one GPU through
/// `CUDA_VISIBLE_DEVICES`); a single process keeps the device it was given.
pub fn rank_device(requested: Device, comm: &dyn Collective) -> Result<Device> {
    match requested {
        Device::Cpu => Ok(Device::Cpu),
        Device::Cuda(n) if comm.world_size() == 1 => Ok(Device::Cuda(n)),
        Device::Cuda(_) => {
            #[cfg(feature = "cuda")]
            {
                let count = tensor::cuda::device_count()?;
                if count == 0 {
                    return Err(Error::Invalid {
                        op: "device",
                        msg: "CUDA was asked for but the driver reports no GPU".into(),
                    });
                }
                Ok(Device::Cuda(comm.local_rank() % count))
            }
            #[cfg(not(feature = "cuda"))]
            {
                Ok(Device::Cuda(comm.local_rank()))
            }
        }
    }
}

/// Connects this process to the other ranks of its launch with the backend `opts` asks for:
/// [`connect_host`], then [`for_device`].
///
/// Under [`BackendChoice::Auto`]: a world of one is [`Single`]; a CUDA run uses NCCL, bootstrapped
/// over MPI when an MPI process manager launched the job and over TCP otherwise; a CPU run uses
/// MPI under an MPI process manager (MPICH's `mpiexec`, `srun --mpi=pmi2`) and TCP under
/// torchrun-style variables, plain `srun` and Open MPI's `mpirun` (whose MPI library has another
/// ABI).
pub fn connect(launch: &Launch, opts: &Options) -> Result<Box<dyn Collective>> {
    let host = connect_host(launch, opts.backend, opts.timeout)?;
    for_device(host, opts)
}

/// The host-side communicator of a launch: [`Single`] for one rank (or `Single` asked for), MPI
/// or TCP as [`connect`] describes (NCCL's bootstrap under [`BackendChoice::Nccl`]). It is all a
/// job needs before it knows which device it trains on.
pub fn connect_host(
    launch: &Launch,
    choice: BackendChoice,
    timeout: Duration,
) -> Result<Box<dyn Collective>> {
    let mpi_job = launch.mpi_job && launch.launcher != Launcher::OpenMpi;
    match choice {
        BackendChoice::Single => Ok(Box::new(Single)),
        // NCCL's own world of one still needs a (trivial) bootstrap.
        BackendChoice::Auto if launch.world_size == 1 => Ok(Box::new(Single)),
        BackendChoice::Mpi => Ok(Box::new(mpi::MpiComm::init(launch, timeout)?)),
        BackendChoice::Auto | BackendChoice::Nccl if mpi_job => {
            Ok(Box::new(mpi::MpiComm::init(launch, timeout)?))
        }
        BackendChoice::Auto | BackendChoice::Nccl | BackendChoice::Tcp => {
            Ok(Box::new(tcp::TcpComm::connect(launch, timeout)?))
        }
    }
}

/// `host` with NCCL in front for the tensors of a CUDA run, when `opts` asks for NCCL or leaves
/// the choice to [`BackendChoice::Auto`] with several ranks on CUDA; `host` itself otherwise.
pub fn for_device(host: Box<dyn Collective>, opts: &Options) -> Result<Box<dyn Collective>> {
    let cuda = matches!(opts.device, Device::Cuda(_));
    let nccl = match opts.backend {
        BackendChoice::Nccl => true,
        BackendChoice::Auto => cuda && host.world_size() > 1,
        BackendChoice::Single | BackendChoice::Mpi | BackendChoice::Tcp => false,
    };
    if !nccl {
        return Ok(host);
    }
    if !cuda {
        return Err(Error::Invalid {
            op: "nccl",
            msg: "NCCL reduces CUDA tensors; this run is on the CPU (use --backend mpi or tcp)"
                .into(),
        });
    }
    with_nccl(host, opts)
}

#[cfg(feature = "cuda")]
fn with_nccl(host: Box<dyn Collective>, opts: &Options) -> Result<Box<dyn Collective>> {
    let Device::Cuda(ordinal) = rank_device(opts.device, host.as_ref())? else {
        unreachable!("for_device checked that the run is on CUDA")
    };
    Ok(Box::new(nccl::NcclComm::new(host, ordinal, opts.timeout)?))
}

#[cfg(not(feature = "cuda"))]
fn with_nccl(_host: Box<dyn Collective>, _opts: &Options) -> Result<Box<dyn Collective>> {
    Err(Error::Library {
        what: "NCCL".into(),
        detail: "this build has no CUDA backend".into(),
        fix: "build with `--features cuda` (it builds without CUDA installed), or use --backend \
              mpi or tcp for CPU training"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_is_the_identity() {
        let s = Single;
        let mut v = [1.0f32, -2.0];
        s.all_reduce_f32(&mut v, ReduceOp::Average).unwrap();
        assert_eq!(v, [1.0, -2.0]);
        assert_eq!(s.broadcast_bytes(b"abc", 0).unwrap(), b"abc");
        assert!(s.broadcast_f32(&mut v, 1).is_err());
        assert!(s.all_reduce(Buf::U8(&mut [1u8]), ReduceOp::Sum).is_err());
        assert!(s
            .all_reduce(Buf::U64(&mut [1u64]), ReduceOp::Average)
            .is_err());
        s.barrier().unwrap();
    }

    #[test]
    fn auto_with_one_rank_is_single_and_backends_parse() {
        let c = connect(&Launch::single(), &Options::default()).unwrap();
        assert_eq!(c.backend(), Backend::Single);
        assert_eq!((c.rank(), c.world_size(), c.local_rank()), (0, 1, 0));
        assert_eq!("MPI".parse::<BackendChoice>().unwrap(), BackendChoice::Mpi);
        let err = "gloo".parse::<BackendChoice>().unwrap_err().to_string();
        assert!(err.contains("auto, single, mpi, tcp or nccl"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn nccl_without_the_cuda_feature_says_how_to_get_it() {
        let opts = Options {
            backend: BackendChoice::Nccl,
            device: Device::Cuda(0),
            ..Options::default()
        };
        let err = for_device(Box::new(Single), &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--features cuda"), "{err}");
        let cpu = Options {
            backend: BackendChoice::Nccl,
            ..Options::default()
        };
        let err = for_device(Box::new(Single), &cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("on the CPU"), "{err}");
    }
}
