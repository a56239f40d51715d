"""The online daily budget, kept in BigQuery: one row per day in `online_budget`.

An offer reserves its committed worst-case cost with one conditional MERGE (sql/online_budget.sql) before the
service answers; a reservation that would take the day past `online_daily_budget` changes nothing. BigQuery applies
a DML statement atomically, so concurrent requests, in one process or across Cloud Run instances, never overspend.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core import exceptions
from google.cloud import bigquery

from retention.config import Config
from retention.infra import bq

TIMEOUT_S = 10.0
"""Longest a request waits on one BigQuery call, retries included: an online caller gets a 503 within seconds
instead of the ten minutes of retries a batch job may wait."""
RETRY = bigquery.DEFAULT_RETRY.with_timeout(TIMEOUT_S)


def run(client: bigquery.Client, sql: str, **params: Any) -> bigquery.table.RowIterator:
    """One statement with query parameters, waited for at most TIMEOUT_S (jobs.query: one round trip when quick)."""
    return client.query_and_wait(sql, job_config=bigquery.QueryJobConfig(query_parameters=bq.query_params(params)),
                                 api_timeout=TIMEOUT_S, wait_timeout=TIMEOUT_S, retry=RETRY, job_retry=None)


def reserve(client: bigquery.Client, cfg: Config, day: dt.date, cost: float) -> bool:
    """Reserve `cost` from the online budget of `day`; False (and nothing reserved) when it does not fit."""
    if cost <= 0:
        return True
    try:
        rows = run(client, bq.sql_text("online_budget", cfg), day=day, cost=float(cost),
                   budget=float(cfg.online_daily_budget))
    except exceptions.BadRequest as err:
        # BigQuery refuses a DML that lost a race on the same row after its own retries: the reservation did not
        # happen, and the caller re-reads what is left, as for a refusal
        if "concurrent update" in str(err):
            return False
        raise
    return rows.num_dml_affected_rows == 1


def spent(client: bigquery.Client, cfg: Config, day: dt.date) -> float:
    """What the online offers of `day` have reserved so far."""
    return float(next(iter(run(client, bq.sql_text("online_budget_spent", cfg), day=day)))["spent"])


def remaining(client: bigquery.Client, cfg: Config, day: dt.date) -> float:
    """What is left of the online budget of `day` (the whole budget before its first reservation)."""
    return max(cfg.online_daily_budget - spent(client, cfg, day), 0.0)
