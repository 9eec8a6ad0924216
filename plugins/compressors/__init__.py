"""Built-in weight compressors: pruning, quantisation, low-rank and their sums.

One module per family (``pruning``, ``quantization``, ``lowrank``, ``additive``) and
``_common`` for the bit accounting they share. Registration happens only in the hook.
"""

from benchharness import hookimpl

from .additive import PART_CLASSES, Additive


@hookimpl
def register_compressors(register):
    for cls in PART_CLASSES.values():
        register(cls)
    register(Additive)
