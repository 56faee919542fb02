//! Helpers shared by the cell tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::PathBuf;

use cells::{CellHost, Completion, Fact, InferRequest};

/// A guest module built by `cargo xtask build-agents`. The path is read at
/// run time, not with `env!`: a shared target directory may reuse a test
/// binary from another checkout.
pub fn guest(path: &str) -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = PathBuf::from(manifest).join("guests").join(path);
    assert!(path.exists(), "{} is missing: run `cargo xtask build-agents` first", path.display());
    path
}

/// A host that answers at once: no model, empty memory, reviews accepted.
pub struct NullHost;

impl CellHost for NullHost {
    fn infer(&mut self, _: InferRequest) -> Result<Completion, String> {
        Err("no model".into())
    }
    fn recall(&mut self, _: String, _: Option<i64>) -> Result<Vec<Fact>, String> {
        Ok(Vec::new())
    }
    fn remember(&mut self, _: String, _: String, _: String, _: Option<i64>) -> Result<(), String> {
        Ok(())
    }
    fn request_review(&mut self, _: String, _: String) -> Result<(), String> {
        Ok(())
    }
    fn log(&mut self, _: String) {}
}
