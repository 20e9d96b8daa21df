//! Start-up before READY: `serve` extends the start timeout and sets its status before the
//! models load; `gsdnet warmup` loads every part, names its provider and runs one window (of
//! the model's own modalities); `gsdnet check-config` shows what the profile's model takes.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{repo, tiny_model, tiny_ta3};
use gsdnet_edge::config::Settings;
use gsdnet_edge::daemon::notify::{announce_loading, MemoryNotifier, LOAD_EXTENSION, TENSORRT_LOAD_EXTENSION};
use gsdnet_edge::service::load_for_serve;

fn profile(backend_lines: &str, models: &Path) -> String {
    format!(
        "[board]\nname = \"test board\"\n[engine]\n{backend_lines}models = {models:?}\nsteps = 3\nqueue_capacity = 4\n\
         [assembly]\nwindow = 8\ndeadline_ms = {{ text = 1, audio = 1, visual = 1 }}\nmax_utterance_ms = 1000\n\
         max_open_utterances = 2\nmax_conversations = 2\nidle_conversation_ms = 1000\n\
         [inputs]\nmax_frames_per_second = 10\nburst = 10\n"
    )
}

fn settings(models: &Path) -> Settings {
    Settings::parse(&profile("backend = \"tract\"\n", models), Path::new("test.toml")).unwrap()
}

#[test]
fn tensorrt_loading_asks_for_more_time_before_saying_so() {
    let n = MemoryNotifier::default();
    announce_loading(&n, true);
    let usec = TENSORRT_LOAD_EXTENSION.as_micros();
    assert_eq!(
        n.events(),
        [
            format!("EXTEND_TIMEOUT_USEC={usec}"),
            "STATUS=loading models / building TensorRT engines...".into()
        ]
    );
    let n = MemoryNotifier::default();
    announce_loading(&n, false);
    assert_eq!(
        n.events(),
        [
            format!("EXTEND_TIMEOUT_USEC={}", LOAD_EXTENSION.as_micros()),
            "STATUS=loading models".into()
        ]
    );
}

#[test]
fn serve_announces_loading_before_the_models_load_and_not_ready() {
    let n = MemoryNotifier::default();
    let runner = load_for_serve(&settings(&tiny_model()), &tiny_model(), 0, &n).unwrap();
    drop(runner);
    let ev = n.events();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev[0].starts_with("EXTEND_TIMEOUT_USEC="), "{ev:?}");
    assert_eq!(ev[1], "STATUS=loading models");

    // The notices precede the load: a model that cannot load still got them, and no READY.
    let n = MemoryNotifier::default();
    let missing = repo().join("tests/fixtures/no-such-model");
    let err = load_for_serve(&settings(&missing), &missing, 0, &n)
        .map(|_| ())
        .unwrap_err();
    assert!(format!("{err:#}").contains("no-such-model"), "{err:#}");
    assert_eq!(n.events().len(), 2);
    assert!(!n.events().contains(&"READY".to_string()));
}

