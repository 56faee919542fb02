//! `gpu-kit make-model`: a Llama-architecture GGUF with random weights and
//! a real tokenizer, for measuring inference without downloading a model.
//!
//! The weights are drawn so that a forward pass behaves like a trained
//! model's in scale (nothing flat, nothing exploding), not in meaning:
//!
//! - every linear layer's weights have mean 0 and std `1/sqrt(fan_in)`
//!   (`fan_in` is the row length, GGUF's `ne[0]`), so each projection of a
//!   unit-RMS input (the RMS norms see to that) gives unit-scale outputs:
//!   attention scores of std about 1 (softmax neither flat nor one-hot) and
//!   sub-layer outputs of std below 1, so the residual stream grows only as
//!   the square root of the depth (std about 4 after 32 layers);
//! - `token_embd` has std 1, so the token still shows in the residual stream
//!   after the first layers add to it;
//! - `output` has std `4/sqrt(hidden)`, so the logits (after the final RMS
//!   norm) have a std of about 4: greedy decoding has clear winners and
//!   sampling is far from uniform over the vocabulary.
//!
//! That is about 0.02 for the 1B and 8B projections (0.022 and 0.016; 0.011
//! and 0.008 for `ffn_down`, whose rows are longer), the usual scale of
//! trained Llama weights. Norm weights are 1.
//!
//! The file is written by several threads at once, each generating chunks
//! of 2 Mi values into its own buffer and writing them at their offsets;
//! every chunk's random stream is seeded from (seed, tensor, chunk), so the
//! bytes depend on the seed alone, not on the number of threads.

use crate::gguf::{self, GgmlType, Layout, TensorSpec, Value, ValueType};
use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::ValueEnum;
use half::f16;
use std::fs::{self, File};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Llama 3's RoPE base: the presets copy Llama 3.2 1B's and Llama 3 8B's
/// shapes, so the metadata says what theirs says (a random model is
/// indifferent to it, and the compute is the same for any base).
const ROPE_FREQ_BASE: f32 = 500_000.0;
const RMS_EPS: f32 = 1e-5;
/// The std of `token_embd`'s values.
const EMBED_STD: f32 = 1.0;
/// The std the logits should have; `output`'s values get this over
/// `sqrt(hidden)`.
const LOGIT_STD: f32 = 4.0;
/// Values generated and written as one piece (a multiple of every block).
const CHUNK_ELEMS: u64 = 1 << 21;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model's shape: tiny (hidden 256, 4 layers), 1b (Llama 3.2 1B's
    /// shape) or 8b (Llama 3 8B's shape).
    #[arg(long, value_enum, required_unless_present = "tokenizer_only")]
    size: Option<Size>,
    /// The type of the weight matrices (norms are always F32).
    #[arg(long, value_enum, required_unless_present = "tokenizer_only")]
    quant: Option<Quant>,
    /// A GGUF file whose `tokenizer.*` metadata is copied (a model file, or
    /// one made with --tokenizer-only). The vocabulary size follows it.
    #[arg(long, value_name = "FILE.gguf")]
    tokenizer_from: PathBuf,
    /// The file to write (replaced if it exists, once the new one is
    /// complete).
    #[arg(long, value_name = "FILE.gguf")]
    out: PathBuf,
    /// Seed of the random weights: the same seed gives the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write only the `tokenizer.*` metadata (no tensors): a small file to
    /// carry instead of a whole model, for a later --tokenizer-from.
    #[arg(long, conflicts_with_all = ["size", "quant", "seed"])]
    tokenizer_only: bool,
    /// Writer threads [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Size {
    #[value(name = "tiny")]
    Tiny,
    #[value(name = "1b")]
    OneB,
    #[value(name = "8b")]
    EightB,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quant {
    #[value(name = "q4k")]
    Q4k,
    #[value(name = "f16")]
    F16,
}

/// A Llama model's hyper-parameters.
#[derive(Debug, Clone, Copy)]
struct Shape {
    name: &'static str,
    hidden: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
    context: u64,
}

