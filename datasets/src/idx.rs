//! IDX files (the MNIST family's format), plain or gzipped, and the Fashion-MNIST data set.
//!
//! An IDX file is: two zero bytes, a type byte (`0x08` = unsigned byte, the only type these data
//! sets use), a byte with the number of dimensions `d`, `d` big-endian `u32` sizes, then the data in
//! row-major order. Every way a file can disagree with its header (too short, too long, wrong
//! magic, a broken gzip stream) is reported as [`Error::Corrupt`] naming the file, never a panic.

use crate::batcher::ImageDims;
use crate::images::U8Images;
use crate::locate;
use crate::{Error, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The element type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;
/// No array in these data sets comes near this; a header claiming more is corrupt.
const MAX_ELEMENTS: u64 = 1 << 34;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The array's shape, outermost first (`[count, rows, cols]` for images, `[count]` for labels).
    pub dims: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file, gunzipping it first when it starts with the gzip magic bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        parse_idx_from(flate2::read::GzDecoder::new(reader), path, true)
    } else {
        parse_idx_from(reader, path, false)
    }
}

/// Parses an uncompressed IDX image held in memory; `path` only names it in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    parse_idx_from(bytes, path, false)
}

fn parse_idx_from(mut r: impl Read, path: &Path, gzipped: bool) -> Result<IdxArray> {
    // Inside a gzip stream, every read failure is the stream's fault (truncated or corrupt).
    let read_err = |e: std::io::Error, during: &str| -> Error {
        use std::io::ErrorKind::*;
        match e.kind() {
            UnexpectedEof | InvalidData | InvalidInput => {
                Error::corrupt(path, format!("{during}: {e}"))
            }
            _ if gzipped => Error::corrupt(path, format!("{during}: {e}")),
            _ => Error::io(path, e),
        }
    };
    let mut magic = [0u8; 4];
    read_exact_or(&mut r, &mut magic)
        .map_err(|e| read_err(e, "reading the 4-byte magic number"))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::corrupt(
            path,
            format!(
                "not an IDX file: magic number {:02x}{:02x}{:02x}{:02x} does not start with 0000",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(Error::corrupt(
            path,
            format!(
                "element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(Error::corrupt(path, "the header declares zero dimensions"));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut total: u64 = 1;
    for d in 0..ndim {
        let mut b = [0u8; 4];
        read_exact_or(&mut r, &mut b)
            .map_err(|e| read_err(e, &format!("reading dimension {d} of {ndim} in the header")))?;
        let size = u32::from_be_bytes(b) as u64;
        total = total.saturating_mul(size);
        dims.push(size as usize);
    }
    if total > MAX_ELEMENTS {
        return Err(Error::corrupt(
            path,
            format!("the header declares dimensions {dims:?}, {total} elements: implausibly large"),
        ));
    }
    let expected = total as usize;
    // Read one byte past the declared size so trailing garbage is caught, without trusting the
    // header for the allocation beyond a modest size.
    let mut data = Vec::with_capacity(expected.min(64 << 20));
    (&mut r)
        .take(total + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_err(e, "reading the data"))?;
    if data.len() < expected {
        return Err(Error::corrupt(
            path,
            format!(
                "the header declares {dims:?} = {expected} bytes of data but the file holds only {}",
                data.len()
            ),
        ));
    }
    if data.len() > expected {
        return Err(Error::corrupt(
            path,
            format!("more data than the header's {dims:?} = {expected} bytes"),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Like `read_exact`, but reports a short read as `UnexpectedEof` with a clear message.
fn read_exact_or(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(e.kind(), "the file ends early")
        } else {
            e
        }
    })
}

/// The bytes of an uncompressed IDX file holding `data` with shape `dims`.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    if dims.is_empty() || dims.len() > 255 {
        return Err(Error::invalid(
            "encode_idx",
            format!("{} dimensions; IDX takes 1 to 255", dims.len()),
        ));
    }
    if dims.iter().any(|&d| d > u32::MAX as usize) {
        return Err(Error::invalid(
            "encode_idx",
            format!("dimensions {dims:?} exceed u32"),
        ));
    }
    let n: usize = dims.iter().product();
    if n != data.len() {
        return Err(Error::invalid(
            "encode_idx",
            format!("{} bytes do not fill dimensions {dims:?} ({n})", data.len()),
        ));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, TYPE_U8, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Writes an IDX file atomically, gzipped when `path` ends in `.gz`.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    let raw = encode_idx(dims, data)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).map_err(|e| Error::io(path, e))?;
        gz.finish().map_err(|e| Error::io(path, e))?
    } else {
        raw
    };
    crate::cache::atomic_write(path, &bytes)
}

/// Fashion-MNIST's ten classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
/// Mean of the 60,000 training images' pixels scaled to [0, 1] (0.28604; checked against the real
/// files by this crate's tests when they are installed).
pub const FASHION_MNIST_MEAN: f32 = 0.2860;
/// Standard deviation of the training pixels scaled to [0, 1] (0.35302).
pub const FASHION_MNIST_STD: f32 = 0.3530;
/// Images in the training split.
pub const FASHION_MNIST_TRAIN_COUNT: usize = 60_000;
/// Images in the test split.
pub const FASHION_MNIST_TEST_COUNT: usize = 10_000;
/// Side of the square images, in pixels.
pub const FASHION_MNIST_SIDE: usize = 28;

/// The four file stems; each may be present gzipped (`.gz`, as Debian installs them) or plain.
pub const FASHION_MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Fashion-MNIST's two splits, 28×28 grey images with labels 0..10. Pixels come out in [0, 1]
/// ([`crate::Normalize::Unit`]); `with_normalize(Normalize::fashion_mnist())` standardises them.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    /// The 60,000 training images and labels.
    pub train: U8Images,
    /// The 10,000 test images and labels.
    pub test: U8Images,
    /// The directory the files were read from.
    pub dir: PathBuf,
}

impl FashionMnist {
    /// Reads the four files from `dir`, checking 60,000 training and 10,000 test images of 28×28
    /// and labels in 0..10.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_checked(dir, true)
    }

    /// Like [`FashionMnist::load`], but any image counts are accepted (small fixtures in tests);
    /// the image size, label range and image/label agreement are still checked.
    pub fn load_any_count(dir: &Path) -> Result<Self> {
        Self::load_checked(dir, false)
    }

    /// Finds the data (see [`crate::locate`]) and loads it.
    pub fn locate_and_load(explicit: Option<&Path>) -> Result<Self> {
        let dir = locate::Locator::from_env(explicit).fashion_mnist()?;
        Self::load(&dir)
    }

    fn load_checked(dir: &Path, check_counts: bool) -> Result<Self> {
        let file = |stem: &str| -> Result<PathBuf> {
            locate::find_idx_file(dir, stem).ok_or_else(|| Error::NotFound {
                what: format!("Fashion-MNIST file {stem}(.gz)"),
                tried: vec![dir.join(format!("{stem}.gz")), dir.join(stem)],
                hint: locate::fashion_mnist_hint(),
            })
        };
        let [tri, trl, tei, tel] = FASHION_MNIST_FILES;
        let (train_count, test_count) = if check_counts {
            (
                Some(FASHION_MNIST_TRAIN_COUNT),
                Some(FASHION_MNIST_TEST_COUNT),
            )
        } else {
            (None, None)
        };
        let train = load_split(&file(tri)?, &file(trl)?, train_count)?;
        let test = load_split(&file(tei)?, &file(tel)?, test_count)?;
        Ok(FashionMnist {
            train,
            test,
            dir: dir.to_path_buf(),
        })
    }

    /// Both splits normalised as `normalize`.
    pub fn with_normalize(self, normalize: crate::Normalize) -> Result<Self> {
        Ok(FashionMnist {
            train: self.train.with_normalize(normalize.clone())?,
            test: self.test.with_normalize(normalize)?,
            dir: self.dir,
        })
    }
}

/// Reads one image file and its label file as a Fashion-MNIST-shaped set (28×28, 10 classes).
pub fn load_split(images: &Path, labels: &Path, count: Option<usize>) -> Result<U8Images> {
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    let unexpected = |path: &Path, expected: String, found: String| Error::Unexpected {
        path: path.to_path_buf(),
        expected,
        found,
    };
    let side = FASHION_MNIST_SIDE;
    if im.dims.len() != 3 || im.dims[1] != side || im.dims[2] != side {
        return Err(unexpected(
            images,
            format!("images of {side}×{side} (dimensions [N, {side}, {side}])"),
            format!("dimensions {:?}", im.dims),
        ));
    }
    if lb.dims.len() != 1 {
        return Err(unexpected(
            labels,
            "one label per image (dimensions [N])".into(),
            format!("dimensions {:?}", lb.dims),
        ));
    }
    let n = im.dims[0];
    if let Some(count) = count {
        if n != count {
            return Err(unexpected(
                images,
                format!("{count} images"),
                format!("{n} (is this the right data set, or an incomplete copy?)"),
            ));
        }
    }
    if lb.dims[0] != n {
        return Err(unexpected(
            labels,
            format!("{n} labels, one per image in {}", images.display()),
            format!("{} labels", lb.dims[0]),
        ));
    }
    let classes = FASHION_MNIST_CLASSES.len();
    if let Some((i, &l)) = lb
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(unexpected(
            labels,
            format!("labels 0..{classes}"),
            format!("label {l} at position {i}"),
        ));
    }
    U8Images::new(
        ImageDims::new(1, side, side),
        im.data,
        lb.data.iter().map(|&l| l as usize).collect(),
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

/// Writes a Fashion-MNIST-shaped directory (the four gzipped files) from two in-memory splits
/// of 28×28 images; for tests and fixtures in this and other crates.
pub fn write_fashion_mnist_like(
    dir: &Path,
    train: (&[u8], &[u8]),
    test: (&[u8], &[u8]),
) -> Result<()> {
    let side = FASHION_MNIST_SIDE;
    let [tri, trl, tei, tel] = FASHION_MNIST_FILES;
    for ((images, labels), (fi, fl)) in [(train, (tri, trl)), (test, (tei, tel))] {
        write_idx(
            &dir.join(format!("{fi}.gz")),
            &[labels.len(), side, side],
            images,
        )?;
        write_idx(&dir.join(format!("{fl}.gz")), &[labels.len()], labels)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    #[test]
    fn round_trip_plain_and_gzipped() -> Result<()> {
        let dir = tmp();
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8 * 7).collect();
        for name in ["a.idx", "a.idx.gz"] {
            let p = dir.path().join(name);
            write_idx(&p, &[2, 3, 4], &data)?;
            let arr = read_idx(&p)?;
            assert_eq!(arr.dims, vec![2, 3, 4]);
            assert_eq!(arr.data, data);
        }
        let gz = std::fs::read(dir.path().join("a.idx.gz")).map_err(|e| Error::io("gz", e))?;
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "the .gz file is gzipped");
        Ok(())
    }

    fn expect_corrupt(r: Result<IdxArray>, needle: &str) {
        match r {
            Err(e @ Error::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
                assert!(msg.contains("bad.idx"), "{msg:?} should name the file");
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_and_truncated_files_give_errors() -> Result<()> {
        let good = encode_idx(&[2, 2], &[1, 2, 3, 4])?;
        let p = Path::new("bad.idx");
        expect_corrupt(parse_idx(&good[..good.len() - 1], p), "holds only 3");
        expect_corrupt(parse_idx(&good[..6], p), "dimension 0");
        expect_corrupt(parse_idx(&good[..2], p), "magic");
        expect_corrupt(parse_idx(&[], p), "magic");
        let mut extra = good.clone();
        extra.push(9);
        expect_corrupt(parse_idx(&extra, p), "more data");
        let mut wrong = good.clone();
        wrong[0] = 0x42;
        expect_corrupt(parse_idx(&wrong, p), "not an IDX file");
        let mut wrong_type = good.clone();
        wrong_type[2] = 0x0d;
        expect_corrupt(parse_idx(&wrong_type, p), "element type 0x0d");
        let mut zero_dims = good.clone();
        zero_dims[3] = 0;
        expect_corrupt(parse_idx(&zero_dims, p), "zero dimensions");
        let huge = [
            0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 9,
        ];
        expect_corrupt(parse_idx(&huge, p), "implausibly large");
        Ok(())
    }

    #[test]
    fn truncated_and_garbled_gzip_give_errors() -> Result<()> {
        let dir = tmp();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let src = dir.path().join("src.idx.gz");
        write_idx(&src, &[50, 100], &data)?;
        let gz = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
        let bad = dir.path().join("bad.idx.gz");
        for cut in [3, 12, gz.len() / 2, gz.len() - 4] {
            std::fs::write(&bad, &gz[..cut]).map_err(|e| Error::io(&bad, e))?;
            expect_corrupt(read_idx(&bad), "");
        }
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        std::fs::write(&bad, &flipped).map_err(|e| Error::io(&bad, e))?;
        expect_corrupt(read_idx(&bad), "");
        Ok(())
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = read_idx(Path::new("/nonexistent/x-idx1-ubyte.gz")).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/nonexistent/x-idx1-ubyte.gz"), "{msg}");
    }

    fn fixture(dir: &Path, n_train: usize, n_test: usize) -> Result<()> {
        let img = |n: usize| -> Vec<u8> { (0..n * 784).map(|i| (i % 256) as u8).collect() };
        let lab = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 10) as u8).collect() };
        write_fashion_mnist_like(
            dir,
            (&img(n_train), &lab(n_train)),
            (&img(n_test), &lab(n_test)),
        )
    }

    #[test]
    fn small_fashion_mnist_like_directory() -> Result<()> {
        let dir = tmp();
        fixture(dir.path(), 12, 5)?;
        let fm = FashionMnist::load_any_count(dir.path())?;
        assert_eq!((fm.train.len(), fm.test.len()), (12, 5));
        assert_eq!(fm.train.dims(), ImageDims::new(1, 28, 28));
        assert_eq!(fm.train.num_classes(), 10);
        assert_eq!(fm.train.class_names()[9], "Ankle boot");
        let (x, y) = fm.train.get(3, &mut tensor::Rng::new(0))?;
        assert_eq!(y, 3);
        assert!((x[0] - (3 * 784 % 256) as f32 / 255.0).abs() < 1e-6);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        let fm = fm.with_normalize(crate::Normalize::fashion_mnist())?;
        let (z, _) = fm.train.get(3, &mut tensor::Rng::new(0))?;
        let want = (x[0] - FASHION_MNIST_MEAN) / FASHION_MNIST_STD;
        assert!((z[0] - want).abs() < 1e-6, "{} vs {want}", z[0]);
        // The strict loader insists on the real counts.
        let err = FashionMnist::load(dir.path()).err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(
            msg.contains("60000 images") && msg.contains("found 12"),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn mismatched_labels_and_sizes_are_reported() -> Result<()> {
        let dir = tmp();
        fixture(dir.path(), 4, 2)?;
        let labels = dir.path().join("train-labels-idx1-ubyte.gz");
        write_idx(&labels, &[3], &[0, 1, 2])?;
        let msg = FashionMnist::load_any_count(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("4 labels") && msg.contains("found 3 labels"),
            "{msg}"
        );
        write_idx(&labels, &[4], &[0, 1, 2, 10])?;
        let msg = FashionMnist::load_any_count(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("label 10 at position 3"), "{msg}");
        write_idx(&labels, &[4], &[0, 1, 2, 3])?;
        write_idx(
            &dir.path().join("t10k-images-idx3-ubyte.gz"),
            &[2, 32, 32],
            &vec![0; 2 * 32 * 32],
        )?;
        let msg = FashionMnist::load_any_count(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("28×28") && msg.contains("[2, 32, 32]"),
            "{msg}"
        );
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz"))
            .map_err(|e| Error::io("rm", e))?;
        let msg = FashionMnist::load_any_count(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        Ok(())
    }
}
