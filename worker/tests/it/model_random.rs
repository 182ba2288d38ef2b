//! The transformer forward on tiny random-weight models of every architecture, written as GGUF
//! and as safetensors: ragged batches, token-by-token decoding and shared prefixes must all
//! give the logits of a plain one-sequence prefill.

use std::path::{Path, PathBuf};

use candle_core::Device;
use chimera_worker::llm::GgufTokenizer;
use chimera_worker::llm::model::{Architecture, KvCache, LanguageModel, ModelError, Step};
use chimera_worker::llm::random::{RandomDType, RandomFormat, RandomModelSpec, write_random_model};

const ARCHS: [Architecture; 3] = [
    Architecture::Llama,
    Architecture::Qwen2,
    Architecture::Qwen3,
];
const FORMATS: [(RandomFormat, RandomDType); 2] = [
    (RandomFormat::Gguf, RandomDType::F32),
    (RandomFormat::Safetensors, RandomDType::F32),
];

fn write(dir: &Path, spec: &RandomModelSpec, format: RandomFormat, dtype: RandomDType) -> PathBuf {
    write_random_model(dir, spec, format, dtype).expect("write random model")
}

fn load(path: &Path) -> LanguageModel {
    LanguageModel::load(path, &Device::Cpu).expect("load model")
}

/// Every (architecture, format) pair, loaded from a fresh directory.
fn all_models() -> Vec<(String, LanguageModel, tempfile::TempDir)> {
    let mut out = Vec::new();
    for arch in ARCHS {
        for (format, dtype) in FORMATS {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = write(dir.path(), &RandomModelSpec::tiny(arch), format, dtype);
            out.push((format!("{arch:?}/{format:?}"), load(&path), dir));
        }
    }
    out
}

/// Logits of the last token after feeding `tokens` to a fresh cache in one step.
fn prefill(model: &LanguageModel, tokens: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    run(model, &mut cache, tokens)
}

fn run(model: &LanguageModel, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
    let mut out = model
        .forward(&mut [Step {
            cache,
            tokens,
            want_logits: true,
        }])
        .expect("forward");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// Largest difference relative to the largest reference logit.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
        / scale
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let d = rel_diff(a, b);
    assert!(d <= tol, "{what}: relative difference {d} > {tol}");
}

fn tokens(seed: u32, n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (seed * 7919 + i * 104_729) % vocab as u32)
        .collect()
}

#[test]
fn model_ragged_batch_equals_one_sequence_at_a_time() {
    for (name, model, _dir) in all_models() {
        let vocab = model.config().vocab_size;
        let a = tokens(1, 7, vocab);
        let b = tokens(2, 5, vocab);
        let c = tokens(3, 4, vocab);
        // b and c are prefilled (all but their last token) before the mixed batch.
        let mut cache_a = model.new_cache();
        let mut cache_b = model.new_cache();
        let mut cache_c = model.new_cache();
        let none = model
            .forward(&mut [
                Step {
                    cache: &mut cache_b,
                    tokens: &b[..4],
                    want_logits: false,
                },
                Step {
                    cache: &mut cache_c,
                    tokens: &c[..3],
                    want_logits: false,
                },
            ])
            .expect("prefill");
        assert!(none.is_empty());
        // One prefill chunk of 7 tokens and two single-token decodes in one batch.
        let out = model
            .forward(&mut [
                Step {
                    cache: &mut cache_b,
                    tokens: &b[4..],
                    want_logits: true,
                },
                Step {
                    cache: &mut cache_a,
                    tokens: &a,
                    want_logits: true,
                },
                Step {
                    cache: &mut cache_c,
                    tokens: &c[3..],
                    want_logits: true,
                },
            ])
            .expect("mixed batch");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), vocab);
        assert_eq!(
            (cache_a.len(), cache_b.len(), cache_c.len()),
            (7, 5, 4),
            "{name}"
        );
        assert_close(&out[0], &prefill(&model, &b), 1e-3, &format!("{name} b"));
        assert_close(&out[1], &prefill(&model, &a), 1e-3, &format!("{name} a"));
        assert_close(&out[2], &prefill(&model, &c), 1e-3, &format!("{name} c"));
        // Different sequences give different logits (the comparison above can fail).
        assert!(rel_diff(&out[0], &out[1]) > 1e-2, "{name}");
    }
}

