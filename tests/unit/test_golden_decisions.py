"""Golden decisions: what the hash, the noise and the rollout give must never move (the holdout, the message
wordings and every logged propensity depend on them), and the fast decide_day equals the per-block original."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from retention import hashing
from retention.deciding import greedy, rules
from retention.config import Config
from retention.deciding.sampler import BUDGET, DELAYS, NOISE, OBS, decide_day, observe
from retention.deciding.policy import Policy, rollout
from retention.hashing import decision_noise

DS = dt.date(2026, 6, 1)

# stable_hash and decision_noise, pinned (the first three as in test_plan)

HASHED = ["", "a", "7590-VHVEG", "José", "名前", "SYN-0000001", "SYN-0000001|2026-06-01", "x" * 300, "a\x00b"]
HASHES = [17280346270528514342, 9413272369427828315, 12972476930549041867, 9085098722961635665, 15852114931510122036,
          13006410252572386964, 9485369001049512365, 586346026881092953, 12355895974393876011]
NOISE_ROWS = [["0x1.da68fb12fdb36p-1", "0x1.bc2de24f50ef8p-5", "0x1.1a3c06895d388p-1", "0x1.1be717e3ee92ap-3",
               "0x1.b70b5dafb1d4ep-3", "0x1.9528643cf1e25p-2"],
              ["0x1.3bf7fbca23928p-5", "0x1.2581f633fbe3cp-4", "0x1.10a364a9078f8p-1", "0x1.538b0a0bd2ab2p-1",
               "0x1.e18e4d0012f39p-2", "0x1.dcae26340fdf5p-2"]]


def test_stable_hash_golden():
    assert hashing.stable_hash(HASHED).tolist() == HASHES
    assert hashing.stable_hash(pd.Series(HASHED[::-1], dtype="str")).tolist() == HASHES[::-1]  # batch order is free
    assert [int(hashing.stable_hash([s])[0]) for s in HASHED] == HASHES


def test_decision_noise_golden():
    u = decision_noise(hashing.stable_hash(["SYN-0000001", "GOLD-0007"]), DS, NOISE)
    assert u.shape == (2, NOISE)
    assert [[float.hex(float(x)) for x in row] for row in u] == NOISE_ROWS


# a small rollout, pinned (first made by the per-block implementation before it was vectorised; made again
# when the economics changed: incremental values with efficacy and backfire, per-channel message costs, offers
# worth nothing masked; the hash, the noise and the sampler's draws above are unchanged)


def golden_day(n: int = 96) -> pd.DataFrame:
    """A scored day from arithmetic alone (no random generator whose stream could change)."""
    i = np.arange(n)
    base = (i * 29 % 89) / 200.0
    return pd.DataFrame({
        "customer_id": [f"GOLD-{k:04d}" for k in i],
        "customer_value": 200.0 + (i * 37 % 101) * 12.5,
        "churn_risk": (i * 53 % 97) / 100.0,
        **{f"accept_prob_{k}": base + 0.04 * k for k in range(4)},
        "suppressed": i % 31 == 5,
        "days_since_contact": np.array([999, 1, 8, 30, 6, 999, 7])[i % 7],
        "contacts_in_window": (i * 7 % 11) % 5,
        "channel": np.array(["email", "sms", "phone", "app"])[i % 4],
    })


def golden_logits(obs: np.ndarray):
    """Logits that depend on the state, the budget left included, without a matrix product."""
    o = obs.astype(np.float64)
    risk, accept, budget, days = o[:, 0], o[:, 1:5], o[:, BUDGET], o[:, OBS.index("days_since_contact")]
    contact = np.stack([np.zeros(len(o)), 6.0 * risk - 2.0 + budget], axis=1)
    offer = 4.0 * accept - 0.3 * np.arange(4) * budget[:, None]
    return contact, offer, days[:, None] * np.linspace(-1.0, 1.0, DELAYS)


LETTER = {"suppressed": "s", "holdout": "h", "cooldown": "c", "fatigue": "f", "contact": "C", "budget": "b",
          "low_value": "l", "wait": "w"}
GOLDEN = {(400.0, 0.5): {'reasons': 'bcfCcsfbcffcCfbhbfcbffcbfchCfcwfcbhfsbCcbbfcbhcbwhcCCcfbbcCbchbbcfbsfhhcfCchfbchbcbfCcffcbfhcbfc',
                'contacts': [(3, 0, 7), (12, 0, 7), (27, 1, 6), (38, 1, 7), (51, 0, 0), (52, 0, 1), (58, 0, 2),
                             (73, 2, 6), (84, 2, 4)],
                'propensity': [0.23563217911308432, 0.21708610885343504, 0.06564529276184741, 0.10211408079573159,
                               0.0926669757991246, 0.03013376874550361, 0.09754819148105115, 0.04713779828085439,
                               0.03831791239554889],
                'propensity_sum': 87.00122446534706,
                'spend': 390.31,
                'expected_value': 636.6825011249999,
                'greedy_reasons': 'lcfbcsfbcffcbfbhbfcbffcbfchCfcbfclhfslbcbCfclhcbChcbCcflbcblchbbcflsfhhcfCchflchbcbfbcffcbfhcbfc',
                'greedy_levels': [3, 1, 0, 1, 3]},
 (150.0, 2.0): {'reasons': 'bcfbcsfbcffcCfbhbfcbffcbfchCfcwfcbhfsbbcbbfcbhcbbhcCbcfbbcCbchbbcfbsfhhcfCchfbchbcbfCcffcbfhcbfc',
                'contacts': [(12, 0, 7), (27, 0, 6), (51, 0, 0), (58, 0, 2), (73, 0, 6), (84, 2, 4)],
                'propensity': [0.21966116411072328, 0.14115534656303227, 0.0926669757991246, 0.09814523518692633,
                               0.20470822261340665, 0.05380988931379299],
                'propensity_sum': 90.21408884271375,
                'spend': 147.655,
                'expected_value': 185.18449937499994,
                'greedy_reasons': 'lcfCcsfbcffcCfbhbfcbffcbfchbfcbfclhfslbcbbfclhcbbhcbCcflbcblchbbcflsfhhcfbchflchbcbfbcffcbfhcbfc',
                'greedy_levels': [1, 3, 1]}}


def golden_config(budget: float, channel_cost: float) -> Config:
    """The pinned days' rules. A contact reserves room for its follow-up (contacts_in_window + 2 <= cap), so cap 4
    forbids exactly the rows the pins were made with under cap 3 (contacts_in_window >= 3): the same decisions."""
    return Config(daily_budget=budget, channel_cost=channel_cost, holdout_share=0.1, fatigue_cap=4)


@pytest.mark.parametrize("budget, channel_cost", list(GOLDEN))
def test_rollout_golden(budget, channel_cost):
    want = GOLDEN[budget, channel_cost]
    cfg = golden_config(budget, channel_cost)
    planned = rollout(golden_day(), cfg, Policy(golden_logits, "golden", 16), DS)
    assert "".join(LETTER[r] for r in planned["decision_reason"]) == want["reasons"]
    took = planned[planned["contact"]]
    assert list(zip(took.index, took["offer_level"], rules.followup_choice(took["followup_days"], cfg))) == \
        want["contacts"]
    # the decisions are exact; the last bits of exp/log may differ on another CPU
    np.testing.assert_allclose(took["propensity"], want["propensity"], rtol=1e-12)
    assert planned["propensity"].sum() == pytest.approx(want["propensity_sum"], rel=1e-12)
    assert planned["offer_cost"].sum() == want["spend"]
    assert planned["expected_value"].sum() == pytest.approx(want["expected_value"], rel=1e-12)
    assert planned["holdout"].tolist() == [r == "holdout" for r in planned["decision_reason"]]


@pytest.mark.parametrize("budget, channel_cost", list(GOLDEN))
def test_greedy_golden(budget, channel_cost):
    want = GOLDEN[budget, channel_cost]
    planned = greedy.decide_greedy(golden_day(), golden_config(budget, channel_cost))
    assert "".join(LETTER[r] for r in planned["decision_reason"]) == want["greedy_reasons"]
    assert planned.loc[planned["contact"], "offer_level"].tolist() == want["greedy_levels"]


# decide_day against the implementation it replaced


def _decide_day_reference(obs, costs, eligible, budget, u, logits_fn, block, propose):
    """decide_day as first written: every step per block, the offer mask by row (its outputs must not move)."""
    obs, parts, left = obs.copy(), [], float(budget)
    for s in range(0, len(obs), block):
        e = s + block
        obs[s:e, BUDGET] = left / budget if budget > 0 else 0.0
        fields, block_left = _decide_block_reference(logits_fn(obs[s:e]), u[s:e], costs[s:e], eligible[s:e], left,
                                                     propose)
        parts.append(fields)
        left -= left - block_left
    fields = [None if f[0] is None else np.concatenate(f) for f in zip(*parts)]
    return fields, obs, float(budget - left)


def _decide_block_reference(logits, u, costs, eligible, budget, propose):
    lc, lo, ld = logits
    n = len(lc)
    wants = lc[:, 1] - lc[:, 0] + np.log(u[:, 0]) - np.log1p(-u[:, 0]) > 0
    offer = lo - np.log(-np.log(u[:, 1:1 + rules.LEVELS]))
    top = ld.max(axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(ld - top), axis=1)
    delay = np.minimum((cdf < u[:, 1 + rules.LEVELS, None] * cdf[:, -1:]).sum(axis=1), DELAYS - 1)
    delay_logp = ld[np.arange(n), delay] - top[:, 0] - np.log(cdf[:, -1])
    contact, level, before = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.zeros(n)
    p, left = 0, float(budget)
    while p < n:
        ok = eligible[p:, None] & (costs[p:] <= left)
        lvl = np.where(ok, offer[p:], -np.inf).argmax(axis=1)
        c = ok.any(axis=1) & wants[p:]
        cost = np.where(c, costs[p:][np.arange(n - p), lvl], 0.0)
        running = np.cumsum(cost)
        over = np.flatnonzero(running > left)
        q = int(over[0]) if over.size else n - p
        contact[p:p + q], level[p:p + q], before[p:p + q] = c[:q], lvl[:q], left - (running[:q] - cost[:q])
        left -= float(running[q - 1]) if q else 0.0
        p += q
    affordable = costs <= before[:, None]
    offer_ok = eligible[:, None] & affordable
    can = offer_ok.any(axis=1)
    margin = lc[:, 1] - lc[:, 0]
    logp = np.where(contact, -np.logaddexp(0.0, -margin), np.where(can, -np.logaddexp(0.0, margin), 0.0))
    z = np.where(offer_ok, lo, -np.inf)[contact]
    top = z.max(axis=1)
    logp[contact] += (z[np.arange(len(z)), level[contact]] - top - np.log(np.exp(z - top[:, None]).sum(axis=1))
                      + delay_logp[contact])
    proposal = np.stack([wants, offer.argmax(axis=1), delay], axis=1).astype(np.int64) if propose else None
    return (contact, np.where(contact, level, 0), delay, logp, np.stack([np.ones_like(can), can], axis=1), affordable,
            proposal), left


FIELDS = ("contact", "level", "delay", "logp", "contact_ok", "affordable", "proposal")


@pytest.mark.parametrize("seed", range(16))
def test_decide_day_equals_the_per_block_original(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    block = int(rng.choice([1, 7, 64, 1024]))
    value = rng.uniform(100, 1500, n)
    channel_cost = float(rng.choice([0.0, 0.5, 2.0]))
    costs = value[:, None] * np.array([0.0, 0.05, 0.10, 0.15]) + channel_cost
    if seed % 2:
        costs = costs.round()  # whole costs fill the budget exactly
    eligible = rng.random(n) < 0.7
    budget = float(rng.choice([0.0, 1.0, 40.0, costs.sum() / 20, costs.sum() / 3, 1e9]))
    obs = observe(rng.random(n), rng.random((n, 4)), rng.choice([1, 7, 30, 999], n), rng.integers(0, 4, n), Config())
    W = rng.normal(0, float(rng.choice([0.1, 2.0, 30.0])), (len(OBS), 2 + rules.LEVELS + DELAYS))

    def logits(o):
        z = o @ W
        return z[:, :2], z[:, 2:6], z[:, 6:]

    # the rollout's column-major noise and a row-major draw
    u = decision_noise(rng.integers(0, 2**63, n, dtype=np.uint64), DS, NOISE) if seed % 3 else rng.random((n, NOISE))
    propose = bool(seed % 2)
    got = decide_day(obs, costs, eligible, budget, u, logits, block, propose)
    want, want_obs, want_spent = _decide_day_reference(obs, costs, eligible, budget, u, logits, block, propose)
    for name, w in zip(FIELDS, want):
        g = getattr(got, name)
        if w is None:
            assert g is None
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, name
        assert np.array_equal(g, w), name
    assert np.array_equal(got.obs, want_obs) and got.spent == want_spent
