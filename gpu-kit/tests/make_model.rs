//! `gpu-kit make-model` end to end: the built binary makes a tokenizer-only
//! file from the pinned SmolLM2 model, then tiny models from either file,
//! and candle (an independent GGUF reader and Q4_K decoder) checks them:
//! tokenizer keys, the Llama tensor table, the file size, determinism and
//! the weights' statistics.

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tiny preset, as the model-maker's documentation gives it.
const HIDDEN: usize = 256;
const LAYERS: usize = 4;
const HEADS: usize = 8;
const KV_HEADS: usize = 4;
const FFN: usize = 768;
const CONTEXT: usize = 2048;
const SMOLLM2_VOCAB: usize = 49152;

fn source_model() -> PathBuf {
    let path = std::env::var_os("CONDUCTOR_TEST_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(
        path.is_file(),
        "the tokenizer source {} is missing: run `cargo xtask setup` to fetch the pinned models \
         (or point CONDUCTOR_TEST_MODEL at a GGUF model with a tokenizer)",
        path.display()
    );
    path
}

fn make_model(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-kit")).arg("make-model").args(args).output().expect("gpu-kit runs")
}

/// Runs make-model and requires it to succeed.
fn make(args: &[&str]) {
    let out = make_model(args);
    assert!(out.status.success(), "gpu-kit make-model {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs make-model and requires it to fail; returns its stderr.
fn make_fails(args: &[&str]) -> String {
    let out = make_model(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "gpu-kit make-model {args:?} succeeded; stderr: {stderr}");
    stderr
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn read(path: &Path) -> (Content, File) {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let content = Content::read(&mut file).unwrap_or_else(|e| panic!("candle cannot read {}: {e}", path.display()));
    (content, file)
}

/// The same value, of the same type (candle's `Value` has no `PartialEq`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::U8(x), Value::U8(y)) => x == y,
        (Value::I8(x), Value::I8(y)) => x == y,
        (Value::U16(x), Value::U16(y)) => x == y,
        (Value::I16(x), Value::I16(y)) => x == y,
        (Value::U32(x), Value::U32(y)) => x == y,
        (Value::I32(x), Value::I32(y)) => x == y,
        (Value::U64(x), Value::U64(y)) => x == y,
        (Value::I64(x), Value::I64(y)) => x == y,
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        _ => false,
    }
}

fn tokenizer_keys(c: &Content) -> BTreeSet<String> {
    c.metadata.keys().filter(|k| k.starts_with("tokenizer.")).cloned().collect()
}

/// Every `tokenizer.*` key of `source` is in `made`, with the same value.
fn assert_same_tokenizer(source: &Content, made: &Content) {
    let keys = tokenizer_keys(source);
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.chat_template"] {
        assert!(keys.contains(key), "the source lacks {key}; is it the SmolLM2 file?");
    }
    assert_eq!(tokenizer_keys(made), keys, "the tokenizer keys differ");
    for key in &keys {
        assert!(same(&source.metadata[key], &made.metadata[key]), "`{key}` differs from the source's");
    }
}

fn tokenizer_only(dir: &Path) -> PathBuf {
    let tok = dir.join("tokenizer.gguf");
    make(&["--tokenizer-only", "--tokenizer-from", s(&source_model()), "--out", s(&tok)]);
    tok
}

#[test]
fn tokenizer_only_file_carries_every_tokenizer_key_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tok = tokenizer_only(dir.path());
    let (source, _) = read(&source_model());
    let (made, _) = read(&tok);
    assert_same_tokenizer(&source, &made);
    assert_eq!(made.metadata.len(), tokenizer_keys(&source).len(), "only tokenizer keys belong in it");
    assert!(made.tensor_infos.is_empty(), "a tokenizer-only file has no tensors");
    let size = std::fs::metadata(&tok).expect("stat").len();
    assert!(size < 8 << 20, "the tokenizer-only file is {size} bytes, more than a tokenizer needs");

    // A tokenizer-only file is itself a source: copying it again changes nothing.
    let again = dir.path().join("again.gguf");
    make(&["--tokenizer-only", "--tokenizer-from", s(&tok), "--out", s(&again)]);
    assert_eq!(std::fs::read(&tok).expect("read"), std::fs::read(&again).expect("read"));
}

