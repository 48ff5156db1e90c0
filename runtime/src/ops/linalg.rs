//! Kernels: MatMul, Gemm, Einsum, Det, MatMulInteger and QLinearMatMul.
//!
//! Every matrix product goes through [`MatMulElem::mm`]: f32/f64 through the
//! GEMM in [`crate::kernels::workprec`] (f16/bf16 are computed at f32), integer
//! types through a wrapping loop. Batched products index broadcast operands by
//! stride (no copies), and a batch of rows against one shared right operand is
//! folded into a single GEMM. The integer/quantized products are computed in
//! f64, which is exact for any realistic inner dimension (|a·b| < 2^16).

use crate::error::Result;
use crate::kernels::convert::{int_range, round_to_float};
use crate::kernels::strided::{strided_copy, strides_of};
use crate::kernels::workprec::{self, load, store, Mat, Real};
use crate::kernels::{broadcast_shapes, checked_len, input, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_dtypes, with_workprec};
use egret_ir::{DType, Tensor, Value};
use num_traits::{WrappingAdd, WrappingMul};
use std::borrow::Cow;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("MatMul", matmul);
    r.add("Gemm", gemm);
    r.add("Einsum", einsum);
    r.add("Det", det);
    r.add("MatMulInteger", matmul_integer);
    r.add("QLinearMatMul", qlinear_matmul);
}

/// An element type with a matrix product and an addition.
pub trait MatMulElem: Copy + Default + Send + Sync + 'static {
    /// `C[m×n] = A[m×k]·B[k×n]` with strided A and B (`x[r·rs + c·cs]`), C contiguous.
    #[allow(clippy::too_many_arguments)]
    fn mm(
        m: usize,
        k: usize,
        n: usize,
        a: Mat<'_, Self>,
        b: Mat<'_, Self>,
        c: &mut [Self],
    ) -> Result<()>;
    /// `self + o` (wrapping for integers).
    fn add(self, o: Self) -> Self;
    /// The elements of `t` as `Self` (borrowed when the dtype matches).
    fn load(t: &Tensor) -> Result<Cow<'_, [Self]>>;
}

macro_rules! float_mm {
    ($($t:ty),*) => {$(
        impl MatMulElem for $t {
            fn mm(m: usize, k: usize, n: usize, a: Mat<'_, Self>, b: Mat<'_, Self>, c: &mut [Self]) -> Result<()> {
                workprec::gemm(m, n, k, a, b, c, n, 1.0, 0.0)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn load(t: &Tensor) -> Result<Cow<'_, [Self]>> {
                load::<$t>(t)
            }
        }
    )*};
}
float_mm!(f32, f64);

/// Naive `C = A·B` with wrapping integer arithmetic (i-k-j order, so the inner
/// loop runs over contiguous C rows).
fn int_mm<T: Copy + Default + WrappingAdd + WrappingMul>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    c: &mut [T],
) -> Result<()> {
    let reach = |x: &Mat<'_, T>, r: usize, cc: usize| {
        r == 0 || cc == 0 || (r - 1) * x.rs + (cc - 1) * x.cs < x.data.len()
    };
    if !reach(&a, m, k) || !reach(&b, k, n) || c.len() < m * n {
        bail!("matmul operands do not cover a {m}x{k} by {k}x{n} product");
    }
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        row.fill(T::default());
        for p in 0..k {
            let av = a.data[i * a.rs + p * a.cs];
            for (j, cv) in row.iter_mut().enumerate() {
                *cv = cv.wrapping_add(&av.wrapping_mul(&b.data[p * b.rs + j * b.cs]));
            }
        }
    }
    Ok(())
}

macro_rules! int_mm_impl {
    ($($t:ty),*) => {$(
        impl MatMulElem for $t {
            fn mm(m: usize, k: usize, n: usize, a: Mat<'_, Self>, b: Mat<'_, Self>, c: &mut [Self]) -> Result<()> {
                int_mm(m, k, n, a, b, c)
            }
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn load(t: &Tensor) -> Result<Cow<'_, [Self]>> {
                Ok(Cow::Borrowed(t.as_slice::<$t>()?))
            }
        }
    )*};
}
int_mm_impl!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Shapes of a numpy `matmul`, with 1-D operands promoted.
struct MmPlan {
    out: Vec<usize>,
    batch: Vec<usize>,
    /// Per batch axis, A's and B's stride in matrices (0 = broadcast).
    a_bstr: Vec<usize>,
    b_bstr: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
}

