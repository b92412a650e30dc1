//! Image bytes (JPEG or PNG, told apart by their content) to 8-bit RGB, decoding only the window
//! of the image that a transform will read.
//!
//! JPEGs go to libjpeg-turbo when it loads ([`crate::libjpeg`]: the fastest decoder measured
//! here, and the only one that can skip what lies outside a crop), otherwise, and for what it
//! refuses (CMYK, for one), to zune-jpeg; PNGs to the `image` crate. [`DecoderKind`] forces one.

use crate::libjpeg::Failure;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// An RGB image, rows top to bottom, pixels interleaved `r g b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb8 {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Rgb8 {
    /// Errors when `data` does not hold `width × height` pixels or the image is empty.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(Error::invalid(
                "RGB image",
                format!(
                    "{width}×{height} needs {} bytes, got {}",
                    width * height * 3,
                    data.len()
                ),
            ));
        }
        Ok(Rgb8 {
            width,
            height,
            data,
        })
    }

    /// Columns, in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows, in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The `3 × width × height` bytes, row after row.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The pixel bytes, without copying.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Row `y`'s `3 × width` bytes.
    pub fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.width * 3..(y + 1) * self.width * 3]
    }
}

/// A rectangle of whole pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width, in pixels.
    pub w: usize,
    /// Height, in pixels.
    pub h: usize,
}

impl Window {
    /// The whole of a `width × height` image.
    pub fn full(width: usize, height: usize) -> Self {
        Window {
            x: 0,
            y: 0,
            w: width,
            h: height,
        }
    }

    /// The window cut to a `width × height` image, never empty.
    pub fn clamped(self, width: usize, height: usize) -> Self {
        let x = self.x.min(width - 1);
        let y = self.y.min(height - 1);
        Window {
            x,
            y,
            w: self.w.clamp(1, width - x),
            h: self.h.clamp(1, height - y),
        }
    }
}

/// Which decoder to use for JPEGs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// libjpeg-turbo when it loads, else zune-jpeg.
    #[default]
    Auto,
    /// libjpeg-turbo only (an error where it does not load).
    LibjpegTurbo,
    /// zune-jpeg (pure Rust), always the whole image.
    Zune,
}