/// The expected tensor table of the tiny preset: name, GGUF dims (innermost
/// first), and the std of its values (`None`: a norm, all ones).
fn expected_tensors() -> Vec<(String, Vec<usize>, Option<f32>)> {
    let h = HIDDEN;
    let kv = KV_HEADS * (HIDDEN / HEADS);
    let lin = |fan_in: usize| Some(1.0 / (fan_in as f32).sqrt());
    let mut t = vec![
        ("token_embd.weight".to_string(), vec![h, SMOLLM2_VOCAB], Some(1.0)),
        ("output_norm.weight".to_string(), vec![h], None),
        ("output.weight".to_string(), vec![h, SMOLLM2_VOCAB], Some(4.0 / (h as f32).sqrt())),
    ];
    for n in 0..LAYERS {
        t.push((format!("blk.{n}.attn_norm.weight"), vec![h], None));
        t.push((format!("blk.{n}.attn_q.weight"), vec![h, h], lin(h)));
        t.push((format!("blk.{n}.attn_k.weight"), vec![h, kv], lin(h)));
        t.push((format!("blk.{n}.attn_v.weight"), vec![h, kv], lin(h)));
        t.push((format!("blk.{n}.attn_output.weight"), vec![h, h], lin(h)));
        t.push((format!("blk.{n}.ffn_norm.weight"), vec![h], None));
        t.push((format!("blk.{n}.ffn_gate.weight"), vec![h, FFN], lin(h)));
        t.push((format!("blk.{n}.ffn_up.weight"), vec![h, FFN], lin(h)));
        t.push((format!("blk.{n}.ffn_down.weight"), vec![FFN, h], lin(FFN)));
    }
    t
}

fn u32_of(c: &Content, key: &str) -> u32 {
    match c.metadata.get(key) {
        Some(Value::U32(v)) => *v,
        other => panic!("`{key}` should be a u32, is {other:?}"),
    }
}

fn f32_of(c: &Content, key: &str) -> f32 {
    match c.metadata.get(key) {
        Some(Value::F32(v)) => *v,
        other => panic!("`{key}` should be an f32, is {other:?}"),
    }
}

fn string_of<'a>(c: &'a Content, key: &str) -> &'a str {
    match c.metadata.get(key) {
        Some(Value::String(v)) => v,
        other => panic!("`{key}` should be a string, is {other:?}"),
    }
}

/// Checks a tiny model made with `quant` against the spec, tensor by tensor.
fn check_tiny(path: &Path, quant: &str, source: &Content) {
    let (c, mut file) = read(path);
    let (wtype, file_type) = match quant {
        "q4k" => (GgmlDType::Q4K, 15),
        "f16" => (GgmlDType::F16, 1),
        _ => panic!("unknown quant {quant}"),
    };

    // Metadata.
    assert_eq!(string_of(&c, "general.architecture"), "llama");
    assert_eq!(string_of(&c, "general.name"), format!("conductor random llama tiny {quant}"));
    assert_eq!(u32_of(&c, "general.file_type"), file_type);
    assert_eq!(u32_of(&c, "general.alignment"), 32);
    for (key, want) in [
        ("llama.context_length", CONTEXT),
        ("llama.embedding_length", HIDDEN),
        ("llama.block_count", LAYERS),
        ("llama.feed_forward_length", FFN),
        ("llama.attention.head_count", HEADS),
        ("llama.attention.head_count_kv", KV_HEADS),
        ("llama.rope.dimension_count", HIDDEN / HEADS),
        ("llama.vocab_size", SMOLLM2_VOCAB),
    ] {
        assert_eq!(u32_of(&c, key) as usize, want, "{key}");
    }
    assert_eq!(f32_of(&c, "llama.rope.freq_base"), 500_000.0);
    assert_eq!(f32_of(&c, "llama.attention.layer_norm_rms_epsilon"), 1e-5);
    match c.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(tokens)) => assert_eq!(tokens.len(), SMOLLM2_VOCAB),
        other => panic!("tokenizer.ggml.tokens is {other:?}"),
    }
    assert_same_tokenizer(source, &c);

    // The tensor table.
    let expected = expected_tensors();
    let names: BTreeSet<&str> = c.tensor_infos.keys().map(String::as_str).collect();
    let want_names: BTreeSet<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, want_names, "tensor names");
    let mut extents = Vec::new();
    for (name, dims, std) in &expected {
        let info = &c.tensor_infos[name];
        // candle lists dims outermost first.
        let mut candle_dims = info.shape.dims().to_vec();
        candle_dims.reverse();
        assert_eq!(&candle_dims, dims, "dims of {name}");
        let want_type = if std.is_some() { wtype } else { GgmlDType::F32 };
        assert_eq!(info.ggml_dtype, want_type, "type of {name}");
        assert_eq!(info.offset % 32, 0, "offset of {name} is not 32-byte aligned");
        let bytes = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        extents.push((info.offset, info.offset + bytes as u64, name));
    }
    extents.sort();
    for pair in extents.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{} and {} overlap", pair[0].2, pair[1].2);
    }
    let end = extents.last().expect("tensors").1;
    let implied = (c.tensor_data_offset + end).div_ceil(32) * 32;
    let size = std::fs::metadata(path).expect("stat").len();
    assert_eq!(size, implied, "the file size is not what the tensor table implies");

    // The values. Sampling error of a std over n values is about
    // 1/sqrt(2n) (0.3% for the smallest tensor here); 2% is far beyond it,
    // and far below what a wrong scale, min or packing would give.
    for (name, _, std) in &expected {
        let q = c.tensor(&mut file, name, &Device::Cpu).expect("candle reads the tensor");
        let values: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("candle dequantizes the tensor");
        let Some(std) = std else {
            assert!(values.iter().all(|&v| v == 1.0), "{name} should be all ones");
            continue;
        };
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let got_std = (values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt();
        let std = f64::from(*std);
        assert!(mean.abs() < 5.0 * std / n.sqrt(), "{name}: mean {mean}, want 0 (std {std}, {n} values)");
        assert!((got_std / std - 1.0).abs() < 0.02, "{name}: std {got_std}, want {std}");
        if wtype == GgmlDType::Q4K {
            // One d and dmin, one scale and min for every sub-block: 16
            // levels in all, symmetric about 0.
            let levels: BTreeSet<u32> = values.iter().map(|v| v.to_bits()).collect();
            assert_eq!(levels.len(), 16, "{name}: {} distinct values, want the 16 of one Q4_K scale", levels.len());
            let (lo, hi) = values.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            assert!((lo + hi).abs() <= 1e-3 * hi, "{name}: levels from {lo} to {hi} are not symmetric");
        }
    }
}

