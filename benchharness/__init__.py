"""benchharness: a declarative benchmark harness for neural-network efficiency research.

The public plugin API is re-exported here: ``from benchharness import hookimpl, Model``.
"""

from benchharness.api import (
    Compressed,
    Compressor,
    CompressorOptions,
    Data,
    Dataset,
    Evaluation,
    Model,
    Optimizer,
    Plugin,
    PluginOptions,
    TrainContext,
    Transform,
)
from benchharness.errors import BenchError, Diverged
from benchharness.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "BenchError",
    "Compressed",
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
    "TrainContext",
    "Transform",
    "__version__",
    "hookimpl",
]
