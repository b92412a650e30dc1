//! `cell-zoo`: see SPEC.md; filled by its issue.
