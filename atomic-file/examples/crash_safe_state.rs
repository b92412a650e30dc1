//! Keeping a program's state in a file that survives a crash at any moment: a long job rewrites
//! its progress after every unit of work, a reader (another process, or the job resumed after
//! `kill -9`) reads it at any time, and neither ever sees half a file.
//!
//! The example rewrites a state file 40 times while a second thread reads it as fast as it can
//! and checks every read is one whole version; then it streams a file in pieces with
//! [`atomic_file::write_with`], and shows that a write that fails half-way (a full disk, here
//! simulated) leaves the previous version in place and no temporary file behind.
//!
//! `cargo run -p atomic-file --example crash_safe_state [FOLDER]` (default: a temporary folder).

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The state of a job after `done` units of work: one line per unit, so that a torn file (the
/// start of one version, the end of another, or a prefix) is easy to recognise.
fn state(done: usize) -> String {
    let mut s = format!("done {done}\n");
    for i in 0..done {
        s.push_str(&format!("unit {i} of {done}: ok\n"));
    }
    s
}

/// Whether `text` is exactly one of the versions [`state`] writes.
fn is_whole(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("done "))
        .and_then(|n| n.parse().ok())
        .is_some_and(|n| text == state(n))
}

/// Runs the demonstration in `dir`; returns how many reads the reader made.
fn run(dir: &Path) -> io::Result<usize> {
    let path = dir.join("progress.txt");
    atomic_file::write(&path, state(0).as_bytes())?;

    // A reader polling the file while it is being replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        std::thread::spawn(move || -> io::Result<usize> {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path)?;
                if !is_whole(&text) {
                    return Err(io::Error::other(format!("a torn read: {text:?}")));
                }
                reads += 1;
            }
            Ok(reads)
        })
    };
    for done in 1..=40 {
        atomic_file::write(&path, state(done).as_bytes())?;
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader
        .join()
        .map_err(|_| io::Error::other("the reader panicked"))??;
    println!("40 replacements, {reads} reads in between, every one a whole version");

    // Contents produced in pieces go straight into the temporary file.
    let log = dir.join("table.csv");
    atomic_file::write_with(&log, |f| {
        writeln!(f, "step,loss")?;
        for step in 0..5 {
            writeln!(f, "{step},{:.3}", 1.0 / (step as f64 + 1.0))?;
        }
        Ok(())
    })?;
    println!("{}:\n{}", log.display(), std::fs::read_to_string(&log)?);

    // A write that fails half-way: the old state stays, and nothing else is left in the folder.
    let failed = atomic_file::write_with(&path, |f| {
        f.write_all(b"done 41\nunit 0 of 41: ok\n")?;
        Err(io::Error::other("no space left on device (simulated)"))
    });
    let kept = std::fs::read_to_string(&path)?;
    println!(
        "a failed write ({}) kept the previous state: {}",
        failed.err().map_or_else(String::new, |e| e.to_string()),
        kept.lines().next().unwrap_or("")
    );
    if kept != state(40) {
        return Err(io::Error::other("the failed write changed the file"));
    }
    // Temporary files are named `.NAME.tmp-PID-N`.
    let mut left: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    left.sort();
    println!("files in the folder: {left:?}");
    if left.iter().any(|name| name.contains(".tmp-")) {
        return Err(io::Error::other("a temporary file was left behind"));
    }
    Ok(reads)
}

fn main() -> io::Result<()> {
    match std::env::args_os().nth(1) {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            run(Path::new(&dir)).map(drop)
        }
        None => run(tempfile::tempdir()?.path()).map(drop),
    }
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example (`test = true` in the crate's Cargo.toml).
    #[test]
    fn runs() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        super::run(dir.path())?;
        assert!(super::is_whole(&super::state(3)));
        assert!(!super::is_whole("done 3\nunit 0 of 3: ok\n"));
        Ok(())
    }
}
