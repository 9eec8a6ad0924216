"""Numerical core of ``sparse_lowrank``: the proximal operators and the extended ADMM of
Ma et al., "A Unified Approximation Framework for Compressing and Accelerating Deep
Neural Networks" (Sections III–IV), for one layer.

Problem (4) for a layer with lowered weight W (m × n), bias b, calibration inputs X_i and
targets T_i::

    min_{A,B,M}  f(M) + λ1‖A‖_{2,1} + λ2‖B‖_*   s.t.  A + B = M,
    f(M) = 1/(N·c) Σ_i ‖T_i − r(layer(X_i; M, b))‖²_F,

r = ReLU (nonlinear response) or the identity (linear response). The normaliser c is the
largest eigenvalue of the input second moment G = 1/N Σ_i Σ_p x_ip x_ipᵀ (x_ip the lowered
input patches; for a Linear layer G = XᵀX/N). With it f(W + Δ) = tr(Δ G Δᵀ)/c ≤ ‖Δ‖²_F
for the linear response, so f, λ1, λ2 and the penalty t are all in squared weight units
whatever the scale of the features, the curvature of f is at most 2, and the M-step
(f plus t/2‖·‖²) has condition number at most (2 + t)/t.

Also here: the layer's forward with another weight (:func:`layer_op`), which layers feed
a ReLU (:func:`relu_followers`) and the structure-preserving refit (:func:`refit`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LayerOp = Callable[[Tensor, Tensor, Tensor | None], Tensor]

CORRECTION_TAU = 0.5  # τ of the correction step (eq. 13), as in the paper
CORRECTION_ALPHA = 0.75  # α of the correction step (eq. 13), as in the paper


# ------------------------------------------------------------------- proximal maps
def column_shrink(c: Tensor, threshold: float) -> Tensor:
    """prox of threshold·‖·‖_{2,1} (eq. 10): each column scaled by (1 − threshold/‖c_i‖)₊.

    Columns whose norm is at most ``threshold`` become exact zeros.
    """
    norms = torch.linalg.vector_norm(c, dim=0)
    keep = norms > threshold
    scale = torch.where(keep, 1 - threshold / torch.where(keep, norms, 1.0), 0.0)
    return torch.where(keep, c * scale, torch.zeros_like(c))


def singular_value_threshold(d: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """prox of threshold·‖·‖_* (eqs. 11–12) as factors ``(us, v)``, ``d ≈ us @ v.T``.

    ``us`` (m × r) is U·diag(σ − threshold), ``v`` (n × r) the right singular vectors;
    r is the number of singular values above ``threshold``. The SVD runs in float64.
    """
    u, s, vh = torch.linalg.svd(d.double(), full_matrices=False)
    r = int((s > threshold).sum())
    us = (u[:, :r] * (s[:r] - threshold)).to(d.dtype)
    return us, vh[:r].T.to(d.dtype).contiguous()


# ------------------------------------------------------------------- one layer
def layer_op(module: nn.Module) -> LayerOp:
    """``(x, weight, bias) -> output`` of a Linear or Conv layer with another weight."""
    if isinstance(module, nn.Linear):
        return lambda x, w, b: nn.functional.linear(x, w, b)
    return module._conv_forward  # the layer's own padding, stride, dilation, padding mode


@torch.no_grad()
def relu_followers(model: nn.Module, names: list[str], x: Tensor) -> dict[str, bool]:
    """Whether each named layer's output is the input of an ``nn.ReLU`` module, found on
    one batch by tensor identity (a functional relu is not seen: such layers count as
    linear)."""
    modules = dict(model.named_modules())
    outputs: dict[str, Tensor] = {}
    relu_inputs: list[Tensor] = []
    handles = [
        modules[n].register_forward_hook(lambda _m, _a, out, n=n: outputs.__setitem__(n, out))
        for n in names
    ]
    handles += [
        m.register_forward_pre_hook(lambda _m, args: relu_inputs.append(args[0]))
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {n: any(t is outputs.get(n) for t in relu_inputs) for n in names}


@dataclasses.dataclass
class LayerProblem:
    """One layer's data: its weight, bias, forward op and calibration inputs/outputs.

    ``inputs`` come from the network whose earlier layers are already approximated
    (asymmetric), ``outputs`` are the original layer's pre-activation outputs. ``relu``
    says whether the objective compares responses after a ReLU; ``network_relu``
    whether the network itself applies one to this layer's output (used for the
    reported error).
    """

    weight: Tensor
    bias: Tensor | None
    op: LayerOp
    inputs: Tensor
    outputs: Tensor
    relu: bool
    network_relu: bool
    scale: float = 1.0

    @property
    def matrix(self) -> Tensor:
        return self.weight.detach().reshape(self.weight.shape[0], -1)

    def response(self, x: Tensor, matrix: Tensor, relu: bool) -> Tensor:
        out = self.op(x, matrix.view(self.weight.shape), self.bias)
        return F.relu(out) if relu else out

    def loss(self, matrix: Tensor, idx: Tensor | None = None) -> Tensor:
        """f(M) on the samples ``idx`` (all when None): mean over samples / c."""
        x = self.inputs if idx is None else self.inputs[idx]
        y = self.outputs if idx is None else self.outputs[idx]
        target = F.relu(y) if self.relu else y
        diff = self.response(x, matrix, self.relu) - target
        return diff.pow(2).sum() / (x.shape[0] * self.scale)

    @torch.no_grad()
    def relative_error(self, matrix: Tensor, batch_size: int = 512) -> float:
        """Σ‖T − r(layer(X; matrix))‖² / Σ‖T‖² with the response the network applies."""
        num = den = 0.0
        for start in range(0, self.inputs.shape[0], batch_size):
            x = self.inputs[start : start + batch_size]
            y = self.outputs[start : start + batch_size]
            target = F.relu(y) if self.network_relu else y
            out = self.response(x, matrix, self.network_relu)
            num += float((out - target).double().pow(2).sum())
            den += float(target.double().pow(2).sum())
        return num / den if den > 0 else 0.0


def input_curvature(
    op: LayerOp, probe_shape: tuple[int, ...], inputs: Tensor, generator: torch.Generator
) -> float:
    """Largest eigenvalue of G = 1/N Σ_i Σ_p x_ip x_ipᵀ by power iteration.

    G·v is the gradient of ‖layer(X; v)‖²/(2N) for a one-output (per group) probe weight
    v, so the layer's own op does the lowering (padding, stride, groups) and nothing is
    unfolded in memory.
    """
    v = torch.randn(probe_shape, generator=generator).to(inputs)
    n = inputs.shape[0]
    value = 0.0
    for _ in range(60):
        v = (v / torch.linalg.vector_norm(v)).requires_grad_(True)
        with torch.enable_grad():
            energy = sum(op(inputs[s : s + 512], v, None).pow(2).sum() for s in range(0, n, 512))
            (gv,) = torch.autograd.grad(energy / (2 * n), v)
        new = float((gv * v.detach()).sum())
        v = gv.detach()
        if abs(new - value) <= 1e-6 * abs(new):
            value = new
            break
        value = new
    return max(value, 1e-12)


@dataclasses.dataclass(frozen=True)
class AdmmSettings:
    """Iteration controls of :func:`admm` (see the plugin's options for their meaning)."""

    rho: float = 1.0
    iterations: int = 50
    sgd_steps: int = 10
    lr: float = 0.2
    momentum: float = 0.9
    batch_size: int = 256
    tol: float = 1e-3
    correction: bool = True


@dataclasses.dataclass(frozen=True)
class AdmmResult:
    """Â (column-sparse, m × n) and B̂ = us @ v.T (rank r) of the last iteration."""

    a: Tensor
    us: Tensor
    v: Tensor
    m: Tensor
    residual: float  # ‖Â + B̂ − M̂‖_F / ‖W‖_F at the last iteration
    iterations: int
    objective: float  # f(Â + B̂) + λ1‖Â‖_{2,1} + λ2‖B̂‖_* on all calibration samples

    @property
    def b(self) -> Tensor:
        return self.us @ self.v.T


class _Minibatches:
    """Sample indices in shuffled passes over the calibration set, continued across calls."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.order = torch.empty(0, dtype=torch.long)
        self.at = 0

    def next(self) -> Tensor:
        if self.batch_size == self.n:
            return torch.arange(self.n)
        if self.at + self.batch_size > self.order.numel():
            self.order, self.at = torch.randperm(self.n, generator=self.generator), 0
        idx = self.order[self.at : self.at + self.batch_size]
        self.at += self.batch_size
        return idx


def objective(problem: LayerProblem, a: Tensor, b: Tensor, lambda1: float, lambda2: float):
    """f(A + B) + λ1‖A‖_{2,1} + λ2‖B‖_* (problem (3), normalised) on all samples."""
    n = problem.inputs.shape[0]
    with torch.no_grad():
        fit = 0.0
        for start in range(0, n, 512):
            idx = torch.arange(start, min(start + 512, n))
            fit += float(problem.loss(a + b, idx)) * idx.numel() / n
        group = float(torch.linalg.vector_norm(a.double(), dim=0).sum())
        nuclear = float(torch.linalg.matrix_norm(b.double(), ord="nuc")) if b.any() else 0.0
    return fit + lambda1 * group + lambda2 * nuclear


def admm(
    problem: LayerProblem,
    lambda1: float,
    lambda2: float,
    lowrank: bool,
    settings: AdmmSettings,
    generator: torch.Generator,
) -> AdmmResult:
    """Algorithm 1: extended ADMM with the correction step (eq. 13) for one layer.

    Start M = B = W, A = 0, Λ = 0. Each iteration: Â = column shrinkage of M − B − Λ/t at
    λ1/t; B̂ = SVT of M − Â − Λ/t at λ2/t (B̂ = 0 when ``lowrank`` is false); M̂ =
    ``sgd_steps`` minibatch SGD (momentum) steps from M on problem (8); Λ̂ = Λ + t(Â + B̂ −
    M̂); then (B, M, Λ) are corrected towards (B̂, M̂, Λ̂) by eq. 13 (without ``lowrank``
    B stays 0 and only M and Λ are corrected). Stops after ``iterations`` or when both
    ‖Â + B̂ − M̂‖ and the change of Â + B̂ fall below ``tol``·‖W‖. Returns the last Â, B̂:
    exactly column-sparse and of rank r (the corrected B is a blend, not low-rank).
    """
    s = settings
    w = problem.matrix.float()
    norm_w = float(torch.linalg.vector_norm(w)) or 1.0
    t = s.rho
    m_, b_ = w.clone(), (w.clone() if lowrank else torch.zeros_like(w))
    lam = torch.zeros_like(w)
    batches = _Minibatches(problem.inputs.shape[0], s.batch_size, generator)
    prev = None
    a_hat = torch.zeros_like(w)
    us, v = w.new_zeros(w.shape[0], 0), w.new_zeros(w.shape[1], 0)
    m_hat, residual, done = w, 0.0, 0
    for k in range(1, s.iterations + 1):
        done = k
        a_hat = column_shrink(m_ - b_ - lam / t, lambda1 / t)
        if lowrank:
            us, v = singular_value_threshold(m_ - a_hat - lam / t, lambda2 / t)
        b_hat = us @ v.T
        m_hat = _m_step(problem, m_, a_hat + b_hat, lam, t, s, batches)
        lam_hat = lam + t * (a_hat + b_hat - m_hat)
        if s.correction:
            d_b = b_ - b_hat if lowrank else torch.zeros_like(w)
            d_m = m_ - m_hat
            if lowrank:
                b_ = b_ - CORRECTION_ALPHA * (d_b + (CORRECTION_TAU - 1) * d_m)
            m_ = m_ - CORRECTION_ALPHA * (CORRECTION_TAU * d_b + d_m)
            lam = lam - CORRECTION_ALPHA * (lam - lam_hat)
        else:
            b_, m_, lam = b_hat, m_hat, lam_hat
        approx = a_hat + b_hat
        residual = float(torch.linalg.vector_norm(approx - m_hat)) / norm_w
        change = float("inf") if prev is None else float(torch.linalg.vector_norm(approx - prev))
        prev = approx
        if residual < s.tol and change / norm_w < s.tol:
            break
    value = objective(problem, a_hat, us @ v.T, lambda1, lambda2)
    return AdmmResult(a_hat, us, v, m_hat, residual, done, value)


def _m_step(
    problem: LayerProblem,
    start: Tensor,
    approx: Tensor,
    lam: Tensor,
    t: float,
    s: AdmmSettings,
    batches: _Minibatches,
) -> Tensor:
    """Problem (8) by ``sgd_steps`` SGD steps from ``start``: f(M) − ⟨Λ, M⟩ + t/2‖Â+B̂−M‖²."""
    m = start.clone()
    velocity = torch.zeros_like(m)
    for _ in range(s.sgd_steps):
        with torch.enable_grad():
            m.requires_grad_(True)
            (grad,) = torch.autograd.grad(problem.loss(m, batches.next()), m)
        m = m.detach()
        grad = grad - lam - t * (approx - m)  # gradient of the augmented terms
        velocity = s.momentum * velocity + grad  # torch.optim.SGD's momentum form
        m = m - s.lr * velocity
    return m


def refit(
    problem: LayerProblem,
    columns: Tensor,
    a: Tensor,
    us: Tensor,
    v: Tensor,
    steps: int,
    settings: AdmmSettings,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Minimise f alone over A's kept columns and U·S with the column set and V fixed.

    W = Z·P with Z = [A_kept, U·S] and P = [E_keptᵀ; Vᵀ] (E_kept selects the kept columns,
    V is orthonormal), so the structure — zero columns, rank ≤ r — is kept while the
    shrinkage that the ℓ2,1 and nuclear norms put on the surviving values is undone.
    ‖P‖² ≤ 2, so the step ``lr``/2 is as safe as the M-step's.
    """
    if steps == 0 or a.shape[1] + us.shape[1] == 0:
        return a, us
    n = v.shape[0]
    select = torch.zeros(columns.numel(), n, dtype=v.dtype, device=v.device)
    select[torch.arange(columns.numel()), columns] = 1
    p = torch.cat((select, v.T))
    z = torch.cat((a, us), dim=1)
    velocity = torch.zeros_like(z)
    batches = _Minibatches(problem.inputs.shape[0], settings.batch_size, generator)
    for _ in range(steps):
        with torch.enable_grad():
            z.requires_grad_(True)
            (grad,) = torch.autograd.grad(problem.loss(z @ p, batches.next()), z)
        velocity = settings.momentum * velocity + grad
        z = z.detach() - settings.lr / 2 * velocity
    return z[:, : a.shape[1]].contiguous(), z[:, a.shape[1] :].contiguous()
