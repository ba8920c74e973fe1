"""Self-consistency (§7.2 item 3, museumtok.llm.consistency): readings, the vote, the chat option (N = 1 is
greedy; N > 1 answers with the majority reading, guard and audit intact), batched sampling, and the
chat evaluation's --self-consistency."""
from __future__ import annotations

import json
import random

import pytest
import torch

from museumtok.llm import guide as G
from museumtok.llm.audit import AuditLog, read_log
from museumtok.llm.backends import ChatBackend, make_backend
from museumtok.llm.chat import ChatSession
from museumtok.llm.consistency import answer_kind, reading, sample_answers, vote

CARD = G.Card("The Starry Night", "Vincent van Gogh", "1889", "Oil on canvas")
FACTS = {"colour": ("blue", "brown"), "brightness": "dark", "warmth": "cool", "light": "top",
         "layout": ("blue", "brown"), "light_margin": 0.1}


@pytest.mark.parametrize("kind", G.KINDS)
def test_every_phrasing_of_the_same_facts_gives_the_same_reading(kind):
    """The guide's answer templates say one fact in several ways: they must vote together, and a different
    fact must read differently."""
    texts = {G.answer(kind, FACTS, CARD, random.Random(s)) for s in range(12)}
    reads = {reading(kind, t, CARD) for t in texts}
    assert len(reads) == 1 and None not in reads
    other = dict(FACTS, colour=("red", "green"), brightness="bright", warmth="warm", light="left",
                 layout=("red", "green"))
    if kind not in G.CARD_KINDS + ("refuse",):
        assert reading(kind, G.answer(kind, other, CARD), CARD) not in reads
    if kind in G.CARD_KINDS:      # without a card the guide refuses: a different reading
        assert reading(kind, G.answer(kind, FACTS, None), CARD) == "can't tell" != next(iter(reads))


def test_the_vote_picks_the_majority_reading_not_the_majority_string():
    samples = ["Mostly red, and then green.",                    # red/green: 2 samples, both the same string
               "It is mostly blue, with some brown.",           # blue/brown: 3 samples, three different strings
               "Mostly red, and then green.",
               "The main colour is blue, followed by brown.",
               "Mostly blue, and then brown."]
    v = vote(samples, "colour")
    assert v.reading == ("blue", "brown") and v.index == 1 and v.counts == {"blue / brown": 3, "red / green": 2}
    assert G.score("colour", v.answer, FACTS, None)["colour_top2"] == 1.0
    # answers with no reading do not vote; a tie goes to the reading met first
    v = vote(["I like it.", "It is dark overall.", "Overall the picture is bright.", "Hmm."], "brightness")
    assert v.reading == "dark" and v.counts == {"dark": 1, "bright": 1}
    assert vote(["Hmm.", "Well."], "brightness").index == 0
    # an unknown kind votes on the normalised text
    assert vote(["Yes!", "no", "yes"], None).reading == "yes"


def test_the_vote_prefers_a_carrier_the_guard_accepts():
    samples = ["It was made by Rembrandt and Vincent van Gogh.", "The artist is Vincent van Gogh.",
               "It was made by Vincent van Gogh."]
    v = vote(samples, "artist", CARD, acceptable=lambda t: not G.ungrounded_mentions(t, CARD))
    assert v.reading == ("card", "Vincent van Gogh") and v.index == 1
    assert vote(samples, "artist", CARD).index == 0


def test_answer_kind_places_questions():
    import museumtok.llm.consistency as C

    for kind, sets in G.PHRASINGS.items():
        for q in sum(sets.values(), []):
            assert answer_kind(q) == kind, q
    saved = dict(C._PHRASING_KIND)
    C._PHRASING_KIND.clear()               # the rules alone, without the phrasing index
    try:
        for kind, sets in G.PHRASINGS.items():
            for q in sets["heldout"] + sets["vi_heldout"]:
                assert answer_kind(q) == kind, q
        assert answer_kind("What colour is the sky in it?") == "colour"
        assert answer_kind("Who is the sculptor?") == "artist"
        assert answer_kind("How much would it sell for?") == "refuse"
        assert answer_kind("Bonjour") is None
    finally:
        C._PHRASING_KIND.update(saved)


