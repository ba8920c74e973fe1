"""Published weights a user brings: the known files, where each library looks for them, and checks.

Nothing is downloaded at run time. On a connected machine you download a file from its ``url``; here
``museumtok weights add FILE…`` checks it and copies it where the library that reads it looks:

    place "hub"    <torch hub dir>/checkpoints/<filename>   torchvision (LPIPS backbones), CompressAI, torch-fidelity
    place "lpips"  <lpips package>/weights/v0.1/<net>.pth   the LPIPS linear heads (shipped in the lpips wheel)
    place "hf"     ~/.cache/museumtok/weights/<key>/        a diffusers / transformers model folder; the Hugging
                                                            Face Hub cache (``HF_HUB_CACHE``) is searched as well

How a file is checked. The full sha256 of a published file is known here only where the file itself
is (the lpips heads). Everything published through ``torch.hub`` carries the first 8–10 hex digits
of its sha256 in its name (``alexnet-owt-7be5be79.pth``); that prefix is what ``torch.hub`` itself
checks when it downloads (``check_hash``: the ``-<hex>.`` part must start the file's sha256). We
apply the same rule to the file's *content*, so a renamed file is still recognised, and a file
whose content does not match is refused whatever its name. A model folder from the Hub ("hf") has no
hash in its name: it is checked structurally (its config builds the expected model class and every
tensor in its safetensors header has the shape that model expects), which catches a wrong or
truncated download but not a deliberately altered one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .paths import cache_dir


@dataclass(frozen=True)
class Published:
    key: str                    # short name, shown by `museumtok weights list` and used by registry entries
    filename: str               # the published file name (torch hub names end in -<sha256 prefix>.<ext>)
    url: str                    # where to download it on a connected machine
    used_by: str                # what reads it, one line
    place: str = "hub"          # "hub", "lpips" or "hf" (see the module docstring)
    sha256: str | None = None   # full digest when known; otherwise the filename's hash prefix is the check
    repo_id: str | None = None  # "hf": the Hub repository
    subfolder: str = ""         # "hf": the model's folder inside that repository
    model_class: str = ""       # "hf": the class its config must name (diffusers "_class_name" / transformers "architectures")

    @property
    def hash_prefix(self) -> str | None:
        """The ``-<hex>.`` part of the file name, as ``torch.hub`` reads it (None for "hf" folders)."""
        if self.place == "hf":
            return None
        m = torch.hub.HASH_REGEX.search(self.filename)
        return m.group(1) if m and m.group(1) else None


def _cai(arch_file: str, quality: int, hexpre: str, arch: str) -> Published:
    name = f"{arch_file}-{quality}-{hexpre}.pth.tar"
    return Published(f"compressai-{arch}-q{quality}", name, f"https://compressai.s3.amazonaws.com/models/v1/{name}",
                     f"CompressAI {arch} (MSE), quality {quality}: registry entry compressai-{arch}-q{quality}")


#: CompressAI's pretrained MSE models offered in the registry (file names from compressai/zoo/image.py,
#: ``model_urls[arch]["mse"][quality]``).
COMPRESSAI_FILES = {
    ("bmshj2018-factorized", 1): _cai("bmshj2018-factorized-prior", 1, "446d5c7f", "bmshj2018-factorized"),
    ("bmshj2018-factorized", 4): _cai("bmshj2018-factorized-prior", 4, "1ed4405a", "bmshj2018-factorized"),
    ("bmshj2018-factorized", 8): _cai("bmshj2018-factorized-prior", 8, "5232faa3", "bmshj2018-factorized"),
    ("bmshj2018-hyperprior", 1): _cai("bmshj2018-hyperprior", 1, "7eb97409", "bmshj2018-hyperprior"),
    ("bmshj2018-hyperprior", 4): _cai("bmshj2018-hyperprior", 4, "de1b779c", "bmshj2018-hyperprior"),
    ("bmshj2018-hyperprior", 8): _cai("bmshj2018-hyperprior", 8, "a583f0cf", "bmshj2018-hyperprior"),
    ("mbt2018-mean", 1): _cai("mbt2018-mean", 1, "e522738d", "mbt2018-mean"),
    ("mbt2018-mean", 4): _cai("mbt2018-mean", 4, "6dba02a3", "mbt2018-mean"),
    ("mbt2018-mean", 8): _cai("mbt2018-mean", 8, "8089ae3e", "mbt2018-mean"),
    ("cheng2020-anchor", 1): _cai("cheng2020-anchor", 1, "dad2ebff", "cheng2020-anchor"),
    ("cheng2020-anchor", 3): _cai("cheng2020-anchor", 3, "e49be189", "cheng2020-anchor"),
    ("cheng2020-anchor", 6): _cai("cheng2020-anchor", 6, "4c052b1a", "cheng2020-anchor"),
}

KNOWN: dict[str, Published] = {p.key: p for p in [
    Published("lpips-alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
              "LPIPS (net='alex', the default): torchvision's ImageNet AlexNet backbone"),
    Published("lpips-vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
              "LPIPS (net='vgg'): torchvision's ImageNet VGG-16 backbone"),
    Published("lpips-squeezenet", "squeezenet1_1-b8a52dc0.pth",
              "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
              "LPIPS (net='squeeze'): torchvision's ImageNet SqueezeNet 1.1 backbone"),
    # the linear heads ship inside the lpips wheel; digests of lpips 0.1.4's files
    Published("lpips-linear-alex", "alex.pth",
              "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
              "LPIPS linear head for AlexNet (in the lpips package)", place="lpips",
              sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    Published("lpips-linear-vgg", "vgg.pth",
              "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
              "LPIPS linear head for VGG-16 (in the lpips package)", place="lpips",
              sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
    Published("lpips-linear-squeeze", "squeeze.pth",
              "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/squeeze.pth",
              "LPIPS linear head for SqueezeNet (in the lpips package)", place="lpips",
              sha256="4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76"),
    # torch-fidelity's port of the TF Inception (FID/KID); pytorch-fid's pt_inception-2015-12-05-6726825d.pth
    # carries the same hash prefix and is recognised by content
    Published("fid-inception", "weights-inception-2015-12-05-6726825d.pth",
              "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
              "FID / KID: the TF Inception-v3 (2015-12-05) ported to PyTorch, as torch-fidelity and torchmetrics use it"),
    *COMPRESSAI_FILES.values(),
    Published("amused-256-vqvae", "amused/amused-256 (vqvae/)", "https://huggingface.co/amused/amused-256/tree/main/vqvae",
              "aMUSEd's f16 VQ-GAN tokenizer: registry entry amused-vqgan-f16", place="hf",
              repo_id="amused/amused-256", subfolder="vqvae", model_class="VQModel"),
    Published("clip-vit-large-patch14", "openai/clip-vit-large-patch14", "https://huggingface.co/openai/clip-vit-large-patch14",
              "CLIPScore (the CLIP torchmetrics uses by default; set MUSEUMTOK_CLIP for another)", place="hf",
              repo_id="openai/clip-vit-large-patch14", model_class="CLIPModel"),
]}

#: files a "hf" folder must hold besides config.json (any one of each group)
HF_WEIGHT_FILES = (("diffusion_pytorch_model.safetensors", "model.safetensors"),)
HF_EXTRA_FILES = ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                  "special_tokens_map.json")


class WeightsError(ValueError):
    """A file that is not one of the known published weights, or whose content does not match."""


# ------------------------------------------------------------------------------------------- where
def hub_checkpoint_dir() -> Path:
    """``<torch hub dir>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face Hub cache, read from the environment at call time (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def local_model_dir(key: str) -> Path:
    """Where ``museumtok weights add FOLDER`` puts a Hub model folder: ``~/.cache/museumtok/weights/<key>``."""
    return cache_dir("weights") / key


def lpips_weights_dir() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "weights" / "v0.1"


def target(p: Published) -> Path | None:
    """Where the library reads ``p`` (a file, or for "hf" the folder ``weights add`` writes)."""
    if p.place == "hub":
        return hub_checkpoint_dir() / p.filename
    if p.place == "lpips":
        d = lpips_weights_dir()
        return d / p.filename if d else None
    return local_model_dir(p.key)


def _hf_folder_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        (folder / f).is_file() for group in HF_WEIGHT_FILES for f in group)


