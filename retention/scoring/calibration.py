"""Probability quality: ECE and gate metrics, plots, isotonic calibration, XGBoost + isotonic, and the OOF protocol."""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import xgboost as xgb
from matplotlib.figure import Figure
from sklearn.base import BaseEstimator, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

THRESHOLDS = (0.3, 0.5, 0.7)
"""Decision thresholds at which precision and recall are reported."""


# metrics -----------------------------------------------------------------------------------------------------

def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error: |mean(y) - mean(p)| over equal-width bins of p, weighted by bin size."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)  # p == 1.0 belongs to the last bin
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, weights=y, minlength=bins) - np.bincount(idx, weights=p, minlength=bins))
    return float(gap.sum() / count.sum())  # sum_b n_b/N * |sum_b(y) - sum_b(p)| / n_b


def metrics(y, p_raw, p_cal) -> dict:
    """AUC, ECE, Brier of the calibrated (and raw) scores, precision and recall of p_cal at THRESHOLDS."""
    y, p_raw, p_cal = np.asarray(y, dtype=int), np.asarray(p_raw, dtype=float), np.asarray(p_cal, dtype=float)
    out = {"n": int(len(y)), "positive_rate": float(y.mean()),
           "auc": float(roc_auc_score(y, p_cal)), "ece": ece(y, p_cal), "brier": float(brier_score_loss(y, p_cal)),
           "auc_raw": float(roc_auc_score(y, p_raw)), "ece_raw": ece(y, p_raw),
           "brier_raw": float(brier_score_loss(y, p_raw))}
    for t in THRESHOLDS:
        out[f"precision@{t}"] = float(precision_score(y, p_cal >= t, zero_division=0))
        out[f"recall@{t}"] = float(recall_score(y, p_cal >= t, zero_division=0))
    return out


def gate(m: dict, min_auc: float, max_ece: float) -> dict:
    """The evaluation gate on a metrics dict: AUC >= min_auc and ECE <= max_ece."""
    return {"min_auc": min_auc, "max_ece": max_ece, "auc": m["auc"], "ece": m["ece"],
            "passed": bool(m["auc"] >= min_auc and m["ece"] <= max_ece)}


# plots -------------------------------------------------------------------------------------------------------

def _binned(y, p, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    idx = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"b": idx, "y": np.asarray(y, dtype=float), "p": p}).groupby("b").mean()
    return frame["p"].to_numpy(), frame["y"].to_numpy()


def reliability_plot(y, p_raw, p_cal, path: str | Path, title: str = "") -> None:
    """Reliability diagram (10 equal-width bins) of raw and calibrated scores, with a histogram of p_cal."""
    # Figure without pyplot renders with Agg and touches no global backend state (headless CI, Vertex jobs).
    fig = Figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], "k:", label="perfect")
    for name, p in (("raw", p_raw), ("isotonic", p_cal)):
        x, obs = _binned(y, p)
        top.plot(x, obs, "o-", label=f"{name} (ECE {ece(y, p):.3f})")
    top.set_ylabel("observed rate")
    top.set_title(f"Calibration on held-out rows{': ' + title if title else ''}")
    top.legend(loc="upper left")
    bottom.hist(p_cal, bins=20, range=(0, 1), color="grey")
    bottom.set_xlabel("predicted probability")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def importance_plot(names, values, path: str | Path, top: int = 20, title: str = "") -> None:
    """Horizontal bars of the `top` largest importances."""
    order = np.argsort(values)[-top:]
    fig = Figure(figsize=(6, 0.3 * len(order) + 1))
    ax = fig.subplots()
    ax.barh([names[i] for i in order], [values[i] for i in order])
    ax.set_xlabel("total gain")
    ax.set_title(f"Feature importance{': ' + title if title else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# models ------------------------------------------------------------------------------------------------------

PROBABILITY_RANGE = (0.001, 0.99)
"""Calibrated probabilities are kept inside this range: isotonic regression gives exactly 0 or 1 to a score bin where
every validation customer churned (or none did), a certainty a bin of a few dozen customers cannot give."""

def fit_isotonic(p, y) -> IsotonicRegression:
    """Isotonic map raw score -> probability; scores outside the fitted range clip to its ends."""
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)


