"""Honest model selection: the validation split is disjoint from training and test data,
`best_val` selects on validation and never on test, the chosen epoch is stored; and the
[data] keys' validation and job ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import FakeContext
from torch import nn

from benchharness import BenchError, Data, Evaluation, datacache
from benchharness.jobcontext import JobContext
from benchharness.matrix import Job, load_jobs
from benchharness.plugins import get_registry
from benchharness.records import CurvePoint
from benchharness.runner import run_job
from benchharness.selection import BestEpoch, selected_epoch, validation_indices
from benchharness.store import Store
from benchharness.training import train_epochs

CPU = torch.device("cpu")


# ------------------------------------------------------------------------ the split
def test_validation_indices_partition_the_training_samples():
    train, val = validation_indices(1000, 0.1, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    again_train, again_val = validation_indices(1000, 0.1, seed=0)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, validation_indices(1000, 0.1, seed=1)[1])


def test_validation_that_leaves_nothing_is_one_line_error():
    with pytest.raises(
        BenchError,
        match=r"data.validation = 0.001 of 100 training samples leaves no validation samples",
    ):
        validation_indices(100, 0.001, seed=0)
    with pytest.raises(BenchError, match="leaves no training samples"):
        validation_indices(3, 0.9, seed=0)


def _id_npz(tmp_path: Path) -> Path:
    """Every sample's pixels hold its id: train 0..199, test 1000..1049."""
    x_train = np.arange(200, dtype=np.float32)[:, None, None, None] * np.ones(
        (1, 1, 4, 4), np.float32
    )
    x_test = (1000 + np.arange(50, dtype=np.float32))[:, None, None, None] * np.ones(
        (1, 1, 4, 4), np.float32
    )
    path = tmp_path / "ids.npz"
    np.savez(
        path, x_train=x_train, y_train=np.arange(200) % 10, x_test=x_test, y_test=np.arange(50) % 10
    )
    return path


def _config(path: Path, **data) -> dict:
    dataset = {"name": "npz", "path": str(path), "layout": "nchw", "normalize": "none"}
    return {"dataset": dataset, "data": {"subset_seed": 0, **data}, "transform": []}


def _ids(x: torch.Tensor) -> set[int]:
    return set(x[:, 0, 0, 0].round().int().tolist())


def test_validation_split_is_disjoint_from_train_and_test(tmp_path):
    path = _id_npz(tmp_path)
    registry = get_registry()
    job = datacache.load_job_data(_config(path, validation=0.25), registry, tmp_path)
    assert job.validation is not None
    val_x, val_y = job.validation
    train, val, test = _ids(job.data.train_x), _ids(val_x), _ids(job.data.test_x)
    assert len(val) == 50 and len(train) == 150 and test == set(range(1000, 1050))
    assert train.isdisjoint(val) and val.isdisjoint(test) and train.isdisjoint(test)
    assert train | val == set(range(200))
    # labels travel with their samples
    assert torch.equal(val_y, (val_x[:, 0, 0, 0].round().long() % 10))
    assert torch.equal(job.data.train_y, job.data.train_x[:, 0, 0, 0].round().long() % 10)
    assert torch.equal(job.raw.train_x, job.data.train_x)  # no transform
    # After a train_subset, the validation samples come from that subset.
    sub = datacache.load_job_data(
        _config(path, validation=0.25, train_subset=80), registry, tmp_path
    )
    assert len(_ids(sub.validation[0])) == 20 and len(_ids(sub.data.train_x)) == 60
    # without a validation split, nothing is held out
    plain = datacache.load_job_data(_config(path), registry, tmp_path)
    assert plain.validation is None and _ids(plain.data.train_x) == set(range(200))


def test_transforms_apply_to_the_validation_split_like_the_test_split(tmp_path):
    path = _id_npz(tmp_path)
    config = _config(path, validation=0.25)
    config["transform"] = [
        {"name": "dct", "ratio": 0.5, "selection": "lowfreq", "output": "coefficients"}
    ]
    registry = get_registry()
    job = datacache.load_job_data(config, registry, tmp_path)
    plain = datacache.load_job_data(_config(path, validation=0.25), registry, tmp_path)
    transform = registry.from_table("transform", config["transform"][0])
    val_x, _ = plain.validation
    expected = transform.apply(Data(val_x, plain.validation[1], val_x, plain.validation[1], 10))
    torch.testing.assert_close(job.validation[0], expected.test_x)