#[test]
fn model_decoding_token_by_token_equals_prefill() {
    for (name, model, _dir) in all_models() {
        let seq = tokens(4, 9, model.config().vocab_size);
        let mut cache = model.new_cache();
        for (i, t) in seq.iter().enumerate() {
            let logits = run(&model, &mut cache, std::slice::from_ref(t));
            if i == 4 || i == seq.len() - 1 {
                let reference = prefill(&model, &seq[..=i]);
                assert_close(&logits, &reference, 1e-3, &format!("{name} token {i}"));
            }
        }
        assert_eq!(cache.len(), seq.len());
        // Chunks of uneven size continue the same way.
        let mut chunked = model.new_cache();
        run(&model, &mut chunked, &seq[..2]);
        run(&model, &mut chunked, &seq[2..6]);
        let last = run(&model, &mut chunked, &seq[6..]);
        assert_close(
            &last,
            &prefill(&model, &seq),
            1e-3,
            &format!("{name} chunks"),
        );
    }
}

#[test]
fn model_shared_prefix_plus_suffix_equals_full_prefill() {
    for (name, model, _dir) in all_models() {
        let vocab = model.config().vocab_size;
        let prefix = tokens(5, 6, vocab);
        let s1 = tokens(6, 3, vocab);
        let s2 = tokens(7, 1, vocab);
        let mut cache = model.new_cache();
        let none = model
            .forward(&mut [Step {
                cache: &mut cache,
                tokens: &prefix,
                want_logits: false,
            }])
            .expect("prefix");
        assert!(none.is_empty());
        let shared = cache.freeze();
        assert_eq!(shared.len(), prefix.len());
        let mut c1 = shared.cache();
        let mut c2 = shared.cache();
        assert_eq!(c1.len(), prefix.len());
        let out = model
            .forward(&mut [
                Step {
                    cache: &mut c1,
                    tokens: &s1,
                    want_logits: true,
                },
                Step {
                    cache: &mut c2,
                    tokens: &s2,
                    want_logits: true,
                },
            ])
            .expect("suffixes");
        let full = |s: &[u32]| prefill(&model, &[prefix.as_slice(), s].concat());
        assert_close(&out[0], &full(&s1), 1e-3, &format!("{name} suffix 1"));
        assert_close(&out[1], &full(&s2), 1e-3, &format!("{name} suffix 2"));
        assert_eq!(shared.len(), prefix.len(), "the prefix is not extended");

        // A frozen prefix of a prefixed cache chains: prefix ++ s1 ++ more.
        let nested = c1.freeze();
        let more = tokens(8, 2, vocab);
        let mut c3 = nested.cache();
        let logits = run(&model, &mut c3, &more);
        let reference = prefill(&model, &[prefix.as_slice(), &s1, &more].concat());
        assert_close(&logits, &reference, 1e-3, &format!("{name} nested prefix"));
    }
}

#[test]
fn model_gguf_and_safetensors_of_one_spec_agree() {
    // The GGUF writer permutes llama's q/k rows for interleaved RoPE, as llama.cpp does; the
    // loader must undo that with the matching rotation for the two files to be one model.
    for arch in ARCHS {
        let spec = RandomModelSpec::tiny(arch);
        let g = tempfile::tempdir().expect("temp dir");
        let s = tempfile::tempdir().expect("temp dir");
        let gguf = load(&write(
            g.path(),
            &spec,
            RandomFormat::Gguf,
            RandomDType::F32,
        ));
        let st = load(&write(
            s.path(),
            &spec,
            RandomFormat::Safetensors,
            RandomDType::F32,
        ));
        assert_eq!(gguf.config().vocab_size, st.config().vocab_size);
        assert_eq!(gguf.config().head_dim, st.config().head_dim);
        assert_eq!(gguf.config().tie_embeddings, spec.tie_embeddings);
        let seq = tokens(9, 8, gguf.config().vocab_size);
        assert_close(
            &prefill(&gguf, &seq),
            &prefill(&st, &seq),
            1e-4,
            &format!("{arch:?}"),
        );
    }
}