impl Size {
    fn shape(self) -> Shape {
        match self {
            Size::Tiny => {
                Shape { name: "tiny", hidden: 256, layers: 4, heads: 8, kv_heads: 4, ffn: 768, context: 2048 }
            }
            Size::OneB => {
                Shape { name: "1b", hidden: 2048, layers: 16, heads: 32, kv_heads: 8, ffn: 8192, context: 4096 }
            }
            Size::EightB => {
                Shape { name: "8b", hidden: 4096, layers: 32, heads: 32, kv_heads: 8, ffn: 14336, context: 4096 }
            }
        }
    }
}

impl Quant {
    fn name(self) -> &'static str {
        match self {
            Quant::Q4k => "q4k",
            Quant::F16 => "f16",
        }
    }

    fn ggml_type(self) -> GgmlType {
        match self {
            Quant::Q4k => GgmlType::Q4K,
            Quant::F16 => GgmlType::F16,
        }
    }

    /// llama.cpp's `llama_ftype`: MOSTLY_F16 = 1, MOSTLY_Q4_K_M = 15 (what
    /// llama.cpp itself assumes for a file whose main type is Q4_K).
    fn file_type(self) -> u32 {
        match self {
            Quant::Q4k => 15,
            Quant::F16 => 1,
        }
    }
}

/// A tensor to write and how to fill it: `std` is `None` for the norm
/// weights (all 1.0), else the std of the random values.
#[derive(Debug)]
struct Planned {
    spec: TensorSpec,
    std: Option<f32>,
}

pub fn run(args: &Args) -> Result<()> {
    let source = gguf::read_header(&args.tokenizer_from).context("cannot read --tokenizer-from")?;
    let tokenizer: Vec<(String, Value)> =
        source.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect();
    ensure!(
        !tokenizer.is_empty(),
        "{} has no tokenizer.* metadata: --tokenizer-from needs a GGUF model with its tokenizer \
         (such as the SmolLM2 file `cargo xtask setup` fetches) or a file made with --tokenizer-only",
        args.tokenizer_from.display()
    );
    let vocab = match source.get("tokenizer.ggml.tokens") {
        Some(Value::Array(ValueType::String, tokens)) if !tokens.is_empty() => tokens.len() as u64,
        Some(other) => bail!(
            "`tokenizer.ggml.tokens` in {} is not a non-empty array of strings (it is a {:?})",
            args.tokenizer_from.display(),
            other.value_type()
        ),
        None => bail!("{} has tokenizer.* metadata but no `tokenizer.ggml.tokens`", args.tokenizer_from.display()),
    };
    let dir = check_output_path(&args.out)?;

    let threads = args.threads.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    let (metadata, planned, what) = match (args.tokenizer_only, args.size, args.quant) {
        (true, _, _) => (tokenizer, Vec::new(), format!("tokenizer only, vocabulary {vocab}")),
        (false, Some(size), Some(quant)) => {
            let shape = size.shape();
            let metadata = model_metadata(&shape, quant, vocab, args.seed, tokenizer)?;
            let planned = model_tensors(&shape, quant.ggml_type(), vocab);
            (
                metadata,
                planned,
                format!("llama {} {}, vocabulary {vocab}, seed {}", shape.name, quant.name(), args.seed),
            )
        }
        _ => bail!("--size and --quant are needed unless --tokenizer-only is given"),
    };
    let specs: Vec<TensorSpec> = planned.iter().map(|p| p.spec.clone()).collect();
    let layout = gguf::layout(&metadata, &specs)?;
    check_free_space(&dir, &args.out, layout.file_len)?;

    let started = Instant::now();
    write_file(&args.out, &layout, &planned, args.seed, threads)?;
    let seconds = started.elapsed().as_secs_f64();

    // Read back what was written: a wrong header would otherwise only show
    // when a loader chokes on the file on another host.
    let back = gguf::read_header(&args.out).context("reading back the file just written")?;
    ensure!(
        back.version == 3
            && back.tensors == layout.tensors
            && back.data_offset == layout.data_offset()
            && back.file_len == layout.file_len,
        "{} does not read back as written (a bug in gpu-kit)",
        args.out.display()
    );

    if args.tokenizer_only {
        eprintln!("wrote {}: {what}, {} metadata keys, {} bytes", args.out.display(), metadata.len(), layout.file_len);
        return Ok(());
    }
    let params: u64 = specs.iter().map(TensorSpec::elems).sum();
    eprintln!(
        "wrote {}: {what}; {} parameters ({:.3} B), {} tensors, {} bytes ({:.2} GB) in {seconds:.2} s \
         ({:.0} MB/s, {threads} threads)",
        args.out.display(),
        params,
        params as f64 / 1e9,
        specs.len(),
        layout.file_len,
        layout.file_len as f64 / 1e9,
        layout.file_len as f64 / 1e6 / seconds.max(1e-9),
    );
    Ok(())
}