#[test]
fn tiny_models_have_the_llama_layout_and_the_intended_weights() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let model = source_model();
    let tok = tokenizer_only(dir.path());
    let (source, _) = read(&model);
    for (quant, from) in [("q4k", &tok), ("f16", &tok), ("q4k", &model)] {
        let out = dir.path().join(format!("tiny-{quant}.gguf"));
        make(&["--size", "tiny", "--quant", quant, "--tokenizer-from", s(from), "--out", s(&out), "--seed", "7"]);
        check_tiny(&out, quant, &source);
        assert!(!dir.path().join(format!("tiny-{quant}.gguf.partial")).exists(), "the partial file was left behind");
    }
}

#[test]
fn same_seed_same_bytes_whatever_the_threads_other_seed_other_bytes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tok = tokenizer_only(dir.path());
    for quant in ["q4k", "f16"] {
        let make_seeded = |seed: &str, threads: &str| {
            let out = dir.path().join(format!("{quant}-{seed}-{threads}.gguf"));
            make(&[
                "--size",
                "tiny",
                "--quant",
                quant,
                "--tokenizer-from",
                s(&tok),
                "--out",
                s(&out),
                "--seed",
                seed,
                "--threads",
                threads,
            ]);
            std::fs::read(&out).expect("read the model")
        };
        let one = make_seeded("7", "1");
        let three = make_seeded("7", "3");
        let other = make_seeded("8", "3");
        assert!(one == three, "{quant}: seed 7 gave different bytes with 1 and 3 threads");
        assert_eq!(one.len(), other.len());
        // Beyond the header (whose description names the seed), the
        // weights differ nearly everywhere.
        let tail = one.len() - 1_000_000;
        let differing = one[tail..].iter().zip(&other[tail..]).filter(|(a, b)| a != b).count();
        assert!(differing > 500_000, "{quant}: seeds 7 and 8 differ in only {differing} of the last 1e6 bytes");
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("m.gguf");
    let model = |from: &Path, out: &Path| {
        make_fails(&["--size", "tiny", "--quant", "q4k", "--tokenizer-from", s(from), "--out", s(out)])
    };

    let missing = dir.path().join("nowhere.gguf");
    let err = model(&missing, &out);
    assert!(err.contains("nowhere.gguf") && err.contains("cannot open"), "{err}");

    let not_gguf = dir.path().join("text.gguf");
    std::fs::write(&not_gguf, "just some text, long enough to hold a header").expect("write");
    let err = model(&not_gguf, &out);
    assert!(err.contains("text.gguf is not a valid GGUF file") && err.contains("magic"), "{err}");

    // A valid GGUF v3 file with one metadata key and no tokenizer.
    let mut bare = b"GGUF".to_vec();
    bare.extend_from_slice(&3u32.to_le_bytes());
    bare.extend_from_slice(&0u64.to_le_bytes());
    bare.extend_from_slice(&1u64.to_le_bytes());
    bare.extend_from_slice(&20u64.to_le_bytes());
    bare.extend_from_slice(b"general.architecture");
    bare.extend_from_slice(&8u32.to_le_bytes());
    bare.extend_from_slice(&5u64.to_le_bytes());
    bare.extend_from_slice(b"llama");
    let bare_path = dir.path().join("bare.gguf");
    std::fs::write(&bare_path, &bare).expect("write");
    let err = model(&bare_path, &out);
    assert!(err.contains("bare.gguf has no tokenizer.* metadata"), "{err}");

    let tok = tokenizer_only(dir.path());
    let err = model(&tok, &dir.path().join("no-such-dir").join("m.gguf"));
    assert!(err.contains("no-such-dir") && err.contains("does not exist"), "{err}");
    let err = model(&tok, dir.path());
    assert!(err.contains("is a directory"), "{err}");

    let err = make_fails(&["--quant", "q4k", "--tokenizer-from", s(&tok), "--out", s(&out)]);
    assert!(err.contains("--size"), "{err}");
    let err = make_fails(&["--tokenizer-only", "--size", "1b", "--tokenizer-from", s(&tok), "--out", s(&out)]);
    assert!(err.contains("cannot be used with"), "{err}");

    assert!(!out.exists(), "a failed run left {}", out.display());
    let partials = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .count();
    assert_eq!(partials, 0, "a failed run left a .partial file");
}
