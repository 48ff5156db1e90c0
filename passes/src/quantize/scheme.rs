//! Schemes: what a weight can become. Quantization schemes say what a
//! quantized weight costs in bytes and how its tensors are made; the
//! factorizations ([`Scheme::LowRank`], [`Scheme::Kronecker`]), pruning
//! ([`Scheme::Pruned`], [`crate::compress::prune`]) and activation sparsity
//! ([`Scheme::ActSparse`]) are made by the rules and ride the same
//! selection, so one budget chooses across every family.

use super::gptq;
use crate::compress::prune::{Method, Pattern};
use egret_ir::{blocks, BlockFormat, DType, IrError, Tensor};

/// How one weight matrix is stored after compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// int8, one symmetric scale per output channel; activations stay f32
    /// (`egret::MatMulInt8`, `act_quant = 0`).
    Int8,
    /// int8 weights as [`Scheme::Int8`], activations quantized per token at run
    /// time (`egret::MatMulInt8`, `act_quant = 1`).
    W8A8,
    /// A block format: GGML Q8_0 / Q4_0 / Q4_1 or egret's int4 groups of 64 and
    /// 128 (`egret::MatMulBlocks`).
    Blocks(BlockFormat),
    /// Low rank, `Wᵀ ≈ P·Q` in f32, the rank chosen so the factors hold this
    /// percentage of the weight's parameters (activation-aware with
    /// calibration): two `MatMul`s.
    LowRank(u8),
    /// A sum of Kronecker products `Σ Aᵣ ⊗ Bᵣ` in f32 holding this percentage
    /// of the weight's parameters: reshapes around two `MatMul`s.
    Kronecker(u8),
    /// Pruned to `pattern` by `method`; the kept weights in egret's bitmap
    /// format, f32 or (with `int8`) per-row int8 (`egret::MatMulSparse`).
    Pruned {
        /// How the kept weights are chosen.
        method: Method,
        /// Which weights may go.
        pattern: Pattern,
        /// Kept values in int8 with a scale per row.
        int8: bool,
    },
    /// TEAL activation sparsity: the f32 weight kept dense (as `[k, n]`), its
    /// input's entries below a calibrated magnitude threshold dropped at run
    /// time, this percentage of them on the calibration data
    /// (`egret::MatMulActSparse`, which skips the weight rows they multiply).
    /// `ActSparse(0)` is the same f32 weight under a plain `MatMul`: the dense
    /// baseline at the same weight precision.
    ActSparse(u8),
}

/// The block formats a user can quantize to: those egret has a quantizer for
/// (K-quants and Q5 are import-only), in declaration order.
pub fn block_targets() -> impl Iterator<Item = BlockFormat> {
    BlockFormat::ALL
        .into_iter()
        .filter(|&f| blocks::can_quantize(f))
}

impl Scheme {
    /// Every scheme `auto` chooses among.
    pub fn all() -> Vec<Scheme> {
        let mut v = vec![Scheme::Int8, Scheme::W8A8];
        v.extend(block_targets().map(Scheme::Blocks));
        v
    }

    /// Parse a `--quantize` value: scheme names separated by commas, where
    /// `int4` is int4 in groups of 64 with a minimum (4.5 bits per weight,
    /// like Q4_0 but asymmetric) and `auto` is every scheme.
    pub fn parse_list(s: &str) -> Result<Vec<Scheme>, String> {
        let mut out: Vec<Scheme> = Vec::new();
        for name in s.split(',').map(str::trim) {
            for scheme in Scheme::parse_one(name)? {
                if !out.contains(&scheme) {
                    out.push(scheme);
                }
            }
        }
        Ok(out)
    }

    fn parse_one(s: &str) -> Result<Vec<Scheme>, String> {
        match s {
            "auto" => Ok(Scheme::all()),
            "int8" => Ok(vec![Scheme::Int8]),
            "w8a8" => Ok(vec![Scheme::W8A8]),
            "int4" => Ok(vec![Scheme::Blocks(BlockFormat::I4A64)]),
            other => block_targets()
                .find(|f| f.name() == other)
                .map(|f| vec![Scheme::Blocks(f)])
                .ok_or_else(|| {
                    let names: Vec<&str> = block_targets().map(|f| f.name()).collect();
                    format!(
                        "unknown scheme `{other}`: use int8, w8a8, int4, {}, or auto",
                        names.join(", ")
                    )
                }),
        }
    }

    /// Parse `--lowrank` / `--kronecker` strengths (percentages of the
    /// parameters kept) or `--act-sparsity` ones (percentages of the
    /// activations dropped): comma-separated (`50,25`), each from `min` to 99.
    pub fn parse_percentages(
        list: &str,
        min: u8,
        make: fn(u8) -> Scheme,
    ) -> Result<Vec<Scheme>, String> {
        list.split(',')
            .map(|p| {
                let p = p.trim().trim_end_matches('%');
                match p.parse::<u8>() {
                    Ok(v) if (min..=99).contains(&v) => Ok(make(v)),
                    _ => Err(format!("`{p}` is not a percentage from {min} to 99")),
                }
            })
            .collect()
    }

