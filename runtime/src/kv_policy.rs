//! KV-cache policies for decoder LMs: which cached positions survive, how they
//! are stored, and how their rotary positions are kept within what the model
//! handles.
//!
//! A [`KvPolicy`] is a cache layout ([`PolicyKind`]) plus a storage format (f32
//! or int8). Its text form, used on the command line and recorded in a model's
//! metadata under [`POLICY_KEY`], is:
//!
//! | spec | keeps between steps |
//! |---|---|
//! | `full` | everything |
//! | `window:W` | the last `W` positions |
//! | `streaming:S,W` | the first `S` ("attention sink") positions and the last `W` |
//! | `sepllm:A,S,N,C` | SepLLM's streaming layout, at most `C` positions (below) |
//!
//! and any of them may end in `+int8` (int8 storage, one f32 scale per cached
//! row of `head_dim` values).
//!
//! **SepLLM** (Chen et al. 2024, streaming setting) keeps four caches in this
//! order: the initial cache (the first `A` tokens), the separator cache (at most
//! `S` separator tokens: punctuation, newline and space tokens, see
//! [`separator_ids`]), the past window cache and the local window cache (the
//! last `N` tokens). While the whole cache holds at most `C` positions new
//! tokens just append (the past window grows). When it would exceed `C` it is
//! compressed: the separators of the past window join the separator cache, the
//! oldest separators beyond `S` are dropped, and the rest of the past window
//! goes. The cache then holds at most `A + S + N` positions and grows back to
//! `C`. The defaults of the reference implementation are `4,32,224,324`. The
//! separator cache is exactly "the separator tokens between the initial cache
//! and the local window", so the layout needs no state beyond the cached
//! token ids ([`KvPolicy::keep`]).
//!
//! **Positions are cache-relative**, as in StreamingLLM: a new token's position
//! id is the number of cached positions before it, so positions never exceed
//! the cache capacity (plus one chunk), however long the stream. The graph
//! applies RoPE before its keys are cached, so when eviction moves a cached key
//! from slot `p` to slot `q` it is rotated by `q - p` ([`RotaryKeys::shift`]),
//! using the model's own rotary tables (the `cos`/`sin` constants of the
//! `RotaryEmbedding` on each layer's keys), which is llama.cpp's "context
//! shift". The attention scores after the shift are exactly those of keys
//! computed at their new positions, since RoPE scores depend only on the
//! distance between query and key.

use crate::error::{Result, RuntimeError};
use crate::tokenizer::Tokenizer;
use egret_ir::{Graph, Op, Tensor};
use std::fmt;
use std::str::FromStr;

/// Model metadata key holding a model's KV policy (a [`KvPolicy`] spec).
pub const POLICY_KEY: &str = "egret.kv_policy";
/// Model metadata key holding the separator token ids SepLLM keeps
/// (comma-separated).
pub const SEPARATORS_KEY: &str = "egret.kv_separators";

/// Which cached positions survive (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Keep everything.
    Full,
    /// Keep the last `window` positions.
    Window {
        /// Positions kept.
        window: usize,
    },
    /// StreamingLLM: the first `sinks` positions and the last `window`.
    Streaming {
        /// Initial ("attention sink") positions kept.
        sinks: usize,
        /// Most recent positions kept.
        window: usize,
    },
    /// SepLLM's four-cache streaming layout.
    SepLlm {
        /// Initial cache size (`A`).
        initial: usize,
        /// Separator cache size (`S`).
        separators: usize,
        /// Local window size (`N`).
        local: usize,
        /// Most positions cached (`C`); the past window is what remains.
        capacity: usize,
    },
}

/// A cache policy: a layout and a storage format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvPolicy {
    /// Which positions survive.
    pub kind: PolicyKind,
    /// Store keys and values as int8 with one f32 scale per row.
    pub int8: bool,
}

impl Default for KvPolicy {
    /// Full attention, f32 storage.
    fn default() -> KvPolicy {
        KvPolicy {
            kind: PolicyKind::Full,
            int8: false,
        }
    }
}

/// A KV policy spec that does not parse or is inconsistent.
#[derive(Debug, thiserror::Error)]
#[error("KV policy `{spec}`: {msg} (expected full, window:W, streaming:S,W or sepllm:A,S,N,C, optionally followed by +int8)")]
pub struct ParseKvPolicyError {
    /// The spec given.
    pub spec: String,
    /// What is wrong with it.
    pub msg: String,
}

