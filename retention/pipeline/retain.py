"""One customer at a time: the daily plan's stages on a single row, for `retention decide` (nothing is written).

    retention decide --customer-id 7590-VHVEG --ds 2025-03-09     # facts from the day's extract in BigQuery
    retention decide --json '{"customer_id": "c1", ...}' --ds 2025-03-09

The facts are checked against the `customers` contract and its expectation suite (each problem names its field),
scored by the risk and accept champions (loaded once per process), decided under the hard rules with the budget
the caller says is left (`retention decide`: what the day's published plan left), then given a shielded message and
a send time, exactly as in the batch plan.
"""
from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import re
from typing import Any, Mapping

import numpy as np
import pandas as pd

from retention.deciding.decide import decide_plan
from retention.deciding import rules
from retention.scoring.accept import AcceptModel
from retention.config import REPO_ROOT, Config
from retention.scoring.features import NEVER
from retention.messages import generate as generator
from retention.messages import schedule
from retention.messages import shield as shield_rules
from retention.pipeline.daily import with_uplift
from retention.pipeline.quality import HISTORY_FEATURES, INJECTED, column_types
from retention.scoring.risk import RiskModel
from retention.scoring.score import score

HISTORY_DEFAULTS = {"contacts_in_window": 0, "days_since_contact": NEVER, "total_contacts": 0,
                    "last_outcome": "nonexistent", "suppressed": False}
"""History of a customer never contacted: what an omitted history field means."""
PYTHON_TYPES = {"STRING": (str,), "INT64": (int,), "FLOAT64": (int, float), "BOOL": (bool,), "DATE": (str, dt.date)}
"""BigQuery type -> the JSON/Python values a fact of that type may hold (bool is never a number here)."""


class FactsError(ValueError):
    """The customer facts break the contract or the suite; `fields` names the fields at fault."""

    def __init__(self, problems: dict[str, str]):
        self.fields = sorted(problems)
        self.problems = dict(problems)
        super().__init__("customer facts: " + "; ".join(f"field '{f}' {problems[f]}" for f in self.fields))


# facts


def fact_types() -> dict[str, str]:
    """Field -> BigQuery type of one customer's facts: the `customers` contract plus the extract's history."""
    return column_types("customers") | HISTORY_FEATURES


def complete_facts(facts: Mapping[str, Any], ds: str) -> dict[str, Any]:
    """The facts with what may be left out filled in: snapshot_date = ds, the history of a never-contacted
    customer, and customer_value = a year of monthly_charges (as the seed does when a source gives none)."""
    out = {"snapshot_date": ds, **HISTORY_DEFAULTS, **facts}
    if out.get("customer_value") is None and isinstance(out.get("monthly_charges"), (int, float)):
        out["customer_value"] = 12 * float(out["monthly_charges"])
    return out


def validate_facts(facts: Mapping[str, Any], ds: str) -> pd.DataFrame:
    """One customer's facts as a one-row frame of the daily extract, or a FactsError naming every bad field."""
    types = fact_types()
    derived = facts.get("customer_value") is None  # then it comes from monthly_charges, and so do its problems
    facts = complete_facts(facts, ds)
    problems = {f: _unknown(f, types) for f in facts if f not in types}
    for field, kind in types.items():
        value = facts.get(field)
        if value is None:
            problems[field] = "is missing" if field not in facts else "is null"
        elif isinstance(value, bool) != (kind == "BOOL") or not isinstance(value, PYTHON_TYPES[kind]):
            problems[field] = f"= {_show(value)} is not a {kind}"
    if not problems:
        problems = _suite_problems(facts)
    if derived and "monthly_charges" in problems:
        problems.pop("customer_value", None)  # one problem, named once
    if problems:
        raise FactsError(problems)
    row = {f: facts[f] for f in types} | {"snapshot_date": dt.date.fromisoformat(str(facts["snapshot_date"]))}
    day = pd.DataFrame([row])
    for field in (f for f, kind in types.items() if kind == "STRING"):
        day[field] = day[field].astype("str")
    return day


