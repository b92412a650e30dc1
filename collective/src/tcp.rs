//! A TCP star for jobs launched without MPI: rank 0 listens at the rendezvous address
//! (`MASTER_ADDR:MASTER_PORT`), every other rank connects to it.
//!
//! An all-reduce sends every rank's buffer to rank 0, which combines them in rank order —
//! `((x₀ + x₁) + x₂) + …`, so the result does not depend on timing — and sends the result back;
//! a broadcast goes out from rank 0 (through rank 0 when another rank is the root) once every
//! rank has announced itself. Rank 0 moves
//! `2 (W − 1)` buffers per collective, which is fine for the few ranks of one machine (`cargo
//! xtask train --nproc N`) and for NCCL's bootstrap, where only a 128-byte id and metric sums
//! travel; MPI or NCCL carry larger jobs.
//!
//! Every message starts with a header naming the collective, its sequence number, element type
//! and length, so ranks that call different collectives fail with a message naming both instead
//! of exchanging garbage. Reads and writes time out after [`crate::Options::timeout`]; a peer
//! that exits or is killed closes its socket, which its partner sees at once.
//!
//! Values travel little-endian; all ranks must agree on nothing else.

use crate::error::{Error, Result};
use crate::launch::Launch;
use crate::{check_root, Backend, Buf, Collective, ReduceOp};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The variable holding an optional job token: ranks with different tokens never join one job
/// (protects against two jobs that picked the same port).
pub const JOB_VAR: &str = "CONVRNN_DIST_JOB";

const HELLO_MAGIC: &[u8; 8] = b"CVRNCOL1";
const MSG_MAGIC: u32 = 0x434f_4c31;
const HEADER_LEN: usize = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    AllReduce = 1,
    Broadcast = 2,
    Barrier = 3,
}

/// What every message of a collective carries first; all ranks must send equal headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    kind: u8,
    op: u8,
    elem: u8,
    root: u32,
    seq: u64,
    count: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MSG_MAGIC.to_le_bytes());
        b[4] = self.kind;
        b[5] = self.op;
        b[6] = self.elem;
        b[8..12].copy_from_slice(&self.root.to_le_bytes());
        b[12..20].copy_from_slice(&self.seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_LEN]) -> Option<Header> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        (u32_at(0) == MSG_MAGIC).then(|| Header {
            kind: b[4],
            op: b[5],
            elem: b[6],
            root: u32_at(8),
            seq: u64_at(12),
            count: u64_at(20),
        })
    }

    fn describe(&self) -> String {
        let elem = match self.elem {
            1 => "f32",
            2 => "f64",
            3 => "u64",
            4 => "bytes",
            _ => "values of an unknown type",
        };
        let n = self.count;
        match self.kind {
            1 => {
                let op = match self.op {
                    1 => "sum",
                    2 => "average",
                    3 => "max",
                    4 => "min",
                    _ => "an unknown reduction",
                };
                format!("all-reduce #{} ({op} of {n} {elem})", self.seq)
            }
            2 => format!(
                "broadcast #{} ({n} {elem} from rank {})",
                self.seq, self.root
            ),
            3 => format!("barrier #{}", self.seq),
            _ => format!("an unknown collective #{}", self.seq),
        }
    }
}

fn op_code(op: ReduceOp) -> u8 {
    match op {
        ReduceOp::Sum => 1,
        ReduceOp::Average => 2,
        ReduceOp::Max => 3,
        ReduceOp::Min => 4,
    }
}

fn elem_code(buf: &Buf<'_>) -> u8 {
    match buf {
        Buf::F32(_) => 1,
        Buf::F64(_) => 2,
        Buf::U64(_) => 3,
        Buf::U8(_) => 4,
    }
}

/// `buf`'s values as little-endian bytes.
fn to_bytes(buf: &Buf<'_>) -> Vec<u8> {
    match buf {
        Buf::F32(b) => b.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Buf::F64(b) => b.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Buf::U64(b) => b.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Buf::U8(b) => b.to_vec(),
    }
}

