//! Brain-Score-style stimulus sets: a CSV with a `stimulus_id` column, a file-name column
//! (`filename`, or Brain-Score's older `image_file_name` / `file_name`) relative to the CSV's folder,
//! and any metadata columns (kept as text).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::assembly::Assembly;
use crate::error::{NeurofitError, Result};

const FILENAME_COLUMNS: [&str; 3] = ["filename", "image_file_name", "file_name"];

#[derive(Debug, Clone, PartialEq)]
pub struct StimulusSet {
    /// Folder the file names are relative to (the CSV's folder).
    pub root: PathBuf,
    pub stimulus_id: Vec<String>,
    pub filename: Vec<String>,
    /// Every other column, by header, one value per stimulus.
    pub metadata: BTreeMap<String, Vec<String>>,
}

impl StimulusSet {
    pub fn read_csv(path: &Path) -> Result<StimulusSet> {
        let csv_err = |line: u64, reason: String| NeurofitError::Csv {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut rdr = csv::Reader::from_path(path).map_err(|e| csv_err(0, e.to_string()))?;
        let headers = rdr
            .headers()
            .map_err(|e| csv_err(1, e.to_string()))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let id_col = col("stimulus_id").ok_or_else(|| {
            csv_err(
                1,
                format!(
                    "no `stimulus_id` column; header is {:?}",
                    headers.iter().collect::<Vec<_>>()
                ),
            )
        })?;
        let file_col = FILENAME_COLUMNS
            .iter()
            .find_map(|c| col(c))
            .ok_or_else(|| {
                csv_err(
                    1,
                    format!(
                        "no file-name column (one of {FILENAME_COLUMNS:?}); header is {:?}",
                        headers.iter().collect::<Vec<_>>()
                    ),
                )
            })?;
        let mut set = StimulusSet {
            root: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            stimulus_id: Vec::new(),
            filename: Vec::new(),
            metadata: headers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != id_col && *i != file_col)
                .map(|(_, h)| (h.to_string(), Vec::new()))
                .collect(),
        };
        let mut seen = HashSet::new();
        for rec in rdr.records() {
            let rec = rec
                .map_err(|e| csv_err(e.position().map(|p| p.line()).unwrap_or(0), e.to_string()))?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let id = rec.get(id_col).unwrap_or_default().to_string();
            if id.is_empty() {
                return Err(csv_err(line, "empty stimulus_id".into()));
            }
            if !seen.insert(id.clone()) {
                return Err(csv_err(line, format!("stimulus_id `{id}` appears twice")));
            }
            let file = rec.get(file_col).unwrap_or_default();
            if file.is_empty() {
                return Err(csv_err(
                    line,
                    format!("stimulus `{id}` has an empty file name"),
                ));
            }
            for (i, h) in headers.iter().enumerate() {
                if let Some(values) = set.metadata.get_mut(h) {
                    values.push(rec.get(i).unwrap_or_default().to_string());
                }
            }
            set.stimulus_id.push(id);
            set.filename.push(file.to_string());
        }
        if set.stimulus_id.is_empty() {
            return Err(csv_err(1, "no stimuli listed".into()));
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.stimulus_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stimulus_id.is_empty()
    }

    /// Full path of stimulus `i`'s image.
    pub fn path_of(&self, i: usize) -> Option<PathBuf> {
        self.filename.get(i).map(|f| self.root.join(f))
    }

    /// Error listing the images that are not on disk.
    pub fn check_files_exist(&self) -> Result<()> {
        let missing: Vec<String> = (0..self.len())
            .filter_map(|i| self.path_of(i))
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(NeurofitError::File {
                path: self.root.clone(),
                reason: format!(
                    "{} stimulus image(s) missing, e.g. {}",
                    missing.len(),
                    missing
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    }

    /// Error naming the recorded stimuli this set does not contain.
    pub fn check_covers(&self, recordings: &Assembly) -> Result<()> {
        let have: HashSet<&str> = self.stimulus_id.iter().map(String::as_str).collect();
        let mut missing: Vec<String> = recordings
            .presentations
            .stimulus_id
            .iter()
            .filter(|s| !have.contains(s.as_str()))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(NeurofitError::MissingStimuli { missing })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("stimuli.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_ids_files_and_metadata_and_checks_coverage() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "stimulus_id,filename,object_name,variation\na,a.png,car,0\nb,sub/b.png,dog,3\n",
        );
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        let s = StimulusSet::read_csv(&p).unwrap();
        assert_eq!(s.stimulus_id, vec!["a", "b"]);
        assert_eq!(s.metadata["variation"], vec!["0", "3"]);
        assert_eq!(s.path_of(1).unwrap(), dir.path().join("sub/b.png"));
        let e = s.check_files_exist().unwrap_err().to_string();
        assert!(e.contains("b.png") && !e.contains("a.png"), "{e}");

        let mut asm = crate::validate::tests::tiny();
        assert!(s.check_covers(&asm).is_ok());
        asm.presentations.stimulus_id[1] = "zz".into();
        match s.check_covers(&asm) {
            Err(NeurofitError::MissingStimuli { missing }) => assert_eq!(missing, vec!["zz"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accepts_brain_score_legacy_file_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "stimulus_id,image_file_name\nx,x.jpg\n");
        assert_eq!(StimulusSet::read_csv(&p).unwrap().filename, vec!["x.jpg"]);
    }

    #[test]
    fn malformed_csvs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("id,filename\na,a.png\n", "stimulus_id"),
            ("stimulus_id,name\na,a.png\n", "file-name"),
            ("stimulus_id,filename\na,a.png\na,b.png\n", "twice"),
            ("stimulus_id,filename\n,a.png\n", "empty stimulus_id"),
            ("stimulus_id,filename\na,\n", "empty file name"),
            ("stimulus_id,filename\n", "no stimuli"),
            ("stimulus_id,filename\na,a.png,extra\n", "line"),
        ] {
            let e = StimulusSet::read_csv(&write(dir.path(), text))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
