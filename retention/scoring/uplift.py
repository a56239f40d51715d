"""Treatment effect (uplift) per offer level, learned from logged outcomes: the churn a message with offer k prevents
against no contact, for each customer (uplift_0..3 in the plan).

Data: one row per eligible customer-day of the logs. Its arm is CONTROL for the holdout (never contacted, chosen by a
hash of customer_id) and the offer level 0..3 for a contacted customer; its outcome is `retained` (did not churn
within the outcome horizon), so the effect of level k is P(retained | k) - P(retained | control): the value-free churn
lift that `deciding.rules.churn_lift` computes from the plan's own model.

Learner: causalml's DR-learner (Kennedy 2023, https://arxiv.org/abs/2004.14497), XGBoost for the outcome and effect
regressions, one effect per offer level, cross-fitted on three folds. Shallow trees: the DR pseudo-outcomes are noisy
(a 0/1 outcome over a propensity), and on 240k simulated rows depth 2 with 100 trees ranked the true effect at a
pooled Spearman of 0.75 where depth 3 with 200 trees reached 0.59 and depth 4 0.52.

Why causalml and not econml (both install cleanly next to the project's pins): causalml's DR-learner takes the
propensities as given (`p`, one vector per arm), and ours are known, not estimated: the holdout is a hash with a known
share, and the logging policy's probability of every level is logged with the decision; econml's DRLearner always fits
its own propensity model, which would only add error. causalml also ships the Qini/AUUC metrics the gate uses.

The DR pseudo-outcome of level k compares arm k with the control alone, so its propensity is
P(arm = k | x, arm in {k, control}) = e_k / (e_k + e_0), with e_0 = the holdout share and e_k = (1 - holdout share) x
the logging policy's probability of level k (`pairwise_propensity`). The saved model is the three cross-fitted effect
regressions per level (XGBoost JSON); `predict` averages them as causalml's own predict does, so the daily score
stage loads neither causalml nor pickles.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from retention.config import CHANNELS

LEVELS = 4
"""Offer levels 0..3 (the contact rules' LEVELS; scoring does not import deciding)."""
CONTROL = -1
"""Arm of a holdout row."""
FOLDS = 3
"""Cross-fitting folds of causalml's DR-learner: one effect regression per fold and level."""
NUMERIC = ("churn_risk", "accept_prob_0", "accept_prob_1", "accept_prob_2", "accept_prob_3", "customer_value")
FEATURES = (*NUMERIC, *(f"channel_{c}" for c in CHANNELS))
"""What the plan knows of a customer on the day (score stage outputs and customer facts), in `features` order."""
P_CLIP = (0.01, 0.99)
"""Pairwise propensities are kept inside this range: a near-0 one makes a DR pseudo-outcome explode."""
META = "uplift_meta.json"


def features(day: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs from a scored day (or a logged plan row): NUMERIC plus one indicator per channel."""
    numeric = day[list(NUMERIC)].astype(np.float64).reset_index(drop=True)
    channel = day["channel"].astype(str).to_numpy()
    return numeric.assign(**{f"channel_{c}": (channel == c).astype(np.float64) for c in CHANNELS})


def pairwise_propensity(level_probs: np.ndarray, holdout_share: float) -> dict[int, np.ndarray]:
    """{level: P(arm = level | x, arm in {level, control})} from the logging policy's (n, 4) level probabilities."""
    e = (1.0 - holdout_share) * np.asarray(level_probs, dtype=np.float64)
    return {k: np.clip(e[:, k] / (e[:, k] + holdout_share), *P_CLIP) for k in range(LEVELS)}


class UpliftModel:
    """Per-level treatment effect on retention (scikit-learn conventions: `fit` sets the trailing-underscore state)."""

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.05, max_depth: int = 2,
                 min_child_weight: float = 50.0, random_state: int = 0):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.random_state = random_state

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("n_estimators", "learning_rate", "max_depth", "min_child_weight",
                                              "random_state")}

    def _regressor(self) -> xgb.XGBRegressor:
        # one thread: the DR-learner fits 27 small models, and two OpenMP threads on shared cores ran 30x slower
        return xgb.XGBRegressor(**self.get_params(), n_jobs=1)

    def fit(self, day: pd.DataFrame, arm: np.ndarray, retained: np.ndarray, level_probs: np.ndarray,
            holdout_share: float) -> "UpliftModel":
        """Fit on logged rows: `arm` CONTROL or the level sent, `retained` 0/1, `level_probs` (n, 4) the logging
        policy's probability of each level for the row (holdout rows too: what it would have sent)."""
        from causalml.inference.meta import BaseDRRegressor  # training only: the score stage reads saved boosters

        arm = np.asarray(arm, dtype=np.int64)
        present = sorted(set(arm[arm != CONTROL].tolist()))
        if CONTROL not in arm or present != list(range(LEVELS)):
            raise ValueError(f"uplift: the logs need a control arm and every offer level 0..{LEVELS - 1}; "
                             f"found arms {sorted(set(arm.tolist()))}")
        learner = BaseDRRegressor(learner=self._regressor(), control_name=CONTROL)
        learner.fit(features(day), treatment=arm, y=np.asarray(retained, dtype=np.float64),
                    p=pairwise_propensity(level_probs, holdout_share), seed=self.random_state)
        self.effect_models_ = [list(learner.models_tau[k]) for k in range(LEVELS)]  # (level, fold)
        self.features_ = list(FEATURES)
        return self

    def predict(self, day: pd.DataFrame) -> np.ndarray:
        """(n, 4) effect of each offer level on P(retained): churn prevented against no contact."""
        X = features(day)
        return np.stack([np.mean([m.predict(X) for m in folds], axis=0) for folds in self.effect_models_], axis=1)

    def save(self, directory: str | Path, version: str) -> None:
        """effect_<level>_<fold>.json (XGBoost) and uplift_meta.json (features, params, version)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for k, folds in enumerate(self.effect_models_):
            for f, model in enumerate(folds):
                model.save_model(directory / f"effect_{k}_{f}.json")
        meta = {"version": version, "class": type(self).__name__, "features": self.features_,
                "params": self.get_params(), "levels": LEVELS, "folds": FOLDS, "xgboost": xgb.__version__}
        (directory / META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "UpliftModel":
        """A fitted model from `save`'s files; `version_` holds the saved version."""
        directory = Path(directory)
        meta = json.loads((directory / META).read_text())
        if meta["features"] != list(FEATURES):
            raise ValueError(f"{directory}: uplift model of features {meta['features']}, this code gives {FEATURES}")
        model = cls(**meta["params"])
        model.effect_models_ = [[_booster(directory / f"effect_{k}_{f}.json") for f in range(meta["folds"])]
                                for k in range(meta["levels"])]
        model.features_, model.version_ = meta["features"], meta["version"]
        return model


def _booster(path: Path) -> xgb.XGBRegressor:
    model = xgb.XGBRegressor()
    model.load_model(path)
    return model


# the score stage's columns and the decision's lift


def uplift_columns(day: pd.DataFrame, model: UpliftModel) -> pd.DataFrame:
    """Columns uplift_0..3 for a scored day (index kept): the model's churn prevented per offer level."""
    effect = model.predict(day)
    return pd.DataFrame({f"uplift_{k}": effect[:, k] for k in range(LEVELS)}, index=day.index)


def churn_lift(day: pd.DataFrame) -> np.ndarray:
    """(n, 4) churn a message with offer k prevents, read from uplift_0..3: what the decision uses in place of the
    plan's own model, rules.churn_lift(risk, accept, efficacy, backfire), when use_uplift is on."""
    return np.stack([day[f"uplift_{k}"].to_numpy(dtype=np.float64) for k in range(LEVELS)], axis=1)
