//! The model registry: model name -> GGUF file with a pinned hash.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The registry compiled into the binary.
const DEFAULT_REGISTRY: &str = include_str!("../models.default.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    models: BTreeMap<String, ModelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    file: PathBuf,
    sha256: String,
    context_tokens: u32,
}

/// One registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    pub path: PathBuf,
    /// Lower-case hex SHA-256 the file must have before it is loaded.
    pub sha256: String,
    /// Prompt plus completion tokens the model accepts.
    pub context_tokens: u32,
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
    #[error(
        "model file {path} has sha256 {actual} but the registry pins {expected}; refusing to load it"
    )]
    HashMismatch { path: PathBuf, expected: String, actual: String },
}

/// Name -> model spec.
#[derive(Debug, Clone)]
pub struct Registry {
    models: BTreeMap<String, ModelSpec>,
}

impl Registry {
    /// The embedded registry, with file names resolved in `model_dir`.
    pub fn embedded(model_dir: &Path) -> Result<Self, RegistryError> {
        Self::parse("embedded registry", DEFAULT_REGISTRY, model_dir)
    }

    /// A registry file; relative paths resolve next to the file.
    pub fn from_file(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RegistryError::Io { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&path.display().to_string(), &text, base)
    }

    fn parse(source_name: &str, text: &str, base: &Path) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let file: RegistryFile = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut models = BTreeMap::new();
        for (name, entry) in file.models {
            let sha256 = entry.sha256.to_ascii_lowercase();
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!("model `{name}`: sha256 must be 64 hex digits")));
            }
            if entry.context_tokens == 0 {
                return Err(invalid(format!("model `{name}`: context_tokens must be positive")));
            }
            let spec = ModelSpec {
                path: base.join(&entry.file),
                name: name.clone(),
                sha256,
                context_tokens: entry.context_tokens,
            };
            models.insert(name, spec);
        }
        Ok(Registry { models })
    }

    pub fn get(&self, name: &str) -> Result<&ModelSpec, RegistryError> {
        self.models.get(name).ok_or_else(|| {
            RegistryError::Unknown(
                name.to_owned(),
                self.models.keys().cloned().collect::<Vec<_>>().join(", "),
            )
        })
    }
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
            return Err(RegistryError::HashMismatch {
                path: self.path.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_registry_parses_and_names_the_default_model() {
        let registry = Registry::embedded(Path::new("/models")).expect("embedded registry parses");
        let spec = registry.get("smollm2-135m").expect("default model");
        assert_eq!(spec.path, Path::new("/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert!(matches!(registry.get("gpt-9"), Err(RegistryError::Unknown(..))));
    }

    #[test]
    fn a_file_with_the_wrong_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("m.gguf"), b"not a model").expect("write");
        let text = format!(
            "models:\n  m:\n    file: m.gguf\n    sha256: {}\n    context_tokens: 16\n",
            "0".repeat(64)
        );
        let registry = Registry::parse("test", &text, &dir).expect("parses");
        let err = registry.get("m").expect("m").check_hash().expect_err("mismatch");
        assert!(matches!(err, RegistryError::HashMismatch { .. }));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
