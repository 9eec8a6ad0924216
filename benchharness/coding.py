"""Building blocks for compressor plugins: exact bit accounting, deterministic top-k and
a per-layer Θ container. Public API (the built-in compressors use exactly these).

The bit model every built-in compressor follows, and third-party ones should too:

* every stored real number (a kept weight, a codebook entry, a scale, a factor entry) is
  a 32-bit float (:data:`FLOAT_BITS`), whatever the dtype of the tensor compressed;
* an index choosing one of ``n`` alternatives costs ⌈log2 n⌉ bits (:func:`index_bits`);
* shapes are part of the architecture and cost nothing;
* ``Compressed.bits()`` counts Θ only: biases and unselected weights are added by the
  harness at 32 bits each.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from benchharness.api import Compressed

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "FLOAT_BITS",
    "LayerTheta",
    "LayerwiseWeights",
    "as_matrix",
    "codebook_bits",
    "column_sparse_bits",
    "csr_bits",
    "factor_bits",
    "fraction_count",
    "index_bits",
    "scaled_macs",
    "sparse_bits",
    "top_k_mask",
]

FLOAT_BITS = 32


def index_bits(choices: int) -> int:
    """⌈log2 choices⌉: the bits that code one of ``choices`` alternatives (0 if only one)."""
    return max(choices - 1, 0).bit_length()


def codebook_bits(entries: int) -> int:
    """A stored codebook of ``entries`` 32-bit values."""
    return FLOAT_BITS * entries


def sparse_bits(numel: int, nnz: int) -> int:
    """``nnz`` kept values of a tensor of ``numel`` entries, each with its flat position:
    ``nnz × (32 + ⌈log2 numel⌉)`` (the coding of ``prune``)."""
    return nnz * (FLOAT_BITS + index_bits(numel))


def csr_bits(rows: int, cols: int, nnz: int) -> int:
    """A ``rows × cols`` matrix in CSR: ``nnz`` values with ⌈log2 cols⌉-bit column
    indices, plus ``rows + 1`` row pointers of ⌈log2 (nnz + 1)⌉ bits each."""
    return nnz * (FLOAT_BITS + index_bits(cols)) + (rows + 1) * index_bits(nnz + 1)


def column_sparse_bits(rows: int, cols: int, kept_columns: int) -> int:
    """A ``rows × cols`` matrix stored as its kept (nonzero) columns: their values plus a
    1-bit-per-column mask."""
    return FLOAT_BITS * rows * kept_columns + cols


def factor_bits(m: int, n: int, rank: int) -> int:
    """Low-rank factors U (m × r) and V (n × r) of 32-bit values."""
    return FLOAT_BITS * rank * (m + n)


def scaled_macs(dense_macs: int, kept: int, total: int) -> int:
    """``dense_macs × kept / total``, exact when ``total`` divides ``dense_macs``.

    That is the case for a layer's weight: its dense MACs are its number of weights times
    the number of output positions (1 for Linear).
    """
    return dense_macs * kept // total if total else dense_macs


def fraction_count(fraction: float, total: int) -> int:
    """``round(fraction × total)`` (halves round up), at least 1 when ``total`` > 0."""
    return min(total, max(1, math.floor(fraction * total + 0.5))) if total else 0


def as_matrix(weight: Tensor) -> Tensor:
    """The weight as ``(out, in·kh·kw...)``: a Linear weight as is, a conv one lowered."""
    return weight.reshape(weight.shape[0], -1)


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest entries of 1-D ``scores``, exactly ``k`` of them.

    Ties at the threshold go to the lower index, so the result is deterministic. O(n).
    """
    import torch

    n = scores.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = torch.kthvalue(scores, n - k + 1).values  # the k-th largest
    above = scores > threshold
    tied = scores == threshold
    need = k - int(above.sum())
    return above | (tied & (torch.cumsum(tied, 0) <= need))


class LayerTheta(Protocol):
    """One layer's part of Θ."""

    def dense(self) -> Tensor: ...

    def bits(self) -> int: ...

    def macs(self, dense_macs: int) -> int: ...


class LayerwiseWeights(Compressed):
    """Θ made of independent per-layer parts (:class:`LayerTheta`), keyed by weight name.

    Realised by default (each part stores only what it keeps); a subclass whose saving is
    simulated sets ``realised = False``. A part may also have ``deploy(module)``: the
    layer as it runs from the part's stored form (see :meth:`Compressed.deploy`).
    """

    realised = True

    def __init__(self, layers: dict[str, LayerTheta]):
        self.layers = layers

    def decompress(self) -> dict[str, Tensor]:
        return {name: layer.dense() for name, layer in self.layers.items()}

    def bits(self) -> int:
        return sum(layer.bits() for layer in self.layers.values())

    def effective_macs(self, name: str, dense_macs: int) -> int:
        layer = self.layers.get(name)
        return dense_macs if layer is None else layer.macs(dense_macs)

    def deploy(self, name: str, module: nn.Module) -> nn.Module | None:
        """The layer's own ``deploy(module)`` when it has one (optional, see
        :meth:`Compressed.deploy`), else ``None``."""
        layer = self.layers.get(name)
        deploy = getattr(layer, "deploy", None)
        return None if deploy is None else deploy(module)
