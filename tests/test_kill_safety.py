"""A real `bench run` killed with SIGKILL at 100 random points, inside journal writes,
commits and checkpoints among them: after every kill each result it reported stored is in
the database exactly once, with all of its curves, and the next run trains only the
missing jobs. Runs are forked from tests/forkserver.py so that 100 starts fit in a
minute or two."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from bench_processes import TINY_SPEC, ForkServer, alive, exit_code, text, wait_gone

from benchharness.journal import Journal, journal_path
from benchharness.store import Store

KILLS = 100
PAUSE = 0.02  # BENCH_STORE_TEST_PAUSE: widens each store window to >= 20 ms
JOBS_PER_ROUND = 10


@pytest.fixture
def forkserver(data_dir: Path, tmp_path: Path):
    server = ForkServer(data_dir, tmp_path / "forkserver")
    yield server
    server.close()


def kill_at(pid: int, stderr: Path, rng: random.Random) -> str | None:
    """SIGKILL ``pid`` at a random point; return how it was aimed (None: it finished)."""
    mode = rng.choice(["anywhere", "journaled", "commit", "checkpoint"])
    if mode == "anywhere":
        deadline = time.monotonic() + rng.uniform(0.0, 2.0)
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.002)
    else:  # just after the k-th time the run reached that point
        target, marker = rng.randint(1, 4), f"store-hook {mode}"
        while alive(pid) and text(stderr).count(marker) < target:
            time.sleep(0.001)
        if mode == "journaled":  # anywhere from the journal's fsync to the commit
            time.sleep(rng.uniform(0.0, PAUSE + 0.02))
        else:  # mostly just past the pause: in the COMMIT, or in the close's checkpoint
            time.sleep(rng.uniform(PAUSE - 0.005, PAUSE + 0.015))
    if not alive(pid):
        return None
    os.kill(pid, signal.SIGKILL)
    if mode == "checkpoint" and text(stderr).count("store-hook closed") < target:
        wait_gone(pid)
        if text(stderr).count("store-hook closed") < target:
            return "checkpoint (before the close returned)"
    return mode


def check_database(db: Path, first_started: dict[str, object]) -> tuple[set[str], int]:
    """Every completed result in the journal is in the database once, with its curves,
    and was never trained again. Returns (completed job ids, recoveries done)."""
    expected: dict[str, int] = {}
    for _end, entry in Journal(journal_path(db)).read():
        if entry["kind"] == "run" and entry["row"]["status"] == "completed":
            expected[entry["row"]["job_id"]] = len(entry["curves"])
    notices: list[str] = []
    runs = Store(db, on_notice=notices.append).runs()  # reads (and repairs) like any command
    assert runs["job_id"].is_unique
    assert set(runs["status"]) <= {"completed"}
    done = dict(zip(runs["job_id"], runs["started_at"], strict=True))
    assert set(done) == set(expected)
    con = duckdb.connect(str(db), read_only=True)
    try:
        counts = dict(con.execute("SELECT job_id, count(*) FROM curves GROUP BY ALL").fetchall())
        duplicates = con.execute(
            "SELECT count(*) FROM (SELECT job_id, phase, step, name FROM curves"
            " GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
    finally:
        con.close()
    assert counts == {job: n for job, n in expected.items() if n}
    assert duplicates == 0
    for job_id, started_at in done.items():
        assert first_started.setdefault(job_id, started_at) == started_at, "trained twice"
    return set(done), len(notices)


def test_sigkill_at_random_points_loses_nothing(tmp_path: Path, forkserver: ForkServer) -> None:
    rng = random.Random(20261129)
    db = tmp_path / "bench.duckdb"
    env = {"BENCH_STORE_TEST_PAUSE": str(PAUSE)}
    first_started: dict[str, object] = {}
    points: Counter[str] = Counter()
    recoveries, kills, rounds, run = 0, 0, 0, 0
    done: set[str] = set()
    spec = tmp_path / "kill_0.toml"
    spec.write_text(TINY_SPEC.format(name="kill_0", seeds=list(range(JOBS_PER_ROUND))))
    completed_in_round = 0  # this round's completed jobs, as the last check found them
    while True:
        run += 1
        stderr = tmp_path / f"run{run}.err"
        pid = forkserver.start(["run", str(spec), "--db", str(db)], stderr, env)
        point = kill_at(pid, stderr, rng) if kills < KILLS else None
        wait_gone(pid)
        log = text(stderr)
        summary = re.search(r"(\d+) jobs, (\d+) already completed, (\d+) to run", log)
        if summary:  # the run saw exactly what is stored and trains only what is missing
            assert int(summary[1]) == JOBS_PER_ROUND
            assert int(summary[2]) == completed_in_round
            assert int(summary[3]) == JOBS_PER_ROUND - completed_in_round
        if point is not None:
            kills += 1
            points[point] += 1
        else:
            assert exit_code(stderr) == 0, log
        done, recovered = check_database(db, first_started)
        recoveries += recovered
        completed_in_round = len(done & round_jobs(db, f"kill_{rounds}"))
        if point is None:
            assert completed_in_round == JOBS_PER_ROUND, log
            if kills >= KILLS:
                break
            rounds += 1
            completed_in_round = 0
            spec = tmp_path / f"kill_{rounds}.toml"
            spec.write_text(
                TINY_SPEC.format(name=f"kill_{rounds}", seeds=list(range(JOBS_PER_ROUND)))
            )
    assert kills == KILLS
    assert len(done) == JOBS_PER_ROUND * (rounds + 1)
    aimed = {point.split(" (")[0] for point in points}
    assert aimed == {"anywhere", "journaled", "commit", "checkpoint"}, points
    print(f"\n{kills} kills over {rounds + 1} rounds at {dict(points)}; {recoveries} rebuilds")


def round_jobs(db: Path, spec_name: str) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT job_id FROM runs WHERE spec_name = ?", [spec_name]).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}
