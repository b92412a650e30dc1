//! Who this process is in a multi-process job, read from the variables the launchers set.
//!
//! | launcher | rank, world size | local rank | rendezvous |
//! |---|---|---|---|
//! | `mpiexec`/`mpirun` of MPICH (hydra; also Intel MPI), `srun --mpi=pmi2` | `PMI_RANK`, `PMI_SIZE` | `MPI_LOCALRANKID`, else `SLURM_LOCALID` | MPI itself |
//! | `mpirun` of Open MPI | `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` | `MASTER_ADDR`/`MASTER_PORT`, default `127.0.0.1:29500` on one node |
//! | torchrun-style (and `cargo xtask train --nproc N`) | `RANK`, `WORLD_SIZE` | `LOCAL_RANK` | `MASTER_ADDR`/`MASTER_PORT` |
//! | SLURM `srun` (a job step) | `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` (or `SLURM_NTASKS`) | `SLURM_LOCALID` | `MASTER_ADDR`/`MASTER_PORT`, default: the step's first node, port 20000 + job id mod 10000 |
//!
//! They are checked in that order: `mpiexec` inside a SLURM allocation inherits the allocation's
//! `SLURM_*` variables, and `--nproc` children inherit their parent's, so the more specific
//! launcher wins. SLURM counts as a launcher only inside a job step (`SLURM_STEP_ID` set): a batch
//! script's own shell also carries `SLURM_PROCID=0` and `SLURM_NTASKS`, and a single process
//! started there must not wait for peers that never come.

use crate::error::{Error, Result};

/// Which launcher started this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher variables: one process.
    Single,
    /// A PMI process manager: MPICH's hydra `mpiexec`, Intel MPI, or `srun --mpi=pmi2`.
    Pmi,
    /// Open MPI's `mpirun` (its ABI is not MPICH's, so its MPI library is not used; see
    /// [`crate::connect`]).
    OpenMpi,
    /// torchrun-style variables, as `cargo xtask train --nproc N` sets them.
    Torchrun,
    /// A SLURM job step (`srun`) without PMI.
    Slurm,
}

impl std::fmt::Display for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Launcher::Single => "single process",
            Launcher::Pmi => "MPI process manager (PMI)",
            Launcher::OpenMpi => "Open MPI mpirun",
            Launcher::Torchrun => "torchrun-style variables",
            Launcher::Slurm => "SLURM srun",
        })
    }
}

/// Where rank 0 of a TCP rendezvous listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendezvous {
    /// Rank 0's host name or address.
    pub host: String,
    /// Rank 0's TCP port.
    pub port: u16,
}

impl std::fmt::Display for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The default rendezvous port (torchrun's).
pub const DEFAULT_PORT: u16 = 29500;

/// This process's place in its job, as the launcher described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// What started the processes.
    pub launcher: Launcher,
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// The number of processes in the job.
    pub world_size: usize,
    /// Rank among the processes on this node, when the launcher says (the TCP rendezvous works it
    /// out from host names otherwise, MPI from shared memory).
    pub local_rank: Option<usize>,
    /// The number of processes on this node, when the launcher says.
    pub local_world_size: Option<usize>,
    /// Where a TCP rendezvous meets, when one can be named.
    pub rendezvous: Option<Rendezvous>,
    /// An MPI process manager runs the job, so `MPI_Init` joins it.
    pub mpi_job: bool,
}

impl Launch {
    /// One process alone.
    pub fn single() -> Launch {
        Launch {
            launcher: Launcher::Single,
            rank: 0,
            world_size: 1,
            local_rank: Some(0),
            local_world_size: Some(1),
            rendezvous: None,
            mpi_job: false,
        }
    }

    /// The launch described by this process's environment.
    pub fn from_env() -> Result<Launch> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The launch described by the variables `var` returns (the environment, or a test's map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Launch> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let num = |k: &str| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::Launch(format!("{k}={v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let pair = |r: &str, s: &str| -> Result<Option<(usize, usize)>> {
            match (num(r)?, num(s)?) {
                (Some(a), Some(b)) => Ok(Some((a, b))),
                (None, None) => Ok(None),
                (Some(_), None) => Err(Error::Launch(format!("{r} is set but {s} is not"))),
                (None, Some(_)) => Err(Error::Launch(format!("{s} is set but {r} is not"))),
            }
        };
        let master_port = || -> Result<Option<u16>> {
            get("MASTER_PORT")
                .map(|v| {
                    v.trim().parse::<u16>().map_err(|_| {
                        Error::Launch(format!("MASTER_PORT={v:?} is not a port number"))
                    })
                })
                .transpose()
        };
        let slurm_step = get("SLURM_STEP_ID").is_some();

