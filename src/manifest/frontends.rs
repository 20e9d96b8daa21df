//! `[frontends.<modality>]` of a manifest: a modality the runtime computes from raw input rather
//! than receiving as a feature vector. Only text has a frontend, a sentence encoder:
//!
//! ```toml
//! [frontends.text]
//! kind = "sentence-encoder"
//! dir = "../frontends/all-minilm-l6-v2"   # relative to the model folder
//! ```
//!
//! The manifest only names the folder; `frontend::TextFrontend::load` reads and checks it (its
//! files are written at set-up, not committed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::modality::{Modalities, Modality};

/// The one kind of text frontend: a sentence encoder (BERT tokenizer + encoder, mean pooling).
pub const SENTENCE_ENCODER: &str = "sentence-encoder";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrontend {
    kind: String,
    dir: String,
}

/// `[frontends]` by modality name.
pub(super) type RawFrontends = BTreeMap<String, RawFrontend>;

/// The text frontend a manifest declares: its kind and folder (resolved against the model's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendRef {
    pub kind: String,
    pub dir: PathBuf,
}

/// Checks `[frontends]` against the model's modalities; returns the text frontend, if any.
pub(super) fn check_frontends(
    raw: RawFrontends,
    model_dir: &Path,
    mods: &Modalities,
) -> Result<Option<FrontendRef>, String> {
    let mut text = None;
    for (name, f) in raw {
        if Modality::from_name(&name) != Some(Modality::Text) {
            return Err(format!("[frontends.{name}]: only the text modality has a frontend"));
        }
        if !mods.has(Modality::Text) {
            return Err("[frontends.text]: the model has no text modality in [modalities]".into());
        }
        if f.kind != SENTENCE_ENCODER {
            return Err(format!(
                "[frontends.text] kind `{}` is unknown (known: {SENTENCE_ENCODER})",
                f.kind
            ));
        }
        text = Some(FrontendRef {
            kind: f.kind,
            dir: model_dir.join(f.dir),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, kind: &str) -> RawFrontends {
        let f = RawFrontend {
            kind: kind.into(),
            dir: "../frontends/x".into(),
        };
        BTreeMap::from([(name.to_string(), f)])
    }

    #[test]
    fn text_frontend_resolves_against_the_model_folder() {
        let mods = Modalities::new([384, 47, 0]).unwrap();
        let got = check_frontends(raw("text", SENTENCE_ENCODER), Path::new("models/m"), &mods).unwrap();
        assert_eq!(got.unwrap().dir, Path::new("models/m/../frontends/x"));
        assert_eq!(check_frontends(BTreeMap::new(), Path::new("m"), &mods).unwrap(), None);
    }

    #[test]
    fn other_modalities_kinds_and_absent_text_are_refused() {
        let mods = Modalities::new([384, 47, 0]).unwrap();
        assert!(check_frontends(raw("audio", SENTENCE_ENCODER), Path::new("m"), &mods).is_err());
        assert!(check_frontends(raw("text", "lsa"), Path::new("m"), &mods)
            .unwrap_err()
            .contains("lsa"));
        let no_text = Modalities::new([0, 47, 20]).unwrap();
        assert!(check_frontends(raw("text", SENTENCE_ENCODER), Path::new("m"), &no_text).is_err());
    }
}
