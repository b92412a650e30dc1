//! CPU convolution paths chosen by measurement, remembered per machine on disk.
//!
//! The thresholds of `Auto` ([`small_map::suits`](super::onednn::small_map::suits),
//! [`winograd::suits_f4`](super::onednn::winograd::suits_f4),
//! [`winograd::suits`](super::onednn::winograd::suits), the oneDNN-or-Rust rule of
//! `conv_choice`) were measured on one AVX2 processor; on another (AVX-512's wider oneDNN kernels,
//! say) the fastest path differs. So the first time a convolution is run under `Auto`, each of its
//! computations (forward, backward-data, weight gradient) times every path that can compute it and
//! writes the choice to a JSON file keyed by this machine's CPU model and ISA ([`Machine`]) and
//! the file format's [`VERSION`]. A later process reads the file and times nothing it already
//! knows. A file that does not parse, or was written by another machine or version, is ignored
//! and replaced at the next choice.
//!
//! Timing is made robust to a machine shared with other work ([`Tuner::choose`]; the reasons are
//! in docs/ARCHITECTURE.md):
//! * one untimed warm-up run per path (primitive creation, weight reorders, first-touch page
//!   faults), then [`ROUNDS`] timed rounds that **interleave** the paths, each round starting one
//!   path later (ABC BCA CAB …), so a change of load hits every path alike;
//! * each path counts the **minimum** of its runs (interference only ever adds time);
//! * the threshold choice (the *default*) is kept unless another path beats it by a clear
//!   [`MARGIN`] (10 %): a tie on a noisy clock must not replace a choice measured on a quiet one;
//! * a decision within [`CLOSE`] of the margin is timed again ([`RETIMES`] more batches of rounds
//!   for the two contenders) before it is made;
//! * a decision whose contenders' runs scatter (median over minimum above [`UNSTABLE_SPREAD`]) is
//!   used by this process and written as *unsettled*: the next processes time it again, so a
//!   quieter run decides for good, but after [`SETTLE_AFTER`] scattered timings in a row the last
//!   is kept (a convolution that always scatters on this machine, a large one that outlasts the
//!   time slices of a loaded machine, would otherwise be timed by every process);
//! * a path slower than [`GIVE_UP_FACTOR`] times the fastest in the first timed round stops being
//!   timed (a clear loser, e.g. the Rust kernels on a large dense convolution, costs two runs).
//!
//! The clock is a parameter of the tuner ([`Clock`]): the process uses the wall clock
//! ([`WallClock`]), the tests a scripted one, so the decision logic is tested without timing
//! anything.
//!
//! Where: [`CACHE_ENV`] (`CONVRNN_CONV_CACHE`) names the file; `off` turns tuning off, so `Auto`
//! uses the thresholds (deterministic paths, e.g. for tests that compare runs); unset, the file is
//! `conv-paths.json` in the user's cache directory ([`default_cache_file`]). `CONVRNN_CPU_CONV`
//! forcing a path bypasses tuning entirely.
//!
//! State: a [`Tuner`] holds its choices behind a mutex. The process shares one ([`global`],
//! created on first use from the environment, like the process-wide oneDNN library and its
//! caches); tests make their own.

use crate::layout::Layout;
use crate::ops::conv::{ConvGeom, Stage};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Names the tuning cache file, or `off` to choose by the measured-once thresholds instead.
pub const CACHE_ENV: &str = "CONVRNN_CONV_CACHE";

/// The cache file's format; a file of another version is ignored and rewritten. Version 2: the
/// choices made with the margin over the default (version 1's took the fastest of three runs).
/// Version 3: Winograd runs its 16 products in parallel (faster on small maps), so choices timed
/// against its serial products are timed again. Version 4: Winograd reads and writes blocked
/// activations in place and vectorises its filter transforms (faster again), so choices timed
/// against the version that converted to rows and back are timed again. Version 5: Winograd's
/// transformed filters are point-major (faster products on most shapes). Version 6: Winograd
/// F(4×4, 3×3) is a path of its own, timed against the others, and the thresholds' choice on maps
/// of ≥ 12 a side.
pub const VERSION: u32 = 6;

/// Timed rounds (one run of every path each) after the warm-up.
pub const ROUNDS: usize = 5;

/// How much faster than the default (the threshold choice) a path must be to replace it: the
/// default's time ≥ (1 + `MARGIN`) × the path's.
pub const MARGIN: f64 = 0.10;

/// A decision whose ratio default / fastest lies within `CLOSE` of 1 + [`MARGIN`] is timed again.
pub const CLOSE: f64 = 0.05;

/// At most this many extra batches of [`ROUNDS`] for a close decision.
pub const RETIMES: usize = 1;

/// Timings are unstable (the choice is not written to the file) when a contender's median run
/// exceeds its fastest by this factor.
pub const UNSTABLE_SPREAD: f64 = 1.25;

/// After this many processes in a row timed a computation with scattered runs, the last choice
/// is kept for good instead of being timed again.
pub const SETTLE_AFTER: u32 = 3;

