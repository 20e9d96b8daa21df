//! Capacity limits of the runtime, one name each: the largest model, batch and vectors that
//! every layer (manifest, protocol, pipeline, engines, daemon, bench) sizes its buffers and
//! checks its input against. A leaf: it depends on nothing, everything may read it.
//!
//! Only limits shared by several modules live here; a limit that one module owns (the frame
//! length of the protocol, a profile's connection count) stays with it.

/// Most classes a model may have (K); the wire protocol's result capacity and the width of
/// the stack buffers that average samples.
pub const MAX_CLASSES: usize = 64;

/// Longest class name, in UTF-8 bytes (published with every result).
pub const MAX_CLASS_NAME: usize = 32;

/// Largest feature vector of one modality (manifest `[modalities]`, split files, the wire's
/// `Features` capacity).
pub const MAX_FEATURE_SIZE: usize = 2048;

/// Largest completion sample count S a manifest, a board profile or `--samples` may ask for.
pub const MAX_SAMPLES: usize = 64;

/// Most windows one batch may hold: `engine.max_batch` of a board profile, the daemon's batches
/// and the bench's `--batch` sizes (the pipeline's batch buffers grow with it).
pub const MAX_BATCH: usize = 64;

/// Most rows (windows x samples) one call of a part binds to its batch axis (`backend::rows`;
/// the TensorRT optimisation profile's upper bound).
pub const MAX_CALL_ROWS: usize = 64;

/// Whether `names` is a valid class list: 2..=`MAX_CLASSES` names of 1..=`MAX_CLASS_NAME`
/// bytes without control characters, none repeated. The one statement of the rule; the
/// manifest and the daemon's served model both check with it.
pub fn check_class_names<S: AsRef<str>>(names: &[S]) -> Result<(), ClassNamesError> {
    if !(2..=MAX_CLASSES).contains(&names.len()) {
        return Err(ClassNamesError::Count(names.len()));
    }
    for (i, c) in names.iter().map(AsRef::as_ref).enumerate() {
        if c.is_empty() || c.len() > MAX_CLASS_NAME || c.chars().any(char::is_control) {
            return Err(ClassNamesError::Name {
                index: i,
                name: c.escape_debug().to_string(),
            });
        }
        if names[..i].iter().any(|n| n.as_ref() == c) {
            return Err(ClassNamesError::Repeated(c.escape_debug().to_string()));
        }
    }
    Ok(())
}

/// Why a class list is refused (`check_class_names`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassNamesError {
    #[error("a model has 2 to {MAX_CLASSES} classes, got {0}")]
    Count(usize),
    #[error("name {index} `{name}` must be 1 to {MAX_CLASS_NAME} bytes, no control characters")]
    Name { index: usize, name: String },
    #[error("`{0}` appears twice")]
    Repeated(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_rule() {
        assert_eq!(check_class_names(&["a", "b"]), Ok(()));
        assert_eq!(check_class_names(&["a"]), Err(ClassNamesError::Count(1)));
        assert_eq!(
            check_class_names(&["a", "a"]),
            Err(ClassNamesError::Repeated("a".into()))
        );
        assert!(matches!(
            check_class_names(&["a", "b\n"]),
            Err(ClassNamesError::Name { index: 1, .. })
        ));
        assert!(matches!(
            check_class_names(&["a", ""]),
            Err(ClassNamesError::Name { index: 1, .. })
        ));
        let long = "b".repeat(MAX_CLASS_NAME + 1);
        assert!(matches!(
            check_class_names(&["a", long.as_str()]),
            Err(ClassNamesError::Name { .. })
        ));
        let many: Vec<String> = (0..=MAX_CLASSES).map(|i| i.to_string()).collect();
        assert_eq!(check_class_names(&many), Err(ClassNamesError::Count(MAX_CLASSES + 1)));
    }
}
