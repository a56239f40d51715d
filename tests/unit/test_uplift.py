"""The uplift model: its inputs, the pairwise propensities, a DR-learner fit that recovers a known effect from
confounded logs, save/load, the score stage's columns; and train_uplift's logging policy, agreement and gate."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retention.config import Config, load_config
from retention.pipeline.daily import with_uplift
from retention.scoring import uplift
from retention.scoring.uplift import CONTROL, FEATURES, LEVELS, UpliftModel, pairwise_propensity
from training import train_uplift

CFG = Config()


def day(n: int, seed: int = 0) -> pd.DataFrame:
    """A scored day with the columns the model reads."""
    rng = np.random.default_rng(seed)
    accept = np.sort(rng.uniform(0.05, 0.6, (n, LEVELS)), axis=1)
    return pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "churn_risk": rng.uniform(0, 0.8, n),
                         **{f"accept_prob_{k}": accept[:, k] for k in range(LEVELS)},
                         "customer_value": rng.uniform(200, 1500, n), "channel": rng.choice(["email", "sms",
                                                                                             "phone", "app"], n)})


def true_effect(d: pd.DataFrame) -> np.ndarray:
    """(n, 4) a known effect on retention: churn_lift with efficacy rising by level, no backfire."""
    accept = d[[f"accept_prob_{k}" for k in range(LEVELS)]].to_numpy()
    return d["churn_risk"].to_numpy()[:, None] * accept * np.array([0.1, 0.4, 0.6, 0.9])


def logs(n: int, seed: int = 0, share: float = 0.2):
    """Logs with a control arm of `share` and levels drawn by a policy that depends on risk (confounded): riskier
    customers get the big offers, so comparing arms without the propensities would mix risk into the effect."""
    rng = np.random.default_rng(seed + 1)
    d = day(n, seed)
    risky = d["churn_risk"].to_numpy() > 0.4
    probs = np.where(risky[:, None], [0.1, 0.1, 0.2, 0.6], [0.6, 0.2, 0.1, 0.1])
    level = (rng.random(n)[:, None] >= np.cumsum(probs, axis=1)).sum(axis=1)
    arm = np.where(rng.random(n) < share, CONTROL, level)
    p_retain = 1 - d["churn_risk"].to_numpy() + np.where(arm == CONTROL, 0.0, true_effect(d)[np.arange(n),
                                                                                             np.maximum(arm, 0)])
    return d, arm, (rng.random(n) < p_retain).astype(int), probs


@pytest.fixture(scope="module")
def fitted():
    d, arm, retained, probs = logs(20_000)
    return UpliftModel(n_estimators=60, learning_rate=0.1, random_state=0).fit(d, arm, retained, probs, 0.2)


# inputs


def test_features_are_the_numbers_and_one_indicator_per_channel():
    d = day(3).assign(channel=["sms", "app", "phone"])
    X = uplift.features(d)
    assert list(X.columns) == list(FEATURES)
    assert X[["channel_email", "channel_sms", "channel_phone", "channel_app"]].to_numpy().tolist() == [
        [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    assert X["churn_risk"].tolist() == d["churn_risk"].tolist()


def test_pairwise_propensity_compares_each_level_with_the_control_alone():
    p = pairwise_propensity(np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]]), 0.1)
    # e_k = 0.9 x 0.25 = 0.225 against e_0 = 0.1: 0.225 / 0.325
    assert p[1][0] == pytest.approx(0.225 / 0.325)
    assert p[0][1] == pytest.approx(0.9 / 1.0)
    assert p[2][1] == uplift.P_CLIP[0]  # never drawn: clipped, not 0


# fit, predict, save


def test_dr_learner_recovers_the_effect_from_confounded_logs(fitted):
    test = day(4000, seed=9)
    effect, truth = fitted.predict(test), true_effect(test)
    assert effect.shape == (4000, LEVELS)
    assert stats.spearmanr(effect[:, 3], truth[:, 3]).statistic > 0.7
    assert np.abs(effect.mean(axis=0) - truth.mean(axis=0)).max() < 0.03
    assert effect[:, 3].mean() > effect[:, 1].mean() > effect[:, 0].mean() - 0.01


def test_fit_needs_a_control_and_every_level():
    d, arm, retained, probs = logs(400)
    with pytest.raises(ValueError, match="control arm and every offer level"):
        UpliftModel(n_estimators=5).fit(d, np.where(arm == CONTROL, 0, arm), retained, probs, 0.2)
    with pytest.raises(ValueError, match="found arms"):
        UpliftModel(n_estimators=5).fit(d, np.where(arm == 2, 1, arm), retained, probs, 0.2)


def test_save_load_predicts_the_same(fitted, tmp_path):
    fitted.save(tmp_path, "v-test")
    loaded = UpliftModel.load(tmp_path)
    test = day(50, seed=3)
    assert loaded.version_ == "v-test" and loaded.get_params() == fitted.get_params()
    np.testing.assert_allclose(loaded.predict(test), fitted.predict(test), rtol=1e-6)
    assert len(list(tmp_path.glob("effect_*_*.json"))) == LEVELS * uplift.FOLDS


def test_load_refuses_other_features(fitted, tmp_path):
    fitted.save(tmp_path, "v-test")
    meta = tmp_path / uplift.META
    meta.write_text(meta.read_text().replace('"customer_value"', '"tenure_months"'))
    with pytest.raises(ValueError, match="uplift model of features"):
        UpliftModel.load(tmp_path)


class Fixed:
    """A stand-in model whose effect is the row number plus the level / 10."""

    def predict(self, d):
        return np.arange(len(d))[:, None] + np.arange(LEVELS)[None, :] / 10


def test_uplift_columns_keep_the_index_and_churn_lift_reads_them_back():
    d = day(3).set_index(pd.Index([7, 8, 9]))
    cols = uplift.uplift_columns(d, Fixed())
    assert list(cols.columns) == ["uplift_0", "uplift_1", "uplift_2", "uplift_3"] and list(cols.index) == [7, 8, 9]
    assert cols.loc[8].tolist() == [1.0, 1.1, 1.2, 1.3]
    np.testing.assert_array_equal(uplift.churn_lift(d.join(cols)), Fixed().predict(d))


# the score stage's hook and its knob


def test_use_uplift_reads_its_words_and_is_off_by_default():
    assert load_config(env={}).use_uplift is False
    assert [load_config(env={"RETENTION_USE_UPLIFT": v}).use_uplift for v in ("1", "true", "ON", "0", "no")] == [
        True, True, True, False, False]
    with pytest.raises(ValueError, match="use_uplift='maybe': expected bool"):
        load_config(env={"RETENTION_USE_UPLIFT": "maybe"})


def test_with_uplift_off_adds_null_columns():
    out = with_uplift(Config(), day(4))
    assert out[[f"uplift_{k}" for k in range(LEVELS)]].isna().all().all() and out["uplift_model"].isna().all()


def test_with_uplift_on_scores_with_the_model_or_says_how_to_train_one(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match="train_uplift"):
        with_uplift(Config(use_uplift=True, uplift_model_uri=str(tmp_path)), day(4))
    fitted.save(tmp_path, "v-hook")
    d = day(6, seed=2)
    out = with_uplift(Config(use_uplift=True, uplift_model_uri=str(tmp_path)), d)
    assert (out["uplift_model"] == "v-hook").all() and list(out.columns[:len(d.columns)]) == list(d.columns)
    np.testing.assert_allclose(uplift.churn_lift(out), fitted.predict(d), rtol=1e-6)


# train_uplift's pieces


def test_logging_policy_puts_one_minus_epsilon_on_the_best_expected_value():
    d = day(5).assign(days_since_contact=999, contacts_in_window=0)
    probs = train_uplift.logging_policy(d, CFG, 0.4)
    best = train_uplift.rules.expected_values(d, CFG).argmax(axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[np.arange(5), best], 0.6 + 0.1)
    assert np.isclose(probs, 0.1).sum() == 5 * 3


def test_agreement_of_a_perfect_and_a_shuffled_prediction():
    d = day(2000)
    truth = true_effect(d)
    frame = d.assign(**{f"true_{k}": truth[:, k] for k in range(LEVELS)})
    perfect = train_uplift.agreement(frame, truth)
    assert perfect["spearman_pooled"] == pytest.approx(1.0)
    assert perfect["calibration"]["slope_true_on_predicted"] == pytest.approx(1.0)
    assert perfect["calibration"]["mean_abs_gap"] == pytest.approx(0.0, abs=1e-12)
    shuffled = train_uplift.agreement(frame, np.random.default_rng(0).permutation(truth.ravel()).reshape(truth.shape))
    assert abs(shuffled["spearman_pooled"]) < 0.1 and not train_uplift.gate(
        {"mean": {"qini": {"uplift": 1.0, "accept": 0.0, "random": 0.0}}}, shuffled, 0.5)["passed"]


def test_qini_of_the_true_effect_beats_random_on_a_randomised_test():
    d, arm, retained, _ = logs(30_000, seed=4)
    truth = true_effect(d)
    frame = d.assign(arm=arm, retained=retained, **{f"true_{k}": truth[:, k] for k in range(LEVELS)})
    q = train_uplift.qini_table(frame, truth, CFG, seed=0)
    assert q["per_level"]["3"]["qini"]["uplift"] > q["per_level"]["3"]["qini"]["random"] + 0.005
    assert q["mean"]["qini"]["uplift"] == pytest.approx(q["mean"]["qini"]["oracle"])


@pytest.mark.parametrize("qini,spearman,passed", [
    ({"uplift": 0.02, "accept": 0.01, "random": 0.0}, 0.6, True),
    ({"uplift": 0.01, "accept": 0.02, "random": 0.0}, 0.6, False),
    ({"uplift": 0.02, "accept": 0.01, "random": 0.03}, 0.6, False),
    ({"uplift": 0.02, "accept": 0.01, "random": 0.0}, 0.4, False),
])
def test_gate_needs_the_qini_over_both_rankings_and_the_rank_correlation(qini, spearman, passed):
    verdict = train_uplift.gate({"mean": {"qini": qini}}, {"spearman_pooled": spearman}, 0.5)
    assert verdict["passed"] is passed


def test_decision_value_of_the_true_lift_is_the_oracles_and_a_wrong_one_loses():
    d = day(3000).assign(episode=np.repeat([1, 2, 3], 1000))
    accept = d[[f"accept_prob_{k}" for k in range(LEVELS)]].to_numpy()
    truth = train_uplift.rules.churn_lift(d["churn_risk"].to_numpy()[:, None], accept, np.asarray(CFG.offer_efficacy),
                                          CFG.contact_backfire)  # the plan's own model is the truth here
    frame = d.assign(**{f"true_{k}": truth[:, k] for k in range(LEVELS)})
    right = train_uplift.decision_value(frame, truth, CFG, budget=2000.0)
    assert right["uplift"] == right["oracle"] == right["plan_model"] and right["uplift_gain_over_plan_model"] == 0
    assert right["oracle"]["net_per_customer_day"] > 0 and 0 < right["oracle"]["contact_rate"] < 1
    wrong = train_uplift.decision_value(frame, truth[:, ::-1], CFG, budget=2000.0)
    assert wrong["uplift_gain_over_plan_model"] < 0
