"""Integer probability tables and a range coder (``constriction``) shared by the entropy models of §5.

A learned entropy model gives a probability for every integer symbol. To write real bits both sides
must use *exactly* the same probabilities, so they are frozen once into integer frequency tables
(``PRECISION`` bits, every symbol ≥ 1, each row summing to exactly 2**PRECISION; the coder reads
each row's precision from its sum) and saved in the
checkpoint; the encoder and the decoder read the same integers and never recompute them from floats.
This avoids CompressAI's best-known bug, a bitstream that decodes wrongly on another machine.

Each table covers the symbols ``offset … offset + length - 2`` and ends with one *escape* symbol that
carries the tail mass; an escaped value is then written exactly with a uniform 16-bit code, so any
integer latent in ±32767 round-trips losslessly.

The coder is ``constriction.stream.queue.RangeEncoder`` (Bamler 2022): symbols are decoded in the order
they were encoded (first in, first out). The tables are handed over as float64 ``freq / 2**PRECISION``,
exact binary fractions, with ``perfect=False``, so constriction's own fixed-point rounding is a pure
function of those integers.
"""
from __future__ import annotations

import numpy as np

PRECISION = 20                 # bits of the integer frequency tables (constriction's models carry 24)
ESCAPE_BITS = 16               # an escaped value is sent as a uniform symbol in [0, 2**16)
ESCAPE_RANGE = 2 ** (ESCAPE_BITS - 1)


def quantize_pmf(pmf: np.ndarray, tail: float, precision: int = PRECISION) -> np.ndarray:
    """Float pmf over n symbols plus tail mass -> int64 frequencies of n + 1 symbols summing to 2**precision.

    Deterministic: floor of the scaled probabilities, every symbol at least 1, and the remainder
    given to (or taken from) the most probable symbols. Runs once when tables are built.
    """
    p = np.concatenate([np.asarray(pmf, dtype=np.float64), [max(float(tail), 0.0)]])
    p = np.clip(p, 0.0, None)
    total = 1 << precision
    n = len(p)
    if n > total // 2:
        raise ValueError(f"a table of {n} symbols does not fit {precision}-bit frequencies")
    s = p.sum()
    p = p / s if s > 0 else np.full(n, 1.0 / n)
    freq = np.maximum(1, np.floor(p * (total - n)).astype(np.int64))
    diff = total - int(freq.sum())
    order = np.argsort(-freq, kind="stable")
    i = 0
    while diff != 0:  # spread the remainder over the largest entries, one unit each, round robin
        j = order[i % n]
        if diff > 0:
            freq[j] += 1
            diff -= 1
        elif freq[j] > 1:
            freq[j] -= 1
            diff += 1
        i += 1
    assert int(freq.sum()) == total and freq.min() >= 1
    return freq


