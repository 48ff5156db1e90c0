//! The parser: recursive descent over the tokens of [`super::lex`].

use super::lex::{lex, Tok};
use super::lit::parse_elems;
use crate::attr::{Attr, Attrs};
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::{Graph, Model, Op, OpCall, OutletId, ValueInfo};
use crate::shape::{Dim, Shape, TensorType, ValueType};
use crate::tensor::{checked_numel, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// How deeply subgraphs (and nested types) may nest before the parser gives up,
/// so hostile text cannot overflow the stack.
const MAX_DEPTH: usize = 64;

type R<T> = Result<T, IrError>;

pub(super) struct Parser<'w> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    weights: &'w dyn Fn(&str) -> Option<Tensor>,
}

impl<'w> Parser<'w> {
    pub(super) fn new(text: &str, weights: &'w dyn Fn(&str) -> Option<Tensor>) -> R<Parser<'w>> {
        Ok(Parser {
            toks: lex(text)?,
            pos: 0,
            depth: 0,
            weights,
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }

    fn peek2(&self) -> &Tok {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)].0
    }

    fn line(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }

    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(IrError::Parse {
            line: self.line(),
            msg: msg.into(),
        })
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> R<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.err(format!("expected `{c}`, found {}", self.peek().describe()))
        }
    }

    fn expect_word(&mut self, w: &str) -> R<()> {
        if *self.peek() == Tok::Word(w.into()) {
            self.next();
            Ok(())
        } else {
            self.err(format!("expected `{w}`, found {}", self.peek().describe()))
        }
    }

    /// A bare word or quoted string.
    fn name(&mut self, what: &str) -> R<String> {
        match self.peek().clone() {
            Tok::Word(w) | Tok::Str(w) => {
                self.next();
                Ok(w)
            }
            t => self.err(format!("expected {what}, found {}", t.describe())),
        }
    }

    fn value_name(&mut self) -> R<String> {
        match self.peek().clone() {
            Tok::Value(v) => {
                self.next();
                Ok(v)
            }
            t => self.err(format!(
                "expected a value (`%name`), found {}",
                t.describe()
            )),
        }
    }

    fn opt_str(&mut self) -> Option<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Some(s)
            }
            _ => None,
        }
    }

    fn int(&mut self) -> R<i64> {
        match self.peek().clone() {
            Tok::Num(n) => match n.parse() {
                Ok(v) => {
                    self.next();
                    Ok(v)
                }
                Err(_) => self.err(format!("`{n}` is not a 64-bit integer")),
            },
            t => self.err(format!("expected an integer, found {}", t.describe())),
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    /// `(opset STRING = INT | meta STRING = STRING)* graph EOF`
    pub(super) fn model(&mut self) -> R<Model> {
        let mut m = Model::default();
        loop {
            let line = self.line();
            let dup = |what: String| {
                Err(IrError::Parse {
                    line,
                    msg: format!("{what} given twice"),
                })
            };
            match self.peek().clone() {
                Tok::Word(w) if w == "opset" => {
                    self.next();
                    let d = self.string("an opset domain")?;
                    self.expect('=')?;
                    let v = self.int()?;
                    if m.opsets.insert(d.clone(), v).is_some() {
                        return dup(format!("opset {d:?}"));
                    }
                }
                Tok::Word(w) if w == "meta" => {
                    self.next();
                    let k = self.string("a metadata key")?;
                    self.expect('=')?;
                    let v = self.string("a metadata value")?;
                    if m.metadata.insert(k.clone(), v).is_some() {
                        return dup(format!("metadata {k:?}"));
                    }
                }
                _ => break,
            }
        }
        m.graph = self.graph()?;
        if *self.peek() != Tok::Eof {
            return self.err(format!(
                "expected end of input, found {}",
                self.peek().describe()
            ));
        }
        Ok(m)
    }

    fn string(&mut self, what: &str) -> R<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            t => self.err(format!(
                "expected {what} (a quoted string), found {}",
                t.describe()
            )),
        }
    }

    /// `graph NAME ( params ) -> ( outputs ) { stmts }`
    pub(super) fn graph(&mut self) -> R<Graph> {
        self.enter()?;
        self.expect_word("graph")?;
        let mut g = Graph::new(&self.name("a graph name")?);
        let mut scope: HashMap<String, OutletId> = HashMap::new();
        self.expect('(')?;
        if !self.eat(')') {
            loop {
                let line = self.line();
                let name = self.value_name()?;
                let label = self.opt_str();
                self.expect(':')?;
                let ty = self.value_type()?;
                let o = g.add_input(&name, ty);
                if let Some(l) = label {
                    g.node_mut(o.node).name = l;
                }
                define(&mut scope, &name, o, line)?;
                if self.eat(')') {
                    break;
                }
                self.expect(',')?;
            }
        }
        if *self.peek() != Tok::Arrow {
            return self.err(format!("expected `->`, found {}", self.peek().describe()));
        }
        self.next();
        self.expect('(')?;
        let mut outputs = Vec::new();
        if !self.eat(')') {
            loop {
                outputs.push((self.value_name()?, self.line()));
                if self.eat(')') {
                    break;
                }
                self.expect(',')?;
            }
        }
        self.expect('{')?;
        while !self.eat('}') {
            self.stmt(&mut g, &mut scope)?;
        }
        for (name, line) in outputs {
            g.outputs.push(lookup(&scope, &name, line)?);
        }
        self.depth -= 1;
        Ok(g)
    }

    /// `lhs = input ...`, `lhs = const ...` or `lhs = [domain::]Op ...`.
    fn stmt(&mut self, g: &mut Graph, scope: &mut HashMap<String, OutletId>) -> R<()> {
        let line = self.line();
        let mut names = Vec::new();
        if self.eat('(') {
            self.expect(')')?;
        } else {
            loop {
                names.push(self.value_name()?);
                if !self.eat(',') {
                    break;
                }
            }
        }
        self.expect('=')?;
        let word = self.peek().clone();
        let leaf = |p: &Parser, names: &[String]| -> R<String> {
            match names {
                [one] => Ok(one.clone()),
                _ => p.err("`input` and `const` define exactly one value"),
            }
        };
        match word {
            Tok::Word(w) if w == "input" => {
                self.next();
                let name = leaf(self, &names)?;
                let label = self.opt_str();
                self.expect(':')?;
                let ty = self.value_type()?;
                let o = g.add_input(&name, ty);
                g.inputs.pop();
                if let Some(l) = label {
                    g.node_mut(o.node).name = l;
                }
                define(scope, &name, o, line)
            }
            Tok::Word(w) if w == "const" => {
                self.next();
                let name = leaf(self, &names)?;
                let label = self.opt_str();
                let t = self.tensor()?;
                let o = g.add_const(&name, t);
                if self.eat(':') {
                    g.node_mut(o.node).outputs[0].ty = self.value_type()?;
                }
                if let Some(l) = label {
                    g.node_mut(o.node).name = l;
                }
                define(scope, &name, o, line)
            }
            _ => {
                let mut op = self.name("an op name")?;
                let mut domain = String::new();
                if *self.peek() == Tok::ColonColon {
                    self.next();
                    domain = op;
                    op = self.name("an op name")?;
                }
                let label = self.opt_str().unwrap_or_default();
                let mut attrs = Attrs::default();
                if self.eat('[') {
                    loop {
                        let k = self.name("an attribute name")?;
                        self.expect('=')?;
                        let v = self.attr()?;
                        if attrs.0.insert(k.clone(), v).is_some() {
                            return self.err(format!("attribute `{k}` given twice"));
                        }
                        if self.eat(']') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                self.expect('(')?;
                let mut inputs = Vec::new();
                if !self.eat(')') {
                    loop {
                        if self.eat('_') {
                            inputs.push(None);
                        } else {
                            let l = self.line();
                            let v = self.value_name()?;
                            inputs.push(Some(lookup(scope, &v, l)?));
                        }
                        if self.eat(')') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                let mut tys = Vec::new();
                if self.eat(':') {
                    loop {
                        tys.push(self.value_type()?);
                        if !self.eat(',') {
                            break;
                        }
                    }
                }
                if tys.len() != names.len() {
                    let msg = format!("{} outputs but {} output types", names.len(), tys.len());
                    return Err(IrError::Parse { line, msg });
                }
                let outputs: Vec<ValueInfo> = names
                    .iter()
                    .zip(tys)
                    .map(|(n, ty)| ValueInfo {
                        name: n.clone(),
                        ty,
                    })
                    .collect();
                let call = OpCall {
                    domain,
                    op_type: op,
                    attrs,
                };
                let id = g.add_node(&label, Op::Call(call), inputs, outputs)?;
                for (slot, n) in names.iter().enumerate() {
                    define(scope, n, OutletId::new(id, slot), line)?;
                }
                Ok(())
            }
        }
    }

    fn dtype(&mut self) -> R<DType> {
        match self.peek().clone() {
            Tok::Word(w) => match w.parse() {
                Ok(d) => {
                    self.next();
                    Ok(d)
                }
                Err(e) => self.err(e),
            },
            t => self.err(format!("expected a dtype, found {}", t.describe())),
        }
    }

    /// `dtype[dims]` or `dtype[?]`.
    fn tensor_type(&mut self) -> R<TensorType> {
        let dtype = self.dtype()?;
        self.expect('[')?;
        if self.eat('?') {
            self.expect(']')?;
            return Ok(TensorType { dtype, shape: None });
        }
        let mut dims = Vec::new();
        if !self.eat(']') {
            loop {
                dims.push(match self.peek().clone() {
                    Tok::Num(n) => match n.parse() {
                        Ok(v) => Dim::Known(v),
                        Err(_) => return self.err(format!("bad dimension `{n}`")),
                    },
                    Tok::Word(w) | Tok::Str(w) => Dim::Sym(w),
                    t => return self.err(format!("expected a dimension, found {}", t.describe())),
                });
                self.next();
                if self.eat(']') {
                    break;
                }
                self.expect(',')?;
            }
        }
        Ok(TensorType {
            dtype,
            shape: Some(Shape(dims)),
        })
    }

    /// A tensor type, `seq<tensor type>` or `opt<type>`.
    fn value_type(&mut self) -> R<ValueType> {
        match self.peek().clone() {
            Tok::Word(w) if w == "seq" => {
                self.next();
                self.expect('<')?;
                let t = self.tensor_type()?;
                self.expect('>')?;
                Ok(ValueType::Sequence(t))
            }
            Tok::Word(w) if w == "opt" => {
                self.next();
                self.enter()?;
                self.expect('<')?;
                let t = self.value_type()?;
                self.expect('>')?;
                self.depth -= 1;
                Ok(ValueType::Optional(Box::new(t)))
            }
            _ => Ok(ValueType::Tensor(self.tensor_type()?)),
        }
    }

    /// `dtype[dims] {elems}` or `dtype[dims] @weight`.
    fn tensor(&mut self) -> R<Tensor> {
        let line = self.line();
        let ty = self.tensor_type()?;
        let dims = match ty.shape.as_ref().and_then(Shape::as_known) {
            Some(d) => d,
            None => {
                return Err(IrError::Parse {
                    line,
                    msg: "a tensor's shape must be fully known".into(),
                })
            }
        };
        match self.peek().clone() {
            Tok::Weight(w) => {
                self.next();
                let t = (self.weights)(&w).ok_or_else(|| IrError::Parse {
                    line,
                    msg: format!("weight `@{w}` not found"),
                })?;
                if t.dtype() != ty.dtype || t.shape() != dims.as_slice() {
                    return Err(IrError::Parse {
                        line,
                        msg: format!(
                            "weight `@{w}` is {}{:?}, the text says {}",
                            t.dtype(),
                            t.shape(),
                            super::print::tensor_type(&ty)
                        ),
                    });
                }
                Ok(t)
            }
            Tok::Punct('{') => {
                if let DType::Block(_) = ty.dtype {
                    return self.err(format!("{} tensors cannot be written inline", ty.dtype));
                }
                self.next();
                let mut elems: Vec<String> = Vec::new();
                if !self.eat('}') {
                    loop {
                        elems.push(match self.peek().clone() {
                            Tok::Num(n) | Tok::Word(n) | Tok::Str(n) => n,
                            t => {
                                return self.err(format!(
                                    "expected a tensor element, found {}",
                                    t.describe()
                                ))
                            }
                        });
                        self.next();
                        if self.eat('}') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                let n = checked_numel(&dims).map_err(|e| IrError::Parse {
                    line,
                    msg: e.to_string(),
                })?;
                if n != elems.len() {
                    return Err(IrError::Parse {
                        line,
                        msg: format!("{} elements for shape {dims:?} ({n} expected)", elems.len()),
                    });
                }
                let perr = |msg: String| IrError::Parse { line, msg };
                if ty.dtype == DType::String {
                    return Tensor::from_strings(dims, elems).map_err(|e| perr(e.to_string()));
                }
                let bytes = parse_elems(ty.dtype, &elems).map_err(|i| {
                    let bad = i.and_then(|i| elems.get(i)).map_or("?", |e| e.as_str());
                    perr(format!("`{bad}` is not a valid {} element", ty.dtype))
                })?;
                Tensor::from_bytes(ty.dtype, dims, &bytes).map_err(|e| perr(e.to_string()))
            }
            t => self.err(format!(
                "expected `{{` or a weight `@name`, found {}",
                t.describe()
            )),
        }
    }

    /// True if a tensor (not just a type) starts here: `dtype[..] {` or `dtype[..] @`.
    fn tensor_ahead(&self) -> bool {
        let mut i = self.pos + 1;
        if self.toks.get(i).map(|t| &t.0) != Some(&Tok::Punct('[')) {
            return false;
        }
        while let Some((t, _)) = self.toks.get(i) {
            i += 1;
            if *t == Tok::Punct(']') {
                break;
            }
        }
        matches!(
            self.toks.get(i).map(|t| &t.0),
            Some(Tok::Punct('{')) | Some(Tok::Weight(_))
        )
    }

    fn attr(&mut self) -> R<Attr> {
        match self.peek().clone() {
            Tok::Num(n) => {
                let digits = n.strip_prefix('-').unwrap_or(&n);
                let is_int = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                let a = match (is_int, n.parse::<i64>(), float(&n)) {
                    (true, Ok(v), _) => Attr::Int(v),
                    (false, _, Some(f)) => Attr::Float(f),
                    _ => return self.err(format!("bad number `{n}`")),
                };
                self.next();
                Ok(a)
            }
            Tok::Str(s) => {
                self.next();
                Ok(Attr::String(s))
            }
            Tok::Word(w) if w == "graph" => Ok(Attr::Graph(Arc::new(self.graph()?))),
            Tok::Word(w)
                if *self.peek2() == Tok::Punct('[') && LIST_KINDS.contains(&w.as_str()) =>
            {
                self.next();
                self.expect('[')?;
                self.expect(']')?;
                Ok(match w.as_str() {
                    "ints" => Attr::Ints(vec![]),
                    "floats" => Attr::Floats(vec![]),
                    "strings" => Attr::Strings(vec![]),
                    "tensors" => Attr::Tensors(vec![]),
                    _ => Attr::Graphs(vec![]),
                })
            }
            Tok::Word(w) if w == "seq" || w == "opt" => Ok(Attr::Type(self.value_type()?)),
            Tok::Word(w) => {
                if let Some(f) = float(&w) {
                    self.next();
                    Ok(Attr::Float(f))
                } else if self.tensor_ahead() {
                    Ok(Attr::Tensor(self.tensor()?))
                } else {
                    Ok(Attr::Type(self.value_type()?))
                }
            }
            Tok::Punct('[') => self.attr_list(),
            t => self.err(format!(
                "expected an attribute value, found {}",
                t.describe()
            )),
        }
    }

    /// A non-empty `[ ... ]` list; the first item decides the kind.
    fn attr_list(&mut self) -> R<Attr> {
        self.expect('[')?;
        let line = self.line();
        let mut items = Vec::new();
        loop {
            items.push(self.attr()?);
            if self.eat(']') {
                break;
            }
            self.expect(',')?;
        }
        let kind_err = |what: &str| IrError::Parse {
            line,
            msg: format!("a list mixes {what} with other kinds"),
        };
        let any_float = items.iter().any(|a| matches!(a, Attr::Float(_)));
        Ok(match &items[0] {
            Attr::Int(_) | Attr::Float(_) if any_float => Attr::Floats(
                items
                    .into_iter()
                    .map(|a| match a {
                        Attr::Float(f) => Ok(f),
                        Attr::Int(i) => Ok(i as f32),
                        _ => Err(kind_err("numbers")),
                    })
                    .collect::<R<_>>()?,
            ),
            Attr::Int(_) => Attr::Ints(
                collect(items, |a| if let Attr::Int(v) = a { Some(v) } else { None })
                    .ok_or_else(|| kind_err("ints"))?,
            ),
            Attr::String(_) => Attr::Strings(
                collect(items, |a| {
                    if let Attr::String(v) = a {
                        Some(v)
                    } else {
                        None
                    }
                })
                .ok_or_else(|| kind_err("strings"))?,
            ),
            Attr::Tensor(_) => Attr::Tensors(
                collect(items, |a| {
                    if let Attr::Tensor(v) = a {
                        Some(v)
                    } else {
                        None
                    }
                })
                .ok_or_else(|| kind_err("tensors"))?,
            ),
            Attr::Graph(_) => Attr::Graphs(
                collect(items, |a| {
                    if let Attr::Graph(v) = a {
                        Some(v)
                    } else {
                        None
                    }
                })
                .ok_or_else(|| kind_err("graphs"))?,
            ),
            other => {
                return Err(IrError::Parse {
                    line,
                    msg: format!("lists of {} are not supported", other.kind()),
                })
            }
        })
    }
}

const LIST_KINDS: [&str; 5] = ["ints", "floats", "strings", "tensors", "graphs"];

fn float(tok: &str) -> Option<f32> {
    <f32 as super::lit::Lit>::parse(tok)
}

fn collect<T>(items: Vec<Attr>, f: impl Fn(Attr) -> Option<T>) -> Option<Vec<T>> {
    items.into_iter().map(f).collect()
}

fn define(scope: &mut HashMap<String, OutletId>, name: &str, o: OutletId, line: usize) -> R<()> {
    if name.is_empty() {
        return Ok(());
    }
    if scope.insert(name.to_string(), o).is_some() {
        return Err(IrError::Parse {
            line,
            msg: format!("value `%{name}` defined twice"),
        });
    }
    Ok(())
}

fn lookup(scope: &HashMap<String, OutletId>, name: &str, line: usize) -> R<OutletId> {
    if name.is_empty() {
        return Err(IrError::Parse {
            line,
            msg: "the empty value name `%\"\"` cannot be referenced".into(),
        });
    }
    scope.get(name).copied().ok_or_else(|| IrError::Parse {
        line,
        msg: format!("value `%{name}` is not defined (before this line)"),
    })
}
