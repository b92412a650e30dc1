//! Tidy checks over the workspace's own sources: every Rust file under a crate's `src/`,
//! `tests/`, `examples/` and `benches/` opens with a module doc (`//!`), and no
//! `too_many_arguments` allowance hides an argument list that wants grouping unless it is listed
//! below with its reason; and crates separated from the engine stay separated (`cargo tree`:
//! neurofit's scoring core without tensor/topology/trainer, trainer without database clients).
//! Each failure names the file or crate so whoever added it can fix it.

use std::fs;
use std::path::{Path, PathBuf};

/// The source folders of a crate that the checks walk.
const SOURCE_DIRS: [&str; 4] = ["src", "tests", "examples", "benches"];

/// Folders whose `.rs` files are not modules of the crate: trybuild's compile-fail inputs, whose
/// expected compiler output (`.stderr` beside them) pins their line numbers.
const NOT_MODULES: [&str; 1] = ["tests/ui"];

/// The `too_many_arguments` allowances kept on purpose: (file relative to the workspace root,
/// why its argument list stays as it is).
const TOO_MANY_ARGUMENTS_ALLOWED: [(&str, &str); 2] = [
    (
        "cell-zoo/src/layers.rs",
        "Conv::new takes a conv's hyper-parameters as the specs list them; a struct for them \
         would repeat the spec types",
    ),
    (
        "cell-zoo/src/rgc.rs",
        "Gate::new takes a gate conv's hyper-parameters as the RGC spec lists them (as Conv::new)",
    ),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

/// The workspace's crates: the folders beside xtask that hold a `Cargo.toml`, sorted.
fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .expect("the workspace root is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file() && !p.ends_with("target"))
        .collect();
    dirs.sort();
    dirs
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The workspace's Rust sources as (path relative to the root with `/` separators, text).
fn workspace_sources() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    for krate in crate_dirs(&root) {
        for sub in SOURCE_DIRS {
            rust_files(&krate.join(sub), &mut files);
        }
    }
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under the root");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
            (rel, text)
        })
        .collect()
}

fn is_module(rel: &str) -> bool {
    !NOT_MODULES
        .iter()
        .any(|dir| rel.split_once('/').is_some_and(|(_, r)| r.starts_with(dir)))
}

/// Whether `text` opens with a module doc: its first line that is neither blank nor an inner
/// attribute (`#![...]` may come first) is a `//!` comment.
fn has_module_doc(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("#!["))
        .is_some_and(|l| l.starts_with("//!"))
}

/// The files that mention `too_many_arguments` in an allowance (`allow` or `expect`), sorted.
fn too_many_arguments_files(sources: &[(String, String)]) -> Vec<&str> {
    sources
        .iter()
        .filter(|(_, text)| {
            text.lines().any(|l| {
                let l = l.trim();
                l.starts_with("#") && l.contains("clippy::too_many_arguments")
            })
        })
        .map(|(rel, _)| rel.as_str())
        .collect()
}

#[test]
fn every_source_file_has_a_module_doc() {
    let sources = workspace_sources();
    assert!(
        sources.len() > 50,
        "found only {} Rust files: is the workspace root right?",
        sources.len()
    );
    let missing: Vec<&str> = sources
        .iter()
        .filter(|(rel, text)| is_module(rel) && !has_module_doc(text))
        .map(|(rel, _)| rel.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a module doc (`//!` saying what the module is for):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn too_many_arguments_is_allowed_only_where_listed() {
    let sources = workspace_sources();
    let found = too_many_arguments_files(&sources);
    let listed: Vec<&str> = TOO_MANY_ARGUMENTS_ALLOWED.iter().map(|(f, _)| *f).collect();
    let unlisted: Vec<&str> = found
        .iter()
        .copied()
        .filter(|f| !listed.contains(f))
        .collect();
    assert!(
        unlisted.is_empty(),
        "`clippy::too_many_arguments` allowed in:\n  {}\ngroup the arguments (a struct, or \
         tuples of what belongs together), or list the file with its reason in \
         TOO_MANY_ARGUMENTS_ALLOWED (xtask/tests/tidy.rs)",
        unlisted.join("\n  ")
    );
    let stale: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|f| !found.contains(f))
        .collect();
    assert!(
        stale.is_empty(),
        "TOO_MANY_ARGUMENTS_ALLOWED lists files without the allowance; remove them:\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn no_manifest_allows_too_many_arguments() {
    let root = workspace_root();
    let mut manifests = vec![root.join("Cargo.toml")];
    manifests.extend(crate_dirs(&root).into_iter().map(|d| d.join("Cargo.toml")));
    let offenders: Vec<String> = manifests
        .iter()
        .filter(|m| {
            fs::read_to_string(m)
                .unwrap_or_else(|e| panic!("reading {}: {e}", m.display()))
                .lines()
                .any(|l| l.trim_start().starts_with("too_many_arguments"))
        })
        .map(|m| m.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "a crate-wide `too_many_arguments` lint level hides every long argument list; allow it \
         per item and list it in TOO_MANY_ARGUMENTS_ALLOWED instead:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn the_checks_tell_a_module_doc_from_other_openings() {
    assert!(has_module_doc("//! What this is for.\nfn f() {}"));
    assert!(has_module_doc(
        "#![allow(clippy::unwrap_used)]\n\n//! A test.\n"
    ));
    assert!(!has_module_doc("// A plain comment.\n//! too late\n"));
    assert!(!has_module_doc("use super::*;\n"));
    assert!(!has_module_doc(""));
    assert!(!is_module("cell-zoo/tests/ui/mismatch.rs"));
    assert!(is_module("cell-zoo/tests/typed.rs"));
    let sources = vec![
        (
            "a.rs".to_string(),
            "#[allow(clippy::too_many_arguments)]\nfn f() {}".to_string(),
        ),
        (
            "b.rs".to_string(),
            "// too_many_arguments in prose\n".to_string(),
        ),
    ];
    assert_eq!(too_many_arguments_files(&sources), ["a.rs"]);
}

/// The normal (non-dev) dependencies of `package` built with `args`, as `cargo tree` lists them,
/// one crate name per line.
fn dependency_names(package: &str, args: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Crates promised to stand alone (issue #19) must not pull in what they were separated from.
#[test]
fn separated_crates_do_not_pull_in_what_they_were_separated_from() {
    let engine = ["tensor", "topology", "cell-zoo", "datasets", "trainer"];
    let scoring = dependency_names("neurofit", &["--no-default-features"]);
    let pulled: Vec<_> = engine
        .iter()
        .filter(|e| scoring.iter().any(|d| d == *e))
        .collect();
    assert!(
        pulled.is_empty(),
        "neurofit without default features depends on {pulled:?}; its scoring core must build \
         without the engine (move the code that needs it behind the `models` feature)"
    );
    // The check can fail: with its default features neurofit does use the engine.
    let full = dependency_names("neurofit", &[]);
    assert!(full.iter().any(|d| d == "tensor"), "{full:?}");

    let training = dependency_names("trainer", &[]);
    let clients: Vec<_> = ["rusqlite", "postgres", "tokio"]
        .iter()
        .filter(|c| training.iter().any(|d| d == *c))
        .collect();
    assert!(
        clients.is_empty(),
        "trainer depends on {clients:?}; database clients belong to the search crate"
    );
}
