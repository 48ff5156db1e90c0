//! Sliding-window geometry shared by convolutions and pooling, plus N-D
//! `im2col` / `col2im`.
//!
//! A [`Window`] resolves the ONNX attributes `kernel_shape`, `strides`,
//! `dilations`, `pads`, `auto_pad` and `ceil_mode` against a concrete input,
//! giving per-axis padding and output extents. [`im2col`] unrolls one image's
//! patches into a `[C·∏k, ∏out]` matrix (so a convolution becomes one GEMM) and
//! [`col2im`] scatter-adds such a matrix back into an image (ConvTranspose,
//! Col2Im).

use crate::bail;
use crate::error::Result;
use egret_ir::Attrs;

/// Resolved sliding-window geometry over `N` spatial axes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel extent per axis.
    pub kernel: Vec<usize>,
    /// Strides.
    pub strides: Vec<usize>,
    /// Dilations.
    pub dilations: Vec<usize>,
    /// Padding before each axis.
    pub pad_begin: Vec<usize>,
    /// Padding after each axis.
    pub pad_end: Vec<usize>,
    /// Input (image) extents.
    pub input: Vec<usize>,
    /// Output extents (number of window positions per axis).
    pub output: Vec<usize>,
}

/// A list attribute of `n` non-negative ints, `default` when absent.
pub fn usizes_attr(attrs: &Attrs, name: &str, n: usize, default: usize) -> Result<Vec<usize>> {
    match attrs.ints_opt(name)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n && v.iter().all(|&x| x >= 0) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => bail!("attribute {name} = {v:?} is not {n} non-negative ints"),
    }
}

impl Window {
    /// Resolve the window attributes of a Conv or pooling node for an input with
    /// spatial extents `input` and kernel extents `kernel`. `ceil_mode` is read
    /// from the attributes (pools only; Conv has none).
    pub fn from_attrs(attrs: &Attrs, input: &[usize], kernel: Vec<usize>) -> Result<Window> {
        let n = input.len();
        if kernel.len() != n {
            bail!(
                "kernel rank {} does not match spatial rank {n}",
                kernel.len()
            );
        }
        let strides = usizes_attr(attrs, "strides", n, 1)?;
        let dilations = usizes_attr(attrs, "dilations", n, 1)?;
        let pads = usizes_attr(attrs, "pads", 2 * n, 0)?;
        if strides
            .iter()
            .chain(&dilations)
            .chain(&kernel)
            .any(|&v| v == 0)
        {
            bail!("kernel, strides and dilations must be >= 1");
        }
        let ceil = attrs.int_or("ceil_mode", 0)? != 0;
        let auto_pad = attrs.string_or("auto_pad", "NOTSET")?;
        let mut w = Window {
            kernel,
            strides,
            dilations,
            pad_begin: pads[..n].to_vec(),
            pad_end: pads[n..].to_vec(),
            input: input.to_vec(),
            output: vec![0; n],
        };
        for (i, &x) in input.iter().enumerate().take(n) {
            let s = w.strides[i];
            let ek = w.extent(i);
            match auto_pad {
                "SAME_UPPER" | "SAME_LOWER" => {
                    let out = x.div_ceil(s);
                    let total = ((out.max(1) - 1) * s + ek).saturating_sub(x);
                    let small = total / 2;
                    let (b, e) = if auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    w.pad_begin[i] = b;
                    w.pad_end[i] = e;
                    w.output[i] = out;
                }
                "VALID" | "NOTSET" | "" => {
                    if auto_pad == "VALID" {
                        w.pad_begin[i] = 0;
                        w.pad_end[i] = 0;
                    }
                    let padded = x + w.pad_begin[i] + w.pad_end[i];
                    if padded < ek {
                        bail!("kernel extent {ek} exceeds padded input {padded} on axis {i}");
                    }
                    let span = padded - ek;
                    w.output[i] = if ceil {
                        let mut o = span.div_ceil(s) + 1;
                        // The last window must start inside the input or its begin padding.
                        if (o - 1) * s >= x + w.pad_begin[i] {
                            o -= 1;
                        }
                        o
                    } else {
                        span / s + 1
                    };
                }
                other => bail!("unknown auto_pad {other}"),
            }
        }
        Ok(w)
    }

    /// Number of spatial axes.
    pub fn rank(&self) -> usize {
        self.kernel.len()
    }

