//! Whether a model can run on the GPU, decided before anything is loaded
//! onto it.
//!
//! mistral.rs and candle assume a working CUDA stack: asked for a CUDA
//! device on a host without the driver, or without cuBLAS, cudarc panics
//! (it loads the libraries on first use). So the router asks here first,
//! in order, and each failure is a typed [`DeviceError`] naming the cause:
//! the file's tensor types (the file's fault on any host), then the driver
//! library, a GPU, the compute capability this build's kernels need, the
//! CUDA libraries candle opens, and the GPU's free memory against the
//! weights. The CPU models of the same registry never come here.
//!
//! The tensor-type check ([`cuda_quant_problem`]) is plain file reading and
//! is built and tested in every build; the rest needs the `cuda` feature.

use std::path::Path;

use candle_core::quantized::GgmlDType;
use models::DeviceError;

/// GGUF tensor types candle 0.10.2 has CUDA kernels for (dequantise and
/// matrix-vector product: `candle-core/src/quantized/cuda.rs`). Q8_1 and
/// Q8_K exist only as activation formats there.
fn runs_on_cuda(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(dtype, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K)
}

/// The first tensor of the GGUF file at `path` whose type has no CUDA
/// kernel, as the error to report; `Ok(None)` if every tensor can run on
/// the GPU. An unreadable file is an `Err` with the reason.
pub fn cuda_quant_problem(path: &Path) -> Result<Option<DeviceError>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let content = match candle_core::quantized::gguf_file::Content::read(&mut file) {
        Ok(content) => content,
        // candle refuses a type id it does not know before it names the
        // tensor; such a type has no CUDA kernel either.
        Err(e) if e.to_string().contains("unknown dtype") => {
            return Ok(Some(DeviceError::UnsupportedQuant { tensor: "(unnamed)".into(), quant: e.to_string() }));
        }
        Err(e) => return Err(format!("{} is not a readable GGUF file: {e}", path.display())),
    };
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let dtype = content.tensor_infos[name].ggml_dtype;
        if !runs_on_cuda(dtype) {
            return Ok(Some(DeviceError::UnsupportedQuant { tensor: name.clone(), quant: format!("{dtype:?}") }));
        }
    }
    Ok(None)
}

#[cfg(feature = "cuda")]
pub use probe::cuda_device;

#[cfg(feature = "cuda")]
mod probe {
    use std::path::Path;

    use cudarc::driver::{CudaContext, DriverError, sys::CUresult};
    use models::DeviceError;

    /// The CUDA major version this build was compiled against: the
    /// libraries it opens carry this soname suffix.
    const CUDA_MAJOR: &str = "13";

    /// The compute capability the kernels were built for
    /// (`CUDA_COMPUTE_CAP` at build time, which `cargo xtask build-cuda`
    /// sets from `--arch`); a GPU below it cannot load them.
    fn built_for() -> Option<(i32, i32)> {
        let cap: i32 = option_env!("CUDA_COMPUTE_CAP")?.parse().ok()?;
        Some((cap / 10, cap % 10))
    }

    /// Memory beyond the weights a model needs before its first step:
    /// activations, cuBLAS's workspace and the smallest KV cache.
    const HEADROOM_BYTES: u64 = 512 << 20;