/// A path slower than this many times the fastest in the first timed round stops being timed.
pub const GIVE_UP_FACTOR: f64 = 4.0;

/// The source of time for the tuner: seconds since any fixed origin.
pub trait Clock: Send + Sync {
    /// Seconds since the clock's origin; never decreases.
    fn seconds(&self) -> f64;
}

/// The monotonic wall clock.
pub struct WallClock(Instant);

impl WallClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        WallClock(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for WallClock {
    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// One CPU implementation of a convolution, as the cache names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// The pure-Rust kernels (direct ones for depthwise convolutions).
    Rust,
    /// oneDNN's direct convolution.
    OneDnn,
    /// im2col over the whole batch and one oneDNN sgemm.
    SmallMap,
    /// Winograd F(2×2, 3×3) with oneDNN sgemms.
    Winograd,
    /// Winograd F(4×4, 3×3) with oneDNN sgemms.
    Winograd4,
}

/// What the tuned choices are valid for: the CPU model and the instruction sets the kernels
/// (ours and oneDNN's) dispatch on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The `model name` of /proc/cpuinfo (`unknown CPU` where there is none).
    pub cpu: String,
    /// The vector extensions detected at run time, e.g. `avx512f+avx512bw+avx512vl+avx2+fma`.
    pub isa: String,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            isa: isa(),
        }
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// The SIMD extensions that decide which kernels run, joined by `+`.
pub fn isa() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let found = [
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
        ];
        let names: Vec<&str> = found.iter().filter(|f| f.1).map(|f| f.0).collect();
        if names.is_empty() {
            "sse2".into()
        } else {
            names.join("+")
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

/// One computation of one convolution, as the caller sees it: the geometry, which computation,
/// the layout of the tensor it reads (x forward, dy backward) and whether the convolution has a
/// bias (part of oneDNN's primitive), and the threads it may use (1 inside a rayon task, else
/// rayon's pool: timings on 2 threads say little about 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TuneKey {
    /// The convolution.
    pub geom: ConvGeom,
    /// Which of its three computations.
    pub stage: Stage,
    /// The layout of the tensor the computation reads (x forward, dy backward).
    pub input: Layout,
    /// Whether the convolution has a bias.
    pub bias: bool,
    /// The threads the computation may use (1 inside a rayon task, else rayon's pool).
    pub threads: usize,
}

/// A tuned choice: the path, the default it was weighed against, the time each timed candidate
/// took (seconds, the fastest of its runs; a path that failed is absent) and how much the
/// contenders' runs scattered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The computation the choice is for.
    pub key: TuneKey,
    /// The path that runs it.
    pub path: PathKind,
    /// The threshold choice, kept unless another path won by [`MARGIN`].
    pub default: Option<PathKind>,
    /// Each timed path and its fastest run, in seconds (a path that failed is absent).
    pub seconds: Vec<(PathKind, f64)>,
    /// The largest median / minimum among the fastest path and the default (1: no scatter).
    pub spread: f64,
    /// How many processes in a row, this one included, timed the computation with scattered
    /// runs (0 for a stable choice).
    #[serde(default)]
    pub unstable_runs: u32,
}

impl Choice {
    /// Whether the timings were steady.
    pub fn stable(&self) -> bool {
        self.spread <= UNSTABLE_SPREAD
    }

    /// Whether later processes use the choice without timing again: stable timings, or
    /// [`SETTLE_AFTER`] scattered ones in a row.
    pub fn settled(&self) -> bool {
        self.stable() || self.unstable_runs >= SETTLE_AFTER
    }
}

impl std::fmt::Display for Choice {
    /// One line: the computation, then the path and every candidate's time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (k, g) = (&self.key, &self.key.geom);
        let stage = match k.stage {
            Stage::Forward => "forward",
            Stage::BackwardData => "backward-data",
            Stage::BackwardWeights => "weight-gradient",
        };
        write!(
            f,
            "{stage} {}x{}x{}x{} -> {} {}x{}/{} groups {} ({:?}{}, {} threads): {:?} (",
            g.n,
            g.c,
            g.h,
            g.w,
            g.o,
            g.kh,
            g.kw,
            g.sh,
            g.groups,
            k.input,
            if k.bias { ", bias" } else { "" },
            k.threads,
            self.path
        )?;
        for (i, (p, s)) in self.seconds.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{p:?} {:.3} ms", s * 1e3)?;
        }
        write!(f, ")")?;
        if let Some(d) = self.default.filter(|d| *d != self.path) {
            write!(f, " over default {d:?}")?;
        }
        if !self.stable() {
            let what = if self.settled() {
                "kept for good".to_string()
            } else {
                format!(
                    "timed again by the next process, {} of {SETTLE_AFTER}",
                    self.unstable_runs
                )
            };
            write!(f, " [unstable timings, spread {:.2}: {what}]", self.spread)?;
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    machine: Machine,
    choices: Vec<Choice>,
}

/// Why a cache file's choices were not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// No file yet.
    Missing,
    /// Read, with this many choices.
    Read(usize),
    /// Ignored (it will be rewritten): what was wrong.
    Ignored(String),
}

