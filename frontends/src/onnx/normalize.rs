//! Opset normalisation: older ONNX op forms rewritten into the latest opset's.
//!
//! egret's inference rules and kernels implement one semantics per op, the one of
//! the newest opset. This module is the table of rewrites that lifts older forms
//! ([`RULES`]): each rule names the op, the opset range it applies to
//! (`since <= opset < before`) and a small function from one node to its
//! latest-opset replacement (one or more nodes, plus constants).
//!
//! Rewrites work on value *names* (before types are known), so a value whose
//! dtype must match a data input (`Pad`'s `constant_value`, `Clip`'s bounds) is
//! produced by a `CastLike` of an f32 constant to the data input.

use super::import::{GraphAttr, LGraph, NormCx, Spec};
use egret_ir::{Attr, Tensor};

/// A rewrite: the node in its old form → its latest-opset replacement.
type RuleFn = fn(Spec, &mut NormCx<'_>) -> Result<Vec<Spec>, String>;

/// One rewrite, applying to standard-domain `op` when `since <= opset < before`.
pub(crate) struct Rule {
    /// Op type the rule applies to.
    pub op: &'static str,
    /// First opset it applies to.
    pub since: i64,
    /// First opset it no longer applies to.
    pub before: i64,
    /// The rewrite.
    pub apply: RuleFn,
}

const fn rule(op: &'static str, since: i64, before: i64, apply: RuleFn) -> Rule {
    Rule {
        op,
        since,
        before,
        apply,
    }
}

/// Opset "infinity": the op no longer exists in the latest opset.
const GONE: i64 = i64::MAX;

/// Every rewrite, at most one per `(op, opset)`.
pub(crate) const RULES: &[Rule] = &[
    rule("Squeeze", 1, 13, axes_attr_to_input),
    rule("Unsqueeze", 1, 13, axes_attr_to_input),
    rule("ReduceSum", 1, 13, axes_attr_to_input),
    rule("ReduceMax", 1, 18, axes_attr_to_input),
    rule("ReduceMin", 1, 18, axes_attr_to_input),
    rule("ReduceMean", 1, 18, axes_attr_to_input),
    rule("ReduceProd", 1, 18, axes_attr_to_input),
    rule("ReduceL1", 1, 18, axes_attr_to_input),
    rule("ReduceL2", 1, 18, axes_attr_to_input),
    rule("ReduceLogSum", 1, 18, axes_attr_to_input),
    rule("ReduceLogSumExp", 1, 18, axes_attr_to_input),
    rule("ReduceSumSquare", 1, 18, axes_attr_to_input),
    rule("Split", 1, 13, split_attr_to_input),
    rule("Slice", 1, 10, slice_attrs_to_inputs),
    rule("Pad", 1, 11, pad_attrs_to_inputs),
    rule("Clip", 1, 11, clip_attrs_to_inputs),
    rule("TopK", 1, 10, topk_attr_to_input),
    rule("Reshape", 1, 5, reshape_attr_to_input),
    rule("Upsample", 1, GONE, upsample_to_resize),
    rule("Scan", 8, 9, batched_scan8),
    rule("Resize", 10, 11, resize10_to_resize),
    rule("Scatter", 1, GONE, scatter_to_scatter_elements),
    rule("Softmax", 1, 13, legacy_softmax),
    rule("LogSoftmax", 1, 13, legacy_softmax),
    rule("Hardmax", 1, 13, legacy_softmax),
    rule("PRelu", 1, 7, legacy_prelu),
    rule("BatchNormalization", 1, 15, batchnorm_drop_legacy),
    rule("Dropout", 1, 12, dropout_ratio_to_input),
    rule("Cast", 1, 6, cast_to_as_int),
    rule("DFT", 17, 20, dft_axis_to_input),
    rule("RoiAlign", 10, 16, roialign_default_mode),
    rule("GridSample", 16, 20, gridsample_mode_names),
    rule("Add", 1, 7, drop_broadcast),
    rule("Sub", 1, 7, drop_broadcast),
    rule("Mul", 1, 7, drop_broadcast),
    rule("Div", 1, 7, drop_broadcast),
    rule("Pow", 1, 7, drop_broadcast),
    rule("And", 1, 7, drop_broadcast),
    rule("Or", 1, 7, drop_broadcast),
    rule("Xor", 1, 7, drop_broadcast),
    rule("Equal", 1, 7, drop_broadcast),
    rule("Greater", 1, 7, drop_broadcast),
    rule("Less", 1, 7, drop_broadcast),
    rule("Gemm", 1, 7, drop_broadcast),
];

/// Rewrite one standard-domain node into its latest-opset form (unchanged if no rule applies).
pub(crate) fn normalize(spec: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    if !spec.domain.is_empty() {
        return Ok(vec![spec]);
    }
    match RULES
        .iter()
        .find(|r| r.op == spec.op_type && r.since <= spec.opset && spec.opset < r.before)
    {
        Some(r) => (r.apply)(spec, cx),
        None => Ok(vec![spec]),
    }
}

// ---- helpers -------------------------------------------------------------------

/// Remove an ints attribute.
fn take_ints(s: &mut Spec, name: &str) -> Result<Option<Vec<i64>>, String> {
    match s.attrs.remove(name) {
        None => Ok(None),
        Some(Attr::Ints(v)) => Ok(Some(v)),
        Some(Attr::Int(v)) => Ok(Some(vec![v])),
        Some(a) => Err(format!(
            "attribute `{name}`: expected ints, found {}",
            a.kind()
        )),
    }
}

/// Remove an ints attribute that must be present.
fn take_required_ints(s: &mut Spec, name: &str) -> Result<Vec<i64>, String> {
    take_ints(s, name)?.ok_or_else(|| format!("attribute `{name}` is required"))
}

/// Remove a floats attribute.
fn take_floats(s: &mut Spec, name: &str) -> Result<Option<Vec<f32>>, String> {
    match s.attrs.remove(name) {
        None => Ok(None),
        Some(Attr::Floats(v)) => Ok(Some(v)),
        Some(a) => Err(format!(
            "attribute `{name}`: expected floats, found {}",
            a.kind()
        )),
    }
}

/// Remove a float attribute.
fn take_float(s: &mut Spec, name: &str) -> Result<Option<f32>, String> {
    match s.attrs.remove(name) {
        None => Ok(None),
        Some(Attr::Float(v)) => Ok(Some(v)),
        Some(Attr::Int(v)) => Ok(Some(v as f32)),
        Some(a) => Err(format!(
            "attribute `{name}`: expected float, found {}",
            a.kind()
        )),
    }
}

/// Set input `slot` to `name`, padding skipped slots with absent (`""`) inputs.
fn set_input(s: &mut Spec, slot: usize, name: String) {
    if s.inputs.len() <= slot {
        s.inputs.resize(slot + 1, String::new());
    }
    s.inputs[slot] = name;
}

/// A 1-D i64 constant.
fn i64s(cx: &mut NormCx<'_>, hint: &str, v: Vec<i64>) -> String {
    cx.konst(
        hint,
        Tensor::from_vec(vec![v.len()], v).unwrap_or_else(|_| Tensor::scalar(0i64)),
    )
}

/// The data input (slot 0), which every rewritten op requires.
fn data_input(s: &Spec) -> Result<String, String> {
    s.inputs
        .first()
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| "input 0 is required".to_string())
}

