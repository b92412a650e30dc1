//! Our own plain-HDF5 assembly layout, for tools that would rather not speak netCDF:
//!
//! ```text
//! /data                        float32 [presentation, neuroid, time_bin]
//! /presentation/stimulus_id    string  [presentation]
//! /presentation/object_name    string  [presentation]
//! /presentation/repetition     integer [presentation]   (≥ 0)
//! /neuroid/neuroid_id          string  [neuroid]
//! /neuroid/region              string  [neuroid]
//! /time_bin/start_ms           float   [time_bin]
//! /time_bin/end_ms             float   [time_bin]
//! attribute /format_version    uint32 = 1
//! ```
//!
//! Strings may be variable-length (what we write: UTF-8) or fixed-length; numbers any integer/float
//! type HDF5 converts. A 2-D `/data` (presentation × neuroid) is read as one bin, which then needs
//! one entry in each `/time_bin` list. The file is written to a temporary name and renamed.

use std::path::Path;

use hdf5::File;
use ndarray::{Array3, IxDyn};

use crate::assembly::{Assembly, Neuroids, Presentations, TimeBin};
use crate::error::{NeurofitError, Result};
use crate::h5io::{
    file_err, h5err, open_dataset, read_f32, read_f64, read_i64, read_strings, vlen_strings,
};
use crate::netcdf::tmp_path;
use crate::validate::check_shape;

/// The layout version written to `/format_version`; files of other versions are refused.
pub const FORMAT_VERSION: u32 = 1;

/// Read the assembly in `path` (the layout above). The file is tried in a child process first, so a
/// damaged file that crashes libhdf5 is an error here (`crash_probe`).
pub fn read(path: &Path) -> Result<Assembly> {
    crate::crash_probe::read_guarded(path, || read_here(path))
}

fn read_here(path: &Path) -> Result<Assembly> {
    let file = File::open(path).map_err(h5err(path, "opening as HDF5"))?;
    if let Ok(attr) = file.attr("format_version") {
        let v = attr
            .read_scalar::<u32>()
            .map_err(h5err(path, "format_version"))?;
        if v != FORMAT_VERSION {
            return Err(file_err(
                path,
                format!("format_version {v}; this reader knows {FORMAT_VERSION}"),
            ));
        }
    }
    let ds = open_dataset(&file, "data", path)?;
    let shape = ds.shape();
    let raw = read_f32(&ds, "data", path)?;
    let arr = ndarray::ArrayD::from_shape_vec(IxDyn(&shape), raw)
        .map_err(|e| file_err(path, format!("/data: {e}")))?;
    let data: Array3<f32> = match shape.len() {
        3 => arr.into_dimensionality(),
        2 => arr.insert_axis(ndarray::Axis(2)).into_dimensionality(),
        _ => {
            return Err(file_err(path, format!(
                "/data has shape {shape:?}; expected [presentation, neuroid] or [presentation, neuroid, time_bin]"
            )))
        }
    }
    .map_err(|e| file_err(path, format!("/data: {e}")))?;
    let group = |g: &str| -> Result<hdf5::Group> {
        if !file.link_exists(g) {
            return Err(file_err(path, format!("missing group /{g}")));
        }
        file.group(g).map_err(h5err(path, g))
    };
    let (pg, ng, tg) = (
        group("presentation")?,
        group("neuroid")?,
        group("time_bin")?,
    );
    let strings =
        |g: &hdf5::Group, name: &str| read_strings(&open_dataset(g, name, path)?, name, path);
    let repetition = read_i64(&open_dataset(&pg, "repetition", path)?, "repetition", path)?
        .into_iter()
        .map(|r| {
            u32::try_from(r).map_err(|_| {
                file_err(
                    path,
                    format!("/presentation/repetition holds {r}; expected 0 or more"),
                )
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let start = read_f64(&open_dataset(&tg, "start_ms", path)?, "start_ms", path)?;
    let end = read_f64(&open_dataset(&tg, "end_ms", path)?, "end_ms", path)?;
    if start.len() != end.len() {
        return Err(file_err(
            path,
            format!(
                "/time_bin/start_ms has {} entries, end_ms {}",
                start.len(),
                end.len()
            ),
        ));
    }
    let a = Assembly {
        data,
        presentations: Presentations {
            stimulus_id: strings(&pg, "stimulus_id")?,
            object_name: strings(&pg, "object_name")?,
            repetition,
        },
        neuroids: Neuroids {
            neuroid_id: strings(&ng, "neuroid_id")?,
            region: strings(&ng, "region")?,
        },
        bins: start
            .into_iter()
            .zip(end)
            .map(|(s, e)| TimeBin {
                start_ms: s,
                end_ms: e,
            })
            .collect(),
    };
    check_shape(&a).map_err(|e| file_err(path, e.to_string()))?;
    Ok(a)
}

/// Writes `a` to `path` in the layout above (atomically: a temporary file renamed over the target).
pub fn write(path: &Path, a: &Assembly) -> Result<()> {
    check_shape(a)?;
    let tmp = tmp_path(path);
    if let Err(e) = write_to(&tmp, a) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|error| NeurofitError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn write_to(tmp: &Path, a: &Assembly) -> Result<()> {
    let e = |what: &str| h5err(tmp, what);
    let file = File::create(tmp).map_err(e("creating"))?;
    file.new_attr::<u32>()
        .create("format_version")
        .and_then(|at| at.write_scalar(&FORMAT_VERSION))
        .map_err(e("format_version"))?;
    file.new_dataset_builder()
        .with_data(a.data.as_standard_layout().view())
        .create("data")
        .map_err(e("data"))?;
    let pg = file
        .create_group("presentation")
        .map_err(e("presentation"))?;
    let ng = file.create_group("neuroid").map_err(e("neuroid"))?;
    let tg = file.create_group("time_bin").map_err(e("time_bin"))?;
    for (g, name, values) in [
        (&pg, "stimulus_id", &a.presentations.stimulus_id),
        (&pg, "object_name", &a.presentations.object_name),
        (&ng, "neuroid_id", &a.neuroids.neuroid_id),
        (&ng, "region", &a.neuroids.region),
    ] {
        g.new_dataset_builder()
            .with_data(&vlen_strings(values, tmp)?)
            .create(name)
            .map_err(e(name))?;
    }
    pg.new_dataset_builder()
        .with_data(&a.presentations.repetition)
        .create("repetition")
        .map_err(e("repetition"))?;
    let starts: Vec<f64> = a.bins.iter().map(|b| b.start_ms).collect();
    let ends: Vec<f64> = a.bins.iter().map(|b| b.end_ms).collect();
    tg.new_dataset_builder()
        .with_data(&starts)
        .create("start_ms")
        .map_err(e("start_ms"))?;
    tg.new_dataset_builder()
        .with_data(&ends)
        .create("end_ms")
        .map_err(e("end_ms"))?;
    file.flush().map_err(e("flushing"))?;
    Ok(())
}