# ---- the chat option ------------------------------------------------------------------------------------
class ScriptedBackend(ChatBackend):
    """Greedy (T = 0): always the first answer; sampling: the script in turn."""

    name = "scripted"
    reads_image_tokens = True

    def __init__(self, script):
        super().__init__()
        self.script, self.calls, self.temperatures = list(script), 0, []

    def count_tokens(self, text):
        return len(text.split())

    def stream(self, messages, max_new_tokens=128, temperature=0.0):
        self.temperatures.append(temperature)
        text = self.script[0] if temperature <= 0 else self.script[self.calls % len(self.script)]
        self.calls += 1
        for i, w in enumerate(text.split(" ")):
            yield w if i == 0 else " " + w


class FakeTokens:
    def __init__(self):
        self.indices, self.K, self.tokenizer, self.levels = torch.tensor([[1, 2], [3, 4]]), 16, "lloyd-patch-k16", None
        self.boxes = torch.tensor([[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]])

    @property
    def M(self):
        return 4

    def flat(self):
        return self.indices.reshape(-1)

    def token_records(self):
        return [{"position": i, "token": int(k), "patch": self.boxes[i].tolist(), "level": "base"}
                for i, k in enumerate(self.flat().tolist())]


def session(backend, tmp_path=None, **kw):
    audit = AuditLog(tmp_path / "audit.jsonl") if tmp_path is not None else None
    s = ChatSession(backend, audit=audit, **kw)
    s.set_image(None, None, image_id="img", card=CARD.text(), tokens=FakeTokens(), warm=False)
    return s


def test_one_sample_is_the_greedy_answer():
    q = "What colours dominate this painting?"
    for make in (lambda: make_backend("echo"), lambda: ScriptedBackend(["Mostly red.", "Mostly blue."])):
        a, b = session(make()), session(make())
        greedy = list(a.ask(q))
        one = list(b.ask(q, samples=1))
        assert greedy == one and a.last.answer == b.last.answer and b.last.vote is None
    assert ChatSession(make_backend("echo"), self_consistency=1).self_consistency == 1
    with pytest.raises(ValueError):
        ChatSession(make_backend("echo"), self_consistency=0)


def test_the_chat_answers_with_the_majority_and_audits_the_vote(tmp_path):
    script = ["Mostly red, and then green.", "It is mostly blue, with some brown.", "Mostly blue, and then brown.",
              "The main colour is blue, followed by brown.", "Mostly red, and then green."]
    b = ScriptedBackend(script)
    s = session(b, tmp_path, self_consistency=5, sc_temperature=0.8)
    out = list(s.ask("Which hues fill most of the canvas?"))
    assert out[-1] == "It is mostly blue, with some brown." == s.last.answer       # greedy would say red
    assert b.calls == 5 and set(b.temperatures) == {0.8}
    assert s.last.vote["kind"] == "colour" and s.last.vote["counts"]["blue / brown"] == 3
    assert s.history[-1] == {"role": "assistant", "content": s.last.answer}
    turns = [r for r in read_log(tmp_path / "audit.jsonl") if r["type"] == "turn"]
    assert turns[-1]["answer"] == s.last.answer and turns[-1]["self_consistency"]["samples"] == script
    # ask(samples=1) on the same session goes back to greedy streaming
    b.calls = 0
    list(s.ask("Which hues fill most of the canvas?", samples=1))
    assert b.calls == 1 and s.last.answer == script[0] and s.last.vote is None