/// Checks that `out` can be a new file in an existing directory; returns
/// the directory.
fn check_output_path(out: &Path) -> Result<PathBuf> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("the output directory {} is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the output directory {} does not exist (--out {})", dir.display(), out.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot access the output directory {}", dir.display())),
    }
    ensure!(!out.is_dir(), "--out {} is a directory; give the name of the file to write", out.display());
    Ok(dir)
}

/// Refuses to start a file the disk cannot hold (where the free space can be
/// told; elsewhere a full disk shows as a write error).
fn check_free_space(dir: &Path, out: &Path, need: u64) -> Result<()> {
    let Ok(st) = rustix::fs::statvfs(dir) else { return Ok(()) };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < need {
        let note = if out.exists() { " (the existing file is replaced only once the new one is complete)" } else { "" };
        bail!(
            "not enough free disk space in {}: {} needs {need} bytes ({:.2} GB), {free} bytes ({:.2} GB) are free{note}",
            dir.display(),
            out.display(),
            need as f64 / 1e9,
            free as f64 / 1e9,
        );
    }
    Ok(())
}

fn model_metadata(
    shape: &Shape,
    quant: Quant,
    vocab: u64,
    seed: u64,
    tokenizer: Vec<(String, Value)>,
) -> Result<Vec<(String, Value)>> {
    let u32_of = |what: &str, v: u64| u32::try_from(v).with_context(|| format!("{what} {v} does not fit in a u32"));
    let head_dim = shape.hidden / shape.heads;
    let mut m = vec![
        ("general.architecture".to_string(), Value::string("llama")),
        ("general.name".to_string(), Value::string(&format!("conductor random llama {} {}", shape.name, quant.name()))),
        (
            "general.description".to_string(),
            Value::string(&format!("random weights (seed {seed}) made by gpu-kit make-model, for benchmarks only")),
        ),
        ("general.file_type".to_string(), Value::U32(quant.file_type())),
        ("general.quantization_version".to_string(), Value::U32(2)),
        ("general.alignment".to_string(), Value::U32(gguf::DEFAULT_ALIGNMENT as u32)),
        ("llama.context_length".to_string(), Value::U32(u32_of("context", shape.context)?)),
        ("llama.embedding_length".to_string(), Value::U32(u32_of("hidden", shape.hidden)?)),
        ("llama.block_count".to_string(), Value::U32(u32_of("layers", shape.layers)?)),
        ("llama.feed_forward_length".to_string(), Value::U32(u32_of("ffn", shape.ffn)?)),
        ("llama.attention.head_count".to_string(), Value::U32(u32_of("heads", shape.heads)?)),
        ("llama.attention.head_count_kv".to_string(), Value::U32(u32_of("kv heads", shape.kv_heads)?)),
        ("llama.rope.dimension_count".to_string(), Value::U32(u32_of("head dim", head_dim)?)),
        ("llama.rope.freq_base".to_string(), Value::F32(ROPE_FREQ_BASE)),
        ("llama.attention.layer_norm_rms_epsilon".to_string(), Value::F32(RMS_EPS)),
        ("llama.vocab_size".to_string(), Value::U32(u32_of("vocabulary", vocab)?)),
    ];
    m.extend(tokenizer);
    Ok(m)
}

