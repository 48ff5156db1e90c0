//! Kernels of the vision family: NonMaxSuppression, RoiAlign.
//!
//! Both follow the ONNX reference implementation (itself a port of
//! onnxruntime's) step for step, including its quirks: NMS suppresses a box
//! only when its IoU is strictly above the threshold, and RoiAlign's `max`
//! mode takes the largest *weighted* corner of each bilinear sample.

use crate::bail;
use crate::error::Result;
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{checked_len, input, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::{Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("NonMaxSuppression", non_max_suppression);
    r.add("RoiAlign", roi_align);
}

/// A box as `(x_min, y_min, x_max, y_max)`, from either ONNX box encoding.
fn corners<W: Real>(b: &[W], center_point: bool) -> [W; 4] {
    let two = W::one() + W::one();
    if center_point {
        // [x_center, y_center, width, height]
        let (hw, hh) = (b[2] / two, b[3] / two);
        [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
    } else {
        // [y1, x1, y2, x2], either diagonal pair.
        [
            b[1].min(b[3]),
            b[0].min(b[2]),
            b[1].max(b[3]),
            b[0].max(b[2]),
        ]
    }
}

/// True if boxes `a` and `b` overlap with IoU strictly above `threshold`.
fn suppresses<W: Real>(a: &[W; 4], b: &[W; 4], threshold: W) -> bool {
    let (ix0, ix1) = (a[0].max(b[0]), a[2].min(b[2]));
    let (iy0, iy1) = (a[1].max(b[1]), a[3].min(b[3]));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area = |c: &[W; 4]| (c[2] - c[0]) * (c[3] - c[1]);
    let (a1, a2) = (area(a), area(b));
    let union = a1 + a2 - inter;
    if inter <= W::zero() || a1 <= W::zero() || a2 <= W::zero() || union <= W::zero() {
        return false;
    }
    inter / union > threshold
}

/// Greedy per-(batch, class) NMS; returns `(batch, class, box)` triples.
fn nms<W: Real>(
    boxes: &[W],
    scores: &[W],
    (batches, classes, n): (usize, usize, usize),
    max_out: usize,
    iou: W,
    score_min: Option<W>,
    center_point: bool,
) -> Vec<i64> {
    let mut out = Vec::new();
    for b in 0..batches {
        let bb: Vec<[W; 4]> = boxes[b * n * 4..(b + 1) * n * 4]
            .chunks_exact(4)
            .map(|c| corners(c, center_point))
            .collect();
        for c in 0..classes {
            let s = &scores[(b * classes + c) * n..(b * classes + c + 1) * n];
            let mut cand: Vec<usize> = (0..n)
                .filter(|&i| score_min.is_none_or(|t| s[i] > t))
                .collect();
            // Highest score first, lower index first among equals.
            cand.sort_by(|&i, &j| {
                let (si, sj) = (s[i].to_f64().unwrap_or(0.0), s[j].to_f64().unwrap_or(0.0));
                sj.total_cmp(&si).then(i.cmp(&j))
            });
            let mut kept: Vec<usize> = Vec::new();
            for i in cand {
                if kept.len() >= max_out {
                    break;
                }
                if kept.iter().all(|&k| !suppresses(&bb[i], &bb[k], iou)) {
                    kept.push(i);
                    out.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    out
}

/// The first value of an optional input, if present and non-empty.
fn first_value(t: Option<&Tensor>) -> Result<Option<f64>> {
    Ok(match t {
        Some(t) => t.to_f64_vec()?.first().copied(),
        None => None,
    })
}

fn non_max_suppression(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let boxes = input(inputs, 0)?;
    let scores = input(inputs, 1)?;
    let (&[b, n, 4], &[sb, classes, sn]) = (boxes.shape(), scores.shape()) else {
        bail!(
            "boxes must be [batch, boxes, 4] and scores [batch, classes, boxes], got {:?} and {:?}",
            boxes.shape(),
            scores.shape()
        );
    };
    if sb != b || sn != n {
        bail!(
            "boxes {:?} do not match scores {:?}",
            boxes.shape(),
            scores.shape()
        );
    }
    let max_out = match opt_input(inputs, 2)? {
        Some(t) => t.to_i64_vec()?.first().map_or(0, |&v| v.max(0) as usize),
        None => 0,
    };
    let iou = first_value(opt_input(inputs, 3)?)?.unwrap_or(0.0);
    let score_min = first_value(opt_input(inputs, 4)?)?;
    let center_point = ctx.attrs().int_or("center_point_box", 0)? != 0;
    let sel = with_workprec!(boxes.dtype(), W => {
        nms::<W>(
            &load::<W>(boxes)?,
            &load::<W>(scores)?,
            (b, classes, n),
            max_out,
            W::of(iou),
            score_min.map(W::of),
            center_point,
        )
    });
    let rows = sel.len() / 3;
    one(Tensor::from_vec(vec![rows, 3], sel)?)
}

/// One bilinear sample: four flat pixel offsets and their weights.
type Sample = ([usize; 4], [f64; 4]);

/// The bilinear sample at `(y, x)` of an `h × w` map; out-of-map points
/// (beyond one pixel of the border) get zero weights.
fn sample(y: f64, x: f64, h: usize, w: usize) -> Sample {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return ([0; 4], [0.0; 4]);
    }
    let axis = |v: f64, size: usize| -> (usize, usize, f64) {
        let v = v.max(0.0);
        let low = v as usize;
        if low + 1 >= size {
            (size - 1, size - 1, 0.0)
        } else {
            (low, low + 1, v - low as f64)
        }
    };
    let (y0, y1, ly) = axis(y, h);
    let (x0, x1, lx) = axis(x, w);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    (
        [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1],
        [hy * hx, hy * lx, ly * hx, ly * lx],
    )
}

/// RoiAlign settings from the attributes.
struct RoiParams {
    out_h: usize,
    out_w: usize,
    sampling_ratio: usize,
    scale: f64,
    half_pixel: bool,
    max_mode: bool,
}

impl RoiParams {
    fn new(ctx: &KernelCtx<'_>) -> Result<RoiParams> {
        let a = ctx.attrs();
        let pos = |name: &str| -> Result<usize> {
            let v = a.int_or(name, 1)?;
            match usize::try_from(v) {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{name} must be positive, got {v}"),
            }
        };
        let max_mode = match a.string_or("mode", "avg")? {
            "avg" => false,
            "max" => true,
            m => bail!("unknown mode {m:?}"),
        };
        let half_pixel = match a.string_or("coordinate_transformation_mode", "half_pixel")? {
            "half_pixel" => true,
            "output_half_pixel" => false,
            m => bail!("unknown coordinate_transformation_mode {m:?}"),
        };
        Ok(RoiParams {
            out_h: pos("output_height")?,
            out_w: pos("output_width")?,
            sampling_ratio: a.int_or("sampling_ratio", 0)?.max(0) as usize,
            scale: a.float_or("spatial_scale", 1.0)? as f64,
            half_pixel,
            max_mode,
        })
    }

    /// The bilinear samples of every output cell of one ROI, cell-major, and
    /// the grid size `(gh, gw)` per cell.
    fn samples(&self, roi: &[f64], h: usize, w: usize) -> (Vec<Sample>, usize, usize) {
        let offset = if self.half_pixel { 0.5 } else { 0.0 };
        let [x0, y0, x1, y1] = [0, 1, 2, 3].map(|i| roi[i] * self.scale - offset);
        let (mut rw, mut rh) = (x1 - x0, y1 - y0);
        if !self.half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bin_h, bin_w) = (rh / self.out_h as f64, rw / self.out_w as f64);
        let grid = |extent: f64, n: usize| -> usize {
            if self.sampling_ratio > 0 {
                self.sampling_ratio
            } else {
                (extent / n as f64).ceil().max(0.0) as usize
            }
        };
        let (gh, gw) = (grid(rh, self.out_h), grid(rw, self.out_w));
        let mut v = Vec::with_capacity(self.out_h * self.out_w * gh * gw);
        for ph in 0..self.out_h {
            for pw in 0..self.out_w {
                for iy in 0..gh {
                    let y = y0 + ph as f64 * bin_h + (iy as f64 + 0.5) * bin_h / gh as f64;
                    for ix in 0..gw {
                        let x = x0 + pw as f64 * bin_w + (ix as f64 + 0.5) * bin_w / gw as f64;
                        v.push(sample(y, x, h, w));
                    }
                }
            }
        }
        (v, gh, gw)
    }
}

/// Pool one output cell of one channel (`plane` is that channel's `h × w` map).
fn pool_cell(cell: &[Sample], plane: &[f64], max_mode: bool) -> f64 {
    let corners = |(pos, wt): &Sample| -> [f64; 4] { [0, 1, 2, 3].map(|k| wt[k] * plane[pos[k]]) };
    if max_mode {
        cell.iter()
            .map(|s| corners(s).into_iter().fold(f64::NEG_INFINITY, f64::max))
            .reduce(f64::max)
            .unwrap_or(0.0)
    } else {
        let sum: f64 = cell.iter().flat_map(corners).sum();
        sum / cell.len().max(1) as f64
    }
}

fn roi_align(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let rois = input(inputs, 1)?;
    let batch_idx = input(inputs, 2)?.to_i64_vec()?;
    let p = RoiParams::new(ctx)?;
    let (&[n, c, h, w], &[nr, 4]) = (x.shape(), rois.shape()) else {
        bail!(
            "X must be [N, C, H, W] and rois [num_rois, 4], got {:?} and {:?}",
            x.shape(),
            rois.shape()
        );
    };
    if batch_idx.len() != nr {
        bail!("{} batch indices for {nr} rois", batch_idx.len());
    }
    if !x.dtype().is_float() {
        bail!("unsupported dtype {}", x.dtype());
    }
    let total = checked_len(&[nr, c, p.out_h, p.out_w])?;
    let data = x.to_f64_vec()?;
    let roi_v = rois.to_f64_vec()?;
    let mut out = Vec::with_capacity(total);
    for (r, &bi) in batch_idx.iter().enumerate() {
        let bi = match usize::try_from(bi) {
            Ok(b) if b < n => b,
            _ => bail!("batch index {bi} out of range for batch {n}"),
        };
        if h == 0 || w == 0 {
            out.resize(out.len() + c * p.out_h * p.out_w, 0.0);
            continue;
        }
        let (samples, gh, gw) = p.samples(&roi_v[r * 4..r * 4 + 4], h, w);
        let per_cell = gh * gw;
        for ch in 0..c {
            let plane = &data[(bi * c + ch) * h * w..(bi * c + ch + 1) * h * w];
            for cell in 0..p.out_h * p.out_w {
                let s = &samples[cell * per_cell..(cell + 1) * per_cell];
                out.push(pool_cell(s, plane, p.max_mode));
            }
        }
    }
    one(store::<f64>(x.dtype(), vec![nr, c, p.out_h, p.out_w], out)?)
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::run_op;
    use egret_ir::{Attr, Attrs, Tensor};

    #[test]
    fn nms_suppresses_overlaps_and_orders_by_score() {
        // Boxes 0 and 1 overlap with IoU 0.81 > 0.5; box 2 is disjoint.
        let boxes = Tensor::from_vec(
            vec![1, 3, 4],
            vec![
                0.0f32, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 10.0, 1.0, 11.0,
            ],
        )
        .unwrap();
        let scores = Tensor::from_vec(vec![1, 1, 3], vec![0.8f32, 0.9, 0.7]).unwrap();
        let out = run_op(
            "NonMaxSuppression",
            Attrs::default(),
            vec![
                Some(boxes),
                Some(scores),
                Some(Tensor::from_vec(vec![1], vec![5i64]).unwrap()),
                Some(Tensor::from_vec(vec![1], vec![0.5f32]).unwrap()),
                None,
            ],
            1,
        );
        assert_eq!(out[0].shape(), &[2, 3]);
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![0, 0, 1, 0, 0, 2]);
    }

    #[test]
    fn roi_align_avg_of_constant_ramp() {
        // X[y, x] = x on a 4x4 map; the ROI (0,0)-(2,2), half_pixel off, one
        // 1x1 output with a 2x2 sampling grid samples x = 0.5, 1.5 -> mean 1.0.
        let x: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let x = Tensor::from_vec(vec![1, 1, 4, 4], x).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0.0f32, 0.0, 2.0, 2.0]).unwrap();
        let bi = Tensor::from_vec(vec![1], vec![0i64]).unwrap();
        let mut a = Attrs::default();
        a.set("sampling_ratio", Attr::Int(2));
        a.set(
            "coordinate_transformation_mode",
            Attr::String("output_half_pixel".into()),
        );
        let out = run_op("RoiAlign", a, vec![Some(x), Some(rois), Some(bi)], 1);
        assert_eq!(out[0].shape(), &[1, 1, 1, 1]);
        assert!((out[0].to_f64_vec().unwrap()[0] - 1.0).abs() < 1e-6);
    }
}
