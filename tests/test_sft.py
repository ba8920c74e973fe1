"""LoRA SFT on image tokens (museumtok.llm.sft_data, museumtok.llm.sft) with a tiny random Llama."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from museumtok.llm import sft_data as D
from museumtok.llm.vocab import ImageVocab

pytest.importorskip("peft")


def solid(rgb, h=16, w=16):
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, h, w).clone()


# ---- pixel facts against hand-made images ------------------------------------------------------
@pytest.mark.parametrize("name", list(D.PALETTE))
def test_dominant_colour_of_a_solid_palette_image(name):
    assert D.dominant_colour(solid(D.PALETTE[name])) == name


def test_dominant_colour_is_the_majority_not_the_mean():
    x = solid(D.PALETTE["blue"])
    x[:, :5] = solid(D.PALETTE["yellow"])[:, :5]          # 5 of 16 rows yellow: blue still dominates
    assert D.dominant_colour(x) == "blue"
    x[:, :11] = solid(D.PALETTE["yellow"])[:, :11]        # 11 of 16: yellow dominates
    assert D.dominant_colour(x) == "yellow"


def test_brightness_and_warmth():
    assert D.brightness(solid((0.9, 0.9, 0.9))) == "bright"
    assert D.brightness(solid((0.1, 0.1, 0.1))) == "dark"
    assert D.warmth(solid((0.8, 0.4, 0.1))) == "warm"
    assert D.warmth(solid((0.1, 0.4, 0.8))) == "cool"


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_brightest_side(side):
    x = torch.zeros(3, 16, 16)
    sl = {"left": (slice(None), slice(0, 4)), "right": (slice(None), slice(12, 16)),
          "top": (slice(0, 4), slice(None)), "bottom": (slice(12, 16), slice(None))}[side]
    x[:, sl[0], sl[1]] = 1.0
    assert D.brightest_side(x) == side


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        D.dominant_colour(torch.zeros(1, 3, 8, 8))


class _Entry:
    def __init__(self, i):
        self.id, self.title, self.artist = f"a{i}", f"Title {i}", f"Artist {i}"


class _FakeTok:
    """A frozen 'tokenizer': index = quantised mean brightness of 4×4 blocks (enough for the plumbing)."""
    K = 16

    def encode_tensor(self, x, M):
        B = x.shape[0]
        y = torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), x.shape[-1] // int(M ** 0.5))
        return (y.clamp(0, 0.999) * self.K).long().reshape(B, -1)


def test_build_examples_answers_match_their_pixels():
    crops = [(_Entry(0), solid(D.PALETTE["red"])), (_Entry(1), solid((0.95, 0.95, 0.95)))]
    ex = D.build_examples(crops, _FakeTok(), M=4)
    got = {(e.image_id, e.kind): e.answer for e in ex}
    assert got[("a0", "colour")] == "red" and got[("a0", "brightness")] == "dark" and got[("a0", "warmth")] == "warm"
    assert got[("a1", "colour")] == "white" and got[("a1", "brightness")] == "bright"
    assert got[("a1", "title")] == "Title 1" and got[("a0", "artist")] == "Artist 0"
    for e in ex:
        assert e.indices.shape == (4,)
        if e.kind in D.CANDIDATES:
            assert e.answer in D.CANDIDATES[e.kind]
    assert D.format_prompt("<image></image>", "Q?") == "<image></image>\nVisitor: Q?\nGuide:"


# ---- tiny model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from museumtok.llm.sft import tiny_llama

    model, hf_tok = tiny_llama()
    return model.config, hf_tok


def _fresh(tiny):
    from transformers import LlamaForCausalLM

    cfg, hf_tok = tiny
    torch.manual_seed(0)
    model = LlamaForCausalLM(copy.deepcopy(cfg)).eval()   # resizing edits the config: keep the fixture's intact
    vocab = ImageVocab.for_tokenizer("fake", 16)
    vocab.attach(model, hf_tok)
    return model, vocab


def _examples(n=8, seed=0):
    rng = random.Random(seed)
    names = list(D.PALETTE)
    crops = [(_Entry(i), solid(D.PALETTE[names[rng.randrange(len(names))]])) for i in range(n)]
    return D.build_examples(crops, _FakeTok(), M=4, kinds=D.PIXEL_KINDS)


def test_lora_steps_lower_the_loss_and_train_only_adapter_and_image_rows(tiny):
    from museumtok.llm.sft import AdapterConfig, add_adapter, collate, encode_example, sft_loss, trainable_parameters

    model, vocab = _fresh(tiny)
    hf_tok = tiny[1]
    W0 = model.get_input_embeddings().weight.detach().clone()
    pm, delta = add_adapter(model, vocab, AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake"))
    names = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    batch = collate([encode_example(e, hf_tok, vocab) for e in _examples()], hf_tok.pad_token_id)
    assert (batch["labels"] != -100).sum() < batch["attention_mask"].sum()      # loss on answers only
    opt = torch.optim.AdamW(trainable_parameters(pm, delta), lr=1e-2)
    pm.train()
    with torch.no_grad():
        first = float(sft_loss(pm, batch))
    for _ in range(15):
        loss = sft_loss(pm, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(sft_loss(pm, batch)) < first
    assert torch.equal(model.get_input_embeddings().weight, W0)                  # text rows untouched
    assert delta.delta.abs().sum() > 0                                           # image rows moved


def test_adapter_saves_and_reloads_to_identical_outputs(tiny, tmp_path):
    from museumtok.llm.sft import (AdapterConfig, add_adapter, candidate_logprobs, load_adapter, prompt_ids,
                                   save_adapter)

    hf_tok = tiny[1]
    model, vocab = _fresh(tiny)
    pm, delta = add_adapter(model, vocab, AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake"))
    with torch.no_grad():                                        # make the adapter non-trivial
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
        delta.delta.normal_(0, 0.1)
    pm.eval()
    ex = _examples(2)[0]
    ids = torch.tensor([prompt_ids(ex, hf_tok, vocab)])
    with torch.no_grad():
        ref = pm(input_ids=ids).logits
    save_adapter(tmp_path, pm, delta, AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake"))
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 1_000_000

    model2, _ = _fresh(tiny)                                     # fresh base + same vocab, then the adapter
    vocab2 = ImageVocab.for_tokenizer("fake", 16)
    vocab2.attach(model2, hf_tok)
    pm2, delta2, vocab2, cfg = load_adapter(tmp_path, model2, hf_tok, vocab2)
    with torch.no_grad():
        out = pm2(input_ids=ids).logits
    assert torch.allclose(out, ref, atol=1e-6)
    assert cfg.r == 4 and cfg.tokenizer == "fake"
    # the cached candidate scorer agrees with full-sequence log-likelihoods
    cands = [hf_tok(" " + c, add_special_tokens=False)["input_ids"] for c in D.CANDIDATES["brightest"]]
    fast = candidate_logprobs(pm2, ids[0].tolist(), cands)
    for c, s in zip(cands, fast):
        full = torch.tensor([ids[0].tolist() + c])
        with torch.no_grad():
            lp = torch.log_softmax(pm2(input_ids=full).logits[0].float(), -1)
        ref_s = sum(float(lp[ids.shape[1] - 1 + j, t]) for j, t in enumerate(c))
        assert abs(float(s) - ref_s) < 1e-4


def _nontrivial_adapter(tiny, cfg):
    from museumtok.llm.sft import add_adapter

    model, vocab = _fresh(tiny)
    pm, delta = add_adapter(model, vocab, cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
        delta.delta.normal_(0, 0.1)
        if delta.pos2d:
            delta.pos_row.normal_(0, 0.1)
            delta.pos_col.normal_(0, 0.1)
    return pm.eval(), delta, vocab


def test_adapter_is_in_peft_format_and_peft_loads_its_lora(tiny, tmp_path):
    """peft's own loader reads the saved folder: the same LoRA factors, the same logits on text."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from museumtok.llm.sft import AdapterConfig, save_adapter

    cfg = AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake", base="tiny")
    pm, delta, vocab = _nontrivial_adapter(tiny, cfg)
    save_adapter(tmp_path, pm, delta, cfg)
    assert {p.name for p in tmp_path.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                   "image_rows.safetensors", "config.json"}
    ids = torch.tensor([tiny[1]("Visitor: Is it bright?\nGuide:", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = pm(input_ids=ids).logits
    base, _ = _fresh(tiny)                                      # same seed: the same base weights
    peft_model = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    loaded = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert len(loaded) == len(saved) > 0
    for k, v in saved.items():                                   # peft's key names: ...q_proj.lora_A.weight
        assert torch.equal(loaded[k.replace(".weight", ".default.weight")], v), k
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, ref, atol=1e-6)   # text only: ΔE plays no part


def test_old_layout_adapter_loads_and_converts_to_identical_outputs(tiny, tmp_path):
    """An adapter saved before peft's layout (one adapter.safetensors) loads as before, and
    convert_adapter rewrites it in place without changing a single output."""
    import json

    from safetensors.torch import load_file, save_file

    from museumtok.llm.sft import (AdapterConfig, convert_adapter, image_ids, load_adapter, read_adapter_config,
                                   save_adapter)

    cfg = AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake", base="tiny", version=2, pos2d=4)
    pm, delta, vocab = _nontrivial_adapter(tiny, cfg)
    save_adapter(tmp_path / "new", pm, delta, cfg)
    old = tmp_path / "old"                                       # the earlier layout, built from the same tensors
    old.mkdir()
    state = {**load_file(str(tmp_path / "new" / "adapter_model.safetensors")),
             **load_file(str(tmp_path / "new" / "image_rows.safetensors"))}
    save_file(state, str(old / "adapter.safetensors"))
    d = json.loads((tmp_path / "new" / "config.json").read_text())
    d.pop("_class_name")
    (old / "config.json").write_text(json.dumps(d))

    hf_tok = tiny[1]
    ids = torch.tensor([image_ids(vocab, torch.arange(4).view(2, 2)) + hf_tok("Guide:")["input_ids"]])

    def logits(folder):
        model, _ = _fresh(tiny)
        v = ImageVocab.for_tokenizer("fake", 16)
        v.attach(model, hf_tok)
        pm2, _, _, _ = load_adapter(folder, model, hf_tok, v)
        with torch.no_grad():
            return pm2(input_ids=ids).logits

    before = logits(old)
    assert torch.allclose(before, logits(tmp_path / "new"), atol=0)
    assert convert_adapter(old) and not (old / "adapter.safetensors").exists()
    assert not convert_adapter(old)                              # nothing left to convert
    assert torch.equal(logits(old), before)
    assert read_adapter_config(old) == read_adapter_config(tmp_path / "new") == cfg
    assert json.loads((old / "config.json").read_text())["_class_name"] == "PeftModel"
    peft_cfg = json.loads((old / "adapter_config.json").read_text())
    assert peft_cfg["r"] == 4 and peft_cfg["lora_alpha"] == 8 and peft_cfg["peft_type"] == "LORA"


def test_bundled_adapters_are_in_peft_format():
    import json

    from museumtok.paths import CHECKPOINT_DIR

    folders = sorted(CHECKPOINT_DIR.glob("sft-*"))
    if not folders:
        pytest.skip("no bundled SFT adapter")
    for d in folders:
        assert not (d / "adapter.safetensors").exists(), d
        peft_cfg = json.loads((d / "adapter_config.json").read_text())
        ours = json.loads((d / "config.json").read_text())
        assert ours["_class_name"] == "PeftModel" and (d / "adapter_model.safetensors").is_file(), d
        assert (peft_cfg["r"], peft_cfg["lora_alpha"], sorted(peft_cfg["target_modules"])) == \
            (ours["r"], ours["alpha"], sorted(ours["targets"])), d
        assert peft_cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct", d


def test_prompt_conditions(tiny):
    from museumtok.llm.sft import prompt_ids

    model, vocab = _fresh(tiny)
    hf_tok = tiny[1]
    ex = _examples(1)[0]
    real = prompt_ids(ex, hf_tok, vocab, "real")
    shuf = prompt_ids(ex, hf_tok, vocab, "shuffled", random.Random(1))
    none = prompt_ids(ex, hf_tok, vocab, "none")
    assert sorted(real) == sorted(shuf) and len(none) < len(real)
    assert not any(vocab.is_image_id(torch.tensor(none)))
    with pytest.raises(ValueError, match="real"):
        prompt_ids(ex, hf_tok, vocab, "blurred")


def test_bundled_adapter_loads_onto_the_embedded_llm():
    from museumtok.llm.backends import TransformersBackend, embedded_is_cached
    from museumtok.llm.sft import load_adapter
    from museumtok.paths import CHECKPOINT_DIR

    d = CHECKPOINT_DIR / "sft-smollm2-lloyd-k1024"
    if not (d / "adapter_model.safetensors").is_file():
        pytest.skip("no bundled SFT adapter")
    if not embedded_is_cached():
        pytest.skip("the embedded SmolLM2 is not converted yet")
    torch.set_num_threads(1)
    b = TransformersBackend.embedded()
    pm, delta, vocab, cfg = load_adapter(d, b.model, b.tokenizer)
    assert delta.n == cfg.K + 2 and vocab.K == cfg.K
    assert cfg.version == 2 and cfg.pos2d and cfg.row_ends
    card = (d / "README.md").read_text()
    assert "| question | real | shuffled | none | n |" in card and "Hallucination rate" in card


# ---- the adapter in the chat: §7.3 prompts, word init, backend switching ----------------------------
def _adapter_dir(tiny, tmp_path, base="tiny"):
    from museumtok.llm.sft import AdapterConfig, add_adapter, save_adapter

    model, vocab = _fresh(tiny)
    cfg = AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake", base=base)
    pm, delta = add_adapter(model, vocab, cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
        delta.delta.normal_(0, 0.2)
    save_adapter(tmp_path, pm, delta, cfg)
    return pm.eval(), vocab


def test_guide_ids_reproduce_the_training_dialogue(tiny):
    from museumtok.llm.prompt import prefix_messages
    from museumtok.llm.sft import encode_dialogue, guide_ids, guide_ids_from_messages

    _, vocab = _fresh(tiny)
    hf_tok = tiny[1]
    exs = [e for e in _examples(1) if e.crop == 0][:3]
    ids, labels = encode_dialogue(exs, hf_tok, vocab)
    image = vocab.to_ids(exs[0].indices).tolist()
    turns = [(e.question, e.answer) for e in exs[:-1]]
    live = guide_ids(image, turns, exs[-1].question, hf_tok)
    last_answer = [t for t, l in zip(ids, labels) if l != -100][-(len(labels) - len(live)):]
    assert ids == live + last_answer                       # the chat prompt is the training prefix
    msgs = prefix_messages(vocab.to_text(exs[0].indices), exs[-1].question,
                           [m for q, a in turns for m in ({"role": "user", "content": q},
                                                          {"role": "assistant", "content": a})])
    assert guide_ids_from_messages(msgs, hf_tok) == live   # persona dropped, image and turns kept
    with_card = guide_ids_from_messages(prefix_messages(None, "Q?", card="Title, Artist"), hf_tok)
    enc = lambda t: hf_tok(t, add_special_tokens=False)["input_ids"]   # noqa: E731
    assert with_card == enc("Catalog card: Title, Artist") + enc("\nVisitor: Q?\nGuide:")


class _SolidTok:
    """Code k decodes to a solid palette colour (a 'tokenizer' whose codewords have known names)."""
    names = ["blue", "red", "white", "green"]
    K = 4

    def working_size(self, M):
        return 8

    def encode_tensor(self, x, M):
        return torch.zeros(x.shape[0], 2, 2, dtype=torch.long)

    def decode_indices(self, idx, M):
        cols = torch.tensor([D.PALETTE[n] for n in self.names])            # (K, 3)
        x = cols[idx]                                                      # (B, h, w, 3)
        return x.permute(0, 3, 1, 2).repeat_interleave(4, -1).repeat_interleave(4, -2)


def test_code_words_and_word_init(tiny):
    from museumtok.llm.sft import AdapterConfig, add_adapter, code_words, word_init_delta

    assert code_words(_SolidTok(), 4) == _SolidTok.names
    model, vocab = _fresh(tiny)
    hf_tok = tiny[1]
    pm, delta = add_adapter(model, vocab, AdapterConfig(r=4, alpha=8, K=16, M=4, tokenizer="fake"))
    words = [_SolidTok.names[k % 4] for k in range(16)]
    word_init_delta(pm, delta, hf_tok, words)
    emb = pm.get_input_embeddings()
    with torch.no_grad():
        rows = emb(vocab.to_ids(torch.arange(16), delimiters=False).view(1, -1))[0]   # (16, d) through the hook
        for k in (0, 5, 14):
            w = emb.weight[hf_tok(" " + words[k], add_special_tokens=False)["input_ids"]].mean(0)
            assert torch.allclose(rows[k], w, atol=1e-6)
    with pytest.raises(ValueError, match="one per code"):
        word_init_delta(pm, delta, hf_tok, words[:3])


def test_backend_switches_the_adapter_with_the_tokenizer(tiny, tmp_path):
    from museumtok.llm.backends import TransformersBackend
    from museumtok.llm.prompt import prefix_messages
    from museumtok.llm.sft import guide_ids_from_messages

    hf_tok = tiny[1]
    pm, _ = _adapter_dir(tiny, tmp_path)                       # reference: the trained adapter
    model, vocab = _fresh(tiny)                                # a fresh base model in the backend
    base_ref, _ = _fresh(tiny)
    b = TransformersBackend(model, hf_tok, name="tiny")
    b.attach_vocab(vocab, adapter=tmp_path)
    assert b.adapter_active and "active" in b.adapter_status
    msgs = prefix_messages(vocab.to_text(torch.tensor([1, 2, 3, 4])), "Is this detail bright or dark?")
    ids = torch.tensor([guide_ids_from_messages(msgs, hf_tok)])
    assert b.encode_messages(msgs) == ids[0].tolist()

    def last_logits():
        from transformers import DynamicCache
        with torch.no_grad():
            return b._forward(ids, DynamicCache(config=b.model.config))[0]

    with torch.no_grad():
        want = pm(input_ids=ids).logits[0, -1]
        base = base_ref(input_ids=ids).logits[0, -1]
    assert torch.allclose(last_logits(), want, atol=1e-5)
    other = ImageVocab.for_tokenizer("other", 8)              # another tokenizer: adapter off, base model
    b.attach_vocab(other)
    assert not b.adapter_active
    assert torch.allclose(last_logits()[:len(base)], base, atol=1e-5)   # (+8 rows of "other" at the end)
    b.attach_vocab(vocab, adapter=tmp_path)                   # back: ΔE survives the embedding resize
    assert b.adapter_active and torch.allclose(last_logits()[:len(want)], want, atol=1e-5)
    b2 = TransformersBackend(_fresh(tiny)[0], hf_tok, name="some-other-llm")
    b2.attach_vocab(ImageVocab.for_tokenizer("fake", 16), adapter=tmp_path)
    assert not b2.adapter_active and "trained for `tiny`" in b2.adapter_status


def test_chat_uses_the_bundled_adapter_for_its_tokenizer():
    """End to end: the app's chat session with the embedded LLM switches the bundled adapter on for
    lloyd-patch-k1024 (answers in the trained form) and off for another tokenizer."""
    import museumtok
    from museumtok import registry
    from museumtok.llm.backends import TransformersBackend, embedded_is_cached
    from museumtok.llm.chat import ChatSession

    entry = registry.get("lloyd-patch-k1024")
    if entry.adapter_path is None:
        pytest.skip("no bundled SFT adapter")
    if not embedded_is_cached():
        pytest.skip("the embedded SmolLM2 is not converted yet")
    torch.set_num_threads(1)
    b = TransformersBackend.embedded()
    s = ChatSession(b)
    tok = museumtok.load("lloyd-patch-k1024")
    from PIL import Image

    white = Image.new("RGB", (64, 64), (242, 242, 242))
    s.set_image(tok, white, 64)
    assert b.adapter_active and entry.adapter_path.name in b.adapter_status
    ids = b.encode_messages(s.messages_for("Is this detail bright or dark?", s.plan("x")))
    assert b.tokenizer.decode(ids[-6:]).endswith("Guide:")              # §7.3 form, no chat template
    assert "Catalog card: none" in b.tokenizer.decode(ids)               # version 2: the card line is always there
    answer = "".join(list(s.ask("Is this detail bright or dark?"))[-1:]).strip()
    assert "bright" in answer.lower() and len(answer.split()) >= 3, answer   # reads the tokens, in a sentence
    for rgb, colour, light in (((15, 15, 15), "black", "dark"), ((51, 89, 178), "blue", None)):
        s.set_image(tok, Image.new("RGB", (64, 64), rgb), 64)              # solid palette colours
        said = list(s.ask("What is the dominant colour of this detail?"))[-1]
        assert colour in said.lower(), said
        if light:
            assert light in list(s.ask("Is this detail bright or dark?"))[-1].lower()
    s.set_image(museumtok.load("lloyd-patch-k256"), white, 64)          # a tokenizer without an adapter: guarded
    assert not b.adapter_active and s.guarded
    ids = b.encode_messages(s.messages_for("Hi", s.plan("Hi")))
    assert not any(i >= b.tokenizer.convert_tokens_to_ids("<lloyd-patch-k256:v0>") for i in ids)   # tokens withheld
    said = list(s.ask("What colours dominate this painting?"))[-1]
    assert said.startswith("I can't read lloyd-patch-k256 image tokens yet"), said


def test_adapter_folder_names_and_lookup(tmp_path, monkeypatch):
    from museumtok.llm import chat
    from museumtok.llm.sft import adapter_name

    assert adapter_name("smollm2-135m-instruct", "lloyd-patch-k1024") == "sft-smollm2-lloyd-k1024"
    assert adapter_name("HuggingFaceTB/SmolLM2-1.7B-Instruct", "vqvae-f8-k1024") == \
        "sft-huggingfacetb-smollm2-1.7b-instruct-vqvae-f8-k1024"
    from museumtok import registry

    bundled = registry.get("vqvae-f8-k1024").adapter_path          # the registry's guide (or None without it)
    monkeypatch.setattr("museumtok.paths.CHECKPOINT_DIR", tmp_path)
    assert chat.adapter_for("dvae-f8-k1024", "my/LLM") is None              # none trained, none bundled
    assert chat.adapter_for("vqvae-f8-k1024", "my/LLM") == bundled          # none for my/LLM: the bundled one
    (tmp_path / "sft-my-llm-vqvae-f8-k1024").mkdir()
    (tmp_path / "sft-my-llm-vqvae-f8-k1024" / "config.json").write_text("{}")
    assert chat.adapter_for("vqvae-f8-k1024", "my/LLM") == tmp_path / "sft-my-llm-vqvae-f8-k1024"
    assert chat.adapter_for("no-such-tokenizer") is None
