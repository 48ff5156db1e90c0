//! Helpers shared by the integration tests: where the fetched test data lives
//! and what happens when it is missing.
//!
//! Models and texts are fetched by `scripts/fetch-models.sh` and
//! `scripts/fetch-texts.sh` into `~/.cache/egret` (or `$EGRET_CACHE`). A plain
//! `cargo test` on a machine without them skips the tests that need them, with a
//! message. `scripts/test.sh` (and so CI) sets `EGRET_REQUIRE_DATA=1`, which turns
//! every such skip into a failure: CI can never pass by silently skipping.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

/// The cache folder the fetch scripts fill.
pub fn cache() -> PathBuf {
    std::env::var_os("EGRET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/egret")
        })
}

/// Whether `path` exists. If it does not, panic when `EGRET_REQUIRE_DATA` is
/// set, and otherwise print a SKIP line naming `fetch`, the command that makes it.
pub fn available(path: &Path, fetch: &str) -> bool {
    if path.exists() {
        return true;
    }
    let msg = format!("{} is absent (run {fetch})", path.display());
    if std::env::var_os("EGRET_REQUIRE_DATA").is_some_and(|v| v != "0") {
        panic!("EGRET_REQUIRE_DATA is set but {msg}");
    }
    eprintln!("SKIP: {msg}");
    false
}
