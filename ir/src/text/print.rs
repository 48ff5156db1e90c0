//! The printer.

use super::lex::{is_bare_name_char, quote};
use super::lit::print_elems;
use crate::attr::Attr;
use crate::dtype::DType;
use crate::graph::{Graph, Model, Node, Op, OutletId};
use crate::shape::{Dim, TensorType, ValueType};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Tensors with at most this many elements (and every string tensor) are
/// printed inline; larger ones go to the weights table.
pub const INLINE_MAX_ELEMS: usize = 16;

/// Words the parser gives a meaning to where an op name or dim may stand.
const RESERVED: [&str; 4] = ["const", "input", "graph", "_"];

/// True if `s` is a bare identifier: `[A-Za-z_][A-Za-z0-9_]*`, not reserved.
fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !RESERVED.contains(&s)
}

/// An identifier, or its quoted form.
pub(super) fn ident(s: &str) -> String {
    if is_ident(s) {
        s.to_string()
    } else {
        quote(s)
    }
}

/// `%name` / `@name`, quoting names with characters outside the bare set.
fn sigil_name(sigil: char, s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_bare_name_char) {
        format!("{sigil}{s}")
    } else {
        format!("{sigil}{}", quote(s))
    }
}

/// A domain: bare if it looks like `com.microsoft`, else quoted.
fn domain(s: &str) -> String {
    let mut c = s.chars();
    let bare = c
        .next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '.');
    if bare {
        s.to_string()
    } else {
        quote(s)
    }
}

fn dim(d: &Dim) -> String {
    match d {
        Dim::Known(n) => n.to_string(),
        Dim::Sym(s) => ident(s),
    }
}

/// `f32[batch,3]`, `f32[]` (scalar) or `f32[?]` (unknown rank).
pub(super) fn tensor_type(t: &TensorType) -> String {
    match &t.shape {
        None => format!("{}[?]", t.dtype),
        Some(s) => format!(
            "{}[{}]",
            t.dtype,
            s.dims().iter().map(dim).collect::<Vec<_>>().join(",")
        ),
    }
}

/// A value type: tensor type, `seq<...>` or `opt<...>`.
pub(super) fn value_type(t: &ValueType) -> String {
    match t {
        ValueType::Tensor(t) => tensor_type(t),
        ValueType::Sequence(t) => format!("seq<{}>", tensor_type(t)),
        ValueType::Optional(t) => format!("opt<{}>", value_type(t)),
    }
}

fn is_inline(t: &Tensor) -> bool {
    t.dtype() == DType::String
        || (!matches!(t.dtype(), DType::Block(_)) && t.numel() <= INLINE_MAX_ELEMS)
}

/// Printer state: output buffer and the weights table being built.
pub(super) struct Printer {
    out: String,
    weights: Vec<(String, Tensor)>,
    used: HashSet<String>,
    /// Storage identity (data pointer, byte length, dtype, shape) -> weight key,
    /// so tensors sharing one buffer share one entry.
    shared: HashMap<(usize, usize, DType, Vec<usize>), String>,
}

impl Printer {
    pub(super) fn new() -> Printer {
        Printer {
            out: String::new(),
            weights: Vec::new(),
            used: HashSet::new(),
            shared: HashMap::new(),
        }
    }

    /// The text and the weights table.
    pub(super) fn finish(self) -> (String, Vec<(String, Tensor)>) {
        (self.out, self.weights)
    }

    pub(super) fn model(&mut self, m: &Model) {
        for (d, v) in &m.opsets {
            let _ = writeln!(self.out, "opset {} = {v}", quote(d));
        }
        for (k, v) in &m.metadata {
            let _ = writeln!(self.out, "meta {} = {}", quote(k), quote(v));
        }
        if !m.opsets.is_empty() || !m.metadata.is_empty() {
            self.out.push('\n');
        }
        self.graph(&m.graph, 0);
        self.out.push('\n');
    }

    /// Print `graph name(params) -> (outputs) { body }` at `indent` (the opening
    /// line is assumed to be positioned already; the closing brace is indented).
    pub(super) fn graph(&mut self, g: &Graph, indent: usize) {
        let params: Vec<String> = g
            .inputs
            .iter()
            .map(|&o| {
                match g
                    .try_node(o.node)
                    .and_then(|n| n.outputs.get(o.slot).map(|v| (n, v)))
                {
                    Some((n, v)) => {
                        let label = if n.name != v.name {
                            format!(" {}", quote(&n.name))
                        } else {
                            String::new()
                        };
                        format!("{}{label}: {}", sigil_name('%', &v.name), value_type(&v.ty))
                    }
                    None => format!("%\"<missing {o:?}>\": ?"),
                }
            })
            .collect();
        let outputs: Vec<String> = g.outputs.iter().map(|&o| self.outlet(g, o)).collect();
        let _ = writeln!(
            self.out,
            "graph {}({}) -> ({}) {{",
            ident(&g.name),
            params.join(", "),
            outputs.join(", ")
        );
        let listed: HashSet<_> = g.inputs.iter().map(|o| o.node).collect();
        let order = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
        for id in order {
            let n = g.node(id);
            if matches!(n.op, Op::Input) && listed.contains(&id) {
                continue;
            }
            self.node(g, n, indent + 2);
        }
        let _ = write!(self.out, "{}}}", " ".repeat(indent));
    }

    fn outlet(&self, g: &Graph, o: OutletId) -> String {
        match g.try_node(o.node).and_then(|n| n.outputs.get(o.slot)) {
            Some(v) => sigil_name('%', &v.name),
            None => format!("%\"<missing {o:?}>\""),
        }
    }

