"""The ``dct`` input transform (keep 30 % of the 2-D DCT coefficients of each image) on
``N_IMAGES`` synthetic 28×28 images, for both coefficient selections."""

from __future__ import annotations

import math
import re
from pathlib import Path

from benchharness.plugins import get_registry
from benchmarks import synthetic_data

N_IMAGES = 10_000
RATIO = 0.3

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"no {field} in {_STATUS}")
    return int(match.group(1))


class DCTTransform:
    params = (["magnitude", "lowfreq"],)
    param_names = ["selection"]
    number = 1
    repeat = (3, 10, 10.0)
    timeout = 120.0

    def setup(self, selection):
        # All images in the training split; an empty test split.
        self.data = synthetic_data(N_IMAGES, 0)
        self.transform = get_registry().create(
            "transform", "dct", {"ratio": RATIO, "selection": selection}
        )
        self.transform.apply(synthetic_data(16, 0))  # one-off costs out of the way

    def time_dct(self, selection):
        """Seconds to transform N_IMAGES images."""
        self.transform.apply(self.data)

    def peakmem_dct(self, selection):
        """Peak resident memory of the whole process (torch itself, the images, the
        transform's temporaries) while transforming N_IMAGES images. Dominated by torch's
        own footprint; ``track_peak_extra_mb`` isolates the transform."""
        self.transform.apply(self.data)

    def track_peak_extra_mb(self, selection):
        """MiB of resident memory the transform needs above what the process held
        before it (Linux: peak RSS reset through /proc/self/clear_refs; NaN elsewhere).
        The input itself is N_IMAGES·784·4 bytes (30 MiB for 10,000 images)."""
        try:
            _CLEAR_REFS.write_text("5")  # reset VmHWM (peak RSS) to the current RSS
            before = _status_kib("VmRSS")
        except OSError:
            return math.nan
        out = self.transform.apply(self.data)
        extra = _status_kib("VmHWM") - before
        del out
        return extra / 1024

    track_peak_extra_mb.unit = "MiB"