    /// Dilated kernel extent on axis `i`.
    pub fn extent(&self, i: usize) -> usize {
        (self.kernel[i] - 1) * self.dilations[i] + 1
    }

    /// Number of kernel taps, `∏kernel`.
    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Number of output positions, `∏output`.
    pub fn output_size(&self) -> usize {
        self.output.iter().product()
    }

    /// Number of input positions, `∏input`.
    pub fn input_size(&self) -> usize {
        self.input.iter().product()
    }

    /// The range of output positions `o` on axis `i` whose input coordinate
    /// `o·s + k·d - pad` for kernel tap `k` lies inside the input, and that
    /// coordinate for `o = 0` (possibly negative).
    pub fn valid_range(&self, i: usize, k: usize) -> (usize, usize, isize) {
        let s = self.strides[i] as isize;
        let off = (k * self.dilations[i]) as isize - self.pad_begin[i] as isize;
        let x = self.input[i] as isize;
        let out = self.output[i] as isize;
        // o·s + off >= 0  →  o >= ceil(-off / s)
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        // o·s + off < x   →  o <= (x - 1 - off) / s
        let hi = if x - 1 - off < 0 {
            0
        } else {
            (x - 1 - off) / s + 1
        };
        let (lo, hi) = (lo.min(out), hi.min(out));
        (lo as usize, hi.max(lo) as usize, off)
    }
}

/// Call `f` for every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// One line of the unrolled matrix: `col[col_start + o]` pairs with
/// `img[img_base + o·stride]` for `o` in `lo..hi` (other `o` hit padding).
struct Line {
    col_start: usize,
    img_base: isize,
    lo: usize,
    hi: usize,
}

/// Walk every `(channel, kernel tap, outer output position)` line of the
/// `[channels·∏k, ∏out]` matrix for an image of `channels × ∏input`.
fn for_each_line(channels: usize, w: &Window, mut f: impl FnMut(Line)) {
    let n = w.rank();
    let last = n - 1;
    let (ow, img_size, out_size) = (w.output[last], w.input_size(), w.output_size());
    let mut in_strides = vec![1usize; n];
    for i in (0..last).rev() {
        in_strides[i] = in_strides[i + 1] * w.input[i + 1];
    }
    let mut row = 0;
    for c in 0..channels {
        for_each_index(&w.kernel, |k| {
            let (lo, hi, off_last) = w.valid_range(last, k[last]);
            let mut outer_line = 0;
            for_each_index(&w.output[..last], |o| {
                let col_start = row * out_size + outer_line * ow;
                outer_line += 1;
                let mut base = (c * img_size) as isize + off_last;
                for i in 0..last {
                    let coord = (o[i] * w.strides[i] + k[i] * w.dilations[i]) as isize
                        - w.pad_begin[i] as isize;
                    if coord < 0 || coord >= w.input[i] as isize {
                        f(Line {
                            col_start,
                            img_base: 0,
                            lo: 0,
                            hi: 0,
                        });
                        return;
                    }
                    base += coord * in_strides[i] as isize;
                }
                f(Line {
                    col_start,
                    img_base: base,
                    lo,
                    hi,
                });
            });
            row += 1;
        });
    }
}

/// Unroll `img` (`channels × ∏input`, row-major) into `cols`
/// (`[channels·∏kernel, ∏output]`); padded positions get `pad`.
pub fn im2col<T: Copy>(
    img: &[T],
    channels: usize,
    w: &Window,
    pad: T,
    cols: &mut [T],
) -> Result<()> {
    if img.len() < channels * w.input_size()
        || cols.len() < channels * w.kernel_size() * w.output_size()
    {
        bail!("im2col: buffer sizes do not match the window");
    }
    let ow = w.output[w.rank() - 1];
    let s = w.strides[w.rank() - 1];
    for_each_line(channels, w, |l| {
        let dst = &mut cols[l.col_start..l.col_start + ow];
        dst[..l.lo].fill(pad);
        dst[l.hi..].fill(pad);
        if l.hi > l.lo {
            let start = (l.img_base + (l.lo * s) as isize) as usize;
            if s == 1 {
                dst[l.lo..l.hi].copy_from_slice(&img[start..start + (l.hi - l.lo)]);
            } else {
                for (j, d) in dst[l.lo..l.hi].iter_mut().enumerate() {
                    *d = img[start + j * s];
                }
            }
        }
    });
    Ok(())
}

