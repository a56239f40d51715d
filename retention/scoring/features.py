"""Model features: churn-risk features from `customers` rows, and the accept mapping Bank Marketing <-> our customers.

Both matrices are float DataFrames with fixed, readable column names, so a scoring day with a single plan or
contract value still yields exactly the training columns. One-hot columns are named `<column>=<category>`.

The accept model is trained on UCI Bank Marketing (a term-deposit telemarketing campaign) but scores our
customers, whose columns are Telco's. Only what both sides have is used, through one shared vocabulary:

| bank column              | our customers (+ extract history, ds)                                   |
|--------------------------|-------------------------------------------------------------------------|
| campaign                 | contacts_in_window + 1 (contacts of this campaign, this one included)   |
| pdays (999 = never)      | days_since_contact (999 = never)                                        |
| previous                 | total_contacts                                                          |
| poutcome                 | last_outcome (success / failure / nonexistent)                          |
| age >= 65                | senior_citizen                                                          |
| contact                  | channel: phone -> telephone; email, sms, app -> cellular                |
| month                    | month of ds; the bank called only March-December, so jan -> dec, feb -> mar |
| day_of_week              | weekday of ds; the bank called only Monday-Friday, so sat -> fri, sun -> mon |
| offer level 0-3          | the offer level being scored                                            |

Bank rows carry no offer, so their level 0-3 is a proxy of offer generosity: the quartile of `euribor3m`,
reversed. A fixed-rate deposit offer is relatively more generous when the market rate is low, so the
lowest-rate quartile is level 3. `bank_offer_level` returns the edges it used; training reports the
acceptance rate per level.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from retention.datasets.telco import CONTRACTS, FLAGS, PAYMENTS, PLANS

# risk ------------------------------------------------------------------------------------------------------

RISK_NUMERIC = ("tenure_months", "monthly_charges", "total_charges")
RISK_FLAGS = tuple(FLAGS.values())
RISK_CATEGORIES = {
    "gender": ("Female", "Male"),
    "plan": tuple(PLANS.values()),
    "contract": tuple(CONTRACTS.values()),
    "payment_method": tuple(PAYMENTS.values()),
}
"""Fixed category lists: the one-hot columns never depend on the rows being encoded."""


def one_hot(values: pd.Series, name: str, categories: tuple[str, ...]) -> pd.DataFrame:
    """Columns `name=category` (1.0/0.0) for a fixed category list; unknown values give all zeros."""
    # fillna: nullable string columns (as BigQuery returns them) compare to <NA>, not False
    cols = {f"{name}={c}": values.eq(c).fillna(False).to_numpy(dtype=float) for c in categories}
    return pd.DataFrame(cols, index=values.index)


def risk_features(customers: pd.DataFrame) -> pd.DataFrame:
    """Churn-risk matrix: contract numerics, the 12 service flags (0/1), one-hot gender/plan/contract/payment."""
    parts = [customers[list(RISK_NUMERIC)].astype(float),
             customers[list(RISK_FLAGS)].astype(bool).astype(float)]
    parts += [one_hot(customers[c], c, cats) for c, cats in RISK_CATEGORIES.items()]
    return pd.concat(parts, axis=1)


RISK_FEATURES = (RISK_NUMERIC + RISK_FLAGS
                 + tuple(f"{c}={v}" for c, cats in RISK_CATEGORIES.items() for v in cats))


# accept ----------------------------------------------------------------------------------------------------

BANK_FILE = "bank-additional-full.csv.gz"
MONTHS = ("mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
"""Months the bank campaign called in (no January or February rows)."""
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
OUTCOMES = ("failure", "nonexistent", "success")
CALENDAR_MONTH = ("dec", "mar", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
"""Calendar month 1..12 -> bank month: January borrows December and February borrows March (nearest covered)."""
CALENDAR_WEEKDAY = ("mon", "tue", "wed", "thu", "fri", "fri", "mon")
"""Python weekday 0..6 -> bank weekday: a weekend send is scored as the nearest business day (sat -> fri,
sun -> mon)."""
NEVER = 999
"""`pdays` / `days_since_contact` value for a customer never contacted before."""

ACCEPT_NUMERIC = ("offer_level", "campaign", "pdays", "previous", "senior")
ACCEPT_CATEGORIES = {"contact": ("cellular", "telephone"), "poutcome": OUTCOMES,
                     "month": MONTHS, "day_of_week": WEEKDAYS}
ACCEPT_FEATURES = ACCEPT_NUMERIC + tuple(f"{c}={v}" for c, cats in ACCEPT_CATEGORIES.items() for v in cats)
MAPPED_COLUMNS = ACCEPT_NUMERIC + tuple(ACCEPT_CATEGORIES)


def read_bank(data_dir: str | Path) -> pd.DataFrame:
    """UCI Bank Marketing (41,188 rows) without `duration`, which is only known after the call ends."""
    return pd.read_csv(Path(data_dir) / BANK_FILE, sep=";").drop(columns="duration")


def bank_offer_level(euribor3m: pd.Series) -> tuple[pd.Series, list[float]]:
    """Offer level 0-3 of bank rows: euribor3m quartile reversed (lowest rate = 3), and the quartile edges."""
    quartile, edges = pd.qcut(euribor3m, 4, labels=False, retbins=True)
    return (3 - quartile).astype("int64"), [float(e) for e in edges[1:-1]]


def bank_mapped(bank: pd.DataFrame, offer_level: pd.Series) -> pd.DataFrame:
    """Bank rows in the shared accept vocabulary (see the module table)."""
    return pd.DataFrame({
        "offer_level": offer_level.astype("int64"),
        "campaign": bank["campaign"].astype("int64"),
        "pdays": bank["pdays"].astype("int64"),
        "previous": bank["previous"].astype("int64"),
        "senior": bank["age"].ge(65).astype("int64"),
        "contact": bank["contact"].astype(str),
        "poutcome": bank["poutcome"].astype(str),
        "month": bank["month"].astype(str),
        "day_of_week": bank["day_of_week"].astype(str),
    }, index=bank.index)


def customer_mapped(day: pd.DataFrame, ds, offer_level: int) -> pd.DataFrame:
    """Our customers (customers + extract history) in the shared accept vocabulary, for a send on `ds`."""
    when = pd.Timestamp(ds)
    n = len(day)
    return pd.DataFrame({
        "offer_level": np.full(n, offer_level, dtype="int64"),
        "campaign": day["contacts_in_window"].astype("int64") + 1,
        "pdays": day["days_since_contact"].astype("int64"),
        "previous": day["total_contacts"].astype("int64"),
        "senior": day["senior_citizen"].astype(bool).astype("int64"),
        "contact": np.where(day["channel"].eq("phone").fillna(False), "telephone", "cellular"),
        "poutcome": day["last_outcome"].astype(str),
        "month": CALENDAR_MONTH[when.month - 1],
        "day_of_week": CALENDAR_WEEKDAY[when.weekday()],
    }, index=day.index)


def accept_features(mapped: pd.DataFrame) -> pd.DataFrame:
    """Accept matrix from a mapped frame (bank or ours): numerics, then fixed one-hot columns."""
    parts = [mapped[list(ACCEPT_NUMERIC)].astype(float)]
    parts += [one_hot(mapped[c], c, cats) for c, cats in ACCEPT_CATEGORIES.items()]
    return pd.concat(parts, axis=1)


def bank_full_features(bank: pd.DataFrame) -> pd.DataFrame:
    """Every bank column except `duration` and `y`, one-hot encoded: the reference model, never used to score."""
    X = pd.get_dummies(bank.drop(columns=["y"]), prefix_sep="=", dtype=float)
    return X.rename(columns=lambda c: c.replace("[", "(").replace("]", ")").replace("<", "lt"))
