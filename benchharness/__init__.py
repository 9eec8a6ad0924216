"""benchharness: a declarative benchmark harness for neural-network efficiency research.

The public plugin API is re-exported here: ``from benchharness import hookimpl, Model``.
"""

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
