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

How the executor uses it (one stored row per job, as before): group pending jobs with
:func:`~benchharness.grouped.grouping.group_jobs`; for a group of two or more, build
each job's data, context and model exactly as the runner does (``seed_everything(seed)``
before ``build``), check :func:`fusible_reason` and equal data shapes, ask
:func:`~benchharness.grouped.probe.decide` (``enabled`` = the user's switch), and
either run the jobs one by one as today, or train them fused with
``member_run(options_i, data_i.train_x, data_i.train_y, ctx_i.generator)`` per job,
log each member's epochs into its own context from the ``on_epoch`` hook (with
:func:`evaluate_members`), and hand each unfused model to the rest of that job's
pipeline (compression, evaluation, measurements); a member with ``diverged[i]`` set is
a failed job with that error.
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
