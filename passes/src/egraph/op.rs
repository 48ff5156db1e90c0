//! Operator keys: an interned `(OpCall, output count)` pair.
//!
//! An e-node must be small, cheap to hash and comparable, but an [`OpCall`]
//! carries attributes that can be lists, tensors or whole subgraphs. So every
//! distinct call is interned once in a process-wide table and e-nodes carry a
//! 4-byte [`OpId`]. The table is global (not per e-graph) because `egg` parses
//! rule patterns (`"(Relu ?x)"`) without access to any e-graph; a pattern's
//! `Transpose{perm=[1,0]}` must name the same key as an imported node.
//!
//! Keys are canonical strings: `[domain::]Op{attr=value,...}#outputs`, with
//! attributes sorted by name and `#outputs` omitted for single-output ops.
//! Simple attributes (ints, floats, strings and lists of them) are spelled by
//! value and parse back, so users can write them in patterns; tensor and graph
//! attributes are keyed by the identity of their shared storage (the table keeps
//! them alive, so an identity is never reused).

use egret_ir::{Attr, OpCall, Tensor};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

/// An interned operator: the call plus how many outputs the node declares.
#[derive(Debug)]
pub struct OpKey {
    /// Domain, op type and attributes.
    pub call: OpCall,
    /// Number of outputs. A multi-output op's e-class is a tuple read through `get.i`.
    pub outputs: usize,
    text: String,
}

impl OpKey {
    /// The canonical key text (also how the op prints in patterns and dumps).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The op type, e.g. `MatMul`.
    pub fn op_type(&self) -> &str {
        &self.call.op_type
    }

    /// True for a standard-domain op of this type.
    pub fn is(&self, op_type: &str) -> bool {
        (self.call.domain.is_empty() || self.call.domain == "ai.onnx")
            && self.call.op_type == op_type
    }
}

/// Handle of an interned [`OpKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(u32);

#[derive(Default)]
struct Table {
    keys: Vec<Arc<OpKey>>,
    index: HashMap<String, u32>,
}

fn table() -> &'static RwLock<Table> {
    static T: OnceLock<RwLock<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

impl OpId {
    /// Intern a call with `outputs` outputs.
    pub fn intern(call: OpCall, outputs: usize) -> OpId {
        let text = key_text(&call, outputs);
        if let Some(&i) = read_table().index.get(&text) {
            return OpId(i);
        }
        let mut t = table().write().unwrap_or_else(|e| e.into_inner());
        if let Some(&i) = t.index.get(&text) {
            return OpId(i);
        }
        let i = u32::try_from(t.keys.len()).unwrap_or(u32::MAX);
        t.index.insert(text.clone(), i);
        t.keys.push(Arc::new(OpKey {
            call,
            outputs,
            text,
        }));
        OpId(i)
    }

    /// Intern a standard-domain, single-output call.
    pub fn single(call: OpCall) -> OpId {
        OpId::intern(call, 1)
    }

    /// The interned key.
    pub fn key(self) -> Arc<OpKey> {
        let t = read_table();
        // Ids are only made by `intern`, so the index is always in range.
        t.keys[self.0 as usize].clone()
    }
}

fn read_table() -> std::sync::RwLockReadGuard<'static, Table> {
    table().read().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key().text())
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        && s.parse::<f64>().is_err()
}

fn float_text(x: f32) -> String {
    let s = format!("{x:?}");
    if s.contains(['.', 'e', 'N', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn string_text(s: &str) -> String {
    if is_word(s) {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn join<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let v: Vec<String> = items.iter().map(f).collect();
    format!("[{}]", v.join(","))
}

fn tensor_text(t: &Tensor) -> String {
    let ptr = t.bytes().as_ptr() as usize;
    match (t.as_strings(), t.numel() <= 16) {
        (Ok(s), _) => format!(
            "<{}{:?}:{}>",
            t.dtype(),
            t.shape(),
            join(s, |x| string_text(x))
        ),
        (_, true) => format!(
            "<{}{:?}:{}>",
            t.dtype(),
            t.shape(),
            join(&t.to_f64_vec().unwrap_or_default(), |x| format!("{x:?}"))
        ),
        _ => format!("<{}{:?}@{ptr:x}>", t.dtype(), t.shape()),
    }
}

fn attr_text(a: &Attr) -> String {
    match a {
        Attr::Int(v) => v.to_string(),
        Attr::Float(v) => float_text(*v),
        Attr::String(s) => string_text(s),
        Attr::Ints(v) => join(v, |x| x.to_string()),
        Attr::Floats(v) => join(v, |x| float_text(*x)),
        Attr::Strings(v) => join(v, |x| string_text(x)),
        Attr::Tensor(t) => tensor_text(t),
        Attr::Tensors(v) => join(v, tensor_text),
        Attr::Graph(g) => format!("<graph@{:x}>", Arc::as_ptr(g) as usize),
        Attr::Graphs(v) => join(v, |g| format!("<graph@{:x}>", Arc::as_ptr(g) as usize)),
        Attr::Type(t) => format!("<type {t}>"),
    }
}

fn key_text(call: &OpCall, outputs: usize) -> String {
    let mut s = String::new();
    if !call.domain.is_empty() {
        s.push_str(&call.domain);
        s.push_str("::");
    }
    s.push_str(&call.op_type);
    if !call.attrs.0.is_empty() {
        let a: Vec<String> = call
            .attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", attr_text(v)))
            .collect();
        s.push('{');
        s.push_str(&a.join(","));
        s.push('}');
    }
    if outputs != 1 {
        s.push_str(&format!("#{outputs}"));
    }
    s
}

/// Split `s` at top-level commas (outside `[...]` and quotes).
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut quoted, mut start) = (vec![], 0i32, false, 0);
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '"' if prev != '\\' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        prev = c;
    }
    out.push(&s[start..]);
    out
}

fn parse_string(s: &str) -> Result<String, String> {
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => Ok(inner.replace("\\\"", "\"").replace("\\\\", "\\")),
        None if is_word(s) => Ok(s.to_string()),
        None => Err(format!("`{s}` is not a value")),
    }
}

