"""IBM Telco churn rows in the data contract's `customers` vocabulary (one mapping for seeding and training)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

TELCO_FILE = "WA_Fn-UseC_-Telco-Customer-Churn.csv"

FLAGS = {
    "SeniorCitizen": "senior_citizen", "Partner": "partner", "Dependents": "dependents",
    "PhoneService": "phone_service", "MultipleLines": "multiple_lines",
    "OnlineSecurity": "online_security", "OnlineBackup": "online_backup",
    "DeviceProtection": "device_protection", "TechSupport": "tech_support",
    "StreamingTV": "streaming_tv", "StreamingMovies": "streaming_movies",
    "PaperlessBilling": "paperless_billing",
}
"""Telco Yes/No (and 'No phone/internet service') columns -> contract BOOL flags."""

PLANS = {"DSL": "dsl", "Fiber optic": "fiber_optic", "No": "none"}
CONTRACTS = {"Month-to-month": "month_to_month", "One year": "one_year", "Two year": "two_year"}
PAYMENTS = {
    "Electronic check": "electronic_check", "Mailed check": "mailed_check",
    "Bank transfer (automatic)": "bank_transfer", "Credit card (automatic)": "credit_card",
}


def read_telco(data_dir: str | Path) -> pd.DataFrame:
    """The 7,043 Telco rows mapped to contract columns, plus the label `churned` (bool).

    `name`, `time_zone`, `channel` and `customer_value` are not in Telco; the seed adds them.
    The 11 blank TotalCharges (tenure 0) become 0.0: nothing has been billed yet.
    """
    raw = pd.read_csv(Path(data_dir) / TELCO_FILE)
    out = pd.DataFrame({
        "customer_id": raw["customerID"].astype(str),
        "gender": raw["gender"].astype(str),
        "tenure_months": raw["tenure"].astype("int64"),
        "plan": raw["InternetService"].map(PLANS),
        "contract": raw["Contract"].map(CONTRACTS),
        "payment_method": raw["PaymentMethod"].map(PAYMENTS),
        "monthly_charges": raw["MonthlyCharges"].astype("float64"),
        "total_charges": pd.to_numeric(raw["TotalCharges"], errors="coerce").fillna(0.0),
    })
    for src, dst in FLAGS.items():
        out[dst] = raw[src].isin(["Yes", 1]).astype(bool)
    out["churned"] = raw["Churn"].eq("Yes")
    return out
