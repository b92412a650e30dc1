//! Sampled values: a trial's parameters are a map from parameter name to a typed value, and each
//! parameter is drawn from a [`Domain`] only when its [`Condition`] holds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One sampled value. Serialised untagged so that a trial's parameters read as plain JSON
/// (`{"lr": 0.01, "cell.tau_size": 3, "cell.tau_nonlinearity": "tanh", "edge:conv3->conv2": true}`);
/// floats always carry a decimal point in JSON, so they come back as `Float`, not `Int`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A yes/no choice (a feedback edge on or off).
    Bool(bool),
    /// An integer (a filter size, a depth; 0 often means "off").
    Int(i64),
    /// A real number (a learning rate, a bias).
    Float(f64),
    /// One of a [`Domain::Categorical`]'s names (an activation function).
    Categorical(String),
}

impl ParamValue {
    /// The value as a real: a `Float`, or an `Int` converted; `None` for the other kinds.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Float(v) => Some(*v),
            ParamValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
    /// The value of an `Int`; `None` for the other kinds (a `Float` is not truncated).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(v) => Some(*v),
            _ => None,
        }
    }
    /// The value of a `Bool`; `None` for the other kinds.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Bool(v) => Some(*v),
            _ => None,
        }
    }
    /// The name of a `Categorical`; `None` for the other kinds.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Categorical(v) => Some(v),
            _ => None,
        }
    }
}

/// A trial's parameters, name → value. Only parameters whose condition held are present.
pub type Params = BTreeMap<String, ParamValue>;

/// Where a parameter's value comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Domain {
    /// A real in `[low, high]`, uniform or log-uniform.
    Float {
        /// The smallest value (finite; > 0 when `log`).
        low: f64,
        /// The largest value (finite, ≥ `low`).
        high: f64,
        /// Sample uniformly in `ln(value)` rather than in the value (rates spanning decades).
        #[serde(default)]
        log: bool,
    },
    /// An integer in `[low, high]`, uniform or log-uniform.
    Int {
        /// The smallest value (> 0 when `log`).
        low: i64,
        /// The largest value (≥ `low`).
        high: i64,
        /// Sample uniformly in `ln(value)` rather than in the value.
        #[serde(default)]
        log: bool,
    },
    /// One of a few integers (filter sizes, depths), unordered.
    IntChoice {
        /// The integers to choose from (at least one).
        choices: Vec<i64>,
    },
    /// One of a few names.
    Categorical {
        /// The names to choose from (at least one).
        choices: Vec<String>,
    },
    /// `false` or `true`.
    Bool,
}

