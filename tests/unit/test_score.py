"""The score step: churn risk, accept per offer level, reason codes; and the risk model's reason-code naming."""
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from retention.scoring.accept import MONOTONE, AcceptModel
from retention.scoring.calibration import split_80_10_10
from retention.config import Config
from retention.scoring.features import (accept_features, bank_mapped, bank_offer_level, customer_mapped, read_bank,
                                        risk_features)
from retention.scoring.risk import RiskModel
from retention.scoring.score import explain, score
from retention.datasets.telco import FLAGS, read_telco

TINY = dict(n_estimators=15, learning_rate=0.3, early_stopping_rounds=5, random_state=0)


def fit_on(model, X, y):
    train, val, _ = split_80_10_10(y, 42)
    return model.fit(X.iloc[train], y[train], X.iloc[val], y[val])


@pytest.fixture(scope="module")
def models():
    """Small real models: risk on IBM Telco, accept on the mapped Bank Marketing rows."""
    telco = read_telco(Config().data_dir)
    risk = fit_on(RiskModel(max_depth=2, **TINY), risk_features(telco), telco["churned"].to_numpy(dtype=int))
    bank = read_bank(Config().data_dir)
    level, _ = bank_offer_level(bank["euribor3m"])
    accept = fit_on(AcceptModel(max_depth=3, monotone_constraints=MONOTONE, **TINY),
                    accept_features(bank_mapped(bank, level)), bank["y"].eq("yes").to_numpy(dtype=int))
    return risk, accept


def day_frame() -> pd.DataFrame:
    base = {"customer_id": "c1", "gender": "Male", "tenure_months": 1, "plan": "fiber_optic",
            "contract": "month_to_month", "payment_method": "electronic_check", "monthly_charges": 95.0,
            "total_charges": 95.0, "channel": "sms", "contacts_in_window": 0, "days_since_contact": 999,
            "total_contacts": 0, "last_outcome": "nonexistent", **{f: False for f in FLAGS.values()}}
    loyal = dict(base, customer_id="c2", tenure_months=70, plan="dsl", contract="two_year",
                 payment_method="credit_card", monthly_charges=60.0, total_charges=4200.0, tech_support=True,
                 online_security=True, channel="phone", contacts_in_window=1, days_since_contact=20,
                 total_contacts=3, last_outcome="success")
    return pd.DataFrame([base, loyal, dict(base, customer_id="c3", channel="app")], index=[10, 11, 12])


def test_score_adds_columns_to_a_copy(models):
    risk, accept = models
    day = day_frame()
    out = score(day, risk, accept, "2026-11-24")
    added = ["churn_risk", "accept_prob_0", "accept_prob_1", "accept_prob_2", "accept_prob_3", "reason_codes"]
    assert list(out.columns) == list(day.columns) + added
    assert list(day.columns) == list(day_frame().columns)  # input untouched
    assert out.index.tolist() == [10, 11, 12]
    probs = out[added[:5]].to_numpy()
    assert np.all((probs >= 0) & (probs <= 1))
    assert out.loc[10, "churn_risk"] > out.loc[11, "churn_risk"]  # new fiber month-to-month vs 6-year two-year
    assert np.all(np.diff(probs[:, 1:], axis=1) >= 0)  # monotone in offer level
    assert all(isinstance(codes, list) and len(codes) <= 3 and all(isinstance(c, str) for c in codes)
               for codes in out["reason_codes"])


def test_reason_codes_only_where_asked_and_equal_to_scoring_them_all(models):
    risk, accept = models
    day = day_frame()
    full = score(day, risk, accept, "2026-11-24")
    bare = score(day, risk, accept, "2026-11-24", reasons=False)
    assert "reason_codes" not in bare
    assert bare.equals(full.drop(columns="reason_codes"))
    codes = explain(bare, risk, np.array([True, False, True]), chunk=1).to_pylist()
    assert codes[0] == full.loc[10, "reason_codes"] and codes[2] == full.loc[12, "reason_codes"]
    assert codes[1] == [] and len(codes[0]) > 0


