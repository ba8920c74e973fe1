"""MaskGIT against the left-to-right autoregressive prior of the same size, on held-out tokens (§4.6).

Both transformers (``museumtok.models.maskgit.MaskGIT``, bidirectional and ``causal=True``) model the
8×8 token grids of the same frozen tokenizer. Two measurements on held-out crops:

1. **Likelihood**, bits/token, −log₂ p(k) / N. The AR prior gives it exactly by the chain rule (teacher
   forcing, one pass). MaskGIT has no single factorization; its conditionals become a proper likelihood
   when the true tokens are revealed by a fixed procedure (the order-agnostic view of Uria et al., ICML 2014,
   and Hoogeboom et al., "Autoregressive Diffusion Models", ICLR 2022): raster order one token at a time
   (everything after it masked, N passes), its own confidence order (N passes), or in the T groups of its
   cosine schedule — the likelihood of the T-pass parallel sampler itself, tokens in a group independent
   (:meth:`MaskGIT.chain_rule_log_probs`). Lower is better; log₂ K = 10 bits is uniform guessing.
2. **Inpainting**: mask a box of tokens (the centre 4×4 of the 8×8 grid by default), fill it — MaskGIT with
   its T-step schedule, AR in raster order (it sees only the known tokens *before* each masked one) — decode
   with the tokenizer and measure, inside the box, PSNR against the original crop and against the
   tokenizer's own reconstruction of the true tokens, and the fraction of box tokens recovered exactly;
   ``delta_vs_first_db`` is the paired per-crop difference of PSNR (vs original) to the first decoder
   (MaskGIT T=8 sampled with the review's τ_t, the row the model cards were first measured with), whose
   standard error is smaller than those of the two means.
3. **The two MaskGIT decodings** (:func:`compare_decodings`): the paper's (τ = 1, confidence = untempered
   probability, annealed Gumbel choice noise) against the review's τ_t schedule, on the same held-out grids
   and seeds: the model's own likelihood of what each decoder filled in, inpainting PSNR, and diversity
   (how often two seeds disagree on a token), for inpainting and for generation from an all-[MASK] grid.

Every number is a mean over crops ± its standard error (std / √n). Forward passes are per batch
(all crops at once); wall time is for the whole batch on the current device and thread count.

    python benchmarks/maskgit_vs_ar_quality.py          # the table in both model cards
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from einops import rearrange

from ..models.maskgit import DECODINGS, PAPER_CHOICE_TEMPERATURE, MaskGIT, box_region


@dataclass
class ComparisonConfig:
    sets: tuple = ("artworks-test", "kodak")    # held-out sets (never seen in training)
    size: int = 192                             # each image → centre square at size px (zoom within training's 1–3×)
    crop: int = 64                              # tile side in px: (size/crop)² tiles per image, crop/f tokens a side
    box: tuple = (2, 2, 4, 4)                   # inpainting box (top, left, height, width) in tokens
    steps: int = 8                              # MaskGIT decoding steps T (the paper's 8)
    seed: int = 0                               # sampling seed of every stochastic decoder
    limit: int | None = None                    # images per set (None: all); small for tests and fast mode


def held_out_crops(set_name: str, size: int, crop: int, limit: int | None = None) -> torch.Tensor:
    """The images of ``set_name`` as size-px centre squares cut into crop-px tiles: (n·(size/crop)², 3, crop, crop)."""
    from ..data.dataset import eval_batch

    if size % crop:
        raise ValueError(f"size {size} is not a multiple of crop {crop}")
    x, _ = eval_batch(set_name, size, limit=limit)              # (n, 3, size, size)
    a = size // crop
    return rearrange(x, "n c (a h) (b w) -> (n a b) c h w", a=a, b=a)


def mean_se(v: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error (sample std / √n) of a 1-D tensor."""
    v = v.double().flatten()
    se = float(v.std(unbiased=True) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def fmt(ms: tuple[float, float], digits: int = 2) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def box_psnr(a: torch.Tensor, b: torch.Tensor, box_px: tuple[int, int, int, int], floor: float = 1e-6) -> torch.Tensor:
    """Per-image PSNR (dB, peak 1) inside ``box_px`` = (top, left, height, width) in px. a, b (B, 3, H, W) -> (B,).

    The MSE is floored at ``floor`` (60 dB) so that an exact match does not make the mean infinite.
    """
    t, l, h, w = box_px
    d = (a.clamp(0, 1) - b.clamp(0, 1))[:, :, t:t + h, l:l + w]
    mse = d.pow(2).flatten(1).mean(1).clamp_min(floor)
    return -10 * torch.log10(mse)


def _timed(model: MaskGIT, fn):
    model.forward_passes = 0
    t0 = time.perf_counter()
    out = fn()
    return out, model.forward_passes, time.perf_counter() - t0


def likelihood_rows(maskgit: MaskGIT, ar: MaskGIT, k: torch.Tensor, steps: int = 8) -> list[dict]:
    """Held-out bits/token of ``k`` (B, h, w) under each factorization: AR exact, MaskGIT's chain rules."""
    runs = [("AR, raster chain rule (exact, teacher-forced)", ar, {}),
            ("MaskGIT, raster chain rule (1 token / pass)", maskgit, {"order": "raster"}),
            ("MaskGIT, confidence-order chain rule (1 token / pass)", maskgit, {"order": "confidence"}),
            (f"MaskGIT, T={steps} parallel groups, confidence order", maskgit, {"order": "confidence", "steps": steps}),
            (f"MaskGIT, T={steps} parallel groups, raster order", maskgit, {"order": "raster", "steps": steps})]
    rows = []
    for name, model, kw in runs:
        lp, passes, wall = _timed(model, lambda: model.chain_rule_log_probs(k, **kw))   # (B, N) nats
        bits = -lp.sum(1) / lp.shape[1] / math.log(2)                                     # (B,) bits/token
        rows.append({"factorization": name, "bits_per_token": fmt(mean_se(bits), 3),
                     "forward_passes": passes, "wall_s": round(wall, 2)})
    return rows


def inpainting_rows(maskgit: MaskGIT, ar: MaskGIT, ae, x: torch.Tensor, k: torch.Tensor,
                    box: tuple[int, int, int, int], steps: int = 8, seed: int = 0) -> list[dict]:
    """Fill ``box`` of the token grids k (B, h, w) of crops x (B, 3, H, W) with each decoder; PSNR in the box."""
    f = x.shape[-1] // k.shape[-1]
    box_px = tuple(v * f for v in box)
    region = box_region(k, box)                                  # (B, h, w)
    recon = ae.decode_indices(k)                                 # the tokenizer's own reconstruction
    n_box = box[2] * box[3]
    review = {"decoding": "review"}        # the rows the model cards were measured with: the review's τ_t
    runs = [(f"MaskGIT T={steps}, sampled, review's τ_t = max(0.1, 0.9^t)", maskgit, {"steps": steps, **review}),
            (f"MaskGIT T={steps}, sampled, paper's decoding (τ = 1, choice noise 4.5)", maskgit,
             {"steps": steps, "decoding": "paper"}),
            (f"MaskGIT T={steps}, greedy", maskgit, {"steps": steps, "greedy": True, **review}),
            (f"MaskGIT T={n_box} (1 token / pass), sampled, review's τ_t", maskgit, {"steps": n_box, **review}),
            ("AR raster, sampled τ = 1", ar, {"temperature": 1.0}),
            ("AR raster, greedy", ar, {"greedy": True})]
    rows = [{"decoder": "tokenizer reconstruction (true tokens)", "psnr_vs_original_db": fmt(mean_se(
        box_psnr(recon, x, box_px))), "psnr_vs_reconstruction_db": "—", "delta_vs_first_db": "—",
        "token_accuracy": "1", "forward_passes": 0, "wall_s": "—"}]
    first = None                                                 # per-crop PSNR of the first decoder (paired Δ)
    for name, model, kw in runs:
        if not kw.get("greedy"):
            kw = {**kw, "generator": torch.Generator().manual_seed(seed)}
        filled, passes, wall = _timed(model, lambda: model.inpaint(k, box, **kw))
        if not torch.equal(filled[~region], k[~region]):
            raise AssertionError(f"{name} changed tokens outside the box")
        y = ae.decode_indices(filled)
        acc = (filled == k)[region].view(len(k), -1).float().mean(1)
        p = box_psnr(y, x, box_px)                               # (B,) dB against the original
        first = p if first is None else first
        rows.append({"decoder": name, "psnr_vs_original_db": fmt(mean_se(p)),
                     "psnr_vs_reconstruction_db": fmt(mean_se(box_psnr(y, recon, box_px))),
                     "delta_vs_first_db": fmt(mean_se(p - first)) if p is not first else "0",
                     "token_accuracy": fmt(mean_se(acc), 3), "forward_passes": passes, "wall_s": round(wall, 2)})
    return rows


@torch.no_grad()
def compare(maskgit: MaskGIT, ar: MaskGIT, ae, cfg: ComparisonConfig = ComparisonConfig()) -> dict:
    """Both tables for every held-out set: {set: {"grids": n, "likelihood": rows, "inpainting": rows}}."""
    maskgit.eval(), ar.eval(), ae.eval()
    out = {}
    for s in cfg.sets:
        x = held_out_crops(s, cfg.size, cfg.crop, cfg.limit)    # (n, 3, crop, crop)
        k = ae.encode_indices(x)                                 # (n, h, w)
        if tuple(k.shape[1:]) != tuple(maskgit.config.grid):
            raise ValueError(f"crops give a {tuple(k.shape[1:])} grid, the models expect {maskgit.config.grid}")
        out[s] = {"grids": len(k), "likelihood": likelihood_rows(maskgit, ar, k, cfg.steps),
                  "inpainting": inpainting_rows(maskgit, ar, ae, x, k, cfg.box, cfg.steps, cfg.seed)}
    return out


DECODING_LABELS = {
    "paper": f"paper (Chang et al. 2022): τ = 1, rank by p, Gumbel choice noise {PAPER_CHOICE_TEMPERATURE}·(1 − t/T)",
    "review": "review §4.6: τ_t = max(0.1, 0.9^t), rank by tempered p, no choice noise",
}


def pairwise_disagreement(samples: torch.Tensor) -> torch.Tensor:
    """samples (S, B, n) tokens of S seeds for B items -> (B,) mean fraction of the n positions on which two
    different seeds disagree, over all S·(S−1)/2 pairs (0 = every seed gives the same tokens)."""
    S = samples.shape[0]
    if S < 2:
        raise ValueError("diversity needs at least two seeds")
    d = [(samples[i] != samples[j]).float().mean(-1) for i in range(S) for j in range(i + 1, S)]
    return torch.stack(d).mean(0)


@torch.no_grad()
def compare_decodings(model: MaskGIT, ae, x: torch.Tensor, k: torch.Tensor, box: tuple[int, int, int, int],
                      steps: int = 8, seeds: int = 4, samples: int = 8, seed: int = 0,
                      decodings: tuple[str, ...] = DECODINGS) -> list[dict]:
    """The paper's MaskGIT decoding against the review's on held-out crops x (B, 3, H, W) with tokens k (B, h, w).

    For each decoding, with ``seeds`` independent draws per crop (one batch; the generator seeded with ``seed``):

    * ``box_bits_per_token``: −log₂ p(filled box | the tokens around it) / box size, under the model itself
      (raster reveal inside the box, :meth:`MaskGIT.chain_rule_log_probs` with ``masked``): how likely the
      model finds what the decoder filled in. The first row gives it for the true tokens: a decoder far
      below it is picking the model's favourite codes rather than sampling the model;
    * ``psnr_vs_original_db`` inside the box and ``token_accuracy`` (true tokens recovered);
    * ``box_diversity``: mean pairwise disagreement between seeds inside the box (:func:`pairwise_disagreement`);
    * ``sample_bits_per_token`` and ``sample_diversity``: the same two for ``samples``·``seeds`` grids generated
      from an all-[MASK] grid (raster chain rule over all N positions; diversity over pairs of samples).

    Returns rows (dicts) for :func:`museumtok.cards.markdown_table`; numbers are mean ± standard error over
    crops (or generated grids).
    """
    model.eval()
    f = x.shape[-1] // k.shape[-1]
    box_px = tuple(v * f for v in box)
    B, n_box = len(k), box[2] * box[3]
    region = box_region(k, box)                                            # (B, h, w)
    kk, rr = k.repeat(seeds, 1, 1), region.repeat(seeds, 1, 1)             # (S·B, h, w): seed-major

    def box_bits(grids, where):
        lp = model.chain_rule_log_probs(grids, order="raster", masked=where)              # (·, N) nats
        return -lp.sum(1) / n_box / math.log(2)

    recon = ae.decode_indices(k)
    rows = [{"decoding": "true tokens (the tokenizer's reconstruction)",
             "box_bits_per_token": fmt(mean_se(box_bits(k, region)), 3),
             "psnr_vs_original_db": fmt(mean_se(box_psnr(recon, x, box_px))), "token_accuracy": "1",
             "box_diversity": "—", "sample_bits_per_token": "—", "sample_diversity": "—"}]
    N = model.N
    for dec in decodings:
        g = torch.Generator().manual_seed(seed)
        filled = model.inpaint(kk, box, steps=steps, decoding=dec, generator=g)            # (S·B, h, w)
        if not torch.equal(filled[~rr], kk[~rr]):
            raise AssertionError(f"{dec} decoding changed tokens outside the box")
        bits = box_bits(filled, rr).view(seeds, B).mean(0)                                 # (B,) per crop
        y = ae.decode_indices(filled)
        psnr = box_psnr(y, x.repeat(seeds, 1, 1, 1), box_px).view(seeds, B).mean(0)
        acc = (filled == kk)[rr].view(seeds * B, -1).float().mean(1).view(seeds, B).mean(0)
        div = pairwise_disagreement(filled[rr].view(seeds, B, n_box))
        row = {"decoding": DECODING_LABELS.get(dec, dec), "box_bits_per_token": fmt(mean_se(bits), 3),
               "psnr_vs_original_db": fmt(mean_se(psnr)), "token_accuracy": fmt(mean_se(acc), 3),
               "box_diversity": fmt(mean_se(div), 3)}
        if samples:
            gen = model.decode(torch.full((samples * seeds, N), model.mask_id, dtype=torch.long,
                                          device=k.device), steps=steps, decoding=dec, generator=g)
            sbits = -model.chain_rule_log_probs(gen, order="raster").sum(1) / N / math.log(2)
            sdiv = pairwise_disagreement(gen.view(seeds, samples, N))
            row.update(sample_bits_per_token=fmt(mean_se(sbits), 3), sample_diversity=fmt(mean_se(sdiv), 3))
        else:
            row.update(sample_bits_per_token="—", sample_diversity="—")
        rows.append(row)
    return rows


def markdown(result: dict, cfg: ComparisonConfig = ComparisonConfig()) -> str:
    """The comparison as Markdown tables (one pair per held-out set)."""
    from ..cards import markdown_table

    parts = []
    for s, r in result.items():
        parts.append(f"**{s}**: {r['grids']} held-out {cfg.crop} px crops ({cfg.size} px images cut into "
                     f"{(cfg.size // cfg.crop) ** 2} tiles), mean ± standard error over crops, seed {cfg.seed}.\n")
        parts.append("Held-out likelihood (lower is better; uniform = 10 bits/token):\n")
        parts.append(markdown_table(r["likelihood"]))
        t, l, h, w = cfg.box
        parts.append(f"Inpainting the {h}×{w} token box at ({t}, {l}) — PSNR inside the box only:\n")
        parts.append(markdown_table(r["inpainting"]))
    return "\n".join(parts)
