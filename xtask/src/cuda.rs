//! `cargo xtask build-cuda`: the conductor with `--features cuda`, built on
//! this machine (no GPU needed), and optionally packaged for a GPU host
//! that has no Rust toolchain and no internet.
//!
//! - **Toolkit**: NVIDIA's CUDA 13.0 compiler, headers and static runtime
//!   from PyPI wheels, pinned by version and SHA-256 (pip
//!   `--require-hashes`), unpacked into `~/.cache/conductor/cuda-13.0`
//!   (outside the checkout, shared by checkouts). Nothing else
//!   of CUDA is needed to build.
//! - **Linking**: candle's cudarc loads the driver, cuBLAS and cuRAND at
//!   run time (our vendored candle-core asks for `dynamic-loading`), so
//!   the binary starts, and runs its CPU models, on a host without them.
//!   mistral.rs's and candle's kernel crates ask the linker for `-lcudart`;
//!   a linker script named `libcudart.so` gives them the static runtime
//!   instead (it opens the driver only when a kernel is first launched).
//!   The binary then needs only glibc and libstdc++ to start.
//! - **CPU code**: built for x86-64-v3 (AVX2, FMA), not this machine's
//!   `target-cpu=native`, since it runs on another machine's CPU.
//! - The normal build is untouched: its own target directory
//!   (`TARGET/cuda`), its own flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::{MODEL_FILE, cargo_command, python, run, step, target_dir};

/// The CUDA 13.0 wheels that build candle's and mistral.rs's kernels:
/// (requirement, sha256 of the manylinux x86-64 wheel). nvcc with its
/// front end (crt) and NVVM, the runtime's headers and static library,
/// and CCCL's headers (`nv/target`).
const WHEELS: &[(&str, &str)] = &[
    ("nvidia-cuda-nvcc==13.0.88", "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"),
    ("nvidia-cuda-crt==13.0.88", "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"),
    ("nvidia-nvvm==13.0.88", "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"),
    ("nvidia-cuda-runtime==13.0.96", "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"),
    ("nvidia-cuda-cccl==13.0.85", "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"),
];

/// The package's size limit: what a GPU host is sent.
const PACKAGE_BYTES_MAX: u64 = 64 << 20;

/// CPU features the package's code may use: every x86-64 server CPU of
/// the last decade has AVX2 and FMA (candle's fast kernels need them).
const PACKAGE_CPU: &str = "x86-64-v3";

pub(crate) fn build_cuda(root: &Path, arch: &str, package: bool) -> Result<()> {
    let cap = compute_cap(arch)?;
    let started = Instant::now();
    crate::setup(root)?;
    let toolkit = install_toolkit()?;
    let target = target_dir(root).join("cuda");
    step(&format!("building the conductor with CUDA for sm_{cap} (first build: 40-50 minutes on 2 cores)"));
    let cu13 = toolkit.join("nvidia/cu13");
    let path = format!("{}:{}", cu13.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    run(cargo_command()
        .args(["build", "--release", "--locked", "-p", "conductor", "-p", "gpu-kit"])
        .args(["--features", "conductor/cuda,gpu-kit/cuda", "--target-dir"])
        .arg(&target)
        .env("PATH", path)
        .env("CUDA_ROOT", &cu13)
        .env("CUDA_PATH", &cu13)
        .env("CUDA_HOME", &cu13)
        .env("CUDA_COMPUTE_CAP", cap.to_string())
        .env("RUSTFLAGS", format!("-C target-cpu={PACKAGE_CPU} -L native={}", toolkit.join("link").display())))?;
    let bin = target.join("release/conductor");
    let kit = target.join("release/gpu-kit");
    self_check(root, &bin)?;
    step(&format!("built in {:.0} s: {} and {}", started.elapsed().as_secs_f64(), bin.display(), kit.display()));
    if package {
        make_package(root, &target, &bin, &kit, cap)?;
    }
    Ok(())
}

/// `sm_90`, `90` or `9.0` -> 90.
fn compute_cap(arch: &str) -> Result<u32> {
    let digits: String = arch.trim_start_matches("sm_").chars().filter(|c| *c != '.').collect();
    match digits.parse::<u32>() {
        Ok(cap) if (50..=130).contains(&cap) => Ok(cap),
        _ => bail!("--arch {arch:?} is not a CUDA architecture like sm_90 (H100, H200) or sm_80 (A100)"),
    }
}

/// Where the toolkit is kept between checkouts: `$XDG_CACHE_HOME`, else
/// `~/.cache` (the build's flags name it, so one place keeps rebuilds
/// incremental).
fn cache_home() -> Result<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: nowhere to keep the CUDA toolkit")
}

