//! Board profiles: every bundled profile validates; the ONNX Runtime keys (`ort_library`,
//! `require_accelerator`, `cache_dir`) reach `BackendOptions` and are refused where they cannot
//! apply; `gsdnet check-config` prints them; the batching keys (`max_batch`, `batch_latency_ms`)
//! have defaults, are range-checked and set in every bundled profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::repo;
use gsdnet_edge::config::{ConfigError, Settings};

const ENGINE_TRACT: &str = "backend = \"tract\"\nthreads = 0\nmodels = \"m\"\nqueue_capacity = 4\n";
const ORT_TRT: &str =
    "backend = \"ort\"\nexecution_providers = [\"tensorrt\", \"cuda\", \"cpu\"]\nmodels = \"m\"\nqueue_capacity = 4\n";
const ORT_CPU: &str = "backend = \"ort\"\nexecution_providers = [\"cpu\"]\nmodels = \"m\"\nqueue_capacity = 4\n";

fn profile(engine: &str) -> String {
    format!(
        "[board]\nname = \"t\"\n[engine]\n{engine}\n[assembly]\nwindow = 8\ndeadline_ms = {{ text = 1, audio = 1, visual = 1 }}\n\
         max_utterance_ms = 1000\nmax_open_utterances = 2\nmax_conversations = 2\nidle_conversation_ms = 1000\n\
         [inputs]\nmax_frames_per_second = 10\nburst = 10\n"
    )
}

fn parse(engine: &str) -> Result<Settings, ConfigError> {
    Settings::parse(&profile(engine), Path::new("test.toml"))
}

fn invalid_field(engine: &str) -> &'static str {
    match parse(engine) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field for\n{engine}\ngot {other:?}"),
    }
}

fn boards() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("boards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_bundled_profile_validates_and_tensorrt_profiles_have_a_cache() {
    let all = boards();
    assert!(all.len() >= 5, "{all:?}");
    for p in all {
        let s = Settings::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let o = s.engine.backend_options();
        assert_eq!(o.providers, s.engine.execution_providers);
        if s.engine.builds_tensorrt_engines() {
            assert_eq!(
                o.cache_dir.as_deref(),
                Some(Path::new("/var/lib/gsdnet/trt-cache")),
                "{}",
                p.display()
            );
        }
        if s.engine.backend == gsdnet_edge::backend::BackendKind::Ort {
            assert!(
                o.ort_library.as_ref().is_some_and(|l| l.is_absolute()),
                "{}",
                p.display()
            );
            assert!(o.require_accelerator, "{}", p.display());
        }
    }
}

#[test]
fn ort_keys_reach_the_backend_options() {
    let s = parse(&format!(
        "{ORT_TRT}ort_library = \"/opt/ort/libonnxruntime.so\"\nrequire_accelerator = true\ncache_dir = \"/var/c\"\n"
    ))
    .unwrap();
    let o = s.engine.backend_options();
    assert_eq!(o.ort_library.as_deref(), Some(Path::new("/opt/ort/libonnxruntime.so")));
    assert!(o.require_accelerator);
    assert_eq!(o.cache_dir.as_deref(), Some(Path::new("/var/c")));
    use gsdnet_edge::backend::ProviderKind;
    assert_eq!(
        o.providers,
        [ProviderKind::TensorRt, ProviderKind::Cuda, ProviderKind::Cpu]
    );
    let plain = parse(ORT_CPU).unwrap().engine.backend_options();
    assert_eq!(
        (plain.ort_library, plain.require_accelerator, plain.cache_dir),
        (None, false, None)
    );
}

#[test]
fn ort_keys_are_refused_where_they_cannot_apply() {
    assert_eq!(
        invalid_field(&format!("{ENGINE_TRACT}ort_library = \"/x.so\"\n")),
        "engine.ort_library"
    );
    assert_eq!(
        invalid_field(&format!("{ENGINE_TRACT}require_accelerator = true\n")),
        "engine.require_accelerator"
    );
    assert_eq!(
        invalid_field(&format!("{ENGINE_TRACT}cache_dir = \"/c\"\n")),
        "engine.cache_dir"
    );
    assert_eq!(
        invalid_field(&format!("{ORT_TRT}ort_library = \"lib/x.so\"\n")),
        "engine.ort_library"
    );
    assert_eq!(
        invalid_field(&format!("{ORT_TRT}cache_dir = \"cache\"\n")),
        "engine.cache_dir"
    );
    assert_eq!(
        invalid_field(&format!("{ORT_CPU}cache_dir = \"/c\"\n")),
        "engine.cache_dir"
    );
    assert_eq!(
        invalid_field(&format!("{ORT_CPU}require_accelerator = true\n")),
        "engine.require_accelerator"
    );
    assert!(matches!(
        parse(&format!("{ORT_TRT}trt_cache = \"/c\"\n")),
        Err(ConfigError::Parse { .. })
    ));
}

#[test]
fn check_config_prints_the_ort_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(["check-config", "--board", "boards/jetson-orin-nx-16gb.toml"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("require_accelerator = true"), "{text}");
    assert!(text.contains("cache_dir = \"/var/lib/gsdnet/trt-cache\""), "{text}");
    assert!(text.contains("ort_library = \"/opt/onnxruntime/lib/"), "{text}");
}

