//! The standalone C backend (`egret build`): every ONNX node test whose ops
//! it supports, compiled with the host C compiler and run, must match the
//! expected outputs; a real model (PP-OCR cls) is built by the CLI, links
//! no allocator, matches the interpreter, and passes ASan/UBSan; PP-OCRv4
//! det/rec and MiniLM run with a weights blob; Attention's variants match the
//! interpreter on small shapes; egret's quantized ops (every block format,
//! int8, W8A8) match the interpreter on unit shapes and in quantized MiniLM;
//! MiniLM (f32, int8, Q4_0) and SmolLM2 Q4_1's greedy ids through one
//! fixed-cache program match the interpreter on the host and under
//! qemu-aarch64/arm/riscv64; every silero-vad variant (`If` specialised to
//! the taken branch, LSTM) matches the interpreter on the host, statefully
//! over chunks, under ASan/UBSan, and under qemu-aarch64/arm/riscv64.

mod common;
#[allow(dead_code)] // the conformance runner's own entry points are not used here
mod conformance;

use egret_backends::c::{self, EmitError, Emitted};
use egret_backends::program::{lower, trace};
use egret_frontends::{npy, onnx};
use egret_ir::{Graph, Tensor, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// Flags every generated file must compile cleanly with.
const STRICT: [&str; 6] = [
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-fno-strict-aliasing",
    "-O1",
];

/// A scratch folder under the target dir, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("c_backend")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Specialise `g`'s `If`s to `inputs` (as `egret build` does), lower it
/// for `inputs` and emit C; `Err` when the lowering or the emitter does
/// not support the graph (with the reason).
fn emit(g: &Graph, inputs: &[Value], opts: &c::Options) -> Result<Emitted, String> {
    let g = &c::specialize_ifs(g, inputs).map_err(|e| format!("If: {e}"))?;
    let tr = trace(g, inputs.to_vec()).map_err(|e| format!("trace: {e}"))?;
    let p = lower(g, &tr).map_err(|e| format!("lower: {e}"))?;
    c::emit(g, &p, opts).map_err(|e| match e {
        EmitError::Unsupported { op, .. } => format!("emit: {op}"),
    })
}

/// Write the files and the inputs as `.npy` into `dir`.
fn write(dir: &Path, e: &Emitted, inputs: &[Value]) -> Result<Vec<PathBuf>, String> {
    for (name, bytes) in e.files.list() {
        std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = dir.join(format!("in{i}.npy"));
            let t = v.as_tensor().map_err(|e| e.to_string())?;
            npy::write(&path, t).map_err(|e| e.to_string())?;
            Ok(path)
        })
        .collect()
}

/// A compiler, its flags, and the emulator that runs what it builds.
struct Toolchain {
    name: &'static str,
    cc: &'static str,
    flags: Vec<&'static str>,
    qemu: Option<&'static str>,
}

impl Toolchain {
    /// The host compiler with the strict flags.
    fn host() -> Toolchain {
        Toolchain {
            name: "host",
            cc: "cc",
            flags: STRICT.to_vec(),
            qemu: None,
        }
    }

    /// The host compiler with AddressSanitizer and UndefinedBehaviorSanitizer,
    /// any report fatal.
    fn sanitized() -> Toolchain {
        Toolchain {
            name: "host-asan",
            flags: vec![
                "-std=c99",
                "-O1",
                "-g",
                "-fno-strict-aliasing",
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
            ],
            ..Toolchain::host()
        }
    }

    /// The host compiler with the strict flags plus `-mavx2 -mfma`, so the
    /// kernels' AVX2 paths compile in, if this CPU has both.
    fn host_avx2() -> Option<Toolchain> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let mut flags = STRICT.to_vec();
            flags.extend(["-mavx2", "-mfma"]);
            return Some(Toolchain {
                name: "host-avx2",
                flags,
                ..Toolchain::host()
            });
        }
        None
    }

    /// A Linux cross target's gcc (static, strict) and its qemu-user, or
    /// `None` (after `common::tool_available`'s SKIP line) when either is
    /// not installed.
    fn cross(t: c::Target) -> Option<Toolchain> {
        let qemu = t.qemu()?;
        if ![t.cc(), qemu]
            .into_iter()
            .all(|tool| common::tool_available(tool, CROSS_SETUP))
        {
            return None;
        }
        let mut flags = STRICT.to_vec();
        flags.extend(t.cflags().split_whitespace());
        flags.push("-static");
        Some(Toolchain {
            name: t.name(),
            cc: t.cc(),
            flags,
            qemu: Some(qemu),
        })
    }
}

/// The script that installs the cross compilers and qemu-user.
const CROSS_SETUP: &str = "scripts/setup-cross.sh";

/// The Linux cross targets that run under qemu-user.
const QEMU_TARGETS: [c::Target; 3] = [c::Target::Aarch64, c::Target::Armv7, c::Target::Riscv64];

/// Each of `QEMU_TARGETS` with its toolchain; a target whose compiler or
/// qemu is missing is left out (after `Toolchain::cross`'s SKIP line).
fn qemu_toolchains() -> Vec<(c::Target, Toolchain)> {
    QEMU_TARGETS
        .into_iter()
        .filter_map(|t| Some((t, Toolchain::cross(t)?)))
        .collect()
}

/// `CC FLAGS -o DIR/model DIR/main.c DIR/model.c -lm`.
fn compile(dir: &Path, tc: &Toolchain) -> Result<(), String> {
    let out = Command::new(tc.cc)
        .args(&tc.flags)
        .arg("-o")
        .arg(dir.join("model"))
        .arg(dir.join("main.c"))
        .arg(dir.join("model.c"))
        .arg("-lm")
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !stderr.contains("warning") {
        Ok(())
    } else {
        Err(format!("cc: {stderr}"))
    }
}

