//! Progress of a long job: a bar when stderr is a terminal, plain lines at most every
//! `interval` otherwise (a batch job's log file gets a readable line, not a stream of carriage
//! returns), or nothing.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// An indicatif bar (position, rate, time left) redrawn in place.
    Bar,
    /// Plain lines, at most every 30 s and at the end, for logs of batch jobs.
    Lines,
    /// Nothing shown.
    Hidden,
}

impl ProgressMode {
    fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        }
    }
}

/// One job's progress towards `total` units; see the module documentation.
#[derive(Debug)]
pub struct Progress {
    prefix: String,
    total: u64,
    pos: u64,
    msg: String,
    bar: Option<ProgressBar>,
    lines: bool,
    interval: Duration,
    started: Instant,
    /// Where this invocation started counting (a resumed job's earlier units took no time here).
    start_pos: u64,
    last_line: Option<Instant>,
}

impl Progress {
    /// A progress display of `total` units labelled `prefix`, shown as `mode` says.
    pub fn new(prefix: impl Into<String>, total: u64, mode: ProgressMode) -> Self {
        let prefix = prefix.into();
        let mode = mode.resolve();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{bar:28}] {pos}/{len} {msg} ({elapsed}<{eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(prefix.clone());
            b
        });
        Progress {
            prefix,
            total,
            pos: 0,
            msg: String::new(),
            bar,
            lines: mode == ProgressMode::Lines,
            interval: Duration::from_secs(30),
            started: Instant::now(),
            start_pos: 0,
            last_line: None,
        }
    }

    /// Plain lines at most this often (default 30 s).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Starts counting at `pos` (a resumed job).
    pub fn starting_at(mut self, pos: u64) -> Self {
        self.pos = pos;
        self.start_pos = pos;
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
        self
    }

    /// Moves to position `pos` with the status text `msg` (loss, accuracy), redrawing the bar or
    /// printing a line when one is due.
    pub fn set(&mut self, pos: u64, msg: impl Into<String>) {
        self.pos = pos;
        self.msg = msg.into();
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(self.msg.clone());
        }
        if self.lines && self.last_line.is_none_or(|t| t.elapsed() >= self.interval) {
            self.print_line();
        }
    }

    /// Moves to position `pos` like [`Progress::set`], counting the units passed as done
    /// before (a cached result): the estimate of what is left is taken from the units done here.
    pub fn skip_to(&mut self, pos: u64, msg: impl Into<String>) {
        self.start_pos += pos.saturating_sub(self.pos);
        self.set(pos, msg);
    }

    /// The plain line for the current state: prefix, position, percentage, message, elapsed
    /// time and an estimate of what is left.
    pub fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = self.pos.saturating_sub(self.start_pos) as f64;
        let left = self.total.saturating_sub(self.pos) as f64;
        let eta = if done > 0.0 {
            format!(", ~{} left", clock(elapsed / done * left))
        } else {
            String::new()
        };
        let pct = 100.0 * self.pos as f64 / self.total.max(1) as f64;
        let msg = if self.msg.is_empty() {
            String::new()
        } else {
            format!(" {}", self.msg)
        };
        format!(
            "{} {}/{} ({pct:.1}%){msg} [{} elapsed{eta}]",
            self.prefix,
            self.pos,
            self.total,
            clock(elapsed)
        )
    }

    fn print_line(&mut self) {
        eprintln!("{}", self.line());
        self.last_line = Some(Instant::now());
    }

    /// Ends the bar (cleared), or prints a last line.
    pub fn finish(mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.lines && self.last_line.is_none_or(|_| self.pos > 0) {
            self.print_line();
        }
    }

    /// Leaves the bar where it is (an interrupted job).
    pub fn abandon(mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}

/// `h:mm:ss`, or `m:ss` under an hour.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_has_position_percentage_and_estimate() {
        let mut p = Progress::new("epoch 1/3", 200, ProgressMode::Hidden);
        assert_eq!(p.line().split(" [").next(), Some("epoch 1/3 0/200 (0.0%)"));
        p.set(50, "loss 2.3012");
        let line = p.line();
        assert!(
            line.starts_with("epoch 1/3 50/200 (25.0%) loss 2.3012 ["),
            "{line}"
        );
        assert!(line.contains("elapsed, ~"), "{line}");
        let resumed = Progress::new("x", 10, ProgressMode::Hidden).starting_at(4);
        assert!(
            !resumed.line().contains('~'),
            "no estimate before a unit is done here"
        );
        let mut cached = Progress::new("x", 10, ProgressMode::Hidden);
        cached.set(1, "");
        cached.skip_to(3, "cached");
        assert_eq!((cached.start_pos, cached.pos), (2, 3));
        cached.skip_to(5, "cached");
        assert_eq!((cached.start_pos, cached.pos), (4, 5));
        let mut only_cached = Progress::new("x", 10, ProgressMode::Hidden);
        only_cached.skip_to(4, "cached");
        assert!(
            !only_cached.line().contains('~'),
            "no estimate from cached units alone: {}",
            only_cached.line()
        );
    }

    #[test]
    fn clock_formats() {
        assert_eq!(clock(5.4), "0:05");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