    /// Parse `--prune`: comma-separated `METHOD` + `PCT` or `METHOD-2of4`,
    /// with an optional `-int8` (`wanda50`, `sparsegpt-2of4-int8`), where
    /// `METHOD` is magnitude, wanda or sparsegpt and `PCT` in 1..=99.
    pub fn parse_pruning(list: &str) -> Result<Vec<Scheme>, String> {
        list.split(',')
            .map(|s| Scheme::parse_pruned(s.trim()))
            .collect()
    }

    fn parse_pruned(spec: &str) -> Result<Scheme, String> {
        let bad = || {
            format!(
                "`{spec}` is not a pruning: use METHOD and a percentage, or METHOD-2of4, \
                 optionally with -int8 (wanda50, sparsegpt-2of4, magnitude70-int8); \
                 methods: magnitude, wanda, sparsegpt"
            )
        };
        let (body, int8) = match spec.strip_suffix("-int8") {
            Some(b) => (b, true),
            None => (spec, false),
        };
        let method = Method::ALL
            .into_iter()
            .find(|m| body.starts_with(m.name()))
            .ok_or_else(bad)?;
        let pattern = match &body[method.name().len()..] {
            "-2of4" | "2:4" => Pattern::TwoOfFour,
            pct => match pct.trim_end_matches('%').parse::<u8>() {
                Ok(p) if (1..=99).contains(&p) => Pattern::Percent(p),
                _ => return Err(bad()),
            },
        };
        Ok(Scheme::Pruned {
            method,
            pattern,
            int8,
        })
    }

    /// The scheme's name, as the command line spells it (`lowrank50` for
    /// `--lowrank 50`, `wanda-2of4-int8`, `act40` for `--act-sparsity 40`).
    pub fn name(self) -> String {
        match self {
            Scheme::Int8 => "int8".into(),
            Scheme::W8A8 => "w8a8".into(),
            Scheme::Blocks(f) => f.name().into(),
            Scheme::LowRank(p) => format!("lowrank{p}"),
            Scheme::Kronecker(p) => format!("kronecker{p}"),
            Scheme::Pruned {
                method,
                pattern,
                int8,
            } => {
                let pattern = match pattern {
                    Pattern::Percent(p) => p.to_string(),
                    Pattern::TwoOfFour => "-2of4".into(),
                };
                let suffix = if int8 { "-int8" } else { "" };
                format!("{}{pattern}{suffix}", method.name())
            }
            Scheme::ActSparse(p) => format!("act{p}"),
        }
    }

    /// True for the factorizations, which replace a matrix product by
    /// products with f32 factors (and never serve a table lookup).
    pub fn is_factorization(self) -> bool {
        matches!(self, Scheme::LowRank(_) | Scheme::Kronecker(_))
    }

    /// True for the schemes the rules make themselves (factorizations,
    /// pruning, activation sparsity) rather than by [`Scheme::quantize`];
    /// none of them serves a table lookup.
    pub fn is_structural(self) -> bool {
        !matches!(self, Scheme::Int8 | Scheme::W8A8 | Scheme::Blocks(_))
    }

    /// The block format an embedding table (a `Gather` source) gets: int8
    /// schemes store tables as Q8_0, since a per-row scale over a whole table
    /// row is what Q8_0 refines.
    pub fn table_format(self) -> BlockFormat {
        match self {
            Scheme::Blocks(f) => f,
            _ => BlockFormat::Q8_0,
        }
    }

    /// Whether an `[n, k]` matrix can take this quantization scheme (`k` a
    /// whole number of blocks); `table`: as a `Gather` source. Whether a
    /// factorization saves anything depends on both dimensions, which
    /// [`crate::compress::factorize`] decides; here they fit matrix products.
    pub fn fits(self, k: usize, table: bool) -> bool {
        match self {
            Scheme::Pruned { pattern, .. } => return !table && pattern.fits(k),
            s if s.is_structural() => return !table && k > 0,
            _ => {}
        }
        let f = match (self, table) {
            (Scheme::Int8 | Scheme::W8A8, false) => return k > 0,
            _ => self.table_format(),
        };
        k > 0 && k.is_multiple_of(f.block_elems())
    }

    /// Bytes an `[n, k]` matrix takes in this quantization scheme (`table`: as
    /// a `Gather` source); the other families' bytes depend on what the rules
    /// find (a rank, a mask), so this is the dense f32 size for them.
    pub fn bytes(self, n: usize, k: usize, table: bool) -> usize {
        match (self, table) {
            (s, _) if s.is_structural() => 4 * n * k,
            (Scheme::Int8 | Scheme::W8A8, false) => n * k + 4 * n,
            _ => {
                let f = self.table_format();
                n * (k / f.block_elems()) * f.block_bytes()
            }
        }
    }

