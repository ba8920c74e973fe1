"""Image tokens as LLM vocabulary (review §3.3, §8: ``<v312>``, ``<image>`` … ``</image>``).

    codebook index k  <->  text "<v312>" (or "<lloyd-patch-k1024:v312>", namespaced)  <->  LLM token id

One :class:`ImageVocab` per tokenizer. Its tokens are namespaced by the tokenizer (``<ns:vK>``),
so two tokenizers' index 312 never share an embedding row; ``<image>`` and ``</image>`` are shared.

    vocab = ImageVocab.for_tokenizer("lloyd-patch-k1024", K=1024)
    text = vocab.to_text(t.indices)            # "<image><lloyd-patch-k1024:v3>…</image>" (HTTP too)
    vocab.attach(model, hf_tokenizer)          # add K+2 tokens, resize, initialise new rows
    ids = vocab.to_ids(t.indices)              # (M+2,) LLM token ids
    vocab.from_ids(ids) == t.indices.flatten() # exact round trip; from_text likewise

New embedding rows are initialised either with the mean of the existing rows (``init="mean"``,
the usual choice, HF ``resize_token_embeddings(mean_resizing=True)``), or with the mean plus a
fixed random linear map of the (centred) codebook (``init="codebook"``), so that codewords
that are close in pixel space start close in the LLM's embedding space.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

IMAGE_START = "<image>"
IMAGE_END = "</image>"
_TOKEN = re.compile(r"<(?:([A-Za-z0-9_.\-]+):)?v(\d+)>")


class VocabError(ValueError):
    """Text or ids that are not this vocabulary's image tokens (the message says which)."""


def namespace_for(tokenizer_name: str) -> str:
    """The namespace of a registry name: the name itself ("lloyd-patch-k1024"), made pattern-safe.

    Registry names are already short and unique; only characters that would break the token
    pattern are replaced."""
    ns = re.sub(r"[^A-Za-z0-9_.\-]", "_", tokenizer_name)
    if not ns:
        raise VocabError("empty tokenizer name")
    return ns


