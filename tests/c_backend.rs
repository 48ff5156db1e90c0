//! The standalone C backend (`egret build`): every ONNX node test whose ops
//! it supports, compiled with the host C compiler and run, must match the
//! expected outputs; a real model (PP-OCR cls) is built by the CLI, links
//! no allocator, matches the interpreter, and passes ASan/UBSan.

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

/// Lower `g` for `inputs` and emit C; `Ok(None)` when the lowering or the
/// emitter does not support the graph (with the reason).
fn emit(g: &Graph, inputs: &[Value], opts: &c::Options) -> Result<Emitted, String> {
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

    /// A Linux cross target's gcc (static, strict) and its qemu-user, or
    /// why they cannot be used.
    fn cross(t: c::Target) -> Result<Toolchain, String> {
        let qemu = t.qemu().ok_or("no emulator for this target")?;
        for tool in [t.cc(), qemu] {
            let ok = Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                return Err(format!("{tool} is not installed (scripts/setup-cross.sh)"));
            }
        }
        let mut flags = STRICT.to_vec();
        flags.extend(t.cflags().split_whitespace());
        flags.push("-static");
        Ok(Toolchain {
            name: t.name(),
            cc: t.cc(),
            flags,
            qemu: Some(qemu),
        })
    }
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
/// with the reason (scripts/setup-cross.sh installs them).
#[test]
fn node_conformance_under_qemu() {
    let stride: usize = std::env::var("EGRET_QEMU_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
        .max(1);
    let targets = [c::Target::Aarch64, c::Target::Armv7, c::Target::Riscv64];
    let chains: Vec<Toolchain> = targets
        .into_iter()
        .filter_map(|t| match Toolchain::cross(t) {
            Ok(tc) => Some(tc),
            Err(why) => {
                println!("SKIP {}: {why}", t.name());
                None
            }
        })
        .collect();
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

#[test]
fn egret_build_makes_a_malloc_free_ppocr_cls_that_matches_the_interpreter() {
    let Some((path, case)) = ppocr_cls() else {
        return;
    };
    let dir = scratch("ppocr_cls");
    let x = dir.join("x.npy");
    npy::write(&x, case.inputs[0].as_tensor().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["build", "--target", "host", "--json", "-o"])
        .arg(dir.join("build"))
        .arg(&path)
        .arg("--input")
        .arg(format!("x={}", x.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    let tc = Toolchain {
        flags: vec![
            "-std=c99",
            "-O1",
            "-g",
            "-fno-strict-aliasing",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
        ],
        ..Toolchain::host()
    };
    compile(&dir, &tc).unwrap();
    let got = run(&dir, None, &files, 1).unwrap();
    let err = scaled_error(&got[0], case.want[0].as_tensor().unwrap());
    assert!(err <= 1e-4, "{err} vs onnxruntime");
}

/// Lower, emit, compile (strict flags) and run `g` on the host.
fn build_and_run(name: &str, g: &Graph, inputs: &[Value]) -> Vec<Tensor> {
    let dir = scratch(name);
    let e = emit(g, inputs, &c::Options::default()).unwrap();
    let files = write(&dir, &e, inputs).unwrap();
    compile(&dir, &Toolchain::host()).unwrap();
    run(&dir, None, &files, g.outputs.len()).unwrap()
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
/// are skipped with the reason (scripts/setup-cross.sh installs them).
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
        let installed = Command::new(t.cc())
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            println!(
                "SKIP {}: {} is not installed (scripts/setup-cross.sh)",
                t.name(),
                t.cc()
            );
            continue;
        }
        let out_dir = dir.join(t.name());
        let out = Command::new(env!("CARGO_BIN_EXE_egret"))
            .args([
                "build",
                "--compile",
                "always",
                "--json",
                "--target",
                t.name(),
                "-o",
            ])
            .arg(&out_dir)
            .arg(&path)
            .arg("--input")
            .arg(format!("x={}", x.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            t.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        let dir = scratch(name);
        let opts = c::Options {
            weights: c::Weights::Bin,
            ..c::Options::default()
        };
        let e = emit(&case.model.graph, &case.inputs, &opts).unwrap();
        assert!(e
            .files
            .weights_bin
            .as_ref()
            .is_some_and(|w| w.len() >= e.weights_bytes));
        let files = write(&dir, &e, &case.inputs).unwrap();
        compile(&dir, &Toolchain::host()).unwrap();
        let got = run(&dir, None, &files, 1).unwrap();
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
