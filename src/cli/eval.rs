//! `egret eval`: the quality meters every compression result is judged by.
//!
//! Each meter is one optional flag filling one optional section of [`Report`]:
//! `--similarity FILE` (embedding models: cosine of sentence pairs). A new meter
//! is a flag in [`EvalArgs`], a section in [`Report`], one function and one
//! line in [`main`].

use super::{load, table};
use anyhow::{bail, Context, Result};
use egret_runtime::eval::{cosine, Embedder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `egret eval` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
The similarity file holds one sentence pair per line, the two sentences separated
by a tab. Each sentence is embedded as the mean of the encoder's last hidden state
over its real tokens, L2-normalised (the sentence-transformers recipe).

Examples:
  egret eval ~/.cache/egret/models/minilm --similarity tests/fixtures/similarity-pairs.tsv
  egret eval model.safetensors --similarity pairs.tsv --json")]
pub struct EvalArgs {
    /// The model: a .safetensors file or its folder (with config.json and
    /// tokenizer.json), or any other format egret loads.
    pub model: PathBuf,
    /// Sentence pairs (one per line, tab-separated) to score by embedding cosine.
    #[arg(long, value_name = "FILE")]
    pub similarity: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One scored sentence pair.
#[derive(Serialize)]
struct Pair {
    a: String,
    b: String,
    cosine: f64,
}

/// The `--similarity` section.
#[derive(Serialize)]
struct Similarity {
    pairs: Vec<Pair>,
    mean_cosine: f64,
    /// Distinct sentences embedded.
    sentences: usize,
    eval_ms: f64,
}

/// Everything `egret eval` reports.
#[derive(Serialize)]
struct Report {
    model: String,
    load_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<Similarity>,
    /// Peak resident set size of the process (Linux), in bytes.
    peak_rss_bytes: Option<u64>,
}

/// Run `egret eval`.
pub fn main(args: &EvalArgs) -> Result<()> {
    if args.similarity.is_none() {
        bail!("nothing to evaluate: give --similarity FILE");
    }
    let t0 = Instant::now();
    let loaded = load(&args.model)?;
    let mut report = Report {
        model: args.model.display().to_string(),
        load_ms: ms(t0.elapsed()),
        similarity: None,
        peak_rss_bytes: None,
    };
    if let Some(file) = &args.similarity {
        let tok = loaded
            .tokenizer_json
            .as_deref()
            .context("--similarity needs the model's tokenizer (tokenizer.json beside it)")?;
        report.similarity = Some(similarity(&loaded.model, tok, file)?);
    }
    report.peak_rss_bytes = peak_rss();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Read a pairs file: one `a<TAB>b` per non-empty line.
fn read_pairs(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sentence pairs {}", path.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match line.split('\t').collect::<Vec<_>>()[..] {
            [a, b] if !a.trim().is_empty() && !b.trim().is_empty() => {
                pairs.push((a.trim().to_string(), b.trim().to_string()))
            }
            _ => bail!(
                "{}:{}: expected two tab-separated sentences",
                path.display(),
                i + 1
            ),
        }
    }
    if pairs.is_empty() {
        bail!("{}: no sentence pairs", path.display());
    }
    Ok(pairs)
}

/// Embed every distinct sentence of the pairs once and score each pair.
fn similarity(model: &egret_ir::Model, tokenizer: &str, file: &Path) -> Result<Similarity> {
    let t0 = Instant::now();
    let pairs = read_pairs(file)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut sentences: Vec<&str> = Vec::new();
    for (a, b) in &pairs {
        for s in [a, b] {
            if !index.contains_key(s) {
                index.insert(s.clone(), sentences.len());
                sentences.push(s);
            }
        }
    }
    let embedder = Embedder::new(model, tokenizer)?;
    let bar = Progress::new(sentences.len() as u64, "sentences");
    let emb = embedder.embed(&sentences, &mut |done| bar.set(done as u64))?;
    bar.finish();
    let vec_of = |s: &String| index.get(s).and_then(|&i| emb.get(i));
    let pairs = pairs
        .iter()
        .map(|(a, b)| match (vec_of(a), vec_of(b)) {
            (Some(ea), Some(eb)) => Ok(Pair {
                cosine: cosine(ea, eb),
                a: a.clone(),
                b: b.clone(),
            }),
            _ => bail!("no embedding for the pair {a:?} / {b:?}"),
        })
        .collect::<Result<Vec<Pair>>>()?;
    let sentences = sentences.len();
    Ok(Similarity {
        mean_cosine: pairs.iter().map(|p| p.cosine).sum::<f64>() / pairs.len() as f64,
        sentences,
        pairs,
        eval_ms: ms(t0.elapsed()),
    })
}

/// A progress bar on stderr that appears only once the work has taken more
/// than a second, and only on a terminal.
struct Progress {
    bar: ProgressBar,
    start: Instant,
}

impl Progress {
    fn new(total: u64, unit: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{eta}})"))
        {
            bar.set_style(style);
        }
        Progress {
            bar,
            start: Instant::now(),
        }
    }

    fn set(&self, done: u64) {
        if self.bar.is_hidden()
            && self.start.elapsed() > Duration::from_secs(1)
            && std::io::stderr().is_terminal()
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_position(done);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Peak resident set size (`VmHWM` of `/proc/self/status`), where available.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The human-readable report.
fn render(r: &Report) -> String {
    let mut out = format!("model  {}\nload   {:.0} ms\n", r.model, r.load_ms);
    if let Some(s) = &r.similarity {
        let rows: Vec<Vec<String>> = s
            .pairs
            .iter()
            .map(|p| vec![format!("{:.4}", p.cosine), p.a.clone(), p.b.clone()])
            .collect();
        out.push_str(&format!(
            "\nsimilarity: {} pairs, {} sentences, {:.0} ms, mean cosine {:.4}\n",
            s.pairs.len(),
            s.sentences,
            s.eval_ms,
            s.mean_cosine
        ));
        out.push_str(&table(&["cosine", "sentence a", "sentence b"], &rows));
    }
    if let Some(rss) = r.peak_rss_bytes {
        out.push_str(&format!(
            "\npeak RSS {}\n",
            super::human_bytes(rss as usize)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_files_are_validated() {
        let dir = std::env::temp_dir().join(format!("egret-eval-pairs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("p.tsv");
        std::fs::write(&p, "a b\t c d \n\n x\ty\n").unwrap();
        assert_eq!(
            read_pairs(&p).unwrap(),
            vec![("a b".into(), "c d".into()), ("x".into(), "y".into())]
        );
        for bad in ["one sentence\n", "a\tb\tc\n", "a\t \n", "\n\n"] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_pairs(&p).is_err(), "{bad:?}");
        }
        std::fs::write(&p, "a\tb\nbroken\n").unwrap();
        assert!(read_pairs(&p).unwrap_err().to_string().contains(":2:"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
