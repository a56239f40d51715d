"""The BigQuery knobs of the config: job labels from the Airflow task context, timeouts, the bytes cap."""
from __future__ import annotations

import pytest

from retention.config import load_config
from retention.infra import bq

AIRFLOW_CONTEXT = {"AIRFLOW_CTX_DAG_ID": "retention_daily", "AIRFLOW_CTX_TASK_ID": "extract",
                   "AIRFLOW_CTX_LOGICAL_DATE": "2026-11-20T05:00:00+00:00"}


def test_an_airflow_task_labels_its_jobs_with_dag_task_and_ds():
    cfg = load_config(env=AIRFLOW_CONTEXT)
    assert bq.labels(cfg) == {"dag": "retention_daily", "task": "extract", "ds": "2026-11-20"}


def test_configured_labels_win_and_outside_airflow_there_are_none():
    assert load_config(env={**AIRFLOW_CONTEXT, "RETENTION_BQ_LABELS": "team=crm"}).bq_labels == "team=crm"
    assert load_config(env={}).bq_labels == ""


def test_timeouts_and_the_bytes_cap_are_knobs():
    cfg = load_config(env={"RETENTION_BQ_TIMEOUT_S": "60", "RETENTION_MAXIMUM_BYTES_BILLED": "0"})
    assert cfg.bq_timeout_s == 60.0 and cfg.maximum_bytes_billed == 0
    with pytest.raises(ValueError, match="bq_timeout_s > 0"):
        load_config(env={"RETENTION_BQ_TIMEOUT_S": "0"})