fn model_tensors(shape: &Shape, wtype: GgmlType, vocab: u64) -> Vec<Planned> {
    let h = shape.hidden;
    let kv = shape.kv_heads * (h / shape.heads);
    let norm = |name: String| Planned { spec: TensorSpec { name, dims: vec![h], ggml_type: GgmlType::F32 }, std: None };
    // A linear layer: dims are (fan_in, fan_out), innermost first.
    let linear = |name: String, fan_in: u64, fan_out: u64| Planned {
        spec: TensorSpec { name, dims: vec![fan_in, fan_out], ggml_type: wtype },
        std: Some(1.0 / (fan_in as f32).sqrt()),
    };
    let mut t = vec![
        Planned {
            spec: TensorSpec { name: "token_embd.weight".into(), dims: vec![h, vocab], ggml_type: wtype },
            std: Some(EMBED_STD),
        },
        norm("output_norm.weight".into()),
        Planned {
            spec: TensorSpec { name: "output.weight".into(), dims: vec![h, vocab], ggml_type: wtype },
            std: Some(LOGIT_STD / (h as f32).sqrt()),
        },
    ];
    for n in 0..shape.layers {
        t.push(norm(format!("blk.{n}.attn_norm.weight")));
        t.push(linear(format!("blk.{n}.attn_q.weight"), h, h));
        t.push(linear(format!("blk.{n}.attn_k.weight"), h, kv));
        t.push(linear(format!("blk.{n}.attn_v.weight"), h, kv));
        t.push(linear(format!("blk.{n}.attn_output.weight"), h, h));
        t.push(norm(format!("blk.{n}.ffn_norm.weight")));
        t.push(linear(format!("blk.{n}.ffn_gate.weight"), h, shape.ffn));
        t.push(linear(format!("blk.{n}.ffn_up.weight"), h, shape.ffn));
        t.push(linear(format!("blk.{n}.ffn_down.weight"), shape.ffn, h));
    }
    t
}

/// One piece of work: `n` values of tensor `tensor` from value `first`.
#[derive(Debug)]
struct Job {
    tensor: usize,
    chunk: u64,
    n: u64,
    /// Where the bytes go in the file.
    file_offset: u64,
}

/// Writes the file under a temporary name and renames it to `out` once
/// complete, so an interrupted run never leaves a file that looks whole.
fn write_file(out: &Path, layout: &Layout, planned: &[Planned], seed: u64, threads: usize) -> Result<()> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = write_contents(&partial, layout, planned, seed, threads).and_then(|()| {
        fs::rename(&partial, out).with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn write_contents(path: &Path, layout: &Layout, planned: &[Planned], seed: u64, threads: usize) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    // The gaps between tensors (alignment padding) stay zeros.
    file.set_len(layout.file_len)
        .with_context(|| format!("cannot size {} to {} bytes", path.display(), layout.file_len))?;
    file.write_all_at(&layout.header, 0).with_context(|| format!("cannot write the header of {}", path.display()))?;

    let data_offset = layout.data_offset();
    let mut jobs = Vec::new();
    for (i, (p, t)) in planned.iter().zip(&layout.tensors).enumerate() {
        let ty = p.spec.ggml_type;
        let elems = p.spec.elems();
        for chunk in 0..elems.div_ceil(CHUNK_ELEMS) {
            let first = chunk * CHUNK_ELEMS;
            jobs.push(Job {
                tensor: i,
                chunk,
                n: CHUNK_ELEMS.min(elems - first),
                file_offset: data_offset + t.offset + first / ty.block_elems() * ty.block_bytes(),
            });
        }
    }
    let total: u64 = layout.sizes.iter().sum();
    let threads = threads.clamp(1, jobs.len().max(1));
    let table = normal_table();

    let next = AtomicUsize::new(0);
    let written = AtomicU64::new(0);
    let abort = AtomicBool::new(false);
    let ctx = Worker {
        file: &file,
        path,
        planned,
        jobs: &jobs,
        table: &table,
        seed,
        next: &next,
        written: &written,
        abort: &abort,
    };

    let started = Instant::now();
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| ctx.run())).collect();
        let mut last = Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                let done = written.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "make-model: {:5.1}%  {:.0} of {:.0} MB  {:.0} MB/s",
                    100.0 * done as f64 / total.max(1) as f64,
                    done as f64 / 1e6,
                    total as f64 / 1e6,
                    done as f64 / 1e6 / secs
                );
            }
        }
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(anyhow!("a writer thread panicked")),
            })
            .collect()
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(())
}

/// What the writer threads share.
#[derive(Debug, Clone, Copy)]
struct Worker<'a> {
    file: &'a File,
    path: &'a Path,
    planned: &'a [Planned],
    jobs: &'a [Job],
    table: &'a [f32; TABLE_LEN],
    seed: u64,
    next: &'a AtomicUsize,
    written: &'a AtomicU64,
    abort: &'a AtomicBool,
}