/// Overwrites `buf` with the values in `bytes` (exactly `buf`'s size).
fn from_bytes(buf: &mut Buf<'_>, bytes: &[u8]) {
    fn fill<T, const N: usize>(dst: &mut [T], src: &[u8], f: impl Fn([u8; N]) -> T) {
        for (d, c) in dst.iter_mut().zip(src.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            *d = f(a);
        }
    }
    match buf {
        Buf::F32(b) => fill(b, bytes, f32::from_le_bytes),
        Buf::F64(b) => fill(b, bytes, f64::from_le_bytes),
        Buf::U64(b) => fill(b, bytes, u64::from_le_bytes),
        Buf::U8(b) => b.copy_from_slice(bytes),
    }
}

/// `buf ← op(buf, other)` element-wise, `other` as little-endian bytes. Average sums here and
/// divides once at the end.
fn combine(buf: &mut Buf<'_>, other: &[u8], op: ReduceOp) {
    fn apply<T: Copy + PartialOrd, const N: usize>(
        dst: &mut [T],
        src: &[u8],
        f: impl Fn([u8; N]) -> T,
        add: impl Fn(T, T) -> T,
        op: ReduceOp,
    ) {
        for (d, c) in dst.iter_mut().zip(src.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            let y = f(a);
            *d = match op {
                ReduceOp::Sum | ReduceOp::Average => add(*d, y),
                ReduceOp::Max if y > *d => y,
                ReduceOp::Min if y < *d => y,
                ReduceOp::Max | ReduceOp::Min => *d,
            };
        }
    }
    match buf {
        Buf::F32(b) => apply(b, other, f32::from_le_bytes, |a, b| a + b, op),
        Buf::F64(b) => apply(b, other, f64::from_le_bytes, |a, b| a + b, op),
        Buf::U64(b) => apply(b, other, u64::from_le_bytes, u64::wrapping_add, op),
        Buf::U8(_) => {}
    }
}

/// This machine's host name (for working out local ranks).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

struct State {
    /// Rank 0: the streams of ranks 1, 2, … in rank order. Other ranks: the stream to rank 0.
    links: Vec<TcpStream>,
    seq: u64,
    /// The first failure; a job cannot continue after one, so later calls fail with it at once.
    broken: Option<String>,
}

/// The TCP backend; see the module documentation.
pub struct TcpComm {
    rank: usize,
    world: usize,
    local_rank: usize,
    timeout: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for TcpComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TcpComm(rank {} of {})", self.rank, self.world)
    }
}

/// What a rank sends rank 0 when it connects.
struct Hello {
    world: u32,
    rank: u32,
    token: String,
    host: String,
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn read_u32(s: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_str(s: &mut impl Read) -> std::io::Result<String> {
    let n = read_u32(s)? as usize;
    if n > 4096 {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "a rendezvous string longer than 4096 bytes",
        ));
    }
    let mut b = vec![0u8; n];
    s.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "not UTF-8"))
}

impl Hello {
    fn encode(&self) -> Vec<u8> {
        let mut out = HELLO_MAGIC.to_vec();
        out.extend_from_slice(&self.world.to_le_bytes());
        out.extend_from_slice(&self.rank.to_le_bytes());
        write_str(&mut out, &self.token);
        write_str(&mut out, &self.host);
        out
    }

    /// `None` when the peer is not one of ours (wrong magic); an error when it broke off.
    fn read(s: &mut impl Read) -> std::io::Result<Option<Hello>> {
        let mut magic = [0u8; 8];
        s.read_exact(&mut magic)?;
        if &magic != HELLO_MAGIC {
            return Ok(None);
        }
        Ok(Some(Hello {
            world: read_u32(s)?,
            rank: read_u32(s)?,
            token: read_str(s)?,
            host: read_str(s)?,
        }))
    }
}

impl TcpComm {
    /// Joins the job `launch` describes at its rendezvous, waiting at most `timeout` for every
    /// rank to arrive.
    pub fn connect(launch: &Launch, timeout: Duration) -> Result<TcpComm> {
        let token = std::env::var(JOB_VAR).unwrap_or_default();
        let (rank, world) = (launch.rank, launch.world_size);
        if world == 1 {
            return Ok(TcpComm::from_links(0, 1, 0, timeout, Vec::new()));
        }
        let rv = launch.rendezvous.clone().ok_or_else(|| {
            Error::Launch(format!(
                "{} started {world} ranks on several nodes without MASTER_ADDR: the TCP \
                 rendezvous needs MASTER_ADDR (rank 0's host) and MASTER_PORT",
                launch.launcher
            ))
        })?;
        let addr = rv.to_string();
        let deadline = Instant::now() + timeout;
        if rank == 0 {
            let listener =
                TcpListener::bind(("0.0.0.0", rv.port)).map_err(|e| Error::Rendezvous {
                    addr: addr.clone(),
                    detail: format!(
                        "rank 0 cannot listen on port {} ({e}); another job may hold it: choose \
                         another MASTER_PORT",
                        rv.port
                    ),
                })?;
            Self::serve(listener, launch, &token, deadline, timeout, &addr)
        } else {
            Self::join(launch, &rv.host, rv.port, &token, deadline, timeout, &addr)
        }
    }

