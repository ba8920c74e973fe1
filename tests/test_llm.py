"""LLM integration (§6, §8): vocabulary, budget, backends, KV cache, audit log, cost model.

Everything runs on tiny random Llama models and a word-level tokenizer built here, except
``test_embedded_smollm2`` (the one test that loads the real SmolLM2; it runs in CI and wherever the
safetensors cache exists, and converts the GGUF once if it must).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from museumtok.llm import audit as audit_mod
from museumtok.llm.audit import AuditLog, read_log, resolve_citations
from museumtok.llm.backends import BackendError, EchoBackend, HTTPBackend, TransformersBackend, make_backend
from museumtok.llm.budget import plan_budget
from museumtok.llm.chat import ChatSession
from museumtok.llm.cost import (LLAMA3_70B, TransformerShape, flop_counter_total, layer_flops, prefill_flops,
                                review_attention_flops, review_example)
from museumtok.llm.prompt import interleave, prefix_messages, soft_prefix_embeds
from museumtok.llm.serve import LoopbackServer
from museumtok.llm.vocab import IMAGE_END, IMAGE_START, ImageVocab, VocabError

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["hello", "what", "colour", "is", "the", "painting", "?", "blue", "red", "it", "a", "vase", "who",
         "painted", "this", "system", "user", "assistant", ":"]


# ---- tiny model and tokenizer --------------------------------------------------------------------
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>"] + WORDS)}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", eos_token="<eos>")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} <eos> {% endfor %}"
                         "{% if add_generation_prompt %}assistant : {% endif %}")
    return tok


def tiny_llama(vocab_size=64, layers=2, attn="eager", seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=512,
                      tie_word_embeddings=True)
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


class FakeTokens:
    """The parts of a TokenizedImage that the vocab, audit and citations use."""

    def __init__(self, indices, K, tokenizer="lloyd-patch-k16"):
        self.indices, self.K, self.tokenizer = indices, K, tokenizer
        h, w = indices.shape
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        self.boxes = torch.stack([xs * 8, ys * 8, xs * 8 + 8, ys * 8 + 8], -1).reshape(-1, 4)
        self.levels = None

    @property
    def M(self):
        return self.indices.numel()

    def flat(self):
        return self.indices.reshape(-1)

    def token_records(self):
        return [{"position": i, "token": int(k), "patch": [int(v) for v in self.boxes[i]], "level": "base"}
                for i, k in enumerate(self.flat().tolist())]


# ---- vocabulary -------------------------------------------------------------------------------------
def test_vocab_text_round_trip_and_namespaces(rng):
    idx = torch.randint(0, 1024, (16, 16), generator=rng)
    v = ImageVocab.for_tokenizer("lloyd-patch-k1024", 1024)
    text = v.to_text(idx)
    assert text.startswith(IMAGE_START) and text.endswith(IMAGE_END)
    assert torch.equal(v.from_text(text), idx.reshape(-1))
    assert torch.equal(v.from_text(f"Q: {text} what?"), idx.reshape(-1))
    other = ImageVocab.for_tokenizer("lloyd-patch-k256", 256)
    with pytest.raises(VocabError, match="namespace"):
        other.from_text(text)
    with pytest.raises(VocabError, match="outside the codebook"):
        v.token(1024)
    bare = ImageVocab(K=1024)
    assert bare.token(312) == "<v312>" and bare.parse_token("<v312>") == 312


def test_vocab_attach_ids_round_trip_and_mean_init(rng):
    tok, model = tiny_tokenizer(), tiny_llama(vocab_size=len(WORDS) + 2)
    old = model.get_input_embeddings().weight.detach().clone()
    v = ImageVocab.for_tokenizer("lloyd-patch-k16", 16).attach(model, tok)
    assert len(tok) == old.shape[0] + 16 + 2
    W = model.get_input_embeddings().weight
    assert W.shape[0] == len(tok)
    torch.testing.assert_close(W[v.token_offset:v.token_offset + 16], old.mean(0).expand(16, -1))
    torch.testing.assert_close(W[: old.shape[0]], old)                 # old rows untouched
    assert model.get_output_embeddings().weight.data_ptr() == W.data_ptr()   # still tied
    idx = torch.randint(0, 16, (4, 4), generator=rng)
    ids = v.to_ids(idx)
    assert tok(v.to_text(idx), add_special_tokens=False)["input_ids"] == ids.tolist()   # one LLM token each
    assert torch.equal(v.from_ids(ids), idx.reshape(-1))
    assert torch.equal(v.from_text(tok.decode(ids)), idx.reshape(-1))
    with pytest.raises(VocabError, match="not image tokens"):
        v.from_ids(torch.tensor([3]))
    # a second tokenizer's vocabulary gets its own rows; attaching again is idempotent
    v2 = ImageVocab.for_tokenizer("other-k8", 8).attach(model, tok)
    assert v2.token_offset >= v.token_offset + 16
    n = len(tok)
    ImageVocab.for_tokenizer("lloyd-patch-k16", 16).attach(model, tok)
    assert len(tok) == n


def test_vocab_codebook_init_separates_codewords():
    tok, model = tiny_tokenizer(), tiny_llama(vocab_size=len(WORDS) + 2)
    codebook = torch.randn(16, 192, generator=torch.Generator().manual_seed(1))
    v = ImageVocab.for_tokenizer("lloyd-patch-k16", 16).attach(model, tok, init="codebook", codebook=codebook)
    rows = model.get_input_embeddings().weight[v.token_offset:v.token_offset + 16].detach()
    # the rows are an affine image of the codebook: their Gram matrices agree up to scale
    C = codebook - codebook.mean(0)
    R = rows - rows.mean(0)
    assert torch.corrcoef(torch.stack([(C @ C.T).flatten(), (R @ R.T).flatten()]))[0, 1] > 0.9


# ---- budget policy -------------------------------------------------------------------------------------
def test_budget_drops_oldest_turns_then_lowers_M_never_cuts_question():
    kw = dict(M_options=(64, 256, 1024), system_tokens=50, reserve_answer=100)
    ok = plan_budget(2048, 20, [100, 100], M=256, **kw)
    assert ok.fits and ok.kept_turns == 2 and ok.M == 256 and not ok.notices
    p = plan_budget(600, 20, [200, 150, 100], M=256, **kw)       # 50+258+20+100 = 428, +100 fits, +150 not
    assert p.fits and p.M == 256 and p.kept_turns == 1 and p.dropped_turns == 2
    assert "oldest" in p.notices[0] and p.used <= 600
    p = plan_budget(450, 20, [200, 150], M=1024, **kw)           # no history left; M 1024 -> 256 (428 tokens)
    assert p.fits and p.kept_turns == 0 and p.M == 256
    assert any("M=256" in n for n in p.notices)
    p = plan_budget(250, 20, [], M=1024, **kw)                   # 50+66+20+100 = 236
    assert p.fits and p.M == 64
    p = plan_budget(200, 500, [30], M=256, **kw)                  # the question alone overflows
    assert not p.fits and "shorter question" in p.notices[-1]
    assert p.M == 64 and p.kept_turns == 0                        # tried everything else first


# ---- HTTP backend against a loopback server ----------------------------------------------------------------
def test_http_backend_streams_through_loopback_server():
    fake = EchoBackend()
    msgs = [{"role": "system", "content": "guide <image><v1><v2></image>"},
            {"role": "user", "content": "who painted this ?"}]
    with LoopbackServer(fake) as srv:
        http = HTTPBackend(srv.url, model="echo")
        pieces = list(http.stream(msgs, max_new_tokens=50))
        assert len(pieces) > 1                                  # streamed, not one blob
        assert "".join(pieces) == fake.generate(msgs, max_new_tokens=50)
        assert http.last_stats["new_tokens"] == len(pieces) and http.last_stats["usage_from_server"]
        assert http.complete(msgs) == fake.generate(msgs)
        with pytest.raises(BackendError, match="HTTP 400: bad request: messages must be a list"):
            HTTPBackend(srv.url).complete("not a list")
    with pytest.raises(BackendError, match="cannot reach"):
        list(HTTPBackend(srv.url, timeout_s=2, max_retries=0).stream(msgs))


def test_make_backend_specs(monkeypatch):
    monkeypatch.setenv("MUSEUMTOK_LLM", "echo")
    assert isinstance(make_backend(), EchoBackend)
    b = make_backend("http://127.0.0.1:9/v1#smol")
    assert isinstance(b, HTTPBackend) and b.model == "smol"
    with pytest.raises(BackendError, match="unknown LLM backend"):
        make_backend("gpt-7")


# ---- transformers backend: streaming and KV-cache reuse (tiny model) ---------------------------------------
def cached_and_fresh():
    """Two backends on one tiny model, with and without KV-cache reuse, and a 16-code image vocabulary."""
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    cached = TransformersBackend(model, tok, reuse_cache=True)
    fresh = TransformersBackend(model, tok, reuse_cache=False)
    v = ImageVocab.for_tokenizer("lloyd-patch-k16", 16)
    cached.attach_vocab(v)
    fresh.attach_vocab(v)         # same model and tokenizer: attaching again is a no-op
    return cached, fresh, v


def test_kv_cache_reuse_gives_the_same_answer():
    cached, fresh, v = cached_and_fresh()
    img = v.to_text(torch.arange(16) % 16)
    turn1 = prefix_messages(img, "what colour is the painting ?", persona="system")
    a1 = cached.generate(turn1, max_new_tokens=6)
    assert cached.last_stats["reused_tokens"] == 0
    turn2 = prefix_messages(img, "who painted this ?", [{"role": "user", "content": turn1[-1]["content"]},
                                                         {"role": "assistant", "content": a1}], persona="system")
    a2 = cached.generate(turn2, max_new_tokens=6)
    s = cached.last_stats
    assert s["reused_tokens"] >= 16 + 2 and s["prefilled_tokens"] < s["prompt_tokens"]
    assert a2 == fresh.generate(turn2, max_new_tokens=6)
    assert fresh.last_stats["reused_tokens"] == 0
    # image tokens are never generated (their rows are untrained)
    assert not v.find_tokens(a1 + a2)
    cached.reset()
    cached.generate(turn2, max_new_tokens=2)
    assert cached.last_stats["reused_tokens"] == 0


def test_each_visitor_keeps_a_prefix_when_another_asks_in_between():
    cached, fresh, v = cached_and_fresh()
    img_a, img_b = v.to_text(torch.arange(16) % 16), v.to_text(torch.arange(16).flip(0) % 16)
    a1 = prefix_messages(img_a, "what colour is the painting ?", persona="system")
    ans_a1 = cached.generate(a1, max_new_tokens=6)
    cached.generate(prefix_messages(img_b, "who painted this ?", persona="system"), max_new_tokens=6)   # visitor B
    a2 = prefix_messages(img_a, "who painted this ?", [{"role": "user", "content": a1[-1]["content"]},
                                                       {"role": "assistant", "content": ans_a1}], persona="system")
    ans_a2 = cached.generate(a2, max_new_tokens=6)
    assert cached.last_stats["reused_tokens"] >= 16 + 2             # A's image and first turn were still kept
    assert ans_a2 == fresh.generate(a2, max_new_tokens=6)
    cached.cache_slots = 1                                           # one slot: B's turn pushes A's prefix out
    cached.reset()
    cached.generate(a1, max_new_tokens=6)
    cached.generate(prefix_messages(img_b, "who painted this ?", persona="system"), max_new_tokens=6)
    cached.generate(a2, max_new_tokens=6)
    assert cached.last_stats["reused_tokens"] < 16


def test_concurrent_streams_take_turns_and_give_the_same_answers():
    """Two visitors at once: the second answer starts before the first one ends (tokens interleave in
    arrival order) and both answers are what each visitor gets alone."""
    import threading

    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    backend = TransformersBackend(model, tok, reuse_cache=True)
    v = ImageVocab.for_tokenizer("lloyd-patch-k16", 16)
    backend.attach_vocab(v)
    img = v.to_text(torch.arange(16) % 16)
    questions = ["what colour is the painting ?", "who painted this ?"]
    alone = []
    for q in questions:
        alone.append(backend.generate(prefix_messages(img, q, persona="system"), max_new_tokens=12))
        backend.reset()
    events, answers, stats = [], {}, {}
    first_started = threading.Event()

    def visitor(i):
        pieces = []
        for piece in backend.stream(prefix_messages(img, questions[i], persona="system"), max_new_tokens=12):
            events.append(i)
            pieces.append(piece)
            if i == 0:
                first_started.set()
        answers[i], stats[i] = "".join(pieces), backend.last_stats

    t0 = threading.Thread(target=visitor, args=(0,))
    t0.start()
    first_started.wait(10)
    t1 = threading.Thread(target=visitor, args=(1,))
    t1.start()
    t0.join(30)
    t1.join(30)
    assert [answers[0], answers[1]] == alone
    for i in (0, 1):                       # each thread reads the stats of its own answer
        assert stats[i]["prompt_tokens"] == len(backend.encode_messages(prefix_messages(img, questions[i],
                                                                                        persona="system")))
    assert len(alone[0]) > 0 and events.count(0) > 2
    assert events.index(1) < len(events) - 1 - events[::-1].index(0)                        # 1 began before 0 ended


def test_soft_prefix_equals_token_prefix():
    model = tiny_llama(vocab_size=40)
    pre, mid, suf = torch.tensor([1, 2, 3]), torch.tensor([7, 8, 9, 10]), torch.tensor([4, 5])
    soft = model.get_input_embeddings()(mid).detach()           # (M, d): soft tokens that equal real ones
    emb = soft_prefix_embeds(model, pre, soft, suf)
    with torch.no_grad():
        a = model(inputs_embeds=emb).logits
        b = model(input_ids=torch.cat([pre, mid, suf])[None]).logits
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="projector"):
        soft_prefix_embeds(model, pre, torch.zeros(4, 7), suf)
    proj = torch.nn.Linear(7, 64)
    assert soft_prefix_embeds(model, pre, torch.zeros(4, 7), suf, proj).shape == (1, 9, 64)


def test_interleaved_pointers():
    imgs = {"a": "<image><v1></image>", "b": "<image><v2></image>"}
    assert interleave("compare <IMG:a> with <IMG:b>", imgs) == "compare <image><v1></image> with <image><v2></image>"
    with pytest.raises(KeyError, match="known: a, b"):
        interleave("<IMG:c>", imgs)


# ---- chat session --------------------------------------------------------------------------------------------
def test_chat_session_budget_audit_and_citations(tmp_path, rng):
    class Tok:  # a tokenizer stub that re-encodes at any supported M
        supported_M = (4, 16)

        def encode(self, image, M):
            side = int(M ** 0.5)
            return FakeTokens(torch.randint(0, 16, (side, side), generator=rng), 16)

    backend = EchoBackend(context_window=90)
    log = AuditLog(tmp_path / "a.jsonl")
    s = ChatSession(backend, audit=log, reserve_answer=20, persona="guide")
    s.set_image(Tok(), "img", M=16, image_id="room3_vase")
    answers = [list(s.ask(q))[-1] for q in ("what colour ?", "who painted it ?", "is it blue ?")]
    assert answers[0].startswith("I see 16 image tokens")
    assert s.last.plan.dropped_turns >= 1                       # the context of 90 forced drops
    long_q = "why " * 60
    out = list(s.ask(long_q))
    assert out[-1].startswith("⚠") and "shorter question" in out[-1]
    recs = list(read_log(tmp_path / "a.jsonl"))
    assert sum(r["type"] == "image_token" for r in recs) == 16
    turns = [r for r in recs if r["type"] == "turn"]
    assert len(turns) == 3 and all(r["prompt_hash"].startswith("sha256:") for r in turns)
    assert {"image_id", "tokenizer", "token", "patch", "level", "timestamp"} <= set(recs[0])


def test_citations_resolve_to_patch_boxes():
    t = FakeTokens(torch.tensor([[3, 5], [5, 7]]), 16)
    v = ImageVocab.for_tokenizer(t.tokenizer, 16)
    cites = resolve_citations(f"The blue is here [CITE:{v.token(5)}] and there [CITE:<v7>], not [CITE:<v99>].", t, v)
    assert [c["index"] for c in cites] == [5, 7, None]
    assert cites[0]["positions"] == [1, 2]
    assert cites[0]["boxes"] == [t.boxes[1].tolist(), t.boxes[2].tolist()]
    assert cites[1]["boxes"] == [t.boxes[3].tolist()]


# ---- audit log after kill -9 --------------------------------------------------------------------------------
WRITER = """
import sys, time
from museumtok.llm.audit import AuditLog
log = AuditLog(sys.argv[1])
i = 0
while True:
    log.append({"type": "turn", "i": i, "answer": "x" * (i % 5000)})
    i += 1