/// Tuned choices for one machine, read from and written to one file (none: in memory only).
pub struct Tuner {
    file: Option<PathBuf>,
    machine: Machine,
    loaded: Loaded,
    clock: Arc<dyn Clock>,
    /// The choices this process uses: the file's settled ones and those it timed itself.
    choices: Mutex<HashMap<TuneKey, Choice>>,
    /// The file's unsettled choices, timed again when first needed (their count of scattered
    /// timings carries over), and written back as they were until then.
    unsettled: Mutex<HashMap<TuneKey, Choice>>,
}

impl Tuner {
    /// A tuner for `machine` that starts from `file`'s choices when the file holds valid ones for
    /// this machine and [`VERSION`], and times with the wall clock.
    pub fn new(file: Option<PathBuf>, machine: Machine) -> Self {
        Self::with_clock(file, machine, Arc::new(WallClock::new()))
    }

    /// [`Tuner::new`] timing with `clock`.
    pub fn with_clock(file: Option<PathBuf>, machine: Machine, clock: Arc<dyn Clock>) -> Self {
        let (loaded, read) = match &file {
            None => (Loaded::Missing, HashMap::new()),
            Some(f) => read_cache(f, &machine),
        };
        let (choices, unsettled) = read.into_iter().partition(|(_, c)| c.settled());
        Tuner {
            file,
            machine,
            loaded,
            clock,
            choices: Mutex::new(choices),
            unsettled: Mutex::new(unsettled),
        }
    }

    /// The file choices are written to.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The machine the choices are for.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// What became of the file's choices when the tuner was made.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// Every choice held, in a stable order.
    pub fn choices(&self) -> Vec<Choice> {
        let map = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Choice> = map.values().cloned().collect();
        v.sort_by_key(|c| format!("{:?}", c.key));
        v
    }

    /// The path for `key` among `candidates`: the remembered one if it is a candidate, else the
    /// one the timings pick (module doc: warm-up, interleaved rounds, minimum, [`MARGIN`] over
    /// `default`, retiming when close), remembered and written to the file (as unsettled when
    /// the timings scattered, so that the next processes time it again). `run` runs one path
    /// once and says whether it succeeded; the tuner times it with its clock. A single candidate
    /// is chosen without running it. `None` when no candidate ran.
    pub fn choose(
        &self,
        key: TuneKey,
        candidates: &[PathKind],
        default: Option<PathKind>,
        mut run: impl FnMut(PathKind) -> bool,
    ) -> Option<PathKind> {
        if let Some(p) = self.lookup(&key).filter(|p| candidates.contains(p)) {
            return Some(p);
        }
        if let [only] = candidates {
            return Some(*only);
        }
        // Timed without the lock: a convolution on another thread is not held up for seconds
        // (two threads tuning the same key at once only both measure it).
        let default = default.filter(|d| candidates.contains(d));
        let mut timing = Timing::warm_up(candidates, &mut run)?;
        timing.rounds(ROUNDS, true, &*self.clock, &mut run);
        let mut decision = timing.decide(default)?;
        for _ in 0..RETIMES {
            if !decision.close {
                break;
            }
            timing.keep_only(&decision.contenders);
            timing.rounds(ROUNDS, false, &*self.clock, &mut run);
            decision = timing.decide(default)?;
        }
        let mut choice = Choice {
            key,
            path: decision.path,
            default,
            seconds: timing.minima(),
            spread: decision.spread,
            unstable_runs: 0,
        };
        let snapshot = {
            let mut unsettled = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
            let before = unsettled.remove(&key).map_or(0, |c| c.unstable_runs);
            if !choice.stable() {
                choice.unstable_runs = before + 1;
            }
            let mut map = self.choices.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(key, choice);
            let mut all: Vec<Choice> = map.values().chain(unsettled.values()).cloned().collect();
            all.sort_by_key(|c| format!("{:?}", c.key));
            CacheFile {
                version: VERSION,
                machine: self.machine.clone(),
                choices: all,
            }
        };
        self.save(&snapshot);
        Some(decision.path)
    }

    /// The remembered path of `key`.
    pub fn lookup(&self, key: &TuneKey) -> Option<PathKind> {
        let map = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).map(|c| c.path)
    }

    /// Writes the choices atomically. A cache that cannot be written (a read-only home) only
    /// costs the next process its timings, so the failure is reported once and tuning goes on in
    /// memory.
    fn save(&self, snapshot: &CacheFile) {
        let Some(file) = &self.file else { return };
        let result = (|| -> std::result::Result<(), String> {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let json = serde_json::to_vec_pretty(snapshot).map_err(|e| e.to_string())?;
            crate::io::write_file_atomically(file, &json).map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| {
                eprintln!(
                    "warning: could not write the convolution tuning cache ({e}); set {CACHE_ENV} \
                     to a writable file, or to `off`"
                )
            });
        }
    }
}

/// The runs of the paths still being timed: each path's timed runs (seconds), in candidate order.
struct Timing {
    paths: Vec<(PathKind, Vec<f64>)>,
    /// Indices into `paths` of those still timed.
    active: Vec<usize>,
}

