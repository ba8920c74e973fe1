"""The information desk of the review's §11, simulated from measured parts.

The review reports for its deployment (§11): 1.8 s mean latency (3.4 s before compression), 2.1k
context tokens for 2 images + 8 chain-of-thought steps, and a fallback to an API model when the
retrieval confidence is under 0.6 or the question is longer than 1.5k tokens. Those are its numbers;
this module rebuilds the desk from parts we can measure — a tokenizer's encode time, an LLM's
prefill throughput and decode speed, the retrieval confidence of :mod:`museumtok.llm.retrieval` —
and a first-come-first-served queue, so each claim can be set against a measurement::

    visitors (Poisson, λ per minute)
      └─► question length, retrieval confidence ─► fallback? ── yes ─► API model (fixed latency)
                                                     │ no
                                                     ▼
      FIFO queue (one LLM server) ─► encode (images × M tokens; 0 when pre-baked)
                                   ─► prefill n prompt tokens ─► decode T answer tokens

Waiting times follow Lindley's recursion W_{i+1} = max(0, W_i + S_i − A_{i+1}) (Lindley 1952), the
exact FIFO single-server queue; tests check it against the M/M/1 and M/D/1 formulas.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .llm.budget import IMAGE_DELIMITERS
from .llm.cost import A100_PEAK, LLAMA3_70B, TransformerShape, latency_ms, prefill_flops

#: NVIDIA A100 80GB SXM memory bandwidth (datasheet: 2,039 GB/s).
A100_80GB_BANDWIDTH = 2.039e12
A100_80GB_MEMORY = 80e9


@dataclass(frozen=True)
class ServiceModel:
    """Time one request spends on the desk's LLM server, split into its three parts."""

    name: str
    shape: TransformerShape            # the LLM's shape (for prefill FLOPs)
    prefill_throughput: float          # FLOP/s reached during prefill (measured or peak × utilisation)
    decode_ms_per_token: float         # ms per generated token (measured, or memory-bound estimate)
    encode_ms_per_image: float = 0.0   # tokenizer time per image (0 when tokens are pre-baked)
    prefill_overhead_ms: float = 0.0   # fixed cost per prefill call (from the throughput fit)
    measured: bool = True              # False: an estimate from datasheet numbers, say so

    def prefill_ms(self, n: int) -> float:
        return latency_ms(prefill_flops(self.shape, n), self.prefill_throughput, self.prefill_overhead_ms)

    def split_ms(self, prompt_tokens: int, answer_tokens: int, images: int, prebaked: bool) -> dict[str, float]:
        enc = 0.0 if prebaked else images * self.encode_ms_per_image
        return {"encode": enc, "prefill": self.prefill_ms(prompt_tokens),
                "decode": answer_tokens * self.decode_ms_per_token}


def memory_bound_decode_ms(params: float, bytes_per_param: float, bandwidth: float) -> float:
    """Decoding one token at batch 1 reads every weight once: ms ≈ params × bytes / bandwidth."""
    return params * bytes_per_param / bandwidth * 1e3


def gpu_estimate(shape: TransformerShape = LLAMA3_70B, bytes_per_param: float = 0.5, mfu: float = 0.5,
                 peak: float = A100_PEAK, bandwidth: float = A100_80GB_BANDWIDTH,
                 memory: float = A100_80GB_MEMORY, encode_ms_per_image: float = 0.0) -> ServiceModel:
    """A GPU-hosted desk estimated from datasheet numbers (not measured here: no GPU in this project's CI).

    Prefill at ``mfu`` × peak FLOP/s; decode memory-bound. The weights must fit: Llama 3 70B in
    bf16 is 141 GB, more than one A100 80GB holds, so the default is 4-bit weights (0.5 byte/param).
    """
    params = shape.non_embedding_params + 2 * shape.vocab * shape.d   # + input embedding and output head
    if params * bytes_per_param > memory:
        raise ValueError(f"{shape.name}: {params * bytes_per_param / 1e9:.0f} GB of weights at {bytes_per_param} "
                         f"byte/param do not fit in {memory / 1e9:.0f} GB; quantize or shard")
    return ServiceModel(f"{shape.name} on A100 80GB (estimate, {8 * bytes_per_param:g}-bit weights, MFU {mfu:g})",
                        shape, peak * mfu, memory_bound_decode_ms(params, bytes_per_param, bandwidth),
                        encode_ms_per_image, 0.0, measured=False)


@dataclass(frozen=True)
class DeskConfig:
    visitors_per_minute: float = 6.0   # arrival rate λ of questions (Poisson process)
    minutes: float = 60.0              # simulated opening time
    images: int = 2                    # images per question (the review: 2)
    M: int = 256                       # tokens per image
    system_tokens: int = 120           # instructions and catalog card
    question_tokens: int = 40          # median question length (log-normal around it)
    question_spread: float = 0.8       # σ of log(question length)
    answer_tokens: int = 80            # tokens generated per answer (CoT included)
    context: int = 4096                # the LLM's window
    prebaked: bool = True              # catalog tokens computed in advance (the review's step 2)
    max_question_tokens: int = 1536    # longer questions go to the fallback (the review: 1.5k)
    min_confidence: float = 0.6        # retrieval confidence under this goes to the fallback (the review: 0.6)
    fallback_ms: float = 4000.0        # latency of the fallback API model (an assumption; set yours)
    seed: int = 0                      # seeds arrivals, question lengths and confidences