/// Batch strides (in matrices) of `dims` right-aligned to `batch`; 0 where broadcast.
fn batch_strides(dims: &[usize], batch: &[usize]) -> Vec<usize> {
    let own = strides_of(dims);
    let off = batch.len() - dims.len();
    (0..batch.len())
        .map(|i| {
            if i < off || dims[i - off] == 1 {
                0
            } else {
                own[i - off]
            }
        })
        .collect()
}

impl MmPlan {
    fn new(a: &[usize], b: &[usize]) -> Result<MmPlan> {
        if a.is_empty() || b.is_empty() {
            bail!("MatMul operands must have rank >= 1");
        }
        let a2: Vec<usize> = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let b2: Vec<usize> = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (ar, br) = (a2.len(), b2.len());
        let (m, k, k2, n) = (a2[ar - 2], a2[ar - 1], b2[br - 2], b2[br - 1]);
        if k != k2 {
            bail!("MatMul inner dimensions differ: {a:?} x {b:?}");
        }
        let batch = broadcast_shapes(&a2[..ar - 2], &b2[..br - 2])?;
        let mut out = batch.clone();
        if a.len() > 1 {
            out.push(m);
        }
        if b.len() > 1 {
            out.push(n);
        }
        checked_len(&out)?;
        Ok(MmPlan {
            a_bstr: batch_strides(&a2[..ar - 2], &batch),
            b_bstr: batch_strides(&b2[..br - 2], &batch),
            out,
            batch,
            m,
            k,
            n,
        })
    }

    /// Run the batched product of contiguous operands `a` and `b`.
    fn run<T: MatMulElem>(&self, a: &[T], b: &[T]) -> Result<Vec<T>> {
        let (m, k, n) = (self.m, self.k, self.n);
        let nb: usize = self.batch.iter().product();
        let mut c = vec![T::default(); checked_len(&self.out)?];
        if c.is_empty() {
            return Ok(c);
        }
        if a.len()
            < m * k
                * self
                    .a_bstr
                    .iter()
                    .zip(&self.batch)
                    .map(|(&s, &d)| s * (d - 1))
                    .sum::<usize>()
                + m * k
            || b.len()
                < k * n
                    * self
                        .b_bstr
                        .iter()
                        .zip(&self.batch)
                        .map(|(&s, &d)| s * (d - 1))
                        .sum::<usize>()
                    + k * n
        {
            bail!("MatMul operand data shorter than its shape");
        }
        // A's batch is dense and B is shared: one GEMM with nb·m rows.
        if self.b_bstr.iter().all(|&s| s == 0) && self.a_bstr == strides_of(&self.batch) {
            return T::mm(nb * m, k, n, Mat::rows(a, k), Mat::rows(b, n), &mut c).map(|_| c);
        }
        let bstr = strides_of(&self.batch);
        for (bi, cb) in c.chunks_mut(m * n).enumerate() {
            let (mut ao, mut bo) = (0, 0);
            for (ax, &s) in bstr.iter().enumerate() {
                let idx = (bi / s) % self.batch[ax];
                ao += idx * self.a_bstr[ax];
                bo += idx * self.b_bstr[ax];
            }
            T::mm(
                m,
                k,
                n,
                Mat::rows(&a[ao * m * k..], k),
                Mat::rows(&b[bo * k * n..], n),
                cb,
            )?;
        }
        Ok(c)
    }
}

/// `numpy.matmul` of two contiguous operands: `(shape, data)`.
pub fn matmul_slices<T: MatMulElem>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
) -> Result<(Vec<usize>, Vec<T>)> {
    let p = MmPlan::new(ash, bsh)?;
    let c = p.run(a, b)?;
    Ok((p.out, c))
}

