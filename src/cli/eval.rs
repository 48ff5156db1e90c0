//! `egret eval`: the quality meters every compression result is judged by.
//!
//! Each meter is one optional flag filling one optional section of [`Report`]:
//! `--perplexity FILE` (causal language models: perplexity over windows of a
//! text) and `--similarity FILE` (embedding models: cosine of sentence pairs).
//! A new meter
//! is a flag in [`EvalArgs`], a section in [`Report`], one function and one
//! line in [`main`].

use super::{load, table};
use anyhow::{bail, Context, Result};
use egret_runtime::eval::{agreement, cosine, Embedder};
use egret_runtime::generate::{set_threads, Decoder};
use egret_runtime::perplexity::{perplexity as score_windows, streaming_perplexity, windows};
use egret_runtime::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `egret eval` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
Perplexity: the text is tokenized whole (no BOS token), cut into non-overlapping
windows of --window tokens from its start, and each window is scored on its own
from an empty cache (token j+1 under the logits at j, so a full window predicts
window-1 tokens). --windows K scores only the first K windows. The result is
exp(mean negative log-likelihood) over every predicted token.

With --stream the text runs instead as one stream through one KV cache, --chunk
tokens per step (1 = token by token), and the cache policy (--kv-policy, else the
one the model records, else full) evicts as it goes; position ids are
cache-relative. --max-tokens N scores only the first N tokens (either protocol).
The report gives the peak bytes of keys and values cached and tokens/s.

The similarity file holds one sentence pair per line, the two sentences separated
by a tab. Each sentence is embedded as the mean of the encoder's last hidden state
over its real tokens, L2-normalised (the sentence-transformers recipe).

Peak RSS is the process's high-water mark of resident memory (VmHWM).

Examples:
  egret eval ~/.cache/egret/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
      --perplexity ~/.cache/egret/texts/devils_dictionary.txt --windows 4
  egret eval model.gguf --perplexity tests/fixtures/texts/eiffel_paragraph.txt --json
  egret eval model.gguf --perplexity ~/.cache/egret/texts/devils_dictionary.txt \
      --stream --kv-policy sepllm:4,32,224,324 --max-tokens 8192 --json
  egret eval ~/.cache/egret/models/minilm --similarity tests/fixtures/similarity-pairs.tsv
  egret eval model.safetensors --similarity pairs.tsv --json")]
