//! Schemes: what a weight can become. Quantization schemes say what a
//! quantized weight costs in bytes and how its tensors are made; the
//! factorizations ([`Scheme::LowRank`], [`Scheme::Kronecker`]) are made by
//! [`crate::compress::factorize`] and ride the same selection, so one budget
//! chooses across both families.

use super::gptq;
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

    /// Parse `--lowrank` / `--kronecker` strengths: percentages of the
    /// parameters kept, comma-separated (`50,25`), each in 1..=99.
    pub fn parse_factorizations(list: &str, make: fn(u8) -> Scheme) -> Result<Vec<Scheme>, String> {
        list.split(',')
            .map(|p| {
                let p = p.trim().trim_end_matches('%');
                match p.parse::<u8>() {
                    Ok(v) if (1..=99).contains(&v) => Ok(make(v)),
                    _ => Err(format!(
                        "`{p}` is not a percentage of parameters to keep (1 to 99)"
                    )),
                }
            })
            .collect()
    }

    /// The scheme's name, as the command line spells it (`lowrank50` for
    /// `--lowrank 50`).
    pub fn name(self) -> String {
        match self {
            Scheme::Int8 => "int8".into(),
            Scheme::W8A8 => "w8a8".into(),
            Scheme::Blocks(f) => f.name().into(),
            Scheme::LowRank(p) => format!("lowrank{p}"),
            Scheme::Kronecker(p) => format!("kronecker{p}"),
        }
    }

    /// True for the factorizations, which replace a matrix product by
    /// products with f32 factors (and never serve a table lookup).
    pub fn is_factorization(self) -> bool {
        matches!(self, Scheme::LowRank(_) | Scheme::Kronecker(_))
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
        if self.is_factorization() {
            return !table && k > 0;
        }
        let f = match (self, table) {
            (Scheme::Int8 | Scheme::W8A8, false) => return k > 0,
            _ => self.table_format(),
        };
        k > 0 && k.is_multiple_of(f.block_elems())
    }

    /// Bytes an `[n, k]` matrix takes in this quantization scheme (`table`: as
    /// a `Gather` source); a factorization's bytes depend on the rank it
    /// finds, so this is the dense f32 size for them.
    pub fn bytes(self, n: usize, k: usize, table: bool) -> usize {
        match (self, table) {
            (Scheme::LowRank(_) | Scheme::Kronecker(_), _) => 4 * n * k,
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
            (Scheme::LowRank(_) | Scheme::Kronecker(_), _) => Err(IrError::Invalid(format!(
                "{} is a factorization, not a quantization",
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
            Scheme::parse_factorizations("50, 25%", Scheme::LowRank).unwrap(),
            vec![Scheme::LowRank(50), Scheme::LowRank(25)]
        );
        assert_eq!(Scheme::Kronecker(30).name(), "kronecker30");
        assert!(Scheme::parse_factorizations("100", Scheme::LowRank).is_err());
        assert!(Scheme::parse_factorizations("x", Scheme::Kronecker).is_err());
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