/// Run `$body` (which yields `(shape, Vec<$T>)`) with `$T` bound to the compute
/// type of a numeric dtype: floats at their working precision (f16/bf16 at f32),
/// integers natively. The result is stored back as `$dt`.
macro_rules! with_num {
    ($dt:expr, $T:ident => $body:block) => {{
        let dt: DType = $dt;
        if dt.is_float() {
            with_workprec!(dt, $T => {
                let (shape, v): (Vec<usize>, Vec<$T>) = $body;
                one(store::<$T>(dt, shape, v)?)
            })
        } else {
            for_dtypes!(dt, $T => {
                let (shape, v): (Vec<usize>, Vec<$T>) = $body;
                one(Tensor::from_vec(shape, v)?)
            }, [I8, I16, I32, I64, U8, U16, U32, U64])
        }
    }};
}

/// MatMul with numpy semantics.
fn matmul(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    if a.dtype() != b.dtype() {
        bail!(
            "MatMul operands differ in dtype: {} vs {}",
            a.dtype(),
            b.dtype()
        );
    }
    with_num!(a.dtype(), T => { matmul_slices::<T>(&T::load(a)?, a.shape(), &T::load(b)?, b.shape())? })
}

/// Gemm: `alpha·op(A)·op(B) + beta·C`, C unidirectionally broadcast to `[M, N]`.
fn gemm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    let c = opt_input(inputs, 2)?;
    let attrs = ctx.attrs();
    let ta = attrs.int_or("transA", 0)? != 0;
    let tb = attrs.int_or("transB", 0)? != 0;
    let (alpha, beta) = (
        attrs.float_or("alpha", 1.0)? as f64,
        attrs.float_or("beta", 1.0)? as f64,
    );
    if a.rank() != 2 || b.rank() != 2 {
        bail!("Gemm operands must be 2-D");
    }
    let (m, k) = if ta {
        (a.shape()[1], a.shape()[0])
    } else {
        (a.shape()[0], a.shape()[1])
    };
    let (kb, n) = if tb {
        (b.shape()[1], b.shape()[0])
    } else {
        (b.shape()[0], b.shape()[1])
    };
    if k != kb {
        bail!("Gemm inner dimensions differ: {k} vs {kb}");
    }
    let len = checked_len(&[m, n])?;
    with_workprec!(a.dtype(), W => {
        let (av, bv) = (load::<W>(a)?, load::<W>(b)?);
        let mut out = vec![W::default(); len];
        let mut beta_w = W::default();
        if let Some(c) = c.filter(|_| beta != 0.0) {
            let shape = broadcast_shapes(c.shape(), &[m, n])?;
            if shape != [m, n] {
                bail!("Gemm C {:?} does not broadcast to [{m}, {n}]", c.shape());
            }
            let cv = load::<W>(c)?;
            let cs = c.shape();
            let (cr, cc) = match cs.len() {
                0 => (1, 1),
                1 => (1, cs[0]),
                _ => (cs[cs.len() - 2], cs[cs.len() - 1]),
            };
            for (i, row) in out.chunks_mut(n.max(1)).enumerate() {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = cv[(if cr == 1 { 0 } else { i }) * cc + if cc == 1 { 0 } else { j }];
                }
            }
            beta_w = W::of(beta);
        }
        let am = if ta { Mat::rows_t(&av, m) } else { Mat::rows(&av, k) };
        let bm = if tb { Mat::rows_t(&bv, k) } else { Mat::rows(&bv, n) };
        workprec::gemm(m, n, k, am, bm, &mut out, n, W::of(alpha), beta_w)?;
        one(store::<W>(a.dtype(), vec![m, n], out)?)
    })
}

/// Det of the trailing `n×n` matrices, by LU decomposition with partial pivoting (in f64).
fn det(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let r = x.rank();
    if r < 2 || x.shape()[r - 1] != x.shape()[r - 2] {
        bail!("Det needs square trailing matrices, got {:?}", x.shape());
    }
    let n = x.shape()[r - 1];
    let v = x.to_f64_vec()?;
    let out: Vec<f64> = if n == 0 {
        vec![1.0; x.shape()[..r - 2].iter().product()]
    } else {
        v.chunks(n * n).map(|mat| det_lu(mat.to_vec(), n)).collect()
    };
    let shape = x.shape()[..r - 2].to_vec();
    with_workprec!(x.dtype(), W => {
        one(store::<W>(x.dtype(), shape, out.into_iter().map(|d| W::of(round_to_float(x.dtype(), d))).collect())?)
    })
}

