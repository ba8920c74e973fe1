"""The audit log of review §6.4: one JSON line per image token and per chat turn, append-only.

    log = AuditLog("~/.cache/museumtok/audit/chat.jsonl")
    log.log_image("room3_vase", tokens, vocab)           # M records: image id, tokenizer, token, patch, level, ts
    log.log_question("room3_vase", "Who painted it?")     # when the question arrives, before generation
    log.log_turn("room3_vase", prompt, answer, cited)     # prompt hash, answer (or that it was cut off), cited tokens
    resolve_citations("… [CITE:<v312>] …", tokens, vocab) # -> patch boxes of every position holding 312

Each record is written with one ``write(2)`` on a file opened ``O_APPEND``, then flushed and
``fsync``-ed, so a crash loses at most the record being written. If a writer was killed mid-line
(``kill -9``), the next :class:`AuditLog` opened on the file moves the torn tail out of the way
(into a ``repair`` record that keeps its bytes, escaped) before appending, so every line of the file
is always a complete JSON object.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .vocab import ImageVocab

CITE = re.compile(r"\[CITE:\s*(<[^>\s]+>)\s*\]")


def utc_now() -> str:
    """ISO 8601 UTC timestamp with milliseconds, e.g. 2025-04-08T10:23:45.123Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def prompt_hash(prompt: str | list) -> str:
    """sha256 of the prompt (a string, or messages serialised as canonical JSON)."""
    if not isinstance(prompt, str):
        prompt = json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class AuditLog:
    """Append-only JSONL, one fsync-ed ``write`` per record (thread-safe within a process)."""

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._repair_torn_tail()

    # ---- writing ---------------------------------------------------------------------------------
    def _repair_torn_tail(self) -> None:
        """If the file does not end with a newline, a writer died mid-record: cut the torn bytes
        and log them as a ``repair`` record (the only non-append operation, on an incomplete line)."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
        keep = data.rfind(b"\n") + 1                   # 0 when the whole file is one torn line
        torn = data[keep:]
        os.truncate(self.path, keep)
        self.append({"type": "repair", "ts": utc_now(), "torn_bytes": len(torn),
                     "torn_text": torn.decode("utf-8", "backslashreplace")})

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            n = os.write(self._fd, line)
            while n < len(line):                        # short writes are rare but legal
                n += os.write(self._fd, line[n:])
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- the two record kinds of §6.4 -------------------------------------------------------------
    def log_image(self, image_id: str, tokens, vocab: ImageVocab | None = None) -> int:
        """One record per image token: image id, tokenizer, token, patch box, level, timestamp."""
        vocab = vocab or ImageVocab.for_tokenizer(tokens.tokenizer, tokens.K)
        ts = utc_now()
        recs = tokens.token_records()
        for r in recs:
            self.append({"type": "image_token", "image_id": image_id, "tokenizer": tokens.tokenizer,
                         "position": r["position"], "token": vocab.token(r["token"]),
                         "patch": r["patch"], "level": r["level"], "timestamp": ts})
        return len(recs)

    def log_question(self, image_id: str | None, question: str, **extra) -> dict:
        """The visitor's question, written when it arrives (before any generation): a crash or a kill
        during the answer cannot lose it; the matching ``turn`` record follows when the answer ends."""
        rec = {"type": "question", "image_id": image_id, "question": question, "timestamp": utc_now(), **extra}
        self.append(rec)
        return rec

    def log_turn(self, image_id: str | None, prompt, answer: str, cited: list[dict] | None = None,
                 **extra) -> dict:
        rec = {"type": "turn", "image_id": image_id, "prompt_hash": prompt_hash(prompt),
               "answer": answer, "cited": cited or [], "timestamp": utc_now(), **extra}
        self.append(rec)
        return rec


def close_dangling(folder: str | Path, reason: str = "the app stopped before the answer ended") -> int:
    """After a crash or ``kill -9``: give every question that has no answer record a ``turn`` record saying
    it was cut off (append-only; run at start-up over the audit folder). Returns how many were closed."""
    n = 0
    for path in sorted(Path(folder).expanduser().glob("*.jsonl")):
        open_q: dict | None = None
        with AuditLog(path) as log:                     # also repairs a torn last line
            for rec in read_log(path):
                if rec.get("type") == "question":
                    open_q = rec
                elif rec.get("type") == "turn":
                    open_q = None
            if open_q is not None:
                log.append({"type": "turn", "image_id": open_q.get("image_id"), "question": open_q.get("question"),
                            "answer": "", "completed": False, "error": reason, "timestamp": utc_now()})
                n += 1
    return n


def read_log(path: str | Path) -> Iterator[dict]:
    """Every complete JSON record; a torn last line (no newline yet) is skipped."""
    with open(Path(path).expanduser(), "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            yield json.loads(raw)


def resolve_citations(answer: str, tokens, vocab: ImageVocab | None = None) -> list[dict]:
    """``[CITE:<v312>]`` in an answer -> the patch boxes of every position whose token is 312.

    Returns one dict per citation: the cited text, the index k (None if it is not a token of this
    image's vocabulary), the positions and their patch boxes in the original image's pixels."""
    vocab = vocab or ImageVocab.for_tokenizer(tokens.tokenizer, tokens.K)
    flat = tokens.flat()
    out = []
    for m in CITE.finditer(answer):
        text = m.group(1)
        try:
            k = vocab.parse_token(text)
        except ValueError:
            # accept the review's bare "<v312>" for a namespaced vocab too
            try:
                k = ImageVocab(K=vocab.K).parse_token(text)
            except ValueError:
                out.append({"cite": text, "index": None, "positions": [], "boxes": []})
                continue
        pos = (flat == k).nonzero().reshape(-1).tolist()
        out.append({"cite": text, "index": k, "positions": pos,
                    "boxes": [[int(v) for v in tokens.boxes[p]] for p in pos]})
    return out
