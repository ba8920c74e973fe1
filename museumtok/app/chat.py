"""Pure callbacks behind the app's Chat tab (unit-tested with a fake backend, no Gradio needed).

The LLM is built by :class:`LazyBackend` (``$MUSEUMTOK_LLM`` or ``app.py --llm``; the embedded SmolLM2
by default): in a background thread as soon as the app starts (:meth:`LazyBackend.start`, with the
guide adapters, the default tokenizer and the catalog index), or on the first chat action otherwise.
While it loads, :func:`backend_status` says which step it is on; if it cannot be built, every chat
callback answers with the reason and the rest of the app keeps working.

Per visitor the app keeps only a session id (a string in ``gr.State``); the
:class:`~museumtok.llm.chat.ChatSession` objects live here, in a bounded table.
"""
from __future__ import annotations

import html
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import registry
from ..data.images import ImageLoadError, load_image
from ..llm.audit import AuditLog
from ..llm.backends import BackendError, ChatBackend, backend_spec, make_backend
from ..llm.budget import ContextBudget
from ..llm.chat import ChatSession
from ..paths import cache_dir
from ..viz import budget_figure, token_grid_figure
from .i18n import error_text, t as tr
from .prepare import no_source, prepare

MAX_SESSIONS = 200
DEFAULT_CONTEXT = 2048


