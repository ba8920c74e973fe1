"""CompressAI's pretrained learned codecs beside ours (§5.1–5.2), read from the torch hub cache.

CompressAI (Bégaint, Racapé, Feltman & Pushparaja, "CompressAI: a PyTorch library and evaluation
platform for end-to-end compression research", arXiv:2011.03029) publishes MSE-trained weights for:

- ``bmshj2018-factorized``: factorized prior, Ballé, Minnen, Singh, Hwang & Johnston, "Variational
  image compression with a scale hyperprior", ICLR 2018, arXiv:1802.01436 (its baseline model);
- ``bmshj2018-hyperprior``: the scale hyperprior of the same paper;
- ``mbt2018-mean``: mean-scale hyperprior, Minnen, Ballé & Toderici, "Joint autoregressive and
  hierarchical priors for learned image compression", NeurIPS 2018, arXiv:1809.02736 (without the
  autoregressive context);
- ``cheng2020-anchor``: Cheng, Sun, Takeuchi & Katto, "Learned image compression with discretized
  Gaussian mixture likelihoods and attention modules", CVPR 2020, arXiv:2001.01568 (the anchor:
  residual blocks, a Gaussian conditional and the autoregressive context of mbt2018).

Nothing is downloaded: the file ``compressai/zoo/image.py`` would fetch (``model_urls[arch]["mse"][q]``)
must already be in ``<torch hub dir>/checkpoints`` (``museumtok weights add FILE`` puts it there). It is
read with ``torch.load(weights_only=True)`` (tensors only, never an arbitrary pickle), its keys are
renamed as CompressAI's ``load_pretrained`` does, and the network is rebuilt with ``from_state_dict``,
which infers the channel counts (N, M) from the weights.

Bitstream: the 5-byte header of our learned codecs (format id, height, width), the latent grid of the
first string group (2 × uint16), then each string group (y, and z for hyperpriors) as a uint32 length
and CompressAI's rANS bytes. Its length, header included, is the rate reported everywhere.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .base import Codec, EncodedImage
from .learned.base import HEADER, QUALITY_LAMBDAS, BitstreamError, bits_per_pixel_map, check_image, to_8bit

#: first header byte per architecture (ours use small ids; these stay clear of them)
FORMAT_IDS = {"bmshj2018-factorized": 101, "bmshj2018-hyperprior": 102, "mbt2018-mean": 103, "cheng2020-anchor": 104}
#: images are padded to a multiple of this: 2^(stride-2 layers down to the deepest latent)
DIVISORS = {"bmshj2018-factorized": 16, "bmshj2018-hyperprior": 64, "mbt2018-mean": 64, "cheng2020-anchor": 64}
SHAPE = struct.Struct("<HH")
LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class CompressAIConfig:
    arch: str        # CompressAI zoo name, e.g. "bmshj2018-hyperprior"
    quality: int     # CompressAI quality index (1 = lowest rate)
    metric: str      # distortion it was trained for ("mse")
    lmbda: float     # λ of R + λ·255²·MSE for that quality (CompressAI's training table)
    N: int = 0       # channels, read from the weights
    M: int = 0       # latent channels, read from the weights


def weights_path(arch: str, quality: int):
    from .. import weights as W

    return W.locate(W.COMPRESSAI_FILES[(arch, quality)])


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """A CompressAI checkpoint as CompressAI's ``load_pretrained`` would pass it on (tensors only)."""
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained(sd)


