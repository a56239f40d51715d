"""A daily run that cannot succeed fails once, with its reason, instead of being retried."""
from __future__ import annotations

import datetime as dt

from retention.config import REPO_ROOT


def test_a_day_without_a_snapshot_fails_once_without_retries(airflow_db, bq_client, cfg):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["retention_daily"]
    assert dag.get_task("extract").retries > 0  # retries stay for what may pass on a second try
    run = dag.test(logical_date=dt.datetime(2031, 1, 1, 5, tzinfo=dt.timezone.utc))  # never seeded
    assert run.state == "failed"
    extract = next(ti for ti in run.get_task_instances() if ti.task_id == "extract")
    assert extract.state == "failed" and extract.try_number == 1
