"""Attention and prefill cost of a decoder-only LLM (review §6.2), in FLOPs and milliseconds.

Per layer, for a prompt of n tokens attending to ``kv`` keys (``kv = n`` for a prefill, more when
a KV cache holds an earlier prefix), one multiply-add = 2 FLOPs (Kaplan et al. 2020, §2.1):

    QKVO projections   2·n·(d·d_q + 2·d·d_kv + d_q·d)       d_q = h·d_head, d_kv = h_kv·d_head (GQA)
    scores  Q·Kᵀ       2·n·kv·d_q
    values  A·V        2·n·kv·d_q
    MLP                2·n·3·d·d_ff   (SwiGLU: gate, up, down)   or 2·n·2·d·d_ff (GELU)

The review's 4·d·(M+L)² is the scores + values term alone (with d_q = d, kv = n). Its example
(Llama 3 70B, d = 8192, n = 1200 + 256, A100 at 312 TFLOPS) reproduces as 0.2226 ms per layer,
17.8 ms for 80 layers; but its "M = 64 -> 13 ms" compares the attention-score term at M = 64
(17.8·(1264/1456)² = 13.4 ms) with a 52 ms *total*, two different bases. On one basis (the whole
prefill at peak) M 256 -> 64 takes 657 ms to 568 ms: 13 % less, not 75 % (data/errata.csv,
rows s6-2-total and s6-2-m64; :func:`review_example` recomputes them).

Latency = FLOPs / throughput, with the throughput measured on this machine (:func:`fit_throughput`
on measured prefill times) or a device's peak.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class TransformerShape:
    d: int                      # model width (hidden size)
    n_layers: int               # decoder layers
    n_heads: int                # query heads h
    n_kv_heads: int             # key/value heads h_kv (GQA; = n_heads for plain MHA)
    d_ff: int                   # MLP inner width
    vocab: int = 0              # vocabulary size (for the output head)
    d_head: int | None = None   # per-head width (default d / n_heads)
    mlp: str = "swiglu"         # "swiglu" (3 matrices) or "gelu" (2 matrices)
    name: str = ""

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d // self.n_heads

    @property
    def d_q(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def d_kv(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def non_embedding_params(self) -> int:
        mats = 3 if self.mlp == "swiglu" else 2
        return self.n_layers * (2 * self.d * self.d_q + 2 * self.d * self.d_kv + mats * self.d * self.d_ff)

    @classmethod
    def from_hf_config(cls, cfg) -> "TransformerShape":
        """From a transformers config (Llama-style names)."""
        act = getattr(cfg, "hidden_act", "silu")
        return cls(d=cfg.hidden_size, n_layers=cfg.num_hidden_layers, n_heads=cfg.num_attention_heads,
                   n_kv_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
                   d_ff=cfg.intermediate_size, vocab=cfg.vocab_size, d_head=getattr(cfg, "head_dim", None),
                   mlp="swiglu" if act in ("silu", "swish") else "gelu",
                   name=getattr(cfg, "_name_or_path", "") or cfg.model_type)


#: Llama 3 70B (config.json: hidden 8192, 80 layers, 64 heads, 8 KV heads, intermediate 28672).
LLAMA3_70B = TransformerShape(d=8192, n_layers=80, n_heads=64, n_kv_heads=8, d_ff=28672, vocab=128256,
                              name="Llama 3 70B")
#: SmolLM2-135M-Instruct, the embedded model (hidden 576, 30 layers, 9 heads, 3 KV heads, 1536).
SMOLLM2_135M = TransformerShape(d=576, n_layers=30, n_heads=9, n_kv_heads=3, d_ff=1536, vocab=49152,
                                name="SmolLM2-135M")
#: NVIDIA A100 peak dense BF16/FP16 tensor throughput (datasheet), FLOP/s.
A100_PEAK = 312e12


def layer_flops(shape: TransformerShape, n: int, kv: int | None = None) -> dict[str, float]:
    """FLOPs of one decoder layer for n new tokens attending to kv keys (kv = n: prefill)."""
    kv = n if kv is None else kv
    d, dq, dkv = shape.d, shape.d_q, shape.d_kv
    mats = 3 if shape.mlp == "swiglu" else 2
    f = {
        "qkvo": 2.0 * n * (d * dq + 2 * d * dkv + dq * d),
        "scores": 2.0 * n * kv * dq,
        "values": 2.0 * n * kv * dq,
        "mlp": 2.0 * n * mats * d * shape.d_ff,
    }
    f["total"] = f["qkvo"] + f["scores"] + f["values"] + f["mlp"]
    return f


def prefill_flops(shape: TransformerShape, n: int, kv: int | None = None, lm_head_tokens: int = 0) -> float:
    """All layers, plus the output head for ``lm_head_tokens`` positions (1 when only the next token's
    logits are computed, n when all are, 0 to leave it out as the errata do)."""
    return shape.n_layers * layer_flops(shape, n, kv)["total"] + 2.0 * lm_head_tokens * shape.d * shape.vocab


def latency_ms(flops: float, throughput: float, overhead_ms: float = 0.0) -> float:
    """Predicted time: FLOPs / throughput (FLOP/s) plus a fixed per-call overhead."""
    return overhead_ms + flops / throughput * 1e3


def review_attention_flops(d: int, n: int) -> float:
    """The review's §6.2 formula 4·d·n² (scores + values only)."""
    return 4.0 * d * n * n