def hf_snapshot_folder(repo_id: str, subfolder: str = "") -> Path | None:
    """The newest snapshot folder of ``repo_id`` in the Hub cache holding ``subfolder/config.json`` and weights."""
    repo = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    order = []
    if ref.is_file():
        order.append(snaps / ref.read_text().strip())
    order += sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for s in order:
        folder = s / subfolder if subfolder else s
        if _hf_folder_complete(folder):
            return folder
    return None


def locate(key_or_p: str | Published) -> Path | None:
    """The path the library would read for this known file, or None when it is not on this machine."""
    p = KNOWN[key_or_p] if isinstance(key_or_p, str) else key_or_p
    if p.place == "hf":
        local = local_model_dir(p.key)
        if _hf_folder_complete(local):
            return local
        return hf_snapshot_folder(p.repo_id, p.subfolder)
    t = target(p)
    return t if t is not None and t.is_file() else None


def missing_reason(key: str) -> str:
    """One line: what is missing and how to bring it."""
    p = KNOWN[key]
    if p.place == "hf":
        return (f"needs {p.repo_id}{'/' + p.subfolder if p.subfolder else ''} (config.json + safetensors) in the "
                f"Hugging Face cache {hf_hub_cache()} or {local_model_dir(p.key)}; bring it with "
                f"`museumtok weights add FOLDER` ({p.url})")
    t = target(p)
    where = t.parent if t is not None else "the lpips package (pip install lpips)"
    return f"needs {p.filename} in {where}; bring it with `museumtok weights add FILE` ({p.url})"