/// A scalar f32 constant cast to the dtype of `like`: `CastLike(value, like)`.
fn scalar_like(
    cx: &mut NormCx<'_>,
    s: &Spec,
    hint: &str,
    value: f32,
    like: &str,
) -> (String, Spec) {
    let c = cx.konst(hint, Tensor::scalar(value));
    let out = cx.name(hint);
    let node = Spec::derived(
        s,
        &format!("{hint}_castlike"),
        "CastLike",
        vec![c, like.to_string()],
        vec![out.clone()],
    );
    (out, node)
}

// ---- rules ---------------------------------------------------------------------

/// `axes` attribute → input 1 (Squeeze/Unsqueeze < 13, ReduceSum < 13, other Reduce* < 18).
fn axes_attr_to_input(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    if let Some(axes) = take_ints(&mut s, "axes")? {
        let c = i64s(cx, "axes", axes);
        set_input(&mut s, 1, c);
    }
    Ok(vec![s])
}

/// Split < 13: `split` attribute → input 1.
fn split_attr_to_input(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    if let Some(split) = take_ints(&mut s, "split")? {
        let c = i64s(cx, "split", split);
        set_input(&mut s, 1, c);
    }
    Ok(vec![s])
}

/// Slice < 10: `starts`, `ends`, `axes` attributes → inputs 1, 2, 3.
fn slice_attrs_to_inputs(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let starts = take_required_ints(&mut s, "starts")?;
    let ends = take_required_ints(&mut s, "ends")?;
    let axes = take_ints(&mut s, "axes")?;
    s.inputs.truncate(1);
    let c = i64s(cx, "starts", starts);
    set_input(&mut s, 1, c);
    let c = i64s(cx, "ends", ends);
    set_input(&mut s, 2, c);
    if let Some(axes) = axes {
        let c = i64s(cx, "axes", axes);
        set_input(&mut s, 3, c);
    }
    Ok(vec![s])
}

