//! Counts given on the command line that must be at least 1 (batch sizes, iterations, ranks):
//! clap refuses a 0 with the flag's name, where it used to be silently taken as 1 or to fail
//! deep inside the engine.

/// Parses a whole number of at least 1 (clap `value_parser`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1, got 0".into()),
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
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("1"), Ok(1));
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one("-2").unwrap_err().contains("`-2`"));
        assert!(at_least_one("two").is_err());
    }
}