/// Determinant of a row-major `n×n` matrix.
fn det_lu(mut a: Vec<f64>, n: usize) -> f64 {
    let mut det = 1.0;
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        if a[piv * n + col] == 0.0 {
            return 0.0;
        }
        if piv != col {
            for j in 0..n {
                a.swap(piv * n + j, col * n + j);
            }
            det = -det;
        }
        let p = a[col * n + col];
        det *= p;
        for i in col + 1..n {
            let f = a[i * n + col] / p;
            for j in col..n {
                a[i * n + j] -= f * a[col * n + j];
            }
        }
    }
    det
}

// ---------------------------------------------------------------- Einsum

/// An operand during einsum evaluation: contiguous data with one label per axis.
struct Operand<T> {
    labels: Vec<u32>,
    shape: Vec<usize>,
    data: Vec<T>,
}

/// Label code of ellipsis axis `i` (right-aligned over the widest ellipsis).
const ELL: u32 = 1 << 16;

/// Parse one einsum term into label codes, expanding `...` to `rank - named` axes.
fn parse_term(term: &str, rank: usize, ell_rank: usize) -> Result<Vec<u32>> {
    let (pre, post) = match term.split_once("...") {
        Some((p, q)) => (p, Some(q)),
        None => (term, None),
    };
    let check = |s: &str| -> Result<Vec<u32>> {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c as u32)
                } else {
                    bail!("bad einsum label {c:?}")
                }
            })
            .collect()
    };
    let mut labels = check(pre)?;
    if let Some(q) = post {
        let tail = check(q)?;
        let e = rank.checked_sub(labels.len() + tail.len()).ok_or_else(|| {
            crate::error::RuntimeError::msg(format!("einsum term {term} exceeds rank {rank}"))
        })?;
        if e > ell_rank {
            bail!("einsum ellipsis rank mismatch");
        }
        labels.extend((0..e).map(|i| ELL + (ell_rank - e + i) as u32));
        labels.extend(tail);
    }
    if labels.len() != rank {
        bail!("einsum term {term} does not match rank {rank}");
    }
    Ok(labels)
}

/// Sum out every axis of `op` whose label is not in `keep`.
fn reduce_labels<T: MatMulElem>(op: Operand<T>, keep: &[u32]) -> Result<Operand<T>> {
    let (kept, gone): (Vec<usize>, Vec<usize>) =
        (0..op.labels.len()).partition(|&i| keep.contains(&op.labels[i]));
    if gone.is_empty() {
        return Ok(op);
    }
    let order: Vec<usize> = kept.iter().chain(&gone).copied().collect();
    let op = permute_op(op, &order)?;
    let inner: usize = op.shape[kept.len()..].iter().product();
    let shape: Vec<usize> = op.shape[..kept.len()].to_vec();
    let data: Vec<T> = if inner == 0 {
        vec![T::default(); checked_len(&shape)?]
    } else {
        op.data
            .chunks(inner)
            .map(|c| c.iter().fold(T::default(), |s, &x| s.add(x)))
            .collect()
    };
    Ok(Operand {
        labels: op.labels[..kept.len()].to_vec(),
        shape,
        data,
    })
}

/// Reorder the axes of `op`: new axis `i` is old axis `order[i]`.
fn permute_op<T: MatMulElem>(op: Operand<T>, order: &[usize]) -> Result<Operand<T>> {
    if order.iter().enumerate().all(|(i, &o)| i == o) {
        return Ok(op);
    }
    let st = strides_of(&op.shape);
    let shape: Vec<usize> = order.iter().map(|&o| op.shape[o]).collect();
    let strides: Vec<isize> = order.iter().map(|&o| st[o] as isize).collect();
    let data = strided_copy(&op.data, 0, &shape, &strides)?;
    Ok(Operand {
        labels: order.iter().map(|&o| op.labels[o]).collect(),
        shape,
        data,
    })
}

