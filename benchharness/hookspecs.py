"""The hooks a benchharness plugin can implement.

A plugin is any module or object with functions decorated by :data:`hookimpl`. Each hook
receives a ``register`` callback; call it once per plugin class you provide::

    from benchharness import hookimpl, Model

    class Tiny(Model):
        name = "tiny"
        ...

    @hookimpl
    def register_models(register):
        register(Tiny)

Third-party packages expose such a module through the ``benchharness`` entry-point group
(see docs/writing-plugins.md). Nothing registers itself on import: registration happens
only when the harness calls these hooks, and two plugins that register the same name for
the same kind are an error that names both.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "benchharness"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[type], None]


# --------------------------------------------------------------------------- data
@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`benchharness.api.Dataset` subclasses: ``register(MyDataset)``."""


@hookspec
def register_transforms(register: Register) -> None:
    """Register :class:`benchharness.api.Transform` subclasses (input transforms)."""


# -------------------------------------------------------------------------- models
@hookspec
def register_models(register: Register) -> None:
    """Register :class:`benchharness.api.Model` subclasses (architectures)."""


# ------------------------------------------------------------------------ training
@hookspec
def register_optimizers(register: Register) -> None:
    """Register :class:`benchharness.training_api.Optimizer` subclasses (training schemes)."""


@hookspec
def register_compressors(register: Register) -> None:
    """Register :class:`benchharness.api.Compressor` subclasses (weight compressors)."""
