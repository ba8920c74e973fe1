"""The museum guide: question bank and answers (llm.guide), the guard (llm.guard), the version-2
adapter pieces (grid positions, 2-D position embedding, several adapters in one backend, batched
generation) and the chat evaluation (eval.chat), with tiny models."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from museumtok.llm import guide as G
from museumtok.llm.vocab import ImageVocab

pytest.importorskip("peft")

CARD = G.Card("The Starry Night", "Vincent van Gogh", "1889", "Oil on canvas")


def solid(rgb, h=16, w=16):
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, h, w).clone()


# ---- facts, answers and reading them back ------------------------------------------------------------
def test_visual_facts_of_a_made_image():
    x = solid(G.PALETTE["blue"])
    x[:, 8:] = solid(G.PALETTE["green"])[:, 8:]                  # bottom half green
    x[:, :, :3] = solid(G.PALETTE["white"])[:, :, :3]            # a white strip on the left
    f = G.visual_facts(x)
    assert set(f["colour"]) == {"blue", "green"} and f["layout"] == ("blue", "green")
    assert f["light"] == "left" and f["warmth"] == "cool"


@pytest.mark.parametrize("kind", G.KINDS)
@pytest.mark.parametrize("card", [CARD, None])
def test_every_answer_scores_as_right_on_its_own_facts(kind, card):
    """Round trip: the sentence the guide is trained to say is read back as correct by the scorer."""
    rng = random.Random(0)
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(3, 16, 16, generator=g) * torch.rand(3, 1, 1, generator=g)
        facts = G.visual_facts(x)
        for _ in range(3):
            a = G.answer(kind, facts, card, rng)
            sc = G.score(kind, a, facts, card)
            assert all(v == 1.0 for k, v in sc.items() if k != "describe_sentences"), (a, sc, facts)
            assert G.ungrounded_mentions(a, card) == [], a


def test_scoring_rejects_wrong_answers():
    f = {"colour": ("blue", "white"), "brightness": "dark", "warmth": "cool", "light": "top", "layout": ("blue", "grey")}
    assert G.score("colour", "It is mostly white, with some blue.", f, None) == {"colour_top1": 0.0, "colour_top2": 1.0}
    assert G.score("brightness", "The brightest part is at the top.", f, None)["brightness"] == 0.0
    assert G.score("light", "The light falls on the left side.", f, None)["light"] == 0.0
    assert G.score("light", "Phía trên sáng nhất.", f, None)["light"] == 1.0          # Vietnamese side words
    assert G.score("layout", "Above it is mostly grey; below it is mostly blue.", f, None)["layout"] == 0.0
    assert G.score("title", "This is Sunflowers.", f, CARD)["title"] == 0.0
    assert G.score("refuse", "It is worth a million dollars.", f, CARD)["refusal"] == 0.0
    assert G.score("describe", "This is The Starry Night.", f, CARD)["describe_form"] == 0.0   # one sentence


def test_card_round_trip_and_mentions():
    odd = G.Card("Fine Wind; Clear Morning", "Katsushika Hokusai", "c. 1830–1832",
                 "Polychrome woodblock print; ink and color on paper")
    assert G.Card.parse(odd.text()) == odd and G.Card.parse(None) is None and G.Card.parse("none (x)") is None
    assert G.mentions("It was made by katsushika hokusai.", odd.artist)
    assert G.mentions("It dates from c. 1830-1832.", odd.date)
    assert G.mentions("This is Starry Night.", CARD.title)               # a leading "The" may be dropped


def test_hallucinations_are_names_titles_and_dates_not_on_the_card():
    assert G.ungrounded_mentions("This is The Starry Night by Vincent van Gogh (1889).", CARD) == []
    assert G.ungrounded_mentions("Rembrandt painted it in 1642.", CARD) == ["Rembrandt", "1642"]
    assert G.ungrounded_mentions("It is by Van Gogh.", CARD) == []               # part of the card's name
    # a work not in the catalog: any name at all
    assert G.ungrounded_mentions("It reminds me of Frida and of Paris.", None) == ["Frida", "Paris"]
    assert G.ungrounded_mentions("I can't tell: this work is not in our catalog.", None) == []
    assert G.ungrounded_mentions("It is mostly blue, with some grey.", None) == []


def test_phrasings_kept_for_evaluation_are_never_trained_on():
    for kind, sets in G.PHRASINGS.items():
        trained = set(sets["train"]) | set(sets["vi_train"])
        held = set(sets["heldout"]) | set(sets["vi_heldout"])
        assert trained and held and not trained & held, kind
    rng = random.Random(0)
    asked = {q for _ in range(300) for q, _ in G.sample_dialogue(rng, None, CARD)}
    held_all = {q.lower().rstrip("?.") for s in G.PHRASINGS.values() for q in s["heldout"] + s["vi_heldout"]}
    assert not {q.lower().rstrip("?.") for q in asked} & held_all


# ---- the guard ----------------------------------------------------------------------------------------
def test_grounded_release_cuts_at_the_first_invented_name():
    from museumtok.llm.guard import GroundedRelease, fallback_answer

    g = GroundedRelease(CARD.text())
    shown = ""
    for piece in ["This ", "is ", "a ", "painting ", "by ", "Rembrandt ", "from ", "1642."]:
        shown = g.feed(piece)
        if g.cut:
            break
    assert "Rembrandt" not in shown and g.cut == ["Rembrandt"]
    assert g.final("Who painted this?") == "It was made by Vincent van Gogh." or "Vincent van Gogh" in g.final("Who painted this?")
    assert fallback_answer("How much is it worth?", None).startswith("I can't tell")
    assert "1889" in fallback_answer("When was it painted?", CARD)
    assert fallback_answer("Ai đã vẽ bức tranh này?", CARD).endswith("Vincent van Gogh.")


class _Blind:
    """A backend that was taught nothing: it says a painter's name, whatever it is asked."""

    from museumtok.llm.backends import ChatBackend as _B

    def __init__(self):
        self.seen = []
        self.name, self.context_window, self.adds_image_tokens = "blind", 4096, False
        self.reads_image_tokens, self.image_rows, self.last_stats = False, False, {}

    def count_tokens(self, text):
        return len(text.split())

    def reset(self):
        pass

    def warm(self, messages):
        return 0.0

    def stream(self, messages, max_new_tokens=128, temperature=0.0):
        self.seen.append(messages)
        yield from ["It ", "is ", "by ", "Rembrandt, ", "1642."]


