//! Typed reads of a Hugging Face `config.json`.
//!
//! Builders ask for exactly the keys they use, each read names the key in its
//! error, and numbers are range-checked before they size anything.

use super::ArchError;
use serde_json::Value;

/// A parsed `config.json` (a JSON object).
#[derive(Clone, Debug)]
pub struct HfConfig {
    root: serde_json::Map<String, Value>,
}

/// Largest dimension a config may declare (`hidden_size`, `vocab_size`, ...):
/// far above any real model, low enough that products of a few dims cannot
/// overflow before the weights themselves are checked.
const MAX_DIM: u64 = 1 << 24;

impl HfConfig {
    /// Parse `config.json` text.
    pub fn parse(text: &str) -> Result<HfConfig, ArchError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(root)) => Ok(HfConfig { root }),
            Ok(_) => Err(ArchError::Config("config.json is not a JSON object".into())),
            Err(e) => Err(ArchError::Config(format!("config.json: {e}"))),
        }
    }

    /// The first entry of `architectures` (e.g. `BertModel`), or `model_type`.
    pub fn architecture(&self) -> Option<&str> {
        self.root
            .get("architectures")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .or_else(|| self.root.get("model_type").and_then(|m| m.as_str()))
    }

    /// The first key of `keys` that is present (HF families name the same
    /// setting differently, e.g. `hidden_size` / `n_embd`).
    fn find<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &Value)> {
        keys.iter().find_map(|k| self.root.get(*k).map(|v| (*k, v)))
    }

    /// A required dimension (positive integer, at most 2^24) under any of `keys`.
    pub fn dim(&self, keys: &[&str]) -> Result<usize, ArchError> {
        let (key, v) = self
            .find(keys)
            .ok_or_else(|| ArchError::Config(format!("missing `{}`", keys.join("` / `"))))?;
        match v.as_u64() {
            Some(n) if (1..=MAX_DIM).contains(&n) => Ok(n as usize),
            _ => Err(ArchError::Config(format!(
                "`{key}` must be an integer in 1..={MAX_DIM}, got {v}"
            ))),
        }
    }

    /// An optional dimension: `default` when none of `keys` is present or null.
    pub fn dim_or(&self, keys: &[&str], default: usize) -> Result<usize, ArchError> {
        match self.find(keys) {
            None | Some((_, Value::Null)) => Ok(default),
            Some(_) => self.dim(keys),
        }
    }

    /// An optional finite float, `default` when absent.
    pub fn float_or(&self, keys: &[&str], default: f64) -> Result<f64, ArchError> {
        match self.find(keys) {
            None | Some((_, Value::Null)) => Ok(default),
            Some((key, v)) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| ArchError::Config(format!("`{key}` must be a number, got {v}"))),
        }
    }

    /// An optional string, `default` when absent.
    pub fn str_or<'a>(&'a self, keys: &[&str], default: &'a str) -> Result<&'a str, ArchError> {
        match self.find(keys) {
            None | Some((_, Value::Null)) => Ok(default),
            Some((key, v)) => v
                .as_str()
                .ok_or_else(|| ArchError::Config(format!("`{key}` must be a string, got {v}"))),
        }
    }

    /// An optional boolean, `default` when absent.
    pub fn bool_or(&self, keys: &[&str], default: bool) -> Result<bool, ArchError> {
        match self.find(keys) {
            None | Some((_, Value::Null)) => Ok(default),
            Some((key, v)) => v
                .as_bool()
                .ok_or_else(|| ArchError::Config(format!("`{key}` must be a boolean, got {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_typed_and_bounded() {
        let c = HfConfig::parse(
            r#"{"architectures":["BertModel"],"hidden_size":384,"n_embd":7,
                "eps":1e-12,"act":"gelu","big":99999999999,"neg":-1,"tie":true}"#,
        )
        .unwrap();
        assert_eq!(c.architecture(), Some("BertModel"));
        assert_eq!(c.dim(&["hidden_size", "n_embd"]).unwrap(), 384);
        assert_eq!(c.dim(&["n_embd"]).unwrap(), 7);
        assert_eq!(c.dim_or(&["absent"], 5).unwrap(), 5);
        assert_eq!(c.float_or(&["eps"], 0.0).unwrap(), 1e-12);
        assert_eq!(c.str_or(&["act"], "x").unwrap(), "gelu");
        assert!(c.bool_or(&["tie"], false).unwrap());
        for bad in ["big", "neg", "act", "absent"] {
            assert!(c.dim(&[bad]).is_err(), "{bad}");
        }
        assert!(c.float_or(&["act"], 0.0).is_err());
        assert!(HfConfig::parse("[1]").is_err());
        assert!(HfConfig::parse("{").is_err());
    }
}