def review_example(L: int = 1200, M: int = 256, M_small: int = 64, shape: TransformerShape = LLAMA3_70B,
                   throughput: float = A100_PEAK) -> dict[str, float]:
    """The §6.2 example recomputed, and its "M = 64 -> 13 ms" claim on one basis.

    Keys: per-layer and 80-layer attention ms with the review's formula at M and at M_small, the
    whole prefill at M and M_small (projections + attention + MLP, no output head), and the saving."""
    n, n_small = L + M, L + M_small
    per_layer = review_attention_flops(shape.d, n) / throughput * 1e3
    per_layer_small = review_attention_flops(shape.d, n_small) / throughput * 1e3
    full = prefill_flops(shape, n) / throughput * 1e3
    full_small = prefill_flops(shape, n_small) / throughput * 1e3
    return {
        "n": n, "n_small": n_small,
        "attn_ms_per_layer": per_layer,                          # review: ≈ 0.22
        "attn_ms_all_layers": per_layer * shape.n_layers,        # review: ≈ 17.6
        "attn_ms_all_layers_small": per_layer_small * shape.n_layers,  # 13.4: the "13 ms"
        "review_total_ms": 52.0,                                 # the review's figure (not derivable)
        "review_total_small_same_basis_ms": 52.0 * (n_small / n) ** 2,  # scaling 52 ms like attention: 39
        "prefill_ms": full,                                      # errata: ≥ 657
        "prefill_ms_small": full_small,                          # errata: 568
        "saving": 1 - full_small / full,                         # 0.13, not 1 - 13/52 = 0.75
        "mlp_over_attention": layer_flops(shape, n)["mlp"] / review_attention_flops(shape.d, n),  # 29.5, not 2
    }


# ---- calibration against measured prefill times ---------------------------------------------------
def fit_throughput(flops: list[float], times_s: list[float], relative: bool = True) -> tuple[float, float]:
    """Least-squares fit t = overhead + flops / throughput; returns (throughput FLOP/s, overhead ms).

    ``relative``: minimise the squared *relative* errors (rows weighted by 1/t), so short prompts
    count as much as long ones — the error is then reported in %."""
    import numpy as np

    t = np.asarray(times_s, float)
    A = np.stack([np.ones(len(flops)), np.asarray(flops, float)], 1)
    w = 1.0 / t if relative else np.ones_like(t)
    (a, b), *_ = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)
    if b <= 0:  # degenerate (noise dominated): fall back to a pure ratio
        return float(sum(flops) / sum(times_s)), 0.0
    return float(1.0 / b), float(a * 1e3)


def relative_errors(predicted_ms: list[float], measured_ms: list[float]) -> list[float]:
    """(predicted - measured) / measured, per point."""
    return [(p - m) / m for p, m in zip(predicted_ms, measured_ms)]


def flop_counter_total(model, input_ids) -> dict[str, int]:
    """FLOPs torch counts for one forward (``torch.utils.flop_counter.FlopCounterMode``), by operator."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(input_ids=input_ids, use_cache=False)
    return {str(k): int(v) for k, v in fc.get_flop_counts()["Global"].items()} | {"total": fc.get_total_flops()}


def with_layers(shape: TransformerShape, n_layers: int) -> TransformerShape:
    return replace(shape, n_layers=n_layers)
