"""Faults: a task that fails at each stage in turn, a killed process, a crashed emulator, a failed publish.

After every fault the retry (same run_id, as Airflow retries a task) or the rerun must publish exactly the plan of
a clean run, once; until a publish commits, the previous plan of the day stays in place, whole.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import shutil
import threading
import time
from contextlib import contextmanager

import pandas as pd
import pytest

import days
from retention.infra import bq, emulator, parquet
from retention.pipeline import daily, quality
from retention.config import REPO_ROOT

DAY = dt.date(2026, 5, 11)
DS = DAY.isoformat()
PREFIX = "FT-"
N = 60
CLEAN = "ft-clean"


class Injected(RuntimeError):
    """The fault a test plants."""


@pytest.fixture(scope="module")
def clean(bq_client, cfg, champions):
    """A day planned once without faults: the plan every faulty run must reproduce."""
    rows = days.customers(cfg, PREFIX, N, DAY, start=100)
    days.seed_days(bq_client, cfg, rows, [DAY])
    daily.run_all(cfg, DS, CLEAN)
    yield days.plan(bq_client, cfg, DAY)
    days.forget(bq_client, cfg, PREFIX)


def _run_stages(cfg, run_id: str, first: str) -> None:
    """Run the stages from `first` to publish, as Airflow does after a retried task."""
    summaries = {}
    for stage in daily.STAGES[daily.STAGES.index(first):-1]:
        summaries[stage] = getattr(daily, stage)(cfg, DS, run_id)
    report = summaries.get("validate_plan", {}).get("report_uri", "")
    daily.publish(cfg, DS, run_id, report)


def _rejects(client, cfg, run_id: str) -> pd.DataFrame:
    got = bq.query(client, cfg, f"SELECT table_name, customer_id, field, value, reason FROM "
                                f"`{cfg.table('rejects')}` WHERE plan_date = @ds AND run_id = @run_id",
                   ds=DAY, run_id=run_id)
    return got.sort_values(list(got.columns)).reset_index(drop=True)


def _assert_published_once(client, cfg, clean: pd.DataFrame, run_id: str) -> None:
    """The day's plan is the clean one, from run_id, with one plan_runs row and one rejects slice for it."""
    published = days.plan(client, cfg, DAY)
    days.assert_same_plan(published, clean)
    assert set(published["run_id"]) == {run_id}
    runs = days.plan_runs(client, cfg, DAY)
    assert (runs["run_id"] == run_id).sum() == 1 and runs.set_index("run_id").loc[run_id, "violations"] == 0
    pd.testing.assert_frame_equal(_rejects(client, cfg, run_id), _rejects(client, cfg, CLEAN))
    assert days.staging_tables(client, cfg) == []


# the day in chunks

@pytest.mark.parametrize("chunk_rows, shards", [(9, 1), (13, 3)])
def test_the_day_in_chunks_and_shards_publishes_the_same_plan(clean, bq_client, cfg, chunk_rows, shards):
    """Every stage streams the day in chunks of cfg.chunk_rows (one Parquet row group each); decide's one ordered
    pass sees the whole day, so the published plan is the clean one to the bit, and its run record the same."""
    chunked, run_id = dataclasses.replace(cfg, chunk_rows=chunk_rows, score_shards=shards), f"ft-chunks-{chunk_rows}"
    daily.run_all(chunked, DS, run_id)
    for stage in ("extract", "validate_input", "decide", "generate", "shield"):
        assert len(parquet.group_sizes(chunked.run_dir(DS, run_id) / f"{stage}.parquet")) >= N // chunk_rows
    days.assert_same_plan(days.plan(bq_client, cfg, DAY), clean)
    runs = days.plan_runs(bq_client, cfg, DAY).set_index("run_id")
    figures = ["customers", "rejected", "contacted", "holdout", "spend", "expected_net_revenue", "violations"]
    assert runs.loc[run_id, figures].tolist() == runs.loc[CLEAN, figures].tolist()
    assert days.staging_tables(bq_client, cfg) == []
    daily.publish(cfg, DS, CLEAN)  # the clean run's plan again: the later tests start from it


# a failure inside each task, then its retry