/// The pinned wheels, downloaded with their hashes checked and unpacked
/// into one tree (`nvidia/cu13/{bin,include,lib,nvvm}`), once.
fn install_toolkit() -> Result<PathBuf> {
    let dir = cache_home()?.join("conductor");
    let tree = dir.join("cuda-13.0");
    let stamp = tree.join(".complete");
    let pins: String = WHEELS.iter().map(|(req, sha)| format!("{req} --hash=sha256:{sha}\n")).collect();
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) {
        step(&format!("CUDA 13.0 toolkit present: {}", tree.display()));
    } else {
        step("fetching the CUDA 13.0 compiler wheels from PyPI (hash-pinned, ~100 MB)");
        let wheels = dir.join("cuda-wheels");
        std::fs::create_dir_all(&wheels)?;
        let requirements = wheels.join("requirements.txt");
        std::fs::write(&requirements, &pins)?;
        run(Command::new(python())
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"])
            .args(["--disable-pip-version-check", "--python-version", "3.11"])
            .args(["--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"])
            .args(["--platform", "manylinux_2_12_x86_64", "--platform", "manylinux2010_x86_64", "-d"])
            .arg(&wheels)
            .arg("-r")
            .arg(&requirements))?;
        if tree.exists() {
            std::fs::remove_dir_all(&tree)?;
        }
        std::fs::create_dir_all(&tree)?;
        for (req, _) in WHEELS {
            let stem = req.split("==").next().unwrap_or(req).replace('-', "_");
            let wheel = std::fs::read_dir(&wheels)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{stem}-"))))
                .with_context(|| format!("pip downloaded no wheel for {req}"))?;
            run(Command::new(python()).args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&tree))?;
        }
        // zipfile drops the executable bits.
        for bin in ["nvidia/cu13/bin", "nvidia/cu13/nvvm/bin"] {
            for entry in std::fs::read_dir(tree.join(bin)).with_context(|| format!("{bin} is not in the wheels"))? {
                let path = entry?.path();
                if path.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                }
            }
        }
        std::fs::write(&stamp, &pins)?;
    }
    ensure!(tree.join("nvidia/cu13/bin/nvcc").is_file(), "no nvcc in {}", tree.display());
    let link = tree.join("link");
    std::fs::create_dir_all(&link)?;
    let runtime = tree.join("nvidia/cu13/lib/libcudart_static.a");
    ensure!(runtime.is_file(), "no libcudart_static.a in {}", tree.display());
    std::fs::write(
        link.join("libcudart.so"),
        format!(
            "/* conductor (cargo xtask build-cuda): -lcudart links CUDA's static runtime */\n\
             INPUT({} -ldl -lrt -lpthread)\n",
            runtime.display()
        ),
    )?;
    Ok(tree)
}

/// On this host: the CPU model runs from the CUDA binary, and a `device:
/// cuda` entry is either ready (a usable GPU) or refused with its cause.
fn self_check(root: &Path, bin: &Path) -> Result<()> {
    step("checking the CUDA binary on this host: a CPU model and a cuda model");
    let dir = target_dir(root).join("cuda/self-check");
    std::fs::create_dir_all(&dir)?;
    let model = root.join(".cache/models").join(MODEL_FILE);
    let entry = |device: &str| {
        format!(
            "  smollm2-{device}:\n    file: {}\n    sha256: {}\n    context_tokens: 2048\n    device: {device}\n",
            model.display(),
            crate::MODEL_SHA256
        )
    };
    let registry = dir.join("models.yaml");
    std::fs::write(&registry, format!("models:\n{}{}", entry("cpu"), entry("cuda")))?;
    let out = Command::new(bin)
        .args(["models", "check", "--json", "--models"])
        .arg(&registry)
        .stderr(Stdio::inherit())
        .output()
        .context("running the CUDA binary")?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).context("models check --json")?;
    println!("{}", serde_json::to_string_pretty(&rows)?);
    let ok = |name: &str| rows.as_array().into_iter().flatten().find(|r| r["model"] == name).map(|r| r["ok"] == true);
    ensure!(ok("smollm2-cpu") == Some(true), "the CUDA binary could not run the CPU model");
    match ok("smollm2-cuda") {
        Some(true) => step("a usable GPU is here: the cuda model loaded"),
        Some(false) => step("no usable GPU here: the cuda model was refused with its cause (above)"),
        None => bail!("models check did not report the cuda model"),
    }
    Ok(())
}

