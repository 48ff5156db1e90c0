//! The KV-segment rewrite: make a decoder's attention cache policy part of the
//! model.
//!
//! [`apply`] checks that the policy fits the graph (an evicting policy needs
//! keys rotated by a `RotaryEmbedding` at the `position_ids` input, so cached
//! keys can be shifted; its capacity must stay within the rotary tables; SepLLM
//! needs separator ids) and records it in the model's metadata:
//! [`POLICY_KEY`] holds the policy spec and [`SEPARATORS_KEY`] SepLLM's
//! separator token ids. `egret_runtime::generate::Decoder` reads both, so a
//! model written as `.egret` streams with its policy wherever it runs. The
//! graph's operators are unchanged: the policy acts between decode steps, on
//! the cache the graph reads and writes.

use egret_ir::Model;
use egret_runtime::kv_policy::{rotary_keys, RotaryKeys};
pub use egret_runtime::kv_policy::{KvPolicy, POLICY_KEY, SEPARATORS_KEY};
use serde::Serialize;

/// Why a policy cannot be recorded in a model.
#[derive(Debug, thiserror::Error)]
pub enum KvSegmentError {
    /// The graph's keys cannot be shifted, so an evicting policy cannot run.
    #[error("kv_segment: {policy}: {msg}")]
    Unsupported {
        /// The policy asked for.
        policy: String,
        /// What the graph lacks.
        msg: String,
    },
    /// SepLLM was asked for without separator token ids.
    #[error("kv_segment: {0}: no separator token ids (the model needs a tokenizer)")]
    NoSeparators(String),
}

/// What [`apply`] recorded.
#[derive(Clone, Debug, Serialize)]
pub struct KvSegmentReport {
    /// The policy spec.
    pub policy: String,
    /// Most positions cached (`None`: unbounded).
    pub capacity: Option<usize>,
    /// Separator token ids recorded (SepLLM only).
    pub separators: usize,
    /// Layers whose keys were checked to be shiftable (0 when the policy
    /// never evicts).
    pub rotary_layers: usize,
}

/// Record `policy` (and, for SepLLM, `separators`) in `model`'s metadata after
/// checking the graph supports it; see the module docs.
pub fn apply(
    model: &mut Model,
    policy: KvPolicy,
    separators: &[i64],
) -> Result<KvSegmentReport, KvSegmentError> {
    let spec = policy.to_string();
    let mut rotary_layers = 0;
    if policy.evicts() {
        let unsupported = |msg: String| KvSegmentError::Unsupported {
            policy: spec.clone(),
            msg,
        };
        let rotary = rotary_keys(&model.graph).map_err(|e| unsupported(e.to_string()))?;
        let room = rotary.iter().map(RotaryKeys::positions).min().unwrap_or(0);
        if policy.capacity().is_some_and(|c| c >= room) {
            return Err(unsupported(format!(
                "the capacity must stay below the {room} positions the rotary tables cover"
            )));
        }
        rotary_layers = rotary.len();
    }
    let seps = if policy.needs_separators() {
        if separators.is_empty() {
            return Err(KvSegmentError::NoSeparators(spec));
        }
        separators
    } else {
        &[]
    };
    model.metadata.insert(POLICY_KEY.into(), spec.clone());
    if seps.is_empty() {
        model.metadata.remove(SEPARATORS_KEY);
    } else {
        let ids: Vec<String> = seps.iter().map(i64::to_string).collect();
        model.metadata.insert(SEPARATORS_KEY.into(), ids.join(","));
    }
    Ok(KvSegmentReport {
        capacity: policy.capacity(),
        policy: spec,
        separators: seps.len(),
        rotary_layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_attention_is_recorded_on_any_graph_and_eviction_is_refused_without_rope() {
        let mut m = Model::default();
        let r = apply(&mut m, "full+int8".parse().unwrap(), &[1, 2]).unwrap();
        assert_eq!(r.policy, "full+int8");
        assert_eq!(r.separators, 0);
        assert_eq!(m.metadata[POLICY_KEY], "full+int8");
        assert!(!m.metadata.contains_key(SEPARATORS_KEY));
        let e = apply(&mut m, "streaming:4,60".parse().unwrap(), &[]).unwrap_err();
        assert!(e.to_string().contains("present.0.key"), "{e}");
        // A failed apply leaves the recorded policy alone.
        assert_eq!(m.metadata[POLICY_KEY], "full+int8");
    }
}