def test_score_is_one_batched_predict_per_offer_level(models, monkeypatch):
    risk, accept = models
    calls = []
    original = AcceptModel.predict_proba_matrix

    def counting(self, x):
        calls.append((len(x), x[0, self.features_.index("offer_level")]))
        return original(self, x)

    monkeypatch.setattr(AcceptModel, "predict_proba_matrix", counting)
    score(day_frame(), risk, accept, "2026-11-24")
    assert calls == [(3, 0.0), (3, 1.0), (3, 2.0), (3, 3.0)]


def test_accept_levels_equal_scoring_each_level_on_its_own(models):
    _, accept = models
    day = day_frame()
    levels = accept.predict_levels(day, "2026-11-24")
    for level in range(4):
        alone = accept.predict_proba(accept_features(customer_mapped(day, "2026-11-24", level)))
        np.testing.assert_array_equal(levels[f"accept_prob_{level}"].to_numpy(), alone)


def test_scoring_in_chunks_gives_the_same_frame_as_one_batch(models):
    risk, accept = models
    day = pd.concat([day_frame()] * 3, ignore_index=True).assign(customer_id=lambda d: [f"c{i}" for i in range(9)])
    whole = score(day, risk, accept, "2026-11-24", chunk=100)
    chunked = score(day, risk, accept, "2026-11-24", chunk=2)
    pd.testing.assert_frame_equal(chunked, whole)


def test_score_of_an_empty_day(models):
    risk, accept = models
    out = score(day_frame().iloc[:0], risk, accept, "2026-11-24")
    assert len(out) == 0 and "reason_codes" in out.columns


def test_reason_codes_name_the_rows_own_values():
    model = RiskModel()
    model.features_ = ["tenure_months", "tech_support", "contract=month_to_month", "contract=one_year",
                       "contract=two_year"]
    X = pd.DataFrame([[2.0, 0.0, 1.0, 0.0, 0.0], [40.0, 1.0, 0.0, 0.0, 1.0], [5.0, 0.0, 0.0, 0.0, 0.0]],
                     columns=model.features_)
    contrib = np.array([[0.5, 0.2, 0.1, 0.0, 0.3],     # contract group 0.4: named by the active column
                        [-0.5, 0.2, 0.0, 0.0, -0.1],   # only tech_support pushes toward churn
                        [0.1, -0.2, 0.3, 0.0, 0.0]])   # no active contract column: unknown value
    model.contributions = lambda _: contrib
    assert model.reason_codes(X) == [["tenure_months", "contract=month_to_month", "tech_support=no"],
                                     ["tech_support=yes"],
                                     ["contract=other", "tenure_months"]]
    assert model.reason_codes(X, k=1)[0] == ["tenure_months"]


def test_reason_codes_of_a_real_model_use_readable_names(models):
    risk, _ = models
    codes = risk.reason_codes(risk_features(day_frame()))
    assert codes[0] and "contract=month_to_month" in codes[0]
    vocabulary = {"tenure_months", "monthly_charges", "total_charges"} | {
        f"{f}={v}" for f in FLAGS.values() for v in ("yes", "no")} | {
        c for c in risk.features_ if "=" in c}
    assert {c for row in codes for c in row} <= vocabulary


def test_contributions_sum_to_the_margin(models):
    risk, _ = models
    X = risk_features(day_frame())
    margin = risk.booster_.predict(X[risk.features_], output_margin=True)
    bias = risk.booster_.get_booster().predict(xgb.DMatrix(X[risk.features_]), pred_contribs=True,
                                               iteration_range=(0, risk.best_iteration_ + 1))[:, -1]
    np.testing.assert_allclose(risk.contributions(X).sum(axis=1) + bias, margin, rtol=1e-5, atol=1e-5)


def test_risk_model_save_load(models, tmp_path):
    risk, _ = models
    risk.save(tmp_path, "20260101T000000Z-abc123")
    loaded = RiskModel.load(tmp_path)
    X = risk_features(day_frame())
    assert loaded.version_ == "20260101T000000Z-abc123"
    np.testing.assert_allclose(loaded.predict_proba(X), risk.predict_proba(X))
    assert loaded.reason_codes(X) == risk.reason_codes(X)


def test_loading_the_wrong_model_kind_fails(models, tmp_path):
    risk, _ = models
    risk.save(tmp_path, "v")
    with pytest.raises(ValueError, match="holds a RiskModel"):
        AcceptModel.load(tmp_path)
