"""Flamingo's gated cross-attention (museumtok.models.gated_xattn) and the §6.1 format comparison (train/formats)."""
import pytest
import torch

from museumtok.models.gated_xattn import (CodeResampler, GatedCrossAttentionBlock, GatedXAttnConfig, GatedXAttnLM,
                                          MaskedCrossAttention, code_table, media_attention_mask, xattn_layer_indices)
from museumtok.models.resampler import ResamplerConfig

IMG = 49          # the tiny LM's <image> token id


def tiny_lm(layers: int = 4, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=50, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def two_image_ids():
    """(2, 12) ids: sample 0 has images at positions 3 and 8, sample 1 one image at position 3."""
    ids = torch.randint(0, IMG, (2, 12), generator=torch.Generator().manual_seed(1))
    ids[:, 3] = IMG
    ids[0, 8] = IMG
    return ids


def open_gates(gx: GatedXAttnLM, value: float = 0.7):
    with torch.no_grad():
        for b in gx.blocks.values():
            b.attn_gate.fill_(value)
            b.ff_gate.fill_(value)


def test_blocks_go_before_every_kth_layer():
    assert xattn_layer_indices(30, 1) == list(range(30))
    assert xattn_layer_indices(30, 10) == [9, 19, 29]
    assert xattn_layer_indices(8, 4) == [3, 7]
    with pytest.raises(ValueError):
        GatedXAttnLM(tiny_lm(layers=2), GatedXAttnConfig(every=3))


@pytest.mark.parametrize("every", [1, 2])
def test_frozen_lm_is_unchanged_at_initialisation_on_a_tiny_llama(every):
    lm = tiny_lm()
    ids = two_image_ids()
    with torch.no_grad():
        ref = lm(input_ids=ids).logits
        gx = GatedXAttnLM(lm, GatedXAttnConfig(every=every, heads=2, dim_head=8, ff_mult=1, visual_dim=16),
                          media_token_id=IMG)
        vis = torch.randn(2, 2, 5, 16)
        same = gx(input_ids=ids, visual=vis).logits
        assert torch.equal(same, ref)                           # tanh(0) = 0: bit for bit the LM
        open_gates(gx)
        moved = gx(input_ids=ids, visual=vis).logits
    assert (moved - ref).abs().max() > 1e-3                     # the blocks are really in the forward
    with torch.no_grad():                                       # and they come off again
        assert torch.equal(gx.remove()(input_ids=ids).logits, ref)


def test_frozen_smollm2_is_unchanged_at_initialisation_reading_resampled_codes(artwork_path):
    """The real embedded SmolLM2 with blocks every 4 layers, reading Perceiver Resampler latents of the
    lloyd-patch-k1024 codes of a real artwork: identical logits at step 0, different once the gates open."""
    from museumtok import registry
    from museumtok.llm.backends import TransformersBackend, embedded_is_cached

    if not embedded_is_cached():
        pytest.skip("the embedded SmolLM2 is not converted yet (`museumtok llm convert`)")
    torch.set_num_threads(1)
    b = TransformersBackend.embedded()
    lm, hf_tok = b.model, b.tokenizer
    tok = registry.load("lloyd-patch-k1024")
    codes = tok.encode(artwork_path, 64).flat().unsqueeze(0)                     # (1, 64)
    torch.manual_seed(0)
    visual = CodeResampler(code_table(tok), 64, ResamplerConfig(dim=64, num_latents=8, depth=1))
    ids = torch.tensor([hf_tok("Visitor: What colours dominate this painting?\nGuide:")["input_ids"]])
    loc = torch.zeros_like(ids, dtype=torch.bool)
    loc[:, 0] = True
    with torch.no_grad():
        ref = lm(input_ids=ids).logits
        gx = GatedXAttnLM(lm, GatedXAttnConfig(every=4, heads=4, dim_head=16, ff_mult=1, visual_dim=64))
        lat = visual(codes)
        assert lat.shape == (1, 8, 64)
        try:
            assert len(gx.blocks) == 7                                              # before layers 3, 7, …, 27
            assert torch.equal(gx(input_ids=ids, visual=lat, media_locations=loc).logits, ref)
            open_gates(gx, 0.5)
            assert (gx(input_ids=ids, visual=lat, media_locations=loc).logits - ref).abs().max() > 1e-3
        finally:
            gx.remove()
        assert torch.equal(lm(input_ids=ids).logits, ref)


def test_mask_reads_only_the_last_image_before_each_position():
    loc = torch.tensor([[0, 0, 1, 0, 0, 1, 0]], dtype=torch.bool)       # images start at 2 and 5
    allowed, has = media_attention_mask(loc, num_media=2, num_latents=3)
    assert has.tolist() == [[False, False, True, True, True, True, True]]
    img1, img2 = [True] * 3 + [False] * 3, [False] * 3 + [True] * 3
    assert allowed[0, 2].tolist() == img1 and allowed[0, 4].tolist() == img1    # the marker reads its own image
    assert allowed[0, 5].tolist() == img2 and allowed[0, 6].tolist() == img2    # after image 2: image 2 only
    every, _ = media_attention_mask(loc, 2, 3, only_immediate=False)
    assert every[0, 6].tolist() == [True] * 6 and every[0, 3].tolist() == img1
    cont, has_c = media_attention_mask(torch.zeros(1, 2, dtype=torch.bool), 2, 3, offset=2)   # a continued cache
    assert has_c.all() and cont[0, 0].tolist() == img2


def test_cross_attention_output_depends_only_on_the_allowed_image():
    torch.manual_seed(0)
    xa = MaskedCrossAttention(dim=16, visual_dim=8, heads=2, dim_head=4).eval()
    y = torch.randn(1, 7, 16)
    loc = torch.tensor([[0, 0, 1, 0, 0, 1, 0]], dtype=torch.bool)
    media = torch.randn(1, 2, 3, 8)
    with torch.no_grad():
        out = xa(y, media, loc)
        assert torch.equal(out[0, :2], torch.zeros(2, 16))                  # text before any image reads nothing
        other1 = media.clone()
        other1[:, 0] = torch.randn(3, 8)                                     # change image 1
        out1 = xa(y, other1, loc)
        other2 = media.clone()
        other2[:, 1] = torch.randn(3, 8)                                     # change image 2
        out2 = xa(y, other2, loc)
    assert torch.equal(out1[0, 5:], out[0, 5:]) and not torch.allclose(out1[0, 2:5], out[0, 2:5])
    assert torch.equal(out2[0, :5], out[0, :5]) and not torch.allclose(out2[0, 5:], out[0, 5:])


def test_one_image_per_prompt_needs_no_locations():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(dim=16, visual_dim=8, heads=2, dim_head=4, ff_mult=1, gate_init=0.5).eval()
    y, media = torch.randn(2, 5, 16), torch.randn(2, 4, 8)
    with torch.no_grad():
        everywhere = block(y, media.unsqueeze(1), torch.ones(2, 5, dtype=torch.bool).cumsum(1) == 1)
        assert torch.allclose(block(y, media.unsqueeze(1)), everywhere, atol=1e-6)
    with pytest.raises(ValueError, match="media_locations"):
        block(y, torch.randn(2, 2, 4, 8))


def test_continuing_a_kv_cache_gives_the_full_forward():
    from transformers import DynamicCache

    lm = tiny_lm()
    gx = GatedXAttnLM(lm, GatedXAttnConfig(every=1, heads=2, dim_head=8, ff_mult=1, visual_dim=16), media_token_id=IMG)
    open_gates(gx)
    ids, vis = two_image_ids(), torch.randn(2, 2, 5, 16)
    with torch.no_grad():
        full = gx(input_ids=ids, visual=vis).logits
        cache = DynamicCache(config=lm.config)
        first = gx(input_ids=ids[:, :6], visual=vis, cache=cache, use_cache=True).logits
        rest = gx(input_ids=ids[:, 6:], cache=cache, use_cache=True).logits      # images remembered, counted
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)


