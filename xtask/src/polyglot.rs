//! Agents written in Python and JavaScript, built by their own toolchains
//! (componentize-py from PyPI, componentize-js from npm) into components
//! for the same WIT world as the Rust agents.
//!
//! The toolchains live under `<target dir>/polyglot`, outside the checkout
//! (node_modules alone is about 385 MB), and are reinstalled only when
//! their pinned requirements change. A component is rebuilt only when its
//! source, the WIT or the toolchain is newer than it: neither tool builds
//! byte-identical output, and a new module hash would cost the tests a
//! fresh 20-second wasmtime compile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::{python, run, sha256_of, step};

const WIT_DIR: &str = "cells/wit";
/// The pinned componentize-py, shared by every Python agent.
const PY_REQUIREMENTS: &str = "cells/guests/triage/python/requirements.txt";
/// Python agents: (source dir holding `app.py`, where the component goes).
const PY_AGENTS: &[(&str, &str)] = &[
    ("cells/guests/triage/python", "cells/guests/triage/python/triage-py.wasm"),
    ("missions/examples/claims/coverage", "missions/examples/claims/coverage/coverage.wasm"),
];
const JS_DIR: &str = "cells/guests/triage/js";
const JS_OUT: &str = "cells/guests/triage/js/triage-js.wasm";
/// componentize-js's dependencies declare `node >= 20`.
const NODE_MAJOR_MIN: u32 = 20;

/// Every Python and JavaScript agent, under the toolchains in `tools`.
pub fn build(root: &Path, tools: &Path) -> Result<()> {
    build_python(root, tools)?;
    build_js(root, &tools.join("js"))
}

/// The Python agents only: what the demo's missions need (the claims
/// mission's coverage specialist), without Node.js.
pub fn build_python(root: &Path, tools: &Path) -> Result<()> {
    let venv = tools.join("py-venv");
    let stamp = install_componentize_py(root, &venv)?;
    for (dir, out) in PY_AGENTS {
        build_python_agent(root, &venv, &stamp, dir, out)?;
    }
    Ok(())
}

/// Installs the pinned componentize-py into `venv` unless its stamp says
/// it is there; returns the stamp (an input of every Python component).
fn install_componentize_py(root: &Path, venv: &Path) -> Result<PathBuf> {
    let requirements = root.join(PY_REQUIREMENTS);
    let stamp = venv.join(".requirements.sha256");
    let wanted = sha256_of(&requirements)?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        step("installing componentize-py (PyPI, hash-pinned) into a private virtual environment");
        if venv.exists() {
            std::fs::remove_dir_all(venv).with_context(|| format!("clearing {}", venv.display()))?;
        }
        run(Command::new(python()).args(["-m", "venv"]).arg(venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "--require-hashes", "-r"])
            .arg(&requirements))?;
        std::fs::write(&stamp, &wanted)?;
    }
    Ok(stamp)
}

fn build_python_agent(root: &Path, venv: &Path, stamp: &Path, dir: &str, out_rel: &str) -> Result<()> {
    let out = root.join(out_rel);
    let inputs = [root.join(dir).join("app.py"), root.join(WIT_DIR).join("agent.wit"), stamp.to_owned()];
    if up_to_date(&out, &inputs) {
        step(&format!("{out_rel} is up to date"));
        return Ok(());
    }
    step(&format!("building {dir} (componentize-py)"));
    // The app module is found by name on the current directory; a set
    // VIRTUAL_ENV would add another site-packages to what gets bundled.
    run(Command::new(venv.join("bin/componentize-py"))
        .current_dir(root.join(dir))
        .env_remove("VIRTUAL_ENV")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-d")
        .arg(root.join(WIT_DIR))
        .args(["-w", "agent", "componentize", "app", "-o"])
        .arg(&out))
}

fn build_js(root: &Path, tools: &Path) -> Result<()> {
    check_node()?;
    let lock = root.join(JS_DIR).join("package-lock.json");
    let stamp = tools.join(".package-lock.sha256");
    let wanted = sha256_of(&lock)?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        step("installing componentize-js (npm, from the committed lockfile)");
        std::fs::create_dir_all(tools)?;
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(root.join(JS_DIR).join(file), tools.join(file))?;
        }
        // `npm ci` refuses this lockfile on registries that lack some
        // foreign-platform optional packages; `npm install` installs the
        // identical tree from it and leaves it unchanged.
        run(Command::new("npm").current_dir(tools).args(["install", "--no-audit", "--no-fund", "--loglevel=error"]))?;
        std::fs::write(&stamp, &wanted)?;
    }
    let out = root.join(JS_OUT);
    let source = root.join(JS_DIR).join("agent.js");
    if up_to_date(&out, &[source.clone(), root.join(WIT_DIR).join("agent.wit"), stamp]) {
        step(&format!("{JS_OUT} is up to date"));
        return Ok(());
    }
    step(&format!("building {JS_DIR} (componentize-js)"));
    // Without `http fetch-event` disabled the component imports wasi:http,
    // which no cell is given.
    run(Command::new(tools.join("node_modules/.bin/componentize-js"))
        .arg(&source)
        .arg("--wit")
        .arg(root.join(WIT_DIR))
        .args(["--world-name", "agent", "--disable", "http", "fetch-event", "-o"])
        .arg(&out))
}

fn check_node() -> Result<()> {
    let out = Command::new("node").arg("--version").output().map_err(|e| {
        anyhow::anyhow!(
            "Node.js {NODE_MAJOR_MIN} or later is needed to build the JavaScript agent, and `node` did not start: {e}"
        )
    })?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the Node.js version from {version:?}"))?;
    if major < NODE_MAJOR_MIN {
        bail!("Node.js {} is too old to build the JavaScript agent; install {NODE_MAJOR_MIN} or later", version.trim());
    }
    Ok(())
}

/// True when `out` exists and is newer than every input.
fn up_to_date(out: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else {
        return false;
    };
    inputs.iter().all(|i| modified(i).is_some_and(|t: SystemTime| t < built))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_older_than_any_input_is_rebuilt() {
        let dir = std::env::temp_dir().join(format!("xtask-up-to-date-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (input, out) = (dir.join("in"), dir.join("out.wasm"));
        std::fs::write(&input, "a").expect("input");
        assert!(!up_to_date(&out, std::slice::from_ref(&input)), "missing output");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&out, "b").expect("out");
        assert!(up_to_date(&out, std::slice::from_ref(&input)));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&input, "c").expect("touch");
        assert!(!up_to_date(&out, &[input]), "input newer than output");
        ensure_removed(&dir);
    }

    fn ensure_removed(dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
