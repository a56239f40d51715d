"""Churn-risk model: calibrated P(churn) from XGBoost + isotonic, and reason codes from its feature contributions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from retention.scoring.calibration import CalibratedXGB
from retention.scoring.features import RISK_FLAGS


class RiskModel(CalibratedXGB):
    """Calibrated P(churn) of a customer from `features.risk_features`; see CalibratedXGB for fit/save/load."""

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Per-feature SHAP contributions to the raw margin, shape (n, n_features); the bias column dropped."""
        booster = self.booster_.get_booster()
        dm = xgb.DMatrix(X[self.features_])
        contrib = booster.predict(dm, pred_contribs=True, iteration_range=(0, self.best_iteration_ + 1))
        return contrib.reshape(len(X), len(self.features_) + 1)[:, :-1]  # an empty batch comes back 1-D

    def reason_codes(self, X: pd.DataFrame, k: int = 3) -> list[list[str]]:
        """Up to k readable drivers per row, largest positive contribution toward churn first.

        One-hot columns are summed back into their source column and named by the row's own value
        (`contract=month_to_month`, not `contract=two_year` whose absence pushed risk up); flags read
        `tech_support=no`; numerics keep their name (`tenure_months`).
        """
        X = X[self.features_]
        groups = _groups(self.features_)
        contrib = self.contributions(X)
        by_group = np.stack([contrib[:, cols].sum(axis=1) for cols in groups.values()], axis=1)  # (n, G)
        labels = np.stack([_labels(name, cols, X) for name, cols in groups.items()], axis=1)  # (n, G)
        top = np.argsort(-by_group, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(X))[:, None]
        keep = by_group[rows, top] > 0
        return [list(lab[ok]) for lab, ok in zip(labels[rows, top], keep)]


def _groups(features: list[str]) -> dict[str, list[int]]:
    """Source column -> indices of its feature columns (`plan=dsl`, `plan=none`, ... share `plan`)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(features):
        groups.setdefault(name.split("=")[0], []).append(i)
    return groups


def _labels(name: str, cols: list[int], X: pd.DataFrame) -> np.ndarray:
    """The reason-code text of one source column for every row, shape (n,)."""
    values = X.iloc[:, cols].to_numpy()
    if len(cols) > 1 or "=" in X.columns[cols[0]]:
        names = np.array([*X.columns[cols], f"{name}=other"], dtype=object)
        active = np.where(values.max(axis=1) > 0, values.argmax(axis=1), len(cols))  # all zero: unknown value
        return names[active]
    if name in RISK_FLAGS:
        return np.where(values[:, 0] > 0, f"{name}=yes", f"{name}=no").astype(object)
    return np.full(len(X), name, dtype=object)