def pack_tables(freqs: list[np.ndarray], offsets: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ragged tables -> (T, Lmax) int32 padded with zeros, (T,) lengths, (T,) offsets."""
    lmax = max(len(f) for f in freqs)
    table = np.zeros((len(freqs), lmax), dtype=np.int32)
    for i, f in enumerate(freqs):
        table[i, : len(f)] = f
    return table, np.array([len(f) for f in freqs], np.int32), np.array(offsets, np.int32)


def table_bits(table: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, symbols: np.ndarray,
               index: np.ndarray) -> float:
    """Ideal code length, in bits, of integer ``symbols`` under rows ``index`` of the integer tables."""
    symbols = np.asarray(symbols, np.int64).ravel()
    index = np.asarray(index, np.int64).ravel()
    s = symbols - offsets[index]
    n = lengths[index].astype(np.int64)
    esc = (s < 0) | (s >= n - 1)
    s = np.where(esc, n - 1, s)
    f = table[index, s].astype(np.float64)
    total = table.astype(np.float64).sum(1)[index]
    return float(np.sum(np.log2(total) - np.log2(f)) + ESCAPE_BITS * esc.sum())


def _rows(symbols, index, table, lengths, offsets):
    """(table symbols with escapes marked, escape mask, (n, Lmax) float64 probabilities) for row-wise coding."""
    s = symbols - offsets[index]
    n = lengths[index].astype(np.int64)
    esc = (s < 0) | (s >= n - 1)
    s = np.where(esc, n - 1, s)
    rows = table[index, : int(n.max())].astype(np.float64)
    return s, esc, rows / table[index].astype(np.float64).sum(1, keepdims=True)


def _model(freq: np.ndarray):
    import constriction

    total = int(freq.sum())
    if total & (total - 1):
        raise ValueError(f"a frequency table must sum to a power of two, got {total}")
    return constriction.stream.model.Categorical(freq.astype(np.float64) / float(total), perfect=False)


class TableEncoder:
    """Writes integer symbols, each under one row of an integer table, into a range-coded stream."""

    def __init__(self):
        import constriction

        self._enc = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, index: np.ndarray, table: np.ndarray, lengths: np.ndarray,
               offsets: np.ndarray) -> None:
        """Symbols (any shape) and their table rows (same shape). Order: by row, then position."""
        import constriction

        symbols = np.asarray(symbols, np.int64).ravel()
        index = np.asarray(index, np.int64).ravel()
        escaped = []
        for t in np.unique(index):  # sorted rows: the decoder, knowing ``index``, walks the same order
            pos = np.flatnonzero(index == t)
            n = int(lengths[t])
            s = symbols[pos] - int(offsets[t])
            esc = (s < 0) | (s >= n - 1)
            s = np.where(esc, n - 1, s).astype(np.int32)
            self._enc.encode(s, _model(table[t, :n]))
            escaped.append(symbols[pos[esc]])
        values = np.concatenate(escaped) if escaped else np.zeros(0, np.int64)
        if values.size:
            if np.abs(values).max() >= ESCAPE_RANGE:
                raise ValueError(f"latent value {int(np.abs(values).max())} is beyond the ±{ESCAPE_RANGE - 1} the coder escapes")
            self._enc.encode((values + ESCAPE_RANGE).astype(np.int32), constriction.stream.model.Uniform(1 << ESCAPE_BITS))

    def encode_rows(self, symbols: np.ndarray, index: np.ndarray, table: np.ndarray, lengths: np.ndarray,
                    offsets: np.ndarray) -> None:
        """Like :meth:`encode` but in one call, in the given order (each symbol with its own row).

        For few symbols with many different rows (one position of an autoregressive model). Rows are
        cut to the longest one used; the zero padding gets constriction's smallest probability.
        """
        import constriction

        symbols = np.asarray(symbols, np.int64).ravel()
        index = np.asarray(index, np.int64).ravel()
        s, esc, probs = _rows(symbols, index, table, lengths, offsets)
        self._enc.encode(s.astype(np.int32), constriction.stream.model.Categorical(perfect=False), probs)
        if esc.any():
            self._encode_escapes(symbols[esc])

    def _encode_escapes(self, values: np.ndarray) -> None:
        import constriction

        if np.abs(values).max() >= ESCAPE_RANGE:
            raise ValueError(f"latent value {int(np.abs(values).max())} is beyond the ±{ESCAPE_RANGE - 1} the coder escapes")
        self._enc.encode((values + ESCAPE_RANGE).astype(np.int32), constriction.stream.model.Uniform(1 << ESCAPE_BITS))

    def uint(self, value: int, bits: int = 16) -> None:
        """A small unsigned integer sent with a uniform code (e.g. a flag or a count)."""
        import constriction

        self._enc.encode(np.array([value], np.int32), constriction.stream.model.Uniform(1 << bits))

    def words(self) -> np.ndarray:
        return self._enc.get_compressed()

    def num_bits(self) -> int:
        return int(self._enc.num_bits())


class TableDecoder:
    """Reads back what :class:`TableEncoder` wrote, given the same tables and row indices."""

    def __init__(self, words: np.ndarray):
        import constriction

        self._dec = constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))

    def decode(self, index: np.ndarray, table: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        import constriction

        shape = np.shape(index)
        index = np.asarray(index, np.int64).ravel()
        out = np.zeros(index.size, np.int64)
        esc_pos = []
        for t in np.unique(index):
            pos = np.flatnonzero(index == t)
            n = int(lengths[t])
            s = np.asarray(self._dec.decode(_model(table[t, :n]), pos.size), np.int64)
            out[pos] = s + int(offsets[t])
            esc_pos.append(pos[s == n - 1])
        esc = np.concatenate(esc_pos) if esc_pos else np.zeros(0, np.int64)
        if esc.size:
            v = np.asarray(self._dec.decode(constriction.stream.model.Uniform(1 << ESCAPE_BITS), esc.size), np.int64)
            out[esc] = v - ESCAPE_RANGE
        return out.reshape(shape)

    def decode_rows(self, index: np.ndarray, table: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Reads what :meth:`TableEncoder.encode_rows` wrote."""
        import constriction

        index = np.asarray(index, np.int64).ravel()
        _, _, probs = _rows(np.zeros_like(index), index, table, lengths, offsets)
        s = np.asarray(self._dec.decode(constriction.stream.model.Categorical(perfect=False), probs), np.int64)
        esc = s == lengths[index] - 1
        out = s + offsets[index]
        if esc.any():
            v = np.asarray(self._dec.decode(constriction.stream.model.Uniform(1 << ESCAPE_BITS), int(esc.sum())), np.int64)
            out[esc] = v - ESCAPE_RANGE
        return out

    def uint(self, bits: int = 16) -> int:
        import constriction

        return int(self._dec.decode(constriction.stream.model.Uniform(1 << bits), 1)[0])


def bits_to_bpp(bits: float, height: int, width: int) -> float:
    return bits / float(height * width)


def log2_likelihood_bits(likelihoods) -> float:
    """Σ −log2 p over a tensor of likelihoods: the rate term R of §3.2, in bits."""
    import torch

    return float(-torch.log2(likelihoods.double()).sum())


__all__ = ["PRECISION", "ESCAPE_BITS", "quantize_pmf", "pack_tables", "table_bits", "TableEncoder",
           "TableDecoder", "bits_to_bpp", "log2_likelihood_bits"]
