"""Off-policy estimators on a hand-built contextual bandit with known truth, per-decision weights over customers'
sequences (exact on a hand-built log, within 10 % of the simulated truth in the simulator), the target-probability
plumbing, and the simulated outcomes written to contact_history."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.simulation.simulator import RISK_DAYS, Simulator
from retention.simulation.ope import (action_logp, effective_sample_size, estimate, expected_budget, reward, sequences,
                           simulate_logs, tempered)
from retention.pipeline.outcomes import draw
from tests.unit.test_env import OLD_ECONOMICS, START, cohort, flat_table
from tests.unit.test_policy import constant_policy

K, N = 4, 20_000
MEAN = np.array([1.0, 2.0, 0.5, 3.0])  # E[r | a] = MEAN[a] + x


def bandit(target: np.ndarray, seed: int = 0, n: int = N) -> tuple[pd.DataFrame, float]:
    """Logged data from a softmax behaviour policy over K arms; truth = sum_a pi_e(a) MEAN[a] + E[x]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    logits = np.outer(x, [0.5, -0.5, 0.2, 0.0])
    pb = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    a = (rng.random(n)[:, None] > np.cumsum(pb, axis=1)).sum(axis=1)
    reward = MEAN[a] + x + rng.normal(0.0, 1.0, n)
    q = MEAN[None, :] + x[:, None] + 0.3  # a biased reward model: DR must still be unbiased
    logs = pd.DataFrame({"episode": 0, "customer_id": np.arange(n), "day": 0, "reward": reward,
                         "propensity": pb[np.arange(n), a], "target_propensity": target[a],
                         "q_logged": q[np.arange(n), a], "q_target": q @ target})
    return logs, float(target @ MEAN)  # E[x] = 0


def test_estimators_are_unbiased_and_the_interval_covers_the_truth():
    target = np.array([0.1, 0.1, 0.1, 0.7])
    logs, truth = bandit(target, seed=1)  # seed 0's draw puts DR 1.8 se off, on its 95 % interval's edge
    est = estimate(logs, n_boot=300, seed=1).set_index("estimator")
    for name in ("ips", "snips", "dr"):
        value, se = est.loc[name, "value"], est.loc[name, "se"]
        assert abs(value - truth) < 4 * se, (name, value, truth, se)
        assert est.loc[name, "lo"] <= truth <= est.loc[name, "hi"]
    assert est.loc["dr", "se"] < est.loc["ips", "se"]  # the reward model removes most of the variance


def test_estimates_average_to_the_truth_over_many_logs():
    target = np.array([0.0, 0.5, 0.0, 0.5])
    runs = [bandit(target, seed=s, n=2_000) for s in range(40)]
    truth = runs[0][1]
    for name in ("ips", "snips", "dr"):
        values = [estimate(logs, n_boot=2).set_index("estimator").loc[name, "value"] for logs, _ in runs]
        assert abs(np.mean(values) - truth) < 4 * np.std(values) / np.sqrt(len(values)), name


def test_snips_of_the_behaviour_policy_is_the_mean_logged_reward_and_ess_is_n():
    logs, _ = bandit(np.full(K, 0.25), n=500)
    logs = logs.assign(target_propensity=logs["propensity"])
    est = estimate(logs, n_boot=10).set_index("estimator")
    assert est.loc["snips", "value"] == pytest.approx(logs["reward"].mean(), rel=1e-12)
    assert est.loc["ips", "ess"] == pytest.approx(len(logs), rel=1e-12)


def test_effective_sample_size():
    assert effective_sample_size(np.array([1.0, 1.0, 1.0, 1.0])) == 4.0
    assert effective_sample_size(np.array([0.0, 0.0, 5.0])) == 1.0
    assert effective_sample_size(np.array([2.0, 0.0])) == 1.0


# customers' sequences


def _two_customers() -> pd.DataFrame:
    """Customer a decides on days 0, 1, 2 (ratios 2, 1/2, 1); b on days 0 and 2 (ratios 1/2, 2)."""
    return pd.DataFrame({"episode": 0, "customer_id": ["a", "a", "a", "b", "b"], "day": [0, 1, 2, 0, 2],
                         "reward": [0.0, 10.0, 0.0, 4.0, 6.0], "propensity": [0.25, 0.8, 0.5, 0.5, 0.25],
                         "target_propensity": [0.5, 0.4, 0.5, 0.25, 0.5], "q_logged": [0.0, 8.0, 0.0, 0.0, 0.0],
                         "q_target": [0.0, 5.0, 0.0, 0.0, 0.0]})


