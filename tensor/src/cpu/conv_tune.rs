//! CPU convolution paths chosen by measurement, remembered per machine on disk.
//!
//! The thresholds of `Auto` ([`small_map::suits`](super::onednn::small_map::suits),
//! [`winograd::suits`](super::onednn::winograd::suits), the oneDNN-or-Rust rule of
//! `conv_choice`) were measured on one AVX2 processor; on another (AVX-512's wider oneDNN kernels,
//! say) the fastest path differs. So the first time a convolution is run under `Auto`, each of its
//! computations (forward, backward-data, weight gradient) times every path that can compute it
//! ([`REPS`] runs each, the fastest counts, so the first run's primitive creation and weight
//! reorders do not), keeps the fastest, and writes the choice to a JSON file keyed by this
//! machine's CPU model and ISA ([`Machine`]) and the file format's [`VERSION`]. A later process
//! reads the file and times nothing it already knows. A file that does not parse, or was written
//! by another machine or version, is ignored and replaced at the next choice.
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
use std::sync::{Mutex, OnceLock};

/// Names the tuning cache file, or `off` to choose by the measured-once thresholds instead.
pub const CACHE_ENV: &str = "CONVRNN_CONV_CACHE";

/// The cache file's format; a file of another version is ignored and rewritten.
pub const VERSION: u32 = 1;

/// Runs timed per path; the fastest counts.
pub const REPS: usize = 3;

/// A path slower than this many times the fastest so far stops being timed after one run:
/// a clear loser (the Rust kernels on a large dense convolution) costs one run, not [`REPS`].
pub const GIVE_UP_FACTOR: f64 = 4.0;

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
    pub geom: ConvGeom,
    pub stage: Stage,
    pub input: Layout,
    pub bias: bool,
    pub threads: usize,
}

/// A tuned choice: the fastest path and the time each candidate took (seconds, the fastest of its
/// runs; a path that failed is absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub key: TuneKey,
    pub path: PathKind,
    pub seconds: Vec<(PathKind, f64)>,
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
        write!(f, ")")
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
    choices: Mutex<HashMap<TuneKey, Choice>>,
}