class CalibratedXGB(BaseEstimator):
    """XGBoost classifier with early stopping and an isotonic calibrator, both fitted on a validation split."""

    def __init__(self, n_estimators=2000, learning_rate=0.03, max_depth=2, min_child_weight=5.0,
                 subsample=1.0, colsample_bytree=1.0, early_stopping_rounds=100, monotone_constraints=None,
                 n_jobs=2, random_state=None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.monotone_constraints = monotone_constraints
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y, X_val: pd.DataFrame, y_val):
        """Grow trees on (X, y), stop early on the validation log-loss, fit isotonic on the validation scores."""
        self.features_ = list(X.columns)
        self.booster_ = xgb.XGBClassifier(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
            min_child_weight=self.min_child_weight, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, early_stopping_rounds=self.early_stopping_rounds,
            monotone_constraints=self.monotone_constraints, n_jobs=self.n_jobs, random_state=self.random_state,
            tree_method="hist", eval_metric="logloss")
        self.booster_.fit(X, y, eval_set=[(X_val[self.features_], y_val)], verbose=False)
        self.best_iteration_ = int(self.booster_.best_iteration)
        self.calibrator_ = fit_isotonic(self.predict_raw(X_val), np.asarray(y_val))
        return self

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """X's model columns in training order as the float32 matrix the trees read (they split on float32)."""
        return X[self.features_].to_numpy(np.float32)

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated P(class 1), shape (n,), from the trees up to the best iteration."""
        return self.predict_raw_matrix(self.matrix(X))

    def predict_raw_matrix(self, x: np.ndarray) -> np.ndarray:
        """predict_raw of a `matrix`: one inplace_predict on the Booster, without the sklearn wrapper's
        DataFrame checks and copies (the columns are the model's by construction)."""
        booster = self.booster_.get_booster()
        return booster.inplace_predict(x, iteration_range=(0, self.best_iteration_ + 1)).reshape(len(x))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(class 1), shape (n,)."""
        return self.predict_proba_matrix(self.matrix(X))

    def predict_proba_matrix(self, x: np.ndarray) -> np.ndarray:
        """predict_proba of a `matrix`."""
        # IsotonicRegression.predict is this interpolation (out_of_bounds="clip"), but it refuses an empty
        # batch, and a scoring shard of a day can be empty
        raw = self.predict_raw_matrix(x)
        p = np.interp(raw, self.calibrator_.X_thresholds_, self.calibrator_.y_thresholds_)
        return np.clip(p, *PROBABILITY_RANGE)

    def importance(self) -> dict[str, float]:
        """Total gain of each feature (0.0 for a feature no tree splits on)."""
        gain = self.booster_.get_booster().get_score(importance_type="total_gain")
        return {f: float(gain.get(f, 0.0)) for f in self.features_}

    def save(self, directory: str | Path, version: str) -> None:
        """Write model.json (xgboost), calibrator.joblib and model_meta.json (features, params, version)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(directory / "model.json")
        joblib.dump(self.calibrator_, directory / "calibrator.joblib")
        meta = {"version": version, "class": type(self).__name__, "features": self.features_,
                "best_iteration": self.best_iteration_, "params": self.get_params(), "xgboost": xgb.__version__}
        (directory / "model_meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | Path):
        """A fitted model from `save`'s files; `version_` holds the saved version."""
        directory = Path(directory)
        meta = json.loads((directory / "model_meta.json").read_text())
        if meta["class"] != cls.__name__:  # e.g. a risk URI pointing at the accept champion
            raise ValueError(f"{directory} holds a {meta['class']}, not a {cls.__name__}")
        model = cls(**meta["params"])
        model.booster_ = xgb.XGBClassifier()
        model.booster_.load_model(directory / "model.json")  # keeps best_iteration for predict_proba
        model.calibrator_ = joblib.load(directory / "calibrator.joblib")
        model.features_, model.best_iteration_ = meta["features"], meta["best_iteration"]
        model.version_ = meta["version"]
        return model


# protocol ----------------------------------------------------------------------------------------------------

def split_80_10_10(y, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified row indices: 80 % train, 10 % validation (early stopping + isotonic), 10 % test."""
    rows = np.arange(len(y))
    train_val, test = train_test_split(rows, test_size=0.10, random_state=seed, stratify=y)
    train, val = train_test_split(train_val, test_size=1 / 9, random_state=seed, stratify=y[train_val])
    return train, val, test


def out_of_fold(model: CalibratedXGB, X: pd.DataFrame, y, seed: int, folds: int = 5,
                inner: float = 1 / 8) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Raw and calibrated predictions of every row by the fold that held it out, and each fold's tree count.

    Each fold fits a clone on its training part, minus an inner validation split (1/8 of it = 10 % of all rows,
    the same share as the final model's) that drives early stopping and the isotonic fit.
    """
    y = np.asarray(y)
    p_raw, p_cal, trees = np.zeros(len(y)), np.zeros(len(y)), []
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        fit_rows, val_rows = train_test_split(train, test_size=inner, random_state=seed, stratify=y[train])
        m = clone(model).set_params(random_state=seed)
        m.fit(X.iloc[fit_rows], y[fit_rows], X.iloc[val_rows], y[val_rows])
        p_raw[held], p_cal[held] = m.predict_raw(X.iloc[held]), m.predict_proba(X.iloc[held])
        trees.append(m.best_iteration_ + 1)
    return p_raw, p_cal, trees