/// Run `DIR/model` (under `qemu` if given) on the input files; read
/// `outputs` `.npy` results.
fn run(
    dir: &Path,
    qemu: Option<&str>,
    inputs: &[PathBuf],
    outputs: usize,
) -> Result<Vec<Tensor>, String> {
    let outs: Vec<PathBuf> = (0..outputs)
        .map(|i| dir.join(format!("out{i}.npy")))
        .collect();
    let mut cmd = match qemu {
        Some(q) => {
            let mut c = Command::new(q);
            c.arg(dir.join("model"));
            c
        }
        None => Command::new(dir.join("model")),
    };
    let r = cmd
        .args(inputs)
        .args(&outs)
        .output()
        .map_err(|e| format!("run: {e}"))?;
    if !r.status.success() || !r.stderr.is_empty() {
        return Err(format!(
            "run: {} {}",
            r.status,
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    outs.iter()
        .map(|p| npy::read(p).map_err(|e| e.to_string()))
        .collect()
}

/// One node test ready to compile: its name, folder and emitted C.
struct Ready {
    name: String,
    dir: PathBuf,
    graph: Graph,
    emitted: Emitted,
    inputs: Vec<Value>,
}

/// Compile, run and compare one node test with its expected outputs.
fn check(r: &Ready, tc: &Toolchain) -> Result<(), String> {
    let dir = scratch(&format!("node-{}/{}", tc.name, r.name));
    let files = write(&dir, &r.emitted, &r.inputs)?;
    compile(&dir, tc)?;
    let got = run(&dir, tc.qemu, &files, r.graph.outputs.len())?;
    let data = r.dir.join("test_data_set_0");
    for (i, t) in got.into_iter().enumerate() {
        let o = r.graph.outputs[i];
        let want = onnx::read_value_pb(&data.join(format!("output_{i}.pb")), r.graph.value_type(o))
            .map_err(|e| format!("expected output {i}: {e}"))?;
        conformance::compare_values(&Value::Tensor(t), &want)
            .map_err(|e| format!("output {i}: {e}"))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The node tests the C backend supports, ready to compile, and the
/// number of node tests considered (random ones and, with `EGRET_FILTER`,
/// non-matching ones left out).
fn supported_node_tests() -> (Vec<Ready>, usize) {
    let filter = std::env::var("EGRET_FILTER").ok();
    let mut ready = Vec::new();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for case in common::node_cases() {
        if common::is_random(&case.name) || filter.as_ref().is_some_and(|f| !case.name.contains(f))
        {
            continue;
        }
        total += 1;
        let g = case.model.graph;
        match emit(&g, &case.inputs, &c::Options::default()) {
            Ok(emitted) => ready.push(Ready {
                name: case.name,
                dir: case.dir,
                graph: g,
                emitted,
                inputs: case.inputs,
            }),
            Err(why) => *unsupported.entry(why).or_default() += 1,
        }
    }
    let mut reasons: Vec<(&String, &usize)> = unsupported.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    println!("unsupported by the C backend (most common first):");
    for (why, n) in reasons.iter().take(40) {
        println!("  {n:>4}  {why}");
    }
    (ready, total)
}

/// Compile, run and compare `ready` on `tc`, two at a time; the failures.
fn check_all(ready: &[Ready], tc: &Toolchain) -> Vec<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(r) =
                    ready.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    if let Err(e) = check(r, tc) {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("{}: {e}", r.name));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    for f in &failures {
        println!("FAIL [{}] {f}", tc.name);
    }
    failures
}

#[test]
fn node_conformance_on_the_host_c_backend() {
    let start = Instant::now();
    let (ready, total) = supported_node_tests();
    let failures = check_all(&ready, &Toolchain::host());
    let supported = ready.len();
    println!(
        "onnx node conformance (c, host): {} passed, {} failed, of {supported} supported ({} unsupported, of {total} node tests; the interpreter passes 1750) in {:.0} s",
        supported - failures.len(),
        failures.len(),
        total - supported,
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} node tests failed on the C backend",
        failures.len()
    );
    if std::env::var_os("EGRET_FILTER").is_none() && total > 0 {
        assert!(
            supported >= 700,
            "only {supported} node tests are supported"
        );
    }
}

/// The node tests cross-compiled for aarch64, armv7 and riscv64 and run
/// under qemu-user: every `EGRET_QEMU_STRIDE`-th supported test (default
/// 6, so the three targets together cost about what the host run does; 1
/// runs them all). A target whose compiler or qemu is missing is skipped
/// with the reason, or fails the test under `EGRET_REQUIRE_DATA` (as in CI,
/// where scripts/setup-cross.sh installs them).
#[test]
fn node_conformance_under_qemu() {
    let stride: usize = std::env::var("EGRET_QEMU_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
        .max(1);
    let targets = [c::Target::Aarch64, c::Target::Armv7, c::Target::Riscv64];
    let chains: Vec<Toolchain> = targets.into_iter().filter_map(Toolchain::cross).collect();
    if chains.is_empty() {
        return;
    }
    let (ready, _) = supported_node_tests();
    let sample: Vec<Ready> = ready.into_iter().step_by(stride).collect();
    let mut failed = 0;
    for tc in &chains {
        let start = Instant::now();
        let failures = check_all(&sample, tc);
        println!(
            "onnx node conformance (c, {} under {}): {} passed, {} failed, of {} (every {stride}th supported test) in {:.0} s",
            tc.name,
            tc.qemu.unwrap_or("-"),
            sample.len() - failures.len(),
            failures.len(),
            sample.len(),
            start.elapsed().as_secs_f64()
        );
        failed += failures.len();
    }
    assert_eq!(failed, 0, "node tests failed under qemu");
}

/// The PP-OCR text-direction classifier, its fixture input written as `.npy`.
fn ppocr_cls() -> Option<(PathBuf, common::RealCase)> {
    let case = common::real_case("ppocr_cls")?;
    let path = common::cache().join("models/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    Some((path, case))
}

/// Largest |got − want| / (1 + |want|) over two f32 tensors of one shape.
fn scaled_error(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f64::max)
}

/// Runs `egret build --compile always --json --target T -o OUT MODEL
/// --input NAME=FILE...` and returns its JSON report, panicking with
/// egret's stderr if it fails.
fn egret_build(
    model: &Path,
    inputs: &[(String, PathBuf)],
    t: c::Target,
    out: &Path,
) -> serde_json::Value {
    let run = Command::new(env!("CARGO_BIN_EXE_egret"))
        .args([
            "build",
            "--compile",
            "always",
            "--json",
            "--target",
            t.name(),
            "-o",
        ])
        .arg(out)
        .arg(model)
        .args(
            inputs
                .iter()
                .flat_map(|(n, f)| ["--input".into(), format!("{n}={}", f.display())]),
        )
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "egret build --target {}: {}",
        t.name(),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn egret_build_makes_a_malloc_free_ppocr_cls_that_matches_the_interpreter() {
    let Some((path, case)) = ppocr_cls() else {
        return;
    };
    let dir = scratch("ppocr_cls");
    let x = dir.join("x.npy");
    npy::write(&x, case.inputs[0].as_tensor().unwrap()).unwrap();
    let report = egret_build(
        &path,
        &[("x".into(), x.clone())],
        c::Target::Host,
        &dir.join("build"),
    );
    assert_eq!(report["compiled"], true, "{report}");
    let text = report["model_o"]["text"].as_u64().unwrap();
    let bss = report["model_o"]["bss"].as_u64().unwrap();
    let arena = report["arena_bytes"].as_u64().unwrap();
    let weights = report["weights_bytes"].as_u64().unwrap();
    assert!(bss >= arena && text >= weights, "{report}");
    println!(
        "ppocr_cls footprint: text {text}, data {}, bss {bss}, arena {arena}, weights {weights} bytes",
        report["model_o"]["data"]
    );

    let nm = Command::new("nm")
        .arg(dir.join("build/model.o"))
        .output()
        .unwrap();
    let symbols = String::from_utf8_lossy(&nm.stdout);
    for bad in ["malloc", "free", "calloc", "realloc"] {
        assert!(
            !symbols.split_whitespace().any(|s| s == bad),
            "model.o refers to {bad}:\n{symbols}"
        );
    }

    let got = run(&dir.join("build"), None, &[x], 1).unwrap();
    let interp = egret_runtime::Interpreter::for_model(&case.model)
        .unwrap()
        .run(case.inputs.clone())
        .unwrap();
    let err = scaled_error(&got[0], interp[0].as_tensor().unwrap());
    println!("ppocr_cls: C backend vs interpreter, max scaled error {err:.1e}");
    assert!(err <= 1e-4, "{err}");
}

#[test]
fn ppocr_cls_is_clean_under_address_and_undefined_behaviour_sanitizers() {
    let Some((_, case)) = ppocr_cls() else {
        return;
    };
    let dir = scratch("ppocr_cls_asan");
    let e = emit(&case.model.graph, &case.inputs, &c::Options::default()).unwrap();
    let files = write(&dir, &e, &case.inputs).unwrap();
    compile(&dir, &Toolchain::sanitized()).unwrap();
    let got = run(&dir, None, &files, 1).unwrap();
    let err = scaled_error(&got[0], case.want[0].as_tensor().unwrap());
    assert!(err <= 1e-4, "{err} vs onnxruntime");
}

/// Lower, emit with `opts`, compile (strict flags) and run `g` on the host:
/// what was emitted and the outputs.
fn build_and_run_with(
    name: &str,
    g: &Graph,
    inputs: &[Value],
    opts: &c::Options,
) -> (Emitted, Vec<Tensor>) {
    let dir = scratch(name);
    let e = emit(g, inputs, opts).unwrap();
    let files = write(&dir, &e, inputs).unwrap();
    compile(&dir, &Toolchain::host()).unwrap();
    let outputs = run(&dir, None, &files, g.outputs.len()).unwrap();
    (e, outputs)
}

/// [`build_and_run_with`] the default options, outputs only.
fn build_and_run(name: &str, g: &Graph, inputs: &[Value]) -> Vec<Tensor> {
    build_and_run_with(name, g, inputs, &c::Options::default()).1
}

/// Options that put the weights in `weights.bin`, read by the harness.
fn weights_bin() -> c::Options {
    c::Options {
        weights: c::Weights::Bin,
        ..c::Options::default()
    }
}

#[test]
fn int8_per_channel_products_match_the_interpreter() {
    use egret_ir::{DType, OpCall, Shape, ValueType};
    let mut g = Graph::new("int8");
    let x = g.add_input(
        "x",
        ValueType::tensor(DType::F32, Some(Shape::known(&[3, 8]))),
    );
    let q: Vec<i8> = (0..32).map(|i| ((i * 37) % 255 - 127) as i8).collect();
    let w = g.add_const("w", Tensor::from_vec(vec![4, 8], q).unwrap());
    let scale = g.add_const(
        "scale",
        Tensor::from_vec(vec![4], vec![0.01f32, 0.02, 0.005, 0.1]).unwrap(),
    );
    let bias = g.add_const(
        "bias",
        Tensor::from_vec(vec![4], vec![1.0f32, -1.0, 0.5, 0.0]).unwrap(),
    );
    let mut call = OpCall::new("MatMulInt8");
    call.domain = "egret".into();
    let y = g.call1("y", call, &[x, w, scale, bias]).unwrap();
    g.outputs.push(y);
    let xs: Vec<f32> = (0..24).map(|i| (i as f32 - 12.0) / 7.0).collect();
    let inputs = vec![Value::Tensor(Tensor::from_vec(vec![3, 8], xs).unwrap())];
    let got = build_and_run("int8", &g, &inputs);
    let want = egret_runtime::Interpreter::new(&g)
        .unwrap()
        .run(inputs)
        .unwrap();
    let err = scaled_error(&got[0], want[0].as_tensor().unwrap());
    assert!(err <= 1e-6, "{err}");
}

/// `egret build` of PP-OCR cls for every cross target whose compiler is
/// installed: the Linux binaries run under qemu-user and match the
/// interpreter; the Cortex-M4 object compiles. Targets without a compiler
/// are skipped with the reason, or fail under `EGRET_REQUIRE_DATA`.
#[test]
fn ppocr_cls_builds_for_every_installed_cross_target() {
    let Some((path, case)) = ppocr_cls() else {
        return;
    };
    let dir = scratch("ppocr_cls_cross");
    let x = dir.join("x.npy");
    npy::write(&x, case.inputs[0].as_tensor().unwrap()).unwrap();
    let want = egret_runtime::Interpreter::for_model(&case.model)
        .unwrap()
        .run(case.inputs.clone())
        .unwrap();
    for t in c::TARGETS.into_iter().filter(|&t| t != c::Target::Host) {
        if !common::tool_available(t.cc(), CROSS_SETUP) {
            continue;
        }
        let out_dir = dir.join(t.name());
        let report = egret_build(&path, &[("x".into(), x.clone())], t, &out_dir);
        println!("ppocr_cls {}: model.o {}", t.name(), report["model_o"]);
        let Some(qemu) = t.qemu() else {
            assert!(out_dir.join("model.o").exists());
            continue;
        };
        let got = run(&out_dir, Some(qemu), std::slice::from_ref(&x), 1).unwrap();
        let err = scaled_error(&got[0], want[0].as_tensor().unwrap());
        assert!(err <= 1e-4, "{}: {err}", t.name());
    }
}

/// PP-OCRv4 det (ConvTranspose, Resize) and rec built with `--weights bin`
/// (the weights in weights.bin, read by the harness) match onnxruntime.
#[test]
fn ppocr_det_and_rec_with_a_weights_blob_match_onnxruntime() {
    for name in ["ppocr_det", "ppocr_rec"] {
        let Some(case) = common::real_case(name) else {
            continue;
        };
        let (e, got) = build_and_run_with(name, &case.model.graph, &case.inputs, &weights_bin());
        assert!(e
            .files
            .weights_bin
            .as_ref()
            .is_some_and(|w| w.len() >= e.weights_bytes));
        let err = scaled_error(&got[0], case.want[0].as_tensor().unwrap());
        println!("{name}: C backend (weights.bin) vs onnxruntime, max scaled error {err:.1e}");
        assert!(err <= 1e-4, "{name}: {err}");
    }
}

/// Resize with constant scales (the node tests pass them as inputs, so they
/// do not reach the C backend): nearest and linear, several coordinate
/// transforms, up- and downsampling.
#[test]
fn resize_with_constant_scales_matches_the_interpreter() {
    use egret_ir::{Attr, DType, OpCall, Shape, ValueType};
    let xs: Vec<f32> = (0..20).map(|i| (i * i % 7) as f32 - 2.5).collect();
    let inputs = vec![Value::Tensor(
        Tensor::from_vec(vec![1, 1, 4, 5], xs).unwrap(),
    )];
    let cases = [
        ("nearest", "half_pixel", vec![1.0f32, 1.0, 2.0, 1.5]),
        ("nearest", "asymmetric", vec![1.0, 1.0, 0.5, 2.0]),
        ("linear", "half_pixel", vec![1.0, 1.0, 2.0, 1.5]),
        ("linear", "align_corners", vec![1.0, 1.0, 1.5, 0.6]),
        ("linear", "pytorch_half_pixel", vec![1.0, 1.0, 0.5, 3.0]),
    ];
    for (i, (mode, coord, scales)) in cases.into_iter().enumerate() {
        let mut g = Graph::new("resize");
        let x = g.add_input(
            "x",
            ValueType::tensor(DType::F32, Some(Shape::known(&[1, 1, 4, 5]))),
        );
        let s = g.add_const("scales", Tensor::from_vec(vec![4], scales).unwrap());
        let call = OpCall::new("Resize")
            .with("mode", Attr::String(mode.into()))
            .with("coordinate_transformation_mode", Attr::String(coord.into()));
        let y = g.call("y", call, &[Some(x), None, Some(s)], 1).unwrap();
        g.outputs.push(y[0]);
        let got = build_and_run(&format!("resize{i}"), &g, &inputs);
        let want = egret_runtime::Interpreter::new(&g)
            .unwrap()
            .run(inputs.clone())
            .unwrap();
        let err = scaled_error(&got[0], want[0].as_tensor().unwrap());
        assert!(err <= 1e-6, "{mode} {coord}: {err}");
    }
}

/// Deterministic f32 values in [-1, 1) of `shape`.
fn wave(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect();
    Tensor::from_vec(shape.to_vec(), v).unwrap()
}

/// Attention nodes on small shapes, every variant the interpreter supports
/// (4-D and 3-D operands, grouped key/value heads, bool and additive masks
/// that broadcast or are narrower than the keys, causal with and without a
/// KV cache, `scale`, `softcap`, `nonpad_kv_seqlen`, every
/// `qk_matmul_output_mode`, the `present_*` outputs), in one graph built and
/// run by the C backend: every output within 1e-5 (scaled) of the
/// interpreter.
#[test]
fn attention_variants_match_the_interpreter() {
    use egret_ir::{Attr, OpCall, OutletId, Shape, ValueType};
    let mut g = Graph::new("attention");
    let mut values = Vec::new();
    let mut input = |g: &mut Graph, name: &str, t: Tensor| -> OutletId {
        let ty = ValueType::tensor(t.dtype(), Some(Shape::known(t.shape())));
        values.push(Value::Tensor(t));
        g.add_input(name, ty)
    };
    // 4-D: batch 2, 4 query heads over 2 key/value heads, 3 queries, 5 keys,
    // head sizes 8 (Q, K) and 6 (V); a cache of 4 past keys.
    let q4 = input(&mut g, "q4", wave(&[2, 4, 3, 8], 1));
    let k4 = input(&mut g, "k4", wave(&[2, 2, 5, 8], 2));
    let v4 = input(&mut g, "v4", wave(&[2, 2, 5, 6], 3));
    let pk = input(&mut g, "past_k", wave(&[2, 2, 4, 8], 4));
    let pv = input(&mut g, "past_v", wave(&[2, 2, 4, 6], 5));
    // 3-D: the same heads as (batch, seq, heads · size).
    let q3 = input(&mut g, "q3", wave(&[2, 3, 32], 6));
    let k3 = input(&mut g, "k3", wave(&[2, 5, 16], 7));
    let v3 = input(&mut g, "v3", wave(&[2, 5, 12], 8));
    // A bool mask over (batch, 1, queries, keys) that leaves key 0 visible.
    let bools: Vec<bool> = (0..2 * 3 * 5)
        .map(|i| {
            let (b, r, j) = (i / 15, (i / 5) % 3, i % 5);
            j == 0 || (b + r + j) % 3 != 1
        })
        .collect();
    let mask_bool = input(
        &mut g,
        "mask_bool",
        Tensor::from_bools(vec![2, 1, 3, 5], bools).unwrap(),
    );
    // Additive masks: (queries, 4 of 5 keys), and (1, heads, 1, 9 keys).
    let mask_narrow = input(&mut g, "mask_narrow", wave(&[3, 4], 9));
    let mask_heads = input(&mut g, "mask_heads", wave(&[1, 4, 1, 9], 10));
    let nonpad = input(
        &mut g,
        "nonpad",
        Tensor::from_vec(vec![2], vec![5i64, 3]).unwrap(),
    );
    let attn = |attrs: &[(&str, Attr)]| {
        attrs
            .iter()
            .fold(OpCall::new("Attention"), |c, (k, v)| c.with(k, v.clone()))
    };
    let heads3 = [
        ("q_num_heads", Attr::Int(4)),
        ("kv_num_heads", Attr::Int(2)),
    ];
    let cases: Vec<(OpCall, Vec<Option<OutletId>>, usize)> = vec![
        (attn(&[]), vec![Some(q4), Some(k4), Some(v4)], 1),
        (
            attn(&[
                heads3[0].clone(),
                heads3[1].clone(),
                ("is_causal", Attr::Int(1)),
            ]),
            vec![Some(q3), Some(k3), Some(v3), Some(mask_bool)],
            1,
        ),
        (
            attn(&[heads3[0].clone(), heads3[1].clone()]),
            vec![Some(q3), Some(k3), Some(v3), Some(mask_narrow)],
            1,
        ),
        (
            attn(&[
                ("softcap", Attr::Float(2.0)),
                ("scale", Attr::Float(0.3)),
                ("qk_matmul_output_mode", Attr::Int(0)),
            ]),
            vec![Some(q4), Some(k4), Some(v4), Some(mask_narrow)],
            4,
        ),
        (
            attn(&[
                ("is_causal", Attr::Int(1)),
                ("qk_matmul_output_mode", Attr::Int(3)),
            ]),
            vec![Some(q4), Some(k4), Some(v4), None, Some(pk), Some(pv)],
            4,
        ),
        (
            attn(&[("qk_matmul_output_mode", Attr::Int(2))]),
            vec![
                Some(q4),
                Some(k4),
                Some(v4),
                Some(mask_heads),
                Some(pk),
                Some(pv),
            ],
            4,
        ),
        (
            attn(&[("qk_matmul_output_mode", Attr::Int(1))]),
            vec![
                Some(q4),
                Some(k4),
                Some(v4),
                Some(mask_bool),
                None,
                None,
                Some(nonpad),
            ],
            4,
        ),
    ];
    for (i, (call, ins, outs)) in cases.into_iter().enumerate() {
        let o = g.call(&format!("attn{i}"), call, &ins, outs).unwrap();
        g.outputs.extend(o);
    }
    let got = build_and_run("attention", &g, &values);
    let want = egret_runtime::Interpreter::new(&g)
        .unwrap()
        .run(values)
        .unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let b = b.as_tensor().unwrap();
        // Masked scores are -inf on both sides; compare the finite ones.
        let (av, bv) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
        assert_eq!(a.shape(), b.shape(), "output {i}");
        for (j, (x, y)) in av.iter().zip(&bv).enumerate() {
            let same = x == y || (x - y).abs() / (1.0 + y.abs()) <= 1e-5;
            assert!(same, "output {i} [{j}]: C {x} vs interpreter {y}");
        }
    }
}

/// all-MiniLM-L6-v2 (6 Attention nodes with a bool key mask, Gelu,
/// LayerNormalization) built with `--weights bin` for a batch of two
/// sentences, the shorter padded (mask 0), matches the interpreter within
/// 1e-4 (scaled).
#[test]
fn minilm_with_a_weights_blob_matches_the_interpreter() {
    let dir = common::cache().join("models/minilm");
    if !common::available(&dir, "scripts/fetch-models.sh minilm") {
        return;
    }
    let model = egret_frontends::load(&dir).unwrap().model;
    // "A man is eating food." (padded) and "A man is riding a white horse
    // on an enclosed ground.", as tests/minilm.rs tokenizes them.
    let short = [101i64, 1037, 2158, 2003, 5983, 2833, 1012, 102];
    let long = [
        101i64, 1037, 2158, 2003, 5559, 1037, 2317, 3586, 2006, 2019, 10837, 2598, 1012, 102,
    ];
    let t = long.len();
    let mut ids = short.to_vec();
    ids.resize(t, 0);
    ids.extend(long);
    let mask: Vec<i64> = (0..2 * t)
        .map(|i| i64::from(i >= t || i < short.len()))
        .collect();
    let tensor = |v: Vec<i64>| Value::Tensor(Tensor::from_vec(vec![2, t], v).unwrap());
    let inputs = vec![tensor(ids), tensor(mask), tensor(vec![0; 2 * t])];
    let (e, got) = build_and_run_with("minilm", &model.graph, &inputs, &weights_bin());
    assert!(e.kernels.contains(&c::Kernel::Attention), "{:?}", e.kernels);
    let want = egret_runtime::Interpreter::for_model(&model)
        .unwrap()
        .run(inputs)
        .unwrap();
    let err = scaled_error(&got[0], want[0].as_tensor().unwrap());
    println!("minilm: C backend (weights.bin) vs interpreter, max scaled error {err:.1e}");
    assert!(err <= 1e-4, "{err}");
}

/// egret's block-quantized and int8 ops on unit-sized shapes, one graph:
/// `MatMulBlocks` (every block format with a C kernel, K = 128, N = 12 so
/// the last tile of weight rows is partial, with and without a bias),
/// `GatherBlocks` (negative indices wrap), and `MatMulInt8` per channel
/// and W8A8 (`DequantizeBlocks` only ever reads constants, which the
/// lowering folds), on the host (with and without AVX2) and under qemu for
/// every installed cross target (NEON on aarch64, the portable C on armv7
/// and riscv64); with AVX2 and NEON the 3 rows of x read Q8_0 and int4
/// blocks directly.
/// Dequantization is exact in both, so only the dot products' summation
/// order differs: every output within 1e-5 (scaled) of the interpreter; W8A8 quantizes the same f32 rows the
/// same way and sums exact integers, so it must agree to 1e-6.
#[test]
fn block_and_int8_ops_match_the_interpreter() {
    use egret_ir::{blocks, Attr, BlockFormat, DType, OpCall, Shape, ValueType};
    let (m, k, n) = (3, 128, 12);
    let mut g = Graph::new("blocks");
    let x = g.add_input(
        "x",
        ValueType::tensor(DType::F32, Some(Shape::known(&[1, m, k]))),
    );
    let ids = g.add_input(
        "ids",
        ValueType::tensor(DType::I64, Some(Shape::known(&[4]))),
    );
    let w = wave(&[n, k], 11);
    let bias = g.add_const("bias", wave(&[n], 12));
    let egret = |op: &str| {
        let mut c = OpCall::new(op);
        c.domain = "egret".into();
        c
    };
    // egret quantizes to every format but Q5_0/Q5_1 (read from GGUF files):
    // those get pseudo-random blocks with f16 scales of about 0.1 (and
    // minimums of about -0.8).
    let q5 = |f: BlockFormat| {
        let mut bytes = Vec::new();
        for b in 0..n * k / 32 {
            bytes.extend([0x66, 0x2e]);
            if f == BlockFormat::Q5_1 {
                bytes.extend([0x66, 0xba]);
            }
            bytes.extend((0..20).map(|j| ((b * 131 + j * 29) % 256) as u8));
        }
        Tensor::from_bytes(DType::Block(f), vec![n, k], &bytes).unwrap()
    };
    let formats: Vec<BlockFormat> = BlockFormat::ALL
        .into_iter()
        .filter(|&f| f.block_elems() <= 128)
        .collect();
    assert_eq!(formats.len(), 9, "{formats:?}");
    for (i, &f) in formats.iter().enumerate() {
        let t = if blocks::can_quantize(f) {
            blocks::quantize(&w, f, None).unwrap()
        } else {
            q5(f)
        };
        let q = g.add_const(&format!("w_{}", f.name()), t);
        let with_bias = [Some(x), Some(q), (i % 2 == 0).then_some(bias)];
        let y = g.call(&format!("mm{i}"), egret("MatMulBlocks"), &with_bias, 1);
        let r = g.call1(&format!("gather{i}"), egret("GatherBlocks"), &[q, ids]);
        g.outputs.extend([y.unwrap()[0], r.unwrap()]);
    }
    let (q8, s8) = blocks::quantize_rows_i8(w.as_slice::<f32>().unwrap(), n, k);
    let q8 = g.add_const("w_i8", Tensor::from_vec(vec![n, k], q8).unwrap());
    let s8 = g.add_const("s_i8", Tensor::from_vec(vec![n], s8).unwrap());
    for aq in [0, 1] {
        let call = egret("MatMulInt8").with("act_quant", Attr::Int(aq));
        let y = g.call1(&format!("int8_{aq}"), call, &[x, q8, s8, bias]);
        g.outputs.push(y.unwrap());
    }
    let inputs = vec![
        Value::Tensor(wave(&[1, m, k], 13)),
        Value::Tensor(Tensor::from_vec(vec![4], vec![3i64, 0, -1, 11]).unwrap()),
    ];
    let e = emit(&g, &inputs, &c::Options::default()).unwrap();
    assert!(e.scratch_bytes >= 8 * k * 4, "{}", e.scratch_bytes);
    let want = egret_runtime::Interpreter::new(&g)
        .unwrap()
        .run(inputs.clone())
        .unwrap();
    let chains = [Some(Toolchain::host()), Toolchain::host_avx2()]
        .into_iter()
        .flatten()
        .chain(qemu_toolchains().into_iter().map(|(_, tc)| tc));
    for tc in chains {
        let dir = scratch(&format!("blocks-{}", tc.name));
        let files = write(&dir, &e, &inputs).unwrap();
        compile(&dir, &tc).unwrap();
        let got = run(&dir, tc.qemu, &files, g.outputs.len()).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let err = scaled_error(a, b.as_tensor().unwrap());
            let tol = if i + 1 == got.len() { 1e-6 } else { 1e-5 };
            let name = g.value_name(g.outputs[i]);
            assert!(err <= tol, "{}: output {i} ({name}): {err}", tc.name);
        }
    }
    // An index out of range makes egret_model return 1 (the harness fails).
    let dir = scratch("blocks");
    let mut bad = inputs;
    bad[1] = Value::Tensor(Tensor::from_vec(vec![4], vec![0i64, 12, 0, 0]).unwrap());
    let files = write(&dir, &e, &bad).unwrap();
    compile(&dir, &Toolchain::host()).unwrap();
    assert!(run(&dir, None, &files, g.outputs.len()).is_err());
}

/// all-MiniLM-L6-v2 from the cache, or `None` (with the fetch hint).
fn minilm_model() -> Option<egret_ir::Model> {
    let dir = common::cache().join("models/minilm");
    if !common::available(&dir, "scripts/fetch-models.sh minilm") {
        return None;
    }
    Some(egret_frontends::load(&dir).unwrap().model)
}

/// MiniLM's inputs for "A man is eating food." (T = 8, batch 1).
fn minilm_sentence() -> Vec<Value> {
    let ids = vec![101i64, 1037, 2158, 2003, 5983, 2833, 1012, 102];
    let tensor = |v: Vec<i64>| Value::Tensor(Tensor::from_vec(vec![1, 8], v).unwrap());
    vec![tensor(ids), tensor(vec![1; 8]), tensor(vec![0; 8])]
}

/// MiniLM quantized with `scheme` (no calibration, as `egret optimize
/// --quantize` without `--calibration`).
fn quantized_minilm(
    m: &egret_ir::Model,
    scheme: egret_passes::quantize::Scheme,
) -> egret_ir::Model {
    use egret_passes::quantize::{quantize, QuantizeConfig};
    let cfg = QuantizeConfig {
        schemes: vec![scheme],
        ..QuantizeConfig::default()
    };
    quantize(m, &cfg, None).unwrap().0
}

/// The interpreter's outputs of `m` on `inputs`.
fn interpreter_outputs(m: &egret_ir::Model, inputs: &[Value]) -> Vec<Value> {
    egret_runtime::Interpreter::for_model(m)
        .unwrap()
        .run(inputs.to_vec())
        .unwrap()
}

/// Largest scaled error of the C outputs against the interpreter's.
fn max_error(got: &[Tensor], want: &[Value]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| scaled_error(a, b.as_tensor().unwrap()))
        .fold(0.0, f64::max)
}

/// MiniLM quantized int8 per channel, W8A8, Q4_0 and Q4_1 (every `Linear`
/// becomes `MatMulInt8` or `MatMulBlocks`, the embeddings `GatherBlocks`),
/// built with `--weights bin`, matches the interpreter on the same quantized
/// model. Weights dequantize to the same f32 values on both sides and the
/// products differ only in summation order (about 1e-6 relative per layer),
/// so the f32 MiniLM's 1e-4 holds for the weight-only schemes. W8A8 rounds
/// activations to 1/127 of each row's maximum: a last-bit difference
/// upstream can move one value across a rounding boundary, an error of up
/// to 1/254 of that row's largest value in one product term, so it gets
/// 1e-3.
#[test]
fn quantized_minilm_matches_the_interpreter() {
    use egret_passes::quantize::Scheme;
    let Some(m) = minilm_model() else { return };
    let inputs = minilm_sentence();
    for (scheme, kernel, tol) in [
        (Scheme::Int8, c::Kernel::MatMulInt8, 1e-4),
        (Scheme::W8A8, c::Kernel::MatMulW8A8, 1e-3),
        (
            Scheme::Blocks(egret_ir::BlockFormat::Q4_0),
            c::Kernel::MatMulBlocks,
            1e-4,
        ),
        (
            Scheme::Blocks(egret_ir::BlockFormat::Q4_1),
            c::Kernel::MatMulBlocks,
            1e-4,
        ),
    ] {
        let q = quantized_minilm(&m, scheme);
        let name = format!("minilm_{scheme:?}").replace(['(', ')'], "_");
        let (e, got) = build_and_run_with(&name, &q.graph, &inputs, &weights_bin());
        assert!(e.kernels.contains(&kernel), "{scheme:?}: {:?}", e.kernels);
        let err = max_error(&got, &interpreter_outputs(&q, &inputs));
        println!(
            "minilm {scheme:?}: C backend vs interpreter, max scaled error {err:.1e}, weights {} bytes",
            e.weights_bytes
        );
        assert!(err <= tol, "{scheme:?}: {err}");
    }
}

/// MiniLM f32, quantized int8 per channel (`MatMulInt8`) and Q4_0
/// (`MatMulBlocks`, `GatherBlocks`), each emitted once with `--weights bin`
/// for one sentence (T = 8), cross-compiled for every qemu target (NEON
/// tiles and row dots on aarch64, the portable C on armv7 and riscv64) and
/// run under qemu-user, match the interpreter within 1e-4 scaled, the host
/// MiniLM tests' tolerance (the same f32 values summed in another order).
#[test]
fn minilm_runs_under_qemu() {
    use egret_passes::quantize::Scheme;
    let chains = qemu_toolchains();
    if chains.is_empty() {
        return;
    }
    let Some(m) = minilm_model() else { return };
    let inputs = minilm_sentence();
    let int8 = quantized_minilm(&m, Scheme::Int8);
    let q4_0 = quantized_minilm(&m, Scheme::Blocks(egret_ir::BlockFormat::Q4_0));
    for (name, model) in [("f32", &m), ("int8", &int8), ("Q4_0", &q4_0)] {
        let e = emit(&model.graph, &inputs, &weights_bin()).unwrap();
        let want = interpreter_outputs(model, &inputs);
        for (t, tc) in &chains {
            let start = Instant::now();
            let dir = scratch(&format!("minilm_{name}_{}", t.name()));
            let files = write(&dir, &e, &inputs).unwrap();
            compile(&dir, tc).unwrap();
            let got = run(&dir, tc.qemu, &files, model.graph.outputs.len()).unwrap();
            let err = max_error(&got, &want);
            println!(
                "minilm {name} on {} (qemu): C backend vs interpreter, max scaled error {err:.1e}, {:.1} s to compile and run",
                t.name(),
                start.elapsed().as_secs_f64()
            );
            assert!(err <= 1e-4, "{name} on {}: {err}", t.name());
        }
    }
}

/// SmolLM2-135M-Instruct Q4_1 (GGUF) from the cache, or `None`.
fn smollm2_model() -> Option<egret_ir::Model> {
    let path = common::cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !common::available(&path, "scripts/fetch-models.sh smollm2") {
        return None;
    }
    Some(egret_frontends::load(&path).unwrap().model)
}

/// The index of the largest value (the first of equals).
fn argmax(v: &[f32]) -> i64 {
    let best = v.iter().enumerate().fold(
        (0, f32::NEG_INFINITY),
        |b, (i, &x)| if x > b.1 { (i, x) } else { b },
    );
    best.0 as i64
}

/// A decoder built by the C backend as one program over a fixed cache of
/// `slots` positions (`c::fixed_cache`), and the host-side state a caller
/// keeps: the cache contents and how many slots are filled.
struct CDecoder {
    dir: PathBuf,
    graph: Graph,
    slots: usize,
    /// Per past input name, `[1, kv_heads, slots, head_dim]` values.
    cache: BTreeMap<String, Vec<f32>>,
    /// `[kv_heads, head_dim]` of the cache.
    dims: [usize; 2],
    len: usize,
    /// The kernels and weight bytes of the emitted program.
    kernels: Vec<c::Kernel>,
    weights_bytes: usize,
}

impl CDecoder {
    /// Emit `model` with its block weights read in place, a fixed cache of
    /// `slots` and weights.bin into `dir`, and compile it with `tc`.
    fn build(model: &egret_ir::Model, slots: usize, dir: PathBuf, tc: &Toolchain) -> CDecoder {
        let blocks = c::read_blocks_in_place(&model.graph).unwrap();
        let graph = c::fixed_cache(&blocks).unwrap();
        let mut cache = BTreeMap::new();
        let mut dims = [0, 0];
        for &o in &graph.inputs {
            let name = graph.value_name(o);
            if name.starts_with("past_key_values.") {
                let shape = &graph.value_type(o).as_tensor().unwrap().shape;
                let known: Vec<Option<usize>> = shape
                    .as_ref()
                    .unwrap()
                    .dims()
                    .iter()
                    .map(|d| d.known())
                    .collect();
                let [_, Some(h), _, Some(d)] = known[..] else {
                    panic!("{name}: {shape:?}");
                };
                dims = [h, d];
                cache.insert(name.to_string(), vec![0f32; h * slots * d]);
            }
        }
        let mut dec = CDecoder {
            dir,
            graph,
            slots,
            cache,
            dims,
            len: 0,
            kernels: Vec::new(),
            weights_bytes: 0,
        };
        let example = dec.inputs(0, 0);
        let e = emit(&dec.graph, &example, &weights_bin()).unwrap();
        (dec.kernels, dec.weights_bytes) = (e.kernels.clone(), e.weights_bytes);
        write(&dec.dir, &e, &[]).unwrap();
        compile(&dec.dir, tc).unwrap();
        dec
    }

    /// The graph inputs for token `id` at position `pos` after the cache.
    fn inputs(&self, id: i64, pos: usize) -> Vec<Value> {
        let [h, d] = self.dims;
        let i64s = |v: i64| Value::Tensor(Tensor::from_vec(vec![1, 1], vec![v]).unwrap());
        self.graph
            .inputs
            .iter()
            .map(|&o| match self.graph.value_name(o) {
                "input_ids" => i64s(id),
                "position_ids" => i64s(pos as i64),
                c::CACHE_MASK => {
                    let visible = (0..=self.slots).map(|j| j < self.len || j == self.slots);
                    Value::Tensor(
                        Tensor::from_bools(vec![1, self.slots + 1], visible.collect()).unwrap(),
                    )
                }
                name => {
                    let v = self.cache[name].clone();
                    Value::Tensor(Tensor::from_vec(vec![1, h, self.slots, d], v).unwrap())
                }
            })
            .collect()
    }

    /// Run token `id` through the program (under `qemu` if given): its
    /// logits, with its keys and values appended to the cache.
    fn step(&mut self, id: i64, qemu: Option<&str>) -> Vec<f32> {
        let inputs = self.inputs(id, self.len);
        let files: Vec<PathBuf> = inputs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = self.dir.join(format!("in{i}.npy"));
                npy::write(&p, v.as_tensor().unwrap()).unwrap();
                p
            })
            .collect();
        let outs = run(&self.dir, qemu, &files, self.graph.outputs.len()).unwrap();
        let [h, d] = self.dims;
        let mut logits = Vec::new();
        for (&o, t) in self.graph.outputs.iter().zip(outs) {
            let name = self.graph.value_name(o);
            let v = t.as_slice::<f32>().unwrap();
            if name == "logits" {
                logits = v.to_vec();
                continue;
            }
            // present.{i}.key -> past_key_values.{i}.key: the new row (slot
            // `slots` of the present) goes into slot `len`.
            let past = name.replacen("present.", "past_key_values.", 1);
            let cache = self.cache.get_mut(&past).unwrap();
            for hi in 0..h {
                let src = (hi * (self.slots + 1) + self.slots) * d;
                let dst = (hi * self.slots + self.len) * d;
                cache[dst..dst + d].copy_from_slice(&v[src..src + d]);
            }
        }
        self.len += 1;
        logits
    }

    /// Feed `prompt` one token at a time, then `tokens` greedy tokens: the
    /// ids, and the logits after the prompt.
    fn greedy(
        &mut self,
        prompt: &[i64],
        tokens: usize,
        qemu: Option<&str>,
    ) -> (Vec<i64>, Vec<f32>) {
        let mut logits = Vec::new();
        for &id in prompt {
            logits = self.step(id, qemu);
        }
        let after_prompt = logits.clone();
        let mut ids = vec![argmax(&logits)];
        while ids.len() < tokens {
            logits = self.step(ids[ids.len() - 1], qemu);
            ids.push(argmax(&logits));
        }
        (ids, after_prompt)
    }
}

