"""§4.1: k-means (Lloyd-Max) patch codebooks."""
from ..registry import RegistryEntry, register

#: with an 8 px patch: 64 px -> 8×8 tokens, 128 px -> 16×16, 256 px -> 32×32
M_P8 = (64, 256, 1024)

for K in (256, 1024):
    register(RegistryEntry(
        name=f"lloyd-patch-k{K}", kind="tokenizer",
        target="museumtok.tokenizers.lloyd_patch:LloydPatchTokenizer",
        description=f"k-means (Lloyd-Max) codebook of {K} 8×8 RGB patches; no neural network",
        chapter="4.1", supported_M=M_P8, default_M=256, checkpoint=f"lloyd-patch-k{K}",
        llm_adapter="sft-smollm2-lloyd-k1024" if K == 1024 else None,   # §7 adapter, used when bundled
    ))
