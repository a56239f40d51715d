"""ECE, gate metrics, isotonic calibration, the calibrated XGBoost wrapper and the split/OOF protocol."""
import numpy as np
import pandas as pd
import pytest

from retention.scoring.calibration import (CalibratedXGB, ece, fit_isotonic, gate, importance_plot, metrics, out_of_fold,
                                   reliability_plot, split_80_10_10)


def test_ece_hand_built():
    # bin 1: y (0, 1), p (.12, .18) -> |0.5 - 0.15| x 2 rows; bin 5: y (0, 1), p .55 -> |0.5 - 0.55| x 2;
    # p = 1.0 falls in the last bin with y = 1 -> 0.  (0.7 + 0.1 + 0) / 5 = 0.16
    y = [0, 1, 0, 1, 1]
    p = [0.12, 0.18, 0.55, 0.55, 1.0]
    assert ece(y, p) == pytest.approx(0.16)


def test_ece_perfect_and_worst():
    assert ece([0, 1, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert ece([1, 1, 0, 0], [0.0, 0.0, 1.0, 1.0]) == pytest.approx(1.0)


def test_metrics_hand_built():
    y = [0, 0, 1, 1]
    p = [0.2, 0.6, 0.4, 0.8]
    m = metrics(y, p, p)
    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered right
    assert m["brier"] == pytest.approx((0.04 + 0.36 + 0.36 + 0.04) / 4)
    assert (m["precision@0.3"], m["recall@0.3"]) == pytest.approx((2 / 3, 1.0))
    assert (m["precision@0.5"], m["recall@0.5"]) == pytest.approx((0.5, 0.5))
    assert (m["precision@0.7"], m["recall@0.7"]) == pytest.approx((1.0, 0.5))
    assert m["n"] == 4 and m["positive_rate"] == 0.5


def test_metrics_reports_raw_beside_calibrated():
    m = metrics([0, 1], [0.9, 0.1], [0.1, 0.9])
    assert m["auc_raw"] == 0.0 and m["auc"] == 1.0


def test_gate():
    assert gate({"auc": 0.85, "ece": 0.02}, 0.84, 0.03)["passed"]
    assert not gate({"auc": 0.83, "ece": 0.02}, 0.84, 0.03)["passed"]
    assert not gate({"auc": 0.85, "ece": 0.031}, 0.84, 0.03)["passed"]


def test_isotonic_clips_outside_fitted_range():
    iso = fit_isotonic(np.array([0.2, 0.4, 0.6, 0.8]), np.array([0, 0, 1, 1]))
    assert iso.predict(np.array([0.0, 0.2, 0.8, 1.0])).tolist() == [0.0, 0.0, 1.0, 1.0]


def test_plots_write_png(tmp_path):
    reliability_plot([0, 1, 1, 0], [0.1, 0.7, 0.9, 0.4], [0.2, 0.8, 0.8, 0.3], tmp_path / "r.png")
    importance_plot(["a", "b"], [2.0, 1.0], tmp_path / "i.png")
    for name in ("r.png", "i.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_split_80_10_10_is_disjoint_and_stratified():
    y = np.array([0, 1] * 50)
    train, val, test = split_80_10_10(y, 42)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert len(set(train) | set(val) | set(test)) == 100
    assert y[test].mean() == 0.5 and y[val].mean() == 0.5


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (X["a"] + 0.5 * rng.normal(size=400) > 0).astype(int).to_numpy()
    return X, y


def test_out_of_fold_predicts_every_row(toy):
    X, y = toy
    p_raw, p_cal, trees = out_of_fold(CalibratedXGB(n_estimators=10, learning_rate=0.3), X, y, seed=42)
    assert len(trees) == 5 and all(1 <= t <= 10 for t in trees)
    assert p_raw.shape == p_cal.shape == (400,)
    assert np.all((p_raw > 0) & (p_raw < 1))  # every row got a prediction from the fold that held it out
    assert metrics(y, p_raw, p_cal)["auc"] > 0.8


def test_calibrated_xgb_save_load_roundtrip(toy, tmp_path):
    X, y = toy
    model = CalibratedXGB(n_estimators=10, learning_rate=0.3, random_state=1).fit(X[:300], y[:300], X[300:], y[300:])
    model.save(tmp_path, "v1")
    loaded = CalibratedXGB.load(tmp_path)
    assert loaded.version_ == "v1" and loaded.features_ == ["a", "b"]
    assert loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    assert set(model.importance()) == {"a", "b"}


def test_predict_uses_fitted_column_order_and_empty_batches(toy):
    X, y = toy
    model = CalibratedXGB(n_estimators=5, random_state=1).fit(X[:300], y[:300], X[300:], y[300:])
    np.testing.assert_allclose(model.predict_proba(X[["b", "a"]]), model.predict_proba(X))
    assert model.predict_proba(X.iloc[:0]).shape == (0,)


def test_predict_raw_is_the_xgboost_classifier_probability_at_the_best_iteration(toy):
    X, y = toy
    model = CalibratedXGB(n_estimators=200, learning_rate=0.3, early_stopping_rounds=3, random_state=1).fit(
        X[:300], y[:300], X[300:], y[300:])
    assert model.best_iteration_ + 1 < 200  # stopped early: the trees past it must not count
    np.testing.assert_array_equal(model.predict_raw(X), model.booster_.predict_proba(X)[:, 1])
    every_tree = model.booster_.get_booster().inplace_predict(X.to_numpy(np.float32))
    assert not np.array_equal(model.predict_raw(X), every_tree)
