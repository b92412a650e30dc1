//! Brain-Score / xarray netCDF-4 assemblies (HDF5 underneath), read and written.
//!
//! Reading: the data variable is the root dataset named in the call, else the only one that is neither
//! a dimension scale nor a known coordinate and carries xarray's `coordinates` attribute (or is
//! `__xarray_dataarray_variable__`). Its dimensions come from its `DIMENSION_LIST` references and must
//! be `presentation`, `neuroid` and optionally `time_bin`, in any order. Coordinates: `stimulus_id`,
//! `object_name`, `repetition` on presentation; `neuroid_id`, `region` on neuroid; `time_bin_start`,
//! `time_bin_end` (ms) on time_bin. Strings may be variable-length, fixed-length, or netCDF `char`
//! arrays. A file without a `time_bin` dimension becomes one bin: scalar `time_bin_start`/
//! `time_bin_end` variables when present, else [`DEFAULT_SINGLE_BIN`] (Brain-Score's usual 70–170 ms
//! IT window).
//!
//! Writing produces what netCDF-C writes, so xarray opens it with either engine: one dimension-scale
//! dataset per dimension (`CLASS`, `NAME`, `_Netcdf4Dimid`, `REFERENCE_LIST`), each variable with its
//! `DIMENSION_LIST` and `_Netcdf4Coordinates`, strings as variable-length UTF-8, and the data
//! variable's `coordinates` attribute naming the coordinates.

use std::path::Path;

use hdf5::types::{FixedAscii, VarLenArray, VarLenUnicode};
use hdf5::{Dataset, File, H5Type, ObjectReference1, ReferencedObject};
use ndarray::{Array3, ArrayD, IxDyn};

use crate::assembly::{Assembly, Neuroids, Presentations, TimeBin};
use crate::error::{NeurofitError, Result};
use crate::h5io::{
    file_err, h5err, open_dataset, read_f32, read_f64, read_i64, read_strings, vlen_strings,
};
use crate::validate::check_shape;

/// Bin assumed for a recording without a time dimension and without time-bin variables.
pub const DEFAULT_SINGLE_BIN: TimeBin = TimeBin {
    start_ms: 70.0,
    end_ms: 170.0,
};

/// Data variable name xarray gives an unnamed DataArray.
pub const XARRAY_UNNAMED: &str = "__xarray_dataarray_variable__";

const COORDS: [&str; 7] = [
    "stimulus_id",
    "object_name",
    "repetition",
    "neuroid_id",
    "region",
    "time_bin_start",
    "time_bin_end",
];
const DIMS: [&str; 3] = ["presentation", "neuroid", "time_bin"];

/// Read the assembly in `path`, finding its data variable (see the module doc).
pub fn read(path: &Path) -> Result<Assembly> {
    read_variable(path, None)
}

/// Read the assembly whose data variable is `variable` (or the one found, when `None`). The file is
/// tried in a child process first, so a damaged file that crashes libhdf5 is an error here
/// (`crash_probe`).
pub fn read_variable(path: &Path, variable: Option<&str>) -> Result<Assembly> {
    crate::crash_probe::read_guarded(path, || read_variable_here(path, variable))
}