@dataclass
class Visit:
    arrival_s: float
    question_tokens: int
    prompt_tokens: int
    confidence: float
    fallback: str | None = None        # None, "confidence", "question" or "context"
    wait_ms: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # encode / prefill / decode ms

    @property
    def service_ms(self) -> float:
        return sum(self.parts.values())

    @property
    def total_ms(self) -> float:
        return self.wait_ms + self.service_ms


def lindley_waits(arrivals_s: list[float], services_s: list[float]) -> list[float]:
    """Waiting times in a FIFO single-server queue: W_{i+1} = max(0, W_i + S_i − (A_{i+1} − A_i))."""
    waits, w = [], 0.0
    for i, a in enumerate(arrivals_s):
        if i:
            w = max(0.0, w + services_s[i - 1] - (a - arrivals_s[i - 1]))
        waits.append(w)
    return waits


def poisson_arrivals(rate_per_s: float, horizon_s: float, rng: random.Random) -> list[float]:
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate_per_s)
        if t > horizon_s:
            return out
        out.append(t)


def simulate(cfg: DeskConfig, service: ServiceModel, confidences: list[float] | None = None) -> list[Visit]:
    """One opening of the desk. ``confidences``: retrieval scores to draw from (e.g. measured on
    perturbed catalog photos); None means every work is recognised (confidence 1)."""
    if cfg.visitors_per_minute <= 0 or cfg.minutes <= 0:
        raise ValueError("visitors_per_minute and minutes must be positive")
    rng = random.Random(cfg.seed)
    arrivals = poisson_arrivals(cfg.visitors_per_minute / 60.0, cfg.minutes * 60.0, rng)
    visits = []
    for a in arrivals:
        q = max(1, int(round(cfg.question_tokens * math.exp(rng.gauss(0.0, cfg.question_spread)))))
        conf = rng.choice(confidences) if confidences else 1.0
        prompt = cfg.system_tokens + cfg.images * (cfg.M + IMAGE_DELIMITERS) + q
        v = Visit(a, q, prompt, conf)
        if q > cfg.max_question_tokens:
            v.fallback = "question"
        elif conf < cfg.min_confidence:
            v.fallback = "confidence"
        elif prompt + cfg.answer_tokens > cfg.context:
            v.fallback = "context"
        visits.append(v)
    local = [v for v in visits if v.fallback is None]
    for v in local:
        v.parts = service.split_ms(v.prompt_tokens, cfg.answer_tokens, cfg.images, cfg.prebaked)
    waits = lindley_waits([v.arrival_s for v in local], [v.service_ms / 1e3 for v in local])
    for v, w in zip(local, waits):
        v.wait_ms = w * 1e3
    for v in visits:
        if v.fallback is not None:
            v.parts = {"fallback": cfg.fallback_ms}
    return visits


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = q * (len(xs) - 1)
    lo, hi = math.floor(i), math.ceil(i)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def summarize(visits: list[Visit], cfg: DeskConfig) -> dict:
    """Mean, median and 95th-percentile latency; the split; utilisation; fallback rates; context use."""
    local = [v for v in visits if v.fallback is None]
    n = len(visits)
    busy_s = sum(v.service_ms for v in local) / 1e3
    out = {
        "visitors": n, "served_locally": len(local),
        "fallback_rate": (n - len(local)) / n if n else 0.0,
        "fallback_by_reason": {r: sum(v.fallback == r for v in visits) for r in ("confidence", "question", "context")},
        "utilisation": busy_s / (cfg.minutes * 60.0),
        "mean_prompt_tokens": sum(v.prompt_tokens for v in local) / len(local) if local else float("nan"),
    }
    for name, xs in [("total", [v.total_ms for v in visits]), ("local", [v.total_ms for v in local])]:
        out[f"{name}_mean_ms"] = sum(xs) / len(xs) if xs else float("nan")
        out[f"{name}_p50_ms"] = _quantile(xs, 0.5)
        out[f"{name}_p95_ms"] = _quantile(xs, 0.95)
    for part in ("wait",) + ("encode", "prefill", "decode"):
        xs = [v.wait_ms if part == "wait" else v.parts.get(part, 0.0) for v in local]
        out[f"{part}_mean_ms"] = sum(xs) / len(xs) if xs else float("nan")
    return out


def time_average_in_queue(arrivals_s: list[float], waits_s: list[float], horizon_s: float) -> float:
    """Mean number of people waiting over [0, horizon] (for Little's law L_q = λ·W_q)."""
    area = sum(max(0.0, min(a + w, horizon_s) - a) for a, w in zip(arrivals_s, waits_s))
    return area / horizon_s
