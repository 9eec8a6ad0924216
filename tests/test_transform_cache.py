"""Transformed datasets cached on disk (benchharness.transform_cache via datacache)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import Field

from benchharness import Data, PluginOptions, Transform, datacache, hookimpl, transform_cache
from benchharness.plugins import Registry, get_registry

REPO = Path(__file__).resolve().parents[1]


class Squaring(Transform):
    """Squares the inputs (times ``scale``) and counts how often it is applied."""

    name = "squaring"
    version = "1"
    calls: ClassVar[list[float]] = []

    class Options(PluginOptions):
        scale: float = Field(1.0, description="factor applied after squaring")

    def apply(self, data: Data) -> Data:
        Squaring.calls.append(self.options.scale)
        s = self.options.scale
        return data.replace(
            train_x=data.train_x.square() * s, test_x=data.test_x.square() * s, input_bits=99
        )


class Plugins:
    @hookimpl
    def register_transforms(self, register):
        register(Squaring)


@pytest.fixture
def registry() -> Registry:
    Squaring.calls.clear()
    datacache.clear()
    yield get_registry(extra_plugins=[Plugins()])
    datacache.clear()


def _config(transform: list[dict] | None = None, **data_section) -> dict:
    return {
        "dataset": {"name": "digits"},
        "data": {"validation": 0.1, **data_section},
        "transform": transform if transform is not None else [{"name": "squaring"}],
    }


def _assert_same(a: Data, b: Data) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), field.name
        else:
            assert x == y, field.name


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "data").glob("*.pt"))


def test_a_later_run_loads_the_transformed_data_from_disk(tmp_path, registry):
    config, cache = _config(), tmp_path / "cache"
    first = datacache.load_job_data(config, registry, tmp_path, cache)
    assert Squaring.calls == [1.0] and len(_entries(cache)) == 1

    datacache.clear()  # a new process: nothing in memory
    again = datacache.load_job_data(config, registry, tmp_path, cache)
    assert Squaring.calls == [1.0]  # not transformed again

    datacache.clear()
    reference = datacache.load_job_data(config, registry, tmp_path)  # no disk cache
    assert Squaring.calls == [1.0, 1.0]
    for got in (first, again):
        _assert_same(got.data, reference.data)
        _assert_same(got.raw, reference.raw)
        assert got.validation is not None and reference.validation is not None
        for x, y in zip(got.validation, reference.validation, strict=True):
            assert torch.equal(x, y)
    assert again.data.input_bits == 99  # fields other than tensors come back too


def test_another_process_reuses_the_entry_bit_for_bit(tmp_path):
    script = tmp_path / "load.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import hashlib, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_transform_cache import Plugins, Squaring, _config
            from benchharness import datacache
            from benchharness.plugins import get_registry
            from pathlib import Path
            registry = get_registry(extra_plugins=[Plugins()])
            job = datacache.load_job_data(_config(), registry, Path(sys.argv[1]), Path(sys.argv[2]))
            h = hashlib.sha256()
            for t in (job.data.train_x, job.data.test_x, *job.validation):
                h.update(t.contiguous().numpy().tobytes())
            print(len(Squaring.calls), h.hexdigest())
            """
        )
    )

    def run() -> list[str]:
        args = [sys.executable, str(script), str(tmp_path), str(tmp_path / "cache")]
        done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    first, second = run(), run()
    assert first[0] == "1" and second[0] == "0"  # the second process did not transform
    assert first[1] == second[1]


def test_data_transformed_before_without_a_cache_dir_is_stored_when_one_is_given(
    tmp_path, registry
):
    # e.g. the preflight check transformed it in memory before the job ran
    config, cache = _config(), tmp_path / "cache"
    datacache.load_job_data(config, registry, tmp_path)
    datacache.load_job_data(config, registry, tmp_path, cache)
    assert Squaring.calls == [1.0] and len(_entries(cache)) == 1
    datacache.clear()
    datacache.load_job_data(config, registry, tmp_path, cache)
    assert Squaring.calls == [1.0]


@pytest.mark.parametrize("damage", ["garbage", "tensor_bytes", "other_key"])
def test_a_corrupt_entry_is_set_aside_and_computed_again(tmp_path, registry, capsys, damage):
    config, cache = _config(), tmp_path / "cache"
    reference = datacache.load_job_data(config, registry, tmp_path, cache).data
    (entry,) = _entries(cache)
    if damage == "garbage":
        entry.write_bytes(entry.read_bytes()[:1000])
    else:
        payload = torch.load(entry, weights_only=True)
        if damage == "tensor_bytes":
            payload["tensors"]["train_x"][3, 0, 2, 2] += 1.0
        else:
            payload["key"] = "0" * 32
        torch.save(payload, entry)

    datacache.clear()
    got = datacache.load_job_data(config, registry, tmp_path, cache).data
    assert Squaring.calls == [1.0, 1.0]  # computed again
    _assert_same(got, reference)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: corrupt data cache entry {entry}")
    assert len(list((cache / "data").glob("*.corrupt-*"))) == 1  # kept for inspection
    datacache.clear()
    datacache.load_job_data(config, registry, tmp_path, cache)  # the rewritten entry is sound
    assert Squaring.calls == [1.0, 1.0] and "warning" not in capsys.readouterr().err