        let mut launch = if let Some((rank, world)) = pair("PMI_RANK", "PMI_SIZE")? {
            Launch {
                launcher: Launcher::Pmi,
                rank,
                world_size: world,
                local_rank: num("MPI_LOCALRANKID")?.or(if slurm_step {
                    num("SLURM_LOCALID")?
                } else {
                    None
                }),
                local_world_size: num("MPI_LOCALNRANKS")?,
                rendezvous: None,
                mpi_job: true,
            }
        } else if let Some((rank, world)) = pair("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")? {
            Launch {
                launcher: Launcher::OpenMpi,
                rank,
                world_size: world,
                local_rank: num("OMPI_COMM_WORLD_LOCAL_RANK")?,
                local_world_size: num("OMPI_COMM_WORLD_LOCAL_SIZE")?,
                rendezvous: None,
                mpi_job: true,
            }
        } else if let Some((rank, world)) = pair("RANK", "WORLD_SIZE")? {
            Launch {
                launcher: Launcher::Torchrun,
                rank,
                world_size: world,
                local_rank: num("LOCAL_RANK")?,
                local_world_size: num("LOCAL_WORLD_SIZE")?,
                rendezvous: None,
                mpi_job: false,
            }
        } else if slurm_step && num("SLURM_PROCID")?.is_some() {
            let rank = num("SLURM_PROCID")?.unwrap_or(0);
            let world = match num("SLURM_STEP_NUM_TASKS")? {
                Some(n) => n,
                None => num("SLURM_NTASKS")?.ok_or_else(|| {
                    Error::Launch(
                        "SLURM_PROCID is set but neither SLURM_STEP_NUM_TASKS nor SLURM_NTASKS"
                            .into(),
                    )
                })?,
            };
            Launch {
                launcher: Launcher::Slurm,
                rank,
                world_size: world,
                local_rank: num("SLURM_LOCALID")?,
                local_world_size: None,
                rendezvous: None,
                mpi_job: false,
            }
        } else {
            return Ok(Launch::single());
        };

        if launch.world_size == 0 {
            return Err(Error::Launch(format!(
                "the {} variables give a world size of 0",
                launch.launcher
            )));
        }
        if launch.rank >= launch.world_size {
            return Err(Error::Launch(format!(
                "the {} variables give rank {} of a world of {}",
                launch.launcher, launch.rank, launch.world_size
            )));
        }
        if let (Some(l), Some(n)) = (launch.local_rank, launch.local_world_size) {
            if l >= n {
                return Err(Error::Launch(format!(
                    "the {} variables give local rank {l} of {n} on this node",
                    launch.launcher
                )));
            }
        }

        let all_local = launch.local_world_size == Some(launch.world_size);
        let host = get("MASTER_ADDR");
        let port = master_port()?;
        launch.rendezvous = match launch.launcher {
            Launcher::Slurm => {
                let host = match host {
                    Some(h) => h,
                    None => {
                        let list = get("SLURM_STEP_NODELIST")
                            .or_else(|| get("SLURM_JOB_NODELIST"))
                            .or_else(|| get("SLURM_NODELIST"))
                            .ok_or_else(|| {
                                Error::Launch(
                                    "srun without MASTER_ADDR and without SLURM_STEP_NODELIST: \
                                     cannot tell where rank 0 runs; export MASTER_ADDR"
                                        .into(),
                                )
                            })?;
                        expand_nodelist(&list)?.into_iter().next().ok_or_else(|| {
                            Error::Launch(format!("empty SLURM node list {list:?}"))
                        })?
                    }
                };
                let port = match port {
                    Some(p) => p,
                    None => slurm_port(num("SLURM_JOB_ID")?),
                };
                Some(Rendezvous { host, port })
            }
            Launcher::Torchrun | Launcher::OpenMpi | Launcher::Pmi => match host {
                Some(host) => Some(Rendezvous {
                    host,
                    port: port.unwrap_or(DEFAULT_PORT),
                }),
                // One node (or torchrun's own default): rank 0 is on this host.
                None if all_local || launch.launcher == Launcher::Torchrun => Some(Rendezvous {
                    host: "127.0.0.1".into(),
                    port: port.unwrap_or(DEFAULT_PORT),
                }),
                None => None,
            },
            Launcher::Single => None,
        };
        Ok(launch)
    }
}

/// The default rendezvous port of SLURM job `id`, so that two jobs sharing a node do not collide.
fn slurm_port(id: Option<usize>) -> u16 {
    20000 + id.map_or(0, |j| (j % 10000) as u16)
}

