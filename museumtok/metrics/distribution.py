"""FID, KID and CLIPScore (§3.4, §9.1, §9.3 step 3): for users whose machine has the weights.

- **FID** (Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter, "GANs trained by a two time-scale
  update rule converge to a local Nash equilibrium", NeurIPS 2017, arXiv:1706.08500): fit a Gaussian
  to each set's features, d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½).
- **KID** (Bińkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs", ICLR 2018,
  arXiv:1801.01401): the unbiased estimate of the squared maximum mean discrepancy (MMD²) under the
  polynomial kernel k(x, y) = (xᵀy / d + 1)³; unlike FID it has no bias that depends on the set size.
  Originals against *their own* reconstructions are paired samples: there the cross term leaves out
  the pairs (x_i, x̂_i), as in Gretton et al.'s MMD²_u (JMLR 2012), see :func:`mmd2_unbiased`.
- **CLIPScore** (Hessel, Holtzman, Forbes, Le Bras & Choi, "CLIPScore: a reference-free evaluation
  metric for image captioning", EMNLP 2021, arXiv:2104.08718): w · max(cos(E_image, E_text), 0). The
  paper uses w = 2.5; we report w = 100, as torchmetrics does.

The math takes features from *any* extractor (a callable (N, 3, H, W) in [0, 1] -> (N, D)), so it is
tested offline with a tiny stand-in network and checked against torchmetrics. The real extractors
are only built from weights already on disk (nothing is downloaded):

- FID/KID: the 2015-12-05 TensorFlow Inception-v3 ported to PyTorch, 2048-d pool features, as
  torch-fidelity (and torchmetrics through it) computes them; the file
  ``weights-inception-2015-12-05-6726825d.pth`` must be in the torch hub checkpoints folder and is read
  with ``torch.load(weights_only=True)``;
- CLIPScore: a CLIP model folder (``transformers``' ``CLIPModel`` + its processor), by default
  ``openai/clip-vit-large-patch14`` from the Hugging Face cache, or ``$MUSEUMTOK_CLIP`` (a folder or
  Hub id), read offline.

When they are absent, :class:`MetricUnavailable` (and the ``*_available`` functions) say which file
is missing and where it goes, like LPIPS. A caution the bench repeats: on a few dozen images a 2048-d
Gaussian fit is rank-deficient and FID is biased upwards; compare FID only between rows of the same
set and size, and prefer KID on small sets.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

#: CLIPScore's weight w (torchmetrics' scale; Hessel et al. use 2.5)
CLIP_W = 100.0
DEFAULT_CLIP = "clip-vit-large-patch14"      # key of museumtok.weights.KNOWN
_LOCK = threading.Lock()


class MetricUnavailable(RuntimeError):
    """FID/KID or CLIPScore cannot run here: the message names the missing file or package."""


# ------------------------------------------------------------------------------------------- FID
def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
    f = features.double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N ≥ 2, got {tuple(f.shape)}")
    mu = f.mean(0)
    a = f - mu                                        # (N, D) centred
    return mu, a.T @ a / (f.shape[0] - 1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """d² between N(μ₁, Σ₁) and N(μ₂, Σ₂): ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Σᵢ √λᵢ(Σ₁Σ₂).

    Σ₁Σ₂ is a product of two PSD matrices, so its eigenvalues are real and ≥ 0 (up to rounding);
    Tr (Σ₁Σ₂)^½ is the sum of their square roots.
    """
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    ev = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0)
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * ev.sqrt().sum())


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N₁, D) and (N₂, D).

    When there are fewer images than feature dimensions (always, on our sets) it uses the same
    formula through the small matrices: with A the centred features, Σ = AᵀA / (N − 1), and the
    eigenvalues of Σ₁Σ₂ are the squared singular values of A₁A₂ᵀ / √((N₁−1)(N₂−1)), so
    Tr (Σ₁Σ₂)^½ is the nuclear norm of that N₁×N₂ matrix. Exact, and O(N₁N₂D) instead of O(D³).
    """
    r, f = real.double(), fake.double()
    n1, n2, d = r.shape[0], f.shape[0], r.shape[1]
    if min(n1, n2) < 2:
        raise ValueError("FID needs at least 2 images in each set")
    if max(n1, n2) >= d:
        return frechet_distance(*gaussian_fit(r), *gaussian_fit(f))
    a1, a2 = r - r.mean(0), f - f.mean(0)
    c1, c2 = n1 - 1, n2 - 1
    cross = torch.linalg.matrix_norm(a1 @ a2.T, ord="nuc") / (c1 * c2) ** 0.5
    return float((r.mean(0) - f.mean(0)).square().sum() + a1.square().sum() / c1 + a2.square().sum() / c2 - 2 * cross)


