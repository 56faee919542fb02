//! The model registry: model name -> a local GGUF file with a pinned hash
//! (or, where the operator allows it, a frontier endpoint), its device,
//! context, price and the most sensitive data tier it may see.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The registry compiled into the binary.
const DEFAULT_REGISTRY: &str = include_str!("../models.default.yaml");

/// A registry file is a short YAML list of models; the cap keeps a wrong
/// path (a device, a large file) from being read whole.
pub const REGISTRY_FILE_BYTES_MAX: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    models: BTreeMap<String, ModelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    /// `gguf` (the default: a local file) or `scripted` (the deterministic
    /// test backend, never a default; see `scripted`). A frontier model is
    /// one with an `endpoint`.
    kind: Option<String>,
    /// A scripted model's reply (default: one derived from the prompt).
    reply: Option<String>,
    /// A local GGUF file (relative to the registry's directory).
    file: Option<PathBuf>,
    sha256: Option<String>,
    context_tokens: u32,
    /// `cpu` (default) or `cuda` (needs a build with the `cuda` feature).
    device: Option<String>,
    /// Budget units per prompt and per completion token, for calls that
    /// no mission prices (the gateway's clients).
    prompt_price: Option<u64>,
    completion_price: Option<u64>,
    /// The most sensitive data the model may see: `public`, `internal`
    /// or `restricted` (a local model's default). A frontier model's
    /// default is `public`, and it can never be `restricted`.
    tier: Option<String>,
    /// An OpenAI-compatible endpoint off this host (`https://…/v1`): a
    /// frontier model. Refused on an air-gapped host.
    endpoint: Option<String>,
    /// The environment variable holding the endpoint's API key.
    api_key_env: Option<String>,
    /// The model name the endpoint knows (default: this entry's name).
    remote_model: Option<String>,
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

/// How sensitive data is; a model is cleared up to a tier.
pub type Tier = missions::DataTier;

/// Integer prices per token (as in a mission's `models`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub prompt: u64,
    pub completion: u64,
}

/// A model served off this host, over an OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    /// Base URL, e.g. `https://api.example.com/v1`.
    pub endpoint: String,
    pub api_key_env: Option<String>,
    pub remote_model: String,
}

/// One registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    /// The GGUF file (empty for a frontier model).
    pub path: PathBuf,
    /// Lower-case hex SHA-256 the file must have before it is loaded
    /// (empty for a frontier model).
    pub sha256: String,
    /// Prompt plus completion tokens the model accepts.
    pub context_tokens: u32,
    pub device: Device,
    pub price: Option<Price>,
    pub tier: Tier,
    /// Set for a model off this host.
    pub frontier: Option<Frontier>,
    /// Set for the deterministic scripted backend (no file, no model).
    pub scripted: Option<crate::scripted::Script>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model registry {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("model `{0}` is not in the model registry; registered: {1}")]
    Unknown(String, String),
    #[error(
        "model file {path} is missing; run `cargo xtask fetch-model` (or point --model-dir / \
         --models at your GGUF files)"
    )]
    Missing { path: PathBuf },
    #[error("model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} has sha256 {actual} but the registry pins {expected}; refusing to load it")]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    #[error(
        "model `{0}` runs on cuda, and this conductor was built without the `cuda` feature; \
         rebuild with `--features cuda` on a host with CUDA, or set `device: cpu`"
    )]
    NoCuda(String),
}

/// Name -> model spec.
#[derive(Debug, Clone)]
pub struct Registry {
    models: BTreeMap<String, ModelSpec>,
}

impl Registry {
    /// The embedded registry, with file names resolved in `model_dir`.
    pub fn embedded(model_dir: &Path) -> Result<Self, RegistryError> {
        Self::parse("embedded registry", DEFAULT_REGISTRY, model_dir, true)
    }

    /// A registry file; relative paths resolve next to the file. On an
    /// air-gapped host (`air_gap`) a frontier entry is an error: such a
    /// host cannot be configured to send data anywhere.
    pub fn from_file(path: &Path, air_gap: bool) -> Result<Self, RegistryError> {
        let io = |source| RegistryError::Io { path: path.to_owned(), source };
        let invalid =
            |reason: &str| RegistryError::Invalid { source_name: path.display().to_string(), reason: reason.into() };
        // Stat before open, so a FIFO or a device is refused, not read.
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(invalid("is not a regular file"));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(REGISTRY_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > REGISTRY_FILE_BYTES_MAX {
            return Err(invalid(&format!("is larger than {REGISTRY_FILE_BYTES_MAX} bytes")));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&path.display().to_string(), &text, base, air_gap)
    }

    fn parse(source_name: &str, text: &str, base: &Path, air_gap: bool) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::Invalid { source_name: source_name.to_owned(), reason };
        let file: RegistryFile = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut models = BTreeMap::new();
        for (name, entry) in file.models {
            let spec = entry_spec(&name, entry, base, air_gap).map_err(|e| invalid(format!("model `{name}`: {e}")))?;
            models.insert(name, spec);
        }
        Ok(Registry { models })
    }