impl FromStr for KvPolicy {
    type Err = ParseKvPolicyError;

    fn from_str(spec: &str) -> Result<KvPolicy, ParseKvPolicyError> {
        let bad = |msg: String| ParseKvPolicyError {
            spec: spec.to_string(),
            msg,
        };
        let (body, int8) = match spec.trim().split_once('+') {
            Some((b, "int8")) => (b, true),
            Some((_, other)) => return Err(bad(format!("unknown storage `{other}`"))),
            None => (spec.trim(), false),
        };
        let (name, args) = body.split_once(':').unwrap_or((body, ""));
        let nums = args
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.trim()
                    .parse::<usize>()
                    .map_err(|_| bad(format!("`{a}` is not a size")))
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let kind = match (name, &nums[..]) {
            ("full", []) => PolicyKind::Full,
            ("window", &[window]) => PolicyKind::Window { window },
            ("streaming", &[sinks, window]) => PolicyKind::Streaming { sinks, window },
            ("sepllm", []) => PolicyKind::SepLlm {
                initial: 4,
                separators: 32,
                local: 224,
                capacity: 324,
            },
            ("sepllm", &[initial, separators, local, capacity]) => PolicyKind::SepLlm {
                initial,
                separators,
                local,
                capacity,
            },
            ("full" | "window" | "streaming" | "sepllm", _) => {
                return Err(bad(format!("wrong number of sizes for `{name}`")))
            }
            _ => return Err(bad(format!("unknown policy `{name}`"))),
        };
        match kind {
            PolicyKind::Window { window: 0 } => Err(bad("the window must hold a position".into())),
            PolicyKind::Streaming { window: 0, .. } => {
                Err(bad("the recent window must hold a position".into()))
            }
            PolicyKind::SepLlm {
                initial,
                separators,
                local,
                capacity,
            } if local == 0 || initial + separators + local >= capacity => Err(bad(format!(
                "need N >= 1 and A + S + N < C (here {initial} + {separators} + {local} >= {capacity}): \
                 the past window would be empty"
            ))),
            _ => Ok(KvPolicy { kind, int8 }),
        }
    }
}

impl fmt::Display for KvPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PolicyKind::Full => write!(f, "full")?,
            PolicyKind::Window { window } => write!(f, "window:{window}")?,
            PolicyKind::Streaming { sinks, window } => write!(f, "streaming:{sinks},{window}")?,
            PolicyKind::SepLlm {
                initial,
                separators,
                local,
                capacity,
            } => write!(f, "sepllm:{initial},{separators},{local},{capacity}")?,
        }
        if self.int8 {
            write!(f, "+int8")?;
        }
        Ok(())
    }
}

impl KvPolicy {
    /// Most positions cached between steps (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        match self.kind {
            PolicyKind::Full => None,
            PolicyKind::Window { window } => Some(window),
            PolicyKind::Streaming { sinks, window } => Some(sinks + window),
            PolicyKind::SepLlm { capacity, .. } => Some(capacity),
        }
    }

    /// Whether the policy ever evicts (and so shifts positions).
    pub fn evicts(&self) -> bool {
        self.capacity().is_some()
    }

    /// Whether the policy needs to know the separator tokens.
    pub fn needs_separators(&self) -> bool {
        matches!(self.kind, PolicyKind::SepLlm { .. })
    }

    /// The slots to keep, in order, of a cache holding `tokens` (one id per
    /// cached position, oldest first), or `None` when nothing is evicted.
    /// `is_separator` classifies token ids for SepLLM.
    pub fn keep(&self, tokens: &[i64], is_separator: &dyn Fn(i64) -> bool) -> Option<Vec<usize>> {
        let len = tokens.len();
        if len <= self.capacity()? {
            return None;
        }
        let tail = |n: usize| len - n.min(len)..len;
        Some(match self.kind {
            PolicyKind::Full => return None,
            PolicyKind::Window { window } => tail(window).collect(),
            PolicyKind::Streaming { sinks, window } => {
                (0..sinks.min(len)).chain(tail(window)).collect()
            }
            PolicyKind::SepLlm {
                initial,
                separators,
                local,
                ..
            } => {
                let initial = initial.min(len);
                let local = tail(local);
                let seps: Vec<usize> = (initial..local.start)
                    .filter(|&i| is_separator(tokens[i]))
                    .collect();
                let seps = &seps[seps.len() - separators.min(seps.len())..];
                (0..initial)
                    .chain(seps.iter().copied())
                    .chain(local)
                    .collect()
            }
        })
    }
}

