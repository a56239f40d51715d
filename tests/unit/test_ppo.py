"""PPO-Lagrangian: GAE against a reference loop, the masked log-probabilities and costs, the multipliers, and a
smoke run with a tiny budget (loss logged, every parameter changed)."""
import copy
import math

import numpy as np
import pytest
import torch

from retention.config import Config
from retention.simulation.simulator import Simulator
from retention.deciding.sampler import OBS
from retention.deciding.network import Agent
from retention.simulation.ppo import Lagrange, PPOConfig, compute_gae, learning_curve, raw_costs, train
from tests.unit.test_env import cohort, flat_table


def _gae_reference(rewards, values, terminated, last_value, gamma, lam):
    """GAE one env and one step at a time, straight from the definition."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                next_value = last_value[n] if k == T - 1 else values[k + 1, n]
                delta = rewards[k, n] + gamma * next_value * (1 - terminated[k, n]) - values[k, n]
                total += weight * delta
                if terminated[k, n]:
                    break
                weight *= gamma * lam
            adv[t, n] = total
    return adv


@pytest.mark.parametrize("seed", range(5))
def test_gae_equals_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    T, N = 9, 6
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    terminated = (rng.random((T, N)) < 0.15).astype(float)
    last_value = rng.normal(size=N)
    adv, ret = compute_gae(rewards, values, terminated, last_value, 0.95, 0.9)
    np.testing.assert_allclose(adv, _gae_reference(rewards, values, terminated, last_value, 0.95, 0.9), rtol=1e-12)
    np.testing.assert_allclose(ret, adv + values)


def test_gae_hand_example():
    # two steps, no termination: delta1 = 1 + 0.5*4 - 2 = 1, delta0 = 0 + 0.5*2 - 1 = 0; A0 = 0 + 0.5*0.5*1
    rewards, values = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    adv, _ = compute_gae(rewards, values, np.zeros((2, 1)), np.array([4.0]), 0.5, 0.5)
    assert adv[:, 0].tolist() == [0.25, 1.0]


def test_dual_ascent_rises_over_the_limit_and_clamps_at_zero():
    lag = Lagrange(limit=0.1, ki=2.0)
    np.testing.assert_allclose(lag.update(np.array([0.3, 0.1, 0.0])), [0.4, 0.0, 0.0])
    np.testing.assert_allclose(lag.update(np.array([0.0, 0.2, 0.0])), [0.2, 0.2, 0.0])
    np.testing.assert_allclose(lag.update(np.array([0.0, 0.0, 0.0])), [0.0, 0.0, 0.0])
    pid = Lagrange(limit=0.1, ki=1.0, kp=1.0, kd=1.0)
    np.testing.assert_allclose(pid.update(np.array([0.3, 0.0, 0.1])), [0.2 + 0.2 + 0.3, 0.0, 0.1])


def _zero_agent() -> Agent:
    agent = Agent(hidden=8)
    for head in (agent.contact, agent.offer, agent.delay):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    return agent


def test_evaluate_masked_log_prob_entropy_and_costs():
    agent = _zero_agent()  # uniform heads
    obs = torch.zeros(3, len(OBS))
    obs[1, OBS.index("cooldown_active")] = 1.0
    obs[2, OBS.index("fatigue_count")] = 1.0
    action = torch.tensor([[1, 2, 5], [0, 0, 0], [1, 1, 0]])
    contact_ok = torch.tensor([[True, True], [True, False], [True, True]])
    offer_ok = torch.tensor([[True, False, True, False], [False] * 4, [True, True, True, True]])
    logp, entropy, _, p_contact, p_offer = agent.evaluate(obs, action, contact_ok, offer_ok)
    np.testing.assert_allclose(logp.detach(), [math.log(1 / 2 * 1 / 2 * 1 / 8), 0.0, math.log(1 / 2 * 1 / 4 * 1 / 8)],
                               rtol=1e-6)
    np.testing.assert_allclose(entropy.detach(), [math.log(2) + 0.5 * (math.log(2) + math.log(8)), 0.0,
                                                  math.log(2) + 0.5 * (math.log(4) + math.log(8))], rtol=1e-6)
    affordable = torch.tensor([[True, True, False, False]] * 3)
    # unmasked: contact 1/2; offers that do not fit 2/4; row 1 in cooldown, row 2 at the fatigue cap
    breaks = torch.tensor([[False, False], [False, True], [True, False]])  # (fatigue, cooldown)
    np.testing.assert_allclose(raw_costs(p_contact, p_offer, breaks, affordable).detach(),
                               [[0.25, 0, 0], [0.25, 0, 0.5], [0.25, 0.5, 0]], rtol=1e-6)


def test_ppo_smoke_tiny_budget(tmp_path):
    sim = Simulator(cohort(80, seed=3), flat_table(), Config(daily_budget=800.0), horizon=6)
    cfg = PPOConfig(iterations=2, horizon=6, minibatch_size=64, update_epochs=2, forced_share=0.5, block=16,
                    target_kl=None)
    agent = Agent(cfg.hidden)
    before = copy.deepcopy(agent.state_dict())
    trained, history = train(sim, cfg, tmp_path / "log.csv", progress=False, agent=agent)
    assert len(history) == 2
    assert all(np.isfinite(h[k]) for h in history for k in ("pg_loss", "v_loss", "entropy", "approx_kl"))
    changed = {k: not torch.equal(before[k], v) for k, v in trained.state_dict().items()}
    assert all(changed.values()), [k for k, c in changed.items() if not c]
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "pg_loss" in log[0] and "lambda_cooldown" in log[0]
    assert history[0]["cost_cooldown"] > 0 and history[-1]["lambda_cooldown"] > 0  # dual ascent moved
    learning_curve(history, tmp_path / "curve.png", cfg.cost_limit)
    assert (tmp_path / "curve.png").stat().st_size > 10_000
