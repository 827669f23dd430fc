//! Work in progress (issue 6): see `lib.rs` for what this module owns.
