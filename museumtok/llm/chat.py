"""A conversation about one artwork (review §8, §11): tokens in the prompt, budget, streaming, audit.

    session = ChatSession(make_backend("embedded"), audit=AuditLog(path))
    session.set_image(tok, "painting.jpg", M=256, image_id="room3_vase")   # flushes the old image
    for partial in session.ask("What colours dominate?"):
        print(partial)                         # the answer so far
    session.last                               # TurnRecord: answer, plan notices, citations, stats, prompt

Each turn: plan the budget (:func:`~museumtok.llm.budget.plan_budget`: drop the oldest turns, then
lower M, never cut the question), build the prefix-format messages (:mod:`~museumtok.llm.prompt`),
stream from the backend, resolve ``[CITE:<token>]`` to patch boxes and append the turn to the
audit log. A new image resets the history and the backend's KV cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .audit import AuditLog, resolve_citations
from .backend import BackendError, ChatBackend
from .budget import BudgetPlan, plan_budget
from .prompt import GUIDE_PERSONA, image_block, prefix_messages, system_prompt
from .vocab import ImageVocab

#: chat-template tokens around each message (role header, end marker): a safe overestimate.
MESSAGE_OVERHEAD = 6


@dataclass
class TurnRecord:
    question: str
    answer: str = ""
    plan: BudgetPlan | None = None
    messages: list[dict] = field(default_factory=list)   # exactly what the backend got
    citations: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    error: str | None = None


def adapter_for(tokenizer_name: str, llm_name: str | None = None):
    """The §7 SFT adapter folder for a tokenizer (and LLM), or None: ``data/checkpoints/<adapter_name>``
    when one was trained for this LLM, else the registry's bundled one (the backend checks its base)."""
    from .. import registry
    from ..paths import CHECKPOINT_DIR
    from .sft import adapter_name

    if llm_name:
        p = CHECKPOINT_DIR / adapter_name(llm_name, tokenizer_name)
        if (p / "config.json").is_file():
            return p
    try:
        return registry.get(tokenizer_name).adapter_path
    except KeyError:
        return None


class ChatSession:
    """One visitor's conversation with one backend about (at most) one image at a time."""

    def __init__(self, backend: ChatBackend, audit: AuditLog | None = None, context: int | None = None,
                 reserve_answer: int = 128, max_new_tokens: int = 128, persona: str = GUIDE_PERSONA,
                 use_adapter: bool = True):
        self.backend = backend
        self.audit = audit
        self.context = min(context or backend.context_window, backend.context_window)
        self.reserve_answer = reserve_answer
        self.max_new_tokens = max_new_tokens
        self.persona = persona
        self.use_adapter = use_adapter     # load the tokenizer's §7 SFT adapter (registry) when there is one
        self.history: list[dict] = []      # user / assistant messages, oldest first
        self.tokens = None                 # TokenizedImage at the requested M
        self.image_id: str | None = None
        self.card: str | None = None
        self.vocab: ImageVocab | None = None
        self.M_options: tuple[int, ...] = ()
        self._encode: Callable[[int], Any] | None = None
        self._by_M: dict[int, Any] = {}
        self.last: TurnRecord | None = None

    # ---- the image ---------------------------------------------------------------------------------
    def set_image(self, tokenizer, image, M: int | None = None, image_id: str | None = None,
                  card: str | None = None, tokens=None) -> None:
        """Tokenize ``image`` (or take ``tokens``), flush history and KV cache, audit every token."""
        t = tokens if tokens is not None else tokenizer.encode(image, M)
        self.tokens = t
        self.image_id = image_id or f"image-{id(t):x}"
        self.card = card
        self.M_options = tuple(getattr(tokenizer, "supported_M", ()) or (t.M,))
        self._encode = (lambda m: tokenizer.encode(image, m)) if image is not None else None
        self._by_M = {t.M: t}
        self.vocab = ImageVocab.for_tokenizer(t.tokenizer, t.K)
        if self.backend.adds_image_tokens:
            self.backend.attach_vocab(self.vocab, adapter=adapter_for(t.tokenizer, self.backend.name)
                                     if self.use_adapter else None)
        self.history = []
        self.backend.reset()
        if self.audit is not None:
            self.audit.log_image(self.image_id, t, self.vocab)

    def clear(self) -> None:
        """Forget the conversation and the image (a new visitor)."""
        self.history, self.tokens, self.image_id, self.card, self._by_M = [], None, None, None, {}
        self.backend.reset()

    def tokens_at(self, M: int):
        if M not in self._by_M:
            if self._encode is None:
                raise BackendError(f"cannot re-encode the image at M={M} (no source image kept)")
            self._by_M[M] = self._encode(M)
        return self._by_M[M]

    # ---- one turn ----------------------------------------------------------------------------------
    def _count(self, text: str) -> int:
        return self.backend.count_tokens(text) + MESSAGE_OVERHEAD

    def plan(self, question: str) -> BudgetPlan:
        system_tokens = self._count(system_prompt(None, self.card, self.persona))
        turns = []
        for i in range(0, len(self.history), 2):           # (user, assistant) pairs
            turns.append(sum(self._count(m["content"]) for m in self.history[i:i + 2]))
        M = self.tokens.M if self.tokens is not None else None
        opts = self.M_options if self._encode is not None else ()
        return plan_budget(self.context, self._count(question), turns, M=M, M_options=opts,
                           system_tokens=system_tokens, reserve_answer=self.reserve_answer)

    def messages_for(self, question: str, plan: BudgetPlan) -> list[dict]:
        kept = self.history[len(self.history) - 2 * plan.kept_turns:] if plan.kept_turns else []
        image_text = image_block(self.tokens_at(plan.M), self.vocab) if plan.M is not None else None
        return prefix_messages(image_text, question, kept, self.card, self.persona)

    def ask(self, question: str, temperature: float = 0.0) -> Iterator[str]:
        """Yield the answer so far after each streamed piece; ``self.last`` holds the full record."""
        question = (question or "").strip()
        rec = TurnRecord(question=question)
        self.last = rec
        if not question:
            rec.error = "Type a question first."
            yield rec.error
            return
        plan = self.plan(question)
        rec.plan = plan
        if not plan.fits:
            rec.error = plan.notices[-1]
            yield f"⚠ {rec.error}"
            return
        rec.messages = self.messages_for(question, plan)
        try:
            for piece in self.backend.stream(rec.messages, max_new_tokens=min(self.max_new_tokens, self.reserve_answer),
                                             temperature=temperature):
                rec.answer += piece
                yield rec.answer
        except BackendError as err:
            rec.error = f"The language model failed: {err}"
            yield (rec.answer + "\n\n" if rec.answer else "") + f"⚠ {rec.error}"
            return
        rec.stats = dict(self.backend.last_stats)
        if self.tokens is not None:
            rec.citations = resolve_citations(rec.answer, self.tokens_at(plan.M), self.vocab)
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": rec.answer}]
        if self.audit is not None:
            self.audit.log_turn(self.image_id, rec.messages, rec.answer,
                                [{"token": c["cite"], "index": c["index"], "boxes": c["boxes"]} for c in rec.citations],
                                backend=self.backend.name, M=plan.M, dropped_turns=plan.dropped_turns,
                                notices=plan.notices)
