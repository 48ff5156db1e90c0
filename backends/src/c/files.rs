//! The files of a C build: `model.c` and `model.h` around the emitted steps,
//! the `main.c` harness, the `Makefile` for a [`Target`], and `weights.bin`.

use super::ctype::{literals, npy_descr, storage_ctype};
use super::{Ctx, EmitError, Emitted, Options, Weights};
use crate::program::{BufferId, Storage};
use std::fmt::Write;

/// A machine the Makefile compiles for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The build machine (`cc -march=native`).
    #[default]
    Host,
    /// 64-bit Arm Linux (`aarch64-linux-gnu-gcc`, NEON).
    Aarch64,
    /// 32-bit Arm Linux, hard float (`arm-linux-gnueabihf-gcc`, NEON).
    Armv7,
    /// 64-bit RISC-V Linux (`riscv64-linux-gnu-gcc`).
    Riscv64,
    /// Cortex-M4F bare metal (`arm-none-eabi-gcc`): `model.o` only.
    CortexM4,
}

/// Every target, for `--target` and the cross tests.
pub const TARGETS: [Target; 5] = [
    Target::Host,
    Target::Aarch64,
    Target::Armv7,
    Target::Riscv64,
    Target::CortexM4,
];

impl Target {
    /// The name `egret build --target` takes.
    pub fn name(self) -> &'static str {
        match self {
            Target::Host => "host",
            Target::Aarch64 => "aarch64-linux-gnu",
            Target::Armv7 => "armv7-linux-gnueabihf",
            Target::Riscv64 => "riscv64-linux-gnu",
            Target::CortexM4 => "cortex-m4",
        }
    }

    /// The target called `name`.
    pub fn parse(name: &str) -> Option<Target> {
        TARGETS.into_iter().find(|t| t.name() == name)
    }

    /// The C compiler the Makefile uses.
    pub fn cc(self) -> &'static str {
        match self {
            Target::Host => "cc",
            Target::Aarch64 => "aarch64-linux-gnu-gcc",
            Target::Armv7 => "arm-linux-gnueabihf-gcc",
            Target::Riscv64 => "riscv64-linux-gnu-gcc",
            Target::CortexM4 => "arm-none-eabi-gcc",
        }
    }

    /// Target-specific compiler flags.
    pub fn cflags(self) -> &'static str {
        match self {
            Target::Host => "-march=native",
            Target::Aarch64 | Target::Riscv64 => "",
            Target::Armv7 => "-mfpu=neon-vfpv4",
            Target::CortexM4 => {
                "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffunction-sections -fdata-sections"
            }
        }
    }

    /// Linker flags (cross binaries are static, so qemu-user runs them as is).
    pub fn ldflags(self) -> &'static str {
        match self {
            Target::Host | Target::CortexM4 => "",
            _ => "-static",
        }
    }

    /// Whether only `model.o` is built (no OS to run a harness on).
    pub fn compile_only(self) -> bool {
        self == Target::CortexM4
    }

    /// The qemu-user emulator that runs this target's binaries, if any.
    pub fn qemu(self) -> Option<&'static str> {
        match self {
            Target::Aarch64 => Some("qemu-aarch64"),
            Target::Armv7 => Some("qemu-arm"),
            Target::Riscv64 => Some("qemu-riscv64"),
            Target::Host | Target::CortexM4 => None,
        }
    }
}

/// The generated files, by name.
#[derive(Clone, Debug)]
pub struct Files {
    /// `model.c`.
    pub model_c: String,
    /// `model.h`.
    pub model_h: String,
    /// `main.c`.
    pub main_c: String,
    /// `Makefile`.
    pub makefile: String,
    /// `weights.bin`, with [`Weights::Bin`].
    pub weights_bin: Option<Vec<u8>>,
}

