"""Scoring core of ``greedy_random``: exact expected-loss scores of Algorithm 1 (El Cheairi,
Gamarnik & Mazumder, "Theoretical compression bounds for wide MLPs"), kept cheap.

One compressed layer ℓ is a matrix problem: inputs X (S × n_in; a conv layer's inputs
unfolded, one row per sample and output position), weights W (n_out × n_in, lowered),
pre-activations Z = X Wᵀ + b. The target at depth κ is the dense network's layer-κ output
H (after its activation); the loss is L = (1/N) Σ ‖Φ̂^κ − H‖² over the N calibration
samples. Every random replacement t has at most two outcomes, so E_t[L] is a two-term sum
evaluated exactly:

* "separable" (wide layer, κ = ℓ, elementwise activation): changing w_ij only moves unit
  i, so the loss splits by rows; a step re-scores row i only, O(S·n_in).
  With an identity activation the score is Var(t)·Σ_s x_sj² / N (see ``linear_scores``).
* "mixing" (tall-then-wide blocks, κ = ℓ + 1; a softmax output; structured columns): a
  candidate changes Φ̂^κ by a low-rank term U Vᵀ and every remaining candidate is
  re-scored after each step, O(candidates · S · n_κ).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchharness import BenchError

Activation = Callable[[Tensor], Tensor]
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Identity)
_TRANSPARENT = (nn.Dropout, nn.Flatten)  # identity on (samples, features) in eval mode
_CHUNK_ELEMENTS = 1 << 22  # bound on the (candidates × S × n_κ) tensor of one chunk


def outcomes(
    w: Tensor, mode: str, *, p: float = 0.3, scale: float = 1.0, k: int = 1
) -> tuple[Tensor, Tensor]:
    """The two possible values of t for each entry of ``w`` and their probabilities,
    shapes ``(*w.shape, 2)``; E[t] = w exactly.

    ``prune``: t = w·Bernoulli(p)/p → (0, w/p) with (1 − p, p). ``quantize``: unbiased
    stochastic rounding onto {±i·M/k} (M = ``scale``) → the grid neighbours of |w| with
    the sign of w; a weight on the grid has one outcome (probability 1).
    """
    if mode == "prune":
        values = torch.stack([torch.zeros_like(w), w / p], -1)
        probs = torch.tensor([1 - p, p], dtype=w.dtype).expand(*w.shape, 2)
        return values, probs
    level = w.abs().clamp(max=scale) * k / scale
    lower = torch.floor(level).clamp(max=k - 1)
    frac = level - lower  # in [0, 1]: probability of rounding up
    sign = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    values = torch.stack([sign * lower * scale / k, sign * (lower + 1) * scale / k], -1)
    return values, torch.stack([1 - frac, frac], -1)


def draw(probs: Tensor, generator: torch.Generator) -> int:
    """Index of the outcome drawn (0 or 1) for one entry with outcome ``probs`` (2,)."""
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    return int(u < float(probs[1]))


def linear_scores(x: Tensor, values: Tensor, probs: Tensor, w: Tensor, n: int) -> Tensor:
    """Closed form of the separable score with an identity activation:
    E_t[(z − h + (t − w)x)²] − (z − h)² = Var(t)·x², so Δ_ij = Var(t_ij)·Σ_s x_sj² / N."""
    variance = (probs * (values - w.unsqueeze(-1)) ** 2).sum(-1)
    return variance * (x**2).sum(0) / n


class LayerScorer:
    """State of the greedy loop on one layer: current weights, pre-activations and the
    loss terms, with exact scores of all candidates.

    ``target`` is H at depth κ; for a tall-then-wide block ``next_weight`` / ``next_bias``
    are W_{ℓ+1}, b_{ℓ+1} (kept as they are) and ``out_act`` is φ_{ℓ+1}; otherwise
    ``out_act`` is φ_ℓ itself. ``elementwise`` says whether ``out_act`` acts entrywise.
    """

    def __init__(
        self,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        n_samples: int,
        act: Activation,
        out_act: Activation,
        *,
        elementwise: bool,
        next_weight: Tensor | None = None,
        next_bias: Tensor | None = None,
    ):
        self.x, self.w, self.n = x, weight.clone(), n_samples
        self.bias = bias if bias is not None else torch.zeros(weight.shape[0], dtype=x.dtype)
        self.target, self.act, self.out_act = target, act, out_act
        self.next_weight, self.next_bias = next_weight, next_bias
        self.z = x @ self.w.T + self.bias
        self.separable = next_weight is None and elementwise
        self._refresh()

    # ------------------------------------------------------------------ state
    def _refresh(self) -> None:
        """Recompute the κ-level pre-activation and the current loss from ``z``."""
        if self.next_weight is None:
            self.zk = self.z
        else:
            self.h = self.act(self.z)
            nb = self.next_bias if self.next_bias is not None else 0.0
            self.zk = self.h @ self.next_weight.T + nb
        diff = self.out_act(self.zk) - self.target
        self.row_loss = (diff**2).sum(0)  # per unit at depth κ
        self.loss = float(self.row_loss.sum())

    def set_weight(self, i: int, j: int, value: float) -> None:
        self.z[:, i] += (value - float(self.w[i, j])) * self.x[:, j]
        self.w[i, j] = value
        self._after_change(i)

    def scale_columns(self, cols: Tensor, t: float) -> None:
        self.z += (t - 1.0) * (self.x[:, cols] @ self.w[:, cols].T)
        self.w[:, cols] *= t
        self._after_change(None)

    def scale_row(self, i: int, t: float) -> None:
        self.z[:, i] = t * (self.z[:, i] - self.bias[i]) + self.bias[i]
        self.w[i] *= t
        self._after_change(i)

    def _after_change(self, row: int | None) -> None:
        if self.separable and row is not None:
            diff = self.out_act(self.z[:, row]) - self.target[:, row]
            self.row_loss[row] = (diff**2).sum()
            self.loss = float(self.row_loss.sum())
        else:
            self._refresh()

    # ---------------------------------------------------------------- scores
    def row_scores(self, i: int, values: Tensor, probs: Tensor) -> Tensor:
        """Separable case: Δ_ij for every j of row i (``values``/``probs``: (n_in, 2))."""
        d = values - self.w[i].unsqueeze(-1)  # (n_in, 2)
        new = self.out_act(self.z[:, i, None, None] + self.x[:, :, None] * d)
        loss = ((new - self.target[:, i, None, None]) ** 2).sum(0)  # (n_in, 2)
        return ((loss * probs).sum(-1) - self.row_loss[i]).abs() / self.n

    def entry_scores(self, rows: Tensor, cols: Tensor, values: Tensor, probs: Tensor) -> Tensor:
        """Mixing case, single weights (i, j): ``values``/``probs`` are (C, 2)."""
        scores = []
        for sl in self._chunks(rows.numel()):
            i, j = rows[sl], cols[sl]
            d = values[sl] - self.w[i, j].unsqueeze(-1)  # (C, 2)
            step = self.x[:, j].T.unsqueeze(-1) * d.unsqueeze(1)  # (C, S, 2)
            if self.next_weight is None:  # one pre-activation column moves
                u, v = step, torch.nn.functional.one_hot(i, self.z.shape[1]).to(step.dtype)
            else:  # the unit's activation moves, then spreads through W_{ℓ+1}
                zi = self.z[:, i].T.unsqueeze(-1)
                u = self.act(zi + step) - self.act(zi)
                v = self.next_weight[:, i].T
            scores.append(self._expected(u, v.unsqueeze(-1), probs[sl]))
        return torch.cat(scores)

    def column_scores(self, blocks: list[Tensor], t: Tensor, probs: Tensor) -> Tensor:
        """Mixing case, structured wide layer: column block b scaled by t."""
        out = []
        for b in blocks:
            contrib = self.x[:, b] @ self.w[:, b].T  # (S, n_out)
            new = [self.out_act(self.zk + (float(t_o) - 1.0) * contrib) for t_o in t]
            out.append(self._combine(torch.stack(new), probs))
        return torch.stack(out)

    def row_block_scores(self, rows: Tensor, t: Tensor, probs: Tensor) -> Tensor:
        """Mixing case, structured tall-then-wide block: output row i scaled by t."""
        scores = []
        for sl in self._chunks(rows.numel()):
            i = rows[sl]
            zi, bi = self.z[:, i].T, self.bias[i].unsqueeze(-1)  # (C, S)
            u = torch.stack([self.act(t_o * (zi - bi) + bi) - self.act(zi) for t_o in t], -1)
            v = self.next_weight[:, i].T
            scores.append(self._expected(u, v.unsqueeze(-1), probs.expand(i.numel(), 2)))
        return torch.cat(scores)

    def _expected(self, u: Tensor, v: Tensor, probs: Tensor) -> Tensor:
        """|Σ_o π_o L(Φ̂^κ + u_o vᵀ) − L| for candidates: u (C, S, 2), v (C, n_κ, 1)."""
        losses = []
        for o in range(2):
            new = self.out_act(self.zk.unsqueeze(0) + u[:, :, o, None] * v.transpose(1, 2))
            losses.append(((new - self.target) ** 2).sum((1, 2)))
        expected = (torch.stack(losses, -1) * probs).sum(-1)
        return (expected - self.loss).abs() / self.n

    def _combine(self, new: Tensor, probs: Tensor) -> Tensor:
        losses = ((new - self.target) ** 2).sum((1, 2))
        return ((losses * probs).sum() - self.loss).abs() / self.n

    def _chunks(self, count: int) -> list[slice]:
        per = max(1, _CHUNK_ELEMENTS // max(1, 2 * self.x.shape[0] * self.zk.shape[1]))
        return [slice(s, s + per) for s in range(0, count, per)]


# ------------------------------------------------------------------------- structure
def chain_of(model: nn.Module) -> list[tuple[str, nn.Module, object, bool]]:
    """Weight layers in registration order with the activation that follows each:
    ``(name, module, φ, φ is elementwise)``; φ is the identity when none follows."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    chain = []
    for idx, (name, module) in enumerate(leaves):
        if not isinstance(module, nn.Linear | nn.Conv2d):
            continue
        acts = []
        for _, nxt in leaves[idx + 1 :]:
            if isinstance(nxt, _ELEMENTWISE):
                acts.append(nxt)
            elif not isinstance(nxt, _TRANSPARENT):
                break

        def act(z: Tensor, _acts=tuple(acts)) -> Tensor:
            for a in _acts:
                z = a(z)
            return z

        chain.append((name, module, act, True))
    return chain