/// Axis positions of `labels` in `op`.
fn positions<T>(op: &Operand<T>, labels: &[u32]) -> Vec<usize> {
    labels
        .iter()
        .filter_map(|l| op.labels.iter().position(|m| m == l))
        .collect()
}

/// Contract two operands over their shared labels that are not in `later`
/// (labels still needed by the output or by operands not yet contracted).
fn contract<T: MatMulElem>(x: Operand<T>, y: Operand<T>, later: &[u32]) -> Result<Operand<T>> {
    let keep_x: Vec<u32> = y.labels.iter().chain(later).copied().collect();
    let keep_y: Vec<u32> = x.labels.iter().chain(later).copied().collect();
    let (x, y) = (reduce_labels(x, &keep_x)?, reduce_labels(y, &keep_y)?);
    let batch: Vec<u32> = x
        .labels
        .iter()
        .filter(|l| y.labels.contains(l) && later.contains(l))
        .copied()
        .collect();
    let sum: Vec<u32> = x
        .labels
        .iter()
        .filter(|l| y.labels.contains(l) && !later.contains(l))
        .copied()
        .collect();
    let left: Vec<u32> = x
        .labels
        .iter()
        .filter(|l| !y.labels.contains(l))
        .copied()
        .collect();
    let right: Vec<u32> = y
        .labels
        .iter()
        .filter(|l| !x.labels.contains(l))
        .copied()
        .collect();
    for l in batch.iter().chain(&sum) {
        let (i, j) = (positions(&x, &[*l]), positions(&y, &[*l]));
        if x.shape[i[0]] != y.shape[j[0]] {
            bail!(
                "einsum label size mismatch: {} vs {}",
                x.shape[i[0]],
                y.shape[j[0]]
            );
        }
    }
    let size = |op: &Operand<T>, ls: &[u32]| -> usize {
        positions(op, ls).iter().map(|&i| op.shape[i]).product()
    };
    let (nb, m, k, n) = (
        size(&x, &batch),
        size(&x, &left),
        size(&x, &sum),
        size(&y, &right),
    );
    let mut shape: Vec<usize> = positions(&x, &batch)
        .iter()
        .chain(&positions(&x, &left))
        .map(|&i| x.shape[i])
        .collect();
    shape.extend(positions(&y, &right).iter().map(|&i| y.shape[i]));
    let xo = positions(&x, &[batch.as_slice(), &left, &sum].concat());
    let yo = positions(&y, &[batch.as_slice(), &sum, &right].concat());
    let (x, y) = (permute_op(x, &xo)?, permute_op(y, &yo)?);
    let data = MmPlan::new(&[nb, m, k], &[nb, k, n])?.run(&x.data, &y.data)?;
    Ok(Operand {
        labels: [batch, left, right].concat(),
        shape,
        data,
    })
}

