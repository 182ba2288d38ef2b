//! Our forward against reference logits from an independent dense NumPy implementation of the
//! Hugging Face llama / qwen2 / qwen3 math (`tests/data/model_reference/`, see its README).

use std::path::PathBuf;

use candle_core::Device;
use chimera_worker::llm::model::{Architecture, LanguageModel, Step};
use chimera_worker::llm::random::{RandomDType, RandomFormat, RandomModelSpec, write_random_model};

fn fixture(arch: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/model_reference")
        .join(format!("{arch}.json"));
    let text = std::fs::read_to_string(&path).expect("reference fixture");
    serde_json::from_str(&text).expect("fixture json")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[test]
fn model_matches_hugging_face_reference_math() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        let reference = fixture(arch.name());
        let tokens: Vec<u32> = reference["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_u64().expect("token") as u32)
            .collect();
        let expected: Vec<Vec<f32>> = reference["logits"]
            .as_array()
            .expect("logits")
            .iter()
            .map(floats)
            .collect();
        let spec = RandomModelSpec::tiny(arch);
        for format in [RandomFormat::Safetensors, RandomFormat::Gguf] {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = write_random_model(dir.path(), &spec, format, RandomDType::F32)
                .expect("write model");
            if format == RandomFormat::Safetensors {
                let weights =
                    candle_core::safetensors::load(path.join("model.safetensors"), &Device::Cpu)
                        .expect("weights");
                let sum = weights["model.embed_tokens.weight"]
                    .sum_all()
                    .and_then(|s| s.to_scalar::<f32>())
                    .expect("sum");
                let want = reference["embedding_sum"].as_f64().expect("sum") as f32;
                assert!(
                    (sum - want).abs() < 1e-2,
                    "{arch:?}: the random weights changed (embedding sum {sum}, fixture {want}); \
                     regenerate the fixtures as tests/data/model_reference/README.md says"
                );
            }
            let model = LanguageModel::load(&path, &Device::Cpu).expect("load");
            let mut cache = model.new_cache();
            let (prompt, last) = tokens.split_at(tokens.len() - 1);
            let mut got = Vec::new();
            for chunk in [prompt, last] {
                let mut out = model
                    .forward(&mut [Step {
                        cache: &mut cache,
                        tokens: chunk,
                        want_logits: true,
                    }])
                    .expect("forward");
                got.push(out.remove(0));
            }
            for (g, e) in got.iter().zip(&expected) {
                let scale = e.iter().fold(0f32, |m, x| m.max(x.abs()));
                let diff = g
                    .iter()
                    .zip(e)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    diff <= 1e-3 * scale,
                    "{arch:?} {format:?}: max difference {diff} (largest logit {scale})"
                );
            }
        }
    }
}