def test_the_guard_still_checks_the_voted_answer():
    """Every sample names a painter the card does not hold: the guard cuts it and answers from the card."""
    b = ScriptedBackend(["It was made by Rembrandt."] * 3)
    s = session(b, self_consistency=3)
    list(s.ask("Who is the painter of this picture?"))
    assert s.last.cut == ["Rembrandt"] and "Vincent van Gogh" in s.last.answer and "Rembrandt" not in s.last.answer


# ---- batched sampling ------------------------------------------------------------------------------------
def test_generate_many_samples_reproducibly_and_stays_greedy_at_zero():
    from museumtok.llm.backends import TransformersBackend
    from museumtok.llm.sft import tiny_llama

    model, hf_tok = tiny_llama()
    b = TransformersBackend(model, hf_tok, name="tiny")
    ids = hf_tok.encode("Visitor: What is the dominant colour of this detail?\nGuide:")
    greedy = b.generate_many([ids] * 3, max_new_tokens=6)
    assert len(set(greedy)) == 1 and b.generate_many([ids] * 3, max_new_tokens=6, temperature=0.0, seed=5) == greedy
    s1 = b.generate_many([ids] * 6, max_new_tokens=6, temperature=2.0, seed=1)
    assert s1 == b.generate_many([ids] * 6, max_new_tokens=6, temperature=2.0, seed=1)     # reproducible
    assert len(set(s1)) > 1                                                                  # a repeated prompt varies
    b.encode_messages = lambda messages: ids                       # the tiny tokenizer has no chat template
    assert sample_answers(b, [{"role": "user", "content": "?"}], 6, 2.0, 6, seed=1) == s1


# ---- the chat evaluation ---------------------------------------------------------------------------------
def test_eval_chat_records_self_consistency(tmp_path):
    from museumtok.eval.chat import label, markdown, run_chat_eval, write_chat_eval
    from museumtok.llm.backends import EchoBackend

    try:
        res = run_chat_eval("lloyd-patch-k256", 64, EchoBackend(), adapter=None, limit=1, progress=False,
                            conditions=("real",), self_consistency=3, temperature=0.5)
    except FileNotFoundError as e:      # no images on this machine
        pytest.skip(str(e))
    c = res["config"]
    assert c["self_consistency"] == 3 and c["temperature"] == 0.5
    assert label(res).endswith("-sc3-t0.5-limit1") and "majority of 3 samples at T = 0.5" in markdown(res)
    assert all(len(a["vote"]["samples"]) == 3 and a["raw"] in a["vote"]["samples"] for a in res["answers"])
    greedy = dict(res, config=dict(c, self_consistency=1, temperature=0.0))
    assert "-sc" not in label(greedy) and "samples" not in markdown(greedy)
    p = write_chat_eval(res, tmp_path)[0]
    assert p.name == label(res) + ".json" and p.with_name(label(res) + ".md").exists()   # "t0.5" kept whole
    assert json.loads(p.read_text())["config"]["self_consistency"] == 3


def test_compare_runs_pairs_answers_by_question():
    from museumtok.eval.chat import compare_runs

    items = [{"image": i, "kind": "colour", "question": "q", "lang": "en"} for i in range(4)]

    def run(scores, condition="real"):
        return {"items": items, "answers": [{"item": i, "condition": condition, "scores": {"colour_top1": s}}
                                            for i, s in enumerate(scores)]}

    a, b = run([1, 0, 0, 1]), run([1, 1, 0, 0])
    (row,) = compare_runs(a, b)
    assert row["question"] == "colour (top-1)" and row["n"] == 4
    assert row["a"] == row["b"] == 0.5 and row["diff"] == 0.0 and (row["higher"], row["lower"]) == (1, 1)
    # paired SE: differences (0, +1, 0, −1), sd = sqrt(2/3), se = sd / 2
    assert abs(row["se_diff"] - (2 / 3) ** 0.5 / 2) < 1e-12
    assert compare_runs(a, run([1, 1, 1, 1], condition="shuffled")) == []       # other condition: nothing paired
    with pytest.raises(ValueError, match="different questions"):
        compare_runs(a, {**b, "items": items[:3]})