impl DecoderKind {
    /// What `Auto` resolves to on this machine, for logs and benchmark records.
    pub fn describe(self) -> String {
        match self {
            DecoderKind::Auto => match crate::libjpeg::get() {
                Ok(lib) => format!("libjpeg-turbo ({})", lib.path()),
                Err(_) => "zune-jpeg (libjpeg-turbo not found)".into(),
            },
            DecoderKind::LibjpegTurbo => "libjpeg-turbo".into(),
            DecoderKind::Zune => "zune-jpeg".into(),
        }
    }
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Decodes `bytes` (a JPEG or PNG; `name` is the file or sample it came from, for errors).
/// `window` is called once with the image's size and returns the part that is needed; the result
/// holds at least that part and says where it starts (the whole image for PNGs and zune-jpeg).
pub fn decode_window(
    bytes: &[u8],
    name: &Path,
    kind: DecoderKind,
    window: &mut dyn FnMut(usize, usize) -> Window,
) -> Result<(Rgb8, Window)> {
    let bad = |reason: String| Error::Image {
        path: name.to_path_buf(),
        reason,
    };
    if is_jpeg(bytes) {
        let libjpeg = match kind {
            DecoderKind::Zune => None,
            DecoderKind::Auto => crate::libjpeg::get().ok(),
            DecoderKind::LibjpegTurbo => Some(crate::libjpeg::get().map_err(|e| bad(e.into()))?),
        };
        if let Some(lib) = libjpeg {
            match lib.decode(bytes, window) {
                Ok(done) => return Ok(done),
                Err(Failure::Truncated(e)) => return Err(bad(e)),
                Err(Failure::Fatal(e)) if kind == DecoderKind::LibjpegTurbo => return Err(bad(e)),
                // libjpeg-turbo's fatal errors also cover what it cannot convert (CMYK to RGB);
                // zune-jpeg has the last word on those, and names the fault if it fails too.
                Err(Failure::Fatal(_)) => {}
            }
        }
        let img = decode_zune(bytes).map_err(bad)?;
        // The whole image is decoded; the caller still learns the size through `window`.
        let _ = window(img.width, img.height);
        let full = Window::full(img.width, img.height);
        return Ok((img, full));
    }
    let img = image::load_from_memory(bytes)
        .map_err(|e| bad(e.to_string()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let img = Rgb8::new(w, h, img.into_raw()).map_err(|e| bad(e.to_string()))?;
    let _ = window(w, h);
    Ok((img, Window::full(w, h)))
}

/// Decodes a whole image.
pub fn decode(bytes: &[u8], name: &Path, kind: DecoderKind) -> Result<Rgb8> {
    decode_window(bytes, name, kind, &mut |w, h| Window::full(w, h)).map(|(img, _)| img)
}

fn decode_zune(bytes: &[u8]) -> std::result::Result<Rgb8, String> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    // Strict: a truncated file is an error (as in PIL), not an image padded with grey. It also
    // refuses stray markers that libjpeg-turbo only warns about, which matters only where
    // libjpeg-turbo is missing.
    let opts = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(true);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(std::io::Cursor::new(bytes), opts);
    let data = dec.decode().map_err(|e| e.to_string())?;
    let (w, h) = dec
        .dimensions()
        .ok_or_else(|| "the decoder reported no image size".to_string())?;
    if dec.output_colorspace() != Some(ColorSpace::RGB) {
        return Err(format!("decoded to {:?}, not RGB", dec.output_colorspace()));
    }
    Rgb8::new(w, h, data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn decoders_agree_and_windows_cover_the_request() {
        let bytes = sample_jpeg(67, 45);
        let name = Path::new("sample.jpg");
        let zune = decode(&bytes, name, DecoderKind::Zune).unwrap();
        assert_eq!((zune.width(), zune.height()), (67, 45));
        let Ok(lib) = crate::libjpeg::get() else {
            eprintln!("libjpeg-turbo not found: only zune-jpeg checked");
            return;
        };
        eprintln!("checking {lib:?} against zune-jpeg");
        let turbo = decode(&bytes, name, DecoderKind::LibjpegTurbo).unwrap();
        assert_eq!((turbo.width(), turbo.height()), (67, 45));
        // Both use the exact integer IDCT and fancy upsampling; they may differ by rounding.
        let worst = zune
            .data()
            .iter()
            .zip(turbo.data())
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(worst <= 3, "libjpeg-turbo and zune-jpeg differ by {worst}");
        let want = Window {
            x: 21,
            y: 10,
            w: 30,
            h: 20,
        };
        let (part, got) =
            decode_window(&bytes, name, DecoderKind::LibjpegTurbo, &mut |_, _| want).unwrap();
        assert!(
            got.x <= want.x && got.x + got.w >= want.x + want.w,
            "{got:?}"
        );
        assert_eq!((got.y, got.h), (want.y, want.h));
        assert_eq!((part.width(), part.height()), (got.w, got.h));
        for y in 0..got.h {
            let a = &part.row(y);
            let b = &turbo.row(got.y + y)[got.x * 3..(got.x + got.w) * 3];
            let worst = a
                .iter()
                .zip(b)
                .map(|(p, q)| (*p as i32 - *q as i32).abs())
                .max();
            assert!(
                worst <= Some(2),
                "row {y}: windowed decode differs by {worst:?}"
            );
        }
    }

    #[test]
    fn corrupt_and_truncated_files_are_errors_naming_the_file() {
        let bytes = sample_jpeg(64, 64);
        let name = Path::new("bad/cat.jpg");
        for kind in [DecoderKind::Auto, DecoderKind::Zune] {
            for broken in [
                &bytes[..bytes.len() / 2],
                &bytes[..40],
                b"not an image".as_slice(),
            ] {
                let err = decode(broken, name, kind).unwrap_err().to_string();
                assert!(err.contains("bad/cat.jpg"), "{kind:?}: {err}");
            }
        }
    }
}
