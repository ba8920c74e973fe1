"""Any transformers causal LM as a chat backend (``hf:<path or Hub id>[#4bit|#8bit]`` and the embedded
SmolLM2): streamed token by token, with the §7 LoRA guide adapters and prefix KV-cache reuse.

KV cache (§6.3): :class:`TransformersBackend` keeps the KV caches of its last few prompts + answers
(``cache_slots``, one per recent visitor, each tagged with the adapter it was made under) and, on the next
call, reuses the one with the longest common token prefix (system prompt and image, and the earlier
turns), so turn 2 only prefills the new question, even when other visitors asked in between; ``reset()``
flushes them.

Several visitors at once: the model runs one forward pass at a time, but a streamed answer holds it only
for its pre-fill and then for one token at a time, taking turns with the other answers in the order they
asked (:class:`FairLock`). A question that arrives while another answer is being written therefore starts
after one pre-fill and one token of each answer in progress, instead of after the whole answer. Each
stream keeps its own KV cache and its own adapter (re-activated when another visitor's stream changed it).
"""
from __future__ import annotations

import copy
import re
import threading
import time
from pathlib import Path

from ..hf_compat import cache_kwarg


class FairLock:
    """A lock taken in arrival order (FIFO tickets): a thread that releases it and asks again queues
    behind the threads already waiting, so token-by-token streams take turns. Re-entrant in the owning
    thread (a stream may call a locked helper)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._next = self._serving = 0
        self._owner, self._depth = None, 0

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("FairLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._serving += 1
                self._cond.notify_all()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
from .base import BackendError, ChatBackend, Messages
from .embedded import EMBEDDED_NAME, convert_embedded


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
        self._lock = FairLock()                         # one forward pass at a time, streams take turns
        self._local = threading.local()                 # last_stats of the stream this thread consumed
        self.cache_slots = 4                            # prefixes kept: one per recent visitor (≈25 MB each)
        self._caches: list[tuple[tuple, list[int], object]] = []   # (adapter state, token ids, KV cache), newest first
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

    @property
    def last_stats(self) -> dict:
        """Timing of the last answer streamed *in this thread* (streams of other visitors interleave)."""
        return getattr(self._local, "stats", {})

    @last_stats.setter
    def last_stats(self, value: dict) -> None:
        if not hasattr(self, "_local"):                 # ChatBackend.__init__ runs before ours
            self._local = threading.local()
        self._local.stats = value

    def _adapter_state(self) -> tuple:
        return (self._active, self.text_guide)

    def _restore_adapter(self, state: tuple) -> None:
        """Re-activate a stream's adapter when another visitor's turn switched it (cheap flag changes)."""
        if self._adapter_state() != state:
            active, text_guide = state
            self._switch(None if text_guide or active is None else active)

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
            from ..sft import guide_ids_from_messages

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
            rows = self.model.get_input_embeddings().weight.shape[0]
            vocab.attach(self.model, self.tokenizer, init=init, codebook=codebook)
            self._suppress = sorted(set(self._suppress) | set(range(vocab.token_offset, vocab.token_offset + vocab.K))
                                    | {vocab.start_id, vocab.end_id})
            if self.model.get_input_embeddings().weight.shape[0] != rows:   # new tokens: cached prefixes are stale
                self._caches = []
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
        from ..sft import load_adapter

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
        from ..sft import read_adapter_config

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
            self._caches = []

    # ---- generation ----------------------------------------------------------------------------------
    def _reusable(self, ids: list[int], cached_ids: list[int]) -> int:
        """Length of the common prefix of ``ids`` and ``cached_ids`` (at least one token is left to run)."""
        if not self.reuse_cache:
            return 0
        n = 0
        for a, b in zip(ids, cached_ids):
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

    def _take_cache(self, ids: list[int], state: tuple):
        """The kept prefix (made under the same adapter) sharing most tokens with ``ids``: (tokens reused,
        cache or None). Used whole, it leaves the pool (the stream owns it until it ends); used in part, the
        stream gets a cropped copy and the whole one stays for its own visitor. Call under the lock."""
        best, n_best = None, 0
        for i, (st, cached_ids, _) in enumerate(self._caches):
            if st == state:
                n = self._reusable(ids, cached_ids)
                if n > n_best:
                    best, n_best = i, n
        if best is None:
            return 0, None
        _, _, cache = self._caches[best]
        extra = cache.get_seq_length() - n_best
        if extra > 0:                           # only a common beginning (another visitor's prompt, or the
            cache = copy.deepcopy(cache)        # end of this one's last answer): crop a copy, keep the whole
            cache.crop(-extra)                  # negative: drop that many tokens (every 4.x/5.x version)
        else:
            self._caches.pop(best)
        return n_best, cache

    def _keep_cache(self, state: tuple, ids: list[int], cache) -> None:
        """Keep a finished prefix, newest first, at most ``cache_slots``. Call under the lock."""
        if not self.reuse_cache or cache is None:
            return

        def superseded(entry) -> bool:          # the same visitor's earlier turn: (almost) all of it is in ids
            st, old_ids, _ = entry
            return st == state and self._reusable(ids + [-1], old_ids) >= 0.9 * len(old_ids)

        self._caches = [(state, list(ids), cache)] + [c for c in self._caches if not superseded(c)]
        del self._caches[self.cache_slots:]

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
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():        # pre-fill: this stream's adapter and cache
            state = self._adapter_state()
            reuse, cache = self._take_cache(ids, state)
            if cache is None:
                cache = DynamicCache(config=self.model.config)
            x = torch.tensor([ids[reuse:]], device=self.device)
            logits, cache = self._forward(x, cache)
        cached = list(ids)
        gen = torch.Generator().manual_seed(seed)
        generated: list[int] = []
        shown, ttft, t_first = "", None, None
        try:
            for _ in range(max_new_tokens):
                with torch.inference_mode():                 # between two turns at the model: no lock held
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
                with self._lock, torch.inference_mode():     # one token, then the next visitor's turn
                    self._restore_adapter(state)
                    logits, cache = self._forward(torch.tensor([[nxt]], device=self.device), cache)
                cached.append(nxt)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if text != shown and text.startswith(shown):
                yield text[len(shown):]
        finally:
            with self._lock:
                self._keep_cache(state, cached, cache)           # this visitor's prefix, for the next turn
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
            self._keep_cache(self._adapter_state(), a[:n], cache)
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
            self._caches = []
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