    /// Rank 0 of a job whose rendezvous socket is already bound (tests bind port 0 and pass the
    /// port to the others).
    pub fn serve(
        listener: TcpListener,
        launch: &Launch,
        token: &str,
        deadline: Instant,
        timeout: Duration,
        addr: &str,
    ) -> Result<TcpComm> {
        let world = launch.world_size;
        let rdv = |detail: String| Error::Rendezvous {
            addr: addr.to_string(),
            detail,
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| rdv(e.to_string()))?;
        let mut peers: Vec<Option<(TcpStream, String)>> = (1..world).map(|_| None).collect();
        let mut joined = 0;
        while joined + 1 < world {
            let (mut stream, from) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<usize> = peers
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| p.is_none())
                            .map(|(i, _)| i + 1)
                            .collect();
                        return Err(rdv(format!(
                            "ranks {missing:?} did not arrive within {:.0} s",
                            timeout.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => return Err(rdv(format!("accepting a connection: {e}"))),
            };
            let setup = stream
                .set_nonblocking(false)
                .and_then(|()| stream.set_read_timeout(Some(timeout.min(Duration::from_secs(30)))));
            let hello = match setup.and_then(|()| Hello::read(&mut stream)) {
                Ok(Some(h)) => h,
                // Not one of ours (a port scanner, a stale client): ignore it.
                Ok(None) | Err(_) => continue,
            };
            if hello.token != token || hello.world as usize != world {
                // Another job that picked the same port: turn it away, keep waiting for ours.
                continue;
            }
            let r = hello.rank as usize;
            if r == 0 || r >= world {
                return Err(rdv(format!("{from} claims rank {r} of a world of {world}")));
            }
            if peers[r - 1].is_some() {
                return Err(rdv(format!(
                    "two processes claim rank {r} (the second from {from}); check the launcher's \
                     RANK variables"
                )));
            }
            peers[r - 1] = Some((stream, hello.host));
            joined += 1;
        }
        let mut hosts = vec![hostname()];
        let mut links = Vec::with_capacity(world - 1);
        for (stream, host) in peers.into_iter().flatten() {
            hosts.push(host);
            links.push(stream);
        }
        let local_of = |r: usize| hosts[..r].iter().filter(|h| **h == hosts[r]).count();
        for (i, s) in links.iter_mut().enumerate() {
            let r = i + 1;
            let mut welcome = HELLO_MAGIC.to_vec();
            welcome.extend_from_slice(&(local_of(r) as u32).to_le_bytes());
            s.write_all(&welcome)
                .map_err(|e| rdv(format!("welcoming rank {r}: {e}")))?;
        }
        let local = launch.local_rank.unwrap_or_else(|| local_of(0));
        Self::finish(0, world, local, timeout, links)
    }

    fn join(
        launch: &Launch,
        host: &str,
        port: u16,
        token: &str,
        deadline: Instant,
        timeout: Duration,
        addr: &str,
    ) -> Result<TcpComm> {
        let rdv = |detail: String| Error::Rendezvous {
            addr: addr.to_string(),
            detail,
        };
        let mut last_error: String;
        let mut stream = loop {
            let attempt = (host, port)
                .to_socket_addrs()
                .and_then(|mut a| {
                    a.next()
                        .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address"))
                })
                .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)));
            match attempt {
                Ok(s) => break s,
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(rdv(format!(
                    "rank {} could not reach rank 0 within {:.0} s (last error: {last_error})",
                    launch.rank,
                    timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let hello = Hello {
            world: launch.world_size as u32,
            rank: launch.rank as u32,
            token: token.to_string(),
            host: hostname(),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(remaining.max(Duration::from_secs(1))))
            .and_then(|()| stream.write_all(&hello.encode()))
            .map_err(|e| rdv(format!("greeting rank 0: {e}")))?;
        let mut magic = [0u8; 8];
        let local = stream
            .read_exact(&mut magic)
            .and_then(|()| read_u32(&mut stream))
            .map_err(|e| {
                rdv(format!(
                    "rank 0 did not welcome rank {} ({e}): it may belong to another job (same \
                     MASTER_PORT, another world size or {JOB_VAR})",
                    launch.rank
                ))
            })?;
        if &magic != HELLO_MAGIC {
            return Err(rdv(
                "the process at the rendezvous is not a convrnn rank 0".into()
            ));
        }
        let local = launch.local_rank.unwrap_or(local as usize);
        Self::finish(launch.rank, launch.world_size, local, timeout, vec![stream])
    }

    fn finish(
        rank: usize,
        world: usize,
        local_rank: usize,
        timeout: Duration,
        links: Vec<TcpStream>,
    ) -> Result<TcpComm> {
        for s in &links {
            s.set_nodelay(true)
                .and_then(|()| s.set_read_timeout(Some(timeout)))
                .and_then(|()| s.set_write_timeout(Some(timeout)))
                .map_err(|e| Error::Rendezvous {
                    addr: s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
                    detail: e.to_string(),
                })?;
        }
        Ok(Self::from_links(rank, world, local_rank, timeout, links))
    }

    fn from_links(
        rank: usize,
        world: usize,
        local_rank: usize,
        timeout: Duration,
        links: Vec<TcpStream>,
    ) -> TcpComm {
        TcpComm {
            rank,
            world,
            local_rank,
            timeout,
            state: Mutex::new(State {
                links,
                seq: 0,
                broken: None,
            }),
        }
    }

    fn io_error(&self, peer: usize, what: &str, e: std::io::Error) -> Error {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout {
                rank: self.rank,
                op: format!("{what} with rank {peer}"),
                seconds: self.timeout.as_secs_f64(),
            },
            ErrorKind::UnexpectedEof => Error::PeerLost {
                rank: self.rank,
                peer,
                op: what.to_string(),
                detail: "its connection closed".into(),
            },
            _ => Error::PeerLost {
                rank: self.rank,
                peer,
                op: what.to_string(),
                detail: e.to_string(),
            },
        }
    }

    fn send(&self, s: &mut TcpStream, peer: usize, h: &Header, payload: &[u8]) -> Result<()> {
        let what = h.describe();
        s.write_all(&h.encode())
            .and_then(|()| s.write_all(payload))
            .map_err(|e| self.io_error(peer, &what, e))
    }

    /// Reads a message that must carry header `want`; returns its payload.
    fn recv(&self, s: &mut TcpStream, peer: usize, want: &Header, bytes: usize) -> Result<Vec<u8>> {
        let what = want.describe();
        let mut hb = [0u8; HEADER_LEN];
        s.read_exact(&mut hb)
            .map_err(|e| self.io_error(peer, &what, e))?;
        let got = Header::decode(&hb).ok_or_else(|| Error::Protocol {
            rank: self.rank,
            peer,
            op: what.clone(),
            detail: "it sent bytes that are not a collective message".into(),
        })?;
        if got != *want {
            return Err(Error::Protocol {
                rank: self.rank,
                peer,
                op: what.clone(),
                detail: format!("it is in {} instead", got.describe()),
            });
        }
        let mut payload = vec![0u8; bytes];
        s.read_exact(&mut payload)
            .map_err(|e| self.io_error(peer, &what, e))?;
        Ok(payload)
    }

    /// Runs one collective under the lock, marking the communicator broken on failure.
    fn run(&self, f: impl FnOnce(&mut State, u64) -> Result<()>) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(msg) = &st.broken {
            return Err(Error::Invalid {
                op: "collective",
                msg: format!("an earlier collective failed ({msg}); the job cannot continue"),
            });
        }
        st.seq += 1;
        let seq = st.seq;
        let out = f(&mut st, seq);
        if let Err(e) = &out {
            st.broken = Some(e.to_string());
        }
        out
    }

    fn reduce(&self, mut buf: Buf<'_>, op: ReduceOp, kind: Kind) -> Result<()> {
        self.run(|st, seq| {
            let h = Header {
                kind: kind as u8,
                op: op_code(op),
                elem: elem_code(&buf),
                root: 0,
                seq,
                count: buf.len() as u64,
            };
            let bytes = buf.len() * buf.elem().size();
            if self.rank == 0 {
                for (i, s) in st.links.iter_mut().enumerate() {
                    let other = self.recv(s, i + 1, &h, bytes)?;
                    combine(&mut buf, &other, op);
                }
                if op == ReduceOp::Average {
                    buf.divide(self.world);
                }
                let out = to_bytes(&buf);
                for (i, s) in st.links.iter_mut().enumerate() {
                    self.send(s, i + 1, &h, &out)?;
                }
            } else {
                let s = &mut st.links[0];
                self.send(s, 0, &h, &to_bytes(&buf))?;
                let result = self.recv(s, 0, &h, bytes)?;
                from_bytes(&mut buf, &result);
            }
            Ok(())
        })
    }
}

impl Collective for TcpComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn backend(&self) -> Backend {
        Backend::Tcp
    }

