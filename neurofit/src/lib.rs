//! `neurofit`: compare model activity over time with neural recordings and behaviour (SPEC §7, §8).
//!
//! Entry point: [`score`] (features × recordings × [`FitConfig`] → [`Report`]). Recordings come from
//! [`netcdf`] (Brain-Score / xarray netCDF-4) or [`h5plain`] (our documented plain HDF5 layout),
//! stimuli from [`stimulus_set`] (brought to the model's input size by `stimulus_images`).
//!
//! - [`ost`]: object solution times (Kar et al. 2019);
//! - with the default feature `models`: `insilico` (synthetic V4/IT recordings with a known ceiling
//!   over the HvM-like stimuli), `extract` (the workspace's models' features per area per step,
//!   optionally PCA-compressed), `stimulus_images` and the `neurofit` binary.
//!
//! Without default features (`neurofit = { default-features = false }`) the crate is the scoring
//! library alone: it scores any features — a `[stimulus, feature, step]` array per area from any
//! model in any framework ([`ModelFeatures`]) — against recordings, with no tensor engine, model or
//! training code in its dependency tree. `examples/score_own_recordings.rs` does exactly that for
//! your own files (a netCDF-4 or plain-HDF5 assembly and a features CSV):
//! `cargo run -p neurofit --no-default-features --example score_own_recordings -- RECORDINGS
//! FEATURES.csv`; without arguments it scores planted data and checks the answer.
//!
//! The fits' large products run on [`linalg`] (the `gemm` crate, its kernel chosen from the CPU at
//! run time), not on the system BLAS.
//!
//! System packages (Debian names) this crate builds against: `libopenblas-dev` (LAPACK for
//! `ndarray-linalg`), `libhdf5-dev` (HDF5 1.10+ for `hdf5-metno`), `pkg-config`.
//!
//! The regressions on their own: fit responses `[stimulus, neuroid]` from features `[stimulus,
//! feature]` on some stimuli and check the predictions on the others (what [`score`] does per
//! split, area and time bin):
//!
//! ```
//! use ndarray::{s, Array2};
//! use neurofit::{stats::pearson_columns, Regression};
//! use seeded_rng::Rng;
//!
//! // Three neuroids driven by two of eight features, plus noise; 60 stimuli to fit, 20 to test.
//! let mut rng = Rng::new(1);
//! let x = Array2::from_shape_fn((80, 8), |_| rng.normal());
//! let y = Array2::from_shape_fn((80, 3), |(i, j)| {
//!     (j as f64 + 1.0) * x[[i, j % 2]] + 0.1 * rng.normal()
//! });
//! let ridge = Regression::Ridge { alphas: vec![0.1, 1.0, 10.0] };
//! ridge.validate()?;
//! let (fit, test) = (s![..60, ..], s![60.., ..]);
//! let predicted = ridge.fit_predict(x.slice(fit), y.slice(fit), x.slice(test))?;
//! let r = pearson_columns(predicted.view(), y.slice(test));
//! assert!(r.iter().all(|r| *r > 0.9), "{r:?}");
//! # Ok::<(), neurofit::NeurofitError>(())
//! ```
#![warn(missing_docs)]

#[cfg(feature = "models")]
mod alloc;
pub mod assembly;
pub mod ceiling;
mod crash_probe;
pub mod cv;
pub mod error;
#[cfg(feature = "models")]
pub mod extract;
pub mod features;
pub mod fit;
mod h5io;
pub mod h5plain;
#[cfg(feature = "models")]
pub mod insilico;
pub mod linalg;
pub mod netcdf;
pub mod ost;
pub mod regression;
pub mod report;
pub mod stats;
#[cfg(feature = "models")]
pub mod stimulus_images;
pub mod stimulus_set;
pub mod temporal;
pub mod validate;

pub use assembly::{Assembly, Neuroids, Presentations, TimeBin};
pub use error::{NeurofitError, Result};
#[cfg(feature = "models")]
pub use extract::{extract_features, ExtractError, ExtractOptions, Reduction};
pub use features::{AreaFeatures, ModelFeatures};
pub use fit::{score, FitConfig};
#[cfg(feature = "models")]
pub use insilico::{InsilicoConfig, InsilicoError, InsilicoRecording, Region};
pub use ost::{object_solution_times, OstError, OstOptions, OstReport};
pub use regression::Regression;
pub use report::Report;
pub use temporal::StepToBin;
