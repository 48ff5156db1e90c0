//! The GGUF tokenizer (`tokenizer.ggml.*` metadata) as HF `tokenizer.json` text.