/// Whether the text of one token makes it a SepLLM separator: one of
/// `. , ? ! ; :` (optionally after one space, as byte-level BPE vocabularies
/// spell a word-initial mark), or whitespace only (spaces, tabs, newlines).
pub fn is_separator_text(text: &str) -> bool {
    if text.is_empty() {
        return false;
    }
    if text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
        return true;
    }
    let mark = text.strip_prefix(' ').unwrap_or(text);
    matches!(mark, "." | "," | "?" | "!" | ";" | ":")
}

/// The separator token ids of a vocabulary: every id whose text (special tokens
/// excluded) is a separator by [`is_separator_text`], in increasing order.
pub fn separator_ids(tokenizer: &Tokenizer) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for id in 0..tokenizer.vocab_size() as i64 {
        if is_separator_text(&tokenizer.decode(&[id], true)?) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Parse the [`SEPARATORS_KEY`] metadata form (comma-separated ids).
pub fn parse_separators(text: &str) -> Result<Vec<i64>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim().parse::<i64>().map_err(|_| {
                RuntimeError::msg(format!("{SEPARATORS_KEY}: `{s}` is not a token id"))
            })
        })
        .collect()
}

/// The rotary embedding applied to one layer's keys before they are cached: its
/// `cos`/`sin` tables (`[positions, rotary_dim / 2]`, entry `[p, j]` =
/// `cos|sin(p · θ_j)`) and layout.
#[derive(Clone, Debug)]
pub struct RotaryKeys {
    cos: Tensor,
    sin: Tensor,
    half: usize,
    interleaved: bool,
}

impl RotaryKeys {
    /// Positions the tables cover.
    pub fn positions(&self) -> usize {
        self.cos.shape()[0]
    }

    /// Rotate one head's key `row` (`head_dim` values, the first
    /// `rotary_dim` rotated) from position `from` to position `to`: a rotation
    /// by `to - from`, read from the tables' row `|to - from|`, in f64.
    pub fn shift(&self, row: &mut [f32], from: usize, to: usize) -> Result<()> {
        let delta = from.abs_diff(to);
        if delta == 0 {
            return Ok(());
        }
        if delta >= self.positions() || row.len() < 2 * self.half {
            return Err(RuntimeError::msg(format!(
                "cannot shift a key by {delta} positions: the rotary tables cover {}",
                self.positions()
            )));
        }
        let sign = if to > from { 1.0 } else { -1.0 };
        let cos = &self.cos.as_slice::<f32>()?[delta * self.half..][..self.half];
        let sin = &self.sin.as_slice::<f32>()?[delta * self.half..][..self.half];
        for (j, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (a, b) = if self.interleaved {
                (2 * j, 2 * j + 1)
            } else {
                (j, j + self.half)
            };
            let (c, s) = (f64::from(c), sign * f64::from(s));
            let (x1, x2) = (f64::from(row[a]), f64::from(row[b]));
            row[a] = (x1 * c - x2 * s) as f32;
            row[b] = (x2 * c + x1 * s) as f32;
        }
        Ok(())
    }
}

