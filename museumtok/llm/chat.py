"""A conversation about one artwork (review §8, §11): tokens in the prompt, budget, streaming, audit.

    session = ChatSession(make_backend("embedded"), audit=AuditLog(path))
    session.set_image(tok, "painting.jpg", M=256, image_id="room3_vase")   # flushes the old image
    for partial in session.ask("What colours dominate?"):
        print(partial)                         # the answer so far
    session.last                               # TurnRecord: answer, plan notices, citations, stats, prompt

Each turn: write the question to the audit log, give the model a placed Vietnamese question as its
English question type (:mod:`~museumtok.llm.intent`), plan the budget (:func:`~museumtok.llm.budget.plan_budget`:
drop the oldest turns, then lower M, never cut the question), build the prefix-format messages
(:mod:`~museumtok.llm.prompt`), stream from the backend through the guard (:mod:`~museumtok.llm.guard`:
image tokens only for a model taught to read them, no name the card does not hold), resolve
``[CITE:<token>]`` to patch boxes and write the answer (or that it was cut off) to the audit log.
A new image resets the history and the backend's KV cache, and pre-fills the cache with the
image and card so that the first question only runs its own tokens.

    ask(q) = prepare(q) ─► backend.stream(rec.messages) ─► GroundedRelease ─► finish(rec, answer)

Self-consistency (§7.2 item 3, :mod:`~museumtok.llm.consistency`): ``ChatSession(..., self_consistency=N)`` or
``ask(q, samples=N)`` samples N answers at ``sc_temperature`` and shows the one carrying the majority reading
(preferring a sample the guard would not cut); the guard then checks it as usual, and the audit log keeps
every sample and the vote. N = 1 (the default) is the plain greedy stream above.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .audit import AuditLog, resolve_citations
from .backends import BackendError, ChatBackend
from .budget import BudgetPlan, plan_budget
from .guard import GUARDED_PERSONA, GroundedRelease, cant_read_notice, looks_visual
from .intent import model_question
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
    raw_answer: str = ""                                  # what the model generated, before the guard
    guarded: bool = False                                 # image tokens withheld: no adapter reads them
    cut: list[str] = field(default_factory=list)          # ungrounded mentions that made the guard answer from the card
    model_question: str = ""                              # what the model read (a placed Vietnamese question: its English type)
    vote: dict | None = None                              # self-consistency: samples, readings, the chosen one


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


def llm_vocab_for(tokenizer_name: str) -> str:
    """The vocabulary namespace of a tokenizer's tokens: its own name, or the registry entry whose tokens
    they are (vqgan-f8-k1024 → vqvae-f8-k1024: same encoder and codebook)."""
    from .. import registry

    try:
        return registry.get(tokenizer_name).llm_vocab or tokenizer_name
    except KeyError:
        return tokenizer_name


class ChatSession:
    """One visitor's conversation with one backend about (at most) one image at a time.

    ``guard``: withhold image tokens from a model that no adapter taught to read them (it answers from the
    card and says it cannot read them); ``check``: cut any answer that names an artist, title or date the
    card does not hold and answer from the card instead (:mod:`museumtok.llm.guard`)."""

    def __init__(self, backend: ChatBackend, audit: AuditLog | None = None, context: int | None = None,
                 reserve_answer: int = 128, max_new_tokens: int = 128, persona: str = GUIDE_PERSONA,
                 use_adapter: bool = True, guard: bool = True, check: bool = True, adapter="auto",
                 self_consistency: int = 1, sc_temperature: float = 0.7):
        if self_consistency < 1:
            raise ValueError(f"self_consistency must be ≥ 1, got {self_consistency}")
        self.backend = backend
        self.audit = audit
        self.context = min(context or backend.context_window, backend.context_window)
        self.reserve_answer = reserve_answer
        self.max_new_tokens = max_new_tokens
        self.persona = persona
        self.use_adapter = use_adapter     # load the tokenizer's §7 SFT adapter (registry) when there is one
        self.adapter = adapter             # "auto": the registry's adapter for the tokenizer; a folder; None: none
        self.guard, self.check = guard, check
        self.self_consistency = self_consistency   # answers sampled per question (1: greedy, no vote)
        self.sc_temperature = sc_temperature       # their sampling temperature
        self.history: list[dict] = []      # user / assistant messages, oldest first
        self.tokens = None                 # TokenizedImage at the requested M
        self.image_id: str | None = None
        self.card: str | None = None
        self.vocab: ImageVocab | None = None
        self.M_options: tuple[int, ...] = ()
        self._encode: Callable[[int], Any] | None = None
        self._by_M: dict[int, Any] = {}
        self._told_cant_read = False       # the guarded guide has said it cannot read these tokens
        self.last: TurnRecord | None = None

    # ---- the image ---------------------------------------------------------------------------------
    def set_image(self, tokenizer, image, M: int | None = None, image_id: str | None = None,
                  card: str | None = None, tokens=None, warm: bool = True) -> None:
        """Tokenize ``image`` (or take ``tokens``), flush history and KV cache, audit every token, and
        (``warm``) pre-fill the backend's cache with the prompt up to the first question."""
        t = tokens if tokens is not None else tokenizer.encode(image, M)
        self.tokens = t
        self.image_id = image_id or f"image-{id(t):x}"
        self.card = card
        self.M_options = tuple(getattr(tokenizer, "supported_M", ()) or (t.M,))
        self._encode = (lambda m: tokenizer.encode(image, m)) if image is not None else None
        self._by_M = {t.M: t}
        self.vocab = ImageVocab.for_tokenizer(llm_vocab_for(t.tokenizer), t.K)
        if self.backend.adds_image_tokens:
            chosen = adapter_for(t.tokenizer, self.backend.name) if self.adapter == "auto" else self.adapter
            self.backend.attach_vocab(self.vocab, adapter=chosen if self.use_adapter and chosen else None)
        self.history = []
        self._told_cant_read = False
        self.backend.reset()
        if self.audit is not None:
            self.audit.log_image(self.image_id, t, self.vocab)
        if warm:
            self.warm()

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

    @property
    def guarded(self) -> bool:
        """True when the image's tokens are withheld: no adapter taught this backend to read them."""
        return self.guard and self.tokens is not None and not self.backend.reads_image_tokens

    def warm(self) -> float:
        """Run the prompt's fixed part (system, card, image) through the model now, so that the first
        question only pre-fills its own tokens; returns the seconds it took (0 for backends without a cache)."""
        if self.tokens is None:
            return 0.0
        plan = self.plan("?")
        return self.backend.warm(self.messages_for("?", plan)) if plan.fits else 0.0

    # ---- one turn ----------------------------------------------------------------------------------
    def _count(self, text: str) -> int:
        return self.backend.count_tokens(text) + MESSAGE_OVERHEAD

    def plan(self, question: str) -> BudgetPlan:
        system_tokens = self._count(system_prompt(None, self.card, self.persona))
        turns = []
        for i in range(0, len(self.history), 2):           # (user, assistant) pairs
            turns.append(sum(self._count(m["content"]) for m in self.history[i:i + 2]))
        M = self.tokens.M if self.tokens is not None and not self.guarded else None
        opts = self.M_options if self._encode is not None and not self.guarded else ()
        return plan_budget(self.context, self._count(question), turns, M=M, M_options=opts,
                           system_tokens=system_tokens, reserve_answer=self.reserve_answer)

    def messages_for(self, question: str, plan: BudgetPlan) -> list[dict]:
        kept = self.history[len(self.history) - 2 * plan.kept_turns:] if plan.kept_turns else []
        if self.guarded:
            return prefix_messages(None, question, kept, self.card, GUARDED_PERSONA)
        image_text = (image_block(self.tokens_at(plan.M), self.vocab, rows=self.backend.image_rows)
                      if plan.M is not None else None)
        return prefix_messages(image_text, question, kept, self.card, self.persona)

    def prepare(self, question: str) -> TurnRecord:
        """Plan the turn and build its messages (``rec.error`` says why a turn cannot run); the question
        is written to the audit log now, before any generation, so a crash cannot lose it."""
        question = (question or "").strip()
        rec = TurnRecord(question=question, guarded=self.guarded)
        self.last = rec
        if not question:
            rec.error = "Type a question first."
            return rec
        if self.audit is not None:
            self.audit.log_question(self.image_id, question, backend=self.backend.name)
        rec.model_question = model_question(question)
        plan = self.plan(rec.model_question)
        rec.plan = plan
        if not plan.fits:
            rec.error = plan.notices[-1]
            return rec
        rec.messages = self.messages_for(rec.model_question, plan)
        return rec

    def lead(self, rec: TurnRecord) -> str:
        """What the guarded guide says before its answer: that it cannot read these tokens (on the first
        turn about an image and whenever the question is about what the picture shows)."""
        if not rec.guarded or (self._told_cant_read and not looks_visual(rec.model_question or rec.question)):
            return ""
        self._told_cant_read = True
        return cant_read_notice(self.tokens.tokenizer) + " "

    def finish(self, rec: TurnRecord, answer: str, completed: bool = True) -> None:
        """Record the answer: history, citations, and the answer (or that it was cut off) in the audit log."""
        rec.answer = answer
        rec.stats = dict(self.backend.last_stats)
        if self.tokens is not None and rec.plan is not None and rec.plan.M is not None:
            rec.citations = resolve_citations(answer, self.tokens_at(rec.plan.M), self.vocab)
        if completed:
            self.history += [{"role": "user", "content": rec.model_question or rec.question},
                             {"role": "assistant", "content": answer}]
        if self.audit is not None:
            self.audit.log_turn(self.image_id, rec.messages, answer,
                                [{"token": c["cite"], "index": c["index"], "boxes": c["boxes"]} for c in rec.citations],
                                backend=self.backend.name, M=rec.plan.M if rec.plan else None,
                                dropped_turns=rec.plan.dropped_turns if rec.plan else 0,
                                notices=rec.plan.notices if rec.plan else [], question=rec.question,
                                completed=completed, guarded=rec.guarded, cut=rec.cut, error=rec.error,
                                **({"self_consistency": rec.vote} if rec.vote else {}))

    def ask(self, question: str, temperature: float = 0.0, samples: int | None = None) -> Iterator[str]:
        """Yield the answer so far after each streamed piece; ``self.last`` holds the full record.

        ``samples`` (default ``self.self_consistency``) > 1: sample that many answers at ``temperature`` (or
        ``self.sc_temperature`` when it is 0) and answer with the majority reading (no streaming: the voted
        answer comes at once)."""
        n = self.self_consistency if samples is None else samples
        if n < 1:
            raise ValueError(f"samples must be ≥ 1, got {n}")
        rec = self.prepare(question)
        if rec.error:
            yield rec.error if not rec.question else f"⚠ {rec.error}"
            return
        lead = self.lead(rec)
        if lead:
            yield lead.strip()
        if n > 1:
            yield from self._ask_voted(rec, lead, n, temperature or self.sc_temperature)
            return
        g = GroundedRelease(self.card) if self.check else None
        completed = False
        try:
            for piece in self.backend.stream(rec.messages, max_new_tokens=min(self.max_new_tokens, self.reserve_answer),
                                             temperature=temperature):
                rec.raw_answer += piece
                if g is None:
                    yield lead + rec.raw_answer
                    continue
                before = g.shown
                g.feed(piece)
                if g.cut:
                    break
                if g.shown != before:
                    yield lead + g.shown
            completed = True
        except BackendError as err:
            rec.error = f"The language model failed: {err}"
            self.finish(rec, lead + (g.shown if g else rec.raw_answer), completed=False)
            yield (rec.answer + "\n\n" if rec.answer else "") + f"⚠ {rec.error}"
            return
        finally:
            if not completed and rec.error is None and self.audit is not None:   # the visitor left mid-answer
                rec.error = "cut off before the answer ended"
                self.finish(rec, lead + (g.shown if g else rec.raw_answer), completed=False)
        final = g.final(rec.model_question or rec.question) if g is not None else rec.raw_answer
        if g is not None:
            rec.cut = g.cut
        self.finish(rec, lead + final)
        yield rec.answer

    def _ask_voted(self, rec: TurnRecord, lead: str, n: int, temperature: float) -> Iterator[str]:
        """Self-consistency: n samples, the vote, then the same guard check and record as :meth:`ask`."""
        from .consistency import answer_kind, sample_answers, vote
        from ..data.catalog import Card
        from .guide import ungrounded_mentions

        try:
            samples = sample_answers(self.backend, rec.messages, n, temperature,
                                     min(self.max_new_tokens, self.reserve_answer))
        except BackendError as err:
            rec.error = f"The language model failed: {err}"
            self.finish(rec, lead, completed=False)
            yield f"⚠ {rec.error}"
            return
        kind = answer_kind(rec.question) or answer_kind(rec.model_question)
        v = vote(samples, kind, Card.parse(self.card) if self.card else None,
                 acceptable=(lambda t: not ungrounded_mentions(t, self.card)) if self.check else None)
        rec.raw_answer = v.answer
        rec.vote = {"n": n, "temperature": temperature, **v.record()}
        final = v.answer
        if self.check:
            g = GroundedRelease(self.card)
            g.feed(v.answer)
            final = g.final(rec.model_question or rec.question)
            rec.cut = g.cut
        self.finish(rec, lead + final)
        yield rec.answer
