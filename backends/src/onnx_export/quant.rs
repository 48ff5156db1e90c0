//! Lowering egret's quantized ops to ops onnxruntime runs.
//!
//! The weight of each op must be a constant; it is written in the lowered form
//! (not as a block-quantized initializer, which ONNX cannot hold). A weight
//! constant read only by these ops is not written as such (see
//! [`lowered_weights`]).
//!
//! * `egret::MatMulBlocks(x, w, bias?)`:
//!   - 4-bit group formats (Q4_0, `i4s_g64/128`: `d·(q − 8)`; Q4_1,
//!     `i4a_g64/128`: `d·q + m`) → `com.microsoft::MatMulNBits` (bits 4,
//!     `block_size` = the group). The nibbles are repacked from GGML's order
//!     (byte `j` = elements `j`, `j + g/2`) to ONNX's (byte `i` = elements `2i`,
//!     `2i + 1`, low nibble first). Symmetric groups use the default zero point 8,
//!     so the weights are exact; asymmetric ones get float zero points
//!     `zp = −m/d` (onnxruntime 1.32 accepts float zero points for 4 bits), so
//!     `d·(q − zp)` equals `d·q + m` up to f32 rounding. A group with `d = 0`
//!     (all values `m`) is written as `q = 0`, scale `m`, `zp = −1`: exact.
//!   - Q8_0 → `MatMulNBits` bits 8 (`q + 128` as uint8, default zero point 128;
//!     onnxruntime 1.32 refuses float zero points for 8 bits, none are needed):
//!     exact weights.
//!   - Every other weight type (Q5_0/Q5_1, the K-quants, f16, bf16, f32) has no
//!     lossless ONNX form onnxruntime runs: it is **dequantized to an f32
//!     constant** `[K, N]` (bit-exact with egret's dequantizers, 4–8× larger
//!     than the blocks) and multiplied by a plain `MatMul`.
//!   - `bias` → `Add`.
//! * `egret::MatMulInt8(x, w, scale, bias?)`:
//!   - `act_quant = 0`: standard QDQ, `MatMul(x, DequantizeLinear(wᵀ, scale,
//!     axis = 1))` (the int8 weight is stored transposed, `[K, N]`).
//!   - `act_quant = 1`: the exact per-token decomposition: `sx = ReduceMax(|x|)
//!     / 127` per row, `qx = round_half_away(x / sx)` clipped to ±127 as int8
//!     (`Round` rounds half to even, so half-away is built from `Abs`, `Floor`,
//!     a `≥ 0.5` test and `Sign`, all exact), `MatMulInteger(qx, wᵀ)`, then
//!     `Cast · sx · scale`. A zero row divides by 1 instead of 0 (its `qx`, and so
//!     its output, is 0).
//! * `egret::GatherBlocks(table, ids)` and `egret::DequantizeBlocks(table)`:
//!   Q8_0 → blocked `DequantizeLinear` (int8 `[rows, width]`, scales
//!   `[rows, width/32]`, `axis = 1`, `block_size = 32`, exact); every other type
//!   → the f32 table as a constant (as above). Then `Gather(axis = 0)`.
//!   A tied weight read by both a gather and a matmul is written in both forms.
//! * `egret::MatMulSparse(x, mask, values, row_ptr, scale?)` (constant sparse
//!   arrays, `K` known from `x`'s type) → the densified weight as an f32
//!   `[K, N]` constant and a plain `MatMul`: **the sparsity is not kept in
//!   ONNX** (the file holds the dense matrix, dropped entries 0; int8 values
//!   are dequantized with their row scales).
//! * `egret::MatMulActSparse(x, w, threshold)` → `Where(Greater(Abs(x), t), x,
//!   0)` then `MatMul` with `w` (any value, not only a constant): the same
//!   products, computed densely.

use super::{ExportError, Exporter};
use egret_frontends::onnx::proto::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto,
};
use egret_frontends::onnx::tensor_to_proto;
use egret_ir::blocks::{dequantize_into, f16_to_f32};
use egret_ir::sparse::SparseMatrix;
use egret_ir::{Attr, BlockFormat, DType, Graph, NodeId, Op, OpCall, OutletId, Tensor};
use std::collections::{HashMap, HashSet};