/// Einsum of contiguous operands `(shape, data)`.
pub fn einsum_slices<T: MatMulElem>(
    equation: &str,
    ops: Vec<(&[usize], &[T])>,
) -> Result<(Vec<usize>, Vec<T>)> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ops.len() {
        bail!(
            "einsum equation has {} operands, got {}",
            terms.len(),
            ops.len()
        );
    }
    let named = |t: &str| t.replace("...", "").chars().count();
    let ell_rank = terms
        .iter()
        .zip(&ops)
        .filter(|(t, _)| t.contains("..."))
        .map(|(t, (s, _))| s.len().saturating_sub(named(t)))
        .max()
        .unwrap_or(0);
    // Labels and global sizes (a size-1 axis broadcasts against a larger one).
    let mut parsed = Vec::new();
    let mut sizes: Vec<(u32, usize)> = Vec::new();
    let mut count: Vec<(u32, usize)> = Vec::new();
    for (t, (s, _)) in terms.iter().zip(&ops) {
        let labels = parse_term(t, s.len(), ell_rank)?;
        for (&l, &d) in labels.iter().zip(s.iter()) {
            match sizes.iter_mut().find(|(m, _)| *m == l) {
                Some((_, e)) if *e == d || d == 1 => {}
                Some((_, e)) if *e == 1 => *e = d,
                Some((_, e)) => bail!("einsum label size mismatch: {e} vs {d}"),
                None => sizes.push((l, d)),
            }
        }
        for &l in &labels {
            match count.iter_mut().find(|(m, _)| *m == l) {
                Some((_, c)) => *c += 1,
                None => count.push((l, 1)),
            }
        }
        parsed.push(labels);
    }
    let out: Vec<u32> = match rhs {
        Some(r) => parse_term(
            r,
            named(r) + if r.contains("...") { ell_rank } else { 0 },
            ell_rank,
        )?,
        None => {
            let mut letters: Vec<u32> = count
                .iter()
                .filter(|&&(l, c)| c == 1 && l < ELL)
                .map(|&(l, _)| l)
                .collect();
            letters.sort_unstable();
            (0..ell_rank as u32)
                .map(|i| ELL + i)
                .chain(letters)
                .collect()
        }
    };
    for l in &out {
        if !sizes.iter().any(|(m, _)| m == l) {
            bail!("einsum output label not in any input");
        }
    }
    // Diagonals and broadcasts: one strided view per operand with unique labels.
    let mut operands = Vec::new();
    for (labels, (shape, data)) in parsed.into_iter().zip(ops) {
        let st = strides_of(shape);
        let mut u: Vec<u32> = Vec::new();
        let mut ush: Vec<usize> = Vec::new();
        let mut ust: Vec<isize> = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            let global = sizes.iter().find(|(m, _)| *m == l).map_or(1, |&(_, d)| d);
            let stride = if shape[i] == 1 && global != 1 {
                0
            } else {
                st[i] as isize
            };
            match u.iter().position(|&m| m == l) {
                Some(j) if ush[j] == shape[i] || shape[i] == 1 => ust[j] += stride,
                Some(_) => bail!("einsum repeated label with different sizes"),
                None => {
                    u.push(l);
                    ush.push(global);
                    ust.push(stride);
                }
            }
        }
        checked_len(&ush)?;
        let data = strided_copy(data, 0, &ush, &ust)?;
        operands.push(Operand {
            labels: u,
            shape: ush,
            data,
        });
    }
    let mut rest = operands.into_iter();
    let Some(first) = rest.next() else {
        bail!("einsum needs at least one operand")
    };
    let remaining: Vec<Operand<T>> = rest.collect();
    let mut acc = first;
    let mut later_labels: Vec<Vec<u32>> = Vec::new();
    for i in 0..remaining.len() {
        let mut v: Vec<u32> = out.clone();
        for r in &remaining[i + 1..] {
            v.extend(&r.labels);
        }
        later_labels.push(v);
    }
    for (y, later) in remaining.into_iter().zip(later_labels) {
        acc = contract(acc, y, &later)?;
    }
    let acc = reduce_labels(acc, &out)?;
    let order = positions(&acc, &out);
    if order.len() != out.len() {
        bail!("einsum output labels must be distinct");
    }
    let acc = permute_op(acc, &order)?;
    Ok((acc.shape, acc.data))
}

/// Einsum.
fn einsum(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let eq = ctx.attrs().string_or("equation", "")?.to_string();
    let ts: Vec<&Tensor> = (0..inputs.len())
        .map(|i| input(inputs, i))
        .collect::<Result<_>>()?;
    let Some(first) = ts.first() else {
        bail!("Einsum needs inputs")
    };
    with_num!(first.dtype(), T => {
        let loaded: Vec<Cow<'_, [T]>> = ts.iter().map(|t| T::load(t)).collect::<Result<_>>()?;
        einsum_slices::<T>(
            &eq,
            ts.iter()
                .zip(&loaded)
                .map(|(t, d)| (t.shape(), &d[..]))
                .collect(),
        )?
    })
}

// ------------------------------------------------------- Integer matmuls

