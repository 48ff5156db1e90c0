//! Inline vector math for the JIT's transcendentals.
//!
//! Exp, Erf, Gelu, Sigmoid, Tanh and GeluTanh are emitted as straight-line
//! Cranelift IR, written once over the type `ty`: `F32X4` in the vector loop,
//! `F32` in the scalar remainder, so both paths compute the same bits. Branches
//! are computed on every lane and blended with masks. NaN propagates through
//! every function; the accuracy each one reaches against the interpreter's
//! scalar functions is asserted by the tests at the end of this file.
//!
//! * `exp`: x is clamped to [-104, 89] (so the result saturates to +inf and
//!   underflows through the subnormals to 0), reduced as x = n·ln2 + r with a
//!   two-constant Cody–Waite split, e^r by the Cephes degree-7 polynomial, and
//!   scaled by 2^n built from integer bit patterns in two halves, so that
//!   subnormal results round only once.
//! * `erf`: |x| ≤ 0.921875: x + x·P(x²); otherwise sign(x)·(1 − e^(−Q(|x|)));
//!   the minimax polynomials are N. Juffa's faithfully rounded `erff` ones.
//! * `tanh`: |x| < 0.625: x + x³·P(x²) (a fitted minimax polynomial);
//!   otherwise sign(x)·(1 − 2/(e^(2|x|) + 1)).
//! * `sigmoid`: with e = e^(−|x|) and s = 1/(1 + e): s for x ≥ 0, e·s below,
//!   so neither sign overflows or loses the tiny values.
//! * `gelu`: x/2 · (1 + erf(x/√2)); `gelu_tanh`: x/2 · (1 + tanh(u)) written as
//!   x / (1 + e^(−2u)), which is the same function without the cancellation.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// e^r on [−ln2/2, ln2/2] is 1 + r + r²·P(r); P's coefficients, highest first.
const EXP_P: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// ln 2 split so that `n·LN2_HI` is exact for |n| ≤ 2¹⁴.
const LN2_HI: f32 = 0.693_359_4;
/// ln 2 − `LN2_HI`.
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// The bit pattern of `ROUND_MAGIC`.
const ROUND_MAGIC_BITS: i32 = 0x4B40_0000;

/// erf(x) = x + x·P(x²) for |x| ≤ `ERF_SPLIT`; P highest first.
const ERF_SMALL: [f32; 6] = [
    -5.991_049_7e-4,
    4.993_396e-3,
    -2.676_673_4e-2,
    1.128_180_3e-1,
    -3.761_248_6e-1,
    1.283_791_5e-1,
];
/// erf(t) = 1 − e^(−(t + t·Q(t))) for t = |x| > `ERF_SPLIT`; Q highest first.
const ERF_BIG: [f32; 7] = [
    1.729_489_3e-5,
    -3.832_086_8e-4,
    3.883_934_4e-3,
    -2.425_456e-2,
    1.067_778_5e-1,
    6.348_467e-1,
    1.287_175_1e-1,
];
/// Where erf switches polynomials.
const ERF_SPLIT: f32 = 0.921_875;

/// tanh(x) = x + x³·P(x²) for |x| < `TANH_SPLIT`; P highest first.
const TANH_SMALL: [f32; 5] = [
    -5.694_815_4e-3,
    2.062_907_8e-2,
    -5.373_627_7e-2,
    1.333_139_4e-1,
    -3.333_328e-1,
];
/// Where tanh switches from its polynomial to the exponential.
const TANH_SPLIT: f32 = 0.625;

/// Emits the math for values of type `ty` (`F32` or `F32X4`).
pub(super) struct VMath<'a, 'f> {
    /// Where the instructions go.
    pub b: &'a mut FunctionBuilder<'f>,
    /// `F32` or `F32X4`.
    pub ty: Type,
    /// Whether the target has a native fused multiply-add.
    pub fma: bool,
}

impl VMath<'_, '_> {
    fn c(&mut self, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        if self.ty.is_vector() {
            self.b.ins().splat(self.ty, s)
        } else {
            s
        }
    }

    fn ci(&mut self, v: i32) -> Value {
        let s = self.b.ins().iconst(types::I32, i64::from(v));
        if self.ty.is_vector() {
            self.b.ins().splat(self.ty.as_int(), s)
        } else {
            s
        }
    }

