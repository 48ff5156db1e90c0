//! # egret-passes
//!
//! egret's optimizer: a pass manager whose main pass is equality saturation.
//!
//! * [`egraph`]: the IR as an [`egg`] language, its analysis, IR ⇄ e-graph.
//! * [`rules`]: the built-in rule sets (algebra, shape, canon, fusion,
//!   transpose), named and staged.
//! * [`extract`]: the cost model and extraction.
//! * [`saturate`]: one saturation run with limits and a statistics report.
//! * [`pass`]: named passes (rewrite-based and procedural), pipelines, the
//!   verifier between passes.
//! * [`quantize`]: quantization as rewrites, with calibration and
//!   accuracy-budgeted extraction.
//! * [`compress`]: pruning, low rank, Kronecker and structured pruning;
//!   [`linalg`]: the dense f64 linear algebra they share.
//! * [`check`]: differential checking through the interpreter;
//!   [`soundness`]: the public rule-soundness harness built on it.
//!
//! ## Why the design is as it is
//!
//! **Equality saturation.** Rules only add equalities; nothing is destroyed
//! until extraction picks one implementation per e-class. So rule order never
//! matters (no phase ordering), and alternatives — a fused op and its
//! primitives, a transposed and an untransposed form — coexist until the cost
//! model decides. `egg` (0.11, the newest release; it builds on rustc 1.95)
//! is the reference Rust implementation: hash-consed e-graphs, rebuilding,
//! analyses with `modify` hooks, a backoff scheduler and node/iteration/time
//! limits. It is re-exported as [`egg`] so user crates write rules with
//! `egret::passes::egg::rewrite!` without a version to keep in sync.
//!
//! **One generic op node instead of an enum of ops.** egret supports hundreds
//! of ONNX ops with attributes; listing them in `define_language!` would
//! duplicate the IR and drift from it. An e-node is `Op(OpId, children)` where
//! `OpId` interns (domain, op type, attributes, output count) in a
//! process-wide table, so e-nodes stay small and hash fast, and patterns can
//! still name ops with attributes (`Transpose{perm=[1,0]}`). Multi-output ops
//! are tuple classes read through `get.N`; absent optional inputs are a leaf.
//!
//! **Leaves by id, weights never copied.** Inputs and constants are leaves that
//! index side tables in the analysis; constants are `Arc`-shared tensors, so
//! a 500 MB weight is referenced, never cloned. Tensors a rule derives (a
//! folded BatchNorm's weights) are computed once and cached by a key naming
//! the transform and its sources.
//!
//! **The analysis reuses egret's own inference and kernels.** Class types come
//! from `egret_ir::infer` (so the e-graph and the verifier can never disagree),
//! refined by the frontend's recorded types. Constant folding runs the
//! interpreter's kernels on small constant inputs (results up to
//! [`egraph::fold::FOLD_MAX_ELEMS`] elements), so folding cannot disagree with
//! execution. Small integer tensors built from shapes are also tracked
//! symbolically, which is what folds `Shape → Gather → Concat → Reshape`
//! chains when dims are symbolic.
//!
//! **Rules compute their right-hand sides.** Most useful rules depend on
//! attributes and facts (composed permutations, all-zero constants, folded
//! weights) that static patterns cannot express; [`rules::rhs::FnRule`] lets a
//! plain function build the right-hand side. Every built-in rule applies
//! through a type guard, so a rule bug can lose an optimisation but not make a
//! graph ill-typed; the soundness harness checks values.
//!
//! **Greedy extraction with a calibrated cost.** Per-op overhead, bytes moved
//! and FLOPs, with constants measured by [`extract::calibrate`]; greedy
//! bottom-up extraction is linear-ish and good enough for exact rewrites,
//! and the chosen nodes are materialised as a DAG.
//!
//! Depends on `egret-ir` and `egret-runtime` (the interpreter is the oracle and
//! the constant folder); `serde`/`serde_json` for reports, `thiserror` for
//! typed errors.

pub use egg;

pub mod check;
pub mod compress;
pub mod egraph;
pub mod extract;
pub mod kv_segment;
pub mod linalg;
pub mod pass;
pub mod quantize;
pub mod rules;
pub mod saturate;
pub mod soundness;