#[test]
fn model_half_and_quantized_weights_stay_close_to_f32() {
    let seq = tokens(10, 6, 400);
    for arch in ARCHS {
        let spec = RandomModelSpec::tiny(arch);
        let reference = {
            let d = tempfile::tempdir().expect("temp dir");
            prefill(
                &load(&write(
                    d.path(),
                    &spec,
                    RandomFormat::Gguf,
                    RandomDType::F32,
                )),
                &seq,
            )
        };
        for (format, dtype, tol) in [
            (RandomFormat::Safetensors, RandomDType::BF16, 0.1),
            (RandomFormat::Safetensors, RandomDType::F16, 0.02),
            (RandomFormat::Gguf, RandomDType::F16, 0.02),
            (RandomFormat::Gguf, RandomDType::Q8_0, 0.05),
            (RandomFormat::Gguf, RandomDType::Q4_1, 0.5),
        ] {
            let d = tempfile::tempdir().expect("temp dir");
            let model = load(&write(d.path(), &spec, format, dtype));
            let what = format!("{arch:?} {format:?} {dtype:?}");
            let logits = prefill(&model, &seq);
            assert_close(&logits, &reference, tol, &what);
            // The quantized kernel and the dequantized f32 matmul give the same function.
            let path = write(d.path(), &spec, format, dtype);
            let always_dense = load(&path).with_dense_rows(Some(1));
            let never_dense = load(&path).with_dense_rows(None);
            let a = prefill(&always_dense, &seq);
            let b = prefill(&never_dense, &seq);
            let tol = if matches!(dtype, RandomDType::Q8_0 | RandomDType::Q4_1) {
                0.05
            } else {
                1e-4
            };
            assert_close(&a, &b, tol, &format!("{what} dense vs quantized"));
        }
    }
}

#[test]
fn model_random_files_ship_a_loadable_tokenizer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = RandomModelSpec::tiny(Architecture::Qwen2);
    let gguf = write(dir.path(), &spec, RandomFormat::Gguf, RandomDType::Q8_0);
    let model = load(&gguf);
    let tok = GgufTokenizer::from_gguf(&gguf).expect("tokenizer from GGUF");
    assert_eq!(
        tok.tokenizer.get_vocab_size(true),
        model.config().vocab_size
    );
    assert_eq!(tok.eos, tok.tokenizer.token_to_id("<|im_end|>"));
    assert!(
        tok.chat_template
            .as_deref()
            .is_some_and(|t| t.contains("<|im_start|>"))
    );
    let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n";
    let ids = tok.tokenizer.encode(text, false).expect("encode");

    let st_dir = tempfile::tempdir().expect("temp dir");
    let st = write(
        st_dir.path(),
        &spec,
        RandomFormat::Safetensors,
        RandomDType::F32,
    );
    let hf = tokenizers::Tokenizer::from_file(st.join("tokenizer.json")).expect("tokenizer.json");
    let hf_ids = hf.encode(text, false).expect("encode");
    assert_eq!(hf_ids.get_ids(), ids.get_ids());
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(st.join("tokenizer_config.json")).expect("tokenizer_config"),
    )
    .expect("json");
    assert_eq!(config["eos_token"], "<|im_end|>");
    assert!(
        config["chat_template"]
            .as_str()
            .is_some_and(|t| t.contains("add_generation_prompt"))
    );
}

