//! The stage cache of `cargo xtask figures`: every trained model, fit and table is a *stage* whose
//! result is stored under `OUT/stages/<kind>-<hash>/`, keyed by a hash of everything that
//! determines it (its configuration and the keys of the stages it reads).
//!
//! - A stage is complete when its `result.json` exists; that file is written atomically, last, so
//!   a killed run never leaves a result that looks complete. A rerun reuses complete stages.
//! - An incomplete stage runs again; its `work/` folder is kept between attempts, so a stage that
//!   checkpoints there (training) continues where it stopped.
//! - A stage's key covers the keys of its inputs, so a changed configuration changes the keys of
//!   exactly the stages that depend on it, and only those are computed again; old results stay on
//!   disk untouched (a change back reuses them).
//! - `key.json` beside the result holds the full key text; a result whose key text differs from
//!   the one asked for (a hash collision, or a folder copied by hand) is not reused.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Folder under the output folder that holds the stages.
pub const STAGES_DIR: &str = "stages";
const RESULT_FILE: &str = "result.json";
const KEY_FILE: &str = "key.json";
const WORK_DIR: &str = "work";
/// Bumped when the layout of results changes, so results of an older layout are not read back.
const CACHE_FORMAT: u32 = 1;

/// Identity of a stage: its kind and a hash of its configuration and of its inputs' keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageKey {
    kind: String,
    hash: u64,
    text: String,
}

impl StageKey {
    /// The key of a stage of `kind` (lower-case letters, digits, `-` and `_`: it names a folder)
    /// configured by `config` that reads the results of `inputs`.
    pub fn new(kind: &str, config: &impl Serialize, inputs: &[&StageKey]) -> Result<Self> {
        if kind.is_empty()
            || !kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            bail!("stage kind `{kind}` must be lower-case letters, digits, `-` or `_`");
        }
        // Through a Value, so that the text depends only on the configuration's content.
        let config = serde_json::to_value(config)
            .with_context(|| format!("serialising the configuration of a `{kind}` stage"))?;
        let inputs: Vec<String> = inputs.iter().map(|k| k.id()).collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "format": CACHE_FORMAT,
            "kind": kind,
            "config": config,
            "inputs": inputs,
        }))?;
        Ok(StageKey {
            kind: kind.to_string(),
            hash: datasets::cache::fnv1a64(text.as_bytes()),
            text,
        })
    }

    /// The stage's folder name: `<kind>-<hash>`.
    pub fn id(&self) -> String {
        format!("{}-{:016x}", self.kind, self.hash)
    }
}

/// Whether a stage's result was read back or computed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Cached,
    Computed,
}