/// What the timings say so far.
struct Decision {
    path: PathKind,
    /// The fastest path and the default (when it ran): the two a retime compares.
    contenders: Vec<PathKind>,
    /// The ratio default / fastest is within [`CLOSE`] of the margin.
    close: bool,
    spread: f64,
}

impl Timing {
    /// Runs every candidate once, untimed; those that fail are left out. `None` when none ran.
    fn warm_up(candidates: &[PathKind], run: &mut impl FnMut(PathKind) -> bool) -> Option<Self> {
        let paths: Vec<(PathKind, Vec<f64>)> = candidates
            .iter()
            .filter(|&&p| run(p))
            .map(|&p| (p, Vec::new()))
            .collect();
        if paths.is_empty() {
            return None;
        }
        let active = (0..paths.len()).collect();
        Some(Timing { paths, active })
    }

    /// `n` interleaved rounds over the active paths, round `r` starting at the `r`-th of them; a
    /// path that fails is dropped, and with `give_up` one slower than [`GIVE_UP_FACTOR`] × the
    /// fastest of the first round stops being timed.
    fn rounds(
        &mut self,
        n: usize,
        give_up: bool,
        clock: &dyn Clock,
        run: &mut impl FnMut(PathKind) -> bool,
    ) {
        for r in 0..n {
            let order = self.active.clone();
            let mut failed = Vec::new();
            let mut this_round = Vec::new();
            for j in 0..order.len() {
                let i = order[(r + j) % order.len()];
                let start = clock.seconds();
                let ok = run(self.paths[i].0);
                let secs = clock.seconds() - start;
                if ok {
                    self.paths[i].1.push(secs);
                    this_round.push((i, secs));
                } else {
                    failed.push(i);
                }
            }
            for &i in &failed {
                self.paths[i].1.clear();
            }
            let fastest = this_round.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
            self.active.retain(|i| {
                let slow = give_up
                    && r == 0
                    && this_round
                        .iter()
                        .any(|&(j, s)| j == *i && s > GIVE_UP_FACTOR * fastest);
                !failed.contains(i) && !slow
            });
        }
    }

    /// Times only `keep` from now on.
    fn keep_only(&mut self, keep: &[PathKind]) {
        let paths = &self.paths;
        self.active.retain(|&i| keep.contains(&paths[i].0));
    }

    /// Each path that ran without failing and its fastest run.
    fn minima(&self) -> Vec<(PathKind, f64)> {
        self.paths
            .iter()
            .filter(|(_, runs)| !runs.is_empty())
            .map(|(p, runs)| (*p, runs.iter().copied().fold(f64::INFINITY, f64::min)))
            .collect()
    }

    /// The median over the minimum of `path`'s runs (infinite for a zero minimum under a
    /// nonzero median).
    fn spread(&self, path: PathKind) -> f64 {
        let Some((_, runs)) = self.paths.iter().find(|(p, _)| *p == path) else {
            return 1.0;
        };
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let (Some(&min), Some(&median)) = (sorted.first(), sorted.get(sorted.len() / 2)) else {
            return 1.0;
        };
        if median <= min {
            1.0
        } else if min > 0.0 {
            median / min
        } else {
            f64::INFINITY
        }
    }

    /// The fastest path, unless the default (when it ran) is within [`MARGIN`] of it.
    fn decide(&self, default: Option<PathKind>) -> Option<Decision> {
        let minima = self.minima();
        // Ties go to the default, then to the earlier candidate.
        let (fastest, t_fast) = minima.iter().copied().reduce(|best, (p, t)| {
            if t < best.1 || (t == best.1 && Some(p) == default) {
                (p, t)
            } else {
                best
            }
        })?;
        let t_default = default.and_then(|d| minima.iter().find(|m| m.0 == d).map(|m| m.1));
        let (path, contenders, close) = match (default, t_default) {
            (Some(d), Some(t_d)) if d != fastest => {
                let needed = (1.0 + MARGIN) * t_fast;
                let path = if t_d >= needed { fastest } else { d };
                let close = (t_d - needed).abs() < CLOSE * t_fast;
                (path, vec![fastest, d], close)
            }
            _ => (fastest, vec![fastest], false),
        };
        let spread = contenders
            .iter()
            .map(|&p| self.spread(p))
            .fold(1.0, f64::max);
        Some(Decision {
            path,
            contenders,
            close,
            spread,
        })
    }
}

/// The choices of `file` if it is a valid cache of this `machine` and [`VERSION`].
fn read_cache(file: &Path, machine: &Machine) -> (Loaded, HashMap<TuneKey, Choice>) {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (Loaded::Missing, HashMap::new())
        }
        Err(e) => return (Loaded::Ignored(e.to_string()), HashMap::new()),
    };
    let parsed: CacheFile = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => return (Loaded::Ignored(format!("not a cache: {e}")), HashMap::new()),
    };
    if parsed.version != VERSION {
        let why = format!("version {} (expected {VERSION})", parsed.version);
        return (Loaded::Ignored(why), HashMap::new());
    }
    if &parsed.machine != machine {
        let why = format!("written on another machine ({:?})", parsed.machine);
        return (Loaded::Ignored(why), HashMap::new());
    }
    let map: HashMap<TuneKey, Choice> = parsed.choices.into_iter().map(|c| (c.key, c)).collect();
    (Loaded::Read(map.len()), map)
}

