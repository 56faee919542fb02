//! The on-disk module cache: a second engine loads a module it has never
//! compiled from the cache, the cache directory is private, and a changed
//! module is compiled afresh (never served a stale entry).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use cells::CellEngine;
use common::guest;

fn files_in(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn compiled_modules_are_reused_across_engines_from_a_private_directory() {
    let tmp = tempfile_dir();
    let cache = tmp.join("modules");
    let bytes = std::fs::read(guest("hostile-agent/hostile.wasm")).expect("module");

    let cold = CellEngine::with_module_cache(&cache).expect("engine");
    let t = Instant::now();
    let first = cold.load("hostile", &bytes).expect("compiles");
    let compile = t.elapsed();
    drop(cold);
    let mode = std::fs::metadata(&cache).expect("cache dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the cache directory is private: {mode:o}");
    // wasmtime writes its cache entry from a background worker.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while files_in(&cache) == 0 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(files_in(&cache) > 0, "an entry was written");

    let warm = CellEngine::with_module_cache(&cache).expect("engine");
    let t = Instant::now();
    let second = warm.load("hostile", &bytes).expect("loads from the cache");
    let cached = t.elapsed();
    assert_eq!(first.hash(), second.hash());
    eprintln!("compile {compile:?}, from cache {cached:?}");

    // A different module is a different entry, compiled, never mistaken
    // for the cached one.
    let before = files_in(&cache);
    let echo = std::fs::read(guest("echo-agent/echo.wasm")).expect("echo");
    let other = warm.load("echo", &echo).expect("compiles");
    assert_ne!(other.hash(), second.hash());
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while files_in(&cache) == before && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(files_in(&cache) > before, "the new module got its own entry");
    drop((first, second, other, warm));
    cleanup(&tmp);
}

/// wasmtime's cache worker may still be writing usage statistics after the
/// engine is gone (CI once saw `remove_dir_all` fail with "Directory not
/// empty"), so cleanup retries briefly and is never the test's verdict.
fn cleanup(dir: &std::path::Path) {
    for _ in 0..50 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("left {} behind: the cache worker kept writing", dir.display());
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cells-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