/// Pad < 11: `pads` → input 1, `value` → `constant_value` input 2 (cast to the data's dtype).
fn pad_attrs_to_inputs(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let pads = match take_ints(&mut s, "pads")? {
        Some(p) => p,
        None => take_required_ints(&mut s, "paddings")?,
    };
    let value = take_float(&mut s, "value")?.unwrap_or(0.0);
    let data = data_input(&s)?;
    s.inputs.truncate(1);
    let c = i64s(cx, "pads", pads);
    set_input(&mut s, 1, c);
    let mut out = vec![];
    if value != 0.0 {
        let (v, cast) = scalar_like(cx, &s, "constant_value", value, &data);
        set_input(&mut s, 2, v);
        out.push(cast);
    }
    out.push(s);
    Ok(out)
}

/// Clip < 11: `min`/`max` attributes → inputs 1/2 (cast to the data's dtype).
fn clip_attrs_to_inputs(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let min = take_float(&mut s, "min")?;
    let max = take_float(&mut s, "max")?;
    let data = data_input(&s)?;
    s.inputs.truncate(1);
    let mut out = vec![];
    for (slot, (hint, bound)) in [("min", min), ("max", max)].into_iter().enumerate() {
        if let Some(b) = bound {
            let (v, cast) = scalar_like(cx, &s, hint, b, &data);
            set_input(&mut s, slot + 1, v);
            out.push(cast);
        }
    }
    out.push(s);
    Ok(out)
}

/// TopK < 10: `k` attribute → input 1 (shape `[1]`).
fn topk_attr_to_input(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let k = take_required_ints(&mut s, "k")?;
    let c = i64s(cx, "k", k);
    set_input(&mut s, 1, c);
    Ok(vec![s])
}

/// Reshape < 5: `shape` attribute → input 1.
fn reshape_attr_to_input(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let shape = take_required_ints(&mut s, "shape")?;
    let c = i64s(cx, "shape", shape);
    set_input(&mut s, 1, c);
    Ok(vec![s])
}

/// Resize with Upsample-compatible (opset-10) coordinate handling, `scales` at input 2.
fn resize_from_scales(mut s: Spec, scales: String) -> Spec {
    let mode = match s.attrs.remove("mode") {
        Some(Attr::String(m)) if m == "linear" || m == "bilinear" => "linear",
        Some(Attr::String(m)) if m == "cubic" || m == "bicubic" => "cubic",
        _ => "nearest",
    };
    s.op_type = "Resize".into();
    s.inputs.truncate(1);
    set_input(&mut s, 2, scales);
    s.attrs.set("mode", Attr::String(mode.into()));
    s.attrs.set(
        "coordinate_transformation_mode",
        Attr::String("asymmetric".into()),
    );
    if mode == "nearest" {
        s.attrs.set("nearest_mode", Attr::String("floor".into()));
    }
    s
}

/// Upsample (all opsets) → Resize(X, "", scales), asymmetric coordinates, floor rounding.
fn upsample_to_resize(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let scales = match take_floats(&mut s, "scales")? {
        Some(v) => cx.konst(
            "scales",
            Tensor::from_vec(vec![v.len()], v).map_err(|e| e.to_string())?,
        ),
        None => {
            // Upsample-1 had width_scale/height_scale on NCHW input.
            let h = take_float(&mut s, "height_scale")?;
            let w = take_float(&mut s, "width_scale")?;
            match (h, w) {
                (Some(h), Some(w)) => cx.konst(
                    "scales",
                    Tensor::from_vec(vec![4], vec![1.0, 1.0, h, w]).map_err(|e| e.to_string())?,
                ),
                _ => s
                    .inputs
                    .get(1)
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .ok_or("missing `scales`")?,
            }
        }
    };
    Ok(vec![resize_from_scales(s, scales)])
}

