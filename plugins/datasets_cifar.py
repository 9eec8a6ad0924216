"""Colour-image datasets: CIFAR-10 and CIFAR-100 (torchvision's files) and ``npz``, any
local dataset stored as four numpy arrays (e.g. ``../shared/data/cifar10-subset``).

Images come out as float32 NCHW tensors: pixels scaled to [0, 1], then normalised per
channel (``normalize``). Augmentation is not a dataset's job: it is the harness's
``[data] augment`` option, applied to training batches on the job's device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from benchharness import BenchError, Data, Dataset, PluginOptions, hookimpl

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

__all__ = ["CIFAR10", "CIFAR100", "CIFAR_DATASETS", "Npz", "images_to_tensor"]

# Per-channel (R, G, B) mean and standard deviation of each full training set in [0, 1].
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))

Normalize = Literal["channel", "half", "none"]


def images_to_tensor(images: np.ndarray, *, layout: str = "nhwc") -> Tensor:
    """Images as float32 NCHW: uint8 values are divided by 255, floats are kept.

    ``images`` is (N, H, W, C) (``layout = "nhwc"``) or (N, C, H, W) (``"nchw"``); a
    3-D (N, H, W) array gets one channel; a 2-D (N, F) array of features stays 2-D.
    """
    import numpy as np
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.to(torch.float32).div_(255.0) if images.dtype == np.uint8 else x.to(torch.float32)
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and layout == "nhwc":
        return x.permute(0, 3, 1, 2).contiguous()
    return x


def _normalise_channels(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    import torch

    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(shape)
    std_t = torch.tensor(std, dtype=x.dtype).view(shape)
    return x.sub_(mean_t).div_(std_t)


def _normalise(
    how: str, stats: tuple[tuple[float, ...], tuple[float, ...]], *tensors: Tensor
) -> None:
    """``how`` applied in place to every tensor, with ``stats`` for ``"channel"``."""
    if how == "none":
        return
    for x in tensors:
        if how == "half":
            x.sub_(0.5).div_(0.5)
        else:
            _normalise_channels(x, *stats)


_NORMALIZE_DESCRIPTION = (
    "after scaling pixels to [0, 1]: 'channel' = subtract each channel's mean and divide "
    "by its standard deviation over the training set{stats}; 'half' = (x - 0.5) / 0.5; "
    "'none' = keep [0, 1]"
)


# ------------------------------------------------------------------------- CIFAR
class _TorchvisionCifar(Dataset):
    title: ClassVar[str]
    folder: ClassVar[str]
    archive: ClassVar[str]
    stats: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]]
    classes: ClassVar[int]
    torchvision_class: ClassVar[str]  # its name in torchvision.datasets

    def load(self, data_dir: Path) -> Data:
        data_dir = Path(data_dir)
        train_x, train_y = self._split(data_dir, train=True)
        test_x, test_y = self._split(data_dir, train=False)
        _normalise(self.options.normalize, self.stats, train_x, test_x)
        return Data(train_x, train_y, test_x, test_y, num_classes=self.classes)

    def _split(self, data_dir: Path, *, train: bool) -> tuple[Tensor, Tensor]:
        import numpy as np
        import torch
        from torchvision import datasets

        from benchharness_plugins.datasets import _short_reason

        cls = getattr(datasets, self.torchvision_class)
        try:
            ds = cls(root=str(data_dir), train=train, download=False)
        except RuntimeError:
            try:
                ds = cls(root=str(data_dir), train=train, download=True)
            except Exception as exc:  # network errors come in many types
                raise BenchError(
                    f"{self.name}: no {self.title} files in {data_dir / self.folder} and the "
                    f"download failed ({_short_reason(exc)}); put the extracted python "
                    f"version ({self.archive} from https://www.cs.toronto.edu/~kriz/cifar.html) "
                    "there or set BENCH_DATA_DIR"
                ) from None
        x = images_to_tensor(np.asarray(ds.data), layout="nhwc")
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _cifar_options(title: str, stats: tuple[tuple[float, ...], tuple[float, ...]]):
    mean, std = (", ".join(f"{v:.4f}" for v in values) for values in stats)

    class Options(PluginOptions):
        normalize: Normalize = Field(
            "channel",
            description=_NORMALIZE_DESCRIPTION.format(
                stats=f" (the published {title} statistics: mean ({mean}), std ({std}))"
            ),
        )

    return Options


class CIFAR10(_TorchvisionCifar):
    """CIFAR-10: 50,000 train / 10,000 test 32×32 colour images in 10 classes."""

    name = "cifar10"
    version = "1"
    Options = _cifar_options("CIFAR-10", CIFAR10_STATS)
    title = "CIFAR-10"
    folder = "cifar-10-batches-py"
    archive = "cifar-10-python.tar.gz"
    stats = CIFAR10_STATS
    classes = 10
    torchvision_class = "CIFAR10"


class CIFAR100(_TorchvisionCifar):
    """CIFAR-100: 50,000 train / 10,000 test 32×32 colour images in 100 (fine) classes."""

    name = "cifar100"
    version = "1"
    Options = _cifar_options("CIFAR-100", CIFAR100_STATS)
    title = "CIFAR-100"
    folder = "cifar-100-python"
    archive = "cifar-100-python.tar.gz"
    stats = CIFAR100_STATS
    classes = 100
    torchvision_class = "CIFAR100"


# --------------------------------------------------------------------------- npz
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


class Npz(Dataset):
    """A local dataset in one .npz file: arrays x_train, y_train, x_test, y_test."""

    name = "npz"
    version = "1"

    class Options(PluginOptions):
        path: str = Field(
            description="the .npz file; a relative path is under the data directory "
            "(BENCH_DATA_DIR), e.g. 'cifar10-subset/cifar10_train4000_test1000.npz'"
        )
        layout: Literal["nhwc", "nchw"] = Field(
            "nhwc",
            description="axis order of 4-D image arrays: 'nhwc' (N, H, W, C) or 'nchw'; "
            "3-D (N, H, W) arrays are one-channel images, 2-D (N, F) arrays feature vectors",
        )
        normalize: Normalize = Field(
            "channel",
            description=_NORMALIZE_DESCRIPTION.format(
                stats=" (computed from x_train, unless mean and std are given)"
            )
            + "; uint8 arrays are divided by 255 first, float arrays are taken as they are",
        )
        mean: list[float] | None = Field(
            None, description="per-channel means for normalize = 'channel' (with std)"
        )
        std: list[float] | None = Field(
            None, description="per-channel standard deviations for normalize = 'channel'"
        )
        num_classes: int | None = Field(
            None, gt=0, description="number of classes; default: the largest label + 1"
        )

        @model_validator(mode="after")
        def _stats_together(self):
            if (self.mean is None) != (self.std is None):
                raise ValueError("give both mean and std, or neither")
            if self.std is not None and any(s <= 0 for s in self.std):
                raise ValueError(f"every std must be > 0, got {self.std}")
            if self.mean is not None and len(self.mean) != len(self.std or []):
                raise ValueError(f"mean and std differ in length: {self.mean} vs {self.std}")
            return self

    def load(self, data_dir: Path) -> Data:
        import torch

        path = Path(self.options.path)
        if not path.is_absolute():
            path = Path(data_dir) / path
        arrays = self._read(path)
        x_train = images_to_tensor(arrays["x_train"], layout=self.options.layout)
        x_test = images_to_tensor(arrays["x_test"], layout=self.options.layout)
        y_train, y_test = (self._labels(path, key, arrays) for key in ("y_train", "y_test"))
        for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
            if x.shape[0] != y.shape[0]:
                raise BenchError(
                    f"npz: {path}: x_{split} has {x.shape[0]} samples but y_{split} "
                    f"{y.shape[0]} labels"
                )
        if x_train.shape[1:] != x_test.shape[1:]:
            raise BenchError(
                f"npz: {path}: x_train samples are {tuple(x_train.shape[1:])}, x_test "
                f"samples {tuple(x_test.shape[1:])}"
            )
        largest = int(max(y_train.max(initial=0), y_test.max(initial=0)))
        classes = self.options.num_classes or largest + 1
        if largest >= classes:
            raise BenchError(f"npz: {path}: label {largest} is >= num_classes = {classes}")
        self._normalise(path, x_train, x_test)
        return Data(
            x_train,
            torch.from_numpy(y_train),
            x_test,
            torch.from_numpy(y_test),
            num_classes=classes,
        )

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        import numpy as np

        if not path.is_file():
            raise BenchError(
                f"npz: no file {path} (dataset.path; a relative path is under the data "
                "directory, BENCH_DATA_DIR)"
            )
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [key for key in ARRAYS if key not in archive.files]
                if missing:
                    raise BenchError(
                        f"npz: {path} has no array '{missing[0]}' (needs "
                        f"{', '.join(ARRAYS)}; it has {', '.join(archive.files) or 'none'})"
                    )
                return {key: archive[key] for key in ARRAYS}
        except (OSError, ValueError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise BenchError(f"npz: cannot read {path} as .npz ({reason})") from None

    @staticmethod
    def _labels(path: Path, key: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
        import numpy as np

        y = arrays[key]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise BenchError(
                f"npz: {path}: {key} must be a 1-D array of integer labels, got shape "
                f"{y.shape} of {y.dtype}"
            )
        if y.size and y.min() < 0:
            raise BenchError(f"npz: {path}: {key} has a negative label ({int(y.min())})")
        return y.astype(np.int64)

    def _normalise(self, path: Path, x_train: Tensor, x_test: Tensor) -> None:
        o = self.options
        if o.normalize != "channel":
            _normalise(o.normalize, ((), ()), x_train, x_test)
            return
        channels = x_train.shape[1] if x_train.ndim >= 3 else 1
        if o.mean is not None and o.std is not None:
            stats = (tuple(o.mean), tuple(o.std))
            if len(o.mean) != channels:
                raise BenchError(
                    f"npz: {path}: mean and std have {len(o.mean)} values for {channels} channels"
                )
        else:
            dims = [d for d in range(x_train.ndim) if d != 1] if x_train.ndim >= 3 else None
            flat = x_train.double()
            mean = flat.mean(dim=dims) if dims else flat.mean().reshape(1)
            std = flat.std(dim=dims) if dims else flat.std().reshape(1)
            if bool((std == 0).any()):
                raise BenchError(f"npz: {path}: a channel of x_train is constant (std 0)")
            stats = (tuple(mean.tolist()), tuple(std.tolist()))
        if x_train.ndim < 3:  # features: one global mean/std
            for x in (x_train, x_test):
                x.sub_(stats[0][0]).div_(stats[1][0])
            return
        _normalise("channel", stats, x_train, x_test)


CIFAR_DATASETS: tuple[type[Dataset], ...] = (CIFAR10, CIFAR100, Npz)


@hookimpl
def register_datasets(register):
    for cls in CIFAR_DATASETS:
        register(cls)
