"""The one contract every image tokenizer follows.

    tok = museumtok.load("lloyd-patch-k1024")
    t = tok.encode(image, M=256)        # PIL / path / bytes / (3,H,W) tensor
    t.indices                           # (h, w) grid or (M,) sequence of ints in [0, K)
    t.boxes                             # (M, 4) patch box of each token in the original's pixels
    t.bits_raw, t.bits_coded            # M·log2 K; entropy-coded where a prior exists
    x_hat = tok.decode(t)               # (3, S, S), the working image's size
    tok.supported_M

Subclasses implement the batch API on working-size tensors, ``encode_tensor`` and
``decode_indices``; the base class handles image inputs, the working crop, boxes, bits and timing.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..data.images import ImageLike, WorkingImage, as_pil, working_image
from ..metrics.rate import raw_token_bits


class UnsupportedM(ValueError):
    """A token count M this tokenizer cannot produce; the message lists the ones it can (``key``/``params``
    let the app say it in the visitor's language)."""

    def __init__(self, message: str, key: str | None = None, **params):
        super().__init__(message)
        self.key, self.params = key, params


@dataclass
class TokenizedImage:
    """Tokens of one image plus everything needed to decode, cite and audit them."""

    indices: torch.Tensor                  # (h, w) grid or (M,) sequence, int64 in [0, K)
    K: int                                 # codebook size
    tokenizer: str                         # registry name
    working: WorkingImage                  # the crop the tokenizer saw (its .x is the reference)
    boxes: torch.Tensor                    # (M, 4) xyxy boxes in the original image's pixels
    bits_coded: float | None = None        # entropy-coded bits, when the tokenizer has a prior
    levels: list[str] | None = None        # per-token level name for multi-scale tokenizers
    encode_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def M(self) -> int:
        return int(self.indices.numel())

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.indices.shape)

    @property
    def bits_raw(self) -> float:
        return raw_token_bits(self.M, self.K)

    @property
    def bits(self) -> float:
        """Bits this image costs: entropy-coded when available, otherwise raw."""
        return self.bits_coded if self.bits_coded is not None else self.bits_raw

    @property
    def working_size(self) -> int:
        return self.working.size

    def flat(self) -> torch.Tensor:
        return self.indices.reshape(-1)

    def token_records(self) -> list[dict]:
        """One JSON-ready record per token (index, token id, patch box, level), in sequence order."""
        levels = self.levels or ["base"] * self.M
        return [
            {"position": i, "token": int(k), "patch": [int(v) for v in self.boxes[i]], "level": levels[i]}
            for i, k in enumerate(self.flat().tolist())
        ]


class Tokenizer(ABC):
    """Base class: image in, discrete tokens out, and back."""

    #: registry name, set by :func:`museumtok.registry.load`
    name: str = "tokenizer"

    @property
    @abstractmethod
    def K(self) -> int:  # noqa: N802 (paper symbol)
        """Codebook size."""

    @property
    @abstractmethod
    def supported_M(self) -> tuple[int, ...]:
        """Token counts this tokenizer can produce, ascending."""

    @property
    def default_M(self) -> int:
        s = self.supported_M
        return 256 if 256 in s else s[len(s) // 2]

    @abstractmethod
    def working_size(self, M: int) -> int:
        """Side in pixels of the square working image used to produce M tokens."""

    @abstractmethod
    def encode_tensor(self, x: torch.Tensor, M: int) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> indices (B, h, w) or (B, M)."""

    @abstractmethod
    def decode_indices(self, indices: torch.Tensor, M: int) -> torch.Tensor:
        """indices (B, h, w) or (B, M) -> (B, 3, S, S) in [0, 1]."""

    # ---- shared machinery -------------------------------------------------------------------
    def check_M(self, M: int | None) -> int:
        if M is None:
            return self.default_M
        try:
            M = int(M)
        except (TypeError, ValueError):
            raise UnsupportedM(f"M must be a whole number, got {M!r}", "m_not_int", got=repr(M)) from None
        if M not in self.supported_M:
            s = self.supported_M
            listed = f"{s[0]}…{s[-1]}" if len(s) > 12 else ", ".join(map(str, s))
            raise UnsupportedM(f"{self.name} cannot produce M={M} tokens; choose one of {listed}", "m_unsupported",
                               name=self.name, M=M, listed=listed)
        return M

    def token_boxes(self, indices_shape: Sequence[int], size: int) -> torch.Tensor:
        """(M, 4) xyxy boxes in working pixels; default: a row-major grid of equal patches."""
        if len(indices_shape) != 2:
            raise NotImplementedError("1-D tokenizers must define token_boxes")
        h, w = indices_shape
        ph, pw = size / h, size / w
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return torch.stack([xs * pw, ys * ph, (xs + 1) * pw, (ys + 1) * ph], -1).reshape(-1, 4)

    #: {M: UnigramPrior} fitted on the training split, read from the checkpoint's ``prior.json``
    #: (:mod:`museumtok.tokenizers.prior`); empty when the tokenizer carries none
    priors: dict = {}

    def load_priors(self, directory) -> None:
        """Read the checkpoint folder's ``prior.json`` (if any); called by :func:`museumtok.registry.load`."""
        from .prior import read_tokenizer_prior

        self.priors = read_tokenizer_prior(directory)

    def entropy_bits(self, indices: torch.Tensor) -> float | None:
        """Bits of these indices range-coded under the tokenizer's prior at M = indices.numel()
        (the ideal code length of the coder's integer table), or None without a prior for that M."""
        prior = self.priors.get(int(indices.numel()))
        return None if prior is None else prior.bits(indices.reshape(-1).long().cpu().numpy())

    @torch.no_grad()
    def encode(self, image: ImageLike, M: int | None = None) -> TokenizedImage:
        M = self.check_M(M)
        wi = working_image(as_pil(image), self.working_size(M))
        t0 = time.perf_counter()
        idx = self.encode_tensor(wi.x.unsqueeze(0), M)[0]
        ms = (time.perf_counter() - t0) * 1e3
        boxes = wi.to_original(self.token_boxes(tuple(idx.shape), wi.size))
        return TokenizedImage(idx.long().cpu(), self.K, self.name, wi, boxes,
                              bits_coded=self.entropy_bits(idx), encode_ms=ms,
                              levels=self.token_levels(M))

    def token_levels(self, M: int) -> list[str] | None:
        return None

    @torch.no_grad()
    def decode(self, tokens: TokenizedImage) -> torch.Tensor:
        M = self.check_M(tokens.M)
        x = self.decode_indices(tokens.indices.unsqueeze(0), M)[0]
        return x.clamp(0, 1)

    def bits_per_token(self) -> float:
        return math.log2(self.K)


class ModelTokenizer(Tokenizer):
    """A tokenizer that wraps one ``PyTorchModelHubMixin`` network (``model_cls``): loading, saving
    (config.json + model.safetensors, never a pickle) and eval mode are the network's."""

    model_cls: type = None

    def __init__(self, model):
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls(cls.model_cls.from_pretrained(str(path), **kwargs))

    def save_pretrained(self, path) -> None:
        self.model.save_pretrained(str(path))

    def eval(self):
        self.model.eval()
        return self
