"""Offer-acceptance model: calibrated P(accept | offer level) on the Bank Marketing <-> customers mapping."""
from __future__ import annotations

import pandas as pd

from retention.scoring.calibration import CalibratedXGB
from retention.scoring.features import accept_features, customer_mapped

MONOTONE = {"offer_level": 1}
"""A more generous offer never lowers P(accept), so the decide step sees accept_prob_0 <= ... <= accept_prob_3."""


class AcceptModel(CalibratedXGB):
    """Calibrated P(accept) from `features.accept_features`; train it with monotone_constraints=MONOTONE."""

    def predict_levels(self, day: pd.DataFrame, ds, levels=range(4)) -> pd.DataFrame:
        """Columns accept_prob_<level> for our customers on `ds`: one batched predict call per offer level.

        The levels differ only in the offer_level column, so the matrix is built once and that column rewritten.
        """
        x = self.matrix(accept_features(customer_mapped(day, ds, 0)))
        offer = self.features_.index("offer_level")
        out = {}
        for level in levels:
            x[:, offer] = level
            out[f"accept_prob_{level}"] = self.predict_proba_matrix(x)
        return pd.DataFrame(out, index=day.index)
