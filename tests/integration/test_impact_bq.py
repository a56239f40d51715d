"""Impact on the emulator: days planned with simulated outcomes in between, `outcomes` holding every customer not
suppressed (the holdout too) once, `retention impact` writing one row per segment and replacing it on a rerun, and a
window with missing days, a duplicated outcome or a contacted holdout refused, naming the rows, nothing written."""
from __future__ import annotations

import argparse
import datetime as dt

import pandas as pd
import pytest

import days
from retention import cli
from retention.infra import bq
from retention.pipeline import impact

START = dt.date(2026, 6, 8)
DAYS = [START + dt.timedelta(days=i) for i in range(4)]
END = DAYS[-1]
PREFIX = "IMP-"
N = 150


@pytest.fixture(scope="module")
def simulated(bq_client, cfg, champions):
    """The four days planned, each day's outcomes simulated before the next day's plan."""
    with days.seeded(bq_client, cfg, PREFIX, N, DAYS, start=1200) as rows:
        cli.cmd_simulate_outcomes(cfg, _window(START, END, plan=True))
        yield rows
        for table, column in (("outcomes", "plan_date"), ("impact", "window_start")):
            bq.execute(bq_client, f"DELETE FROM `{cfg.table(table)}` WHERE {column} BETWEEN @a AND @b",
                       a=START, b=END + dt.timedelta(days=1))


def _window(start: dt.date, end: dt.date, **extra) -> argparse.Namespace:
    return argparse.Namespace(start=start.isoformat(), end=end.isoformat(), **extra)


def _table(client, cfg, table: str, column: str, a: dt.date, b: dt.date) -> pd.DataFrame:
    order = "segment" if table == "impact" else "plan_date, customer_id"
    return bq.query(client, cfg, f"SELECT * FROM `{cfg.table(table)}` WHERE {column} BETWEEN @a AND @b "
                                 f"ORDER BY {column}, {order}", a=a, b=b)


def _impact_rows(client, cfg, start: dt.date, end: dt.date) -> pd.DataFrame:
    return bq.query(client, cfg, f"SELECT * FROM `{cfg.table('impact')}` WHERE window_start = @a AND window_end = @b "
                                 "ORDER BY segment", a=start, b=end)


def test_outcomes_hold_every_customer_not_suppressed_once_with_the_contacts_own_draws(simulated, bq_client, cfg):
    outcomes = _table(bq_client, cfg, "outcomes", "plan_date", START, END)
    plans = bq.query(bq_client, cfg, f"SELECT plan_date, customer_id, holdout, contact, decision_reason FROM "
                                     f"`{cfg.table('contact_plan')}` WHERE plan_date BETWEEN @a AND @b", a=START, b=END)
    eligible = plans[plans["decision_reason"] != "suppressed"]
    assert len(outcomes) == len(eligible) and not outcomes.duplicated(["plan_date", "customer_id"]).any()
    assert outcomes["holdout"].sum() == eligible["holdout"].sum() > 0
    assert not (outcomes["holdout"] & outcomes["treated"]).any() and (outcomes["horizon_days"] == 30).all()
    assert outcomes.loc[~outcomes["treated"], "accepted"].isna().all()
    history = bq.query(bq_client, cfg, f"SELECT plan_date, customer_id, churned, accepted FROM "
                                       f"`{cfg.table('contact_history')}` WHERE contact_date BETWEEN @a AND @b AND "
                                       "STARTS_WITH(customer_id, @p)", a=START, b=END, p=PREFIX)
    treated = outcomes[outcomes["treated"]].merge(history, on=["plan_date", "customer_id"], suffixes=("", "_h"))
    assert len(treated) == outcomes["treated"].sum() == len(history) > 0
    assert (treated["churned"] == treated["churned_h"]).all() and (treated["accepted"] == treated["accepted_h"]).all()

    # a rerun of the outcomes replaces each day's partition with the same rows
    cli.cmd_simulate_outcomes(cfg, _window(START, END, plan=False))
    pd.testing.assert_frame_equal(_table(bq_client, cfg, "outcomes", "plan_date", START, END), outcomes)


def test_impact_writes_one_row_per_segment_and_a_rerun_replaces_them(simulated, bq_client, cfg, capsys):
    cli.cmd_impact(cfg, _window(START, END))
    out = capsys.readouterr().out
    first = _impact_rows(bq_client, cfg, START, END)
    assert first["segment"].is_unique and first["segment"].iloc[0] == "all"
    assert {"all", "risk_decile=1", "risk_decile=10", "week=2026-06-08"} <= set(first["segment"])
    headline = first.set_index("segment").loc["all"]
    assert headline["treated"] + headline["control"] == len(_table(bq_client, cfg, "outcomes", "plan_date", START, END))
    assert headline["lift_low"] <= headline["lift"] <= headline["lift_high"]
    assert "intent-to-treat over 30 days" in out
    for name in ("qini.png", "lift_by_week.png"):
        path = cfg.artifacts / "reports" / "impact" / f"{START}_{END}" / name
        assert str(path) in out and path.stat().st_size > 0

    cli.cmd_impact(cfg, _window(START, END))
    pd.testing.assert_frame_equal(_impact_rows(bq_client, cfg, START, END), first)