/// The interpreter's greedy ids for `prompt` (prefill, then one token per
/// step with its KV cache) and its logits after the prompt.
fn interpreter_greedy(
    model: &egret_ir::Model,
    prompt: &[i64],
    tokens: usize,
) -> (Vec<i64>, Vec<f32>) {
    let dec = egret_runtime::generate::Decoder::new(model.clone()).unwrap();
    let mut cache = dec.empty_cache().unwrap();
    let logits = dec.forward(prompt, &mut cache).unwrap();
    let after_prompt = egret_runtime::generate::last_row(&logits).unwrap().to_vec();
    let mut ids = vec![argmax(&after_prompt)];
    while ids.len() < tokens {
        let l = dec.forward(&ids[ids.len() - 1..], &mut cache).unwrap();
        ids.push(argmax(egret_runtime::generate::last_row(&l).unwrap()));
    }
    (ids, after_prompt)
}

/// The prompt of the SmolLM2 tests (token ids).
const SMOLLM2_PROMPT: [i64; 5] = [504, 3575, 282, 4649, 314];

/// The interpreter's first 3 greedy ids after `SMOLLM2_PROMPT`.
const SMOLLM2_IDS: [i64; 3] = [7042, 30, 198];

/// SmolLM2 Q4_1 (GGUF: `MatMulBlocks` Q4_1, the Q8_0 embedding through
/// `GatherBlocks` and the tied LM head, RotaryEmbedding, grouped-query
/// Attention with a KV cache) built once with a fixed cache of 8 slots
/// (`c::fixed_cache`), fed the prompt token by token and then its own
/// greedy tokens: the ids equal the interpreter's (prefill, then decode
/// steps) and the logits after the prompt agree within 1e-3 scaled (Q4_1
/// weights dequantize to the same values; the sums differ in order, over
/// 30 layers and 5 one-token steps against one 5-token prefill).
#[test]
fn smollm2_greedy_tokens_with_a_kv_cache_match_the_interpreter() {
    let Some(model) = smollm2_model() else { return };
    let tokens = 4;
    let (want, want_logits) = interpreter_greedy(&model, &SMOLLM2_PROMPT, tokens);
    assert_eq!(want[..3], SMOLLM2_IDS, "the interpreter's reference ids");
    // With AVX2 the Q4_1/Q8_0 products of one row read the blocks directly.
    let tc = Toolchain::host_avx2().unwrap_or_else(Toolchain::host);
    let mut dec = CDecoder::build(&model, 8, scratch("smollm2"), &tc);
    // The weights stay Q4_1 / Q8_0 (98 MB in the GGUF), read in place
    // (`c::read_blocks_in_place`), the tied LM head included.
    assert!(
        dec.kernels.contains(&c::Kernel::MatMulBlocks),
        "{:?}",
        dec.kernels
    );
    assert!(
        dec.weights_bytes < 110_000_000,
        "{} bytes",
        dec.weights_bytes
    );
    let (got, logits) = dec.greedy(&SMOLLM2_PROMPT, tokens, None);
    let err = scaled_error(
        &Tensor::from_vec(vec![logits.len()], logits).unwrap(),
        &Tensor::from_vec(vec![want_logits.len()], want_logits).unwrap(),
    );
    println!("smollm2: C greedy ids {got:?}, interpreter {want:?}; logits after the prompt within {err:.1e} (scaled)");
    assert_eq!(got, want);
    assert!(err <= 1e-3, "{err}");
}