#[test]
fn engine_sampler_is_optional_and_checked() {
    use gsdnet_edge::diffusion::SamplerKind;
    assert_eq!(parse(ENGINE_TRACT).unwrap().engine.sampler, None);
    let heun = parse(&format!("{ENGINE_TRACT}sampler = \"heun\"\n")).unwrap();
    assert_eq!(heun.engine.sampler, Some(SamplerKind::PfOdeHeun));
    let em = parse(&format!("{ENGINE_TRACT}sampler = \"euler_maruyama_inpaint\"\n")).unwrap();
    assert_eq!(em.engine.sampler, Some(SamplerKind::EulerMaruyama));
    assert_eq!(
        invalid_field(&format!("{ENGINE_TRACT}sampler = \"ddim\"\n")),
        "engine.sampler"
    );
}

#[test]
fn daemon_protection_keys_have_defaults_and_are_checked() {
    let s = parse(ENGINE_TRACT).unwrap();
    assert_eq!((s.engine.max_consecutive_errors, s.engine.abstain_below), (5, 0.0));
    assert_eq!(
        (
            s.inputs.max_connections,
            s.inputs.max_connections_per_peer,
            s.inputs.idle_timeout_ms
        ),
        (64, 32, 10_000)
    );
    assert_eq!(
        (
            s.inputs.max_total_frames_per_second,
            s.inputs.total_burst,
            s.inputs.unix_mode
        ),
        (40, 40, 0o660)
    );
    assert_eq!(s.assembly.evict_idle_ms, 1_000, "10 s, capped by idle_conversation_ms");
    assert_eq!(
        parse(&format!("{ENGINE_TRACT}abstain_below = 0.6\n"))
            .unwrap()
            .engine
            .abstain_below,
        0.6
    );
    for bad in [
        "abstain_below = 0.0",
        "abstain_below = 1.5",
        "max_consecutive_errors = 0",
    ] {
        assert!(
            invalid_field(&format!("{ENGINE_TRACT}{bad}\n")).starts_with("engine."),
            "{bad}"
        );
    }
    let inputs = |extra: &str| {
        let text = profile(ENGINE_TRACT).replace("burst = 10\n", &format!("burst = 10\n{extra}\n"));
        match Settings::parse(&text, Path::new("test.toml")) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{extra}: {other:?}"),
        }
    };
    assert_eq!(inputs("max_connections = 0"), "inputs.max_connections");
    assert_eq!(
        inputs("max_connections = 8\nmax_connections_per_peer = 9"),
        "inputs.max_connections_per_peer"
    );
    assert_eq!(
        inputs("max_total_frames_per_second = 5"),
        "inputs.max_total_frames_per_second"
    );
    assert_eq!(inputs("unix_mode = 0o1777"), "inputs.unix_mode");
    assert_eq!(inputs("unix_mode = 0o060"), "inputs.unix_mode");
}

#[test]
fn completion_samples_are_checked() {
    assert_eq!(parse(ENGINE_TRACT).unwrap().engine.samples, None);
    let four = parse(&format!("{ENGINE_TRACT}samples = 4\n")).unwrap();
    assert_eq!(four.engine.samples, Some(4));
    for bad in ["0", "65"] {
        assert_eq!(
            invalid_field(&format!("{ENGINE_TRACT}samples = {bad}\n")),
            "engine.samples",
            "{bad}"
        );
    }
}

#[test]
fn batching_keys_have_defaults_are_checked_and_are_printed() {
    use gsdnet_edge::capacity::MAX_BATCH;
    use gsdnet_edge::config::{DEFAULT_BATCH_LATENCY_MS, DEFAULT_MAX_BATCH};
    let s = parse(ENGINE_TRACT).unwrap();
    assert_eq!(
        (s.engine.max_batch, s.engine.batch_latency_ms),
        (DEFAULT_MAX_BATCH, DEFAULT_BATCH_LATENCY_MS)
    );
    assert_eq!((DEFAULT_MAX_BATCH, DEFAULT_BATCH_LATENCY_MS), (8, 250));
    assert_eq!(s.engine.batch_latency(), std::time::Duration::from_millis(250));
    let one = parse(&format!("{ENGINE_TRACT}max_batch = 1\nbatch_latency_ms = 40\n")).unwrap();
    assert_eq!((one.engine.max_batch, one.engine.batch_latency_ms), (1, 40));
    assert_eq!(
        parse(&format!("{ENGINE_TRACT}max_batch = {MAX_BATCH}\n"))
            .unwrap()
            .engine
            .max_batch,
        64
    );
    for bad in ["max_batch = 0", "max_batch = 65"] {
        assert_eq!(
            invalid_field(&format!("{ENGINE_TRACT}{bad}\n")),
            "engine.max_batch",
            "{bad}"
        );
    }
    for bad in ["batch_latency_ms = 0", "batch_latency_ms = 10001"] {
        assert_eq!(
            invalid_field(&format!("{ENGINE_TRACT}{bad}\n")),
            "engine.batch_latency_ms",
            "{bad}"
        );
    }
    assert!(matches!(
        parse(&format!("{ENGINE_TRACT}max_batch = -1\n")),
        Err(ConfigError::Parse { .. })
    ));
    for p in boards() {
        let s = Settings::load(&p).unwrap();
        assert!(
            (1..=s.engine.queue_capacity).contains(&s.engine.max_batch),
            "{}: at most queue_capacity windows ever wait",
            p.display()
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("\nmax_batch = ") && text.contains("\nbatch_latency_ms = "),
            "{} sets both keys",
            p.display()
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(["check-config", "--board", "boards/x86-dev.toml"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("max_batch = 8") && text.contains("batch_latency_ms = 250"),
        "{text}"
    );
}