    fn bits_of(&mut self, v: Value) -> Value {
        self.b
            .ins()
            .bitcast(self.ty.as_int(), MemFlagsData::new(), v)
    }

    fn float_of(&mut self, v: Value) -> Value {
        self.b.ins().bitcast(self.ty, MemFlagsData::new(), v)
    }

    /// `a·b + c`, fused where the hardware can.
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// Horner's rule, coefficients highest degree first.
    fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        let mut acc = self.c(coeffs[0]);
        for &k in &coeffs[1..] {
            let k = self.c(k);
            acc = self.mul_add(acc, x, k);
        }
        acc
    }

    /// `if a <cc> b { x } else { y }`, lane by lane.
    fn select(&mut self, cc: FloatCC, a: Value, b: Value, x: Value, y: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        if self.ty.is_vector() {
            let m = self.b.ins().bitcast(self.ty, MemFlagsData::new(), m);
            self.b.ins().bitselect(m, x, y)
        } else {
            self.b.ins().select(m, x, y)
        }
    }

    /// `|v|` with the sign bit of `sign`.
    fn with_sign_of(&mut self, v: Value, sign: Value) -> Value {
        let mask = self.c(-0.0);
        let s = self.b.ins().band(sign, mask);
        let a = self.b.ins().fabs(v);
        self.b.ins().bor(a, s)
    }

    /// `2^n` for integer lanes `n` in [−126, 127].
    fn pow2(&mut self, n: Value) -> Value {
        let bias = self.ci(127);
        let e = self.b.ins().iadd(n, bias);
        let shift = self.b.ins().iconst(types::I32, 23);
        let bits = self.b.ins().ishl(e, shift);
        self.float_of(bits)
    }

    /// `eˣ`.
    pub fn exp(&mut self, x: Value) -> Value {
        let (lo, hi) = (self.c(-104.0), self.c(89.0));
        let x = self.select(FloatCC::LessThan, x, lo, lo, x);
        let x = self.select(FloatCC::GreaterThan, x, hi, hi, x);
        // t = magic + round(x/ln2): its low mantissa bits hold n.
        let (log2e, magic) = (self.c(std::f32::consts::LOG2_E), self.c(ROUND_MAGIC));
        let t = self.mul_add(x, log2e, magic);
        let n = self.b.ins().fsub(t, magic);
        let (hi_c, lo_c) = (self.c(-LN2_HI), self.c(-LN2_LO));
        let r = self.mul_add(n, hi_c, x);
        let r = self.mul_add(n, lo_c, r);
        let p = self.poly(r, &EXP_P);
        let r2 = self.b.ins().fmul(r, r);
        let p = self.mul_add(p, r2, r);
        let one = self.c(1.0);
        let p = self.b.ins().fadd(p, one);
        // 2ⁿ as 2^(n>>1) · 2^(n − n>>1): each half is a normal number for n
        // in [−150, 129], and the second product rounds once into the
        // subnormals or overflows to inf as eˣ does.
        let tb = self.bits_of(t);
        let magic_bits = self.ci(ROUND_MAGIC_BITS);
        let ni = self.b.ins().isub(tb, magic_bits);
        let one_i = self.b.ins().iconst(types::I32, 1);
        let n1 = self.b.ins().sshr(ni, one_i);
        let n2 = self.b.ins().isub(ni, n1);
        let (s1, s2) = (self.pow2(n1), self.pow2(n2));
        let y = self.b.ins().fmul(p, s1);
        self.b.ins().fmul(y, s2)
    }

    /// The error function.
    pub fn erf(&mut self, x: Value) -> Value {
        let t = self.b.ins().fabs(x);
        let s = self.b.ins().fmul(x, x);
        let q = self.poly(s, &ERF_SMALL);
        let small = self.mul_add(q, x, x);
        let q = self.poly(t, &ERF_BIG);
        let r = self.mul_add(q, t, t);
        let nr = self.b.ins().fneg(r);
        let e = self.exp(nr);
        let one = self.c(1.0);
        let big = self.b.ins().fsub(one, e);
        let big = self.with_sign_of(big, x);
        let split = self.c(ERF_SPLIT);
        self.select(FloatCC::GreaterThan, t, split, big, small)
    }

    /// Gelu with the exact erf: `x/2 · (1 + erf(x/√2))`.
    pub fn gelu(&mut self, x: Value) -> Value {
        let k = self.c(std::f32::consts::FRAC_1_SQRT_2);
        let z = self.b.ins().fmul(x, k);
        let e = self.erf(z);
        let half = self.c(0.5);
        let h = self.b.ins().fmul(x, half);
        self.mul_add(h, e, h)
    }

    /// `1/(1 + e⁻ˣ)`.
    pub fn sigmoid(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp(na);
        let one = self.c(1.0);
        let d = self.b.ins().fadd(one, e);
        let s = self.b.ins().fdiv(one, d);
        let neg = self.b.ins().fmul(e, s);
        let zero = self.c(0.0);
        self.select(FloatCC::LessThan, x, zero, neg, s)
    }

    /// `tanh x`.
    pub fn tanh(&mut self, x: Value) -> Value {
        let s = self.b.ins().fmul(x, x);
        let p = self.poly(s, &TANH_SMALL);
        let x3 = self.b.ins().fmul(x, s);
        let small = self.mul_add(x3, p, x);
        let a = self.b.ins().fabs(x);
        let a2 = self.b.ins().fadd(a, a);
        let e = self.exp(a2);
        let one = self.c(1.0);
        let d = self.b.ins().fadd(e, one);
        let two = self.c(2.0);
        let q = self.b.ins().fdiv(two, d);
        let big = self.b.ins().fsub(one, q);
        let big = self.with_sign_of(big, x);
        let split = self.c(TANH_SPLIT);
        self.select(FloatCC::LessThan, a, split, small, big)
    }

    /// Gelu with the tanh approximation, as `x / (1 + e^(−2u))` with
    /// `u = √(2/π)·(x + 0.044715·x³)`.
    pub fn gelu_tanh(&mut self, x: Value) -> Value {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let (c1, c3) = (
            self.c((-2.0 * k) as f32),
            self.c((-2.0 * k * 0.044715) as f32),
        );
        let s = self.b.ins().fmul(x, x);
        let m = self.mul_add(s, c3, c1);
        let m = self.b.ins().fmul(m, x);
        let e = self.exp(m);
        let one = self.c(1.0);
        let d = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(x, d)
    }
}