#[test]
fn model_bad_steps_are_rejected_and_leave_caches_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = RandomModelSpec::tiny(Architecture::Llama);
    let model = load(&write(
        dir.path(),
        &spec,
        RandomFormat::Gguf,
        RandomDType::F32,
    ));
    let vocab = model.config().vocab_size as u32;
    let mut good = model.new_cache();
    run(&model, &mut good, &[5, 6, 7]);
    let mut other = model.new_cache();
    let err = model
        .forward(&mut [
            Step {
                cache: &mut good,
                tokens: &[8],
                want_logits: true,
            },
            Step {
                cache: &mut other,
                tokens: &[vocab],
                want_logits: true,
            },
        ])
        .expect_err("token outside the vocabulary");
    assert!(
        matches!(err, ModelError::BadStep { step: 1, .. })
            && err.to_string().contains("vocabulary"),
        "{err}"
    );
    assert_eq!((good.len(), other.len()), (3, 0));
    let err = model
        .forward(&mut [Step {
            cache: &mut good,
            tokens: &[],
            want_logits: true,
        }])
        .expect_err("empty step");
    assert!(matches!(err, ModelError::BadStep { step: 0, .. }), "{err}");

    // A cache of a model of another shape is refused.
    let qdir = tempfile::tempdir().expect("temp dir");
    let qwen3 = load(&write(
        qdir.path(),
        &RandomModelSpec::tiny(Architecture::Qwen3),
        RandomFormat::Gguf,
        RandomDType::F32,
    ));
    let mut foreign = qwen3.new_cache();
    let err = model
        .forward(&mut [Step {
            cache: &mut foreign,
            tokens: &[1],
            want_logits: true,
        }])
        .expect_err("foreign cache");
    assert!(err.to_string().contains("another shape"), "{err}");

    // The cache still works after the refused calls.
    let logits = run(&model, &mut good, &[8]);
    assert_close(
        &logits,
        &prefill(&model, &[5, 6, 7, 8]),
        1e-3,
        "after errors",
    );
}

#[test]
fn model_load_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.gguf");
    let err = LanguageModel::load(&missing, &Device::Cpu).expect_err("absent");
    assert!(err.to_string().contains("absent.gguf"), "{err}");

    let st = write(
        dir.path(),
        &RandomModelSpec::tiny(Architecture::Qwen3),
        RandomFormat::Safetensors,
        RandomDType::F32,
    );
    let config_path = st.join("config.json");
    let text = std::fs::read_to_string(&config_path).expect("config");
    std::fs::write(&config_path, text.replace("\"qwen3\"", "\"gemma\"")).expect("write");
    let err = LanguageModel::load(&st, &Device::Cpu)
        .expect_err("gemma")
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("model_type") && err.contains("gemma"),
        "{err}"
    );

    // A layer count larger than the file's tensors names the first missing tensor.
    std::fs::write(
        &config_path,
        text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .expect("write");
    let err = LanguageModel::load(&st, &Device::Cpu)
        .expect_err("missing layer")
        .to_string();
    assert!(err.contains("model.layers.2."), "{err}");

    // A wrong width names the tensor and both shapes.
    std::fs::write(
        &config_path,
        text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .expect("write");
    let err = LanguageModel::load(&st, &Device::Cpu)
        .expect_err("bad shape")
        .to_string();
    assert!(
        err.contains("mlp.gate_proj.weight") && err.contains("96"),
        "{err}"
    );
}

#[test]
fn model_is_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<LanguageModel>();
    is::<KvCache>();
    is::<chimera_worker::llm::model::SharedPrefix>();
}

#[test]
fn model_long_prefill_split_across_threads_equals_decoding() {
    // 80 rows and 80x80 attention: large enough that RoPE and attention are split across
    // threads; single-token steps stay on the calling thread.
    for (name, model, _dir) in all_models() {
        let seq = tokens(11, 80, model.config().vocab_size);
        let mut cache = model.new_cache();
        let mut last = Vec::new();
        for t in &seq {
            last = run(&model, &mut cache, std::slice::from_ref(t));
        }
        assert_close(&prefill(&model, &seq), &last, 1e-3, &format!("{name} long"));
        // Two long sequences in one batch.
        let other = tokens(12, 70, model.config().vocab_size);
        let (mut c1, mut c2) = (model.new_cache(), model.new_cache());
        let out = model
            .forward(&mut [
                Step {
                    cache: &mut c1,
                    tokens: &seq,
                    want_logits: true,
                },
                Step {
                    cache: &mut c2,
                    tokens: &other,
                    want_logits: true,
                },
            ])
            .expect("batch");
        assert_close(&out[0], &last, 1e-3, &format!("{name} batch 1"));
        assert_close(
            &out[1],
            &prefill(&model, &other),
            1e-3,
            &format!("{name} batch 2"),
        );
    }
}
