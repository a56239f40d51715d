"""The daily score step: churn risk and acceptance per offer level for every customer of the day; reason codes where
they are used (`explain`: the daily plan's contacted rows and a sample, the online service's one customer)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from retention.scoring.accept import AcceptModel
from retention.scoring.features import risk_features
from retention.scoring.risk import RiskModel

CHUNK = 200_000
"""Rows scored at a time: the feature matrices and contributions of a whole 1M-customer day would add ~2 GB."""


def score(day: pd.DataFrame, risk: RiskModel, accept: AcceptModel, ds, chunk: int = CHUNK,
          reasons: bool = True) -> pd.DataFrame:
    """A copy of `day` with churn_risk, accept_prob_0..3 and reason_codes (list of str) added.

    `day` holds the customers columns plus the extract's history columns (contacts_in_window,
    days_since_contact, total_contacts, last_outcome); `ds` is the planned send date. Every row is scored on
    its own, so scoring in chunks gives the same numbers as one batch. reasons=False leaves reason_codes out:
    `explain` gives them where they are used.
    """
    if len(day) <= chunk:
        return _score(day, risk, accept, ds, reasons)
    return pd.concat([_score(day.iloc[s:s + chunk], risk, accept, ds, reasons) for s in range(0, len(day), chunk)])


def _score(day: pd.DataFrame, risk: RiskModel, accept: AcceptModel, ds, reasons: bool) -> pd.DataFrame:
    out = day.copy()
    X = risk_features(day)
    out["churn_risk"] = risk.predict_proba(X)
    accept_probs = accept.predict_levels(day, ds)  # one predict per level, all rows at once
    for col in accept_probs.columns:
        out[col] = accept_probs[col]
    if reasons:
        out["reason_codes"] = pd.Series(risk.reason_codes(X), index=day.index, dtype=object)
    return out


def explain(frame: pd.DataFrame, risk: RiskModel, rows: np.ndarray, chunk: int = CHUNK) -> pa.ListArray:
    """reason_codes of `frame` (customers columns present), one list of str per row: exact TreeSHAP codes for the
    `rows` mask, empty lists elsewhere. The plan pays for contributions only where a message or an analyst reads
    them, and the empty lists of the rest cost one offsets array (a Python list each would cost a million
    objects and the garbage collector's passes over them)."""
    picked = np.flatnonzero(rows)
    codes = [c for s in range(0, len(picked), chunk)
             for c in risk.reason_codes(risk_features(frame.iloc[picked[s:s + chunk]]))]
    sizes = np.zeros(len(frame), dtype=np.int32)
    sizes[picked] = [len(c) for c in codes]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int32)])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array([r for c in codes for r in c], type=pa.string()))