@dataclass
class ImageVocab:
    K: int                          # codebook size: indices 0 … K-1
    namespace: str = ""             # "" -> "<v312>" (the review's form); else "<ns:v312>"
    token_offset: int | None = None # LLM id of index 0 once attached (ids are contiguous)
    start_id: int | None = None     # LLM id of <image>
    end_id: int | None = None       # LLM id of </image>

    @classmethod
    def for_tokenizer(cls, name: str, K: int) -> "ImageVocab":
        return cls(K=int(K), namespace=namespace_for(name))

    # ---- text form ---------------------------------------------------------------------------
    def token(self, k: int) -> str:
        k = int(k)
        if not 0 <= k < self.K:
            raise VocabError(f"index {k} outside the codebook [0, {self.K})")
        return f"<{self.namespace}:v{k}>" if self.namespace else f"<v{k}>"

    @property
    def tokens(self) -> list[str]:
        return [self.token(k) for k in range(self.K)]

    def to_text(self, indices: torch.Tensor | Sequence[int], delimiters: bool = True, rows: bool = False) -> str:
        """Indices (any shape, read row-major) -> "<image><v3><v17>…</image>"; ``rows``: a (h, w) grid is
        written row by row, each row ended by a newline (the grid format of Chameleon/Emu3)."""
        idx = torch.as_tensor(indices)
        if rows and idx.dim() == 2:
            body = "".join("".join(self.token(k) for k in r.tolist()) + "\n" for r in idx)
        else:
            body = "".join(self.token(k) for k in idx.reshape(-1).tolist())
        return f"{IMAGE_START}{body}{IMAGE_END}" if delimiters else body

    def parse_token(self, text: str) -> int:
        m = _TOKEN.fullmatch(text.strip())
        if not m:
            raise VocabError(f"{text!r} is not an image token like {self.token(0)!r}")
        return self._check(m)

    def _check(self, m: re.Match) -> int:
        ns, k = m.group(1) or "", int(m.group(2))
        if ns != self.namespace:
            raise VocabError(f"{m.group(0)!r} belongs to namespace {ns or '(none)'!r}, "
                             f"not {self.namespace or '(none)'!r}")
        if k >= self.K:
            raise VocabError(f"{m.group(0)!r}: index {k} outside the codebook [0, {self.K})")
        return k

    def from_text(self, text: str) -> torch.Tensor:
        """The indices of the first ``<image>…</image>`` block (or of all tokens if there is none)."""
        if IMAGE_START in text:
            start = text.index(IMAGE_START) + len(IMAGE_START)
            end = text.find(IMAGE_END, start)
            if end < 0:
                raise VocabError(f"{IMAGE_START} without {IMAGE_END}")
            text = text[start:end]
        out, pos = [], 0
        for m in _TOKEN.finditer(text):
            if text[pos:m.start()].strip():
                raise VocabError(f"unexpected text {text[pos:m.start()]!r} between image tokens")
            out.append(self._check(m))
            pos = m.end()
        if text[pos:].strip():
            raise VocabError(f"unexpected text {text[pos:]!r} after image tokens")
        return torch.tensor(out, dtype=torch.long)

    def find_tokens(self, text: str) -> list[int]:
        """Every token of this vocabulary mentioned anywhere in ``text`` (e.g. in citations)."""
        out = []
        for m in _TOKEN.finditer(text):
            try:
                out.append(self._check(m))
            except VocabError:
                continue
        return out

    # ---- LLM ids -----------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self.token_offset is not None

    def _need_attached(self):
        if not self.attached:
            raise VocabError("this ImageVocab is not attached to an LLM tokenizer; call attach() first "
                             "or use the text form (to_text) for backends that cannot add tokens")

    def to_ids(self, indices: torch.Tensor | Sequence[int], delimiters: bool = True) -> torch.Tensor:
        self._need_attached()
        flat = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if flat.numel() and (flat.min() < 0 or flat.max() >= self.K):
            raise VocabError(f"indices outside the codebook [0, {self.K})")
        ids = flat + self.token_offset
        if delimiters:
            ids = torch.cat([torch.tensor([self.start_id]), ids, torch.tensor([self.end_id])])
        return ids

    def from_ids(self, ids: torch.Tensor | Sequence[int], row_end: int | None = None) -> torch.Tensor:
        """LLM ids -> indices; ``<image>``/``</image>`` (and ``row_end`` ids) are skipped, any other id is an error."""
        self._need_attached()
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        ids = ids[(ids != self.start_id) & (ids != self.end_id) & (ids != (-1 if row_end is None else row_end))]
        k = ids - self.token_offset
        bad = (k < 0) | (k >= self.K)
        if bad.any():
            raise VocabError(f"ids {ids[bad][:5].tolist()} are not image tokens of {self.namespace or 'this vocab'}")
        return k

    def is_image_id(self, ids: torch.Tensor) -> torch.Tensor:
        self._need_attached()
        ids = torch.as_tensor(ids)
        return ((ids >= self.token_offset) & (ids < self.token_offset + self.K)) | (ids == self.start_id) | (
            ids == self.end_id)

    def attach(self, model, tokenizer, init: str = "mean", codebook: torch.Tensor | None = None,
               seed: int = 0) -> "ImageVocab":
        """Add ``<image>``, ``</image>`` and the K tokens to an HF tokenizer, resize the model's
        embeddings (tied output head included) and initialise the new rows.

        Idempotent: tokens already present are reused (a second tokenizer's vocab adds its own)."""
        new = [IMAGE_START, IMAGE_END] + self.tokens
        before = len(tokenizer)
        tokenizer.add_tokens(new)   # whole-word added tokens (kept by decode, unlike special ones)
        ids = tokenizer.convert_tokens_to_ids(new)
        self.start_id, self.end_id = int(ids[0]), int(ids[1])
        body = torch.tensor(ids[2:])
        if not bool((body[1:] - body[:-1] == 1).all()):
            raise VocabError("image tokens did not get contiguous ids")
        self.token_offset = int(body[0])
        emb = model.get_input_embeddings()
        old_rows = emb.weight.shape[0]
        if len(tokenizer) > old_rows:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            self._init_rows(model, min(old_rows, before), len(tokenizer), init, codebook, seed)
        return self

    @torch.no_grad()
    def _init_rows(self, model, n_old: int, n_new: int, init: str, codebook, seed: int):
        W = model.get_input_embeddings().weight                     # (V', d)
        mean = W[:n_old].mean(0)                                    # (d,)
        W[n_old:n_new] = mean
        if init == "codebook":
            if codebook is None:
                raise VocabError("init='codebook' needs the tokenizer's codebook (K, D)")
            C = codebook.float().to(W.device)                          # (K, D)
            C = C - C.mean(0, keepdim=True)
            g = torch.Generator().manual_seed(seed)
            P = torch.randn(C.shape[1], W.shape[1], generator=g).to(W.device) / C.shape[1] ** 0.5  # (D, d)
            E = C @ P                                                   # (K, d)
            scale = W[:n_old].std(0).mean() / E.std().clamp_min(1e-8)
            rows = torch.arange(self.K, device=W.device) + self.token_offset
            W[rows] = (mean + scale * E).to(W.dtype)
        elif init != "mean":
            raise VocabError(f"init must be 'mean' or 'codebook', got {init!r}")
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != W.data_ptr():
            out.weight[n_old:n_new] = out.weight[:n_old].mean(0)


def image_vocab_for(tokens) -> ImageVocab:
    """The vocabulary of a :class:`~museumtok.tokenizers.base.TokenizedImage`'s tokenizer."""
    return ImageVocab.for_tokenizer(tokens.tokenizer, tokens.K)


def all_tokens(vocabs: Iterable[ImageVocab]) -> list[str]:
    return [t for v in vocabs for t in v.tokens]
