"""Built-in datasets: MNIST (torchvision files) and scikit-learn's bundled 8×8 digits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from benchharness import BenchError, Data, Dataset, PluginOptions, hookimpl

if TYPE_CHECKING:
    from torch import Tensor

Normalize = Literal["half", "mnist", "none"]

# (mean, std) subtracted / divided after scaling pixels to [0, 1].
_NORMALIZATION: dict[str, tuple[float, float]] = {
    "half": (0.5, 0.5),
    "mnist": (0.1307, 0.3081),
    "none": (0.0, 1.0),
}

_NORMALIZE_DESCRIPTION = (
    "pixel normalisation after scaling to [0, 1]: 'half' = (x - 0.5) / 0.5 (range [-1, 1]), "
    "'mnist' = (x - 0.1307) / 0.3081, 'none' = keep [0, 1]"
)


def _normalize(x: Tensor, how: str) -> Tensor:
    if how == "none":
        return x
    mean, std = _NORMALIZATION[how]
    return x.sub_(mean).div_(std)


def _short_reason(exc: BaseException, limit: int = 120) -> str:
    """The most specific line of an exception message (torchvision's are multi-line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


class MNIST(Dataset):
    """MNIST handwritten digits, 60,000 train / 10,000 test 28×28 greyscale images."""

    name = "mnist"
    version = "1"

    class Options(PluginOptions):
        normalize: Normalize = Field("half", description=_NORMALIZE_DESCRIPTION)

    def load(self, data_dir: Path) -> Data:
        train_x, train_y = self._split(Path(data_dir), train=True)
        test_x, test_y = self._split(Path(data_dir), train=False)
        return Data(train_x, train_y, test_x, test_y, num_classes=10)

    def _split(self, data_dir: Path, *, train: bool) -> tuple[Tensor, Tensor]:
        import torch
        from torchvision import datasets

        try:
            ds = datasets.MNIST(root=str(data_dir), train=train, download=False)
        except RuntimeError:
            try:
                ds = datasets.MNIST(root=str(data_dir), train=train, download=True)
            except Exception as exc:  # network errors come in many types
                raise BenchError(
                    f"mnist: no MNIST files in {data_dir / 'MNIST' / 'raw'} and the download "
                    f"failed ({_short_reason(exc)}); put the four idx files there or set "
                    "BENCH_DATA_DIR"
                ) from None
        x = ds.data.to(torch.float32).div_(255.0).unsqueeze(1)
        return _normalize(x, self.options.normalize), ds.targets.to(torch.int64)


class Digits(Dataset):
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images), split deterministically."""

    name = "digits"
    version = "1"

    class Options(PluginOptions):
        normalize: Normalize = Field("half", description=_NORMALIZE_DESCRIPTION)
        test_fraction: float = Field(
            0.2, description="fraction of the 1,797 images held out as the test split, in (0, 1)"
        )
        split_seed: int = Field(
            0, ge=0, description="seed of the stratified train/test split (not the job seed)"
        )

        @field_validator("test_fraction")
        @classmethod
        def _fraction(cls, value: float) -> float:
            if not 0.0 < value < 1.0:
                raise ValueError(f"must be in (0, 1), got {value}")
            return value

    def load(self, data_dir: Path) -> Data:
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = torch.as_tensor(bunch.data, dtype=torch.float32).div_(16.0).reshape(-1, 1, 8, 8)
        y = torch.as_tensor(bunch.target, dtype=torch.int64)
        train_idx, test_idx = train_test_split(
            torch.arange(len(y)).numpy(),
            test_size=self.options.test_fraction,
            random_state=self.options.split_seed,
            stratify=bunch.target,
        )
        train_idx = torch.as_tensor(train_idx)
        test_idx = torch.as_tensor(test_idx)
        x = _normalize(x, self.options.normalize)
        return Data(x[train_idx], y[train_idx], x[test_idx], y[test_idx], num_classes=10)


@hookimpl
def register_datasets(register):
    register(MNIST)
    register(Digits)