def test_each_reward_is_weighted_by_the_customers_ratios_so_far():
    s = sequences(_two_customers())
    np.testing.assert_allclose(s.weight, [[2.0, 1.0, 1.0], [0.5, 0.5, 1.0]])  # b's day 1: no decision, ratio 1
    np.testing.assert_allclose(s.reward, [[0.0, 10.0, 0.0], [4.0, 0.0, 6.0]])
    est = estimate(_two_customers(), n_boot=20).set_index("estimator")
    assert est.loc["ips", "value"] == pytest.approx((10.0 + (2.0 + 6.0)) / 2)
    # each day self-normalised: (0.5 * 4) / 2.5, (1 * 10) / 1.5, 6 / 2
    assert est.loc["snips", "value"] == pytest.approx(0.8 + 10.0 / 1.5 + 3.0)
    # correction on the weights of the day, model value on the weights of the day before: day 1 adds
    # (1 * (10 - 8)) / 1.5 + (2 * 5) / 2.5
    assert est.loc["dr", "value"] == pytest.approx(0.8 + (2.0 / 1.5 + 4.0) + 3.0)
    assert est.loc["ips", "ess"] == 2.0 and est.loc["ips", "mean_weight"] == 1.0
    assert est.loc["ips", "customers"] == 2 and est.loc["ips", "decisions"] == 5


def test_two_decisions_of_a_customer_on_one_day_are_refused():
    logs = _two_customers()
    with pytest.raises(ValueError, match="more than one decision"):
        sequences(pd.concat([logs, logs.iloc[:1]]))


# the target's probabilities


def test_action_logp_matches_the_masks():
    lc = np.log([[0.25, 0.75], [0.25, 0.75], [0.25, 0.75]])
    lo = np.zeros((3, 4))
    ld = np.zeros((3, 8))
    contact_ok = np.array([[1, 1], [1, 1], [1, 0]], dtype=bool)
    affordable = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    p = np.exp(action_logp((lc, lo, ld), contact_ok, affordable, np.array([True, False, False]),
                           np.array([2, 0, 0]), np.array([3, 0, 0])))
    np.testing.assert_allclose(p, [0.75 / 4 / 8, 0.25, 1.0])


def test_expected_budget_takes_off_each_rows_expected_cost_in_turn():
    policy = constant_policy([0.0, 0.0], np.zeros(4), np.zeros(8), block=3)  # contact 1/2, offers uniform
    costs = np.tile([0.0, 10.0, 20.0, 30.0], (7, 1))
    eligible = np.array([True, True, True, True, False, True, True])
    before, logits = expected_budget(policy, np.zeros((7, 9), np.float32), costs, eligible, 50.0)
    # all four offers fit: 0.5 * 60 / 4 = 7.5 each; below 30 three fit: 0.5 * 30 / 3 = 5; an ineligible row
    # spends nothing
    np.testing.assert_allclose(before, [50.0, 42.5, 35.0, 27.5, 22.5, 22.5, 17.5])
    assert [x.shape for x in logits] == [(7, 2), (7, 4), (7, 8)]


def test_tempered_policy_divides_the_logits_and_mixes_in_the_uniform():
    policy = constant_policy([0.0, np.log(3.0)], np.log([1.0, 1.0, 1.0, 5.0]), np.zeros(8))
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # noqa: E731
    obs = np.zeros((2, 9), np.float32)
    same = tempered(policy)
    np.testing.assert_allclose(softmax(same.logits(obs)[0]), [[0.25, 0.75]] * 2)
    hot = tempered(policy, temperature=2.0)
    np.testing.assert_allclose(softmax(hot.logits(obs)[1])[0], np.sqrt([1, 1, 1, 5]) / (3 + np.sqrt(5)))
    mixed = tempered(policy, epsilon=0.2)
    np.testing.assert_allclose(softmax(mixed.logits(obs)[0])[0], [0.8 * 0.25 + 0.1, 0.8 * 0.75 + 0.1])
    assert mixed.version == "const@t1e0.2" and mixed.block == policy.block


def test_reward_is_the_incremental_value_of_the_observed_outcome_less_the_message():
    # accepted level 2 (efficacy 0.5, 10 %): 1000 * (0.4 * 0.5 - 0.1) - 2; not accepted: the backfire, 1000 * 0.4 *
    # 0.03, and the message; not contacted: nothing
    got = reward([True, True, False], [True, False, True], [1000.0] * 3, [0.4] * 3, [2, 2, 0], [2.0] * 3, Config())
    np.testing.assert_allclose(got, [1000.0 * 0.1 - 2.0, -12.0 - 2.0, 0.0])