/// Resize-10 (X, scales) → Resize-11+ (X, "", scales) with the opset-10 coordinate mapping.
fn resize10_to_resize(s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let scales = s
        .inputs
        .get(1)
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or("input `scales` is required")?;
    Ok(vec![resize_from_scales(s, scales)])
}

/// Scatter (deprecated in opset 11) → ScatterElements, same semantics.
/// Scan-8 puts a batch axis in front of every state and scan value (and takes
/// an optional `sequence_lens` first input). Batch entries are independent
/// Scan-9 runs, so the node becomes an outer Scan over the batch axis (every
/// input scanned, every output stacked) whose body is that Scan-9 node.
fn batched_scan8(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let Some((lens, formal)) = s.inputs.split_first() else {
        return Err("Scan-8 needs inputs".into());
    };
    if !lens.is_empty() {
        return Err("Scan-8 sequence_lens is not supported".into());
    }
    let formal = formal.to_vec();
    let directions = take_ints(&mut s, "directions")?;
    let inner_in: Vec<String> = formal.iter().map(|_| cx.name("scan8_in")).collect();
    let inner_out: Vec<String> = s.outputs.iter().map(|_| cx.name("scan8_out")).collect();
    let mut inner = Spec::derived(&s, "batch", "Scan", inner_in.clone(), inner_out.clone());
    inner.opset = 9;
    inner.attrs = std::mem::take(&mut s.attrs);
    if let Some(d) = directions {
        inner.attrs.set("scan_input_directions", Attr::Ints(d));
    }
    inner.graphs = std::mem::take(&mut s.graphs);
    let body = LGraph::single_node(format!("{}_batch", s.label()), inner, inner_in, inner_out);
    let mut outer = Spec::derived(&s, "batched", "Scan", formal, s.outputs.clone())
        .with_attr("num_scan_inputs", Attr::Int(s.inputs.len() as i64 - 1));
    outer.name = s.name;
    outer.opset = 9;
    outer.graphs = vec![GraphAttr {
        name: "body".into(),
        graphs: vec![body],
        list: false,
    }];
    Ok(vec![outer])
}

fn scatter_to_scatter_elements(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    s.op_type = "ScatterElements".into();
    Ok(vec![s])
}

/// Softmax/LogSoftmax/Hardmax < 13 coerce the input to 2-D at `axis` (default 1).
/// `axis = -1` already means the same thing in opset 13. Any other axis is parked
/// in [`LEGACY_AXIS`] and resolved by [`resolve_deferred`] once the input rank
/// is known.
fn legacy_softmax(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let axis = match s.attrs.remove("axis") {
        None => 1,
        Some(Attr::Int(a)) => a,
        Some(a) => {
            return Err(format!(
                "attribute `axis`: expected int, found {}",
                a.kind()
            ))
        }
    };
    data_input(&s)?;
    if s.outputs.is_empty() {
        return Err("output 0 is required".into());
    }
    if axis == -1 {
        s.attrs.set("axis", Attr::Int(-1));
    } else {
        s.attrs.set(LEGACY_AXIS, Attr::Int(axis));
    }
    Ok(vec![s])
}

/// Int attribute of a legacy (< 13) Softmax/LogSoftmax/Hardmax whose
/// coerce-to-2-D axis waits for the input rank; only seen inside the frontend.
pub(crate) const LEGACY_AXIS: &str = "egret.legacy_axis";

/// Marks a PRelu < 7, whose 1-D slope applied to the channel axis (1); only seen
/// inside the frontend.
pub(crate) const LEGACY_PRELU: &str = "egret.legacy_prelu";

/// PRelu < 7: resolved by [`resolve_deferred`] once the ranks are known.
fn legacy_prelu(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    s.attrs.remove("consumed_inputs");
    s.attrs.set(LEGACY_PRELU, Attr::Int(1));
    Ok(vec![s])
}

/// What a rank-dependent rewrite produces: new constants and the replacement nodes.
pub(crate) struct Deferred {
    /// Constants the nodes read.
    pub consts: Vec<(String, Tensor)>,
    /// The replacement nodes, in dependency order.
    pub nodes: Vec<Spec>,
}

