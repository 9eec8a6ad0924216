"""benchmarks/compare_baseline.py and dct_transform.py as functions: the harness side and
the plain side do the same work, and the result rows have the advertised keys."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import EpochPair, plain_evaluate, synthetic_data


@pytest.mark.parametrize("width", [0.5, 2.0])
def test_the_harness_epoch_and_the_plain_epoch_train_the_same_model(width):
    pair = EpochPair(300, 50, seed=3, width=width)
    for _ in range(2):
        assert pair.harness() == pytest.approx(pair.plain(), rel=1e-5)
    for (name, a), b in zip(
        pair.harness_model.state_dict().items(), pair.plain_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    ours = pair.ctx.evaluate(pair.harness_model)
    loss, accuracy = plain_evaluate(pair.plain_model, pair.data)
    assert ours.accuracy == accuracy and ours.loss == pytest.approx(loss, rel=1e-5)


def test_measure_overhead_rows():
    from benchmarks.compare_baseline import measure_overhead

    rows = measure_overhead([0.5, 1.0], 1, data=synthetic_data(64, 16))
    assert [(r["alpha"], r["name"].split(" α")[0]) for r in rows] == [
        (0.5, "training epoch"),
        (0.5, "test evaluation"),
        (1.0, "training epoch"),
        (1.0, "test evaluation"),
    ]
    for row in rows:
        for key in ("harness_s", "plain_s", "harness_cpu_s", "plain_cpu_s"):
            assert math.isfinite(row[key]) and row[key] >= 0, key
        assert row["data"] == "given"


def test_measure_dct_rows():
    from benchmarks.dct_transform import measure_dct, measure_disk_cache

    data = synthetic_data(40, 10)
    rows = measure_dct(data, ratios=(0.3,), repeat=1, loop_images=5)
    assert [(r["selection"], r["ratio"], r["images"]) for r in rows] == [
        ("magnitude", 0.3, 50),
        ("lowfreq", 0.3, 50),
    ]
    assert all(r["harness_s"] > 0 and r["scipy_s"] > 0 and r["loop_s"] > 0 for r in rows)
    cache = measure_disk_cache(data, repeat=1)
    assert cache["store_s"] > 0 and cache["load_s"] > 0 and cache["entry_mib"] > 0