/// Scatter-add `cols` (`[channels·∏kernel, ∏output]`) into `img`
/// (`channels × ∏input`); contributions that fall on padding are dropped.
pub fn col2im<T: Copy + std::ops::AddAssign>(
    cols: &[T],
    channels: usize,
    w: &Window,
    img: &mut [T],
) -> Result<()> {
    if img.len() < channels * w.input_size()
        || cols.len() < channels * w.kernel_size() * w.output_size()
    {
        bail!("col2im: buffer sizes do not match the window");
    }
    let s = w.strides[w.rank() - 1];
    for_each_line(channels, w, |l| {
        if l.hi > l.lo {
            let start = (l.img_base + (l.lo * s) as isize) as usize;
            for (j, &v) in cols[l.col_start + l.lo..l.col_start + l.hi]
                .iter()
                .enumerate()
            {
                img[start + j * s] += v;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::attr::Attr;

    fn attrs(list: &[(&str, Attr)]) -> Attrs {
        let mut a = Attrs::default();
        for (k, v) in list {
            a.set(k, v.clone());
        }
        a
    }

    #[test]
    fn same_upper_and_lower_pads() {
        let a = attrs(&[
            ("auto_pad", Attr::String("SAME_UPPER".into())),
            ("strides", Attr::Ints(vec![2])),
        ]);
        let w = Window::from_attrs(&a, &[5], vec![4]).unwrap();
        assert_eq!((w.output[0], w.pad_begin[0], w.pad_end[0]), (3, 1, 2));
        let a = attrs(&[
            ("auto_pad", Attr::String("SAME_LOWER".into())),
            ("strides", Attr::Ints(vec![2])),
        ]);
        let w = Window::from_attrs(&a, &[5], vec![4]).unwrap();
        assert_eq!((w.output[0], w.pad_begin[0], w.pad_end[0]), (3, 2, 1));
    }

    #[test]
    fn ceil_mode_drops_window_starting_in_end_pad() {
        // in 4, k 3, s 2, pads 0/1: floor 2, ceil would be 3 but the third window starts at 4 >= 4+0.
        let a = attrs(&[
            ("ceil_mode", Attr::Int(1)),
            ("strides", Attr::Ints(vec![2])),
            ("pads", Attr::Ints(vec![0, 1])),
        ]);
        let w = Window::from_attrs(&a, &[4], vec![3]).unwrap();
        assert_eq!(w.output, vec![2]);
        let a = attrs(&[
            ("ceil_mode", Attr::Int(1)),
            ("strides", Attr::Ints(vec![2])),
        ]);
        let w = Window::from_attrs(&a, &[4], vec![1]).unwrap();
        assert_eq!(w.output, vec![2]);
        let w = Window::from_attrs(&a, &[5], vec![2]).unwrap();
        assert_eq!(w.output, vec![3]);
    }

    #[test]
    fn im2col_then_col2im_counts_overlaps() {
        // 1 channel 3x3 image, 2x2 kernel, pad 1 on every side -> 4x4 outputs.
        let a = attrs(&[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
        let w = Window::from_attrs(&a, &[3, 3], vec![2, 2]).unwrap();
        assert_eq!(w.output, vec![4, 4]);
        let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut cols = vec![0f32; 4 * 16];
        im2col(&img, 1, &w, -1.0, &mut cols).unwrap();
        // Tap (0,0) at output (0,0) reads (-1,-1) = pad; at output (1,1) reads (0,0) = 1.
        assert_eq!(cols[0], -1.0);
        assert_eq!(cols[5], 1.0);
        // Tap (1,1) at output (0,0) reads (0,0).
        assert_eq!(cols[3 * 16], 1.0);
        let ones = vec![1f32; 4 * 16];
        let mut back = vec![0f32; 9];
        col2im(&ones, 1, &w, &mut back).unwrap();
        // Each pixel is covered by all 4 taps.
        assert_eq!(back, vec![4.0; 9]);
    }

    #[test]
    fn strided_dilated_im2col() {
        let a = attrs(&[
            ("strides", Attr::Ints(vec![2])),
            ("dilations", Attr::Ints(vec![2])),
        ]);
        let w = Window::from_attrs(&a, &[7], vec![2]).unwrap();
        assert_eq!(w.output, vec![3]);
        let img: Vec<i32> = (0..7).collect();
        let mut cols = vec![0; 6];
        im2col(&img, 1, &w, 0, &mut cols).unwrap();
        assert_eq!(cols, vec![0, 2, 4, 2, 4, 6]);
    }
}
