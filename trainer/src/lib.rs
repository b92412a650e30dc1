//! `trainer`: see SPEC.md; filled by its issue.
pub mod search;
