"""Which catalog artwork is this? Retrieval from image tokens (review §1 "unified RAG", §11).

A bag of visual words (Sivic & Zisserman, "Video Google", ICCV 2003): the image's token indices
become a histogram over the K codewords, weighted by TF-IDF, compared by cosine similarity with
every catalog work's. A 2×2 spatial pyramid (Lazebnik et al., CVPR 2006) adds coarse layout:

    image ─tok.encode(M)─► indices (h, w) ─► [hist(all), hist(top-left), …, hist(bottom-right)]
          ─► tf-idf ─► L2-normalise ─► cosine with the catalog matrix (N, 5K) ─► top-1, margin

Histograms ignore where a patch sits, so they survive crops, rescaling and re-compression better
than comparing token sequences position by position (also provided, for comparison).
The match's catalog card goes into the prompt; under ``threshold`` the desk says it does not know
the work (and the chat may route to a fallback backend).
"""
from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass

import torch
from PIL import Image

from ..data.catalog import CatalogEntry, DataNotFound, load_catalog
from ..data.images import load_image
from ..paths import cache_dir


def histogram_features(indices: torch.Tensor, K: int, pyramid: bool = True) -> torch.Tensor:
    """(h, w) indices -> (K,) or (5K,) counts: whole image, then the four quadrants."""
    grid = indices if indices.ndim == 2 else indices.reshape(1, -1)
    feats = [torch.bincount(grid.reshape(-1), minlength=K).float()]
    if pyramid and grid.shape[0] >= 2 and grid.shape[1] >= 2:
        h2, w2 = grid.shape[0] // 2, grid.shape[1] // 2
        for q in (grid[:h2, :w2], grid[:h2, w2:], grid[h2:, :w2], grid[h2:, w2:]):
            feats.append(torch.bincount(q.reshape(-1), minlength=K).float())
    elif pyramid:
        feats += [torch.zeros(K)] * 4
    return torch.cat(feats)


@dataclass
class Match:
    entry: CatalogEntry | None   # None when the best score is under the threshold
    score: float                 # cosine similarity of the best match
    margin: float                # best minus second best
    ranked: list[tuple[str, float]]  # (catalog id, score), best first (top 5)

    @property
    def card(self) -> str | None:
        return None if self.entry is None else self.entry.card()

    def message(self, threshold: float) -> str:
        if self.entry is not None:
            return f"Recognised **{self.entry.title}** ({self.entry.artist}), similarity {self.score:.2f}."
        return (f"This work is not in the catalog as far as the tokens tell (best similarity {self.score:.2f} "
                f"< {threshold:.2f}); the guide answers without a catalog card.")


class CatalogIndex:
    """TF-IDF histograms of every catalog artwork present on this machine."""

    def __init__(self, tokenizer, M: int, ids: list[str], counts: torch.Tensor, pyramid: bool = True):
        self.tokenizer, self.M, self.ids, self.pyramid = tokenizer, M, ids, pyramid
        self.entries = {e.id: e for e in load_catalog()}
        df = (counts[:, : tokenizer.K] > 0).float().sum(0)                       # document frequency per codeword
        self.idf = torch.log((1 + len(ids)) / (1 + df)) + 1                       # (K,)
        self.matrix = self._weigh(counts)                                          # (N, F)

    def _weigh(self, counts: torch.Tensor) -> torch.Tensor:
        idf = self.idf.repeat(counts.shape[-1] // self.idf.numel())
        x = counts * idf
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @classmethod
    def build(cls, tokenizer, M: int = 1024, collection: str = "artworks", pyramid: bool = True,
              entries: list[CatalogEntry] | None = None, use_cache: bool = True) -> "CatalogIndex":
        entries = entries if entries is not None else load_catalog(collection=collection)
        present = []
        for e in entries:
            try:
                present.append((e, e.find()))
            except DataNotFound:
                continue
        if not present:
            raise DataNotFound("no catalog image found: run `museumtok data fetch` or set MUSEUMTOK_DATA")
        key = hashlib.sha256((f"{tokenizer.name}|{M}|{pyramid}|" + ",".join(e.sha256 for e, _ in present)).encode())
        path = cache_dir("retrieval") / f"{tokenizer.name}-M{M}-{key.hexdigest()[:16]}.pt"
        if use_cache and path.exists():
            from safetensors.torch import load_file

            counts = load_file(str(path))["counts"]
        else:
            counts = torch.stack([histogram_features(tokenizer.encode(load_image(p).image, M).indices,
                                                     tokenizer.K, pyramid) for _, p in present])
            if use_cache:
                from safetensors.torch import save_file

                save_file({"counts": counts.contiguous()}, str(path))
        return cls(tokenizer, M, [e.id for e, _ in present], counts, pyramid)

    def features(self, image) -> torch.Tensor:
        t = self.tokenizer.encode(image, self.M)
        return self._weigh(histogram_features(t.indices, self.tokenizer.K, self.pyramid)[None])[0]

    def query(self, image, threshold: float = 0.0, exclude: str | None = None) -> Match:
        sims = self.matrix @ self.features(image)                                 # (N,)
        if exclude is not None and exclude in self.ids:
            sims[self.ids.index(exclude)] = -1
        order = sims.argsort(descending=True).tolist()
        best, second = float(sims[order[0]]), float(sims[order[1]]) if len(order) > 1 else 0.0
        entry = self.entries.get(self.ids[order[0]]) if best >= threshold else None
        return Match(entry, best, best - second, [(self.ids[i], float(sims[i])) for i in order[:5]])


# ---- the held-out queries: crops, rescaled and re-encoded copies ------------------------------------
def perturb(img: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A modified copy of a catalog image, as a visitor's photo might be."""
    img = img.convert("RGB")
    w, h = img.size
    if kind in ("crop", "crop+jpeg"):
        f = rng.uniform(0.7, 0.9)
        cw, ch = int(w * f), int(h * f)
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x0, y0, x0 + cw, y0 + ch))
    if kind == "rescale":
        s = rng.uniform(0.3, 0.6)
        img = img.resize((max(16, int(w * s)), max(16, int(h * s))), Image.BICUBIC)
    if kind in ("jpeg", "crop+jpeg"):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(15, 40))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "webp":
        buf = io.BytesIO()
        img.save(buf, "WEBP", quality=rng.randint(10, 30))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


PERTURBATIONS = ("crop", "rescale", "jpeg", "webp", "crop+jpeg")


def evaluate(index: CatalogIndex, kinds=PERTURBATIONS, n: int | None = None, seed: int = 0) -> dict[str, dict]:
    """Top-1 accuracy of :meth:`CatalogIndex.query` on perturbed copies of the indexed works.

    Also reports the best-score distribution of *unknown* images (other works left out of the
    index with ``exclude``), which sets a sensible threshold."""
    rng = random.Random(seed)
    ids = index.ids if n is None else rng.sample(index.ids, min(n, len(index.ids)))
    out = {}
    for kind in kinds:
        hits, scores = 0, []
        for cid in ids:
            img = load_image(index.entries[cid].find()).image
            m = index.query(perturb(img, kind, rng))
            hits += m.ranked[0][0] == cid
            scores.append(m.score)
        out[kind] = {"top1": hits / len(ids), "n": len(ids), "median_score": sorted(scores)[len(scores) // 2]}
    unknown = []
    for cid in ids:
        img = load_image(index.entries[cid].find()).image
        unknown.append(index.query(perturb(img, "jpeg", rng), exclude=cid).score)
    out["unknown"] = {"n": len(ids), "median_score": sorted(unknown)[len(unknown) // 2], "max_score": max(unknown)}
    return out
