//! The GGUF tokenizer (`tokenizer.ggml.*` metadata) as HF `tokenizer.json` text.
//!
//! GGUF stores a tokenizer as data: the vocabulary (`tokens`, `token_type`), the
//! BPE `merges`, special ids and the name of llama.cpp's pre-tokenizer
//! (`tokenizer.ggml.pre`). Converting that to HF's `tokenizer.json` lets egret run
//! one tokenizer implementation (the `tokenizers` crate, in the runtime) for
//! every model format.
//!
//! Supported: `tokenizer.ggml.model = gpt2` (byte-level BPE) with the
//! pre-tokenizers listed in [`pre_splits`]. The conversion is exact: each of
//! llama.cpp's pre-tokenizer regexes becomes an isolated `Split` applied in the
//! same order (llama.cpp also splits every fragment by each regex in turn and
//! keeps unmatched text as fragments), then `ByteLevel` maps bytes to GPT-2's
//! alphabet. Control tokens (`token_type` 3) become special added tokens and
//! user-defined ones (4) plain added tokens, matched whole as llama.cpp does.
//! BOS/EOS are added by the post-processor only when `add_bos_token` /
//! `add_eos_token` say so (llama.cpp's default for BPE vocabularies is neither).

use super::metadata::Metadata;
use super::GgufError;
use serde_json::{json, Map, Value};

/// GPT-2's pre-tokenizer regex, as HF writes it (llama.cpp's form lacks the final
/// `|\s+`, which only turns its unmatched-whitespace fragments into matches).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// llama.cpp's pre-tokenizer regexes for a `tokenizer.ggml.pre` name, in the
/// order they are applied (from `llama-vocab.cpp`), or `None` if unsupported.
pub fn pre_splits(pre: &str) -> Option<&'static [&'static str]> {
    Some(match pre {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => &[GPT2_SPLIT],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            &[r"\p{N}", GPT2_SPLIT]
        }
        _ => return None,
    })
}

/// llama.cpp's `token_type` codes that matter here.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The HF `tokenizer.json` text of the tokenizer in `md`, or `None` when the file
/// has no `tokenizer.ggml.model`. Unsupported tokenizer kinds are errors naming
/// the key.
pub fn tokenizer_json(md: &Metadata) -> Result<Option<String>, GgufError> {
    let Some(model) = md.opt_str("tokenizer.ggml.model")? else {
        return Ok(None);
    };
    let unsupported = |key: &str, msg: String| GgufError::Key {
        file: md.file().to_string(),
        key: key.to_string(),
        msg,
    };
    if model != "gpt2" {
        return Err(unsupported(
            "tokenizer.ggml.model",
            format!("tokenizer `{model}` is not supported (only gpt2 byte-level BPE)"),
        ));
    }
    let pre = md.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let splits = pre_splits(pre).ok_or_else(|| {
        unsupported(
            "tokenizer.ggml.pre",
            format!("pre-tokenizer `{pre}` is not supported"),
        )
    })?;
    let tokens = md
        .opt_strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| unsupported("tokenizer.ggml.tokens", "missing key".into()))?;
    let types = md
        .opt_i64s("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    let merges = md.opt_strings("tokenizer.ggml.merges")?.unwrap_or_default();

    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        // A repeated spelling keeps its first id, as a lookup in llama.cpp does.
        if !vocab.contains_key(*tok) {
            vocab.insert(tok.to_string(), json!(id));
        }
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == CONTROL || ty == USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == CONTROL,
            }));
        }
    }
    let merges: Vec<Value> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m, ""));
            json!([a, b])
        })
        .collect();

    let mut pretok: Vec<Value> = splits
        .iter()
        .map(|re| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false}))
        .collect();
    pretok.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));

    let special = |key: &str| -> Result<Option<(String, usize)>, GgufError> {
        let Some(id) = md.opt_u32(key)? else {
            return Ok(None);
        };
        let id = id as usize;
        let tok = tokens.get(id).ok_or_else(|| {
            unsupported(
                key,
                format!("id {id} is outside the {}-token vocabulary", tokens.len()),
            )
        })?;
        Ok(Some((tok.to_string(), id)))
    };
    // The post-processor template: [BOS] $A [EOS], each only if its flag is set.
    let mut single = vec![json!({"Sequence": {"id": "A", "type_id": 0}})];
    let mut special_tokens = Map::new();
    for (flag, id_key, front) in [
        (
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.bos_token_id",
            true,
        ),
        (
            "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.eos_token_id",
            false,
        ),
    ] {
        if md.opt_bool(flag)? != Some(true) {
            continue;
        }
        let (tok, id) = special(id_key)?
            .ok_or_else(|| unsupported(id_key, format!("missing, but {flag} is set")))?;
        let item = json!({"SpecialToken": {"id": tok, "type_id": 0}});
        if front {
            single.insert(0, item);
        } else {
            single.push(item);
        }
        special_tokens.insert(
            tok.clone(),
            json!({"id": tok, "ids": [id], "tokens": [tok]}),
        );
    }
    let post = if special_tokens.is_empty() {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})
    } else {
        let mut pair = single.clone();
        pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens})
    };

    let unk = special("tokenizer.ggml.unknown_token_id")?.map(|(t, _)| t);
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretok},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    Ok(Some(doc.to_string()))
}