/// The domain of egret's own ops.
const EGRET: &str = "egret";
/// onnxruntime's contrib-op domain (`MatMulNBits`).
const MS: &str = "com.microsoft";
/// ONNX `TensorProto.DataType` ids used in `Cast`.
const FLOAT: i64 = 1;
const INT8: i64 = 3;

/// Which input of a quantized op is its (constant) weight, or `None` for any
/// other op.
pub(super) fn weight_slot(call: &OpCall) -> Option<usize> {
    if call.domain != EGRET {
        return None;
    }
    match call.op_type.as_str() {
        "MatMulBlocks" | "MatMulInt8" | "MatMulSparse" | "MatMulActSparse" => Some(1),
        "GatherBlocks" | "DequantizeBlocks" => Some(0),
        _ => None,
    }
}

/// True when input `slot` of `call` is a constant [`lower`] writes in its
/// lowered form (the weight of a quantized op; every sparse array of
/// `MatMulSparse`; nothing of `MatMulActSparse`, whose `w` is written as is).
fn lowers_input(call: &OpCall, slot: usize) -> bool {
    match call.op_type.as_str() {
        "MatMulSparse" => call.domain == EGRET && (1..=4).contains(&slot),
        "MatMulActSparse" => false,
        _ => weight_slot(call) == Some(slot),
    }
}

/// Constants of `g` read only as the weight of quantized ops (and not graph
/// outputs): [`lower`] writes them, the generic code skips them.
pub(super) fn lowered_weights(g: &Graph) -> HashSet<NodeId> {
    g.node_ids()
        .filter(|&id| matches!(g.node(id).op, Op::Const(_)))
        .filter(|&id| {
            let o = OutletId::new(id, 0);
            let uses = g.consumers(o);
            !uses.is_empty()
                && !g.outputs.contains(&o)
                && uses.iter().all(|&(n, slot)| {
                    g.node(n)
                        .op
                        .as_call()
                        .is_some_and(|c| lowers_input(c, slot))
                })
        })
        .collect()
}

/// Emits nodes and initializers into one ONNX graph for one egret node.
struct Emit<'a> {
    cx: &'a mut Exporter,
    gp: &'a mut GraphProto,
    /// The egret node's name, prefixing every name made here.
    base: String,
}

