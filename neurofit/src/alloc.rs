//! Zero-filled buffers whose size comes from the user (stimuli at a model's input size, features
//! over a chosen number of steps), allocated fallibly: an impossible size is an error the caller
//! words, not an abort inside the allocator.

/// Why [`zeros`] could not allocate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TooLarge {
    /// The element count or its byte size overflows the address space.
    Unaddressable,
    /// The allocator refused this many bytes.
    Refused(usize),
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TooLarge::Unaddressable => write!(f, "are more floats than this machine can address"),
            TooLarge::Refused(bytes) => write!(
                f,
                "need {:.1} GB, which cannot be allocated",
                *bytes as f64 / 1e9
            ),
        }
    }
}

/// `dims.iter().product()` zeros, or why they cannot be allocated.
pub(crate) fn zeros(dims: &[usize]) -> Result<Vec<f32>, TooLarge> {
    let len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or(TooLarge::Unaddressable)?;
    let bytes = len.checked_mul(4).ok_or(TooLarge::Unaddressable)?;
    let mut v: Vec<f32> = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| TooLarge::Refused(bytes))?;
    v.resize(len, 0.0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_and_possible_ones_zeros() {
        assert_eq!(
            zeros(&[1 << 22, 1 << 22, 1 << 22]),
            Err(TooLarge::Unaddressable)
        );
        let e = zeros(&[1 << 14, 1 << 14, 1 << 14]).unwrap_err();
        assert_eq!(e, TooLarge::Refused(4 << 42));
        assert!(e.to_string().contains("17592.2 GB"), "{e}");
        assert_eq!(zeros(&[2, 3, 4]).unwrap(), vec![0.0; 24]);
        assert!(zeros(&[5, 0]).unwrap().is_empty());
    }
}