# ------------------------------------------------------------------------------------------- KID
def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0) -> torch.Tensor:
    """k(x, y) = (γ xᵀy + c)^degree for all pairs, γ = 1/D by default: (N, D), (M, D) -> (N, M)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, paired: bool = False, **kernel) -> float:
    """Unbiased MMD²: mean of k over distinct pairs within x and within y, minus twice the cross mean.

    ``paired=False`` (independent samples): the cross mean is over all N·M pairs, as in Bińkowski et
    al.'s code and torchmetrics. ``paired=True`` (y[i] is a reconstruction of x[i]): the cross mean
    leaves out the N pairs (x_i, y_i), as Gretton et al.'s U-statistic MMD²_u does ("A kernel
    two-sample test", JMLR 2012, Lemma 6); otherwise those pairs, closer than two different images,
    push the estimate below 0 for good reconstructions.
    """
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    if min(n, m) < 2:
        raise ValueError("KID needs at least 2 images in each set")
    if paired and n != m:
        raise ValueError(f"paired MMD² needs equal set sizes, got {n} and {m}")
    kxx, kyy, kxy = polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel), polynomial_kernel(x, y, **kernel)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    xy = (kxy.sum() - kxy.diagonal().sum()) / (n * (n - 1)) if paired else kxy.mean()
    return float(xx + yy - 2 * xy)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = 1, subset_size: int | None = None,
                      seed: int = 0, paired: bool = False, **kernel) -> tuple[float, float | None]:
    """KID (mean, std over subsets). Default: one estimate on the full sets (deterministic, std None);
    with ``subset_size`` below the set sizes, ``subsets`` random draws as in Bińkowski et al.
    ``paired``: fake[i] reconstructs real[i] (see :func:`mmd2_unbiased`; full sets only)."""
    if subset_size is None:
        return mmd2_unbiased(real, fake, paired=paired, **kernel), None
    size = min(int(subset_size), real.shape[0], fake.shape[0])
    g = torch.Generator().manual_seed(seed)
    vals = torch.tensor([mmd2_unbiased(real[torch.randperm(real.shape[0], generator=g)[:size]],
                                       fake[torch.randperm(fake.shape[0], generator=g)[:size]], **kernel)
                         for _ in range(subsets)])
    return float(vals.mean()), float(vals.std(unbiased=False))


def standin_features(dim: int = 64, seed: int = 0) -> FeatureFn:
    """A fixed random conv net, (N, 3, H, W) in [0, 1] -> (N, ``dim``): a stand-in for the Inception so
    the FID/KID code runs on any machine. Its numbers show the formulas at work; they are not FIDs."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(32, 3, 5, 5, generator=g) / (3 * 25) ** 0.5
    w2 = torch.randn(dim, 32, 3, 3, generator=g) / (32 * 9) ** 0.5

    @torch.no_grad()
    def fn(x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.nn.functional.conv2d(x.float() * 2 - 1, w1, stride=2))   # (N, 32, H/2, W/2)
        h = torch.relu(torch.nn.functional.conv2d(h, w2, stride=2))                   # (N, dim, H/4, W/4)
        return h.mean((2, 3)).double()                                                 # (N, dim)

    return fn


# ---------------------------------------------------------------------------- the real extractors
def fid_available() -> tuple[bool, str]:
    """(available, reason): torch-fidelity's Inception and its weights file in the torch hub cache."""
    import importlib.util

    from .. import weights as W

    if importlib.util.find_spec("torch_fidelity") is None:
        return False, "needs the Python package torch-fidelity (pip install torch-fidelity) for the FID Inception network"
    p = W.locate("fid-inception")
    if p is None:
        return False, W.missing_reason("fid-inception")
    return True, f"FID/KID Inception weights found at {p}"


@lru_cache(maxsize=1)
def _inception(path: str):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    state = torch.load(path, map_location="cpu", weights_only=True)   # tensors only, never an arbitrary pickle
    with _LOCK:   # hand the checked state dict to torch-fidelity instead of letting it fetch or unpickle
        orig = fe.load_state_dict_from_url
        fe.load_state_dict_from_url = lambda *a, **k: state
        try:
            net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        finally:
            fe.load_state_dict_from_url = orig
    return net.eval()


def inception_features() -> FeatureFn:
    """(N, 3, H, W) in [0, 1] -> (N, 2048) Inception pool features (resized to 299 px inside, as in TF)."""
    ok, reason = fid_available()
    if not ok:
        raise MetricUnavailable(reason)
    from .. import weights as W

    net = _inception(str(W.locate("fid-inception")))

    @torch.no_grad()
    def fn(x: torch.Tensor) -> torch.Tensor:
        u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return net(u8)[0].double()

    return fn