class LazyBackend:
    """The process's one LLM, built on first use (thread-safe); a failure is remembered and reported."""

    def __init__(self, spec: str | None = None):
        self.spec = spec
        self._backend: ChatBackend | None = None
        self._error: str | None = None
        self._lock = threading.Lock()
        self.stage = ""                       # what the background start-up is doing now
        self.started: float | None = None     # time.monotonic() when loading began
        self.ready_s: float | None = None     # seconds it took
        self._thread: threading.Thread | None = None

    def set(self, backend: ChatBackend | None = None, spec: str | None = None) -> None:
        with self._lock:
            self._backend, self._error = backend, None
            if spec is not None:
                self.spec = spec

    @property
    def loaded(self) -> bool:
        return self._backend is not None and (self._thread is None or not self._thread.is_alive())

    @property
    def loading(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def get(self) -> tuple[ChatBackend | None, str | None]:
        t = self._thread
        if t is not None and t.is_alive() and threading.current_thread() is not t:
            t.join()        # the start-up is still preloading (adapters, tokenizer): never race it
        with self._lock:
            if self._backend is None and self._error is None:
                if self.started is None:
                    self.started = time.monotonic()
                try:
                    from ..llm.backends import embedded_is_cached

                    self.stage = ("converting the embedded model once (~35 s)" if backend_spec(self.spec) == "embedded"
                                  and not embedded_is_cached() else "loading the language model")
                    self._backend = make_backend(self.spec)
                except Exception as err:  # noqa: BLE001 — any failure must leave the app up
                    self._error = (f"The language model ({backend_spec(self.spec)}) could not be loaded: "
                                   f"{type(err).__name__}: {err}")
            return self._backend, self._error

    def start(self, preload=None) -> threading.Thread:
        """Load in a background thread now (the app calls this at start-up), then run ``preload(backend)``
        (the guide adapters, the default tokenizer, the catalog index); chat calls wait for it."""
        if self._thread is not None:
            return self._thread
        self.started = time.monotonic()

        def work():
            backend, err = self.get()         # holds the lock: chat callbacks wait here rather than load twice
            if backend is not None and preload is not None:
                try:
                    preload(backend, self)
                except Exception as e:  # noqa: BLE001 — the chat still works without the preloads
                    self.stage = f"preloading failed ({type(e).__name__}: {e}); the chat loads on demand"
            self.ready_s = time.monotonic() - self.started
            self.stage = "ready"

        self._thread = threading.Thread(target=work, name="museumtok-llm-start", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


BACKEND = LazyBackend()
#: backend for works the catalog does not recognise (§11's fallback), e.g. a bigger model over HTTP
FALLBACK = LazyBackend(spec=os.environ.get("MUSEUMTOK_LLM_FALLBACK") or None)
#: cosine similarity under which an upload counts as "not in the catalog" (see benchmarks/retrieval.py)
RECOGNITION_THRESHOLD = 0.8


class LazyIndex:
    """The catalog's token-histogram index, built (or read from its cache) on first use."""

    def __init__(self, tokenizer: str = "lloyd-patch-k1024", M: int = 1024):
        self.tokenizer, self.M = tokenizer, M
        self._index, self._error = None, None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._index is None and self._error is None:
                try:
                    from ..llm.retrieval import CatalogIndex

                    self._index = CatalogIndex.build(registry.load(self.tokenizer), self.M)
                except Exception as err:  # noqa: BLE001 — retrieval is optional; the chat works without it
                    self._error = f"catalog retrieval unavailable: {err}"
            return self._index, self._error


CATALOG_INDEX = LazyIndex()


def guide_tokenizers() -> list[str]:
    """Tokenizers whose tokens a bundled adapter teaches the LLM to read (the chat's choices first)."""
    return [e.name for e in registry.entries("tokenizer") if e.available and e.adapter_path is not None]


def default_chat_tokenizer() -> str | None:
    """The Chat tab's tokenizer: one the guide can read (the VQ-VAE's when its adapter is bundled)."""
    readable = guide_tokenizers()
    for name in ("vqvae-f8-k1024", "lloyd-patch-k1024"):
        if name in readable:
            return name
    names = registry.names("tokenizer")
    return readable[0] if readable else (names[-1] if names else None)


def preload_guide(backend: ChatBackend, lazy: "LazyBackend | None" = None) -> None:
    """What the first question would otherwise wait for: every bundled guide adapter, the default chat
    tokenizer and the catalog index (used by :meth:`LazyBackend.start`)."""
    from ..llm.sft import read_adapter_config
    from ..llm.vocab import ImageVocab

    def stage(text):
        if lazy is not None:
            lazy.stage = text

    if hasattr(backend, "load_guide"):
        for name in guide_tokenizers():
            path = registry.get(name).adapter_path
            cfg = read_adapter_config(path)
            if cfg.base == backend.name:
                stage(f"loading the guide adapter `{path.name}`")
                backend.load_guide(path, ImageVocab.for_tokenizer(cfg.tokenizer, cfg.K))
    tok = default_chat_tokenizer()
    if tok:
        stage(f"loading the tokenizer `{tok}`")
        registry.load(tok)
    stage("reading the catalog index")
    CATALOG_INDEX.get()
    stage("drawing a first figure")              # plotly's first figure costs ~0.8 s; pay it before a visitor does
    budget_figure(ContextBudget(context=2048, images=1, M=64, text_tokens=64))
_SESSIONS: "OrderedDict[str, ChatSession]" = OrderedDict()
_SESSIONS_LOCK = threading.Lock()


def _session(sid: str | None, backend: ChatBackend, context: int | None = None) -> tuple[str, ChatSession]:
    with _SESSIONS_LOCK:
        if sid and sid in _SESSIONS and _SESSIONS[sid].backend is backend:
            _SESSIONS.move_to_end(sid)
            s = _SESSIONS[sid]
        else:
            sid = sid or uuid.uuid4().hex[:16]
            s = ChatSession(backend, audit=AuditLog(cache_dir("audit") / f"chat-{sid}.jsonl"))
            _SESSIONS[sid] = s
            while len(_SESSIONS) > MAX_SESSIONS:
                _SESSIONS.popitem(last=False)
    if context:
        s.context = max(64, min(int(context), backend.context_window))
    return sid, s


@dataclass
class ChatView:
    """Everything the Chat tab shows after an action."""

    sid: str | None = None
    history: list[dict] = field(default_factory=list)   # Chatbot messages (role, content)
    sees: str = ""                                       # "what the LLM sees": the last prompt, verbatim
    budget: Any = None                                   # plotly bar
    grid: Any = None                                     # token grid, citations highlighted
    notice: str = ""                                     # markdown: budget notices, errors, stats

    def outputs(self):
        return self.sid, self.history, self.sees, self.budget, self.grid, self.notice


def display_text(text: str) -> str:
    """Answer text for the Chatbot: angle brackets escaped so ``<v312>`` is shown, not eaten as HTML."""
    return html.escape(text, quote=False)


def prompt_text(messages: list[dict]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def _budget_fig(s: ChatSession, plan=None):
    M = plan.M if plan is not None else (s.tokens.M if s.tokens is not None else 0)
    used = plan.used if plan is not None else None
    reserve = s.reserve_answer
    image = (M + 2) if M else 0
    text = (used - image - reserve) if used is not None else 0
    return budget_figure(ContextBudget(context=s.context, images=1 if M else 0, M=M or 0,
                                       text_tokens=max(0, text), reserve_answer=reserve))


def identify(image) -> tuple[str | None, str, bool]:
    """(catalog card or None, a line for the visitor, recognised?) from the catalog index."""
    index, err = CATALOG_INDEX.get()
    if index is None:
        return None, err or "", False
    m = index.query(image, threshold=RECOGNITION_THRESHOLD)
    return m.card, m.message(RECOGNITION_THRESHOLD), m.entry is not None


def load_image_for_chat(source, tokenizer: str, M, sid: str | None = None, context: int | None = None,
                        card: str | None = None, recognise: bool = False) -> ChatView:
    """Tokenize the visitor's image for the chat: flushes the conversation and the KV cache.

    ``recognise``: look the image up in the catalog first; a match's card goes into the prompt, and
    an unknown work is routed to the fallback backend when ``$MUSEUMTOK_LLM_FALLBACK`` is set."""
    if no_source(source):
        return ChatView(sid=sid, notice=tr("need_image"))
    lines = []
    if recognise:
        try:
            found, line, known = identify(load_image(source).image)
        except ImageLoadError as e:
            return ChatView(sid=sid, notice=f"**⚠ {tr('cannot_use', why=error_text(e))}**")
        card = card or found
        lines.append(line)
        if not known and FALLBACK.spec:
            fb, fb_err = FALLBACK.get()
            if fb is not None:
                lines.append(f"Routed to the fallback model `{fb.name}`.")
                return _load_with(fb, source, tokenizer, M, sid, context, card, lines)
            lines.append(f"⚠ fallback unavailable: {fb_err}")
    backend, err = BACKEND.get()
    if err:
        return ChatView(sid=sid, notice=f"**⚠ {err}**")
    return _load_with(backend, source, tokenizer, M, sid, context, card, lines)


def _load_with(backend, source, tokenizer, M, sid, context, card, lines) -> ChatView:
    p = prepare(source, tokenizer, M)
    if isinstance(p, str):
        return ChatView(sid=sid, notice=f"**⚠ {p}**")
    tok, Mv = p.model, p.M
    sid, s = _session(sid, backend, context)
    name = getattr(source, "name", None) or str(source)
    s.set_image(tok, p.image, Mv, image_id=name.rsplit("/", 1)[-1], card=card)
    s.source_key = (str(source), tokenizer, Mv)
    lines.append(f"New image: {s.tokens.M} tokens of {tokenizer} in the prompt; the conversation "
                 f"and the KV cache start afresh. Backend: `{backend.name}`.")
    lines.append(getattr(backend, "adapter_status", ""))
    return ChatView(sid=sid, history=[], sees=prompt_text(s.messages_for("(your question)", s.plan("x"))),
                    budget=_budget_fig(s), grid=token_grid_figure(s.tokens),
                    notice="\n".join(f"- {x}" for x in lines if x))


def loaded_key(sid: str | None):
    """(source, tokenizer, M) of the image the session's guide is looking at, or None."""
    with _SESSIONS_LOCK:
        s = _SESSIONS.get(sid) if sid else None
    return getattr(s, "source_key", None) if s is not None and s.tokens is not None else None


def ensure_image(source, tokenizer: str, M, sid: str | None, context: int | None = None,
                 recognise: bool = True) -> ChatView | None:
    """Load the app's current artwork into the chat unless the session already looks at it (same file,
    tokenizer and M): the Chat tab follows the header's artwork without a second upload. None: nothing to do."""
    if no_source(source):
        return None
    try:
        Mv = registry.load(tokenizer).check_M(M) if registry.get(tokenizer).kind == "tokenizer" else M
    except Exception:  # noqa: BLE001 — load_image_for_chat reports the problem in words
        Mv = M
    if loaded_key(sid) == (str(source), tokenizer, Mv):
        return None
    return load_image_for_chat(source, tokenizer, M, sid, context, recognise=recognise)


def chat_turn(question: str, history: list[dict] | None, sid: str | None, context: int | None = None,
              temperature: float = 0.0) -> Iterator[ChatView]:
    """Stream one answer: yields a ChatView after every piece (the last one carries stats and citations)."""
    history = list(history or [])
    with _SESSIONS_LOCK:
        s = _SESSIONS.get(sid) if sid else None
    if s is None:
        backend, err = BACKEND.get()
        if err:
            yield ChatView(sid=sid, history=history, notice=f"**⚠ {err}**")
            return
        sid, s = _session(sid, backend, context)
    elif context:
        s.context = max(64, min(int(context), s.backend.context_window))
    q = (question or "").strip()
    if not q:
        yield ChatView(sid=sid, history=history, notice="Type a question first.")
        return
    history = history + [{"role": "user", "content": display_text(q)}, {"role": "assistant", "content": ""}]
    gen = s.ask(q, temperature=temperature)
    view = ChatView(sid=sid, history=history)
    first = True
    for partial in gen:
        rec = s.last
        history[-1] = {"role": "assistant", "content": display_text(partial)}
        view = ChatView(sid=sid, history=history)
        if first:   # the prompt, its budget and the notices are fixed once the turn starts
            view.sees = prompt_text(rec.messages)
            view.budget = _budget_fig(s, rec.plan) if rec.plan else None
            view.notice = "\n".join(f"- {n}" for n in (rec.plan.notices if rec.plan else []))
            first = False
        yield view
    view.sees = prompt_text(rec.messages)
    view.budget = _budget_fig(s, rec.plan) if rec.plan else None
    rec = s.last
    notes = list(rec.plan.notices) if rec.plan else []
    if rec.error:
        notes.append(f"⚠ {rec.error}")
    if rec.stats:
        st = rec.stats
        notes.append(f"time to first token {st.get('ttft_s', 0) * 1e3:.0f} ms, {st.get('tokens_per_s', 0):.1f} tokens/s, "
                     f"prompt {st.get('prompt_tokens', 0)} tokens ({st.get('reused_tokens', 0)} reused from the KV cache)")
    cited = sorted({p for c in rec.citations for p in c["positions"]})
    if rec.citations:
        notes.append("cited: " + ", ".join(f"`{c['cite']}` → {len(c['boxes'])} patch(es)" for c in rec.citations))
    view.notice = "\n".join(f"- {n}" for n in notes)
    if s.tokens is not None and rec.plan is not None and rec.plan.M is not None:
        view.grid = token_grid_figure(s.tokens_at(rec.plan.M), highlight=cited or None)
    yield view


def clear_chat(sid: str | None) -> ChatView:
    with _SESSIONS_LOCK:
        s = _SESSIONS.get(sid) if sid else None
    if s is not None:
        s.clear()
    return ChatView(sid=sid, notice="Conversation cleared.")


def audit_file(sid: str | None) -> str | None:
    """Path of this visitor's audit log (JSONL), for download; None before the first image."""
    with _SESSIONS_LOCK:
        s = _SESSIONS.get(sid) if sid else None
    if s is None or s.audit is None or not s.audit.path.exists():
        return None
    return str(s.audit.path)


def backend_status() -> str:
    """One line on the LLM: loading (which step, for how long), failed, or ready."""
    if BACKEND.loading:
        waited = time.monotonic() - (BACKEND.started or time.monotonic())
        return f"⏳ Getting the guide ready: {BACKEND.stage or 'starting'}… ({waited:.0f} s)"
    if BACKEND._error:
        return f"⚠ {BACKEND._error}"
    if BACKEND._backend is not None:
        b = BACKEND._backend
        took = f", ready in {BACKEND.ready_s:.1f} s" if BACKEND.ready_s else ""
        return f"✓ The guide is ready: LLM `{b.name}` (context {b.context_window} tokens{took})"
    return f"LLM: `{backend_spec(BACKEND.spec)}` (loads on the first image or question)"


def waiting_view(sid: str | None, history: list[dict] | None = None) -> "ChatView | None":
    """A notice while the background start-up is still loading the LLM (None once it is ready)."""
    if not BACKEND.loading:
        return None
    return ChatView(sid=sid, history=list(history or []), notice=backend_status() + " Your request runs as soon as it is.")