# ----------------------------------------------------------------- best_val selection
class ScriptedContext(FakeContext):
    """Validation and test accuracies scripted per epoch so that they disagree; the model's
    weights are recorded at every epoch's log."""

    def __init__(self, data, val_acc, test_acc, select="best_val"):
        super().__init__(data)
        self.val_acc, self.test_acc, self.select = val_acc, test_acc, select
        self.model: nn.Module | None = None
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.epoch = 0

    def evaluate(self, model):
        return Evaluation(loss=1.0, accuracy=self.test_acc[self.epoch])

    def validate(self, model):
        self.model = model
        return Evaluation(loss=1.0, accuracy=self.val_acc[self.epoch])

    def log(self, step, total=None, *, phase="train", **values):
        super().log(step, total, phase=phase, **values)
        if phase == "train":
            self.snapshots[step] = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.epoch += 1


def _tiny() -> tuple[Data, nn.Module]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return Data(x, y, x[:16], y[:16], num_classes=2), model


def _train(ctx, model, epochs=5, **kwargs):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return train_epochs(
        model, ctx, opt, epochs=epochs, batch_size=16, lr_for_epoch=lambda e: 0.1, **kwargs
    )


def test_best_val_keeps_the_best_validation_epoch_not_the_best_test_epoch():
    data, model = _tiny()
    # validation peaks at epoch 2, test at epoch 4
    ctx = ScriptedContext(
        data, val_acc=[0.5, 0.9, 0.6, 0.7, 0.8], test_acc=[0.5, 0.6, 0.7, 0.99, 0.8]
    )
    _train(ctx, model)
    state = model.state_dict()
    for name, value in ctx.snapshots[2].items():  # weights and BN buffers of epoch 2
        assert torch.equal(state[name], value), name
    assert not torch.equal(state["0.weight"], ctx.snapshots[4]["0.weight"])
    assert not torch.equal(state["0.weight"], ctx.snapshots[5]["0.weight"])
    train_logs = [v for _, _, phase, v in ctx.logs if phase == "train"]
    assert [v["val_accuracy"] for v in train_logs] == [0.5, 0.9, 0.6, 0.7, 0.8]
    assert ctx.logs[-1] == (2, None, "selection", {"val_accuracy": 0.9, "val_loss": 1.0})


def test_last_keeps_the_last_epoch_and_logs_no_selection():
    data, model = _tiny()
    ctx = ScriptedContext(data, val_acc=[0.5, 0.9, 0.6], test_acc=[0.1, 0.2, 0.3], select="last")
    _train(ctx, model, epochs=3)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ctx.snapshots[3].items())
    assert [phase for _, _, phase, _ in ctx.logs] == ["train"] * 3


def test_other_phases_are_not_selected_within():
    data, model = _tiny()
    ctx = ScriptedContext(data, val_acc=[0.9, 0.1], test_acc=[0.5, 0.5])
    _train(ctx, model, epochs=2, phase="lc_l")
    assert [phase for _, _, phase, _ in ctx.logs] == ["lc_l", "lc_l"]


def test_best_val_without_validation_is_an_error():
    data, model = _tiny()
    ctx = FakeContext(data)
    ctx.select = "best_val"
    with pytest.raises(BenchError, match="needs a validation split"):
        _train(ctx, model, epochs=1)


def test_best_epoch_ties_prefer_lower_loss_then_earlier():
    model = nn.Linear(2, 2)
    best = BestEpoch()
    assert best.observe(model, 1, Evaluation(0.5, 0.8))
    assert not best.observe(model, 2, Evaluation(0.5, 0.8))  # same: keep the earlier
    assert best.observe(model, 3, Evaluation(0.4, 0.8))  # same accuracy, lower loss
    assert not best.observe(model, 4, Evaluation(0.1, 0.7))
    assert best.restore(model) == 3


def test_selected_epoch_from_curves():
    curves = [CurvePoint("train", s, "val_accuracy", 0.1 * s) for s in (1, 2, 3)]
    assert selected_epoch(curves, "last") == 3
    assert (
        selected_epoch([*curves, CurvePoint("selection", 2, "val_accuracy", 0.2)], "best_val") == 2
    )
    assert selected_epoch([CurvePoint("reference_train", 4, "x", 0.0)], "last") is None


