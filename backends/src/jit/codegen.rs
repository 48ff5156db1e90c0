//! Cranelift code generation for fused loops.
//!
//! Each [`FusedLoop`] becomes one native function
//! `extern "C" fn(ptrs: *const *mut u8, begin: u64, end: u64)`: `ptrs[0]` is
//! the output, `ptrs[1 + i]` input `i`, and `begin..end` the slice of the
//! outermost axis to compute, so callers can split the work across threads.
//! The innermost axis runs four f32 lanes at a time (128-bit SIMD: SSE on
//! x86-64, NEON on aarch64) whenever every input walks it contiguously or
//! broadcasts it, then finishes element by element. Exp, Erf, Gelu, Sigmoid,
//! Tanh and GeluTanh are computed inline by the polynomial approximations of
//! [`super::vmath`] (within a few ulp of the interpreter's functions, both
//! paths computing the same bits); Log, Sin, Cos, Softplus and Pow call the
//! runtime's own scalar functions lane by lane.

use super::vmath::VMath;
use crate::program::{BinOp, FusedLoop, Inst, UnOp};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use egret_runtime::ops::activation;

/// A compiled fused loop.
pub type LoopFn = unsafe extern "C" fn(*const *mut u8, u64, u64);

/// Lanes per vector.
const LANES: usize = 4;

extern "C" fn call_log(x: f32) -> f32 {
    x.ln()
}
extern "C" fn call_sin(x: f32) -> f32 {
    x.sin()
}
extern "C" fn call_cos(x: f32) -> f32 {
    x.cos()
}
extern "C" fn call_softplus(x: f32) -> f32 {
    activation::softplus(x)
}
extern "C" fn call_pow(x: f32, y: f32) -> f32 {
    x.powf(y)
}

/// The runtime function behind a transcendental without inline code.
fn unary_fn(op: UnOp) -> extern "C" fn(f32) -> f32 {
    match op {
        UnOp::Log => call_log,
        UnOp::Sin => call_sin,
        UnOp::Cos => call_cos,
        UnOp::Softplus => call_softplus,
        other => unreachable!("{other:?} is computed inline"),
    }
}

/// Why code generation failed (a bug in egret, reported rather than panicking).
#[derive(Debug, thiserror::Error)]
#[error("Cranelift: {0}")]
pub struct CodegenError(pub String);

fn err(e: impl std::fmt::Display) -> CodegenError {
    CodegenError(e.to_string())
}

/// A JIT module holding compiled loops. The code lives as long as this does.
pub struct LoopCompiler {
    module: JITModule,
    ctx: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    count: usize,
}

impl LoopCompiler {
    /// A compiler for the host CPU (its SIMD and FMA features detected).
    pub fn new() -> Result<LoopCompiler, CodegenError> {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").map_err(err)?;
        flags.set("is_pic", "false").map_err(err)?;
        flags.set("use_colocated_libcalls", "false").map_err(err)?;
        let isa = cranelift_native::builder()
            .map_err(err)?
            .finish(settings::Flags::new(flags))
            .map_err(err)?;
        let module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        Ok(LoopCompiler {
            ctx: module.make_context(),
            module,
            fctx: FunctionBuilderContext::new(),
            count: 0,
        })
    }

    /// Compile one loop; the function is callable after [`LoopCompiler::finish`].
    pub fn compile(&mut self, l: &FusedLoop) -> Result<cranelift_module::FuncId, CodegenError> {
        let ptr = self.module.target_config().pointer_type();
        let mut sig = self.module.make_signature();
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        let name = format!("loop{}", self.count);
        self.count += 1;
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(err)?;
        self.ctx.func.signature = sig;
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let params = b.block_params(entry).to_vec();
            let mut e = Emitter {
                b,
                ptr,
                call_conv: self.module.target_config().default_call_conv,
                fma: self.module.isa().has_native_fma(),
                l,
            };
            let bases: Vec<Value> = (0..=l.inputs.len())
                .map(|i| {
                    e.b.ins()
                        .load(ptr, MemFlagsData::trusted(), params[0], (i * 8) as i32)
                })
                .collect();
            e.level(0, params[1], params[2], &bases);
            e.b.ins().return_(&[]);
            e.b.seal_all_blocks();
            e.b.finalize(self.module.target_config());
        }
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(err)?;
        self.module.clear_context(&mut self.ctx);
        Ok(id)
    }

    /// Link everything compiled so far and return the module (which owns the
    /// code) with a lookup for function pointers.
    pub fn finish(mut self) -> Result<JITModule, CodegenError> {
        self.module.finalize_definitions().map_err(err)?;
        Ok(self.module)
    }
}

/// The address of a finalized loop.
pub fn loop_fn(module: &JITModule, id: cranelift_module::FuncId) -> LoopFn {
    let p = module.get_finalized_function(id);
    // SAFETY: `id` was compiled by `LoopCompiler::compile` with exactly this
    // signature, and the module has been finalized.
    unsafe { std::mem::transmute::<*const u8, LoopFn>(p) }
}

