"""The adaptive KL controller of Ziegler et al. 2019 and the pure pieces of PPO-text around it, by hand."""
import math

import pytest
import torch

from retention.rlhf.ppo_text import AdaptiveKLController, compute_gae, masked_whiten, token_rewards


@pytest.mark.parametrize("kl, expected_error", [
    (6.6, 0.1),     # 10 % above target: beta grows by error * n / horizon
    (5.4, -0.1),    # 10 % below: it shrinks
    (6.0, 0.0),     # on target: unchanged
    (60.0, 0.2),    # far above: the error is clipped at +0.2
    (0.0, -0.2),    # far below (or no KL at all): clipped at -0.2
])
def test_beta_moves_toward_the_target(kl, expected_error):
    ctl = AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=100)
    assert ctl.update(kl, n_steps=10) == pytest.approx(0.2 * (1 + expected_error * 10 / 100))
    assert ctl.value == pytest.approx(0.2 * (1 + expected_error * 0.1))


def test_beta_compounds_over_updates_and_the_horizon_sets_the_pace():
    fast, slow = AdaptiveKLController(1.0, 2.0, 10), AdaptiveKLController(1.0, 2.0, 1000)
    for _ in range(3):
        fast.update(4.0, n_steps=5)  # error clipped to 0.2 each time
        slow.update(4.0, n_steps=5)
    assert fast.value == pytest.approx(1.1 ** 3)
    assert slow.value == pytest.approx(1.001 ** 3)
    for _ in range(3):
        fast.update(1.0, n_steps=5)  # error -0.2: back down
    assert fast.value == pytest.approx(1.1 ** 3 * 0.9 ** 3)


def test_token_rewards_put_the_kl_penalty_on_every_token_and_the_score_on_the_last():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -3.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # second message ended after two tokens
    rewards, kl = token_rewards(torch.tensor([3.0, -1.0]), logprobs, ref, mask, beta=0.5)
    assert torch.allclose(kl, torch.tensor([0.5 - 1.0 + 0.0, 1.0 + 2.0]))
    assert torch.allclose(rewards, torch.tensor([[-0.25, 0.5, 3.0], [-0.5, -1.0 - 1.0, 0.0]]))


def test_gae_matches_a_hand_computation_and_stops_at_the_mask():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 2.0, 7.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    gamma, lam = 0.9, 0.5
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    d2 = 1.0 - 0.3
    d1 = 0.0 + gamma * 0.3 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.1
    a2, a1 = d2, d1 + gamma * lam * d2
    expected0 = [d0 + gamma * lam * a1, a1, a2]
    e1 = 2.0 - 1.0  # last real token: no value after it, the masked reward 7 is ignored
    expected1 = [0.5 + gamma * 1.0 - 1.0 + gamma * lam * e1, e1, 0.0]
    assert torch.allclose(adv, torch.tensor([expected0, expected1]))
    assert torch.allclose(ret, adv + values * mask)


def test_masked_whiten_ignores_masked_tokens():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    out = masked_whiten(x, torch.tensor([[1.0, 1.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4)
    assert math.isclose(out[0, :2].mean().item(), 0.0, abs_tol=1e-6)