# --------------------------------------------------------------------- through a job
SPEC = """
name = "sel"
[dataset]
name = "digits"
[data]
validation = 0.2
select = "best_val"
augment = ["crop", "flip"]
crop_padding = 2
[model]
name = "lenet300"
hidden = [16]
activation = "relu"
[optimizer]
name = "sgd"
lr = 0.1
epochs = 4
batch_size = 64
[measure]
latency = false
flops = false
activation_stats = false
"""


def test_a_job_validates_selects_augments_and_stores_the_selected_epoch(tmp_path):
    path = tmp_path / "sel.toml"
    path.write_text(SPEC)
    registry = get_registry()
    (job,) = load_jobs(path, registry)[1]
    record = run_job(
        job,
        registry=registry,
        device=CPU,
        data_dir=tmp_path,
        cache_dir=tmp_path,
        events=lambda e: None,
    )
    assert record.status == "completed", record.error
    val = {
        c.step: c.value for c in record.curves if c.phase == "train" and c.name == "val_accuracy"
    }
    assert sorted(val) == [1, 2, 3, 4]
    best = max(val.values())
    losses = {c.step: c.value for c in record.curves if c.phase == "train" and c.name == "val_loss"}
    # ties in accuracy: the lower validation loss, then the earlier epoch
    expected = min((s for s in val if val[s] == best), key=lambda s: (losses[s], s))
    assert record.metrics["selected_epoch"] == expected
    store = Store(tmp_path / "bench.duckdb")
    assert store.save(record) == "saved"
    assert int(store.runs().iloc[0]["selected_epoch"]) == expected


def test_job_context_augments_training_batches_with_labels_aligned():
    y = torch.arange(40) % 10
    x = (y.float() + 1).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    data = Data(x, y, x[:4], y[:4], num_classes=10)
    config = {"data": {"augment": ["crop", "flip"], "crop_padding": 3}}
    job = Job("j", "c", config, {}, 0, "s", "h", False)
    ctx = JobContext(job, data, CPU, get_registry(), [], Path("."), lambda e: None, 100)
    seen = 0
    changed = False
    for xb, yb in ctx.batches(16):
        assert torch.equal(xb.amax(dim=(1, 2, 3)), yb.float() + 1)
        changed |= bool((xb == 0).any())
        seen += len(yb)
    assert seen == 40 and changed  # some crops moved padding in
    plain = list(ctx.batches(16, augment=False))
    assert all(bool((xb > 0).all()) for xb, _ in plain)


# --------------------------------------------------------------- the [data] section
BASE = """
[dataset]
name = "digits"
[model]
name = "lenet300"
[optimizer]
name = "sgd"
"""


def _errors(tmp_path, text: str) -> list[str]:
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(BenchError) as info:
        load_jobs(path, get_registry())
    return str(info.value).splitlines()


def test_bad_data_keys_are_one_line_errors(tmp_path):
    path = tmp_path / "x.toml"
    assert _errors(tmp_path, BASE + '[data]\nselect = "best_val"\n') == [
        f"{path}: data.select — got 'best_val', which needs a validation split: set "
        "data.validation, e.g. 0.1"
    ]
    assert _errors(tmp_path, BASE + "[data]\nvalidation = 1.5\n") == [
        f"{path}: data.validation — must be in [0, 1), got 1.5"
    ]
    (line,) = _errors(tmp_path, BASE + '[data]\naugment = ["crop", "rotate"]\n')
    assert line.startswith(f"{path}: data.augment.1 — input should be 'crop' or 'flip'")
    (line,) = _errors(tmp_path, BASE + '[data]\nselect = "best_test"\n')
    assert line.startswith(f"{path}: data.select — input should be 'last' or 'best_val'")


def test_new_data_keys_at_their_defaults_leave_job_ids_unchanged(tmp_path):
    plain, explicit, other = (tmp_path / n for n in ("a.toml", "b.toml", "c.toml"))
    plain.write_text('name = "same"\n' + BASE)
    explicit.write_text(
        'name = "same"\n' + BASE + '[data]\nvalidation = 0.0\nselect = "last"\naugment = []\n'
        'crop_padding = 4\ncrop_padding_mode = "zeros"\n'
    )
    other.write_text('name = "same"\n' + BASE + "[data]\nvalidation = 0.1\n")
    registry = get_registry()
    (a,) = load_jobs(plain, registry)[1]
    (b,) = load_jobs(explicit, registry)[1]
    (c,) = load_jobs(other, registry)[1]
    assert a.config["data"] == {"train_subset": None, "test_subset": None, "subset_seed": 0}
    assert a.id == b.id and a.id != c.id
    assert c.config["data"]["validation"] == 0.1
