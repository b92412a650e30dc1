//! The ConvRNN adapter: what the generic search needs to search over ConvRNN architectures.
//! [`RgcSpace`] is the space (which areas get a searched general-RGC cell, which of its knobs are
//! searched, which feedback edges are candidates, the training hyperparameters); [`ModelSpace`]
//! binds it to the base [`ModelSpec`] it modifies and is what a study stores; [`median_spec`]
//! turns a study's best trials into one model (the paper's "median model").
//!
//! ```no_run
//! use search::convrnn::{ModelStudy, ModelStudyConfig};
//! let storage = search::storage_from_url("sqlite:///tmp/study.db")?;
//! let study = ModelStudy::open(storage, "demo", ModelStudyConfig::default_for("compact_rgc", 0)?)?;
//! study.run_worker(10, &mut |trial| {
//!     let (spec, hparams) = trial.model()?;
//!     // … train `spec` at `hparams.lr`, report each epoch's validation accuracy …
//!     Ok(0.5)
//! })?;
//! # Ok::<(), search::SearchError>(())
//! ```

mod space;

pub use space::{CellKnob, KnobDomain, RgcSpace, TrainHparams};

use crate::median::median_params;
use crate::params::{ParamDef, Params};
use crate::space::Space;
use crate::store::{Direction, TrialRecord};
use crate::study::{Study, StudyConfig, TrialHandle};
use crate::SearchError;
use serde::{Deserialize, Serialize};
use topology::ModelSpec;

/// An architecture space bound to its base model: what a ConvRNN study searches and stores.
/// Serialised as `{"space": …, "base": …}` inside the study's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpace {
    /// The knobs, edges and hyperparameters searched.
    #[serde(rename = "space")]
    pub rgc: RgcSpace,
    /// The model the space modifies.
    pub base: ModelSpec,
}

impl ModelSpace {
    /// The default space for a zoo `base` preset ([`RgcSpace::default_for`]).
    pub fn default_for(base: &str) -> Result<ModelSpace, SearchError> {
        Ok(ModelSpace {
            rgc: RgcSpace::default_for(base)?,
            base: topology::zoo::get_or_err(base).map_err(SearchError::Space)?,
        })
    }

    /// The model and hyperparameters that `params` select ([`RgcSpace::apply`] on the base).
    pub fn apply(&self, params: &Params) -> Result<(ModelSpec, TrainHparams), SearchError> {
        self.rgc.apply(params, &self.base)
    }
}

impl Space for ModelSpace {
    fn param_defs(&self) -> Vec<ParamDef> {
        self.rgc.param_defs()
    }
    /// The space's own rules and that its areas and edges exist in the base.
    fn check(&self) -> Result<(), SearchError> {
        self.rgc.check_against(&self.base)
    }
    fn base_name(&self) -> String {
        self.base.name.clone()
    }
}

/// A study over ConvRNN architectures.
pub type ModelStudy = Study<ModelSpace>;
/// The configuration of a [`ModelStudy`].
pub type ModelStudyConfig = StudyConfig<ModelSpace>;
/// The objective's view of a trial of a [`ModelStudy`].
pub type ModelTrial<'s> = TrialHandle<'s, ModelSpace>;

impl StudyConfig<ModelSpace> {
    /// The default space for a zoo `base` preset, TPE and the median pruner.
    pub fn default_for(base: &str, seed: u64) -> Result<ModelStudyConfig, SearchError> {
        Ok(StudyConfig {
            seed,
            ..StudyConfig::new(ModelSpace::default_for(base)?)
        })
    }
}

impl TrialHandle<'_, ModelSpace> {
    /// The model and hyperparameters this trial's parameters select.
    pub fn model(&self) -> Result<(ModelSpec, TrainHparams), SearchError> {
        self.config().space.apply(self.params())
    }
}

impl Study<ModelSpace> {
    /// The median model over the study's top `top_k` complete trials (see [`median_spec`]).
    pub fn median(&self, top_k: usize) -> Result<MedianModel, SearchError> {
        let c = self.config();
        median_spec(
            &self.trials()?,
            top_k,
            &c.space.rgc,
            &c.space.base,
            c.direction,
        )
    }
}

/// The median model and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedianModel {
    /// The model, named `<base>_median_top<K>`.
    pub spec: ModelSpec,
    /// The median learning rate and weight decay.
    pub hparams: TrainHparams,
    /// The median parameters it was built from.
    pub params: Params,
    /// Numbers of the trials it summarises, best first.
    pub trials: Vec<u64>,
}

/// The median model over `base`: [`median_params`] of the top `top_k` complete trials, applied.
pub fn median_spec(
    trials: &[TrialRecord],
    top_k: usize,
    space: &RgcSpace,
    base: &ModelSpec,
    direction: Direction,
) -> Result<MedianModel, SearchError> {
    let (params, used) = median_params(trials, top_k, space, direction)?;
    let (mut spec, hparams) = space.apply(&params, base)?;
    spec.name = format!("{}_median_top{}", base.name, used.len());
    Ok(MedianModel {
        spec,
        hparams,
        params,
        trials: used,
    })
}