    fn all_reduce(&self, buf: Buf<'_>, op: ReduceOp) -> Result<()> {
        buf.check_reducible(op)?;
        if self.world == 1 {
            return Ok(());
        }
        self.reduce(buf, op, Kind::AllReduce)
    }

    fn broadcast(&self, mut buf: Buf<'_>, root: usize) -> Result<()> {
        check_root("broadcast", root, self.world)?;
        if self.world == 1 {
            return Ok(());
        }
        self.run(|st, seq| {
            let h = Header {
                kind: Kind::Broadcast as u8,
                op: 0,
                elem: elem_code(&buf),
                root: root as u32,
                seq,
                count: buf.len() as u64,
            };
            let bytes = buf.len() * buf.elem().size();
            // Every rank announces itself to rank 0 (the root with its data), so that ranks in
            // different collectives meet as a clear error instead of two waiting reads.
            if self.rank == 0 {
                let mut payload = if root == 0 {
                    to_bytes(&buf)
                } else {
                    Vec::new()
                };
                for (i, s) in st.links.iter_mut().enumerate() {
                    let from_root = i + 1 == root;
                    let p = self.recv(s, i + 1, &h, if from_root { bytes } else { 0 })?;
                    if from_root {
                        from_bytes(&mut buf, &p);
                        payload = p;
                    }
                }
                for (i, s) in st.links.iter_mut().enumerate() {
                    if i + 1 != root {
                        self.send(s, i + 1, &h, &payload)?;
                    }
                }
            } else if self.rank == root {
                self.send(&mut st.links[0], 0, &h, &to_bytes(&buf))?;
            } else {
                self.send(&mut st.links[0], 0, &h, &[])?;
                let p = self.recv(&mut st.links[0], 0, &h, bytes)?;
                from_bytes(&mut buf, &p);
            }
            Ok(())
        })
    }