# the sequential case in the simulator


def test_simulated_logs_of_the_behaviour_itself_reproduce_its_value():
    cfg = Config(daily_budget=1e9, **OLD_ECONOMICS)
    sim = Simulator(cohort(300, seed=3), flat_table(), cfg, horizon=6)
    behaviour = constant_policy([0.0, -1.0], [0.0, 0.3, 0.0, -0.3], np.zeros(8))
    logs, truth = simulate_logs(sim, behaviour, behaviour, [(0, START), (1, START + dt.timedelta(days=6))])
    assert ((logs["propensity"] > 0) & (logs["propensity"] <= 1)).all()
    np.testing.assert_allclose(logs["target_propensity"], logs["propensity"], rtol=1e-9)
    assert logs["reward"].sum() / logs.groupby(["episode", "customer_id"]).ngroups == pytest.approx(truth)
    est = estimate(logs, n_boot=50).set_index("estimator")
    assert est.loc["snips", "value"] == pytest.approx(truth)


@pytest.mark.parametrize("temperature, epsilon", [(2.0, 0.0), (1.0, 0.3)])
def test_sequential_estimate_is_within_10_percent_of_the_simulated_truth(temperature, epsilon):
    """A behaviour unlike the target over 10 days under a binding budget: cooldown, fatigue, follow-ups and
    secured customers all make a customer's later states depend on the earlier decisions."""
    cfg = Config(daily_budget=12_000.0, **OLD_ECONOMICS)  # about 90 contacts at the 15 % offer a day, for ~3,600 candidates
    sim = Simulator(cohort(4_000, seed=3), flat_table(), cfg, horizon=10)
    target = constant_policy([0.0, 2.0], [0.0, 0.0, 0.0, 3.0], np.zeros(8))
    episodes = [(i, START + dt.timedelta(days=10 * i)) for i in range(4)]
    logs, truth = simulate_logs(sim, tempered(target, temperature, epsilon), target, episodes)
    est = estimate(logs, n_boot=100).set_index("estimator")
    for name in ("snips", "dr"):
        assert abs(est.loc[name, "value"] / truth - 1) < 0.10, (name, est.loc[name, "value"], truth)
        assert est.loc[name, "lo"] < est.loc[name, "value"] < est.loc[name, "hi"]
    assert 0 < est.loc["snips", "ess"] < est.loc["snips", "customers"]


# simulated outcomes


def _contacts(n: int, risk: float, accept: float, delay: int) -> pd.DataFrame:
    """Contacted plan rows at offer level 2 as OUTCOME_SQL returns them."""
    return pd.DataFrame({"customer_id": [f"K{i:05d}" for i in range(n)], "churn_risk": risk,
                         **{f"accept_prob_{k}": accept if k == 2 else 0.0 for k in range(4)}, "offer_level": 2,
                         "followup_days": delay, "senior_citizen": False, "channel": "email",
                         "contacts_in_window": 0, "total_contacts": 0})


def test_outcomes_are_keyed_by_day_and_customer():
    rows = _contacts(400, 0.5, 0.3, 3)
    first = draw(rows, flat_table(), START, Config(**OLD_ECONOMICS))
    again = draw(rows.iloc[::-1].reset_index(drop=True), flat_table(), START, Config(**OLD_ECONOMICS)).iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, again)
    assert set(first["contact_date"]) == {START} and set(first["plan_date"]) == {START}
    assert not first[["accepted", "churned"]].equals(draw(rows, flat_table(), START + dt.timedelta(days=1), Config(**OLD_ECONOMICS))
                                                     [["accepted", "churned"]])
    assert not (first["accepted"] & first["churned"]).any()  # an accepted offer keeps the customer


def test_outcome_rates_follow_the_simulator():
    n, risk, accept = 40_000, 0.4, 0.3
    now = draw(_contacts(n, risk, accept, 0), flat_table(), START, Config(**OLD_ECONOMICS))
    assert now["accepted"].mean() == pytest.approx(accept, abs=0.01)
    assert now.loc[~now["accepted"], "churned"].mean() == pytest.approx(risk, abs=0.01)  # within RISK_DAYS
    # a follow-up 3 days later, to a customer still there, accepted with the table's P(accept | level 2) = 0.3
    later = draw(_contacts(n, risk, accept, 3), flat_table(), START, Config(**OLD_ECONOMICS))
    alive = (1 - risk) ** (3 / RISK_DAYS)
    assert later["accepted"].mean() == pytest.approx(accept + (1 - accept) * alive * 0.3, abs=0.01)
