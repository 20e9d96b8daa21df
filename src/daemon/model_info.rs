//! The served model as the daemon's IO side sees it (`ServedModel`): which modalities the
//! assembly waits for and with how many values, the classes results name, whether they carry a
//! regression. Taken from the manifest at start-up (`from_manifest`), or built by hand for test
//! runners (`new`); published to clients as `ModelInfo`.
//!
//! Invariant: the class names pass `capacity::check_class_names` (the manifest's rule),
//! modalities as `Modalities` guarantees.

use thiserror::Error;

use crate::capacity::{check_class_names, ClassNamesError};
use crate::manifest::Manifest;
use crate::modality::{Modalities, Modality};
use crate::protocol::{BoundedVec, ClassName, ModalityInfo, ModelInfoReport};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ServedModelError {
    #[error("classes: {0}")]
    Classes(#[from] ClassNamesError),
}

/// What the daemon serves (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModel {
    pub name: String,
    pub version: String,
    pub modalities: Modalities,
    classes: Vec<ClassName>,
    pub has_regression: bool,
}

impl ServedModel {
    /// A model description with these classes (checked as the manifest checks them).
    pub fn new(
        name: &str,
        modalities: Modalities,
        classes: &[&str],
        has_regression: bool,
    ) -> Result<Self, ServedModelError> {
        check_class_names(classes)?;
        // Every name fits a `ClassName` once the rule holds (at most `MAX_CLASS_NAME` bytes).
        let names: Vec<ClassName> = classes.iter().filter_map(|&c| ClassName::try_from(c).ok()).collect();
        Ok(ServedModel {
            name: name.to_string(),
            version: String::new(),
            modalities,
            classes: names,
            has_regression,
        })
    }

    /// The manifest's `[model]` and `[modalities]`.
    pub fn from_manifest(m: &Manifest) -> Result<Self, ServedModelError> {
        let classes: Vec<&str> = m.model.classes.iter().map(String::as_str).collect();
        let mut s = ServedModel::new(&m.model.name, m.modalities, &classes, m.model.has_regression)?;
        s.version = m.model.version.clone();
        Ok(s)
    }

    /// Class names, index = label.
    pub fn classes(&self) -> &[ClassName] {
        &self.classes
    }

    /// The name of class `label` (empty for an index the model does not have).
    pub fn class_name(&self, label: usize) -> ClassName {
        self.classes.get(label).cloned().unwrap_or_default()
    }

    /// The `ModelInfo` answer, for windows of at most `window` utterances.
    pub fn report(&self, window: usize) -> ModelInfoReport {
        let mut modalities = heapless::Vec::new();
        for m in self.modalities.iter() {
            let size = self
                .modalities
                .size(m)
                .map_or(0, |s| u32::try_from(s).unwrap_or(u32::MAX));
            // At most three modalities exist: the push cannot fail.
            let _ = modalities.push(ModalityInfo { modality: m, size });
        }
        ModelInfoReport {
            name: self.name.clone(),
            version: self.version.clone(),
            modalities,
            classes: BoundedVec::from_slice(&self.classes).unwrap_or_default(),
            has_regression: self.has_regression,
            window: u32::try_from(window).unwrap_or(u32::MAX),
        }
    }

    /// One line for logs: name, modalities, classes, regression.
    pub fn describe(&self) -> String {
        let classes: Vec<&str> = self.classes.iter().map(|c| c.as_str()).collect();
        let reg = if self.has_regression { "; regression head" } else { "" };
        let version = if self.version.is_empty() {
            String::new()
        } else {
            format!(" {}", self.version)
        };
        format!(
            "{}{version}: {}; classes {}{reg}",
            self.name,
            self.modalities,
            classes.join(", ")
        )
    }
}

/// The modality the warm-up window carries: the model's first (slot 0).
pub fn first_modality(mods: &Modalities) -> Modality {
    mods.iter().next().unwrap_or(Modality::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_checked_and_reported_in_order() {
        let ta = Modalities::new([300, 47, 0]).unwrap();
        let m = ServedModel::new("iemocap", ta, &["hap", "sad", "neu", "ang", "exc", "fru"], false).unwrap();
        assert_eq!(m.class_name(4).as_str(), "exc");
        assert_eq!(m.class_name(9).as_str(), "");
        let r = m.report(32);
        assert_eq!(
            r.modalities.iter().map(|i| (i.modality, i.size)).collect::<Vec<_>>(),
            vec![(Modality::Text, 300), (Modality::Audio, 47)]
        );
        assert_eq!(r.classes.len(), 6);
        assert_eq!(r.window, 32);
        assert!(ServedModel::new("x", ta, &["a"], false).is_err());
        assert!(ServedModel::new("x", ta, &["a", "a"], false).is_err());
        assert!(ServedModel::new("x", ta, &["a", "b\n"], false).is_err());
        assert!(ServedModel::new("x", ta, &["a", &"b".repeat(33)], false).is_err());
    }
}
