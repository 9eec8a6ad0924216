"""benchharness: a declarative benchmark harness for neural-network efficiency research.

The public plugin API is re-exported here: ``from benchharness import hookimpl, Model``.
The names are loaded on first use, so importing the package costs nothing, and none of
them needs torch except :class:`CompressionContext`, :class:`Captured` and
:func:`check_compressed` (``bench --help``, ``plugins``, ``report`` and ``validate``
never import torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchharness.api import (
        Compressed,
        Compressor,
        CompressorOptions,
        Data,
        Dataset,
        Model,
        Plugin,
        PluginOptions,
        Transform,
        build_plugin,
    )
    from benchharness.compression import Captured, CompressionContext, check_compressed
    from benchharness.errors import BenchError, Diverged
    from benchharness.hookspecs import hookimpl
    from benchharness.plugin_tables import PluginTable
    from benchharness.training_api import Evaluation, Optimizer, TrainContext

__version__ = "0.1.0"

# public name → the module that defines it
_HOME = {
    "BenchError": "benchharness.errors",
    "Captured": "benchharness.compression",
    "Compressed": "benchharness.api",
    "CompressionContext": "benchharness.compression",
    "Compressor": "benchharness.api",
    "CompressorOptions": "benchharness.api",
    "Data": "benchharness.api",
    "Dataset": "benchharness.api",
    "Diverged": "benchharness.errors",
    "Evaluation": "benchharness.training_api",
    "Model": "benchharness.api",
    "Optimizer": "benchharness.training_api",
    "Plugin": "benchharness.api",
    "PluginOptions": "benchharness.api",
    "PluginTable": "benchharness.plugin_tables",
    "TrainContext": "benchharness.training_api",
    "Transform": "benchharness.api",
    "build_plugin": "benchharness.api",
    "check_compressed": "benchharness.compression",
    "hookimpl": "benchharness.hookspecs",
}

__all__ = [
    "BenchError",
    "Captured",
    "Compressed",
    "CompressionContext",
    "Compressor",
    "CompressorOptions",
    "Data",
    "Dataset",
    "Diverged",
    "Evaluation",
    "Model",
    "Optimizer",
    "Plugin",
    "PluginOptions",
    "PluginTable",
    "TrainContext",
    "Transform",
    "__version__",
    "build_plugin",
    "check_compressed",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
