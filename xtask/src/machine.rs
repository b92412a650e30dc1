//! What a benchmark ran on, and when.

use anyhow::{Context, Result};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// The CPU's `model name` from /proc/cpuinfo (`unknown` elsewhere).
    pub cpu: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// Threads the engine's rayon pool uses (RAYON_NUM_THREADS, else every core).
    pub threads: usize,
    /// The widest vector instructions the CPU offers (what run-time dispatch can pick).
    pub isa: Isa,
}

/// The vector instruction families run-time dispatch chooses between (the engine's AVX2 loops,
/// the `gemm` crate's kernels behind the neural fits), widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Isa {
    #[serde(rename = "AVX-512F")]
    Avx512,
    #[serde(rename = "AVX2+FMA")]
    Avx2Fma,
    #[serde(rename = "SSE2")]
    Sse2,
    /// Detected on aarch64 only.
    #[serde(rename = "NEON")]
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    Neon,
    /// Detected on architectures other than x86-64 and aarch64 only.
    #[serde(rename = "scalar")]
    #[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), allow(dead_code))]
    Scalar,
}

impl Isa {
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                Isa::Avx512
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                Isa::Avx2Fma
            } else {
                Isa::Sse2
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            Isa::Neon
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Isa::Scalar
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isa::Avx512 => "AVX-512F",
            Isa::Avx2Fma => "AVX2+FMA",
            Isa::Sse2 => "SSE2",
            Isa::Neon => "NEON",
            Isa::Scalar => "scalar",
        })
    }
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(cores);
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            cores,
            threads,
            isa: Isa::detect(),
        }
    }
}

impl Machine {
    /// `CPU (ISA, N threads)`: what a result computed here records of where it was computed.
    pub fn label(&self) -> String {
        format!("{} ({}, {} threads)", self.cpu, self.isa, self.threads)
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// Today's date in UTC as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// CPU seconds (user + system) this process has used, all threads, living or not: comparable
/// between runs on a shared machine, where wall-clock time is not.
pub fn process_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks of 1/100 s on Linux.
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("parsing /proc/self/stat")
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn isa_names_read_as_serialised() {
        for isa in [Isa::Avx512, Isa::Avx2Fma, Isa::Sse2, Isa::Neon, Isa::Scalar] {
            let json = serde_json::to_string(&isa).unwrap();
            assert_eq!(json, format!("\"{isa}\""));
        }
    }

    #[test]
    fn model_name() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn process_cpu_time_counts_work() {
        let before = process_cpu_seconds().expect("reads /proc/self/stat");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let after = process_cpu_seconds().expect("reads");
        assert!(before >= 0.0 && after >= before, "{before} then {after}");
    }
}