"""


def test_audit_log_survives_kill_9(tmp_path):
    path = tmp_path / "audit.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or path.stat().st_size < 200_000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]
    assert len(complete) > 10
    assert [json.loads(x)["i"] for x in complete] == list(range(len(complete)))
    # a torn record (what a kill in the middle of a write leaves) is moved aside on the next open
    with open(path, "ab") as f:
        f.write(b'{"type":"turn","i":999,"answ')
    log = AuditLog(path)
    log.append({"type": "turn", "i": "after"})
    log.close()
    recs = [json.loads(x) for x in path.read_bytes().splitlines()]    # every line is JSON
    assert recs[-2]["type"] == "repair" and recs[-2]["torn_text"].startswith('{"type":"turn","i":999')
    assert recs[-1]["i"] == "after"
    assert len(list(read_log(path))) == len(recs)


def test_prompt_hash_is_stable():
    m = [{"role": "user", "content": "é"}]
    assert audit_mod.prompt_hash(m) == audit_mod.prompt_hash([dict(m[0])]) != audit_mod.prompt_hash("é")


# ---- cost model ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 37, 128])
def test_cost_model_matches_flop_counter(n):
    model = tiny_llama(vocab_size=100, attn="eager")
    shape = TransformerShape.from_hf_config(model.config)
    counted = flop_counter_total(model, torch.randint(0, 100, (1, n)))
    assert counted["total"] == prefill_flops(shape, n, lm_head_tokens=n)
    lf = layer_flops(shape, n)
    assert counted["aten.bmm"] == shape.n_layers * (lf["scores"] + lf["values"])


def test_review_example_and_errata_agree():
    from museumtok.literature import eval_arithmetic, load_errata

    r = review_example()
    errata = {e.id: e for e in load_errata()}
    for key, row in [("attn_ms_all_layers", "s6-2-layers"), ("prefill_ms", "s6-2-total"),
                     ("prefill_ms_small", "s6-2-m64"), ("mlp_over_attention", "s6-2-mlp")]:
        e = errata[row]
        assert r[key] == pytest.approx(eval_arithmetic(e.check_expr)), row
        assert e.check().agrees, row
        assert f"{r[key]:.{len(e.check_value.partition('.')[2])}f}" == e.check_value, row
    # the review's 4·d·n² is the scores + values term with d_q = d
    lf = layer_flops(LLAMA3_70B, r["n"])
    assert lf["scores"] + lf["values"] == review_attention_flops(8192, r["n"])
    # "M=64 -> 13 ms": that is the attention-only figure, against a 52 ms total: a 75 % cut on mixed bases
    assert round(r["attn_ms_all_layers_small"]) == 13
    assert r["saving"] < 0.2 < 1 - 13 / 52


# ---- the real embedded model (one test; slow) ----------------------------------------------------------------------
def _embedded_wanted() -> bool:
    from museumtok.llm.backends import embedded_is_cached

    return os.environ.get("CI") == "true" or embedded_is_cached()


@pytest.mark.slow
@pytest.mark.skipif(not _embedded_wanted(), reason="SmolLM2 cache absent (runs in CI, or after `python -m museumtok.llm.backends.embedded`)")
def test_embedded_smollm2_chat_kv_cache_and_http(rng):
    from museumtok import registry

    backend = TransformersBackend.embedded()          # converts the GGUF once, then loads the safetensors cache
    tok = registry.load("lloyd-patch-k256")
    x = torch.rand(3, 64, 64, generator=rng)
    # guard and check off: this test is about the KV cache with image tokens in the prompt
    s = ChatSession(backend, max_new_tokens=12, reserve_answer=12, guard=False, check=False)
    s.set_image(tok, x, M=64, image_id="random", warm=False)
    a1 = list(s.ask("Describe the colours of this painting."))[-1]
    st1 = dict(s.last.stats)
    a2 = list(s.ask("Who might have painted it?"))[-1]
    st2 = dict(s.last.stats)
    assert a1 and a2 and st1["reused_tokens"] == 0
    assert st2["reused_tokens"] >= 64 + 2                             # system prompt + image kept
    # the same turn without the cache gives the same greedy answer
    backend.reset()
    assert backend.generate(s.last.messages, max_new_tokens=12) == a2
    # set_image pre-fills the cache (warm): the first question then runs only its own tokens, same answer
    s.set_image(tok, x, M=64, image_id="random")
    assert list(s.ask("Describe the colours of this painting."))[-1] == a1
    assert s.last.stats["reused_tokens"] >= 64 + 2 and s.last.stats["prefilled_tokens"] < 20
    # backend 1 behind the OpenAI-compatible loopback server, streamed
    with LoopbackServer(backend) as srv:
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        pieces = list(HTTPBackend(srv.url).stream(msgs, max_new_tokens=8))
    assert "".join(pieces) == backend.generate(msgs, max_new_tokens=8)


def test_hf_backend_by_local_path(tmp_path):
    """Backend 2's code path (``hf:<path>``) on a tiny saved model; on a GPU machine it picks CUDA + bf16."""
    tok, model = tiny_tokenizer(), tiny_llama(vocab_size=len(WORDS) + 2, attn="sdpa")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    b = make_backend(f"hf:{tmp_path}")
    assert isinstance(b, TransformersBackend) and b.name == str(tmp_path)
    assert b.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    msgs = [{"role": "user", "content": "what colour is the painting ?"}]
    assert b.generate(msgs, max_new_tokens=4) == "".join(b.stream(msgs, max_new_tokens=4))
    with pytest.raises(BackendError, match="cannot load"):
        make_backend(f"hf:{tmp_path / 'missing'}")