fn parse_attr(v: &str) -> Result<Attr, String> {
    if let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let items: Vec<&str> = if inner.is_empty() {
            vec![]
        } else {
            split_top(inner)
        };
        if let Ok(ints) = items.iter().map(|x| x.parse::<i64>()).collect() {
            return Ok(Attr::Ints(ints));
        }
        if let Ok(fl) = items.iter().map(|x| x.parse::<f32>()).collect() {
            return Ok(Attr::Floats(fl));
        }
        return items
            .iter()
            .map(|x| parse_string(x))
            .collect::<Result<_, _>>()
            .map(Attr::Strings);
    }
    if let Ok(i) = v.parse::<i64>() {
        return Ok(Attr::Int(i));
    }
    if let Ok(f) = v.parse::<f32>() {
        return Ok(Attr::Float(f));
    }
    parse_string(v).map(Attr::String)
}

/// Parse an op atom `[domain::]Op{attr=value,...}[#outputs]` (the [`fmt::Display`]
/// form of an [`OpId`] without tensor or graph attributes).
pub fn parse_op(s: &str) -> Result<(OpCall, usize), String> {
    let (body, outputs) = match s.rsplit_once('#') {
        Some((b, n)) if !b.ends_with('"') => (
            b,
            n.parse::<usize>()
                .map_err(|_| format!("bad output count in `{s}`"))?,
        ),
        _ => (s, 1),
    };
    let (head, attrs) = match body.find('{') {
        Some(i) => {
            let a = body[i + 1..]
                .strip_suffix('}')
                .ok_or_else(|| format!("unclosed `{{` in `{s}`"))?;
            (&body[..i], Some(a))
        }
        None => (body, None),
    };
    let (domain, op) = head.rsplit_once("::").unwrap_or(("", head));
    if op.is_empty() || !op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{s}` is not an op"));
    }
    let mut call = OpCall::new(op);
    call.domain = domain.to_string();
    for item in attrs.map(split_top).unwrap_or_default() {
        if item.is_empty() {
            continue;
        }
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("attribute `{item}` in `{s}` is not name=value"))?;
        call.attrs.set(k, parse_attr(v)?);
    }
    Ok((call, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_and_parse_back() {
        let call = OpCall::new("Transpose").with("perm", Attr::Ints(vec![1, 0, 2]));
        let id = OpId::intern(call, 1);
        assert_eq!(id.to_string(), "Transpose{perm=[1,0,2]}");
        let (c, n) = parse_op("Transpose{perm=[1,0,2]}").unwrap();
        assert_eq!((OpId::intern(c, n)), id);
        let c = OpCall::new("Gelu")
            .with("approximate", Attr::String("tanh".into()))
            .with("alpha", Attr::Float(1.0))
            .with("names", Attr::Strings(vec!["a b".into()]));
        let t = OpId::intern(c, 2).to_string();
        assert_eq!(t, r#"Gelu{alpha=1.0,approximate=tanh,names=["a b"]}#2"#);
        let (c, n) = parse_op(&t).unwrap();
        assert_eq!(n, 2);
        assert_eq!(OpId::intern(c, n).to_string(), t);
        let (c, _) = parse_op("com.microsoft::Foo{x=1e-5,v=[0.5,2.0]}").unwrap();
        assert_eq!(c.domain, "com.microsoft");
        assert!(matches!(c.attrs.get("x"), Some(Attr::Float(x)) if (*x - 1e-5).abs() < 1e-12));
        assert!(matches!(c.attrs.get("v"), Some(Attr::Floats(v)) if v == &[0.5, 2.0]));
        assert!(parse_op("Foo{x}").is_err());
        assert!(parse_op("(").is_err());
        assert!(parse_op("Foo#x").is_err());
    }
}
