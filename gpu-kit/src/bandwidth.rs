//! The roofline's two numbers: the GPU's measured device-to-device copy
//! bandwidth, and the bytes of weights a model reads per generated token.
//!
//! Decoding one token reads every weight matrix once (the embedding table
//! only one row), so a single stream cannot beat bandwidth / weight bytes
//! tokens per second, and a batch of B streams sharing each step cannot
//! beat B times that (less, once it becomes compute-bound or the KV cache
//! reads count).

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use crate::gguf;

#[derive(Debug, clap::Args)]
pub struct WeightsArgs {
    /// The GGUF file.
    pub file: PathBuf,
}

/// Bytes of tensor data read per decoded token: every tensor but the
/// token embedding table (sizes from the offsets in the tensor table).
pub fn weights(args: &WeightsArgs) -> Result<()> {
    let header = gguf::read_header(&args.file)?;
    let mut tensors: Vec<&gguf::TensorInfo> = header.tensors.iter().collect();
    tensors.sort_by_key(|t| t.offset);
    let data_len = header.file_len.saturating_sub(header.data_offset);
    let (mut total, mut per_token) = (0u64, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        let end = tensors.get(i + 1).map_or(data_len, |next| next.offset);
        let size = end.saturating_sub(t.offset);
        total += size;
        if t.name != "token_embd.weight" {
            per_token += size;
        }
    }
    println!("{}", json!({"file": args.file, "tensor_bytes": total, "bytes_per_token": per_token}));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct BandwidthArgs {
    /// Bytes per copy, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub mib: usize,
    /// Timed copies (after one untimed).
    #[arg(long, default_value_t = 20)]
    pub copies: usize,
}

/// Device-to-device copies on GPU 0; prints GB/s counting the bytes read
/// and written (each copy moves 2 × its size through memory), which is the
/// rate weights can stream at.
#[cfg(feature = "cuda")]
pub fn bandwidth(args: &BandwidthArgs) -> Result<()> {
    use anyhow::{Context, ensure};
    use cudarc::driver::CudaContext;
    ensure!(args.copies > 0 && args.mib > 0, "--copies and --mib must be positive");
    #[allow(unsafe_code)]
    // SAFETY: only tries to dlopen the driver library's names (see
    // inference::gpu); nothing in it is called.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    ensure!(present, "no NVIDIA driver on this host (libcuda.so.1 could not be loaded)");
    let ctx = CudaContext::new(0).context("opening GPU 0")?;
    let stream = ctx.default_stream();
    let bytes = args.mib << 20;
    let src = stream.alloc_zeros::<u8>(bytes).context("allocating on the GPU")?;
    let mut dst = stream.alloc_zeros::<u8>(bytes).context("allocating on the GPU")?;
    stream.memcpy_dtod(&src, &mut dst)?;
    stream.synchronize()?;
    let started = std::time::Instant::now();
    for _ in 0..args.copies {
        stream.memcpy_dtod(&src, &mut dst)?;
    }
    stream.synchronize()?;
    let seconds = started.elapsed().as_secs_f64();
    let moved = 2.0 * bytes as f64 * args.copies as f64;
    println!(
        "{}",
        json!({"gpu": ctx.name()?, "copy_bytes": bytes, "copies": args.copies, "seconds": seconds,
               "gb_per_s": (moved / seconds / 1e9 * 10.0).round() / 10.0})
    );
    Ok(())
}

#[cfg(not(feature = "cuda"))]
pub fn bandwidth(_args: &BandwidthArgs) -> Result<()> {
    anyhow::bail!("this gpu-kit was built without the `cuda` feature (`cargo xtask build-cuda` builds it with)")
}