impl Domain {
    /// Checks the domain is non-empty and well-formed; `name` goes into the message.
    pub fn check(&self, name: &str) -> Result<(), String> {
        match self {
            Domain::Float { low, high, log } => {
                if !(low.is_finite() && high.is_finite() && low <= high) {
                    return Err(format!(
                        "parameter `{name}`: float range [{low}, {high}] must be finite with low <= high"
                    ));
                }
                if *log && *low <= 0.0 {
                    return Err(format!(
                        "parameter `{name}`: a log-scale range needs low > 0, got {low}"
                    ));
                }
            }
            Domain::Int { low, high, log } => {
                if low > high {
                    return Err(format!(
                        "parameter `{name}`: int range [{low}, {high}] needs low <= high"
                    ));
                }
                if *log && *low <= 0 {
                    return Err(format!(
                        "parameter `{name}`: a log-scale range needs low > 0, got {low}"
                    ));
                }
            }
            Domain::IntChoice { choices } if choices.is_empty() => {
                return Err(format!("parameter `{name}`: no choices given"));
            }
            Domain::Categorical { choices } if choices.is_empty() => {
                return Err(format!("parameter `{name}`: no choices given"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `v` is a value this domain can produce.
    pub fn contains(&self, v: &ParamValue) -> bool {
        match (self, v) {
            (Domain::Float { low, high, .. }, ParamValue::Float(x)) => *low <= *x && *x <= *high,
            (Domain::Int { low, high, .. }, ParamValue::Int(x)) => *low <= *x && *x <= *high,
            (Domain::IntChoice { choices }, ParamValue::Int(x)) => choices.contains(x),
            (Domain::Categorical { choices }, ParamValue::Categorical(x)) => choices.contains(x),
            (Domain::Bool, ParamValue::Bool(_)) => true,
            _ => false,
        }
    }

    /// Number of discrete options (`None` for continuous or integer ranges).
    pub fn n_choices(&self) -> Option<usize> {
        match self {
            Domain::IntChoice { choices } => Some(choices.len()),
            Domain::Categorical { choices } => Some(choices.len()),
            Domain::Bool => Some(2),
            _ => None,
        }
    }

    /// The `i`-th discrete option.
    pub fn choice(&self, i: usize) -> Option<ParamValue> {
        match self {
            Domain::IntChoice { choices } => choices.get(i).map(|c| ParamValue::Int(*c)),
            Domain::Categorical { choices } => {
                choices.get(i).map(|c| ParamValue::Categorical(c.clone()))
            }
            Domain::Bool => [false, true].get(i).map(|b| ParamValue::Bool(*b)),
            _ => None,
        }
    }

    /// Index of `v` among the discrete options.
    pub fn index_of(&self, v: &ParamValue) -> Option<usize> {
        (0..self.n_choices()?).find(|&i| self.choice(i).as_ref() == Some(v))
    }
}

/// When a parameter exists. Conditions only refer to parameters sampled before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The parameter is always sampled.
    Always,
    /// The integer parameter `param` is present and non-zero (a path whose size 0 means off).
    NonZero {
        /// The name of the integer parameter.
        param: String,
    },
    /// The boolean parameter `param` is present and true.
    IsTrue {
        /// The name of the boolean parameter.
        param: String,
    },
    /// Every one of the conditions holds (true for an empty list).
    All {
        /// The conditions.
        of: Vec<Condition>,
    },
    /// At least one of the conditions holds (false for an empty list).
    Any {
        /// The conditions.
        of: Vec<Condition>,
    },
}

impl Condition {
    /// Whether the condition holds for the parameters drawn so far (a parameter that is absent is
    /// neither non-zero nor true).
    pub fn holds(&self, params: &Params) -> bool {
        match self {
            Condition::Always => true,
            Condition::NonZero { param } => params
                .get(param)
                .and_then(ParamValue::as_i64)
                .is_some_and(|v| v != 0),
            Condition::IsTrue { param } => params
                .get(param)
                .and_then(ParamValue::as_bool)
                .unwrap_or(false),
            Condition::All { of } => of.iter().all(|c| c.holds(params)),
            Condition::Any { of } => of.iter().any(|c| c.holds(params)),
        }
    }

    /// Names of the parameters the condition reads.
    pub fn parents(&self) -> Vec<&str> {
        match self {
            Condition::Always => vec![],
            Condition::NonZero { param } | Condition::IsTrue { param } => vec![param.as_str()],
            Condition::All { of } | Condition::Any { of } => {
                of.iter().flat_map(|c| c.parents()).collect()
            }
        }
    }
}

/// One parameter of a flattened search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    /// The parameter's name, unique in the space (the key in [`Params`]).
    pub name: String,
    /// Where its values come from.
    pub domain: Domain,
    /// When it is sampled; it may read only parameters listed before this one.
    pub condition: Condition,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_untagged() {
        let mut p = Params::new();
        p.insert("a".into(), ParamValue::Float(1.0));
        p.insert("b".into(), ParamValue::Int(3));
        p.insert("c".into(), ParamValue::Categorical("tanh".into()));
        p.insert("d".into(), ParamValue::Bool(true));
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(j, r#"{"a":1.0,"b":3,"c":"tanh","d":true}"#);
        let back: Params = serde_json::from_str(&j).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn conditions_follow_their_parents() {
        let mut p = Params::new();
        p.insert("size".into(), ParamValue::Int(0));
        p.insert("on".into(), ParamValue::Bool(true));
        let nz = Condition::NonZero {
            param: "size".into(),
        };
        let on = Condition::IsTrue { param: "on".into() };
        assert!(!nz.holds(&p));
        assert!(on.holds(&p));
        assert!(Condition::Any {
            of: vec![nz.clone(), on.clone()]
        }
        .holds(&p));
        assert!(!Condition::All {
            of: vec![nz.clone(), on]
        }
        .holds(&p));
        p.insert("size".into(), ParamValue::Int(3));
        assert!(nz.holds(&p));
        assert!(!Condition::IsTrue {
            param: "missing".into()
        }
        .holds(&p));
    }

    #[test]
    fn domains_check_and_index() {
        assert!(Domain::Float {
            low: 0.0,
            high: 1.0,
            log: true
        }
        .check("x")
        .unwrap_err()
        .contains("low > 0"));
        assert!(Domain::IntChoice { choices: vec![] }.check("k").is_err());
        let d = Domain::IntChoice {
            choices: vec![0, 3, 5],
        };
        assert_eq!(d.index_of(&ParamValue::Int(5)), Some(2));
        assert!(!d.contains(&ParamValue::Int(4)));
        assert_eq!(Domain::Bool.choice(1), Some(ParamValue::Bool(true)));
    }
}