def test_hf_backend_device_map_and_quantised_loading(tmp_path, monkeypatch):
    """The GPU paths of ``hf:`` on CPU: ``device_map="auto"`` through accelerate for real (every layer lands on
    the CPU here, on the GPUs elsewhere), and the 4/8-bit request: refused in words without a GPU or
    bitsandbytes, and handed to transformers as a ``BitsAndBytesConfig`` when both are there."""
    import transformers

    tok, model = tiny_tokenizer(), tiny_llama(vocab_size=len(WORDS) + 2, attn="sdpa")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    msgs = [{"role": "user", "content": "what colour is the painting ?"}]
    ref = make_backend(f"hf:{tmp_path}").generate(msgs, max_new_tokens=4)
    b = TransformersBackend.from_pretrained(str(tmp_path), device_map="auto")   # accelerate places the layers
    if not torch.cuda.is_available():
        assert {p.device.type for p in b.model.parameters()} == {"cpu"} and b.device.type == "cpu"
        assert b.generate(msgs, max_new_tokens=4) == ref                        # the same model, the same answer
    else:
        assert b.device.type == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="4bit loading needs a CUDA GPU"):
            make_backend(f"hf:{tmp_path}#4bit")
    with pytest.raises(BackendError, match="unknown hf: option"):
        make_backend(f"hf:{tmp_path}#3bit")
    # a machine with a GPU and bitsandbytes: what reaches from_pretrained (the load itself runs on CPU here)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(transformers.utils, "is_bitsandbytes_available", lambda: True)
    seen = {}
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(path, **kw):
        seen.update(kw)
        return real(path)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    make_backend(f"hf:{tmp_path}#4bit")
    q = seen["quantization_config"]
    assert seen["device_map"] == "auto" and seen["dtype"] == torch.bfloat16
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_compute_dtype == torch.bfloat16
    seen.clear()
    make_backend(f"hf:{tmp_path}#8bit")
    assert seen["quantization_config"].load_in_8bit and seen["device_map"] == "auto"
    seen.clear()
    make_backend(f"hf:{tmp_path}")                                              # a GPU, no quantisation
    assert seen == {"dtype": torch.bfloat16, "device_map": "auto"}
    seen.clear()
    TransformersBackend.from_pretrained(str(tmp_path), device="cpu")            # one chosen device: no map
    assert seen == {"dtype": torch.float32}


