"""Backfills: ten days run twice give exactly ten partitions, the same both times; days running at once keep apart.

The first pass is `retention backfill` in this process; the second is two `retention backfill` processes over the
two halves of the range at the same time, so different days publish concurrently.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time

import pandas as pd
import pytest

import days
from retention.infra import bq
from retention import cli
from retention.pipeline import daily
from retention.config import REPO_ROOT

START = dt.date(2026, 8, 3)
DAYS = [START + dt.timedelta(days=i) for i in range(10)]
END = DAYS[-1]
PREFIX = "BF-"
N = 30
STAGING = re.compile(r"(contact_plan|plan_runs|rejects|extract|extract_contact_history|extract_suppression)_(\d{8})"
                     r"_[0-9a-f]{8,12}")


@pytest.fixture(scope="module")
def seeded(bq_client, cfg, champions):
    with days.seeded(bq_client, cfg, PREFIX, N, DAYS, start=200) as rows:
        yield rows


def _plans(client, cfg) -> pd.DataFrame:
    """Every contact_plan row from a week before the range to a week after it."""
    return bq.query(client, cfg, f"SELECT * FROM `{cfg.table('contact_plan')}` WHERE plan_date BETWEEN @a AND @b "
                                 "ORDER BY plan_date, customer_id",
                    a=START - dt.timedelta(days=7), b=END + dt.timedelta(days=7))


def _assert_ten_partitions(plans: pd.DataFrame) -> None:
    counts = plans.groupby("plan_date").size()
    assert list(counts.index) == DAYS and set(counts) == {N}
    assert not plans.duplicated(["plan_date", "customer_id"]).any()


def messages(plans: pd.DataFrame) -> pd.DataFrame:
    """Every message the plans send, recomputed from contact_plan alone: each contact at its send_at's date and
    its follow-up followup_days later."""
    sent = plans[plans["contact"].astype(bool)]
    first = pd.to_datetime(sent["send_at"], utc=True)
    follow = sent["followup_days"].fillna(0).astype(int)
    return pd.concat([
        pd.DataFrame({"customer_id": sent["customer_id"], "day": first.dt.normalize()}),
        pd.DataFrame({"customer_id": sent["customer_id"][follow > 0],
                      "day": (first + pd.to_timedelta(follow, unit="D"))[follow > 0].dt.normalize()}),
    ]).sort_values(["customer_id", "day"], ignore_index=True)


def assert_promises_kept(plans: pd.DataFrame, cfg) -> None:
    """No two messages to one customer inside the cooldown; never more than the fatigue cap in any window."""
    m = messages(plans)
    gap = m.groupby("customer_id")["day"].diff().dt.days
    assert (gap.dropna() >= cfg.cooldown_days).all(), m[gap < cfg.cooldown_days]
    for customer, days_ in m.groupby("customer_id")["day"]:
        d = days_.to_numpy()
        in_window = [(d > x - pd.Timedelta(days=cfg.fatigue_window_days)) & (d <= x) for x in d]
        assert max(w.sum() for w in in_window) <= cfg.fatigue_cap, (customer, d)


def _backfill_process(first: dt.date, last: dt.date) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "retention.cli", "-v", "backfill", "--start", first.isoformat(), "--end", last.isoformat()]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_backfill_twice_gives_ten_identical_partitions(seeded, bq_client, cfg, capsys):
    cli.cmd_backfill(cfg, argparse.Namespace(start=START.isoformat(), end=END.isoformat()))
    assert capsys.readouterr().out.count('"violations": 0') == 10
    first = _plans(bq_client, cfg)
    _assert_ten_partitions(first)
    assert_promises_kept(first, cfg)  # the contact ledger: each day saw the messages of the days before it
    # and the ledger was what kept them apart: the day after a contact (not yet in contact_history) is a cooldown day
    contacted = first.loc[first["contact"].astype(bool) & (first["plan_date"] < END), ["plan_date", "customer_id"]]
    after = first.set_index(["plan_date", "customer_id"])["decision_reason"]
    next_day = [after[(d + dt.timedelta(days=1), c)] for d, c in contacted.itertuples(index=False)]
    assert len(next_day) >= 3 and set(next_day) == {"cooldown"}, next_day

    # the same range again, as two processes over its halves at once, watching the staging dataset meanwhile
    procs = [_backfill_process(DAYS[0], DAYS[4]), _backfill_process(DAYS[5], DAYS[9])]
    staged = set()
    while any(p.poll() is None for p in procs):
        staged |= set(days.staging_tables(bq_client, cfg))
        time.sleep(0.05)
    for p in procs:
        assert p.returncode == 0, p.stderr.read()[-3000:]
    second = _plans(bq_client, cfg)
    _assert_ten_partitions(second)
    for day in DAYS:
        days.assert_same_plan(second[second["plan_date"] == day], first[first["plan_date"] == day])
    assert not set(first["run_id"]) & set(second["run_id"])  # every day was really planned again

    runs = bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('plan_runs')}` WHERE plan_date BETWEEN @a AND @b",
                    a=START, b=END)
    assert len(runs) == 20 and runs["run_id"].is_unique and set(runs.groupby("plan_date").size()) == {2}
    assert set(runs["violations"]) == {0}
    # the halves overlapped in time: some day of the first half was being planned while one of the second was
    late = runs[runs["run_id"].isin(second["run_id"])]
    halves = [late[late["plan_date"] <= DAYS[4]], late[late["plan_date"] > DAYS[4]]]
    assert any(a.started_at < b.finished_at and b.started_at < a.finished_at
               for a in halves[0].itertuples() for b in halves[1].itertuples())
    # every staging table seen belonged to one day of the range, and none is left
    matched = [STAGING.fullmatch(name) for name in staged]
    assert all(matched) and {m[2] for m in matched} <= {d.strftime("%Y%m%d") for d in DAYS}, staged
    assert days.staging_tables(bq_client, cfg) == []
    # each run staged its Parquet files in its own folder
    for run in runs.itertuples():
        assert (cfg.run_dir(run.plan_date.isoformat(), run.run_id) / "shield.parquet").is_file()


def test_sweeping_abandoned_staging_touches_only_its_own_day(bq_client, cfg, monkeypatch):
    """A run of one day drops its own day's abandoned staging tables, never another day's."""
    names = {day: f"contact_plan_{day.strftime('%Y%m%d')}_0123abcd" for day in DAYS[:2]}
    for name in names.values():
        bq_client.create_table(bq.table_spec(cfg, "contact_plan", staging=True, name=name))
    assert daily.sweep_staging(bq_client, cfg, DAYS[0].isoformat()) == []  # not old enough to be abandoned
    monkeypatch.setattr(daily, "STAGING_ABANDONED_S", 0)
    assert daily.sweep_staging(bq_client, cfg, DAYS[0].isoformat()) == [names[DAYS[0]]]
    assert days.staging_tables(bq_client, cfg) == [names[DAYS[1]]]
    assert daily.sweep_staging(bq_client, cfg, DAYS[1].isoformat()) == [names[DAYS[1]]]
    assert days.staging_tables(bq_client, cfg) == []
