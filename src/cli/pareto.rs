//! `egret optimize --pareto DIR`: the variants of a size–error sweep, their
//! JSON report and a standalone HTML page with an SVG plot.

use anyhow::{Context, Result};
use egret_passes::quantize::Variant;
use std::fmt::Write as _;
use std::path::Path;

/// The file name of variant `i` (`03-budget-1.2e-3.egret`).
pub fn variant_file(i: usize, v: &Variant) -> String {
    let slug: String = v
        .label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{i:02}-{slug}.egret")
}

/// Write `pareto.json` and `pareto.html` into `dir`; `metric` names the
/// measured error (e.g. "relative perplexity increase").
pub fn write_report(dir: &Path, variants: &[Variant], metric: &str) -> Result<()> {
    let json = serde_json::json!({
        "metric": metric,
        "variants": variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut j = serde_json::to_value(v).unwrap_or_default();
                j["file"] = variant_file(i, v).into();
                j
            })
            .collect::<Vec<_>>(),
    });
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        super::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    };
    write("pareto.json", &serde_json::to_string_pretty(&json)?)?;
    write("pareto.html", &html(variants, metric))
}

/// The error a point is plotted at: measured if measured, else predicted.
fn plotted_err(v: &Variant) -> f64 {
    v.measured.unwrap_or(v.predicted_err)
}

/// The points on the front: no other variant is at most as large and at most
/// as wrong while better in one of the two.
pub fn on_front(variants: &[Variant]) -> Vec<bool> {
    variants
        .iter()
        .map(|v| {
            !variants.iter().any(|o| {
                let (ob, oe, vb, ve) =
                    (o.model_bytes, plotted_err(o), v.model_bytes, plotted_err(v));
                ob <= vb && oe <= ve && (ob < vb || oe < ve)
            })
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A standalone page: the SVG plot (size in MB against the error on a log
/// axis; swept variants as circles joined along the front, uniform schemes
/// as squares) and a table of every variant.
pub fn html(variants: &[Variant], metric: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const PAD: f64 = 64.0;
    let mb = |v: &Variant| v.model_bytes as f64 / 1e6;
    let floor = 1e-6;
    let err = |v: &Variant| plotted_err(v).max(floor);
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut e0, mut e1) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in variants {
        x0 = x0.min(mb(v));
        x1 = x1.max(mb(v));
        e0 = e0.min(err(v).log10());
        e1 = e1.max(err(v).log10());
    }
    if !x0.is_finite() {
        (x0, x1, e0, e1) = (0.0, 1.0, -3.0, 0.0);
    }
    let (e0, e1) = (e0.floor(), e1.ceil().max(e0.floor() + 1.0));
    let span = (x1 - x0).max(1e-9);
    let (x0, x1) = (x0 - 0.05 * span, x1 + 0.05 * span);
    let px = |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let py = |e: f64| H - PAD - (e.log10() - e0) / (e1 - e0) * (H - 2.0 * PAD);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{lx}" text-anchor="middle">size of constants (MB)</text>
<text x="16" y="{cy}" text-anchor="middle" transform="rotate(-90 16 {cy})">{m} (log)</text>
"##,
        b = H - PAD,
        r = W - PAD,
        cx = W / 2.0,
        lx = H - 20.0,
        cy = H / 2.0,
        m = escape(metric),
    );
    for p in (e0 as i32)..=(e1 as i32) {
        let y = py(10f64.powi(p));
        let _ = writeln!(
            svg,
            r##"<line x1="{PAD}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#ddd"/><text x="{t}" y="{ty:.1}" text-anchor="end">1e{p}</text>"##,
            r = W - PAD,
            t = PAD - 6.0,
            ty = y + 4.0,
        );
    }
    for i in 0..=4 {
        let x = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x:.1}</text>"##,
            px(x),
            H - PAD + 16.0
        );
    }
    let front = on_front(variants);
    let mut line: Vec<&Variant> = variants
        .iter()
        .zip(&front)
        .filter(|(v, &f)| f && !v.uniform)
        .map(|(v, _)| v)
        .collect();
    line.sort_by_key(|v| v.model_bytes);
    if line.len() > 1 {
        let pts: Vec<String> = line
            .iter()
            .map(|v| format!("{:.1},{:.1}", px(mb(v)), py(err(v))))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#1f77b4"/>"##,
            pts.join(" ")
        );
    }
    for v in variants {
        let (x, y) = (px(mb(v)), py(err(v)));
        let title = format!(
            "{}: {:.2} MB, {:.3e}",
            escape(&v.label),
            mb(v),
            plotted_err(v)
        );
        if v.uniform {
            let _ = writeln!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="#d62728"><title>{title}</title></rect><text x="{:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
                x - 4.0,
                y - 4.0,
                x + 7.0,
                y - 6.0,
                escape(v.label.trim_start_matches("uniform "))
            );
        } else {
            let _ = writeln!(
                svg,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="#1f77b4"><title>{title}</title></circle>"##
            );
        }
    }
    svg.push_str("</svg>\n");
    let mut rows = String::new();
    for ((i, v), f) in variants.iter().enumerate().zip(&front) {
        let mix: Vec<String> = v.schemes.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.3}</td><td>{:.3e}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&variant_file(i, v)),
            escape(&v.label),
            mb(v),
            v.bits_per_weight,
            v.predicted_err,
            v.measured.map_or("-".into(), |m| format!("{:.4}%", 100.0 * m)),
            if *f { "yes" } else { "" },
            escape(&mix.join(", "))
        );
    }
    format!(
        r##"<!doctype html>
<html><head><meta charset="utf-8"><title>egret: size against error</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:nth-child(2),td:last-child{{text-align:left}}</style>
</head><body>
<h1>Size against error</h1>
<p>One point per variant from one saturation run: circles are budgeted mixes (joined along the front), squares the uniform schemes. Error: {m}{note}.</p>
{svg}
<table><tr><th>file</th><th>variant</th><th>MB</th><th>bits/weight</th><th>predicted</th><th>measured</th><th>front</th><th>schemes</th></tr>
{rows}</table>
</body></html>
"##,
        m = escape(metric),
        note = if variants.iter().any(|v| v.measured.is_none()) {
            " (predicted where not measured)"
        } else {
            ""
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(label: &str, bytes: usize, err: f64, uniform: bool) -> Variant {
        Variant {
            label: label.into(),
            uniform,
            model_bytes: bytes,
            bits_per_weight: 8.0,
            predicted_err: err,
            measured: Some(err),
            schemes: [("int8".to_string(), 3)].into(),
        }
    }

    #[test]
    fn the_front_drops_dominated_points_and_the_page_shows_all() {
        let vs = vec![
            v("budget 1e-3", 10_000_000, 0.001, false),
            v("budget 1e-2", 5_000_000, 0.01, false),
            v("uniform q4_0", 6_000_000, 0.02, true),
            v("budget <x>", 12_000_000, 0.0005, false),
        ];
        assert_eq!(on_front(&vs), vec![true, true, false, true]);
        let page = html(&vs, "1 − cosine");
        assert_eq!(page.matches("<circle").count(), 3);
        assert_eq!(page.matches("<rect x=").count(), 1);
        assert!(page.contains("budget &lt;x&gt;"));
        assert!(page.contains("<polyline"));
        assert_eq!(variant_file(3, &vs[3]), "03-budget--x-.egret");
    }
}