/// Builds the body of one loop function.
struct Emitter<'a, 'f> {
    b: FunctionBuilder<'f>,
    ptr: Type,
    call_conv: cranelift_codegen::isa::CallConv,
    /// Whether the target has a native fused multiply-add.
    fma: bool,
    l: &'a FusedLoop,
}

impl<'f> Emitter<'_, 'f> {
    /// A counted loop `for i in lo..hi step step` while `i + step <= hi`;
    /// `body(emitter, i)` emits one iteration. Returns the final `i`.
    fn counted(
        &mut self,
        lo: Value,
        hi: Value,
        step: usize,
        body: &mut dyn FnMut(&mut Self, Value),
    ) -> Value {
        let var: Variable = self.b.declare_var(types::I64);
        self.b.def_var(var, lo);
        let header = self.b.create_block();
        let work = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, step as i64);
        let go = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, next, hi);
        self.b.ins().brif(go, work, &[], exit, &[]);
        self.b.switch_to_block(work);
        self.b.seal_block(work);
        body(self, i);
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, step as i64);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.b.use_var(var)
    }

    /// `base + i * stride * 4` (bytes of f32).
    fn offset(&mut self, base: Value, i: Value, stride: usize) -> Value {
        if stride == 0 {
            return base;
        }
        let s = self.b.ins().imul_imm_s(i, (stride * 4) as i64);
        self.b.ins().iadd(base, s)
    }

    /// Emit the loop over axis `axis` from `lo` to `hi`, with `bases` the
    /// addresses of element 0 of that axis (output first).
    fn level(&mut self, axis: usize, lo: Value, hi: Value, bases: &[Value]) {
        let l = self.l;
        let last = axis + 1 == l.dims.len();
        let out_stride: usize = l.dims[axis + 1..].iter().product();
        let strides: Vec<usize> = std::iter::once(out_stride)
            .chain(l.strides.iter().map(|s| s[axis]))
            .collect();
        if !last {
            self.counted(lo, hi, 1, &mut |e, i| {
                let inner: Vec<Value> = bases
                    .iter()
                    .zip(&strides)
                    .map(|(&b, &s)| e.offset(b, i, s))
                    .collect();
                let zero = e.b.ins().iconst(types::I64, 0);
                let n = e.b.ins().iconst(types::I64, l.dims[axis + 1] as i64);
                e.level(axis + 1, zero, n, &inner);
            });
            return;
        }
        let vectorizable = strides.iter().all(|&s| s <= 1);
        let mut i = lo;
        if vectorizable {
            i = self.counted(lo, hi, LANES, &mut |e, i| {
                e.element(i, bases, &strides, true)
            });
        }
        self.counted(i, hi, 1, &mut |e, i| e.element(i, bases, &strides, false));
    }

    /// One element (or one vector of elements) at innermost index `i`.
    fn element(&mut self, i: Value, bases: &[Value], strides: &[usize], vector: bool) {
        let ty = if vector { types::F32X4 } else { types::F32 };
        let flags = MemFlagsData::new().with_notrap();
        let mut vals: Vec<Value> = Vec::with_capacity(self.l.body.len());
        for inst in &self.l.body {
            let v = match *inst {
                Inst::Load(k) => {
                    let addr = self.offset(bases[k + 1], i, strides[k + 1]);
                    if vector && strides[k + 1] == 0 {
                        let s = self.b.ins().load(types::F32, flags, addr, 0);
                        self.b.ins().splat(ty, s)
                    } else {
                        self.b.ins().load(ty, flags, addr, 0)
                    }
                }
                Inst::Const(c) => self.constant(ty, c),
                Inst::Unary(op, a) => self.unary(ty, op, vals[a]),
                Inst::Binary(op, a, b) => self.binary(ty, op, vals[a], vals[b]),
            };
            vals.push(v);
        }
        let out = *vals.last().expect("a loop body is never empty");
        let addr = self.offset(bases[0], i, strides[0]);
        self.b.ins().store(flags, out, addr, 0);
    }

    fn constant(&mut self, ty: Type, c: f32) -> Value {
        let s = self.b.ins().f32const(c);
        if ty.is_vector() {
            self.b.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// `if a <cc> b { x } else { y }`, lane by lane.
    fn select(&mut self, ty: Type, cc: FloatCC, a: Value, b: Value, x: Value, y: Value) -> Value {
        let c = self.b.ins().fcmp(cc, a, b);
        self.select_mask(ty, c, x, y)
    }

    fn select_mask(&mut self, ty: Type, c: Value, x: Value, y: Value) -> Value {
        if ty.is_vector() {
            let m = self.b.ins().bitcast(ty, MemFlagsData::new(), c);
            self.b.ins().bitselect(m, x, y)
        } else {
            self.b.ins().select(c, x, y)
        }
    }

    /// `clamp(v, 0, 1)` with NaN passing through, as the interpreter does it.
    fn unit_clamp(&mut self, ty: Type, v: Value) -> Value {
        let zero = self.constant(ty, 0.0);
        let one = self.constant(ty, 1.0);
        let lo = self.select(ty, FloatCC::LessThan, v, zero, zero, v);
        self.select(ty, FloatCC::GreaterThan, lo, one, one, lo)
    }

    fn unary(&mut self, ty: Type, op: UnOp, x: Value) -> Value {
        match op {
            UnOp::Neg => self.b.ins().fneg(x),
            UnOp::Abs => self.b.ins().fabs(x),
            UnOp::Sqrt => self.b.ins().sqrt(x),
            UnOp::Floor => self.b.ins().floor(x),
            UnOp::Ceil => self.b.ins().ceil(x),
            UnOp::Recip => {
                let one = self.constant(ty, 1.0);
                self.b.ins().fdiv(one, x)
            }
            UnOp::Relu => {
                let zero = self.constant(ty, 0.0);
                self.select(ty, FloatCC::LessThan, x, zero, zero, x)
            }
            UnOp::LeakyRelu(alpha) => {
                let zero = self.constant(ty, 0.0);
                let a = self.constant(ty, alpha);
                let ax = self.b.ins().fmul(x, a);
                self.select(ty, FloatCC::LessThan, x, zero, ax, x)
            }
            UnOp::HardSigmoid(alpha, beta) => {
                let (a, c) = (self.constant(ty, alpha), self.constant(ty, beta));
                let ax = self.b.ins().fmul(a, x);
                let v = self.b.ins().fadd(ax, c);
                self.unit_clamp(ty, v)
            }
            UnOp::HardSwish => {
                let (a, c) = (self.constant(ty, 1.0 / 6.0), self.constant(ty, 0.5));
                let ax = self.b.ins().fmul(a, x);
                let v = self.b.ins().fadd(ax, c);
                let h = self.unit_clamp(ty, v);
                self.b.ins().fmul(x, h)
            }
            UnOp::Exp => self.math(ty).exp(x),
            UnOp::Erf => self.math(ty).erf(x),
            UnOp::Gelu => self.math(ty).gelu(x),
            UnOp::Sigmoid => self.math(ty).sigmoid(x),
            UnOp::Tanh => self.math(ty).tanh(x),
            UnOp::GeluTanh => self.math(ty).gelu_tanh(x),
            call => self.call_lanes(ty, unary_fn(call) as usize, &[x]),
        }
    }

    fn binary(&mut self, ty: Type, op: BinOp, a: Value, b: Value) -> Value {
        match op {
            BinOp::Add => self.b.ins().fadd(a, b),
            BinOp::Sub => self.b.ins().fsub(a, b),
            BinOp::Mul => self.b.ins().fmul(a, b),
            BinOp::Div => self.b.ins().fdiv(a, b),
            BinOp::Max | BinOp::Min => {
                let cc = if op == BinOp::Max {
                    FloatCC::GreaterThanOrEqual
                } else {
                    FloatCC::LessThanOrEqual
                };
                let keep = self.b.ins().fcmp(cc, a, b);
                let nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
                let c = self.b.ins().bor(keep, nan);
                self.select_mask(ty, c, a, b)
            }
            BinOp::PRelu => {
                let zero = self.constant(ty, 0.0);
                let ab = self.b.ins().fmul(a, b);
                self.select(ty, FloatCC::LessThan, a, zero, ab, a)
            }
            BinOp::Pow => {
                let f: extern "C" fn(f32, f32) -> f32 = call_pow;
                self.call_lanes(ty, f as usize, &[a, b])
            }
        }
    }

    /// The inline math emitter for values of type `ty`.
    fn math(&mut self, ty: Type) -> VMath<'_, 'f> {
        VMath {
            b: &mut self.b,
            ty,
            fma: self.fma,
        }
    }

    /// Call `f(args…) -> f32` on each lane (once for a scalar).
    fn call_lanes(&mut self, ty: Type, f: usize, args: &[Value]) -> Value {
        let mut sig = Signature::new(self.call_conv);
        for _ in args {
            sig.params.push(AbiParam::new(types::F32));
        }
        sig.returns.push(AbiParam::new(types::F32));
        let sig = self.b.import_signature(sig);
        let callee = self.b.ins().iconst(self.ptr, f as i64);
        if !ty.is_vector() {
            let call = self.b.ins().call_indirect(sig, callee, args);
            return self.b.inst_results(call)[0];
        }
        let mut out = self.constant(ty, 0.0);
        for lane in 0..LANES as u8 {
            let lanes: Vec<Value> = args
                .iter()
                .map(|&v| self.b.ins().extractlane(v, lane))
                .collect();
            let call = self.b.ins().call_indirect(sig, callee, &lanes);
            let r = self.b.inst_results(call)[0];
            out = self.b.ins().insertlane(out, r, lane);
        }
        out
    }
}