    /// Every registered model, in name order.
    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }

    pub fn get(&self, name: &str) -> Result<&ModelSpec, RegistryError> {
        self.models.get(name).ok_or_else(|| {
            RegistryError::Unknown(name.to_owned(), self.models.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
}

/// One entry, checked.
fn entry_spec(name: &str, entry: ModelEntry, base: &Path, air_gap: bool) -> Result<ModelSpec, String> {
    if entry.context_tokens == 0 {
        return Err("context_tokens must be positive".into());
    }
    let price = match (entry.prompt_price, entry.completion_price) {
        (None, None) => None,
        (Some(prompt), Some(completion))
            if prompt + completion > 0 && prompt.max(completion) <= missions::ModelPrice::MAX_PER_TOKEN =>
        {
            Some(Price { prompt, completion })
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "prices must be integers up to {} per token, not both zero",
                missions::ModelPrice::MAX_PER_TOKEN
            ));
        }
        _ => return Err("give both prompt_price and completion_price, or neither".into()),
    };
    let device = match entry.device.as_deref() {
        None | Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda,
        Some(other) => return Err(format!("device `{other}` is neither cpu nor cuda")),
    };
    let tier = match entry.tier.as_deref() {
        None => None,
        Some(t) => Some(Tier::parse(t).ok_or_else(|| format!("tier `{t}` is none of public, internal, restricted"))?),
    };
    match entry.kind.as_deref() {
        None | Some("gguf") => {
            if entry.reply.is_some() {
                return Err("`reply` goes with `kind: scripted`".into());
            }
        }
        Some("scripted") => {
            if entry.file.is_some() || entry.sha256.is_some() || entry.device.is_some() || entry.endpoint.is_some() {
                return Err("a scripted model (`kind: scripted`) has no file, sha256, device or endpoint".into());
            }
            return Ok(ModelSpec {
                name: name.to_owned(),
                path: PathBuf::new(),
                sha256: String::new(),
                context_tokens: entry.context_tokens,
                device: Device::Cpu,
                price,
                tier: tier.unwrap_or(Tier::Restricted),
                frontier: None,
                scripted: Some(crate::scripted::Script { reply: entry.reply }),
            });
        }
        Some(other) => return Err(format!("kind `{other}` is neither gguf nor scripted")),
    }
    if let Some(endpoint) = entry.endpoint {
        if air_gap {
            return Err(format!(
                "is a frontier model ({endpoint}), and this host is air-gapped (--air-gap): nothing may leave it; \
                 remove the entry, or run without --air-gap"
            ));
        }
        if entry.file.is_some() || entry.sha256.is_some() || entry.device.is_some() {
            return Err("a frontier model (`endpoint`) has no file, sha256 or device".into());
        }
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(format!("endpoint `{endpoint}` is not an http(s) URL"));
        }
        let tier = tier.unwrap_or(Tier::Public);
        if tier == Tier::Restricted {
            return Err("a frontier model can never be cleared for restricted data".into());
        }
        return Ok(ModelSpec {
            name: name.to_owned(),
            path: PathBuf::new(),
            sha256: String::new(),
            context_tokens: entry.context_tokens,
            device: Device::Cpu,
            price,
            tier,
            frontier: Some(Frontier {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                api_key_env: entry.api_key_env,
                remote_model: entry.remote_model.unwrap_or_else(|| name.to_owned()),
            }),
            scripted: None,
        });
    }
    if entry.api_key_env.is_some() || entry.remote_model.is_some() {
        return Err("api_key_env and remote_model go with a frontier `endpoint`".into());
    }
    let (Some(file), Some(sha256)) = (entry.file, entry.sha256) else {
        return Err("a local model needs `file` and `sha256` (or an `endpoint` for a frontier model)".into());
    };
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("sha256 must be 64 hex digits".into());
    }
    Ok(ModelSpec {
        name: name.to_owned(),
        path: base.join(file),
        sha256,
        context_tokens: entry.context_tokens,
        device,
        price,
        tier: tier.unwrap_or(Tier::Restricted),
        frontier: None,
        scripted: None,
    })
}

