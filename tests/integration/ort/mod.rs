//! The ONNX Runtime backend (built with `--features ort`; each test skips without the library
//! in ORT_DYLIB_PATH, or ORT_GPU_DYLIB_PATH for `gpu_fallback`): the backend on the CPU provider
//! (`backend`), golden parity through ort (`golden`), buckets and batches (`batching`), the
//! accelerator fallback of the GPU build (`gpu_fallback`) and the text frontend's golden cases
//! (`frontend`).

mod backend;
mod batching;
mod frontend;
mod golden;
mod gpu_fallback;