#[cfg(test)]
mod tests {
    use crate::jit::codegen::{loop_fn, LoopCompiler};
    use crate::program::{FusedLoop, Inst, UnOp};
    use egret_runtime::ops::{activation, elementwise};

    /// `op` on every `xs`, through the SIMD loop (plus its scalar remainder
    /// when the length is not a multiple of 4) or, with `scalar`, through the
    /// scalar path only (a stride-2 input cannot be vectorised).
    fn run(op: UnOp, xs: &[f32], scalar: bool) -> Vec<f32> {
        let n = xs.len();
        let stride = if scalar { 2 } else { 1 };
        let input: Vec<f32> = xs
            .iter()
            .flat_map(|&x| std::iter::once(x).chain(std::iter::repeat_n(0.0, stride - 1)))
            .collect();
        let l = FusedLoop {
            nodes: vec![],
            output: 0,
            inputs: vec![1],
            dims: vec![n],
            strides: vec![vec![stride]],
            body: vec![Inst::Load(0), Inst::Unary(op, 0)],
        };
        let mut c = LoopCompiler::new().unwrap();
        let id = c.compile(&l).unwrap();
        let module = c.finish().unwrap();
        let f = loop_fn(&module, id);
        let mut out = vec![f32::NAN; n];
        let ptrs = [
            out.as_mut_ptr().cast::<u8>(),
            input.as_ptr().cast_mut().cast(),
        ];
        // SAFETY: `out` holds n f32s and `input` n·stride, as the loop reads
        // and writes them; both outlive the call.
        unsafe { f(ptrs.as_ptr(), 0, n as u64) };
        out
    }