impl Tuner {
    /// A tuner for `machine` that starts from `file`'s choices when the file holds valid ones for
    /// this machine and [`VERSION`].
    pub fn new(file: Option<PathBuf>, machine: Machine) -> Self {
        let (loaded, choices) = match &file {
            None => (Loaded::Missing, HashMap::new()),
            Some(f) => read_cache(f, &machine),
        };
        Tuner {
            file,
            machine,
            loaded,
            choices: Mutex::new(choices),
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
    /// fastest by `measure` (seconds, `None` where the path failed), remembered and written to the
    /// file. `None` when no candidate could be measured.
    pub fn choose(
        &self,
        key: TuneKey,
        candidates: &[PathKind],
        mut measure: impl FnMut(PathKind) -> Option<f64>,
    ) -> Option<PathKind> {
        if let Some(p) = self.lookup(&key).filter(|p| candidates.contains(p)) {
            return Some(p);
        }
        // Timed without the lock: a convolution on another thread is not held up for seconds
        // (two threads tuning the same key at once only both measure it).
        let seconds: Vec<(PathKind, f64)> = candidates
            .iter()
            .filter_map(|&p| measure(p).map(|s| (p, s)))
            .collect();
        let (path, _) = seconds.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
        let choice = Choice { key, path, seconds };
        let snapshot = {
            let mut map = self.choices.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(key, choice);
            CacheFile {
                version: VERSION,
                machine: self.machine.clone(),
                choices: map.values().cloned().collect(),
            }
        };
        self.save(&snapshot);
        Some(path)
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
    use std::cell::Cell;

    fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("convrnn-tune-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("conv-paths.json");
        let _ = std::fs::remove_file(&f);
        f
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

    const ALL: [PathKind; 4] = [
        PathKind::Rust,
        PathKind::OneDnn,
        PathKind::SmallMap,
        PathKind::Winograd,
    ];

    /// Times: Winograd fastest, SmallMap failing.
    fn fake(p: PathKind) -> Option<f64> {
        match p {
            PathKind::Rust => Some(3.0),
            PathKind::OneDnn => Some(2.0),
            PathKind::SmallMap => None,
            PathKind::Winograd => Some(1.0),
        }
    }

    #[test]
    fn the_fastest_is_chosen_and_a_second_lookup_times_nothing() {
        let f = temp_file("reuse");
        let t = Tuner::new(Some(f.clone()), machine("cpu A"));
        let timed = Cell::new(0);
        let measure = |p| {
            timed.set(timed.get() + 1);
            fake(p)
        };
        let k = key(Stage::Forward);
        assert_eq!(t.choose(k, &ALL, measure), Some(PathKind::Winograd));
        assert_eq!(timed.get(), 4);
        assert_eq!(t.choose(k, &ALL, measure), Some(PathKind::Winograd));
        assert_eq!(timed.get(), 4, "the remembered choice was timed again");
        // Another computation of the same convolution is tuned on its own.
        assert_eq!(
            t.choose(key(Stage::BackwardData), &ALL, measure),
            Some(PathKind::Winograd)
        );
        assert_eq!(timed.get(), 8);

        // A new process on the same machine reads the file and times nothing.
        let t2 = Tuner::new(Some(f.clone()), machine("cpu A"));
        assert_eq!(t2.loaded(), &Loaded::Read(2));
        assert_eq!(t2.choose(k, &ALL, measure), Some(PathKind::Winograd));
        assert_eq!(timed.get(), 8);
        let c = &t2.choices()[0];
        assert!(c.seconds.iter().all(|s| s.0 != PathKind::SmallMap), "{c:?}");
    }

    #[test]
    fn a_remembered_path_that_is_not_a_candidate_is_retimed() {
        let t = Tuner::new(None, machine("cpu A"));
        let k = key(Stage::BackwardWeights);
        assert_eq!(t.choose(k, &ALL, fake), Some(PathKind::Winograd));
        let only = [PathKind::Rust, PathKind::OneDnn];
        assert_eq!(t.choose(k, &only, fake), Some(PathKind::OneDnn));
        assert_eq!(t.choose(k, &[PathKind::SmallMap], fake), None);
    }

    #[test]
    fn a_corrupt_cache_is_ignored_and_rewritten() {
        let f = temp_file("corrupt");
        std::fs::write(&f, b"{\"version\": 1, \"machine\": tr").unwrap();
        let t = Tuner::new(Some(f.clone()), machine("cpu A"));
        assert!(matches!(t.loaded(), Loaded::Ignored(_)), "{:?}", t.loaded());
        let k = key(Stage::Forward);
        assert_eq!(t.choose(k, &ALL, fake), Some(PathKind::Winograd));
        let t2 = Tuner::new(Some(f), machine("cpu A"));
        assert_eq!(t2.loaded(), &Loaded::Read(1));
        assert_eq!(t2.lookup(&k), Some(PathKind::Winograd));
    }

    #[test]
    fn a_cache_of_another_machine_or_version_is_ignored() {
        let f = temp_file("stale");
        let k = key(Stage::Forward);
        Tuner::new(Some(f.clone()), machine("cpu A")).choose(k, &ALL, fake);
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
        json["version"] = (VERSION + 1).into();
        std::fs::write(&f, serde_json::to_vec(&json).unwrap()).unwrap();
        let t = Tuner::new(Some(f.clone()), machine("cpu A"));
        assert!(matches!(t.loaded(), Loaded::Ignored(w) if w.contains("version")));
        assert_eq!(t.lookup(&k), None);
        // Retuned and rewritten at this version.
        assert_eq!(t.choose(k, &[PathKind::Rust], fake), Some(PathKind::Rust));
        assert_eq!(
            Tuner::new(Some(f), machine("cpu A")).loaded(),
            &Loaded::Read(1)
        );
    }

    #[test]
    fn a_choice_reads_as_one_line() {
        let t = Tuner::new(None, machine("cpu A"));
        t.choose(key(Stage::BackwardData), &ALL, fake);
        let line = t.choices()[0].to_string();
        assert!(
            line.starts_with("backward-data 2x16x8x8 -> 16 3x3/1"),
            "{line}"
        );
        assert!(line.contains("Winograd (Rust 3000.000 ms"), "{line}");
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
