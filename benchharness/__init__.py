"""benchharness: a declarative benchmark harness for neural-network efficiency research.

The public plugin API is re-exported here: ``from benchharness import hookimpl, Model``.
Importing it does not import torch (``bench --help``, ``bench plugins``, ``bench report``
and ``bench validate`` never need it): the names whose module needs torch
(:class:`CompressionContext`, :class:`Captured`, :func:`check_compressed`) are loaded on
first use.
"""

from typing import TYPE_CHECKING, Any

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
from benchharness.errors import BenchError, Diverged
from benchharness.hookspecs import hookimpl
from benchharness.plugin_tables import PluginTable
from benchharness.training_api import Evaluation, Optimizer, TrainContext

if TYPE_CHECKING:
    from benchharness.compression import Captured, CompressionContext, check_compressed

__version__ = "0.1.0"

# public names re-exported from modules that import torch: loaded on first access
_LAZY = {
    "Captured": "benchharness.compression",
    "CompressionContext": "benchharness.compression",
    "check_compressed": "benchharness.compression",
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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