/// Where the cache lives unless [`CACHE_ENV`] says otherwise: `conv-paths.json` in
/// `$CONVRNN_CACHE_DIR`, else `$XDG_CACHE_HOME/convrnn`, else `$HOME/.cache/convrnn`, else
/// `convrnn-cache` in the temporary directory (the directory the datasets cache in).
pub fn default_cache_file() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = env("CONVRNN_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("convrnn")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("convrnn")))
        .unwrap_or_else(|| std::env::temp_dir().join("convrnn-cache"));
    dir.join("conv-paths.json")
}

/// What [`CACHE_ENV`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Tuning off: `Auto` uses the thresholds.
    Off,
    /// Tune, remembering the choices in this file.
    File(PathBuf),
}

impl Setting {
    /// Parses a value of [`CACHE_ENV`] (`None`: unset).
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            None | Some("") => Setting::File(default_cache_file()),
            Some(v) if ["off", "0", "false", "none"].contains(&v.to_ascii_lowercase().as_str()) => {
                Setting::Off
            }
            Some(v) => Setting::File(PathBuf::from(v)),
        }
    }

    /// The setting of this process's environment.
    pub fn from_env() -> Self {
        Setting::parse(std::env::var(CACHE_ENV).ok().as_deref())
    }
}

/// The process's tuner, made on first use from [`CACHE_ENV`]; `None` when tuning is off.
pub fn global() -> Option<&'static Tuner> {
    static GLOBAL: OnceLock<Option<Tuner>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| match Setting::from_env() {
            Setting::Off => None,
            Setting::File(f) => Some(Tuner::new(Some(f), Machine::detect())),
        })
        .as_ref()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Shape;
    use std::cell::RefCell;

    /// A fresh `conv-paths.json` path in its own folder; the folder goes when the guard drops,
    /// so test runs leave nothing in the system temp dir.
    fn temp_file(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("convrnn-tune-{name}-"))
            .tempdir()
            .unwrap();
        let f = dir.path().join("conv-paths.json");
        (dir, f)
    }

    fn machine(cpu: &str) -> Machine {
        Machine {
            cpu: cpu.into(),
            isa: "avx2+fma".into(),
        }
    }

    /// A dense 3×3 "same" convolution of a 2×16×8×8 input to 16 channels, with bias.
    fn key(stage: Stage) -> TuneKey {
        let (x, w) = (Shape::new([2, 16, 8, 8]), Shape::new([16, 16, 3, 3]));
        TuneKey {
            geom: ConvGeom::resolve(&x, &w, None, &Default::default()).unwrap(),
            stage,
            input: Layout::Plain,
            bias: true,
            threads: 2,
        }
    }

    use PathKind::{OneDnn, Rust, SmallMap, Winograd, Winograd4};
    /// The paths the scripted tests time (the tuner treats every kind alike, so four suffice).
    const ALL: [PathKind; 4] = [Rust, OneDnn, SmallMap, Winograd];

    /// A clock that only moves when a scripted run advances it.
    #[derive(Default)]
    struct FakeClock(Mutex<f64>);

    impl Clock for FakeClock {
        fn seconds(&self) -> f64 {
            *self.0.lock().unwrap()
        }
    }

    /// A tuner on a fake clock, and runs that take scripted times: `times(path, n)` is the
    /// duration of `path`'s `n`-th run (0: the warm-up), `None` where it fails. Every run is
    /// logged.
    struct Script {
        clock: Arc<FakeClock>,
        log: RefCell<Vec<PathKind>>,
        times: fn(PathKind, usize) -> Option<f64>,
    }

    impl Script {
        fn new(times: fn(PathKind, usize) -> Option<f64>) -> Self {
            Script {
                clock: Arc::default(),
                log: RefCell::default(),
                times,
            }
        }

        fn tuner(&self, file: Option<PathBuf>, m: Machine) -> Tuner {
            Tuner::with_clock(file, m, self.clock.clone())
        }

        fn run(&self) -> impl FnMut(PathKind) -> bool + '_ {
            |p| {
                let n = self.log.borrow().iter().filter(|&&q| q == p).count();
                self.log.borrow_mut().push(p);
                match (self.times)(p, n) {
                    Some(s) => {
                        *self.clock.0.lock().unwrap() += s;
                        true
                    }
                    None => false,
                }
            }
        }

        fn runs(&self) -> usize {
            self.log.borrow().len()
        }

        fn runs_of(&self, p: PathKind) -> usize {
            self.log.borrow().iter().filter(|&&q| q == p).count()
        }
    }

    /// Steady times: Winograd fastest by far, SmallMap failing.
    fn steady(p: PathKind, _: usize) -> Option<f64> {
        match p {
            Rust => Some(3.0),
            OneDnn => Some(2.0),
            SmallMap => None,
            Winograd => Some(1.0),
            Winograd4 => unreachable!("not among the paths timed"),
        }
    }

    #[test]
    fn paths_are_warmed_up_once_then_timed_in_interleaved_rotating_rounds() {
        let s = Script::new(|_, _| Some(1.0));
        let t = s.tuner(None, machine("cpu A"));
        let k = key(Stage::Forward);
        let three = [Rust, OneDnn, Winograd];
        // All tie, so the default stays.
        assert_eq!(t.choose(k, &three, Some(OneDnn), s.run()), Some(OneDnn));
        let (r, o, w) = (Rust, OneDnn, Winograd);
        let mut want = vec![r, o, w]; // the warm-up
        want.extend([r, o, w, o, w, r, w, r, o, r, o, w, o, w, r]);
        assert_eq!(ROUNDS, 5);
        assert_eq!(*s.log.borrow(), want);
        let c = &t.choices()[0];
        assert_eq!(c.seconds, vec![(r, 1.0), (o, 1.0), (w, 1.0)]);
        assert!(c.stable());
    }

    #[test]
    fn the_default_is_kept_unless_another_path_wins_by_the_margin() {
        let pick = |times: fn(PathKind, usize) -> Option<f64>, default| {
            let s = Script::new(times);
            let t = s.tuner(None, machine("cpu A"));
            let got = t.choose(key(Stage::Forward), &[OneDnn, Winograd], default, s.run());
            (got, s.runs())
        };
        // Winograd 3 % faster: within the margin, and not close to it (no retime).
        let slightly = |p, _| Some(if p == Winograd { 0.97 } else { 1.0 });
        assert_eq!(pick(slightly, Some(OneDnn)), (Some(OneDnn), 2 + 2 * ROUNDS));
        // With no default the fastest wins, however slightly.
        assert_eq!(pick(slightly, None).0, Some(Winograd));
        // 20 % faster: a clear win.
        let clearly = |p, _| Some(if p == Winograd { 0.8 } else { 1.0 });
        assert_eq!(
            pick(clearly, Some(OneDnn)),
            (Some(Winograd), 2 + 2 * ROUNDS)
        );
        // The default faster: kept.
        assert_eq!(pick(clearly, Some(Winograd)).0, Some(Winograd));
    }

    #[test]
    fn a_close_decision_is_timed_again_with_the_two_contenders_only() {
        // Winograd 1.085× as fast as the default over the first rounds (close to 1.10: the
        // default would stay), then 1.23× in the retime: its minimum decides for it. (Times in
        // 64ths of a second, so the fake clock's sums are exact.)
        let s = Script::new(|p, n| match p {
            Rust => Some(1.5),
            OneDnn => Some(1.0),
            _ => Some(if n <= ROUNDS { 0.921875 } else { 0.8125 }),
        });
        let t = s.tuner(None, machine("cpu A"));
        let got = t.choose(
            key(Stage::Forward),
            &[Rust, OneDnn, Winograd],
            Some(OneDnn),
            s.run(),
        );
        assert_eq!(got, Some(Winograd));
        assert_eq!(s.runs_of(Rust), 1 + ROUNDS, "the retime ran the Rust path");
        assert_eq!(s.runs_of(OneDnn), 1 + ROUNDS * (1 + RETIMES));
        assert_eq!(s.runs_of(Winograd), 1 + ROUNDS * (1 + RETIMES));
        let c = &t.choices()[0];
        assert!(c.seconds.contains(&(Winograd, 0.8125)), "{c:?}");

        // Had the retime confirmed the first rounds, the default would have stayed.
        let s = Script::new(|p, _| Some(if p == Winograd { 0.921875 } else { 1.0 }));
        let t = s.tuner(None, machine("cpu A"));
        let got = t.choose(
            key(Stage::Forward),
            &[OneDnn, Winograd],
            Some(OneDnn),
            s.run(),
        );
        assert_eq!(got, Some(OneDnn));
        assert_eq!(s.runs(), 2 + 2 * ROUNDS * (1 + RETIMES));
    }

    #[test]
    fn a_clear_loser_stops_after_one_timed_run_and_failures_are_left_out() {
        // SmallMap fails at its warm-up, Winograd at its third timed run, Rust is 5× slower.
        let s = Script::new(|p, n| match p {
            Rust => Some(5.0),
            OneDnn => Some(1.0),
            SmallMap => None,
            Winograd => (n < 3).then_some(0.5),
            Winograd4 => unreachable!("not among the paths timed"),
        });
        let t = s.tuner(None, machine("cpu A"));
        assert_eq!(
            t.choose(key(Stage::Forward), &ALL, Some(Rust), s.run()),
            Some(OneDnn)
        );
        assert_eq!(s.runs_of(Rust), 2);
        assert_eq!(s.runs_of(SmallMap), 1);
        assert_eq!(s.runs_of(Winograd), 4);
        assert_eq!(s.runs_of(OneDnn), 1 + ROUNDS);
        let c = &t.choices()[0];
        assert_eq!(c.seconds, vec![(Rust, 5.0), (OneDnn, 1.0)]);
        assert!(c.to_string().contains("over default Rust"), "{c}");
    }

    /// The default's timed runs alternate 2, 1, 2, 1, 2: median twice the minimum.
    fn scattered(p: PathKind, n: usize) -> Option<f64> {
        match p {
            OneDnn => Some(if n % 2 == 1 { 2.0 } else { 1.0 }),
            _ => Some(3.0),
        }
    }

    #[test]
    fn unstable_timings_are_timed_again_by_later_processes_until_they_settle() {
        let (_dir, f) = temp_file("unstable");
        let k = key(Stage::Forward);
        let two = [Rust, OneDnn];
        let s = Script::new(scattered);
        let t = s.tuner(Some(f.clone()), machine("cpu A"));
        assert_eq!(t.choose(k, &two, Some(OneDnn), s.run()), Some(OneDnn));
        let c = &t.choices()[0];
        assert!(!c.stable() && !c.settled() && c.spread == 2.0, "{c:?}");
        assert_eq!(c.unstable_runs, 1);
        assert!(
            c.to_string()
                .contains("timed again by the next process, 1 of 3"),
            "{c}"
        );
        // Remembered for this process: not timed again.
        let runs = s.runs();
        assert_eq!(t.choose(k, &two, Some(OneDnn), s.run()), Some(OneDnn));
        assert_eq!(s.runs(), runs);

        // A stable choice of another computation is written beside the unsettled one. (These
        // runs advance another clock, so on this tuner's every run takes 0 s: steady.)
        let bd = key(Stage::BackwardData);
        let s2 = Script::new(steady);
        t.choose(bd, &two, Some(OneDnn), s2.run());

        // The next processes time the scattered one again, counting; the third keeps it.
        for process in 2..=SETTLE_AFTER {
            let s = Script::new(scattered);
            let later = s.tuner(Some(f.clone()), machine("cpu A"));
            assert_eq!(later.loaded(), &Loaded::Read(2));
            assert_eq!(later.lookup(&bd), Some(OneDnn));
            assert_eq!(later.lookup(&k), None, "process {process}");
            assert_eq!(later.choose(k, &two, Some(OneDnn), s.run()), Some(OneDnn));
            assert!(s.runs() > 0, "process {process} did not time it");
            let c = later.choices().into_iter().find(|c| c.key == k).unwrap();
            assert_eq!(c.unstable_runs, process);
            assert_eq!(c.settled(), process == SETTLE_AFTER, "{c}");
        }
        let s = Script::new(scattered);
        let last = s.tuner(Some(f.clone()), machine("cpu A"));
        assert_eq!(last.choose(k, &two, Some(OneDnn), s.run()), Some(OneDnn));
        assert_eq!(s.runs(), 0, "a settled choice was timed again");
        let c = last.choices().into_iter().find(|c| c.key == k).unwrap();
        assert!(c.to_string().contains("kept for good"), "{c}");
    }

    #[test]
    fn a_steady_retime_settles_an_unstable_choice_and_untouched_ones_stay_in_the_file() {
        let (_dir, f) = temp_file("resettle");
        let (k, bd) = (key(Stage::Forward), key(Stage::BackwardData));
        let two = [Rust, OneDnn];
        let s = Script::new(scattered);
        let t = s.tuner(Some(f.clone()), machine("cpu A"));
        t.choose(k, &two, Some(OneDnn), s.run());
        t.choose(bd, &two, Some(OneDnn), s.run());
        // A quieter process times only `k`: it settles, and `bd` stays unsettled in the file.
        let quiet = Script::new(steady);
        let t2 = quiet.tuner(Some(f.clone()), machine("cpu A"));
        assert_eq!(t2.choose(k, &two, Some(OneDnn), quiet.run()), Some(OneDnn));
        let t3 = Tuner::new(Some(f), machine("cpu A"));
        assert_eq!(t3.loaded(), &Loaded::Read(2));
        assert_eq!(t3.lookup(&k), Some(OneDnn));
        assert_eq!(t3.lookup(&bd), None);
        assert_eq!(t3.unsettled.lock().unwrap()[&bd].unstable_runs, 1);
    }

    #[test]
    fn the_choice_is_remembered_and_a_new_process_times_nothing() {
        let (_dir, f) = temp_file("reuse");
        let s = Script::new(steady);
        let t = s.tuner(Some(f.clone()), machine("cpu A"));
        let k = key(Stage::Forward);
        assert_eq!(t.choose(k, &ALL, None, s.run()), Some(Winograd));
        let runs = s.runs();
        assert_eq!(runs, 4 + 3 * ROUNDS);
        assert_eq!(t.choose(k, &ALL, None, s.run()), Some(Winograd));
        assert_eq!(s.runs(), runs, "the remembered choice was timed again");
        // Another computation of the same convolution is tuned on its own.
        let bd = key(Stage::BackwardData);
        assert_eq!(t.choose(bd, &ALL, None, s.run()), Some(Winograd));
        assert_eq!(s.runs(), 2 * runs);

        // A new process on the same machine reads the file and times nothing.
        let t2 = s.tuner(Some(f), machine("cpu A"));
        assert_eq!(t2.loaded(), &Loaded::Read(2));
        assert_eq!(t2.choose(k, &ALL, None, s.run()), Some(Winograd));
        assert_eq!(s.runs(), 2 * runs);
        let c = &t2.choices()[0];
        assert!(c.seconds.iter().all(|s| s.0 != SmallMap), "{c:?}");
    }

    #[test]
    fn a_remembered_path_that_is_not_a_candidate_is_retimed() {
        let s = Script::new(steady);
        let t = s.tuner(None, machine("cpu A"));
        let k = key(Stage::BackwardWeights);
        assert_eq!(t.choose(k, &ALL, None, s.run()), Some(Winograd));
        assert_eq!(t.choose(k, &[Rust, OneDnn], None, s.run()), Some(OneDnn));
        assert_eq!(
            t.choose(k, &[SmallMap, Winograd], None, s.run()),
            Some(Winograd)
        );
        let failing = Script::new(|_, _| None);
        let none = t.choose(key(Stage::Forward), &[Rust, OneDnn], None, failing.run());
        assert_eq!(none, None);
    }

    #[test]
    fn a_single_candidate_is_chosen_without_running_it() {
        let s = Script::new(steady);
        let t = s.tuner(None, machine("cpu A"));
        assert_eq!(
            t.choose(key(Stage::Forward), &[Rust], Some(Rust), s.run()),
            Some(Rust)
        );
        assert_eq!(s.runs(), 0);
    }

    #[test]
    fn a_corrupt_cache_is_ignored_and_rewritten() {
        let (_dir, f) = temp_file("corrupt");
        std::fs::write(&f, b"{\"version\": 2, \"machine\": tr").unwrap();
        let s = Script::new(steady);
        let t = s.tuner(Some(f.clone()), machine("cpu A"));
        assert!(matches!(t.loaded(), Loaded::Ignored(_)), "{:?}", t.loaded());
        let k = key(Stage::Forward);
        assert_eq!(t.choose(k, &ALL, None, s.run()), Some(Winograd));
        let t2 = Tuner::new(Some(f), machine("cpu A"));
        assert_eq!(t2.loaded(), &Loaded::Read(1));
        assert_eq!(t2.lookup(&k), Some(Winograd));
    }

    #[test]
    fn a_cache_of_another_machine_or_version_is_ignored() {
        let (_dir, f) = temp_file("stale");
        let k = key(Stage::Forward);
        let s = Script::new(steady);
        s.tuner(Some(f.clone()), machine("cpu A"))
            .choose(k, &ALL, None, s.run());
        let other = Tuner::new(Some(f.clone()), machine("cpu B"));
        assert!(matches!(other.loaded(), Loaded::Ignored(w) if w.contains("another machine")));
        assert_eq!(other.lookup(&k), None);
        let wider = Machine {
            isa: "avx512f+avx2+fma".into(),
            ..machine("cpu A")
        };
        assert_eq!(Tuner::new(Some(f.clone()), wider).lookup(&k), None);

        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        json["version"] = (VERSION - 1).into();
        std::fs::write(&f, serde_json::to_vec(&json).unwrap()).unwrap();
        let t = s.tuner(Some(f.clone()), machine("cpu A"));
        assert!(matches!(t.loaded(), Loaded::Ignored(w) if w.contains("version")));
        assert_eq!(t.lookup(&k), None);
        // Retuned and rewritten at this version.
        assert_eq!(t.choose(k, &[Rust, OneDnn], None, s.run()), Some(OneDnn));
        assert_eq!(
            Tuner::new(Some(f), machine("cpu A")).loaded(),
            &Loaded::Read(1)
        );
    }

    #[test]
    fn a_choice_reads_as_one_line() {
        let s = Script::new(steady);
        let t = s.tuner(None, machine("cpu A"));
        t.choose(key(Stage::BackwardData), &ALL, Some(OneDnn), s.run());
        let line = t.choices()[0].to_string();
        assert!(
            line.starts_with("backward-data 2x16x8x8 -> 16 3x3/1"),
            "{line}"
        );
        assert!(line.contains("Winograd (Rust 3000.000 ms"), "{line}");
        assert!(line.ends_with("over default OneDnn"), "{line}");
    }

    #[test]
    fn the_wall_clock_moves_forward() {
        let c = WallClock::new();
        let a = c.seconds();
        assert!(c.seconds() >= a && a >= 0.0);
    }

    #[test]
    fn settings_parse() {
        assert_eq!(Setting::parse(Some("off")), Setting::Off);
        assert_eq!(Setting::parse(Some(" OFF ")), Setting::Off);
        assert_eq!(
            Setting::parse(Some("/x/c.json")),
            Setting::File("/x/c.json".into())
        );
        assert_eq!(Setting::parse(None), Setting::File(default_cache_file()));
        assert!(default_cache_file().ends_with("conv-paths.json"));
    }

    #[test]
    fn cpu_model_is_read_from_cpuinfo() {
        let info = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert!(!isa().is_empty());
    }
}
