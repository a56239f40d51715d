"""BigQuery conventions on every job: labels, a job timeout, a bytes cap on user queries, partition filters."""
from __future__ import annotations

import dataclasses
import re

from retention.config import REPO_ROOT
from retention.infra import bq

LABELS = "dag=retention_daily,task=extract,ds=2026-11-20"


def test_every_job_carries_the_labels_and_the_job_timeout(bq_client, cfg):
    client = bq.client(dataclasses.replace(cfg, bq_labels=LABELS, bq_timeout_s=42))
    job = client.query("SELECT 1 AS one")
    job.result()
    assert job.labels == {"dag": "retention_daily", "task": "extract", "ds": "2026-11-20"}
    assert int(job.configuration.job_timeout_ms) == 42_000
    assert client.default_load_job_config.labels == job.labels
    assert int(client.default_load_job_config.job_timeout_ms) == 42_000


def test_labels_are_cleaned_to_what_bigquery_accepts(cfg):
    got = bq.labels(dataclasses.replace(cfg, bq_labels="Dag=Retention Daily, task=score:3,ds=2026-11-20,junk"))
    assert got == {"dag": "retention_daily", "task": "score_3", "ds": "2026-11-20"}


def test_a_user_query_is_capped_in_bytes_billed(bq_client, cfg, monkeypatch):
    sent = []
    query = bq_client.query
    monkeypatch.setattr(bq_client, "query", lambda sql, **kw: sent.append(kw["job_config"]) or query(sql, **kw))
    rows, total = bq.user_query(bq_client, dataclasses.replace(cfg, maximum_bytes_billed=12345), "SELECT 1 AS one")
    assert rows["one"].tolist() == [1] and total == 1
    assert sent[0].maximum_bytes_billed == 12345


def test_contact_plan_requires_a_partition_filter_and_its_staging_copy_does_not(cfg):
    # the emulator accepts the option but enforces nothing: the table spec is what BigQuery receives
    assert bq.table_spec(cfg, "contact_plan").require_partition_filter is True
    assert not bq.table_spec(cfg, "contact_plan", staging=True).require_partition_filter
    assert not bq.table_spec(cfg, "customers").require_partition_filter


def test_every_statement_over_contact_plan_filters_plan_date():
    """With the filter required, BigQuery rejects a read of contact_plan that does not bound plan_date."""
    sources = [*(REPO_ROOT / "sql").glob("*.sql"), *(REPO_ROOT / "retention").rglob("*.py")]
    reads = re.compile(r"(FROM|JOIN)\s+`[^`]*contact_plan`(\s+AS\s+(\w+))?", re.I)
    for path in sources:
        text = path.read_text()
        for m in reads.finditer(text):
            alias = f"{m.group(3)}." if m.group(3) else ""
            statement = text[m.end():m.end() + 600]
            assert re.search(rf"{re.escape(alias)}plan_date\s*(=|<|>|BETWEEN)", statement), f"{path}: {m.group(0)}"