class _Tok:
    name, K, supported_M = "fake-tok", 16, (4,)

    def encode(self, image, M):
        from museumtok.data.images import working_image
        from museumtok.tokenizers.base import TokenizedImage
        from PIL import Image

        w = working_image(Image.new("RGB", (8, 8)), 8)
        return TokenizedImage(torch.arange(4).view(2, 2), 16, "fake-tok", w, torch.zeros(4, 4, dtype=torch.long))


def test_guarded_session_withholds_tokens_says_so_and_answers_from_the_card(tmp_path):
    from museumtok.llm.audit import AuditLog, read_log
    from museumtok.llm.chat import ChatSession

    b = _Blind()
    s = ChatSession(b, audit=AuditLog(tmp_path / "a.jsonl"))
    s.set_image(_Tok(), None, 4, card=CARD.text(), tokens=_Tok().encode(None, 4))
    assert s.guarded
    out = list(s.ask("What colours dominate this painting?"))
    text = "\n".join(m["content"] for m in b.seen[-1])
    assert "<fake-tok:v" not in text and "Catalog card: Title: The Starry Night" in text   # tokens withheld
    assert out[-1].startswith("I can't read fake-tok image tokens yet")
    assert "Rembrandt" not in out[-1] and "Rembrandt" not in "".join(out)        # never shown, not even streamed
    assert s.last.cut == ["Rembrandt"]
    who = list(s.ask("Who painted this?"))[-1]
    assert who == "It was made by Vincent van Gogh." or who.endswith("Vincent van Gogh.")
    recs = list(read_log(tmp_path / "a.jsonl"))
    kinds = [r["type"] for r in recs if r["type"] != "image_token"]
    assert kinds == ["question", "turn", "question", "turn"]
    assert recs[-1]["guarded"] and recs[-1]["cut"] == ["Rembrandt"] and recs[-1]["completed"]


