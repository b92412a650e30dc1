//! Typed collective errors: each says which rank saw what, and what to do about it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The launcher's environment variables are inconsistent or unparsable.
    #[error("launch environment: {0}")]
    Launch(String),
    /// A communication library could not be loaded or is not the kind we can use.
    #[error("{what}: {detail}. {fix}")]
    Library {
        what: String,
        detail: String,
        fix: String,
    },
    /// An MPI call returned an error code.
    #[error("rank {rank}: {call} failed: {message}")]
    Mpi {
        call: &'static str,
        rank: usize,
        message: String,
    },
    /// A collective did not complete in time: a rank died without the launcher noticing, or hangs.
    #[error(
        "rank {rank}: {op} did not complete within {seconds:.0} s; another rank has died or is \
         stuck (the limit is CONVRNN_DIST_TIMEOUT seconds)"
    )]
    Timeout {
        rank: usize,
        op: String,
        seconds: f64,
    },
    /// A peer's connection closed or failed mid-collective (it exited or was killed).
    #[error("rank {rank}: lost rank {peer} during {op} ({detail}); did it exit or get killed?")]
    PeerLost {
        rank: usize,
        peer: usize,
        op: String,
        detail: String,
    },
    /// Ranks called different collectives (a bug in the caller), or a stranger spoke to us.
    #[error("rank {rank}: {op}: rank {peer} is out of step: {detail}")]
    Protocol {
        rank: usize,
        peer: usize,
        op: String,
        detail: String,
    },
    /// Setting up the TCP rendezvous failed.
    #[error("rendezvous at {addr}: {detail}")]
    Rendezvous { addr: String, detail: String },
    /// A caller asked for something a collective cannot do (wrong root, average of integers…).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("NCCL: {0}")]
    Nccl(String),
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
