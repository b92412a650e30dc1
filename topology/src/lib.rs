//! `topology`: see SPEC.md; filled by its issue.