/// The stages of one output folder.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache of the output folder `out` (created on first use).
    pub fn new(out: &Path) -> Self {
        Cache {
            root: out.join(STAGES_DIR),
        }
    }

    /// The folder of the stage `key`.
    pub fn dir(&self, key: &StageKey) -> PathBuf {
        self.root.join(key.id())
    }

    /// The work folder of the stage `key` (what its computation left there, such as a neural
    /// stage's neurofit output, stays after it completes).
    pub fn work_dir(&self, key: &StageKey) -> PathBuf {
        self.dir(key).join(WORK_DIR)
    }

    /// The stored result of `key`, if the stage is complete and its key text matches.
    pub fn get<T: DeserializeOwned>(&self, key: &StageKey) -> Result<Option<T>> {
        let dir = self.dir(key);
        let result = dir.join(RESULT_FILE);
        let text = match std::fs::read_to_string(&result) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", result.display())),
        };
        let stored_key = std::fs::read_to_string(dir.join(KEY_FILE)).unwrap_or_default();
        if stored_key != key.text {
            return Ok(None);
        }
        // A result that no longer parses was written by an older build: compute it again.
        Ok(serde_json::from_str(&text).ok())
    }

    /// The result of stage `key`: read back when complete, otherwise `compute(work_dir)` is run
    /// and its result stored. `work_dir` survives a failed or interrupted attempt.
    pub fn run<T: Serialize + DeserializeOwned>(
        &self,
        key: &StageKey,
        compute: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<(T, Status)> {
        if let Some(v) = self.get(key)? {
            return Ok((v, Status::Cached));
        }
        let dir = self.dir(key);
        let work = self.work_dir(key);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let key_file = dir.join(KEY_FILE);
        tensor::io::write_file_atomically(&key_file, key.text.as_bytes())
            .with_context(|| format!("writing {}", key_file.display()))?;
        let value = compute(&work).with_context(|| format!("stage {}", key.id()))?;
        let text = serde_json::to_string_pretty(&value)?;
        let result = dir.join(RESULT_FILE);
        tensor::io::write_file_atomically(&result, text.as_bytes())
            .with_context(|| format!("writing {}", result.display()))?;
        Ok((value, Status::Computed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Fake stages: a "model" from a number, and a "table" that sums its inputs' results. The
    /// log records which stages computed.
    struct Pipeline<'a> {
        cache: Cache,
        log: &'a RefCell<Vec<String>>,
    }

    impl Pipeline<'_> {
        fn model(&self, name: &str, config: u64) -> (StageKey, u64) {
            let key = StageKey::new("model", &(name, config), &[]).unwrap();
            let (v, _) = self
                .cache
                .run(&key, |_| {
                    self.log.borrow_mut().push(name.to_string());
                    Ok(config * 10)
                })
                .unwrap();
            (key, v)
        }

        fn table(&self, inputs: &[(StageKey, u64)]) -> u64 {
            let keys: Vec<&StageKey> = inputs.iter().map(|(k, _)| k).collect();
            let key = StageKey::new("table", &"sum", &keys).unwrap();
            let (v, _) = self
                .cache
                .run(&key, |_| {
                    self.log.borrow_mut().push("table".into());
                    Ok(inputs.iter().map(|(_, v)| v).sum::<u64>())
                })
                .unwrap();
            v
        }
    }

    #[test]
    fn a_rerun_reuses_and_a_change_recomputes_only_its_dependents() {
        let dir = tempfile::tempdir().unwrap();
        let log = RefCell::new(Vec::new());
        let p = Pipeline {
            cache: Cache::new(dir.path()),
            log: &log,
        };
        let run = |a: u64, b: u64| {
            let inputs = [p.model("a", a), p.model("b", b)];
            p.table(&inputs)
        };
        assert_eq!(run(1, 2), 30);
        assert_eq!(*log.borrow(), ["a", "b", "table"]);
        log.borrow_mut().clear();
        assert_eq!(run(1, 2), 30);
        assert!(
            log.borrow().is_empty(),
            "a rerun computed {:?}",
            log.borrow()
        );
        // Model a changes: a and the table that reads it compute again, b does not.
        assert_eq!(run(5, 2), 70);
        assert_eq!(*log.borrow(), ["a", "table"]);
        log.borrow_mut().clear();
        // Back to the first configuration: everything is still on disk.
        assert_eq!(run(1, 2), 30);
        assert!(log.borrow().is_empty(), "{:?}", log.borrow());
    }

    #[test]
    fn an_interrupted_stage_runs_again_and_keeps_its_work() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = StageKey::new("train", &("m", 3), &[]).unwrap();
        // A stage that checkpoints one unit of work per attempt into its work folder and is
        // interrupted after the first unit.
        let attempt = |stop_after: Option<u32>| {
            cache.run(&key, |work| {
                let ck = work.join("checkpoint");
                let mut done: u32 = std::fs::read_to_string(&ck)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                while done < 3 {
                    done += 1;
                    std::fs::write(&ck, done.to_string())?;
                    if Some(done) == stop_after {
                        bail!("interrupted at unit {done}");
                    }
                }
                Ok(done)
            })
        };
        let err = attempt(Some(1)).unwrap_err();
        assert!(format!("{err:#}").contains("interrupted"), "{err:#}");
        assert_eq!(cache.get::<u32>(&key).unwrap(), None, "no result yet");
        let (v, status) = attempt(None).unwrap();
        assert_eq!((v, status), (3, Status::Computed));
        let ck = cache.dir(&key).join(WORK_DIR).join("checkpoint");
        assert_eq!(std::fs::read_to_string(ck).unwrap(), "3");
        let (v, status) = attempt(Some(1)).unwrap();
        assert_eq!((v, status), (3, Status::Cached), "complete: not run again");
    }

    #[test]
    fn a_result_under_another_key_text_or_unreadable_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = StageKey::new("fit", &1u32, &[]).unwrap();
        cache.run(&key, |_| Ok(7u32)).unwrap();
        std::fs::write(cache.dir(&key).join(KEY_FILE), "something else").unwrap();
        assert_eq!(cache.get::<u32>(&key).unwrap(), None);
        let (_, status) = cache.run(&key, |_| Ok(7u32)).unwrap();
        assert_eq!(status, Status::Computed);
        std::fs::write(cache.dir(&key).join(RESULT_FILE), "{cut sho").unwrap();
        let (v, status) = cache.run(&key, |_| Ok(8u32)).unwrap();
        assert_eq!((v, status), (8, Status::Computed));
    }

    /// A stage's result read back equals the value computed, to the bit, so tables recomputed
    /// from cached stages equal fresh ones (serde_json's default float parser is sometimes an
    /// ulp off; xtask enables its exact one).
    #[test]
    fn floats_read_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = StageKey::new("floats", &0, &[]).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let values: Vec<f64> = (0..20_000)
            .map(|i| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                // Uniform in [0, 1) at full precision, and means of a few accuracies.
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                if i % 2 == 0 {
                    u
                } else {
                    (u + 0.158 + 0.161) / 3.0
                }
            })
            .collect();
        cache.run(&key, |_| Ok(values.clone())).unwrap();
        let back: Vec<f64> = cache.get(&key).unwrap().unwrap();
        let differ = values
            .iter()
            .zip(&back)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "{differ} of {} values read back otherwise",
            values.len()
        );
    }

    /// The exact parser must be xtask's own: the test build also gets it through neurofit, a
    /// dev-dependency, which the `cargo xtask` binary does not link, so the test above alone
    /// would pass without it.
    #[test]
    fn xtask_itself_enables_exact_float_parsing() {
        let manifest = include_str!("../../Cargo.toml");
        let line = manifest
            .lines()
            .find(|l| l.starts_with("serde_json"))
            .unwrap_or_default();
        assert!(line.contains("\"float_roundtrip\""), "{line}");
    }

    #[test]
    fn keys_follow_content_and_inputs() {
        let a = StageKey::new("model", &serde_json::json!({"x": 1, "y": 2}), &[]).unwrap();
        let b = StageKey::new("model", &serde_json::json!({"y": 2, "x": 1}), &[]).unwrap();
        assert_eq!(a, b, "field order does not matter");
        let c = StageKey::new("model", &serde_json::json!({"x": 1, "y": 3}), &[]).unwrap();
        assert_ne!(a.id(), c.id());
        let t1 = StageKey::new("table", &0, &[&a]).unwrap();
        let t2 = StageKey::new("table", &0, &[&c]).unwrap();
        assert_ne!(t1.id(), t2.id());
        assert!(a.id().starts_with("model-"));
        assert!(StageKey::new("Bad Kind", &0, &[]).is_err());
    }
}
