"""§5.1–5.2: learned codecs with real bitstreams (factorized prior, scale hyperprior), one entry per λ.

Names follow CompressAI's quality index: ``hyperprior-q3`` was trained with CompressAI's quality-3 λ
(0.0067), so its point can be read against the published bmshj2018-hyperprior curve.
"""
from ..registry import RegistryEntry, register

HYPERPRIOR_QUALITIES = (1, 2, 3, 4)
FACTORIZED_QUALITIES = (2, 4)

for q in HYPERPRIOR_QUALITIES:
    register(RegistryEntry(
        name=f"hyperprior-q{q}", kind="codec", target="museumtok.codecs.learned.hyperprior:ScaleHyperprior",
        description=f"scale hyperprior (Ballé et al. 2018), λ of CompressAI quality {q}, CPU-trained",
        chapter="5.2", checkpoint=f"hyperprior-q{q}",
    ))
for q in FACTORIZED_QUALITIES:
    register(RegistryEntry(
        name=f"factorized-q{q}", kind="codec", target="museumtok.codecs.learned.factorized:FactorizedPrior",
        description=f"factorized prior (Ballé et al. 2017), λ of CompressAI quality {q}, CPU-trained",
        chapter="5.1", checkpoint=f"factorized-q{q}",
    ))
CONTEXT_QUALITIES = (3,)

for q in CONTEXT_QUALITIES:
    register(RegistryEntry(
        name=f"context-q{q}", kind="codec", target="museumtok.codecs.learned.context:ContextHyperprior",
        description=f"mean-scale hyperprior + autoregressive context (Minnen et al. 2018), λ of CompressAI quality {q}, "
                    "sequential decoding, CPU-trained",
        chapter="5.2", checkpoint=f"context-q{q}",
    ))
