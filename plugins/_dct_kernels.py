"""The tensor code of the ``dct`` transform (torch and NumPy).

Kept apart from :mod:`benchharness_plugins.transforms` so that registering and listing
the plugins imports neither: this module is imported only when a transform runs.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor


def dct_matrix(n: int, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``n × n``): ``D @ x`` is ``dct(x, norm="ortho")``.

    ``D[k, i] = s_k · cos(π (2i + 1) k / 2n)`` with ``s_0 = √(1/n)``, ``s_k = √(2/n)``.
    Built in float64, then cast to ``dtype`` (default float64), so float32 callers get
    correctly rounded entries.
    """
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=torch.float64 if dtype is None else dtype, device=device)


def transform(
    x: Tensor,
    k: int,
    *,
    lowfreq_order: Tensor | None,
    reconstruct: bool,
    chunk: int,
    threads: int | None = None,
) -> Tensor:
    """Per image (the last two dimensions of ``x``): the 2-D DCT, all but ``k``
    coefficients zeroed, then (``reconstruct``) the inverse DCT.

    The kept coefficients are the first ``k`` of ``lowfreq_order`` (flat positions) when
    given, else the ``k`` largest in magnitude (:func:`keep_largest`). Works through
    ``chunk`` images at a time, so that a chunk's temporaries stay in the CPU caches. On
    the CPU the chunks are shared out among ``threads`` (default: torch's intra-op
    threads) Python threads, each running torch single-threaded: whole chunks in
    parallel, with no barrier per operation (those stalled on a busy machine). Every
    chunk is computed as it would be alone, so the result does not depend on ``threads``.
    """
    h, w = x.shape[-2:]
    d_h = dct_matrix(h, x.dtype, x.device)
    d_w_t = dct_matrix(w, x.dtype, x.device).T.contiguous()
    d_h_t, d_w = d_h.T.contiguous(), d_w_t.T.contiguous()
    low_mask = None
    if lowfreq_order is not None:
        low_mask = torch.zeros(h * w, dtype=x.dtype, device=x.device)
        low_mask[lowfreq_order[:k].to(x.device)] = 1.0
    out = torch.empty_like(x)
    pieces = list(zip(x.split(chunk), out.split(chunk), strict=True))

    def run(share: list[tuple[Tensor, Tensor]], single_threaded: bool = False) -> None:
        if single_threaded:
            torch.set_num_threads(1)  # this thread's intra-op threads
        for part, dest in share:
            # part @ D_Wᵀ first: a contiguous batch times a matrix is one flat GEMM.
            coef = (d_h @ (part @ d_w_t)).reshape(-1, h * w)
            if k < h * w:
                if low_mask is not None:
                    coef.mul_(low_mask)
                else:
                    keep_largest(coef, k)
            coef = coef.reshape(part.shape)
            if reconstruct:
                torch.matmul(d_h_t @ coef, d_w, out=dest)
            else:
                dest.copy_(coef)

    if threads is None:
        threads = torch.get_num_threads()
    threads = min(threads, len(pieces))
    if x.device.type != "cpu" or threads <= 1:
        run(pieces)
        return out
    saved = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(threads) as pool:
            shares = [pieces[i::threads] for i in range(threads)]
            list(pool.map(lambda share: run(share, single_threaded=True), shares))
    finally:
        torch.set_num_threads(saved)
    return out


def keep_largest(coef: Tensor, k: int) -> None:
    """Zero, in place, all but the ``k`` largest-magnitude entries of each row of ``coef``.

    Exactly ``k`` survive per row: every entry above the row's k-th largest magnitude,
    and of the entries equal to it, the first ones in row order. The threshold comes
    from a NumPy partition (a selection, O(n) per row) of the magnitudes' bit patterns —
    non-negative IEEE floats order as their bits do; it measured ~3× faster than
    ``torch.topk``, which also returns indices.
    """
    n = coef.shape[1]
    if k >= n:
        return
    keys = _magnitude_keys(coef)
    if keys.device.type == "cpu":
        position = n - k  # the k-th largest is at n − k in ascending order
        threshold = torch.from_numpy(np.partition(keys.numpy(), position, axis=1)[:, position])
    else:  # untested here (no GPU): the same selection with torch on the device
        threshold = keys.kthvalue(n - k + 1, dim=1).values
    threshold = threshold.unsqueeze(1)
    drop = keys < threshold
    kept = n - drop.sum(1)
    tied_rows = (kept > k).nonzero().squeeze(1)
    if tied_rows.numel():
        row_keys, row_threshold = keys[tied_rows], threshold[tied_rows]
        above = row_keys > row_threshold
        tied = row_keys == row_threshold
        room = k - above.sum(1, keepdim=True)  # how many tied entries may stay
        drop[tied_rows] = ~above & (~tied | (tied.cumsum(1) > room))
    coef.masked_fill_(drop, 0.0)


def _magnitude_keys(coef: Tensor) -> Tensor:
    """Integers that order as ``coef.abs()`` does (NaN above everything)."""
    magnitude = coef.detach().abs()
    if magnitude.dtype == torch.float64:
        return magnitude.view(torch.int64)
    if magnitude.dtype != torch.float32:  # bfloat16, float16: exact in float32
        magnitude = magnitude.float()
    return magnitude.view(torch.int32)