/// The SmolLM2 decoder of the host test cross-compiled for every qemu
/// target (NEON row dots on the blocks on aarch64, the portable C on armv7
/// and riscv64) and run under qemu-user: the interpreter's greedy ids
/// `SMOLLM2_IDS` for the prompt and 3 tokens (7 steps of the program), 2 on
/// riscv64 (6 steps), where qemu-user emulates every float operation in a
/// helper call and one step takes about 8 s (3 s on the others).
#[test]
fn smollm2_greedy_tokens_under_qemu() {
    let chains = qemu_toolchains();
    if chains.is_empty() {
        return;
    }
    let Some(model) = smollm2_model() else { return };
    let (want, _) = interpreter_greedy(&model, &SMOLLM2_PROMPT, SMOLLM2_IDS.len());
    assert_eq!(want, SMOLLM2_IDS, "the interpreter's reference ids");
    for (t, tc) in &chains {
        let tokens = if *t == c::Target::Riscv64 { 2 } else { 3 };
        let start = Instant::now();
        let dir = scratch(&format!("smollm2_{}", t.name()));
        let mut dec = CDecoder::build(&model, 8, dir, tc);
        let (got, _) = dec.greedy(&SMOLLM2_PROMPT, tokens, tc.qemu);
        println!(
            "smollm2 on {} (qemu): C greedy ids {got:?}, interpreter {:?}, {:.1} s to build and decode",
            t.name(),
            &want[..tokens],
            start.elapsed().as_secs_f64()
        );
        assert_eq!(got, want[..tokens], "{}", t.name());
    }
}

