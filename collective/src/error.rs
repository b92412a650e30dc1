//! Typed collective errors: each says which rank saw what, and what to do about it.

/// What went wrong in a launch or a collective.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The launcher's environment variables are inconsistent or unparsable.
    #[error("launch environment: {0}")]
    Launch(String),
    /// A communication library could not be loaded or is not the kind we can use.
    #[error("{what}: {detail}. {fix}")]
    Library {
        /// The library, as the user would look for it.
        what: String,
        /// What loading or checking it reported.
        detail: String,
        /// What to install or set.
        fix: String,
    },
    /// An MPI call returned an error code.
    #[error("rank {rank}: {call} failed: {message}")]
    Mpi {
        /// The MPI function.
        call: &'static str,
        /// The rank that saw it.
        rank: usize,
        /// MPI's error string.
        message: String,
    },
    /// A collective did not complete in time: a rank died without the launcher noticing, or hangs.
    #[error(
        "rank {rank}: {op} did not complete within {seconds:.0} s; another rank has died or is \
         stuck (the limit is CONVRNN_DIST_TIMEOUT seconds)"
    )]
    Timeout {
        /// The rank that waited.
        rank: usize,
        /// The collective it waited in.
        op: String,
        /// How long it waited.
        seconds: f64,
    },
    /// A peer's connection closed or failed mid-collective (it exited or was killed).
    #[error("rank {rank}: lost rank {peer} during {op} ({detail}); did it exit or get killed?")]
    PeerLost {
        /// The rank that saw it.
        rank: usize,
        /// The rank that went away.
        peer: usize,
        /// The collective under way.
        op: String,
        /// What the connection reported.
        detail: String,
    },
    /// Ranks called different collectives (a bug in the caller), or a stranger spoke to us.
    #[error("rank {rank}: {op}: rank {peer} is out of step: {detail}")]
    Protocol {
        /// The rank that saw it.
        rank: usize,
        /// The rank out of step.
        peer: usize,
        /// The collective this rank was in.
        op: String,
        /// What arrived instead of what was expected.
        detail: String,
    },
    /// Setting up the TCP rendezvous failed.
    #[error("rendezvous at {addr}: {detail}")]
    Rendezvous {
        /// The rendezvous address.
        addr: String,
        /// What binding, connecting or the handshake reported.
        detail: String,
    },
    /// A caller asked for something a collective cannot do (wrong root, average of integers…).
    #[error("{op}: {msg}")]
    Invalid {
        /// The collective asked.
        op: &'static str,
        /// What was wrong with the request.
        msg: String,
    },
    /// An NCCL call failed.
    #[error("NCCL: {0}")]
    Nccl(String),
    /// A tensor operation failed (copying between a tensor and a buffer).
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
