"""LPIPS (Zhang et al. 2018), through the ``lpips`` package, when its backbone weights are present.

``lpips`` ships its small linear heads, but the AlexNet/VGG backbone comes from torchvision's
ImageNet weights, which must already be in the torch hub cache: nothing is downloaded at run time.
When they are absent, :class:`LPIPSUnavailable` names the file and the folder it belongs in; a user
who has the file runs ``museumtok weights add FILE`` (sha256-checked, see :mod:`museumtok.weights`) and
LPIPS is computed from the next call on, in the app too.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

#: torchvision checkpoint file per LPIPS backbone.
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot run here because its ImageNet backbone weights are not in the torch hub cache."""


def hub_checkpoint_dir() -> Path:
    from ..weights import hub_checkpoint_dir as hub

    return hub()


def backbone_path(net: str = "alex") -> Path:
    return hub_checkpoint_dir() / BACKBONE_FILES[net]


def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """(available, reason). The reason is the message the app shows next to "n/a"."""
    p = backbone_path(net)
    if p.is_file():
        return True, f"LPIPS-{net} backbone found at {p}"
    return False, (
        f"LPIPS needs the torchvision ImageNet weights {BACKBONE_FILES[net]} in {p.parent} "
        f"(download {BACKBONE_URLS[net]} on a connected machine, then `museumtok weights add "
        f"{BACKBONE_FILES[net]}` checks and copies it there; nothing is fetched at run time)"
    )


@lru_cache(maxsize=3)
def _model(net: str):
    ok, reason = lpips_available(net)
    if not ok:
        raise LPIPSUnavailable(reason)
    os.environ.setdefault("TORCH_HOME", str(Path(torch.hub.get_dir()).parent))
    import lpips  # imported lazily: it prints a banner and loads torchvision

    m = lpips.LPIPS(net=net, verbose=False)
    return m.eval().requires_grad_(False)


def lpips_distance(x: torch.Tensor, y: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """LPIPS distance per image, shape (N,), for [0, 1] images. Raises :class:`LPIPSUnavailable`."""
    x = x.unsqueeze(0) if x.ndim == 3 else x
    y = y.unsqueeze(0) if y.ndim == 3 else y
    m = _model(net)
    with torch.no_grad():
        return m(x.float() * 2 - 1, y.float() * 2 - 1).flatten()