/// `egret build --kv-cache 8 --weights bin --compile never` on the SmolLM2
/// GGUF writes one decode step: block weights read in place (under 110 MB),
/// the cache's past dim 8, and `cache_mask` `[1, 9]` in model.h.
#[test]
fn egret_build_kv_cache_writes_one_decode_step() {
    let path = common::cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !common::available(&path, "scripts/fetch-models.sh smollm2") {
        return;
    }
    let dir = scratch("smollm2_cli");
    let run = Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["build", "--kv-cache", "8", "--weights", "bin"])
        .args(["--compile", "never", "--json", "-o"])
        .arg(&dir)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let weights = report["weights_bytes"].as_u64().unwrap();
    assert!(weights < 110_000_000, "{report}");
    let h = std::fs::read_to_string(dir.join("model.h")).unwrap();
    assert!(
        h.contains("`past_key_values.0.key`: f32 [1, 3, 8, 64]"),
        "{h}"
    );
    assert!(h.contains("`cache_mask`: bool [1, 9]"), "{h}");
}

/// The silero-vad fixtures the C tests build (`tests/fixtures/real`): the
/// 16 kHz and 8 kHz paths of the `If`-based model (one `sr` input picks the
/// branch), its opset-15 and half-precision exports, the opset-18 export,
/// and the two LSTM exports (a whole sequence; OpenVINO's 16 kHz).
const SILERO: [&str; 7] = [
    "silero_vad_16k",
    "silero_vad_8k",
    "silero_vad_16k_op15",
    "silero_vad_half",
    "silero_vad_op18_ifless",
    "silero_vad_16k_sequence",
    "silero_vad_openvino_16k",
];