/// `.cache/conductor-cuda-sm_NN.tar.xz`: the stripped binaries, the device
/// script, the sample mission with its agent, and the tokenizer the
/// model-maker copies into every model it makes.
fn make_package(root: &Path, target: &Path, bin: &Path, kit: &Path, cap: u32) -> Result<()> {
    let name = format!("conductor-cuda-sm_{cap}");
    let stage = target.join("package").join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    for sub in ["bin", "missions/casework/agent"] {
        std::fs::create_dir_all(stage.join(sub))?;
    }
    step("packaging: stripped binaries, run.sh, the sample mission, the tokenizer");
    for (from, to) in [(bin, "bin/conductor"), (kit, "bin/gpu-kit")] {
        run(Command::new("strip").arg("-o").arg(stage.join(to)).arg(from))?;
    }
    run(Command::new(kit)
        .args(["make-model", "--tokenizer-only", "--tokenizer-from"])
        .arg(root.join(".cache/models").join(MODEL_FILE))
        .arg("--out")
        .arg(stage.join("tokenizer.gguf")))?;
    let casework = root.join("missions/examples/casework");
    std::fs::copy(casework.join("mission.yaml"), stage.join("missions/casework/mission.yaml"))?;
    std::fs::copy(casework.join("agent/eligibility.wasm"), stage.join("missions/casework/agent/eligibility.wasm"))?;
    run(Command::new("cp").arg("-r").arg(casework.join("cases")).arg(stage.join("missions/casework/")))?;
    std::fs::copy(root.join("gpu-kit/device-bench.sh"), stage.join("run.sh"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(stage.join("run.sh"), std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(
        stage.join("README.txt"),
        format!(
            "conductor with CUDA for sm_{cap} (compute capability {}.{} and newer), built by `cargo xtask build-cuda`.\n\n\
             Needs: Linux x86-64 with AVX2, glibc 2.36+, the NVIDIA driver (CUDA 13.0 or newer), and CUDA 13's\n\
             cuBLAS and cuRAND libraries (a CUDA install, or PyTorch's nvidia wheels; run.sh finds them, or\n\
             set CUDA_LIB_DIRS). Nothing else, and no network.\n\n\
             ./run.sh          the device benchmark (about 5 minutes): results/table.md\n\
             ./run.sh --cpu    the same steps on the CPU with a tiny model\n\
             bin/conductor     the conductor; `bin/conductor models check --models FILE` says whether each\n\
             \x20                 model can run here, and why not\n",
            cap / 10,
            cap % 10
        ),
    )?;
    let archive = root.join(".cache").join(format!("{name}.tar.xz"));
    run(Command::new("tar")
        .arg("-C")
        .arg(stage.parent().context("stage has a parent")?)
        .args(["-cf"])
        .arg(&archive)
        .args(["--use-compress-program", "xz -T0 -6"])
        .arg(&name))?;
    let bytes = std::fs::metadata(&archive)?.len();
    ensure!(
        bytes <= PACKAGE_BYTES_MAX,
        "the package is {:.1} MiB, over the {} MiB limit",
        bytes as f64 / 1048576.0,
        PACKAGE_BYTES_MAX >> 20
    );
    step(&format!(
        "package: {} ({:.1} MiB). On the GPU host: tar -xJf {name}.tar.xz && cd {name} && ./run.sh",
        archive.display(),
        bytes as f64 / 1048576.0
    ));
    Ok(())
}