/// Rank-dependent rewrites, run while the graph is built, once the ranks of the
/// node's inputs (`None`: unknown or absent) are known. `None` if `s` needs none.
pub(crate) fn resolve_deferred(
    s: &Spec,
    ranks: &[Option<usize>],
) -> Result<Option<Deferred>, String> {
    let rank = |i: usize| ranks.get(i).copied().flatten();
    if let Some(Attr::Int(axis)) = s.attrs.get(LEGACY_AXIS) {
        return legacy_axis(s, *axis, rank(0)).map(Some);
    }
    if s.attrs.has(LEGACY_PRELU) {
        return legacy_prelu_channels(s, rank(0), rank(1)).map(Some);
    }
    Ok(None)
}

/// A copy of `s` without graphs, with new inputs/outputs and the marker `drop` removed.
fn respec(s: &Spec, drop: &str, inputs: Vec<String>, outputs: Vec<String>) -> Spec {
    let mut attrs = s.attrs.clone();
    attrs.remove(drop);
    Spec {
        name: s.name.clone(),
        domain: s.domain.clone(),
        op_type: s.op_type.clone(),
        opset: s.opset,
        inputs,
        outputs,
        attrs,
        graphs: vec![],
    }
}

/// Legacy softmax-family `axis`: `op(axis=-1)` when it is the last axis, else
/// `Reshape(op(Flatten(x, axis), axis=-1), Shape(x))`.
fn legacy_axis(s: &Spec, axis: i64, rank: Option<usize>) -> Result<Deferred, String> {
    let op =
        |inputs, outputs| respec(s, LEGACY_AXIS, inputs, outputs).with_attr("axis", Attr::Int(-1));
    let last = rank
        .and_then(|r| i64::try_from(r).ok())
        .is_some_and(|r| axis == r - 1);
    if last {
        return Ok(Deferred {
            consts: vec![],
            nodes: vec![op(s.inputs.clone(), s.outputs.clone())],
        });
    }
    let x = data_input(s)?;
    let y = s.outputs.first().cloned().ok_or("output 0 is required")?;
    let (flat, inner, shape) = (
        format!("{y}__egret_flat"),
        format!("{y}__egret_2d"),
        format!("{y}__egret_shape"),
    );
    let flatten = Spec::derived(s, "flatten", "Flatten", vec![x.clone()], vec![flat.clone()])
        .with_attr("axis", Attr::Int(axis));
    let shape_node = Spec::derived(s, "shape", "Shape", vec![x], vec![shape.clone()]);
    let reshape = Spec::derived(s, "reshape", "Reshape", vec![inner.clone(), shape], vec![y]);
    Ok(Deferred {
        consts: vec![],
        nodes: vec![flatten, op(vec![flat], vec![inner]), shape_node, reshape],
    })
}

/// PRelu < 7 with a 1-D slope on an input of rank `r > 2`: the slope is
/// unsqueezed to `[C, 1, ..., 1]` so numpy broadcasting lines it up with axis 1.
fn legacy_prelu_channels(
    s: &Spec,
    x_rank: Option<usize>,
    slope_rank: Option<usize>,
) -> Result<Deferred, String> {
    match (x_rank, slope_rank) {
        (Some(r), Some(1)) if r > 2 => {
            let x = data_input(s)?;
            let slope = s
                .inputs
                .get(1)
                .cloned()
                .ok_or("input `slope` is required")?;
            let y = s.outputs.first().cloned().ok_or("output 0 is required")?;
            let (axes, unsq) = (
                format!("{y}__egret_slope_axes"),
                format!("{y}__egret_slope"),
            );
            let axes_t = Tensor::from_vec(vec![r - 2], (1..r - 1).map(|a| a as i64).collect())
                .map_err(|e| e.to_string())?;
            let unsqueeze = Spec::derived(
                s,
                "slope",
                "Unsqueeze",
                vec![slope, axes.clone()],
                vec![unsq.clone()],
            );
            let prelu = respec(s, LEGACY_PRELU, vec![x, unsq], s.outputs.clone());
            Ok(Deferred {
                consts: vec![(axes, axes_t)],
                nodes: vec![unsqueeze, prelu],
            })
        }
        _ => Ok(Deferred {
            consts: vec![],
            nodes: vec![respec(s, LEGACY_PRELU, s.inputs.clone(), s.outputs.clone())],
        }),
    }
}

/// BatchNormalization: drop the legacy `spatial`, `consumed_inputs`, `is_test` attributes.
fn batchnorm_drop_legacy(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    for a in ["spatial", "consumed_inputs", "is_test"] {
        s.attrs.remove(a);
    }
    Ok(vec![s])
}