/// Largest |C − interpreter| / (1 + |interpreter|) of silero-vad's outputs
/// allowed: f32 sums in another order through the STFT convolution (256
/// taps), 4 more convolutions and an LSTM; measured at most 9.2e-6 (the
/// opset-18 export), 2.5e-6 for the 16 kHz model.
const SILERO_TOL: f64 = 5e-5;

/// `case`'s inputs written into `dir` as `input_<name>.npy`, with their names.
fn write_inputs(dir: &Path, case: &common::RealCase) -> Vec<(String, PathBuf)> {
    case.input_names
        .iter()
        .zip(&case.inputs)
        .map(|(n, v)| {
            let path = dir.join(format!("input_{n}.npy"));
            npy::write(&path, v.as_tensor().unwrap()).unwrap();
            (n.clone(), path)
        })
        .collect()
}

/// The largest scaled error of `got` against the interpreter's outputs on
/// `case`'s inputs, printed with the largest absolute error as `what`.
fn silero_error(case: &common::RealCase, got: &[Tensor], what: &str) -> f64 {
    let want = egret_runtime::Interpreter::for_model(&case.model)
        .unwrap()
        .run(case.inputs.clone())
        .unwrap();
    assert_eq!(got.len(), want.len(), "{}", case.name);
    let (mut scaled, mut abs) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(&want) {
        let w = w.as_tensor().unwrap();
        scaled = scaled.max(scaled_error(g, w));
        let (a, b) = (g.to_f64_vec().unwrap(), w.to_f64_vec().unwrap());
        abs = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(abs, f64::max);
    }
    println!("{what}: C vs interpreter, max abs {abs:.1e}, scaled {scaled:.1e}");
    scaled
}

