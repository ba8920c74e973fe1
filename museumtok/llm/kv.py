"""KV-cache compaction of the image tokens (review §6.3): keep the top-k by accumulated attention.

The idea is Heavy-Hitter Oracle's (H2O, Zhang et al., NeurIPS 2023, arXiv:2306.14048): the keys that
have received the most attention so far are the ones later queries will need. Here it is applied
to the image tokens only, once, after the prompt's prefill:

    prompt ids ──prefill (eager attention)──► KV cache (L layers × n positions)
                                             attentions A (L, h, n, n)
    score_j = Σ_layers Σ_heads Σ_{i ≥ j} A[i, j]          for each image position j (its own query included;
                                                          causal masking makes A[i, j] = 0 for i < j)
    keep    = every text position ∪ the top-k image positions by score_j
    cache'  = cache[:, :, keep]        (keys keep their RoPE phases: positions are not renumbered)
    decode  with position_ids continuing from n, attending to cache' only

:func:`compaction_agreement` measures how often the greedy answer from the compacted cache agrees
with the answer from the full cache, against keeping k random image tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .backends import TransformersBackend


@dataclass
class CompactionResult:
    keep_fraction: float        # fraction of image tokens kept
    kept_image_tokens: int
    answer_ids: list[int]       # greedy answer from the compacted cache
    agreement: float            # fraction of answer tokens equal to the full-cache answer, position-wise
    exact: bool                 # same answer token for token
    selection: str              # "attention" or "random"


def _new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


@torch.inference_mode()
def prefill_with_attention(backend: TransformersBackend, ids: list[int]):
    """Eager-attention prefill of ``ids``: (cache, attentions tuple of (1, h, n, n) per layer)."""
    model = backend.model
    old = model.config._attn_implementation
    try:
        model.set_attn_implementation("eager")
        out = model(input_ids=torch.tensor([ids], device=backend.device), use_cache=True, output_attentions=True,
                    logits_to_keep=1, **{backend._ckw: _new_cache(model)})
    finally:
        model.set_attn_implementation(old)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    return cache, out.attentions


def accumulated_attention(attentions, positions: torch.Tensor) -> torch.Tensor:
    """Σ over layers, heads and queries i ≥ j (the position's own query included) of the attention each
    position j in ``positions`` received."""
    total = None
    for A in attentions:                                # (1, h, n, n)
        col = A[0].float().sum(0).sum(0)                # (n,) attention received by each key
        total = col if total is None else total + col
    return total[positions]


def compact_cache(model, cache, keep: torch.Tensor):
    """A new DynamicCache holding only the positions ``keep`` (sorted) of every layer."""
    new = _new_cache(model)
    for i, layer in enumerate(cache.layers):
        new.update(layer.keys[:, :, keep], layer.values[:, :, keep], i)
    return new


@torch.inference_mode()
def greedy_from_cache(backend: TransformersBackend, cache, last_id: int, start_pos: int, max_new_tokens: int) -> list[int]:
    """Greedy decoding from a (possibly compacted) cache: feed ``last_id`` at ``start_pos`` and go on."""
    out_ids, nxt, pos = [], last_id, start_pos
    for _ in range(max_new_tokens):
        out = backend.model(input_ids=torch.tensor([[nxt]], device=backend.device),
                            position_ids=torch.tensor([[pos]], device=backend.device), use_cache=True,
                            **{backend._ckw: cache})
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        logits = out.logits[0, -1].float()
        if backend._suppress:
            logits[backend._suppress] = float("-inf")
        nxt = int(logits.argmax())
        if nxt in backend.eos_ids:
            break
        out_ids.append(nxt)
        pos += 1
    return out_ids


def _agreement(a: list[int], ref: list[int]) -> float:
    n = max(len(a), len(ref))
    return 1.0 if n == 0 else sum(x == y for x, y in zip(a, ref)) / n


def compaction_agreement(backend: TransformersBackend, messages: list[dict], vocab, keep_fractions=(0.5, 0.25, 0.1),
                         max_new_tokens: int = 24, seed: int = 0) -> tuple[list[int], list[CompactionResult]]:
    """Greedy answers with the image part of the KV cache compacted, against the full cache.

    Returns (the full-cache answer ids, one result per keep fraction and selection rule)."""
    vocab._need_attached()                      # clear message if backend.attach_vocab(vocab) was not called
    ids = backend.encode_messages(messages)
    body, last = ids[:-1], ids[-1]
    t = torch.tensor(body)
    img_pos = ((t >= vocab.token_offset) & (t < vocab.token_offset + vocab.K)).nonzero().reshape(-1)
    if img_pos.numel() == 0:
        raise ValueError("no image tokens of this vocabulary in the prompt")
    text_pos = torch.tensor([i for i in range(len(body)) if i not in set(img_pos.tolist())], dtype=torch.long)
    cache, attn = prefill_with_attention(backend, body)
    full = greedy_from_cache(backend, compact_cache(backend.model, cache, torch.arange(len(body))), last,
                             len(body), max_new_tokens)
    score = accumulated_attention(attn, img_pos)
    g = torch.Generator().manual_seed(seed)
    results = []
    for f in keep_fractions:
        k = max(1, int(round(f * img_pos.numel())))
        for rule in ("attention", "random"):
            chosen = img_pos[score.topk(k).indices] if rule == "attention" else img_pos[torch.randperm(img_pos.numel(), generator=g)[:k]]
            keep = torch.cat([text_pos, chosen]).sort().values
            ans = greedy_from_cache(backend, compact_cache(backend.model, cache, keep), last, len(body), max_new_tokens)
            results.append(CompactionResult(f, k, ans, _agreement(ans, full), ans == full, rule))
    return full, results
