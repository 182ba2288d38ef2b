"""Reference logits for the tiny random models, computed in float64 NumPy straight from the
Hugging Face modelling code's math (modeling_llama / modeling_qwen2 / modeling_qwen3):
RMSNorm, q/k/v projections (+ bias), qwen3's per-head q/k RMSNorm before RoPE, rotate_half
RoPE, repeat_kv for grouped-query attention, causal softmax attention, SwiGLU MLP, final norm,
LM head (or the tied embedding). A dense one-sequence forward, independent of the Rust code's
ragged batches, caches and GGUF handling.

Usage: python3 reference.py MODEL_DIR ARCH > ARCH.json
where MODEL_DIR was written by `chimera llm random --arch ARCH --format safetensors --dtype f32`.
"""
import json
import struct
import sys

import numpy as np

TOKENS = [1, 4, 77, 300, 12, 256, 190, 45, 9, 402, 33]


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        start, end = meta["data_offsets"]
        buf = np.frombuffer(data[8 + n + start : 8 + n + end], dtype="<f4")
        out[name] = buf.reshape(meta["shape"]).astype(np.float64)
    return out


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, theta):
    # x: [T, heads, D]; Hugging Face's rotate_half pairs (i, i + D/2).
    t, _, d = x.shape
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(t, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
    rot = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def forward(w, c, arch, tokens):
    eps, theta = c["rms_norm_eps"], c.get("rope_theta", 10000.0)
    h_, kv, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    t = len(tokens)
    x = w["model.embed_tokens.weight"][tokens]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = h @ w[p + f"self_attn.{name}_proj.weight"].T
            b = w.get(p + f"self_attn.{name}_proj.bias")
            return y if b is None else y + b

        q = proj("q").reshape(t, h_, d)
        k = proj("k").reshape(t, kv, d)
        v = proj("v").reshape(t, kv, d)
        if arch == "qwen3":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q, theta), rope(k, theta)
        k = np.repeat(k, h_ // kv, axis=1)
        v = np.repeat(v, h_ // kv, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(d)
        scores = scores + np.triu(np.full((t, t), -np.inf), 1)[None]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", scores, v).reshape(t, h_ * d)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h2 = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h2 @ w[p + "mlp.gate_proj.weight"].T
        u = h2 @ w[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def main():
    model_dir, arch = sys.argv[1], sys.argv[2]
    with open(f"{model_dir}/config.json") as f:
        config = json.load(f)
    assert config["model_type"] == arch
    w = load_safetensors(f"{model_dir}/model.safetensors")
    logits = forward(w, config, arch, TOKENS)
    json.dump(
        {
            "arch": arch,
            "tokens": TOKENS,
            # Guards against a change of the random weights: the sum of the embedding.
            "embedding_sum": float(w["model.embed_tokens.weight"].sum()),
            # Logits of the last two positions.
            "logits": [[round(float(v), 6) for v in row] for row in logits[-2:]],
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