class CompressAICodec(Codec):
    """One pretrained CompressAI model behind the :class:`museumtok.codecs.base.Codec` contract."""

    def __init__(self, arch: str, quality: int, metric: str = "mse"):
        from compressai.zoo.image import model_architectures

        from .. import weights as W

        if (arch, quality) not in W.COMPRESSAI_FILES or metric != "mse":
            raise ValueError(f"no published CompressAI file registered for {arch} quality {quality} ({metric})")
        path = weights_path(arch, quality)
        if path is None:
            raise FileNotFoundError(W.missing_reason(W.COMPRESSAI_FILES[(arch, quality)].key))
        net = model_architectures[arch].from_state_dict(load_state_dict_file(path))
        net.update(force=False)    # the published files carry their CDF tables; update only fills what is absent
        self._wrap(net, arch, int(quality), QUALITY_LAMBDAS[int(quality)], metric)
        self.weights_file = path

    def _wrap(self, net, arch: str, quality: int, lmbda: float, metric: str = "mse") -> None:
        self.net = net.eval()
        self.divisor = DIVISORS[arch]
        self.format_id = FORMAT_IDS[arch]
        self.cfg = CompressAIConfig(arch, quality, metric, lmbda,
                                    int(getattr(net, "N", 0) or 0), int(getattr(net, "M", 0) or 0))

    def eval(self):
        self.net.eval()
        return self

    # ---- helpers --------------------------------------------------------------------------------
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        d = self.divisor
        ph, pw = (-h) % d, (-w) % d
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    _check_image = staticmethod(check_image)

    # ---- Codec contract -------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, x: torch.Tensor, **params) -> EncodedImage:
        """(3, H, W) in [0, 1] -> EncodedImage whose ``data`` is the complete bitstream."""
        if params:
            raise ValueError(f"{self.cfg.arch} takes no parameters (the quality is the checkpoint's), got {sorted(params)}")
        x = self._check_image(x)
        h, w = x.shape[-2:]
        out = self.net.compress(self.pad(x.float().unsqueeze(0)))
        shape = tuple(int(s) for s in out["shape"])
        parts = [HEADER.pack(self.format_id, h, w), SHAPE.pack(*shape)]
        for group in out["strings"]:
            s = group[0]
            parts += [LENGTH.pack(len(s)), s]
        return EncodedImage(b"".join(parts), getattr(self, "name", self.cfg.arch), h, w, {})

    @torch.no_grad()
    def decompress(self, enc: EncodedImage | bytes) -> torch.Tensor:
        """bitstream -> (3, H, W) in [0, 1], 8-bit values."""
        data = enc.data if isinstance(enc, EncodedImage) else bytes(enc)
        if len(data) < HEADER.size + SHAPE.size:
            raise BitstreamError(f"not a {self.cfg.arch} bitstream ({len(data)} bytes)")
        fid, h, w = HEADER.unpack_from(data)
        if fid != self.format_id:
            raise BitstreamError(f"bitstream format {fid} is not {self.cfg.arch}'s ({self.format_id})")
        shape = SHAPE.unpack_from(data, HEADER.size)
        pos, strings = HEADER.size + SHAPE.size, []
        while pos < len(data):
            if pos + LENGTH.size > len(data):
                raise BitstreamError("truncated bitstream")
            (n,) = LENGTH.unpack_from(data, pos)
            pos += LENGTH.size
            if pos + n > len(data):
                raise BitstreamError("truncated bitstream")
            strings.append([data[pos:pos + n]])
            pos += n
        x_hat = self.net.decompress(strings, torch.Size(shape))["x_hat"]
        return to_8bit(x_hat[0, :, :h, :w])

    @torch.no_grad()
    def estimate_bits(self, x: torch.Tensor) -> dict[str, float]:
        """−Σ log2 P of the latents under the model's continuous likelihoods (no bitstream written)."""
        out = self.net(self.pad(self._check_image(x).float().unsqueeze(0)))
        return {k: float(-torch.log2(v.double()).sum()) for k, v in out["likelihoods"].items()}

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> dict:
        """What the app draws: the bits-per-pixel map (y at stride 16, z at 64) and the reconstruction."""
        x = self._check_image(x)
        xp = self.pad(x.float().unsqueeze(0))
        out = self.net(xp)
        strides = {"y": 16, "z": 64}
        bits = {k: (-torch.log2(v.double()), strides.get(k, 16)) for k, v in out["likelihoods"].items()}
        return {"bpp_map": bits_per_pixel_map(bits, *xp.shape[-2:]),
                "x_hat": out["x_hat"][..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)}


class CompressAITrained(CompressAICodec):
    """A CompressAI architecture trained *here*, by museumtok's harness on our crops (``museumtok train
    compressai-hyperprior``): CompressAI's own ``ScaleHyperprior`` class beside ours, like for like (same crops,
    same CPU minutes, same λ, same evaluation). Saved as ``config.json`` (``_class_name``, arch, N, M, λ) plus
    ``model.safetensors`` (CompressAI's state dict, CDF tables included); the bitstream is that of
    :class:`CompressAICodec` for the arch."""

    def __init__(self, arch: str = "bmshj2018-hyperprior", N: int = 64, M: int = 96, lmbda: float = 0.0067,
                 quality: int = 0, net=None):
        from compressai.zoo.image import model_architectures

        if arch not in FORMAT_IDS:
            raise ValueError(f"unknown CompressAI arch {arch!r}; known: {', '.join(FORMAT_IDS)}")
        self._wrap(net if net is not None else model_architectures[arch](N, M), arch, int(quality), float(lmbda))
        self.weights_file = None

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        c = self.cfg
        (folder / "config.json").write_text(json.dumps({"_class_name": type(self).__name__, "arch": c.arch,
                                                        "N": c.N, "M": c.M, "lmbda": c.lmbda, "quality": c.quality},
                                                       indent=2))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  folder / "model.safetensors")

    @classmethod
    def from_pretrained(cls, folder) -> "CompressAITrained":
        from compressai.zoo.image import model_architectures      # optional package: imported on use

        cfg = json.loads((Path(folder) / "config.json").read_text())
        net = model_architectures[cfg["arch"]].from_state_dict(load_file(str(Path(folder) / "model.safetensors")))
        net.update(force=False)
        return cls(cfg["arch"], lmbda=cfg["lmbda"], quality=cfg.get("quality", 0), net=net)


__all__ = ["CompressAICodec", "CompressAIConfig", "CompressAITrained", "FORMAT_IDS", "load_state_dict_file",
           "weights_path"]