impl Worker<'_> {
    fn run(&self) -> Result<()> {
        let result = self.work();
        if result.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        result
    }

    fn work(&self) -> Result<()> {
        let mut buf = Vec::new();
        while !self.abort.load(Ordering::Relaxed) {
            let Some(job) = self.jobs.get(self.next.fetch_add(1, Ordering::Relaxed)) else { break };
            let p = self.planned.get(job.tensor).context("job for a tensor that is not planned")?;
            let ty = p.spec.ggml_type;
            let len = usize::try_from(job.n / ty.block_elems() * ty.block_bytes())?;
            buf.resize(len, 0);
            let mut rng = SplitMix64(mix(mix(mix(self.seed) ^ job.tensor as u64) ^ job.chunk));
            match (ty, p.std) {
                (GgmlType::F32, _) => fill_ones_f32(&mut buf),
                (_, None) => bail!("tensor `{}` has no std to draw its values with", p.spec.name),
                (GgmlType::F16, Some(std)) => fill_f16(&mut buf, &f16_table(self.table, std), &mut rng),
                (GgmlType::Q4K, Some(std)) => fill_q4k(&mut buf, &q4k_block_head(std), &mut rng),
            }
            self.file.write_all_at(&buf, job.file_offset).with_context(|| {
                format!("cannot write {} bytes at offset {} of {}", buf.len(), job.file_offset, self.path.display())
            })?;
            self.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// splitmix64: one add and two multiplies per 64 random bits; plenty for
/// weights, and seedable from any u64.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        finalize(self.0)
    }
}

fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a value (splitmix64's step on it); chained, it seeds each chunk.
fn mix(x: u64) -> u64 {
    finalize(x.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

const TABLE_BITS: u32 = 12;
const TABLE_LEN: usize = 1 << TABLE_BITS;

/// 4096 draws of a standard normal (Box-Muller from a fixed seed), shifted
/// and scaled to mean 0 and std 1 exactly. F16 weights are entries of this
/// table picked by 12 random bits each: a normal shape at table-lookup cost.
fn normal_table() -> [f32; TABLE_LEN] {
    let mut rng = SplitMix64(0x6770_752d_6b69_7421);
    let unit = |r: u64| ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mut z = [0f64; TABLE_LEN];
    for pair in z.chunks_exact_mut(2) {
        let radius = (-2.0 * unit(rng.next_u64()).ln()).sqrt();
        let angle = std::f64::consts::TAU * unit(rng.next_u64());
        pair[0] = radius * angle.cos();
        pair[1] = radius * angle.sin();
    }
    let n = TABLE_LEN as f64;
    let mean = z.iter().sum::<f64>() / n;
    let std = (z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    z.map(|x| ((x - mean) / std) as f32)
}

/// The table scaled to `std`, as F16 bits.
fn f16_table(table: &[f32; TABLE_LEN], std: f32) -> [u16; TABLE_LEN] {
    table.map(|z| f16::from_f32(z * std).to_bits())
}

fn fill_ones_f32(buf: &mut [u8]) {
    for v in buf.chunks_exact_mut(4) {
        v.copy_from_slice(&1f32.to_le_bytes());
    }
}

/// F16 values from `table`, five per 64 random bits.
fn fill_f16(buf: &mut [u8], table: &[u16; TABLE_LEN], rng: &mut SplitMix64) {
    const PER_DRAW: usize = 64 / TABLE_BITS as usize;
    let mask = TABLE_LEN as u64 - 1;
    let mut groups = buf.chunks_exact_mut(2 * PER_DRAW);
    for group in &mut groups {
        let mut r = rng.next_u64();
        for v in group.chunks_exact_mut(2) {
            v.copy_from_slice(&table[(r & mask) as usize].to_le_bytes());
            r >>= TABLE_BITS;
        }
    }
    let mut r = rng.next_u64();
    for v in groups.into_remainder().chunks_exact_mut(2) {
        v.copy_from_slice(&table[(r & mask) as usize].to_le_bytes());
        r >>= TABLE_BITS;
    }
}

/// The sub-block scale and min every Q4_K block uses. A value is
/// `d*SCALE*q - dmin*MIN` with `q` uniform in 0..=15 (mean 7.5, std
/// sqrt(255/12)); with `dmin = d*SCALE*7.5/MIN` (= `d` for these) its mean
/// is 0 and its std `d*SCALE*sqrt(255/12)`.
const Q4K_SCALE: u8 = 2;
const Q4K_MIN: u8 = 15;

/// The first 16 bytes of every Q4_K block of a tensor whose values should
/// have mean 0 and std `std`: f16 `d`, f16 `dmin`, and the 12 bytes of
/// packed 6-bit scales and mins (all sub-blocks alike).
fn q4k_block_head(std: f32) -> [u8; 16] {
    let q_std = (255.0f32 / 12.0).sqrt();
    let d = f16::from_f32(std / (f32::from(Q4K_SCALE) * q_std));
    let dmin = f16::from_f32(d.to_f32() * f32::from(Q4K_SCALE) * 7.5 / f32::from(Q4K_MIN));
    let mut head = [0u8; 16];
    head[0..2].copy_from_slice(&d.to_bits().to_le_bytes());
    head[2..4].copy_from_slice(&dmin.to_bits().to_le_bytes());
    head[4..16].copy_from_slice(&pack_q4k_scales([Q4K_SCALE; 8], [Q4K_MIN; 8]));
    head
}

/// Packs eight 6-bit scales and mins as ggml's `get_scale_min_k4` unpacks
/// them: sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7
/// (mins); sub-blocks 4-7 with their low 4 bits in bytes 8-11 (scale low,
/// min high nibble) and their top 2 bits in the top 2 bits of bytes 0-7.
fn pack_q4k_scales(scales: [u8; 8], mins: [u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        let (sc_hi, m_hi) = (scales[j + 4] & 63, mins[j + 4] & 63);
        q[j] = (scales[j] & 63) | ((sc_hi >> 4) << 6);
        q[j + 4] = (mins[j] & 63) | ((m_hi >> 4) << 6);
        q[j + 8] = (sc_hi & 0xF) | ((m_hi & 0xF) << 4);
    }
    q
}

/// Q4_K blocks: the given head, then 128 bytes of random 4-bit quants.
fn fill_q4k(buf: &mut [u8], head: &[u8; 16], rng: &mut SplitMix64) {
    for block in buf.chunks_exact_mut(144) {
        block[..16].copy_from_slice(head);
        for q in block[16..].chunks_exact_mut(8) {
            q.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's unpacking (candle's `get_scale_min_k4`), to check the packing.
    fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
        }
    }

    #[test]
    fn scales_pack_as_ggml_unpacks_them() {
        let scales = [0, 1, 17, 63, 5, 32, 48, 63];
        let mins = [63, 2, 33, 0, 63, 16, 1, 47];
        let q = pack_q4k_scales(scales, mins);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (scales[j], mins[j]), "sub-block {j}");
        }
    }

    #[test]
    fn q4k_head_gives_mean_zero_and_the_std() {
        let head = q4k_block_head(0.02);
        let d = f16::from_bits(u16::from_le_bytes([head[0], head[1]])).to_f32();
        let dmin = f16::from_bits(u16::from_le_bytes([head[2], head[3]])).to_f32();
        let values: Vec<f32> =
            (0..16).map(|q| d * f32::from(Q4K_SCALE) * q as f32 - dmin * f32::from(Q4K_MIN)).collect();
        let mean = values.iter().sum::<f32>() / 16.0;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 16.0).sqrt();
        assert!(mean.abs() < 1e-6, "mean {mean}");
        assert!((std - 0.02).abs() < 0.02 * 1e-3, "std {std}");
    }

    #[test]
    fn normal_table_is_standard() {
        let t = normal_table();
        let mean = t.iter().map(|&x| f64::from(x)).sum::<f64>() / TABLE_LEN as f64;
        let var = t.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / TABLE_LEN as f64;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "mean {mean} var {var}");
        // Roughly normal: about 68% within one std.
        let within = t.iter().filter(|x| x.abs() < 1.0).count() as f64 / TABLE_LEN as f64;
        assert!((within - 0.6827).abs() < 0.03, "{within}");
    }

    #[test]
    fn f16_fill_covers_odd_lengths() {
        let table = f16_table(&normal_table(), 0.5);
        let mut buf = vec![0u8; 2 * 13];
        fill_f16(&mut buf, &table, &mut SplitMix64(1));
        assert!(buf.chunks_exact(2).all(|v| table.contains(&u16::from_le_bytes([v[0], v[1]]))));
    }
}
