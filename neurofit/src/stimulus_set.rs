//! Brain-Score-style stimulus sets: a CSV with a `stimulus_id` column, a file-name column
//! (`filename`, or Brain-Score's older `image_file_name` / `file_name`) relative to the CSV's folder,
//! and any metadata columns (kept as text).
//!
//! [`StimulusSet::open`] takes a set as Brain-Score publishes it: the CSV itself (named after the
//! set, e.g. `hvm.csv`) with its images beside it or inside the zip of the same name (`hvm.zip`),
//! or a folder holding exactly one CSV (or `stimulus_set.csv`, the name this project writes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::assembly::Assembly;
use crate::error::{NeurofitError, Result};

const FILENAME_COLUMNS: [&str; 3] = ["filename", "image_file_name", "file_name"];

/// The name this project gives a stimulus set's CSV (`StimulusSet::write_brainscore`).
pub const DEFAULT_CSV: &str = "stimulus_set.csv";

/// A Brain-Score stimulus set: one row per stimulus with its id, image file and other columns.
#[derive(Debug, Clone, PartialEq)]
pub struct StimulusSet {
    /// Folder the file names are relative to (the CSV's folder).
    pub root: PathBuf,
    /// The zip archive holding the images, when they are not files under `root` (set by
    /// [`StimulusSet::open`]); file names are then entry names in it.
    pub zip: Option<PathBuf>,
    /// Each stimulus's id (what recordings refer to).
    pub stimulus_id: Vec<String>,
    /// Each stimulus's image file, relative to `root` (or an entry of `zip`).
    pub filename: Vec<String>,
    /// Every other column, by header, one value per stimulus.
    pub metadata: BTreeMap<String, Vec<String>>,
}

impl StimulusSet {
    /// Opens a stimulus set given as its CSV or as a folder (see the module documentation) and
    /// finds its images, beside the CSV or in the zip of the same name. Errors say what was
    /// looked for.
    pub fn open(path: &Path) -> Result<StimulusSet> {
        let csv = if path.is_dir() {
            find_csv(path)?
        } else if path.is_file() {
            path.to_path_buf()
        } else {
            return Err(NeurofitError::File {
                path: path.to_path_buf(),
                reason: "does not exist; --stimuli takes a stimulus set's CSV or a folder holding \
                         it"
                .into(),
            });
        };
        let mut set = StimulusSet::read_csv(&csv)?;
        let missing: Vec<usize> = (0..set.len())
            .filter(|&i| set.path_of(i).is_none_or(|p| !p.is_file()))
            .collect();
        if missing.is_empty() {
            return Ok(set);
        }
        let zip = csv.with_extension("zip");
        if !zip.is_file() {
            return Err(NeurofitError::File {
                path: csv.clone(),
                reason: format!(
                    "{} of its {} images are not beside it (e.g. {}), and there is no {} to \
                     take them from",
                    missing.len(),
                    set.len(),
                    set.root.join(&set.filename[missing[0]]).display(),
                    zip.display()
                ),
            });
        }
        let names = zip_names(&zip)?;
        let resolved = resolve_in_zip(&set.filename, &names).map_err(|e| NeurofitError::File {
            path: zip.clone(),
            reason: e,
        })?;
        set.filename = resolved;
        set.zip = Some(zip);
        Ok(set)
    }

    /// Calls `f(i, bytes)` with the encoded image of every stimulus in order, from the files or
    /// the zip archive.
    pub fn for_each_image(&self, mut f: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
        match &self.zip {
            None => {
                for i in 0..self.len() {
                    let p = self.root.join(&self.filename[i]);
                    let bytes =
                        std::fs::read(&p).map_err(|error| NeurofitError::Io { path: p, error })?;
                    f(i, &bytes)?;
                }
            }
            Some(zip) => {
                let zerr = |e: zip::result::ZipError| NeurofitError::File {
                    path: zip.clone(),
                    reason: e.to_string(),
                };
                let file = std::fs::File::open(zip).map_err(|error| NeurofitError::Io {
                    path: zip.clone(),
                    error,
                })?;
                let mut archive = zip::ZipArchive::new(file).map_err(zerr)?;
                let mut bytes = Vec::new();
                for i in 0..self.len() {
                    let mut entry = archive.by_name(&self.filename[i]).map_err(zerr)?;
                    bytes.clear();
                    // The zip reader checks each entry's CRC-32 as it reaches the end.
                    entry
                        .read_to_end(&mut bytes)
                        .map_err(|e| NeurofitError::File {
                            path: zip.clone(),
                            reason: format!("entry `{}`: {e}", self.filename[i]),
                        })?;
                    f(i, &bytes)?;
                }
            }
        }
        Ok(())
    }

