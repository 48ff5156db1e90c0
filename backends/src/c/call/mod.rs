//! `Call` and `Linear` steps as C: each graph node becomes a strided loop
//! nest or a kernel call, with its attributes and traced shapes baked in.

mod attention;
mod control;
mod indexed;
mod movement;
mod nn;
mod quant;
mod reduce;
mod resize;
mod rnn;
mod rotary;

use super::strided::{nest, Operand};
use super::{expr, Ctx, EmitError, Kernel};
use crate::program::{BufferId, Call, Linear};
use egret_ir::{Attrs, DType};

/// One node being lowered: its op, attributes and buffers.
pub(crate) struct Node<'c> {
    /// The op type.
    pub op: &'c str,
    /// Its attributes.
    pub attrs: &'c Attrs,
    /// Input buffers (`None`: absent optional input).
    pub inputs: &'c [Option<BufferId>],
    /// Output buffers.
    pub outputs: &'c [BufferId],
}

impl Node<'_> {
    /// An unsupported-op error for this node.
    pub(crate) fn unsupported(&self, reason: impl Into<String>) -> EmitError {
        EmitError::unsupported(self.op, reason)
    }

    /// Required input `i`.
    pub(crate) fn input(&self, i: usize) -> Result<BufferId, EmitError> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| self.unsupported(format!("input {i} is absent")))
    }

    /// Optional input `i`.
    pub(crate) fn opt_input(&self, i: usize) -> Option<BufferId> {
        self.inputs.get(i).copied().flatten()
    }

    /// The single output (more outputs are unsupported).
    pub(crate) fn output(&self) -> Result<BufferId, EmitError> {
        match self.outputs {
            [o] => Ok(*o),
            _ => Err(self.unsupported(format!("{} outputs", self.outputs.len()))),
        }
    }

    /// Integer attribute `name` (default `d`).
    pub(crate) fn int(&self, name: &str, d: i64) -> Result<i64, EmitError> {
        self.attrs
            .int_or(name, d)
            .map_err(|e| self.unsupported(e.to_string()))
    }

    /// Float attribute `name` (default `d`).
    pub(crate) fn float(&self, name: &str, d: f32) -> Result<f32, EmitError> {
        self.attrs
            .float_or(name, d)
            .map_err(|e| self.unsupported(e.to_string()))
    }

    /// Ints attribute `name`, if present.
    pub(crate) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, EmitError> {
        self.attrs
            .ints_opt(name)
            .map(|o| o.map(<[i64]>::to_vec))
            .map_err(|e| self.unsupported(e.to_string()))
    }

    /// The values of constant integer input `i` (`None` when absent); a
    /// computed (run-time) value is unsupported.
    pub(crate) fn const_ints(&self, cx: &Ctx<'_>, i: usize) -> Result<Option<Vec<i64>>, EmitError> {
        let Some(b) = self.opt_input(i) else {
            return Ok(None);
        };
        let t = cx
            .const_value(b)
            .ok_or_else(|| self.unsupported(format!("input {i} is computed at run time")))?;
        t.to_i64_vec()
            .map(Some)
            .map_err(|e| self.unsupported(e.to_string()))
    }

    /// `axis` normalised against `rank`.
    pub(crate) fn axis(&self, axis: i64, rank: usize) -> Result<usize, EmitError> {
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        usize::try_from(a)
            .ok()
            .filter(|&a| a < rank.max(1))
            .ok_or_else(|| self.unsupported(format!("axis {axis} of a rank-{rank} tensor")))
    }
}