impl Emit<'_> {
    fn init(&mut self, what: &str, t: &Tensor) -> Result<String, ExportError> {
        let name = self.cx.fresh(&format!("{}.{what}", self.base));
        self.gp.initializer.push(tensor_to_proto(&name, t)?);
        Ok(name)
    }

    /// A scalar f32 constant.
    fn scalar(&mut self, what: &str, v: f32) -> Result<String, ExportError> {
        self.init(what, &Tensor::scalar(v))
    }

    /// Add node `op` writing `out` (a fresh name when `None`); the output name.
    fn node(
        &mut self,
        (domain, op): (&str, &str),
        input: Vec<String>,
        attribute: Vec<AttributeProto>,
        out: Option<&str>,
    ) -> String {
        let out = match out {
            Some(o) => o.to_string(),
            None => self
                .cx
                .fresh(&format!("{}.{}", self.base, op.to_lowercase())),
        };
        self.cx.ops.insert((domain.to_string(), op.to_string()));
        self.gp.node.push(NodeProto {
            input,
            output: vec![out.clone()],
            // Unique, like every value name.
            name: out.clone(),
            op_type: op.to_string(),
            domain: domain.to_string(),
            attribute,
            ..Default::default()
        });
        out
    }

    /// A standard-domain node with a fresh output.
    fn op(&mut self, op: &str, input: &[&str], attribute: Vec<AttributeProto>) -> String {
        self.node(
            ("", op),
            input.iter().map(|s| s.to_string()).collect(),
            attribute,
            None,
        )
    }

    /// The final node: `op` then, with a bias, `Add`, writing `out`.
    fn with_bias(
        &mut self,
        op: (&str, &str),
        input: Vec<String>,
        attribute: Vec<AttributeProto>,
        bias: Option<&str>,
        out: &str,
    ) {
        match bias {
            None => {
                self.node(op, input, attribute, Some(out));
            }
            Some(b) => {
                let y = self.node(op, input, attribute, None);
                self.node(("", "Add"), vec![y, b.to_string()], vec![], Some(out));
            }
        }
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// Write node `id` (a call for which [`weight_slot`] is `Some`) into `gp`: its
/// weight from the constant it reads, its other inputs by their names.
pub(super) fn lower(
    cx: &mut Exporter,
    gp: &mut GraphProto,
    g: &Graph,
    id: NodeId,
    names: &mut HashMap<OutletId, String>,
) -> Result<(), ExportError> {
    let node = g.node(id);
    let Some((call, slot)) = node.op.as_call().and_then(|c| Some((c, weight_slot(c)?))) else {
        return Ok(());
    };
    let what = format!(
        "node `{}` ({}::{})",
        node.label(),
        call.domain,
        call.op_type
    );
    let err = |m: &str| ExportError::Unsupported(format!("{what}: {m}"));
    let ins = node.inputs();
    let const_at = |k: usize| ins.get(k).copied().flatten().and_then(|o| g.const_value(o));
    let w = match call.op_type.as_str() {
        "MatMulActSparse" => None,
        _ => Some(const_at(slot).ok_or_else(|| err("the weight must be a constant"))?),
    };
    let mut input = |k: usize| -> Result<Option<String>, ExportError> {
        match ins.get(k).copied().flatten() {
            None => Ok(None),
            Some(o) => names
                .get(&o)
                .cloned()
                .map(Some)
                .ok_or_else(|| err("reads a value defined after it")),
        }
    };
    let x = input(if slot == 0 { 1 } else { 0 })?;
    let extra: Vec<Option<String>> = match call.op_type.as_str() {
        // Read as constants below.
        "MatMulSparse" => vec![None, None],
        "MatMulActSparse" => vec![input(1)?, input(2)?],
        _ => (2..4).map(&mut input).collect::<Result<_, _>>()?,
    };
    let out = cx.fresh(g.value_name(OutletId::new(id, 0)));
    names.insert(OutletId::new(id, 0), out.clone());
    let mut e = Emit {
        cx,
        gp,
        base: node.label().to_string(),
    };
    let need = |v: Option<String>, m: &str| v.ok_or_else(|| err(m));
    let Some(w) = w else {
        // MatMulActSparse: w and threshold by name.
        let (x, w) = (
            need(x, "x is missing")?,
            need(extra[0].clone(), "w is missing")?,
        );
        let t = need(extra[1].clone(), "threshold is missing")?;
        act_sparse(&mut e, &x, &w, &t, &out).map_err(|m| err(&m))?;
        return Ok(());
    };
    match call.op_type.as_str() {
        "MatMulSparse" => {
            let k = ins
                .first()
                .copied()
                .flatten()
                .and_then(|o| match g.value_type(o) {
                    egret_ir::ValueType::Tensor(t) => t.shape.as_ref()?.dims().last()?.known(),
                    _ => None,
                })
                .ok_or_else(|| err("x must have a known last dimension K"))?;
            let arrays = [2, 3].map(const_at);
            let [Some(values), Some(row_ptr)] = arrays else {
                return Err(err("the sparse arrays must be constants"));
            };
            let scale = match ins.get(4).copied().flatten() {
                None => None,
                Some(o) => Some(
                    g.const_value(o)
                        .ok_or_else(|| err("scale must be a constant"))?,
                ),
            };
            let sm = SparseMatrix::from_tensors(w, values, row_ptr, scale, k)
                .map_err(|e| err(&e.to_string()))?;
            let t =
                tensor(vec![k, sm.n], transposed(&sm.densify(), sm.n, k)).map_err(|m| err(&m))?;
            let wt = e.init("weight_t", &t)?;
            e.node(
                ("", "MatMul"),
                vec![need(x, "x is missing")?, wt],
                vec![],
                Some(&out),
            );
        }
        "MatMulBlocks" => matmul_blocks(
            &mut e,
            need(x, "x is missing")?,
            w,
            extra[0].as_deref(),
            &out,
        )
        .map_err(|m| err(&m))?,
        "MatMulInt8" => {
            let act = match call.attrs.0.get("act_quant") {
                None => 0,
                Some(Attr::Int(a)) => *a,
                Some(_) => return Err(err("act_quant must be an int")),
            };
            let scale = need(extra[0].clone(), "scale is missing")?;
            let x = need(x, "x is missing")?;
            matmul_int8(&mut e, &x, w, &scale, extra[1].as_deref(), act, &out)
                .map_err(|m| err(&m))?
        }
        "GatherBlocks" => {
            let table = table(&mut e, w).map_err(|m| err(&m))?;
            let ids = need(x, "ids are missing")?;
            e.node(
                ("", "Gather"),
                vec![table, ids],
                vec![int("axis", 0)],
                Some(&out),
            );
        }
        _ => {
            let table = table(&mut e, w).map_err(|m| err(&m))?;
            e.node(("", "Identity"), vec![table], vec![], Some(&out));
        }
    }
    Ok(())
}

/// `MatMul(Where(Greater(Abs(x), t), x, 0), w)` writing `out`.
fn act_sparse(e: &mut Emit<'_>, x: &str, w: &str, t: &str, out: &str) -> Step<()> {
    let a = e.op("Abs", &[x], vec![]);
    let keep = e.op("Greater", &[&a, t], vec![]);
    let zero = e.scalar("zero", 0.0).map_err(|x| x.to_string())?;
    let xs = e.op("Where", &[&keep, x, &zero], vec![]);
    e.node(("", "MatMul"), vec![xs, w.to_string()], vec![], Some(out));
    Ok(())
}

/// A lowering step's error, without the node (added by [`lower`]).
type Step<T> = Result<T, String>;

/// `[N, K]` of a 2-D weight.
fn dims(w: &Tensor) -> Step<(usize, usize)> {
    match w.shape() {
        [n, k] => Ok((*n, *k)),
        s => Err(format!("the weight must be [N, K], got {s:?}")),
    }
}

/// `w` (any type the dequantizers read) as f32, row-major.
fn dequantized(w: &Tensor) -> Step<Vec<f32>> {
    let mut f = vec![0f32; w.numel()];
    dequantize_into(w.dtype(), w.bytes(), &mut f).map_err(|e| e.to_string())?;
    Ok(f)
}

/// `[N, K]` row-major values transposed to `[K, N]`.
fn transposed<T: Copy + Default>(v: &[T], n: usize, k: usize) -> Vec<T> {
    let mut t = vec![T::default(); v.len()];
    for (r, row) in v.chunks_exact(k.max(1)).enumerate().take(n) {
        for (c, &x) in row.iter().enumerate() {
            t[c * n + r] = x;
        }
    }
    t
}

fn tensor<T: egret_ir::Element + bytemuck::Pod>(shape: Vec<usize>, v: Vec<T>) -> Step<Tensor> {
    Tensor::from_vec(shape, v).map_err(|e| e.to_string())
}

/// `w [N, K]` dequantized to an f32 `[K, N]` initializer (the lossless fallback).
fn f32_transposed(e: &mut Emit<'_>, w: &Tensor) -> Step<String> {
    let (n, k) = dims(w)?;
    let t = tensor(vec![k, n], transposed(&dequantized(w)?, n, k))?;
    e.init("weight_t", &t).map_err(|x| x.to_string())
}

/// A block format `MatMulNBits` holds exactly or nearly: bits, group, whether
/// it has a min (`d·q + m`), and where the quants start in a block.
#[derive(Clone, Copy)]
struct NBits {
    bits: usize,
    group: usize,
    asym: bool,
    quants_at: usize,
}

fn nbits(f: BlockFormat) -> Option<NBits> {
    use BlockFormat::*;
    let (bits, asym) = match f {
        Q8_0 => (8, false),
        Q4_0 | I4S64 | I4S128 => (4, false),
        Q4_1 | I4A64 | I4A128 => (4, true),
        _ => return None,
    };
    Some(NBits {
        bits,
        group: f.block_elems(),
        asym,
        quants_at: if asym { 4 } else { 2 },
    })
}

/// The f16 at `b[i..i + 2]` as f32 (`b` is a whole block).
fn f16(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// One block in `MatMulNBits` form: its packed quants (appended to `out`),
/// scale and zero point (`None`: the default `2^(bits−1)`).
fn repack(nb: NBits, block: &[u8], out: &mut Vec<u8>) -> (f32, Option<f32>) {
    let d = f16(block, 0);
    let q = &block[nb.quants_at..];
    if nb.bits == 8 {
        out.extend(q.iter().map(|&b| b ^ 0x80)); // i8 q + 128 as u8
        return (d, None);
    }
    let half = nb.group / 2;
    let nib = |e: usize| {
        if e < half {
            q[e] & 0x0F
        } else {
            q[e - half] >> 4
        }
    };
    if nb.asym && d == 0.0 {
        // Every value is m: q = 0, scale m, zero point −1.
        out.extend(std::iter::repeat_n(0u8, half));
        return (f16(block, 2), Some(-1.0));
    }
    out.extend((0..half).map(|i| nib(2 * i) | (nib(2 * i + 1) << 4)));
    let zp = nb.asym.then(|| -f16(block, 2) / d);
    (d, zp)
}

/// `egret::MatMulBlocks`: `MatMulNBits` when the format allows, else an f32
/// `MatMul`.
fn matmul_blocks(
    e: &mut Emit<'_>,
    x: String,
    w: &Tensor,
    bias: Option<&str>,
    out: &str,
) -> Step<()> {
    let (n, k) = dims(w)?;
    let ex = |x: ExportError| x.to_string();
    let form = match w.dtype() {
        DType::Block(f) => nbits(f).map(|nb| (f, nb)),
        _ => None,
    };
    let Some((f, nb)) = form else {
        let wt = f32_transposed(e, w)?;
        e.with_bias(("", "MatMul"), vec![x, wt], vec![], bias, out);
        return Ok(());
    };
    let groups = k / nb.group;
    let blob = nb.group * nb.bits / 8;
    let mut packed = Vec::with_capacity(n * groups * blob);
    let mut scales = Vec::with_capacity(n * groups);
    let mut zps = Vec::with_capacity(if nb.asym { n * groups } else { 0 });
    for block in w.bytes().chunks_exact(f.block_bytes()) {
        let (s, z) = repack(nb, block, &mut packed);
        scales.push(s);
        zps.extend(z);
    }
    if scales.len() != n * groups {
        return Err(format!("{} blocks for [{n}, {k}]", scales.len()));
    }
    let b =
        Tensor::from_bytes(DType::U8, vec![n, groups, blob], &packed).map_err(|x| x.to_string())?;
    let mut input = vec![
        x,
        e.init("nbits_b", &b).map_err(ex)?,
        e.init("nbits_scales", &tensor(vec![n * groups], scales)?)
            .map_err(ex)?,
    ];
    if nb.asym {
        input.push(
            e.init("nbits_zero_points", &tensor(vec![n * groups], zps)?)
                .map_err(ex)?,
        );
    }
    let attrs = vec![
        int("K", k as i64),
        int("N", n as i64),
        int("bits", nb.bits as i64),
        int("block_size", nb.group as i64),
    ];
    e.with_bias((MS, "MatMulNBits"), input, attrs, bias, out);
    Ok(())
}

/// `egret::MatMulInt8`: QDQ (`act_quant = 0`) or the exact dynamic int8
/// decomposition (`act_quant = 1`).
fn matmul_int8(
    e: &mut Emit<'_>,
    x: &str,
    w: &Tensor,
    scale: &str,
    bias: Option<&str>,
    act_quant: i64,
    out: &str,
) -> Step<()> {
    let (n, k) = dims(w)?;
    let q = w.as_slice::<i8>().map_err(|x| x.to_string())?;
    let wt = tensor(vec![k, n], transposed(q, n, k))?;
    let ex = |x: ExportError| x.to_string();
    let wt = e.init("weight_t", &wt).map_err(ex)?;
    match act_quant {
        0 => {
            let deq = e.op("DequantizeLinear", &[&wt, scale], vec![int("axis", 1)]);
            e.with_bias(("", "MatMul"), vec![x.to_string(), deq], vec![], bias, out);
        }
        1 => {
            let axes = Tensor::from_vec(vec![1], vec![-1i64]).map_err(|x| x.to_string())?;
            let axes = e.init("axes", &axes).map_err(ex)?;
            let c127 = e.scalar("127", 127.0).map_err(ex)?;
            let cm127 = e.scalar("minus_127", -127.0).map_err(ex)?;
            let c0 = e.scalar("0", 0.0).map_err(ex)?;
            let c1 = e.scalar("1", 1.0).map_err(ex)?;
            let half = e.scalar("half", 0.5).map_err(ex)?;
            let ax = e.op("Abs", &[x], vec![]);
            let amax = e.op("ReduceMax", &[&ax, &axes], vec![int("keepdims", 1)]);
            let sx = e.op("Div", &[&amax, &c127], vec![]);
            let zero = e.op("Equal", &[&sx, &c0], vec![]);
            let den = e.op("Where", &[&zero, &c1, &sx], vec![]);
            let v = e.op("Div", &[x, &den], vec![]);
            // round half away from zero: sign(v) · (floor|v| + (frac ≥ 0.5)).
            let av = e.op("Abs", &[&v], vec![]);
            let fl = e.op("Floor", &[&av], vec![]);
            let frac = e.op("Sub", &[&av, &fl], vec![]);
            let up = e.op("GreaterOrEqual", &[&frac, &half], vec![]);
            let up = e.op("Cast", &[&up], vec![int("to", FLOAT)]);
            let r = e.op("Add", &[&fl, &up], vec![]);
            let sg = e.op("Sign", &[&v], vec![]);
            let qv = e.op("Mul", &[&sg, &r], vec![]);
            let qv = e.op("Clip", &[&qv, &cm127, &c127], vec![]);
            let qx = e.op("Cast", &[&qv], vec![int("to", INT8)]);
            let acc = e.op("MatMulInteger", &[&qx, &wt], vec![]);
            let acc = e.op("Cast", &[&acc], vec![int("to", FLOAT)]);
            let y = e.op("Mul", &[&acc, &sx], vec![]);
            e.with_bias(("", "Mul"), vec![y, scale.to_string()], vec![], bias, out);
        }
        a => return Err(format!("act_quant must be 0 or 1, not {a}")),
    }
    Ok(())
}

/// The f32 `[rows, width]` table of a gathered / dequantized weight: a blocked
/// `DequantizeLinear` for Q8_0, else an f32 constant.
fn table(e: &mut Emit<'_>, w: &Tensor) -> Step<String> {
    let ex = |x: ExportError| x.to_string();
    if w.dtype() != DType::Block(BlockFormat::Q8_0) {
        let t = tensor(w.shape().to_vec(), dequantized(w)?)?;
        return e.init("table", &t).map_err(ex);
    }
    let (rows, width) = dims(w)?;
    let f = BlockFormat::Q8_0;
    let mut q = Vec::with_capacity(rows * width);
    let mut s = Vec::with_capacity(rows * width / f.block_elems());
    for b in w.bytes().chunks_exact(f.block_bytes()) {
        s.push(f16(b, 0));
        q.extend_from_slice(&b[2..]);
    }
    let q = Tensor::from_bytes(DType::I8, vec![rows, width], &q).map_err(|x| x.to_string())?;
    let s = tensor(vec![rows, width / f.block_elems()], s)?;
    let q = e.init("table_q", &q).map_err(ex)?;
    let s = e.init("table_scales", &s).map_err(ex)?;
    let attrs = vec![int("axis", 1), int("block_size", f.block_elems() as i64)];
    Ok(e.op("DequantizeLinear", &[&q, &s], attrs))
}
