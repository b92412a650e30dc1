//! Typed HDF5 access shared by the netCDF-4 and plain layouts: strings in any of the encodings files
//! use (variable-length UTF-8/ASCII, fixed-length, netCDF `char` arrays with a trailing string
//! dimension), numbers converted to the type we want, and errors that name the file and the variable.

use std::path::Path;

use hdf5::types::{FixedAscii, FixedUnicode, FloatSize, TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, Group};

use crate::error::{NeurofitError, Result};

/// Fixed-length strings are read through a buffer this long; longer ones are refused, not truncated.
const MAX_FIXED: usize = 1024;

pub(crate) fn file_err(path: &Path, reason: impl Into<String>) -> NeurofitError {
    NeurofitError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn h5err<'a>(path: &'a Path, what: &str) -> impl Fn(hdf5::Error) -> NeurofitError + 'a {
    let what = what.to_string();
    move |e| file_err(path, format!("{what}: {e}"))
}

pub(crate) fn open_dataset(group: &Group, name: &str, path: &Path) -> Result<Dataset> {
    if !group.link_exists(name) {
        return Err(file_err(path, format!("missing variable `{name}`")));
    }
    group
        .dataset(name)
        .map_err(h5err(path, &format!("opening `{name}`")))
}

/// A 1-D list of strings: `len` entries, as variable- or fixed-length strings, or a 2-D `char` array.
pub(crate) fn read_strings(ds: &Dataset, name: &str, path: &Path) -> Result<Vec<String>> {
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(h5err(path, &format!("type of `{name}`")))?;
    let shape = ds.shape();
    let err = h5err(path, name);
    let strings: Vec<String> = match (&desc, shape.len()) {
        (TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii, 1) => {
            // HDF5 converts ASCII to UTF-8 in memory; every ASCII string is valid UTF-8.
            ds.read_raw::<VarLenUnicode>()
                .map_err(err)?
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        }
        (TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n), 1 | 2) => {
            if *n > MAX_FIXED {
                return Err(file_err(path, format!("`{name}` holds fixed strings of {n} bytes; at most {MAX_FIXED} are supported")));
            }
            let flat: Vec<String> = if matches!(desc, TypeDescriptor::FixedAscii(_)) {
                ds.read_raw::<FixedAscii<MAX_FIXED>>()
                    .map_err(err)?
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect()
            } else {
                ds.read_raw::<FixedUnicode<MAX_FIXED>>()
                    .map_err(err)?
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect()
            };
            if shape.len() == 2 {
                // netCDF `char` variable: one string per row, one character per column.
                let width = shape[1].max(1);
                flat.chunks(width).map(|row| row.concat()).collect()
            } else {
                flat
            }
        }
        _ => {
            return Err(file_err(
                path,
                format!("`{name}` has type {desc} and shape {shape:?}; expected a list of strings"),
            ))
        }
    };
    Ok(strings
        .into_iter()
        .map(|s| s.trim_end_matches('\0').to_string())
        .collect())
}

/// A variable's values as float32, whatever its numeric type. HDF5 turns a float64 beyond
/// float32's range into an infinity, which the NaN policy would take for a missing trial and skip:
/// such a value is refused, naming where it is in the flattened variable.
pub(crate) fn read_f32(ds: &Dataset, name: &str, path: &Path) -> Result<Vec<f32>> {
    let what = format!("reading `{name}` as float32");
    let wide = matches!(
        ds.dtype().and_then(|t| t.to_descriptor()),
        Ok(TypeDescriptor::Float(FloatSize::U8))
    );
    if !wide {
        return ds.read_raw::<f32>().map_err(h5err(path, &what));
    }
    let v = ds.read_raw::<f64>().map_err(h5err(path, &what))?;
    if let Some((i, x)) = v
        .iter()
        .enumerate()
        .find(|(_, x)| x.is_finite() && (**x as f32).is_infinite())
    {
        return Err(file_err(
            path,
            format!("`{name}` holds {x:e} at flat index {i}, beyond float32's range"),
        ));
    }
    Ok(v.into_iter().map(|x| x as f32).collect())
}

/// A 1-D list of numbers, converted by HDF5 from whatever integer or float type the file uses.
pub(crate) fn read_f64(ds: &Dataset, name: &str, path: &Path) -> Result<Vec<f64>> {
    check_numeric(ds, name, path)?;
    ds.read_raw::<f64>().map_err(h5err(path, name))
}

pub(crate) fn read_i64(ds: &Dataset, name: &str, path: &Path) -> Result<Vec<i64>> {
    let desc = check_numeric(ds, name, path)?;
    if matches!(desc, TypeDescriptor::Float(_)) {
        let v = ds.read_raw::<f64>().map_err(h5err(path, name))?;
        return v
            .into_iter()
            .map(|x| {
                if x.fract() == 0.0 && x.is_finite() {
                    Ok(x as i64)
                } else {
                    Err(file_err(
                        path,
                        format!("`{name}` holds {x}; expected whole numbers"),
                    ))
                }
            })
            .collect();
    }
    ds.read_raw::<i64>().map_err(h5err(path, name))
}

fn check_numeric(ds: &Dataset, name: &str, path: &Path) -> Result<TypeDescriptor> {
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(h5err(path, &format!("type of `{name}`")))?;
    match desc {
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_) => {
            Ok(desc)
        }
        other => Err(file_err(
            path,
            format!("`{name}` has type {other}; expected numbers"),
        )),
    }
}

pub(crate) fn vlen_strings(values: &[String], path: &Path) -> Result<Vec<VarLenUnicode>> {
    values
        .iter()
        .map(|s| {
            s.parse::<VarLenUnicode>()
                .map_err(|e| file_err(path, format!("string {s:?} cannot be stored: {e}")))
        })
        .collect()
}