pub struct EvalArgs {
    /// The model: a .safetensors file or its folder (with config.json and
    /// tokenizer.json), or any other format egret loads.
    pub model: PathBuf,
    /// A text file to measure the perplexity of a causal language model on.
    #[arg(long, value_name = "FILE")]
    pub perplexity: Option<PathBuf>,
    /// Tokens per perplexity window.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(2..))]
    pub window: u64,
    /// Score only the first K windows (default: all of the text).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub windows: Option<u64>,
    /// Score the text as one stream through one KV cache (see below).
    #[arg(long)]
    pub stream: bool,
    /// With --stream: tokens per step.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: u64,
    /// Score only the first N tokens of the text.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    pub max_tokens: Option<u64>,
    /// KV-cache policy (overrides the model's).
    #[arg(long, value_name = "POLICY", long_help = super::kv::HELP)]
    pub kv_policy: Option<String>,
    /// Sentence pairs (one per line, tab-separated) to score by embedding cosine.
    #[arg(long, value_name = "FILE")]
    pub similarity: Option<PathBuf>,
    /// With --similarity: also embed every sentence with this model (the
    /// original of a compressed one) and report the mean and minimum cosine
    /// between the two models' embeddings of the same sentence.
    #[arg(long, value_name = "MODEL")]
    pub reference: Option<PathBuf>,
    /// Threads for the kernels; 0 = RAYON_NUM_THREADS if set, else one per core.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Which executor runs the model.
    #[arg(long, value_enum, default_value_t)]
    pub backend: super::backend::Backend,
    /// Print JSON instead of tables (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// One scored perplexity window.
#[derive(Serialize)]
struct Window {
    tokens: usize,
    predicted: usize,
    perplexity: f64,
}

/// The `--perplexity` section.
#[derive(Serialize)]
struct Perplexity {
    file: String,
    /// Tokens in the whole text.
    text_tokens: usize,
    /// `windows` (each from an empty cache) or `stream` (one cache).
    protocol: &'static str,
    /// The KV-cache policy used.
    kv_policy: String,
    /// Tokens per window (`windows`) or per step (`stream`).
    window: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    windows: Vec<Window>,
    /// Tokens run.
    tokens: usize,
    /// Tokens predicted over all windows.
    predicted: usize,
    /// Mean negative log-likelihood per predicted token (nats).
    mean_nll: f64,
    perplexity: f64,
    eval_ms: f64,
    /// Tokens run per second.
    tokens_per_s: f64,
    /// Most bytes of keys and values cached at once.
    peak_kv_bytes: usize,
    /// Most positions cached at once (`stream` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_kv_len: Option<usize>,
}

/// One scored sentence pair.
#[derive(Serialize)]
struct Pair {
    a: String,
    b: String,
    cosine: f64,
}

/// Agreement with `--reference`: cosine between the two models' embeddings
/// of each sentence.
#[derive(Serialize)]
struct Agreement {
    reference: String,
    mean_cosine: f64,
    min_cosine: f64,
}

/// The `--similarity` section.
#[derive(Serialize)]
struct Similarity {
    pairs: Vec<Pair>,
    mean_cosine: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement: Option<Agreement>,
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
    perplexity: Option<Perplexity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<Similarity>,
    /// Peak resident set size of the process (Linux), in bytes.
    peak_rss_bytes: Option<u64>,
}

/// Run `egret eval`.
pub fn main(args: &EvalArgs) -> Result<()> {
    if args.perplexity.is_none() && args.similarity.is_none() {
        bail!("nothing to evaluate: give --perplexity FILE or --similarity FILE");
    }
    if args.perplexity.is_none()
        && (args.stream || args.kv_policy.is_some() || args.max_tokens.is_some())
    {
        bail!("--stream, --kv-policy and --max-tokens go with --perplexity");
    }
    set_threads(args.threads)?;
    let t0 = Instant::now();
    let loaded = load(&args.model)?;
    let mut report = Report {
        model: args.model.display().to_string(),
        load_ms: ms(t0.elapsed()),
        perplexity: None,
        similarity: None,
        peak_rss_bytes: None,
    };
    let tok = || {
        loaded.tokenizer_json.as_deref().context(
            "evaluation needs the model's tokenizer (GGUF vocabulary or tokenizer.json beside it)",
        )
    };
    if let Some(file) = &args.similarity {
        let reference = match &args.reference {
            Some(p) => Some((p, load(p)?.model)),
            None => None,
        };
        let reference = reference.as_ref().map(|(p, m)| (p.as_path(), m));
        report.similarity = Some(similarity(
            &loaded.model,
            tok()?,
            file,
            reference,
            args.backend,
            !args.json,
        )?);
    } else if args.reference.is_some() {
        bail!("--reference goes with --similarity");
    }
    if let Some(file) = &args.perplexity {
        let tokenizer = Tokenizer::from_json(tok()?)?;
        let mut decoder = Decoder::new(loaded.model).context("--perplexity needs a causal LM")?;
        super::kv::override_policy(
            &mut decoder,
            args.kv_policy.as_deref(),
            loaded.tokenizer_json.as_deref(),
        )?;
        super::backend::attach_to_decoder(&mut decoder, args.backend);
        let windows = args.windows.map(|k| k as usize);
        let size =
            |v: u64, what: &str| usize::try_from(v).with_context(|| format!("{what} is too large"));
        let protocol = if args.stream {
            Protocol::Stream {
                chunk: size(args.chunk, "--chunk")?,
            }
        } else {
            Protocol::Windows {
                window: size(args.window, "--window")?,
                max_windows: windows,
            }
        };
        let max_tokens = args
            .max_tokens
            .map(|n| size(n, "--max-tokens"))
            .transpose()?;
        report.perplexity = Some(perplexity(
            &decoder, &tokenizer, file, protocol, max_tokens, !args.json,
        )?);
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
fn similarity(
    model: &egret_ir::Model,
    tokenizer: &str,
    file: &Path,
    reference: Option<(&Path, &egret_ir::Model)>,
    backend: super::backend::Backend,
    show_progress: bool,
) -> Result<Similarity> {
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
    let mut embedder = Embedder::new(model, tokenizer)?;
    super::backend::attach_to_embedder(&mut embedder, model, backend)?;
    let bar = Progress::new(sentences.len() as u64, "sentences", show_progress);
    let emb = embedder.embed(&sentences, &mut |done| bar.set(done as u64))?;
    bar.finish();
    let agreement = match reference {
        None => None,
        Some((path, m)) => {
            let r = Embedder::new(m, tokenizer)
                .context("the reference model")?
                .embed(&sentences, &mut |_| {})?;
            let (mean_cosine, min_cosine) = agreement(&emb, &r);
            Some(Agreement {
                reference: path.display().to_string(),
                mean_cosine,
                min_cosine,
            })
        }
    };
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
        agreement,
        sentences,
        pairs,
        eval_ms: ms(t0.elapsed()),
    })
}

/// How the perplexity text is scored.
#[derive(Clone, Copy)]
enum Protocol {
    /// Windows of `window` tokens, each from an empty cache.
    Windows {
        window: usize,
        max_windows: Option<usize>,
    },
    /// One stream through one cache, `chunk` tokens per step.
    Stream { chunk: usize },
}

/// Score the text of `file` with the decoder (see the command's help).
fn perplexity(
    decoder: &Decoder,
    tokenizer: &Tokenizer,
    file: &Path,
    protocol: Protocol,
    max_tokens: Option<usize>,
    show_progress: bool,
) -> Result<Perplexity> {
    let t0 = Instant::now();
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the perplexity text {}", file.display()))?;
    let all = tokenizer.encode(&text, false)?;
    let ids = &all[..max_tokens.unwrap_or(all.len()).min(all.len())];
    let (window, max_windows) = match protocol {
        Protocol::Windows {
            window,
            max_windows,
        } => (window, max_windows),
        Protocol::Stream { chunk } => {
            let bar = Progress::new(ids.len() as u64, "tokens", show_progress);
            let r = streaming_perplexity(decoder, ids, chunk, &mut |done, _| bar.set(done as u64))
                .with_context(|| format!("scoring {}", file.display()))?;
            bar.finish();
            return Ok(Perplexity {
                file: file.display().to_string(),
                text_tokens: all.len(),
                protocol: "stream",
                kv_policy: decoder.kv_policy().to_string(),
                window: chunk,
                windows: Vec::new(),
                tokens: r.tokens,
                predicted: r.predicted,
                mean_nll: r.mean_nll(),
                perplexity: r.perplexity(),
                eval_ms: ms(t0.elapsed()),
                tokens_per_s: r.tokens_per_s(),
                peak_kv_bytes: r.peak_kv_bytes,
                peak_kv_len: Some(r.peak_kv_len),
            });
        }
    };
    let total = windows(ids, window, max_windows).len();
    let bar = Progress::new(total as u64, "windows", show_progress);
    let r = score_windows(decoder, ids, window, max_windows, &mut |done, _| {
        bar.set(done as u64)
    })
    .with_context(|| format!("scoring {}", file.display()))?;
    bar.finish();
    let elapsed = t0.elapsed();
    let run: usize = r.windows.iter().map(|w| w.tokens).sum();
    Ok(Perplexity {
        file: file.display().to_string(),
        text_tokens: all.len(),
        protocol: "windows",
        kv_policy: decoder.kv_policy().to_string(),
        window,
        tokens: run,
        windows: r
            .windows
            .iter()
            .map(|w| Window {
                tokens: w.tokens,
                predicted: w.predicted,
                perplexity: w.perplexity(),
            })
            .collect(),
        predicted: r.predicted(),
        mean_nll: r.mean_nll(),
        perplexity: r.perplexity(),
        eval_ms: ms(elapsed),
        tokens_per_s: run as f64 / elapsed.as_secs_f64().max(1e-9),
        peak_kv_bytes: r.peak_kv_bytes,
        peak_kv_len: None,
    })
}

/// A progress bar on stderr, shown only when asked for, on a terminal, and once
/// the work has taken more than a second (then it ticks on its own, so its
/// elapsed time and ETA stay current between long steps).
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(total: u64, unit: &str, show: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed}}, ETA {{eta}}]"
        )) {
            bar.set_style(style);
        }
        if show && std::io::stderr().is_terminal() {
            let later = bar.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                if !later.is_finished() {
                    later.set_draw_target(ProgressDrawTarget::stderr());
                    later.enable_steady_tick(Duration::from_millis(250));
                }
            });
        }
        Progress { bar }
    }

    fn set(&self, done: u64) {
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
    if let Some(p) = &r.perplexity {
        let rows: Vec<Vec<String>> = p
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                vec![
                    (i + 1).to_string(),
                    w.tokens.to_string(),
                    format!("{:.3}", w.perplexity),
                ]
            })
            .collect();
        if p.protocol == "stream" {
            out.push_str(&format!(
                "\nperplexity {:.3} ({}: {} of {} tokens streamed {} per step, KV policy {}, \
                 {} predicted; {:.1} s, {:.1} tokens/s; peak KV {} in {} positions)\n",
                p.perplexity,
                p.file,
                p.tokens,
                p.text_tokens,
                p.window,
                p.kv_policy,
                p.predicted,
                p.eval_ms / 1e3,
                p.tokens_per_s,
                super::human_bytes(p.peak_kv_bytes),
                p.peak_kv_len.unwrap_or(0),
            ));
        } else {
            out.push_str(&format!(
                "\nperplexity {:.3} ({}: {} of {} tokens in {} window(s) of {}, \
                 {} predicted; {:.1} s, {:.0} tokens/s; KV policy {}, peak KV {})\n",
                p.perplexity,
                p.file,
                p.tokens,
                p.text_tokens,
                p.windows.len(),
                p.window,
                p.predicted,
                p.eval_ms / 1e3,
                p.tokens_per_s,
                p.kv_policy,
                super::human_bytes(p.peak_kv_bytes),
            ));
            out.push_str(&table(&["window", "tokens", "perplexity"], &rows));
        }
    }
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
        if let Some(a) = &s.agreement {
            out.push_str(&format!(
                "agreement with {}: mean cosine {:.5}, minimum {:.5}\n",
                a.reference, a.mean_cosine, a.min_cosine
            ));
        }
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