# ------------------------------------------------------------------------------------------ checks
def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def matches(p: Published, digest: str) -> bool:
    """True when a file with this sha256 is ``p``: the full digest when known, else torch.hub's prefix rule."""
    if p.sha256:
        return digest == p.sha256
    pre = p.hash_prefix
    return bool(pre) and digest.startswith(pre)


def identify(path: Path, digest: str | None = None) -> Published | None:
    """The known file whose digest (or hash prefix) this file's content matches, whatever its name."""
    digest = digest or sha256_of(path)
    hits = [p for p in KNOWN.values() if p.place != "hf" and matches(p, digest)]
    return hits[0] if hits else None


def check_hf_folder(folder: Path) -> Published:
    """The known Hub model this folder holds, checked structurally; raises :class:`WeightsError`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise WeightsError(f"{folder}: no config.json (bring the model's folder, e.g. amused-256/vqvae)")
    cfg = json.loads((folder / "config.json").read_text())
    names = {cfg.get("_class_name"), *(cfg.get("architectures") or [])}
    cands = [p for p in KNOWN.values() if p.place == "hf" and p.model_class in names]
    if not cands:
        raise WeightsError(f"{folder}: config names {sorted(n for n in names if n)}, not one of the known models "
                           f"({', '.join(p.model_class for p in KNOWN.values() if p.place == 'hf')})")
    p = cands[0]
    weights = next((folder / f for group in HF_WEIGHT_FILES for f in group if (folder / f).is_file()), None)
    if weights is None:
        raise WeightsError(f"{folder}: no {' or '.join(HF_WEIGHT_FILES[0])} next to config.json")
    expected = _expected_shapes(p, folder)
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    missing = sorted(set(expected) - set(got))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or wrong:
        raise WeightsError(f"{weights}: does not fit its config ({len(missing)} tensors missing, e.g. "
                           f"{missing[:2]}; {len(wrong)} of the wrong shape, e.g. {wrong[:2]})")
    return p


def _expected_shapes(p: Published, folder: Path) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the model the config describes, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        if p.model_class == "VQModel":
            from diffusers import VQModel

            model = VQModel.from_config(VQModel.load_config(str(folder)))
        else:
            from transformers import AutoConfig, CLIPModel

            model = CLIPModel(AutoConfig.from_pretrained(str(folder), local_files_only=True))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------- add
@dataclass
class Added:
    source: Path
    key: str | None         # the known file it is, None when refused
    dest: Path | None
    message: str


def add(path: str | Path, copy: bool = True) -> Added:
    """Check one file (or Hub model folder) and copy it where its library looks. Never raises for a bad file."""
    src = Path(path)
    if not src.exists():
        return Added(src, None, None, f"{src}: no such file or folder")
    if src.is_dir():
        try:
            p = check_hf_folder(src)
        except (WeightsError, OSError, ValueError, ImportError) as err:
            return Added(src, None, None, f"refused: {err}")
        dest = target(p)
        if copy:
            tmp = dest.with_name(dest.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for f in ["config.json", *[g for group in HF_WEIGHT_FILES for g in group], *HF_EXTRA_FILES]:
                if (src / f).is_file():
                    shutil.copy2(src / f, tmp / f)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        return Added(src, p.key, dest, f"ok: {src} is {p.key} (checked: config and every tensor shape) -> {dest}")
    digest = sha256_of(src)
    p = identify(src, digest)
    if p is None:
        named = next((k for k in KNOWN.values() if k.filename == src.name), None)
        if named is not None:
            want = named.sha256 or f"{named.hash_prefix}…"
            return Added(src, None, None, f"refused: {src.name} has sha256 {digest}, expected {want} "
                                          "(a corrupt or different file)")
        return Added(src, None, None, f"refused: {src} (sha256 {digest[:12]}…) is none of the known files; "
                                      "see `museumtok weights list`")
    dest = target(p)
    if dest is None:
        return Added(src, p.key, None, f"{p.key}: its library is not installed ({missing_reason(p.key)})")
    if copy and not (dest.is_file() and dest.resolve() == src.resolve()):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    rule = "full sha256" if p.sha256 else f"sha256 starts with {p.hash_prefix}, torch.hub's check_hash rule"
    return Added(src, p.key, dest, f"ok: {src.name} is {p.key} ({rule}) -> {dest}")


def status() -> list[dict]:
    """One row per known file: key, present, path or reason, what uses it."""
    rows = []
    for p in KNOWN.values():
        where = locate(p)
        rows.append({"key": p.key, "present": where is not None, "path": str(where) if where else None,
                     "reason": None if where else missing_reason(p.key), "used_by": p.used_by, "url": p.url})
    return rows


__all__ = ["Published", "KNOWN", "COMPRESSAI_FILES", "WeightsError", "Added", "hub_checkpoint_dir", "hf_hub_cache",
           "local_model_dir", "target", "locate", "missing_reason", "sha256_of", "matches", "identify",
           "check_hf_folder", "add", "status", "hf_snapshot_folder"]
