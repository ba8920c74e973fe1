"""Checkpoint folders that say what they are: ``config.json`` names the class that loads the folder.

A folder saved by any museumtok network (``save_pretrained`` of :class:`HubMixin`, the
``PyTorchModelHubMixin`` of huggingface_hub with one addition) holds ``config.json`` +
``model.safetensors`` + ``README.md``; the addition is one key in ``config.json``, as diffusers writes
``_class_name``::

    {"_class_name": "VQVAE", "beta": 0.25, "channels": [32, 64, 128, 128], ...}

The name is the class's own (``VQVAE``), not its module path, so that moving a module does not
break saved folders: :data:`CLASSES` resolves it (the one place to update when a class moves).
Loaders ignore the key (:func:`strip_metadata`: every key starting with ``_`` is the folder's
metadata, not a constructor argument), so folders written before it existed and after it load alike.

:func:`museumtok.load` accepts a registry name, a local folder or a Hub id ("owner/name"); the last
two end in :func:`load_folder` (via :func:`hub_folder` for a Hub id). §7's LLM adapters are peft's
own folders (``adapter_config.json``), with ``"_class_name": "PeftModel"`` in their config.json.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin

CLASS_KEY = "_class_name"
CONFIG_FILE = "config.json"

#: class name written in config.json -> "module:Class" today (museumtok's networks, then peft's adapters)
CLASSES: dict[str, str] = {
    "VQVAE": "museumtok.models.vqvae:VQVAE",
    "VQGAN": "museumtok.models.vqgan:VQGAN",
    "DVAE": "museumtok.models.dvae:DVAE",
    "AnyMAutoencoder": "museumtok.models.anym:AnyMAutoencoder",
    "MultiScaleAutoencoder": "museumtok.models.multiscale:MultiScaleAutoencoder",
    "PooledAutoencoder": "museumtok.models.pooling:PooledAutoencoder",
    "MaskGIT": "museumtok.models.maskgit:MaskGIT",
    "PerceiverResampler": "museumtok.models.resampler:PerceiverResampler",
    "VideoVQ": "museumtok.models.video:VideoVQ",
    "LloydPatchTokenizer": "museumtok.tokenizers.lloyd_patch:LloydPatchTokenizer",
    "FactorizedPrior": "museumtok.codecs.learned.factorized:FactorizedPrior",
    "ScaleHyperprior": "museumtok.codecs.learned.hyperprior:ScaleHyperprior",
    "ContextHyperprior": "museumtok.codecs.learned.context:ContextHyperprior",
    "ContextualHyperprior": "museumtok.codecs.learned.entroformer:ContextualHyperprior",
    "CompressAITrained": "museumtok.codecs.compressai_zoo:CompressAITrained",   # CompressAI trained here
    "PeftModel": "peft:PeftModel",                 # an LLM adapter (museumtok.llm.sft): needs its base model
}

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class CheckpointError(ValueError):
    """A folder or Hub id that cannot be loaded; the message says why and what to do."""


def strip_metadata(config: dict) -> dict:
    """``config`` without its metadata keys (``_class_name``, any key starting with ``_``): the constructor's
    arguments. Every config dataclass is built through this, so a stamped folder loads everywhere."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def stamp_class(folder: str | Path, cls: type | str) -> None:
    """Write ``cls``'s name into ``folder/config.json`` (first key; atomically, the rest unchanged)."""
    name = cls if isinstance(cls, str) else cls.__name__
    if name not in CLASSES:
        raise CheckpointError(f"{name} is not in museumtok.checkpoint.CLASSES; add it there so that it can be loaded")
    path = Path(folder) / CONFIG_FILE
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = {CLASS_KEY: name, **{k: v for k, v in cfg.items() if k != CLASS_KEY}}
    tmp = path.with_name(f"{CONFIG_FILE}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def class_name(folder: str | Path) -> str | None:
    """The class named in ``folder/config.json`` (None: not stamped)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: not a checkpoint folder")
    return json.loads(path.read_text(encoding="utf-8")).get(CLASS_KEY)


def resolve(name: str) -> type:
    """The class called ``name`` in :data:`CLASSES`, imported."""
    try:
        module, attr = CLASSES[name].split(":")
    except KeyError:
        raise CheckpointError(f"unknown checkpoint class {name!r}; known: {', '.join(CLASSES)}") from None
    return getattr(importlib.import_module(module), attr)


class HubMixin(PyTorchModelHubMixin):
    """``PyTorchModelHubMixin`` whose ``save_pretrained`` also names the class in config.json
    (:func:`stamp_class`) when :data:`CLASSES` resolves that name to it (a subclass of one's own, not in the
    table, saves as before and loads with its ``from_pretrained``); loading is the mixin's own."""

    def save_pretrained(self, save_directory, *, push_to_hub: bool = False, repo_id: str | None = None, **kwargs):
        super().save_pretrained(save_directory, **kwargs)
        if _known(type(self)):
            stamp_class(save_directory, type(self).__name__)
        if push_to_hub:                  # the mixin's push saves again (stamped) into a temporary folder
            return self.push_to_hub(repo_id or Path(save_directory).name, config=kwargs.get("config"))
        return None


def _known(cls: type) -> bool:
    """True when :data:`CLASSES` names ``cls`` itself (not only a class of the same name)."""
    try:
        return cls.__name__ in CLASSES and resolve(cls.__name__) is cls
    except ImportError:
        return False


def is_hub_id(name: str) -> bool:
    """True for "owner/name" (what ``snapshot_download`` takes), not for a path that exists here."""
    return bool(_HUB_ID.fullmatch(name)) and not Path(name).exists()


def hub_folder(repo_id: str, revision: str | None = None) -> Path:
    """``repo_id``'s files from the Hugging Face Hub (or its local cache); a :class:`CheckpointError`
    saying what to do when the Hub cannot be reached (offline machines, ``HF_HUB_OFFLINE=1``)."""
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision))
    except RepositoryNotFoundError as err:
        raise CheckpointError(f"{repo_id} is neither a registry name, a local folder nor a Hub repository "
                              f"one can read: {err}") from err
    except Exception as err:        # offline, DNS, proxy, timeouts: huggingface_hub's and httpx's errors alike
        raise CheckpointError(f"cannot reach the Hugging Face Hub to fetch {repo_id}: {err}; download it on a "
                              f"connected machine (`hf download {repo_id} --local-dir DIR`) and pass the folder"
                              ) from err


def load_folder(folder: str | Path, wrappers: dict[type, type] | None = None):
    """The object saved in ``folder``: the class named in its config.json, ``from_pretrained(folder)``;
    ``wrappers`` maps a network class to the tokenizer that wraps it (VQVAE -> VQVAETokenizer: what the
    registry gives for it). A folder without the class key is refused with the list of known classes."""
    folder = Path(folder)
    name = class_name(folder)
    if name is None:
        raise CheckpointError(f"{folder}/{CONFIG_FILE} does not name its class ({CLASS_KEY!r}); load it with "
                              f"its class's from_pretrained (one of {', '.join(CLASSES)})")
    if name == "PeftModel":
        raise CheckpointError(f"{folder} is an LLM adapter (peft): load it onto its base model with "
                              f"peft.PeftModel.from_pretrained(base, folder) or museumtok.llm.sft.load_adapter")
    cls = resolve(name)
    cls = (wrappers or {}).get(cls, cls)
    obj = cls.from_pretrained(str(folder))
    if hasattr(obj, "load_priors"):      # a tokenizer's entropy-coding prior (prior.json), if fitted
        obj.load_priors(folder)
    if hasattr(obj, "eval"):
        obj.eval()
    return obj
