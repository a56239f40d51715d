"""The DAG files: they parse, they wire the expected tasks, and the daily DAG runs for real."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from retention.config import REPO_ROOT

DAILY_EDGES = {
    "extract": {"validate_input"}, "validate_input": {"shards"}, "shards": {"score"}, "score": {"decide"},
    "decide": {"generate"},
    "generate": {"shield"}, "shield": {"validate_plan"}, "validate_plan": {"publish"}, "publish": {"impact"},
    "impact": set(),
}


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors_and_dag_id_is_file_stem(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {p.stem for p in (REPO_ROOT / "dags").glob("retention_*.py")}


def test_daily_task_graph(dagbag):
    dag = dagbag.dags["retention_daily"]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == DAILY_EDGES
    assert dag.catchup is False and dag.max_active_runs >= 1


def test_retrain_tabular_task_graph(dagbag):
    dag = dagbag.dags["retention_retrain_tabular"]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == {"train_risk": set(), "train_accept": set()}
    assert {o.uri for t in dag.tasks for o in t.outlets} == {
        "retention://models/risk/champion", "retention://models/accept/champion"}


def _seed(cfg, day: dt.date) -> None:
    from retention.cli import cmd_seed
    import argparse

    cmd_seed(cfg, argparse.Namespace(ds=day.isoformat(), days=1, synthetic=0, seed=42))


def _plan(bq_client, cfg, day):
    from retention.infra import bq

    return bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('contact_plan')}` WHERE plan_date = @ds "
                                    "ORDER BY customer_id", ds=day)


DECISION = ["customer_id", "contact", "offer_level", "offer_cost", "holdout", "decision_reason", "message", "send_at"]


@pytest.mark.slow
def test_daily_dag_runs_end_to_end_and_reruns_idempotently(dagbag, airflow_db, bq_client, champions, cfg):
    """dag.test() on the embedded BigQuery: a plan that keeps every rule; a rerun gives the same plan once."""
    from retention.infra import bq
    from retention.deciding import rules

    day = dt.date(2026, 3, 8)  # the US DST switch day
    _seed(cfg, day)
    dag = dagbag.dags["retention_daily"]
    first = dag.test(logical_date=dt.datetime(2026, 3, 8, 5, tzinfo=dt.timezone.utc))
    assert first.state == "success"
    plan = _plan(bq_client, cfg, day)
    assert len(plan) == 7043 and plan["customer_id"].is_unique
    assert list(plan.columns) == bq.columns("contact_plan")
    # the PPO champion decided: every row carries its version and a propensity in (0, 1]
    assert plan["policy_model"].nunique() == 1 and plan["policy_model"][0] != "greedy_ev"
    assert plan["propensity"].between(0, 1, inclusive="right").all()
    contacted = plan[plan["contact"]]
    assert 0 < len(contacted) and contacted["offer_cost"].sum() <= cfg.daily_budget + 1e-6
    assert not (plan["holdout"] & plan["contact"]).any()
    assert contacted["message"].str.len().between(50, 200).all()
    assert all(name in msg for name, msg in zip(_names(bq_client, cfg, day, contacted), contacted["message"]))
    # reason codes where they are used: every contacted row, and a ~1 % sample of the rest
    assert contacted["reason_codes"].map(len).gt(0).all()
    explained = plan.loc[~plan["contact"], "reason_codes"].map(len).gt(0).mean()
    assert 0.002 < explained < 0.03, explained

    second = dag.test(logical_date=dt.datetime(2026, 3, 8, 5, tzinfo=dt.timezone.utc))
    assert second.state == "success" and second.run_id != first.run_id
    again = _plan(bq_client, cfg, day)
    assert len(again) == 7043
    assert again[DECISION].equals(plan[DECISION])
    # scored in three mapped shards: the same plan, once
    sharded = dag.test(logical_date=dt.datetime(2026, 3, 8, 5, tzinfo=dt.timezone.utc), run_conf={"score_shards": 3})
    assert sharded.state == "success"
    mapped = [ti for ti in sharded.get_task_instances() if ti.task_id == "score"]
    assert sorted(ti.map_index for ti in mapped) == [0, 1, 2]
    again = _plan(bq_client, cfg, day)
    assert len(again) == 7043
    assert again[DECISION].equals(plan[DECISION])
    runs = bq.query(bq_client, cfg, f"SELECT run_id, violations, contacted, stage_seconds FROM "
                                    f"`{cfg.table('plan_runs')}` WHERE plan_date = @ds", ds=day)
    assert sorted(runs["run_id"]) == sorted([first.run_id, second.run_id, sharded.run_id])
    assert runs["violations"].tolist() == [0, 0, 0] and runs["contacted"].nunique() == 1
    seconds = json.loads(runs.set_index("run_id").loc[sharded.run_id, "stage_seconds"])
    assert {"score-00000-of-00003", "score-00002-of-00003", "decide", "publish"} <= set(seconds)
    # the published plan, joined back to its inputs, keeps every hard rule
    day_inputs = bq.query(bq_client, cfg, bq.sql_text("daily_customers", cfg), ds=day, window=cfg.fatigue_window_days,
                          lookback=cfg.ledger_lookback_days)
    joined = again.merge(day_inputs, on="customer_id")
    assert set(rules.violations(joined, cfg).values()) == {0}


def _names(bq_client, cfg, day, contacted):
    from retention.infra import bq

    names = bq.query(bq_client, cfg, f"SELECT customer_id, name FROM `{cfg.table('customers')}` "
                                     "WHERE snapshot_date = @ds", ds=day).set_index("customer_id")["name"]
    return names.reindex(contacted["customer_id"]).tolist()
