"""Time to first token on turn 1 vs turn 2 (KV cache of the image prefix), tokens/s, cost-model error.

    OMP_NUM_THREADS=1 python benchmarks/llm_ttft.py                 # embedded SmolLM2 on CPU, 1 thread
    python benchmarks/llm_ttft.py --llm hf:HuggingFaceTB/SmolLM2-135M-Instruct   # e.g. on CUDA
    python benchmarks/llm_ttft.py --fast --json out.json

Prints, side by side: turn-2 TTFT with the cached image prefix against the same turn-2 prompt
prefilled from scratch (the baseline), the ratio; decode tokens/s; and the prefill times for n from
64 to 2048 tokens against the cost model (FLOPs / fitted throughput), with the error in %.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from museumtok import registry  # noqa: E402
from museumtok.llm.backends import TransformersBackend, embedded_is_cached, make_backend  # noqa: E402
from museumtok.llm.chat import ChatSession  # noqa: E402
from museumtok.llm.cost import TransformerShape, fit_throughput, latency_ms, prefill_flops  # noqa: E402

QUESTIONS = ["What colours dominate this painting?", "Is there a person in it?", "What is in the background?"]


def test_image():
    from museumtok.data.catalog import DataNotFound, load_catalog

    try:
        e = load_catalog(split="test", collection="artworks")[0]
        return e.find(), e.id
    except (DataNotFound, IndexError):
        g = torch.Generator().manual_seed(0)
        return torch.rand(3, 256, 256, generator=g), "random-noise"


def ttft(backend, tokenizer: str, M: int, repeats: int, max_new_tokens: int) -> dict:
    tok = registry.load(tokenizer)
    image, image_id = test_image()
    t1, t2, t2_cold, tps = [], [], [], []
    answers = []
    for r in range(repeats):
        s = ChatSession(backend, max_new_tokens=max_new_tokens, reserve_answer=max_new_tokens)
        s.set_image(tok, image, M, image_id=image_id)             # flushes the cache
        a1 = list(s.ask(QUESTIONS[0]))[-1]
        t1.append(s.last.stats["ttft_s"])
        tps.append(s.last.stats["tokens_per_s"])
        a2 = list(s.ask(QUESTIONS[1]))[-1]
        st = s.last.stats
        t2.append(st["ttft_s"])
        tps.append(st["tokens_per_s"])
        reused, prompt = st["reused_tokens"], st["prompt_tokens"]
        backend.reset()                                           # the same turn-2 prompt, no cache
        cold = backend.generate(s.last.messages, max_new_tokens=max_new_tokens)
        t2_cold.append(backend.last_stats["ttft_s"])
        answers.append((a1, a2, cold == a2))
    med = statistics.median
    return {"tokenizer": tokenizer, "M": M, "image": image_id, "turn1_ttft_ms": med(t1) * 1e3,
            "turn2_ttft_ms": med(t2) * 1e3, "turn2_uncached_ttft_ms": med(t2_cold) * 1e3,
            "ratio_turn2_over_turn1": med(t2) / med(t1), "ratio_turn2_over_uncached": med(t2) / med(t2_cold),
            "reused_tokens": reused, "prompt_tokens": prompt, "tokens_per_s": med(tps),
            "same_answer_with_and_without_cache": all(a[2] for a in answers), "answers": answers[0][:2]}


def calibrate(backend, ns: list[int], repeats: int) -> dict:
    shape = TransformerShape.from_hf_config(backend.model.config)
    backend.prefill_time(16)                                       # warm-up
    measured = [backend.prefill_time(n, repeats=repeats) for n in ns]
    flops = [prefill_flops(shape, n, lm_head_tokens=1) for n in ns]
    thr, overhead = fit_throughput(flops, measured)
    pred = [latency_ms(f, thr, overhead) for f in flops]
    rows = [{"n": n, "gflop": f / 1e9, "measured_ms": m * 1e3, "predicted_ms": p,
             "error_pct": 100 * (p - m * 1e3) / (m * 1e3)} for n, f, m, p in zip(ns, flops, measured, pred)]
    return {"throughput_gflops": thr / 1e9, "overhead_ms": overhead, "rows": rows,
            "mean_abs_error_pct": statistics.mean(abs(r["error_pct"]) for r in rows)}


def compaction(backend, tokenizer: str, M: int, fractions, max_new_tokens: int) -> list[dict]:
    from museumtok.llm.kv import compaction_agreement
    from museumtok.llm.prompt import image_block, prefix_messages
    from museumtok.llm.vocab import ImageVocab

    tok = registry.load(tokenizer)
    image, _ = test_image()
    t = tok.encode(image, M)
    vocab = ImageVocab.for_tokenizer(t.tokenizer, t.K)
    backend.attach_vocab(vocab)
    rp, backend.repetition_penalty = backend.repetition_penalty, 1.0   # plain greedy on both sides
    try:
        _, res = compaction_agreement(backend, prefix_messages(image_block(t, vocab), QUESTIONS[0]), vocab,
                                      keep_fractions=fractions, max_new_tokens=max_new_tokens)
    finally:
        backend.repetition_penalty = rp
    return [{"keep": r.keep_fraction, "image_tokens": r.kept_image_tokens, "selection": r.selection,
             "agreement": r.agreement, "exact": r.exact} for r in res]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--llm", default=None, help="backend spec (default: embedded)")
    p.add_argument("--tokenizer", default="lloyd-patch-k1024")
    p.add_argument("-M", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--fast", action="store_true", help="fewer points (n ≤ 512), one repeat")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.perf_counter()
    cached = embedded_is_cached()
    backend = make_backend(a.llm)
    load_s = time.perf_counter() - t0
    if not isinstance(backend, TransformersBackend):
        sys.exit("this benchmark measures a transformers backend (embedded or hf:...)")
    print(f"backend {backend.name} on {backend.device}, {torch.get_num_threads()} thread(s); "
          f"load {load_s:.1f} s ({'from the safetensors cache' if cached else 'GGUF conversion'})")
    reps = 1 if a.fast else a.repeats
    r = ttft(backend, a.tokenizer, a.M, reps, a.max_new_tokens)
    print(f"\nKV cache of the image prefix ({a.tokenizer}, M={a.M}, image {r['image']}, median of {reps}):")
    print(f"  turn 1 TTFT                 {r['turn1_ttft_ms']:8.0f} ms   (prompt prefilled from scratch)")
    print(f"  turn 2 TTFT, cached prefix  {r['turn2_ttft_ms']:8.0f} ms   ({r['reused_tokens']} of {r['prompt_tokens']} tokens reused)")
    print(f"  turn 2 TTFT, no cache       {r['turn2_uncached_ttft_ms']:8.0f} ms   (baseline)")
    print(f"  ratio turn2/turn1 {r['ratio_turn2_over_turn1']:.2f}, cached/uncached {r['ratio_turn2_over_uncached']:.2f}; "
          f"same answer with and without cache: {r['same_answer_with_and_without_cache']}")
    print(f"  decode {r['tokens_per_s']:.1f} tokens/s")
    ns = [64, 128, 256, 512] if a.fast else [64, 128, 256, 512, 1024, 2048]
    c = calibrate(backend, ns, 1 if a.fast else 2)
    print(f"\nprefill vs cost model (fitted throughput {c['throughput_gflops']:.1f} GFLOP/s, "
          f"overhead {c['overhead_ms']:.0f} ms):")
    print(f"  {'n':>5} {'GFLOP':>8} {'measured ms':>12} {'model ms':>10} {'error %':>8}")
    for row in c["rows"]:
        print(f"  {row['n']:>5} {row['gflop']:>8.2f} {row['measured_ms']:>12.0f} {row['predicted_ms']:>10.0f} "
              f"{row['error_pct']:>8.1f}")
    print(f"  mean |error| {c['mean_abs_error_pct']:.1f} %")
    fr = (0.5,) if a.fast else (0.5, 0.25, 0.1)
    comp = compaction(backend, a.tokenizer, a.M, fr, a.max_new_tokens)
    print(f"\nKV compaction of the image tokens (greedy answer vs the full cache, {a.max_new_tokens} tokens):")
    print(f"  {'keep':>5} {'image tokens':>12} {'attention top-k':>16} {'random k':>9}")
    for f in fr:
        att = next(x for x in comp if x["keep"] == f and x["selection"] == "attention")
        rnd = next(x for x in comp if x["keep"] == f and x["selection"] == "random")
        print(f"  {f:>5.2f} {att['image_tokens']:>12} {100 * att['agreement']:>15.0f}% {100 * rnd['agreement']:>8.0f}%")
    if a.json:
        Path(a.json).write_text(json.dumps({"backend": backend.name, "device": str(backend.device),
                                            "threads": torch.get_num_threads(), "load_s": load_s,
                                            "ttft": r, "cost_model": c, "compaction": comp}, indent=2, default=str))


if __name__ == "__main__":
    main()
