"""§5.4, §5.5, §10.1: the any-M resampler tokenizer and the two-level multi-scale tokenizer."""
from ..registry import RegistryEntry, register

register(RegistryEntry(
    name="anym-k1000", kind="tokenizer", target="museumtok.tokenizers.anym:AnyMTokenizer",
    description=("any M from 1 to 64: Perceiver Resampler latents, FSQ (K=1000), nested dropout; "
                 "the first M tokens decode the whole 64 px image"),
    chapter="5.4", supported_M=tuple(range(1, 65)), default_M=32, checkpoint="anym-k1000",
))

register(RegistryEntry(
    name="multiscale-k1000", kind="tokenizer", target="museumtok.tokenizers.multiscale:MultiScaleTokenizer",
    description=("two levels on a 128 px image: 8×8 coarse FSQ tokens (M=64), plus 16×16 fine residual "
                 "tokens (M=320); K=1000"),
    chapter="5.5", supported_M=(64, 320), default_M=320, checkpoint="multiscale-k1000",
))