def test_a_visitor_leaving_mid_answer_leaves_the_question_and_a_cut_off_record(tmp_path):
    from museumtok.llm.audit import AuditLog, read_log
    from museumtok.llm.backends import EchoBackend
    from museumtok.llm.chat import ChatSession

    s = ChatSession(EchoBackend(), audit=AuditLog(tmp_path / "a.jsonl"), check=False)
    s.set_image(_Tok(), None, 4, tokens=_Tok().encode(None, 4))
    gen = s.ask("Which colour is this painting?")
    next(gen)
    gen.close()                                        # the visitor closed the page
    recs = [r for r in read_log(tmp_path / "a.jsonl") if r["type"] != "image_token"]
    assert recs[0]["type"] == "question" and recs[0]["question"] == "Which colour is this painting?"
    assert recs[1]["type"] == "turn" and recs[1]["completed"] is False and "cut off" in recs[1]["error"]


# ---- version-2 adapter pieces with a tiny Llama ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from museumtok.llm.sft import tiny_llama

    model, hf_tok = tiny_llama()
    return model.config, hf_tok


def _fresh(tiny, name="fake", K=16):
    from transformers import LlamaForCausalLM

    cfg, hf_tok = tiny
    torch.manual_seed(0)
    model = LlamaForCausalLM(copy.deepcopy(cfg)).eval()
    vocab = ImageVocab.for_tokenizer(name, K)
    vocab.attach(model, hf_tok)
    return model, vocab


def test_grid_positions_read_rows_from_row_ends_and_square_grids():
    from museumtok.llm.sft import grid_positions

    S, E, NL = 100, 101, 7
    tok = lambda k: 200 + k                                                  # noqa: E731
    ids = [5, S] + [tok(0), tok(1), tok(2), NL, tok(3), tok(4), tok(5), NL] + [E, 9]
    u, v, img = grid_positions(torch.tensor([ids]), S, E, 200, 216, NL)
    assert img[0].tolist() == [i in (2, 3, 4, 6, 7, 8) for i in range(len(ids))]
    assert u[0][img[0]].tolist() == [0, 0, 0, 1, 1, 1] and v[0][img[0]].tolist() == [0, .5, 1, 0, .5, 1]
    flat = [S] + [tok(k) for k in range(4)] + [E]                            # no row ends: a 2×2 grid
    u, v, img = grid_positions(torch.tensor([flat]), S, E, 200, 216, None)
    assert u[0][img[0]].tolist() == [0, 0, 1, 1] and v[0][img[0]].tolist() == [0, 1, 0, 1]


def test_position_embedding_makes_token_order_matter_and_survives_save_load(tiny, tmp_path):
    from museumtok.llm.sft import (AdapterConfig, add_adapter, image_ids, load_adapter, newline_id, save_adapter,
                                   word_init_positions)

    model, vocab = _fresh(tiny)
    hf_tok = tiny[1]
    nl = newline_id(hf_tok)
    cfg = AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake", version=2, pos2d=4, row_ends=True)
    pm, delta = add_adapter(model, vocab, cfg, row_end_id=nl)
    word_init_positions(pm, delta, hf_tok)
    assert delta.pos_row.abs().sum() > 0
    grid = torch.tensor([[1, 2], [3, 4]])
    a = torch.tensor([image_ids(vocab, grid, nl)])
    b = torch.tensor([image_ids(vocab, grid.flip(0), nl)])                  # same tokens, rows swapped
    emb = pm.get_input_embeddings()
    with torch.no_grad():
        ea, eb = emb(a)[0], emb(b)[0]
        base = torch.nn.functional.embedding(a, emb.weight)[0]
    assert not torch.allclose(ea[2], eb[4])          # token 1 at the top vs at the bottom: different vectors
    assert torch.allclose(ea[0], base[0])            # <image> has no position
    with torch.no_grad():
        ref = pm(input_ids=a).logits
    save_adapter(tmp_path, pm, delta, cfg)
    model2, vocab2 = _fresh(tiny)
    pm2, d2, _, cfg2 = load_adapter(tmp_path, model2, hf_tok, vocab2)
    assert cfg2.pos2d == 4 and cfg2.row_ends and cfg2.version == 2
    with torch.no_grad():
        assert torch.allclose(pm2(input_ids=a).logits, ref, atol=1e-5)


