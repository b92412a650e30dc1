//! What a study searches. A [`Space`] flattens into named parameters ([`ParamDef`]s) in sampling
//! order; a trial's parameters are drawn one by one, each only when its condition holds, by a
//! [`ParamSampler`] (random or TPE). [`ParamSpace`] is the plain list form, for objectives of your
//! own; the ConvRNN architecture space (`convrnn::ModelSpace`) generates its list from a base
//! model.

use crate::params::{Condition, Domain, ParamDef, ParamValue, Params};
use crate::SearchError;
use serde::{Deserialize, Serialize};

/// Draws one parameter value given those drawn so far for the same trial.
pub trait ParamSampler {
    /// A value in `def.domain`.
    fn sample(&mut self, def: &ParamDef, so_far: &Params) -> ParamValue;
}

/// A search space: the parameters a trial samples. A study stores its space with it (serde), so
/// the space must round-trip through JSON.
pub trait Space {
    /// The parameters in sampling order: a parameter's condition reads only parameters listed
    /// before it.
    fn param_defs(&self) -> Vec<ParamDef>;

    /// Checks the space before a study uses it. The default checks the flattened parameters
    /// ([`check_defs`]).
    fn check(&self) -> Result<(), SearchError> {
        check_defs(&self.param_defs())
    }

    /// The name of what the space varies (a base model, a pipeline…); reports carry it. Empty by
    /// default.
    fn base_name(&self) -> String {
        String::new()
    }

    /// Draws one configuration: every parameter whose condition holds, in order.
    fn sample(&self, sampler: &mut dyn ParamSampler) -> Params {
        let mut params = Params::new();
        for def in self.param_defs() {
            if def.condition.holds(&params) {
                let v = sampler.sample(&def, &params);
                params.insert(def.name, v);
            }
        }
        params
    }

    /// Checks `params` against the space: every present parameter is defined, in its domain and
    /// with its condition true; every parameter whose condition holds is present.
    fn check_params(&self, params: &Params) -> Result<(), SearchError> {
        let defs = self.param_defs();
        for name in params.keys() {
            if defs.iter().all(|d| &d.name != name) {
                return Err(SearchError::Params(format!(
                    "parameter `{name}` is not part of the search space"
                )));
            }
        }
        for d in &defs {
            match (d.condition.holds(params), params.get(&d.name)) {
                (true, None) => {
                    return Err(SearchError::Params(format!(
                        "parameter `{}` is missing (its condition holds)",
                        d.name
                    )))
                }
                (false, Some(_)) => {
                    return Err(SearchError::Params(format!(
                        "parameter `{}` is present although its condition {:?} does not hold",
                        d.name, d.condition
                    )))
                }
                (true, Some(v)) if !d.domain.contains(v) => {
                    return Err(SearchError::Params(format!(
                        "parameter `{}` = {v:?} is outside its domain {:?}",
                        d.name, d.domain
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Checks a flattened space: every domain is well-formed, no name repeats, and every condition
/// reads only parameters defined before it.
pub fn check_defs(defs: &[ParamDef]) -> Result<(), SearchError> {
    if defs.is_empty() {
        return Err(SearchError::Space(
            "the space has no parameter to search".into(),
        ));
    }
    for (i, d) in defs.iter().enumerate() {
        d.domain.check(&d.name).map_err(SearchError::Space)?;
        if defs[..i].iter().any(|e| e.name == d.name) {
            return Err(SearchError::Space(format!(
                "parameter `{}` is defined twice",
                d.name
            )));
        }
        for parent in d.condition.parents() {
            if defs[..i].iter().all(|e| e.name != parent) {
                return Err(SearchError::Space(format!(
                    "parameter `{}` depends on `{parent}`, which is not defined before it",
                    d.name
                )));
            }
        }
    }
    Ok(())
}

/// A space given as its list of parameters, in sampling order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamSpace {
    /// The parameters, parents before the parameters whose conditions read them.
    pub params: Vec<ParamDef>,
}

impl ParamSpace {
    /// An empty space.
    pub fn new() -> ParamSpace {
        ParamSpace::default()
    }

    /// Adds a parameter that always exists.
    pub fn with(self, name: impl Into<String>, domain: Domain) -> ParamSpace {
        self.with_if(name, domain, Condition::Always)
    }

    /// Adds a parameter that exists only when `condition` holds.
    pub fn with_if(
        mut self,
        name: impl Into<String>,
        domain: Domain,
        condition: Condition,
    ) -> ParamSpace {
        self.params.push(ParamDef {
            name: name.into(),
            domain,
            condition,
        });
        self
    }
}

impl Space for ParamSpace {
    fn param_defs(&self) -> Vec<ParamDef> {
        self.params.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpe::RandomSampler;

    fn space() -> ParamSpace {
        ParamSpace::new()
            .with(
                "lr",
                Domain::Float {
                    low: 1e-4,
                    high: 1e-1,
                    log: true,
                },
            )
            .with("momentum", Domain::Bool)
            .with_if(
                "beta",
                Domain::Float {
                    low: 0.5,
                    high: 0.99,
                    log: false,
                },
                Condition::IsTrue {
                    param: "momentum".into(),
                },
            )
    }

    #[test]
    fn a_conditional_parameter_exists_only_with_its_parent() {
        let s = space();
        s.check().unwrap();
        let mut r = RandomSampler::new(4);
        let (mut with, mut without) = (0, 0);
        for _ in 0..50 {
            let p = s.sample(&mut r);
            s.check_params(&p).unwrap();
            let on = p["momentum"].as_bool().unwrap();
            assert_eq!(p.contains_key("beta"), on, "{p:?}");
            if on {
                with += 1;
            } else {
                without += 1;
            }
        }
        assert!(with > 0 && without > 0);
    }

    #[test]
    fn bad_spaces_and_parameters_are_named() {
        let e = ParamSpace::new()
            .with_if(
                "beta",
                Domain::Bool,
                Condition::IsTrue {
                    param: "momentum".into(),
                },
            )
            .with("momentum", Domain::Bool)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`beta` depends on `momentum`"), "{e}");
        let e = space()
            .with("lr", Domain::Bool)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`lr` is defined twice"), "{e}");
        assert!(ParamSpace::new().check().is_err());
        let mut p = space().sample(&mut RandomSampler::new(1));
        p.insert("lr".into(), ParamValue::Float(1.0));
        let e = space().check_params(&p).unwrap_err().to_string();
        assert!(e.contains("outside its domain"), "{e}");
        p.insert("nope".into(), ParamValue::Bool(true));
        let e = space().check_params(&p).unwrap_err().to_string();
        assert!(e.contains("`nope` is not part"), "{e}");
    }

    #[test]
    fn a_param_space_round_trips_through_json() {
        let s = space();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ParamSpace>(&j).unwrap(), s);
    }
}
