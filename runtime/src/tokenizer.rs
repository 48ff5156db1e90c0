//! Text ↔ token ids, from a HF `tokenizer.json`.
//!
//! Wraps the `tokenizers` crate (HF's own implementation: WordPiece, byte-level
//! BPE, Unigram, with their normalizers, pre-tokenizers and post-processors), so
//! ids match the reference tokenizer by construction. It is built without
//! default features: the pure-Rust `fancy-regex` backend instead of Oniguruma
//! (no C library to build or cross-compile), and no training or progress bars.
//!
//! Padding and truncation settings stored in the file are switched off: they
//! serve batch training, and silently padding (MiniLM's file pads every input
//! to 128 tokens) or cutting inputs would corrupt embeddings and perplexities.
//! Callers see exactly the tokens of their text.

use crate::error::{Result, RuntimeError};

/// A tokenizer loaded from `tokenizer.json` text.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

fn err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::msg(format!("tokenizer: {what}: {e}"))
}

impl Tokenizer {
    /// Parse `tokenizer.json` text; padding and truncation are turned off.
    pub fn from_json(json: &str) -> Result<Tokenizer> {
        let mut inner: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e| err("cannot parse tokenizer.json", e))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| err("cannot disable truncation", e))?;
        Ok(Tokenizer { inner })
    }

    /// The ids of `text`; `special` adds the model's special tokens (BERT's
    /// `[CLS]` … `[SEP]`, a BOS token where the post-processor adds one).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| err("cannot encode", e))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The text of `ids`; `skip_special` drops special tokens. Ids outside the
    /// vocabulary are an error.
    pub fn decode(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| {
                u32::try_from(i)
                    .ok()
                    .filter(|&u| self.inner.id_to_token(u).is_some())
                    .ok_or_else(|| err("cannot decode", format!("id {i} is not in the vocabulary")))
            })
            .collect::<Result<_>>()?;
        self.inner
            .decode(&ids, skip_special)
            .map_err(|e| err("cannot decode", e))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string (e.g. `"</s>"`), if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny WordPiece tokenizer with MiniLM's settings, padding to 16 included.
    const WORDPIECE: &str = r###"{
      "version": "1.0",
      "truncation": {"max_length": 4, "strategy": "LongestFirst", "stride": 0},
      "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                  "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
      "added_tokens": [
        {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 1, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 2, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 3, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
      "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                     "strip_accents": null, "lowercase": true},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                           "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "a": 4, "man": 5,
                          "eat": 6, "##ing": 7, ".": 8}}
    }"###;

    #[test]
    fn wordpiece_without_padding_or_truncation() {
        let t = Tokenizer::from_json(WORDPIECE).unwrap();
        // No padding to 16, no truncation to 4; lower-cased; ## continuation; UNK.
        assert_eq!(
            t.encode("A man eating. Zebra", true).unwrap(),
            vec![1, 4, 5, 6, 7, 8, 3, 2]
        );
        assert_eq!(t.encode("a man", false).unwrap(), vec![4, 5]);
        assert_eq!(t.decode(&[4, 5, 6, 7], false).unwrap(), "a man eating");
        assert_eq!(t.decode(&[1, 4, 2], true).unwrap(), "a");
        assert!(t.decode(&[99], false).is_err());
        assert!(t.decode(&[-1], false).is_err());
        assert_eq!(t.vocab_size(), 9);
        assert_eq!(t.token_id("[SEP]"), Some(2));
        assert!(Tokenizer::from_json("{").is_err());
        assert!(Tokenizer::from_json(r#"{"model": 3}"#).is_err());
    }
}