    /// Quantize the f32 matrix `w` (`[n, k]`, rows = output channels). Returns
    /// the weight tensor and, for the int8 schemes outside tables, the per-row
    /// scales. A factorization is not a quantization: it is an error here. `importance` (length `k`) weights the error the block
    /// quantizers' scale search minimises; `gptq_factor` (`[k, k]`, from
    /// [`gptq::inverse_factor`]) turns on GPTQ error compensation.
    pub fn quantize(
        self,
        w: &Tensor,
        importance: Option<&[f32]>,
        table: bool,
        gptq_factor: Option<&[f32]>,
    ) -> Result<(Tensor, Option<Tensor>), IrError> {
        let matrix = || match *w.shape() {
            [n, k] => Ok((n, k)),
            _ => Err(IrError::ShapeMismatch(format!(
                "weights must be [n, k], got {:?}",
                w.shape()
            ))),
        };
        match (self, table) {
            (s, _) if s.is_structural() => Err(IrError::Invalid(format!(
                "{} is not a quantization",
                self.name()
            ))),
            (Scheme::Int8 | Scheme::W8A8, false) => {
                let (n, k) = matrix()?;
                let x = w.as_slice::<f32>()?;
                let (q, s) = match gptq_factor {
                    Some(u) => gptq::gptq_rows_i8(x, n, k, u)?,
                    None => blocks::quantize_rows_i8(x, n, k),
                };
                let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
                Ok((
                    Tensor::from_bytes(DType::I8, vec![n, k], &bytes)?,
                    Some(Tensor::from_vec(vec![n], s)?),
                ))
            }
            _ => match gptq_factor {
                Some(u) => {
                    let (n, k) = matrix()?;
                    let f = self.table_format();
                    let x = w.as_slice::<f32>()?;
                    let bytes = gptq::gptq_blocks(x, n, k, f, u, importance)?;
                    Ok((
                        Tensor::from_bytes(DType::Block(f), vec![n, k], &bytes)?,
                        None,
                    ))
                }
                None => Ok((blocks::quantize(w, self.table_format(), importance)?, None)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for s in Scheme::all() {
            assert_eq!(Scheme::parse_list(&s.name()).unwrap(), vec![s]);
        }
        assert_eq!(
            Scheme::parse_percentages("50, 25%", 1, Scheme::LowRank).unwrap(),
            vec![Scheme::LowRank(50), Scheme::LowRank(25)]
        );
        assert_eq!(Scheme::Kronecker(30).name(), "kronecker30");
        assert!(Scheme::parse_percentages("100", 1, Scheme::LowRank).is_err());
        assert!(Scheme::parse_percentages("0", 1, Scheme::LowRank).is_err());
        assert!(Scheme::parse_percentages("0", 0, Scheme::ActSparse).is_ok());
        assert!(Scheme::parse_percentages("x", 1, Scheme::Kronecker).is_err());
        let pruned = Scheme::parse_pruning("wanda50, sparsegpt-2of4-int8,magnitude2:4").unwrap();
        assert_eq!(
            pruned,
            vec![
                Scheme::Pruned {
                    method: Method::Wanda,
                    pattern: Pattern::Percent(50),
                    int8: false
                },
                Scheme::Pruned {
                    method: Method::SparseGpt,
                    pattern: Pattern::TwoOfFour,
                    int8: true
                },
                Scheme::Pruned {
                    method: Method::Magnitude,
                    pattern: Pattern::TwoOfFour,
                    int8: false
                },
            ]
        );
        for s in pruned {
            assert_eq!(Scheme::parse_pruning(&s.name()).unwrap(), vec![s]);
        }
        for bad in ["wanda", "wanda0", "wanda100", "obs50", "wanda50-int4"] {
            assert!(Scheme::parse_pruning(bad).is_err(), "{bad}");
        }
        assert_eq!(Scheme::parse_list("auto").unwrap().len(), 9);
        assert!(Scheme::parse_list("q6_k").is_err());
        assert_eq!(
            Scheme::parse_list("int8, q4_0,int8").unwrap(),
            vec![Scheme::Int8, Scheme::Blocks(BlockFormat::Q4_0)]
        );
    }

    #[test]
    fn sizes_in_bits_per_weight() {
        let bpw = |s: Scheme, table| s.bytes(1, 4096, table) as f64 * 8.0 / 4096.0;
        assert_eq!(bpw(Scheme::Blocks(BlockFormat::Q4_0), false), 4.5);
        assert_eq!(bpw(Scheme::Blocks(BlockFormat::Q4_1), false), 5.0);
        assert_eq!(bpw(Scheme::Blocks(BlockFormat::I4A64), false), 4.5);
        assert_eq!(bpw(Scheme::Blocks(BlockFormat::I4S128), false), 4.125);
        assert_eq!(bpw(Scheme::Blocks(BlockFormat::Q8_0), false), 8.5);
        assert!((bpw(Scheme::Int8, false) - 8.0078125).abs() < 1e-12);
        assert_eq!(bpw(Scheme::Int8, true), 8.5);
        assert!(!Scheme::Blocks(BlockFormat::I4A128).fits(64, false));
        assert!(Scheme::Int8.fits(7, false) && !Scheme::Int8.fits(7, true));
    }
}