def _crash_write(stage: str, writer=parquet.chunk_writer):
    """parquet.chunk_writer that dies for `stage` after the temp file is written, before it becomes the stage's
    output."""
    @contextmanager
    def crashing(path, empty=None):
        if path.stem != stage:
            with writer(path, empty) as out:
                yield out
            return
        out = parquet.ChunkWriter(path.with_suffix(".tmp"))
        yield out
        out.close()
        raise Injected(f"killed while writing {stage}")
    return crashing


def _fail_after(function):
    """`function` that does all its work, then fails before its task can return."""
    def failing(*args, **kwargs):
        function(*args, **kwargs)
        raise Injected(f"failed after {function.__name__}")
    return failing


def _fail_merge_into(table: str, execute=bq.execute):
    """bq.execute that fails the transaction replacing a slice of `table` (after its staging table was loaded)."""
    def failing(client, sql, **params):
        if sql.startswith("BEGIN TRANSACTION") and f".{table}` WHERE " in sql:
            raise Injected(f"replacing the slice of {table} failed")
        return execute(client, sql, **params)
    return failing


def _faults(monkeypatch) -> list[tuple[str, callable]]:
    """(stage, plant) pairs: each plant makes that stage fail once, at a point where it has done some work."""
    write = lambda stage: lambda: monkeypatch.setattr(parquet, "chunk_writer", _crash_write(stage))  # noqa: E731
    return [
        ("extract", write("extract")),
        ("validate_input", write("validate_input")),  # after its rejects slice was written
        ("score", write("score")),
        ("decide", write("decide")),
        ("generate", write("generate")),
        ("shield", write("shield")),
        ("validate_plan", lambda: monkeypatch.setattr(quality, "finish_plan", _fail_after(quality.finish_plan))),
        ("publish", lambda: monkeypatch.setattr(bq, "execute", _fail_merge_into("contact_plan"))),
        ("publish", lambda: monkeypatch.setattr(bq, "replace_partition", _fail_plan_runs(bq.replace_partition))),
    ]


def _fail_plan_runs(replace):
    """bq.replace_partition that fails the plan_runs row: the plan is committed, the run record is not."""
    def failing(client, cfg, df, table, *args, **kwargs):
        if table == "plan_runs":
            raise Injected("plan_runs write failed")
        return replace(client, cfg, df, table, *args, **kwargs)
    return failing


def test_a_failure_in_each_task_then_its_retry_publishes_the_clean_plan_once(clean, bq_client, cfg, monkeypatch):
    run_id = "ft-retry"
    report = ""
    faults = _faults(monkeypatch)
    for i, (stage, plant) in enumerate(faults):
        plant()
        with pytest.raises(Injected, match="."):
            getattr(daily, stage)(cfg, DS, run_id, *([report] if stage == "publish" else []))
            pytest.fail(f"the fault planted in {stage} did not fire")
        monkeypatch.undo()
        published = days.plan(bq_client, cfg, DAY)
        committed = i == len(faults) - 1  # only the plan_runs fault comes after the plan's MERGE
        assert set(published["run_id"]) == {run_id if committed else CLEAN}, stage
        days.assert_same_plan(published, clean)
        assert run_id not in set(days.plan_runs(bq_client, cfg, DAY)["run_id"]), stage
        assert days.staging_tables(bq_client, cfg) == [], stage
        if stage != "publish" or committed:  # the retry; publish is retried after its second fault only
            summary = getattr(daily, stage)(cfg, DS, run_id, *([report] if stage == "publish" else []))
            report = summary.get("report_uri", report)
    _assert_published_once(bq_client, cfg, clean, run_id)


# a killed process

KILL_POINTS = {
    # kill the process while it is in this stage: when this file appears
    "validate_input": "extract.parquet",
    "decide": "score.parquet",
    "publish": "staging",  # when a staging table of the day exists, mid-publish
}

SLOW_PUBLISH = """
import sys, time
from retention.infra import bq
from retention import cli
load = bq.load
def slow(client, df, table, table_id, truncate=True):
    load(client, df, table, table_id, truncate)
    if table == "contact_plan":
        time.sleep(60)  # staged, not merged: the test kills us here
bq.load = slow
cli.main(sys.argv[1:])
"""


