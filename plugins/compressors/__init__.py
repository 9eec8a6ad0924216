"""Built-in weight compressors: pruning, quantisation, low-rank, their sums, and the
data-aware sparse + low-rank ADMM and randomized greedy compressors.

One module per family (``pruning``, ``quantization``, ``lowrank``, ``additive``,
``sparse_lowrank``, ``greedy``); the bit accounting they share is the public
``benchharness.coding``. Registration happens only in the hook.
"""

from benchharness import hookimpl

from .additive import Additive
from .greedy import GreedyRandom
from .lowrank import LowRank, LowRankSelect
from .pruning import Prune, PruneL1, PruneStructured
from .quantization import Binarize, BinarizeScaled, Quantize, TernarizeScaled
from .sparse_lowrank import SparseLowRank

BUILTIN_COMPRESSORS = (
    Prune,
    PruneL1,
    PruneStructured,
    Quantize,
    Binarize,
    BinarizeScaled,
    TernarizeScaled,
    LowRank,
    LowRankSelect,
    Additive,
    SparseLowRank,
    GreedyRandom,
)


@hookimpl
def register_compressors(register):
    for cls in BUILTIN_COMPRESSORS:
        register(cls)
