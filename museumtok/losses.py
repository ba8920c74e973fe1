"""The review's multi-term tokenizer objective (§7.2), one term at a time so that a notebook can plot them:

    L = L_rate + λ1 L_rec + λ2 L_perc + λ3 L_gan + λ4 L_text-align        (+ the quantizer's VQ terms, §7.4)

Each term, and what it is here:

- **L_rate = −log2 p(z)**, the bits of the token indices under a prior p over the K codes (the review
  writes −log p(z); we count in bits, per pixel as CompressAI's ``RateDistortionLoss`` does, so λ's
  scale matches the codecs'). The prior is a fitted :class:`~museumtok.entropy.unigram.UnigramPrior`
  (frozen), a (K,) tensor of logits, or a module returning them (a *learned* unigram prior).
  **Indices are not differentiable** (they come from an argmin), so with ``rate="hard"`` L_rate is the
  exact ideal code length of the chosen indices: it trains only a learned prior's logits (towards the
  code usage) and is otherwise a *logged* term, a constant for the encoder. With ``rate="soft"`` and the
  pre-quantization latents and codebook given, L_rate is the expected code length under the quantizer's
  soft assignment q(k | z_e) = softmax_k(−‖z_e − e_k‖² / τ): Σ_k q(k | z_e) · (−log2 p(k)), differentiable
  in z_e, the codebook and the prior. It is a surrogate: it equals the hard bits only as τ → 0, and the
  hard bits (what a range coder would send) are always reported beside it as ``rate_hard_bpp``.
  The review's "entropy_model(indices)" of §7.4 is the hard version.
- **L_rec**: L1 (VQ-GAN's choice) or MSE between x̂ and x. The review writes "(PSNR)": PSNR is a
  monotone function of the MSE, so ``rec="mse"`` optimises it.
- **L_perc**: LPIPS-AlexNet (Zhang et al., CVPR 2018) when its backbone weights are in the torch hub
  cache, else 1 − MS-SSIM (Wang, Simoncelli & Bovik 2003), with the same "n/a" reason the package
  gives everywhere (:func:`museumtok.metrics.perceptual.lpips_available`); ``notes["perc"]`` says which.
- **L_gan**: the generator's hinge loss −mean D(x̂) of a PatchGAN (Isola et al., CVPR 2017,
  :mod:`museumtok.models.discriminator`), as in VQ-GAN (Esser et al., CVPR 2021). The discriminator's
  own loss and VQ-GAN's adaptive λ stay with the trainer (:mod:`museumtok.models.vqgan`); here λ3 is fixed.
- **L_text-align**: 1 − cos(CLIP image embedding of x̂, CLIP text embedding of the caption), averaged
  over the batch (CLIP: Radford et al., ICML 2021, arXiv:2103.00020), differentiable in x̂. It needs a
  CLIP model in the Hugging Face cache (:func:`museumtok.metrics.distribution.clip_available`); without one
  the term is skipped and ``skipped["text_align"]`` names the missing files.

A term whose weight is 0 is not computed at all (no discriminator pass, no CLIP forward), and a term
that cannot be computed here is left out of the total with its reason in ``skipped`` — never silently
replaced by a number that measures something else.

    loss_fn = MultiTermLoss(MultiTermLossConfig(lambda_gan=0.1), prior=UnigramPrior.fit(idx, K),
                            discriminator=PatchDiscriminator())
    out = loss_fn(x, x_hat, indices, vq_loss=q.loss)       # out.total, out.terms, out.weighted, out.skipped

A trainer uses it: ``museumtok train vqvae --objective multi-term`` (:func:`museumtok.train.vqvae.multi_term_objective`,
soft L_rate under the codebook's running usage, :func:`ema_usage_logits`); ``benchmarks/multi_term_objective.py``
measures it against the paper's MSE on the same steps (docs/multi_term/objective.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .quantize.vq import squared_distances

TERMS = ("rate", "rec", "perc", "gan", "text_align")


@dataclass
class MultiTermLossConfig:
    rate_weight: float = 1.0      # weight of L_rate (the review's 1; 0: no prior is evaluated)
    lambda_rec: float = 1.0       # λ1, weight of L_rec
    lambda_perc: float = 1.0      # λ2, weight of L_perc
    lambda_gan: float = 0.1       # λ3, weight of L_gan (fixed; VQ-GAN's adaptive λ lives in models.vqgan)
    lambda_text: float = 0.0      # λ4, weight of L_text-align (needs CLIP weights; 0 by default)
    rate: str = "hard"            # "hard": bits of the argmin indices (logged; trains a learned prior only);
                                  # "soft": expected bits under softmax(−‖z_e − e_k‖²/τ) (needs z_e and codebook)
    tau: float = 1.0              # τ of the soft assignment (smaller: closer to the hard bits, noisier gradient)
    rec: str = "l1"               # "l1" (VQ-GAN) or "mse" (what PSNR measures)
    perceptual: str = "auto"      # "auto": LPIPS if its weights are cached, else 1 − MS-SSIM; "lpips", "ms_ssim"
    vq_weight: float = 1.0        # weight of the quantizer's own loss when passed (§7.4's β·commit_loss, β inside)

    def __post_init__(self):
        if self.rate not in ("hard", "soft"):
            raise ValueError(f"rate must be 'hard' or 'soft', got {self.rate!r}")
        if self.rec not in ("l1", "mse"):
            raise ValueError(f"rec must be 'l1' or 'mse', got {self.rec!r}")
        if self.perceptual not in ("auto", "lpips", "ms_ssim"):
            raise ValueError(f"perceptual must be 'auto', 'lpips' or 'ms_ssim', got {self.perceptual!r}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    def weight(self, term: str) -> float:
        return {"rate": self.rate_weight, "rec": self.lambda_rec, "perc": self.lambda_perc,
                "gan": self.lambda_gan, "text_align": self.lambda_text}[term]


@dataclass
class MultiTermOutput:
    total: torch.Tensor                                                 # scalar: Σ weight · term over computed terms
    terms: dict[str, torch.Tensor] = field(default_factory=dict)        # unweighted terms that were computed
    weighted: dict[str, torch.Tensor] = field(default_factory=dict)     # weight · term, the total's summands
    skipped: dict[str, str] = field(default_factory=dict)               # term -> why it is not in the total
    notes: dict[str, str] = field(default_factory=dict)                 # what a term is on this machine
    logged: dict[str, float] = field(default_factory=dict)              # extra numbers (hard bits, bits per token)

    def as_floats(self) -> dict[str, float]:
        """{"total", each term, "rate_hard_bpp", …} as Python floats, one row of a log."""
        return {"total": float(self.total.detach()), **{k: float(v.detach()) for k, v in self.terms.items()},
                **self.logged}


# ---- L_rate ------------------------------------------------------------------------------------------
def prior_logits(prior) -> torch.Tensor:
    """(K,) logits of a prior: a :class:`~museumtok.entropy.unigram.UnigramPrior` (its integer table, frozen),
    a tensor of logits, or a module whose ``forward()`` returns them (a learned prior)."""
    if isinstance(prior, torch.Tensor):
        return prior
    if isinstance(prior, nn.Module):
        return prior()
    table = getattr(prior, "table", None)
    if table is not None:                                   # UnigramPrior: the range coder's frequencies f_k / Σf
        f = torch.as_tensor(table[0].astype("float64"))
        return torch.log(f[: prior.K] / f.sum())            # Σf includes the escape symbol's (tiny) frequency
    raise TypeError(f"prior must be a UnigramPrior, a (K,) tensor of logits or a module, got {type(prior).__name__}")


class LearnedUnigramPrior(nn.Module):
    """p(k) = softmax(logits)_k over K codes, trained by L_rate (the hard bits pull it to the code usage)."""

    def __init__(self, K: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(K))

    def forward(self) -> torch.Tensor:  # () -> (K,)
        return self.logits


def log2_prior(prior) -> torch.Tensor:
    """(K,) log2 p(k); for a UnigramPrior exactly the range coder's table (so the hard bits equal its ``bits``)."""
    logits = prior_logits(prior).double()
    if getattr(prior, "table", None) is not None and not isinstance(prior, (torch.Tensor, nn.Module)):
        return logits / math.log(2)
    return F.log_softmax(logits, -1) / math.log(2)