def test_guide_dialogue_labels_only_answers_and_fast_loss_agrees(tiny):
    from museumtok.llm.sft import answer_only_loss, collate, encode_guide_dialogue, image_ids, sft_loss
    from museumtok.llm.sft import AdapterConfig, add_adapter

    model, vocab = _fresh(tiny)
    hf_tok = tiny[1]
    turns = [("Is this picture bright or dark?", "Overall the picture is dark."), ("Title?", "This is The Starry Night.")]
    ids, lab = encode_guide_dialogue(image_ids(vocab, torch.arange(4).view(2, 2)), CARD.text(), turns, hf_tok)
    from museumtok.llm.sft import answer_ids

    eos = [hf_tok.eos_token_id]
    assert [i for i, l in zip(ids, lab) if l != -100] == sum((answer_ids(a, hf_tok) + eos for _, a in turns), [])
    none_ids, lab_none = encode_guide_dialogue([], None, turns[:1], hf_tok)
    card_none = hf_tok("Catalog card: " + G.NO_CARD, add_special_tokens=False)["input_ids"]
    assert none_ids[:len(card_none)] == card_none and sum(l != -100 for l in lab_none) > 0
    pm, _ = add_adapter(model, vocab, AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake"))
    batch = collate([(ids, lab), encode_guide_dialogue([], None, turns[:1], hf_tok)], hf_tok.pad_token_id)
    with torch.no_grad():
        assert float(answer_only_loss(pm, batch)) == pytest.approx(float(sft_loss(pm, batch)), rel=1e-4)


def _adapter(tiny, tmp_path, name, seed, version=2):
    from museumtok.llm.sft import AdapterConfig, add_adapter, newline_id, save_adapter

    model, vocab = _fresh(tiny, name)
    cfg = AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer=name, base="tiny", version=version, pos2d=2, row_ends=True)
    pm, delta = add_adapter(model, vocab, cfg, row_end_id=newline_id(tiny[1]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        delta.delta.copy_(torch.randn(delta.delta.shape, generator=g) * 0.3)
    d = tmp_path / name
    save_adapter(d, pm, delta, cfg)
    return pm.eval(), vocab, d


def test_one_backend_holds_two_adapters_and_switches_between_them(tiny, tmp_path):
    from museumtok.llm.backends import TransformersBackend
    from museumtok.llm.prompt import prefix_messages

    hf_tok = tiny[1]
    pm_a, va, da = _adapter(tiny, tmp_path, "tok-a", 1)
    pm_b, vb, db = _adapter(tiny, tmp_path, "tok-b", 2)
    base, _ = _fresh(tiny, "unused")
    b = TransformersBackend(base, hf_tok, name="tiny")

    def logits(vocab, ref_vocab=None):
        msgs = prefix_messages(vocab.to_text(torch.tensor([[1, 2], [3, 4]]), rows=True), "Bright or dark?",
                               card=CARD.text())
        ids = torch.tensor([b.encode_messages(msgs)])
        from transformers import DynamicCache
        with torch.no_grad():
            return ids, b._forward(ids, DynamicCache(config=b.model.config))[0]

    b.attach_vocab(ImageVocab.for_tokenizer("tok-a", 16), adapter=da)
    assert b.adapter_active and b.image_rows
    ids_a, la = logits(ImageVocab.for_tokenizer("tok-a", 16))
    b.attach_vocab(ImageVocab.for_tokenizer("tok-b", 16), adapter=db)
    assert b.adapter_active and len(b._adapters) == 2
    ids_b, lb = logits(ImageVocab.for_tokenizer("tok-b", 16))
    b.attach_vocab(ImageVocab.for_tokenizer("tok-a", 16), adapter=da)            # back to a: same answer as before
    assert torch.allclose(logits(ImageVocab.for_tokenizer("tok-a", 16))[1][:la.numel()], la, atol=1e-5)
    assert not torch.allclose(la[:100], lb[:100])
    b.attach_vocab(ImageVocab.for_tokenizer("tok-c", 16))                        # no adapter: guarded, text guide
    assert not b.adapter_active and not b.reads_image_tokens and b.text_guide


def test_generate_many_matches_streaming_greedy(tiny, tmp_path):
    from museumtok.llm.backends import TransformersBackend
    from museumtok.llm.prompt import prefix_messages

    hf_tok = tiny[1]
    _, _, da = _adapter(tiny, tmp_path, "tok-a", 3)
    base, _ = _fresh(tiny, "unused")
    b = TransformersBackend(base, hf_tok, name="tiny")
    b.attach_vocab(ImageVocab.for_tokenizer("tok-a", 16), adapter=da)
    vocab = ImageVocab.for_tokenizer("tok-a", 16)
    qs = ["Is this picture bright or dark?", "Title?", "What is the dominant colour of this detail?"]
    msgs = [prefix_messages(vocab.to_text(torch.tensor([[1, k], [3, 4]]), rows=True), q, card=CARD.text() if k else None)
            for k, q in enumerate(qs)]
    many = b.generate_many([b.encode_messages(m) for m in msgs], max_new_tokens=6, batch_size=3)
    one = [b.generate(m, max_new_tokens=6) for m in msgs]
    assert many == one


# ---- the chat evaluation ------------------------------------------------------------------------------
def test_eval_items_are_fixed_and_held_out():
    from museumtok.eval.chat import EvalImage, build_items
    from PIL import Image

    imgs = [EvalImage("a/x/whole", "artworks-test", Image.new("RGB", (8, 8)), entry=object()),
            EvalImage("kodak/k/whole", "kodak", Image.new("RGB", (8, 8)))]
    items = build_items(imgs)
    assert items == build_items(imgs)                                       # deterministic
    assert {i.kind for i in items if i.image == 1} == set(G.VISUAL_KINDS) | {"title", "artist", "refuse", "describe"}
    assert {i.lang for i in items} == {"en", "vi"}
    held = {q for s in G.PHRASINGS.values() for q in s["heldout"] + s["vi_heldout"]}
    assert all(i.question in held for i in items)


def test_eval_chat_end_to_end_with_the_echo_backend(tmp_path):
    """The whole path (images, retrieval, session prompts, answers, scores, files) on two images per source."""
    from museumtok.eval.chat import markdown, run_chat_eval, write_chat_eval
    from museumtok.llm.backends import EchoBackend

    try:
        res = run_chat_eval("lloyd-patch-k256", 64, EchoBackend(), adapter=None, limit=1, progress=False)
    except FileNotFoundError as e:      # no images on this machine
        pytest.skip(str(e))
    s = res["summary"]
    n_img = len(res["images"])
    assert n_img == 4 and s["scores"]["colour_top1"]["real"]["n"] == n_img
    assert set(s["scores"]["brightness"]) == {"real", "shuffled", "none"}
    # the echo fake repeats the question and counts tokens: it never refuses, names nothing
    assert s["scores"]["refusal"]["real"]["mean"] == 0.0 and s["hallucination"]["all"]["mean"] == 0.0
    none_answers = [a for a in res["answers"] if a["condition"] == "none"]
    assert all(a["raw"].startswith("I see 0 image tokens") for a in none_answers)
    md = markdown(res)
    assert "| colour (top-1) |" in md and "Hallucination rate" in md
    paths = write_chat_eval(res, tmp_path)
    assert all(p.exists() for p in paths)


def test_vqgan_tokens_are_the_vqvae_tokens_so_the_guide_reads_them_with_its_vocabulary():
    """vqgan-f8-k1024 fine-tuned only the decoder: encoder and codebook equal vqvae-f8-k1024's bit for bit,
    which is what lets the registry give it the VQ-VAE's LLM vocabulary and guide adapter."""
    import museumtok
    from museumtok import registry
    from museumtok.llm.chat import llm_vocab_for

    a, b = museumtok.load("vqvae-f8-k1024").model.state_dict(), museumtok.load("vqgan-f8-k1024").model.state_dict()
    shared = [k for k in a if not k.startswith("decoder.")]
    assert shared and all(torch.equal(a[k], b[k]) for k in shared)
    assert llm_vocab_for("vqgan-f8-k1024") == "vqvae-f8-k1024" == llm_vocab_for("vqvae-f8-k1024")
    assert registry.get("vqgan-f8-k1024").llm_adapter == registry.get("vqvae-f8-k1024").llm_adapter
