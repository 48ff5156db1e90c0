//! The deterministic text form of a model: printing and parsing.
//!
//! ```text
//! opset "" = 17
//! meta "producer" = "pytorch"
//!
//! graph main(%x: f32[batch,3,224,224]) -> (%y) {
//!   %w = const f32[64,3,7,7] @w
//!   %b = const f32[2] {0.5, -1.0}
//!   %y = Conv "conv1" [dilations=[1,1], group=1](%x, %w, _) : f32[batch,64,112,112]
//!   %v, %i = com.microsoft::TopK2[k=3](%y) : f32[?], i64[?]
//! }
//! ```
//!
//! Grammar (`#` starts a comment to the end of the line):
//!
//! ```text
//! model  := ('opset' STR '=' INT | 'meta' STR '=' STR)* graph
//! graph  := 'graph' NAME '(' [param {',' param}] ')' '->' '(' [VAL {',' VAL}] ')' '{' stmt* '}'
//! param  := VAL [STR] ':' type                       # STR: node name when it differs
//! stmt   := lhs '=' 'input' [STR] ':' type           # an Input node not in the header
//!         | lhs '=' 'const' [STR] tensor [':' type]  # type only when it differs from the tensor's
//!         | lhs '=' [DOMAIN '::'] NAME [STR] ['[' attr {',' attr} ']'] '(' [arg {',' arg}] ')' [':' type {',' type}]
//! lhs    := VAL {',' VAL} | '(' ')'
//! arg    := VAL | '_'                                # `_` is an absent optional input
//! attr   := NAME '=' (INT | FLOAT | STR | tensor | type | graph | '[' item {',' item} ']'
//!                     | ('ints'|'floats'|'strings'|'tensors'|'graphs') '[' ']')
//! tensor := DTYPE '[' dims ']' ('{' elem {',' elem} '}' | '@' NAME)
//! type   := DTYPE '[' (dims | '?') ']' | 'seq' '<' type '>' | 'opt' '<' type '>'
//! ```
//!
//! `VAL` is `%name` and a weight is `@name`, bare when the name uses only
//! `[A-Za-z0-9_./-]`, else quoted (`%"onnx::Conv_12"`). `NAME`s and symbolic
//! dims are identifiers or quoted strings. Strings use `\\ \" \n \r \t \0 \u{..}`.
//! Ints are plain decimals; floats always carry `.`, an exponent, `inf` or `nan`,
//! in their shortest exact form (NaNs other than the canonical one spell their
//! bits, `nan_0x7fc00001`). Attributes print sorted by name; the
//! node order is [`Graph::topo_order`], so printing is deterministic and
//! print → parse → print is the identity.
//!
//! Tensors with at most [`INLINE_MAX_ELEMS`] elements, and all string tensors,
//! are written inline; larger ones (and block-quantized ones) are references into
//! a weights table keyed by the const's value name (made unique; tensor
//! attributes use `<node>.<attr>`). Tensors sharing one buffer share one entry.

mod lex;
mod lit;
mod parse;
mod print;

pub use print::INLINE_MAX_ELEMS;

use crate::error::IrError;
use crate::graph::{Graph, Model};
use crate::tensor::Tensor;

/// Print a model. Large tensors appear as `@name` references whose data is not
/// returned; use [`print_model_with_weights`] to keep them.
pub fn print_model(m: &Model) -> String {
    print_model_with_weights(m).0
}

/// Print a model, returning the text and the weights table its `@name`
/// references point into, in order of first reference.
pub fn print_model_with_weights(m: &Model) -> (String, Vec<(String, Tensor)>) {
    let mut p = print::Printer::new();
    p.model(m);
    p.finish()
}

/// Print one graph (no opsets or metadata), for debugging and error messages.
pub fn print_graph(g: &Graph) -> String {
    let mut p = print::Printer::new();
    p.graph(g, 0);
    let (mut s, _) = p.finish();
    s.push('\n');
    s
}

/// Parse a model printed by [`print_model_with_weights`]; `weights` resolves each
/// `@name` reference. Errors are [`IrError::Parse`] with a 1-based line number.
pub fn parse_model(text: &str, weights: &dyn Fn(&str) -> Option<Tensor>) -> Result<Model, IrError> {
    parse::Parser::new(text, weights)?.model()
}

#[cfg(test)]
mod tests;