def test_fit_throughput_recovers_a_linear_law():
    from museumtok.llm.cost import fit_throughput

    flops = [1e9, 2e9, 4e9, 8e9]
    times = [0.05 + f / 5e10 for f in flops]
    thr, overhead = fit_throughput(flops, times)
    assert thr == pytest.approx(5e10) and overhead == pytest.approx(50.0)


def test_cli_llm_ask_and_cost(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from museumtok.cli import main

    monkeypatch.setenv("MUSEUMTOK_LLM", "echo")
    img = tmp_path / "a.png"
    Image.new("RGB", (80, 80), (200, 30, 30)).save(img)
    assert main(["llm", "ask", str(img), "Which colour?", "-t", "lloyd-patch-k256", "-M", "64",
                 "--audit", str(tmp_path / "log.jsonl")]) == 0
    assert "I see 64 image tokens. You asked: Which colour?" in capsys.readouterr().out
    recs = list(read_log(tmp_path / "log.jsonl"))
    assert len(recs) == 64 + 2                                   # 64 tokens, the question on arrival, the turn
    assert [r["type"] for r in recs[-2:]] == ["question", "turn"] and recs[-2]["question"] == "Which colour?"
    assert main(["llm", "cost"]) == 0
    out = capsys.readouterr().out
    assert f"{review_example()['prefill_ms']:.4g}" in out


def test_kv_compaction_keeps_text_and_top_image_tokens():
    from museumtok.llm.kv import accumulated_attention, compact_cache, compaction_agreement, prefill_with_attention

    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), attn="sdpa")
    b = TransformersBackend(model, tok, repetition_penalty=1.0)
    v = ImageVocab.for_tokenizer("lloyd-patch-k16", 16)
    b.attach_vocab(v)
    msgs = prefix_messages(v.to_text(torch.arange(16)), "what colour is the painting ?", persona="system")
    full, res = compaction_agreement(b, msgs, v, keep_fractions=(1.0, 0.25), max_new_tokens=6)
    assert tok(b.generate(msgs, max_new_tokens=6), add_special_tokens=False)["input_ids"] == full  # same decoding
    assert all(r.exact and r.agreement == 1.0 for r in res if r.keep_fraction == 1.0)
    assert {r.kept_image_tokens for r in res if r.keep_fraction == 0.25} == {4}
    assert model.config._attn_implementation == "sdpa"                  # restored after the eager pass
    ids = b.encode_messages(msgs)
    cache, attn = prefill_with_attention(b, ids)
    assert len(attn) == 2 and attn[0].shape[-1] == len(ids)
    # each query's attention sums to 1, so the scores of all positions sum to layers × heads × n
    total = accumulated_attention(attn, torch.arange(len(ids))).sum()
    assert total == pytest.approx(2 * 4 * len(ids), rel=1e-4)
    keep = torch.tensor([0, 2, 5])
    small = compact_cache(model, cache, keep)
    assert small.get_seq_length() == 3
    torch.testing.assert_close(small.layers[1].keys, cache.layers[1].keys[:, :, keep])