def test_a_window_with_a_missing_day_is_refused_and_nothing_written(simulated, bq_client, cfg):
    after = END + dt.timedelta(days=1)
    with pytest.raises(impact.BadOutcomes, match=f"no outcomes for plan_date {after}"):
        cli.cmd_impact(cfg, _window(START, after))
    assert _impact_rows(bq_client, cfg, START, after).empty


def test_a_duplicated_outcome_is_refused_naming_it_and_nothing_written(simulated, bq_client, cfg):
    day = DAYS[1]
    outcomes = _table(bq_client, cfg, "outcomes", "plan_date", day, day)
    twice = outcomes.head(1)
    bq.load(bq_client, twice, "outcomes", cfg.table("outcomes"), truncate=False)
    try:
        with pytest.raises(impact.BadOutcomes, match=rf"2 duplicated outcomes: \({day}, {twice['customer_id'][0]}\)"):
            cli.cmd_impact(cfg, _window(day, END))
        assert _impact_rows(bq_client, cfg, day, END).empty
    finally:
        cli.cmd_simulate_outcomes(cfg, _window(day, day, plan=False))
    assert len(_table(bq_client, cfg, "outcomes", "plan_date", day, day)) == len(outcomes)


def test_a_contacted_holdout_customer_is_refused_naming_it_and_nothing_written(simulated, bq_client, cfg):
    day = DAYS[2]
    outcomes = _table(bq_client, cfg, "outcomes", "plan_date", day, day)
    held = outcomes.loc[outcomes["holdout"], "customer_id"].iloc[0]
    bq.execute(bq_client, f"UPDATE `{cfg.table('outcomes')}` SET treated = TRUE WHERE plan_date = @d AND "
                          "customer_id = @c", d=day, c=held)
    try:
        with pytest.raises(impact.BadOutcomes, match=rf"1 holdout customers who were contacted: \({day}, {held}\)"):
            cli.cmd_impact(cfg, _window(day, END))
        assert _impact_rows(bq_client, cfg, day, END).empty
    finally:
        cli.cmd_simulate_outcomes(cfg, _window(day, day, plan=False))


def test_daily_impact_task_reports_the_window_ending_the_horizon_before_ds(simulated, bq_client, cfg, capsys):
    import dataclasses

    from retention.pipeline import daily

    ds = END + dt.timedelta(days=impact.HORIZON_DAYS)
    four = dataclasses.replace(cfg, impact_window_days=len(DAYS))  # exactly the simulated days
    summary = daily.impact(four, ds.isoformat())
    assert summary["window"] == [str(START), str(END)]
    headline = _impact_rows(bq_client, cfg, START, END).set_index("segment").loc["all"]
    assert summary["lift"] == pytest.approx(headline["lift"], abs=1e-5)
    assert summary["lift_low"] <= summary["lift"] <= summary["lift_high"]
    assert [p.rsplit("/", 1)[1] for p in summary["pictures"]] == ["qini.png", "lift_by_week.png"]

    # the run summary of ds links them
    cli._impact_summary(four, bq_client, ds)
    out = capsys.readouterr().out
    assert f"plans up to {END}" in out and all(p in out for p in summary["pictures"])


def test_daily_impact_task_with_no_outcomes_yet_logs_and_succeeds(bq_client, cfg, capsys):
    from retention.pipeline import daily

    ds = dt.date(2031, 1, 1)
    assert daily.impact(cfg, ds.isoformat()) == {"window": None}
    cli._impact_summary(cfg, bq_client, ds)
    assert "no impact report for this window yet" in capsys.readouterr().out


def test_new_outcomes_are_counted_from_the_uplift_champions_promotion_day(simulated, bq_client, cfg, tmp_path):
    import dataclasses
    import json

    from retention.pipeline import outcomes

    root = dataclasses.replace(cfg, artifact_root=str(tmp_path))
    everything = outcomes.new_since_champion(bq_client, root, "uplift")  # no champion: every row counts
    pointer = tmp_path / "models" / "uplift" / "champion.json"
    pointer.parent.mkdir(parents=True)
    counts = []
    for day in (END, END + dt.timedelta(days=1)):
        pointer.write_text(json.dumps({"name": "uplift", "version": "v", "promoted_at": f"{day}T09:00:00+00:00"}))
        counts.append(outcomes.new_since_champion(bq_client, root, "uplift"))
    last_day = len(_table(bq_client, cfg, "outcomes", "plan_date", END, END))
    assert everything >= counts[0] and counts[0] - counts[1] == last_day > 0