fn read_variable_here(path: &Path, variable: Option<&str>) -> Result<Assembly> {
    let file = File::open(path).map_err(h5err(path, "opening as HDF5/netCDF-4"))?;
    let name = match variable {
        Some(v) => v.to_string(),
        None => find_data_variable(&file, path)?,
    };
    let ds = open_dataset(&file, &name, path)?;
    let shape = ds.shape();
    let dims = dimension_names(&file, &ds, path)?.unwrap_or_else(|| {
        // Without dimension scales, assume the documented order.
        DIMS[..shape.len().min(3)]
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let axis = |d: &str| dims.iter().position(|x| x == d);
    let (Some(p_ax), Some(n_ax)) = (axis("presentation"), axis("neuroid")) else {
        return Err(file_err(path, format!(
            "data variable `{name}` has dimensions {dims:?}; expected presentation × neuroid (× time_bin)"
        )));
    };
    let t_ax = axis("time_bin");
    if dims.len() != 2 + t_ax.is_some() as usize || shape.len() != dims.len() {
        return Err(file_err(path, format!(
            "data variable `{name}` has dimensions {dims:?} (shape {shape:?}); expected presentation × neuroid (× time_bin) and nothing else"
        )));
    }
    let raw = read_f32(&ds, &name, path)?;
    let arr = ArrayD::from_shape_vec(IxDyn(&shape), raw)
        .map_err(|e| file_err(path, format!("`{name}`: {e}")))?;
    let mut order = vec![p_ax, n_ax];
    order.extend(t_ax);
    let mut arr = arr.permuted_axes(IxDyn(&order));
    if t_ax.is_none() {
        arr = arr.insert_axis(ndarray::Axis(2));
    }
    let data: Array3<f32> = arr
        .as_standard_layout()
        .into_owned()
        .into_dimensionality()
        .map_err(|e| file_err(path, format!("`{name}`: {e}")))?;

    let coord_str =
        |c: &str| -> Result<Vec<String>> { read_strings(&open_coord(&file, c, path)?, c, path) };
    let repetition = read_i64(&open_coord(&file, "repetition", path)?, "repetition", path)?
        .into_iter()
        .map(|r| {
            u32::try_from(r)
                .map_err(|_| file_err(path, format!("`repetition` holds {r}; expected 0 or more")))
        })
        .collect::<Result<Vec<u32>>>()?;
    let presentations = Presentations {
        stimulus_id: coord_str("stimulus_id")?,
        object_name: coord_str("object_name")?,
        repetition,
    };
    let neuroids = Neuroids {
        neuroid_id: coord_str("neuroid_id")?,
        region: coord_str("region")?,
    };
    let bins =
        if t_ax.is_some() {
            let start = read_f64(
                &open_coord(&file, "time_bin_start", path)?,
                "time_bin_start",
                path,
            )?;
            let end = read_f64(
                &open_coord(&file, "time_bin_end", path)?,
                "time_bin_end",
                path,
            )?;
            if start.len() != end.len() {
                return Err(file_err(
                    path,
                    format!(
                        "`time_bin_start` has {} entries but `time_bin_end` has {}",
                        start.len(),
                        end.len()
                    ),
                ));
            }
            start
                .into_iter()
                .zip(end)
                .map(|(s, e)| TimeBin {
                    start_ms: s,
                    end_ms: e,
                })
                .collect()
        } else if file.link_exists("time_bin_start") && file.link_exists("time_bin_end") {
            let s = read_f64(
                &open_dataset(&file, "time_bin_start", path)?,
                "time_bin_start",
                path,
            )?;
            let e = read_f64(
                &open_dataset(&file, "time_bin_end", path)?,
                "time_bin_end",
                path,
            )?;
            match (s.as_slice(), e.as_slice()) {
                ([s], [e]) => vec![TimeBin {
                    start_ms: *s,
                    end_ms: *e,
                }],
                _ => return Err(file_err(
                    path,
                    "without a time_bin dimension, `time_bin_start`/`time_bin_end` must be scalars",
                )),
            }
        } else {
            vec![DEFAULT_SINGLE_BIN]
        };
    let a = Assembly {
        data,
        presentations,
        neuroids,
        bins,
    };
    check_shape(&a).map_err(|e| file_err(path, e.to_string()))?;
    Ok(a)
}

fn open_coord(file: &File, name: &str, path: &Path) -> Result<Dataset> {
    if !file.link_exists(name) {
        return Err(file_err(path, format!("missing coordinate `{name}`")));
    }
    open_dataset(file, name, path)
}

fn is_dimension_scale(ds: &Dataset) -> bool {
    ds.attr("CLASS")
        .and_then(|a| a.read_scalar::<FixedAscii<64>>())
        .map(|s| s.as_str().trim_end_matches('\0') == "DIMENSION_SCALE")
        .unwrap_or(false)
}

fn find_data_variable(file: &File, path: &Path) -> Result<String> {
    let names = file
        .member_names()
        .map_err(h5err(path, "listing variables"))?;
    if names.iter().any(|n| n == XARRAY_UNNAMED) {
        return Ok(XARRAY_UNNAMED.to_string());
    }
    let mut candidates = Vec::new();
    for n in &names {
        if COORDS.contains(&n.as_str()) || DIMS.contains(&n.as_str()) {
            continue;
        }
        let Ok(ds) = file.dataset(n) else { continue };
        if is_dimension_scale(&ds) || ds.ndim() < 2 {
            continue;
        }
        if ds.attr("coordinates").is_ok() {
            candidates.push(n.clone());
        }
    }
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(file_err(path, format!(
            "no data variable (a presentation × neuroid [× time_bin] array with a `coordinates` attribute) among {names:?}"
        ))),
        many => Err(file_err(path, format!("several data variables {many:?}; name the one to read"))),
    }
}

/// Names of the dimension scales attached to `ds`, or `None` when it has no `DIMENSION_LIST`.
fn dimension_names(file: &File, ds: &Dataset, path: &Path) -> Result<Option<Vec<String>>> {
    let Ok(attr) = ds.attr("DIMENSION_LIST") else {
        return Ok(None);
    };
    let lists = attr
        .read_raw::<VarLenArray<ObjectReference1>>()
        .map_err(h5err(path, "reading DIMENSION_LIST"))?;
    let mut names = Vec::with_capacity(lists.len());
    for refs in &lists {
        let Some(r) = refs.as_slice().first() else {
            return Err(file_err(
                path,
                "a DIMENSION_LIST entry has no dimension scale attached",
            ));
        };
        match file
            .dereference(r)
            .map_err(h5err(path, "following a DIMENSION_LIST reference"))?
        {
            ReferencedObject::Dataset(d) => {
                names.push(d.name().trim_start_matches('/').to_string())
            }
            _ => {
                return Err(file_err(
                    path,
                    "a DIMENSION_LIST reference does not point to a dataset",
                ))
            }
        }
    }
    Ok(Some(names))
}

/// A scalar attribute holding a null-terminated fixed-length string. The HDF5 dimension-scale API
/// (which netCDF-C uses to recognise dimensions) accepts only that padding for `CLASS`, and
/// `hdf5-metno` writes fixed strings null-padded, hence the raw calls.
fn write_nullterm_attr(ds: &Dataset, name: &str, value: &str, path: &Path) -> Result<()> {
    use hdf5_sys::{h5a, h5p, h5s, h5t};
    let cname = std::ffi::CString::new(name).map_err(|x| file_err(path, x.to_string()))?;
    let cval = std::ffi::CString::new(value).map_err(|x| file_err(path, x.to_string()))?;
    let status = hdf5::sync::sync(|| {
        // SAFETY: every id is checked before use and closed once; `cval` outlives the write and holds
        // exactly `size` bytes including its terminating NUL.
        unsafe {
            let t = h5t::H5Tcopy(*h5t::H5T_C_S1);
            if t < 0 {
                return -1;
            }
            let mut rc = h5t::H5Tset_size(t, value.len() + 1);
            rc |= h5t::H5Tset_strpad(t, h5t::H5T_str_t::H5T_STR_NULLTERM);
            let s = h5s::H5Screate(h5s::H5S_class_t::H5S_SCALAR);
            if s >= 0 && rc >= 0 {
                let a = h5a::H5Acreate2(
                    ds.id(),
                    cname.as_ptr(),
                    t,
                    s,
                    h5p::H5P_DEFAULT,
                    h5p::H5P_DEFAULT,
                );
                if a >= 0 {
                    rc |= h5a::H5Awrite(a, t, cval.as_ptr().cast());
                    rc |= h5a::H5Aclose(a);
                } else {
                    rc = -1;
                }
            }
            if s >= 0 {
                h5s::H5Sclose(s);
            } else {
                rc = -1;
            }
            h5t::H5Tclose(t);
            rc
        }
    });
    if status < 0 {
        return Err(file_err(
            path,
            format!("writing attribute `{name}` of `{}`", ds.name()),
        ));
    }
    Ok(())
}

/// `REFERENCE_LIST` entry of a dimension scale: which variable uses it, as which of its dimensions.
#[derive(H5Type, Clone, Copy)]
#[repr(C)]
struct DimUse {
    dataset: ObjectReference1,
    dimension: u32,
}

/// Write `a` as a netCDF-4 file xarray opens as a DataArray named `variable`, atomically.
pub fn write(path: &Path, a: &Assembly, variable: &str) -> Result<()> {
    check_shape(a)?;
    if COORDS.contains(&variable)
        || DIMS.contains(&variable)
        || variable.is_empty()
        || variable.contains('/')
    {
        return Err(NeurofitError::Config {
            field: "variable",
            reason: format!(
                "`{variable}` clashes with a coordinate or dimension name or is not a valid name"
            ),
        });
    }
    let tmp = tmp_path(path);
    let result = write_to(&tmp, a, variable);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|error| NeurofitError::Io {
        path: path.to_path_buf(),
        error,
    })
}

pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

fn write_to(tmp: &Path, a: &Assembly, variable: &str) -> Result<()> {
    let e = |what: &str| h5err(tmp, what);
    let file = File::create(tmp).map_err(e("creating"))?;
    let (p, n, t) = a.data.dim();
    let lens = [p, n, t];
    let mut scales = Vec::with_capacity(3);
    for (id, (dim, len)) in DIMS.iter().zip(lens).enumerate() {
        let ds = file
            .new_dataset::<f32>()
            .shape(len)
            .create(*dim)
            .map_err(e(dim))?;
        write_nullterm_attr(&ds, "CLASS", "DIMENSION_SCALE", tmp)?;
        let label = format!("This is a netCDF dimension but not a netCDF variable.{len:>10}");
        write_nullterm_attr(&ds, "NAME", &label, tmp)?;
        ds.new_attr::<i32>()
            .create("_Netcdf4Dimid")
            .and_then(|at| at.write_scalar(&(id as i32)))
            .map_err(e("_Netcdf4Dimid"))?;
        scales.push(ds);
    }
    // (variable name, its dimension ids)
    let mut uses: Vec<(String, Vec<usize>)> = Vec::new();
    let vlen = |values: &[String]| vlen_strings(values, tmp);
    let pres = &a.presentations;
    let strings: [(&str, &Vec<String>, usize); 4] = [
        ("stimulus_id", &pres.stimulus_id, 0),
        ("object_name", &pres.object_name, 0),
        ("neuroid_id", &a.neuroids.neuroid_id, 1),
        ("region", &a.neuroids.region, 1),
    ];
    for (name, values, dim) in strings {
        file.new_dataset_builder()
            .with_data(&vlen(values)?)
            .create(name)
            .map_err(e(name))?;
        uses.push((name.to_string(), vec![dim]));
    }
    let reps: Vec<i64> = pres.repetition.iter().map(|&r| r as i64).collect();
    file.new_dataset_builder()
        .with_data(&reps)
        .create("repetition")
        .map_err(e("repetition"))?;
    uses.push(("repetition".into(), vec![0]));
    let starts: Vec<f64> = a.bins.iter().map(|b| b.start_ms).collect();
    let ends: Vec<f64> = a.bins.iter().map(|b| b.end_ms).collect();
    file.new_dataset_builder()
        .with_data(&starts)
        .create("time_bin_start")
        .map_err(e("time_bin_start"))?;
    file.new_dataset_builder()
        .with_data(&ends)
        .create("time_bin_end")
        .map_err(e("time_bin_end"))?;
    uses.push(("time_bin_start".into(), vec![2]));
    uses.push(("time_bin_end".into(), vec![2]));
    let data = file
        .new_dataset_builder()
        .with_data(a.data.as_standard_layout().view())
        .create(variable)
        .map_err(e(variable))?;
    let coords = "stimulus_id object_name repetition neuroid_id region time_bin_start time_bin_end";
    let coords_attr: VarLenUnicode = coords
        .parse()
        .map_err(|x: hdf5::types::StringError| file_err(tmp, x.to_string()))?;
    data.new_attr::<VarLenUnicode>()
        .create("coordinates")
        .and_then(|at| at.write_scalar(&coords_attr))
        .map_err(e("coordinates"))?;
    uses.push((variable.to_string(), vec![0, 1, 2]));

    // Link every variable to its dimension scales, both ways.
    let scale_refs: Vec<ObjectReference1> = DIMS
        .iter()
        .map(|d| file.reference::<ObjectReference1>(d))
        .collect::<hdf5::Result<_>>()
        .map_err(e("referencing dimensions"))?;
    let mut back: Vec<Vec<DimUse>> = vec![Vec::new(); 3];
    for (name, dims) in &uses {
        let ds = file.dataset(name).map_err(e(name))?;
        let list: Vec<VarLenArray<ObjectReference1>> = dims
            .iter()
            .map(|&d| VarLenArray::from_slice(&[scale_refs[d]]))
            .collect();
        ds.new_attr::<VarLenArray<ObjectReference1>>()
            .shape(list.len())
            .create("DIMENSION_LIST")
            .and_then(|at| at.write_raw(&list))
            .map_err(e("DIMENSION_LIST"))?;
        let ids: Vec<i32> = dims.iter().map(|&d| d as i32).collect();
        ds.new_attr::<i32>()
            .shape(ids.len())
            .create("_Netcdf4Coordinates")
            .and_then(|at| at.write_raw(&ids))
            .map_err(e("_Netcdf4Coordinates"))?;
        let me = file.reference::<ObjectReference1>(name).map_err(e(name))?;
        for (k, &d) in dims.iter().enumerate() {
            back[d].push(DimUse {
                dataset: me,
                dimension: k as u32,
            });
        }
    }
    for (ds, list) in scales.iter().zip(&back) {
        ds.new_attr::<DimUse>()
            .shape(list.len())
            .create("REFERENCE_LIST")
            .and_then(|at| at.write_raw(list))
            .map_err(e("REFERENCE_LIST"))?;
    }
    file.flush().map_err(e("flushing"))?;
    Ok(())
}
