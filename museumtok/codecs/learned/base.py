"""What the learned codecs share: the bitstream header, padding, reproducible decoding, and the
:class:`museumtok.codecs.base.Codec` contract (``compress(x) -> EncodedImage``, ``decompress(bytes) -> x̂``).

Bitstream = 5-byte header (format id, height, width as little-endian uint16) + the range coder's
32-bit words. Its length is the rate the RD plots report, header included.

Reproducibility: the decoder-side networks (h_s, which picks the integer tables, and g_s, which makes
the pixels) run in float64 on both the encoder and the decoder, so thread count or summation order
changes their outputs by ~1e-15 instead of ~1e-6, far below what could move a table index or an
8-bit pixel; the tables themselves are integers stored in the checkpoint.
"""
from __future__ import annotations

import copy
import struct
from abc import abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...entropy.coding import TableDecoder, TableEncoder
from ..base import Codec, EncodedImage

HEADER = struct.Struct("<BHH")

#: CompressAI's λ for quality 1..8 (MSE models): our checkpoints are trained on the same ladder, so the
#: reference points line up (``hyperprior-q3`` and CompressAI's ``bmshj2018-hyperprior`` quality 3 share λ).
QUALITY_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}



def check_image(x: torch.Tensor) -> torch.Tensor:
    """One RGB image (3, H, W) (a batch of one is unwrapped) whose sides fit the 16-bit bitstream header."""
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected one RGB image (3, H, W) in [0, 1], got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h > 65535 or w > 65535:
        raise ValueError(f"image {w}×{h} is too large for the 16-bit header")
    return x

class BitstreamError(ValueError):
    pass


def float64_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).double().eval()


class LearnedCodec(nn.Module, Codec):
    #: images are padded to a multiple of this (2 ** number of stride-2 layers)
    divisor: int = 16
    #: first header byte, tells models apart
    format_id: int = 0

    # ---- to implement --------------------------------------------------------------------------
    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict:
        """(B, 3, H, W) -> {"x_hat": ..., "likelihoods": {"y": ..., "z": ...}} (noise while training)."""

    @abstractmethod
    def _compress_latents(self, enc: TableEncoder, x: torch.Tensor) -> dict:
        """Write the latents of a padded (1, 3, H, W) image; return the quantized latents."""

    @abstractmethod
    def _decompress_latents(self, dec: TableDecoder, hp: int, wp: int) -> torch.Tensor:
        """Read the latents for a padded hp×wp image; return x̂ (1, 3, hp, wp), float64."""

    @abstractmethod
    def entropy_modules(self) -> list[nn.Module]:
        ...

    # ---- shared --------------------------------------------------------------------------------
    def update(self) -> None:
        """Freeze the integer probability tables (call after training, before saving)."""
        for m in self.entropy_modules():
            m.update()

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> replicate-padded to multiples of ``divisor``."""
        h, w = x.shape[-2:]
        d = self.divisor
        ph, pw = (-h) % d, (-w) % d
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def _check_image(self, x: torch.Tensor) -> torch.Tensor:
        return check_image(x)

    @torch.no_grad()
    def compress(self, x: torch.Tensor, **params) -> EncodedImage:
        """(3, H, W) in [0, 1] -> EncodedImage whose ``data`` is the complete bitstream."""
        if params:
            raise ValueError(f"{type(self).__name__}.compress takes no parameters (the rate is set by the checkpoint's λ), got {sorted(params)}")
        x = self._check_image(x)
        h, w = x.shape[-2:]
        enc = TableEncoder()
        self._compress_latents(enc, self.pad(x.float().unsqueeze(0)))
        words = np.asarray(enc.words(), dtype="<u4")
        data = HEADER.pack(self.format_id, h, w) + words.tobytes()
        return EncodedImage(data, getattr(self, "name", type(self).__name__), h, w, {})

    @torch.no_grad()
    def decompress(self, enc: EncodedImage | bytes) -> torch.Tensor:
        """bitstream -> (3, H, W) in [0, 1], 8-bit values (i/255)."""
        data = enc.data if isinstance(enc, EncodedImage) else bytes(enc)
        if len(data) < HEADER.size or (len(data) - HEADER.size) % 4:
            raise BitstreamError(f"not a {type(self).__name__} bitstream ({len(data)} bytes)")
        fid, h, w = HEADER.unpack_from(data)
        if fid != self.format_id:
            raise BitstreamError(f"bitstream format {fid} is not {type(self).__name__}'s ({self.format_id})")
        words = np.frombuffer(data, dtype="<u4", offset=HEADER.size).astype(np.uint32)
        d = self.divisor
        hp, wp = -(-h // d) * d, -(-w // d) * d
        x_hat = self._decompress_latents(TableDecoder(words), hp, wp)[0, :, :h, :w]
        return to_8bit(x_hat)

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor) -> dict[str, float]:
        """−Σ log2 P of the rounded latents under the continuous model (no bitstream written)."""
        was = self.training
        self.eval()
        out = self(self.pad(self._check_image(x).float().unsqueeze(0)))
        self.train(was)
        return {k: float(-torch.log2(v.double()).sum()) for k, v in out["likelihoods"].items()}


def bits_per_pixel_map(bits: dict[str, tuple[torch.Tensor, int]], height: int, width: int) -> torch.Tensor:
    """Spread each latent element's bits over the s×s pixels it covers: a (height, width) bits-per-pixel map.

    ``bits`` maps names to ((1, C, h, w) bits per element, stride s). Over the padded image the map
    sums to the total bits, so it shows where the bits go.
    """
    total = 0
    for b, s in bits.values():
        per_loc = b.double().sum(1, keepdim=True) / (s * s)                 # (1, 1, h, w) bits per pixel
        total = total + F.interpolate(per_loc, scale_factor=s, mode="nearest")[0, 0]   # (h·s, w·s)
    return total[:height, :width]


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """float image -> the 8-bit image a viewer sees, as float32 i/255."""
    return (torch.round(x.clamp(0, 1) * 255) / 255).float()