def test_other_transform_options_or_data_give_other_entries(tmp_path, registry):
    cache = tmp_path / "cache"
    configs = [
        _config(),
        _config([{"name": "squaring", "scale": 1.0}]),  # the default, spelled out: same entry
        _config([{"name": "squaring", "scale": 2.0}]),
        _config([{"name": "squaring"}, {"name": "squaring"}]),
        _config(subset_seed=1),
    ]
    keys = []
    for config in configs:
        datacache.load_job_data(config, registry, tmp_path, cache)
        held, _ = datacache._held_out(config, registry, tmp_path)
        keys.append(
            datacache._disk_key(config, held, datacache.as_list(config["transform"]), registry)
        )
    assert keys[0] == keys[1]
    assert len(set(keys)) == 4 == len(_entries(cache))


def test_a_changed_transform_version_gives_another_entry(tmp_path, registry, monkeypatch):
    cache = tmp_path / "cache"
    datacache.load_job_data(_config(), registry, tmp_path, cache)
    monkeypatch.setattr(Squaring, "version", "2")
    datacache.clear()
    datacache.load_job_data(_config(), registry, tmp_path, cache)
    assert Squaring.calls == [1.0, 1.0] and len(_entries(cache)) == 2


def test_fingerprint_changes_with_any_byte_and_field():
    x = torch.rand(5, 1, 4, 4)
    y = torch.arange(5)
    data = Data(x, y, x.clone(), y.clone(), num_classes=5)
    changed = x.clone()
    changed[4, 0, 3, 3] = torch.nextafter(changed[4, 0, 3, 3], torch.tensor(2.0))
    prints = {
        transform_cache.fingerprint(data),
        transform_cache.fingerprint(data.replace(train_x=changed)),
        transform_cache.fingerprint(data.replace(num_classes=6)),
        transform_cache.fingerprint(data.replace(test_x=x.double())),
    }
    assert len(prints) == 4
    assert transform_cache.fingerprint(data.replace(train_x=x.clone())) in prints


def test_an_unwritable_cache_only_costs_the_reuse(tmp_path, registry, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    got = datacache.load_job_data(_config(), registry, tmp_path, blocker)
    assert Squaring.calls == [1.0] and got.data.input_bits == 99
    assert capsys.readouterr().err.startswith("warning: cannot use the data cache")


def test_tensors_the_transform_left_alone_are_not_written(tmp_path, registry):
    cache = tmp_path / "cache"
    for transform, stored in (("squaring", {"train_x", "test_x"}), ("none", set())):
        config = _config([{"name": transform}])
        before = set(_entries(cache)) if (cache / "data").exists() else set()
        computed = datacache.load_job_data(config, registry, tmp_path, cache)
        (entry,) = set(_entries(cache)) - before
        assert set(torch.load(entry, weights_only=True)["tensors"]) == stored
        datacache.clear()
        loaded = datacache.load_job_data(config, registry, tmp_path, cache)
        _assert_same(loaded.data, computed.data)
    assert Squaring.calls == [1.0]


def test_a_second_bench_run_transforms_nothing(tmp_path, registry):
    from benchharness.executor import execute
    from benchharness.matrix import load_jobs
    from benchharness.progress import StudyProgress

    spec = tmp_path / "cached.toml"
    spec.write_text(
        textwrap.dedent(
            """
            [dataset]
            name = "digits"
            [transform]
            name = "squaring"
            [model]
            name = "lenet300"
            hidden = [8]
            [optimizer]
            name = "sgd"
            epochs = 1
            [measure]
            latency = false
            activation_stats = false
            """
        )
    )
    _spec, jobs = load_jobs(spec, registry)
    for _ in range(2):  # two runs, as two processes: nothing kept in memory between them
        datacache.clear()
        records = execute(
            jobs,
            devices=[torch.device("cpu")],
            save=lambda record: None,
            data_dir=tmp_path,
            cache_dir=tmp_path / "cache",
            registry=registry,
            progress=StudyProgress(len(jobs), 1, live=False, stream=open(os.devnull, "w")),
        )
        assert [r.status for r in records] == ["completed"]
    assert Squaring.calls == [1.0]  # the preflight check of the first run, stored
