"""Small seeded days for the reliability tests: a slice of IBM Telco under a per-module id prefix.

Each test module plans its own days with its own customer ids, so modules sharing the session's emulator never
read each other's customers, history or suppressions.
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator

import pandas as pd

from retention.infra import bq
from retention.datasets import seed
from retention.config import Config
from retention.datasets.telco import read_telco

DECISION = ["customer_id", "churn_risk", "accept_prob_0", "accept_prob_1", "accept_prob_2", "accept_prob_3",
            "contact", "offer_level", "offer_pct", "offer_cost", "followup_days", "expected_value", "propensity",
            "holdout", "reason_codes", "message", "send_at", "shield_checks", "generator", "policy_model"]
"""The contact_plan columns a rerun must reproduce exactly (everything but run_id and the partition)."""


def customers(cfg: Config, prefix: str, n: int, day: dt.date, start: int = 0) -> pd.DataFrame:
    """The `customers` snapshot of `day` for Telco rows start..start+n, ids prefixed."""
    telco = read_telco(cfg.data_dir).iloc[start:start + n]
    rows = seed.customers_from_telco(telco, day)
    return rows.assign(customer_id=prefix + rows["customer_id"])


def seed_days(client, cfg: Config, rows: pd.DataFrame, days: list[dt.date], seed_value: int = 7) -> None:
    """The same customers on each day, plus history and suppressions as of the last day (appended, never truncated)."""
    for day in days:
        bq.replace_partition(client, cfg, rows.assign(snapshot_date=day), "customers", "snapshot_date", day)
    last = max(days)
    bq.load(client, seed.history_for(rows, last, seed_value), "contact_history", cfg.table("contact_history"),
            truncate=False)
    suppression = seed.suppression_for(rows, last, seed_value)
    if len(suppression):
        bq.load(client, suppression, "suppression", cfg.table("suppression"), truncate=False)


def forget(client, cfg: Config, prefix: str) -> None:
    """Delete the history and suppressions of ids starting with `prefix` (what other modules would read)."""
    for table in ("contact_history", "suppression"):
        bq.execute(client, f"DELETE FROM `{cfg.table(table)}` WHERE STARTS_WITH(customer_id, @prefix)", prefix=prefix)


@contextmanager
def seeded(client, cfg: Config, prefix: str, n: int, days: list[dt.date], start: int) -> Iterator[pd.DataFrame]:
    """`n` customers with ids `<prefix>...` seeded on `days` (Telco rows from `start`), forgotten afterwards."""
    rows = customers(cfg, prefix, n, days[-1], start=start)
    seed_days(client, cfg, rows, days)
    yield rows
    forget(client, cfg, prefix)


def plan(client, cfg: Config, day: dt.date) -> pd.DataFrame:
    """The published contact_plan partition of `day`, by customer_id."""
    return bq.query(client, cfg, f"SELECT * FROM `{cfg.table('contact_plan')}` WHERE plan_date = @ds "
                                 "ORDER BY customer_id", ds=day).reset_index(drop=True)


def decisions(published: pd.DataFrame) -> pd.DataFrame:
    """The DECISION columns of a published plan, by customer_id, reason codes as tuples (comparable)."""
    out = published[DECISION].sort_values("customer_id").reset_index(drop=True)
    return out.assign(reason_codes=out["reason_codes"].map(tuple))


def assert_same_plan(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Two published plans make the same decisions for the same customers, to the bit."""
    pd.testing.assert_frame_equal(decisions(a), decisions(b), check_exact=True)


def staging_tables(client, cfg: Config) -> list[str]:
    return sorted(t.table_id for t in client.list_tables(cfg.staging_dataset))


def plan_runs(client, cfg: Config, day: dt.date) -> pd.DataFrame:
    return bq.query(client, cfg, f"SELECT * FROM `{cfg.table('plan_runs')}` WHERE plan_date = @ds "
                                 "ORDER BY run_id", ds=day)
