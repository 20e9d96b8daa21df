//! Finding, validating and loading the ONNX Runtime shared library, once per process.
//!
//! The library comes from the board profile (`BackendOptions::ort_library`), then
//! `ORT_DYLIB_PATH`. Before `ort` sees it, the file is opened here and its version read through
//! `OrtGetApiBase`, because `ort`'s own loader panics on some bad inputs (relative paths without a
//! current executable, a null API base). Invariant: at most one library is loaded per process;
//! asking for a different one afterwards is an error, never a silent reuse.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use thiserror::Error;

/// Environment variable naming the library when the board profile does not.
pub const ENV_VAR: &str = "ORT_DYLIB_PATH";

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(
        "no ONNX Runtime library configured: set `ort_library` in the board profile or \
         {ENV_VAR} (scripts/fetch-onnxruntime.sh prints one)"
    )]
    NotConfigured,
    #[error("ONNX Runtime library {path}: {reason}")]
    BadLibrary { path: PathBuf, reason: String },
    #[error("ONNX Runtime {version} at {path} is too old: this build needs 1.{min} or newer")]
    TooOld { path: PathBuf, version: String, min: u32 },
    #[error("ONNX Runtime is already loaded from {loaded}; cannot also load {requested} in this process")]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("ONNX Runtime environment could not be created: {0}")]
    Environment(String),
}

/// The loaded library: where it came from, its version and the process-wide environment.
pub struct Runtime {
    pub path: PathBuf,
    pub version: String,
    pub environment: Environment,
    /// Keeps our own handle open so the version string stays valid for the process lifetime.
    _lib: libloading::Library,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish()
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// The configured library path: the board profile's, else `ORT_DYLIB_PATH`.
pub fn configured_path(profile: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = profile {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os(ENV_VAR) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(RuntimeError::NotConfigured),
    }
}

/// The runtime already loaded in this process, if any.
pub fn loaded() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Loads (first call) or returns (later calls with the same library) the process's runtime.
pub fn load(profile: Option<&Path>) -> Result<&'static Runtime, RuntimeError> {
    let requested = configured_path(profile)?;
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(rt) = RUNTIME.get() {
        let same = std::fs::canonicalize(&requested).map(|p| p == rt.path).unwrap_or(false);
        if !same {
            return Err(RuntimeError::AlreadyLoaded {
                loaded: rt.path.clone(),
                requested,
            });
        }
        return Ok(rt);
    }
    let rt = open(&requested)?;
    // Only this thread sets RUNTIME (under INIT), and it was empty above.
    let _ = RUNTIME.set(rt);
    RUNTIME
        .get()
        .ok_or_else(|| RuntimeError::Environment("runtime vanished after init".into()))
}

fn open(requested: &Path) -> Result<Runtime, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadLibrary {
        path: requested.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(requested).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let path = std::fs::canonicalize(requested).map_err(|e| bad(e.to_string()))?;
    let (lib, version) = read_version(&path)?;
    let min = ort::MINOR_VERSION;
    match parse_minor(&version) {
        Some((1, minor)) if minor >= min => {}
        Some(_) => return Err(RuntimeError::TooOld { path, version, min }),
        None => return Err(bad(format!("unparseable version string `{version}`"))),
    }
    let builder = std::panic::catch_unwind(|| ort::init_from(&path))
        .map_err(|_| bad("ort panicked while loading the library".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let environment = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.with_name("gsdnet").build()))
        .map_err(|_| RuntimeError::Environment("ort panicked while creating the environment".into()))?
        .map_err(|e| RuntimeError::Environment(e.to_string()))?;
    log::info!("ONNX Runtime {version} loaded from {}", path.display());
    Ok(Runtime {
        path,
        version,
        environment,
        _lib: lib,
    })
}

/// Opens the library and reads `OrtGetApiBase()->GetVersionString()`.
fn read_version(path: &Path) -> Result<(libloading::Library, String), RuntimeError> {
    let bad = |reason: String| RuntimeError::BadLibrary {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: loading runs the library's initialisers; ONNX Runtime's are side-effect free.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| bad(with_source(&e)))?;
    type GetBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: the symbol's C signature is fixed by onnxruntime_c_api.h.
    let get_base = unsafe { lib.get::<GetBase>(b"OrtGetApiBase") }
        .map_err(|_| bad("does not export OrtGetApiBase (not an ONNX Runtime library?)".into()))?;
    // SAFETY: OrtGetApiBase takes no arguments and returns a static table or null.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(bad("OrtGetApiBase returned null".into()));
    }
    // SAFETY: base is non-null and points at the library's static OrtApiBase.
    let raw = unsafe { ((*base).GetVersionString)() };
    if raw.is_null() {
        return Err(bad("GetVersionString returned null".into()));
    }
    // SAFETY: a static NUL-terminated string owned by the library, which `lib` keeps loaded.
    let version = unsafe { CStr::from_ptr(raw) }
        .to_str()
        .map_err(|_| bad("version string is not UTF-8".into()))?
        .to_string();
    Ok((lib, version))
}

/// `e` followed by its causes (libloading puts dlerror()'s text in the source).
fn with_source(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `"1.19.2"` -> `(1, 19)`.
pub fn parse_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.trim().split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// TensorRT version as "major.minor.patch" when libnvinfer can be opened (it is what the
/// TensorRT execution provider itself loads), else None.
pub fn tensorrt_version() -> Option<String> {
    for name in ["libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"] {
        // SAFETY: TensorRT's initialisers only register plugins.
        let Ok(lib) = (unsafe { libloading::Library::new(name) }) else {
            continue;
        };
        type GetVersion = unsafe extern "C" fn() -> i32;
        // SAFETY: `getInferLibVersion` is `extern "C" int32_t getInferLibVersion()` in NvInfer.
        let Ok(f) = (unsafe { lib.get::<GetVersion>(b"getInferLibVersion") }) else {
            continue;
        };
        // SAFETY: no arguments, returns a plain integer.
        let v = unsafe { f() };
        return Some(decode_trt_version(v));
    }
    None
}

/// TensorRT >= 10 encodes MAJOR*10000 + MINOR*100 + PATCH; 8.x used MAJOR*1000 + MINOR*100 + PATCH.
fn decode_trt_version(v: i32) -> String {
    if v >= 10000 {
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v / 100) % 10, v % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_minor("1.19.2"), Some((1, 19)));
        assert_eq!(parse_minor("1.31.1\n"), Some((1, 31)));
        assert_eq!(parse_minor("garbage"), None);
        assert_eq!(decode_trt_version(100300), "10.3.0");
        assert_eq!(decode_trt_version(8601), "8.6.1");
    }
}
