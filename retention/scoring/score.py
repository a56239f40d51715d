"""The daily score step: churn risk, acceptance per offer level and reason codes for every customer of the day."""
from __future__ import annotations

import pandas as pd

from retention.scoring.accept import AcceptModel
from retention.scoring.features import risk_features
from retention.scoring.risk import RiskModel

CHUNK = 200_000
"""Rows scored at a time: the feature matrices and contributions of a whole 1M-customer day would add ~2 GB."""


def score(day: pd.DataFrame, risk: RiskModel, accept: AcceptModel, ds, chunk: int = CHUNK) -> pd.DataFrame:
    """A copy of `day` with churn_risk, accept_prob_0..3 and reason_codes (list of str) added.

    `day` holds the customers columns plus the extract's history columns (contacts_in_window,
    days_since_contact, total_contacts, last_outcome); `ds` is the planned send date. Every row is scored on
    its own, so scoring in chunks gives the same numbers as one batch.
    """
    if len(day) <= chunk:
        return _score(day, risk, accept, ds)
    return pd.concat([_score(day.iloc[s:s + chunk], risk, accept, ds) for s in range(0, len(day), chunk)])


def _score(day: pd.DataFrame, risk: RiskModel, accept: AcceptModel, ds) -> pd.DataFrame:
    out = day.copy()
    X = risk_features(day)
    out["churn_risk"] = risk.predict_proba(X)
    accept_probs = accept.predict_levels(day, ds)  # one predict per level, all rows at once
    for col in accept_probs.columns:
        out[col] = accept_probs[col]
    out["reason_codes"] = pd.Series(risk.reason_codes(X), index=day.index, dtype=object)
    return out