def test_gradients_reach_only_the_new_parameters():
    lm = tiny_lm()
    gx = GatedXAttnLM(lm, GatedXAttnConfig(every=2, heads=2, dim_head=8, ff_mult=1, visual_dim=16), media_token_id=IMG)
    resampler = CodeResampler(torch.rand(20, 12), num_tokens=6, cfg=ResamplerConfig(dim=16, num_latents=4, depth=1))
    codes = torch.randint(0, 20, (2, 6))
    ids = two_image_ids()
    ids[0, 8] = 1                                                           # one image each
    trainable = gx.trainable_parameters() + [p for p in resampler.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.5)
    for step in range(2):
        opt.zero_grad()
        out = gx(input_ids=ids, visual=resampler(codes), labels=ids)
        out.loss.backward()
        assert all(p.grad is None for p in lm.parameters())                 # the LM is frozen
        assert all(p.grad is not None for p in trainable)
        if step == 0:          # tanh(0) = 0: only the gates get a gradient at first ...
            assert all(float(b.attn_gate.grad.abs()) > 0 and float(b.ff_gate.grad.abs()) > 0 for b in gx.blocks.values())
            assert all(float(p.grad.abs().max()) == 0 for p in resampler.parameters())
        else:                  # ... once they are open, the attention and the resampler learn too
            assert float(resampler.resampler.latents.grad.abs().max()) > 0
            assert all(float(b.attn.to_q.weight.grad.abs().max()) > 0 for b in gx.blocks.values())
        opt.step()
    assert "blocks" not in "".join(n for n, _ in lm.named_parameters())     # the LM's state dict is untouched