impl ModelSpec {
    /// Streams the file through SHA-256 and compares with the pin. Run
    /// before every load: the file on disk is what gets executed.
    pub fn check_hash(&self) -> Result<(), RegistryError> {
        let io = |source| RegistryError::Io { path: self.path.clone(), source };
        let mut file = std::fs::File::open(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RegistryError::Missing { path: self.path.clone() }
            } else {
                io(e)
            }
        })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hex::encode(hasher.finalize());
        if actual != self.sha256 {
            return Err(RegistryError::HashMismatch { path: self.path.clone(), expected: self.sha256.clone(), actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_entries_are_refused_on_an_air_gapped_host_and_never_cleared_for_restricted_data() {
        let text = "models:\n  big:\n    endpoint: https://api.example.com/v1\n    context_tokens: 8192\n";
        let err = Registry::parse("t", text, Path::new("/"), true).expect_err("air-gapped");
        assert!(err.to_string().contains("air-gapped"), "{err}");
        let open = Registry::parse("t", text, Path::new("/"), false).expect("allowed off air-gap");
        let big = open.get("big").expect("big");
        assert_eq!(big.tier, Tier::Public);
        assert_eq!(big.frontier.as_ref().map(|f| f.remote_model.as_str()), Some("big"));
        let restricted = format!("{text}    tier: restricted\n");
        assert!(Registry::parse("t", &restricted, Path::new("/"), false).is_err());
    }

    #[test]
    fn scripted_entries_are_explicit_and_have_no_file() {
        let text = "models:\n  s:\n    kind: scripted\n    reply: eligible\n    context_tokens: 64\n";
        let r = Registry::parse("t", text, Path::new("/"), true).expect("parses");
        let s = r.get("s").expect("s");
        assert_eq!(s.scripted.as_ref().and_then(|x| x.reply.as_deref()), Some("eligible"));
        let with_file = format!("{text}    file: x.gguf\n");
        assert!(Registry::parse("t", &with_file, Path::new("/"), true).is_err());
        let typo = text.replace("scripted", "scriptd");
        assert!(Registry::parse("t", &typo, Path::new("/"), true).expect_err("typo").to_string().contains("scriptd"));
        let embedded = Registry::embedded(Path::new("/")).expect("embedded");
        assert!(embedded.models().all(|m| m.scripted.is_none()), "a scripted model is never a default");
    }

    #[test]
    fn prices_devices_and_tiers_are_checked() {
        let local = |extra: &str| {
            format!("models:\n  m:\n    file: m.gguf\n    sha256: {}\n    context_tokens: 16\n{extra}", "a".repeat(64))
        };
        let m = Registry::parse(
            "t",
            &local("    prompt_price: 1\n    completion_price: 2\n    device: cuda\n    tier: internal\n"),
            Path::new("/"),
            true,
        )
        .expect("parses");
        let spec = m.get("m").expect("m");
        assert_eq!(spec.price, Some(Price { prompt: 1, completion: 2 }));
        assert_eq!((spec.device, spec.tier), (Device::Cuda, Tier::Internal));
        for bad in [
            "    prompt_price: 1\n",
            "    prompt_price: 0\n    completion_price: 0\n",
            "    device: tpu\n",
            "    tier: secret\n",
        ] {
            assert!(Registry::parse("t", &local(bad), Path::new("/"), true).is_err(), "{bad}");
        }
    }

    #[test]
    fn embedded_registry_parses_and_names_the_default_model() {
        let registry = Registry::embedded(Path::new("/models")).expect("embedded registry parses");
        let spec = registry.get("smollm2-135m").expect("default model");
        assert_eq!(spec.path, Path::new("/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        // Priced, so the gateway serves it out of the box (1 unit a token).
        assert_eq!(spec.price, Some(Price { prompt: 1, completion: 1 }));
        assert!(matches!(registry.get("gpt-9"), Err(RegistryError::Unknown(..))));
    }

    #[test]
    fn a_file_with_the_wrong_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("m.gguf"), b"not a model").expect("write");
        let text = format!("models:\n  m:\n    file: m.gguf\n    sha256: {}\n    context_tokens: 16\n", "0".repeat(64));
        let registry = Registry::parse("test", &text, &dir, true).expect("parses");
        let err = registry.get("m").expect("m").check_hash().expect_err("mismatch");
        assert!(matches!(err, RegistryError::HashMismatch { .. }));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