def _start(run_id: str, slow_publish: bool) -> subprocess.Popen:
    args = ["plan", "--ds", DS, "--run-id", run_id]
    entry = ["-c", SLOW_PUBLISH] if slow_publish else ["-m", "retention.cli"]
    cmd = [sys.executable, *entry, *args]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, ready, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"plan exited with {proc.returncode} before the kill: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the kill point never came")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("stage", KILL_POINTS)
def test_process_killed_in_a_task_then_retried_publishes_the_clean_plan_once(clean, bq_client, cfg, monkeypatch,
                                                                            stage):
    run_id = f"ft-kill-{stage}"
    previous = days.plan(bq_client, cfg, DAY)
    mark = KILL_POINTS[stage]
    proc = _start(run_id, slow_publish=stage == "publish")
    if mark == "staging":
        _wait_for(proc, lambda: any(t.startswith(f"contact_plan_{DS.replace('-', '')}_")
                                    for t in days.staging_tables(bq_client, cfg)))
    else:
        _wait_for(proc, lambda: (cfg.run_dir(DS, run_id) / mark).exists())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pd.testing.assert_frame_equal(days.plan(bq_client, cfg, DAY), previous)  # no partial plan is visible
    if stage == "publish":
        # the killed attempt's staging table is left; the retry's sweep drops it (it is "old" for this test)
        assert len(days.staging_tables(bq_client, cfg)) == 1
        monkeypatch.setattr(daily, "STAGING_ABANDONED_S", 0)
    _run_stages(cfg, run_id, stage)
    _assert_published_once(bq_client, cfg, clean, run_id)


# the warehouse restarts mid-run

@pytest.mark.slow
def test_emulator_crash_mid_run_loses_nothing_committed(clean, bq_client, cfg):
    run_id = "ft-crash"
    for stage in daily.STAGES[:-1]:
        getattr(daily, stage)(cfg, DS, run_id)
    committed = {"plan": days.plan(bq_client, cfg, DAY), "rejects": _rejects(bq_client, cfg, run_id),
                 "runs": days.plan_runs(bq_client, cfg, DAY),
                 "customers": bq.count(bq_client, cfg, "customers", "snapshot_date = @ds", ds=DAY)}
    emu = emulator.for_config(cfg)
    os.killpg(emulator.pid(emu), signal.SIGKILL)  # a crash, not a clean shutdown
    emulator.up(emu, cfg.project)
    pd.testing.assert_frame_equal(days.plan(bq_client, cfg, DAY), committed["plan"])
    pd.testing.assert_frame_equal(_rejects(bq_client, cfg, run_id), committed["rejects"])
    pd.testing.assert_frame_equal(days.plan_runs(bq_client, cfg, DAY), committed["runs"])
    assert bq.count(bq_client, cfg, "customers", "snapshot_date = @ds", ds=DAY) == committed["customers"]
    _run_stages(cfg, run_id, "publish")
    _assert_published_once(bq_client, cfg, clean, run_id)


# readers during a publish

def test_readers_never_see_a_partial_partition(clean, bq_client, cfg):
    """While a publish replaces the day, every read sees one whole plan: all old rows or all new ones."""
    seen, done = [], threading.Event()

    def read():
        client = bq.client(cfg)
        while not done.is_set():
            got = bq.query(client, cfg, f"SELECT run_id, COUNT(*) AS n FROM `{cfg.table('contact_plan')}` "
                                        "WHERE plan_date = @ds GROUP BY run_id", ds=DAY)
            seen.append(tuple(map(tuple, got.to_numpy())))

    before = set(days.plan(bq_client, cfg, DAY)["run_id"])
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for run_id in ("ft-read-1", "ft-read-2"):
            daily.publish(cfg, DS, _copy_run(cfg, run_id), "")
    finally:
        done.set()
        reader.join()
    assert len(seen) > 3 and all(len(s) == 1 and s[0][1] == len(clean) for s in seen), set(seen)
    assert {s[0][0] for s in seen} <= before | {"ft-read-1", "ft-read-2"}


def _copy_run(cfg, run_id: str) -> str:
    """A run folder holding the clean run's stage files under another run_id (publish reads only those)."""
    shutil.copytree(cfg.run_dir(DS, CLEAN), cfg.run_dir(DS, run_id), dirs_exist_ok=True)
    return run_id