/// Every silero-vad variant built by `egret build` for the host matches the
/// interpreter; the 16 kHz program, specialised to `sr = 16000`, refuses
/// (exit status 1) `sr = 8000`, whose branch it does not contain.
#[test]
fn egret_build_silero_vad_matches_the_interpreter() {
    for name in SILERO {
        let Some(case) = common::real_case(name) else {
            continue;
        };
        let dir = scratch(&format!("{name}_cli"));
        let inputs = write_inputs(&dir, &case);
        let report = egret_build(&case.path, &inputs, c::Target::Host, &dir.join("build"));
        let files: Vec<PathBuf> = inputs.iter().map(|(_, p)| p.clone()).collect();
        let got = run(&dir.join("build"), None, &files, case.want.len()).unwrap();
        let err = silero_error(&case, &got, name);
        println!(
            "{name}: steps {}, model.o {}, arena {}, weights {}",
            report["steps"], report["model_o"], report["arena_bytes"], report["weights_bytes"]
        );
        assert!(err <= SILERO_TOL, "{name}: {err}");
    }
    let (Some(k16), Some(k8)) = (
        common::real_case("silero_vad_16k"),
        common::real_case("silero_vad_8k"),
    ) else {
        return;
    };
    let dir = scratch("silero_vad_guard");
    let files = write(
        &dir,
        &emit(&k16.model.graph, &k16.inputs, &c::Options::default()).unwrap(),
        &k16.inputs,
    )
    .unwrap();
    compile(&dir, &Toolchain::host()).unwrap();
    let sr8 = dir.join("sr8k.npy");
    npy::write(&sr8, k8.inputs[2].as_tensor().unwrap()).unwrap();
    let err = run(&dir, None, &[files[0].clone(), files[1].clone(), sr8], 2).unwrap_err();
    assert!(err.contains("egret_model failed"), "{err}");
}

