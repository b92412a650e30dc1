//! Where a tensor lives.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A compute device. CUDA devices exist only when the crate is built with the `cuda` feature;
/// creating a tensor on one otherwise returns [`crate::Error::CudaNotCompiled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The host CPU (the default). Always available.
    #[default]
    Cpu,
    /// The CUDA device of this ordinal (`cuda:N`, numbered as the driver numbers them).
    Cuda(usize),
}

impl Device {
    /// Whether this is [`Device::Cpu`].
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;
    /// Parses `cpu`, `cuda` (= `cuda:0`) and `cuda:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Device::Cuda(i)),
                _ => Err(format!(
                    "unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N`"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
        assert!("gpu".parse::<Device>().unwrap_err().contains("expected"));
    }
}