def hard_rate_bits(indices: torch.Tensor, prior) -> torch.Tensor:
    """Σ −log2 p(k_i) over all indices (scalar, float64): the ideal code length of the token grid(s)."""
    lp = log2_prior(prior)
    return -lp[indices.reshape(-1).long().to(lp.device)].sum()


def soft_assignment(z_e: torch.Tensor, codebook: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """q(k | z_e) = softmax_k(−‖z_e − e_k‖² / τ). z_e (B, D, h, w), codebook (K, D) -> (B, h, w, K).

    The distances come from :func:`museumtok.quantize.vq.squared_distances` (one matrix product)."""
    B, D, h, w = z_e.shape
    d2 = squared_distances(z_e.permute(0, 2, 3, 1).reshape(-1, D), codebook)    # (B·h·w, K)
    return torch.softmax(-d2 / tau, -1).reshape(B, h, w, -1)


def ema_usage_logits(quantizer, alpha: float = 0.5) -> torch.Tensor:
    """(K,) logits log(N_k / (1 − γ) + α) of an EMA quantizer's running code counts (detached): the unigram
    prior a coder fitted to the codebook's current usage would use, and the prior of the VQ-VAE trainer's L_rate.

    N_k is a per-batch average over the EMA's window of about 1 / (1 − γ) batches, so N_k / (1 − γ) counts the
    window's tokens and α is the usual add-½ (Krichevsky–Trofimov) smoothing of those counts."""
    return (quantizer.cluster_size.detach().float() / (1 - quantizer.decay) + alpha).log()


def soft_rate_bits(q: torch.Tensor, prior) -> torch.Tensor:
    """Σ_i Σ_k q_i(k) (−log2 p(k)): the expected code length under a soft assignment q (…, K)."""
    lp = log2_prior(prior).to(q.device)
    return -(q.double() * lp).sum()


# ---- L_text-align --------------------------------------------------------------------------------------
class CLIPAligner:
    """Differentiable CLIP embeddings of images (N, 3, H, W) in [0, 1] and of texts, from a transformers
    ``CLIPModel`` and its processor (resize the short side and centre-crop to the model's size, normalise).
    :class:`~museumtok.metrics.distribution.CLIPScorer` gives the same embeddings without gradients."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor
        ip = processor.image_processor
        size = ip.crop_size if isinstance(ip.crop_size, int) else ip.crop_size["height"]
        self.size = int(size)
        self.mean = torch.tensor(ip.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(ip.image_std).view(1, 3, 1, 1)

    @classmethod
    def load(cls) -> "CLIPAligner":
        """From the CLIP model the package finds (raises MetricUnavailable with the missing files)."""
        from .metrics.distribution import clip_scorer

        s = clip_scorer()
        return cls(s.model, s.processor)

    @staticmethod
    def _feats(out) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, d)
        N, _, H, W = x.shape
        s = min(H, W)
        x = x[..., (H - s) // 2:(H - s) // 2 + s, (W - s) // 2:(W - s) // 2 + s]           # centre square
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bicubic", align_corners=False,
                          antialias=True)
        x = (x.clamp(0, 1) - self.mean.to(x)) / self.std.to(x)
        return self._feats(self.model.get_image_features(pixel_values=x))

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:  # N texts -> (N, d)
        enc = self.processor.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            return self._feats(self.model.get_text_features(input_ids=enc["input_ids"],
                                                            attention_mask=enc["attention_mask"]))


def text_align_loss(aligner, x_hat: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """mean_i (1 − cos(f_img(x̂_i), f_txt(t_i))): any ``aligner`` with ``embed_images`` / ``embed_texts``."""
    if len(texts) != len(x_hat):
        raise ValueError(f"{len(x_hat)} images but {len(texts)} captions")
    img = aligner.embed_images(x_hat)
    txt = aligner.embed_texts(texts).to(img)
    return (1 - F.cosine_similarity(img, txt, dim=-1)).mean()


# ---- the loss --------------------------------------------------------------------------------------------
class MultiTermLoss(nn.Module):
    """§7.2's L = L_rate + λ1 L_rec + λ2 L_perc + λ3 L_gan + λ4 L_text-align (see the module docstring).

    ``prior``: for L_rate (UnigramPrior, logits or a module); ``discriminator``: a PatchGAN for L_gan (called
    on x̂ in [-1, 1]); ``aligner``: ``"auto"`` (a CLIP model when one is cached, looked up only if λ4 > 0),
    None, or any object with ``embed_images`` / ``embed_texts``."""

    def __init__(self, config: MultiTermLossConfig | None = None, prior=None, discriminator: nn.Module | None = None,
                 aligner="auto"):
        super().__init__()
        self.config = config or MultiTermLossConfig()
        self.prior = prior
        self.discriminator = discriminator
        self._aligner = aligner
        self._aligner_reason = ""
        self._perc: tuple[str, str] | None = None

    # what each term is on this machine ---------------------------------------------------------------
    def perceptual(self) -> tuple[str, str]:
        """(name, note): "lpips-alex" or "1-ms-ssim", and why."""
        if self._perc is None:
            from .metrics.perceptual import lpips_available
            from .models.vqgan import perceptual_name

            name = perceptual_name(self.config.perceptual)
            ok, reason = lpips_available("alex")
            note = reason if name == "lpips-alex" else (
                "1 − MS-SSIM (structural, not LPIPS)" + ("" if ok or self.config.perceptual == "ms_ssim"
                                                        else f"; LPIPS n/a: {reason}"))
            self._perc = (name, note)
        return self._perc

    def aligner(self):
        """The text-image aligner, or None with ``_aligner_reason`` set."""
        if self._aligner == "auto":
            from .metrics.distribution import MetricUnavailable

            try:
                self._aligner = CLIPAligner.load()
            except MetricUnavailable as err:
                self._aligner, self._aligner_reason = None, f"CLIP n/a: {err}"
            except Exception as err:  # noqa: BLE001 — transformers missing or the folder broken: say so, skip
                self._aligner, self._aligner_reason = None, f"CLIP could not be loaded: {err}"
        elif self._aligner is None and not self._aligner_reason:
            self._aligner_reason = "no text aligner given"
        return self._aligner

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, indices: torch.Tensor | None = None, *,
                z_e: torch.Tensor | None = None, codebook: torch.Tensor | None = None,
                texts: Sequence[str] | None = None, vq_loss: torch.Tensor | None = None) -> MultiTermOutput:
        """x, x̂ (B, 3, H, W) in [0, 1]; indices (B, h, w) of x̂'s tokens; z_e (B, D, h, w) and codebook
        (K, D) for the soft rate; texts: B captions for L_text-align; vq_loss: the quantizer's loss."""
        cfg = self.config
        B, _, H, W = x.shape
        pixels = B * H * W
        out = MultiTermOutput(total=x_hat.new_zeros(()))
        compute: dict[str, Callable[[], torch.Tensor | None]] = {}

        def rate():
            if self.prior is None:
                return self._skip(out, "rate", "no prior given (a UnigramPrior, logits or a learned prior)")
            if indices is None:
                return self._skip(out, "rate", "no token indices given")
            hard = hard_rate_bits(indices, self.prior)
            out.logged["rate_hard_bpp"] = float(hard.detach()) / pixels
            out.logged["rate_bits_per_token"] = float(hard.detach()) / indices.numel()
            if cfg.rate == "hard":
                out.notes["rate"] = "bits of the argmin indices: no gradient to the encoder (trains a learned prior only)"
                return (hard / pixels).to(x_hat.dtype)
            if z_e is None or codebook is None:
                return self._skip(out, "rate", "rate='soft' needs z_e and the codebook")
            out.notes["rate"] = f"expected bits under softmax(−‖z_e − e_k‖²/{cfg.tau:g}) (a surrogate of the hard bits)"
            return (soft_rate_bits(soft_assignment(z_e, codebook, cfg.tau), self.prior) / pixels).to(x_hat.dtype)

        def rec():
            out.notes["rec"] = cfg.rec
            return (x_hat - x).abs().mean() if cfg.rec == "l1" else F.mse_loss(x_hat, x)

        def perc():
            from .models.vqgan import perceptual_loss

            name, note = self.perceptual()
            out.notes["perc"] = note
            return perceptual_loss(x_hat, x, name).to(x_hat.dtype)

        def gan():
            if self.discriminator is None:
                return self._skip(out, "gan", "no discriminator given")
            from .models.discriminator import hinge_g_loss

            out.notes["gan"] = "hinge generator loss −mean D(x̂) of the PatchGAN"
            return hinge_g_loss(self.discriminator(x_hat * 2 - 1))

        def text_align():
            if texts is None:
                return self._skip(out, "text_align", "no captions given")
            a = self.aligner()
            if a is None:
                return self._skip(out, "text_align", self._aligner_reason)
            out.notes["text_align"] = "1 − cos(image of x̂, caption) in the aligner's embedding"
            return text_align_loss(a, x_hat, texts).to(x_hat.dtype)

        compute.update(rate=rate, rec=rec, perc=perc, gan=gan, text_align=text_align)
        for name in TERMS:
            w = cfg.weight(name)
            if w == 0:
                continue
            value = compute[name]()
            if value is None:
                continue
            out.terms[name] = value
            out.weighted[name] = w * value
            out.total = out.total + out.weighted[name]
        if vq_loss is not None and cfg.vq_weight != 0:
            out.terms["vq"] = vq_loss
            out.weighted["vq"] = cfg.vq_weight * vq_loss
            out.total = out.total + out.weighted["vq"]
        return out

    @staticmethod
    def _skip(out: MultiTermOutput, name: str, reason: str) -> None:
        out.skipped[name] = reason
        return None


__all__ = ["MultiTermLoss", "MultiTermLossConfig", "MultiTermOutput", "LearnedUnigramPrior", "CLIPAligner",
           "prior_logits", "log2_prior", "hard_rate_bits", "soft_assignment", "ema_usage_logits", "soft_rate_bits", "text_align_loss",
           "TERMS"]