    /// A dense sweep of [−20, 20], a coarser one of [−120, 120], and the
    /// special values; an odd length so the scalar remainder runs too.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..=200_000).map(|i| -20.0 + i as f32 * 2e-4).collect();
        xs.extend((0..=24_000).map(|i| -120.0 + i as f32 * 1e-2));
        xs.extend((-300..=300).map(|i| (i as f32 * 0.1).exp2().copysign(i as f32)));
        for v in [
            0.0,
            f32::INFINITY,
            f32::NAN,
            1e-30,
            1e-40,
            f32::MIN_POSITIVE,
            1e-3,
            0.625,
            0.921_875,
            88.7,
            88.72,
            88.73,
            89.0,
            100.0,
            103.9,
            104.0,
            1e10,
            f32::MAX,
        ] {
            xs.extend([v, -v]);
        }
        if xs.len().is_multiple_of(4) {
            xs.push(0.5);
        }
        xs
    }

    /// Checks `op` against `reference` on both paths: NaN exactly where the
    /// reference is NaN, infinities exactly, and otherwise
    /// `|got − ref| / max(1, |ref|) ≤ abs` and, where `|ref| ≥ rel_floor`,
    /// `|got − ref| / |ref| ≤ rel`; prints the worst errors seen.
    fn check(op: UnOp, reference: fn(f32) -> f32, abs: f64, rel: f64, rel_floor: f32) {
        let xs = inputs();
        for scalar in [false, true] {
            let got = run(op, &xs, scalar);
            let (mut worst_abs, mut worst_rel) = ((0.0f64, 0.0f32), (0.0f64, 0.0f32));
            for (&x, &g) in xs.iter().zip(&got) {
                let r = reference(x);
                if r.is_nan() || r.is_infinite() {
                    assert!(
                        g.to_bits() == r.to_bits() || (g.is_nan() && r.is_nan()),
                        "{op:?}({x:e}) = {g:e}, expected {r:e}"
                    );
                    continue;
                }
                assert!(g.is_finite(), "{op:?}({x:e}) = {g:e}, expected {r:e}");
                let d = (f64::from(g) - f64::from(r)).abs();
                let a = d / f64::from(r.abs()).max(1.0);
                if a > worst_abs.0 {
                    worst_abs = (a, x);
                }
                if r.abs() >= rel_floor {
                    let e = d / f64::from(r.abs());
                    if e > worst_rel.0 {
                        worst_rel = (e, x);
                    }
                }
            }
            eprintln!(
                "{op:?} (scalar path: {scalar}): max abs error {:.3e} at x = {:e}, \
                 max rel error {:.3e} at x = {:e} (|ref| >= {rel_floor:e})",
                worst_abs.0, worst_abs.1, worst_rel.0, worst_rel.1
            );
            assert!(
                worst_abs.0 <= abs,
                "{op:?}: abs error {worst_abs:?} > {abs:e}"
            );
            assert!(
                worst_rel.0 <= rel,
                "{op:?}: rel error {worst_rel:?} > {rel:e}"
            );
        }
    }

    #[test]
    fn exp_matches_std() {
        check(UnOp::Exp, f32::exp, 2e-7, 2.5e-7, f32::MIN_POSITIVE);
        let got = run(
            UnOp::Exp,
            &[f32::NEG_INFINITY, -104.0, -200.0, 88.73, 89.0],
            false,
        );
        assert_eq!(got, [0.0, 0.0, 0.0, f32::INFINITY, f32::INFINITY]);
    }

    #[test]
    fn erf_matches_runtime() {
        check(UnOp::Erf, elementwise::erf::<f32>, 2e-7, 3e-7, 1e-30);
    }

    #[test]
    fn gelu_matches_runtime() {
        check(UnOp::Gelu, activation::gelu_erf::<f32>, 3e-7, 2e-5, 1e-2);
    }

    #[test]
    fn sigmoid_matches_runtime() {
        check(UnOp::Sigmoid, activation::sigmoid::<f32>, 2e-7, 4e-7, 1e-30);
    }

    #[test]
    fn tanh_matches_std() {
        check(UnOp::Tanh, f32::tanh, 2e-7, 3e-7, 1e-30);
    }

    #[test]
    fn gelu_tanh_matches_runtime() {
        check(
            UnOp::GeluTanh,
            activation::gelu_tanh::<f32>,
            3e-7,
            2e-5,
            1e-2,
        );
    }
}