/// Dropout < 12: `ratio` attribute → input 1; `is_test` dropped.
fn dropout_ratio_to_input(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    s.attrs.remove("is_test");
    if let Some(r) = take_float(&mut s, "ratio")? {
        let c = cx.konst("ratio", Tensor::scalar(r));
        set_input(&mut s, 1, c);
    }
    Ok(vec![s])
}

/// Cast < 6 named the target type (`"FLOAT"`); it is always an int code now.
fn cast_to_as_int(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    if let Some(Attr::String(name)) = s.attrs.get("to") {
        let code = super::proto::tensor_proto::DataType::from_str_name(&name.to_ascii_uppercase())
            .ok_or_else(|| format!("Cast to unknown type `{name}`"))?;
        s.attrs.set("to", Attr::Int(code as i64));
    }
    Ok(vec![s])
}

/// DFT 17..20: `axis` attribute (default 1) → input 2.
fn dft_axis_to_input(mut s: Spec, cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let axis = match s.attrs.remove("axis") {
        None => 1,
        Some(Attr::Int(a)) => a,
        Some(a) => {
            return Err(format!(
                "attribute `axis`: expected int, found {}",
                a.kind()
            ))
        }
    };
    let c = cx.konst("axis", Tensor::scalar(axis));
    set_input(&mut s, 2, c);
    Ok(vec![s])
}

/// RoiAlign < 16 used `output_half_pixel` coordinates, the default then.
fn roialign_default_mode(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    if !s.attrs.has("coordinate_transformation_mode") {
        s.attrs.set(
            "coordinate_transformation_mode",
            Attr::String("output_half_pixel".into()),
        );
    }
    Ok(vec![s])
}

/// GridSample < 20 spelled the modes `bilinear`/`bicubic`.
fn gridsample_mode_names(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    let renamed = match s.attrs.get("mode") {
        Some(Attr::String(m)) if m == "bilinear" => "linear",
        Some(Attr::String(m)) if m == "bicubic" => "cubic",
        _ => return Ok(vec![s]),
    };
    s.attrs.set("mode", Attr::String(renamed.into()));
    Ok(vec![s])
}

