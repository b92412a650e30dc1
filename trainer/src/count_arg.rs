//! Counts given on the command line that must be at least 1 (batch sizes, iterations, ranks,
//! splits): clap refuses a 0 with the flag's name, where it used to be silently taken as 1 or to
//! fail deep inside the engine. Shared by `cargo xtask` and the `neurofit` binary, like
//! [`load`](crate::load).

/// Parses a whole number of at least 1 (clap `value_parser`; `at_least_one::<u64>` for a `u64`).
pub fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + From<u8> + PartialEq,
    T::Err: std::fmt::Display,
{
    match s.trim().parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1, got 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!(
            "expected a whole number of at least 1, got `{s}` ({e})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_non_numbers_are_refused() {
        assert_eq!(at_least_one::<usize>("3"), Ok(3));
        assert_eq!(at_least_one::<u64>("1"), Ok(1));
        assert!(at_least_one::<usize>("0")
            .unwrap_err()
            .contains("at least 1"));
        assert!(at_least_one::<u64>("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one::<usize>("-2").unwrap_err().contains("`-2`"));
        assert!(at_least_one::<usize>("two").is_err());
    }
}
