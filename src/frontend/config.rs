//! `frontend.toml`: what a frontend folder holds (the committed pins) and the check of the files
//! the set-up wrote next to it (`scripts/setup-frontends.sh`): both present, both with the
//! pinned sha256.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::FrontendError;
use crate::manifest::sha256_file;
pub use crate::manifest::SENTENCE_ENCODER;
/// The command that writes a frontend folder's large files.
pub const SETUP_COMMAND: &str = "bash scripts/setup-frontends.sh";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    encoder: String,
    encoder_sha256: String,
    tokenizer: String,
    tokenizer_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncoder {
    inputs: Vec<String>,
    output: String,
    hidden: usize,
    #[serde(default)]
    opset: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    max_tokens: usize,
    pooling: String,
    normalize: bool,
}

#[derive(Debug, Deserialize)]
struct RawFrontend {
    kind: String,
    files: RawFiles,
    encoder: RawEncoder,
    text: RawText,
}

/// A validated `frontend.toml` of a sentence encoder whose files are present and pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendConfig {
    pub dir: PathBuf,
    pub encoder: PathBuf,
    pub tokenizer: PathBuf,
    pub encoder_sha256: String,
    pub tokenizer_sha256: String,
    /// Encoder inputs in order: token ids, attention mask, token type ids.
    pub inputs: [String; 3],
    pub output: String,
    /// Embedding width (the model's text modality size).
    pub hidden: usize,
    /// Tokens per text including [CLS] and [SEP]; longer texts are truncated.
    pub max_tokens: usize,
    /// L2-normalise the mean-pooled embedding.
    pub normalize: bool,
}

impl FrontendConfig {
    /// Reads `<dir>/frontend.toml` and checks it; `verify` also hashes both files (about 90 MB,
    /// a few hundred ms) against the pins.
    pub fn load(dir: &Path, verify: bool) -> Result<FrontendConfig, FrontendError> {
        let path = dir.join("frontend.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| FrontendError::Io {
            path: path.clone(),
            source,
        })?;
        let raw: RawFrontend = toml::from_str(&text).map_err(|e| FrontendError::Config {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let config = Self::validate(dir, &path, raw)?;
        for (file, pinned) in [
            (&config.encoder, &config.encoder_sha256),
            (&config.tokenizer, &config.tokenizer_sha256),
        ] {
            if !file.is_file() {
                return Err(FrontendError::Missing {
                    file: file.clone(),
                    setup: SETUP_COMMAND,
                });
            }
            if verify {
                let actual = sha256_file(file).map_err(|source| FrontendError::Io {
                    path: file.clone(),
                    source,
                })?;
                if !actual.eq_ignore_ascii_case(pinned) {
                    return Err(FrontendError::Sha256 {
                        file: file.clone(),
                        expected: pinned.clone(),
                        actual,
                        setup: SETUP_COMMAND,
                    });
                }
            }
        }
        Ok(config)
    }

    fn validate(dir: &Path, path: &Path, raw: RawFrontend) -> Result<FrontendConfig, FrontendError> {
        let bad = |detail: String| FrontendError::Config {
            path: path.to_path_buf(),
            detail,
        };
        if raw.kind != SENTENCE_ENCODER {
            return Err(bad(format!(
                "kind `{}` is not a known frontend (known: {SENTENCE_ENCODER})",
                raw.kind
            )));
        }
        let inputs: [String; 3] = raw.encoder.inputs.try_into().map_err(|v: Vec<String>| {
            bad(format!(
                "[encoder] inputs must be 3 names (ids, attention mask, token types), got {v:?}"
            ))
        })?;
        if raw.text.pooling != "mean" {
            return Err(bad(format!(
                "[text] pooling `{}` is not supported (known: mean)",
                raw.text.pooling
            )));
        }
        if !(3..=512).contains(&raw.text.max_tokens) {
            return Err(bad(format!(
                "[text] max_tokens must be 3..=512, got {}",
                raw.text.max_tokens
            )));
        }
        if !(1..=crate::capacity::MAX_FEATURE_SIZE).contains(&raw.encoder.hidden) {
            return Err(bad(format!(
                "[encoder] hidden {} is not a feature size",
                raw.encoder.hidden
            )));
        }
        for sha in [&raw.files.encoder_sha256, &raw.files.tokenizer_sha256] {
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!("sha256 `{sha}` is not 64 hex digits")));
            }
        }
        let _ = raw.encoder.opset;
        Ok(FrontendConfig {
            dir: dir.to_path_buf(),
            encoder: dir.join(&raw.files.encoder),
            tokenizer: dir.join(&raw.files.tokenizer),
            encoder_sha256: raw.files.encoder_sha256,
            tokenizer_sha256: raw.files.tokenizer_sha256,
            inputs,
            output: raw.encoder.output,
            hidden: raw.encoder.hidden,
            max_tokens: raw.text.max_tokens,
            normalize: raw.text.normalize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
kind = "sentence-encoder"
[source]
package = "p"
[files]
encoder = "encoder.onnx"
encoder_sha256 = "ENC"
tokenizer = "tokenizer.json"
tokenizer_sha256 = "TOK"
[encoder]
inputs = ["input_ids", "attention_mask", "token_type_ids"]
output = "last_hidden_state"
hidden = 4
opset = 17
[text]
max_tokens = 128
pooling = "mean"
normalize = true
"#;

    fn folder(toml: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let sha = |b: &[u8]| {
            use sha2::Digest;
            sha2::Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        };
        let toml = toml.replace("ENC", &sha(b"enc")).replace("TOK", &sha(b"tok"));
        std::fs::write(dir.path().join("frontend.toml"), toml).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn loads_and_verifies_pins() {
        let dir = folder(TOML, &[("encoder.onnx", b"enc"), ("tokenizer.json", b"tok")]);
        let c = FrontendConfig::load(dir.path(), true).unwrap();
        assert_eq!((c.hidden, c.max_tokens, c.normalize), (4, 128, true));
        assert_eq!(c.inputs[1], "attention_mask");
    }

    #[test]
    fn missing_files_name_the_setup_script() {
        let dir = folder(TOML, &[("encoder.onnx", b"enc")]);
        let err = FrontendConfig::load(dir.path(), true).unwrap_err();
        assert!(matches!(err, FrontendError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("scripts/setup-frontends.sh"), "{err}");
    }

    #[test]
    fn a_changed_file_is_refused() {
        let dir = folder(TOML, &[("encoder.onnx", b"enc"), ("tokenizer.json", b"tok!")]);
        let err = FrontendConfig::load(dir.path(), true).unwrap_err();
        assert!(matches!(err, FrontendError::Sha256 { .. }), "{err}");
        assert!(
            FrontendConfig::load(dir.path(), false).is_ok(),
            "unverified load skips the hash"
        );
    }

    #[test]
    fn unknown_kind_and_pooling_are_refused() {
        let files: &[(&str, &[u8])] = &[("encoder.onnx", b"enc"), ("tokenizer.json", b"tok")];
        let dir = folder(&TOML.replace("sentence-encoder", "lsa"), files);
        assert!(FrontendConfig::load(dir.path(), true)
            .unwrap_err()
            .to_string()
            .contains("lsa"));
        let dir = folder(&TOML.replace("\"mean\"", "\"cls\""), files);
        assert!(FrontendConfig::load(dir.path(), true)
            .unwrap_err()
            .to_string()
            .contains("pooling"));
    }
}