    /// Reads a stimulus set's CSV: a `stimulus_id` column, a file-name column (`filename`,
    /// `image_file_name` or `file_name`) and any others as metadata; images are looked for beside
    /// the CSV.
    pub fn read_csv(path: &Path) -> Result<StimulusSet> {
        let csv_err = |line: u64, reason: String| NeurofitError::Csv {
            path: path.to_path_buf(),
            line,
            reason,
        };
        if !path.is_file() {
            return Err(NeurofitError::File {
                path: path.to_path_buf(),
                reason: "no such stimulus-set CSV".into(),
            });
        }
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
            zip: None,
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

    /// Number of stimuli.
    pub fn len(&self) -> usize {
        self.stimulus_id.len()
    }

    /// Whether the set lists no stimulus.
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
                    first_few(&missing)
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

/// The stimulus set's CSV in folder `dir`: `stimulus_set.csv`, else the only `.csv` there.
fn find_csv(dir: &Path) -> Result<PathBuf> {
    let default = dir.join(DEFAULT_CSV);
    if default.is_file() {
        return Ok(default);
    }
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| NeurofitError::Io {
            path: dir.to_path_buf(),
            error,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    csvs.sort();
    match csvs.len() {
        1 => Ok(csvs.remove(0)),
        0 => Err(NeurofitError::File {
            path: dir.to_path_buf(),
            reason: format!(
                "holds no stimulus set: looked for {DEFAULT_CSV} or a single *.csv (stimulus_id, \
                 filename, …) with its images beside it or in the zip of the same name"
            ),
        }),
        n => Err(NeurofitError::File {
            path: dir.to_path_buf(),
            reason: format!(
                "holds {n} CSV files ({}); pass the stimulus set's CSV itself",
                csvs.iter()
                    .filter_map(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Entry names of the files in a zip archive.
fn zip_names(zip: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(zip).map_err(|error| NeurofitError::Io {
        path: zip.to_path_buf(),
        error,
    })?;
    let archive = zip::ZipArchive::new(file).map_err(|e| NeurofitError::File {
        path: zip.to_path_buf(),
        reason: format!("is not a readable zip archive: {e}"),
    })?;
    Ok(archive
        .file_names()
        .filter(|n| !n.ends_with('/'))
        .map(str::to_string)
        .collect())
}

/// Each file name's entry in the archive: the same path, or the one entry ending in `/<name>`
/// (archives often wrap the images in a top folder).
fn resolve_in_zip(files: &[String], names: &[String]) -> std::result::Result<Vec<String>, String> {
    let exact: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut by_suffix: HashMap<&str, Vec<&str>> = HashMap::new();
    for n in names {
        let mut rest = n.as_str();
        while let Some((_, tail)) = rest.split_once('/') {
            by_suffix.entry(tail).or_default().push(n);
            rest = tail;
        }
    }
    let mut out = Vec::with_capacity(files.len());
    let mut missing = Vec::new();
    for f in files {
        let f = f.trim_start_matches("./");
        if exact.contains(f) {
            out.push(f.to_string());
            continue;
        }
        match by_suffix.get(f).map(Vec::as_slice) {
            Some([one]) => out.push(one.to_string()),
            Some(many) => {
                return Err(format!(
                    "`{f}` matches several entries ({}); the archive is ambiguous",
                    many.join(", ")
                ))
            }
            None => missing.push(f.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "{} of {} images are not in the archive, e.g. {}",
            missing.len(),
            files.len(),
            first_few(&missing)
        ))
    }
}

/// The first few names of a list, for an error message.
fn first_few(names: &[String]) -> String {
    names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
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

    fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
        let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes) in entries {
            w.start_file(
                *name,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .unwrap();
            std::io::Write::write_all(&mut w, bytes).unwrap();
        }
        w.finish().unwrap();
    }

    fn collect(set: &StimulusSet) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        set.for_each_image(|i, b| {
            assert_eq!(i, out.len());
            out.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn opens_a_set_as_published_csv_with_images_beside_or_in_its_zip() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "stimulus_id,filename,object_name\na,a.png,car\nb,sub/b.png,dog\n";
        // The CSV named after the set, the images in the zip of the same name (in a top folder).
        std::fs::write(dir.path().join("hvm_mini.csv"), csv).unwrap();
        write_zip(
            &dir.path().join("hvm_mini.zip"),
            &[("hvm_mini/a.png", b"AAA"), ("hvm_mini/sub/b.png", b"BB")],
        );
        for given in [dir.path().join("hvm_mini.csv"), dir.path().to_path_buf()] {
            let set = StimulusSet::open(&given).unwrap();
            assert_eq!(set.zip, Some(dir.path().join("hvm_mini.zip")));
            assert_eq!(set.filename, vec!["hvm_mini/a.png", "hvm_mini/sub/b.png"]);
            assert_eq!(collect(&set), vec![b"AAA".to_vec(), b"BB".to_vec()]);
        }
        // Images beside the CSV take precedence over a zip.
        std::fs::write(dir.path().join("a.png"), b"file a").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.png"), b"file b").unwrap();
        let set = StimulusSet::open(&dir.path().join("hvm_mini.csv")).unwrap();
        assert_eq!(set.zip, None);
        assert_eq!(collect(&set)[1], b"file b".to_vec());
    }

    #[test]
    fn what_was_looked_for_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = StimulusSet::open(&dir.path().join("nope.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = StimulusSet::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("stimulus_set.csv or a single *.csv"), "{e}");
        std::fs::write(dir.path().join("x.csv"), "stimulus_id,filename\na,a.png\n").unwrap();
        let e = StimulusSet::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not beside it") && e.contains("x.zip"), "{e}");
        write_zip(&dir.path().join("x.zip"), &[("other.png", b"z")]);
        let e = StimulusSet::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("not in the archive") && e.contains("a.png"),
            "{e}"
        );
        std::fs::write(dir.path().join("y.csv"), "stimulus_id,filename\n").unwrap();
        let e = StimulusSet::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("2 CSV files (x.csv, y.csv)"), "{e}");
        let e = StimulusSet::read_csv(&dir.path().join("missing.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such stimulus-set CSV"), "{e}");
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
