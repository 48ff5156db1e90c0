use egret_passes::{check, saturate};
use std::collections::HashMap;
#[test]
fn dev() {
    let home = std::env::var("HOME").unwrap();
    for m in ["silero-vad/silero_vad.onnx", "ppocr/ch_PP-OCRv4_det_infer.onnx", "ppocr/ch_PP-OCRv4_rec_infer.onnx", "ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"] {
        let model = egret_frontends::onnx::load(std::path::Path::new(&format!("{home}/.cache/egret/models/{m}"))).unwrap();
        let g = &model.graph;
        let t = std::time::Instant::now();
        let rt = saturate::round_trip(g).unwrap();
        egret_ir::verify::verify(&rt).unwrap();
        println!("{m}: {} -> {} nodes rt {:?}", g.node_count(), rt.node_count(), t.elapsed());
        let stages = egret_passes::rules::default_stages().into_iter().map(|names| saturate::Stage{ name: names.join("+"), rules: names.iter().flat_map(|n| (egret_passes::rules::by_name(n).unwrap().rules)()).collect()}).collect();
        let (opt, stats) = saturate::saturate(g, stages, Default::default(), &Default::default()).unwrap();
        egret_ir::verify::verify(&opt).unwrap();
        println!("{}", serde_json::to_string_pretty(&stats).unwrap());
        let mut dims = HashMap::new();
        dims.insert("unk__0".to_string(), 1);
        let ins = check::random_inputs(g, &dims, 1);
        match ins {
            Ok(ins) => { println!("rt err {:?}", check::compare(g, &rt, &ins)); println!("opt err {:?}", check::compare(g, &opt, &ins)); }
            Err(e) => println!("no random inputs: {e}"),
        }
    }
}
