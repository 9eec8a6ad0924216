"""Seeds trained together: M models of one architecture as one fused model.

A set of jobs that differ only in things that leave every shape equal (seed, learning
rate and schedule, weight decay, momentum, a shape-preserving transform's setting) can
train as one :class:`FusedNet` — convolutions grouped over members, linear layers as
batched matmuls, one :class:`FusedSGD` step — and be split back into ordinary models::

    reason = fusible_reason(models)            # None: fusible
    decision = decide(models, train_x, train_y, batch_size=128)   # measured, cached
    if reason is None and decision.fuse:
        fused = fuse(models)
        losses, diverged = train_fused(fused, runs, epochs=30, batch_size=128)
        models = unfuse(fused)
"""

from benchharness.grouped.chain import chain_of, check_fusible, fusible_reason
from benchharness.grouped.fused_net import FusedNet, fuse, unfuse
from benchharness.grouped.optimizer import FusedSGD
from benchharness.grouped.precision import PRECISIONS, autocast, autocast_dtype
from benchharness.grouped.train import MemberRun, evaluate_members, member_run, train_fused

__all__ = [
    "PRECISIONS",
    "FusedNet",
    "FusedSGD",
    "MemberRun",
    "autocast",
    "autocast_dtype",
    "chain_of",
    "check_fusible",
    "evaluate_members",
    "fuse",
    "fusible_reason",
    "member_run",
    "train_fused",
    "unfuse",
]