/// The rotary embedding of each layer's keys, found by following graph output
/// `present.{i}.key` back to its `Attention` node and that node's key input to
/// a `RotaryEmbedding` whose positions are the graph input `position_ids` and
/// whose tables are constants. An error says which layer does not fit (a
/// policy that evicts cannot shift such keys).
pub fn rotary_keys(graph: &Graph) -> Result<Vec<RotaryKeys>> {
    let outputs: Vec<_> = graph
        .outputs
        .iter()
        .map(|&o| (graph.value_name(o), o))
        .collect();
    let mut layers = Vec::new();
    loop {
        let name = format!("present.{}.key", layers.len());
        let Some(&(_, present)) = outputs.iter().find(|(n, _)| *n == name) else {
            break;
        };
        let bad = |msg: &str| {
            RuntimeError::msg(format!(
                "cannot shift cached keys: `{name}` {msg} (eviction policies need keys rotated \
                 by a RotaryEmbedding at the `position_ids` input, with constant tables)"
            ))
        };
        let attn = graph.node(present.node);
        if attn.op.name() != "Attention" || present.slot != 1 {
            return Err(bad("is not the present key of an Attention node"));
        }
        let k = attn.inputs().get(1).copied().flatten();
        let rope = k
            .map(|k| graph.node(k.node))
            .filter(|n| n.op.name() == "RotaryEmbedding")
            .ok_or_else(|| bad("comes from keys without a RotaryEmbedding"))?;
        let input = |i: usize| rope.inputs().get(i).copied().flatten();
        let table = |i: usize| input(i).and_then(|o| graph.const_value(o)).cloned();
        let (Some(cos), Some(sin)) = (table(1), table(2)) else {
            return Err(bad("has rotary tables that are not constants"));
        };
        let positions_ok = input(3).is_some_and(|o| {
            matches!(graph.node(o.node).op, Op::Input) && graph.value_name(o) == "position_ids"
        });
        if !positions_ok {
            return Err(bad(
                "is rotated at positions other than the `position_ids` input",
            ));
        }
        let shape_ok = cos.rank() == 2
            && cos.shape() == sin.shape()
            && cos.shape()[1] > 0
            && cos.dtype() == egret_ir::DType::F32
            && sin.dtype() == egret_ir::DType::F32;
        if !shape_ok {
            return Err(bad(
                "has rotary tables that are not f32 [positions, rotary_dim/2]",
            ));
        }
        let attrs = &rope.op.as_call().ok_or_else(|| bad("is malformed"))?.attrs;
        let half = cos.shape()[1];
        let rd = attrs
            .int_or("rotary_embedding_dim", 0)
            .map_err(RuntimeError::from)?;
        if rd != 0 && rd != 2 * half as i64 {
            return Err(bad(
                "has rotary tables that do not match rotary_embedding_dim",
            ));
        }
        let interleaved = attrs.int_or("interleaved", 0).map_err(RuntimeError::from)? != 0;
        layers.push(RotaryKeys {
            cos,
            sin,
            half,
            interleaved,
        });
    }
    if layers.is_empty() {
        return Err(RuntimeError::msg(
            "cannot shift cached keys: the graph has no `present.0.key` output",
        ));
    }
    Ok(layers)
}

/// Quantize `x` symmetrically to int8 with one scale (`max |x| / 127`),
/// appending the codes to `out`; returns the scale.
pub fn quantize_row(x: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 && max.is_finite() {
        max / 127.0
    } else {
        1.0
    };
    out.extend(
        x.iter()
            .map(|&v| (v / scale).round().clamp(-127.0, 127.0) as i8),
    );
    scale
}

/// One layer's cached keys or values, `[kv_heads, len, head_dim]`.
#[derive(Clone, Debug)]
pub(crate) enum Rows {
    /// f32, as the graph's `present` output `[1, kv_heads, len, head_dim]`
    /// (shared, not copied). Keys are always rotated at their slot.
    F32(Tensor),
    /// int8 codes and one scale per row, per head. Keys stay rotated at the
    /// position they were computed at; [`Rows::to_tensor`] rotates them to
    /// their slot, so a key is quantized once however often it shifts.
    Int8 {
        /// Per head: `len · head_dim` codes.
        codes: Vec<Vec<i8>>,
        /// Per head: `len` scales.
        scales: Vec<Vec<f32>>,
        /// `head_dim`.
        dim: usize,
    },
}

impl Rows {
    /// An empty int8 store of `heads` heads of `dim` values.
    pub(crate) fn empty_int8(heads: usize, dim: usize) -> Rows {
        Rows::Int8 {
            codes: vec![Vec::new(); heads],
            scales: vec![Vec::new(); heads],
            dim,
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Rows::F32(t) => t.byte_size(),
            Rows::Int8 { codes, scales, .. } => {
                codes.iter().map(Vec::len).sum::<usize>()
                    + 4 * scales.iter().map(Vec::len).sum::<usize>()
            }
        }
    }

    /// The rows as the graph's f32 `[1, heads, len, dim]` input. For int8 keys
    /// (`rope` given) slot `i` is rotated from position `at[i]` to `i`.
    pub(crate) fn to_tensor(&self, rope: Option<&RotaryKeys>, at: &[usize]) -> Result<Tensor> {
        match self {
            Rows::F32(t) => Ok(t.clone()),
            Rows::Int8 { codes, scales, dim } => {
                let len = at.len();
                let mut out = Vec::with_capacity(codes.len() * len * dim);
                for (c, s) in codes.iter().zip(scales) {
                    for (i, (row, &scale)) in c.chunks_exact(*dim).zip(s).enumerate() {
                        let start = out.len();
                        out.extend(row.iter().map(|&q| f32::from(q) * scale));
                        if let Some(r) = rope {
                            r.shift(&mut out[start..], at[i], i)?;
                        }
                    }
                }
                Ok(Tensor::from_vec(vec![1, codes.len(), len, *dim], out)?)
            }
        }
    }

