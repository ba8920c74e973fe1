"""Model cards: every bundled checkpoint says its data, steps, wall time, hardware and held-out metrics."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dev = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{n} CPU cores ({cpu}), {dev}, torch {torch.__version__}"


def markdown_table(rows: list[dict[str, Any]], floatfmt: str = ".3f") -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0].keys())
    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)
    out = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    for r in rows:
        out += "| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |\n"
    return out


#: what each checkpoint family is, for the card's metadata header (the Hub's model-card format)
_FAMILY_TAGS = (
    ("sft-", ["image-tokens", "museum-guide", "lora", "sft"]),
    ("hyperprior-", ["learned-image-compression", "hyperprior", "entropy-coding"]),
    ("factorized-", ["learned-image-compression", "factorized-prior", "entropy-coding"]),
    ("context-", ["learned-image-compression", "autoregressive-context", "entropy-coding"]),
    ("maskgit-", ["image-tokens", "maskgit", "masked-token-modeling"]),
    ("ar-", ["image-tokens", "autoregressive-prior"]),
    ("pool-", ["image-tokens", "token-pooling"]),
    ("", ["image-tokenizer", "vector-quantization"]),
)
BASE_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATASETS = ["museumtok/artworks-105-public-domain"]   # the catalog in data/ (images fetched by `museumtok data fetch`)


def card_metadata(name: str, metrics: list[dict[str, Any]] | None = None) -> str:
    """The YAML header of a model card (Hugging Face's ``ModelCardData``): license, library, tags,
    datasets, the metrics the card reports and, for an SFT adapter, the base model."""
    from huggingface_hub import ModelCardData

    tags = next(t for prefix, t in _FAMILY_TAGS if name.startswith(prefix))
    names = sorted({k.split(" ")[0].lower() for r in (metrics or []) for k in r
                    if any(m in k.lower() for m in ("psnr", "ssim", "bpp", "usage", "perplexity", "bits", "accuracy"))})
    data = ModelCardData(license="apache-2.0", library_name="museumtok",
                         tags=["museumtok", *tags], datasets=DATASETS, metrics=names or None,
                         base_model=BASE_LLM if name.startswith("sft-") else None)
    return "---\n" + data.to_yaml() + "\n---\n"


def with_metadata(card_text: str, name: str, metrics: list[dict[str, Any]] | None = None) -> str:
    """The card with its metadata header (replacing an old header if there is one)."""
    body = card_text
    if body.startswith("---\n") and "\n---\n" in body[4:]:
        body = body[4:].split("\n---\n", 1)[1].lstrip("\n")
    return card_metadata(name, metrics) + "\n" + body


NO_METRICS = "In the evaluation section below."   # the card's line where a trainer gives no metrics table


def write_model_card(
    directory: Path,
    name: str,
    summary: str,
    data: str,
    steps: str,
    wall_time_s: float,
    metrics: list[dict[str, Any]],
    command: str,
    extra: str = "",
    hw: str | None = None,
    facts: dict[str, Any] | None = None,
) -> Path:
    """Write ``README.md`` (the card) and ``training.json`` (the same facts, machine-readable;
    ``facts`` adds trainer-specific fields to it, e.g. the lineage of a fine-tuned checkpoint)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hw = hw or hardware()
    text = f"""# {name}

{summary}

| | |
|---|---|
| data | {data} |
| steps | {steps} |
| wall time | {wall_time_s / 60:.1f} min ({wall_time_s:.0f} s) |
| hardware | {hw} |
| command | `{command}` |

## Held-out metrics

{markdown_table(metrics) if metrics else NO_METRICS}
{extra}
"""
    (directory / "README.md").write_text(with_metadata(text, name, metrics), encoding="utf-8")
    (directory / "training.json").write_text(json.dumps({
        "name": name, "data": data, "steps": steps, "wall_time_s": wall_time_s, "hardware": hw,
        "command": command, "metrics": metrics, **(facts or {}),
    }, indent=2), encoding="utf-8")
    return directory / "README.md"


def refresh_metrics(directory: Path, metrics: list[dict[str, Any]], note: str = "") -> None:
    """Replace a card's held-out metrics (the README table, its metadata header and ``training.json``) by
    ``metrics`` measured again elsewhere, e.g. a GPU-trained checkpoint measured on the machine that measured the
    bundled ones; ``note`` (one line under the table) says where each was done."""
    directory = Path(directory)
    facts = json.loads((directory / "training.json").read_text(encoding="utf-8"))
    facts["metrics"] = metrics
    (directory / "training.json").write_text(json.dumps(facts, indent=2), encoding="utf-8")
    text = (directory / "README.md").read_text(encoding="utf-8")
    head, sep, rest = text.partition("## Held-out metrics\n")
    if not sep:
        raise ValueError(f"{directory}/README.md has no '## Held-out metrics' section")
    lines = rest.lstrip("\n").split("\n")
    i = 1 if lines and lines[0] == NO_METRICS else 0             # a card written without metrics
    while i < len(lines) and lines[i].startswith("|"):       # the old table; the card's text after it stays
        i += 1
    new = head + sep + "\n" + markdown_table(metrics) + (f"\n{note}\n" if note else "") + "\n".join(lines[i:])
    (directory / "README.md").write_text(with_metadata(new, facts.get("name", directory.name), metrics), encoding="utf-8")