    fn node(&mut self, g: &Graph, n: &Node, indent: usize) {
        let pad = " ".repeat(indent);
        let lhs = if n.outputs.is_empty() {
            "()".to_string()
        } else {
            n.outputs
                .iter()
                .map(|v| sigil_name('%', &v.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let first_name = n.outputs.first().map(|v| v.name.as_str());
        let leaf_label = |n: &Node| {
            if Some(n.name.as_str()) != first_name {
                format!(" {}", quote(&n.name))
            } else {
                String::new()
            }
        };
        let _ = write!(self.out, "{pad}{lhs} = ");
        match &n.op {
            Op::Input => {
                let ty = n
                    .outputs
                    .first()
                    .map(|v| value_type(&v.ty))
                    .unwrap_or_default();
                let _ = writeln!(self.out, "input{}: {ty}", leaf_label(n));
            }
            Op::Const(t) => {
                let key = n
                    .outputs
                    .first()
                    .map(|v| v.name.clone())
                    .unwrap_or_default();
                let lit = self.tensor(t, &key);
                let _ = write!(self.out, "const{} {lit}", leaf_label(n));
                let own = ValueType::Tensor(TensorType::known(t.dtype(), t.shape()));
                if let Some(v) = n.outputs.first().filter(|v| v.ty != own) {
                    let _ = write!(self.out, " : {}", value_type(&v.ty));
                }
                self.out.push('\n');
            }
            Op::Call(c) => {
                if !c.domain.is_empty() {
                    let _ = write!(self.out, "{}::", domain(&c.domain));
                }
                self.out.push_str(&ident(&c.op_type));
                if !n.name.is_empty() {
                    let _ = write!(self.out, " {}", quote(&n.name));
                }
                if !c.attrs.0.is_empty() {
                    if !n.name.is_empty() {
                        self.out.push(' ');
                    }
                    self.out.push('[');
                    for (i, (k, a)) in c.attrs.iter().enumerate() {
                        if i > 0 {
                            self.out.push_str(", ");
                        }
                        let _ = write!(self.out, "{}=", ident(k));
                        let base = format!("{}.{k}", n.label());
                        self.attr(a, &base, indent);
                    }
                    self.out.push(']');
                }
                let args: Vec<String> = n
                    .inputs()
                    .iter()
                    .map(|i| i.map_or_else(|| "_".to_string(), |o| self.outlet(g, o)))
                    .collect();
                let _ = write!(self.out, "({})", args.join(", "));
                if !n.outputs.is_empty() {
                    let tys: Vec<String> = n.outputs.iter().map(|v| value_type(&v.ty)).collect();
                    let _ = write!(self.out, " : {}", tys.join(", "));
                }
                self.out.push('\n');
            }
        }
    }

    /// A tensor: `dtype[dims] {elems}` inline, or `dtype[dims] @key` with the
    /// tensor added to the weights table under a unique key derived from `base`.
    fn tensor(&mut self, t: &Tensor, base: &str) -> String {
        let ty = tensor_type(&TensorType::known(t.dtype(), t.shape()));
        if is_inline(t) {
            let elems = match t.as_strings() {
                Ok(s) => s.iter().map(|x| quote(x)).collect(),
                Err(_) => print_elems(t).unwrap_or_default(),
            };
            return format!("{ty} {{{}}}", elems.join(", "));
        }
        let id = (
            t.bytes().as_ptr() as usize,
            t.bytes().len(),
            t.dtype(),
            t.shape().to_vec(),
        );
        if let Some(k) = self.shared.get(&id) {
            return format!("{ty} {}", sigil_name('@', k));
        }
        let base = if base.is_empty() { "w" } else { base };
        let mut key = base.to_string();
        let mut i = 1;
        while self.used.contains(&key) {
            key = format!("{base}.{i}");
            i += 1;
        }
        self.used.insert(key.clone());
        self.shared.insert(id, key.clone());
        self.weights.push((key.clone(), t.clone()));
        format!("{ty} {}", sigil_name('@', &key))
    }

    fn attr(&mut self, a: &Attr, base: &str, indent: usize) {
        let s = match a {
            Attr::Int(v) => v.to_string(),
            Attr::Float(v) => super::lit::Lit::print(*v),
            Attr::String(s) => quote(s),
            Attr::Tensor(t) => self.tensor(t, base),
            Attr::Type(t) => value_type(t),
            Attr::Graph(g) => {
                self.graph(g, indent);
                return;
            }
            Attr::Ints(v) => list("ints", v.iter().map(|x| x.to_string())),
            Attr::Floats(v) => list("floats", v.iter().map(|&x| super::lit::Lit::print(x))),
            Attr::Strings(v) => list("strings", v.iter().map(|x| quote(x))),
            Attr::Tensors(v) => {
                let items: Vec<String> = v
                    .iter()
                    .enumerate()
                    .map(|(i, t)| self.tensor(t, &format!("{base}.{i}")))
                    .collect();
                list("tensors", items.into_iter())
            }
            Attr::Graphs(v) => {
                if v.is_empty() {
                    self.out.push_str("graphs[]");
                    return;
                }
                self.out.push('[');
                for (i, g) in v.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.graph(g, indent);
                }
                self.out.push(']');
                return;
            }
        };
        self.out.push_str(&s);
    }
}

/// `[a, b]`, or `kind[]` when empty so the list kind survives a round trip.
fn list(kind: &str, items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        format!("{kind}[]")
    } else {
        format!("[{}]", items.join(", "))
    }
}