def next_layer(chain, name: str) -> str | None:
    names = [c[0] for c in chain]
    idx = names.index(name)
    return names[idx + 1] if idx + 1 < len(names) else None


def rows_of(t: Tensor) -> Tensor:
    """A layer output as (samples·positions, units)."""
    return t.movedim(1, -1).reshape(-1, t.shape[1]) if t.dim() > 2 else t


def lowered_inputs(x: Tensor, module: nn.Module) -> Tensor:
    if isinstance(module, nn.Linear):
        return x.flatten(1) if x.dim() > 2 else x
    if module.groups != 1 or isinstance(module.padding, str):
        raise BenchError(
            "compressor greedy_random: grouped or 'same'-padded convs are not supported"
        )
    cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def project_hook(model, chain, kappa: str, c: float, radius_x: float):
    """Forward hook projecting layer κ's activated output onto the ℓ2 ball c^κ·max‖x‖."""
    names = [n for n, *_ in chain]
    radius = c ** (names.index(kappa) + 1) * radius_x
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    idx = [n for n, _ in leaves].index(kappa)
    module = leaves[idx][1]
    for _, nxt in leaves[idx + 1 :]:
        if not isinstance(nxt, _ELEMENTWISE):
            break
        module = nxt

    def hook(_m, _args, out: Tensor) -> Tensor:
        norm = out.flatten(1).norm(dim=1).clamp(min=1e-30)
        factor = (radius / norm).clamp(max=1.0)
        return out * factor.view(-1, *[1] * (out.dim() - 1))

    return module.register_forward_hook(hook)