def _unknown(field: str, types: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(field, list(types), n=1)
    return "is not a customer fact" + (f" (did you mean '{close[0]}'?)" if close else "")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suite_problems(facts: Mapping[str, Any]) -> dict[str, str]:
    """The rules of expectations/customers.json that one row can break, checked on the facts (the suite as data)."""
    suite = json.loads((REPO_ROOT / "expectations" / "customers.json").read_text())
    problems: dict[str, str] = {}
    for spec in suite:
        kind, kw = spec["expectation"], spec["kwargs"]
        value = facts[kw["column"]]
        if kind == "expect_column_values_to_be_in_set":
            allowed = INJECTED.get(kw["value_set"], kw["value_set"]) if isinstance(kw["value_set"], str) \
                else kw["value_set"]
            bad = value not in allowed
            why = "is not an IANA time zone" if kw["value_set"] == "$iana_time_zones" else f"is not one of {allowed}"
        elif kind == "expect_column_values_to_be_between":
            bad = not kw.get("min_value", -np.inf) <= value <= kw.get("max_value", np.inf)
            why = f"is outside [{kw.get('min_value', '-inf')}, {kw.get('max_value', 'inf')}]"
        elif kind == "expect_column_value_lengths_to_be_between":
            bad = not kw["min_value"] <= len(value) <= kw["max_value"]
            why = f"has {len(value)} characters, expected {kw['min_value']} to {kw['max_value']}"
        elif kind in ("expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex"):
            bad = (re.search(kw["regex"], value) is None) == (kind == "expect_column_values_to_match_regex")
            why = spec.get("reason", f"{'does not match' if 'not' not in kind else 'matches'} {kw['regex']!r}")
        elif kind in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_unique"):
            continue  # nulls are refused above; one row is unique
        else:
            raise ValueError(f"expectations/customers.json: {kind} has no one-row check in retain.py")
        if bad:
            problems.setdefault(kw["column"], f"= {_show(value)} {why}")
    return problems


# models


@functools.lru_cache(maxsize=4)
def champions(risk_dir: str, accept_dir: str) -> tuple[RiskModel, AcceptModel]:
    """The risk and accept champions, loaded once per process."""
    return RiskModel.load(risk_dir), AcceptModel.load(accept_dir)


@functools.lru_cache(maxsize=2)
def _policy(policy_dir: str):
    """The decision-policy champion (None: the greedy rule), loaded once per process."""
    from retention.deciding.policy import load_policy

    return load_policy(policy_dir)


# the decision


def decide_one(cfg: Config, facts: Mapping[str, Any], ds: str, budget_left: float | None = None,
               budget_source: str = "the full daily budget") -> dict[str, Any]:
    """Decision, expected value, reason codes, shielded message and send time for one customer on day ds.

    The same stages as the batch plan on a one-row plan; the message's batch is this one customer. budget_left: what
    is left of cfg.daily_budget when this customer's turn comes (all of it by default); given the budget left at a
    customer's turn in the day's plan, the decision is the plan's. The output's `budget` says which was used.
    Raises FactsError naming the bad fields; writes nothing.
    """
    day = validate_facts(facts, ds)
    risk, accept = champions(str(cfg.model_dir("risk")), str(cfg.model_dir("accept")))
    decided = decide_plan(with_uplift(cfg, score(day, risk, accept, dt.date.fromisoformat(ds))), cfg,
                          _policy(str(cfg.model_dir("policy"))), ds, budget_left)
    row = shield_rules.shield(generator.generate(decided, cfg, ds), cfg, ds)
    row["send_at"] = schedule.send_at(row, ds, cfg.quiet_start_hour, cfg.quiet_end_hour, cfg.send_window_start_hour)
    left = cfg.daily_budget if budget_left is None else budget_left
    return summary(row.iloc[0], ds, {"risk": risk.version_, "accept": accept.version_}) | {
        "budget": {"daily_budget": cfg.daily_budget, "left": round(float(left), 2), "source": budget_source}}


def published_budget_left(cfg: Config, ds: str) -> tuple[float, str] | None:
    """What the day's published plan left of the daily budget, and a line saying so; None when no plan was published
    for ds."""
    from retention.infra import bq

    runs = bq.query(bq.client(cfg), cfg, bq.sql_text("summary_latest_run", cfg), ds=dt.date.fromisoformat(ds))
    if runs.empty:
        return None
    run = runs.iloc[0]
    left = max(float(run["budget"]) - float(run["spend"]), 0.0)
    return left, (f"the budget left by the published plan of {ds} (run {run['run_id']}: {float(run['budget']):,.2f} "
                  f"budget, {float(run['spend']):,.2f} committed)")


def summary(r: pd.Series, ds: str, versions: dict[str, str]) -> dict[str, Any]:
    """The one-row plan as plain JSON-ready values."""
    contact = bool(r["contact"])
    return {
        "customer_id": r["customer_id"], "ds": ds, "decision": "contact" if contact else "no_contact",
        "decision_reason": r["decision_reason"], "offer_level": int(r["offer_level"]) if contact else None,
        "offer_pct": float(r["offer_pct"]) if contact else None, "offer_cost": round(float(r["offer_cost"]), 2),
        "expected_value": round(float(r["expected_value"]), 4), "churn_risk": round(float(r["churn_risk"]), 4),
        "propensity": float(r["propensity"]),
        "accept_probs": [round(float(r[f"accept_prob_{k}"]), 4) for k in range(rules.LEVELS)],
        "reason_codes": list(r["reason_codes"]), "holdout": bool(r["holdout"]),
        "followup_days": int(r["followup_days"]) if contact else None,
        "message": r["message"] if contact else None, "generator": r["generator"] if contact else None,
        "message_model": r["message_model"] if contact else None,
        "send_at": r["send_at"].isoformat() if contact else None,
        "shield_checks": json.loads(r["shield_checks"]) if contact else None,
        "models": versions | {"policy": r["policy_model"]},
    }


def facts_for_customer(cfg: Config, customer_id: str, ds: str) -> dict[str, Any]:
    """One customer's row of the ds extract (sql/daily_customers.sql, the id bound as a query parameter)."""
    from retention.infra import bq

    sql = f"SELECT * FROM (\n{bq.sql_text('daily_customers', cfg)}\n) AS day WHERE customer_id = @customer_id"
    day = bq.query(bq.client(cfg), cfg, sql, ds=dt.date.fromisoformat(ds), window=cfg.fatigue_window_days,
                   lookback=cfg.ledger_lookback_days, customer_id=customer_id)
    if day.empty:
        raise LookupError(f"customer_id={customer_id!r} is not in {cfg.table('customers')} for snapshot_date={ds}")
    return {k: _python(v) for k, v in day.iloc[0].items()}


def _python(value: Any) -> Any:
    """A value of a BigQuery row as the plain Python the facts check expects."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dt.date, pd.Timestamp)):
        return value.isoformat()[:10]
    return None if pd.isna(value) else value
