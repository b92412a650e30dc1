//! Counting floating-point work on this thread: convolutions and matrix products add
//! 2 × multiply-adds of their forward pass (the usual convention; elementwise work is not counted).

use std::cell::Cell;

thread_local! {
    static COUNTER: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` and returns its result with the FLOPs the counted ops performed on this thread.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let outer = COUNTER.with(|c| c.replace(Some(0)));
    let r = f();
    let n = COUNTER.with(|c| c.replace(outer)).unwrap_or(0);
    if let Some(o) = outer {
        COUNTER.with(|c| c.set(Some(o + n)));
    }
    (r, n)
}

/// Called by counted ops.
pub(crate) fn add(n: u64) {
    COUNTER.with(|c| {
        if let Some(v) = c.get() {
            c.set(Some(v + n));
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_counts_add_up() {
        let ((_, inner), outer) = super::count(|| {
            super::add(5);
            super::count(|| super::add(7))
        });
        assert_eq!((inner, outer), (7, 12));
        super::add(1); // outside any count: ignored
    }
}
