"""Randomized greedy compression of wide MLPs (Algorithm 1 of El Cheairi, Gamarnik &
Mazumder, "Theoretical compression bounds for wide multilayer perceptrons"; the
structured variant of its Section 4 / Appendix B). The scores live in ``greedy_scores``,
Θ in ``greedy_theta``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from benchharness import BenchError, Compressor, PluginOptions
from benchharness.coding import as_matrix

from .greedy_theta import GreedyLayer, GreedyWeights

if TYPE_CHECKING:
    from torch import Tensor, nn

    from benchharness.compression import CompressionContext

    from .greedy_scores import LayerScorer


# ---------------------------------------------------------------------------- options
class GreedyRandomOptions(PluginOptions):
    wide: list[str] = Field(
        default_factory=lambda: ["fc1"],
        description="set W: module names of wide layers, each compressed with its own output "
        "as target (κ = ℓ)",
    )
    tall_then_wide: list[str] = Field(
        default_factory=list,
        description="set B: module names of layers ℓ compressed with the output of the next "
        "weight layer ℓ+1 (kept dense) as target (κ = ℓ+1); Linear layers only",
    )
    alpha: float = Field(0.9, gt=0, lt=1, description="fraction α of each layer compressed")
    mode: Literal["prune", "quantize"] = Field(
        "prune", description="'prune': t = w·Bernoulli(p)/p; 'quantize': unbiased rounding"
    )
    p: float = Field(0.3, gt=0, lt=1, description="keep probability p of pruning")
    k: int = Field(
        1, ge=1, description="quantisation levels: grid {±i·M/k, i = 0..k}, M = max|W_ℓ|"
    )
    structured: bool = Field(
        False,
        description="prune whole input columns (W; input channels of a conv) or output rows "
        "(B) per draw, α of them per layer (mode 'prune' only)",
    )
    calibration: int = Field(512, ge=1, description="training samples the scores are computed on")
    heldout: int = Field(
        0,
        ge=0,
        description="further training samples (disjoint from calibration) for the reported "
        "distortion; 0 uses the calibration samples",
    )
    output: Literal["probabilities", "logits"] = Field(
        "probabilities",
        description="Φ's output: softmax of the logits (the paper's Digits net) or the logits; "
        "used for the distortion and for scores whose target is the last layer",
    )
    project_output: bool = Field(
        False,
        description="add the paper's projection of layer κ's output onto the ℓ2 ball of radius "
        "c^κ·max‖x‖ while compressing later layers (not part of the exported weights)",
    )
    draw: int = Field(0, ge=0, description="label of a repeat; each value draws differently")

    @field_validator("wide", "tall_then_wide")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"layer names repeat: {names}")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> GreedyRandomOptions:
        both = set(self.wide) & set(self.tall_then_wide)
        if both:
            raise ValueError(f"{sorted(both)} is in both wide and tall_then_wide")
        if not self.wide and not self.tall_then_wide:
            raise ValueError("name at least one layer in wide or tall_then_wide")
        if self.structured and self.mode != "prune":
            raise ValueError("structured = true needs mode = 'prune'")
        return self


# ------------------------------------------------------------------------ compressor
class GreedyRandom(Compressor):
    """Randomized greedy pruning/quantisation of wide MLPs (El Cheairi et al., Alg. 1).

    Layers are compressed in forward order. For layer ℓ, ⌊α·n_ℓ·n_{ℓ+1}⌋ times: every
    uncompressed weight gets the score Δ_ij = |E_t[L(Φ̂ with w_ij := t)] − L(Φ̂)| on the
    current, partially compressed copy; the smallest is replaced by one draw of t
    (``ctx.generator``). t is unbiased: w·Bernoulli(p)/p, or stochastic rounding onto
    {±iM/k}. L is the squared distance of the target layer κ's output (after its
    activation; the softmax for the last layer when output = 'probabilities') to the
    dense network's on the calibration samples, averaged over samples; κ = ℓ for
    ``wide`` layers, ℓ+1 for ``tall_then_wide``. Scores are exact (t has two outcomes)
    and incremental: for a wide layer with an elementwise activation only row i is
    re-scored after a step. Structured: whole input columns / conv input channels (W)
    or output rows (B), α of them.

    Bits per layer (Θ only): prune — nonzeros × (32 + ⌈log2 numel⌉); structured — 32 per
    value of the surviving units + 1 bit per unit; quantise — numel × ⌈log2(2k+2)⌉ (2k+1
    levels + an escape for the uncompressed weights) + 32 per uncompressed weight + 32
    for M. Effective MACs: dense × stored values / numel (quantise: dense).

    Reported: ``distortion`` Δ = c^(−2m)·(1/N)Σ‖Φ(x) − Φ̂(x)‖² over the held-out (else
    calibration) samples, c = max spectral norm of the lowered weight matrices of the
    dense model and m its number of Linear/Conv layers, Φ̂ the harness's compressed
    model (no projection); ``kept_fraction`` (nonzero share of the compressed layers),
    ``compressed_fraction``, ``dense_loss`` / ``compressed_loss`` (cross-entropy on the
    calibration samples), ``score_loss`` (final L summed over layers), ``steps``.
    """

    name = "greedy_random"
    version = "1"
    data_aware = True
    Options = GreedyRandomOptions

    def select(self, model: nn.Module) -> dict[str, Tensor]:
        from torch import nn

        modules = dict(model.named_modules())
        chosen = {}
        for name in [*self.options.wide, *self.options.tall_then_wide]:
            module = modules.get(name)
            if not isinstance(module, nn.Linear | nn.Conv2d):
                raise BenchError(
                    f"compressor greedy_random: {name!r} is not a Linear or Conv2d module"
                )
            chosen[f"{name}.weight"] = module.weight
        return chosen

    def compress_model(self, ctx: CompressionContext) -> GreedyWeights:
        import torch

        from .greedy_scores import chain_of, next_layer, project_hook

        opts = self.options
        self.select(ctx.model)  # name errors first
        work = copy.deepcopy(ctx.model).double().eval()
        dense = copy.deepcopy(ctx.model).double().eval()
        chain = chain_of(work)
        tall = set(opts.tall_then_wide)
        targets = [n for n, *_ in chain if n in set(opts.wide) | tall]
        for name in opts.tall_then_wide:
            nxt = next_layer(chain, name)
            if nxt in targets:
                raise BenchError(
                    f"compressor greedy_random: {nxt} follows B layer {name}; "
                    "the layer after a tall_then_wide layer stays dense"
                )
        batches = ctx.calibration_batches(opts.calibration)
        n = opts.calibration
        batches64 = [(x.double(), y) for x, y in batches]
        c = max(
            torch.linalg.matrix_norm(as_matrix(m.weight.double()), 2).item() for _, m, _, _ in chain
        )
        radius_x = max(float(x.flatten(1).norm(dim=1).max()) for x, _ in batches64)
        layers, order, hooks, steps, score_loss = {}, {}, [], 0, 0.0
        for name in targets:
            scorer, part, ordered = self._compress_layer(
                ctx, work, dense, chain, name, name in tall, batches64, n
            )
            orig = dict(ctx.model.named_modules())[name].weight
            part = dataclasses.replace(part, shape=orig.shape, dtype=orig.dtype)
            layers[f"{name}.weight"], order[f"{name}.weight"] = part, ordered
            steps += len(ordered)
            score_loss += scorer.loss / n
            module = dict(work.named_modules())[name]
            with torch.no_grad():
                module.weight.copy_(part.values.reshape(module.weight.shape))
            if opts.project_output:
                kappa = next_layer(chain, name) if name in tall else name
                hooks.append(project_hook(work, chain, kappa, c, radius_x))
        theta = GreedyWeights(layers, order)
        for handle in hooks:
            handle.remove()
        self._report(ctx, theta, dense, work, c, len(chain), batches, batches64)
        ctx.report(steps=steps, score_loss=score_loss)
        return theta

    # ------------------------------------------------------------------ one layer
    def _compress_layer(self, ctx, work, dense, chain, name, tall, batches, n):
        import torch
        from torch import nn

        from .greedy_scores import LayerScorer, lowered_inputs, next_layer, rows_of

        opts = self.options
        info = {c[0]: c for c in chain}
        _, module, act, _ = info[name]
        kappa = next_layer(chain, name) if tall else name
        if tall and (
            kappa is None
            or not isinstance(module, nn.Linear)
            or not isinstance(info[kappa][1], nn.Linear)
        ):
            raise BenchError(
                f"compressor greedy_random: tall_then_wide layer {name} needs a "
                "following Linear layer and must be Linear itself"
            )
        _, kmod, kact, k_elementwise = info[kappa]
        last = kappa == chain[-1][0]
        if last and opts.output == "probabilities":
            kact, k_elementwise = (lambda z: torch.softmax(z, -1)), False
        x = lowered_inputs(ctx.capture(work, [name], batches)[name].inputs, module)
        ref = ctx.capture(dense, [kappa], batches)[kappa].outputs
        target = kact(rows_of(ref))
        if tall:
            cap = ctx.capture(work, [kappa], batches)[kappa].inputs.flatten(1)
            z = x @ module.weight.detach().T + module.bias.detach()
            if not torch.allclose(act(z), cap, atol=1e-6):
                raise BenchError(
                    f"compressor greedy_random: {kappa} does not take the "
                    f"activation of {name} as its input"
                )
        weight = as_matrix(module.weight.detach())
        scorer = LayerScorer(
            x,
            weight,
            None if module.bias is None else module.bias.detach(),
            target,
            n,
            act,
            kact,
            elementwise=k_elementwise,
            next_weight=kmod.weight.detach() if tall else None,
            next_bias=(None if kmod.bias is None else kmod.bias.detach()) if tall else None,
        )
        if opts.structured:
            return scorer, *self._structured(ctx, scorer, module, tall, name)
        return scorer, *self._unstructured(ctx, scorer, weight, name)

    def _unstructured(self, ctx, scorer: LayerScorer, weight: Tensor, name: str):
        import torch

        from .greedy_scores import draw, outcomes

        opts = self.options
        scale = float(weight.abs().max()) or 1.0
        values, probs = outcomes(weight, opts.mode, p=opts.p, scale=scale, k=opts.k)
        rows, cols = weight.shape
        total = int(opts.alpha * rows * cols)
        done = torch.zeros(rows, cols, dtype=torch.bool)
        if scorer.separable:
            scores = torch.stack([scorer.row_scores(i, values[i], probs[i]) for i in range(rows)])
        ordered: list[int] = []
        for step in range(1, total + 1):
            if not scorer.separable:
                free = (~done).reshape(-1).nonzero().squeeze(1)
                r, c = free // cols, free % cols
                s = scorer.entry_scores(r, c, values[r, c], probs[r, c])
                flat = int(free[int(torch.argmin(s))])
                best = float(s.min())
            else:
                flat = int(torch.argmin(scores.reshape(-1)))
                best = float(scores.reshape(-1)[flat])
            i, j = divmod(flat, cols)
            choice = draw(probs[i, j], ctx.generator)
            scorer.set_weight(i, j, float(values[i, j, choice]))
            done[i, j] = True
            ordered.append(flat)
            if scorer.separable:
                scores[i] = scorer.row_scores(i, values[i], probs[i])
                scores[done] = float("inf")
            _progress(ctx, step, total, name, best, scorer)
        levels = None
        if opts.mode == "quantize":
            levels = torch.round(scorer.w * opts.k / scale)  # exact codes of the draws
            scorer.w = torch.where(done, levels * scale / opts.k, scorer.w)
        part = GreedyLayer(
            torch.Size(weight.shape), weight.dtype, opts.mode, scorer.w.clone(), done, k=opts.k
        )
        return part, ordered

    def _structured(self, ctx, scorer: LayerScorer, module, tall: bool, name: str):
        import torch
        from torch import nn

        from .greedy_scores import draw

        opts = self.options
        t = torch.tensor([0.0, 1.0 / opts.p], dtype=torch.float64)
        probs = torch.tensor([1 - opts.p, opts.p], dtype=torch.float64)
        rows, cols = scorer.w.shape
        if tall:
            units = rows
            members = [torch.tensor([i]) for i in range(rows)]
        else:
            block = cols // module.in_channels if isinstance(module, nn.Conv2d) else 1
            units = cols // block
            members = [torch.arange(u * block, (u + 1) * block) for u in range(units)]
        total = int(opts.alpha * units)
        free = list(range(units))
        ordered, removed = [], 0
        for step in range(1, total + 1):
            if tall:
                s = scorer.row_block_scores(torch.tensor(free), t, probs)
            else:
                s = scorer.column_scores([members[u] for u in free], t, probs)
            unit = free.pop(int(torch.argmin(s)))
            choice = draw(probs, ctx.generator)
            if tall:
                scorer.scale_row(unit, float(t[choice]))
            else:
                scorer.scale_columns(members[unit], float(t[choice]))
            removed += (cols if tall else rows * members[unit].numel()) * (choice == 0)
            ordered.append(unit)
            _progress(ctx, step, total, name, float(s.min()), scorer)
        done = torch.zeros(rows, cols, dtype=torch.bool)
        for unit in ordered:
            if tall:
                done[unit] = True
            else:
                done[:, members[unit]] = True
        part = GreedyLayer(
            torch.Size(module.weight.shape),
            module.weight.dtype,
            "structured",
            scorer.w.clone(),
            done,
            units=units,
            removed_values=removed,
        )
        return part, ordered

    # ------------------------------------------------------------------ metrics
    def _report(self, ctx, theta, dense, work, c, depth, batches, batches64) -> None:
        import torch

        opts = self.options
        with torch.no_grad():
            for name, value in theta.decompress().items():
                dict(work.named_parameters())[name].copy_(value)
        held = batches64
        if opts.heldout:
            both = ctx.calibration_batches(opts.calibration + opts.heldout)
            x = torch.cat([b[0] for b in both])[opts.calibration :].double()
            y = torch.cat([b[1] for b in both])[opts.calibration :]
            held = [(x, y)]
        diff = 0.0
        with torch.no_grad():
            for x, _ in held:
                a, b = dense(x), work(x)
                if opts.output == "probabilities":
                    a, b = a.softmax(-1), b.softmax(-1)
                diff += float(((a - b) ** 2).sum())
        count = sum(int(x.shape[0]) for x, _ in held)
        numel = sum(part.values.numel() for part in theta.layers.values())
        ctx.report(
            distortion=c ** (-2 * depth) * diff / count,
            kept_fraction=sum(p.nnz for p in theta.layers.values()) / numel,
            compressed_fraction=sum(int(p.compressed.sum()) for p in theta.layers.values()) / numel,
            dense_loss=ctx.loss(dense, batches64),
            compressed_loss=ctx.loss(work, batches64),
            norm_c=c,
        )


def _progress(ctx, step: int, total: int, name: str, score: float, scorer) -> None:
    if step == total or step % max(1, total // 20) == 0:
        ctx.log(step, total, phase=f"greedy_{name}", score=score, loss=scorer.loss / scorer.n)