def test_code_resampler_reads_the_tokenizer_codebook():
    from museumtok import registry

    tok = registry.load("lloyd-patch-k1024")
    table = code_table(tok)
    assert table.shape == (1024, 3 * 8 * 8)
    assert torch.equal(table[5], tok.indices_to_codes(torch.tensor([[[5]]])).reshape(-1))
    vr = CodeResampler(table, 64, ResamplerConfig(dim=32, num_latents=4, depth=1))
    assert vr(torch.randint(0, 1024, (3, 8, 8))).shape == (3, 4, 32)
    assert not vr.features.table.requires_grad


def test_format_comparison_runs_on_a_tiny_llama(data_available):
    """The three formats of §6.1 train and are measured; the gated model at step 0 is the frozen LM itself."""
    from museumtok.train.formats import FormatsConfig, GatedFormat, build_format, compare_formats, load_llm

    cfg = FormatsConfig(llm="tiny", train_crops=16, eval_crops=4, max_steps=3, max_seconds=30, prefill_repeats=1,
                        every=2)
    res = {r.format: r for r in compare_formats(cfg, log=None)}
    assert set(res) == {"majority answer", "frozen LM (gated, step 0)", "prefix", "interleaved", "gated"}
    p, i, g = res["prefix"], res["interleaved"], res["gated"]
    assert p.steps == i.steps == g.steps == 3 and len(g.losses) == 3
    assert p.trainable_params == i.trainable_params
    assert p.context_tokens > cfg.M + 2 > g.context_tokens                 # the image lives in the context or not
    assert g.visual_kv == cfg.latents and p.visual_kv == 0
    for r in res.values():
        assert set(r.accuracy) == set(cfg.kinds) and all(0 <= a <= 1 for a in r.accuracy.values())
    # trainable parameters are exactly the new ones
    lm, hf_tok = load_llm("tiny")
    from museumtok import registry
    from museumtok.models.gated_xattn import code_table as table_of

    fmt = build_format("gated", lm, hf_tok, table_of(registry.load(cfg.tokenizer)), cfg)
    assert isinstance(fmt, GatedFormat)
    assert g.trainable_params == sum(p.numel() for p in fmt.visual.parameters() if p.requires_grad) + sum(
        p.numel() for p in fmt.blocks.parameters())
    assert not any(p.requires_grad for p in lm.parameters())
    fmt.remove()