/// The C code of a `Call` step.
pub(crate) fn call(cx: &mut Ctx<'_>, c: &Call) -> Result<String, EmitError> {
    let node = cx.g.node(c.node);
    let Some(oc) = node.op.as_call() else {
        return Err(EmitError::unsupported(node.op.name(), "not an op call"));
    };
    let n = Node {
        op: &oc.op_type,
        attrs: &oc.attrs,
        inputs: &c.inputs,
        outputs: &c.outputs,
    };
    if oc.domain == "egret" {
        return match n.op {
            "MatMulInt8" => quant::matmul_int8(cx, &n),
            "MatMulBlocks" => quant::matmul_blocks(cx, &n),
            "GatherBlocks" => quant::gather_blocks(cx, &n),
            "Guard" => control::guard(cx, &n),
            op => Err(EmitError::unsupported(op, "no C lowering of this egret op")),
        };
    }
    if !(oc.domain.is_empty() || oc.domain == "ai.onnx") {
        return Err(n.unsupported(format!("domain `{}`", oc.domain)));
    }
    for &b in c.inputs.iter().flatten().chain(&c.outputs) {
        super::ctype::ctype(cx.dtype(b))?;
    }
    match n.op {
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" => {
            movement::copy(cx, &n)
        }
        "Transpose" => movement::transpose(cx, &n),
        "Concat" => movement::concat(cx, &n),
        "Split" => movement::split(cx, &n),
        "Slice" => movement::slice(cx, &n),
        "Gather" => movement::gather(cx, &n),
        "Expand" | "Tile" => movement::repeat(cx, &n),
        "Pad" => movement::pad(cx, &n),
        "MatMul" => nn::matmul(cx, &n),
        "Gemm" => nn::gemm(cx, &n),
        "Conv" => nn::conv(cx, &n),
        "ConvTranspose" => nn::conv_transpose(cx, &n),
        "MaxPool" | "AveragePool" => nn::pool(cx, &n),
        "BatchNormalization" => nn::batchnorm(cx, &n),
        "Softmax" | "LogSoftmax" | "Hardmax" => nn::softmax(cx, &n),
        "LayerNormalization" | "RMSNormalization" => nn::layernorm(cx, &n),
        "Attention" => attention::attention(cx, &n),
        "LSTM" => rnn::lstm(cx, &n),
        "RotaryEmbedding" => rotary::rotary(cx, &n),
        "ArgMax" | "ArgMin" => reduce::arg(cx, &n),
        "Range" => indexed::range(cx, &n),
        "Resize" => resize::resize(cx, &n),
        "QuantizeLinear" | "DequantizeLinear" => quant::quant(cx, &n),
        "Trilu" => indexed::trilu(cx, &n),
        "GatherElements" => indexed::gather_elements(cx, &n),
        op if op.starts_with("Reduce") || op.starts_with("Global") => reduce::reduce(cx, &n),
        _ => elementwise(cx, &n),
    }
}

/// An elementwise op (numpy broadcasting) as one loop nest.
fn elementwise(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let out = n.output()?;
    let shape = cx.shape(out);
    let mut ops = vec![Operand::contiguous(cx.ptr(out)?, shape)];
    let mut slots = Vec::new();
    for &i in n.inputs {
        slots.push(i.map(|_| ops.len()));
        if let Some(b) = i {
            ops.push(Operand::broadcast(cx.ptr(b)?, cx.shape(b), shape));
        }
    }
    // Where's condition is bool; its value type is that of the branches.
    let dt = match (n.op, n.opt_input(1)) {
        ("Where", Some(b)) => cx.dtype(b),
        _ => cx.dtype(n.input(0)?),
    };
    let probe: Vec<Option<String>> = slots.iter().map(|s| s.map(|k| format!("@{k}@"))).collect();
    let Some(e) = expr::onnx(n.op, n.attrs, &probe, dt, cx.dtype(out))? else {
        return Err(n.unsupported("no C lowering"));
    };
    let body = |el: &[String]| {
        // The expression names operand k `@k@`; substitute its element.
        let mut s = e.clone();
        for (k, elem) in el.iter().enumerate().skip(1) {
            s = s.replace(&format!("@{k}@"), &format!("({elem})"));
        }
        format!("    {} = {s};\n", el[0])
    };
    Ok(nest(shape, &ops, "i", &body))
}

/// A `Linear` step: the blocked GEMM on the weight stored `k × n`.
pub(crate) fn linear(cx: &mut Ctx<'_>, l: &Linear) -> Result<String, EmitError> {
    cx.use_kernel(Kernel::Gemm);
    let w = if l.transposed {
        cx.ptr_transposed(l.weight)?
    } else {
        cx.ptr(l.weight)?
    };
    let bias = match l.bias {
        Some(b) => cx.ptr(b)?,
        None => "NULL".into(),
    };
    Ok(format!(
        "egret_gemm_f32({}, {}, {}, {}, {w}, {bias}, {});\n",
        l.m,
        l.n,
        l.k,
        cx.ptr(l.a)?,
        cx.ptr(l.output)?
    ))
}

/// Requires `b` to be f32 (the dtype the float kernels take).
pub(crate) fn require_f32(cx: &Ctx<'_>, n: &Node<'_>, b: BufferId) -> Result<(), EmitError> {
    match cx.dtype(b) {
        DType::F32 => Ok(()),
        d => Err(n.unsupported(format!("on {d} (the C kernel is f32)"))),
    }
}