/// Opset < 7 binary ops and Gemm had an explicit `broadcast` flag; numpy broadcasting is implicit now.
fn drop_broadcast(mut s: Spec, _cx: &mut NormCx<'_>) -> Result<Vec<Spec>, String> {
    s.attrs.remove("broadcast");
    s.attrs.remove("consumed_inputs");
    Ok(vec![s])
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::Attrs;

    fn spec(op: &str, opset: i64, attrs: Vec<(&str, Attr)>) -> Spec {
        let mut a = Attrs::default();
        for (k, v) in attrs {
            a.set(k, v);
        }
        Spec {
            name: "n".into(),
            domain: String::new(),
            op_type: op.into(),
            opset,
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attrs: a,
            graphs: vec![],
        }
    }

    fn run(s: Spec) -> (Vec<Spec>, Vec<(String, Tensor)>) {
        let mut consts = vec![];
        let mut fresh = 0;
        let out = normalize(
            s,
            &mut NormCx {
                consts: &mut consts,
                fresh: &mut fresh,
            },
        )
        .unwrap();
        (out, consts)
    }

    #[test]
    fn scan8_becomes_a_scan_over_the_batch() {
        let mut s = spec(
            "Scan",
            8,
            vec![
                ("num_scan_inputs", Attr::Int(1)),
                ("directions", Attr::Ints(vec![1])),
            ],
        );
        s.inputs = vec![String::new(), "init".into(), "x".into()];
        s.outputs = vec!["y".into(), "z".into()];
        let (out, _) = run(s);
        let [outer] = out.as_slice() else {
            panic!("one node expected, got {}", out.len())
        };
        assert_eq!((outer.op_type.as_str(), outer.opset), ("Scan", 9));
        assert_eq!(outer.inputs, ["init", "x"]);
        assert_eq!(outer.outputs, ["y", "z"]);
        assert_eq!(outer.attrs.int("num_scan_inputs").unwrap(), 2);
        assert_eq!(outer.graphs.len(), 1);
        assert_eq!(outer.graphs[0].name, "body");
        // sequence_lens cannot be honoured by the rewrite.
        let mut s = spec("Scan", 8, vec![("num_scan_inputs", Attr::Int(1))]);
        s.inputs = vec!["lens".into(), "init".into(), "x".into()];
        let (mut consts, mut fresh) = (vec![], 0);
        let mut cx = NormCx {
            consts: &mut consts,
            fresh: &mut fresh,
        };
        match normalize(s, &mut cx) {
            Err(e) => assert!(e.contains("sequence_lens"), "{e}"),
            Ok(_) => panic!("Scan-8 with sequence_lens was rewritten"),
        }
    }

    #[test]
    fn squeeze_axes_become_input() {
        let (out, consts) = run(spec("Squeeze", 11, vec![("axes", Attr::Ints(vec![0, 2]))]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].inputs.len(), 2);
        assert!(!out[0].attrs.has("axes"));
        assert_eq!(consts[0].0, out[0].inputs[1]);
        assert_eq!(consts[0].1.to_i64_vec().unwrap(), vec![0, 2]);
        // opset 13: untouched
        let (out, consts) = run(spec("Squeeze", 13, vec![]));
        assert_eq!(out[0].inputs.len(), 1);
        assert!(consts.is_empty());
    }

    #[test]
    fn legacy_softmax_is_flattened() {
        let (out, _) = run(spec("Softmax", 11, vec![]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attrs.int_opt(LEGACY_AXIS).unwrap(), Some(1));
        let parts = resolve_deferred(&out[0], &[Some(4)])
            .unwrap()
            .unwrap()
            .nodes;
        let ops: Vec<_> = parts.iter().map(|s| s.op_type.as_str()).collect();
        assert_eq!(ops, ["Flatten", "Softmax", "Shape", "Reshape"]);
        assert_eq!(parts[0].attrs.int_opt("axis").unwrap(), Some(1));
        assert_eq!(parts[1].attrs.int_opt("axis").unwrap(), Some(-1));
        assert!(!parts[1].attrs.has(LEGACY_AXIS));
        assert_eq!(parts[3].outputs, ["y"]);
        // axis 1 of a rank-2 input is the last axis: one node.
        let parts = resolve_deferred(&out[0], &[Some(2)])
            .unwrap()
            .unwrap()
            .nodes;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].outputs, ["y"]);
        let (out, _) = run(spec("Softmax", 11, vec![("axis", Attr::Int(-1))]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attrs.int_opt("axis").unwrap(), Some(-1));
        assert!(resolve_deferred(&out[0], &[None]).unwrap().is_none());
    }

    #[test]
    fn legacy_prelu_slope_is_unsqueezed() {
        let mut s = spec("PRelu", 6, vec![]);
        s.inputs.push("slope".into());
        let (out, _) = run(s);
        let d = resolve_deferred(&out[0], &[Some(4), Some(1)])
            .unwrap()
            .unwrap();
        assert_eq!(d.nodes[0].op_type, "Unsqueeze");
        assert_eq!(d.consts[0].1.to_i64_vec().unwrap(), vec![1, 2]);
        assert_eq!(d.nodes[1].inputs[1], d.nodes[0].outputs[0]);
        assert!(!d.nodes[1].attrs.has(LEGACY_PRELU));
        let d = resolve_deferred(&out[0], &[Some(2), Some(1)])
            .unwrap()
            .unwrap();
        assert_eq!(d.nodes.len(), 1);
    }

    #[test]
    fn pad_value_uses_castlike() {
        let (out, consts) = run(spec(
            "Pad",
            2,
            vec![
                ("pads", Attr::Ints(vec![0, 1, 0, 1])),
                ("value", Attr::Float(1.5)),
            ],
        ));
        assert_eq!(out[0].op_type, "CastLike");
        assert_eq!(out[1].inputs.len(), 3);
        assert_eq!(consts.len(), 2);
    }

    #[test]
    fn upsample_becomes_resize() {
        let (out, consts) = run(spec(
            "Upsample",
            7,
            vec![("scales", Attr::Floats(vec![1., 1., 2., 2.]))],
        ));
        assert_eq!(out[0].op_type, "Resize");
        assert_eq!(out[0].inputs[1], "");
        assert_eq!(consts[0].1.to_f64_vec().unwrap(), vec![1., 1., 2., 2.]);
        assert_eq!(
            out[0].attrs.string_opt("nearest_mode").unwrap(),
            Some("floor")
        );
    }
}
