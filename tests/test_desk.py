"""The §11 desk simulation: the queue against queueing theory, fallbacks, the latency split."""
import random

import pytest

from museumtok.desk import (
    DeskConfig, ServiceModel, gpu_estimate, lindley_waits, memory_bound_decode_ms, poisson_arrivals, simulate,
    summarize, time_average_in_queue,
)
from museumtok.llm.cost import LLAMA3_70B, SMOLLM2_135M, prefill_flops


def _mean(xs):
    return sum(xs) / len(xs)


def test_lindley_by_hand():
    # arrivals 0, 1, 2; services 3, 3, 3 -> waits 0, 2, 4
    assert lindley_waits([0, 1, 2], [3, 3, 3]) == [0, 2, 4]
    assert lindley_waits([0, 5], [1, 1]) == [0, 0]


def test_queue_matches_mm1_and_md1():
    rng = random.Random(0)
    lam, mu, n = 0.5, 1.0, 200_000
    arrivals = poisson_arrivals(lam, n / lam, rng)
    rho = lam / mu
    mm1 = lindley_waits(arrivals, [rng.expovariate(mu) for _ in arrivals])
    assert _mean(mm1) == pytest.approx(rho / (mu - lam), rel=0.06)                # W_q of M/M/1 = 1.0
    md1 = lindley_waits(arrivals, [1 / mu] * len(arrivals))
    assert _mean(md1) == pytest.approx(rho / (2 * mu * (1 - rho)), rel=0.06)      # Pollaczek–Khinchine: 0.5
    horizon = arrivals[-1]
    assert time_average_in_queue(arrivals, md1, horizon) == pytest.approx(lam * _mean(md1), rel=0.06)  # Little


def _service(**kw):
    return ServiceModel("toy", SMOLLM2_135M, prefill_throughput=1e11, decode_ms_per_token=10.0,
                        encode_ms_per_image=20.0, **kw)


def test_split_and_fallbacks():
    s = _service()
    parts = s.split_ms(600, 50, images=2, prebaked=False)
    assert parts["encode"] == 40.0 and parts["decode"] == 500.0
    assert parts["prefill"] == pytest.approx(prefill_flops(SMOLLM2_135M, 600) / 1e11 * 1e3)
    assert s.split_ms(600, 50, 2, prebaked=True)["encode"] == 0.0

    cfg = DeskConfig(visitors_per_minute=30, minutes=30, min_confidence=0.6, max_question_tokens=60,
                     question_tokens=40, question_spread=0.8, seed=1)
    visits = simulate(cfg, s, confidences=[0.3, 0.9])
    reasons = {v.fallback for v in visits}
    assert {"confidence", "question"} <= reasons
    for v in visits:
        if v.fallback == "question":
            assert v.question_tokens > 60
        if v.fallback is None:
            assert v.confidence >= 0.6 and v.question_tokens <= 60 and set(v.parts) == {"encode", "prefill", "decode"}
        else:
            assert v.parts == {"fallback": cfg.fallback_ms} and v.wait_ms == 0
    summ = summarize(visits, cfg)
    assert summ["fallback_rate"] == pytest.approx(sum(v.fallback is not None for v in visits) / len(visits))
    local = [v for v in visits if v.fallback is None]
    assert summ["local_mean_ms"] == pytest.approx(_mean([v.total_ms for v in local]))
    assert summ["utilisation"] == pytest.approx(sum(v.service_ms for v in local) / 1e3 / (30 * 60))


def test_context_overflow_goes_to_fallback():
    cfg = DeskConfig(images=10, M=1024, context=4096)
    visits = simulate(cfg, _service())
    assert visits and all(v.fallback == "context" for v in visits)


def test_more_visitors_wait_longer():
    s = _service()
    slow = summarize(simulate(DeskConfig(visitors_per_minute=2, minutes=120), s), DeskConfig(visitors_per_minute=2, minutes=120))
    busy = summarize(simulate(DeskConfig(visitors_per_minute=60, minutes=120), s), DeskConfig(visitors_per_minute=60, minutes=120))
    assert busy["wait_mean_ms"] > slow["wait_mean_ms"]


def test_gpu_estimate_from_datasheet():
    g = gpu_estimate()
    params = LLAMA3_70B.non_embedding_params + 2 * LLAMA3_70B.vocab * LLAMA3_70B.d
    assert 69e9 < params < 72e9
    assert g.decode_ms_per_token == pytest.approx(params * 0.5 / 2.039e12 * 1e3)
    assert memory_bound_decode_ms(1e9, 2, 1e12) == 2.0
    assert not g.measured
    with pytest.raises(ValueError, match="do not fit"):
        gpu_estimate(bytes_per_param=2.0)        # 70B in bf16 needs ~141 GB


def test_bad_config():
    with pytest.raises(ValueError):
        simulate(DeskConfig(visitors_per_minute=0), _service())