fn warmup(profile_text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let board = dir.path().join("board.toml");
    std::fs::write(&board, profile_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .args(["warmup", "--board"])
        .arg(&board)
        .current_dir(repo())
        .output()
        .unwrap()
}

#[test]
fn warmup_names_the_provider_of_every_part_and_runs_a_window() {
    let out = warmup(&profile("backend = \"tract\"\n", &tiny_model()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for part in ["encoders", "s_theta", "s_phi", "recon", "fusion"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(part))
            .unwrap_or_else(|| panic!("{part} missing:\n{text}"));
        assert!(line.contains("tract (cpu)") && line.contains("loaded in"), "{line}");
    }
    assert!(text.contains("warm-up window") && text.contains("3 steps"), "{text}");
}

#[test]
fn warmup_runs_a_text_audio_model_without_visual() {
    let out = warmup(&profile("backend = \"tract\"\n", &tiny_ta3()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("warm-up window"), "{text}");
}

/// The bundled IEMOCAP 6-way model through the real board profile and `--models`: six emotions,
/// text 384 (the all-MiniLM-L6-v2 frontend's width) + audio 47, no regression head; warm-up
/// loads its text frontend and runs a window (skipped before the frontend set-up).
#[test]
fn the_bundled_iemocap_model_serves_through_the_board_profile() {
    let board = repo().join("boards/x86-dev.toml");
    let run = |cmd: &str| {
        Command::new(env!("CARGO_BIN_EXE_gsdnet"))
            .args([
                cmd,
                "--board",
                board.to_str().unwrap(),
                "--models",
                "models/gsdnet-iemocap6",
            ])
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let out = run("check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("modalities = { text = 384, audio = 47 }"), "{text}");
    assert!(
        text.contains(r#"classes = ["hap", "sad", "neu", "ang", "exc", "fru"]"#),
        "{text}"
    );
    assert!(!text.contains("# error"), "{text}");
    if !crate::util::iemocap::frontend_ready("gsdnet-iemocap6") {
        return;
    }
    let out = run("warmup");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("warm-up window"), "{text}");
}

fn check_config(profile_text: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let board = dir.path().join("board.toml");
    std::fs::write(&board, profile_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gsdnet"))
        .arg("check-config")
        .arg("--board")
        .arg(&board)
        .args(extra)
        .current_dir(repo())
        .output()
        .unwrap()
}

#[test]
fn check_config_prints_the_models_modalities_and_classes() {
    let out = check_config(&profile("backend = \"tract\"\n", &tiny_ta3()), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let model = &text[text
        .find("[model]")
        .unwrap_or_else(|| panic!("no [model] table:\n{text}"))..];
    let table: toml::Table = toml::from_str(model).unwrap_or_else(|e| panic!("{e}:\n{model}"));
    let mods = table["model"]["modalities"].as_table().unwrap();
    assert_eq!(
        (mods.len(), mods["text"].as_integer(), mods["audio"].as_integer()),
        (2, Some(12), Some(1024))
    );
    assert!(
        model.contains("modalities = { text = 12, audio = 1024 }"),
        "slot order: {model}"
    );
    assert_eq!(table["model"]["classes"].as_array().unwrap().len(), 3);
    assert_eq!(table["model"]["has_regression"].as_bool(), Some(false));
    assert!(table["model"]["max_result_frame_bytes"].as_integer().unwrap() < 16384);
    assert!(!model.contains("# error"), "{model}");
    // The whole output is one TOML document, and a window beyond the model's is flagged.
    assert!(text.parse::<toml::Table>().is_ok(), "{text}");
    let wide = profile("backend = \"tract\"\n", &tiny_ta3()).replace("window = 8", "window = 9");
    let text = String::from_utf8_lossy(&check_config(&wide, &[]).stdout).to_string();
    assert!(
        text.contains("# error: assembly.window = 9 exceeds the model's window 8"),
        "{text}"
    );
    // --models overrides the profile's; a folder without a manifest is a note, not a failure.
    let out = check_config(
        &profile("backend = \"tract\"\n", &tiny_ta3()),
        &["--models", "tests/fixtures/no-such-model"],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("# model: cannot read tests/fixtures/no-such-model"));
}

#[test]
fn warmup_fails_clearly_without_the_models_or_the_engine() {
    let out = warmup(&profile(
        "backend = \"tract\"\n",
        &repo().join("tests/fixtures/no-such-model"),
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loading models from"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    if !cfg!(feature = "ort") {
        let out = warmup(&profile(
            "backend = \"ort\"\nexecution_providers = [\"cpu\"]\n",
            &tiny_model(),
        ));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not compiled") && err.contains("encoders"), "{err}");
    }
}

/// With ONNX Runtime (ORT_DYLIB_PATH; skipped when unset): each part names the provider that
/// really runs it, a CPU fallback says why the accelerators did not, and `require_accelerator`
/// turns that fallback into a failed warm-up.
#[cfg(feature = "ort")]
#[test]
fn warmup_on_onnxruntime_reports_fallbacks_and_honours_require_accelerator() {
    let Some(lib) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) else {
        eprintln!("SKIPPED: ORT_DYLIB_PATH is unset");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let engine = |require: bool| {
        format!(
            "backend = \"ort\"\nexecution_providers = [\"tensorrt\", \"cuda\", \"cpu\"]\nort_library = {:?}\n\
             require_accelerator = {require}\ncache_dir = {:?}\n",
            Path::new(&lib),
            cache.path().join("trt")
        )
    };
    let out = warmup(&profile(&engine(false), &tiny_model()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut on_cpu = false;
    for part in ["encoders", "s_theta", "s_phi", "recon", "fusion"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(part))
            .unwrap_or_else(|| panic!("{part} missing:\n{text}"));
        assert!(line.contains("onnxruntime") && line.contains("loaded in"), "{line}");
        on_cpu |= line.contains("CPUExecutionProvider");
    }
    if on_cpu {
        assert!(
            text.contains("note: tensorrt:") && text.contains("note: cuda:"),
            "{text}"
        );
        let out = warmup(&profile(&engine(true), &tiny_model()));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("require_accelerator"), "{err}");
    }
}