/// `t - zero_point` as f64, where the zero point is a scalar or indexed by
/// `(flat_index / div) % modulo` (per-row or per-column).
fn centered(t: &Tensor, zp: Option<&Tensor>, div: usize, modulo: usize) -> Result<Vec<f64>> {
    let v = t.to_f64_vec()?;
    let Some(zp) = zp else { return Ok(v) };
    let z = zp.to_f64_vec()?;
    Ok(match z.len() {
        0 => v,
        1 => v.into_iter().map(|x| x - z[0]).collect(),
        l if l == modulo => v
            .into_iter()
            .enumerate()
            .map(|(i, x)| x - z[(i / div.max(1)) % l])
            .collect(),
        l => bail!("zero point of {l} values does not match axis size {modulo}"),
    })
}

/// The exact integer product `(A - a_zp)·(B - b_zp)` in f64, with A's zero point
/// per row (or scalar) and B's per column (or scalar). Returns `(shape, m, n, values)`.
fn centered_matmul(
    a: &Tensor,
    azp: Option<&Tensor>,
    b: &Tensor,
    bzp: Option<&Tensor>,
) -> Result<(Vec<usize>, usize, usize, Vec<f64>)> {
    let plan = MmPlan::new(a.shape(), b.shape())?;
    let av = centered(a, azp, plan.k, plan.m)?;
    let bv = centered(b, bzp, 1, plan.n)?;
    let c = plan.run(&av, &bv)?;
    Ok((plan.out, plan.m, plan.n, c))
}

/// MatMulInteger: `(A - a_zp)·(B - b_zp)` as i32.
fn matmul_integer(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    let (shape, _, _, c) = centered_matmul(a, opt_input(inputs, 2)?, b, opt_input(inputs, 3)?)?;
    one(Tensor::from_vec(
        shape,
        c.into_iter().map(|x| x as i32).collect::<Vec<i32>>(),
    )?)
}

/// Round half to even, add the zero point, saturate to the range of `dt`.
pub fn requantize(x: f64, zp: f64, dt: DType) -> Result<f64> {
    let (lo, hi) = int_range(dt)
        .ok_or_else(|| crate::error::RuntimeError::msg(format!("cannot quantize to {dt}")))?;
    Ok((x.round_ties_even() + zp).clamp(lo as f64, hi as f64))
}

/// A tensor of integer dtype `dt` from (already saturated) integral f64 values.
pub fn int_tensor(dt: DType, shape: Vec<usize>, v: &[f64]) -> Result<Tensor> {
    for_dtypes!(dt, T => {
        Ok(Tensor::from_vec(shape, v.iter().map(|&x| x as T).collect::<Vec<T>>())?)
    }, [I8, U8, I16, U16, I32, U32])
}

