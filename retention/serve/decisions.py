"""One online decision: the daily plan's one-customer path (`retain.decide_one`) under the online budget, the
message checked again as it will be sent, and one row in `online_decisions` (propensity included, for off-policy
evaluation; the contact ledger reads it so the daily plan respects the cooldown it starts)."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from typing import Any, Iterator, Mapping

import pandas as pd
from google.cloud import bigquery

from retention.config import Config
from retention.messages import shield
from retention.pipeline import retain
from retention.serve import budget

ATTEMPTS = 3
SOURCE = "the online daily budget left (online_budget)"
"""Which budget an online decision was made with: its state is what is left of `online_daily_budget`."""
"""Decisions tried against what is left of the budget before the last one, with none left (a race lost each time)."""
_DECIDING = threading.Lock()
"""One decision computed at a time per process: it is CPU-bound (the GIL serialises it anyway), and the models and
frames it touches are then never shared between threads; the BigQuery calls around it overlap."""

_LEFT: dict[dt.date, float] = {}
"""What this process last read was left of each day's online budget: an upper bound for the rest of the day (what is
reserved only grows), so once a day's budget is gone a request no longer tries an offer it cannot reserve."""


@contextlib.contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the seconds of the block to timings[phase] (reported in the response's Server-Timing header)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def decide(cfg: Config, client: bigquery.Client, facts: Mapping[str, Any], ds: str,
           timings: dict[str, float]) -> dict[str, Any]:
    """`retain.decide_one` with the day's online budget: an offer is returned only once its cost is reserved.

    The first try decides with the whole online budget, or with what this process last read was left of it (no
    read); when its reservation is refused, the next decides with what is left, and after ATTEMPTS refusals the
    decision is made with nothing left (no offer that costs).
    """
    day, online = dt.date.fromisoformat(ds), dataclasses.replace(cfg, daily_budget=cfg.online_daily_budget)
    left = _LEFT.get(day, cfg.online_daily_budget)
    for _ in range(ATTEMPTS):
        with timed(timings, "decide"), _DECIDING:
            out = retain.decide_one(online, facts, ds, left, SOURCE)
        with timed(timings, "bq"):
            if out["decision"] == "no_contact" or budget.reserve(client, cfg, day, out["offer_cost"]):
                return out
            left = budget.remaining(client, cfg, day)
        _LEFT[day] = min(left, _LEFT.get(day, left))
    with timed(timings, "decide"), _DECIDING:
        return retain.decide_one(online, facts, ds, 0.0, SOURCE)


def violations(out: Mapping[str, Any], name: str) -> int:
    """Checks the message fails as it will be sent (0 for a message that passes the shield; 0 without a message)."""
    if out["message"] is None:
        return 0
    if out["shield_checks"]["action"] == "none":  # the shield's checks ran on this very text
        return sum(outcome == "fail" for check, outcome in out["shield_checks"].items() if check != "action")
    row = pd.DataFrame([{"customer_id": out["customer_id"], "name": name, "offer_pct": out["offer_pct"]}])
    codes, _ = shield.evaluate(row, pd.Series([out["message"]]), row)
    return sum(int(codes[check][0] != 0) for check in shield.CHECKS)


def facts_hash(facts: Mapping[str, Any]) -> str:
    """SHA-256 of the facts as canonical JSON: which facts a logged decision saw, without keeping them."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def log_row(out: Mapping[str, Any], facts: Mapping[str, Any], source: str, decided_at: dt.datetime) -> dict[str, Any]:
    """The `online_decisions` row of one decision, as JSON values for a streaming insert."""
    contact = out["decision"] == "contact"
    return {
        "decision_date": out["ds"], "decided_at": decided_at.isoformat(), "decision_id": uuid.uuid4().hex,
        "customer_id": out["customer_id"], "facts_hash": facts_hash(facts), "facts_source": source,
        "risk_model": out["models"]["risk"], "accept_model": out["models"]["accept"],
        "policy_model": out["models"]["policy"], "message_model": out["message_model"],
        "churn_risk": out["churn_risk"], "contact": contact, "offer_level": out["offer_level"],
        "offer_pct": out["offer_pct"], "offer_cost": out["offer_cost"] if contact else 0.0,
        "followup_days": out["followup_days"], "expected_value": out["expected_value"],
        "propensity": out["propensity"], "holdout": out["holdout"], "decision_reason": out["decision_reason"],
        "message": out["message"], "send_at": out["send_at"],
        "shield_checks": json.dumps(out["shield_checks"]) if out["shield_checks"] is not None else None,
        "generator": out["generator"],
    }


def log(client: bigquery.Client, cfg: Config, row: Mapping[str, Any]) -> None:
    """Append one decision to `online_decisions` (a streaming insert, its decision_id the insert id)."""
    errors = client.insert_rows_json(cfg.table("online_decisions"), [dict(row)], row_ids=[row["decision_id"]],
                                    retry=budget.RETRY, timeout=budget.TIMEOUT_S)
    if errors:  # the reasons only: an error's location may quote the row, which holds customer text
        reasons = sorted({e.get("reason", "?") for err in errors for e in err.get("errors", [])})
        raise RuntimeError(f"online_decisions insert of {row['decision_id']} refused: {reasons}")