/// Expands a SLURM host list such as `gpu[01-03,07],login-a,rack[1-2]-ib` into host names, in
/// order (zero padding kept).
pub fn expand_nodelist(list: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::Launch(format!("SLURM node list {list:?}: {why}"));
    // Split on commas outside brackets.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in list.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(bad("unbalanced or nested brackets"));
        }
    }
    if depth != 0 {
        return Err(bad("unbalanced brackets"));
    }
    parts.push(&list[start..]);
    let mut hosts = Vec::new();
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let Some(open) = part.find('[') else {
            hosts.push(part.to_string());
            continue;
        };
        let close = part[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| bad("'[' without ']'"))?;
        let (prefix, ranges, suffix) = (&part[..open], &part[open + 1..close], &part[close + 1..]);
        if suffix.contains('[') {
            return Err(bad(
                "more than one bracket group in a host name is not supported",
            ));
        }
        for range in ranges.split(',') {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let width = a.len();
            let lo: u64 = a
                .parse()
                .map_err(|_| bad("a range bound is not a number"))?;
            let hi: u64 = b
                .parse()
                .map_err(|_| bad("a range bound is not a number"))?;
            if hi < lo {
                return Err(bad("a range runs backwards"));
            }
            for n in lo..=hi {
                hosts.push(format!("{prefix}{n:0width$}{suffix}"));
            }
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn no_variables_is_one_process() {
        assert_eq!(launch(&[]).unwrap(), Launch::single());
    }

    #[test]
    fn mpich_hydra_variables() {
        let l = launch(&[
            ("PMI_RANK", "1"),
            ("PMI_SIZE", "2"),
            ("MPI_LOCALRANKID", "1"),
            ("MPI_LOCALNRANKS", "2"),
            ("PMI_FD", "6"),
        ])
        .unwrap();
        assert_eq!(l.launcher, Launcher::Pmi);
        assert_eq!((l.rank, l.world_size, l.local_rank), (1, 2, Some(1)));
        assert!(l.mpi_job);
        assert_eq!(
            l.rendezvous,
            Some(Rendezvous {
                host: "127.0.0.1".into(),
                port: DEFAULT_PORT
            }),
            "all ranks on this node: a TCP bootstrap can meet locally"
        );
    }

    #[test]
    fn mpiexec_inside_a_slurm_batch_script_is_mpi_not_slurm() {
        let l = launch(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_JOB_NODELIST", "n[1-2]"),
            ("PMI_RANK", "3"),
            ("PMI_SIZE", "4"),
        ])
        .unwrap();
        assert_eq!((l.launcher, l.rank, l.world_size), (Launcher::Pmi, 3, 4));
        assert_eq!(
            l.local_rank, None,
            "no SLURM_STEP_ID: SLURM_LOCALID is not ours"
        );
    }

    #[test]
    fn a_batch_script_alone_is_one_process() {
        let l = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8")]).unwrap();
        assert_eq!(l, Launch::single());
    }

    #[test]
    fn open_mpi_variables() {
        let l = launch(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ])
        .unwrap();
        assert_eq!(l.launcher, Launcher::OpenMpi);
        assert_eq!((l.rank, l.world_size, l.local_rank), (2, 4, Some(0)));
        assert_eq!(l.rendezvous, None, "two nodes and no MASTER_ADDR");
    }

    #[test]
    fn torchrun_variables() {
        let l = launch(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!(l.launcher, Launcher::Torchrun);
        assert_eq!((l.rank, l.world_size, l.local_rank), (1, 3, Some(1)));
        assert_eq!(l.rendezvous.unwrap().to_string(), "node7:1234");
        assert!(!l.mpi_job);
    }

    #[test]
    fn srun_step_variables_name_the_first_node_as_rendezvous() {
        let l = launch(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "5"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_ID", "123456"),
            ("SLURM_STEP_NODELIST", "gpu[007-008,010]"),
        ])
        .unwrap();
        assert_eq!(l.launcher, Launcher::Slurm);
        assert_eq!((l.rank, l.world_size, l.local_rank), (5, 8, Some(1)));
        assert_eq!(l.rendezvous.unwrap().to_string(), "gpu007:23456");
    }

    #[test]
    fn inconsistent_variables_are_named() {
        let err = launch(&[("RANK", "3"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rank 3 of a world of 2"), "{err}");
        let err = launch(&[("RANK", "0")]).unwrap_err().to_string();
        assert!(err.contains("WORLD_SIZE is not"), "{err}");
        let err = launch(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PMI_RANK"), "{err}");
        let err = launch(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "99999")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASTER_PORT"), "{err}");
    }

    #[test]
    fn node_lists_expand() {
        assert_eq!(
            expand_nodelist("gpu[01-03,07],login-a,rack[9-10]-ib").unwrap(),
            [
                "gpu01",
                "gpu02",
                "gpu03",
                "gpu07",
                "login-a",
                "rack9-ib",
                "rack10-ib"
            ]
        );
        assert_eq!(expand_nodelist("solo").unwrap(), ["solo"]);
        assert!(expand_nodelist("bad[1-").is_err());
        assert!(expand_nodelist("bad[3-1]").is_err());
        assert!(expand_nodelist("bad[a-b]").is_err());
    }
}