    fn barrier(&self) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        self.reduce(Buf::U64(&mut []), ReduceOp::Sum, Kind::Barrier)
    }

    fn abort(&self, code: i32) -> ! {
        // Closing the sockets is what tells the other ranks: they fail at their next read.
        if let Ok(st) = self.state.try_lock() {
            for s in &st.links {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        std::process::exit(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{Launcher, Rendezvous};
    use crate::CollectiveExt;
    use std::sync::Arc;

    fn launch(rank: usize, world: usize, port: u16) -> Launch {
        Launch {
            launcher: Launcher::Torchrun,
            rank,
            world_size: world,
            local_rank: None,
            local_world_size: None,
            rendezvous: Some(Rendezvous {
                host: "127.0.0.1".into(),
                port,
            }),
            mpi_job: false,
        }
    }

    /// `world` ranks as threads of this process; `f(rank, comm)` runs on each.
    fn with_ranks<T: Send + 'static>(
        world: usize,
        timeout: Duration,
        f: impl Fn(usize, TcpComm) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let f = Arc::new(f);
        let mut handles = Vec::new();
        for r in 1..world {
            let f = Arc::clone(&f);
            handles.push(std::thread::spawn(move || {
                f(
                    r,
                    TcpComm::connect(&launch(r, world, port), timeout).unwrap(),
                )
            }));
        }
        let deadline = Instant::now() + timeout;
        let root = TcpComm::serve(
            listener,
            &launch(0, world, port),
            "",
            deadline,
            timeout,
            "test",
        )
        .unwrap();
        let mut out = vec![f(0, root)];
        out.extend(handles.into_iter().map(|h| h.join().unwrap()));
        out
    }

    #[test]
    fn all_reduce_broadcast_and_barrier_over_three_ranks() {
        let results = with_ranks(3, Duration::from_secs(30), |r, c| {
            assert_eq!((c.rank(), c.world_size(), c.local_rank()), (r, 3, r));
            let mut v = vec![r as f32 + 1.0, -(r as f32), 0.5];
            c.all_reduce_f32(&mut v, ReduceOp::Sum).unwrap();
            let mut avg = vec![r as f64 * 3.0];
            c.all_reduce_f64(&mut avg, ReduceOp::Average).unwrap();
            let mut mx = vec![r as u64, 10 - r as u64];
            c.all_reduce_u64(&mut mx, ReduceOp::Max).unwrap();
            let mut mn = vec![r as f32 - 1.0];
            c.all_reduce_f32(&mut mn, ReduceOp::Min).unwrap();
            let mut b = vec![r as f32; 4];
            c.broadcast_f32(&mut b, 2).unwrap();
            let text = c
                .broadcast_bytes(format!("from {r}").as_bytes(), 1)
                .unwrap();
            c.barrier().unwrap();
            (v, avg, mx, mn, b, text)
        });
        for (v, avg, mx, mn, b, text) in results {
            assert_eq!(v, [6.0, -3.0, 1.5]);
            assert_eq!(avg, [3.0]);
            assert_eq!(mx, [2, 10]);
            assert_eq!(mn, [-1.0]);
            assert_eq!(b, [2.0; 4]);
            assert_eq!(text, b"from 1");
        }
    }

    #[test]
    fn mismatched_collectives_name_both_sides() {
        let results = with_ranks(2, Duration::from_secs(30), |r, c| {
            if r == 0 {
                c.all_reduce_f32(&mut [1.0, 2.0], ReduceOp::Sum)
            } else {
                c.broadcast_f32(&mut [1.0, 2.0], 0)
            }
            .map_err(|e| e.to_string())
        });
        let err = results[0].as_ref().unwrap_err();
        assert!(
            err.contains("all-reduce") && err.contains("broadcast"),
            "{err}"
        );
        assert!(results[1].is_err(), "rank 1 sees rank 0 give up");
    }

    #[test]
    fn a_dead_peer_is_an_error_not_a_hang() {
        let results = with_ranks(2, Duration::from_secs(60), |r, c| {
            if r == 1 {
                drop(c); // exits without taking part
                return Ok(());
            }
            let t0 = Instant::now();
            let out = c.all_reduce_f32(&mut [1.0], ReduceOp::Sum);
            assert!(t0.elapsed() < Duration::from_secs(60));
            // And the communicator stays broken.
            let again = c.barrier().unwrap_err().to_string();
            assert!(again.contains("earlier collective failed"), "{again}");
            out.map_err(|e| e.to_string())
        });
        let err = results[0].as_ref().unwrap_err();
        assert!(err.contains("lost rank 1"), "{err}");
    }

    #[test]
    fn a_silent_peer_times_out() {
        let results = with_ranks(2, Duration::from_millis(300), |r, c| {
            if r == 1 {
                std::thread::sleep(Duration::from_millis(1500));
                drop(c);
                return Ok(());
            }
            c.all_reduce_f32(&mut [1.0], ReduceOp::Sum)
                .map_err(|e| e.to_string())
        });
        let err = results[0].as_ref().unwrap_err();
        assert!(err.contains("did not complete within"), "{err}");
    }

    #[test]
    fn a_rendezvous_nobody_joins_times_out_naming_the_missing_ranks() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let timeout = Duration::from_millis(200);
        let err = TcpComm::serve(
            listener,
            &launch(0, 3, port),
            "",
            Instant::now() + timeout,
            timeout,
            "test",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ranks [1, 2] did not arrive"), "{err}");
    }

    #[test]
    fn headers_round_trip() {
        let h = Header {
            kind: 1,
            op: 2,
            elem: 3,
            root: 4,
            seq: 5,
            count: 6,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&[0u8; HEADER_LEN]), None);
    }
}
