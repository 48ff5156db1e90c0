//! The `egret` subcommands and what they share: model loading and table output.

pub mod backend;
pub mod bench;
pub mod build;
pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod kv;
pub mod optimize;
pub mod pareto;
pub mod passes;
pub mod quantize;
pub mod run;

use anyhow::{Context, Result};
use egret_ir::Model;
use std::path::Path;

/// Write `bytes` to `path` atomically: a temporary file beside it, then a
/// rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Load a model with [`egret_frontends::load`], which picks the frontend by
/// file extension.
pub fn load_model(path: &Path) -> Result<Model> {
    Ok(load(path)?.model)
}

/// Load a model and whatever its frontend found beside it (the tokenizer).
pub fn load(path: &Path) -> Result<egret_frontends::Loaded> {
    egret_frontends::load(path).with_context(|| format!("loading model {}", path.display()))
}

/// An error and its causes joined by `: `, like anyhow's `{:#}`, but a cause is
/// left out when the message before it already ends with it. Typed errors
/// often print their source inside their own message, and the plain chain
/// would then say everything twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Format rows as a left-aligned table with a header row, two spaces between
/// columns and every line indented by two spaces. Numeric-looking columns are
/// right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..cols)
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r.get(i).is_some_and(|c| c.parse::<f64>().is_ok()))
        })
        .collect();
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::from(" ");
        for (i, w) in width.iter().enumerate() {
            let c = r.get(i).map_or("", |s| s.as_str());
            let pad = " ".repeat(w - c.chars().count());
            line.push(' ');
            if numeric[i] {
                line.push_str(&pad);
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&pad);
            }
            line.push(' ');
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A byte count in human units (`1.5 MiB`).
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["op", "count"],
            &[
                vec!["Conv".into(), "12".into()],
                vec!["Relu".into(), "3".into()],
            ],
        );
        assert_eq!(t, "  op    count\n  Conv     12\n  Relu      3\n");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn error_chain_skips_causes_already_printed() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io).context("cannot read m.onnx: disk on fire");
        let e = e.context("loading model m.onnx");
        assert_eq!(
            error_chain(&e),
            "loading model m.onnx: cannot read m.onnx: disk on fire"
        );
    }

    #[test]
    fn unknown_formats_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("egret-cli-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.gguf");
        std::fs::write(&p, b"x").unwrap();
        assert!(format!("{:#}", load_model(&p).unwrap_err()).contains("malformed GGUF"));
        let p = dir.join("m.bin");
        std::fs::write(&p, b"x").unwrap();
        assert!(format!("{:#}", load_model(&p).unwrap_err()).contains("unknown model format"));
        let missing = format!("{:#}", load_model(&dir.join("none.onnx")).unwrap_err());
        assert!(missing.contains("no such file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