/// QLinearMatMul: requantized `(A - a_zp)·(B - b_zp)·a_scale·b_scale/y_scale + y_zp`
/// (scales per tensor, A's per row or B's per column).
fn qlinear_matmul(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (a, a_s, b, b_s, y_s) = (
        input(inputs, 0)?,
        input(inputs, 1)?,
        input(inputs, 3)?,
        input(inputs, 4)?,
        input(inputs, 6)?,
    );
    let yzp = opt_input(inputs, 7)?;
    let (shape, m, n, c) = centered_matmul(a, opt_input(inputs, 2)?, b, opt_input(inputs, 5)?)?;
    let sdt = a_s.dtype();
    let (asv, bsv, ysv) = (a_s.to_f64_vec()?, b_s.to_f64_vec()?, y_s.to_f64_vec()?);
    let pick = |v: &[f64], i: usize| -> Result<f64> {
        match v.len() {
            1 => Ok(v[0]),
            l if i < l => Ok(v[i]),
            l => bail!("scale of {l} values does not match the product"),
        }
    };
    let ys = pick(&ysv, 0)?;
    let out_dt = yzp.map_or(a.dtype(), |t| t.dtype());
    let z = yzp
        .map(|t| t.to_f64_vec())
        .transpose()?
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0);
    let out = c
        .iter()
        .enumerate()
        .map(|(i, &acc)| {
            let (row, col) = ((i / n.max(1)) % m.max(1), i % n.max(1));
            let scale = round_to_float(
                sdt,
                round_to_float(sdt, pick(&asv, row)? * pick(&bsv, col)?) / ys,
            );
            requantize(acc * scale, z, out_dt)
        })
        .collect::<Result<Vec<f64>>>()?;
    one(int_tensor(out_dt, shape, &out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_broadcast_matmul() {
        // A: [2,1,2,2], B: [3,2,1] -> [2,3,2,1]
        let a: Vec<f32> = vec![1., 2., 3., 4., 5., 6., 7., 8.];
        let b: Vec<f32> = vec![1., 0., 0., 1., 1., 1.];
        let (s, c) = matmul_slices(&a, &[2, 1, 2, 2], &b, &[3, 2, 1]).unwrap();
        assert_eq!(s, vec![2, 3, 2, 1]);
        assert_eq!(c, vec![1., 3., 2., 4., 3., 7., 5., 7., 6., 8., 11., 15.]);
    }

    #[test]
    fn one_d_operands_and_ints() {
        let (s, c) = matmul_slices(&[1i32, 2, 3], &[3], &[4, 5, 6], &[3]).unwrap();
        assert!(s.is_empty());
        assert_eq!(c, vec![32]);
        let (s, c) = matmul_slices(&[1i64, 2], &[2], &[1, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
        assert_eq!((s, c), (vec![3], vec![9, 12, 15]));
        let (s, c) = matmul_slices(&[255u8, 1], &[1, 2], &[2, 3], &[2, 1]).unwrap();
        // 255·2 + 1·3 = 513 wraps to 1, as integer MatMul does in onnxruntime.
        assert_eq!((s, c), (vec![1, 1], vec![1u8]));
    }

    #[test]
    fn einsum_forms() {
        let m: Vec<f64> = (1..=6).map(|v| v as f64).collect(); // [2,3]
        let (s, t) = einsum_slices("ij->ji", vec![(&[2, 3][..], &m[..])]).unwrap();
        assert_eq!((s, t), (vec![3, 2], vec![1., 4., 2., 5., 3., 6.]));
        let (s, t) = einsum_slices("ij", vec![(&[2, 3][..], &m[..])]).unwrap();
        assert_eq!((s, t), (vec![2, 3], m.clone()));
        let (s, t) = einsum_slices("ij->", vec![(&[2, 3][..], &m[..])]).unwrap();
        assert_eq!((s, t), (vec![], vec![21.]));
        let sq: Vec<f64> = (0..9).map(|v| v as f64).collect();
        let (_, d) = einsum_slices("ii->i", vec![(&[3, 3][..], &sq[..])]).unwrap();
        assert_eq!(d, vec![0., 4., 8.]);
        let (_, tr) = einsum_slices("ii", vec![(&[3, 3][..], &sq[..])]).unwrap();
        assert_eq!(tr, vec![12.]);
        let (s, p) = einsum_slices(
            "ij,jk->ik",
            vec![(&[2, 3][..], &m[..]), (&[3, 3][..], &sq[..])],
        )
        .unwrap();
        let (s2, p2) = matmul_slices(&m, &[2, 3], &sq, &[3, 3]).unwrap();
        assert_eq!((s, p), (s2, p2));
        let (s, p) = einsum_slices(
            "...j,...j->...",
            vec![(&[2, 3][..], &m[..]), (&[2, 3][..], &m[..])],
        )
        .unwrap();
        assert_eq!((s, p), (vec![2], vec![14., 77.]));
        let (s, p) = einsum_slices(
            "i,j,k",
            vec![
                (&[1][..], &[2.][..]),
                (&[2][..], &[1., 3.][..]),
                (&[1][..], &[5.][..]),
            ],
        )
        .unwrap();
        assert_eq!((s, p), (vec![1, 2, 1], vec![10., 30.]));
    }

    #[test]
    fn det_and_requantize() {
        assert!((det_lu(vec![4., 7., 2., 6.], 2) - 10.0).abs() < 1e-12);
        assert!((det_lu(vec![0., 1., 1., 0.], 2) + 1.0).abs() < 1e-12);
        assert_eq!(requantize(2.5, 0.0, DType::U8).unwrap(), 2.0);
        assert_eq!(requantize(3.5, 0.0, DType::U8).unwrap(), 4.0);
        assert_eq!(requantize(300.0, 10.0, DType::U8).unwrap(), 255.0);
        assert_eq!(requantize(-300.0, 0.0, DType::I8).unwrap(), -128.0);
    }
}