def _clip_folder() -> tuple[Path | None, str]:
    """The CLIP folder to use and a reason when there is none."""
    from .. import weights as W

    spec = os.environ.get("MUSEUMTOK_CLIP", "").strip()
    if spec:
        p = Path(spec).expanduser()
        if p.is_dir():
            return (p, "") if (p / "config.json").is_file() else (None, f"MUSEUMTOK_CLIP={spec} has no config.json")
        folder = W.hf_snapshot_folder(spec)
        return (folder, "") if folder else (None, f"needs the CLIP model {spec} (MUSEUMTOK_CLIP) in the Hugging Face "
                                                    f"cache {W.hf_hub_cache()} (config.json + weights)")
    folder = W.locate(DEFAULT_CLIP)
    return (folder, "") if folder else (None, W.missing_reason(DEFAULT_CLIP))


def clip_available() -> tuple[bool, str]:
    folder, reason = _clip_folder()
    return (True, f"CLIP found at {folder}") if folder else (False, reason)


@dataclass
class CLIPScorer:
    """CLIPScore with one CLIP model: ``score(images, texts)`` -> (N,) w · max(cos, 0)."""

    model: object       # transformers CLIPModel, eval mode
    processor: object   # its CLIPProcessor (resize, crop, normalise; tokenizer)
    w: float = CLIP_W   # the score's weight (100 as torchmetrics; 2.5 in Hessel et al.)

    @staticmethod
    def _feats(out) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output   # transformers 5 returns a ModelOutput

    @torch.no_grad()
    def cosines(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] and N texts -> (N,) cosine similarity of the CLIP embeddings."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        pixels = [(im.clamp(0, 1) * 255).round().to(torch.uint8) for im in images]
        enc = self.processor(text=list(texts), images=pixels, return_tensors="pt", padding=True, truncation=True)
        img = self._feats(self.model.get_image_features(pixel_values=enc["pixel_values"]))
        txt = self._feats(self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))
        return torch.nn.functional.cosine_similarity(img.double(), txt.double(), dim=-1)

    def score(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        return self.w * self.cosines(images, texts).clamp(min=0)


@lru_cache(maxsize=2)
def _clip(folder: str) -> CLIPScorer:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    return CLIPScorer(model, CLIPProcessor.from_pretrained(folder, local_files_only=True))


def clip_scorer() -> CLIPScorer:
    folder, reason = _clip_folder()
    if folder is None:
        raise MetricUnavailable(reason)
    return _clip(str(folder))


# ------------------------------------------------------------------------------------------ bench
def distribution_status() -> dict[str, dict]:
    """{"fid": {"available", "reason"}, "clipscore": {...}}, as the bench records and prints it."""
    out = {}
    for key, fn in (("fid", fid_available), ("clipscore", clip_available)):
        ok, reason = fn()
        out[key] = {"available": ok, "reason": reason}
    return out


def caption(entry) -> str | None:
    """The text a catalog image is scored against: its title and artist (None for Kodak: no caption)."""
    if getattr(entry, "collection", None) != "artworks":
        return None
    return f"{entry.title}, by {entry.artist}"


@torch.no_grad()
def distribution_metrics(x: torch.Tensor, x_hat: torch.Tensor, texts: Sequence[str | None] | None = None,
                         features: FeatureFn | None = None, clip: CLIPScorer | None = None) -> dict:
    """FID, KID (originals vs reconstructions) and CLIPScore (reconstructions and originals vs texts).

    ``x`` and ``x_hat`` are (N, 3, S, S) in [0, 1]. A metric whose extractor is None is left out.
    """
    out: dict = {}
    if features is not None and len(x) >= 2:
        fr, ff = features(x), features(x_hat)
        out["fid"] = fid_from_features(fr, ff)
        out["kid"], _ = kid_from_features(fr, ff, paired=len(fr) == len(ff))
    if clip is not None and texts is not None:
        keep = [i for i, t in enumerate(texts) if t]
        if keep:
            t = [texts[i] for i in keep]
            out["clipscore"] = float(clip.score(x_hat[keep], t).mean())
            out["clipscore_original"] = float(clip.score(x[keep], t).mean())
    return out


__all__ = ["MetricUnavailable", "standin_features", "gaussian_fit", "frechet_distance", "fid_from_features", "polynomial_kernel",
           "mmd2_unbiased", "kid_from_features", "fid_available", "inception_features", "clip_available",
           "clip_scorer", "CLIPScorer", "distribution_status", "distribution_metrics", "caption", "CLIP_W"]