    /// Checks the host's CUDA stack for the GGUF file at `path` (whose
    /// tensor types [`super::cuda_quant_problem`] has passed), then opens
    /// GPU 0 for candle. Every refusal is typed; nothing here panics.
    pub fn cuda_device(path: &Path) -> Result<mistralrs::Device, DeviceError> {
        // The library checks come first: cudarc panics on the first call
        // into a library it cannot load.
        if !library_present(Library::Driver) {
            return Err(DeviceError::NoDriver { library: "libcuda.so.1".into() });
        }
        let driver = |e: DriverError| match e.0 {
            CUresult::CUDA_ERROR_NO_DEVICE => DeviceError::NoDevice { detail: format!("{e}") },
            _ => DeviceError::Driver { detail: format!("{e}") },
        };
        let count = CudaContext::device_count().map_err(driver)?;
        if count < 1 {
            return Err(DeviceError::NoDevice { detail: "device count 0".into() });
        }
        let ctx = CudaContext::new(0).map_err(driver)?;
        let gpu = ctx.name().map_err(driver)?;
        let found = ctx.compute_capability().map_err(driver)?;
        if let Some(needed) = built_for().filter(|needed| found < *needed) {
            return Err(DeviceError::ComputeCapability {
                gpu,
                found: format!("{}.{}", found.0, found.1),
                needed: format!("{}.{}", needed.0, needed.1),
            });
        }
        for (lib, name) in [(Library::Cublas, "cuBLAS (libcublas.so)"), (Library::Curand, "cuRAND (libcurand.so)")] {
            if !library_present(lib) {
                return Err(DeviceError::MissingLibrary { library: name.into(), cuda: CUDA_MAJOR.into() });
            }
        }
        let weights = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let (free, total) = ctx.mem_get_info().map_err(driver)?;
        let mib = |b: u64| b >> 20;
        let needed = weights.saturating_add(HEADROOM_BYTES);
        if needed > free as u64 {
            return Err(DeviceError::OutOfMemory {
                gpu,
                needed_mib: mib(needed),
                free_mib: mib(free as u64),
                total_mib: mib(total as u64),
            });
        }
        mistralrs::Device::new_cuda(0).map_err(|e| DeviceError::Driver { detail: e.to_string() })
    }

    #[derive(Debug, Clone, Copy)]
    enum Library {
        Driver,
        Cublas,
        Curand,
    }

    /// Whether the dynamic loader finds the library cudarc would open.
    #[allow(unsafe_code)]
    fn library_present(lib: Library) -> bool {
        // SAFETY: each `is_culib_present` only tries `dlopen` on the
        // library's candidate names and closes what it opened; it calls
        // nothing inside the library. Loading a shared library runs its
        // initialisers, which for NVIDIA's libraries is what any use of
        // the GPU does first anyway.
        unsafe {
            match lib {
                Library::Driver => cudarc::driver::sys::is_culib_present(),
                Library::Cublas => cudarc::cublas::sys::is_culib_present(),
                Library::Curand => cudarc::curand::sys::is_culib_present(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with no metadata and one 32-value tensor of ggml
    /// type `type_id` (block data zeroed; `block_bytes` for one block).
    fn one_tensor_gguf(dir: &Path, type_id: u32, block_bytes: usize) -> std::path::PathBuf {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&0u64.to_le_bytes()); // metadata pairs
        let name = b"blk.0.attn_q.weight";
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&1u32.to_le_bytes()); // dimensions
        b.extend_from_slice(&32u64.to_le_bytes());
        b.extend_from_slice(&type_id.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // offset in the data section
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, block_bytes));
        let path = dir.join(format!("type-{type_id}.gguf"));
        std::fs::write(&path, b).expect("write the test file");
        path
    }

    #[test]
    fn tensor_types_without_a_cuda_kernel_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Q8_0 (type 8, 34-byte blocks) runs on CUDA.
        let q8_0 = one_tensor_gguf(dir.path(), 8, 34);
        assert_eq!(cuda_quant_problem(&q8_0).expect("readable"), None);
        // Q8_1 (type 9, 36-byte blocks) is only an activation format there.
        let q8_1 = one_tensor_gguf(dir.path(), 9, 36);
        match cuda_quant_problem(&q8_1).expect("readable") {
            Some(DeviceError::UnsupportedQuant { tensor, quant }) => {
                assert_eq!(tensor, "blk.0.attn_q.weight");
                assert_eq!(quant, "Q8_1");
            }
            other => panic!("Q8_1 must be refused, got {other:?}"),
        }
        // An i-quant (IQ2_XXS, type 16): candle knows no such type at all.
        let iq = one_tensor_gguf(dir.path(), 16, 66);
        assert!(matches!(cuda_quant_problem(&iq), Ok(Some(DeviceError::UnsupportedQuant { .. }))));
        // Not a GGUF file: an error with the path, not a refusal.
        let junk = dir.path().join("junk.gguf");
        std::fs::write(&junk, b"not a model").expect("write");
        let err = cuda_quant_problem(&junk).expect_err("junk is unreadable");
        assert!(err.contains("junk.gguf"), "{err}");
    }

    #[test]
    fn the_pinned_model_runs_on_cuda() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(model.is_file(), "{} is missing: run `cargo xtask setup`", model.display());
        assert_eq!(cuda_quant_problem(&model).expect("the pinned model is a GGUF file"), None);
    }
}
