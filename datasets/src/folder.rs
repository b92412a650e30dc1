//! ImageFolder: a directory with one subdirectory per class, each holding JPEG or PNG files (at any
//! depth), as torchvision's `ImageFolder` reads ImageNet-style trees. Classes are the subdirectory
//! names sorted by byte order, labelled 0.. in that order; files are sorted too, so the sample list
//! is the same on every machine. Files with other extensions, and hidden entries, are skipped.
//!
//! Images are decoded (format guessed from the content, not the extension; JPEGs only as far as
//! the transform reads them) and go through [`crate::transforms`], the same transforms the shard
//! pipeline uses.

use crate::batcher::{check_index, check_out_len, Dataset, ImageDims};
use crate::decode::DecoderKind;
use crate::transforms::Transform;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tensor::Rng;

/// A class-per-folder image tree; see the module documentation.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
    transform: Transform,
    decoder: DecoderKind,
}

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if !is_hidden(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    // Deep trees are fine; a symlink loop is not.
    if depth > 32 {
        return Err(Error::invalid(
            "image folder",
            format!(
                "{} is nested more than 32 levels deep (a symlink loop?)",
                dir.display()
            ),
        ));
    }
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            collect_images(&path, out, depth + 1)?;
        } else if path.is_file() && is_image_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Lists `root`'s classes and images. Errors when `root` is missing, has no class folders, or a
    /// class folder holds no JPEG/PNG file.
    pub fn open(root: &Path, transform: Transform) -> Result<Self> {
        transform.validate()?;
        if !root.is_dir() {
            return Err(Error::NotFound {
                what: "image folder".into(),
                tried: vec![root.to_path_buf()],
                hint: "Expected a directory with one subdirectory of JPEG/PNG images per class \
                       (ImageNet's train/ or val/ layout)."
                    .into(),
            });
        }
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files = Vec::new();
            collect_images(&dir, &mut files, 0)?;
            if files.is_empty() {
                return Err(Error::invalid(
                    "image folder",
                    format!(
                        "class folder {} holds no .jpg/.jpeg/.png file",
                        dir.display()
                    ),
                ));
            }
            let label = classes.len();
            samples.extend(files.into_iter().map(|f| (f, label)));
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(Error::invalid(
                "image folder",
                format!(
                    "{} has no class subdirectories; expected ROOT/CLASS/IMAGE.jpg",
                    root.display()
                ),
            ));
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            transform,
            decoder: DecoderKind::Auto,
        })
    }

    /// The same images decoded by `decoder` (the default picks the fastest available).
    pub fn with_decoder(self, decoder: DecoderKind) -> Self {
        ImageFolder { decoder, ..self }
    }

    /// The same images under another transform (a training tree evaluated without augmentation).
    pub fn with_transform(&self, transform: Transform) -> Result<Self> {
        transform.validate()?;
        Ok(ImageFolder {
            transform,
            ..self.clone()
        })
    }

    /// The folder whose subfolders are the classes.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names (the subfolder names, sorted); a label indexes this list.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every image's path and label, in dataset order.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    /// What is done to every image on loading (crop, resize, flip, normalisation).
    pub fn transform(&self) -> &Transform {
        &self.transform
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn dims(&self) -> ImageDims {
        let s = self.transform.output_side();
        ImageDims::new(3, s, s)
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.samples.get(index).map(|(_, l)| *l)
    }

    fn get_into(&self, index: usize, rng: &mut Rng, out: &mut [f32]) -> Result<usize> {
        check_index("image folder", index, self.len())?;
        check_out_len("image folder", out, self.dims())?;
        let (path, label) = &self.samples[index];
        let bytes = std::fs::read(path).map_err(|e| Error::Image {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.transform
            .apply_bytes(&bytes, path, self.decoder, rng, out)?;
        Ok(*label)
    }
}
