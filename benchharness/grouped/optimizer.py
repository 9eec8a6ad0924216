"""SGD over stacked member parameters, with per-member hyperparameters, in one step."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["FusedSGD"]


class FusedSGD(torch.optim.Optimizer):
    """``torch.optim.SGD`` (no dampening) for ``members`` models stacked along dim 0.

    Every parameter's dimension 0 holds the members in order, ``shape[0] // members``
    rows each (the layout of :class:`~benchharness.grouped.fused_net.FusedNet`). Member
    ``i`` is updated exactly as ``torch.optim.SGD(lr=lr[i], momentum=momentum[i],
    weight_decay=weight_decay[i], nesterov=nesterov[i])`` would update its own model:

    * ``g ← grad + weight_decay·p``;
    * with momentum: ``buf ← g`` on the first step, else ``buf ← momentum·buf + g``;
      then ``g ← g + momentum·buf`` (Nesterov) or ``g ← buf``;
    * ``p ← p − lr·g``.

    Set the learning rates each epoch with :meth:`set_lrs`. Works with
    ``torch.amp.GradScaler`` (it is a ``torch.optim.Optimizer`` with one param group).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        members: int,
        *,
        lr: Sequence[float],
        momentum: Sequence[float],
        weight_decay: Sequence[float],
        nesterov: Sequence[bool],
    ):
        self.members = members
        for name, values in (
            ("lr", lr),
            ("momentum", momentum),
            ("weight_decay", weight_decay),
            ("nesterov", nesterov),
        ):
            if len(values) != members:
                raise ValueError(f"{name}: {len(values)} values for {members} members")
        if any(n and m == 0 for n, m in zip(nesterov, momentum, strict=True)):
            raise ValueError("nesterov needs momentum > 0")
        super().__init__(params, {"lr": list(map(float, lr))})
        for p in self.param_groups[0]["params"]:
            if p.shape[0] % members:
                raise ValueError(f"a parameter of shape {tuple(p.shape)} is not {members} stacked")
        self.momentum = [float(v) for v in momentum]
        self.weight_decay = [float(v) for v in weight_decay]
        self.nesterov = [bool(v) for v in nesterov]
        self._per_param: dict[int, dict[str, Tensor]] = {}
        self._lr_cache: tuple[tuple[float, ...], dict[int, Tensor]] = ((), {})

    def set_lrs(self, lrs: Sequence[float]) -> None:
        """Member ``i``'s learning rate from now on is ``lrs[i]``."""
        if len(lrs) != self.members:
            raise ValueError(f"{len(lrs)} learning rates for {self.members} members")
        self.param_groups[0]["lr"] = [float(v) for v in lrs]

    def _expanded(self, p: Tensor, values: list[float]) -> Tensor:
        """Per-member ``values`` broadcastable against ``p`` (one per row of dim 0)."""
        rows = p.shape[0] // self.members
        column = torch.tensor(values, dtype=p.dtype, device=p.device).repeat_interleave(rows)
        return column.view(-1, *([1] * (p.dim() - 1)))

    def _constants(self, p: Tensor) -> dict[str, Tensor]:
        cached = self._per_param.get(id(p))
        if cached is None:
            cached = {
                "momentum": self._expanded(p, self.momentum),
                "weight_decay": self._expanded(p, self.weight_decay),
                "nesterov": self._expanded(p, [float(v) for v in self.nesterov]).bool(),
            }
            self._per_param[id(p)] = cached
        return cached

    def _lr(self, p: Tensor, lrs: list[float]) -> Tensor:
        key, cache = self._lr_cache
        if key != tuple(lrs):
            key, cache = tuple(lrs), {}
            self._lr_cache = (key, cache)
        if id(p) not in cache:
            cache[id(p)] = self._expanded(p, lrs)
        return cache[id(p)]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every member (see the class doc). Returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lrs = group["lr"]
        use_decay = any(self.weight_decay)
        use_momentum = any(self.momentum)
        for p in group["params"]:
            if p.grad is None:
                continue
            c = self._constants(p)
            g = p.grad
            if use_decay:
                g = g.addcmul(p, c["weight_decay"])
            if use_momentum:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(c["momentum"]).add_(g)
                if any(self.nesterov):
                    g = torch.where(c["nesterov"], g.addcmul(buf, c["momentum"]), buf)
                else:
                    g = buf
            p.addcmul_(g, self._lr(p, lrs), value=-1.0)
        return loss