    /// Take the rows of `present` (`[1, heads, past + n, dim]`) as the new
    /// contents: f32 keeps the tensor, int8 quantizes rows `past..` and appends.
    pub(crate) fn absorb(&mut self, present: Tensor, past: usize) -> Result<()> {
        match self {
            Rows::F32(t) => *t = present,
            Rows::Int8 { codes, scales, dim } => {
                let v = present.as_slice::<f32>()?;
                let len = present.shape()[2];
                for (h, (c, s)) in codes.iter_mut().zip(scales.iter_mut()).enumerate() {
                    let head = &v[h * len * *dim..(h + 1) * len * *dim];
                    for row in head[past * *dim..].chunks_exact(*dim) {
                        s.push(quantize_row(row, c));
                    }
                }
            }
        }
        Ok(())
    }

    /// Keep the slots `keep` (increasing), in order. f32 keys (`rope` given)
    /// are rotated from slot `keep[j]` to `j` as they move.
    pub(crate) fn retain(&mut self, keep: &[usize], rope: Option<&RotaryKeys>) -> Result<()> {
        match self {
            Rows::F32(t) => {
                let (heads, len, dim) = (t.shape()[1], t.shape()[2], t.shape()[3]);
                let v = t.as_slice::<f32>()?;
                let mut out = Vec::with_capacity(heads * keep.len() * dim);
                for h in 0..heads {
                    for (j, &i) in keep.iter().enumerate() {
                        let start = out.len();
                        out.extend_from_slice(&v[(h * len + i) * dim..][..dim]);
                        if let Some(r) = rope {
                            r.shift(&mut out[start..], i, j)?;
                        }
                    }
                }
                *t = Tensor::from_vec(vec![1, heads, keep.len(), dim], out)?;
            }
            Rows::Int8 { codes, scales, dim } => {
                for (c, s) in codes.iter_mut().zip(scales.iter_mut()) {
                    *c = keep
                        .iter()
                        .flat_map(|&i| c[i * *dim..(i + 1) * *dim].iter().copied())
                        .collect();
                    *s = keep.iter().map(|&i| s[i]).collect();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> KvPolicy {
        s.parse().unwrap()
    }

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "full",
            "window:8",
            "streaming:4,320",
            "sepllm:4,32,224,324",
            "sepllm:4,32,224,324+int8",
            "full+int8",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(p("sepllm"), p("sepllm:4,32,224,324"));
        assert_eq!(p("streaming:4,320").capacity(), Some(324));
        assert_eq!(p("full").capacity(), None);
        for bad in [
            "",
            "lru:4",
            "window",
            "window:0",
            "window:x",
            "streaming:4",
            "streaming:4,0",
            "sepllm:4,32,224,260",
            "sepllm:4,32,0,324",
            "full+int4",
            "full:3",
        ] {
            let e = bad.parse::<KvPolicy>().unwrap_err();
            assert!(e.to_string().contains("expected full"), "{bad}: {e}");
        }
    }

    fn survivors(policy: &str, tokens: &[i64]) -> Option<Vec<usize>> {
        p(policy).keep(tokens, &|t| t < 0)
    }

    #[test]
    fn window_and_streaming_keep_the_documented_positions() {
        let ids: Vec<i64> = (0..10).collect();
        assert_eq!(survivors("full", &ids), None);
        assert_eq!(survivors("window:10", &ids), None);
        assert_eq!(survivors("window:3", &ids), Some(vec![7, 8, 9]));
        assert_eq!(survivors("streaming:2,3", &ids), Some(vec![0, 1, 7, 8, 9]));
        assert_eq!(survivors("streaming:2,8", &ids), None);
        assert_eq!(survivors("streaming:0,4", &ids), Some(vec![6, 7, 8, 9]));
    }

    #[test]
    fn sepllm_keeps_initial_newest_separators_and_local_window() {
        // 1 initial, 2 separators, local window 3, capacity 8. Separators are
        // negative ids: at positions 2, 4, 5, 9 of a 12-token cache.
        let t = [10, 11, -1, 13, -1, -1, 16, 17, 18, -1, 20, 21];
        assert_eq!(survivors("sepllm:1,2,3,8", &t[..8]), None);
        // Past window 1..9: separators 2, 4, 5 -> the newest two (4, 5) stay.
        assert_eq!(
            survivors("sepllm:1,2,3,8", &t[..9]),
            Some(vec![0, 4, 5, 6, 7, 8])
        );
        // Separator 9 is inside the local window (9..12) and stays as local.
        assert_eq!(
            survivors("sepllm:1,2,3,8", &t),
            Some(vec![0, 4, 5, 9, 10, 11])
        );
        // Fewer separators than the cache holds: all of them stay.
        assert_eq!(
            survivors("sepllm:1,5,3,10", &t),
            Some(vec![0, 2, 4, 5, 9, 10, 11])
        );
    }

    #[test]
    fn sepllm_streams_through_compressions() {
        // Streaming one token at a time: the cache never exceeds C and always
        // holds the initial tokens, the newest separators and the last N.
        let policy = p("sepllm:2,3,4,12");
        let is_sep = |t: i64| t % 5 == 0;
        let mut cache: Vec<i64> = Vec::new();
        for t in 1..200 {
            cache.push(t);
            if let Some(keep) = policy.keep(&cache, &is_sep) {
                cache = keep.iter().map(|&i| cache[i]).collect();
                assert!(cache.len() <= 2 + 3 + 4);
                assert_eq!(&cache[..2], &[1, 2]);
                assert_eq!(cache[cache.len() - 4..], [t - 3, t - 2, t - 1, t]);
                let seps = &cache[2..cache.len() - 4];
                assert!(seps.iter().all(|&s| is_sep(s)), "{cache:?}");
                // The newest separators before the local window.
                let want: Vec<i64> = (3..t - 3).filter(|&s| is_sep(s)).collect();
                assert_eq!(seps, &want[want.len().saturating_sub(3)..]);
            }
            assert!(cache.len() <= 12);
        }
    }

    #[test]
    fn separator_text_rules() {
        for s in [
            ".", ",", "?", "!", ";", ":", " .", " ,", "\n", "\n\n", " ", "   ", "\t",
        ] {
            assert!(is_separator_text(s), "{s:?}");
        }
        for s in ["", "a", " the", "..", ".\n", "  .", "-", "'", "\u{FFFD}"] {
            assert!(!is_separator_text(s), "{s:?}");
        }
        assert_eq!(parse_separators("13, 30,").unwrap(), vec![13, 30]);
        assert!(parse_separators("13,x").is_err());
    }

    fn rope(half: usize, positions: usize, interleaved: bool) -> RotaryKeys {
        let theta: Vec<f64> = (0..half)
            .map(|j| 10_000f64.powf(-(2.0 * j as f64) / (2 * half) as f64))
            .collect();
        let table = |f: fn(f64) -> f64| {
            let v = (0..positions)
                .flat_map(|p| theta.iter().map(move |&w| f(p as f64 * w) as f32))
                .collect();
            Tensor::from_vec(vec![positions, half], v).unwrap()
        };
        RotaryKeys {
            cos: table(f64::cos),
            sin: table(f64::sin),
            half,
            interleaved,
        }
    }

    #[test]
    fn shifts_compose_and_invert() {
        for interleaved in [false, true] {
            let r = rope(4, 64, interleaved);
            let x: Vec<f32> = (0..10).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut y = x.clone();
            r.shift(&mut y, 3, 20).unwrap();
            let mut z = x.clone();
            r.shift(&mut z, 3, 9).unwrap();
            r.shift(&mut z, 9, 20).unwrap();
            for (a, b) in y.iter().zip(&z) {
                assert!((a - b).abs() < 1e-6, "{y:?} {z:?}");
            }
            r.shift(&mut y, 20, 3).unwrap();
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-6);
            }
            // Dims past the rotary dim (8 of 10) are untouched; norms are kept.
            assert_eq!(y[8..], x[8..]);
            assert!(r.shift(&mut y, 0, 64).is_err());
        }
    }

    #[test]
    fn int8_rows_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.3).collect();
        let mut q = Vec::new();
        let s = quantize_row(&x, &mut q);
        assert!((s - 2.25 / 127.0).abs() < 1e-9);
        for (a, &c) in x.iter().zip(&q) {
            assert!((a - f32::from(c) * s).abs() <= s / 2.0 + 1e-7);
        }
        let mut zeros = Vec::new();
        assert_eq!(quantize_row(&[0.0; 4], &mut zeros), 1.0);
        assert_eq!(zeros, vec![0; 4]);
    }
}