/// silero-vad 16 kHz as a streaming detector: one program, eight chunks of
/// a synthetic signal, the state output of each chunk fed back as the next
/// state input; every chunk's probability and state match the
/// interpreter's run of the same chain.
#[test]
fn silero_vad_state_carried_over_chunks_matches_the_interpreter() {
    let Some(case) = common::real_case("silero_vad_16k") else {
        return;
    };
    let dir = scratch("silero_vad_chunks");
    let e = emit(&case.model.graph, &case.inputs, &c::Options::default()).unwrap();
    write(&dir, &e, &case.inputs).unwrap();
    compile(&dir, &Toolchain::host()).unwrap();
    let interp = egret_runtime::Interpreter::for_model(&case.model).unwrap();
    let shape = case.inputs[0].as_tensor().unwrap().shape().to_vec();
    let (mut c_state, mut i_state) = (case.inputs[1].clone(), case.inputs[1].clone());
    let mut worst: f64 = 0.0;
    for chunk in 0..8 {
        let audio = Value::Tensor(wave(&shape, chunk + 11));
        let c_in = [audio.clone(), c_state, case.inputs[2].clone()];
        let files: Vec<PathBuf> = c_in
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = dir.join(format!("chunk{i}.npy"));
                npy::write(&p, v.as_tensor().unwrap()).unwrap();
                p
            })
            .collect();
        let got = run(&dir, None, &files, 2).unwrap();
        let want = interp
            .run(vec![audio, i_state, case.inputs[2].clone()])
            .unwrap();
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max(scaled_error(g, w.as_tensor().unwrap()));
        }
        c_state = Value::Tensor(got[1].clone());
        i_state = want[1].clone();
    }
    println!("silero_vad_16k over 8 chunks: C vs interpreter {worst:.1e}");
    assert!(worst <= SILERO_TOL, "{worst}");
}

/// silero-vad (16 kHz through the If; the LSTM sequence export) is clean
/// under ASan and UBSan and matches the interpreter.
#[test]
fn silero_vad_is_clean_under_address_and_undefined_behaviour_sanitizers() {
    for name in ["silero_vad_16k", "silero_vad_16k_sequence"] {
        let Some(case) = common::real_case(name) else {
            continue;
        };
        let dir = scratch(&format!("{name}_asan"));
        let e = emit(&case.model.graph, &case.inputs, &c::Options::default()).unwrap();
        let files = write(&dir, &e, &case.inputs).unwrap();
        compile(&dir, &Toolchain::sanitized()).unwrap();
        let got = run(&dir, None, &files, case.want.len()).unwrap();
        let err = silero_error(&case, &got, &format!("{name} (ASan, UBSan)"));
        assert!(err <= SILERO_TOL, "{name}: {err}");
    }
}

/// silero-vad 16 kHz, 8 kHz and the LSTM sequence export built by
/// `egret build` for aarch64, armv7 and riscv64 and run under qemu-user
/// match the interpreter (targets whose compiler or qemu is missing are
/// skipped with the reason).
#[test]
fn egret_build_silero_vad_runs_under_qemu() {
    let chains = qemu_toolchains();
    for name in ["silero_vad_16k", "silero_vad_8k", "silero_vad_16k_sequence"] {
        let Some(case) = common::real_case(name) else {
            continue;
        };
        let dir = scratch(&format!("{name}_qemu"));
        let inputs = write_inputs(&dir, &case);
        let files: Vec<PathBuf> = inputs.iter().map(|(_, p)| p.clone()).collect();
        for (t, tc) in &chains {
            let out = dir.join(t.name());
            let report = egret_build(&case.path, &inputs, *t, &out);
            let got = run(&out, tc.qemu, &files, case.want.len()).unwrap();
            let err = silero_error(&case, &got, &format!("{name} {}", t.name()));
            println!("{name} {}: model.o {}", t.name(), report["model_o"]);
            assert!(err <= SILERO_TOL, "{name} {}: {err}", t.name());
        }
    }
}
