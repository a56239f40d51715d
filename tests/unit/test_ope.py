"""Off-policy estimators on a hand-built contextual bandit with known truth, and the target-probability plumbing."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from retention.config import Config
from retention.env import Simulator
from retention.ope import action_logp, effective_sample_size, estimate, simulate_logs, snips
from tests.unit.test_env import START, cohort, flat_table
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
    logs = pd.DataFrame({"reward": reward, "propensity": pb[np.arange(n), a], "target_propensity": target[a],
                         "q_logged": q[np.arange(n), a], "q_target": q @ target})
    return logs, float(target @ MEAN)  # E[x] = 0


def test_estimators_are_unbiased_and_the_interval_covers_the_truth():
    target = np.array([0.1, 0.1, 0.1, 0.7])
    logs, truth = bandit(target)
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
    w = np.ones(len(logs))
    assert snips(logs["reward"].to_numpy(), w) == logs["reward"].mean()
    est = estimate(logs, n_boot=10).set_index("estimator")
    assert est.loc["snips", "value"] == pytest.approx(logs["reward"].mean(), rel=1e-12)
    assert est.loc["ips", "ess"] == pytest.approx(len(logs), rel=1e-12)


def test_effective_sample_size():
    assert effective_sample_size(np.array([1.0, 1.0, 1.0, 1.0])) == 4.0
    assert effective_sample_size(np.array([0.0, 0.0, 5.0])) == 1.0
    assert effective_sample_size(np.array([2.0, 0.0])) == 1.0


def test_action_logp_matches_the_masks():
    lc = np.log([[0.25, 0.75], [0.25, 0.75], [0.25, 0.75]])
    lo = np.zeros((3, 4))
    ld = np.zeros((3, 8))
    contact_ok = np.array([[1, 1], [1, 1], [1, 0]], dtype=bool)
    affordable = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    p = np.exp(action_logp((lc, lo, ld), contact_ok, affordable, np.array([True, False, False]),
                           np.array([2, 0, 0]), np.array([3, 0, 0])))
    np.testing.assert_allclose(p, [0.75 / 4 / 8, 0.25, 1.0])


def test_simulated_logs_of_the_behaviour_itself_reproduce_its_value():
    cfg = Config(daily_budget=2_000.0)
    sim = Simulator(cohort(300, seed=3), flat_table(), cfg, horizon=6)
    behaviour = constant_policy([0.0, -1.0], [0.0, 0.3, 0.0, -0.3], np.zeros(8))
    logs, truth = simulate_logs(sim, behaviour, behaviour, [0, 1], START)
    assert ((logs["propensity"] > 0) & (logs["propensity"] <= 1)).all()
    np.testing.assert_allclose(logs["target_propensity"], logs["propensity"], rtol=1e-9)
    assert logs["reward"].mean() == pytest.approx(truth)
    est = estimate(logs, n_boot=50).set_index("estimator")
    assert est.loc["snips", "value"] == pytest.approx(truth)
