"""Entropy models and real bitstreams (§3.3, §5.1–5.3).

    coding.py       integer frequency tables, range coder (constriction), escape codes
    bottleneck.py   EntropyBottleneck: the factorized prior (Ballé et al. 2017 / 2018 App. 6.1)
    gaussian.py     GaussianConditional: P(ŷ | σ, μ) with tabled scales (Ballé et al. 2018)
    unigram.py      UnigramPrior: token counts -> one table (tokenizers as codecs), prior.json of counts per M

Pure maths: nothing here imports the registry, the data or the tokenizers (tests/test_tokenizer_prior.py).
"""
from .bottleneck import EntropyBottleneck, quantize
from .coding import PRECISION, TableDecoder, TableEncoder, quantize_pmf, table_bits
from .gaussian import GaussianConditional

__all__ = ["EntropyBottleneck", "GaussianConditional", "quantize", "PRECISION", "TableDecoder",
           "TableEncoder", "quantize_pmf", "table_bits"]