def test_retrieval_finds_perturbed_catalog_works(data_available):
    import random

    from museumtok import registry
    from museumtok.data.catalog import load_catalog
    from museumtok.data.images import load_image
    from museumtok.llm.retrieval import PERTURBATIONS, CatalogIndex, perturb

    entries = load_catalog(collection="artworks")[:10]
    index = CatalogIndex.build(registry.load("lloyd-patch-k256"), 256, entries=entries, use_cache=False)
    rng = random.Random(0)
    hits = 0
    for e in entries[:5]:
        img = load_image(e.find()).image
        for kind in PERTURBATIONS:
            hits += index.query(perturb(img, kind, rng)).ranked[0][0] == e.id
    assert hits >= 0.9 * 5 * len(PERTURBATIONS)
    # a work left out of the index scores lower than the same work's own re-encoded copy
    img = load_image(entries[0].find()).image
    own = index.query(perturb(img, "jpeg", rng))
    other = index.query(perturb(img, "jpeg", rng), exclude=entries[0].id)
    assert own.score > other.score and own.entry is not None and own.card.startswith(f"Title: {entries[0].title};")
    assert index.query(img, threshold=1.01).entry is None


def test_resampler_soft_tokens_feed_the_llm():
    from museumtok.models.resampler import PerceiverResampler

    model = tiny_llama(vocab_size=40)
    resampler = PerceiverResampler(dim=32, num_latents=8, input_dim=48).eval()
    feats = torch.randn(1, 100, 48, generator=torch.Generator().manual_seed(0))     # (B, N, D_in)
    with torch.no_grad():
        soft = resampler.soft_tokens(feats, llm_width=64)                           # (1, 8, 64)
        emb = soft_prefix_embeds(model, torch.tensor([1, 2]), soft, torch.tensor([3]))
        out = model(inputs_embeds=emb)
    assert soft.shape == (1, 8, 64) and emb.shape == (1, 2 + 8 + 1, 64)
    assert torch.isfinite(out.logits).all()


def test_http_token_estimate_is_conservative_for_image_text():
    v = ImageVocab.for_tokenizer("lloyd-patch-k1024", 1024)
    text = v.to_text(torch.arange(64))
    http = HTTPBackend("http://127.0.0.1:9/v1")
    assert http.count_tokens(text) >= 6 * 64          # a server BPE splits each image word into pieces
    assert http.count_tokens("What colours dominate?") >= 4
