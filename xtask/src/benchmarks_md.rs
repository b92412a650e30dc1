//! Generated sections of BENCHMARKS.md: the text between `<!-- NAME:begin -->` and
//! `<!-- NAME:end -->` belongs to a command and is rewritten by it; everything else is prose that
//! people write and the commands leave alone.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// `doc` with section `name` replaced by `body` (the markers are kept). A document without the
/// section gets it appended.
pub fn replace_section(doc: &str, name: &str, body: &str) -> Result<String> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let body = body.trim_end_matches('\n');
    let section = format!("{begin}\n{body}\n{end}");
    match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            Ok(format!("{}{section}{}", &doc[..b], &doc[e + end.len()..]))
        }
        (None, None) => {
            let sep = if doc.is_empty() || doc.ends_with("\n\n") {
                ""
            } else if doc.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            Ok(format!("{doc}{sep}{section}\n"))
        }
        _ => bail!("the markers {begin} and {end} must both appear, in that order, or neither"),
    }
}

/// Rewrites section `name` of the file at `path` (created with a title if absent).
pub fn write_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let doc = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n\n".to_string(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = replace_section(&doc, name, body).with_context(|| path.display().to_string())?;
    tensor::io::write_file_atomically(path, new.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_section() {
        let doc = "# B\n\nprose\n<!-- x:begin -->\nold\ntable\n<!-- x:end -->\nmore prose\n";
        let new = replace_section(doc, "x", "new\n").unwrap();
        assert_eq!(
            new,
            "# B\n\nprose\n<!-- x:begin -->\nnew\n<!-- x:end -->\nmore prose\n"
        );
        // Idempotent, and other sections are untouched.
        assert_eq!(replace_section(&new, "x", "new").unwrap(), new);
        let both = replace_section(&new, "y", "why").unwrap();
        assert!(
            both.starts_with(&new) && both.ends_with("<!-- y:begin -->\nwhy\n<!-- y:end -->\n")
        );
    }

    #[test]
    fn appends_when_absent_and_rejects_broken_markers() {
        assert_eq!(
            replace_section("# B", "x", "t").unwrap(),
            "# B\n\n<!-- x:begin -->\nt\n<!-- x:end -->\n"
        );
        assert!(replace_section("<!-- x:end --> <!-- x:begin -->", "x", "t").is_err());
        assert!(replace_section("<!-- x:begin -->", "x", "t").is_err());
    }
}