impl Files {
    /// Every file as `(name, contents)`.
    pub fn list(&self) -> Vec<(&'static str, &[u8])> {
        let mut v: Vec<(&'static str, &[u8])> = vec![
            ("model.c", self.model_c.as_bytes()),
            ("model.h", self.model_h.as_bytes()),
            ("main.c", self.main_c.as_bytes()),
            ("Makefile", self.makefile.as_bytes()),
        ];
        if let Some(w) = &self.weights_bin {
            v.push(("weights.bin", w));
        }
        v
    }
}

/// A string as a C string literal (octal escapes for anything unusual).
fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b' '..=b'~' if b != b'?' => out.push(b as char),
            _ => out += &format!("\\{b:03o}"),
        }
    }
    out.push('"');
    out
}

/// A string safe inside a C block comment.
fn comment(s: &str) -> String {
    s.replace("*/", "* /")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Padding of `n` bytes up to a multiple of 64.
fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// The tensor-info table of `bufs`, and the harness I/O offsets after `io`.
fn io_table(cx: &Ctx<'_>, bufs: &[BufferId], io: &mut usize) -> Result<String, EmitError> {
    let mut s = String::new();
    for &b in bufs {
        let buf = &cx.p.buffers[b];
        let shape: Vec<String> = buf.shape.iter().map(|d| d.to_string()).collect();
        let shape = if shape.is_empty() {
            "0".to_string()
        } else {
            shape.join(", ")
        };
        let _ = writeln!(
            s,
            "    {{{}, \"{}\", {}, {{{shape}}}, {}, {}}},",
            c_string(&buf.name),
            npy_descr(buf.dtype)?,
            buf.shape.len(),
            buf.bytes,
            *io
        );
        *io += align64(buf.bytes);
    }
    s += "    {NULL, NULL, 0, {0}, 0, 0}\n";
    Ok(s)
}

/// The `#define`s and comments describing `bufs` in `model.h`.
fn io_macros(cx: &Ctx<'_>, bufs: &[BufferId], kind: &str) -> String {
    let mut s = String::new();
    for (i, &b) in bufs.iter().enumerate() {
        let buf = &cx.p.buffers[b];
        let _ = writeln!(
            s,
            "/* {kind} {i} `{}`: {} {:?} */\n#define EGRET_{}_{i}_BYTES {}",
            comment(&buf.name),
            buf.dtype,
            buf.shape,
            kind.to_ascii_uppercase(),
            buf.bytes
        );
    }
    s
}

/// The constants `model.c` uses, as C definitions (inline arrays, or
/// macros into the weights blob, which is returned).
fn constants(cx: &Ctx<'_>, opts: &Options) -> Result<(String, Vec<u8>, usize), EmitError> {
    let mut defs = String::new();
    let mut blob: Vec<u8> = Vec::new();
    let mut total = 0usize;
    for &(b, transposed) in &cx.used_consts {
        let buf = &cx.p.buffers[b];
        let Storage::Const(t) = &buf.storage else {
            continue;
        };
        let name = super::const_name(b, transposed);
        let t = if transposed {
            transpose2d(t).ok_or_else(|| {
                EmitError::unsupported("Linear", "the weight cannot be transposed")
            })?
        } else {
            t.clone()
        };
        total += t.byte_size();
        match opts.weights {
            Weights::Inline => {
                let lits = literals(&t)?;
                let _ = writeln!(
                    defs,
                    "/* `{}` {} {:?} */\nstatic const {} {name}[{}] = {{",
                    comment(&buf.name),
                    buf.dtype,
                    t.shape(),
                    storage_ctype(buf.dtype)?,
                    lits.len().max(1)
                );
                if lits.is_empty() {
                    defs += "    0\n";
                }
                for chunk in lits.chunks(8) {
                    let _ = writeln!(defs, "    {},", chunk.join(", "));
                }
                defs += "};\n";
            }
            Weights::Bin => {
                let off = blob.len();
                blob.extend_from_slice(t.bytes());
                blob.resize(align64(blob.len()), 0);
                let _ = writeln!(
                    defs,
                    "#define {name} (W + {off}) /* `{}` {} {:?} */",
                    comment(&buf.name),
                    buf.dtype,
                    t.shape()
                );
            }
        }
    }
    Ok((defs, blob, total))
}

/// A 2-D tensor transposed (a `Linear` weight stored `n × k`, emitted `k × n`).
fn transpose2d(t: &egret_ir::Tensor) -> Option<egret_ir::Tensor> {
    let [r, c] = *t.shape() else { return None };
    let v = t.as_slice::<f32>().ok()?;
    let out: Vec<f32> = (0..c * r).map(|i| v[(i % r) * c + i / r]).collect();
    egret_ir::Tensor::from_vec(vec![c, r], out).ok()
}

/// The Makefile for `target`.
fn makefile(target: super::Target) -> String {
    let goal = if target.compile_only() {
        "model.o"
    } else {
        "model"
    };
    format!(
        "# Generated by egret for target {name}. Override with `make CC=... CFLAGS=...`.\n\
         CC = {cc}\n\
         CFLAGS = -O2 -std=c99 -Wall -Wextra -fno-strict-aliasing {flags}\n\
         LDFLAGS = {ld}\n\
         LDLIBS = -lm\n\
         \n\
         all: {goal}\n\
         \n\
         model: main.o model.o\n\
         \t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ main.o model.o $(LDLIBS)\n\
         \n\
         main.o: main.c model.h\n\
         \t$(CC) $(CFLAGS) -c -o $@ main.c\n\
         \n\
         model.o: model.c model.h\n\
         \t$(CC) $(CFLAGS) -c -o $@ model.c\n\
         \n\
         clean:\n\
         \trm -f model main.o model.o\n\
         \n\
         .PHONY: all clean\n",
        name = target.name(),
        cc = target.cc(),
        flags = target.cflags(),
        ld = target.ldflags(),
    )
}

/// Put the emitted steps into the files.
pub(crate) fn assemble(cx: &mut Ctx<'_>, body: &str, opts: &Options) -> Result<Emitted, EmitError> {
    let p = cx.p;
    let (consts, blob, weights_bytes) = constants(cx, opts)?;
    let inline = opts.weights == Weights::Inline;
    let max_rank = p
        .inputs
        .iter()
        .chain(&p.outputs)
        .map(|&b| p.buffers[b].shape.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut io = 0usize;
    let inputs = io_table(cx, &p.inputs, &mut io)?;
    let outputs = io_table(cx, &p.outputs, &mut io)?;
    let graph = comment(&cx.g.name);

    let mut h = String::new();
    let _ = write!(
        h,
        "/* Generated by egret: the interface of model.c (graph `{graph}`). */\n\
         #ifndef EGRET_MODEL_H\n#define EGRET_MODEL_H\n\n#include <stddef.h>\n\n\
         /* Bytes of the static arena in model.c (every intermediate value). */\n\
         #define EGRET_ARENA_BYTES {arena}\n\
         /* Bytes of the static scratch of the block and W8A8 kernels. */\n\
         #define EGRET_SCRATCH_BYTES {scratch}\n\
         /* Bytes of constant data, {where_}. */\n\
         #define EGRET_WEIGHTS_BYTES {wb}\n\
         /* 1: the weights are compiled into model.c; 0: egret_model reads them\n   from the bytes of weights.bin, passed as its first argument. */\n\
         #define EGRET_WEIGHTS_INLINE {inl}\n\
         #define EGRET_NUM_INPUTS {ni}\n#define EGRET_NUM_OUTPUTS {no}\n\
         #define EGRET_MAX_RANK {max_rank}\n\
         /* Bytes of all inputs and outputs, each padded to 64 (the harness's buffer). */\n\
         #define EGRET_IO_BYTES {io}\n\n",
        arena = p.arena_bytes,
        scratch = cx.scratch_bytes,
        where_ = if inline {
            "inline in model.c"
        } else {
            "in weights.bin"
        },
        wb = if inline { weights_bytes } else { blob.len() },
        inl = u8::from(inline),
        ni = p.inputs.len(),
        no = p.outputs.len(),
    );
    h += &io_macros(cx, &p.inputs, "input");
    h += &io_macros(cx, &p.outputs, "output");
    h += "\n/* One input or output of the model. */\n\
          typedef struct {\n\
          \x20   const char *name;  /* the graph's name for the value */\n\
          \x20   const char *descr; /* numpy dtype code, e.g. \"<f4\" */\n\
          \x20   int rank;\n\
          \x20   long shape[EGRET_MAX_RANK];\n\
          \x20   size_t bytes;\n\
          \x20   size_t io_offset;  /* where main.c keeps it in its buffer */\n\
          } egret_tensor_info;\n\n\
          /* The inputs and outputs in order, each list ending with a zeroed entry. */\n\
          extern const egret_tensor_info egret_inputs[EGRET_NUM_INPUTS + 1];\n\
          extern const egret_tensor_info egret_outputs[EGRET_NUM_OUTPUTS + 1];\n\n\
          /* Run the model: read inputs[i] (EGRET_INPUT_i_BYTES each), write\n   outputs[i] (EGRET_OUTPUT_i_BYTES each). `weights` is NULL when\n   EGRET_WEIGHTS_INLINE, else the contents of weights.bin, 8-byte aligned.\n   Returns 0. Not reentrant: there is one static arena. */\n\
          int egret_model(const void *weights, const void *const *inputs, void *const *outputs);\n\n\
          #endif\n";

    let mut c = String::new();
    let _ = write!(
        c,
        "/* Generated by egret from graph `{graph}`: {steps} steps, arena {arena} bytes,\n   weights {weights_bytes} bytes. Build with -fno-strict-aliasing (the arena\n   holds values of different types over time). */\n\
         #include \"model.h\"\n\n#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n",
        steps = p.steps.len(),
        arena = p.arena_bytes,
    );
    for k in &cx.kernels {
        c += k.source();
        c += "\n";
    }
    let _ = write!(
        c,
        "/* The arena: every intermediate value, at offsets planned by egret. */\n\
         static union {{\n    double align_double;\n    int64_t align_int64;\n    unsigned char bytes[{}];\n}} egret_arena;\n\n",
        p.arena_bytes.max(1)
    );
    if cx.scratch_bytes > 0 {
        let _ = write!(
            c,
            "/* Scratch of the block and W8A8 kernels, shared by their steps. */\n\
             static union {{\n    double align_double;\n    unsigned char bytes[{}];\n}} egret_scratch;\n\n",
            cx.scratch_bytes
        );
    }
    c += &consts;
    let _ = write!(
        c,
        "\nconst egret_tensor_info egret_inputs[EGRET_NUM_INPUTS + 1] = {{\n{inputs}}};\n\n\
         const egret_tensor_info egret_outputs[EGRET_NUM_OUTPUTS + 1] = {{\n{outputs}}};\n\n\
         int egret_model(const void *weights, const void *const *inputs, void *const *outputs)\n{{\n\
         \x20   unsigned char *A = egret_arena.bytes;\n"
    );
    c += if inline {
        "    (void)weights;\n"
    } else {
        "    const unsigned char *W = (const unsigned char *)weights;\n    (void)W;\n"
    };
    c += "    (void)A;\n    (void)inputs;\n    (void)outputs;\n";
    c += body;
    c += "    return 0;\n}\n";

    Ok(Emitted {
        files: Files {
            model_c: c,
            model_h: h,
            main_c: include_str!("main.c").to_string(),
            makefile: makefile(opts.target),
            weights_bin: (!inline).then_some(blob),
        },
        arena_bytes: p.arena_bytes,
        weights_bytes,
        scratch_bytes: cx.scratch_bytes,
        kernels: cx.kernels.iter().copied().collect(),
    })
}
